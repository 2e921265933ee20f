"""Releases: request, approve (k of n), reject, roll back, list and export.

``release`` requests a release of a model version: it computes the
regression report and applies the gate itself (workstation.governance), in
the transaction that writes the ledger row, so no caller can skip it. The
requester is any trusted identity; a release forced past a failed gate
needs an approver. When the requester's own approval is enough (the policy
``release.approvals`` is 1 and the requester is an approver) the release
takes effect at once; otherwise the request waits (workstation.release_requests)
until ``approve`` has been called by as many distinct trusted approvers as
the policy asks. With ``release.separation`` on and two or more approvals
the requester's own approval does not count and is refused. One
``reject`` ends a request; an outdated one (its model had a release or
rollback since) can only be rejected.

Taking effect writes the full governance batch (request, approvals, trust
store), signs a **release statement** over the three release files with
the key of the approver who completed it, and appends a signed ``release``
row to the ledger. Which release is in force is derived from the ledger
alone: the newest release not undone by a ``rollback``. ``export_release``
writes the signed files to a folder or .zip, and ``verify_release``
(workstation.offline_verify) checks one offline with a set of trusted keys.
Checks inside the workspace: workstation.release_checks.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from workstation import governance, ledger, policy, release_requests, trust
from workstation.errors import WorkstationError
from workstation.hashing import canonical_json, sha256_bytes
from workstation.identity import Signer
from workstation.models.registry import ModelVersion, get_version, split_ref
from workstation.offline_verify import VerifyResult, verify_release, verify_release_files
from workstation.progress import Progress
from workstation.release_format import (BATCH_FORMAT, RELEASE_FILES, SIGNATURE_FILE,
                                        SIGNED_FILES, json_file, key_id_of, public_pem_of,
                                        release_statement, signature_doc)
from workstation.release_requests import Request
from workstation.signing import LegacyKey, export_public_key, legacy_keys, public_pem_for
from workstation.workspace import Workspace, now_iso

__all__ = [
    "BATCH_FORMAT", "RELEASE_FILES", "SIGNATURE_FILE", "SIGNED_FILES", "STATUSES", "LegacyKey",
    "Release", "VerifyResult", "approve", "canonical_json", "current_release",
    "export_public_key", "export_release", "get_release", "json_file", "key_id_of",
    "legacy_keys", "list_releases", "public_pem_for", "public_pem_of", "reject", "release",
    "release_files", "release_history", "release_stack", "rollback", "verify_release",
    "verify_release_files"]

# What `releases` shows for each release or request.
STATUSES = ("pending", "in-force", "superseded", "rolled-back", "rejected", "outdated")


# -- records ---------------------------------------------------------------

@dataclass(frozen=True)
class Release:
    """A release, or a request of one, with its status.

    For a release that took effect, ``signature`` and ``key_id`` are the
    release statement's (the approver who completed it), ``created_*`` when
    and by whom, ``ledger_seq`` its ``release`` row. For a request that did
    not (pending, rejected, outdated): the requester's key, the request's
    time and ledger row, and no release signature (""). ``approvals``:
    ``name``, ``key_id``, ``approved_at`` of each approval counted so far.
    """

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
    status: str = "in-force"
    approvals: list[dict[str, Any]] = field(default_factory=list)
    approvals_required: int = 1
    requested_by: str | None = None
    rejection: dict[str, Any] | None = None

    @property
    def ref(self) -> str:
        return f"{self.model}@{self.version}"

    @property
    def forced(self) -> bool:
        return bool((self.batch.get("gate") or {}).get("forced"))

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "forced": self.forced}


# -- model versions --------------------------------------------------------

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


# -- request, approve, reject ----------------------------------------------------

def release(ws: Workspace, model_ref_or_version_id: str | int, *, signer: Signer | None = None,
            notes: str = "", force: bool = False, force_reason: str = "",
            encoder: Any = None, progress: Progress | None = None) -> Release:
    """Request a release of a model version (see the module docstring),
    signed by ``signer`` (default: the session's identity); returns it as
    it stands: ``in-force`` or ``pending``."""
    with ws.transaction():
        signer = trust.require_trusted(ws, signer)
        target = _resolve_version(ws, model_ref_or_version_id)
        previous = current_release(ws, target.model)
        if previous is not None and previous.model_version_id == target.id:
            raise WorkstationError(f"{previous.ref} is already the current release")
        waiting = release_requests.pending_for(ws, target.id)
        if waiting is not None:
            raise WorkstationError(
                f"release {waiting.id} already requests {target.model}@{target.version} (by "
                f"{waiting.requested_by}): an approver approves it with `workstation approve "
                f"{waiting.id}` or rejects it")
        report = governance.regression_report(ws, target, progress, encoder)
        gate = governance.gate_verdict(report, force, force_reason)
        approver = _is_approver(ws, signer)
        if gate["forced"] and not approver:
            raise WorkstationError(f"forcing a release past a failed regression gate needs an "
                                   f"approver; identity '{signer.name}' is not one here")
        _blob(ws, target.sha256, f"{target.model}@{target.version}")
        required, separation = _policy(ws)
        request = governance.request_batch(ws, release_requests.next_release_id(ws), target,
                                           previous, report, gate, signer, notes, required,
                                           separation)
        counts = approver and not (separation and required >= 2)
        return _record_request(ws, request, target, signer, counts)


def _record_request(ws: Workspace, request: dict[str, Any], target: ModelVersion,
                    signer: Signer, counts: bool) -> Release:
    """In force at once when the requester's own approval completes it; else
    a pending request (with the requester's approval when it counts)."""
    signature = governance.sign_act(signer, request, target.manifest, "request")
    if counts and request["approvals_required"] <= 1:
        return _take_effect(ws, request, signature, [], signer, target, None)
    req = release_requests.record(ws, request, signature, signer, request["gate"]["forced"])
    if counts:
        release_requests.record_decision(
            ws, req, signer, signature=governance.sign_act(signer, request, target.manifest,
                                                            "approve"))
    return get_release(ws, req.id)


def approve(ws: Workspace, release_id: int, *, signer: Signer | None = None) -> Release:
    """Add ``signer``'s approval (an approver's) to a pending request; the
    approval that completes the quorum puts the release in force."""
    with ws.transaction():
        signer = trust.require(ws, signer, "approver")
        req = release_requests.require(ws, release_id)
        _require_pending(ws, req)
        required, separation = _required(ws, req)
        if separation and required >= 2 and signer.key_id == req.key_id:
            raise WorkstationError(
                f"identity '{signer.name}' requested release {req.id} and cannot approve it "
                f"too: with {required} approvals required, separation is on (policy "
                "release.separation)")
        earlier = [d for d in release_requests.decisions(ws, req.id) if d.decision == "approve"]
        if signer.key_id in {d.key_id for d in earlier}:
            raise WorkstationError(f"identity '{signer.name}' already approved release {req.id}")
        counted = [d for d in earlier if _is_approver(ws, d.key_id)
                   and not (separation and required >= 2 and d.key_id == req.key_id)]
        target = _unchanged_version(ws, req)
        if len(counted) + 1 >= required:
            entries = [_approval_entry(ws, d) for d in counted]
            return _take_effect(ws, req.request, req.signature, entries, signer, target,
                                req.ledger_seq)
        release_requests.record_decision(
            ws, req, signer, signature=governance.sign_act(signer, req.request, target.manifest,
                                                            "approve"))
        return get_release(ws, req.id)


def reject(ws: Workspace, release_id: int, reason: str, *, signer: Signer | None = None
           ) -> Release:
    """End a pending (or outdated) request for good (an approver's signed ledger row)."""
    if not (reason or "").strip():
        raise WorkstationError("a rejection needs a reason (--reason)")
    with ws.transaction():
        signer = trust.require(ws, signer, "approver")
        req = release_requests.require(ws, release_id)
        status = get_release(ws, req.id).status
        if status not in ("pending", "outdated"):
            raise WorkstationError(f"release {req.id} ({req.ref}) is {status}, not pending: "
                                   "there is nothing to reject")
        release_requests.record_decision(ws, req, signer, reason=reason.strip())
        return get_release(ws, req.id)


def _require_pending(ws: Workspace, req: Request) -> None:
    rel = get_release(ws, req.id)
    if rel.status == "pending":
        return
    if rel.status == "rejected":
        raise WorkstationError(f"release {req.id} ({req.ref}) was rejected by "
                               f"{rel.rejection['name']}: {rel.rejection['reason']}")
    if rel.status == "outdated":
        raise WorkstationError(
            f"release {req.id} ({req.ref}) is outdated: {req.model} had a release or rollback "
            f"after it was requested, so its evidence no longer holds; reject it (`workstation "
            f"approve {req.id} --reject --reason R`) and request the release again")
    raise WorkstationError(f"release {req.id} ({req.ref}) already took effect ({rel.status})")


def _unchanged_version(ws: Workspace, req: Request) -> ModelVersion:
    target = get_version(ws, req.model_version_id)
    _blob(ws, target.sha256, req.ref)
    if target.sha256 != req.request["to_version"]["sha256"]:
        raise WorkstationError(f"release {req.id}: model version {req.ref} changed since the "
                               "request; reject it")
    return target


def _policy(ws: Workspace) -> tuple[int, bool]:
    return policy.get(ws, "release.approvals"), policy.get(ws, "release.separation")


def _required(ws: Workspace, req: Request) -> tuple[int, bool]:
    """The stricter of the request's policy and today's."""
    required, separation = _policy(ws)
    return (max(required, int(req.request["approvals_required"])),
            separation or bool(req.request["separation"]))


def _is_approver(ws: Workspace, who: Signer | str) -> bool:
    key = trust.get_key(ws, who if isinstance(who, str) else who.key_id)
    return key is not None and key.active and "approver" in key.roles


def _approval_entry(ws: Workspace, decision: release_requests.Decision) -> dict[str, Any]:
    return {"name": decision.name, "key_id": decision.key_id,
            "public_pem": trust.public_pem(ws, decision.key_id),
            "approved_at": decision.time, "signature": decision.signature}


# -- taking effect -----------------------------------------------------------------

def _take_effect(ws: Workspace, request: dict[str, Any], request_signature: str,
                 earlier: list[dict[str, Any]], completer: Signer, target: ModelVersion,
                 request_seq: int | None) -> Release:
    """The full batch, the release statement signed by ``completer``, the
    ``release`` ledger row and the releases row (in the caller's transaction)."""
    approved_at = now_iso()
    approvals = earlier + [governance.approval_entry(
        completer, governance.sign_act(completer, request, target.manifest, "approve"),
        approved_at)]
    batch = governance.completed_batch(ws, request, request_signature, approvals, completer,
                                       approved_at)
    statement = release_statement(batch, target.manifest, completer.key_id)
    signature = governance._sign(completer, canonical_json(statement).encode("utf-8")).hex()
    entry = ledger.append(ws, "release", _release_payload(batch, statement, signature,
                                                          request_seq), signer=completer)
    frm = batch["from_version"]
    ws.execute("INSERT INTO releases VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
               [batch["release_id"], batch["model"], batch["to_version"]["model_version_id"],
                frm and frm["model_version_id"], canonical_json(batch), signature,
                completer.key_id, approved_at, completer.name, entry.seq])
    return get_release(ws, batch["release_id"])


def _release_payload(batch: dict[str, Any], statement: dict[str, Any], signature: str,
                     request_seq: int | None) -> dict[str, Any]:
    to, frm = batch["to_version"], batch["from_version"]
    return {"release_id": batch["release_id"], "model": batch["model"], "version": to["version"],
            "model_version_id": to["model_version_id"], "sha256": to["sha256"],
            "from_release_id": frm and frm["release_id"], "from_version": frm and frm["version"],
            "governance_sha256": statement["files"]["governance.json"],
            "key_id": statement["key_id"], "signature": signature,
            "forced": batch["gate"]["forced"], "request_seq": request_seq,
            "approvals": [{"key_id": a["key_id"], "signature": a["signature"]}
                          for a in batch["approvals"]]}


# -- reading -------------------------------------------------------------------------

_RELEASE_COLUMNS = ("id, model, model_version_id, from_version_id, batch, signature, key_id, "
                    "created_at, created_by, ledger_seq")


def _from_row(row: tuple, stack: list[int]) -> Release:
    (rid, model, version_id, from_id, batch_text, signature, key_id, created_at, created_by,
     seq) = row
    batch = json.loads(batch_text)
    to, frm = batch["to_version"], batch["from_version"]
    status = "in-force" if stack and stack[-1] == rid else \
        "superseded" if rid in stack else "rolled-back"
    approvals = batch.get("approvals") or [
        {"name": created_by, "key_id": key_id, "approved_at": created_at}]
    requested = batch.get("requested_by")
    return Release(rid, model, to["version"], version_id, to["sha256"], from_id,
                   frm and frm["version"], batch, signature, key_id, created_at, created_by, seq,
                   status == "in-force", status,
                   [{k: a.get(k) for k in ("name", "key_id", "approved_at")} for a in approvals],
                   int(batch.get("approvals_required") or 1),
                   requested["name"] if isinstance(requested, dict) else created_by)


def _request_view(ws: Workspace, req: Request) -> Release:
    """A request that did not take effect, as a Release record."""
    found = release_requests.decisions(ws, req.id)
    rejection = next(({"name": d.name, "key_id": d.key_id, "reason": d.reason, "time": d.time}
                      for d in found if d.decision == "reject"), None)
    status = "rejected" if rejection else \
        "outdated" if release_requests.outdated(ws, req) else "pending"
    frm, to = req.request["from_version"], req.request["to_version"]
    return Release(req.id, req.model, to["version"], req.model_version_id, to["sha256"],
                   frm and frm["model_version_id"], frm and frm["version"], req.request, "",
                   req.key_id, req.requested_at, req.requested_by, req.ledger_seq, False, status,
                   [{"name": d.name, "key_id": d.key_id, "approved_at": d.time}
                    for d in found if d.decision == "approve"],
                   _required(ws, req)[0], req.requested_by, rejection)


def get_release(ws: Workspace, release_id: int) -> Release:
    """A release or request by id, with its status."""
    row = ws.execute(f"SELECT {_RELEASE_COLUMNS} FROM releases WHERE id = ?",
                     [release_id]).fetchone()
    if row is not None:
        return _from_row(row, release_stack(ws, row[1]))
    req = release_requests.get(ws, release_id)
    if req is None:
        raise WorkstationError(f"no release or release request {release_id}")
    return _request_view(ws, req)


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
    return get_release(ws, stack[-1]) if stack else None


def list_releases(ws: Workspace, model: str | None = None) -> list[Release]:
    """Every release that took effect (of ``model`` when given), oldest first,
    with its status; requests that did not are in ``release_history``."""
    sql, params = f"SELECT {_RELEASE_COLUMNS} FROM releases", []
    if model is not None:
        sql, params = sql + " WHERE model = ?", [model]
    rows = ws.execute(sql + " ORDER BY id", params).fetchall()
    stacks = {m: release_stack(ws, m) for m in {r[1] for r in rows}}
    return [_from_row(r, stacks[r[1]]) for r in rows]


def release_history(ws: Workspace, model: str | None = None) -> list[Release]:
    """Every release and every request (of ``model``), oldest first, each
    with its status: pending, in-force, superseded, rolled-back, rejected or
    outdated."""
    released = list_releases(ws, model)
    ids = {r.id for r in released}
    waiting = [_request_view(ws, req) for req in release_requests.all_requests(ws, model)
               if req.id not in ids]
    return sorted(released + waiting, key=lambda r: r.id)


# -- rollback ----------------------------------------------------------------------

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
        undone = get_release(ws, stack[-1])
        if len(stack) < 2:
            raise WorkstationError(f"{undone.ref} is the first release of '{model}' in force; "
                                   "there is no earlier release to roll back to")
        restored = get_release(ws, stack[-2])
        ledger.append(ws, "rollback", {
            "model": model, "from_release_id": undone.id, "from_version": undone.version,
            "to_release_id": restored.id, "to_version": restored.version,
            "reason": reason or ""}, signer=signer)
        return get_release(ws, restored.id)


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
    return _from_row(row, release_stack(ws, name))


def release_files(ws: Workspace, rel: Release) -> dict[str, bytes]:
    """The four files of a release, checked against its stored signature first."""
    from workstation.release_checks import check_release  # it reads releases

    problem = check_release(ws, rel)
    if problem:
        raise WorkstationError(f"{problem}; not exported")
    manifest = get_version(ws, rel.model_version_id).manifest
    statement = release_statement(rel.batch, manifest, rel.key_id)
    public_pem = public_pem_for(ws, rel.key_id)
    return {"model.onnx": _blob(ws, rel.sha256, rel.ref),
            "manifest.json": json_file(manifest),
            "governance.json": json_file(rel.batch),
            SIGNATURE_FILE: json_file(signature_doc(statement, rel.signature, public_pem))}


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
