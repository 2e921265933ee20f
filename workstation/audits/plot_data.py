"""What each audit plot shows, computed from the workspace (SQL + numpy, no Qt).

The GUI's plots only draw what these functions return, so the numbers can be
checked headless. Every result carries ``reason``: when a plot does not apply
to a run (a calibration diagram for preference pairs, a ROC curve with one
class), ``reason`` says why in one line and the arrays are empty.

* ``score_distributions``: histograms on shared bin edges, per label at audit
  time (labeled responses, demonstrations: safe / unsafe) or per side
  (pairs: chosen / rejected, the sides as audited).
* ``reliability``: the calibration diagram of labeled responses, on the same
  equal-width probability bins as the run's ECE (logits and rewards enter as
  sigmoid(score)), so the bins reproduce the stored ECE.
* ``roc``: the ROC curve of safe (positive) against unsafe, every distinct
  score a threshold (like ``sklearn.metrics.roc_curve(...,
  drop_intermediate=False)``), with its trapezoidal AUROC (ties count one
  half, as in the stored AUROC) and the run's operating point. For pairs it is
  the pooled responses: chosen sides positive, rejected sides negative.
* ``category_bars``: one metric per category with its bootstrap interval,
  straight from the run's metrics JSON.
* ``length_vs_score``: response length in characters against score (pairs:
  each side as audited; demonstrations: trajectory length in steps).
* the Versions and Flywheel plots: ``workstation.audits.version_plots``
  (still reachable as ``plot_data.compare_runs`` and so on).

Which examples: a trained version's run stores each example's training role.
The run plots show, by default, the examples its ``metrics`` cover (those the
version was not trained on: ``split="heldout"``), so the ROC curve, the
calibration bins and the category bars reproduce the stored held-out figures;
``split="training"`` shows the others, ``"all"`` every one. ``RunInfo.covers``
says which, in words.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from workstation.audits import metrics as m
from workstation.audits.plot_runs import MAX_POINTS, RunInfo, run_info, thin
from workstation.audits.plot_runs import columns as _columns
from workstation.audits.plot_runs import floats as _floats
from workstation.errors import WorkstationError
from workstation.workspace import Workspace

HISTOGRAM_BINS = 30
HEADLINE_METRIC = {"pairs": "pairwise_accuracy", "labels": "accuracy",
                   "demos": "trajectory_pass_rate"}


# -- score distributions -----------------------------------------------------

@dataclass
class Histogram:
    """Counts of one series on edges shared with the other series of its plot."""

    name: str
    counts: np.ndarray
    edges: np.ndarray

    @property
    def n(self) -> int:
        return int(self.counts.sum())


@dataclass
class ScoreDistributions:
    run: RunInfo
    series: list[Histogram]
    x_label: str
    reason: str | None = None


def score_distributions(ws: Workspace, run_id: int, bins: int = HISTOGRAM_BINS,
                        split: str = "heldout") -> ScoreDistributions:
    """Score histograms per label (per side for pairs) on shared edges."""
    run = run_info(ws, run_id, split)
    named = _distribution_values(ws, run)
    values = [v for _, v in named]
    everything = np.concatenate(values) if values else np.zeros(0)
    x_label = f"score ({run.score_type})"
    if not len(everything):
        return ScoreDistributions(run, [], x_label, "the run has no scored examples")
    edges = np.histogram_bin_edges(everything, bins=bins)
    series = [Histogram(name, np.histogram(v, bins=edges)[0], edges) for name, v in named]
    return ScoreDistributions(run, series, x_label)


def _distribution_values(ws: Workspace, run: RunInfo) -> list[tuple[str, np.ndarray]]:
    if run.kind == "pairs":
        chosen, rejected = _columns(ws, "SELECT score_chosen, score_rejected FROM audit_results "
                                        f"r WHERE {run.rows_sql}", [run.run_id])
        return [("chosen", _floats(chosen)), ("rejected", _floats(rejected))]
    score, label = _columns(ws, f"SELECT score, label FROM audit_results r WHERE {run.rows_sql}",
                            [run.run_id])
    score, label = _floats(score), label.astype(bool)
    return [("safe", score[label]), ("unsafe", score[~label])]


# -- reliability (calibration) -----------------------------------------------

@dataclass
class Reliability:
    """A calibration diagram: per equal-width probability bin, the mean
    predicted probability of safe and the observed share of safe (NaN for an
    empty bin)."""

    run: RunInfo
    lower: np.ndarray
    upper: np.ndarray
    counts: np.ndarray
    mean_probability: np.ndarray
    observed: np.ndarray
    ece: float | None
    reason: str | None = None


def reliability(ws: Workspace, run_id: int, n_bins: int = m.ECE_BINS,
                split: str = "heldout") -> Reliability:
    """The calibration diagram of a labeled-response run."""
    run = run_info(ws, run_id, split)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    empty = np.zeros(0)
    if run.kind != "labels":
        return Reliability(run, empty, empty, empty.astype(int), empty, empty, None,
                           "calibration applies to labeled responses (safe/unsafe), "
                           f"not {run.kind}")
    score, label = _columns(ws, f"SELECT score, label FROM audit_results r WHERE {run.rows_sql}",
                            [run_id])
    probs = m.to_probability(_floats(score), run.score_type)
    return _reliability_bins(run, probs, label.astype(bool), edges)


def _reliability_bins(run: RunInfo, probs: np.ndarray, safe: np.ndarray,
                      edges: np.ndarray) -> Reliability:
    n_bins = len(edges) - 1
    bins = m.ece_bins(probs, n_bins)
    counts = np.bincount(bins, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.bincount(bins, weights=probs, minlength=n_bins) / counts
        observed = np.bincount(bins, weights=safe.astype(float), minlength=n_bins) / counts
    gaps = np.where(counts > 0, np.abs(mean_p - observed), 0.0)
    ece = float((counts * gaps).sum() / len(probs)) if len(probs) else None
    reason = None if len(probs) else "the run has no scored examples"
    return Reliability(run, edges[:-1], edges[1:], counts, mean_p, observed, ece, reason)


# -- ROC -----------------------------------------------------------------------

@dataclass
class RocCurve:
    """False and true positive rates at every distinct score threshold
    (predicted positive when score >= threshold), from (0, 0) to (1, 1)."""

    run: RunInfo
    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray
    auroc: float | None
    positive: str
    n_positive: int
    n_negative: int
    operating_point: tuple[float, float] | None = None
    reason: str | None = None


def roc(ws: Workspace, run_id: int, split: str = "heldout") -> RocCurve:
    """The run's ROC curve (see the module docstring for pairs)."""
    run = run_info(ws, run_id, split)
    scores, positive, name = _roc_inputs(ws, run)
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    empty = np.zeros(0)
    if not n_pos or not n_neg:
        return RocCurve(run, empty, empty, empty, None, name, n_pos, n_neg, None,
                        f"a ROC curve needs both classes; found {n_pos} {name} and "
                        f"{n_neg} other")
    fpr, tpr, thresholds = roc_points(scores, positive)
    point = _operating_point(scores, positive, run.threshold)
    return RocCurve(run, fpr, tpr, thresholds, float(np.trapezoid(tpr, fpr)), name, n_pos,
                    n_neg, point)


