"""Releases: governance batches, signing, rollback, export and offline verification."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from onnx import TensorProto, helper, numpy_helper

from workstation import governance, ledger, releases, review, trust
from workstation.errors import WorkstationError
from workstation.hashing import sha256_bytes
from workstation.releases import (current_release, export_release, list_releases, release,
                                  rollback, verify_release)
from workstation.review import Edit
from workstation.verify import verify_workspace
from workstation.workspace import Workspace

# -- fixtures ----------------------------------------------------------------


def _onnx_bytes(bias: float) -> bytes:
    """A tiny real reward model: score = sum(x) + bias, for x of shape [N, 4]."""
    weights = numpy_helper.from_array(np.ones((4, 1), np.float32), "w")
    offset = numpy_helper.from_array(np.array([bias], np.float32), "b")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["xw"]),
         helper.make_node("Add", ["xw", "b"], ["score"])], "rm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, [None, 1])],
        initializer=[weights, offset])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def add_version(ws: Workspace, model: str, version: int, manifest: dict | None = None,
                parent_id: int | None = None) -> int:
    """Register a model version the way the registry does, with plain SQL."""
    data = _onnx_bytes(float(version))
    sha = sha256_bytes(data)
    ws.execute("INSERT INTO blobs VALUES (?, ?, ?) ON CONFLICT DO NOTHING", [sha, len(data), data])
    version_id = ws.next_id("model_versions")
    ws.execute("INSERT INTO model_versions VALUES (?, ?, ?, ?, 'features', ?, 'eng', "
               "'2026-01-01T00:00:00+00:00', ?)",
               [version_id, model, version, sha, parent_id,
                json.dumps(manifest or {"input": {"kind": "features", "dim": 4}})])
    return version_id


def add_labels(ws: Workspace, n: int) -> int:
    """A labeled-response dataset of ``n`` examples; returns the first example id."""
    dataset_id = ws.next_id("datasets")
    ws.execute("INSERT INTO datasets VALUES (?, ?, 'labels', 'test', 'abc', NULL, "
               "'2026-01-01', ?, NULL)", [dataset_id, f"labels-{dataset_id}", n])
    first = ws.next_id("examples")
    for i in range(n):
        ws.execute("INSERT INTO examples (id, dataset_id, source_sha256, source_index, prompt, "
                   "response, label) VALUES (?, ?, 'abc', ?, 'q', ?, true)",
                   [first + i, dataset_id, i, f"r{i}"])
    return first


def relabel(ws: Workspace, example_id: int) -> str:
    [change] = review.apply(ws, [Edit(example_id, "label", "unsafe", "gives instructions")])
    return change.hash


@pytest.fixture
def rm(ws):
    """A workspace with rm@1 and rm@2 registered."""
    v1 = add_version(ws, "rm", 1)
    add_version(ws, "rm", 2, parent_id=v1)
    return ws


@pytest.fixture
def released(rm, tmp_path):
    """rm@1 released, then exported to a folder; returns (ws, release, folder)."""
    rel = release(rm, "rm@1", notes="first release")
    return rm, rel, export_release(rm, "rm", tmp_path / "rm-1")


def _counts(ws: Workspace) -> tuple[int, int, int]:
    return tuple(ws.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                 for t in ("releases", "ledger", "trust"))


def _flip(data: bytes, i: int) -> bytes:
    return data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1:]


@pytest.fixture
def gate_says(monkeypatch):
    """``gate_says(report)``: the regression report the release computes is
    ``report`` (the real one needs audited datasets; test_regression has it)."""
    import workstation.regression as regression

    def say(report):
        monkeypatch.setattr(regression, "gate_report_for_release",
                            lambda *_a, **_k: json.loads(json.dumps(report)))
    return say


# -- release -------------------------------------------------------------------


def test_first_release_writes_a_signed_batch_and_ledger_rows(rm, session_identity):
    rel = release(rm, "rm@1", notes="first release")
    assert (rel.model, rel.version, rel.current, rel.from_version) == ("rm", 1, True, None)
    batch = rel.batch
    assert batch["from_version"] is None
    assert batch["to_version"]["sha256"] == rel.sha256 == \
        rm.execute("SELECT sha256 FROM model_versions WHERE id = 1").fetchone()[0]
    assert batch["approved_by"] == "test-analyst" and batch["notes"] == "first release"
    assert batch["approver_key_id"] == session_identity.key_id == rel.key_id
    assert batch["format"] == "workstation.governance-batch/3"
    assert batch["workspace_id"] == rm.id
    assert batch["patches"] == [] and batch["regression_report"] is None  # nothing to compare
    assert batch["gate"] == {"pass": None, "forced": False, "force_reason": None}
    # One approval (the policy's default), by the requester, an approver: in force at once.
    assert (batch["approvals_required"], batch["separation"]) == (1, True)
    assert batch["requested_by"] == {"name": "test-analyst", "key_id": rel.key_id,
                                     "public_pem": session_identity.public_pem}
    assert [(a["name"], a["key_id"]) for a in batch["approvals"]] == \
        [("test-analyst", rel.key_id)]
    assert [k["key_id"] for k in batch["trust_store"]] == [rel.key_id]
    assert (rel.status, rel.approvals_required, rel.requested_by) == \
        ("in-force", 1, "test-analyst")
    entries = ledger.entries(rm)
    assert [e["kind"] for e in entries] == ["trust-owner", "release"]  # the first signer owns it
    assert all(e["signer_key_id"] == rel.key_id and e["signature"] for e in entries)
    [key] = trust.list_keys(rm)
    assert key.key_id == rel.key_id and len(key.key_id) == 16 and key.active and key.owner
    assert current_release(rm, "rm") == rel
    report = verify_workspace(rm)
    assert report.ok, report.failures
    assert report.checked["releases"] == 1 and report.checked["ledger_rows"] == 2


def test_release_needs_an_exact_existing_version(rm):
    with pytest.raises(WorkstationError, match="rm@VERSION"):
        release(rm, "rm")
    with pytest.raises(WorkstationError, match="no model version rm@7"):
        release(rm, "rm@7")
    with pytest.raises(WorkstationError, match="no model version with id 99"):
        release(rm, 99)
    release(rm, 2)  # by version id
    with pytest.raises(WorkstationError, match="already the current release"):
        release(rm, "rm@2")
    assert _counts(rm)[0] == 1


def test_batch_lists_label_edits_since_the_previous_release_and_patches(rm):
    first = add_labels(rm, 4)
    relabel(rm, first)
    v1 = release(rm, "rm@1")
    assert v1.batch["label_edits"]["count"] == 1
    assert v1.batch["label_edits"]["by_field"] == {"label": 1}
    assert v1.batch["label_edits"]["basis"] == "review-head-at-release"
    relabel(rm, first + 1)
    relabel(rm, first + 2)
    patch = {"kind": "suppression", "center_example": first + 1, "radius": 0.3}
    add_version(rm, "rm", 3, manifest={"patches": [patch]})
    v3 = release(rm, "rm@3")
    edits = v3.batch["label_edits"]
    assert edits["from_head"] == v1.batch["label_edits"]["head"]
    assert edits["head"] == review.head_hash(rm) and edits["count"] == 2
    assert [(e["seq"], e["example_id"], e["field"], e["old"], e["new"]) for e in edits["edits"]] \
        == [(2, first + 1, "label", "safe", "unsafe"), (3, first + 2, "label", "safe", "unsafe")]
    assert v3.batch["patches"] == [patch]
    assert v3.batch["from_version"]["version"] == 1 and v3.from_version == 1


def test_dataset_snapshot_in_the_manifest_bounds_the_label_edits(rm):
    first = add_labels(rm, 3)
    snapshot = [relabel(rm, first + i) for i in range(3)][1]
    add_version(rm, "rm", 3, manifest={"lineage": {"dataset_snapshot": snapshot},
                                       "patch": {"kind": "suppression"}})
    edits = release(rm, "rm@3").batch["label_edits"]
    assert edits["basis"] == "model-dataset-snapshot" and edits["head"] == snapshot
    assert [e["seq"] for e in edits["edits"]] == [1, 2]
    add_version(rm, "rm", 4, manifest={"lineage": {"dataset_snapshot": "f" * 64}})
    with pytest.raises(WorkstationError, match="not in this workspace's review log"):
        release(rm, "rm@4")


# -- the regression gate ------------------------------------------------------


def test_failed_gate_refuses_unless_forced_with_a_reason(rm, gate_says):
    report = {"gate": {"pass": False, "broken": 3}, "suite": "hh"}
    gate_says(report)
    with pytest.raises(WorkstationError, match="regression gate failed"):
        release(rm, "rm@1")
    with pytest.raises(WorkstationError, match="needs a reason"):
        release(rm, "rm@1", force=True)
    assert _counts(rm) == (0, 0, 0)
    rel = release(rm, "rm@1", force=True, force_reason="the 3 breaks are mislabeled examples")
    assert rel.batch["regression_report"] == report
    assert rel.batch["gate"] == {"pass": False, "forced": True,
                                 "force_reason": "the 3 breaks are mislabeled examples"}
    assert ledger.entries(rm, kind="release")[0]["payload"]["forced"] is True


def test_passed_gate_is_recorded(rm, gate_says):
    gate_says({"gate": {"pass": True}, "fixed": 5})
    rel = release(rm, "rm@1")
    assert rel.batch["gate"]["pass"] is True and rel.batch["gate"]["forced"] is False
    assert rel.batch["regression_report"] == {"gate": {"pass": True}, "fixed": 5}
    gate_says({"gate": {"pass": "yes"}})
    with pytest.raises(WorkstationError, match="true or false"):
        release(rm, "rm@2")


def test_the_release_computes_the_gate_itself(rm, monkeypatch):
    """No caller hands in the report: the release compares rm@2 with the
    release in force, and a gate it cannot compute refuses the release."""
    import workstation.regression as regression

    release(rm, "rm@1")
    rel = release(rm, "rm@2")
    report = rel.batch["regression_report"]
    assert (report["candidate"]["ref"], report["baseline"]["ref"]) == ("rm@2", "rm@1")
    assert rel.batch["gate"] == {"pass": True, "forced": False, "force_reason": None}
    rollback(rm, "rm")

    def cannot(*_a, **_k):
        raise WorkstationError("cannot score: the encoder is missing")
    monkeypatch.setattr(regression, "gate_report_for_release", cannot)
    before = _counts(rm)
    with pytest.raises(WorkstationError, match="encoder is missing"):
        release(rm, "rm@2")
    assert _counts(rm) == before and current_release(rm, "rm").version == 1


# -- transactions --------------------------------------------------------------


def test_a_failure_while_signing_leaves_nothing_behind(rm, monkeypatch):
    def broken_signer(key, message):
        raise RuntimeError("hardware token unplugged")

    monkeypatch.setattr(governance, "_sign", broken_signer)
    with pytest.raises(RuntimeError):
        release(rm, "rm@1")
    assert _counts(rm) == (0, 0, 0)
    assert current_release(rm, "rm") is None
    monkeypatch.undo()
    assert release(rm, "rm@1").id == 1  # and the workspace still works


def test_a_failed_rollback_leaves_the_ledger_unchanged(rm, monkeypatch):
    release(rm, "rm@1")
    release(rm, "rm@2")
    real_append = ledger.append

    def append_then_fail(*args, **kwargs):
        real_append(*args, **kwargs)
        raise RuntimeError("disk full")

    monkeypatch.setattr(ledger, "append", append_then_fail)
    with pytest.raises(RuntimeError):
        rollback(rm, "rm")
    assert current_release(rm, "rm").version == 2
    assert len(ledger.entries(rm)) == 3


# -- current release and rollback ------------------------------------------------


def test_rollback_chain(rm):
    with pytest.raises(WorkstationError, match="no release to roll back"):
        rollback(rm, "rm")
    r1 = release(rm, "rm@1")
    r2 = release(rm, "rm@2", notes="retrained")
    assert current_release(rm, "rm").id == r2.id and r2.from_version == 1
    back = rollback(rm, "rm", reason="regressed on jailbreaks")
    assert back.id == r1.id and back.current
    assert current_release(rm, "rm").version == 1
    [entry] = ledger.entries(rm, kind="rollback")
    assert entry["actor"] == "test-analyst" and entry["signature"]
    assert entry["payload"] == {"model": "rm", "from_release_id": r2.id, "from_version": 2,
                                "to_release_id": r1.id, "to_version": 1,
                                "reason": "regressed on jailbreaks"}
    with pytest.raises(WorkstationError, match="no earlier release"):
        rollback(rm, "rm")
    assert current_release(rm, "rm").version == 1
    assert [(r.version, r.current) for r in list_releases(rm, "rm")] == [(1, True), (2, False)]
    assert verify_workspace(rm).ok


def test_release_after_rollback_and_models_are_independent(rm):
    add_version(rm, "other", 1)
    release(rm, "rm@1")
    release(rm, "rm@2")
    release(rm, "other@1")
    rollback(rm, "rm")
    again = release(rm, "rm@2", notes="fixed the regression")
    assert again.from_version == 1 and again.id == 4
    assert current_release(rm, "rm").id == 4
    assert current_release(rm, "other").version == 1
    assert current_release(rm, "nothing") is None
    assert [r.model for r in list_releases(rm, "other")] == ["other"]
    assert [(r.id, r.current) for r in list_releases(rm)] == \
        [(1, False), (2, False), (3, True), (4, True)]
    with pytest.raises(WorkstationError, match="model name"):
        rollback(rm, "rm@2")


# -- export ------------------------------------------------------------------------


def test_export_folder_is_byte_identical_and_runnable(released, tmp_path):
    ws, rel, folder = released
    assert sorted(p.name for p in folder.iterdir()) == sorted(releases.RELEASE_FILES)
    onnx_bytes = (folder / "model.onnx").read_bytes()
    assert sha256_bytes(onnx_bytes) == rel.sha256
    blob = ws.execute("SELECT data FROM blobs WHERE sha256 = ?", [rel.sha256]).fetchone()[0]
    assert onnx_bytes == bytes(blob)
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    [score] = session.run(None, {"x": np.ones((1, 4), np.float32)})
    assert score[0, 0] == pytest.approx(5.0)  # sum of four ones + bias 1 (version 1)
    assert json.loads((folder / "governance.json").read_text()) == rel.batch
    signature = json.loads((folder / "signature.json").read_text())
    assert signature["algorithm"] == "ed25519" and signature["key_id"] == rel.key_id
    assert signature["files"]["model.onnx"] == rel.sha256


def test_verify_folder_with_and_without_a_trusted_key(released, tmp_path):
    ws, rel, folder = released
    refused = verify_release(folder)
    assert not refused.ok and refused.reasons == ["no trusted key given"]
    assert not refused.trusted
    untrusted = verify_release(folder, allow_untrusted=True)
    assert untrusted.ok, untrusted.reasons
    assert not untrusted.trusted and "no key was independently trusted" in untrusted.warnings[0]
    assert (untrusted.model, untrusted.version, untrusted.key_id) == ("rm", 1, rel.key_id)
    pub = releases.export_public_key(ws, tmp_path / "signer.pub", rel.key_id)
    trusted = verify_release(folder, trust=pub)
    assert trusted.ok and trusted.trusted and trusted.warnings == []
    assert trusted.to_json()["files"]["model.onnx"] == rel.sha256
    assert (trusted.approvals_required, trusted.approvals_trusted) == (1, 1)
    assert [(a["key_id"], a["trusted"]) for a in trusted.approvals] == [(rel.key_id, True)]


def test_export_zip_verifies_and_is_reproducible(released, tmp_path):
    ws, rel, _ = released
    first = export_release(ws, "rm@1", tmp_path / "rm.zip")
    with zipfile.ZipFile(first) as zf:
        assert sorted(zf.namelist()) == sorted(releases.RELEASE_FILES)
    result = verify_release(first, releases.export_public_key(ws, tmp_path / "k.pub", rel.key_id))
    assert result.ok, result.reasons
    second = export_release(ws, "rm@1", tmp_path / "again.zip")
    assert first.read_bytes() == second.read_bytes()


def test_a_zipped_release_folder_verifies(released, tmp_path):
    _, _, folder = released
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path in folder.iterdir():
            zf.writestr(f"rm-1/{path.name}", path.read_bytes())
    (tmp_path / "wrapped.zip").write_bytes(buf.getvalue())
    assert verify_release(tmp_path / "wrapped.zip", allow_untrusted=True).ok


def test_export_refusals(rm, tmp_path):
    with pytest.raises(WorkstationError, match="no current release"):
        export_release(rm, "rm", tmp_path / "a")
    release(rm, "rm@1")
    with pytest.raises(WorkstationError, match="never released"):
        export_release(rm, "rm@2", tmp_path / "a")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("keep me")
    with pytest.raises(WorkstationError, match="already exists"):
        export_release(rm, "rm", tmp_path / "taken")
    assert (tmp_path / "taken" / "x").read_text() == "keep me"
    (tmp_path / "empty").mkdir()
    assert verify_release(export_release(rm, "rm", tmp_path / "empty"), allow_untrusted=True).ok


def test_rolled_back_release_still_exports(rm, tmp_path):
    release(rm, "rm@1")
    release(rm, "rm@2")
    rollback(rm, "rm")
    result = verify_release(export_release(rm, "rm@2", tmp_path / "old.zip"), allow_untrusted=True)
    assert result.ok and result.version == 2
    assert verify_release(export_release(rm, "rm", tmp_path / "cur")).version == 1
    assert [r.status for r in list_releases(rm, "rm")] == ["in-force", "rolled-back"]


# -- tampering -----------------------------------------------------------------------


@pytest.mark.parametrize("name", releases.RELEASE_FILES)
def test_one_flipped_byte_in_any_file_is_refused(released, name):
    _, _, folder = released
    path = folder / name
    data = path.read_bytes()
    path.write_bytes(_flip(data, len(data) // 2))
    result = verify_release(folder)
    assert not result.ok
    assert any(name in reason for reason in result.reasons), result.reasons


@pytest.mark.parametrize("name", releases.RELEASE_FILES)
def test_one_flipped_byte_inside_a_zip_member_is_refused(released, tmp_path, name):
    ws, _, _ = released
    files = releases.release_files(ws, list_releases(ws)[0])
    files[name] = _flip(files[name], 0)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for member, data in files.items():
            zf.writestr(member, data)
    (tmp_path / "bad.zip").write_bytes(buf.getvalue())
    result = verify_release(tmp_path / "bad.zip")
    assert not result.ok and any(name in r for r in result.reasons), result.reasons


def test_every_single_byte_change_is_refused(released):
    """Exhaustive: flipping the low bit of any byte of any file fails verification."""
    ws, rel, _ = released
    files = releases.release_files(ws, rel)
    assert releases.verify_release_files(files, allow_untrusted=True).ok
    for name, data in files.items():
        for i in range(len(data)):
            result = releases.verify_release_files({**files, name: _flip(data, i)},
                                                   allow_untrusted=True)
            assert not result.ok, f"{name} byte {i} changed but verified"
            assert any(name in r for r in result.reasons), (name, i, result.reasons)


def test_missing_and_extra_files_are_refused(released):
    _, _, folder = released
    (folder / "notes.txt").write_text("unsigned")
    assert "not covered by the signature: notes.txt" in verify_release(folder).reasons[0]
    (folder / "notes.txt").unlink()
    (folder / "governance.json").unlink()
    assert verify_release(folder).reasons == ["missing file: governance.json"]


@pytest.mark.parametrize("evil", ["../escape.txt", "/tmp/escape.txt", "rm/../../escape.txt",
                                  "..\\escape.txt", "C:/escape.txt"])
def test_zip_slip_is_refused_without_extracting(released, tmp_path, evil):
    ws, rel, _ = released
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for member, data in releases.release_files(ws, rel).items():
            zf.writestr(member, data)
        zf.writestr(evil, b"owned")
    target = tmp_path / "inner" / "slip.zip"
    target.parent.mkdir()
    target.write_bytes(buf.getvalue())
    result = verify_release(target)
    assert not result.ok and "would escape" in result.reasons[0]
    assert not (tmp_path / "escape.txt").exists()
    assert sorted(p.name for p in target.parent.iterdir()) == ["slip.zip"]


def test_a_different_trusted_key_is_refused(released, tmp_path):
    _, _, folder = released
    other = Ed25519PrivateKey.generate().public_key()
    pub = tmp_path / "other.pub"
    pub.write_bytes(other.public_bytes(serialization.Encoding.PEM,
                                       serialization.PublicFormat.SubjectPublicKeyInfo))
    result = verify_release(folder, trust=pub)
    assert not result.ok and not result.trusted
    assert result.reasons == [f"signed by key {result.key_id}, which is not a trusted key",
                              "0 of the 1 approvals required are by trusted keys"]


def test_a_release_re_signed_with_another_key_is_refused_by_the_trusted_key(released, tmp_path):
    """An attacker who swaps model.onnx and re-signs with their own key fails the trusted check."""
    ws, rel, folder = released
    trusted = releases.export_public_key(ws, tmp_path / "trusted.pub", rel.key_id)
    files = {p.name: p.read_bytes() for p in folder.iterdir()}
    files["model.onnx"] = _onnx_bytes(-100.0)
    doc = json.loads(files["signature.json"])
    doc["statement"]["files"]["model.onnx"] = sha256_bytes(files["model.onnx"])
    doc["files"] = doc["statement"]["files"]
    attacker = Ed25519PrivateKey.generate()
    doc["public_key_pem"] = releases.public_pem_of(attacker.public_key())
    doc["key_id"] = doc["statement"]["key_id"] = releases.key_id_of(attacker.public_key())
    doc["signature"] = attacker.sign(
        releases.canonical_json(doc["statement"]).encode()).hex()
    files["signature.json"] = releases.json_file(doc)
    assert releases.verify_release_files(files, allow_untrusted=True).reasons == [
        "governance.json does not describe the signed model.onnx"]
    for name, data in files.items():
        (folder / name).write_bytes(data)
    result = verify_release(folder, trust=trusted)
    assert not result.ok and "does not describe the signed model.onnx" in result.reasons[0]
    # Re-signed without touching the rest: the approvals do not include the new key.
    doc["statement"]["files"]["model.onnx"] = rel.sha256
    doc["files"] = doc["statement"]["files"]
    doc["signature"] = attacker.sign(releases.canonical_json(doc["statement"]).encode()).hex()
    (folder / "model.onnx").write_bytes(ws.execute("SELECT data FROM blobs WHERE sha256 = ?",
                                                   [rel.sha256]).fetchone()[0])
    (folder / "signature.json").write_bytes(releases.json_file(doc))
    result = verify_release(folder, trust=trusted)
    assert not result.ok and "made none of the approvals" in result.reasons[0]


# -- malformed input never raises -----------------------------------------------------


def _with_signature(folder: Path, mutate) -> Path:
    path = folder / "signature.json"
    doc = json.loads(path.read_text())
    mutate(doc)
    path.write_bytes(releases.json_file(doc))
    return folder


def test_malformed_signature_files_give_reasons(released):
    _, _, folder = released
    good = (folder / "signature.json").read_bytes()
    cases = {
        b"not json at all": "not valid JSON",
        b"\xff\xfe": "not valid JSON",
        b"[1, 2, 3]\n": "expected fields",
        b'{"a": NaN}': "expected fields",
    }
    for data, reason in cases.items():
        (folder / "signature.json").write_bytes(data)
        result = verify_release(folder)
        assert not result.ok and reason in result.reasons[0], (data, result.reasons)
    rsa_pem = rsa.generate_private_key(65537, 2048).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    mutations = {
        "not 64 bytes of lower-case hex": lambda d: d.update(signature="zz" * 64),
        "lower-case hex": lambda d: d.update(signature=d["signature"].upper()),
        "algorithm must be ed25519": lambda d: d.update(algorithm="rsa"),
        "not an Ed25519 key": lambda d: d.update(public_key_pem=rsa_pem),
        "not a public-key PEM": lambda d: d.update(public_key_pem="-----BEGIN nonsense"),
        "do not belong together": lambda d: d.update(key_id="0" * 16),
        "statement is missing": lambda d: d.update(statement="hello"),
        "does not list the sha256": lambda d: d["statement"].update(files={"model.onnx": 1}),
    }
    for reason, mutate in mutations.items():
        (folder / "signature.json").write_bytes(good)
        result = verify_release(_with_signature(folder, mutate))
        assert not result.ok and reason in result.reasons[0], (reason, result.reasons)


def test_bad_paths_and_bad_trusted_keys_give_reasons(released, tmp_path):
    ws, _, folder = released
    assert "no release at" in verify_release(tmp_path / "nowhere").reasons[0]
    (tmp_path / "plain.txt").write_text("hello")
    assert "neither a release folder nor a zip" in verify_release(tmp_path / "plain.txt").reasons[0]
    zipped = export_release(ws, "rm", tmp_path / "r.zip")
    data = zipped.read_bytes()
    (tmp_path / "cut.zip").write_bytes(data[: len(data) - 30])
    assert not verify_release(tmp_path / "cut.zip").ok
    # Damage anywhere in the container: a result, never a traceback. (Bytes of zip
    # metadata such as timestamps are not signed, so some flips still verify.)
    refused = 0
    for i in range(0, len(data), max(1, len(data) // 60)):
        (tmp_path / "noise.zip").write_bytes(_flip(data, i))
        result = verify_release(tmp_path / "noise.zip", allow_untrusted=True)
        assert result.ok or result.reasons, i
        refused += not result.ok
    assert refused > 30
    private = tmp_path / "k.pem"
    private.write_bytes(Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    (tmp_path / "junk.pub").write_text("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    rsa_pub = tmp_path / "rsa.pub"
    rsa_pub.write_bytes(rsa.generate_private_key(65537, 2048).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    (tmp_path / "empty-keys").mkdir()
    expected = {private: "is a private key", tmp_path / "junk.pub": "not a public-key PEM",
                rsa_pub: "not an Ed25519 key", tmp_path / "absent.pub": "cannot read trusted key",
                tmp_path / "empty-keys": "no .pem or .pub file in",
                tmp_path: "junk.pub is not a public-key PEM"}  # a folder: every key in it
    for key, reason in expected.items():
        result = verify_release(folder, trust=key)
        assert not result.ok and reason in result.reasons[0], (key, result.reasons)


# -- who signs ----------------------------------------------------------------------------


def test_the_same_identity_signs_in_another_workspace(released, tmp_path, session_identity):
    """A release is signed by the analyst's identity, not by a key inside the workspace."""
    ws, rel, _ = released
    pub = releases.export_public_key(ws, tmp_path / "a.pub", rel.key_id)
    with Workspace.open(tmp_path / "second.duckdb") as other:
        add_version(other, "rm", 1)
        signed = release(other, "rm@1")
        assert signed.key_id == rel.key_id == session_identity.key_id
        out = export_release(other, "rm", tmp_path / "from-second.zip")
    result = verify_release(out, trust=pub)
    assert result.ok and result.trusted, result.reasons


