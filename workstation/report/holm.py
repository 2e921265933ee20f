"""Which per-category differences hold after a multiple-comparison correction.

Each category's headline share (accuracy, pairwise accuracy, trajectory pass
rate) is compared with the share over the run's other examples by a
two-sided two-proportion z-test (pooled variance); the p-values of all the
categories of a run are then corrected with Holm's step-down method at
family-wise level ``ALPHA``. The counts come from the stored figures
(share × n is an integer count of successes), so nothing is recomputed from
the examples.
"""

from __future__ import annotations

import math
from typing import Any

ALPHA = 0.05
METHOD = ("two-sided two-proportion z-test of each category against the run's other examples, "
          "Holm-corrected over the categories")


def successes(share: float | None, n: int) -> int | None:
    """The count behind a stored share (share × n, an integer up to float rounding)."""
    return None if share is None or not n else int(round(share * n))


def two_proportion_p(k1: int, n1: int, k2: int, n2: int) -> float | None:
    """Two-sided p-value of k1/n1 against k2/n2; None when undefined."""
    if n1 <= 0 or n2 <= 0:
        return None
    pooled = (k1 + k2) / (n1 + n2)
    var = pooled * (1 - pooled) * (1 / n1 + 1 / n2)
    if var <= 0:
        return 1.0  # every example of both groups has the same outcome
    z = (k1 / n1 - k2 / n2) / math.sqrt(var)
    return math.erfc(abs(z) / math.sqrt(2))


def holm(p_values: dict[str, float | None], alpha: float = ALPHA) -> dict[str, dict[str, Any]]:
    """Per name: p, the Holm-adjusted p and whether it holds (adjusted p < alpha)."""
    named = sorted(((p, name) for name, p in p_values.items() if p is not None))
    m = len(named)
    out: dict[str, dict[str, Any]] = {name: {"p": None, "p_holm": None, "holds": False}
                                      for name, p in p_values.items() if p is None}
    running = 0.0
    for rank, (p, name) in enumerate(named):
        running = max(running, min(1.0, (m - rank) * p))  # step-down, kept monotone
        out[name] = {"p": p, "p_holm": running, "holds": running < alpha}
    return out


def category_tests(metrics: dict[str, Any], metric: str) -> dict[str, Any]:
    """Holm-corrected tests of each category's ``metric`` against the rest of the run."""
    per = metrics.get("per_category") or {}
    n_all = int(metrics.get("n") or 0)
    k_all = successes(metrics.get(metric), n_all)
    p_values: dict[str, float | None] = {}
    for name, figures in per.items():
        n = int(figures.get("n") or 0)
        k = successes(figures.get(metric), n)
        rest = n_all - n
        p_values[name] = None if k is None or k_all is None or rest <= 0 else \
            two_proportion_p(k, n, k_all - k, rest)
    tests = holm(p_values)
    return {"metric": metric, "method": METHOD, "alpha": ALPHA,
            "n_comparisons": sum(1 for p in p_values.values() if p is not None),
            "categories": {name: {**tests[name], "direction": _direction(per[name], metrics,
                                                                          metric)}
                           for name in sorted(per)}}


def _direction(figures: dict[str, Any], overall: dict[str, Any], metric: str) -> str | None:
    a, b = figures.get(metric), overall.get(metric)
    if a is None or b is None:
        return None
    return "below" if a < b else "above" if a > b else "equal"
