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
* ``compare_runs`` / ``comparison_from_report``: old margin against new
  margin per example, each classed fixed / broken / unchanged.
* ``flywheel_history``: per model version, in lineage order, the failures
  its audits and probes found and what it fixed and broke against its parent
  (see that function for exactly how).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from workstation.audits import metrics as m
from workstation.errors import WorkstationError
from workstation.workspace import Workspace

HISTOGRAM_BINS = 30
# Scatter plots draw at most this many points: every failure, then an even
# sample of the rest (a plot of 200k points is unreadable and slow).
MAX_POINTS = 20_000
HEADLINE_METRIC = {"pairs": "pairwise_accuracy", "labels": "accuracy",
                   "demos": "trajectory_pass_rate"}
CLASSES = ("fixed", "broken", "unchanged")
FIXED, BROKEN, UNCHANGED = range(3)


# -- the run ---------------------------------------------------------------------

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
    metrics: dict[str, Any]


def run_info(ws: Workspace, run_id: int) -> RunInfo:
    """The audit run ``run_id``; probe runs and unknown ids are refused."""
    rows = ws.execute(
        "SELECT r.id, r.kind, d.kind, r.threshold, mv.model || '@' || mv.version, mv.id, "
        "d.name, d.id, r.metrics FROM audit_runs r JOIN datasets d ON d.id = r.dataset_id "
        "JOIN model_versions mv ON mv.id = r.model_version_id WHERE r.id = ?",
        [run_id]).fetchall()
    if not rows:
        raise WorkstationError(f"no audit run {run_id}")
    rid, run_kind, kind, threshold, model, mv_id, dataset, dataset_id, text = rows[0]
    if run_kind != "audit":
        raise WorkstationError(f"run {run_id} is a {run_kind} run; plots show audit runs")
    metrics = json.loads(text) if text else {}
    return RunInfo(rid, kind, metrics.get("score_type") or "reward", threshold, model, mv_id,
                   dataset, dataset_id, metrics)


def _columns(ws: Workspace, sql: str, params: list[Any]) -> list[np.ndarray]:
    """The result's columns as numpy arrays, SQL NULL as NaN in float columns."""
    result = ws.execute(sql, params).fetchnumpy()
    return [_plain(column) for column in result.values()]


def _plain(column: np.ndarray) -> np.ndarray:
    if isinstance(column, np.ma.MaskedArray):
        return column.astype(np.float64).filled(np.nan)
    return np.asarray(column)


def _floats(values: np.ndarray) -> np.ndarray:
    return np.asarray(values, dtype=np.float64)


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


