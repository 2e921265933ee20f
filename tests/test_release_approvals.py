"""k-of-n release approval: requests, approvals, rejections, separation, and
what an exported release proves offline about who approved it."""

from __future__ import annotations

import io
import json
import struct
import zipfile
from pathlib import Path

import pytest

from tests.test_releases import _flip, add_version
from workstation import ledger, policy, releases, trust
from workstation.cli import main
from workstation.errors import WorkstationError
from workstation.hashing import canonical_json
from workstation.offline_verify import load_trusted_keys, verify_release, verify_release_files
from workstation.release_format import MAX_FILE_BYTES, RELEASE_FILES, json_file
from workstation.releases import approve, current_release, reject, release
from workstation.verify import verify_workspace


@pytest.fixture
def team(ws, make_identity):
    """rm@1..3; the test identity owns the workspace; lead and bo are
    approvers, rita a reviewer; a release needs two approvals."""
    v1 = add_version(ws, "rm", 1)
    v2 = add_version(ws, "rm", 2, parent_id=v1)
    add_version(ws, "rm", 3, parent_id=v2)
    people = {name: make_identity(name) for name in ("lead", "bo", "rita")}
    for name, roles in (("lead", "approver"), ("bo", "approver"), ("rita", "reviewer")):
        trust.add(ws, people[name].public_pem, name, roles)
    policy.set(ws, "release.approvals", 2)
    return ws, people


def keys_folder(folder: Path, *signers) -> Path:
    folder.mkdir()
    for signer in signers:
        (folder / f"{signer.name}.pem").write_text(signer.public_pem)
    return folder


def _kinds(ws) -> list[str]:
    return [e["kind"] for e in ledger.entries(ws) if e["kind"].startswith("release")]


# -- two approvals -----------------------------------------------------------------------


def test_two_approvals_pending_self_approval_refused_second_approver_puts_it_in_force(
        team, tmp_path, session_identity):
    ws, people = team
    asked = release(ws, "rm@1", notes="first")
    assert (asked.status, asked.approvals, asked.approvals_required) == ("pending", [], 2)
    assert current_release(ws, "rm") is None and releases.list_releases(ws) == []
    with pytest.raises(WorkstationError, match="requested release 1 and cannot approve it too"):
        approve(ws, asked.id)  # the requester: separation is on
    with pytest.raises(WorkstationError, match="'rita' .* is not an approver"):
        approve(ws, asked.id, signer=people["rita"])
    once = approve(ws, asked.id, signer=people["lead"])
    assert (once.status, [a["name"] for a in once.approvals]) == ("pending", ["lead"])
    with pytest.raises(WorkstationError, match="already approved release 1"):
        approve(ws, asked.id, signer=people["lead"])
    done = approve(ws, asked.id, signer=people["bo"])
    assert (done.id, done.status, done.current, done.key_id) == \
        (asked.id, "in-force", True, people["bo"].key_id)
    assert current_release(ws, "rm") == done
    batch = done.batch
    assert [(a["name"], a["key_id"]) for a in batch["approvals"]] == \
        [("lead", people["lead"].key_id), ("bo", people["bo"].key_id)]
    assert batch["requested_by"]["key_id"] == session_identity.key_id
    assert (batch["approved_by"], batch["approvals_required"], batch["separation"]) == \
        ("bo", 2, True)
    assert {k["name"] for k in batch["trust_store"]} == {"test-analyst", "lead", "bo", "rita"}
    assert _kinds(ws) == ["release-request", "release-approve", "release"]
    report = verify_workspace(ws)
    assert report.ok, report.failures
    assert (report.checked["releases"], report.checked["release_requests"]) == (1, 1)
    with pytest.raises(WorkstationError, match="already took effect"):
        approve(ws, asked.id, signer=session_identity)


@pytest.fixture
def approved(team, tmp_path):
    """rm@1 released with lead's and bo's approvals, exported; (ws, people, folder, zip)."""
    ws, people = team
    asked = release(ws, "rm@1")
    approve(ws, asked.id, signer=people["lead"])
    approve(ws, asked.id, signer=people["bo"])
    folder = releases.export_release(ws, "rm", tmp_path / "rm-1")
    return ws, people, folder, releases.export_release(ws, "rm", tmp_path / "rm-1.zip")


