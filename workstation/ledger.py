"""The ledger: the append-only, hash-chained record of flywheel steps.

Releases, rollbacks and signing-key changes each append one row (who, when,
what kind, a JSON payload). Rows are never updated or deleted. Like the
review log, each row's hash covers its content (the payload as the stored
canonical JSON text) and the previous row's hash, starting from GENESIS, so
an edited, removed or reordered row breaks the chain and ``verify_ledger``
names the first such row.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from typing import Any

from workstation.chain import GENESIS, first_break
from workstation.errors import WorkstationError
from workstation.hashing import canonical_json, sha256_text
from workstation.workspace import Workspace, default_analyst, now_iso


# The kinds this package writes; other modules may add their own
# (lower-case words joined by '-'), so the set is documented, not enforced.
KINDS = ("release", "rollback", "key-created", "key-imported")
_KIND_RE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")

_COLUMNS = ("seq", "time", "actor", "kind", "payload", "prev_hash", "hash")


@dataclass(frozen=True)
class LedgerEntry:
    """One ledger row, with its payload decoded."""

    seq: int
    time: str
    actor: str
    kind: str
    payload: dict[str, Any]
    prev_hash: str
    hash: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def append(ws: Workspace, kind: str, payload: dict[str, Any],
           actor: str | None = None) -> LedgerEntry:
    """Append one row; joins the caller's transaction if there is one."""
    if not _KIND_RE.match(kind or ""):
        raise WorkstationError(f"ledger kind '{kind}' is not a lower-case word like 'release'")
    if not isinstance(payload, dict):
        raise WorkstationError("a ledger payload must be a JSON object")
    try:
        text = canonical_json(payload)
    except (TypeError, ValueError) as exc:
        raise WorkstationError(f"ledger payload for '{kind}' is not plain JSON: {exc}") from None
    with ws.transaction():
        row = {"seq": ws.next_id("ledger", "seq"), "time": now_iso(),
               "actor": actor or default_analyst(), "kind": kind, "payload": text,
               "prev_hash": head_hash(ws) or GENESIS}
        row["hash"] = entry_hash(row)
        ws.execute(f"INSERT INTO ledger ({', '.join(_COLUMNS)}) VALUES "
                   f"({', '.join('?' * len(_COLUMNS))})", [row[c] for c in _COLUMNS])
    return LedgerEntry(**{**row, "payload": json.loads(text)})


def entry_hash(row: dict[str, Any]) -> str:
    """The chain hash of a row: every column but ``hash``, payload as stored text."""
    return sha256_text(canonical_json({c: row[c] for c in _COLUMNS if c != "hash"}))


def head_hash(ws: Workspace) -> str:
    """Hash of the newest row ("" for an empty ledger)."""
    row = ws.execute("SELECT hash FROM ledger ORDER BY seq DESC LIMIT 1").fetchone()
    return row[0] if row else ""


def entries(ws: Workspace, kind: str | None = None) -> list[dict[str, Any]]:
    """Rows oldest first, payload decoded; only ``kind`` when given."""
    sql = f"SELECT {', '.join(_COLUMNS)} FROM ledger"
    params: list[Any] = []
    if kind is not None:
        sql += " WHERE kind = ?"
        params.append(kind)
    rows = ws.execute(sql + " ORDER BY seq", params).fetchall()
    return [_decode(r) for r in rows]


def get(ws: Workspace, seq: int) -> LedgerEntry | None:
    row = ws.execute(f"SELECT {', '.join(_COLUMNS)} FROM ledger WHERE seq = ?", [seq]).fetchone()
    return LedgerEntry(**_decode(row)) if row else None


def _decode(row: tuple) -> dict[str, Any]:
    entry = dict(zip(_COLUMNS, row))
    entry["payload"] = json.loads(entry["payload"])
    return entry


def verify_ledger(ws: Workspace) -> str | None:
    """Recompute the chain; return a message naming the first bad row, or None."""
    return first_break(ws, "ledger", _COLUMNS, entry_hash, "ledger",
                       describe=lambda row: f" ({row['kind']})")