"""The demo workspace (`workstation demo`, and the start page's button): it is
complete when built, and a cancelled or failed build leaves nothing behind."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import textwrap
from typing import Iterator

import pytest

from tests.test_models import HashEncoder
from workstation import demo
from workstation.errors import Cancelled, WorkspaceInUse, WorkstationError
from workstation.progress import Progress
from workstation.workspace import Workspace


def cancel_at(stage_prefix: str) -> Progress:
    """A progress whose analyst presses Cancel once a stage named so starts."""
    def report(stage: str, done: int, total: int) -> None:
        if stage.startswith(stage_prefix):
            progress.cancel()
    progress = Progress(report)
    return progress


@pytest.mark.slow
def test_the_demo_holds_datasets_models_and_audits_and_nothing_else(tmp_path):
    path = tmp_path / "demo.duckdb"
    report = demo.build_demo(path, encoder=HashEncoder())
    assert report.path == path
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo.duckdb"]  # no scratch left
    with Workspace.open(path, read_only=True) as ws:
        datasets = [r[0] for r in ws.execute("SELECT name FROM datasets ORDER BY id").fetchall()]
        runs = ws.execute("SELECT count(*) FROM audit_runs").fetchone()[0]
    assert datasets == ["demo-pairs", "demo-labels", "cliff-demos"]
    assert report.models == ["demo-rm@1", "demo-safety@1", "cliff-reward@1"]
    assert runs == len(report.runs) >= 3
    assert report.to_json()["trusted"] == ["demo", "test-analyst"]  # the analyst's own too


def test_the_demo_needs_nothing_typed_even_without_any_identity(tmp_path, monkeypatch,
                                                                no_session):
    """A newcomer: no identity folder, no passphrase file, no terminal. The demo
    makes its own identity, which owns the demo workspace and signs edits there."""
    from workstation import identity, review, trust
    from workstation.verify import verify_workspace

    monkeypatch.setenv(identity.HOME_ENV, str(tmp_path / "fresh-home"))
    monkeypatch.delenv(identity.PASSPHRASE_FILE_ENV)
    monkeypatch.setattr(sys, "stdin", type("Pipe", (), {"isatty": lambda self: False})())
    monkeypatch.setattr(demo, "_train_and_audit", lambda *args, **kwargs: None)  # fast
    report = demo.build_demo(tmp_path / "demo.duckdb", encoder=HashEncoder())
    assert report.trusted == ["demo"] and identity.current_name() == "demo"
    signer = identity.unlock_session()  # nothing asked: the demo's passphrase is stored
    with Workspace.open(report.path) as ws:
        [owner] = trust.list_keys(ws)
        assert owner.key_id == signer.key_id and owner.owner
        [change] = review.apply(ws, [review.Edit(1, "note", "first look", "demo")])
        assert change.key_id == signer.key_id and verify_workspace(ws).ok


def test_a_cancelled_build_leaves_no_file(tmp_path):
    path = tmp_path / "demo.duckdb"
    with pytest.raises(Cancelled):
        demo.build_demo(path, encoder=HashEncoder(), progress=cancel_at("training"))
    assert list(tmp_path.iterdir()) == []


def test_a_failed_build_keeps_the_file_it_was_to_replace(tmp_path, monkeypatch):
    path = tmp_path / "demo.duckdb"
    path.write_bytes(b"the analyst's old file")

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")
    monkeypatch.setattr(demo, "_train_and_audit", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        demo.build_demo(path, encoder=HashEncoder(), overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["demo.duckdb"]
    assert path.read_bytes() == b"the analyst's old file"


def test_an_existing_file_is_refused_without_overwrite(tmp_path):
    path = tmp_path / "demo.duckdb"
    path.write_bytes(b"keep me")
    with pytest.raises(WorkstationError, match="already exists"):
        demo.build_demo(path)
    assert path.read_bytes() == b"keep me"
    with pytest.raises(WorkstationError, match="no folder"):
        demo.build_demo(tmp_path / "missing" / "demo.duckdb")
    assert [p.name for p in tmp_path.iterdir()] == ["demo.duckdb"]


def test_a_workspace_another_process_has_open_is_never_replaced(tmp_path):
    path = tmp_path / "demo.duckdb"
    Workspace.open(path).close()
    before = path.read_bytes()
    with held_open(path):
        with pytest.raises(WorkspaceInUse, match="in use by another process"):
            demo.build_demo(path, overwrite=True)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["demo.duckdb"]


def test_the_default_path_never_takes_an_existing_file(tmp_path):
    first = demo.default_demo_path(tmp_path)
    assert first == tmp_path / "workstation-demo" / "demo.duckdb" and first.parent.is_dir()
    first.write_bytes(b"")
    assert demo.default_demo_path(tmp_path).name == "demo-2.duckdb"


@contextlib.contextmanager
def held_open(path) -> Iterator[None]:
    """Another process holds ``path`` open for writing while the block runs."""
    script = textwrap.dedent(f"""
        import sys, duckdb
        con = duckdb.connect(r"{path}")
        print("open", flush=True)
        sys.stdin.read()
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "open"
        yield
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
