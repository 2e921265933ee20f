"""Releases: governance batches, signing, rollback and export.

Releasing a model version writes a **governance batch** (what changed from
the currently released version: label edits, patches, regression evidence,
who approved it), signs a **release statement** over the three release files
(model.onnx, manifest.json, governance.json) with the acting identity's
Ed25519 key (an approver in the trust store: workstation.trust), and appends
a signed ``release`` row to the ledger, all in one transaction. Which
release is current is derived from the ledger alone: the newest release not
undone by a ``rollback``. ``export_release`` writes the signed files to a
folder or .zip, and ``verify_release`` (workstation.offline_verify) checks
one offline, with nothing but the files and (ideally) a trusted public key.

Label edits in a batch are the review-log rows after the previous release's
review head, up to the new version's ``manifest.lineage.dataset_snapshot``
(the review head it was trained on) when the manifest names one, else up to
the review head at release time. The batch says which (``basis``).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from workstation import ledger, review, trust
from workstation.errors import WorkstationError
from workstation.hashing import canonical_json, sha256_bytes
from workstation.models.registry import ModelVersion, get_version, split_ref
from workstation.offline_verify import (RELEASE_FILES, SIGNATURE_FILE, SIGNED_FILES,
                                        STATEMENT_FORMAT, VerifyResult, json_file,
                                        verify_release, verify_release_files)
from workstation.identity import Signer
from workstation.signing import (ALGORITHM, LegacyKey, export_public_key, key_id_of,
                                 legacy_keys, public_pem_for, public_pem_of)
from workstation.workspace import Workspace, now_iso

# The release API in one place: keys (workstation.signing) and offline
# verification (workstation.offline_verify) live in their own modules.
__all__ = [
    "RELEASE_FILES", "SIGNATURE_FILE", "SIGNED_FILES", "LegacyKey", "Release", "VerifyResult",
    "check_release", "current_release", "export_public_key", "export_release", "json_file",
    "key_id_of", "legacy_keys", "list_releases", "public_pem_for", "public_pem_of", "release",
    "release_files", "release_stack", "rollback", "verify_release", "verify_release_files",
    "verify_releases"]

# /2 (schema v4): approved_by is the approving identity's name and
# approver_key_id its key; /1 batches (before) named the OS login.
BATCH_FORMAT = "workstation.governance-batch/2"


# -- records ---------------------------------------------------------------

@dataclass(frozen=True)
class Release:
    """One release: a model version promoted, with its signed governance batch."""

    id: int
    model: str
    version: int
    model_version_id: int
    sha256: str
    from_version_id: int | None
    from_version: int | None
    batch: dict[str, Any]
    signature: str
    key_id: str
    created_at: str
    created_by: str
    ledger_seq: int
    current: bool = False

    @property
    def ref(self) -> str:
        return f"{self.model}@{self.version}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)



# -- model versions --------------------------------------------------------

def _version_by_id(ws: Workspace, version_id: int) -> ModelVersion | None:
    try:
        return get_version(ws, version_id)
    except WorkstationError:
        return None


def _resolve_version(ws: Workspace, ref: str | int) -> ModelVersion:
    """A model version from its id or NAME@VERSION (a release names its version exactly)."""
    if isinstance(ref, int):
        return get_version(ws, ref)
    name, version = split_ref(ref)
    if version is None:
        raise WorkstationError(f"say which version of '{name}' to release: {name}@VERSION")
    rows = ws.execute("SELECT id FROM model_versions WHERE model = ? AND version = ?",
                      [name, version]).fetchall()
    if not rows:
        raise WorkstationError(f"no model version {name}@{version}")
    return get_version(ws, int(rows[0][0]))


def _blob(ws: Workspace, sha256: str, what: str) -> bytes:
    row = ws.execute("SELECT data FROM blobs WHERE sha256 = ?", [sha256]).fetchone()
    if row is None:
        raise WorkstationError(f"{what}: its ONNX artifact {sha256[:12]}… is missing")
    data = bytes(row[0])
    # Content-addressed: never sign or ship bytes that no longer match their name.
    if sha256_bytes(data) != sha256:
        raise WorkstationError(f"{what}: its ONNX artifact {sha256[:12]}… does not match its sha256")
    return data




def _sign(signer: Signer, message: bytes) -> bytes:
    """The one place a release statement is signed (tests replace it to simulate a failure)."""
    return signer.sign(message)


# -- the governance batch ---------------------------------------------------

def _gate(report: dict[str, Any] | None, force: bool, force_reason: str) -> dict[str, Any]:
    """The regression gate's verdict; a failed gate blocks unless forced with a reason."""
    passed = _gate_pass(report)
    if passed is False and not force:
        raise WorkstationError("the regression gate failed (pass=false); release refused "
                               "(force it only with a reason)")
    if passed is False and not (force_reason or "").strip():
        raise WorkstationError("forcing a release past a failed regression gate needs a reason")
    forced = passed is False
    return {"pass": passed, "forced": forced, "force_reason": force_reason if forced else None}


