"""Assigning examples to analysts: who is to review what.

An assignment is a review-log row of the field ``assignee`` (the assigned
analyst's key id, or none), signed like an edit, so it travels in review
bundles; the newest one is in force (``assignments`` caches it). Any reviewer
may assign; the assignee must be a trusted reviewer. A slice of an audit
run's failure list (``failure_ids``) is the usual thing to hand out.
"""

from __future__ import annotations

from typing import Iterable

from workstation import review, trust
from workstation.errors import WorkstationError
from workstation.identity import Signer
from workstation.workspace import Workspace


def resolve_analyst(ws: Workspace, who: str, *, reviewers_only: bool = True) -> str:
    """A trusted reviewer's key id, from their key id or their (unique) name
    (``reviewers_only`` False: any key ever trusted here, revoked ones too)."""
    keys = [k for k in trust.list_keys(ws)
            if not reviewers_only or (k.active and "reviewer" in k.roles)]
    exact = [k for k in keys if k.key_id == who] or [k for k in keys if k.name == who]
    if len(exact) == 1:
        return exact[0].key_id
    if not exact:
        names = ", ".join(f"{k.name} ({k.key_id})" for k in keys) or "none"
        raise WorkstationError(f"no trusted reviewer '{who}' here; reviewers: {names}")
    raise WorkstationError(f"several reviewers are named '{who}'; give the key id "
                           f"({', '.join(k.key_id for k in exact)})")


def assign(ws: Workspace, example_ids: Iterable[int], who: str | None, reason: str, *,
           signer: Signer | None = None) -> list[review.Change]:
    """Assign the examples to ``who`` (a reviewer's name or key id; None:
    unassign), one signed log row per example whose assignee changes."""
    ids = list(dict.fromkeys(int(i) for i in example_ids))
    if not ids:
        raise WorkstationError("no examples to assign")
    key_id = None if who is None else resolve_analyst(ws, who)
    return review.apply(ws, [review.Edit(i, "assignee", key_id, reason) for i in ids],
                        signer=signer)


def failure_ids(ws: Workspace, run_id: int, offset: int = 0, limit: int = 50) -> list[int]:
    """The example ids of a slice of an audit run's failure list (by rank)."""
    from workstation.audits.runs import list_failures

    return [int(f["example_id"]) for f in list_failures(ws, run_id, limit=limit, offset=offset)
            if f.get("example_id") is not None]


def assigned_to(ws: Workspace, key_id: str, dataset: str | None = None) -> list[int]:
    """The examples assigned to ``key_id`` (in one dataset when named)."""
    sql = "SELECT a.example_id FROM assignments a JOIN examples e ON e.id = a.example_id " \
          "WHERE a.key_id = ?"
    params: list = [key_id]
    if dataset is not None:
        sql += " AND e.dataset_id = (SELECT id FROM datasets WHERE name = ?)"
        params.append(dataset)
    return [r[0] for r in ws.execute(sql + " ORDER BY a.example_id", params).fetchall()]
