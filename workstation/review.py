"""The review log: label edits, undo and redo, and the hash chain.

Every change an analyst makes to an example (flip a preference, set the
safe/unsafe label, set a category, add or remove a tag, write a note, exclude
or restore, assign it to an analyst) is appended to ``review_log`` with who,
when, why, the old and the new value. Rows are never updated or deleted: an
undo is itself a logged change, and each analyst undoes their own edits. Each row is signed by its author's identity, who must be trusted as
a reviewer here (workstation.trust); each row's hash covers its content and
the previous row's hash, so a changed or removed row breaks the chain
(``verify_chain`` names the first). The hash and signature formulas are in
workstation.review_rows.

The current label of an example is the import plus the log, read per
analyst with the label policy (workstation.review_state, which also keeps the
cached state in the same transaction as the log row, so the two never
disagree); adjudications are in workstation.conflicts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Iterable

from workstation import review_rows, review_state, trust
from workstation.chain import GENESIS, first_break
from workstation.errors import WorkstationError
from workstation.hashing import canonical_json
from workstation.identity import Signer
from workstation.workspace import Workspace, now_iso


# field name -> the dataset kinds it applies to
FIELDS: dict[str, tuple[str, ...]] = {
    "flipped": ("pairs",),
    "label": ("labels",),
    "category": ("pairs", "labels", "demos"),
    "tags": ("pairs", "labels", "demos"),
    "note": ("pairs", "labels", "demos"),
    "excluded": ("pairs", "labels", "demos"),
    "assignee": ("pairs", "labels", "demos"),
}

_ENTRY_COLUMNS = review_rows.COLUMNS


@dataclass(frozen=True)
class Edit:
    """One requested change: set ``field`` of ``example_id`` to ``value``."""

    example_id: int
    field: str
    value: Any
    reason: str


@dataclass(frozen=True)
class Change:
    """What a review call changed (one per log row it appended)."""

    seq: int
    example_id: int
    field: str
    old: Any
    new: Any
    action: str
    target_seq: int | None
    hash: str
    row_hash: str = ""
    analyst: str = ""
    key_id: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# -- reading ---------------------------------------------------------------

def head_hash(ws: Workspace) -> str:
    """Hash of the newest log row ("" for an empty log): a dataset snapshot id."""
    row = ws.execute("SELECT hash FROM review_log ORDER BY seq DESC LIMIT 1").fetchone()
    return row[0] if row else ""


def entries(ws: Workspace, example_id: int | None = None, limit: int | None = None,
            dataset_id: int | None = None) -> list[dict[str, Any]]:
    """Log rows, oldest first, with old/new decoded from JSON."""
    sql = f"SELECT {', '.join(_ENTRY_COLUMNS)} FROM review_log"
    params: list[Any] = []
    if example_id is not None:
        sql += " WHERE example_id = ?"
        params.append(example_id)
    elif dataset_id is not None:
        sql += " WHERE example_id IN (SELECT id FROM examples WHERE dataset_id = ?)"
        params.append(dataset_id)
    sql += " ORDER BY seq"
    if limit is not None:
        sql = f"SELECT * FROM ({sql} DESC LIMIT {int(limit)}) ORDER BY seq"
    rows = ws.execute(sql, params).fetchall()
    return [_decode_row(r) for r in rows]


def _decode_row(row: tuple) -> dict[str, Any]:
    entry = dict(zip(_ENTRY_COLUMNS, row))
    entry["old"] = _json_load(entry["old"])
    entry["new"] = _json_load(entry["new"])
    return entry


def _json_load(text: str | None) -> Any:
    import json

    return None if text is None else json.loads(text)


def current_values(ws: Workspace, example_id: int) -> dict[str, Any]:
    """The example's reviewable fields as they stand now."""
    rows = ws.execute(
        """SELECT d.kind, c.flipped, c.current_label, c.current_category, c.tags, c.note,
                  c.excluded, a.key_id
           FROM current_examples c JOIN datasets d ON d.id = c.dataset_id
           LEFT JOIN assignments a ON a.example_id = c.id WHERE c.id = ?""",
        [example_id]).fetchall()
    if not rows:
        raise WorkstationError(f"no example with id {example_id}")
    kind, flipped, label, category, tags, note, excluded, assignee = rows[0]
    return {"kind": kind, "flipped": bool(flipped), "label": _label_text(label),
            "category": category, "tags": list(tags or []), "note": note,
            "excluded": bool(excluded), "assignee": assignee}


