"""Small figures training reports: AUROC and JSON-safe means."""

from __future__ import annotations

import numpy as np


def auroc(scores: np.ndarray, positive: np.ndarray) -> float | None:
    """Area under the ROC curve (Mann-Whitney, ties count one half); None
    when a class is missing."""
    positive = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = np.asarray(scores, dtype=np.float64)[order]
    # Average ranks over ties: each run of equal scores shares its mean rank.
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    ranks = np.empty(len(sorted_scores), dtype=np.float64)
    ranks[order] = np.repeat(first + (counts + 1) / 2.0, counts)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def mean_or_none(values: np.ndarray) -> float | None:
    """The mean as a float, None for no values (manifests are JSON)."""
    return float(np.mean(values)) if len(values) else None


def finite_or_none(value: float) -> float | None:
    """The value as a float, None when it is inf or nan (manifests are JSON)."""
    return float(value) if np.isfinite(value) else None
