"""The ledger: the append-only, hash-chained record of flywheel steps.

Releases, release requests and approvals, rollbacks, trust and policy
changes, patches each append one row
(who, when, what kind, a JSON payload). Rows are never updated or deleted.
Each row has a **row hash** over its content, independent of its position::

    row_hash = sha256(canonical_json({time, actor, kind, payload, signer_key_id}))

(``payload`` as the stored canonical JSON text), and a **chain hash** over its
position: ``hash = sha256(canonical_json({seq, row_hash, prev_hash}))``,
starting from GENESIS, so an edited, removed or reordered row breaks the chain
and ``verify_ledger`` names the first such row. A row appended with a signer
records the signer's key id and ``signature`` = Ed25519 over the row hash's
hex text (``Signer.sign_hash``); workstation.trust checks those signatures.

Rows written before schema v4 (up to the meta row ``ledger_legacy_end``) keep
their old hash, ``sha256(canonical_json(every column but hash))``, and no
signature.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from typing import Any

from workstation.chain import GENESIS, first_break
from workstation.errors import WorkstationError
from workstation.hashing import canonical_json, sha256_text
from workstation.identity import Signer
from workstation.workspace import Workspace, default_analyst, now_iso


# Kinds written by the workstation (other modules may add their own,
# lower-case words joined by '-', so the set is documented, not enforced):
# release, rollback (workstation.releases); release-request,
# release-approve, release-reject (workstation.release_requests);
# trust-owner, trust-add, trust-revoke (workstation.trust); policy-set
# (workstation.policy); patch-created, patch-removed (workstation.patching).
# key-created and key-imported were written before schema v4 (workspace
# signing keys).
KINDS = ("release", "rollback", "release-request", "release-approve", "release-reject",
         "trust-owner", "trust-add", "trust-revoke", "policy-set", "key-created",
         "key-imported")
_KIND_RE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")

_LEGACY_COLUMNS = ("seq", "time", "actor", "kind", "payload", "prev_hash", "hash")
_COLUMNS = _LEGACY_COLUMNS + ("row_hash", "signer_key_id", "signature")
_CONTENT = ("time", "actor", "kind", "payload", "signer_key_id")


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
    row_hash: str | None = None
    signer_key_id: str | None = None
    signature: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def append(ws: Workspace, kind: str, payload: dict[str, Any], actor: str | None = None,
           signer: Signer | None = None) -> LedgerEntry:
    """Append one row; joins the caller's transaction if there is one.

    With ``signer`` the row is signed and its actor is the signer's name;
    without, the actor is ``actor`` (default: who is acting) and the row is
    unsigned. Whether the signer may write this kind is the caller's check
    (workstation.trust.require)."""
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
               "actor": signer.name if signer else (actor or default_analyst()), "kind": kind,
               "payload": text, "signer_key_id": signer.key_id if signer else None,
               "prev_hash": head_hash(ws) or GENESIS}
        row["row_hash"] = row_hash(row)
        row["hash"] = chain_hash(row)
        row["signature"] = signer.sign_hash(row["row_hash"]) if signer else None
        ws.execute(f"INSERT INTO ledger ({', '.join(_COLUMNS)}) VALUES "
                   f"({', '.join('?' * len(_COLUMNS))})", [row[c] for c in _COLUMNS])
    return LedgerEntry(**{**row, "payload": json.loads(text)})


def row_hash(row: dict[str, Any]) -> str:
    """The position-independent hash of a row's content (what a signer signs)."""
    return sha256_text(canonical_json({c: row[c] for c in _CONTENT}))


def chain_hash(row: dict[str, Any]) -> str:
    """The chain hash of a row written since schema v4."""
    return sha256_text(canonical_json({"seq": row["seq"], "row_hash": row["row_hash"],
                                       "prev_hash": row["prev_hash"]}))


def legacy_hash(row: dict[str, Any]) -> str:
    """The chain hash of a row written before schema v4."""
    return sha256_text(canonical_json({c: row[c] for c in _LEGACY_COLUMNS if c != "hash"}))


def entry_hash(row: dict[str, Any]) -> str:
    """A row's chain hash, by the formula of the schema that wrote it."""
    return legacy_hash(row) if row.get("row_hash") is None else chain_hash(row)


def legacy_end(ws: Workspace) -> int:
    """The last row written before schema v4 (0: none)."""
    return int(ws.meta("ledger_legacy_end") or 0)


def head_hash(ws: Workspace) -> str:
    """Hash of the newest row ("" for an empty ledger)."""
    row = ws.execute("SELECT hash FROM ledger ORDER BY seq DESC LIMIT 1").fetchone()
    return row[0] if row else ""


def entries(ws: Workspace, kind: str | None = None, *, raw: bool = False
            ) -> list[dict[str, Any]]:
    """Rows oldest first, payload decoded (``raw``: as stored text); only ``kind`` when given."""
    sql = f"SELECT {', '.join(_COLUMNS)} FROM ledger"
    params: list[Any] = []
    if kind is not None:
        sql += " WHERE kind = ?"
        params.append(kind)
    rows = ws.execute(sql + " ORDER BY seq", params).fetchall()
    return [dict(zip(_COLUMNS, r)) if raw else _decode(r) for r in rows]


def get(ws: Workspace, seq: int) -> LedgerEntry | None:
    row = ws.execute(f"SELECT {', '.join(_COLUMNS)} FROM ledger WHERE seq = ?", [seq]).fetchone()
    return LedgerEntry(**_decode(row)) if row else None


def _decode(row: tuple) -> dict[str, Any]:
    entry = dict(zip(_COLUMNS, row))
    entry["payload"] = json.loads(entry["payload"])
    return entry


def verify_ledger(ws: Workspace) -> str | None:
    """Recompute the chain and every row hash; a message naming the first bad
    row, or None. (Signatures: workstation.trust.verify_ledger_signatures.)"""
    problem = first_break(ws, "ledger", _COLUMNS, entry_hash, "ledger",
                          describe=lambda row: f" ({row['kind']})")
    if problem:
        return problem
    end = legacy_end(ws)
    for entry in entries(ws, raw=True):
        if entry["seq"] > end and entry["row_hash"] is None:
            return (f"ledger row {entry['seq']} ({entry['kind']}): written after the upgrade "
                    "to schema v4 without a row hash")
        if entry["row_hash"] is not None and row_hash(entry) != entry["row_hash"]:
            return (f"ledger row {entry['seq']} ({entry['kind']}): content does not match its "
                    "row hash")
    return None