"""Release requests and their approvals (k-of-n), as the workspace records them.

A request that does not take effect at once is a ``release_requests`` row
(its request batch, see workstation.governance) and a ``release-request``
ledger row signed by the requester (any trusted key). Each approver adds a
``release-approve`` row, and one rejection (``release-reject``) ends the
request. The approval that completes the quorum writes the ``release`` row
itself (workstation.releases). Ledger payloads::

    release-request  {release_id, model, version, model_version_id, sha256,
                      request_sha256, key_id, signature, forced}
    release-approve  {release_id, model, version, key_id, signature}
    release-reject   {release_id, model, version, reason}

``signature`` is the Ed25519 signature of the approval statement
(workstation.release_format) with act "request" or "approve": what the
exported release carries, checkable offline. A request is ``outdated`` once
its model had a release or a rollback after it: its evidence (the release it
was compared with, the label edits since) no longer holds.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from workstation import ledger
from workstation.errors import WorkstationError
from workstation.hashing import canonical_json
from workstation.identity import Signer
from workstation.release_format import request_sha256
from workstation.workspace import Workspace

REQUEST_KIND, APPROVE_KIND, REJECT_KIND = "release-request", "release-approve", "release-reject"
_COLUMNS = ("id", "model", "model_version_id", "request", "signature", "key_id",
            "requested_at", "requested_by", "ledger_seq")


@dataclass(frozen=True)
class Request:
    """A recorded release request (the release id it will have, if approved)."""

    id: int
    model: str
    model_version_id: int
    request: dict[str, Any]
    signature: str       # the requester's, over the approval statement (act "request")
    key_id: str
    requested_at: str
    requested_by: str
    ledger_seq: int

    @property
    def version(self) -> int:
        return int(self.request["to_version"]["version"])

    @property
    def ref(self) -> str:
        return f"{self.model}@{self.version}"


@dataclass(frozen=True)
class Decision:
    """One approval or rejection of a request (a ledger row)."""

    release_id: int
    decision: str        # "approve" or "reject"
    key_id: str
    name: str
    time: str
    ledger_seq: int
    signature: str | None = None  # approvals: over the approval statement
    reason: str | None = None     # rejections

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def next_release_id(ws: Workspace) -> int:
    """Releases and requests share one numbering: a request keeps its id when it takes effect."""
    return int(ws.execute("SELECT coalesce(max(id), 0) + 1 FROM (SELECT id FROM releases "
                          "UNION ALL SELECT id FROM release_requests)").fetchall()[0][0])


def record(ws: Workspace, request: dict[str, Any], signature: str, signer: Signer,
           forced: bool) -> Request:
    """Write a request and its signed ledger row (joins the caller's transaction)."""
    to = request["to_version"]
    with ws.transaction():
        entry = ledger.append(ws, REQUEST_KIND, {
            "release_id": request["release_id"], "model": request["model"],
            "version": to["version"], "model_version_id": to["model_version_id"],
            "sha256": to["sha256"], "request_sha256": request_sha256(request),
            "key_id": signer.key_id, "signature": signature, "forced": forced}, signer=signer)
        ws.execute(f"INSERT INTO release_requests ({', '.join(_COLUMNS)}) VALUES "
                   f"({', '.join('?' * len(_COLUMNS))})",
                   [request["release_id"], request["model"], to["model_version_id"],
                    canonical_json(request), signature, signer.key_id, request["requested_at"],
                    signer.name, entry.seq])
    return get(ws, request["release_id"])


def record_decision(ws: Workspace, req: Request, signer: Signer, *, signature: str | None = None,
                    reason: str | None = None) -> Decision:
    """An approval (with its signature) or a rejection (with its reason), signed."""
    kind = APPROVE_KIND if signature is not None else REJECT_KIND
    payload = {"release_id": req.id, "model": req.model, "version": req.version}
    payload.update({"key_id": signer.key_id, "signature": signature} if signature is not None
                   else {"reason": reason})
    entry = ledger.append(ws, kind, payload, signer=signer)
    return _decision(entry.to_json())


def get(ws: Workspace, release_id: int) -> Request | None:
    rows = ws.execute(f"SELECT {', '.join(_COLUMNS)} FROM release_requests WHERE id = ?",
                      [release_id]).fetchall()
    return _request(rows[0]) if rows else None


def all_requests(ws: Workspace, model: str | None = None) -> list[Request]:
    sql, params = f"SELECT {', '.join(_COLUMNS)} FROM release_requests", []
    if model is not None:
        sql, params = sql + " WHERE model = ?", [model]
    return [_request(r) for r in ws.execute(sql + " ORDER BY id", params).fetchall()]


def _request(row: tuple) -> Request:
    values = dict(zip(_COLUMNS, row))
    values["request"] = json.loads(values["request"])
    return Request(**values)


def decisions(ws: Workspace, release_id: int | None = None) -> list[Decision]:
    """Approvals and rejections (of one request when given), oldest first."""
    sql = "SELECT * FROM (SELECT seq, time, actor, kind, payload, signer_key_id FROM ledger " \
          f"WHERE kind IN ('{APPROVE_KIND}', '{REJECT_KIND}'))"
    params: list[Any] = []
    if release_id is not None:
        sql += " WHERE json_extract(payload, '$.release_id')::BIGINT = ?"
        params.append(release_id)
    rows = ws.execute(sql + " ORDER BY seq", params).fetchall()
    return [_decision({"seq": s, "time": t, "actor": a, "kind": k, "payload": json.loads(p),
                       "signer_key_id": key}) for s, t, a, k, p, key in rows]


def _decision(entry: dict[str, Any]) -> Decision:
    payload = entry["payload"]
    return Decision(int(payload["release_id"]),
                    "approve" if entry["kind"] == APPROVE_KIND else "reject",
                    entry["signer_key_id"], entry["actor"], entry["time"], entry["seq"],
                    payload.get("signature"), payload.get("reason"))


def outdated(ws: Workspace, req: Request) -> bool:
    """Did the model have a release or rollback after the request?"""
    return bool(ws.execute(
        "SELECT count(*) FROM ledger WHERE kind IN ('release', 'rollback') AND seq > ? "
        "AND json_extract_string(payload, '$.model') = ?", [req.ledger_seq, req.model]
    ).fetchall()[0][0])


def pending_for(ws: Workspace, model_version_id: int) -> Request | None:
    """A request of this version that could still take effect, if any."""
    released = {r[0] for r in ws.execute("SELECT id FROM releases").fetchall()}
    rejected = {d.release_id for d in decisions(ws) if d.decision == "reject"}
    for req in all_requests(ws):
        if req.model_version_id == model_version_id and req.id not in released | rejected \
                and not outdated(ws, req):
            return req
    return None


def require(ws: Workspace, release_id: int) -> Request:
    req = get(ws, release_id)
    if req is None:
        raised = ws.execute("SELECT count(*) FROM releases WHERE id = ?",
                            [release_id]).fetchall()[0][0]
        raise WorkstationError(f"release {release_id} took effect at once: there is nothing "
                               "to approve" if raised else
                               f"no release request {release_id} (`workstation releases`)")
    return req
