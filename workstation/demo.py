"""`workstation demo`: a ready-made workspace a newcomer can explore.

It holds the small text sets the project ships (resources/demo, a few labels
deliberately wrong) and expert demonstrations computed here: value iteration
on gymnasium's slippery CliffWalking grid gives a policy that keeps away from
the cliff; its successful rollouts, as (row, column) states, are the expert
demonstrations. The demo then trains a first model for each dataset, audits
it and runs the probes, so the first window already shows real failure cases.

The demo workspace is owned by the demo identity (workstation.identity,
created with a stored passphrase when missing), so that the demo needs
nothing typed; the analyst's own current identity, if any, is trusted there
with every role.
"""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from workstation.errors import WorkspaceInUse, WorkstationError
from workstation.progress import Progress
from workstation.resources import resource_path
from workstation.workspace import Workspace

GRID_ENV = "CliffWalking-v1"
GAMMA = 0.95


@dataclass
class DemoReport:
    path: Path
    datasets: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    runs: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    trusted: list[str] = field(default_factory=list)   # identities trusted in it, owner first

    def to_json(self) -> dict[str, Any]:
        return {"workspace": str(self.path), "datasets": self.datasets, "models": self.models,
                "runs": self.runs, "notes": self.notes, "trusted": self.trusted}


# -- expert demonstrations ---------------------------------------------------

def optimal_policy(transitions: dict, n_states: int, n_actions: int,
                   gamma: float = GAMMA, tol: float = 1e-8) -> np.ndarray:
    """Value iteration over a gymnasium toy-text transition table ``P``."""
    values = np.zeros(n_states)
    while True:
        q = _q_values(transitions, values, n_states, n_actions, gamma)
        new = q.max(axis=1)
        if np.max(np.abs(new - values)) < tol:
            return q.argmax(axis=1)
        values = new


def _q_values(transitions: dict, values: np.ndarray, n_states: int, n_actions: int,
              gamma: float) -> np.ndarray:
    q = np.zeros((n_states, n_actions))
    for s in range(n_states):
        for a in range(n_actions):
            q[s, a] = sum(p * (r + (0.0 if done else gamma * values[s2]))
                          for p, s2, r, done in transitions[s][a])
    return q


def expert_rollouts(n: int = 40, seed: int = 0, max_steps: int = 100) -> list[dict[str, Any]]:
    """Successful rollouts of the value-iteration policy: those that reach
    the goal without stepping into the cliff (reward -100)."""
    import gymnasium as gym

    env = gym.make(GRID_ENV, is_slippery=True)
    unwrapped = env.unwrapped
    policy = optimal_policy(unwrapped.P, unwrapped.observation_space.n,
                            unwrapped.action_space.n)
    cols = unwrapped.shape[1]
    trajectories: list[dict[str, Any]] = []
    episode = 0
    while len(trajectories) < n and episode < 20 * n:
        trajectory = _rollout(env, policy, cols, seed + episode, max_steps)
        episode += 1
        if trajectory is not None:
            trajectories.append(trajectory)
    env.close()
    return trajectories


def _rollout(env: Any, policy: np.ndarray, cols: int, seed: int,
             max_steps: int) -> dict[str, Any] | None:
    state, _ = env.reset(seed=seed)
    obs, acts = [_cell(state, cols)], []
    for _ in range(max_steps):
        action = int(policy[state])
        state, reward, terminated, truncated, _ = env.step(action)
        if reward <= -100:
            return None  # fell off the cliff: not an expert demonstration
        obs.append(_cell(state, cols))
        acts.append(action)
        if terminated or truncated:
            return {"id": f"cliff-{seed}", "obs": obs, "acts": acts}
    return None