def _label_text(label: bool | None) -> str | None:
    return None if label is None else ("safe" if label else "unsafe")


# -- writing ---------------------------------------------------------------

def own_values(ws: Workspace, example_id: int, key_id: str) -> dict[str, Any]:
    """The judgement fields (label, flipped, category) ``key_id`` holds a value
    of on this example: their own, which may differ from the value in force."""
    return {f: _json_load(v) for f, v in ws.execute(
        "SELECT field, value FROM analyst_labels WHERE example_id = ? AND key_id = ?",
        [example_id, key_id]).fetchall()}


def apply(ws: Workspace, edits: Iterable[Edit], *, signer: Signer | None = None
          ) -> list[Change]:
    """Append the edits in one transaction, each signed by ``signer`` (default:
    the session's identity), who must be trusted as a reviewer; all or nothing.

    A judgement (label, flipped, category) is the analyst's own: it is logged
    when it changes their own value, so an analyst confirms a value in force
    by setting it. Other fields are logged when they change the value in force."""
    changes: list[Change] = []
    with ws.transaction(appends=APPENDS):
        signer = trust.require(ws, signer, "reviewer")
        for edit in edits:
            change = _apply_one(ws, edit, signer)
            if change is not None:
                changes.append(change)
    return changes


def _apply_one(ws: Workspace, edit: Edit, signer: Signer) -> Change | None:
    if not edit.reason or not edit.reason.strip():
        raise WorkstationError("every change needs a reason (--reason)")
    current = current_values(ws, edit.example_id)
    if edit.field not in FIELDS:
        raise WorkstationError(f"unknown field '{edit.field}'; one of {', '.join(FIELDS)}")
    if current["kind"] not in FIELDS[edit.field]:
        raise WorkstationError(
            f"example {edit.example_id} is in a {current['kind']} dataset; "
            f"'{edit.field}' applies to {' and '.join(FIELDS[edit.field])} only")
    new = _normalise(edit.field, edit.value)
    if edit.field == review_state.ASSIGNEE and new is not None:
        _check_assignee(ws, new)
    old = seen_value(ws, edit.example_id, edit.field, signer.key_id, current)
    if new == old and not (edit.field in review_state.JUDGEMENTS and
                           edit.field not in own_values(ws, edit.example_id, signer.key_id)):
        return None  # nothing changes: nothing to log
    return append(ws, edit.example_id, edit.field, old, new, edit.reason, signer, "edit", None)


def seen_value(ws: Workspace, example_id: int, field: str, key_id: str,
               current: dict[str, Any] | None = None) -> Any:
    """The value an analyst changes: their own for a judgement they hold, else the one in force."""
    if field in review_state.JUDGEMENTS:
        own = own_values(ws, example_id, key_id)
        if field in own:
            return own[field]
    return (current or current_values(ws, example_id))[field]


def _check_assignee(ws: Workspace, key_id: str) -> None:
    key = trust.get_key(ws, key_id)
    if key is None or not key.active or "reviewer" not in key.roles:
        raise WorkstationError(f"cannot assign to {key_id}: not a trusted reviewer here "
                               "(`workstation trust list`)")


def _normalise(field: str, value: Any) -> Any:
    if field in ("flipped", "excluded"):
        return bool(value)
    if field == "label":
        return normalise_label(value)
    if field == "tags":
        return sorted({str(t) for t in value})
    if value is not None and not isinstance(value, str):
        raise WorkstationError(f"'{field}' must be text")
    return value or None