def test_verify_release_counts_distinct_trusted_approvers(approved, tmp_path, session_identity):
    ws, people, folder, as_zip = approved
    both = keys_folder(tmp_path / "both", people["lead"], people["bo"])
    for path in (folder, as_zip):
        result = verify_release(path, both)
        assert result.ok and result.trusted, result.reasons
        assert (result.approvals_required, result.approvals_trusted) == (2, 2)
        assert [(a["name"], a["trusted"]) for a in result.approvals] == \
            [("lead", True), ("bo", True)]
    one = keys_folder(tmp_path / "one", people["bo"], session_identity)  # bo + the requester
    result = verify_release(folder, one)
    assert not result.ok and not result.trusted
    assert result.reasons == ["1 of the 2 approvals required are by trusted keys"]
    assert verify_release(folder).reasons == ["no trusted key given"]
    loose = verify_release(folder, allow_untrusted=True)
    assert loose.ok and not loose.trusted and loose.approvals_trusted == 0
    stricter = verify_release(folder, both, min_approvals=3)
    assert stricter.reasons == ["2 of the 3 approvals required are by trusted keys"]
    # A file holding both keys works like the folder.
    (tmp_path / "team.pem").write_text(people["lead"].public_pem + people["bo"].public_pem)
    assert verify_release(folder, tmp_path / "team.pem").trusted


def test_one_changed_byte_in_any_file_is_refused(approved, tmp_path):
    ws, people, folder, _ = approved
    both = keys_folder(tmp_path / "both", people["lead"], people["bo"])
    files = {p.name: p.read_bytes() for p in folder.iterdir()}
    trusted = load_trusted_keys(both)
    assert verify_release_files(files, trusted).ok
    for name, data in files.items():  # every byte of every file, approvals included
        for i in range(len(data)):
            result = verify_release_files({**files, name: _flip(data, i)}, trusted)
            assert not result.ok, f"{name} byte {i} changed but verified"
            assert any(name in reason for reason in result.reasons), (name, i, result.reasons)


def _resigned(ws, folder: Path, batch: dict, completer) -> dict[str, bytes]:
    """The release files with ``batch`` as governance.json, the statement
    re-signed by ``completer`` (one approver acting alone)."""
    from workstation.release_format import release_statement, signature_doc

    manifest = json.loads((folder / "manifest.json").read_text())
    statement = release_statement(batch, manifest, completer.key_id)
    signature = completer.sign(canonical_json(statement).encode()).hex()
    return {"model.onnx": (folder / "model.onnx").read_bytes(),
            "manifest.json": json_file(manifest), "governance.json": json_file(batch),
            "signature.json": json_file(signature_doc(statement, signature,
                                                      completer.public_pem))}


def test_a_removed_approval_is_refused(approved, tmp_path):
    ws, people, folder, _ = approved
    trusted = load_trusted_keys(keys_folder(tmp_path / "both", people["lead"], people["bo"]))
    batch = json.loads((folder / "governance.json").read_text())
    fewer = {**batch, "approvals": batch["approvals"][1:]}  # lead's removed
    files = {p.name: p.read_bytes() for p in folder.iterdir()}
    cut = verify_release_files({**files, "governance.json": json_file(fewer)}, trusted)
    assert cut.reasons[0].startswith("governance.json was changed")
    # bo re-signs the release alone: one approval of the two the request asks for.
    alone = _resigned(ws, folder, fewer, people["bo"])
    assert verify_release_files(alone, trusted).reasons == [
        "1 of the 2 approvals required are by trusted keys"]
    assert verify_release_files(alone, allow_untrusted=True).reasons == [
        "1 approval(s), 2 required"]
    # ... and lowering what the request asks for breaks every approval's signature.
    lowered = _resigned(ws, folder, {**fewer, "approvals_required": 1}, people["bo"])
    reasons = verify_release_files(lowered, trusted).reasons
    assert len(reasons) == 1 and "the request" in reasons[0] and "does not verify" in reasons[0]


# -- policy, separation, rejection ------------------------------------------------------


def test_with_separation_off_the_requesters_own_approval_counts(team, tmp_path,
                                                               session_identity):
    ws, people = team
    policy.set(ws, "release.separation", "off")
    asked = release(ws, "rm@1")
    assert asked.status == "pending" and [a["name"] for a in asked.approvals] == \
        ["test-analyst"]
    done = approve(ws, asked.id, signer=people["lead"])
    assert done.status == "in-force" and done.batch["separation"] is False
    out = releases.export_release(ws, "rm", tmp_path / "r.zip")
    keys = keys_folder(tmp_path / "keys", session_identity, people["lead"])
    assert verify_release(out, keys).approvals_trusted == 2
    assert verify_workspace(ws).ok


