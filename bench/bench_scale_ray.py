"""Benchmark: ``scale run`` on a local Ray instance against the local audit,
on the same machine, with the same model, on the same rows.

Three workloads:

* ``embeddings``: N synthetic labeled responses (default 1M) whose response
  embeddings are given. Locally they sit in the workspace's embedding cache
  (as in ``bench_audit``); for Ray they are a ``response_embedding`` column of
  Parquet files (one per CPU and more), scored by a bundle without an encoder.
  The model is the audit benchmark's MLP 384 -> 1024 -> 2.
* ``texts``: up to 20k distinct real texts (every human and assistant turn
  of the HH-RLHF file, then JailbreakBench's responses) as labeled responses,
  encoded by the real encoder on both sides (the local audit starts from an
  empty embedding cache), scored by an MLP 384 -> 64 -> 2.
* ``pairs``: 20k HH-RLHF preference pairs synthesised from the file's real
  prompts and responses (as in ``bench_train``), prompt+response layout: the
  local audit and the scale run brought home must give scores equal to
  1e-6 and the same metrics. Its timing is printed but not the ratio's:
  the local audit encodes each distinct text once for the whole workspace,
  a Ray actor once for itself.

The ratio is throughput, local audit time / scale run time (target >= 0.8).
``scale run`` is timed twice: with a Ray instance already running (as on a
cluster, where the job joins it) and end to end as a laptop user starts it
(Ray started and stopped by the command). Both include reading the inputs,
scoring, writing the shards, reading them back to count and check every
row, and the metrics over every row; the local audit includes reading the
workspace, scoring, the metrics and writing the result rows. Rows/s per CPU
is the scale run's (Ray already running) rate divided by its CPUs: the
figure a cluster scales by.

    .venv/bin/python bench/bench_scale_ray.py [--rows 1000000] [--texts 20000] [--pairs 20000] [--json]
    .venv/bin/python bench/bench_scale_ray.py --sizing OUT.jsonl   # the sizing table of a --json run
"""

from __future__ import annotations

import argparse
import glob
import gzip
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import bench_audit, bench_train  # noqa: E402
from workstation.audits import run_audit  # noqa: E402
from workstation.cluster import bundle as bundles  # noqa: E402
from workstation.models import add_model_bytes  # noqa: E402
from workstation.workspace import Workspace  # noqa: E402

ROWS = 1_000_000
TEXTS = 20_000
PAIRS = 20_000
CPUS = 2
REPEATS = 3
TARGET = 0.8
SHARED = bench_train.SHARED_DATA
HH_RLHF = bench_train.HH_RLHF
JAILBREAKBENCH = SHARED / "jailbreakbench"


def _signer() -> bundles.KeySigner:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from workstation.offline_verify import key_id_of, public_pem_of

    key = Ed25519PrivateKey.generate()
    return bundles.KeySigner(key_id_of(key.public_key()), public_pem_of(key.public_key()),
                             key.sign)