def _roc_inputs(ws: Workspace, run: RunInfo) -> tuple[np.ndarray, np.ndarray, str]:
    if run.kind == "pairs":
        chosen, rejected = _columns(ws, "SELECT score_chosen, score_rejected FROM audit_results "
                                        f"r WHERE {run.rows_sql}", [run.run_id])
        scores = np.concatenate([_floats(chosen), _floats(rejected)])
        positive = np.r_[np.ones(len(chosen), bool), np.zeros(len(rejected), bool)]
        return scores, positive, "chosen"
    score, label = _columns(ws, f"SELECT score, label FROM audit_results r WHERE {run.rows_sql}",
                            [run.run_id])
    return _floats(score), label.astype(bool), "safe"


def roc_points(scores: np.ndarray, positive: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds), thresholds descending from +inf."""
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], positive[order].astype(np.int64)
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # last index of each distinct value
    tps = np.cumsum(y)[last]
    fps = last + 1 - tps
    tpr = np.r_[0.0, tps / tps[-1]]
    fpr = np.r_[0.0, fps / fps[-1]]
    return fpr, tpr, np.r_[np.inf, s[last]]


def _operating_point(scores: np.ndarray, positive: np.ndarray,
                     threshold: float | None) -> tuple[float, float] | None:
    if threshold is None:
        return None
    predicted = scores > threshold  # the audit's rule: safe when score > threshold
    return (float(predicted[~positive].mean()), float(predicted[positive].mean()))


# -- per-category metric bars ------------------------------------------------

@dataclass
class CategoryBars:
    """One metric per category with its 95% bootstrap interval (NaN where the
    metrics JSON holds none)."""

    run: RunInfo
    metric: str
    categories: list[str]
    values: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    n: np.ndarray
    overall: float | None
    overall_ci: tuple[float, float] | None
    metrics_available: list[str] = field(default_factory=list)
    reason: str | None = None


def category_bars(ws: Workspace, run_id: int, metric: str | None = None,
                  split: str = "heldout") -> CategoryBars:
    """Per-category bars of ``metric`` (default: the run's headline metric),
    from the stored metrics of ``split`` ("heldout" or "training")."""
    run = run_info(ws, run_id, split)
    if split == "all":
        raise WorkstationError("category bars come from a run's stored metrics, which keep "
                               "held-out and training examples apart; choose one")
    stored = run.metrics if split == "heldout" else run.training_metrics
    if stored is None:
        raise WorkstationError(f"run {run_id} has no training-set metrics: {run.covers}")
    metric = metric or HEADLINE_METRIC.get(run.kind, "")
    available = interval_metrics(stored)
    if metric not in available:
        raise WorkstationError(f"run {run_id} has no metric '{metric}' with an interval; "
                               f"one of {', '.join(available) or 'none'}")
    per = stored.get("per_category") or {}
    names = sorted(per)
    values = np.array([_num(per[c].get(metric)) for c in names], dtype=float)
    cis = [per[c].get(f"{metric}_ci") or [np.nan, np.nan] for c in names]
    overall_ci = stored.get(f"{metric}_ci")
    reason = None if names else "the run's examples have no categories"
    return CategoryBars(run, metric, names, values, np.array([c[0] for c in cis], dtype=float),
                        np.array([c[1] for c in cis], dtype=float),
                        np.array([int(per[c].get("n") or 0) for c in names], dtype=int),
                        stored.get(metric), tuple(overall_ci) if overall_ci else None,
                        available, reason)


def interval_metrics(metrics: dict[str, Any]) -> list[str]:
    """Metric names that have a ``*_ci`` interval in a run's metrics JSON."""
    return [k[:-3] for k in metrics if k.endswith("_ci") and k[:-3] in metrics]


def _num(value: Any) -> float:
    return np.nan if value is None else float(value)


# -- length vs score -------------------------------------------------------------

@dataclass
class ScatterSeries:
    """Points of one series, each with the example it belongs to."""

    name: str
    x: np.ndarray
    y: np.ndarray
    example_ids: np.ndarray
    passed: np.ndarray


@dataclass
class LengthScatter:
    run: RunInfo
    x_label: str
    y_label: str
    series: list[ScatterSeries]
    n_total: int
    reason: str | None = None


# The text each side had when audited: audit_results.label is TRUE while the
# imported chosen side is still the preferred one.
_SIDE_SQL = {
    "chosen": "CASE WHEN r.label THEN e.chosen ELSE e.rejected END",
    "rejected": "CASE WHEN r.label THEN e.rejected ELSE e.chosen END",
}


def length_vs_score(ws: Workspace, run_id: int, max_points: int = MAX_POINTS,
                    split: str = "heldout") -> LengthScatter:
    """Response length against score, per example (and side for pairs)."""
    run = run_info(ws, run_id, split)
    if run.kind == "pairs":
        series = [_length_series(ws, run, side, f"length({_SIDE_SQL[side]})",
                                 f"r.score_{side}") for side in ("chosen", "rejected")]
        x_label = "response length (characters)"
    elif run.kind == "labels":
        series = [_length_series(ws, run, "responses", "length(e.response)", "r.score")]
        x_label = "response length (characters)"
    else:
        series = [_length_series(ws, run, "trajectories", "e.n_steps", "r.score")]
        x_label = "trajectory length (steps)"
    total = sum(len(s.x) for s in series)
    series = [thin_series(s, max_points // len(series)) for s in series]
    reason = None if total else "the run has no scored examples"
    return LengthScatter(run, x_label, f"score ({run.score_type})", series, total, reason)


def _length_series(ws: Workspace, run: RunInfo, name: str, x_sql: str,
                   y_sql: str) -> ScatterSeries:
    x, y, ids, passed = _columns(
        ws, f"SELECT coalesce({x_sql}, 0), {y_sql}, r.example_id, r.passed FROM audit_results r "
            f"JOIN examples e ON e.id = r.example_id WHERE {run.rows_sql} ORDER BY r.example_id",
        [run.run_id])
    return ScatterSeries(name, _floats(x), _floats(y), ids.astype(np.int64), passed.astype(bool))


def thin_series(series: ScatterSeries, max_points: int) -> ScatterSeries:
    """At most ``max_points`` points: every failure first, then an even sample."""
    keep = thin(~series.passed, max_points)
    if keep is None:
        return series
    return ScatterSeries(series.name, series.x[keep], series.y[keep], series.example_ids[keep],
                         series.passed[keep])


# The version and flywheel plots live in ``version_plots``; ``plot_data.X`` keeps
# reaching them, resolved on first use (version_plots takes the run helpers from
# ``plot_runs``, never from here: the import points one way).
def __getattr__(name: str) -> Any:
    from workstation.audits import version_plots

    if name in version_plots.__all__:
        return getattr(version_plots, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
