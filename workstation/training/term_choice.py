"""What the experts pursue: the default demonstration reward's terms weighed
by the demonstrations' own time order, on trajectories the fit did not see.

Two readings of a demonstration compete. Holding: the experts steer into a
region and stay (balancing a pole, holding a pendulum up), so where they
spend their time is what they want: a density. Reaching: they head for a
place and the trajectory ends there (a hill top, a goal cell), a place they
pass through once, so the density there is low and the time order says
more: progress. Neither the task's reward nor any interaction is used:

* the density: by default ("both") the kernel occupancy and the single
  Gaussian, half each. With ``density="auto"``, the one whose score rises
  more often from an earlier to a later step of the same held-aside
  trajectory (order accuracy), when it leads by at least ``DECISIVE_Z``
  standard errors (counted over trajectories, not pairs: steps of one
  trajectory move together), else both. "auto" is not the default: on the
  benchmark's Pendulum its lead was beyond +2 standard errors on one seed's
  validation trajectories and beyond -2 on the other's (a handful of
  trajectories; the error understates how far the lead moves when the
  demonstrations change), and the choice flipped with it;
* where the trajectories end: the mean percentile, among the held-aside
  steps, of the chosen density (for "both", the sum of the two, each minus
  its median over its interquartile range) at each trajectory's last step.
  Experts who hold end where they dwell (a high percentile); experts who
  reach end somewhere they hardly stay (a low one). Progress's share from the ends is
  1 at or below the 25th percentile, 0 at or above the 75th, linear between;
* progress's reliability: 2a - 1 for its own order accuracy a (0 when it
  orders no better than chance, 1 when it orders every pair);
* the progress weight is the smaller of the two; the density weighs the rest;
* unless the density orders the held-aside steps backwards, decisively (its
  order accuracy below a half by more than ``DECISIVE_Z`` standard errors,
  clustered by trajectory): the experts leave the places they dwell in (an
  acrobot pumping energy spends most of its time near rest, where it
  starts), so the density says what they leave, not what they pursue, and
  progress takes the whole weight if it orders better than chance. On the
  benchmark's Acrobot (density order accuracy 0.21 to 0.30) this raised rho
  from 0.24 to 0.31 and from 0.17 to 0.29 on seeds 0 and 1 and changed no
  other task.

Measured on the reward-recovery benchmark (``bench/bench_reward_recovery.py``)
but chosen by these rules, not by the benchmark's reference rewards: a
density picked by held-out likelihood ranked the tasks worse (the likeliest
kernel width is the sharpest, the task wants the broad one), and weights
fitted to the held-out order put everything on progress (it is trained on
that order), so neither is used.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DENSITIES = ("occupancy", "gaussian")
# A density's lead in order accuracy, in standard errors, that chooses it alone.
DECISIVE_Z = 2.0
_OCCUPANCY_SHARE = {"occupancy": 1.0, "gaussian": 0.0, "both": 0.5}
# The percentiles of the trajectories' end at which progress's share from
# the ends reaches 1 (at or below) and 0 (at or above).
_REACH_PERCENTILE, _HOLD_PERCENTILE = 0.25, 0.75


@dataclass(frozen=True)
class TermChoice:
    """The chosen density, the weights, and the figures they were chosen by."""

    density: str                 # "occupancy", "gaussian" or "both"
    progress_weight: float       # w: progress weighs w, the density 1 - w
    order_accuracy: dict[str, float]  # per term: occupancy, gaussian, progress
    end_percentile: float        # the chosen density at the trajectories' ends
    reach_share: float           # progress's share from the ends
    reliability: float           # progress's share from its own order accuracy
    lead_z: float = 0.0          # the occupancy's order-accuracy lead, in standard errors
    density_z: float = 0.0       # the chosen density's order accuracy above a half, in s.e.
    backwards: bool = False      # the density orders the steps backwards: progress only

    @property
    def occupancy_share(self) -> float:
        """How much of the density term is the kernel occupancy (1, 0 or a half)."""
        return _OCCUPANCY_SHARE[self.density]


def order_accuracy(score: np.ndarray, pairs: np.ndarray) -> float:
    """How often the later step of an (earlier, later) pair scores higher
    (ties count half); 0.5 without pairs."""
    if not len(pairs):
        return 0.5
    earlier, later = score[pairs[:, 0]], score[pairs[:, 1]]
    return float(np.mean((later > earlier) + 0.5 * (later == earlier)))


def end_percentile(score: np.ndarray, rows: np.ndarray, trajectory: np.ndarray) -> float:
    """The mean percentile, among the steps in ``rows``, of the score at each
    of their trajectories' last steps (ties count half)."""
    index = np.flatnonzero(rows)
    if not len(index):
        return 0.5
    values = np.sort(score[index])
    owner = trajectory[index]
    last = index[np.r_[owner[1:] != owner[:-1], True]]
    below = np.searchsorted(values, score[last], side="left")
    at_or_below = np.searchsorted(values, score[last], side="right")
    return float(np.mean((below + at_or_below) / 2.0 / len(values)))


