"""Benchmark: does a reward learned from demonstrations recover the task?

On each task of ``reward_tasks`` (CartPole, Pendulum, MountainCar, Acrobot,
the demo's slippery CliffWalking) every fifth demonstration is held out as
the expert states to test on; the rest are the training demonstrations,
the same for every method. Methods, in the same run:

* ours: ``workstation.training.train`` with the default demonstration reward,
  through a workspace like an analyst's (import, train, export, register),
  scored by the registered ONNX;
* moe-ae: the same with ``model=moe-ae``, the paper's mixture of autoencoders;
* knn: minus the mean distance to the 5 nearest training states
  (standardised by the training states' deviation);
* gauss: minus the Mahalanobis distance to the training states (one Gaussian,
  full covariance);
* gmm: a Gaussian mixture's log-likelihood (scikit-learn, full covariances,
  1-8 components chosen by BIC, standardised states).

Measures: Spearman rho between the method's score and the task's reference
(``reward_tasks``) on uniform states and on random-policy states, their mean
(a task's rho), and the AUROC of held-out expert states against failure
states. Target: ours at least as good as the best baseline on every task
(rho), and mean rho >= 0.8 over the tasks.

Beside them, not a method: how far a score can rank like the reference at
all when it is given half of the answer (``supervised_ceiling``: a random
forest fitted to the reference of half of each state set, ranked on the
other half, two folds). A demonstration reward never sees the reference,
so this bounds what the table can ask of it; where the expert's
return-to-go changes abruptly from state to state (Acrobot) the bound is
low. And how far the demonstrations carry (``demonstrations_reach``): the
same forest fitted to the reference at every training demonstration step,
ranking the test states, i.e. regression on the answer wherever an expert
went. It is no bound (a density or a progress term can read what constant
labels along the demonstrations do not say), but where a state set lies
beyond the demonstrations it shows how little of the answer they hold.

    .venv/bin/python bench/bench_reward_recovery.py [--quick] [--tasks CartPole,...] [--seed N]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.reward_tasks import TASK_NAMES, Sizes, TaskData, build_tasks  # noqa: E402

TARGET_MEAN_RHO = 0.8
BASELINES = ("knn", "gauss", "gmm", "moe-ae")
METHODS = ("ours",) + BASELINES
HELDOUT_EVERY = 5
KNN_K = 5
GMM_COMPONENTS = (1, 2, 4, 8)
CEILING_TREES = 200
YARDSTICKS = {  # printed under the table; neither is a method nor in the verdict
    "supervised_ceiling": ("supervised ceiling (not a method: a random forest given the "
                           "reference of half the states ranks the other half)"),
    "demonstrations_reach": ("demonstrations' reach (not a method: the forest given the "
                              "reference at every training demonstration step ranks the states)"),
}

Scorer = Callable[[np.ndarray], np.ndarray]


def split(task: TaskData) -> tuple[list[np.ndarray], np.ndarray]:
    """Training demonstrations, and the held-out expert states (every fifth)."""
    train = [d for i, d in enumerate(task.demos) if i % HELDOUT_EVERY]
    held = [d for i, d in enumerate(task.demos) if not i % HELDOUT_EVERY]
    return train, np.concatenate(held)


# -- the baselines ------------------------------------------------------------------

def _standardise(reference: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    mean, std = reference.mean(0), reference.std(0)
    std = np.where(std > 1e-9, std, 1.0)
    return lambda x: (np.asarray(x, dtype=np.float64) - mean) / std


def knn(train: np.ndarray) -> Scorer:
    from sklearn.neighbors import NearestNeighbors

    z = _standardise(train)
    index = NearestNeighbors(n_neighbors=min(KNN_K, len(train))).fit(z(train))
    return lambda x: -index.kneighbors(z(x))[0].mean(1)


def gauss(train: np.ndarray) -> Scorer:
    z = _standardise(train)
    zt = z(train)
    precision = np.linalg.inv(np.cov(zt.T, bias=True) + 1e-6 * np.eye(zt.shape[1]))
    mean = zt.mean(0)
    return lambda x: -np.einsum("ij,jk,ik->i", z(x) - mean, precision, z(x) - mean)


def gmm(train: np.ndarray) -> Scorer:
    from sklearn.mixture import GaussianMixture

    z = _standardise(train)
    zt = z(train)
    fits = [GaussianMixture(k, covariance_type="full", reg_covar=1e-4, random_state=0)
            .fit(zt) for k in GMM_COMPONENTS if k <= len(zt)]
    best = min(fits, key=lambda g: g.bic(zt))
    return lambda x: best.score_samples(z(x))


def trained(demos: list[np.ndarray], params: dict[str, Any], seed: int = 0) -> tuple[Scorer, dict]:
    """A workstation model trained like an analyst would (workspace, ONNX)."""
    from workstation.datasets import import_dataset
    from workstation.models import load_runner
    from workstation.training import train
    from workstation.workspace import Workspace

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "demos.jsonl"
        path.write_text("".join(json.dumps({"obs": d.tolist()}) + "\n" for d in demos))
        with Workspace.open(Path(tmp) / "bench.duckdb") as ws:
            import_dataset(ws, "demos", path, "demos")
            start = time.perf_counter()
            result = train(ws, "demos", "reward", params=params, seed=seed)
            seconds = time.perf_counter() - start
            runner = load_runner(ws, result.version)
    info = {"train_s": seconds, "metrics": result.metrics,
            "calibration": result.version.manifest.get("calibration")}
    return (lambda x: runner.score_matrix(np.asarray(x, dtype=np.float32))), info


def _forest(states: np.ndarray, reference: np.ndarray, seed: int) -> Any:
    from sklearn.ensemble import RandomForestRegressor

    # a forest needs no standardising
    return RandomForestRegressor(CEILING_TREES, min_samples_leaf=3, random_state=seed,
                                 n_jobs=2).fit(states, reference)


def supervised_ceiling(states: np.ndarray, reference: np.ndarray, seed: int = 0) -> float:
    """Spearman rho of a random forest fitted to the reference of one half of
    ``states`` and scored on the other, both ways round (the mean)."""
    order = np.random.default_rng(seed).permutation(len(states))
    halves = (order[: len(order) // 2], order[len(order) // 2:])
    rhos = [spearman(_forest(states[fit_on], reference[fit_on], seed).predict(states[score_on]),
                     reference[score_on]) for fit_on, score_on in (halves, halves[::-1])]
    return float(np.mean(rhos))


def demonstrations_reach(task: TaskData, demos: list[np.ndarray],
                          seed: int = 0) -> dict[str, float]:
    """Spearman rho on the uniform and the random-play states of a random
    forest fitted to the task's reference at every step of ``demos``."""
    steps = np.concatenate(demos)
    reference, possible = task.judge(steps)
    return recovery(task, _forest(steps[possible], reference[possible], seed).predict)


