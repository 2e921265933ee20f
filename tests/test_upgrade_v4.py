"""Schema v4: a workspace signed with its own (unencrypted) key moves to
personal identities. The old key becomes verification-only, its private half
leaves the file (bytes and all), old releases keep verifying, new releases
and edits are signed by identities, and files are owner-only."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest

from tests.old_workspaces import make_v3_with_release
from tests.test_releases import _onnx_bytes, add_version
from workstation import review, workspace
from workstation.cli import main
from workstation.schema import CURRENT_VERSION
from workstation.verify import verify_workspace
from workstation.workspace import Workspace


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _secrets(old) -> list[bytes]:
    """Byte strings that would betray the private key: the PEM header, the raw
    32-byte key, and the base64 body of the stored PEM."""
    body = "".join(old.private_pem.splitlines()[1:-1]).encode()
    assert base64.b64decode(body)[-32:] == old.raw_private
    return [b"PRIVATE KEY-----", old.raw_private, body[:40], body[-40:]]


def _holds_key(path: Path, old) -> list[bytes]:
    data = path.read_bytes()
    return [s for s in _secrets(old) if s in data]


@pytest.fixture
def v3(tmp_path):
    path = tmp_path / "old.duckdb"
    old = make_v3_with_release(path, _onnx_bytes(1.0))
    path.chmod(0o644)  # as the workstation before v4 left its files
    assert _holds_key(path, old), "the v3 fixture does not store its private key"
    return path, old


def run(capsys, *args: str) -> tuple[int, dict, list[str]]:
    code = main([*args, "--json"])
    captured = capsys.readouterr()
    return code, json.loads(captured.out.strip().splitlines()[-1]), captured.err.splitlines()


def test_the_upgrade_removes_the_private_key_and_keeps_old_releases_verifying(
        v3, tmp_path, capsys, session_identity):
    path, old = v3
    w = ["--workspace", str(path)]
    code, report, err = run(capsys, *w, "verify")
    backup = path.with_name("old.duckdb.v3.bak")
    assert code == 0 and report["ok"], report
    assert err == [f"upgraded workspace schema v3 -> v{CURRENT_VERSION}; the old file is backed "
                   f"up at {backup}",
                   "the workspace no longer holds its old private signing key (releases are now "
                   f"signed by identities), but earlier backups still do: {backup}; delete them "
                   "once you no longer need them"]
    assert _holds_key(path, old) == [] and _mode(path) == 0o600
    assert not path.with_name(path.name + ".wal").exists()
    assert _holds_key(backup, old) and _mode(backup) == 0o600  # what the notice says
    with Workspace.open(path, read_only=True) as ws:
        assert ws.schema_version == CURRENT_VERSION
        assert ws.meta("review_legacy_end") == "2" and ws.meta("ledger_legacy_end") == "2"
        assert ws.meta("pending_rewrite") is None
        assert ws.execute("SELECT key_id FROM legacy_keys").fetchall() == [(old.key_id,)]
        assert "signing_keys" not in {r[0] for r in ws.execute(
            "SELECT table_name FROM information_schema.tables").fetchall()}
        assert [e["analyst"] for e in review.entries(ws)] == ["old-analyst"] * 2

    # The old release, exported and checked offline with the legacy public key.
    code, key, _ = run(capsys, *w, "key", "export-public", str(tmp_path / "legacy.pub"))
    assert key["key_id"] == old.key_id
    run(capsys, *w, "export-release", "rm@1", str(tmp_path / "old.zip"))
    code, checked, _ = run(capsys, "verify-release", str(tmp_path / "old.zip"),
                           "--trust", str(tmp_path / "legacy.pub"))
    assert code == 0 and checked["ok"] and checked["key_id"] == old.key_id
    assert checked["trusted"] and checked["approvals_required"] == 1
    assert [(a["key_id"], a["name"]) for a in checked["approvals"]] == [(old.key_id, "old-login")]
    code, untrusted, _ = run(capsys, "verify-release", str(tmp_path / "old.zip"))
    assert code == 1 and untrusted["reasons"] == ["no trusted key given"]

    # New edits and releases are signed by the identity; the old key signs nothing.
    with Workspace.open(path) as ws:
        add_version(ws, "rm", 2, parent_id=1)
    code, edit, _ = run(capsys, *w, "label", "3", "--set-label", "unsafe", "--reason", "new")
    assert edit["changes"][0]["key_id"] == session_identity.key_id
    code, released, _ = run(capsys, *w, "release", "rm@2")
    assert code == 0 and released["key_id"] == session_identity.key_id != old.key_id
    run(capsys, "identity", "export-public", str(tmp_path / "me.pub"))
    run(capsys, *w, "export-release", "rm", str(tmp_path / "new.zip"))
    for key_file, ok in (("me.pub", True), ("legacy.pub", False)):
        code, result, _ = run(capsys, "verify-release", str(tmp_path / "new.zip"),
                              "--trust", str(tmp_path / key_file))
        assert result["ok"] is ok
    code, report, _ = run(capsys, *w, "verify")
    assert report["ok"] and report["checked"]["signed_review_rows"] == 1
    assert _holds_key(path, old) == []


def test_a_crash_before_the_rewrite_is_finished_at_the_next_open(v3, monkeypatch):
    path, old = v3

    def killed(self):
        raise RuntimeError("killed during the rewrite")

    monkeypatch.setattr(workspace.Workspace, "_rewrite", killed)
    with pytest.raises(RuntimeError):
        Workspace.open(path)
    # Migrated, the key's column dropped, yet its bytes still in free blocks:
    assert _holds_key(path, old)
    monkeypatch.undo()
    with Workspace.open(path) as ws:
        assert ws.meta("pending_rewrite") is None and verify_workspace(ws).ok
    assert _holds_key(path, old) == [] and _mode(path) == 0o600


def test_an_upgraded_workspace_refuses_unsigned_rows_after_the_old_ones(v3):
    path, _ = v3
    with Workspace.open(path) as ws:
        ws.execute("UPDATE meta SET value = '1' WHERE key = 'review_legacy_end'")
        assert verify_workspace(ws).failures == [
            "review log row 2: not signed (written after the upgrade to schema v4 without a "
            "signature)"]


def _schema(path: Path) -> tuple[list, list, list]:
    with Workspace.open(path, read_only=True) as ws:
        columns = ws.execute(
            "SELECT table_name, column_name, data_type, is_nullable FROM "
            "information_schema.columns WHERE table_schema = 'main' "
            "ORDER BY table_name, ordinal_position").fetchall()
        constraints = ws.execute(
            "SELECT table_name, constraint_type, constraint_column_names FROM "
            "duckdb_constraints() WHERE schema_name = 'main' ORDER BY ALL").fetchall()
        views = ws.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal "
                           "ORDER BY view_name").fetchall()
    return columns, constraints, views


def test_an_upgraded_workspace_has_the_schema_of_a_new_one(v3, tmp_path):
    """The rewrite into a fresh file keeps every column type, key and view."""
    path, _ = v3
    Workspace.open(path).close()
    Workspace.open(tmp_path / "new.duckdb").close()
    upgraded, fresh = _schema(path), _schema(tmp_path / "new.duckdb")
    assert upgraded == fresh
    assert ("review_log", "signature", "VARCHAR", "YES") in upgraded[0]
    assert ("payload" in {c[1] for c in upgraded[0] if c[0] == "ledger"})


def test_backups_made_after_the_upgrade_hold_no_key(v3, monkeypatch):
    """The next schema upgrade backs up a v4 file: owner-only, and without the key."""
    from workstation import schema

    path, old = v3
    Workspace.open(path).close()
    later = (CURRENT_VERSION + 1, ["CREATE TABLE later_feature (x INTEGER)"])
    monkeypatch.setattr(workspace, "MIGRATIONS", schema.MIGRATIONS + [later])
    monkeypatch.setattr(workspace, "CURRENT_VERSION", CURRENT_VERSION + 1)
    with Workspace.open(path) as ws:
        backup = ws.migration_backup
        assert ws.key_backups == []  # nothing new to warn about
    assert backup.name == f"old.duckdb.v{CURRENT_VERSION}.bak" and _mode(backup) == 0o600
    assert _holds_key(backup, old) == [] and _holds_key(path, old) == []
