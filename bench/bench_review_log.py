"""Benchmark: one label edit and one undo on a review log of 1,000,000 rows (issue 16 §2).

Synthesises (in SQL, with ``range()``) a labeled-responses dataset of 100,000
examples and N review-log rows written by the acting identity (notes and
labels, one row per example in turn; signatures are not checked by edits or
undo, so the rows carry a placeholder), then times ``review.apply`` of one
edit and ``review.undo`` (each in its own transaction, as the CLI and the GUI
call them), medians of several repetitions.

    .venv/bin/python bench/bench_review_log.py [--n 1000000] [--repeats 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

N = 1_000_000
EXAMPLES = 100_000
REPEATS = 7

_SYNTH = [
    """INSERT INTO datasets VALUES (1, 'big', 'labels', 'synthetic', 'bench', NULL, 'now', {m},
           NULL)""",
    """INSERT INTO examples (id, dataset_id, source_sha256, source_index, prompt, response,
           label, category)
       SELECT i + 1, 1, 'bench', i, 'prompt ' || i, 'response ' || i, i % 2 = 0, 'c' || (i % 5)
       FROM range({m}) t(i)""",
    # seq i+1 on example (i % m) + 1: notes a microsecond apart; the chain and
    # signatures are placeholders (edits and undo do not check them; verify would).
    """INSERT INTO review_log (seq, example_id, field, old, new, reason, analyst, time, action,
           target_seq, prev_hash, hash, key_id, row_hash, target_hash, signature)
       SELECT i + 1, (i % {m}) + 1, 'note', 'null', '"n' || i || '"', 'bench', '{name}',
              strftime(TIMESTAMP '2026-01-01' + to_microseconds(i), '%Y-%m-%dT%H:%M:%S.%f')
                  || '+00:00', 'edit', NULL, 'p' || i, 'h' || (i + 1),
              '{key_id}', 'r' || (i + 1), NULL, 'sig'
       FROM range({n}) t(i)""",
    """INSERT INTO example_state SELECT id, false, label, category, []::VARCHAR[],
           '"n"', false, id FROM examples""",
]


def build(path: Path, n: int, signer) -> None:
    from workstation import trust
    from workstation.workspace import Workspace

    with Workspace.open(path) as ws:
        with ws.transaction():
            trust.ensure_owner(ws, signer)
            for sql in _SYNTH:
                ws.execute(sql.format(n=n, m=EXAMPLES, name=signer.name, key_id=signer.key_id))
        _fill_caches(ws)
        ws.execute("CHECKPOINT")


def _fill_caches(ws) -> None:
    """Derived tables a newer schema keeps (none before the team-review schema)."""
    try:
        from workstation import review_state
    except ImportError:
        return
    review_state.rebuild(ws)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=N)
    parser.add_argument("--repeats", type=int, default=REPEATS)
    args = parser.parse_args()
    from workstation import identity, review
    from workstation.workspace import Workspace

    with tempfile.TemporaryDirectory() as tmp:
        os.environ[identity.HOME_ENV] = str(Path(tmp) / "home")
        signer = identity.unlock(identity.create("bench", "bench passphrase"), "bench passphrase")
        identity.set_session_signer(signer)
        path = Path(tmp) / "log.duckdb"
        t0 = time.perf_counter()
        build(path, args.n, signer)
        print(f"built {args.n:,} log rows in {time.perf_counter() - t0:.1f} s", flush=True)
        edits, undos = [], []
        with Workspace.open(path) as ws:
            for i in range(args.repeats):
                edit = review.Edit(1 + i, "label", "unsafe" if i % 2 == 0 else "safe", "bench")
                edits.append(timed(lambda: review.apply(ws, [edit])))
                undos.append(timed(lambda: review.undo(ws)))
        print(f"edit at {args.n:,} log rows: median {statistics.median(edits) * 1000:.1f} ms "
              f"(min {min(edits) * 1000:.1f})")
        print(f"undo at {args.n:,} log rows: median {statistics.median(undos) * 1000:.1f} ms "
              f"(min {min(undos) * 1000:.1f})")


if __name__ == "__main__":
    main()