def lead_z(first: np.ndarray, second: np.ndarray, pairs: np.ndarray,
           trajectory: np.ndarray) -> float:
    """How many standard errors ``first`` orders the pairs better than
    ``second`` (0 without pairs). The error is clustered by trajectory, so
    pairs from a single trajectory give no evidence either way (0): one
    trajectory's steps move together, and its spread says nothing of the next."""
    if not len(pairs) or len(np.unique(trajectory[pairs[:, 0]])) < 2:
        return 0.0
    def right(score: np.ndarray) -> np.ndarray:
        earlier, later = score[pairs[:, 0]], score[pairs[:, 1]]
        return (later > earlier) + 0.5 * (later == earlier)
    diff = right(first) - right(second)
    _, group = np.unique(trajectory[pairs[:, 0]], return_inverse=True)
    mean = diff.mean()
    sums, sizes = np.bincount(group, diff), np.bincount(group)
    var = float(((sums - sizes * mean) ** 2).sum()) / len(diff) ** 2
    if var <= 0:
        return 0.0 if mean == 0 else float(np.sign(mean) * np.inf)
    return float(mean / np.sqrt(var))


def _standard(score: np.ndarray) -> np.ndarray:
    q25, q50, q75 = np.percentile(score, [25, 50, 75])
    return (score - q50) / max(q75 - q25, 1e-12)


def choose_terms(scores: dict[str, np.ndarray], pairs: np.ndarray, rows: np.ndarray,
                 trajectory: np.ndarray, density: str = "auto",
                 progress_weight: float | None = None) -> TermChoice:
    """Weigh the terms (see the module docstring). ``scores`` holds each
    term's score on every step ("occupancy", "gaussian", "progress");
    ``pairs`` are (earlier, later) steps of the trajectories in ``rows``.
    ``density`` and ``progress_weight`` are the analyst's overrides."""
    accuracy = {name: order_accuracy(scores[name], pairs) for name in (*DENSITIES, "progress")}
    lead = lead_z(scores["occupancy"], scores["gaussian"], pairs, trajectory)
    if density == "auto":
        density = "both" if abs(lead) < DECISIVE_Z else \
            "occupancy" if lead > 0 else "gaussian"
    chosen = scores[density] if density in DENSITIES else \
        _standard(scores["occupancy"]) + _standard(scores["gaussian"])
    ends = end_percentile(chosen, rows, trajectory)
    reach = float(np.clip((_HOLD_PERCENTILE - ends) / (_HOLD_PERCENTILE - _REACH_PERCENTILE),
                          0.0, 1.0))
    reliability = float(np.clip(2.0 * accuracy["progress"] - 1.0, 0.0, 1.0))
    # The chosen density against chance: a constant orders every pair half right.
    density_z = lead_z(chosen, np.zeros(len(chosen)), pairs, trajectory)
    backwards = density_z < -DECISIVE_Z and reliability > 0.0
    weight = float(progress_weight) if progress_weight is not None else \
        1.0 if backwards else min(reach, reliability)
    return TermChoice(density, weight, accuracy, ends, reach, reliability, lead, density_z,
                      backwards)