def normalise_label(value: Any) -> str:
    """Accept safe/unsafe, 1/0, true/false; return "safe" or "unsafe"."""
    text = str(value).strip().lower()
    if text in ("safe", "1", "true"):
        return "safe"
    if text in ("unsafe", "0", "false"):
        return "unsafe"
    raise WorkstationError(f"label must be safe or unsafe (or 1/0), not '{value}'")


# Tables a review transaction appends to (the first signer's owner row goes to the ledger).
APPENDS = ("review_log", "ledger")
_last_time = ""


def row_time() -> str:
    """Now, strictly after the last row this process wrote: rows are ordered by
    their author's time, so one analyst's rows must never share or reverse it."""
    global _last_time
    now = now_iso()
    if now <= _last_time:
        import datetime as dt

        now = (dt.datetime.fromisoformat(_last_time) + dt.timedelta(microseconds=1)
               ).isoformat(timespec="microseconds")
    _last_time = now
    return now


def append(ws: Workspace, example_id: int, field: str, old: Any, new: Any, reason: str,
           signer: Signer, action: str, target: dict[str, Any] | None) -> Change:
    """Sign and append one row, then bring the example's cached state up to date."""
    source_sha256, source_index = review_rows.source_ref(ws, example_id)
    entry = {"example_id": example_id, "source_sha256": source_sha256,
             "source_index": source_index, "field": field, "old": canonical_json(old),
             "new": canonical_json(new), "reason": reason, "analyst": signer.name,
             "key_id": signer.key_id, "time": row_time(), "action": action,
             "target_hash": review_rows.ref_hash(target) if target else None}
    entry["row_hash"] = review_rows.row_hash(entry)
    entry["signature"] = signer.sign_hash(entry["row_hash"])
    insert(ws, entry, target["seq"] if target else None)
    review_state.refresh(ws, [example_id])
    return Change(entry["seq"], example_id, field, old, new, action, entry["target_seq"],
                  entry["hash"], entry["row_hash"], signer.name, signer.key_id)


def insert(ws: Workspace, entry: dict[str, Any], target_seq: int | None) -> None:
    """Chain a signed row (its content, row hash and signature in ``entry``) to
    this log's head: sets its seq, target_seq, prev_hash and hash. The caller
    refreshes the example's cached state."""
    entry["seq"] = ws.next_id("review_log", "seq")
    entry["target_seq"] = target_seq
    entry["prev_hash"] = head_hash(ws) or GENESIS
    entry["hash"] = review_rows.chain_hash(entry)
    ws.execute(f"INSERT INTO review_log ({', '.join(_ENTRY_COLUMNS)}) VALUES "
               f"({', '.join('?' * len(_ENTRY_COLUMNS))})", [entry[c] for c in _ENTRY_COLUMNS])


def entry_hash(entry: dict[str, Any]) -> str:
    """The chain hash of a log row (workstation.review_rows has the formulas)."""
    return review_rows.entry_hash(entry)


# -- undo / redo -----------------------------------------------------------
# Each analyst undoes and redoes their own edits (adjudications are changed by
# adjudicating again). Their undo stack is their edits not undone, newest on
# top (a redo re-does an undone edit; an edit after undos clears what could be
# redone), so the top is found from their rows alone, without replaying the log.

_RANK = "time || ' ' || row_hash"


def _undo_target(ws: Workspace, key_id: str) -> dict[str, Any] | None:
    undone = {r[0] for r in ws.execute(
        f"""SELECT target_hash FROM review_log WHERE key_id = ? AND action IN ('undo', 'redo')
            GROUP BY target_hash HAVING arg_max(action, {_RANK}) = 'undo'""",
        [key_id]).fetchall()}
    # The newest edits, as many as are undone and one more: the first not undone is the top.
    for row in ws.execute(
            f"""SELECT {', '.join(_ENTRY_COLUMNS)} FROM review_log WHERE key_id = ?
                AND action = 'edit' ORDER BY time DESC, row_hash DESC LIMIT ?""",
            [key_id, len(undone) + 1]).fetchall():
        entry = _decode_row(row)
        if entry["row_hash"] not in undone:
            return entry
    return None


