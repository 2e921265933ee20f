"""Choosing each kernel's bandwidth so that protected inputs keep their reward.

Each new kernel starts at the widest bandwidth that keeps the flaw's nearest
protected input within the budget on its own, h0 = d / sqrt(2 ln(a / budget))
(d its distance, a the kernel's largest possible effect), and never wider
than d. Then the loss of every protected input is measured with ALL kernels
together (the version's earlier patches included), as the drop from the
version being patched; while some input loses more than the budget, the new
kernels that reach it shrink by ``SHRINK``, up to ``MAX_SHRINKS`` times (in
all about six halvings). The step is gentler than halving because halving
a Gaussian's width quadruples its exponent: one halving usually overshoots
to a kernel far narrower than the budget needs, and a narrow kernel misses
the flaw's unsafe neighbours. A kernel that still breaks the budget is
refused with the reason: which protected input, how far from the flaw, how
much it would lose.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from workstation.patching.kernels import (SuppressionKernel, activations_from_d2,
                                          apply_activations, kernel_activations,
                                          squared_distances)
from workstation.patching.protected import ProtectedSet
from workstation.progress import Progress

SHRINK = 0.7
MAX_SHRINKS = 12
# A protected input closer than this to a flaw "sits on" it: no bandwidth helps.
ON_TOP_DISTANCE = 1e-6
# A kernel reaching a broken input with less than this share of the budget
# is not blamed for it.
BLAME_SHARE = 0.01


@dataclass
class Fit:
    """The bandwidths found, the refusals (index -> reason) and the
    protected inputs' loss with every kept kernel."""

    bandwidths: np.ndarray
    refused: dict[int, str] = field(default_factory=dict)
    loss: np.ndarray = field(default_factory=lambda: np.zeros(0))


def fit_bandwidths(new: Sequence[SuppressionKernel], old: Sequence[SuppressionKernel],
                   rule: str, protected: ProtectedSet, root_scores: np.ndarray,
                   budget: float, progress: Progress) -> Fit:
    """Bandwidths for the ``new`` kernels (their own bandwidths are ignored)
    given the version's ``old`` kernels (see the module docstring)."""
    centers = np.stack([k.center for k in new])
    d2 = squared_distances(protected.x, centers)
    old_act = kernel_activations(protected.x, old)
    parent = apply_activations(root_scores, old_act, old, rule)
    amp = np.array([_reach(k, rule) for k in new])
    nearest = d2.argmin(0)
    dist = np.sqrt(d2[nearest, np.arange(len(new))])
    fit = Fit(_initial(dist, amp, budget))
    alive = dist > ON_TOP_DISTANCE
    for i in np.flatnonzero(~alive):
        fit.refused[int(i)] = (f"{protected.label(int(nearest[i]))} sits on the flaw (distance "
                               f"{dist[i]:.2g}): no bandwidth keeps its loss within the budget")
    for shrink in range(MAX_SHRINKS + 1):
        progress.step(shrink, MAX_SHRINKS)
        loss = parent - _scores(root_scores, d2, fit.bandwidths, new, old, old_act, alive, rule)
        broken = np.flatnonzero(loss > budget * (1 + 1e-9))
        if not len(broken):
            break
        blamed = _blamed(d2[broken], fit.bandwidths, amp, alive, budget)
        if shrink == MAX_SHRINKS:
            _refuse(fit, blamed, broken, d2, loss, amp, protected, budget)
            alive[blamed] = False
        else:
            fit.bandwidths[blamed] *= SHRINK
    fit.loss = parent - _scores(root_scores, d2, fit.bandwidths, new, old, old_act, alive, rule)
    return fit


def _reach(kernel: SuppressionKernel, rule: str) -> float:
    """The most the kernel alone can take off a score."""
    strength = min(1.0, kernel.strength)
    return strength if rule == "bounded" else kernel.scale * strength


def _initial(dist: np.ndarray, amp: np.ndarray, budget: float) -> np.ndarray:
    ratio = np.maximum(amp / budget, 1.0 + 1e-12)
    factor = np.maximum(np.sqrt(2.0 * np.log(ratio)), 1.0)
    return np.maximum(dist, ON_TOP_DISTANCE) / factor


def _scores(root_scores: np.ndarray, d2: np.ndarray, bandwidths: np.ndarray,
            new: Sequence[SuppressionKernel], old: Sequence[SuppressionKernel],
            old_act: np.ndarray, alive: np.ndarray, rule: str) -> np.ndarray:
    """Scores of the protected inputs with the old kernels and the live new ones."""
    keep = np.flatnonzero(alive)
    act = activations_from_d2(d2[:, keep], bandwidths[keep],
                              np.array([new[i].strength for i in keep]))
    kernels = list(old) + [new[i] for i in keep]
    return apply_activations(root_scores, np.hstack([old_act, act]), kernels, rule)


def _blamed(d2: np.ndarray, bandwidths: np.ndarray, amp: np.ndarray, alive: np.ndarray,
            budget: float) -> np.ndarray:
    """Live new kernels reaching the broken inputs with a real share of the budget."""
    reach = amp[None, :] * np.exp(-d2 / (2.0 * bandwidths[None, :] ** 2))
    top = np.where(alive, reach.max(0), 0.0)
    blamed = np.flatnonzero(top > BLAME_SHARE * budget)
    return blamed if len(blamed) else np.flatnonzero(top > 0)


def _refuse(fit: Fit, blamed: np.ndarray, broken: np.ndarray, d2: np.ndarray, loss: np.ndarray,
            amp: np.ndarray, protected: ProtectedSet, budget: float) -> None:
    for i in blamed:
        reach = amp[i] * np.exp(-d2[broken, i] / (2.0 * fit.bandwidths[i] ** 2))
        worst = int(broken[np.argmax(reach)])
        fit.refused[int(i)] = (
            f"{protected.label(worst)} is {np.sqrt(d2[worst, i]):.3g} from the flaw: even at "
            f"bandwidth {fit.bandwidths[i]:.3g} (shrunk {MAX_SHRINKS} times) it would lose "
            f"{loss[worst]:.3g} > budget {budget:g}")