def _timed(fn: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def _scale(bundle: Path, inputs: Path, out: Path, running: bool) -> tuple[float, Any]:
    """Time one scale run: inside an already running local Ray instance (as
    on a cluster), or starting and stopping its own (as ``scale run`` does)."""
    from workstation.cluster.ray_run import local_ray, run_scale

    if not running:
        return _timed(lambda: run_scale(bundle, str(inputs), out, num_cpus=CPUS))
    with local_ray(num_cpus=CPUS):
        return _timed(lambda: run_scale(bundle, str(inputs), out, num_cpus=CPUS))


# -- 1M synthetic embeddings -------------------------------------------------------------

def _embedding_files(vectors: np.ndarray, labels: np.ndarray, categories: list[str],
                     folder: Path, files: int) -> None:
    """The workspace's rows as labeled-response Parquet files with their embeddings."""
    folder.mkdir()
    n = len(vectors)
    bounds = np.linspace(0, n, files + 1).astype(int)
    for k in range(files):
        lo, hi = bounds[k], bounds[k + 1]
        pq.write_table(pa.table({
            "prompt": pa.array(["p"] * (hi - lo)),
            "response": pa.array([f"t{i}" for i in range(lo, hi)]),
            "label": pa.array(labels[lo:hi]), "category": pa.array(categories[lo:hi]),
            "response_embedding": pa.FixedSizeListArray.from_arrays(
                pa.array(vectors[lo:hi].ravel()), bench_audit.DIM)}),
            folder / f"part-{k:03d}.parquet", row_group_size=16_384)


def embeddings(n: int = ROWS, repeats: int = REPEATS, tmp: Path | None = None) -> dict[str, Any]:
    """Local audit and scale run interleaved ``repeats`` times (the machine's
    other load hits both alike), medians; then one run with Ray's own start."""
    from workstation.cluster.ray_run import local_ray, run_scale

    with tempfile.TemporaryDirectory(dir=tmp) as folder:
        folder = Path(folder)
        ws = Workspace.open(folder / "bench.duckdb")
        try:
            vectors = bench_audit.build(ws, n, bench_audit.HIDDEN)
            rows = ws.execute("SELECT label, category FROM examples ORDER BY id").fetchall()
            _embedding_files(vectors, np.array([r[0] for r in rows]), [r[1] for r in rows],
                             folder / "corpus", max(8, n // 125_000))
            del vectors
            bundles.make_bundle(ws, "bench-mlp", folder / "bundle", _signer(),
                                include_encoder=False)
            encoder = bench_audit.CachedOnlyEncoder()
            run_audit(ws, "bench-mlp", "bench", encoder=encoder)  # warm: file cache, session
            local_times, ray_times = [], []
            with local_ray(num_cpus=CPUS):
                run_scale(folder / "bundle", str(folder / "corpus"), folder / "warm")
                for k in range(repeats):
                    local_times.append(_timed(lambda: run_audit(ws, "bench-mlp", "bench",
                                                                encoder=encoder)))
                    ray_times.append(_timed(lambda: run_scale(
                        folder / "bundle", str(folder / "corpus"), folder / f"out-{k}")))
        finally:
            ws.close()
        cold_s, _ = _scale(folder / "bundle", folder / "corpus", folder / "out-cold", False)
        os.replace(folder / f"out-{repeats - 1}", folder / "out")
        local = local_times[-1][1]
        # The synthetic workspace's example i (id i + 1) is row i of the files in order.
        difference = _max_difference(folder, local.id, "(SELECT row_number() OVER (ORDER BY "
                                     "source_file, row_index) AS id, * FROM {shards}) s "
                                     "ON s.id = r.example_id")
    figures = _figures("embeddings", n, statistics.median(t for t, _ in local_times),
                       statistics.median(t for t, _ in ray_times), cold_s,
                       ray_times[-1][1].manifest, difference)
    figures["repeats"] = repeats
    return figures


def _max_difference(folder: Path, run_id: int, join: str | None = None) -> tuple[float, int]:
    """Largest |score difference| between the local audit's rows and the
    shards' (matched by file and row index, or by ``join``), and how many
    rows were compared."""
    import duckdb

    con = duckdb.connect(str(folder / "bench.duckdb"), read_only=True)
    try:
        shards = "read_parquet([" + ", ".join(
            f"'{p}'" for p in sorted((folder / "out").glob("*.parquet"))) + "])"
        join = (join or "examples e ON e.id = r.example_id JOIN sources src ON src.sha256 = "
                "e.source_sha256 JOIN {shards} s ON s.source_file = src.path "
                "AND s.row_index = e.source_index").format(shards=shards)
        worst, compared = con.execute(
            "SELECT max(greatest(abs(coalesce(r.score, 0) - coalesce(s.score, 0)), "
            "abs(coalesce(r.score_chosen, 0) - coalesce(s.score_chosen, 0)), "
            "abs(coalesce(r.score_rejected, 0) - coalesce(s.score_rejected, 0)))), count(*) "
            f"FROM audit_results r JOIN {join} WHERE r.run_id = ?", [run_id]).fetchall()[0]
        return float(worst if worst is not None else np.inf), int(compared)
    finally:
        con.close()


# -- real texts --------------------------------------------------------------------------

def real_texts(limit: int = TEXTS) -> list[str]:
    """Distinct real texts: every turn of the HH-RLHF transcripts, then
    JailbreakBench's responses, first seen first."""
    seen: dict[str, None] = {}
    with gzip.open(HH_RLHF, "rt", encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            for side in ("chosen", "rejected"):
                for turn in record[side].split("\n\n"):
                    text = turn.partition(":")[2].strip()
                    if text:
                        seen.setdefault(text)
    for path in sorted(glob.glob(str(JAILBREAKBENCH / "*.json"))):
        with open(path, encoding="utf-8") as f:
            for record in json.load(f)["jailbreaks"]:
                if record.get("response"):
                    seen.setdefault(record["response"].strip())
    return list(seen)[:limit]


def _write_jsonl(records: list[dict], folder: Path, files: int) -> None:
    folder.mkdir()
    bounds = np.linspace(0, len(records), files + 1).astype(int)
    for k in range(files):
        with open(folder / f"part-{k:02d}.jsonl", "w", encoding="utf-8") as f:
            for record in records[bounds[k]:bounds[k + 1]]:
                f.write(json.dumps(record) + "\n")


def texts(n: int = TEXTS, tmp: Path | None = None) -> dict[str, Any]:
    from workstation.datasets import import_files
    from workstation.datasets import IMPORTERS

    rng = np.random.default_rng(0)
    chosen = real_texts(n)
    records = [{"prompt": "", "response": t, "label": bool(rng.random() < 0.5)} for t in chosen]
    with tempfile.TemporaryDirectory(dir=tmp) as folder:
        folder = Path(folder)
        _write_jsonl(records, folder / "corpus", 4)
        ws = Workspace.open(folder / "bench.duckdb")
        try:
            import_files(ws, IMPORTERS["labels-jsonl"],
                         sorted((folder / "corpus").glob("*.jsonl")), "texts")
            add_model_bytes(ws, bench_audit.mlp(64), "rm", "text-embedding")
            bundles.make_bundle(ws, "rm@1", folder / "bundle", _signer())
            local_s, local = _timed(lambda: run_audit(ws, "rm@1", "texts"))  # empty cache
        finally:
            ws.close()
        warm_s, run = _scale(folder / "bundle", folder / "corpus", folder / "out", True)
        difference = _max_difference(folder, local.id)
    return _figures("texts", len(records), local_s, warm_s, None, run.manifest, difference)


# -- 20k HH-RLHF pairs: equality -----------------------------------------------------------

def pairs(n: int = PAIRS, tmp: Path | None = None) -> dict[str, Any]:
    """The same pairs through the local audit and through scale run and back home."""
    from workstation.cluster.homecoming import import_results
    from workstation.datasets import IMPORTERS, import_files

    prompts, responses = bench_train.load_texts()
    rng = np.random.default_rng(0)
    a = rng.integers(0, len(responses), n)
    b = (a + rng.integers(1, len(responses), n)) % len(responses)
    p = rng.integers(0, len(prompts), n)
    records = [{"prompt": prompts[p[i]], "chosen": responses[a[i]], "rejected": responses[b[i]]}
               for i in range(n)]
    with tempfile.TemporaryDirectory(dir=tmp) as folder:
        folder = Path(folder)
        _write_jsonl(records, folder / "corpus", 4)
        ws = Workspace.open(folder / "bench.duckdb")
        try:
            import_files(ws, IMPORTERS["trl-jsonl"], sorted((folder / "corpus").glob("*.jsonl")),
                         "hh-pairs")
            add_model_bytes(ws, bench_audit.mlp(64, width=2 * bench_audit.DIM), "rm",
                            "text-embedding")
            bundles.make_bundle(ws, "rm@1", folder / "bundle", _signer())
            local_s, local = _timed(lambda: run_audit(ws, "rm@1", "hh-pairs"))
        finally:
            ws.close()
        warm_s, run = _scale(folder / "bundle", folder / "corpus", folder / "out", True)
        difference = _max_difference(folder, local.id)
        with Workspace.open(folder / "bench.duckdb") as ws:
            # the bench signs with a throwaway key nobody trusts: imported marked untrusted
            home = import_results(ws, folder / "out", "hh-pairs", "rm@1",
                                  allow_untrusted=True).run
    figures = _figures("pairs", n, local_s, warm_s, None, run.manifest, difference)
    figures["metrics_equal"] = _same_metrics(local.metrics, home.metrics) and \
        _same_metrics(local.metrics, run.manifest["metrics"])
    return figures


def _same_metrics(a: dict[str, Any], b: dict[str, Any]) -> bool:
    keys = ("n", "pairwise_accuracy", "pairwise_accuracy_ci", "auroc", "accuracy", "n_failures")
    return all(a.get(k) == b.get(k) for k in keys) and \
        abs(a.get("mean_margin", 0) - b.get("mean_margin", 0)) < 1e-6


# -- figures -----------------------------------------------------------------------------

def _figures(name: str, n: int, local_s: float, warm_s: float, cold_s: float | None,
             manifest: dict[str, Any], difference: tuple[float, int]) -> dict[str, Any]:
    out_bytes = sum(s["size"] for s in manifest["shards"])
    difference, compared = difference
    return {"workload": name, "rows": n, "local_s": local_s, "ray_s": warm_s,
            "ray_cold_s": cold_s, "ratio": local_s / warm_s,
            "ratio_cold": local_s / cold_s if cold_s else None,
            "local_rows_per_s": n / local_s, "ray_rows_per_s": n / warm_s,
            "rows_per_s_per_cpu": n / warm_s / CPUS, "cpus": CPUS,
            "output_bytes_per_row": out_bytes / max(manifest["rows"], 1),
            "max_score_difference": difference, "rows_compared": compared,
            "complete": manifest["complete"], "scored": manifest["scored"], "target": TARGET,
            "passed": local_s / warm_s >= TARGET and difference <= 1e-6 and compared == n}


def run(rows: int = ROWS, n_texts: int = TEXTS, n_pairs: int = PAIRS,
        each: Any = None) -> list[dict[str, Any]]:
    """Every workload (the real-text ones when the data is there); ``each``
    is called with each workload's figures as soon as it is done."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    steps = [lambda: embeddings(rows)]
    if HH_RLHF.exists():
        steps += [lambda: texts(n_texts), lambda: pairs(n_pairs)]
    out = []
    for step in steps:
        out.append(step())
        if each is not None:
            each(out[-1])
    return out


SIZING_ROWS = (10_000_000, 100_000_000)
SIZING_WHAT = {"embeddings": "labeled responses with precomputed embeddings (MLP 384-1024-2)",
               "texts": "labeled responses as text (encoder + MLP 384-64-2)",
               "pairs": "preference pairs as text (prompt+response, both sides encoded)"}


def sizing(figures: list[dict[str, Any]]) -> list[str]:
    """docs/SCALE.md's sizing table (Markdown) from measured figures: CPU-hours
    and output size for 10M and 100M rows at each workload's rows/s per CPU."""
    head = ["| workload | rows/s per CPU | " + " | ".join(
        f"CPU-hours for {n // 1_000_000}M" for n in SIZING_ROWS) + " | output bytes/row | "
        + " | ".join(f"output for {n // 1_000_000}M" for n in SIZING_ROWS) + " |",
        "|---|---:|" + "---:|" * (2 * len(SIZING_ROWS) + 1)]
    rows = []
    for r in figures:
        rate, size = r["rows_per_s_per_cpu"], r["output_bytes_per_row"]
        rows.append(f"| {SIZING_WHAT[r['workload']]} | {rate:,.{0 if rate >= 100 else 1}f} | "
                    + " | ".join(f"{n / rate / 3600:,.1f}" for n in SIZING_ROWS)
                    + f" | {size:.0f} | "
                    + " | ".join(_bytes(n * size) for n in SIZING_ROWS) + " |")
    return head + rows


def _bytes(n: float) -> str:
    return f"{n / 1e9:,.1f} GB" if n >= 1e9 else f"{n / 1e6:,.0f} MB"


def describe(r: dict[str, Any]) -> str:
    cold = f", end to end with Ray's start {r['ray_cold_s']:.1f} s (ratio " \
           f"{r['ratio_cold']:.2f})" if r["ray_cold_s"] else ""
    return (f"{r['workload']} ({r['rows']:,} rows): local audit {r['local_s']:.1f} s, scale run "
            f"on local Ray ({r['cpus']} CPUs, Ray running) {r['ray_s']:.1f} s{cold}; ratio "
            f"{r['ratio']:.2f}; {r['rows_per_s_per_cpu']:,.0f} rows/s per CPU; output "
            f"{r['output_bytes_per_row']:.0f} bytes/row; max |score difference| "
            f"{r['max_score_difference']:.1g} over {r['rows_compared']:,} rows"
            + (f"; metrics equal: {r['metrics_equal']}" if "metrics_equal" in r else ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=ROWS)
    parser.add_argument("--texts", type=int, default=TEXTS)
    parser.add_argument("--pairs", type=int, default=PAIRS)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--sizing", metavar="JSONL",
                        help="only print the sizing table from a --json run's output")
    args = parser.parse_args(argv)
    if args.sizing:
        lines = Path(args.sizing).read_text().splitlines()
        print("\n".join(sizing([json.loads(x) for x in lines if x.startswith("{")])))
        return 0
    figures = run(args.rows, args.texts, args.pairs, each=lambda r: print(
        json.dumps(r) if args.json else describe(r), flush=True))
    if not args.json:
        print("\n".join(sizing(figures)))
    return 0 if all(r["passed"] for r in figures) else 1


if __name__ == "__main__":
    raise SystemExit(main())