def _redo_target(ws: Workspace, key_id: str) -> dict[str, Any] | None:
    newest = ws.execute("SELECT time, row_hash FROM review_log WHERE key_id = ? AND "
                        "action = 'edit' ORDER BY time DESC, row_hash DESC LIMIT 1",
                        [key_id]).fetchall()
    since, since_hash = newest[0] if newest else ("", "")
    tail = ws.execute(
        """SELECT action, target_hash FROM review_log WHERE key_id = ?
           AND action IN ('undo', 'redo') AND (time > ? OR (time = ? AND row_hash > ?))
           ORDER BY time, row_hash""", [key_id, since, since, since_hash]).fetchall()
    stack: list[str] = []
    for action, target_hash in tail:
        if action == "undo":
            stack.append(target_hash)
        elif stack:
            stack.pop()
    if not stack:
        return None
    rows = ws.execute(f"SELECT {', '.join(_ENTRY_COLUMNS)} FROM review_log WHERE row_hash = ?",
                      [stack[-1]]).fetchall()
    return _decode_row(rows[0]) if rows else None


def undo(ws: Workspace, reason: str = "undo", *, signer: Signer | None = None
         ) -> Change | None:
    """Revert the signer's newest edit not yet undone, as a new log row signed
    like an edit. None if nothing to undo."""
    return _step(ws, signer, reason, "undo")


def redo(ws: Workspace, reason: str = "redo", *, signer: Signer | None = None
         ) -> Change | None:
    """Re-apply the signer's newest undone edit, as a new log row. None if nothing to redo."""
    return _step(ws, signer, reason, "redo")


def can_redo(ws: Workspace, signer: Signer | None = None) -> bool:
    """Has the signer (default: the session's) an undone edit to redo?"""
    from workstation.identity import require_signer

    return _redo_target(ws, require_signer(signer).key_id) is not None


def _step(ws: Workspace, signer: Signer | None, reason: str, action: str) -> Change | None:
    with ws.transaction(appends=APPENDS):
        signer = trust.require(ws, signer, "reviewer")
        find = _undo_target if action == "undo" else _redo_target
        target = find(ws, signer.key_id)
        if target is None:
            return None
        example_id, name = target["example_id"], target["field"]
        old = seen_value(ws, example_id, name, signer.key_id)
        new = target["new"] if action == "redo" else _undone_value(ws, target, signer, reason)
        return append(ws, example_id, name, old, new, reason, signer, action, target)


def _undone_value(ws: Workspace, target: dict[str, Any], signer: Signer, reason: str) -> Any:
    """What undoing ``target`` leaves: a shared field's value before it; for a
    judgement, the analyst's own value before it, or (if they had none) the
    value then in force."""
    if target["field"] not in review_state.JUDGEMENTS:
        return target["old"]
    trial = {"seq": 1 << 62, "example_id": target["example_id"], "field": target["field"],
             "old": None, "new": None, "analyst": signer.name, "key_id": signer.key_id,
             "time": "9999", "action": "undo", "row_hash": "~", "target_hash": target["row_hash"]}
    review = review_state.reviews(ws, [target["example_id"]], [trial])[target["example_id"]]
    before = review.before.get(target["row_hash"], review_state.UNSET)
    return review.values[target["field"]] if before is review_state.UNSET else before


# -- verification ----------------------------------------------------------

def verify_chain(ws: Workspace) -> str | None:
    """Recompute the hash chain, then every row's hash and signature against
    the trust store; a message naming the first bad row, or None."""
    return (first_break(ws, "review_log", _ENTRY_COLUMNS, entry_hash, "review log")
            or review_rows.first_bad_row(ws))


def verify_state(ws: Workspace) -> str | None:
    """Recompute the cached review state from the log (workstation.review_state)."""
    return review_state.verify_state(ws)
