"""Conflicts between analysts and their adjudication.

Two analysts who hold different values for the same judgement field (label,
flipped, category) of an example make a conflict (workstation.review_state
keeps who holds what). An adjudicator settles it with an ``adjudicate`` row,
signed and logged like any edit: its ``new`` is the value decided, its
``old`` records what it settled (the value then in force and each analyst's
value). With ``release.separation`` on, an adjudicator cannot settle a
conflict they are part of. A later edit by an analyst reopens the question.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from workstation import policy, review, review_state, trust
from workstation.errors import WorkstationError
from workstation.identity import Signer
from workstation.workspace import Workspace


@dataclass(frozen=True)
class Conflict:
    """One field of one example on which analysts disagree."""

    example_id: int
    field: str
    values: list[dict[str, Any]]     # {key_id, analyst, value, time}, one per analyst
    value_in_force: Any
    adjudicated: Any                 # the newest adjudication's value (None: none yet)
    settled: bool

    def value_of(self, key_id: str) -> Any:
        return next(v["value"] for v in self.values if v["key_id"] == key_id)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def dataset_id(ws: Workspace, name: str) -> int:
    rows = ws.execute("SELECT id FROM datasets WHERE name = ?", [name]).fetchall()
    if not rows:
        raise WorkstationError(f"no dataset '{name}' (`workstation datasets` lists them)")
    return int(rows[0][0])


def conflicts(ws: Workspace, dataset: str | None = None, *, example_id: int | None = None,
              field: str | None = None, include_settled: bool = False) -> list[Conflict]:
    """Open conflicts of a dataset (or of one example), by example then field;
    ``include_settled`` adds disagreements an adjudication settled."""
    where, params = ["d.n_analysts > 1"], []
    if not include_settled:
        where.append("d.open_conflict")
    if dataset is not None:
        where.append("e.dataset_id = ?")
        params.append(dataset_id(ws, dataset))
    if example_id is not None:
        where.append("d.example_id = ?")
        params.append(int(example_id))
    if field is not None:
        where.append("d.field = ?")
        params.append(field)
    rows = ws.execute(
        "SELECT d.example_id, d.field, d.adjudicated, d.settled, list(struct_pack(key_id := "
        "a.key_id, analyst := a.analyst, value := a.value, time := a.time) ORDER BY a.time, "
        "a.key_id) FROM label_decisions d JOIN examples e ON e.id = d.example_id "
        "JOIN analyst_labels a ON a.example_id = d.example_id AND a.field = d.field "
        f"WHERE {' AND '.join(where)} GROUP BY ALL ORDER BY d.example_id, d.field",
        params).fetchall()
    out = []
    for example, name, adjudicated, settled, values in rows:
        decoded = [{**v, "value": json.loads(v["value"])} for v in values]
        if len({json.dumps(v["value"]) for v in decoded}) < 2:
            continue  # settled rows that no longer disagree
        out.append(Conflict(example, name, decoded,
                            review.current_values(ws, example)[name],
                            None if adjudicated is None else json.loads(adjudicated), settled))
    return out


def adjudicate(ws: Workspace, example_id: int, *, reason: str, choose: str | None = None,
               field: str | None = None, value: Any = review_state.UNSET,
               signer: Signer | None = None) -> review.Change:
    """Settle a disagreement on ``field`` of ``example_id``: take the value of
    the analyst whose key is ``choose``, or set ``value``; adjudicators only."""
    if not (reason or "").strip():
        raise WorkstationError("an adjudication needs a reason (--reason)")
    if (choose is None) == (value is review_state.UNSET):
        raise WorkstationError("adjudicate by choosing an analyst's value (--choose KEY_ID) "
                               "or by setting one (--flip, --no-flip, --set-label, "
                               "--set-category)")
    with ws.transaction(appends=review.APPENDS):
        signer = trust.require(ws, signer, "adjudicator")
        conflict = _the_conflict(ws, example_id, field, choose)
        parties = {v["key_id"] for v in conflict.values}
        if signer.key_id in parties and policy.get(ws, "release.separation"):
            raise WorkstationError(
                f"you ({signer.name}) are part of this disagreement on example {example_id}; "
                "with release.separation on, another adjudicator settles it")
        if choose is not None:
            if choose not in parties:
                raise WorkstationError(f"key {choose} holds no value of {conflict.field} on "
                                       f"example {example_id}; the analysts here: "
                                       f"{', '.join(sorted(parties))}")
            value = conflict.value_of(choose)
        new = _checked_value(ws, example_id, conflict.field, value)
        old = {"in_force": conflict.value_in_force,
               "analysts": {v["key_id"]: v["value"] for v in conflict.values}}
        return review.append(ws, example_id, conflict.field, old, new, reason.strip(), signer,
                             "adjudicate", None)


def _the_conflict(ws: Workspace, example_id: int, field: str | None,
                  choose: str | None) -> Conflict:
    review.current_values(ws, example_id)  # a one-line error for an unknown example
    found = conflicts(ws, example_id=example_id, field=field, include_settled=True)
    if choose is not None and field is None:
        found = [c for c in found if any(v["key_id"] == choose for v in c.values)]
    if not found:
        what = f" on {field}" if field else ""
        raise WorkstationError(f"analysts do not disagree{what} on example {example_id}: "
                               "nothing to adjudicate (`workstation conflicts`)")
    if len(found) > 1:
        raise WorkstationError(f"example {example_id} has disagreements on "
                               f"{' and '.join(c.field for c in found)}; say which (--field)")
    return found[0]


def _checked_value(ws: Workspace, example_id: int, field: str, value: Any) -> Any:
    kind = review.current_values(ws, example_id)["kind"]
    if kind not in review.FIELDS[field]:
        raise WorkstationError(f"example {example_id} is in a {kind} dataset; '{field}' "
                               f"applies to {' and '.join(review.FIELDS[field])} only")
    if field == "label":
        return review.normalise_label(value)
    if field == "flipped":
        return bool(value)
    return value or None