def test_one_approval_by_an_approver_takes_effect_at_once(team):
    ws, people = team
    policy.set(ws, "release.approvals", 1)
    rel = release(ws, "rm@1", signer=people["lead"])
    assert rel.status == "in-force" and _kinds(ws) == ["release"]
    asked = release(ws, "rm@2", signer=people["rita"])  # a reviewer: an approver must approve
    assert asked.status == "pending"
    assert approve(ws, asked.id, signer=people["bo"]).status == "in-force"
    assert _kinds(ws) == ["release", "release-request", "release"]
    assert verify_workspace(ws).ok


def test_a_rejected_request_never_takes_effect(team):
    ws, people = team
    asked = release(ws, "rm@1", signer=people["rita"])
    with pytest.raises(WorkstationError, match="needs a reason"):
        reject(ws, asked.id, "  ", signer=people["lead"])
    with pytest.raises(WorkstationError, match="is not an approver"):
        reject(ws, asked.id, "no", signer=people["rita"])
    approve(ws, asked.id, signer=people["lead"])
    gone = reject(ws, asked.id, "the jailbreak suite was not run", signer=people["bo"])
    assert gone.status == "rejected" and gone.rejection["name"] == "bo"
    with pytest.raises(WorkstationError, match="was rejected by bo: the jailbreak suite"):
        approve(ws, asked.id, signer=people["bo"])
    with pytest.raises(WorkstationError, match="is rejected, not pending"):
        reject(ws, asked.id, "again", signer=people["lead"])
    assert current_release(ws, "rm") is None and releases.list_releases(ws) == []
    again = release(ws, "rm@1", signer=people["rita"])  # a new request may follow
    assert again.id == asked.id + 1
    assert [(r.id, r.status) for r in releases.release_history(ws)] == \
        [(asked.id, "rejected"), (again.id, "pending")]
    assert verify_workspace(ws).ok


def test_requests_that_cannot_stand(team, make_identity):
    ws, people = team
    first = release(ws, "rm@1")
    with pytest.raises(WorkstationError, match="release 1 already requests rm@1"):
        release(ws, "rm@1", signer=people["lead"])
    other = release(ws, "rm@2", signer=people["rita"])
    for who in ("lead", "bo"):
        approve(ws, first.id, signer=people[who])
    # rm@1 took effect after rm@2 was requested: rm@2's evidence is stale.
    assert releases.get_release(ws, other.id).status == "outdated"
    with pytest.raises(WorkstationError, match="is outdated"):
        approve(ws, other.id, signer=people["lead"])
    assert reject(ws, other.id, "outdated", signer=people["lead"]).status == "rejected"
    with pytest.raises(WorkstationError, match="no release request 99"):
        approve(ws, 99, signer=people["lead"])
    stranger = make_identity("stranger")  # never trusted here
    with pytest.raises(WorkstationError, match="'stranger' .* is not trusted in this workspace"):
        release(ws, "rm@3", signer=stranger)


def test_forcing_past_a_failed_gate_needs_an_approver_and_is_signed_as_forced(
        team, monkeypatch, tmp_path):
    import workstation.regression as regression

    ws, people = team
    failing = {"gate": {"pass": False, "reasons": ["auroc fell 0.1 in Crime"]}}
    monkeypatch.setattr(regression, "gate_report_for_release", lambda *a, **k: failing)
    with pytest.raises(WorkstationError, match="gate failed.*auroc fell 0.1 in Crime"):
        release(ws, "rm@2", signer=people["lead"])
    with pytest.raises(WorkstationError, match="needs an approver; identity 'rita'"):
        release(ws, "rm@2", signer=people["rita"], force=True, force_reason="hotfix")
    asked = release(ws, "rm@2", signer=people["lead"], force=True, force_reason="hotfix")
    assert asked.forced and asked.batch["gate"]["force_reason"] == "hotfix"
    approve(ws, asked.id, signer=people["bo"])
    done = approve(ws, asked.id)
    out = releases.export_release(ws, "rm", tmp_path / "forced.zip")
    result = verify_release(out, keys_folder(tmp_path / "k", people["bo"]), min_approvals=1,
                            allow_untrusted=True)
    assert done.forced and result.forced is True


