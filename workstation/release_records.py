"""Releases as recorded: each release that took effect (the ``releases``
table) and each request that did not, with its status, and which release of
a model is in force according to the ledger. Read-only: making, approving
and rolling back releases is ``workstation.releases``; the regression gate
and ``verify`` read releases from here without importing that module.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from workstation import policy_rules as policy
from workstation import release_requests
from workstation.errors import WorkstationError
from workstation.release_requests import Request
from workstation.workspace import Workspace

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



def _policy(ws: Workspace) -> tuple[int, bool]:
    return policy.get(ws, "release.approvals"), policy.get(ws, "release.separation")


def _required(ws: Workspace, req: Request) -> tuple[int, bool]:
    """The stricter of the request's policy and today's."""
    required, separation = _policy(ws)
    return (max(required, int(req.request["approvals_required"])),
            separation or bool(req.request["separation"]))



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
