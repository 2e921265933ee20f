"""What `verify` checks of releases inside the workspace.

Each release's signature still covers its stored batch and manifest, and its
ledger row matches; each approval of a /3 batch verifies (the same checks as
the offline verifier), was made by a key the trust store holds, which was an
approver when it approved, and matches the ledger; each release request
matches its signed ledger row, and each approval or rejection names a
request; and every review-log head a batch names is in the review log with
that hash.
"""

from __future__ import annotations

from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from workstation import ledger, release_requests, releases, trust
from workstation.chain import GENESIS
from workstation.governance import manifest_sha256
from workstation.hashing import canonical_json
from workstation.models.registry import ModelVersion, get_version
from workstation.offline_verify import batch_approvals
from workstation.release_format import (BATCH_FORMAT, approval_message, release_statement,
                                        request_part, request_sha256)
from workstation.release_requests import APPROVE_KIND, REJECT_KIND, REQUEST_KIND
from workstation.releases import Release
from workstation.signing import public_pem_for
from workstation.workspace import Workspace


def verify_releases(ws: Workspace) -> str | None:
    """The ledger chain, every release and request, the review heads; the first problem, or None."""
    problem = ledger.verify_ledger(ws)
    if problem:
        return problem
    line = trust.timeline(ws)
    for rel in releases.list_releases(ws):
        problem = check_release(ws, rel, line)
        if problem:
            return problem
    return verify_requests(ws) or verify_review_heads(ws)


def check_release(ws: Workspace, rel: Release, line: trust.Timeline | None = None) -> str | None:
    """Does the stored signature still cover the stored batch, manifest and
    ledger row (and, for a /3 batch, do its approvals hold)?"""
    what = f"release {rel.id} ({rel.ref})"
    public_pem = public_pem_for(ws, rel.key_id)
    if public_pem is None:
        return f"{what}: its signing key {rel.key_id} is missing"
    version = _version(ws, rel.model_version_id)
    if version is None or version.sha256 != rel.sha256:
        return f"{what}: its model version is missing or changed"
    statement = release_statement(rel.batch, version.manifest, rel.key_id)
    if not _verifies(public_pem, rel.signature, canonical_json(statement).encode("utf-8")):
        return f"{what}: signature does not match its governance batch and manifest (changed " \
               "after signing)"
    entry = ledger.get(ws, rel.ledger_seq)
    if entry is None or entry.kind != "release" or entry.payload.get("release_id") != rel.id \
            or entry.payload.get("signature") != rel.signature:
        return f"{what}: its ledger row {rel.ledger_seq} does not match"
    if rel.batch.get("format") != BATCH_FORMAT:
        return None  # /1 and /2: one signature, the release's own
    problem = _check_approvals(ws, rel, version, entry, line or trust.timeline(ws))
    return f"{what}: {problem}" if problem else None


def _version(ws: Workspace, version_id: int) -> ModelVersion | None:
    try:
        return get_version(ws, version_id)
    except Exception:  # noqa: BLE001 - a missing or unreadable version is the finding
        return None


def _check_approvals(ws: Workspace, rel: Release, version: ModelVersion,
                     entry: ledger.LedgerEntry, line: trust.Timeline) -> str | None:
    batch = rel.batch
    _, problem = batch_approvals(batch, manifest_sha256(version.manifest), rel.key_id)
    if problem:
        return problem
    for approval in batch["approvals"]:
        if trust.public_pem(ws, approval["key_id"]) != approval["public_pem"]:
            return f"approval by key {approval['key_id']}: not a key of the trust store"
        if "approver" not in line.status(approval["key_id"], approval["approved_at"]).roles:
            return (f"approval by key {approval['key_id']} at {approval['approved_at']}: the "
                    "key was not an approver then")
    if trust.public_pem(ws, batch["requested_by"]["key_id"]) != batch["requested_by"]["public_pem"]:
        return "its requester's key is not a key of the trust store"
    signed = [{"key_id": a["key_id"], "signature": a["signature"]} for a in batch["approvals"]]
    if entry.payload.get("approvals") != signed:
        return f"the approvals of its ledger row {entry.seq} differ from its batch"
    return _check_request(ws, rel, entry.payload.get("request_seq"))


