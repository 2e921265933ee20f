"""The interactionless inverse-RL reward: a mixture of autoencoder experts
fitted to expert observations only.

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

from typing import Any

import numpy as np
import torch
from torch import nn

from workstation.errors import WorkstationError
from workstation.progress import Progress
from workstation.training.data import HELDOUT, TRAIN, VALIDATION, DemoData, split_roles
from workstation.training.export import TrainedHead
from workstation.training.fit import FitSettings, fit
from workstation.training.heads import standardiser
from workstation.training.metrics import finite_or_none, mean_or_none

E_RANGE_PERCENTILES = (1.0, 99.0)
_RANGE_FLOOR = 1e-12  # e_max == e_min (a constant demonstration) must not divide by zero
_PARITY_ROWS = 4096


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
        self.register_buffer("scale", torch.tensor(k / max(e_max - e_min, _RANGE_FLOOR),
                                                   dtype=torch.float32))

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

def train_demos(data: DemoData, hp: dict[str, Any], seed: int, progress: Progress) -> TrainedHead:
    """Fit the mixture on training trajectories, stop on validation trajectories,
    calibrate e_min/e_max on the training steps, and measure the held-out ones."""
    roles = _step_roles(data, hp)
    if not (roles == TRAIN).any():
        raise WorkstationError("no demonstration steps left to train on (all trajectories "
                               "excluded, or the dataset is empty)")
    obs = torch.from_numpy(data.obs)
    generator = torch.Generator().manual_seed(int(seed))
    mean, scale = standardiser(obs[torch.from_numpy(roles == TRAIN)],
                               drop_constant=False)
    # Resolved in place, so that the lineage records the width actually used.
    hp["bottleneck"] = hp["bottleneck"] or max(1, obs.shape[1] // 2)
    mixture = AutoencoderMixture(mean, scale, hp["experts"], hp["hidden"], hp["bottleneck"],
                                 generator)
    fitted = torch.from_numpy(roles != HELDOUT)
    rows_obs = obs[fitted]
    train_w = torch.from_numpy((roles[fitted.numpy()] == TRAIN).astype(np.float32)).unsqueeze(1)
    monitor_w = torch.from_numpy((roles[fitted.numpy()] == VALIDATION).astype(np.float32))
    report = fit(mixture, lambda rows: mixture(rows_obs[rows]).unsqueeze(1), train_w,
                 monitor_w.unsqueeze(1), [{"params": list(mixture.parameters())}],
                 FitSettings.from_params(hp), generator, progress)
    scorer, errors = _calibrated(mixture, obs, roles, hp["k"])
    metrics = _demo_metrics(scorer, obs, errors, roles, data, report)
    heldout = torch.from_numpy(roles == HELDOUT)
    check = obs[heldout] if heldout.any() else obs
    return TrainedHead(scorer, MixtureScorer.output_names, "observation", obs.shape[1],
                       "reward", "mixture-of-autoencoders", metrics,
                       check[:_PARITY_ROWS].numpy(),
                       {"output": "uncertainty",
                        "method": "gate-weighted standard deviation of expert_rewards",
                        "members_output": "expert_rewards", "weights_output": "gate"})


def _step_roles(data: DemoData, hp: dict[str, Any]) -> np.ndarray:
    """Each step takes its trajectory's role."""
    trajectory_roles = split_roles(data.example_ids, hp["heldout_fraction"], hp["split_seed"],
                                   hp["validation_fraction"])
    position = np.searchsorted(data.example_ids, data.owner)
    return trajectory_roles[position] if len(position) else np.zeros(0, dtype=np.int8)


def _calibrated(mixture: AutoencoderMixture, obs: torch.Tensor, roles: np.ndarray,
                k: float) -> tuple[MixtureScorer, np.ndarray]:
    with torch.no_grad():
        errors = mixture(obs).double().numpy()
    low, high = np.percentile(errors[roles == TRAIN], E_RANGE_PERCENTILES)
    return MixtureScorer(mixture, float(low), float(high), k).eval(), errors


def _demo_metrics(scorer: MixtureScorer, obs: torch.Tensor, errors: np.ndarray,
                  roles: np.ndarray, data: DemoData, report: Any) -> dict[str, Any]:
    with torch.no_grad():
        reward, _, gate, spread = scorer(obs)
    reward, spread, gate = reward.double().numpy(), spread.double().numpy(), gate.double().numpy()
    train = roles == TRAIN
    metrics: dict[str, Any] = {
        "e_min": scorer.e_min_value, "e_max": scorer.e_max_value, "k": scorer.k,
        "e_range": f"p{E_RANGE_PERCENTILES[0]:g}-p{E_RANGE_PERCENTILES[1]:g} of training-step "
                   f"reconstruction errors",
        "gate_usage": [float(v) for v in gate[train].mean(0)]}
    for prefix, role in (("train", TRAIN), ("validation", VALIDATION), ("heldout", HELDOUT)):
        rows = roles == role
        metrics[f"n_{prefix}_trajectories"] = int(len(np.unique(data.owner[rows])))
        metrics[f"n_{prefix}_steps"] = int(rows.sum())
        metrics[f"{prefix}_recon_error_mean"] = mean_or_none(errors[rows])
        metrics[f"{prefix}_mean_reward"] = mean_or_none(reward[rows])
    held = roles == HELDOUT
    metrics["heldout_recon_error_p95"] = float(np.percentile(errors[held], 95)) \
        if held.any() else None
    metrics["heldout_min_reward"] = float(reward[held].min()) if held.any() else None
    metrics["heldout_mean_uncertainty"] = mean_or_none(spread[held])
    # Without validation trajectories the loop stopped on the training loss.
    validated = bool((roles == VALIDATION).any())
    metrics.update(epochs=report.epochs_run, best_epoch=report.best_epochs[0],
                   stopped_early=report.stopped_early,
                   validation_loss=finite_or_none(report.monitor_losses[0]) if validated
                   else None)
    return metrics