def _cell(state: int, cols: int) -> list[float]:
    return [float(state // cols), float(state % cols)]


# -- the demo workspace ------------------------------------------------------

def default_demo_path(home: Path | None = None, make_folder: bool = True) -> Path:
    """Where a demo goes when nobody says: ``~/workstation-demo/demo.duckdb``,
    or ``demo-2.duckdb``, ``demo-3.duckdb``... when taken (the folder is made
    unless ``make_folder`` is false: a path only proposed in a dialog)."""
    folder = (home or Path.home()) / "workstation-demo"
    if make_folder:
        folder.mkdir(exist_ok=True)
    path = folder / "demo.duckdb"
    n = 1
    while path.exists():
        n += 1
        path = folder / f"demo-{n}.duckdb"
    return path


def build_demo(path: str | Path, *, progress: Progress | None = None, encoder: Any = None,
               seed: int = 0, overwrite: bool = False) -> DemoReport:
    """Create the demo workspace at ``path`` (refused if a file is there,
    unless ``overwrite``, and always if another process has it open).

    It is built in a scratch file beside ``path`` and moved there only once
    complete: a cancelled or failed build leaves nothing behind, and a file it
    was to replace stays as it was."""
    path = Path(path)
    _check_target(path, overwrite)
    progress = progress or Progress()
    report = DemoReport(path)
    scratch = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.building")
    try:
        with Workspace.open(scratch) as ws:
            _trust_identities(ws, report)
            _import_all(ws, report, progress, seed)
            _train_and_audit(ws, report, progress, encoder, seed)
        progress.check()  # a cancel that came during the last step still counts
        os.replace(scratch, path)
    finally:
        _remove(scratch)
    return report


def _check_target(path: Path, overwrite: bool) -> None:
    if path.is_dir():
        raise WorkstationError(f"{path} is a folder; choose a file name for the demo")
    if not path.parent.is_dir():
        raise WorkstationError(f"there is no folder {path.parent} for the demo")
    if not path.exists():
        return
    if not overwrite:
        raise WorkstationError(f"{path} already exists; choose another path for the demo")
    try:  # replacing a workspace another process is writing would lose its work
        Workspace.open(path, read_only=True, create=False).close()
    except WorkspaceInUse:
        raise
    except WorkstationError:
        pass  # not a workspace (or an older one): it is replaced all the same


def _remove(scratch: Path) -> None:
    """The scratch file and DuckDB's write-ahead log beside it, if still there."""
    for leftover in (scratch, scratch.with_name(scratch.name + ".wal")):
        leftover.unlink(missing_ok=True)


def _trust_identities(ws: Workspace, report: DemoReport) -> None:
    """The demo identity owns the demo; the analyst's own identity may do everything there."""
    from workstation import identity, trust

    demo = identity.demo_signer()
    trust.ensure_owner(ws, demo)
    report.trusted.append(demo.name)
    mine = identity.current()
    if mine is not None and not mine.demo:
        trust.add(ws, mine.public_pem, mine.name, trust.ROLES, mine.email, signer=demo)
        report.trusted.append(mine.name)


def _import_all(ws: Workspace, report: DemoReport, progress: Progress, seed: int) -> None:
    from workstation.datasets import import_dataset

    progress.stage_start("importing demo data")
    import_dataset(ws, "pairs", resource_path("demo", "pairs.jsonl"), "demo-pairs",
                   progress=progress)
    import_dataset(ws, "labels", resource_path("demo", "labels.jsonl"), "demo-labels",
                   progress=progress)
    with tempfile.TemporaryDirectory() as tmp:
        demos = Path(tmp) / "cliffwalking-expert.jsonl"
        demos.write_text("".join(json.dumps(t) + "\n" for t in expert_rollouts(seed=seed)))
        progress.check()
        import_dataset(ws, "demos", demos, "cliff-demos", progress=progress)
    report.datasets += ["demo-pairs", "demo-labels", "cliff-demos"]


def _train_and_audit(ws: Workspace, report: DemoReport, progress: Progress, encoder: Any,
                     seed: int) -> None:
    from workstation.audits import run_audit
    from workstation.training import train

    plan = [("demo-pairs", "demo-rm"), ("demo-labels", "demo-safety"),
            ("cliff-demos", "cliff-reward")]
    for dataset, model in plan:
        progress.stage_start(f"training {model}")
        result = train(ws, dataset, model, seed=seed, progress=progress, encoder=encoder)
        report.models.append(result.version.ref)
        progress.stage_start(f"auditing {model}")
        run = run_audit(ws, result.version, dataset, encoder=encoder, progress=progress)
        report.runs.append(run.id)
        report.runs += _probe(ws, result.version, dataset, progress, encoder, report)


def _probe(ws: Workspace, version: Any, dataset: str, progress: Progress, encoder: Any,
           report: DemoReport) -> list[int]:
    from workstation.probes import probes_for, run_probes

    kind = ws.execute("SELECT kind FROM datasets WHERE name = ?", [dataset]).fetchall()[0][0]
    if not probes_for(kind):
        return []
    run = run_probes(ws, version, dataset, progress=progress, encoder=encoder)
    report.notes.append(f"probes on {dataset}: {sum(run.counts.values())} findings")
    return [run.id]