def _check_request(ws: Workspace, rel: Release, request_seq: int | None) -> str | None:
    """A release that waited for approvals matches its request and the approvals
    recorded in the ledger; one that took effect at once was approved by its requester."""
    batch = rel.batch
    earlier = batch["approvals"][:-1]
    if request_seq is None:
        if earlier or batch["requested_by"]["key_id"] != rel.key_id:
            return "it took effect at once, yet lists approvals other than its requester's"
        return None
    req = release_requests.get(ws, rel.id)
    if req is None or req.ledger_seq != request_seq or \
            request_part(req.request) != request_part(batch):
        return f"its request (ledger row {request_seq}) is missing or differs"
    recorded = {(d.key_id, d.signature, d.time) for d in release_requests.decisions(ws, rel.id)
                if d.decision == "approve"}
    for approval in earlier:
        if (approval["key_id"], approval["signature"], approval["approved_at"]) not in recorded:
            return f"its approval by key {approval['key_id']} is not in the ledger"
    return None


def verify_requests(ws: Workspace) -> str | None:
    """Each request matches its signed ledger row and verifies; each approval
    and rejection names a request. The first problem, or None."""
    requests = {req.id: req for req in release_requests.all_requests(ws)}
    for entry in ledger.entries(ws):
        if entry["kind"] in (REQUEST_KIND, APPROVE_KIND, REJECT_KIND):
            problem = _check_request_row(ws, entry, requests)
            if problem:
                return f"ledger row {entry['seq']} ({entry['kind']}): {problem}"
    for req in requests.values():
        entry = ledger.get(ws, req.ledger_seq)
        if entry is None or entry.kind != REQUEST_KIND or \
                entry.payload.get("release_id") != req.id:
            return f"release request {req.id}: its ledger row {req.ledger_seq} does not match"
    return None


def _check_request_row(ws: Workspace, entry: dict[str, Any],
                       requests: dict[int, release_requests.Request]) -> str | None:
    payload = entry["payload"]
    req = requests.get(payload.get("release_id"))
    if req is None:
        return f"release request {payload.get('release_id')} is missing"
    if entry["kind"] == REJECT_KIND:
        return None
    if entry["kind"] == REQUEST_KIND and (
            req.ledger_seq != entry["seq"] or payload.get("signature") != req.signature
            or payload.get("request_sha256") != request_sha256(req.request)
            or payload.get("key_id") != req.key_id
            or req.request.get("release_id") != req.id
            or req.request["requested_by"].get("key_id") != entry["signer_key_id"]):
        return f"it does not match release request {req.id} (changed after signing)"
    if payload.get("key_id") != entry["signer_key_id"]:
        return "its key is not the key that signed the row"
    act = "request" if entry["kind"] == REQUEST_KIND else "approve"
    version = _version(ws, req.model_version_id)
    pem = trust.public_pem(ws, entry["signer_key_id"])
    if version is None or pem is None or not _verifies(
            pem, payload.get("signature"),
            approval_message(req.request, manifest_sha256(version.manifest), act)):
        return f"its signature of release request {req.id} does not verify"
    return None


def verify_review_heads(ws: Workspace) -> str | None:
    """Every review-log head a batch names (label edits from and to, the
    regression report's) is in the review log with that hash."""
    named: dict[str, str] = {}
    batches = [(f"release {r.id}", r.batch) for r in releases.list_releases(ws)]
    batches += [(f"release request {q.id}", q.request) for q in release_requests.all_requests(ws)]
    for what, batch in batches:
        for head in _heads(batch):
            named.setdefault(head, what)
    wanted = sorted(h for h in named if h not in ("", GENESIS))
    found = {r[0] for r in ws.execute("SELECT hash FROM review_log WHERE list_contains(?, hash)",
                                      [wanted]).fetchall()} if wanted else set()
    for head in wanted:
        if head not in found:
            return (f"{named[head]} names review-log head {head[:12]}…, which is not in the "
                    "review log (the log was changed or cut after the release)")
    return None


def _heads(batch: dict[str, Any]) -> list[str]:
    edits = batch.get("label_edits") or {}
    report = batch.get("regression_report") or {}
    heads = [edits.get("from_head"), edits.get("head"),
             report.get("review_head") if isinstance(report, dict) else None]
    return [h for h in heads if isinstance(h, str)]


def _verifies(public_pem: str, signature_hex: Any, message: bytes) -> bool:
    try:
        key = serialization.load_pem_public_key(public_pem.encode("ascii"))
        key.verify(bytes.fromhex(signature_hex), message)
        return True
    except (InvalidSignature, ValueError, TypeError, AttributeError, UnsupportedAlgorithm):
        return False
