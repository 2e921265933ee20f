"""Benchmark: resident memory after a large import and during an audit, under
DuckDB's own memory limit (80% of RAM) and the workstation's default (25%).

Each setting runs in a fresh process of its own with ``WORKSTATION_DUCKDB_MEMORY``
set, as an analyst would set it: import ``--rows`` labeled responses (default
1M; bench_scale's data), cache an embedding per response, then audit with a
small MLP (bench_scale's audit). Reported per setting: the limit DuckDB says
it holds, the import and audit times, the resident memory right after the
import and right after the audit (VmRSS: what the rest of the laptop feels),
and the process's peak. "2GB" is what 25% means on an 8 GB laptop.

    .venv/bin/python bench/bench_duckdb_memory.py [--rows 1000000]
        [--settings duckdb 25% 2GB]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(REPO))

ROWS = 1_000_000
SETTINGS = ("duckdb", "25%", "2GB")


def _rss_mb() -> float:
    """This process's resident memory now (Linux), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _peak_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def point(rows: int) -> dict[str, Any]:
    """Import and audit ``rows`` examples in this process, under the setting
    in the environment."""
    from bench.bench_audit import CachedOnlyEncoder, mlp
    from bench.bench_scale import HIDDEN, synthesise_embeddings, write_labels
    from workstation.audits import run_audit
    from workstation.datasets import import_dataset
    from workstation.models import add_model_bytes
    from workstation.workspace import Workspace

    out: dict[str, Any] = {"setting": os.environ.get("WORKSTATION_DUCKDB_MEMORY"), "rows": rows}
    with tempfile.TemporaryDirectory(prefix="bench-duckdb-memory-") as tmp:
        path = Path(tmp) / "labels.jsonl"
        write_labels(path, rows)
        with Workspace.open(Path(tmp) / "memory.duckdb") as ws:
            out["limit"] = ws.execute("SELECT current_setting('memory_limit')").fetchone()[0]
            start = time.perf_counter()
            import_dataset(ws, "labels", path, "scale", format="labels-jsonl")
            out["import_s"] = round(time.perf_counter() - start, 1)
            out["rss_after_import_mb"] = round(_rss_mb())
            out["peak_after_import_mb"] = round(_peak_mb())
            encoder = CachedOnlyEncoder()
            synthesise_embeddings(ws, encoder.id)
            add_model_bytes(ws, mlp(HIDDEN), "scale-mlp", "text-embedding", encoder=encoder)
            start = time.perf_counter()
            run = run_audit(ws, "scale-mlp", "scale", encoder=encoder)
            out["audit_s"] = round(time.perf_counter() - start, 1)
            out["rss_after_audit_mb"] = round(_rss_mb())
            out["n_examples"] = run.n_examples
    out["peak_mb"] = round(_peak_mb())
    return out


def run(rows: int = ROWS, settings: tuple[str, ...] = SETTINGS) -> list[dict[str, Any]]:
    """One fresh process per setting; a dict per setting."""
    points = []
    for setting in settings:
        env = {**os.environ, "WORKSTATION_DUCKDB_MEMORY": setting}
        done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--point",
                               str(rows)], capture_output=True, text=True, cwd=REPO, env=env)
        if done.returncode != 0:
            raise RuntimeError(f"{setting} failed:\n{done.stderr[-3000:]}")
        points.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return points


def table(points: list[dict[str, Any]]) -> str:
    lines = [f"{'setting':<8} {'limit':>10} {'import':>8} {'RSS after':>10} {'audit':>8} "
             f"{'RSS after':>10} {'peak':>8}",
             f"{'':<8} {'':>10} {'':>8} {'import':>10} {'':>8} {'audit':>10} {'':>8}"]
    for p in points:
        lines.append(f"{p['setting']:<8} {p['limit']:>10} {p['import_s']:>7}s "
                     f"{p['rss_after_import_mb']:>7} MB {p['audit_s']:>7}s "
                     f"{p['rss_after_audit_mb']:>7} MB {p['peak_mb']:>5} MB")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=ROWS)
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS))
    parser.add_argument("--point", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.point:
        print(json.dumps(point(args.point)))
        return
    points = run(args.rows, tuple(args.settings))
    print(f"DuckDB memory: {args.rows:,} labeled responses imported, then audited "
          f"(one fresh process per setting)")
    print(table(points))
    print(json.dumps(points))


if __name__ == "__main__":
    main()