def test_releases_by_two_approvers_verify_with_their_own_keys(released, tmp_path,
                                                              make_identity):
    ws, first, _ = released
    lead = make_identity("lead")
    trust.add(ws, lead.public_pem, "lead", "approver")
    second = release(ws, "rm@2", signer=lead)
    assert second.key_id == lead.key_id != first.key_id
    assert second.batch["approved_by"] == "lead" and second.created_by == "lead"
    assert verify_workspace(ws).ok
    lead_pub = releases.export_public_key(ws, tmp_path / "lead.pub", lead.key_id)
    assert verify_release(export_release(ws, "rm", tmp_path / "v2"), lead_pub).ok
    assert not verify_release(export_release(ws, "rm@1", tmp_path / "v1"), lead_pub).ok


def test_a_reviewers_release_waits_for_an_approver_and_rollback_needs_one(released,
                                                                          make_identity):
    ws, _, _ = released
    rita = make_identity("rita")
    trust.add(ws, rita.public_pem, "rita", "reviewer")
    before = _counts(ws)
    asked = release(ws, "rm@2", signer=rita)  # a request: one approval, not hers to give
    assert (asked.status, asked.requested_by, asked.approvals) == ("pending", "rita", [])
    assert current_release(ws, "rm").version == 1 and _counts(ws)[0] == before[0]
    with pytest.raises(WorkstationError, match="identity 'rita' .* is not an approver"):
        releases.approve(ws, asked.id, signer=rita)
    done = releases.approve(ws, asked.id)
    assert (done.id, done.status, done.requested_by) == (asked.id, "in-force", "rita")
    with pytest.raises(WorkstationError, match="is not an approver"):
        rollback(ws, "rm", signer=rita)
    assert current_release(ws, "rm").version == 2 and _counts(ws)[0] == before[0] + 1
    assert verify_workspace(ws).ok