def _gate_pass(report: dict[str, Any] | None) -> bool | None:
    """``report['gate']['pass']`` (or ``report['gate']`` / ``report['pass']``); None if absent."""
    if report is None:
        return None
    if not isinstance(report, dict):
        raise WorkstationError("the regression report must be a JSON object")
    gate = report.get("gate")
    value = gate.get("pass") if isinstance(gate, dict) else gate
    if value is None:
        value = report.get("pass")
    if value is not None and not isinstance(value, bool):
        raise WorkstationError("the regression report's gate 'pass' must be true or false")
    return value


def _patches(manifest: dict[str, Any]) -> list[Any]:
    patches = manifest.get("patches", manifest.get("patch"))
    if patches is None:
        return []
    return list(patches) if isinstance(patches, list) else [patches]


def _snapshot_head(manifest: dict[str, Any]) -> str | None:
    """The review head the version was trained on, if its manifest says."""
    lineage = manifest.get("lineage")
    snapshot = lineage.get("dataset_snapshot") if isinstance(lineage, dict) else None
    if isinstance(snapshot, dict):
        snapshot = snapshot.get("review_head")
    if snapshot is not None and not isinstance(snapshot, str):
        raise WorkstationError("manifest lineage.dataset_snapshot must be a review-head hash")
    return snapshot


def _review_seq(ws: Workspace, head: str, what: str) -> int:
    if head in ("", review.GENESIS):
        return 0
    row = ws.execute("SELECT seq FROM review_log WHERE hash = ?", [head]).fetchone()
    if row is None:
        raise WorkstationError(f"{what} names review head {head[:12]}…, which is not in this "
                               "workspace's review log")
    return int(row[0])


def _label_edits(ws: Workspace, previous: Release | None, target: ModelVersion) -> dict[str, Any]:
    start = previous.batch["label_edits"]["head"] if previous else ""
    snapshot = _snapshot_head(target.manifest)
    end, basis = ((snapshot, "model-dataset-snapshot") if snapshot is not None
                  else (review.head_hash(ws), "review-head-at-release"))
    lo = _review_seq(ws, start, f"release {previous.ref}" if previous else "release")
    hi = _review_seq(ws, end, f"manifest of {target.model}@{target.version}")
    # A version trained on an older snapshot than the previous release lists no edits.
    rows = ws.execute("SELECT seq, example_id, field, old, new, action FROM review_log "
                      "WHERE seq > ? AND seq <= ? ORDER BY seq", [lo, hi]).fetchall()
    edits = [{"seq": s, "example_id": e, "field": f, "old": json.loads(o), "new": json.loads(n),
              "action": a} for s, e, f, o, n, a in rows]
    return {"basis": basis, "from_head": start, "head": end, "count": len(edits), "edits": edits}


def _version_json(v: ModelVersion) -> dict[str, Any]:
    return {"model_version_id": v.id, "model": v.model, "version": v.version,
            "sha256": v.sha256, "input_kind": v.input_kind, "parent_id": v.parent_id}


