"""The governance batch of a release, built in the workspace: what changed
from the release in force (label edits, patches), the regression evidence
and the gate's verdict (computed here, never taken from a caller), who asked
and how many approvals it needs; then, once approved, the approvals and the
trust store. Also the one place release statements are signed (``_sign``).

Label edits in a batch are the review-log rows after the previous release's
review head, up to the new version's ``manifest.lineage.dataset_snapshot``
(the review head it was trained on) when the manifest names one, else up to
the review head at the request. The batch says which (``basis``).
The format (which fields are the request, what an approval signs) is in
workstation.release_format.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from workstation import review, trust
from workstation.errors import WorkstationError
from workstation.hashing import canonical_json, sha256_bytes
from workstation.identity import Signer
from workstation.models.registry import ModelVersion
from workstation.progress import Progress
from workstation.release_format import BATCH_FORMAT, approval_message, json_file
from workstation.workspace import Workspace, now_iso


def _sign(signer: Signer, message: bytes) -> bytes:
    """The one place release statements and approvals are signed (tests
    replace it to simulate a failure)."""
    return signer.sign(message)


# -- the regression gate ------------------------------------------------------------

def regression_report(ws: Workspace, target: ModelVersion, progress: Progress | None = None,
                      encoder: Any = None) -> dict[str, Any] | None:
    """The regression report a release of ``target`` is gated on, computed
    now (None: a first version, nothing to compare with). Any failure to
    compute it refuses the release: there is no release without the gate."""
    from workstation import regression  # imported here: regression reads releases

    return regression.gate_report_for_release(ws, target, progress, encoder=encoder)


def gate_verdict(report: dict[str, Any] | None, force: bool, force_reason: str
                 ) -> dict[str, Any]:
    """The gate's verdict; a failed gate blocks unless forced with a reason."""
    passed = _gate_pass(report)
    if passed is False and not force:
        reasons = ((report or {}).get("gate") or {}).get("reasons") or []
        raise WorkstationError(
            "the regression gate failed (pass=false); release refused"
            + (f": {'; '.join(reasons[:3])}" if reasons else "")
            + " (see `workstation compare`; force it only with a reason: --force REASON)")
    if passed is False and not (force_reason or "").strip():
        raise WorkstationError("forcing a release past a failed regression gate needs a reason")
    forced = passed is False
    return {"pass": passed, "forced": forced,
            "force_reason": force_reason.strip() if forced else None}


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


# -- label edits and patches ------------------------------------------------------------

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


def review_seq(ws: Workspace, head: str, what: str) -> int:
    """The review-log row whose chain hash is ``head`` (0 for the empty log)."""
    if head in ("", review.GENESIS):
        return 0
    row = ws.execute("SELECT seq FROM review_log WHERE hash = ?", [head]).fetchone()
    if row is None:
        raise WorkstationError(f"{what} names review head {head[:12]}…, which is not in this "
                               "workspace's review log")
    return int(row[0])


def _label_edits(ws: Workspace, previous: Any, target: ModelVersion) -> dict[str, Any]:
    start = previous.batch["label_edits"]["head"] if previous else ""
    snapshot = _snapshot_head(target.manifest)
    end, basis = ((snapshot, "model-dataset-snapshot") if snapshot is not None
                  else (review.head_hash(ws), "review-head-at-release"))
    lo = review_seq(ws, start, f"release {previous.ref}" if previous else "release")
    hi = review_seq(ws, end, f"manifest of {target.model}@{target.version}")
    # A version trained on an older snapshot than the previous release lists no edits.
    rows = ws.execute("SELECT seq, example_id, field, old, new, action FROM review_log "
                      "WHERE seq > ? AND seq <= ? ORDER BY seq", [lo, hi]).fetchall()
    edits = [{"seq": s, "example_id": e, "field": f, "old": json.loads(o), "new": json.loads(n),
              "action": a} for s, e, f, o, n, a in rows]
    # Every review-log row since the last release is listed (the log is the
    # record); by_field says how many of them touched labels and how many
    # were tags, notes or assignments, so "count" is not read as label changes.
    by_field = Counter(e["field"] for e in edits)
    return {"basis": basis, "from_head": start, "head": end, "count": len(edits),
            "by_field": dict(sorted(by_field.items())), "edits": edits}


def _version_json(v: ModelVersion) -> dict[str, Any]:
    return {"model_version_id": v.id, "model": v.model, "version": v.version,
            "sha256": v.sha256, "input_kind": v.input_kind, "parent_id": v.parent_id}


# -- the batch -------------------------------------------------------------------------

def request_batch(ws: Workspace, release_id: int, target: ModelVersion, previous: Any,
                  report: dict[str, Any] | None, gate: dict[str, Any], requester: Signer,
                  notes: str, approvals_required: int, separation: bool) -> dict[str, Any]:
    """The request part of a /3 batch (release_format.REQUEST_FIELDS): fixed
    when the release is requested; every approval signs its hash."""
    from_version = None if previous is None else {
        "release_id": previous.id, "model_version_id": previous.model_version_id,
        "model": previous.model, "version": previous.version, "sha256": previous.sha256}
    batch = {"format": BATCH_FORMAT, "workspace_id": ws.id, "release_id": release_id,
             "model": target.model, "from_version": from_version,
             "to_version": _version_json(target),
             "label_edits": _label_edits(ws, previous, target),
             "patches": _patches(target.manifest), "regression_report": report, "gate": gate,
             "notes": notes or "", "requested_by": _who(requester), "requested_at": now_iso(),
             "approvals_required": int(approvals_required), "separation": bool(separation)}
    try:
        # Round-trip so the signed batch is exactly what the workspace stores.
        return json.loads(canonical_json(batch))
    except (TypeError, ValueError) as exc:
        raise WorkstationError(f"the regression report is not plain JSON: {exc}") from None


def _who(signer: Signer) -> dict[str, Any]:
    return {"name": signer.name, "key_id": signer.key_id, "public_pem": signer.public_pem}


def manifest_sha256(manifest: dict[str, Any]) -> str:
    """The sha256 of manifest.json as a release holds it."""
    return sha256_bytes(json_file(manifest))


def sign_act(signer: Signer, request: dict[str, Any], manifest: dict[str, Any], act: str
             ) -> str:
    """``signer``'s signature (hex) of the request, as its requester or an approver."""
    return _sign(signer, approval_message(request, manifest_sha256(manifest), act)).hex()


def approval_entry(signer: Signer, signature: str, approved_at: str) -> dict[str, Any]:
    """One approval as the batch lists it."""
    return {**_who(signer), "approved_at": approved_at, "signature": signature}


def completed_batch(ws: Workspace, request: dict[str, Any], request_signature: str,
                    approvals: list[dict[str, Any]], completer: Signer,
                    approved_at: str) -> dict[str, Any]:
    """The batch of a release in force: its request, the requester's
    signature, every approval, who completed it, and the trust store then."""
    store = [{"key_id": k.key_id, "name": k.name, "roles": list(k.roles),
              "public_pem": k.public_pem} for k in trust.list_keys(ws) if k.active]
    return json.loads(canonical_json({
        **request, "request_signature": request_signature, "approvals": approvals,
        "approved_by": completer.name, "approver_key_id": completer.key_id,
        "approved_at": approved_at, "trust_store": store}))
