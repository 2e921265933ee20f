"""The report's metrics section: per audit run, the stored figures (overall and
per category, with their bootstrap intervals and n), the Holm marks, and the
data of its plots (calibration, ROC, score distributions) read through
``workstation.audits.plot_data``, so every number is the stored run's or
computed by the same code as the window's plots."""

from __future__ import annotations

from typing import Any

import numpy as np

from workstation.audits import plot_data as pd
from workstation.audits.runs import AuditRun
from workstation.probes.length_bias import label_bias, pair_bias
from workstation.report.holm import category_tests
from workstation.workspace import Workspace

# The ROC curve keeps at most this many points in the report (evenly spaced
# along the curve, ends kept): what is drawn is what the JSON carries.
ROC_POINTS = 400
# Figures of a run's metrics JSON that are not metrics to tabulate.
_NOT_METRICS = {"kind", "score_type", "threshold", "per_category", "histogram", "auroc_reason"}


def run_section(ws: Workspace, run: AuditRun) -> dict[str, Any]:
    """Section 3 for one audit run (its held-out figures; training ones apart)."""
    metrics = run.metrics
    headline = pd.HEADLINE_METRIC.get(run.dataset_kind, "")
    info = pd.run_info(ws, run.id)
    return {"run_id": run.id, "dataset": run.dataset, "dataset_id": run.dataset_id,
            "kind": run.dataset_kind, "score_type": metrics.get("score_type"),
            "threshold": run.threshold, "created_at": run.created_at,
            "created_by": run.created_by, "review_head": run.review_head,
            "n_examples": run.n_examples, "n_failures": run.n_failures,
            "covers": info.covers, "membership": _membership(run.membership),
            "headline": headline, "interval_metrics": pd.interval_metrics(metrics),
            "overall": figures_of(metrics), "per_category": per_category(metrics),
            "tests": category_tests(metrics, headline) if metrics.get("per_category") else None,
            "training": figures_of(run.training_metrics) if run.training_metrics else None,
            "calibration": calibration(ws, run) if run.dataset_kind == "labels" else None,
            "roc": roc(ws, run) if run.dataset_kind in ("labels", "pairs") else None,
            "distributions": distributions(ws, run),
            "reward_histogram": metrics.get("histogram"),
            "length_baseline": length_baseline(ws, run, info)}


def figures_of(metrics: dict[str, Any]) -> dict[str, Any]:
    """A metrics JSON without its per-category part, values exactly as stored."""
    return {k: v for k, v in metrics.items() if k not in _NOT_METRICS}


def per_category(metrics: dict[str, Any]) -> dict[str, dict[str, Any]]:
    per = metrics.get("per_category") or {}
    return {name: figures_of(per[name]) for name in sorted(per)}


def _membership(membership: dict[str, Any] | None) -> dict[str, Any] | None:
    if membership is None:
        return None
    keep = ("status", "description", "metrics_cover", "training_metrics_cover", "counts")
    return {k: membership.get(k) for k in keep}


# -- plots' data ---------------------------------------------------------------------

def calibration(ws: Workspace, run: AuditRun) -> dict[str, Any]:
    r = pd.reliability(ws, run.id)
    return {"ece": run.metrics.get("ece"), "ece_ci": run.metrics.get("ece_ci"),
            "bins_ece": r.ece, "reason": r.reason, "lower": _floats(r.lower),
            "upper": _floats(r.upper), "counts": [int(c) for c in r.counts],
            "mean_probability": _floats(r.mean_probability), "observed": _floats(r.observed)}


def roc(ws: Workspace, run: AuditRun) -> dict[str, Any]:
    curve = pd.roc(ws, run.id)
    keep = _even(len(curve.fpr), ROC_POINTS)
    return {"auroc_curve": curve.auroc, "positive": curve.positive,
            "n_positive": curve.n_positive, "n_negative": curve.n_negative,
            "reason": curve.reason, "n_points": int(len(curve.fpr)),
            "fpr": _floats(curve.fpr[keep]), "tpr": _floats(curve.tpr[keep]),
            "operating_point": list(curve.operating_point) if curve.operating_point else None}


def distributions(ws: Workspace, run: AuditRun) -> dict[str, Any]:
    d = pd.score_distributions(ws, run.id)
    edges = d.series[0].edges if d.series else np.zeros(0)
    return {"x_label": d.x_label, "reason": d.reason, "edges": _floats(edges),
            "series": {s.name: [int(c) for c in s.counts] for s in d.series}}


def _even(n: int, limit: int) -> np.ndarray:
    if n <= limit:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, limit).round().astype(np.int64))


def _floats(values: np.ndarray) -> list[float | None]:
    """JSON numbers; an empty bin's NaN becomes null."""
    return [None if not np.isfinite(v) else float(v) for v in np.asarray(values, dtype=float)]


# -- the length-only baseline ---------------------------------------------------------

def length_baseline(ws: Workspace, run: AuditRun, info: pd.RunInfo) -> dict[str, Any] | None:
    """The model beside a predictor that reads only the response length, on the
    run's held-out rows and their sides as audited (the ``length-bias`` probe's
    figures, ``pair_bias``/``label_bias``)."""
    if run.dataset_kind == "pairs":
        rows = ws.execute(
            f"SELECT r.score_chosen, r.score_rejected, "
            f"length(coalesce({pd._SIDE_SQL['chosen']}, '')), "
            f"length(coalesce({pd._SIDE_SQL['rejected']}, '')) FROM audit_results r "
            f"JOIN examples e ON e.id = r.example_id WHERE {info.rows_sql} ORDER BY r.example_id",
            [run.id]).fetchnumpy()
        sc, sr, lc, lr = (np.asarray(v, dtype=float) for v in rows.values())
        figures = pair_bias(sc, sr, lc, lr)
        return {"metric": "pairwise accuracy", "model": figures["model_accuracy"],
                "length_only": figures["length_baseline_accuracy"],
                "rule": "the longer response is the chosen one (equal lengths: a coin flip)",
                "longer_wins_rate": figures["longer_wins_rate"], "n": figures["n"],
                "spearman": figures["spearman"]}
    if run.dataset_kind == "labels":
        rows = ws.execute(
            f"SELECT r.score, r.label, length(coalesce(e.response, '')) FROM audit_results r "
            f"JOIN examples e ON e.id = r.example_id WHERE {info.rows_sql} ORDER BY r.example_id",
            [run.id]).fetchnumpy()
        s, safe, lengths = (np.asarray(v) for v in rows.values())
        figures = label_bias(s.astype(float), safe.astype(bool), np.ones(len(s), bool),
                             lengths.astype(float))
        return {"metric": "AUROC", "model": figures["model_auroc"],
                "length_only": figures["length_auroc"],
                "rule": "longer responses are the safe ones (AUROC of length alone)",
                "n": figures["n_labeled"], "spearman": figures["spearman"]}
    return None