def _governance_batch(ws: Workspace, release_id: int, target: ModelVersion,
                      previous: Release | None, report: dict[str, Any] | None,
                      gate: dict[str, Any], approver: Signer, notes: str) -> dict[str, Any]:
    from_version = None if previous is None else {
        "release_id": previous.id, "model_version_id": previous.model_version_id,
        "model": previous.model, "version": previous.version, "sha256": previous.sha256}
    batch = {"format": BATCH_FORMAT, "workspace_id": ws.id, "release_id": release_id,
             "model": target.model, "from_version": from_version,
             "to_version": _version_json(target),
             "label_edits": _label_edits(ws, previous, target),
             "patches": _patches(target.manifest), "regression_report": report, "gate": gate,
             "approved_by": approver.name, "approver_key_id": approver.key_id,
             "approved_at": now_iso(), "notes": notes or ""}
    try:
        # Round-trip so the signed batch is exactly what the workspace stores.
        return json.loads(canonical_json(batch))
    except (TypeError, ValueError) as exc:
        raise WorkstationError(f"the regression report is not plain JSON: {exc}") from None


# -- the signed files ------------------------------------------------------



def _statement(batch: dict[str, Any], manifest: dict[str, Any], key_id: str) -> dict[str, Any]:
    """What is signed: the hashes of the three release files, and whose release it is."""
    to = batch["to_version"]
    files = {"model.onnx": to["sha256"], "manifest.json": sha256_bytes(json_file(manifest)),
             "governance.json": sha256_bytes(json_file(batch))}
    return {"format": STATEMENT_FORMAT, "algorithm": ALGORITHM, "key_id": key_id,
            "workspace_id": batch["workspace_id"], "release_id": batch["release_id"],
            "model": to["model"], "version": to["version"], "files": files}


def _signature_doc(statement: dict[str, Any], signature_hex: str, public_pem: str) -> dict[str, Any]:
    return {"algorithm": ALGORITHM, "key_id": statement["key_id"], "public_key_pem": public_pem,
            "signature": signature_hex, "signature_encoding": "hex", "statement": statement,
            "files": statement["files"]}


# -- release and rollback --------------------------------------------------

def release(ws: Workspace, model_ref_or_version_id: str | int, *, signer: Signer | None = None,
            regression_report: dict[str, Any] | None = None, notes: str = "",
            force: bool = False, force_reason: str = "") -> Release:
    """Promote a model version: governance batch, signature, release row and
    ledger entry, signed by ``signer`` (default: the session's identity), who
    must be an approver here."""
    with ws.transaction():
        signer = trust.require(ws, signer, "approver")
        target = _resolve_version(ws, model_ref_or_version_id)
        previous = current_release(ws, target.model)
        if previous is not None and previous.model_version_id == target.id:
            raise WorkstationError(f"{previous.ref} is already the current release")
        gate = _gate(regression_report, force, force_reason)
        _blob(ws, target.sha256, f"{target.model}@{target.version}")
        release_id = ws.next_id("releases")
        batch = _governance_batch(ws, release_id, target, previous, regression_report, gate,
                                  signer, notes)
        statement = _statement(batch, target.manifest, signer.key_id)
        signature = _sign(signer, canonical_json(statement).encode("utf-8")).hex()
        entry = ledger.append(ws, "release", _release_payload(batch, statement, signature),
                              signer=signer)
        _insert_release(ws, batch, signature, signer.key_id, signer.name, entry.seq)
        return replace(_get_release(ws, release_id), current=True)


def _release_payload(batch: dict[str, Any], statement: dict[str, Any],
                     signature: str) -> dict[str, Any]:
    to, frm = batch["to_version"], batch["from_version"]
    return {"release_id": batch["release_id"], "model": batch["model"], "version": to["version"],
            "model_version_id": to["model_version_id"], "sha256": to["sha256"],
            "from_release_id": frm and frm["release_id"], "from_version": frm and frm["version"],
            "governance_sha256": statement["files"]["governance.json"],
            "key_id": statement["key_id"], "signature": signature,
            "forced": batch["gate"]["forced"]}


def _insert_release(ws: Workspace, batch: dict[str, Any], signature: str, key_id: str,
                    actor: str, ledger_seq: int) -> None:
    frm = batch["from_version"]
    ws.execute("INSERT INTO releases VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
               [batch["release_id"], batch["model"], batch["to_version"]["model_version_id"],
                frm and frm["model_version_id"], canonical_json(batch), signature, key_id,
                batch["approved_at"], actor, ledger_seq])


