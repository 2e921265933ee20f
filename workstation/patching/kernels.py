"""Suppression kernels and the patched-score rule, in numpy.

This is the core's own definition of a patched score; the ONNX graph built by
``workstation.patching.graph`` computes the same numbers and is checked
against it.

A kernel i has a center c_i (a point in the model's input space), a
bandwidth h_i and a strength s_i:

    k_i(x) = s_i · exp(−||x − c_i||² / (2 h_i²))

Kernels belong to patches. Each patch p sums its own kernels and clips,
a_p(x) = min(1, Σ_{i∈p} k_i(x)), so stacking patches never changes what an
earlier patch does on its own ground. The score is then lowered:

* rule "bounded" (scores in [0, 1]):
  score' = score − min(max(score, 0), min(1, Σ_p a_p(x))),
  i.e. max(0, score − min(1, Σ k)) wherever score ≥ 0; a score already below
  0 is left alone so that the patch cannot raise anything;
* rule "unbounded" (logits, unbounded rewards):
  score' = score − Σ_p scale_p · a_p(x), with scale_p in score units.

With one patch both reduce to the textbook forms max(0, score − min(1, Σ k))
and score − scale · min(1, Σ k).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

RULES = ("bounded", "unbounded")


@dataclass(frozen=True)
class SuppressionKernel:
    """One Gaussian suppression kernel; ``scale`` is its patch's scale (score
    units, 1 under the bounded rule) and ``patch_id`` groups it with its patch."""

    center: np.ndarray
    bandwidth: float
    strength: float
    scale: float = 1.0
    patch_id: str = ""
    source: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The manifest form (the patch record carries scale and id)."""
        return {"center": [float(v) for v in np.asarray(self.center, dtype=np.float64)],
                "bandwidth": float(self.bandwidth), "strength": float(self.strength),
                "source": dict(self.source)}

    @classmethod
    def from_json(cls, item: dict[str, Any], scale: float, patch_id: str) -> "SuppressionKernel":
        return cls(np.asarray(item["center"], dtype=np.float64), float(item["bandwidth"]),
                   float(item["strength"]), float(scale), patch_id, dict(item.get("source", {})))


def squared_distances(x: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """||x_n − c_k||² as an [N, K] float64 matrix (clipped at 0 against rounding)."""
    x = np.asarray(x, dtype=np.float64)
    centers = np.asarray(centers, dtype=np.float64).reshape(-1, x.shape[1])
    d2 = (x * x).sum(1)[:, None] - 2.0 * (x @ centers.T) + (centers * centers).sum(1)[None, :]
    return np.maximum(d2, 0.0)


def activations_from_d2(d2: np.ndarray, bandwidths: np.ndarray,
                        strengths: np.ndarray) -> np.ndarray:
    """k_i for precomputed squared distances [N, K]."""
    widths = 2.0 * np.asarray(bandwidths, dtype=np.float64) ** 2
    return np.exp(-d2 / widths[None, :]) * np.asarray(strengths, dtype=np.float64)[None, :]


def kernel_activations(x: np.ndarray, kernels: Sequence[SuppressionKernel]) -> np.ndarray:
    """Every kernel's activation k_i(x) as an [N, K] matrix."""
    x = np.asarray(x, dtype=np.float64)
    if not kernels:
        return np.zeros((len(x), 0))
    centers = np.stack([k.center for k in kernels])
    return activations_from_d2(squared_distances(x, centers),
                               np.array([k.bandwidth for k in kernels]),
                               np.array([k.strength for k in kernels]))


def patch_groups(kernels: Sequence[SuppressionKernel]) -> tuple[np.ndarray, np.ndarray]:
    """The [K, P] one-hot membership of kernels in patches (in order of first
    appearance) and each patch's scale [P]."""
    ids: list[str] = []
    for k in kernels:
        if k.patch_id not in ids:
            ids.append(k.patch_id)
    member = np.zeros((len(kernels), len(ids)))
    scales = np.zeros(len(ids))
    for i, k in enumerate(kernels):
        j = ids.index(k.patch_id)
        member[i, j] = 1.0
        scales[j] = k.scale
    return member, scales


def suppression(activations: np.ndarray, kernels: Sequence[SuppressionKernel],
                rule: str) -> np.ndarray:
    """What the patches take off each score before the bounded rule's floor:
    min(1, Σ_p a_p) (bounded) or Σ_p scale_p · a_p (unbounded)."""
    _check_rule(rule)
    if not kernels:
        return np.zeros(len(activations))
    member, scales = patch_groups(kernels)
    per_patch = np.minimum(activations @ member, 1.0)
    if rule == "bounded":
        return np.minimum(per_patch.sum(1), 1.0)
    return per_patch @ scales


def apply_activations(base_scores: np.ndarray, activations: np.ndarray,
                      kernels: Sequence[SuppressionKernel], rule: str) -> np.ndarray:
    """Patched scores from base scores and precomputed activations [N, K]."""
    base = np.asarray(base_scores, dtype=np.float64)
    drop = suppression(activations, kernels, rule)
    if rule == "bounded":
        drop = np.minimum(np.maximum(base, 0.0), drop)
    return base - drop


def patched_scores(base_scores: np.ndarray, x: np.ndarray,
                   kernels: Sequence[SuppressionKernel], rule: str) -> np.ndarray:
    """The patched score of every row of ``x`` (the model inputs) given the
    unpatched model's scores of the same rows (see the module docstring)."""
    return apply_activations(base_scores, kernel_activations(x, kernels), kernels, rule)


def patch_activation(activations: np.ndarray) -> np.ndarray:
    """min(1, Σ_i k_i): how strongly any patch fires (the graph's evidence output)."""
    return np.minimum(activations.sum(1), 1.0) if activations.size else \
        np.zeros(len(activations))


def _check_rule(rule: str) -> None:
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, not {rule!r}")
