"""Benchmark: one page of a 1,000,000-row audit run, as a lazy GUI table asks for it.

Synthesises (in SQL, with ``range()``) one labeled-responses dataset of 1M
examples and one audit run with 1M ``audit_results`` rows, then times
``failure_page`` with a filter (failed only, one category, a margin range),
sorted by margin, at offset 500,000, limit 100, against the same work written
by hand in raw DuckDB: the page query joined to ``current_examples`` plus the
count of matching rows (a lazy table needs both). The target compares with
the straightforward one-statement query; a second line compares with the
late-materialised form failure_page itself uses (sort narrow columns, join
the texts for the page only), which isolates the core's own overhead.
Medians of several repetitions each, interleaved so that load from other
processes hits all alike.

    .venv/bin/python bench/bench_failures_page.py [--n 1000000] [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workstation.audits import failure_page  # noqa: E402
from workstation.workspace import Workspace  # noqa: E402

N = 1_000_000
REPEATS = 7
TARGET = 1.5
OFFSET, LIMIT = 500_000, 100
CATEGORY = "Malware/Hacking"
MARGIN_MIN, MARGIN_MAX = -0.99, -0.001

# The filter keeps well over OFFSET rows: ~85% fail, ~80% are in CATEGORY.
_SYNTH = [
    """INSERT INTO datasets VALUES (1, 'big', 'labels', 'synthetic', 'bench', NULL, 'now', {n},
           NULL)""",
    """INSERT INTO examples (id, dataset_id, source_sha256, source_index, source_id, prompt,
           response, label, category)
       SELECT i + 1, 1, 'bench', i, 'rec-' || i, 'prompt number ' || i || ' asks for something',
              'response ' || i || ' ' || repeat('text ', 40), hash(i) % 2 = 0,
              CASE WHEN hash(i * 7) % 10 < 8 THEN '{category}' ELSE 'Category ' || hash(i * 7) % 10
              END
       FROM range({n}) t(i)""",
    """INSERT INTO model_versions VALUES (1, 'rm', 1, 'sha', 'text-embedding', NULL, 'bench',
           'now', '{{}}')""",
    """INSERT INTO audit_runs VALUES (1, 'audit', 1, 1, 'now', 'bench', 0.5, '', '{{}}', '{{}}',
           {n}, 0, NULL, NULL)""",
    # margin in (-1, 1), 85% negative; rank orders failures by margin
    """INSERT INTO audit_results
       SELECT 1, id, score, NULL, NULL, margin, label, margin > 0,
              CASE WHEN margin > 0 THEN NULL
                   ELSE row_number() OVER (PARTITION BY margin > 0 ORDER BY margin, id) END,
              NULL
       FROM (SELECT i + 1 AS id, (hash(i * 13) % 1000000) / 1e6 AS u, hash(i) % 2 = 0 AS label,
                    CASE WHEN u < 0.85 THEN -u / 0.85 ELSE (u - 0.85) / 0.15 END AS margin,
                    CASE WHEN label THEN 0.5 + margin / 2 ELSE 0.5 - margin / 2 END AS score
             FROM range({n}) t(i))""",
]

_FILTER = f"""r.run_id = 1 AND NOT r.passed AND ce.current_category = '{CATEGORY}'
      AND r.margin >= {MARGIN_MIN} AND r.margin <= {MARGIN_MAX}"""
_COLUMNS = """r.example_id, ce.source_index, ce.source_sha256, ce.source_id, d.name, r.score,
           r.score_chosen, r.score_rejected, r.margin, r.passed, r.rank, r.label,
           ce.current_category, ce.excluded, ce.flipped, ce.current_label, ce.n_steps,
           left(ce.prompt, 200), left(ce.current_chosen, 200), left(ce.current_rejected, 200),
           left(ce.response, 200)"""
# The query a person would write first: filter, join, sort and page in one.
RAW_PAGE = f"""
    SELECT {_COLUMNS}
    FROM audit_results r
    JOIN current_examples ce ON ce.id = r.example_id
    JOIN datasets d ON d.id = ce.dataset_id
    WHERE {_FILTER}
    ORDER BY r.margin ASC NULLS LAST, r.example_id ASC
    LIMIT {LIMIT} OFFSET {OFFSET}"""
# The same page, sorting only narrow columns and joining texts for the page's
# rows afterwards (what failure_page does); for reference.
RAW_PAGE_LATE = f"""
    SELECT {_COLUMNS}
    FROM (SELECT r.* FROM audit_results r JOIN current_examples ce ON ce.id = r.example_id
          WHERE {_FILTER} ORDER BY r.margin ASC NULLS LAST, r.example_id ASC
          LIMIT {LIMIT} OFFSET {OFFSET}) r
    JOIN current_examples ce ON ce.id = r.example_id
    JOIN datasets d ON d.id = ce.dataset_id
    ORDER BY r.margin ASC NULLS LAST, r.example_id ASC"""
RAW_COUNT = f"""
    SELECT count(*) FROM audit_results r JOIN current_examples ce ON ce.id = r.example_id
    WHERE {_FILTER}"""


def build(ws: Workspace, n: int) -> None:
    with ws.transaction():
        for sql in _SYNTH:
            ws.execute(sql.format(n=n, category=CATEGORY))
    ws.execute("CHECKPOINT")


def core_page(ws: Workspace) -> tuple[list[dict], int]:
    return failure_page(ws, 1, verdict="failed", category=CATEGORY, margin_min=MARGIN_MIN,
                        margin_max=MARGIN_MAX, order_by="margin", limit=LIMIT, offset=OFFSET)


def raw_page(ws: Workspace, page_sql: str = RAW_PAGE) -> tuple[list[tuple], int]:
    rows = ws.con.execute(page_sql).fetchall()
    return rows, ws.con.execute(RAW_COUNT).fetchone()[0]


def run(n: int = N, repeats: int = REPEATS) -> dict:
    """Build, check both sides agree, time them; returns the medians in ms."""
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace.open(Path(tmp) / "bench.duckdb")
        try:
            build(ws, n)
            core_rows, core_total = core_page(ws)
            for sql in (RAW_PAGE, RAW_PAGE_LATE):
                raw_rows, raw_total = raw_page(ws, sql)
                assert core_total == raw_total > OFFSET + LIMIT, (core_total, raw_total)
                assert [r["example_id"] for r in core_rows] == [r[0] for r in raw_rows]
            times: dict[str, list[float]] = {"core": [], "raw": [], "late": []}
            for _ in range(repeats):
                times["core"].append(_ms(lambda: core_page(ws)))
                times["raw"].append(_ms(lambda: raw_page(ws)))
                times["late"].append(_ms(lambda: raw_page(ws, RAW_PAGE_LATE)))
        finally:
            ws.close()
    core_ms, raw_ms, late_ms = (statistics.median(times[k]) for k in ("core", "raw", "late"))
    ratio = core_ms / raw_ms
    return {"n": n, "matching": core_total, "core_ms": core_ms, "raw_ms": raw_ms,
            "raw_late_ms": late_ms, "ratio": ratio, "target": TARGET,
            "passed": ratio <= TARGET, "repeats": repeats}


def _ms(fn) -> float:
    start = time.perf_counter()
    fn()
    return 1000 * (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=N)
    parser.add_argument("--repeats", type=int, default=REPEATS)
    args = parser.parse_args(argv)
    r = run(args.n, args.repeats)
    size = "1M" if r["n"] == 1_000_000 else str(r["n"])
    print(f"failure page {size} rows: core {r['core_ms']:.0f} ms, raw duckdb {r['raw_ms']:.0f} ms, "
          f"ratio {r['ratio']:.2f} (target <= {TARGET}) {'PASS' if r['passed'] else 'FAIL'}")
    print(f"  {r['matching']:,} rows match the filter; page at offset {OFFSET:,}, limit {LIMIT}; "
          f"raw duckdb with the texts joined after paging (failure_page's own SQL): "
          f"{r['raw_late_ms']:.0f} ms, ratio {r['core_ms'] / r['raw_late_ms']:.2f}")
    return 0 if r["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