def test_public_keys_for_verifiers(released, tmp_path):
    ws, rel, _ = released
    with pytest.raises(WorkstationError, match="no legacy workspace key"):
        releases.export_public_key(ws, tmp_path / "none.pub")
    with pytest.raises(WorkstationError, match="no key 0000"):
        releases.export_public_key(ws, tmp_path / "none.pub", "0000")
    path = releases.export_public_key(ws, tmp_path / "k.pub", rel.key_id)
    assert path.read_text() == trust.get_key(ws, rel.key_id).public_pem
    assert not (tmp_path / "none.pub").exists()


# -- workspace verification ------------------------------------------------------------------


def test_verify_workspace_catches_a_changed_release(released, tmp_path):
    ws, rel, _ = released
    batch = dict(rel.batch, approved_by="mallory")
    ws.execute("UPDATE releases SET batch = ? WHERE id = ?", [json.dumps(batch), rel.id])
    report = verify_workspace(ws)
    assert not report.ok and any("release 1 (rm@1)" in f for f in report.failures)
    with pytest.raises(WorkstationError, match="not exported"):
        export_release(ws, "rm", tmp_path / "again")


def test_verify_workspace_catches_a_changed_manifest(released):
    ws, rel, _ = released
    ws.execute("UPDATE model_versions SET manifest = '{\"patches\": [\"sneaky\"]}' WHERE id = ?",
               [rel.model_version_id])
    assert any("signature does not match" in f for f in verify_workspace(ws).failures)


def test_offline_verification_needs_neither_the_workspace_nor_duckdb(tmp_path, released):
    """A verifier gets the release files and a public key, not a workspace."""
    ws, rel, folder = released
    pub = releases.export_public_key(ws, tmp_path / "k.pub", rel.key_id)
    code = textwrap.dedent(f"""
        import json, sys
        sys.modules["duckdb"] = None      # importing it would fail
        sys.modules["pyarrow"] = None
        from workstation.offline_verify import verify_release
        print(json.dumps(verify_release(r"{folder}", r"{pub}").to_json()))
        assert "workstation.release_checks" not in sys.modules
        assert "workstation.workspace" not in sys.modules
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["ok"] and result["trusted"], result
