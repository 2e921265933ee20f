"""How review-log rows are hashed, signed and checked (workstation.review writes them).

A row written since schema v4 has a **row hash** that does not depend on
where the row sits, so that the same change keeps its hash and signature
in another copy of the workspace or another import of the dataset::

    row_hash = sha256(canonical_json({source_sha256, source_index, field, old, new,
                                      reason, analyst, key_id, time, action, target_hash}))

The example is named by its source file's sha256 and 0-based index (not by
its local id); ``old``/``new`` are the stored canonical JSON texts;
``target_hash`` is, for an undo/redo, the target row's row hash (its chain
hash if the target was written before v4), else null. The author signs the
row hash (``signature`` = Ed25519 over its hex text, ``Signer.sign_hash``).
The **chain hash** ties the row to its place in this workspace's log::

    hash = sha256(canonical_json({seq, example_id, target_seq, row_hash, prev_hash}))

Rows written before v4 (up to the meta row ``review_legacy_end``) keep their
old hash (every column of the v1 schema but ``hash``) and no signature.
"""

from __future__ import annotations

from typing import Any

from workstation import trust
from workstation.errors import WorkstationError
from workstation.hashing import canonical_json, sha256_text
from workstation.workspace import Workspace

LEGACY_COLUMNS = ("seq", "example_id", "field", "old", "new", "reason", "analyst",
                  "time", "action", "target_seq", "prev_hash", "hash")
COLUMNS = LEGACY_COLUMNS + ("key_id", "row_hash", "target_hash", "signature")
CONTENT = ("source_sha256", "source_index", "field", "old", "new", "reason", "analyst",
           "key_id", "time", "action", "target_hash")


def row_hash(row: dict[str, Any]) -> str:
    """The position-independent hash of a row (``row`` has the CONTENT keys)."""
    return sha256_text(canonical_json({c: row[c] for c in CONTENT}))


def chain_hash(row: dict[str, Any]) -> str:
    """The chain hash of a row written since schema v4."""
    return sha256_text(canonical_json({c: row[c] for c in (
        "seq", "example_id", "target_seq", "row_hash", "prev_hash")}))


def legacy_hash(row: dict[str, Any]) -> str:
    """The chain hash of a row written before schema v4."""
    return sha256_text(canonical_json({c: row[c] for c in LEGACY_COLUMNS if c != "hash"}))


def entry_hash(row: dict[str, Any]) -> str:
    """A row's chain hash, by the formula of the schema that wrote it."""
    return legacy_hash(row) if row.get("row_hash") is None else chain_hash(row)


def ref_hash(row: dict[str, Any]) -> str:
    """What an undo/redo names its target by: the row hash, or a legacy row's chain hash."""
    return row["row_hash"] or row["hash"]


def legacy_end(ws: Workspace) -> int:
    """The last row written before schema v4 (0: none)."""
    return int(ws.meta("review_legacy_end") or 0)


def source_ref(ws: Workspace, example_id: int) -> tuple[str, int]:
    """(source_sha256, source_index) of an example."""
    rows = ws.execute("SELECT source_sha256, source_index FROM examples WHERE id = ?",
                      [example_id]).fetchall()
    if not rows:
        raise WorkstationError(f"no example with id {example_id}")
    return rows[0][0], int(rows[0][1])


def first_bad_row(ws: Workspace) -> str | None:
    """Row hashes, undo/redo targets and signatures, in log order: a message
    naming the first row that fails, or None. (The chain itself is checked
    by workstation.review.verify_chain first.)"""
    end = legacy_end(ws)
    timeline = trust.timeline(ws)
    refs: dict[int, str] = {}
    cur = ws.cursor()
    cols = ", ".join(f"r.{c}" for c in COLUMNS)
    cur.execute(f"SELECT {cols}, e.source_sha256, e.source_index FROM review_log r "
                "LEFT JOIN examples e ON e.id = r.example_id ORDER BY r.seq")
    while batch := cur.fetchmany(10_000):
        for values in batch:
            row = dict(zip(COLUMNS + ("source_sha256", "source_index"), values))
            problem = _check_row(row, end, refs, timeline)
            if problem:
                return f"review log row {row['seq']}: {problem}"
            refs[row["seq"]] = ref_hash(row)
    return None


def _check_row(row: dict[str, Any], end: int, refs: dict[int, str],
               timeline: trust.Timeline) -> str | None:
    if row["seq"] <= end and row["row_hash"] is None:
        return None  # written before v4: its chain hash is all it has
    if row["row_hash"] is None or row["signature"] is None or row["key_id"] is None:
        return "not signed (written after the upgrade to schema v4 without a signature)"
    if row["source_sha256"] is None:
        return f"its example {row['example_id']} is missing"
    if row_hash(row) != row["row_hash"]:
        return "content does not match its row hash"
    if row["target_seq"] is not None and refs.get(row["target_seq"]) != row["target_hash"]:
        return f"its target row {row['target_seq']} is not the row it names"
    return timeline.check_signature(row["key_id"], row["time"], row["row_hash"],
                                    row["signature"])