# -- measuring -----------------------------------------------------------------------

def spearman(score: np.ndarray, reference: np.ndarray) -> float:
    from scipy.stats import spearmanr

    if np.ptp(score) == 0 or np.ptp(reference) == 0:
        return 0.0  # a constant ranks nothing
    return float(spearmanr(score, reference)[0])


def rhos(uniform: float, random: float) -> dict[str, float]:
    """Rho on the uniform and the random-play states, and their mean (a task's rho)."""
    return {"rho_uniform": uniform, "rho_random": random, "rho": (uniform + random) / 2}


def recovery(task: TaskData, scorer: Scorer) -> dict[str, float]:
    """How ``scorer`` ranks the task's uniform and random-play states."""
    return rhos(spearman(scorer(task.uniform), task.uniform_reference),
                spearman(scorer(task.random), task.random_reference))


def measure(task: TaskData, scorer: Scorer, held: np.ndarray) -> dict[str, float]:
    from workstation.audits.metrics import auroc

    scores = np.r_[scorer(held), scorer(task.failure)]
    labels = np.r_[np.ones(len(held), bool), np.zeros(len(task.failure), bool)]
    return {**recovery(task, scorer), "auroc": float(auroc(scores, labels))}


def run_task(task: TaskData, methods: tuple[str, ...] = METHODS,
             ours: dict[str, Any] | None = None, seed: int = 0) -> dict[str, Any]:
    """Every method's measures on one task."""
    demos, held = split(task)
    train_obs = np.concatenate(demos)
    out: dict[str, Any] = {"task": task.name, "env": task.env_id,
                           "expert_return": task.expert_return, "known_good": task.known_good,
                           "expert_ok": task.expert_ok, "demo_steps": len(train_obs),
                           "heldout_steps": len(held), "reference": task.reference,
                           "failure": task.failure_rule, "n_failure": len(task.failure),
                           "reference_reliability": task.notes.get("reference_reliability"),
                           "methods": {}}
    for method in methods:
        start = time.perf_counter()
        info: dict[str, Any] = {}
        if method == "ours":
            scorer, info = trained(demos, dict(ours or {}), seed)
        elif method == "moe-ae":
            scorer, info = trained(demos, {"model": "moe-ae"}, seed)
        else:
            scorer = {"knn": knn, "gauss": gauss, "gmm": gmm}[method](train_obs)
        result = measure(task, scorer, held)
        result["seconds"] = time.perf_counter() - start
        if "metrics" in info:
            result["progress_weight"] = info["metrics"].get("progress_weight")
        out["methods"][method] = result
    start = time.perf_counter()
    out["supervised_ceiling"] = rhos(
        supervised_ceiling(task.uniform, task.uniform_reference, seed),
        supervised_ceiling(task.random, task.random_reference, seed))
    out["supervised_ceiling"]["seconds"] = time.perf_counter() - start
    start = time.perf_counter()
    out["demonstrations_reach"] = demonstrations_reach(task, demos, seed)
    out["demonstrations_reach"]["seconds"] = time.perf_counter() - start
    return out


