"""The review state: what the set of review-log rows says about each example,
per analyst and in force, and the tables that cache it.

The state is a pure function of the SET of rows, so that two copies of a
workspace that merged each other's rows (workstation.review_bundles) agree,
whatever order their logs hold the rows in. Rows are read oldest first:
rows written before schema v4 (unsigned, by seq: every copy shares them),
then signed rows by (author's time, row hash). Per example:

- **Judgement fields** (``label``, ``flipped``, ``category``) are per
  analyst (per key): an analyst's value is their last edit or redo; their
  undo restores what they had before the undone row, possibly nothing.
  Two analysts with different values make a **conflict**. An ``adjudicate``
  row newer than every analyst row on the field **settles** it. The value
  in force: the settling adjudication's; else the analysts' value when they
  agree (one analyst agrees with themself); else, by ``review.label_policy``,
  ``majority`` the value most analysts hold (a tie falls through) or
  ``adjudicated`` the newest adjudication's value if any, else the baseline
  (the import, with the edits made before identities).
- **Shared fields** (``tags``, ``note``, ``excluded``): the newest row's
  value; a tags row adds and removes what it changed, so that tags added on
  two laptops are both kept.
- **assignee**: the newest assignment (a key id, or none); not a review.

Caches, rewritten for the touched examples in the transaction that writes
their rows: ``example_state`` (the values in force, for every example with
a review row), ``analyst_labels`` (each analyst's own value),
``label_decisions`` (open conflict, newest adjudication) and
``assignments``. ``verify_state`` recomputes all four from the log.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

from workstation import policy_rules
from workstation.hashing import canonical_json
from workstation.workspace import Workspace

JUDGEMENTS = ("label", "flipped", "category")
SHARED = ("tags", "note", "excluded")
ASSIGNEE = "assignee"
LOG_COLUMNS = ("seq", "example_id", "field", "old", "new", "analyst", "key_id", "time",
               "action", "row_hash", "target_hash")


class _Unset:
    """An analyst's value of a field they never set, or withdrew by undo."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()


@dataclass(frozen=True)
class AnalystValue:
    """One analyst's own current value of one field of one example."""

    key_id: str
    analyst: str
    value: Any
    time: str
    row_hash: str


@dataclass
class Decision:
    """A judgement field of an example that analysts or adjudicators touched."""

    analysts: dict[str, AnalystValue] = field(default_factory=dict)
    adjudicated: Any = UNSET
    adjudicator_key: str | None = None
    adjudicated_at: str | None = None
    settled: bool = False
    open_conflict: bool = False


@dataclass
class ExampleReview:
    """Everything the log says about one example."""

    example_id: int
    values: dict[str, Any]                 # in force: flipped, label, category, tags, note, excluded
    reviewed: bool = False                 # any row other than an assignment
    last_seq: int = 0
    decisions: dict[str, Decision] = field(default_factory=dict)
    assignee: tuple[str, str, str] | None = None      # (key id, assigned by, time)
    before: dict[str, Any] = field(default_factory=dict)  # row hash -> author's value before it


# -- the fold ------------------------------------------------------------------

def order_key(row: dict[str, Any]) -> tuple:
    """Legacy rows first, by seq; then signed rows by (time, row hash)."""
    if row["row_hash"] is None:
        return (0, row["seq"], "", "")
    return (1, 0, row["time"], row["row_hash"])


def baseline(label: bool | None, category: str | None) -> dict[str, Any]:
    """An example's values as imported."""
    return {"flipped": False, "label": None if label is None else ("safe" if label else "unsafe"),
            "category": category, "tags": [], "note": None, "excluded": False}


def fold(example_id: int, rows: Iterable[dict[str, Any]], base: dict[str, Any],
         label_policy: str) -> ExampleReview:
    """The review of one example from its log rows (any order; old/new decoded)."""
    review = ExampleReview(example_id, dict(base))
    newest: dict[str, tuple] = {}
    adjudication_rank: dict[str, tuple] = {}
    for row in sorted(rows, key=order_key):
        name = row["field"]
        if name == ASSIGNEE:
            review.assignee = None if row["new"] is None else (row["new"], row["key_id"],
                                                               row["time"])
            continue
        review.reviewed = True
        review.last_seq = max(review.last_seq, row["seq"])
        if row["row_hash"] is None or name in SHARED:
            review.values[name] = _shared(name, review.values[name], row)
        elif row["action"] == "adjudicate":
            decision = review.decisions.setdefault(name, Decision())
            decision.adjudicated, decision.adjudicator_key = row["new"], row["key_id"]
            decision.adjudicated_at = row["time"]
            adjudication_rank[name] = order_key(row)
        else:
            _analyst_row(review, row)
            newest[name] = order_key(row)
    for name, decision in review.decisions.items():
        _decide(review, name, decision, newest.get(name), adjudication_rank.get(name),
                label_policy)
    return review


