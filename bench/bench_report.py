"""Benchmark: the signed audit report of a 100k-example audit, beside the
audit's own time, measured in the same run.

Builds the audit benchmark's workspace (``bench_audit.build``: 100k labeled
responses with cached embeddings, ten categories, an MLP reward model), then
times, interleaved so that load from other processes hits both alike,
``run_audit`` end to end and ``build_report`` of the audited version as HTML,
PDF and JSON (gather the content from the stored run, draw the plots, render,
sign with an identity made for the benchmark, write). The ratio is report
time / audit time (target <= 1: a report never costs more than the audit it
reports on).

    .venv/bin/python bench/bench_report.py [--n 100000] [--repeats 3]
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

from bench import bench_audit  # noqa: E402

N = 100_000
HIDDEN = 256
REPEATS = 3
TARGET = 1.0
FORMATS = ("html", "pdf", "json")


def run(n: int = N, repeats: int = REPEATS, hidden: int = HIDDEN) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["WORKSTATION_HOME"] = str(Path(tmp) / "home")  # the benchmark's own identity
        from workstation import identity
        from workstation.audits import run_audit
        from workstation.report import build_report
        from workstation.workspace import Workspace

        made = identity.create("bench", "bench passphrase, not a secret")
        signer = identity.unlock(made, "bench passphrase, not a secret")
        ws = Workspace.open(Path(tmp) / "bench.duckdb")
        try:
            bench_audit.build(ws, n, hidden)
            encoder = bench_audit.CachedOnlyEncoder()
            times: dict[str, list[float]] = {"audit": [], **{f: [] for f in FORMATS}}
            pages = None
            for _ in range(repeats):
                times["audit"].append(_timed(lambda: run_audit(ws, "bench-mlp", "bench",
                                                               encoder=encoder)))
                for fmt in FORMATS:
                    out = Path(tmp) / f"report.{fmt}"
                    start = time.perf_counter()
                    written = build_report(ws, "bench-mlp@1", out, signer=signer,
                                           encoder=encoder)
                    times[fmt].append(time.perf_counter() - start)
                    pages = written.pages or pages
        finally:
            ws.close()
    medians = {k: statistics.median(v) for k, v in times.items()}
    ratios = {f: medians[f] / medians["audit"] for f in FORMATS}
    return {"n": n, "hidden": hidden, "repeats": repeats, "audit_s": medians["audit"],
            "report_s": {f: medians[f] for f in FORMATS}, "ratio": ratios,
            "worst_ratio": max(ratios.values()), "pdf_pages": pages, "target": TARGET,
            "passed": max(ratios.values()) <= TARGET}


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=N)
    parser.add_argument("--repeats", type=int, default=REPEATS)
    args = parser.parse_args(argv)
    r = run(args.n, args.repeats)
    parts = ", ".join(f"{f.upper()} {r['report_s'][f]:.2f} s (ratio {r['ratio'][f]:.2f})"
                      for f in FORMATS)
    print(f"report of a {r['n']:,}-example audit: audit {r['audit_s']:.2f} s; {parts}; PDF "
          f"{r['pdf_pages']} pages; target report <= audit: "
          f"{'PASS' if r['passed'] else 'FAIL'}")
    return 0 if r["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
