"""The paper's interactionless inverse-RL reward (``--param model=moe-ae``): a
mixture of autoencoder experts fitted to expert observations only. It is no
longer the default (see ``occupancy``): on the reward-recovery benchmark its
reward ranks states almost without relation to the tasks' own rewards.

A softmax gate over E experts, each a bottleneck autoencoder
(obs -> hidden -> bottleneck -> hidden -> obs, tanh), on observations
standardised with the demonstrations' mean and standard deviation (baked into
the graph). The reconstruction error of expert j is the mean squared error
e_j(x) over the standardised features; the mixture's error is
e(x) = sum_j gate_j(x) e_j(x), which is also the training loss (so the gate
learns to route each state to the expert that reconstructs it best).

The reward is r(x) = clip(exp(-k (e(x) - e_min) / (e_max - e_min)), 0, 1)
with e_min / e_max the 1st / 99th percentile of e over the training steps
(percentiles, not min/max: one odd expert step must not stretch the scale).
k is calibrated (``calibrate_moe``): the 95th percentile of the held-out
steps' errors scores 0.5, unless the analyst gives k, the paper's fixed
constant (then the model carries no calibration).
So expert-like states score near 1 and states the experts never visit (a
fallen pole, a cart off the track) near 0; tanh saturation keeps the
reconstruction of far-away states bounded, so their error keeps growing.

Exported outputs: ``reward`` [N], ``expert_rewards`` [N, E] (each expert's
reward by the same formula and the same e_min/e_max on its own error),
``gate`` [N, E] and ``uncertainty`` [N], the gate-weighted standard
deviation of ``expert_rewards`` (expert disagreement).

Trajectories, not steps, are split: held-out and validation trajectories are
whole, so no held-out state has its own neighbour in training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from workstation.calibration import Calibration
from workstation.progress import Progress
from workstation.training.data import HELDOUT, TRAIN, VALIDATION
from workstation.training.fit import FitReport, FitSettings, fit
from workstation.training.heads import standardiser
from workstation.training.metrics import finite_or_none, mean_or_none

E_RANGE_PERCENTILES = (1.0, 99.0)
_RANGE_FLOOR = 1e-12  # e_max == e_min (a constant demonstration) must not divide by zero


class AutoencoderMixture(nn.Module):
    """E gated bottleneck autoencoders; ``errors`` gives e_j(x) [N, E] and gate [N, E]."""

    def __init__(self, mean: torch.Tensor, scale: torch.Tensor, experts: int, hidden: int,
                 bottleneck: int, generator: torch.Generator) -> None:
        super().__init__()
        d = mean.shape[0]
        self.register_buffer("mean", mean.clone())
        self.register_buffer("scale", scale.clone())
        # Expert on axis 0: [E, N, .] activations via broadcast matmuls.
        self.enc1, self.enc1_b = _layer(experts, d, hidden, generator)
        self.enc2, self.enc2_b = _layer(experts, hidden, bottleneck, generator)
        self.dec1, self.dec1_b = _layer(experts, bottleneck, hidden, generator)
        self.dec2, self.dec2_b = _layer(experts, hidden, d, generator)
        # A zero gate starts uniform, so every expert gets gradient at first.
        self.gate = nn.Parameter(torch.zeros(d, experts))
        self.gate_b = nn.Parameter(torch.zeros(experts))

    def errors(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = (obs - self.mean) * self.scale
        h = torch.tanh(z @ self.enc1 + self.enc1_b)
        code = h @ self.enc2 + self.enc2_b
        h = torch.tanh(code @ self.dec1 + self.dec1_b)
        recon = h @ self.dec2 + self.dec2_b  # [E, N, d]
        per_expert = ((recon - z) ** 2).mean(-1).t()  # [N, E]
        gate = torch.softmax(z @ self.gate + self.gate_b, dim=1)
        return per_expert, gate

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        per_expert, gate = self.errors(obs)
        return (per_expert * gate).sum(1)


def _layer(experts: int, fan_in: int, fan_out: int,
           generator: torch.Generator) -> tuple[nn.Parameter, nn.Parameter]:
    weight = torch.randn(experts, fan_in, fan_out, generator=generator) / fan_in ** 0.5
    return nn.Parameter(weight), nn.Parameter(torch.zeros(experts, 1, fan_out))


class MixtureScorer(nn.Module):
    """The exported graph: reward, expert_rewards, gate, uncertainty."""

    output_names = ("reward", "expert_rewards", "gate", "uncertainty")

    def __init__(self, mixture: AutoencoderMixture, e_min: float, e_max: float,
                 k: float) -> None:
        super().__init__()
        self.mixture = mixture
        self.e_min_value, self.e_max_value, self.k = e_min, e_max, k
        self.register_buffer("e_min", torch.tensor(e_min, dtype=torch.float32))
        self.register_buffer("scale", torch.tensor(0.0))
        self.set_k(k)

    def set_k(self, k: float) -> None:
        self.k = float(k)
        self.scale.fill_(self.k / max(self.e_max_value - self.e_min_value, _RANGE_FLOOR))

    def reward_of(self, error: torch.Tensor) -> torch.Tensor:
        return torch.clamp(torch.exp(-self.scale * (error - self.e_min)), 0.0, 1.0)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        per_expert, gate = self.mixture.errors(obs)
        reward = self.reward_of((per_expert * gate).sum(1))
        expert_rewards = self.reward_of(per_expert)
        centre = (expert_rewards * gate).sum(1, keepdim=True)
        spread = ((expert_rewards - centre) ** 2 * gate).sum(1).sqrt()
        return reward, expert_rewards, gate, spread


# -- training ------------------------------------------------------------------

@dataclass
class MoeFit:
    """The fitted paper's model, its training errors and the loop's report."""

    scorer: MixtureScorer
    errors: np.ndarray  # mixture reconstruction error of every step
    report: FitReport


def fit_moe_ae(obs: np.ndarray, roles: np.ndarray, hp: dict[str, Any], seed: int,
               progress: Progress) -> MoeFit:
    """Fit the mixture on training trajectories, stop on validation trajectories
    and set e_min/e_max on the training steps (k is set by ``calibrate_moe``
    unless the analyst gave one)."""
    x = torch.from_numpy(obs)
    generator = torch.Generator().manual_seed(int(seed))
    mean, scale = standardiser(x[torch.from_numpy(roles == TRAIN)], drop_constant=False)
    # Resolved in place, so that the lineage records the width actually used.
    hp["bottleneck"] = hp["bottleneck"] or max(1, x.shape[1] // 2)
    mixture = AutoencoderMixture(mean, scale, hp["experts"], hp["hidden"], hp["bottleneck"],
                                 generator)
    fitted = torch.from_numpy(roles != HELDOUT)
    rows_obs = x[fitted]
    train_w = torch.from_numpy((roles[fitted.numpy()] == TRAIN).astype(np.float32)).unsqueeze(1)
    monitor_w = torch.from_numpy((roles[fitted.numpy()] == VALIDATION).astype(np.float32))
    report = fit(mixture, lambda rows: mixture(rows_obs[rows]).unsqueeze(1), train_w,
                 monitor_w.unsqueeze(1), [{"params": list(mixture.parameters())}],
                 FitSettings.from_params(hp), generator, progress)
    with torch.no_grad():
        errors = mixture(x).double().numpy()
    low, high = np.percentile(errors[roles == TRAIN], E_RANGE_PERCENTILES)
    k = float(hp["k"]) if hp.get("k") is not None else 1.0
    return MoeFit(MixtureScorer(mixture, float(low), float(high), k).eval(), errors, report)


def calibrate_moe(fitted: MoeFit, rows: np.ndarray, percentile: float,
                  source: str) -> Calibration:
    """Choose k so that the ``percentile``-th percentile of the errors of
    ``rows`` (lower-is-better, so the (100 - percentile)-th) scores 0.5 by the
    paper's own formula; the record is in the calibration's terms."""
    scorer = fitted.scorer
    errors = fitted.errors[rows]
    span = max(scorer.e_max_value - scorer.e_min_value, _RANGE_FLOOR)
    worst = float(np.percentile(errors, 100.0 - percentile))
    # exp(-k (e - e_min) / span) = 1/2 at e = worst
    k = math.log(2.0) * span / max(worst - scorer.e_min_value, _RANGE_FLOOR * span)
    scorer.set_k(k)
    return Calibration(worst, span / k, float(percentile), source, int(len(errors)),
                       "exp(-k (e - e_min) / (e_max - e_min)), k chosen so that "
                       "the threshold falls at the percentile")


def moe_metrics(fitted: MoeFit, roles: np.ndarray) -> dict[str, Any]:
    """The paper's model's own figures (reconstruction errors, gate usage, loop)."""
    scorer, errors, report = fitted.scorer, fitted.errors, fitted.report
    metrics: dict[str, Any] = {
        "e_min": scorer.e_min_value, "e_max": scorer.e_max_value, "k": scorer.k,
        "e_range": f"p{E_RANGE_PERCENTILES[0]:g}-p{E_RANGE_PERCENTILES[1]:g} of training-step "
                   f"reconstruction errors"}
    for prefix, role in (("train", TRAIN), ("validation", VALIDATION), ("heldout", HELDOUT)):
        metrics[f"{prefix}_recon_error_mean"] = mean_or_none(errors[roles == role])
    held = roles == HELDOUT
    metrics["heldout_recon_error_p95"] = float(np.percentile(errors[held], 95)) \
        if held.any() else None
    metrics.update(loop_metrics(report, bool((roles == VALIDATION).any())))
    return metrics


def loop_metrics(report: FitReport, validated: bool) -> dict[str, Any]:
    """Epochs, best epoch and stopping; without validation trajectories the
    loop stopped on the training loss, so no validation loss is reported."""
    return {"epochs": report.epochs_run, "best_epoch": report.best_epochs[0],
            "stopped_early": report.stopped_early,
            "validation_loss": finite_or_none(report.monitor_losses[0]) if validated else None}
