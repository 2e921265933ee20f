"""The review log: label edits, undo and redo, and the hash chain.

Every change an analyst makes to an example (flip a preference, set the
safe/unsafe label, set a category, add or remove a tag, write a note, exclude
or restore) is appended to ``review_log`` with who, when, why, the old and the
new value. Rows are never updated or deleted: an undo is itself a logged
change. Each row is signed by its author's identity, who must be trusted as
a reviewer here (workstation.trust); each row's hash covers its content and
the previous row's hash, so a changed or removed row breaks the chain
(``verify_chain`` names the first). The hash and signature formulas are in
workstation.review_rows.

The current label of an example is the import plus the log; the sparse table
``example_state`` caches it (one row per edited example) and is written in
the same transaction as the log row, so the two never disagree.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Iterable

from workstation import review_rows, trust
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
    row = ws.execute(
        """SELECT d.kind, c.flipped, c.current_label, c.current_category, c.tags, c.note, c.excluded
           FROM current_examples c JOIN datasets d ON d.id = c.dataset_id WHERE c.id = ?""",
        [example_id]).fetchone()
    if row is None:
        raise WorkstationError(f"no example with id {example_id}")
    kind, flipped, label, category, tags, note, excluded = row
    return {"kind": kind, "flipped": bool(flipped), "label": _label_text(label),
            "category": category, "tags": list(tags or []), "note": note,
            "excluded": bool(excluded)}


def _label_text(label: bool | None) -> str | None:
    return None if label is None else ("safe" if label else "unsafe")


# -- writing ---------------------------------------------------------------

def apply(ws: Workspace, edits: Iterable[Edit], *, signer: Signer | None = None
          ) -> list[Change]:
    """Append the edits in one transaction, each signed by ``signer`` (default:
    the session's identity), who must be trusted as a reviewer; all or nothing."""
    changes: list[Change] = []
    with ws.transaction():
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
    old = current[edit.field]
    if new == old:
        return None  # nothing changes: nothing to log
    return _append(ws, edit.example_id, edit.field, old, new, edit.reason, signer, "edit", None)


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


def _append(ws: Workspace, example_id: int, field: str, old: Any, new: Any, reason: str,
            signer: Signer, action: str, target: dict[str, Any] | None) -> Change:
    source_sha256, source_index = review_rows.source_ref(ws, example_id)
    entry = {"seq": ws.next_id("review_log", "seq"), "example_id": example_id,
             "source_sha256": source_sha256, "source_index": source_index, "field": field,
             "old": canonical_json(old), "new": canonical_json(new), "reason": reason,
             "analyst": signer.name, "key_id": signer.key_id, "time": now_iso(),
             "action": action, "target_seq": target["seq"] if target else None,
             "target_hash": review_rows.ref_hash(target) if target else None,
             "prev_hash": head_hash(ws) or GENESIS}
    entry["row_hash"] = review_rows.row_hash(entry)
    entry["hash"] = review_rows.chain_hash(entry)
    entry["signature"] = signer.sign_hash(entry["row_hash"])
    ws.execute(f"INSERT INTO review_log ({', '.join(_ENTRY_COLUMNS)}) VALUES "
               f"({', '.join('?' * len(_ENTRY_COLUMNS))})", [entry[c] for c in _ENTRY_COLUMNS])
    _update_state(ws, example_id, field, new, entry["seq"])
    return Change(entry["seq"], example_id, field, old, new, action, entry["target_seq"],
                  entry["hash"], entry["row_hash"], signer.name, signer.key_id)


def entry_hash(entry: dict[str, Any]) -> str:
    """The chain hash of a log row (workstation.review_rows has the formulas)."""
    return review_rows.entry_hash(entry)


def _update_state(ws: Workspace, example_id: int, field: str, new: Any, seq: int) -> None:
    ws.execute(
        """INSERT INTO example_state
           SELECT id, false, label, category, []::VARCHAR[], NULL, false, 0
           FROM examples WHERE id = ? AND id NOT IN (SELECT example_id FROM example_state)""",
        [example_id])
    value = (new == "safe") if field == "label" else new
    ws.execute(f"UPDATE example_state SET {field} = ?, last_seq = ? WHERE example_id = ?",
               [value, seq, example_id])


# -- undo / redo -----------------------------------------------------------

def _edit_stacks(ws: Workspace) -> tuple[list[int], list[int]]:
    undo: list[int] = []
    redo: list[int] = []
    for seq, action, target in ws.execute(
            "SELECT seq, action, target_seq FROM review_log ORDER BY seq").fetchall():
        if action == "edit":
            undo.append(seq)
            redo.clear()
        elif action == "undo" and undo:
            redo.append(undo.pop())
        elif action == "redo" and redo:
            undo.append(redo.pop())
    return undo, redo


def undo(ws: Workspace, reason: str = "undo", *, signer: Signer | None = None
         ) -> Change | None:
    """Revert the newest edit not yet undone, as a new log row signed like an
    edit. None if nothing to undo."""
    return _step(ws, signer, reason, "undo")


def redo(ws: Workspace, reason: str = "redo", *, signer: Signer | None = None
         ) -> Change | None:
    """Re-apply the newest undone edit, as a new log row. None if nothing to redo."""
    return _step(ws, signer, reason, "redo")


def can_undo(ws: Workspace) -> bool:
    return bool(_edit_stacks(ws)[0])


def can_redo(ws: Workspace) -> bool:
    return bool(_edit_stacks(ws)[1])


def _step(ws: Workspace, signer: Signer | None, reason: str, action: str) -> Change | None:
    with ws.transaction():
        signer = trust.require(ws, signer, "reviewer")
        undo_stack, redo_stack = _edit_stacks(ws)
        stack = undo_stack if action == "undo" else redo_stack
        if not stack:
            return None
        target = _decode_row(ws.execute(
            f"SELECT {', '.join(_ENTRY_COLUMNS)} FROM review_log WHERE seq = ?",
            [stack[-1]]).fetchone())
        old = current_values(ws, target["example_id"])[target["field"]]
        new = target["old"] if action == "undo" else target["new"]
        return _append(ws, target["example_id"], target["field"], old, new, reason,
                       signer, action, target)


# -- verification ----------------------------------------------------------

def verify_chain(ws: Workspace) -> str | None:
    """Recompute the hash chain, then every row's hash and signature against
    the trust store; a message naming the first bad row, or None."""
    return (first_break(ws, "review_log", _ENTRY_COLUMNS, entry_hash, "review log")
            or review_rows.first_bad_row(ws))


def verify_state(ws: Workspace) -> str | None:
    """Replay the log onto the import and compare with ``example_state``."""
    replayed: dict[int, dict[str, Any]] = {}
    for example_id, field, new in ws.execute(
            "SELECT example_id, field, new FROM review_log ORDER BY seq").fetchall():
        replayed.setdefault(example_id, {})[field] = _json_load(new)
    stored = {r[0]: r[1:] for r in ws.execute(
        "SELECT s.example_id, s.flipped, s.label, s.category, s.tags, s.note, s.excluded "
        "FROM example_state s").fetchall()}
    if set(stored) != set(replayed):
        odd = sorted(set(stored) ^ set(replayed))[0]
        return f"review state of example {odd} does not follow from the review log"
    for example_id, fields in replayed.items():
        flipped, label, category, tags, note, excluded = stored[example_id]
        have = {"flipped": flipped, "label": _label_text(label), "category": category,
                "tags": sorted(tags or []), "note": note, "excluded": excluded}
        for field, value in fields.items():
            if have[field] != value:
                return (f"review state of example {example_id} ('{field}') "
                        f"does not follow from the review log")
    return None
