"""The ledger: append-only rows, the hash chain, and tamper detection."""

from __future__ import annotations

import pytest

from workstation import ledger
from workstation.errors import WorkstationError
from workstation.verify import verify_workspace


def test_append_chains_rows_from_genesis(ws):
    first = ledger.append(ws, "release", {"model": "rm", "release_id": 1}, actor="ann")
    second = ledger.append(ws, "rollback", {"model": "rm", "reason": "bad"})
    assert (first.seq, second.seq) == (1, 2)
    assert first.prev_hash == ledger.GENESIS
    assert second.prev_hash == first.hash
    assert ledger.head_hash(ws) == second.hash
    assert first.actor == "ann" and second.actor == "test-analyst"  # the session's identity
    assert ledger.verify_ledger(ws) is None


def test_entries_decode_payloads_and_filter_by_kind(ws):
    ledger.append(ws, "patch-created", {"key_id": "abc"})
    ledger.append(ws, "release", {"model": "rm", "notes": "ünïcode", "n": 1.5})
    rows = ledger.entries(ws)
    assert [r["kind"] for r in rows] == ["patch-created", "release"]
    [only] = ledger.entries(ws, kind="release")
    assert only["payload"] == {"model": "rm", "notes": "ünïcode", "n": 1.5}
    assert ledger.get(ws, 2).payload == only["payload"]


def test_edited_payload_is_named_by_verify(ws):
    for i in range(3):
        ledger.append(ws, "release", {"model": "rm", "release_id": i + 1})
    ws.execute("""UPDATE ledger SET payload = '{"model":"rm","release_id":99}' WHERE seq = 2""")
    problem = ledger.verify_ledger(ws)
    assert problem is not None and "ledger row 2" in problem and "hash" in problem
    report = verify_workspace(ws)
    assert not report.ok and any("ledger row 2" in f for f in report.failures)
    assert report.checked["ledger_rows"] == 3


def test_removed_row_is_detected(ws):
    for i in range(3):
        ledger.append(ws, "release", {"release_id": i + 1})
    ws.execute("DELETE FROM ledger WHERE seq = 2")
    assert "ledger row 2 is missing" in ledger.verify_ledger(ws)


def test_rehashed_row_breaks_the_next_link(ws):
    """Recomputing a tampered row's own hash still breaks the row after it."""
    for i in range(3):
        ledger.append(ws, "release", {"release_id": i + 1})
    columns = ("seq", "time", "actor", "kind", "payload", "prev_hash", "signer_key_id")
    row = dict(zip(columns, ws.execute(
        f"SELECT {', '.join(columns)} FROM ledger WHERE seq = 2").fetchone()))
    row["actor"] = "mallory"
    row["row_hash"] = ledger.row_hash(row)
    ws.execute("UPDATE ledger SET actor = 'mallory', row_hash = ?, hash = ? WHERE seq = 2",
               [row["row_hash"], ledger.entry_hash(row)])
    assert ledger.verify_ledger(ws) == "ledger row 3: previous-hash link broken"


def test_append_refuses_bad_kinds_and_non_json_payloads(ws):
    with pytest.raises(WorkstationError, match="kind"):
        ledger.append(ws, "Release!", {})
    with pytest.raises(WorkstationError, match="plain JSON"):
        ledger.append(ws, "release", {"x": float("nan")})
    with pytest.raises(WorkstationError, match="JSON object"):
        ledger.append(ws, "release", ["not", "a", "dict"])  # type: ignore[arg-type]
    assert ledger.entries(ws) == []


def test_append_joins_the_callers_transaction(ws):
    with pytest.raises(RuntimeError):
        with ws.transaction():
            ledger.append(ws, "release", {"release_id": 1})
            raise RuntimeError("later step failed")
    assert ledger.entries(ws) == []
    assert ledger.verify_ledger(ws) is None
