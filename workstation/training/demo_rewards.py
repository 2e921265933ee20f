"""Training a demonstration reward: split, fit the chosen model, calibrate,
measure.

``model`` (a training parameter) chooses the reward: "occupancy-progress"
(the default, ``occupancy``) or "moe-ae" (the paper's mixture of autoencoder
experts, ``iirl``). Both export the same outputs (``reward``,
``expert_rewards``, ``gate``, ``uncertainty``) and are calibrated on the
held-out trajectories' steps (``workstation.calibration``), which neither
fit sees; the calibration goes into the manifest.

Trajectories, not steps, are split: held-out and validation trajectories are
whole, so no held-out state has its own neighbour in training.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from workstation.calibration import Calibration
from workstation.errors import WorkstationError
from workstation.progress import Progress
from workstation.training.data import HELDOUT, TRAIN, VALIDATION, DemoData, split_roles
from workstation.training.export import TrainedHead
from workstation.training.iirl import (MixtureScorer, calibrate_moe, fit_moe_ae, loop_metrics,
                                       moe_metrics)
from workstation.training.metrics import mean_or_none
from workstation.training.occupancy import Steps, calibrate_scorer, describe, fit_occupancy

OBJECTIVES = {"occupancy-progress": "occupancy-and-progress",
              "moe-ae": "mixture-of-autoencoders"}
_PARITY_ROWS = 4096


def train_demos(data: DemoData, hp: dict[str, Any], seed: int, progress: Progress) -> TrainedHead:
    """Fit ``hp["model"]`` on the training trajectories, calibrate it on the
    held-out ones and measure it (see the module docstring)."""
    roles = step_roles(data, hp)
    if not (roles == TRAIN).any():
        raise WorkstationError("no demonstration steps left to train on (all trajectories "
                               "excluded, or the dataset is empty)")
    rows, source = _calibration_rows(roles)
    percentile = float(hp["calibration_percentile"])
    if hp["model"] == "moe-ae":
        fitted = fit_moe_ae(data.obs, roles, hp, seed, progress)
        scorer: torch.nn.Module = fitted.scorer
        calibration = None if hp.get("k") is not None else \
            calibrate_moe(fitted, rows, percentile, source)
        own = moe_metrics(fitted, roles)
    else:
        result = fit_occupancy(_steps(data, roles), hp, seed, progress)
        scorer = result.scorer
        calibration = calibrate_scorer(scorer, data.obs[rows], percentile, source)
        own = {**describe(result, hp),
               **loop_metrics(result.report, bool((roles == VALIDATION).any()))}
    metrics, rewards = _metrics(scorer, data, roles)
    metrics.update(own)
    check = data.obs[roles == HELDOUT] if (roles == HELDOUT).any() else data.obs
    return TrainedHead(scorer, MixtureScorer.output_names, "observation", data.obs.shape[1],
                       "reward", OBJECTIVES[hp["model"]], metrics, check[:_PARITY_ROWS],
                       {"output": "uncertainty",
                        "method": "gate-weighted standard deviation of expert_rewards",
                        "members_output": "expert_rewards", "weights_output": "gate"},
                       _calibration_record(calibration, rewards[rows]))


def step_roles(data: DemoData, hp: dict[str, Any]) -> np.ndarray:
    """Each step takes its trajectory's role."""
    trajectory_roles = split_roles(data.example_ids, hp["heldout_fraction"], hp["split_seed"],
                                   hp["validation_fraction"])
    position = np.searchsorted(data.example_ids, data.owner)
    return trajectory_roles[position] if len(position) else np.zeros(0, dtype=np.int8)


def _calibration_rows(roles: np.ndarray) -> tuple[np.ndarray, str]:
    """The held-out steps; a dataset too small to hold any out calibrates on
    its validation steps, or else its training steps (and says so)."""
    for role, name in ((HELDOUT, "held-out"), (VALIDATION, "validation"), (TRAIN, "training")):
        if (roles == role).any():
            return roles == role, name
    return roles == TRAIN, "training"


def _steps(data: DemoData, roles: np.ndarray) -> Steps:
    trajectory = np.searchsorted(data.example_ids, data.owner).astype(np.int64)
    return Steps(data.obs, trajectory, roles == TRAIN, roles == VALIDATION, roles == HELDOUT)


def _calibration_record(calibration: Calibration | None,
                        rewards: np.ndarray) -> dict[str, Any] | None:
    return calibration.to_json(rewards) if calibration is not None else None


def _metrics(scorer: torch.nn.Module, data: DemoData,
             roles: np.ndarray) -> tuple[dict[str, Any], np.ndarray]:
    """Counts, mean rewards and uncertainty per role; gate usage on training steps."""
    with torch.no_grad():
        reward, _, gate, spread = scorer(torch.from_numpy(data.obs))
    reward, spread, gate = reward.double().numpy(), spread.double().numpy(), gate.double().numpy()
    metrics: dict[str, Any] = {"gate_usage": [float(v) for v in gate[roles == TRAIN].mean(0)]}
    for prefix, role in (("train", TRAIN), ("validation", VALIDATION), ("heldout", HELDOUT)):
        rows = roles == role
        metrics[f"n_{prefix}_trajectories"] = int(len(np.unique(data.owner[rows])))
        metrics[f"n_{prefix}_steps"] = int(rows.sum())
        metrics[f"{prefix}_mean_reward"] = mean_or_none(reward[rows])
    held = roles == HELDOUT
    metrics["heldout_min_reward"] = float(reward[held].min()) if held.any() else None
    metrics["heldout_mean_uncertainty"] = mean_or_none(spread[held])
    return metrics, reward