_RELEASE_COLUMNS = ("id, model, model_version_id, from_version_id, batch, signature, key_id, "
                    "created_at, created_by, ledger_seq")


def _from_row(row: tuple) -> Release:
    (rid, model, version_id, from_id, batch_text, signature, key_id, created_at, created_by,
     seq) = row
    batch = json.loads(batch_text)
    to, frm = batch["to_version"], batch["from_version"]
    return Release(rid, model, to["version"], version_id, to["sha256"], from_id,
                   frm and frm["version"], batch, signature, key_id, created_at, created_by, seq)


def _get_release(ws: Workspace, release_id: int) -> Release:
    row = ws.execute(f"SELECT {_RELEASE_COLUMNS} FROM releases WHERE id = ?",
                     [release_id]).fetchone()
    if row is None:
        raise WorkstationError(f"the ledger names release {release_id}, which is missing")
    return _from_row(row)


def release_stack(ws: Workspace, model: str) -> list[int]:
    """Release ids of ``model`` in force, oldest first: each rollback undoes the newest."""
    stack: list[int] = []
    for kind, payload in ws.execute(
            "SELECT kind, payload FROM ledger WHERE kind IN ('release', 'rollback') "
            "AND json_extract_string(payload, '$.model') = ? ORDER BY seq", [model]).fetchall():
        if kind == "release":
            stack.append(int(json.loads(payload)["release_id"]))
        elif stack:
            stack.pop()
    return stack


def current_release(ws: Workspace, model: str) -> Release | None:
    """The release of ``model`` in force now, according to the ledger."""
    stack = release_stack(ws, model)
    return replace(_get_release(ws, stack[-1]), current=True) if stack else None


def list_releases(ws: Workspace, model: str | None = None) -> list[Release]:
    """Every release (of ``model`` when given), oldest first, the current ones flagged."""
    sql, params = f"SELECT {_RELEASE_COLUMNS} FROM releases", []
    if model is not None:
        sql, params = sql + " WHERE model = ?", [model]
    found = [_from_row(r) for r in ws.execute(sql + " ORDER BY id", params).fetchall()]
    current = {m: (release_stack(ws, m) or [None])[-1] for m in {r.model for r in found}}
    return [replace(r, current=current[r.model] == r.id) for r in found]


def rollback(ws: Workspace, model: str, reason: str = "", *, signer: Signer | None = None
             ) -> Release:
    """Make the release before the current one current again (a ledger row
    signed by ``signer``, an approver); returns it."""
    if "@" in model:
        raise WorkstationError(f"rollback takes a model name, not a version ('{model}')")
    with ws.transaction():
        signer = trust.require(ws, signer, "approver")
        stack = release_stack(ws, model)
        if not stack:
            raise WorkstationError(f"model '{model}' has no release to roll back")
        undone = _get_release(ws, stack[-1])
        if len(stack) < 2:
            raise WorkstationError(f"{undone.ref} is the first release of '{model}' in force; "
                                   "there is no earlier release to roll back to")
        restored = _get_release(ws, stack[-2])
        ledger.append(ws, "rollback", {
            "model": model, "from_release_id": undone.id, "from_version": undone.version,
            "to_release_id": restored.id, "to_version": restored.version,
            "reason": reason or ""}, signer=signer)
        return replace(restored, current=True)


# -- export ----------------------------------------------------------------

def export_release(ws: Workspace, model_ref: str, out: str | os.PathLike) -> Path:
    """Write a release's four files to the folder ``out``, or a zip if it ends in .zip.

    ``model_ref`` is NAME (its current release) or NAME@VERSION (that version's
    newest release, current or not).
    """
    rel = _release_for(ws, model_ref)
    files = release_files(ws, rel)
    out = Path(out)
    as_zip = out.suffix.lower() == ".zip"
    # An empty folder may receive a folder export; nothing existing is overwritten.
    if out.exists() and (as_zip or not out.is_dir() or any(out.iterdir())):
        raise WorkstationError(f"{out} already exists; export to a new path")
    try:
        (_write_zip if as_zip else _write_folder)(files, out)
    except OSError as exc:
        raise WorkstationError(f"cannot write {out}: {exc.strerror or exc}") from None
    return out


