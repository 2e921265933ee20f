"""The audit run as every plot reads it: its facts (``RunInfo``), its result
columns as numpy arrays, and thinning a scatter to a number of points a plot
can draw. Shared by the run plots (``plot_data``) and the version plots
(``version_plots``), so that neither of those imports the other to get them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from workstation.audits.runs import SPLITS
from workstation.errors import WorkstationError
from workstation.workspace import Workspace

# Scatter plots draw at most this many points: every failure, then an even
# sample of the rest (a plot of 200k points is unreadable and slow).
MAX_POINTS = 20_000


@dataclass(frozen=True)
class RunInfo:
    """What the plots need to know about an audit run."""

    run_id: int
    kind: str            # the dataset kind: pairs, labels or demos
    score_type: str
    threshold: float | None
    model: str           # NAME@VERSION
    model_version_id: int
    dataset: str
    dataset_id: int
    metrics: dict[str, Any]          # over the examples the version was not trained on
    training_metrics: dict[str, Any] | None = None
    membership: dict[str, Any] | None = None  # None: recorded before membership was
    split: str = "heldout"           # which examples the plots of this call show
    covers: str = ""                 # those examples, in words

    @property
    def rows_sql(self) -> str:
        """The audit_results rows (aliased r) these plots show; one parameter, the run id."""
        chosen = SPLITS[self.split]
        return "r.run_id = ?" + (f" AND {chosen}" if chosen else "")


def run_info(ws: Workspace, run_id: int, split: str = "heldout") -> RunInfo:
    """The audit run ``run_id``, for plots of ``split`` ("heldout": the examples
    its version was not trained on, as its metrics; "training"; "all"); probe
    runs and unknown ids are refused."""
    if split not in SPLITS:
        raise WorkstationError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
    rows = ws.execute(
        "SELECT r.id, r.kind, d.kind, r.threshold, mv.model || '@' || mv.version, mv.id, "
        "d.name, d.id, r.metrics, r.training_metrics, r.membership, r.n_examples "
        "FROM audit_runs r JOIN datasets d ON d.id = r.dataset_id "
        "JOIN model_versions mv ON mv.id = r.model_version_id WHERE r.id = ?",
        [run_id]).fetchall()
    if not rows:
        raise WorkstationError(f"no audit run {run_id}")
    (rid, run_kind, kind, threshold, model, mv_id, dataset, dataset_id, text, training,
     membership, n_examples) = rows[0]
    if run_kind != "audit":
        raise WorkstationError(f"run {run_id} is a {run_kind} run; plots show audit runs")
    metrics = json.loads(text) if text else {}
    membership = json.loads(membership) if membership else None
    return RunInfo(rid, kind, metrics.get("score_type") or "reward", threshold, model, mv_id,
                   dataset, dataset_id, metrics, json.loads(training) if training else None,
                   membership, split, _covers(rid, split, membership, int(n_examples)))


def _covers(run_id: int, split: str, membership: dict[str, Any] | None, n: int) -> str:
    if split == "all":
        return f"all {n} audited examples"
    if membership is None:
        when = f"run {run_id} was audited before training membership was recorded"
        return f"all {n} examples ({when})" if split == "heldout" else f"none: {when}"
    if split == "heldout":
        return membership.get("metrics_cover") or f"all {n} examples"
    return membership.get("training_metrics_cover") or \
        f"none: {membership.get('version')} was not trained on these examples"


def columns(ws: Workspace, sql: str, params: list[Any]) -> list[np.ndarray]:
    """The result's columns as numpy arrays, SQL NULL as NaN in float columns."""
    result = ws.execute(sql, params).fetchnumpy()
    return [_plain(column) for column in result.values()]


def _plain(column: np.ndarray) -> np.ndarray:
    if isinstance(column, np.ma.MaskedArray):
        return column.astype(np.float64).filled(np.nan)
    return np.asarray(column)


def floats(values: np.ndarray) -> np.ndarray:
    return np.asarray(values, dtype=np.float64)


def thin(priority: np.ndarray, max_points: int) -> np.ndarray | None:
    """Indices to draw (sorted), or None to draw all: every ``priority``
    point (up to the limit), the rest filled by evenly spaced others."""
    n = len(priority)
    if n <= max_points:
        return None
    first = np.flatnonzero(priority)[:max_points]
    others = np.flatnonzero(~priority)
    room = max_points - len(first)
    picked = others[np.linspace(0, len(others) - 1, room).astype(np.int64)] if room > 0 \
        else np.zeros(0, dtype=np.int64)
    return np.sort(np.r_[first, picked])
