"""The default demonstration reward: where the experts spend their time, and
where they are heading.

Chosen on the reward-recovery benchmark (``bench/bench_reward_recovery.py``),
where the paper's mixture of autoencoders ranked states almost without
relation to the tasks' own rewards: reconstruction error says whether a state
lies on the demonstrations' manifold, not how much of their time the experts
spend there, nor whether they are passing through it on the way somewhere.
The raw score of a state x adds up three terms, each put on a common scale
(minus the median, over the interquartile range, of the validation steps):

* a density, by default two weighing half each (``density`` "both"): the
  occupancy, a smooth mixture of E density experts over the demonstration
  steps (Gaussian kernels on up to ``centres`` steps, the steps split among
  the experts by k-means; bandwidth ``bandwidth`` in units of a quarter of
  each observation's range), where every step counts once, so states the
  experts dwell in weigh most (the swing-up expert visits every angle once
  but stays upright); and one Gaussian with the steps' full covariance,
  which keeps how the observations move together (a cart-pole's angle and
  its speed). Choosing one of them from the validation trajectories
  ("auto") was tried: the choice flipped with the seed (see ``term_choice``);
* progress: a small network trained, on pairs of steps of the same training
  trajectory, to score the later step higher (Bradley-Terry). Experts move
  towards what the task rewards, so in goal-reaching tasks (MountainCar,
  CliffWalking) progress is the task's value where a density is not;
* the mix: progress weighs w and the density 1 - w, w chosen from the
  held-aside *validation* trajectories' time order (``term_choice``): from
  where the trajectories end (in the density's densest places: the experts
  hold a state, w = 0; in its sparsest: they reach for one) capped by how
  well progress orders the steps, or w = 1 when the density orders the
  steps backwards (the experts leave where they dwell: ``term_choice``).
  ``progress_weight`` sets it instead;
* support: within the demonstrations' reach (the distance to the nearest
  kernel centre that 98% of validation steps stay within) nothing is added;
  beyond it, the log of a Gaussian kernel of width ``support_bandwidth`` at
  the excess distance, so a state no expert came near scores low however the
  progress network extrapolates, and a state visited rarely but visited (a
  goal, reached once per trajectory) is not penalised.

The raw score is calibrated on held-out steps (``workstation.calibration``):
reward = sigmoid((raw − centre) / scale), 0.5 at their 5th percentile (the
argument's far tail compressed, so no state's reward underflows to 0 and
ties: ``workstation.calibration``).
``expert_rewards`` [N, E] are the same with each expert's own density (and
its own reach) in place of the mixture's, ``gate`` [N, E] the experts'
posterior share of the state and ``uncertainty`` the gate-weighted standard
deviation of ``expert_rewards``. Interaction-free: nothing but the
demonstrations is used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from workstation.calibration import Calibration, calibrated_torch, fit_calibration
from workstation.errors import WorkstationError
from workstation.progress import Progress
from workstation.training.fit import FitReport, FitSettings, fit
from workstation.training.heads import standardiser
from workstation.training.term_choice import TermChoice, choose_terms

SUPPORT_PERCENTILE = 2.0
_RANGE_QUANTILES = (0.5, 99.5)
_RANGE_FLOOR = 1e-6
_RIDGE = 1e-3  # added to the standardised covariance: a constant feature stays invertible
_KMEANS_ROUNDS = 25
_PAIRS_PER_STEP = 4
_MAX_PAIRS = 20_000
_MIN_PAIRS = 2048


@dataclass
class Normaliser:
    """(value - median) / iqr, fitted on validation steps."""

    median: float
    iqr: float

    @classmethod
    def of(cls, values: np.ndarray) -> "Normaliser":
        q25, q50, q75 = np.percentile(np.asarray(values, dtype=np.float64), [25, 50, 75])
        return cls(float(q50), float(max(q75 - q25, 1e-9)))


class OccupancyDensity(nn.Module):
    """Each expert's kernel log-density and distance to its nearest centre
    [N, E] (scaled units), and the full Gaussian's log-density [N]."""

    def __init__(self, scale: np.ndarray, centres: np.ndarray, owner: np.ndarray,
                 experts: int, bandwidth: float, gauss_mean: np.ndarray,
                 gauss_precision: np.ndarray) -> None:
        super().__init__()
        order = np.argsort(owner, kind="stable")
        sizes = np.bincount(owner, minlength=experts)
        self.bounds = [int(b) for b in np.r_[0, np.cumsum(sizes)]]
        self.register_buffer("inv_scale", _f32(1.0 / scale))
        scaled = centres[order] / scale
        self.register_buffer("centres_t", _f32(scaled.T))
        self.register_buffer("centres_sq", _f32((scaled ** 2).sum(1)))
        self.register_buffer("log_sizes", _f32(np.log(np.maximum(sizes, 1))))
        self.register_buffer("log_share", _f32(np.log(np.maximum(sizes, 1) / len(centres))))
        self.register_buffer("inv_width", torch.tensor(1.0 / (2 * bandwidth ** 2)))
        self.register_buffer("gauss_mean", _f32(gauss_mean / scale))
        self.register_buffer("gauss_precision", _f32(gauss_precision))

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        z = obs * self.inv_scale
        d2 = ((z * z).sum(1, keepdim=True) - 2.0 * (z @ self.centres_t)
              + self.centres_sq).clamp(min=0.0)
        spans = list(zip(self.bounds[:-1], self.bounds[1:]))
        broad = torch.stack([torch.logsumexp(-d2[:, a:b] * self.inv_width, dim=1)
                             for a, b in spans], dim=1) - self.log_sizes
        nearest = torch.stack([d2[:, a:b].min(dim=1).values for a, b in spans], dim=1).sqrt()
        centred = z - self.gauss_mean
        gauss = -0.5 * ((centred @ self.gauss_precision) * centred).sum(1)
        return broad, nearest, gauss

    def mixture(self, per_expert: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The mixture's log-density [N] and each expert's posterior share [N, E]."""
        joint = per_expert + self.log_share
        total = torch.logsumexp(joint, dim=1)
        return total, torch.exp(joint - total.unsqueeze(1))


class ProgressNet(nn.Module):
    """A small tanh network on standardised observations: later steps score higher."""

    def __init__(self, mean: torch.Tensor, scale: torch.Tensor, hidden: int,
                 generator: torch.Generator) -> None:
        super().__init__()
        d = mean.shape[0]
        self.register_buffer("mean", mean.clone())
        self.register_buffer("scale", scale.clone())
        self.net = nn.Sequential(nn.Linear(d, hidden), nn.Tanh(), nn.Linear(hidden, hidden),
                                 nn.Tanh(), nn.Linear(hidden, 1))
        with torch.no_grad():
            for layer in self.net:
                if isinstance(layer, nn.Linear):
                    fan_in = layer.weight.shape[1]
                    layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator)
                                       / fan_in ** 0.5)
                    layer.bias.zero_()

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net((obs - self.mean) * self.scale).squeeze(1)


class OccupancyScorer(nn.Module):
    """The exported graph: reward, expert_rewards, gate, uncertainty."""

    output_names = ("reward", "expert_rewards", "gate", "uncertainty")

    def __init__(self, density: OccupancyDensity, progress: ProgressNet,
                 norms: dict[str, Normaliser], choice: TermChoice, support_reach: float,
                 support_bandwidth: float, calibration: Calibration | None = None) -> None:
        super().__init__()
        self.density, self.progress = density, progress
        self.choice = choice
        self.weight, self.support_reach = float(choice.progress_weight), float(support_reach)
        self.occupancy_share = choice.occupancy_share
        self.register_buffer("reach", torch.tensor(float(support_reach)))
        self.register_buffer("support_width", torch.tensor(1.0 / (2 * support_bandwidth ** 2)))
        self.norms = norms
        self.calibration = calibration
        for name, norm in norms.items():
            self.register_buffer(f"{name}_median", torch.tensor(norm.median, dtype=torch.float32))
            self.register_buffer(f"{name}_iqr", torch.tensor(norm.iqr, dtype=torch.float32))
        self.register_buffer("centre", torch.tensor(0.0))
        self.register_buffer("inv_scale", torch.tensor(1.0))
        if calibration is not None:
            self.calibrate(calibration)

    def calibrate(self, calibration: Calibration) -> None:
        self.calibration = calibration
        self.centre.fill_(calibration.centre)
        self.inv_scale.fill_(1.0 / calibration.scale)

    def _z(self, name: str, value: torch.Tensor) -> torch.Tensor:
        return (value - getattr(self, f"{name}_median")) / getattr(self, f"{name}_iqr")

    def raw(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The mixture's raw score [N], each expert's [N, E] and the gate [N, E]."""
        broad, nearest, gauss = self.density(obs)
        occupancy, gate = self.density.mixture(broad)
        kernels, rest = self.occupancy_share * (1.0 - self.weight), 1.0 - self.weight
        shared = (1.0 - self.occupancy_share) * rest * self._z("gauss", gauss) \
            + self.weight * self._z("progress", self.progress(obs))
        mixture = shared + kernels * self._z("occupancy", occupancy) \
            - self._off_support(nearest.min(dim=1).values)
        experts = shared.unsqueeze(1) + kernels * self._z("occupancy", broad) \
            - self._off_support(nearest)
        return mixture, experts, gate

    def _off_support(self, distance: torch.Tensor) -> torch.Tensor:
        """A Gaussian kernel's log at the distance beyond the demonstrations' reach."""
        beyond = torch.clamp(distance - self.reach, min=0.0)
        return beyond * beyond * self.support_width

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        mixture, experts, gate = self.raw(obs)
        reward = calibrated_torch(mixture, self.centre, self.inv_scale)
        expert_rewards = calibrated_torch(experts, self.centre, self.inv_scale)
        middle = (expert_rewards * gate).sum(1, keepdim=True)
        spread = ((expert_rewards - middle) ** 2 * gate).sum(1).clamp(min=0.0).sqrt()
        return reward, expert_rewards, gate, spread


def _f32(values: Any) -> torch.Tensor:
    return torch.as_tensor(np.asarray(values, dtype=np.float32))


# -- fitting ---------------------------------------------------------------------

@dataclass
class Steps:
    """Demonstration steps in trajectory order, by role (see ``demo_rewards``)."""

    obs: np.ndarray          # float32 [S, d]
    trajectory: np.ndarray   # int64 [S]: position of the step's trajectory
    train: np.ndarray        # bool [S]
    validation: np.ndarray   # bool [S]
    heldout: np.ndarray      # bool [S]


@dataclass
class OccupancyFit:
    """The fitted scorer and what the fit measured."""

    scorer: OccupancyScorer
    choice: TermChoice
    order_source: str
    report: FitReport
    n_pairs: int


def fit_occupancy(steps: Steps, hp: dict[str, Any], seed: int,
                  progress: Progress) -> OccupancyFit:
    """Fit the density experts and the progress network on the training steps,
    weigh them and normalise on the validation steps (see the module docstring)."""
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(int(seed))
    train = steps.obs[steps.train].astype(np.float64)
    density = _density(train, hp, rng)
    net, report, n_pairs, pairs_for = _progress(steps, hp, generator, progress)
    monitor = steps.validation if steps.validation.any() else steps.train
    rows = np.flatnonzero(monitor)
    terms, nearest = _term_scores(density, net, torch.from_numpy(steps.obs[rows]))
    # The pairs index every step; the terms were scored on the monitor's rows only.
    pairs = np.searchsorted(rows, pairs_for(monitor, rng))
    choice = choose_terms(terms, pairs, np.ones(len(rows), dtype=bool),
                          steps.trajectory[rows], hp.get("density") or "auto",
                          hp.get("progress_weight"))
    norms = {name: Normaliser.of(terms[key]) for name, key in _NORMALISED.items()}
    reach = float(np.percentile(nearest, 100.0 - SUPPORT_PERCENTILE))
    scorer = OccupancyScorer(density, net, norms, choice, reach,
                             float(hp["support_bandwidth"])).eval()
    source = "validation" if steps.validation.any() else "training"
    return OccupancyFit(scorer, choice, f"{source} trajectories", report, n_pairs)


def _density(train: np.ndarray, hp: dict[str, Any], rng: np.random.Generator) -> OccupancyDensity:
    low, high = np.percentile(train, _RANGE_QUANTILES, axis=0)
    scale = np.maximum((high - low) / 4.0, _RANGE_FLOOR)
    take = min(int(hp["centres"]), len(train))
    centres = train[np.sort(rng.choice(len(train), size=take, replace=False))]
    experts = max(1, min(int(hp["experts"]), take))
    owner = kmeans(centres / scale, experts, rng)
    mean = train.mean(0)
    cov = np.atleast_2d(np.cov(((train - mean) / scale).T, bias=True)) if len(train) > 1 \
        else np.zeros((train.shape[1], train.shape[1]))
    precision = np.linalg.inv(cov + _RIDGE * np.eye(len(cov)))
    return OccupancyDensity(scale, centres, owner, experts, float(hp["bandwidth"]), mean,
                            precision)


def kmeans(points: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Each point's cluster (Lloyd's rounds from k-means++ seeds); no cluster is empty."""
    centres = [points[rng.integers(len(points))]]
    for _ in range(1, k):
        d2 = np.min([((points - c) ** 2).sum(1) for c in centres], axis=0)
        total = d2.sum()
        pick = rng.choice(len(points), p=d2 / total) if total > 0 else rng.integers(len(points))
        centres.append(points[pick])
    centre = np.array(centres)
    owner = np.zeros(len(points), dtype=np.int64)
    for _ in range(_KMEANS_ROUNDS):
        d2 = ((points[:, None, :] - centre[None]) ** 2).sum(-1)
        owner = d2.argmin(1)
        for j in range(k):
            members = points[owner == j]
            centre[j] = members.mean(0) if len(members) else points[d2[:, j].argmin()]
    # An expert left without steps takes the point nearest to it.
    for j in range(k):
        if not (owner == j).any():
            owner[((points - centre[j]) ** 2).sum(1).argmin()] = j
    return owner


def _progress(steps: Steps, hp: dict[str, Any], generator: torch.Generator,
              progress: Progress) -> tuple[ProgressNet, FitReport, int, Any]:
    obs = torch.from_numpy(steps.obs)
    mean, scale = standardiser(obs[torch.from_numpy(steps.train)], drop_constant=False)
    net = ProgressNet(mean, scale, int(hp["hidden"]) or 32, generator)
    pair_rng = np.random.default_rng(int(torch.randint(0, 2 ** 31, (1,),
                                                        generator=generator)))

    def pairs_for(rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        count = int(np.clip(_PAIRS_PER_STEP * rows.sum(), _MIN_PAIRS, _MAX_PAIRS))
        return time_pairs(steps.trajectory, rows, count, rng)

    train_pairs = pairs_for(steps.train, pair_rng)
    monitor_rows = steps.validation if steps.validation.any() else steps.train
    monitor_pairs = pairs_for(monitor_rows, pair_rng)
    if not len(train_pairs):
        raise WorkstationError("the demonstrations have no trajectory of two or more steps "
                               "to learn progress from")
    pairs = torch.from_numpy(np.vstack([train_pairs, monitor_pairs]))
    n_train = len(train_pairs)
    train_w = torch.zeros(len(pairs), 1)
    train_w[:n_train] = 1.0
    monitor_w = 1.0 - train_w

    def row_loss(rows: torch.Tensor) -> torch.Tensor:
        # One pass over both steps of every pair: half the calls of two passes.
        both = net(obs[pairs[rows].reshape(-1)]).reshape(-1, 2)
        return nn.functional.softplus(both[:, 0] - both[:, 1]).unsqueeze(1)

    report = fit(net, row_loss, train_w, monitor_w,
                 [{"params": list(net.parameters())}], FitSettings.from_params(hp), generator,
                 progress)
    return net, report, n_train, pairs_for


def time_pairs(trajectory: np.ndarray, rows: np.ndarray, count: int,
               rng: np.random.Generator) -> np.ndarray:
    """``count`` (earlier, later) step pairs [count, 2], both steps in one
    trajectory among ``rows``; trajectories are drawn by their length."""
    index = np.flatnonzero(rows)
    if not len(index):
        return np.zeros((0, 2), dtype=np.int64)
    owner = trajectory[index]
    starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
    lengths = np.diff(np.r_[starts, len(index)])
    usable = lengths >= 2
    if not usable.any():
        return np.zeros((0, 2), dtype=np.int64)
    starts, lengths = starts[usable], lengths[usable]
    pick = rng.choice(len(starts), size=count, p=lengths / lengths.sum())
    a = (rng.random(count) * lengths[pick]).astype(np.int64)
    b = (rng.random(count) * (lengths[pick] - 1)).astype(np.int64)
    b = b + (b >= a)  # a second, different step of the same trajectory
    first, second = np.minimum(a, b) + starts[pick], np.maximum(a, b) + starts[pick]
    return np.stack([index[first], index[second]], axis=1)


# The scorer's normalisers by name, and the term scores they are fitted on.
_NORMALISED = {"occupancy": "occupancy", "gauss": "gaussian", "progress": "progress"}


def _term_scores(density: OccupancyDensity, net: ProgressNet,
                 obs: torch.Tensor) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Each term's raw score on ``obs`` (occupancy, gaussian, progress) and
    the distance to the nearest kernel centre."""
    with torch.no_grad():
        broad, nearest, gauss = density(obs)
        occupancy, _ = density.mixture(broad)
        later = net(obs)
    terms = {"occupancy": occupancy.double().numpy(), "gaussian": gauss.double().numpy(),
             "progress": later.double().numpy()}
    return terms, nearest.min(dim=1).values.double().numpy()


def calibrate_scorer(scorer: OccupancyScorer, obs: np.ndarray, percentile: float,
                     source: str) -> Calibration:
    """Fit and install the calibration on ``obs`` (the held-out steps)."""
    with torch.no_grad():
        raw, _, _ = scorer.raw(torch.from_numpy(obs))
    calibration = fit_calibration(raw.double().numpy(), percentile, source,
                                  "sigmoid of the raw score")
    scorer.calibrate(calibration)
    return calibration


def describe(fit_result: OccupancyFit, hp: dict[str, Any]) -> dict[str, Any]:
    """The model's own figures for the training metrics."""
    scorer, choice = fit_result.scorer, fit_result.choice
    return {"density": choice.density,
            "order_accuracy": {name: round(value, 6)
                               for name, value in choice.order_accuracy.items()},
            "occupancy_lead_z": choice.lead_z,
            "density_order_z": choice.density_z,
            "density_backwards": choice.backwards,
            "progress_order_accuracy": choice.order_accuracy["progress"],
            "progress_order_measured_on": fit_result.order_source,
            "end_density_percentile": choice.end_percentile,
            "progress_share_from_ends": choice.reach_share,
            "progress_reliability": choice.reliability,
            "progress_weight": scorer.weight, "density_weight": 1.0 - scorer.weight,
            "occupancy_weight": scorer.occupancy_share * (1.0 - scorer.weight),
            "support_reach": scorer.support_reach, "n_progress_pairs": fit_result.n_pairs,
            "n_centres": int(scorer.density.centres_t.shape[1]),
            "bandwidth": float(hp["bandwidth"]),
            "support_bandwidth": float(hp["support_bandwidth"]),
            "bandwidth_unit": "a quarter of each observation's "
                              f"p{_RANGE_QUANTILES[0]:g}-p{_RANGE_QUANTILES[1]:g} range"}
