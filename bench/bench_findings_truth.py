"""Benchmark: are the ``unsafe-states`` probe's findings true?

A finding says: this state is unsafe, yet the model scores it at or above
its calibrated threshold, i.e. as well as all but the worst 5% of fresh
expert states. It is *true* when the task agrees the state is bad: its
reference (``reward_tasks``: the task's reward, or the expert's return-to-go)
lies below the 5th percentile of the held-out expert states' references,
the same percentile the threshold stands for. It is *false* when the task
rates the state at least as well as that, and *impossible* when no state of
the task makes the observation (cos/sin off the unit circle, a speed beyond
the simulator's clip, a cell off the grid): nothing would ever be scored
there. CartPole and CliffWalking are probed with their environment's failure
rule (the pole down, the cliff), so their findings are true by construction
(the check below still measures them); the other tasks by distance from the
demonstrations, which says nothing about the task by itself.

On each task (the same split as ``bench_reward_recovery``) the default
demonstration reward is trained like an analyst would, the probe runs at its
defaults, and every flagged state is judged.

    .venv/bin/python bench/bench_findings_truth.py [--quick] [--tasks ...] [--param K=V]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_reward_recovery import split  # noqa: E402
from bench.reward_tasks import TASK_NAMES, Sizes, TaskData, build_tasks  # noqa: E402

EXPERT_PERCENTILE = 5.0  # the calibration's: threshold 0.5 at the held-out steps' p5
ALL_FINDINGS = 1_000_000
DATASET_NAMES = {"CartPole": "cartpole-demos", "CliffWalking": "cliff-demos"}


def judge(task: TaskData, flagged: np.ndarray, held: np.ndarray) -> dict[str, Any]:
    """True, false and impossible findings among ``flagged`` observations."""
    reference, possible = task.judge(np.asarray(flagged, dtype=np.float64))
    expert, _ = task.judge(np.asarray(held, dtype=np.float64))
    level = float(np.nanpercentile(expert, EXPERT_PERCENTILE))
    below = possible & (np.nan_to_num(reference, nan=np.inf) < level)
    n = len(flagged)
    return {"n_flagged": n, "impossible": int((~possible).sum()), "true": int(below.sum()),
            "false": int((possible & ~below).sum()), "expert_p5_reference": level,
            "true_share_of_possible": float(below.sum() / possible.sum()) if possible.any()
            else None}


def flagged_states(task: TaskData, params: dict[str, Any], seed: int,
                   probe_params: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
    """Train the default reward on the task's training demonstrations, probe it,
    and return every flagged state with the probe's summary."""
    from workstation.datasets import import_dataset
    from workstation.probes import findings_page, run_probes
    from workstation.training import train
    from workstation.workspace import Workspace

    demos, _ = split(task)
    name = DATASET_NAMES.get(task.name, f"{task.name.lower()}-demos")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "demos.jsonl"
        path.write_text("".join(json.dumps({"obs": d.tolist()}) + "\n" for d in demos))
        with Workspace.open(Path(tmp) / "bench.duckdb") as ws:
            import_dataset(ws, "demos", path, name)
            version = train(ws, name, "reward", params=params, seed=seed).version
            run = run_probes(ws, version, name, probes=["unsafe-states"], seed=seed,
                             params={"max_findings": ALL_FINDINGS, **(probe_params or {})})
            page, _ = findings_page(ws, run.id, limit=ALL_FINDINGS)
    obs = np.array([f["case"]["obs"] for f in page], dtype=np.float64)
    return obs.reshape(len(page), task.obs.shape[1]), run.summaries["unsafe-states"]


def run(quick: bool = False, tasks: list[str] | None = None, params: dict[str, Any] | None = None,
        seed: int = 0) -> dict[str, Any]:
    sizes = Sizes.quick() if quick else Sizes()
    probe = {"grid_size": 625, "perturbations": 200, "rollouts": 10} if quick else {}
    results = []
    for task in build_tasks(sizes, seed, tasks):
        _, held = split(task)
        flagged, summary = flagged_states(task, dict(params or {}), seed, probe)
        results.append({"task": task.name, "unsafe_rule": summary["unsafe_rule"],
                        "threshold": summary["threshold"], **judge(task, flagged, held)})
    return {"results": results, "quick": quick, "params": dict(params or {})}


def table(report: dict[str, Any]) -> list[str]:
    lines = ["unsafe-states findings judged by the task: true = reference below the held-out "
             f"expert states' p{EXPERT_PERCENTILE:g}; impossible = no state makes the observation",
             f"{'task':13s} {'unsafe rule':24s} {'flagged':>7s} {'true':>6s} {'false':>6s} "
             f"{'impossible':>10s} {'true/possible':>13s}"]
    totals = np.zeros(4, dtype=int)
    for r in report["results"]:
        share = "-" if r["true_share_of_possible"] is None else f"{r['true_share_of_possible']:.0%}"
        lines.append(f"{r['task']:13s} {r['unsafe_rule'][:24]:24s} {r['n_flagged']:>7d} "
                     f"{r['true']:>6d} {r['false']:>6d} {r['impossible']:>10d} {share:>13s}")
        totals += [r["n_flagged"], r["true"], r["false"], r["impossible"]]
    possible = totals[1] + totals[2]
    share = f"{totals[1] / possible:.0%}" if possible else "-"
    lines.append(f"{'total':13s} {'':24s} {totals[0]:>7d} {totals[1]:>6d} {totals[2]:>6d} "
                 f"{totals[3]:>10d} {share:>13s}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--tasks", help=f"comma-separated, of {', '.join(TASK_NAMES)}")
    parser.add_argument("--param", action="append", default=[], metavar="K=V",
                        help="a training parameter of the reward (repeatable)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", metavar="PATH", help="also write the results here")
    args = parser.parse_args(argv)
    report = run(args.quick, args.tasks.split(",") if args.tasks else None,
                 dict(p.split("=", 1) for p in args.param), args.seed)
    for line in table(report):
        print(line)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
