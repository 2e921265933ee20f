"""Small figures training reports: JSON-safe means (AUROC is the audits' own)."""

from __future__ import annotations

import numpy as np


def mean_or_none(values: np.ndarray) -> float | None:
    """The mean as a float, None for no values (manifests are JSON)."""
    return float(np.mean(values)) if len(values) else None


def finite_or_none(value: float) -> float | None:
    """The value as a float, None when it is inf or nan (manifests are JSON)."""
    return float(value) if np.isfinite(value) else None