def test_an_approval_by_a_key_revoked_since_does_not_count(team):
    ws, people = team
    asked = release(ws, "rm@1", signer=people["rita"])
    approve(ws, asked.id, signer=people["lead"])
    trust.revoke(ws, people["lead"].key_id, "left the team")
    assert approve(ws, asked.id, signer=people["bo"]).status == "pending"
    rel = approve(ws, asked.id)  # the owner
    assert rel.status == "in-force"
    assert [a["name"] for a in rel.approvals] == ["bo", "test-analyst"]
    assert verify_workspace(ws).ok


# -- verify inside the workspace ---------------------------------------------------------


def test_verify_names_a_changed_request_or_approval(approved):
    ws, people, _, _ = approved
    asked = release(ws, "rm@2", signer=people["rita"])
    approve(ws, asked.id, signer=people["lead"])
    assert verify_workspace(ws).ok
    changed = dict(asked.batch, notes="approved by the board")
    ws.execute("UPDATE release_requests SET request = ? WHERE id = ?",
               [canonical_json(changed), asked.id])
    failures = verify_workspace(ws).failures
    assert any(f"does not match release request {asked.id}" in f for f in failures), failures
    ws.execute("UPDATE release_requests SET request = ? WHERE id = ?",
               [canonical_json(asked.batch), asked.id])
    rel = current_release(ws, "rm")
    batch = dict(rel.batch, approvals=rel.batch["approvals"][::-1])
    ws.execute("UPDATE releases SET batch = ? WHERE id = ?", [canonical_json(batch), rel.id])
    assert any("signature does not match" in f for f in verify_workspace(ws).failures)


def test_verify_checks_the_review_heads_a_release_names(ws, tmp_path):
    from tests.test_releases import add_labels, relabel

    add_version(ws, "rm", 1)
    first = add_labels(ws, 2)
    head = relabel(ws, first)
    assert release(ws, "rm@1").batch["label_edits"]["head"] == head
    assert verify_workspace(ws).ok
    ws.execute("DELETE FROM review_log")  # the log cut after the release
    ws.execute("DELETE FROM example_state")
    failures = verify_workspace(ws).failures
    assert f"release 1 names review-log head {head[:12]}…, which is not in the review log " \
           "(the log was changed or cut after the release)" in failures


# -- reading a release -------------------------------------------------------------------