def _release_for(ws: Workspace, model_ref: str) -> Release:
    name, version = split_ref(model_ref)
    if version is None:
        found = current_release(ws, name)
        if found is None:
            raise WorkstationError(f"model '{name}' has no current release")
        return found
    row = ws.execute(f"SELECT {_RELEASE_COLUMNS} FROM releases WHERE model = ? AND "
                     "model_version_id IN (SELECT id FROM model_versions WHERE model = ? "
                     "AND version = ?) ORDER BY id DESC LIMIT 1", [name, name, version]).fetchone()
    if row is None:
        raise WorkstationError(f"{name}@{version} was never released")
    return _from_row(row)


def release_files(ws: Workspace, rel: Release) -> dict[str, bytes]:
    """The four files of a release, checked against its stored signature first."""
    problem = check_release(ws, rel)
    if problem:
        raise WorkstationError(f"{problem}; not exported")
    manifest = _version_manifest(ws, rel)
    statement = _statement(rel.batch, manifest, rel.key_id)
    public_pem = public_pem_for(ws, rel.key_id)
    return {"model.onnx": _blob(ws, rel.sha256, rel.ref),
            "manifest.json": json_file(manifest),
            "governance.json": json_file(rel.batch),
            SIGNATURE_FILE: json_file(_signature_doc(statement, rel.signature, public_pem))}


def _version_manifest(ws: Workspace, rel: Release) -> dict[str, Any]:
    version = _version_by_id(ws, rel.model_version_id)
    if version is None:
        raise WorkstationError(f"release {rel.id}: model version {rel.ref} is missing")
    return version.manifest


def _write_folder(files: dict[str, bytes], out: Path) -> None:
    # Written beside the target and renamed, so a failure leaves no half release.
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        if out.exists():
            out.rmdir()  # only ever an empty folder (checked by the caller)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _write_zip(files: dict[str, bytes], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as raw, zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as zf:
            for name in RELEASE_FILES:
                # A fixed timestamp: the same release zips to the same bytes.
                zf.writestr(zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0)), files[name],
                            compress_type=zipfile.ZIP_DEFLATED)
        os.replace(tmp_name, out)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


# -- checks inside the workspace --------------------------------------------

def check_release(ws: Workspace, rel: Release) -> str | None:
    """Does the stored signature still cover the stored batch, manifest and ledger row?"""
    public_pem = public_pem_for(ws, rel.key_id)
    if public_pem is None:
        return f"release {rel.id} ({rel.ref}): its signing key {rel.key_id} is missing"
    version = _version_by_id(ws, rel.model_version_id)
    if version is None or version.sha256 != rel.sha256:
        return f"release {rel.id} ({rel.ref}): its model version is missing or changed"
    statement = _statement(rel.batch, version.manifest, rel.key_id)
    if not _signature_ok(public_pem, rel.signature, statement):
        return (f"release {rel.id} ({rel.ref}): signature does not match its governance "
                "batch and manifest (changed after signing)")
    entry = ledger.get(ws, rel.ledger_seq)
    if entry is None or entry.kind != "release" or entry.payload.get("release_id") != rel.id \
            or entry.payload.get("signature") != rel.signature:
        return f"release {rel.id} ({rel.ref}): its ledger row {rel.ledger_seq} does not match"
    return None


def _signature_ok(public_pem: str, signature_hex: str, statement: dict[str, Any]) -> bool:
    try:
        key = serialization.load_pem_public_key(public_pem.encode("ascii"))
        key.verify(bytes.fromhex(signature_hex), canonical_json(statement).encode("utf-8"))
        return True
    except (InvalidSignature, ValueError, TypeError, AttributeError, UnsupportedAlgorithm):
        return False


def verify_releases(ws: Workspace) -> str | None:
    """The ledger chain, then every release's signature; the first problem, or None."""
    problem = ledger.verify_ledger(ws)
    if problem:
        return problem
    for rel in list_releases(ws):
        problem = check_release(ws, rel)
        if problem:
            return problem
    return None
