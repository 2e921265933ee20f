"""Hash chains: the shared check behind the review log and the ledger.

Both are append-only tables whose rows carry ``seq``, ``prev_hash`` and
``hash``; a row's hash covers its content and the previous row's hash.
"""

from __future__ import annotations

from typing import Any, Callable

from workstation.workspace import Workspace

GENESIS = "0" * 64


def first_break(ws: Workspace, table: str, columns: tuple[str, ...],
                row_hash: Callable[[dict[str, Any]], str], what: str,
                describe: Callable[[dict[str, Any]], str] = lambda row: "") -> str | None:
    """Walk ``table`` in ``seq`` order; return a message naming the first row
    that is missing, mislinked or altered (``what`` names the table for the
    analyst), or None when the chain holds."""
    prev, expected = GENESIS, 1
    cur = ws.cursor()
    cur.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY seq")
    while batch := cur.fetchmany(10_000):
        for values in batch:
            row = dict(zip(columns, values))
            if row["seq"] != expected:
                return f"{what} row {expected} is missing (next row is {row['seq']})"
            if row["prev_hash"] != prev:
                return f"{what} row {row['seq']}: previous-hash link broken"
            if row_hash(row) != row["hash"]:
                return f"{what} row {row['seq']}{describe(row)}: content does not match its hash"
            prev, expected = row["hash"], expected + 1
    return None