def score_distributions(ws: Workspace, run_id: int, bins: int = HISTOGRAM_BINS
                        ) -> ScoreDistributions:
    """Score histograms per label (per side for pairs) on shared edges."""
    run = run_info(ws, run_id)
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
                                        "WHERE run_id = ?", [run.run_id])
        return [("chosen", _floats(chosen)), ("rejected", _floats(rejected))]
    score, label = _columns(ws, "SELECT score, label FROM audit_results WHERE run_id = ?",
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


def reliability(ws: Workspace, run_id: int, n_bins: int = m.ECE_BINS) -> Reliability:
    """The calibration diagram of a labeled-response run."""
    run = run_info(ws, run_id)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    empty = np.zeros(0)
    if run.kind != "labels":
        return Reliability(run, empty, empty, empty.astype(int), empty, empty, None,
                           "calibration applies to labeled responses (safe/unsafe), "
                           f"not {run.kind}")
    score, label = _columns(ws, "SELECT score, label FROM audit_results WHERE run_id = ?",
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


def roc(ws: Workspace, run_id: int) -> RocCurve:
    """The run's ROC curve (see the module docstring for pairs)."""
    run = run_info(ws, run_id)
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
                                        "WHERE run_id = ?", [run.run_id])
        scores = np.concatenate([_floats(chosen), _floats(rejected)])
        positive = np.r_[np.ones(len(chosen), bool), np.zeros(len(rejected), bool)]
        return scores, positive, "chosen"
    score, label = _columns(ws, "SELECT score, label FROM audit_results WHERE run_id = ?",
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


def category_bars(ws: Workspace, run_id: int, metric: str | None = None) -> CategoryBars:
    """Per-category bars of ``metric`` (default: the run's headline metric)."""
    run = run_info(ws, run_id)
    metric = metric or HEADLINE_METRIC.get(run.kind, "")
    available = interval_metrics(run.metrics)
    if metric not in available:
        raise WorkstationError(f"run {run_id} has no metric '{metric}' with an interval; "
                               f"one of {', '.join(available) or 'none'}")
    per = run.metrics.get("per_category") or {}
    names = sorted(per)
    values = np.array([_num(per[c].get(metric)) for c in names], dtype=float)
    cis = [per[c].get(f"{metric}_ci") or [np.nan, np.nan] for c in names]
    overall_ci = run.metrics.get(f"{metric}_ci")
    reason = None if names else "the run's examples have no categories"
    return CategoryBars(run, metric, names, values, np.array([c[0] for c in cis], dtype=float),
                        np.array([c[1] for c in cis], dtype=float),
                        np.array([int(per[c].get("n") or 0) for c in names], dtype=int),
                        run.metrics.get(metric), tuple(overall_ci) if overall_ci else None,
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


def length_vs_score(ws: Workspace, run_id: int, max_points: int = MAX_POINTS) -> LengthScatter:
    """Response length against score, per example (and side for pairs)."""
    run = run_info(ws, run_id)
    if run.kind == "pairs":
        series = [_length_series(ws, run_id, side, f"length({_SIDE_SQL[side]})",
                                 f"r.score_{side}") for side in ("chosen", "rejected")]
        x_label = "response length (characters)"
    elif run.kind == "labels":
        series = [_length_series(ws, run_id, "responses", "length(e.response)", "r.score")]
        x_label = "response length (characters)"
    else:
        series = [_length_series(ws, run_id, "trajectories", "e.n_steps", "r.score")]
        x_label = "trajectory length (steps)"
    total = sum(len(s.x) for s in series)
    series = [thin_series(s, max_points // len(series)) for s in series]
    reason = None if total else "the run has no scored examples"
    return LengthScatter(run, x_label, f"score ({run.score_type})", series, total, reason)


def _length_series(ws: Workspace, run_id: int, name: str, x_sql: str,
                   y_sql: str) -> ScatterSeries:
    x, y, ids, passed = _columns(
        ws, f"SELECT coalesce({x_sql}, 0), {y_sql}, r.example_id, r.passed FROM audit_results r "
            f"JOIN examples e ON e.id = r.example_id WHERE r.run_id = ? ORDER BY r.example_id",
        [run_id])
    return ScatterSeries(name, _floats(x), _floats(y), ids.astype(np.int64), passed.astype(bool))


def thin_series(series: ScatterSeries, max_points: int) -> ScatterSeries:
    """At most ``max_points`` points: every failure first, then an even sample."""
    keep = thin(~series.passed, max_points)
    if keep is None:
        return series
    return ScatterSeries(series.name, series.x[keep], series.y[keep], series.example_ids[keep],
                         series.passed[keep])


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


# -- version comparison ----------------------------------------------------------

@dataclass
class VersionComparison:
    """Old margin against new margin per example, each classed FIXED (failed
    before, passes now), BROKEN (passed before, fails now) or UNCHANGED
    (same verdict). ``counts`` are over every compared example, even when
    the arrays are thinned for drawing."""

    old_label: str
    new_label: str
    dataset: str
    old_margin: np.ndarray
    new_margin: np.ndarray
    example_ids: np.ndarray
    classes: np.ndarray
    counts: dict[str, int]
    reason: str | None = None

    def ids_of(self, name: str) -> list[int]:
        return [int(i) for i in self.example_ids[self.classes == CLASSES.index(name)]]


def compare_runs(ws: Workspace, old_run_id: int, new_run_id: int,
                 max_points: int = MAX_POINTS) -> VersionComparison:
    """Example-by-example comparison of two audit runs of the same dataset."""
    old, new = run_info(ws, old_run_id), run_info(ws, new_run_id)
    if old.dataset_id != new.dataset_id:
        raise WorkstationError(f"runs {old_run_id} and {new_run_id} audit different datasets "
                               f"({old.dataset}, {new.dataset}); compare runs of one dataset")
    old_m, new_m, ids, old_p, new_p = _columns(
        ws, "SELECT a.margin, b.margin, a.example_id, a.passed, b.passed FROM audit_results a "
            "JOIN audit_results b ON b.example_id = a.example_id AND b.run_id = ? "
            "WHERE a.run_id = ? ORDER BY a.example_id", [new_run_id, old_run_id])
    classes = classify(old_p.astype(bool), new_p.astype(bool))
    result = VersionComparison(old.model, new.model, old.dataset, _floats(old_m),
                               _floats(new_m), ids.astype(np.int64), classes,
                               _class_counts(classes))
    if not len(ids):
        result.reason = "the two runs share no examples"
    return _thin_comparison(result, max_points)


def classify(old_passed: np.ndarray, new_passed: np.ndarray) -> np.ndarray:
    """FIXED, BROKEN or UNCHANGED per example."""
    classes = np.full(len(old_passed), UNCHANGED, dtype=np.int8)
    classes[~old_passed & new_passed] = FIXED
    classes[old_passed & ~new_passed] = BROKEN
    return classes


def _class_counts(classes: np.ndarray) -> dict[str, int]:
    return {name: int((classes == i).sum()) for i, name in enumerate(CLASSES)}


def _thin_comparison(c: VersionComparison, max_points: int) -> VersionComparison:
    keep = thin(c.classes != UNCHANGED, max_points)
    if keep is None:
        return c
    return VersionComparison(c.old_label, c.new_label, c.dataset, c.old_margin[keep],
                             c.new_margin[keep], c.example_ids[keep], c.classes[keep],
                             c.counts, c.reason)


def comparison_from_report(report: dict[str, Any], dataset: str | None = None
                           ) -> VersionComparison:
    """The fixed and broken examples of a regression report (its ``to_json()``)
    as a comparison scatter. Only examples whose two margins the report gives
    are drawn (a report lists ids, and margins for its largest drops);
    ``counts`` are the report's totals."""
    rows = [r for r in report_examples(report) if dataset is None or r.dataset == dataset]
    drawn = [r for r in rows if r.baseline_margin is not None and r.candidate_margin is not None]
    entries = [(n, e) for n, e in _report_datasets(report) if dataset is None or n == dataset]
    counts = {name: sum(_class_total(e, name) for _, e in entries) for name in CLASSES}
    return VersionComparison(
        report_ref(report.get("baseline"), "baseline"),
        report_ref(report.get("candidate"), "candidate"),
        dataset or ", ".join(n for n, _ in entries),
        np.array([r.baseline_margin for r in drawn], dtype=float),
        np.array([r.candidate_margin for r in drawn], dtype=float),
        np.array([r.example_id for r in drawn], dtype=np.int64),
        np.array([CLASSES.index(r.outcome) for r in drawn], dtype=np.int8), counts,
        None if entries else "the report compares no datasets")


@dataclass(frozen=True)
class ReportExample:
    """One fixed or broken example named by a regression report."""

    dataset: str
    example_id: int
    outcome: str                     # "fixed" or "broken"
    baseline_margin: float | None
    candidate_margin: float | None


def report_examples(report: dict[str, Any]) -> list[ReportExample]:
    """Every fixed and broken example a regression report lists, per dataset,
    with their margins where the report gives them."""
    out = []
    for name, entry in _report_datasets(report):
        margins = _report_margins(entry)
        for outcome in ("fixed", "broken"):
            for eid in _listed_ids(entry, outcome):
                old, new = margins.get(eid, (None, None))
                out.append(ReportExample(name, eid, outcome, old, new))
    return out


def _report_datasets(report: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    per = report.get("per_dataset") or {}
    if isinstance(per, dict):
        return [(str(k), v) for k, v in per.items() if isinstance(v, dict)]
    return [(str(e.get("dataset", i)), e) for i, e in enumerate(per) if isinstance(e, dict)]


def report_ref(value: Any, default: str) -> str:
    """The NAME@VERSION a report names for its candidate or baseline."""
    if isinstance(value, dict):
        return str(value.get("ref") or default)
    return str(value) if value else default


def _class_total(entry: dict[str, Any], name: str) -> int:
    """``entry[name]`` when it is a count, else the length of its list."""
    value = entry.get(name)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    examples = entry.get(f"{name}_examples")
    if isinstance(examples, dict) and isinstance(examples.get("total"), int):
        return examples["total"]
    return len(_listed_ids(entry, name))


def _listed_ids(entry: dict[str, Any], name: str) -> list[int]:
    """Example ids listed for ``name``: ``{name}_examples.ids`` or a list under ``name``."""
    examples = entry.get(f"{name}_examples")
    listed = examples.get("ids") if isinstance(examples, dict) else entry.get(name)
    if not isinstance(listed, list):
        return []
    return [int(i["example_id"] if isinstance(i, dict) else i) for i in listed
            if not isinstance(i, dict) or i.get("example_id") is not None]


_OLD_KEYS = ("baseline", "baseline_margin", "old_margin")
_NEW_KEYS = ("candidate", "candidate_margin", "new_margin")


def _report_margins(entry: dict[str, Any]) -> dict[int, tuple[float, float]]:
    """(baseline, candidate) margins the report gives, by example id: its
    largest margin drops and any example listed with margins."""
    change = entry.get("margin_change")
    items = list(change.get("largest_drops") or []) if isinstance(change, dict) else []
    for name in CLASSES:
        listed = entry.get(name)
        items += [i for i in listed if isinstance(i, dict)] if isinstance(listed, list) else []
    out = {}
    for item in items:
        old, new = _first(item, _OLD_KEYS), _first(item, _NEW_KEYS)
        if item.get("example_id") is not None and old is not None and new is not None:
            out[int(item["example_id"])] = (float(old), float(new))
    return out


def _first(item: dict[str, Any], keys: tuple[str, ...]) -> Any:
    return next((item[k] for k in keys if isinstance(item.get(k), (int, float))), None)


@dataclass(frozen=True)
class CategoryDelta:
    """A metric of one category, baseline against candidate, from a report."""

    dataset: str
    category: str
    metric: str
    baseline: float | None
    candidate: float | None
    delta: float | None
    ci: tuple[float, float] | None
    n: int | None
    gated: bool
    failing: bool


def report_category_deltas(report: dict[str, Any]) -> list[CategoryDelta]:
    """Every per-category metric delta of a regression report, failing ones
    (those the gate's metric rule names) first, then by dataset and category."""
    failing = _failing_metrics(report)
    rows = []
    for name, entry in _report_datasets(report):
        for category, records in (entry.get("categories") or {}).items():
            for metric, r in (records or {}).items():
                if isinstance(r, dict):
                    ci = r.get("ci")
                    rows.append(CategoryDelta(
                        name, str(category), str(metric), r.get("baseline"), r.get("candidate"),
                        r.get("delta"), tuple(ci) if ci else None, r.get("n"),
                        bool(r.get("gated")), (name, category, metric) in failing))
    return sorted(rows, key=lambda d: (not d.failing, d.dataset, d.category, d.metric))


def _failing_metrics(report: dict[str, Any]) -> set[tuple[str, str, str]]:
    gate = report.get("gate") if isinstance(report.get("gate"), dict) else {}
    out = set()
    for rule in gate.get("rules") or []:
        for e in rule.get("failing") or [] if isinstance(rule, dict) else []:
            if isinstance(e, dict):
                out.add((e.get("dataset"), e.get("category"), e.get("metric")))
    return out


# -- flywheel history ------------------------------------------------------------

@dataclass
class HistoryPoint:
    """One model version's turn of the flywheel.

    ``audit_failures`` sums ``n_failures`` of the version's latest audit run
    per dataset; ``probe_findings`` sums the findings of its latest probe run
    per dataset; ``fixed`` / ``broken`` count examples whose verdict changed
    against the parent's latest audit of the same dataset (only datasets both
    versions audited: ``datasets_compared``)."""

    version_id: int
    ref: str
    parent_ref: str | None
    audit_failures: int
    probe_findings: int
    fixed: int | None
    broken: int | None
    datasets_compared: list[str]

    @property
    def failures_found(self) -> int:
        return self.audit_failures + self.probe_findings


def flywheel_history(ws: Workspace, model: str) -> list[HistoryPoint]:
    """Every version of ``model`` and its ancestors (across names), in lineage
    order (a parent before its children: registration order)."""
    family = _family(ws, model)
    if not family:
        raise WorkstationError(f"no model named '{model}'")
    latest = _latest_runs(ws, [v[0] for v in family])
    refs = {v[0]: v[1] for v in family}
    return [_history_point(ws, vid, ref, parent, refs, latest) for vid, ref, parent in family]


def _family(ws: Workspace, model: str) -> list[tuple[int, str, int | None]]:
    rows = ws.execute(
        "WITH RECURSIVE fam(id) AS (SELECT id FROM model_versions WHERE model = ? "
        "UNION SELECT mv.parent_id FROM model_versions mv JOIN fam ON mv.id = fam.id "
        "WHERE mv.parent_id IS NOT NULL) "
        "SELECT mv.id, mv.model || '@' || mv.version, mv.parent_id FROM model_versions mv "
        "WHERE mv.id IN (SELECT id FROM fam) ORDER BY mv.id", [model]).fetchall()
    return [(int(r[0]), r[1], r[2]) for r in rows]


def _latest_runs(ws: Workspace, version_ids: list[int]) -> dict[tuple[int, str], dict[int, tuple]]:
    """{(version id, run kind): {dataset id: (run id, n_failures, dataset name)}}."""
    rows = ws.execute(
        "SELECT r.model_version_id, r.kind, r.dataset_id, max(r.id), arg_max(r.n_failures, r.id), "
        "any_value(d.name) FROM audit_runs r JOIN datasets d ON d.id = r.dataset_id "
        f"WHERE r.model_version_id IN ({', '.join('?' * len(version_ids))}) "
        "GROUP BY ALL", version_ids).fetchall()
    out: dict[tuple[int, str], dict[int, tuple]] = {}
    for vid, kind, dataset_id, run_id, n_failures, name in rows:
        out.setdefault((vid, kind), {})[dataset_id] = (run_id, int(n_failures), name)
    return out


def _history_point(ws: Workspace, vid: int, ref: str, parent: int | None,
                   refs: dict[int, str], latest: dict) -> HistoryPoint:
    audits = latest.get((vid, "audit"), {})
    probes = latest.get((vid, "probe"), {})
    fixed = broken = None
    compared: list[str] = []
    parent_audits = latest.get((parent, "audit"), {}) if parent is not None else {}
    for dataset_id in sorted(set(audits) & set(parent_audits)):
        f, b = _fixed_broken(ws, parent_audits[dataset_id][0], audits[dataset_id][0])
        fixed, broken = (fixed or 0) + f, (broken or 0) + b
        compared.append(audits[dataset_id][2])
    return HistoryPoint(vid, ref, refs.get(parent) if parent is not None else None,
                        sum(r[1] for r in audits.values()), sum(r[1] for r in probes.values()),
                        fixed, broken, compared)


def _fixed_broken(ws: Workspace, old_run: int, new_run: int) -> tuple[int, int]:
    row = ws.execute(
        "SELECT count(*) FILTER (WHERE NOT a.passed AND b.passed), "
        "count(*) FILTER (WHERE a.passed AND NOT b.passed) FROM audit_results a "
        "JOIN audit_results b ON b.example_id = a.example_id AND b.run_id = ? "
        "WHERE a.run_id = ?", [new_run, old_run]).fetchall()[0]
    return int(row[0]), int(row[1])


def comparable_runs(ws: Workspace, run_id: int) -> list[dict[str, Any]]:
    """Other audit runs of the same dataset, newest first, the run's parent
    version's runs first: the baselines a version comparison can use."""
    run = run_info(ws, run_id)
    rows = ws.execute(
        "SELECT r.id, mv.model || '@' || mv.version, r.created_at, "
        "mv.id = (SELECT parent_id FROM model_versions WHERE id = ?) AS is_parent "
        "FROM audit_runs r JOIN model_versions mv ON mv.id = r.model_version_id "
        "WHERE r.kind = 'audit' AND r.dataset_id = ? AND r.id <> ? "
        "ORDER BY is_parent DESC, r.id DESC", [run.model_version_id, run.dataset_id, run_id]
    ).fetchall()
    return [{"run_id": r[0], "model": r[1], "created_at": r[2], "is_parent": bool(r[3])}
            for r in rows]