def _shared(name: str, current: Any, row: dict[str, Any]) -> Any:
    if name != "tags" or row["row_hash"] is None:
        return sorted(row["new"] or []) if name == "tags" else row["new"]
    old, new = set(row["old"] or []), set(row["new"] or [])
    return sorted((set(current) | (new - old)) - (old - new))


def _analyst_row(review: ExampleReview, row: dict[str, Any]) -> None:
    mine = review.decisions.setdefault(row["field"], Decision()).analysts
    held = mine.get(row["key_id"])
    review.before[row["row_hash"]] = held.value if held else UNSET
    value = review.before.get(row["target_hash"], UNSET) if row["action"] == "undo" \
        else row["new"]
    if value is UNSET:
        mine.pop(row["key_id"], None)
    else:
        mine[row["key_id"]] = AnalystValue(row["key_id"], row["analyst"], value, row["time"],
                                           row["row_hash"])


def _decide(review: ExampleReview, name: str, decision: Decision, newest: tuple | None,
            adjudicated: tuple | None, label_policy: str) -> None:
    values = [v.value for v in decision.analysts.values()]
    distinct = {canonical_json(v) for v in values}
    decision.settled = adjudicated is not None and (newest is None or adjudicated > newest)
    decision.open_conflict = len(distinct) > 1 and not decision.settled
    fallback = review.values[name] if decision.adjudicated is UNSET else decision.adjudicated
    if decision.settled or not values:
        review.values[name] = fallback
    elif len(distinct) == 1:
        review.values[name] = values[0]
    elif label_policy == "majority":
        review.values[name] = _majority(values, fallback)
    else:
        review.values[name] = fallback


def _majority(values: list[Any], fallback: Any) -> Any:
    counts = Counter(canonical_json(v) for v in values).most_common()
    if len(counts) > 1 and counts[0][1] == counts[1][1]:
        return fallback
    return json.loads(counts[0][0])


# -- reading the log -----------------------------------------------------------------

def _decode(values: tuple) -> dict[str, Any]:
    row = dict(zip(LOG_COLUMNS, values))
    row["old"] = None if row["old"] is None else json.loads(row["old"])
    row["new"] = None if row["new"] is None else json.loads(row["new"])
    return row


def label_policy(ws: Workspace) -> str:
    return policy_rules.get(ws, "review.label_policy")


def reviews(ws: Workspace, example_ids: Iterable[int] | None = None,
            extra_rows: Iterable[dict[str, Any]] = ()) -> dict[int, ExampleReview]:
    """The review of each example that has log rows (only ``example_ids`` when
    given; ``extra_rows`` are folded in as if logged: a row about to be written)."""
    extra: dict[int, list[dict[str, Any]]] = {}
    for row in extra_rows:
        extra.setdefault(row["example_id"], []).append(row)
    ids = None if example_ids is None else sorted({int(i) for i in example_ids} | set(extra))
    return {r.example_id: r for r in iter_reviews(ws, ids, extra)}


def iter_reviews(ws: Workspace, ids: list[int] | None = None,
                 extra: dict[int, list[dict[str, Any]]] | None = None
                 ) -> Iterator[ExampleReview]:
    """Reviews one example at a time, streaming the log in example order (the
    whole log when ``ids`` is None): memory stays per example."""
    if ids == []:
        return
    extra = extra or {}
    where = "" if ids is None else f" WHERE example_id IN ({', '.join(map(str, ids))})"
    bases = _baselines(ws, ids)
    policy_now = label_policy(ws)
    group: list[dict[str, Any]] = []
    seen: set[int] = set()
    for row in _stream(ws, f"SELECT {', '.join(LOG_COLUMNS)} FROM review_log{where} "
                           "ORDER BY example_id"):
        if group and row["example_id"] != group[0]["example_id"]:
            yield _fold_group(group, bases, extra, policy_now, seen)
            group = []
        group.append(row)
    if group:
        yield _fold_group(group, bases, extra, policy_now, seen)
    for example_id in sorted(set(extra) - seen):
        if example_id in bases:
            yield fold(example_id, extra[example_id], bases[example_id], policy_now)


def _fold_group(group: list[dict[str, Any]], bases: dict[int, dict[str, Any]],
                extra: dict[int, list[dict[str, Any]]], policy_now: str,
                seen: set[int]) -> ExampleReview:
    example_id = group[0]["example_id"]
    seen.add(example_id)
    base = bases.get(example_id) or baseline(None, None)  # a missing example: verify names it
    return fold(example_id, group + extra.get(example_id, []), base, policy_now)


def _stream(ws: Workspace, sql: str) -> Iterator[dict[str, Any]]:
    """Rows of ``sql`` in batches, on the workspace's own connection (inside a
    transaction it sees that transaction's rows); run nothing else on it meanwhile."""
    result = ws.con.execute(sql)
    while batch := result.fetchmany(20_000):
        yield from (_decode(r) for r in batch)


def _baselines(ws: Workspace, ids: list[int] | None) -> dict[int, dict[str, Any]]:
    where = " WHERE id IN (SELECT DISTINCT example_id FROM review_log)" if ids is None \
        else f" WHERE id IN ({', '.join(map(str, ids))})"
    return {r[0]: baseline(r[1], r[2]) for r in ws.execute(
        f"SELECT id, label, category FROM examples{where}").fetchall()}


