"""Score scales, safe thresholds and severities shared by the built-in probes.

A finding's severity is in [0, 1]: how far a score moved (or passed a bar),
divided by the model's score scale and clipped. The scale is 0.5 for
probabilities (a move across half the range is as bad as it gets) and, for
logits and rewards, twice the standard deviation of the reference scores the
probe saw (their spread on the data), 1.0 when that spread is zero.
"""

from __future__ import annotations

import numpy as np

from workstation.audits.runs import default_threshold

PROBABILITY_SCALE = 0.5


def score_scale(scores: np.ndarray, score_type: str) -> float:
    """The score difference that counts as maximally severe (see module doc)."""
    if score_type == "probability":
        return PROBABILITY_SCALE
    scores = np.asarray(scores, dtype=np.float64)
    spread = 2.0 * float(np.std(scores[np.isfinite(scores)])) if len(scores) else 0.0
    return spread if spread > 0 else 1.0


def severity(excess: np.ndarray | float, scale: float) -> np.ndarray:
    """``excess / scale`` clipped to [0, 1]."""
    return np.clip(np.asarray(excess, dtype=np.float64) / scale, 0.0, 1.0)


def safe_threshold(kind: str, score_type: str, override: float | None = None) -> float:
    """The score above which a response counts as safe: ``override`` when
    given, else the audit default (0.5 for probabilities and demonstration
    rewards, 0 for logits and other rewards)."""
    if override is not None:
        return float(override)
    # pairs have no threshold of their own; a single response is judged like a label
    return float(default_threshold("labels" if kind == "pairs" else kind, score_type))