def verdict(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Per task: ours against the best baseline (rho); overall: the mean rho."""
    per_task, beaten = {}, True
    for r in results:
        methods = r["methods"]
        baselines = {m: v["rho"] for m, v in methods.items() if m != "ours"}
        best = max(baselines, key=baselines.get) if baselines else None
        ok = best is None or methods["ours"]["rho"] >= baselines[best]
        per_task[r["task"]] = {"best_baseline": best, "ok": ok}
        beaten &= ok
    mean_rho = float(np.mean([r["methods"]["ours"]["rho"] for r in results]))
    return {"per_task": per_task, "ours_beats_best_baseline_everywhere": beaten,
            "mean_rho": mean_rho, "mean_rho_target": TARGET_MEAN_RHO,
            "passed": beaten and mean_rho >= TARGET_MEAN_RHO}


def run(quick: bool = False, tasks: list[str] | None = None, methods: tuple[str, ...] = METHODS,
        ours: dict[str, Any] | None = None, seed: int = 0) -> dict[str, Any]:
    sizes = Sizes.quick() if quick else Sizes()
    results = [run_task(t, methods, ours, seed) for t in build_tasks(sizes, seed, tasks)]
    return {"results": results, "verdict": verdict(results), "quick": quick}


# -- the table -------------------------------------------------------------------------

def table(report: dict[str, Any]) -> list[str]:
    """The printed table: one row per task, then the verdict."""
    results, v = report["results"], report["verdict"]
    methods = list(results[0]["methods"]) if results else []
    head = (f"{'task':13s} {'expert (good)':>15s} {'steps':>6s}  "
            + "  ".join(f"{m:>20s}" for m in methods) + "  best baseline")
    lines = ["reward recovery: Spearman rho uniform / random-policy states, and AUROC of "
             "held-out expert vs failure states", head]
    for r in results:
        cells = [f"{x['rho_uniform']:+.2f}/{x['rho_random']:+.2f} {x['auroc']:.3f}"
                 for x in r["methods"].values()]
        check = v["per_task"][r["task"]]
        expert = f"{r['expert_return']:.0f} ({r['known_good']:.0f}){'' if r['expert_ok'] else '!'}"
        lines.append(f"{r['task']:13s} {expert:>15s} {r['demo_steps']:>6d}  "
                     + "  ".join(f"{c:>20s}" for c in cells)
                     + f"  {check['best_baseline']} {'ok' if check['ok'] else 'BEATS OURS'}")
    for r in results:
        if r.get("reference_reliability"):
            lines.append(reliability_line(r["task"], r["reference_reliability"]))
    means = {m: np.mean([r["methods"][m]["rho"] for r in results]) for m in methods}
    lines.append("mean rho       " + " " * 23 + "  ".join(f"{means[m]:>20.3f}" for m in methods))
    lines.extend(yardstick_line(results, key) for key in YARDSTICKS)
    lines.append(f"[{'PASS' if v['passed'] else 'FAIL'}] ours >= best baseline on every task: "
                 f"{'yes' if v['ours_beats_best_baseline_everywhere'] else 'no'}; mean rho "
                 f"{v['mean_rho']:.3f} (target >= {TARGET_MEAN_RHO})")
    return lines


def yardstick_line(results: list[dict[str, Any]], key: str = "supervised_ceiling") -> str:
    """Each task's figure for one of ``YARDSTICKS`` beside ours: how much of
    the answer a score recovers when it is given half of it, or the answer
    wherever the experts went."""
    cells = [f"{r['task']} {r[key]['rho']:.3f} (ours {r['methods']['ours']['rho']:.3f})"
             for r in results]
    mean = float(np.mean([r[key]["rho"] for r in results]))
    return f"{YARDSTICKS[key]}: " + ", ".join(cells) + f"; mean {mean:.3f}"


def reliability_line(task: str, reliability: dict[str, Any]) -> str:
    """How far a noisy expert's reference can be ranked like at all."""
    u, r = reliability["uniform"], reliability["random"]
    ceiling = [float(np.sqrt(max(x, 0.0))) for x in (u, r)]
    return (f"  {task}: the reference is the mean of {reliability['rollouts']} noisy expert "
            f"rollouts; split-half reliability {u:.2f} uniform / {r:.2f} random, so no score "
            f"ranks like it much beyond rho {ceiling[0]:.2f} / {ceiling[1]:.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--tasks", help=f"comma-separated, of {', '.join(TASK_NAMES)}")
    parser.add_argument("--param", action="append", default=[], metavar="K=V",
                        help="a training parameter of ours (repeatable)")
    parser.add_argument("--seed", type=int, default=0,
                        help="makes the demonstrations, test states and training (default 0)")
    parser.add_argument("--json", metavar="PATH", help="also write the results here")
    args = parser.parse_args(argv)
    ours = dict(p.split("=", 1) for p in args.param)
    report = run(args.quick, args.tasks.split(",") if args.tasks else None, ours=ours,
                 seed=args.seed)
    for line in table(report):
        print(line)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=float))
    return 0 if report["verdict"]["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