def _zip(members: dict[str, bytes], sizes: dict[str, int]) -> bytes:
    """A zip whose central directory claims ``sizes`` (the data itself is small)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    data = bytearray(buf.getvalue())
    at = data.index(b"PK\x01\x02")  # the central directory: one 46-byte header + name each
    while data[at:at + 4] == b"PK\x01\x02":
        name_len, extra_len, comment_len = struct.unpack("<HHH", data[at + 28:at + 34])
        name = data[at + 46:at + 46 + name_len].decode()
        if name in sizes:
            data[at + 24:at + 28] = struct.pack("<I", sizes[name])  # uncompressed size
        at += 46 + name_len + extra_len + comment_len
    return bytes(data)


@pytest.mark.parametrize("name,size", [("manifest.json", (256 << 20) + 1),
                                       ("signature.json", (16 << 20) + 1)])
def test_a_zip_claiming_more_than_a_release_holds_is_refused_before_reading(tmp_path, name,
                                                                          size):
    members = {n: b"{}\n" for n in RELEASE_FILES}
    path = tmp_path / "big.zip"
    path.write_bytes(_zip(members, {name: size}))
    result = verify_release(path, allow_untrusted=True)
    assert not result.ok
    assert f"unpacks to more than a release can hold: {name} is {size:,} bytes" in \
        result.reasons[0]


def test_release_size_limits(tmp_path):
    from workstation.models.inspection import MAX_DECLARED_BYTES

    assert MAX_FILE_BYTES["model.onnx"] == MAX_DECLARED_BYTES  # protobuf's limit
    folder = tmp_path / "r"
    folder.mkdir()
    for name in RELEASE_FILES:
        (folder / name).write_bytes(b"{}\n")
    with open(folder / "governance.json", "r+b") as f:
        f.truncate((256 << 20) + 1)  # sparse: nothing is written, nothing read
    result = verify_release(folder, allow_untrusted=True)
    assert "governance.json is 268,435,457 bytes" in result.reasons[0]


# -- the CLI -----------------------------------------------------------------------------


def cli(capsys, *args: str) -> tuple[int, dict, str]:
    code = main([*args, "--json"])
    captured = capsys.readouterr()
    return code, json.loads(captured.out.strip().splitlines()[-1]), captured.err


def test_cli_release_approve_reject_releases_and_verify_release(team, tmp_path, capsys):
    ws, people = team
    path = str(ws.path)
    ws.close()
    w = ["--workspace", path]
    code, asked, _ = cli(capsys, *w, "release", "rm@1", "--notes", "first")
    assert code == 0 and asked["status"] == "pending" and asked["approvals_required"] == 2
    assert (asked["release_id"], asked["requested_by"], asked["approvals"]) == \
        (1, "test-analyst", [])
    code, refused, err = cli(capsys, *w, "approve", "1")
    assert code == 1 and "cannot approve it too" in err and refused["ok"] is False
    code, once, _ = cli(capsys, *w, "--identity", "lead", "approve", "1")
    assert (once["decision"], once["status"], [a["name"] for a in once["approvals"]]) == \
        ("approve", "pending", ["lead"])
    code, done, _ = cli(capsys, *w, "--identity", "bo", "approve", "1")
    assert (done["status"], done["current"], done["key_id"]) == \
        ("in-force", True, people["bo"].key_id)
    cli(capsys, *w, "--identity", "rita", "release", "rm@2")
    code, _, err = cli(capsys, *w, "--identity", "lead", "approve", "2", "--reject")
    assert code == 1 and "needs a reason" in err
    code, _, err = cli(capsys, *w, "approve", "2", "--reason", "why")
    assert code == 2 and "--reason goes with --reject" in err
    code, gone, _ = cli(capsys, *w, "--identity", "lead", "approve", "2", "--reject",
                        "--reason", "not audited on the jailbreaks")
    assert (gone["decision"], gone["status"], gone["rejection"]["reason"]) == \
        ("reject", "rejected", "not audited on the jailbreaks")
    code, listed, _ = cli(capsys, *w, "releases")
    assert [(r["id"], r["version"], r["status"]) for r in listed["releases"]] == \
        [(1, 1, "in-force"), (2, 2, "rejected")]
    assert listed["releases"][0]["approvals_required"] == 2

    out = tmp_path / "rm.zip"
    cli(capsys, *w, "export-release", "rm", str(out))
    code, checked, err = cli(capsys, "verify-release", str(out))
    assert code == 1 and checked["ok"] is False and checked["reasons"] == ["no trusted key given"]
    assert "no trusted key given" in err
    code, loose, _ = cli(capsys, "verify-release", str(out), "--allow-untrusted")
    assert code == 0 and loose["ok"] is True and loose["trusted"] is False
    keys = keys_folder(tmp_path / "keys", people["lead"], people["bo"])
    code, trusted, _ = cli(capsys, "verify-release", str(out), "--trust", str(keys))
    assert code == 0 and trusted["trusted"] is True and trusted["approvals_trusted"] == 2
    code, _, err = cli(capsys, "verify-release", str(out), "--trust", str(keys),
                       "--min-approvals", "3")
    assert code == 1 and "2 of the 3 approvals required" in err


def test_cli_shows_approvers_and_verifiers_that_a_request_was_forced(
        team, session_identity, monkeypatch, tmp_path, capsys):
    """An approver on another laptop reads `releases` before signing: a
    forced request must say so, with its reason, there and in verify-release."""
    import workstation.regression as regression

    ws, people = team
    failing = {"gate": {"pass": False, "reasons": ["accuracy fell 0.05 in Physical harm"]}}
    monkeypatch.setattr(regression, "gate_report_for_release", lambda *a, **k: failing)
    w = ["--workspace", str(ws.path)]
    ws.close()

    def text(*args: str) -> str:
        assert main([*w, *args]) == 0
        return capsys.readouterr().out

    reason = "2 of 37 responses moved just past the threshold"
    forced_line = f"forced past a failed regression gate: {reason}"
    assert forced_line in text("--identity", "lead", "release", "rm@2", "--force", reason)
    assert "pending" in text("releases") and forced_line in text("releases")
    assert forced_line in text("--identity", "bo", "approve", "1")
    assert "is in force" in text("approve", "1")  # the owner: two approvers besides lead
    listed = text("releases")
    assert "in-force" in listed and forced_line in listed
    out = tmp_path / "rm.zip"
    text("export-release", "rm", str(out))
    keys = keys_folder(tmp_path / "keys", people["bo"], session_identity)
    checked = text("verify-release", str(out), "--trust", str(keys))
    assert checked.startswith("ok: rm@2") and forced_line in checked
    code, as_json, _ = cli(capsys, "verify-release", str(out), "--trust", str(keys))
    assert (as_json["forced"], as_json["force_reason"]) == (True, reason)
