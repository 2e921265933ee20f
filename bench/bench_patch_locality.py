"""Benchmark: patch locality on the reward-recovery tasks.

On each task of ``reward_tasks`` the training demonstrations (the same split
as ``bench_reward_recovery``: every fifth held out) are imported into a
workspace as an analyst would, the default demonstration reward is trained,
audited and probed with ``unsafe-states`` at its defaults (the calibrated
threshold; CartPole and CliffWalking by their environment's failure rule,
the others by distance from the demonstrations). Every stored finding is
then patched in one patch within the default budget (0.10), and the probe
runs again on the patched version (same seed, so the same states).

Per task: flaws before and after, the targeted flaws fixed (the patched
model scores them below the threshold), refused kernels, the largest drop of
reward on held-out expert states (never trained on, never protected) and the
share of them dropping more than the budget, broken examples in ``compare``
(patched against base), and scoring speed, patched against base, on 20k
uniform states. Target: >= 90% of targeted flaws fixed and <= 1% of the
held-out expert states beyond the budget.

    .venv/bin/python bench/bench_patch_locality.py [--quick] [--tasks CartPole,...]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_reward_recovery import split  # noqa: E402
from bench.reward_tasks import TASK_NAMES, Sizes, TaskData, build_tasks  # noqa: E402

BUDGET = 0.10
TARGET_FIXED = 0.90
TARGET_BEYOND = 0.01
MAX_FINDINGS = 2000
SPEED_ROWS = 20_000
SPEED_BATCH = 8192
# The probe names its environment from the dataset's name.
DATASET_NAMES = {"CartPole": "cartpole-demos", "CliffWalking": "cliff-demos"}


def run_task(task: TaskData, quick: bool = False, seed: int = 0) -> dict[str, Any]:
    from workstation.datasets import import_dataset
    from workstation.training import train
    from workstation.workspace import Workspace

    demos, held = split(task)
    name = DATASET_NAMES.get(task.name, f"{task.name.lower()}-demos")
    out: dict[str, Any] = {"task": task.name, "dataset": name, "heldout_steps": len(held)}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "demos.jsonl"
        path.write_text("".join(json.dumps({"obs": d.tolist()}) + "\n" for d in demos))
        with Workspace.open(Path(tmp) / "bench.duckdb") as ws:
            import_dataset(ws, "demos", path, name)
            base = train(ws, name, "reward", seed=seed).version
            out.update(_patch_and_measure(ws, base, name, task, held, quick, seed))
    return out


def _probe_params(quick: bool) -> dict[str, Any]:
    params: dict[str, Any] = {"max_findings": MAX_FINDINGS}
    if quick:
        params.update(grid_size=625, perturbations=200, rollouts=10)
    return params


def _patch_and_measure(ws: Any, base: Any, dataset: str, task: TaskData, held: np.ndarray,
                       quick: bool, seed: int) -> dict[str, Any]:
    from workstation.audits import run_audit
    from workstation.patching import create_patch
    from workstation.probes import findings_page, run_probes
    from workstation.regression import compare

    run_audit(ws, base, dataset)
    params = _probe_params(quick)
    before = run_probes(ws, base, dataset, probes=["unsafe-states"], params=params, seed=seed)
    summary = before.summaries["unsafe-states"]
    out: dict[str, Any] = {"env": summary["env"] or "distance", "threshold": summary["threshold"],
                           "flaws_before": summary["n_flagged"], "targeted": summary["n_stored"]}
    if not summary["n_stored"]:
        return {**out, "flaws_after": 0, "fixed_share": None, "refused": 0, "patched": False}
    targets = np.array([f["case"]["obs"] for f in findings_page(ws, before.id,
                                                                limit=MAX_FINDINGS)[0]])
    start = time.perf_counter()
    patch = create_patch(ws, base, finding_run=before.id, budget=BUDGET)
    patch_s = time.perf_counter() - start
    after = run_probes(ws, patch.version, dataset, probes=["unsafe-states"], params=params,
                       seed=seed)
    report = compare(ws, patch.version, base)
    drop = _scores(ws, base, held) - _scores(ws, patch.version, held)
    threshold = float(summary["threshold"])
    fixed = _scores(ws, patch.version, targets) < threshold
    return {**out, "patched": True, "flaws_after": after.summaries["unsafe-states"]["n_flagged"],
            "fixed": int(fixed.sum()), "fixed_share": float(fixed.mean()),
            "kernels": patch.metrics["kernels_kept"], "refused": patch.metrics["kernels_refused"],
            "protected_loss_max": patch.metrics["protected_loss_max"],
            "heldout_drop_max": float(max(drop.max(), 0.0)),
            "heldout_beyond_budget": float(np.mean(drop > BUDGET + 1e-9)),
            "compare": report.counts(), "patch_s": patch_s,
            **_speed(ws, base, patch.version, task)}


def _scores(ws: Any, version: Any, x: np.ndarray) -> np.ndarray:
    from workstation.models import load_runner

    return load_runner(ws, version).score_matrix(np.asarray(x, dtype=np.float32))


def _speed(ws: Any, base: Any, patched: Any, task: TaskData) -> dict[str, float]:
    """Rows per second, base and patched, on the uniform states (tiled to SPEED_ROWS)."""
    from workstation.models import load_runner

    x = np.resize(task.uniform.astype(np.float32), (SPEED_ROWS, task.uniform.shape[1]))
    rates = {}
    for label, version in (("base", base), ("patched", patched)):
        runner = load_runner(ws, version)
        runner.score_matrix(x[:SPEED_BATCH])  # warm-up
        start = time.perf_counter()
        for i in range(0, len(x), SPEED_BATCH):
            runner.score_matrix(x[i:i + SPEED_BATCH])
        rates[f"{label}_rows_per_s"] = len(x) / (time.perf_counter() - start)
    rates["speed_ratio"] = rates["patched_rows_per_s"] / rates["base_rows_per_s"]
    return rates


def verdict(results: list[dict[str, Any]]) -> dict[str, Any]:
    patched = [r for r in results if r.get("patched")]
    targeted = sum(r["targeted"] for r in patched)
    fixed = sum(r["fixed"] for r in patched)
    beyond = max((r["heldout_beyond_budget"] for r in patched), default=0.0)
    share = fixed / targeted if targeted else None
    return {"targeted": targeted, "fixed": fixed, "fixed_share": share,
            "worst_beyond_budget": beyond,
            "passed": (share is None or share >= TARGET_FIXED) and beyond <= TARGET_BEYOND}


def run(quick: bool = False, tasks: list[str] | None = None, seed: int = 0) -> dict[str, Any]:
    sizes = Sizes.quick() if quick else Sizes()
    results = [run_task(t, quick, seed) for t in build_tasks(sizes, seed, tasks)]
    return {"results": results, "verdict": verdict(results), "quick": quick}


def table(report: dict[str, Any]) -> list[str]:
    v = report["verdict"]
    lines = [f"patch locality: unsafe-states at the calibrated threshold, every finding patched "
             f"in one patch (budget {BUDGET:g}), probed again",
             f"{'task':13s} {'unsafe rule':12s} {'flaws':>6s} {'after':>6s} {'fixed':>11s} "
             f"{'refused':>7s} {'held-out drop max':>17s} {'>budget':>7s} {'broken':>6s} "
             f"{'patched/base rows/s':>24s}"]
    for r in report["results"]:
        if not r.get("patched"):
            lines.append(f"{r['task']:13s} {r['env']:12s} {r['flaws_before']:>6d} "
                         f"{r['flaws_after']:>6d}  nothing to patch")
            continue
        fixed = f"{r['fixed']}/{r['targeted']} {r['fixed_share']:.0%}"
        speed = f"{r['patched_rows_per_s'] / 1e3:,.0f}k/{r['base_rows_per_s'] / 1e3:,.0f}k " \
                f"({r['speed_ratio']:.2f})"
        lines.append(f"{r['task']:13s} {r['env'][:12]:12s} {r['flaws_before']:>6d} "
                     f"{r['flaws_after']:>6d} {fixed:>11s} {r['refused']:>7d} "
                     f"{r['heldout_drop_max']:>17.4f} {r['heldout_beyond_budget']:>7.2%} "
                     f"{_broken(r['compare']):>6d} {speed:>24s}")
    share = "n/a" if v["fixed_share"] is None else f"{v['fixed_share']:.1%}"
    lines.append(f"[{'PASS' if v['passed'] else 'FAIL'}] targeted flaws fixed {v['fixed']}/"
                 f"{v['targeted']} = {share} (target >= {TARGET_FIXED:.0%}); held-out expert "
                 f"states beyond the budget, worst task {v['worst_beyond_budget']:.2%} "
                 f"(target <= {TARGET_BEYOND:.0%})")
    return lines


def _broken(counts: dict[str, dict[str, int]]) -> int:
    """Examples the patch broke in ``compare``: held-out and training examples alike
    (probe cases are counted by the flaws columns)."""
    return counts["examples"]["broken"] + counts["training_examples"]["broken"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--tasks", help=f"comma-separated, of {', '.join(TASK_NAMES)}")
    parser.add_argument("--json", metavar="PATH", help="also write the results here")
    args = parser.parse_args(argv)
    report = run(args.quick, args.tasks.split(",") if args.tasks else None)
    for line in table(report):
        print(line)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=float))
    return 0 if report["verdict"]["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
