"""Text reward heads: preference pairs (Bradley-Terry) and labeled responses
(binary classifier whose logit is the reward), each a small ensemble.

Members differ by initialisation and by a Poisson(1) bootstrap of the
training rows; each member stops early on its own out-of-bag loss, so the
held-out split stays untouched until the final figures. The exported graph
gives ``reward`` (the members' mean: the registered score), ``members``
[N, M] and ``uncertainty`` (the members' standard deviation).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from workstation.errors import WorkstationError
from workstation.progress import Progress
from workstation.training.data import HELDOUT, LabelData, PairData, split_roles
from workstation.training.export import TrainedHead
from workstation.training.fit import FitReport, FitSettings, fit
from workstation.training.heads import EnsembleHead, EnsembleScorer, standardiser
from workstation.audits.metrics import auroc
from workstation.training.metrics import finite_or_none, mean_or_none

_PARITY_ROWS = 4096  # held-out rows the ONNX parity check runs on, at most


# -- preference pairs ----------------------------------------------------------

def train_pairs(data: PairData, hp: dict[str, Any], seed: int, progress: Progress) -> TrainedHead:
    """Bradley-Terry: minimise -log sigmoid(r(chosen) - r(rejected)) per member."""
    heldout = split_roles(data.example_ids, hp["heldout_fraction"], hp["split_seed"]) == HELDOUT
    chosen, rejected = torch.from_numpy(data.chosen), torch.from_numpy(data.rejected)
    xc, xr = chosen[~torch.from_numpy(heldout)], rejected[~torch.from_numpy(heldout)]
    _require_rows(len(xc), "preference pairs")
    generator = torch.Generator().manual_seed(int(seed))
    head = _head(torch.cat([xc, xr]), hp, generator)

    def row_loss(rows: torch.Tensor) -> torch.Tensor:
        both = head(torch.cat([xc[rows], xr[rows]]))
        return F.softplus(both[len(rows):] - both[:len(rows)])  # = -log sigmoid(margin)

    report = _fit_bootstrapped(head, row_loss, len(xc), hp, generator, progress)
    scorer = EnsembleScorer(head).eval()
    metrics = _pair_metrics(scorer, chosen, rejected, heldout, report)
    check = torch.cat([chosen[heldout], rejected[heldout]]) if heldout.any() \
        else torch.cat([xc, xr])
    return TrainedHead(scorer, EnsembleScorer.output_names, "embedding", chosen.shape[1],
                       "reward", "bradley-terry", metrics, check[:_PARITY_ROWS].numpy(),
                       _uncertainty())


def _pair_metrics(scorer: EnsembleScorer, chosen: torch.Tensor, rejected: torch.Tensor,
                  heldout: np.ndarray, report: FitReport) -> dict[str, Any]:
    with torch.no_grad():
        rc, mc, spread_c = scorer(chosen)
        rr, mr, spread_r = scorer(rejected)
    margin, member_margin = (rc - rr).double().numpy(), (mc - mr).double().numpy()
    metrics: dict[str, Any] = {"n_train": int((~heldout).sum()), "n_heldout": int(heldout.sum())}
    for prefix, rows in (("train", ~heldout), ("heldout", heldout)):
        metrics[f"{prefix}_pairwise_accuracy"] = mean_or_none(margin[rows] > 0)
        metrics[f"{prefix}_loss"] = mean_or_none(np.logaddexp(0.0, -margin[rows]))
    metrics["heldout_member_pairwise_accuracy"] = [
        mean_or_none(member_margin[heldout, m] > 0) for m in range(member_margin.shape[1])]
    spread = torch.cat([spread_c[heldout], spread_r[heldout]]).double().numpy()
    metrics["heldout_mean_uncertainty"] = mean_or_none(spread)
    return {**metrics, **_fit_metrics(report)}


# -- labeled responses ---------------------------------------------------------

def train_labels(data: LabelData, hp: dict[str, Any], seed: int,
                 progress: Progress) -> TrainedHead:
    """A binary classifier (safe = positive class) whose logit is the reward."""
    heldout = split_roles(data.example_ids, hp["heldout_fraction"], hp["split_seed"]) == HELDOUT
    inputs = torch.from_numpy(data.inputs)
    target = torch.from_numpy(data.safe.astype(np.float32))
    keep = ~torch.from_numpy(heldout)
    x, y = inputs[keep], target[keep]
    _require_rows(len(x), "labeled responses")
    generator = torch.Generator().manual_seed(int(seed))
    head = _head(x, hp, generator)

    def row_loss(rows: torch.Tensor) -> torch.Tensor:
        logits = head(x[rows])
        return F.binary_cross_entropy_with_logits(
            logits, y[rows].unsqueeze(1).expand_as(logits), reduction="none")

    report = _fit_bootstrapped(head, row_loss, len(x), hp, generator, progress)
    scorer = EnsembleScorer(head).eval()
    metrics = _label_metrics(scorer, inputs, data.safe, heldout, report)
    metrics["n_unlabeled"] = data.n_unlabeled
    check = inputs[heldout] if heldout.any() else x
    return TrainedHead(scorer, EnsembleScorer.output_names, "embedding", inputs.shape[1],
                       "logit", "binary-cross-entropy", metrics, check[:_PARITY_ROWS].numpy(),
                       _uncertainty())


def _label_metrics(scorer: EnsembleScorer, inputs: torch.Tensor, safe: np.ndarray,
                   heldout: np.ndarray, report: FitReport) -> dict[str, Any]:
    with torch.no_grad():
        reward, members, spread = scorer(inputs)
    logit, member_logit = reward.double().numpy(), members.double().numpy()
    metrics: dict[str, Any] = {"n_train": int((~heldout).sum()), "n_heldout": int(heldout.sum())}
    for prefix, rows in (("train", ~heldout), ("heldout", heldout)):
        metrics[f"{prefix}_auroc"] = auroc(logit[rows], safe[rows])
        metrics[f"{prefix}_accuracy"] = mean_or_none((logit[rows] > 0) == safe[rows])
        # BCE with logits, written stably: log(1 + e^-z) for safe, log(1 + e^z) otherwise.
        signed = np.where(safe[rows], logit[rows], -logit[rows])
        metrics[f"{prefix}_loss"] = mean_or_none(np.logaddexp(0.0, -signed))
    metrics["heldout_member_auroc"] = [auroc(member_logit[heldout, m], safe[heldout])
                                       for m in range(member_logit.shape[1])]
    metrics["heldout_mean_uncertainty"] = mean_or_none(spread.double().numpy()[heldout])
    return {**metrics, **_fit_metrics(report)}


# -- shared --------------------------------------------------------------------

def _head(train_inputs: torch.Tensor, hp: dict[str, Any],
          generator: torch.Generator) -> EnsembleHead:
    mean, scale = standardiser(train_inputs, drop_constant=True)
    return EnsembleHead(mean, scale, hp["members"], hp["hidden"], generator)


def _fit_bootstrapped(head: EnsembleHead, row_loss: Any, n: int, hp: dict[str, Any],
                      generator: torch.Generator, progress: Progress) -> FitReport:
    # Poisson(1) counts: a bootstrap per member that needs no resampling;
    # a row a member never drew is out-of-bag and measures its early stop.
    counts = torch.poisson(torch.ones(n, hp["members"]), generator=generator)
    groups = [{"params": head.decayed_parameters()},
              {"params": head.other_parameters(), "weight_decay": 0.0}]
    return fit(head, row_loss, counts, (counts == 0).float(), groups, FitSettings.from_params(hp),
               generator, progress)


def _fit_metrics(report: FitReport) -> dict[str, Any]:
    return {"epochs": report.epochs_run, "best_epochs": report.best_epochs,
            "stopped_early": report.stopped_early,
            "oob_loss": [finite_or_none(v) for v in report.monitor_losses]}


def _uncertainty() -> dict[str, Any]:
    return {"output": "uncertainty", "method": "ensemble standard deviation",
            "members_output": "members"}


def _require_rows(n: int, what: str) -> None:
    if n == 0:
        raise WorkstationError(f"no {what} left to train on (all excluded, unlabeled, "
                               f"or the dataset is empty)")
