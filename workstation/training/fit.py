"""The training loop shared by every head: minibatch Adam on the CPU, with
per-member early stopping, progress and cancellation, deterministic by seed.

A model here has M members (an ensemble's members; M = 1 for a single
model). The loss is given per row and per member ([B, M]); ``train_weights``
[N, M] say how much each row counts for each member (bootstrap counts for
an ensemble, 1/0 for a single model) and ``monitor_weights`` [N, M] which
rows measure each member's early-stopping loss: the out-of-bag rows of a
bootstrap member, or a validation split. The held-out rows are never seen
here, so the held-out figures reported afterwards are not tuned on.

Each member keeps the parameters of its best monitored epoch; training
stops when every member has gone ``patience`` epochs without improving, or
after ``epochs``. ``progress.step(epoch, epochs)`` runs after each epoch and
raises ``Cancelled`` when the analyst cancels.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch
from torch import nn

from workstation.progress import Progress

# The heads are small (batches of a few hundred rows by a few hundred
# columns): more threads barely help, they slow down badly when the cores are
# shared, and the thread count changes float summation order. One thread
# makes a run repeat exactly on any machine with the same torch build.
TRAINING_THREADS = 1
# Rows evaluated at once when measuring the monitor loss (bounds memory).
_EVAL_CHUNK = 8192
# A member must improve its monitor loss by this much to count as better.
_MIN_IMPROVEMENT = 1e-6

RowLoss = Callable[[torch.Tensor], torch.Tensor]  # row indices -> loss [B, M]


@dataclass(frozen=True)
class FitSettings:
    """Optimiser and stopping settings."""

    epochs: int
    lr: float
    weight_decay: float
    batch_size: int
    patience: int

    @classmethod
    def from_params(cls, hp: dict[str, Any]) -> "FitSettings":
        return cls(epochs=hp["epochs"], lr=hp["lr"], weight_decay=hp["weight_decay"],
                   batch_size=hp["batch_size"], patience=hp["patience"])


@dataclass
class FitReport:
    """What the loop did: epochs run, each member's best epoch and monitor loss."""

    epochs_run: int
    best_epochs: list[int] = field(default_factory=list)
    monitor_losses: list[float] = field(default_factory=list)

    @property
    def stopped_early(self) -> bool:
        return bool(self.best_epochs) and self.epochs_run > max(self.best_epochs)


@contextlib.contextmanager
def deterministic() -> Iterator[None]:
    """Deterministic kernels on ``TRAINING_THREADS`` threads for the block;
    the caller's settings come back after."""
    before = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(TRAINING_THREADS)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0])
        torch.set_num_threads(before[1])


def fit(model: nn.Module, row_loss: RowLoss, train_weights: torch.Tensor,
        monitor_weights: torch.Tensor, param_groups: list[dict], settings: FitSettings,
        generator: torch.Generator, progress: Progress) -> FitReport:
    """Train ``model`` in place and leave each member at its best epoch."""
    members = train_weights.shape[1]
    # A member with nothing to monitor (a tiny dataset) stops on its training loss.
    has_monitor = monitor_weights.sum(0) > 0
    monitor_weights = torch.where(has_monitor, monitor_weights, train_weights)
    optimiser = torch.optim.AdamW(param_groups, lr=settings.lr,
                                  weight_decay=settings.weight_decay)
    tracker = _BestTracker(model, members, settings.patience)
    rows = torch.nonzero(train_weights.sum(1) > 0).squeeze(1)
    monitored = torch.nonzero(monitor_weights.sum(1) > 0).squeeze(1)
    # Each member's loss is normalised by its mean row weight, so that the
    # members' gradients have the same scale whatever their bootstrap draw.
    scale = train_weights[rows].mean(0).clamp(min=1e-12)
    progress.stage_start("training", settings.epochs)
    epoch = 0
    for epoch in range(1, settings.epochs + 1):
        model.train()
        _epoch(rows, row_loss, train_weights, scale, optimiser, settings.batch_size, generator)
        losses = monitor_loss(row_loss, monitored, monitor_weights)
        stop = tracker.update(epoch, losses)
        progress.step(epoch, settings.epochs)
        if stop:
            progress.step(settings.epochs, settings.epochs)  # stopped early: the stage is done
            break
    tracker.restore()
    model.eval()
    return FitReport(epoch, tracker.best_epoch, tracker.best_loss.tolist())


def _epoch(rows: torch.Tensor, row_loss: RowLoss, weights: torch.Tensor, scale: torch.Tensor,
           optimiser: torch.optim.Optimizer, batch_size: int, generator: torch.Generator) -> None:
    order = rows[torch.randperm(len(rows), generator=generator)]
    for start in range(0, len(order), batch_size):
        batch = order[start:start + batch_size]
        per_member = (row_loss(batch) * weights[batch]).mean(0) / scale
        optimiser.zero_grad(set_to_none=True)
        per_member.sum().backward()  # members share no parameters: sum = independent steps
        optimiser.step()


def monitor_loss(row_loss: RowLoss, rows: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weighted mean loss per member over ``rows`` (inf for a member with none)."""
    members = weights.shape[1]
    total = torch.zeros(members, dtype=torch.float64)
    with torch.no_grad():
        for start in range(0, len(rows), _EVAL_CHUNK):
            batch = rows[start:start + _EVAL_CHUNK]
            total += (row_loss(batch) * weights[batch]).double().sum(0)
    mass = weights[rows].double().sum(0)
    return torch.where(mass > 0, total / mass.clamp(min=1e-12),
                       torch.full_like(total, float("inf")))


class _BestTracker:
    """Per-member best parameters and patience counters.

    With M > 1 every parameter has the member on axis 0, so member m's
    snapshot is slice m; with M = 1 the whole tensor is the snapshot.
    """

    def __init__(self, model: nn.Module, members: int, patience: int) -> None:
        self.params = [p for p in model.parameters()]
        self.members = members
        self.patience = patience
        self.best = [p.detach().clone() for p in self.params]
        self.best_loss = torch.full((members,), float("inf"), dtype=torch.float64)
        self.best_epoch = [0] * members
        self.waited = [0] * members

    def update(self, epoch: int, losses: torch.Tensor) -> bool:
        """Record the epoch; True once every member has run out of patience."""
        for m in range(self.members):
            loss = float(losses[m])
            if loss < float(self.best_loss[m]) - _MIN_IMPROVEMENT or epoch == 1:
                self._keep(m)
                self.best_loss[m] = loss
                self.best_epoch[m] = epoch
                self.waited[m] = 0
            else:
                self.waited[m] += 1
        return all(w >= self.patience for w in self.waited)

    def _keep(self, member: int) -> None:
        with torch.no_grad():
            for param, best in zip(self.params, self.best):
                if self.members == 1:
                    best.copy_(param)
                else:
                    best[member].copy_(param[member])

    def restore(self) -> None:
        with torch.no_grad():
            for param, best in zip(self.params, self.best):
                param.copy_(best)