# -- the caches ------------------------------------------------------------------------

CACHES = ("example_state", "analyst_labels", "label_decisions", "assignments")


def cache_rows(review: ExampleReview) -> dict[str, list[tuple]]:
    """The rows ``review`` puts in each cache table."""
    out: dict[str, list[tuple]] = {t: [] for t in CACHES}
    v, i = review.values, review.example_id
    if review.reviewed:
        label = None if v["label"] is None else v["label"] == "safe"
        out["example_state"].append((i, bool(v["flipped"]), label, v["category"],
                                     sorted(v["tags"]), v["note"], bool(v["excluded"]),
                                     review.last_seq))
    for name, d in sorted(review.decisions.items()):
        for a in sorted(d.analysts.values(), key=lambda a: a.key_id):
            out["analyst_labels"].append((i, name, a.key_id, a.analyst, canonical_json(a.value),
                                          a.time, a.row_hash))
        out["label_decisions"].append((
            i, name, len(d.analysts), d.open_conflict,
            None if d.adjudicated is UNSET else canonical_json(d.adjudicated),
            d.adjudicator_key, d.adjudicated_at, d.settled))
    if review.assignee is not None:
        out["assignments"].append((i, *review.assignee))
    return out


def refresh(ws: Workspace, example_ids: Iterable[int]) -> dict[int, ExampleReview]:
    """Rewrite the caches of ``example_ids`` from the log (inside the caller's
    transaction); the reviews it computed."""
    ids = sorted({int(i) for i in example_ids})
    if not ids:
        return {}
    found = reviews(ws, ids)
    listed = ", ".join(map(str, ids))
    with ws.transaction():
        for table in CACHES:
            ws.execute(f"DELETE FROM {table} WHERE example_id IN ({listed})")
        _write(ws, found.values())
    return found


def refresh_disputed(ws: Workspace) -> None:
    """Rewrite the caches of every example two analysts labelled (after the
    label policy changed)."""
    refresh(ws, [r[0] for r in ws.execute(
        "SELECT DISTINCT example_id FROM label_decisions WHERE n_analysts > 1").fetchall()])


def rebuild(ws: Workspace) -> None:
    """Recompute every cache from the whole log (the schema-7 migration; a
    policy change)."""
    with ws.transaction():
        for table in CACHES:
            ws.execute(f"DELETE FROM {table}")
        _write(ws, list(iter_reviews(ws)))


def _write(ws: Workspace, found: Iterable[ExampleReview]) -> None:
    tables: dict[str, list[tuple]] = {t: [] for t in CACHES}
    for review in found:
        for table, rows in cache_rows(review).items():
            tables[table] += rows
    for table, rows in tables.items():
        _insert(ws, table, rows)


def _insert(ws: Workspace, table: str, rows: list[tuple]) -> None:
    if not rows:
        return
    if len(rows) <= 64:
        ws.con.executemany(f"INSERT INTO {table} VALUES ({', '.join('?' * len(rows[0]))})", rows)
        return
    import pyarrow as pa

    columns = [r[0] for r in ws.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = ? "
        "ORDER BY ordinal_position", [table]).fetchall()]
    data = pa.table({c: [r[k] for r in rows] for k, c in enumerate(columns)})
    ws.con.register("_review_cache_rows", data)
    try:
        ws.execute(f"INSERT INTO {table} SELECT * FROM _review_cache_rows")
    finally:
        ws.con.unregister("_review_cache_rows")


# -- verification -------------------------------------------------------------------------

_STORED = {
    "example_state": "SELECT example_id, flipped, label, category, list_sort(tags), note, "
                     "excluded, last_seq FROM example_state",
    "analyst_labels": "SELECT example_id, field, key_id, analyst, value, time, row_hash "
                      "FROM analyst_labels",
    "label_decisions": "SELECT example_id, field, n_analysts, open_conflict, adjudicated, "
                       "adjudicator_key, adjudicated_at, settled FROM label_decisions",
    "assignments": "SELECT example_id, key_id, assigned_by, time FROM assignments",
}


def verify_state(ws: Workspace) -> str | None:
    """Recompute the caches from the log and compare: a message naming the
    first example whose cached review does not follow from the log, or None."""
    expected: dict[str, set[tuple]] = {t: set() for t in CACHES}
    for review in iter_reviews(ws):
        for table, rows in cache_rows(review).items():
            expected[table] |= {_hashable(r) for r in rows}
    for table in CACHES:
        stored = {_hashable(r) for r in ws.execute(_STORED[table]).fetchall()}
        odd = stored ^ expected[table]
        if odd:
            example_id = min(r[0] for r in odd)
            what = "review state" if table == "example_state" else f"cached {table}"
            return f"{what} of example {example_id} does not follow from the review log"
    return None


def _hashable(row: tuple) -> tuple:
    return tuple(tuple(v) if isinstance(v, list) else v for v in row)
