"""Calibrating a demonstration reward on held-out demonstration steps.

A raw score (a log-density, a reconstruction error...) means nothing across
tasks. Calibration fixes two points on the held-out expert steps, which no
part of the fit has seen: their ``percentile``-th percentile (default the
5th) scores ``THRESHOLD`` = 0.5, and their median scores ``MEDIAN_REWARD``
= 0.9. So on every task about 95% of fresh expert states score at or above
0.5, and the audit's, the ``unsafe-states`` probe's and the oracle's default
threshold of 0.5 reads "less expert-like than nearly every held-out expert
state". States far from the demonstrations score near 0.

Far below, the sigmoid's argument is compressed (``TAIL_KNEE``): a float32
sigmoid is exactly 0 below about -100, and a Gaussian's or a support term's
raw score falls quadratically with the distance, so on the benchmark's
CartPole 74% of uniform states once scored exactly 0 and tied, and their
order (which of two bad states is worse, what the failure browser sorts by)
was lost. Below the knee (-20) the argument is ``knee - log1p(knee - z)``:
the same value and slope at the knee, strictly increasing, and above -87
(float32's smallest normal number is exp(-87.3)) for any raw score less than
about 1e29 scales below the centre, so every reward stays above 0 and
ordered. It changes rewards below sigmoid(-20) = 2.1e-9 only.

The record (``Calibration.to_json``) goes into the model's manifest under
``calibration``; the probe and the oracle take their default threshold from
it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

THRESHOLD = 0.5
MEDIAN_REWARD = 0.9
DEFAULT_PERCENTILE = 5.0
_SPREAD_FLOOR = 1e-9  # a constant raw score still needs a positive scale
TAIL_KNEE = -20.0  # below it the sigmoid's argument is compressed (see above)


def compressed(z: np.ndarray) -> np.ndarray:
    """The sigmoid's argument with its far tail compressed (see the module
    docstring); the identity at and above ``TAIL_KNEE``."""
    z = np.asarray(z, dtype=np.float64)
    return np.where(z < TAIL_KNEE, TAIL_KNEE - np.log1p(np.maximum(TAIL_KNEE - z, 0.0)), z)


def calibrated_torch(raw: Any, centre: Any, inv_scale: Any) -> Any:
    """The calibrated reward in torch, for the exported graph: the sigmoid of
    the compressed argument, made of Exp, since onnxruntime's Sigmoid returns
    exactly 0 from an argument of -18 down (and 3.6e-7 for 3.1e-7 at -15)."""
    import torch

    z = (raw - centre) * inv_scale
    below = torch.clamp(TAIL_KNEE - z, min=0.0)
    z = torch.where(z < TAIL_KNEE, TAIL_KNEE - torch.log(1.0 + below), z)
    e = torch.exp(-torch.abs(z))
    return torch.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


@dataclass(frozen=True)
class Calibration:
    """reward = sigmoid((raw - centre) / scale) for a higher-is-better raw score
    (a lower-is-better one, like an error, is calibrated on its negative), the
    argument's far tail compressed (``compressed``)."""

    centre: float
    scale: float
    percentile: float
    source: str  # which demonstration steps it was fitted on
    n_steps: int
    method: str

    def reward(self, raw: np.ndarray) -> np.ndarray:
        z = compressed((np.asarray(raw, dtype=np.float64) - self.centre) / self.scale)
        return 1.0 / (1.0 + np.exp(-np.clip(z, -500, 500)))

    def to_json(self, rewards: np.ndarray | None = None) -> dict[str, Any]:
        """The manifest record; ``rewards`` (the calibrated scores of the
        calibration steps) adds their percentiles, as a check a reader can see."""
        out: dict[str, Any] = {
            "threshold": THRESHOLD, "method": self.method,
            "rule": (f"reward {THRESHOLD:g} at the p{self.percentile:g} of {self.source} "
                     f"demonstration steps, {MEDIAN_REWARD:g} at their median"),
            "percentile": self.percentile, "fitted_on": self.source, "n_steps": self.n_steps,
            "centre": self.centre, "scale": self.scale}
        if rewards is not None and len(rewards):
            p1, p5, p50 = np.percentile(rewards, [1, 5, 50])
            out["reward_percentiles"] = {"p1": float(p1), "p5": float(p5), "p50": float(p50)}
            out["share_at_or_above_threshold"] = float(np.mean(rewards >= THRESHOLD))
        return out


def fit_calibration(raw: np.ndarray, percentile: float, source: str,
                    method: str = "logistic") -> Calibration:
    """The calibration putting 0.5 at ``percentile`` and 0.9 at the median of ``raw``."""
    raw = np.asarray(raw, dtype=np.float64)
    low, median = np.percentile(raw, [percentile, 50.0])
    # sigmoid(z) = MEDIAN_REWARD at z = logit(MEDIAN_REWARD)
    spread = max(float(median - low), _SPREAD_FLOOR * max(1.0, abs(float(median))))
    scale = spread / math.log(MEDIAN_REWARD / (1.0 - MEDIAN_REWARD))
    return Calibration(float(low), float(scale), float(percentile), source, int(len(raw)),
                       method)


def threshold_of(manifest: dict[str, Any], fallback: float) -> float:
    """A model's calibrated threshold, or ``fallback`` for an uncalibrated one."""
    calibration = manifest.get("calibration")
    if isinstance(calibration, dict) and isinstance(calibration.get("threshold"), (int, float)):
        return float(calibration["threshold"])
    return float(fallback)
