"""Every benchmark the issues ask for, one line each, then the tables: reward
recovery, patch locality and scale.

    .venv/bin/python -m bench [--quick] [--full] [--only NAME[,NAME...]]

Each line says what was measured, the baseline measured in the same run, the
ratio, the target and PASS/FAIL. Each benchmark runs in a fresh process of
its own (``--child NAME``), so that one's threads, caches and memory do not
weigh on the next; the ``bench_*.py`` scripts it calls also run on their own.
``--quick`` uses smaller sizes, to check that everything runs; its figures
are not the benchmarks' results. ``--full`` also measures encoding at 100k in
the scale table (about ten minutes more). Timings on a shared machine are
noisy: each benchmark interleaves its baseline with ours and reports medians
(the encoder benchmark, the best of its rounds).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


@dataclass
class Line:
    """One printed result."""

    what: str
    ours: str
    baseline: str
    ratio: str
    target: str
    verdict: str  # PASS, FAIL, info (no target), or n/a (not measured; reason in ``note``)
    note: str = ""

    def __str__(self) -> str:
        text = (f"[{self.verdict}] {self.what}: {self.ours} | baseline {self.baseline} | "
                f"ratio {self.ratio} | target {self.target}")
        return text + (f" | {self.note}" if self.note else "")


def _verdict(passed: bool) -> str:
    return "PASS" if passed else "FAIL"


def _size(n: int) -> str:
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    return f"{n // 1000}k" if n % 1000 == 0 else f"{n:,}"


# -- the benchmarks ------------------------------------------------------------

def encoder(quick: bool, full: bool) -> list[Line]:
    from bench import bench_encoder

    if not bench_encoder.HH_RLHF.exists():
        return [_missing("encoder throughput vs sentence-transformers", bench_encoder.HH_RLHF)]
    r = bench_encoder.run(rounds=1 if quick else 2, n_texts=512 if quick else None)
    return [Line(f"encoder throughput, {r['n_texts']:,} HH-RLHF texts",
                 f"ours {r['ours_texts_per_s']:.0f} texts/s",
                 f"sentence-transformers {r['st_texts_per_s']:.0f} texts/s",
                 f"{r['ratio']:.2f}x", ">= 1.5x with parity (min cosine >= 0.9999)",
                 _verdict(r["passed"]), f"parity min cosine {r['parity_min_cosine']:.6f}")]


def quantize(quick: bool, full: bool) -> list[Line]:
    from bench import bench_quant

    if not bench_quant.HH_RLHF.exists():
        return [_missing("int8 vs fp32 of a tokens reward model", bench_quant.HH_RLHF)]
    r = bench_quant.run_tokens(n_pairs=48 if quick else None, rounds=1 if quick else 3)
    acc = r["pairwise_accuracy"]
    changed = r.get("pairs_changed") or {}
    flips = (f"; {changed['now_right']} pairs now right, {changed['now_wrong']} now wrong "
             f"(delta s.e. {changed['delta_standard_error']:.4f})" if changed else "")
    held = r["heldout"]
    auroc, accuracy = held["auroc"], held["accuracy"]
    return [Line(f"int8 vs fp32 bert-cls tokens model, {r['n_responses']:,} HH-RLHF responses "
                 f"({r['n_pairs']:,} pairs) through score_dataset",
                 f"int8 {r['int8_s']:.1f} s", f"fp32 {r['fp32_s']:.1f} s",
                 f"{r['ratio']:.2f}x", f">= {bench_quant.TOKENS_SPEEDUP}x; AUROC and accuracy "
                 f"delta <= {bench_quant.TOKENS_MAX_DELTA} on held-out JailbreakBench",
                 _verdict(r["passed"]),
                 f"{held['n']:,} JailbreakBench responses the head was not fitted on: AUROC "
                 f"{auroc['parent']:.4f} -> {auroc['quantized']:.4f} ({auroc['delta']:+.4f}), "
                 f"accuracy {accuracy['parent']:.4f} -> {accuracy['quantized']:.4f} "
                 f"({accuracy['delta']:+.4f}), Spearman {held['spearman']:.4f}; HH-RLHF pairs "
                 f"(near chance, reported): pairwise accuracy {acc['parent']:.4f} -> "
                 f"{acc['quantized']:.4f} ({acc['delta']:+.4f}){flips}, Spearman "
                 f"{r['spearman']:.4f}; {r['parent_size_bytes'] / 1e6:.0f} MB -> "
                 f"{r['size_bytes'] / 1e6:.0f} MB; median of {r['rounds']} interleaved rounds")]


def encoder_e2e(quick: bool, full: bool) -> list[Line]:
    from bench import bench_quant

    if not bench_quant.HH_RLHF.exists():
        return [_missing("encoder end to end, import -> audit", bench_quant.HH_RLHF)]
    r = bench_quant.run_encoder_e2e(n_pairs=48 if quick else None, rounds=1 if quick else 3)
    what = f"import -> audit of {r['n_pairs']:,} HH-RLHF pairs from a fresh workspace"
    note = (f"today = main's encode loop (64-row batches) and conversion-v1 graph, kept in "
            f"bench_quant.py; median of {r['rounds']} interleaved rounds")
    parity = r["int8_parity"]
    return [Line(f"encoder fp32, {what}", f"ours {r['fp32_s']:.1f} s",
                 f"today {r['today_s']:.1f} s", f"{r['ratio_fp32']:.2f}x",
                 "none (reported; compute-bound, see README)", "info", note),
            Line(f"encoder int8 (`encoder use int8`), {what}", f"ours int8 {r['int8_s']:.1f} s",
                 f"today (fp32) {r['today_s']:.1f} s", f"{r['ratio_int8']:.2f}x",
                 f">= {bench_quant.ENCODER_SPEEDUP}x", _verdict(r["passed"]),
                 f"int8 vs fp32 cosine on {parity['n_texts']:,} of the texts: min "
                 f"{parity['min_cosine']:.4f}, 1st percentile {parity['p01_cosine']:.4f}, mean "
                 f"{parity['mean_cosine']:.5f}")]


def audit(quick: bool, full: bool) -> list[Line]:
    from bench import bench_audit

    r = bench_audit.run(n=20_000 if quick else bench_audit.N,
                        repeats=2 if quick else bench_audit.REPEATS)
    return [Line(f"audit scoring {_size(r['n'])} cached embeddings (MLP 384->{r['hidden']}->2)",
                 f"workstation {r['workstation_s']:.2f} s",
                 f"onnxruntime alone {r['onnxruntime_s']:.2f} s",
                 f"{r['ratio']:.2f} (throughput)", f">= {r['target']}", _verdict(r["passed"]),
                 f"read + score alone {r['scoring_s']:.2f} s "
                 f"(ratio {r['onnxruntime_s'] / r['scoring_s']:.2f}); onnxruntime alone in "
                 f"runs of the workstation's size {r['onnxruntime_runs_s']:.2f} s "
                 f"(ratio {r['ratio_same_runs']:.2f})")]


def report(quick: bool, full: bool) -> list[Line]:
    from bench import bench_report

    r = bench_report.run(n=20_000 if quick else bench_report.N,
                         repeats=1 if quick else bench_report.REPEATS)
    times = ", ".join(f"{f.upper()} {s:.2f} s" for f, s in r["report_s"].items())
    return [Line(f"signed audit report of a {_size(r['n'])}-example audit",
                 f"report {times}", f"the audit itself {r['audit_s']:.2f} s",
                 f"{r['worst_ratio']:.2f} (slowest format / audit)", f"<= {r['target']:g}",
                 _verdict(r["passed"]), f"PDF {r['pdf_pages']} pages")]


def page(quick: bool, full: bool) -> list[Line]:
    from bench import bench_failures_page

    r = bench_failures_page.run(repeats=2 if quick else bench_failures_page.REPEATS)
    return [Line(f"failure page, {_size(r['n'])} result rows, offset "
                 f"{bench_failures_page.OFFSET:,}",
                 f"core {r['core_ms']:.0f} ms", f"raw DuckDB {r['raw_ms']:.0f} ms",
                 f"{r['ratio']:.2f}", f"<= {r['target']}", _verdict(r["passed"]),
                 f"raw DuckDB with late text join {r['raw_late_ms']:.0f} ms")]


def train(quick: bool, full: bool) -> list[Line]:
    from bench import bench_train

    if not bench_train.HH_RLHF.exists():
        return [_missing("reward head retraining vs scikit-learn", bench_train.HH_RLHF)]
    r = bench_train.run(2_000 if quick else bench_train.N_PAIRS)
    # The issue sets no target here (time and accuracy are reported beside
    # scikit-learn's); its quality target is on the real HH-RLHF split, which
    # tests/test_training_quality.py checks.
    return [Line(f"reward head retraining, {_size(r['n_pairs'])} cached pairs",
                 f"ours {r['ours_s']:.2f} s, held-out acc {r['ours_heldout_acc']:.4f}",
                 f"scikit-learn LogisticRegression {r['sklearn_s']:.2f} s (fit only), "
                 f"held-out acc {r['sklearn_heldout_acc']:.4f}",
                 f"time {r['time_ratio']:.2f}x, accuracy {r['accuracy_delta']:+.4f}",
                 "none (reported beside scikit-learn)", "info",
                 f"ours end to end: read cache, fit, ONNX export, parity check, register; "
                 f"Bayes accuracy {r['bayes_accuracy']:.4f}")]


def patch(quick: bool, full: bool) -> list[Line]:
    from bench import bench_patch

    r = bench_patch.run(n=20_000 if quick else bench_patch.N)
    return [Line(f"patched ONNX scoring, {r['kernels']} kernels, {_size(r['n'])} rows",
                 f"patched {r['patched_rows_per_s']:,.0f} rows/s",
                 f"unpatched base {r['base_rows_per_s']:,.0f} rows/s",
                 f"{r['ratio']:.2f} (throughput)", f">= {r['target']}", _verdict(r["passed"]),
                 f"max |ONNX - core| {r['max_abs_error_vs_core']:.1g}")]


def label_errors(quick: bool, full: bool) -> list[Line]:
    from bench import bench_label_errors

    missing = [p for p in (bench_label_errors.HH_RLHF, bench_label_errors.JAILBREAKBENCH)
               if not p.exists()]
    if missing:
        return [_missing("label-error detection vs cleanlab", missing[0])]
    results = bench_label_errors.run()
    return [_label_line(results[name]) for name in bench_label_errors.SOURCES]


def _label_line(r: dict[str, Any]) -> Line:
    at = r["compared_at"]
    ours, theirs = r["ours_precision_at_compared"], r["cleanlab_precision"]
    return Line(f"label errors {r['name']}, {r['flips']} planted flips in {r['n']:,}",
                f"ours precision@{at} {ours:.3f}", f"cleanlab precision@{at} {theirs:.3f}",
                f"{ours / theirs:.2f}" if theirs else "n/a (cleanlab 0)",
                "precision >= cleanlab's", _verdict(r["passed"]),
                f"ours at k={r['flips']}: P={r['ours_precision']:.3f} R={r['ours_recall']:.3f}; "
                f"cleanlab returned {r['cleanlab_returned']} issues")


def gui(quick: bool, full: bool) -> list[Line]:
    from bench import bench_gui_start

    r = bench_gui_start.run(repeats=1 if quick else bench_gui_start.REPEATS)
    what = "GUI cold start to a usable window (offscreen)"
    if not r["available"]:
        return [Line(what, "not available", "-", "-", f"<= {bench_gui_start.TARGET_S:.0f} s",
                     "n/a", r["reason"])]
    return [Line(what, f"{r['ours_s']:.2f} s (window shown, {r['rows']:,} rows loaded)",
                 f"bare PySide6 window {r['bare_s']:.2f} s", f"{r['ratio']:.2f}x",
                 f"<= {r['target_s']:.0f} s", _verdict(r["passed"]),
                 "from process spawn; torch " + ("LOADED" if r["torch_loaded"] else "not loaded"))]


def scale_ray(quick: bool, full: bool) -> list[Line]:
    from bench import bench_scale_ray as b

    figures = b.run(rows=20_000 if quick else b.ROWS, n_texts=300 if quick else b.TEXTS,
                    n_pairs=300 if quick else b.PAIRS)
    lines = [_scale_line(r) for r in figures]
    if not b.HH_RLHF.exists():
        lines.append(_missing("scale run on real texts and HH-RLHF pairs", b.HH_RLHF))
    return lines


def _scale_line(r: dict[str, Any]) -> Line:
    what = {"embeddings": "synthetic-embedding rows", "texts": "distinct real texts",
            "pairs": "HH-RLHF pairs from real texts"}[r["workload"]]
    cold = (f"; end to end with Ray's own start {r['ray_cold_s']:.1f} s "
            f"(ratio {r['ratio_cold']:.2f})") if r["ray_cold_s"] else ""
    equal = f"; metrics equal {r['metrics_equal']}" if "metrics_equal" in r else ""
    if r["workload"] == "pairs":  # the equality check: its ratio carries no target
        target, verdict = "scores equal to 1e-6, metrics equal", _verdict(
            r["max_score_difference"] <= 1e-6 and r["rows_compared"] == r["rows"]
            and r["metrics_equal"])
    else:
        target, verdict = f">= {r['target']} with scores equal to 1e-6", _verdict(r["passed"])
    return Line(f"scale run on local Ray ({r['cpus']} CPUs), {_size(r['rows'])} {what}",
                f"scale run {r['ray_s']:.1f} s ({r['rows_per_s_per_cpu']:,.0f} rows/s per CPU)",
                f"local audit {r['local_s']:.1f} s", f"{r['ratio']:.2f} (throughput)", target,
                verdict, f"max |score difference| {r['max_score_difference']:.1g} over "
                f"{r['rows_compared']:,} rows; output {r['output_bytes_per_row']:.0f} "
                f"bytes/row{cold}{equal}")


def tokens(quick: bool, full: bool) -> list[Line]:
    from bench import bench_tokens

    what = "tokens reward model (bert-cls, fp32) over HH-RLHF responses"
    if not (bench_tokens.HH_RLHF.exists() and bench_tokens.JAILBREAKBENCH.exists()):
        return [_missing(what, bench_tokens.HH_RLHF)]
    r = bench_tokens.run(rounds=1 if quick else 3, n_texts=500 if quick else bench_tokens.N_TEXTS)
    return [Line(f"{what}, {r['n_texts']:,} distinct texts",
                 f"workstation {r['ours_texts_per_s']:.0f} texts/s",
                 f"onnxruntime loop, batches of {bench_tokens.BASELINE_BATCH} "
                 f"{r['baseline_texts_per_s']:.0f} texts/s",
                 f"{r['ratio']:.2f}x", f">= {bench_tokens.TARGET_RATIO}x, scores within "
                 f"{bench_tokens.TOLERANCE:g}", _verdict(r["passed"]),
                 f"max |score difference| {r['max_abs_diff']:.1g}; median of {r['rounds']}")]


def _missing(what: str, path: Path) -> Line:
    return Line(what, "not measured", "-", "-", "-", "n/a", f"real data missing: {path}")


BENCHMARKS: dict[str, Callable[[bool, bool], list[Line]]] = {
    "encoder": encoder, "encoder-e2e": encoder_e2e, "quantize": quantize, "audit": audit,
    "page": page, "train": train, "patch": patch,
    "label-errors": label_errors, "gui": gui, "report": report, "scale-ray": scale_ray,
    "tokens": tokens,
}


# -- the tables ----------------------------------------------------------------------

def reward_recovery(quick: bool, full: bool) -> tuple[list[str], bool]:
    from bench import bench_reward_recovery

    report = bench_reward_recovery.run(quick=quick)
    return bench_reward_recovery.table(report), report["verdict"]["passed"]


def patch_locality(quick: bool, full: bool) -> tuple[list[str], bool]:
    from bench import bench_patch_locality

    report = bench_patch_locality.run(quick=quick)
    return bench_patch_locality.table(report), report["verdict"]["passed"]


def scale(quick: bool, full: bool) -> tuple[list[str], bool]:
    from bench import bench_scale

    sizes = (1_000, 5_000, 20_000) if quick else bench_scale.SIZES
    limit = 1_000 if quick else 100_000 if full else bench_scale.ENCODE_LIMIT
    repeats = 1 if quick else bench_scale.REPEATS
    points = bench_scale.run(sizes, limit, repeats)
    head = (f"scale: labels datasets of {', '.join(_size(n) for n in sizes)}; import from "
            f"JSONL; encode with the real encoder up to {_size(limit)}; audit with cached "
            f"(synthesised) embeddings, MLP 384->64->2, median of {repeats}; page = failed "
            f"rows in rank order at the middle offset, limit 100, with the count")
    return [head] + bench_scale.table(points), True  # the scale table has no target


TABLES: dict[str, Callable[[bool, bool], tuple[list[str], bool]]] = {
    "reward-recovery": reward_recovery, "patch-locality": patch_locality, "scale": scale,
}


# -- running -------------------------------------------------------------------

def child(name: str, quick: bool, full: bool) -> None:
    """Run one benchmark here and print its result as one JSON line."""
    if name in TABLES:
        text, passed = TABLES[name](quick, full)
        print(json.dumps({"text": text, "passed": passed}))
    else:
        print(json.dumps({"lines": [asdict(line) for line in BENCHMARKS[name](quick, full)]}))


def spawn(name: str, quick: bool, full: bool) -> tuple[list[str], bool]:
    """Run one benchmark in a fresh process; its printed lines and whether
    everything in it passed (or was honestly not available)."""
    args = [sys.executable, "-m", "bench", "--child", name] + ["--quick"] * quick + \
        ["--full"] * full
    done = subprocess.run(args, capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    out = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not out:
        tail = done.stderr.strip().splitlines()[-1:] or [f"exit code {done.returncode}"]
        return [f"[ERROR] {name}: {tail[0]}"], False
    result = json.loads(out[-1])
    if "text" in result:
        return result["text"], bool(result.get("passed", True))
    lines = [Line(**fields) for fields in result["lines"]]
    return [str(line) for line in lines], all(line.verdict != "FAIL" for line in lines)


def main(argv: list[str] | None = None) -> int:
    names = list(BENCHMARKS) + list(TABLES)
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: check that it runs")
    parser.add_argument("--full", action="store_true",
                        help="also measure encoding at 100k in the scale table")
    parser.add_argument("--only", action="append", metavar="NAME",
                        help=f"run only these (repeatable or comma-separated): {', '.join(names)}")
    parser.add_argument("--child", choices=names, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.quick, args.full)
        return 0
    chosen = [n.strip() for spec in args.only or [] for n in spec.split(",") if n.strip()]
    unknown = sorted(set(chosen) - set(names))
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(names)}")
    print(_header(args.quick), flush=True)
    ok = True
    for name in [n for n in names if not chosen or n in chosen]:
        start = time.perf_counter()
        lines, passed = spawn(name, args.quick, args.full)
        ok &= passed
        for line in lines:
            print(line, flush=True)
        print(f"    ({name}: {time.perf_counter() - start:.0f} s)", flush=True)
    return 0 if ok else 1


def _header(quick: bool) -> str:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    load = " ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    mode = "QUICK (small sizes; figures are not the benchmarks' results)" if quick else "full"
    return f"bench: {mode}; {cores} cores, load average {load}; ratios vs baselines run alongside"


if __name__ == "__main__":
    raise SystemExit(main())
