"""Torch modules of the trainable reward heads.

``EnsembleHead``: M independent members (linear, or one hidden ReLU layer)
over standardised [prompt, response] embeddings; every parameter carries the
member on its first axis, so all members train in one pass and each can be
snapshotted on its own (per-member early stopping). ``EnsembleScorer`` is
what gets exported: ``reward`` (the members' mean), ``members`` and
``uncertainty`` (the members' standard deviation).

``AutoencoderMixture`` and ``MixtureScorer`` (the demonstrations reward)
live in ``iirl``.
"""

from __future__ import annotations

import torch
from torch import nn

_STD_FLOOR = 1e-6


def standardiser(x: torch.Tensor, drop_constant: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Column mean and inverse standard deviation (the scale) of ``x``, float32.

    A (nearly) constant column gets scale 0 with ``drop_constant``: all-MiniLM
    has dimensions that are ~1e-33 for every text, and blowing those up
    leaves gradients whose squares are float32 subnormals (very slow on x86).
    Without it the deviation is floored instead, so that an observation
    leaving a value the demonstrations never changed still stands out.
    """
    x = x.double()
    mean = x.mean(0)
    std = x.std(0, unbiased=False)
    scale = 1.0 / std.clamp(min=_STD_FLOOR)
    if drop_constant:
        scale = torch.where(std > _STD_FLOOR, scale, torch.zeros_like(scale))
    return mean.float(), scale.float()


class EnsembleHead(nn.Module):
    """M reward members: r_m(x) for x [N, in_dim] -> [N, M]."""

    def __init__(self, mean: torch.Tensor, scale: torch.Tensor, members: int, hidden: int,
                 generator: torch.Generator) -> None:
        super().__init__()
        in_dim = mean.shape[0]
        self.members, self.hidden = members, hidden
        # Standardising inside the graph keeps Adam's steps and the weight
        # decay equally sized for every input column.
        self.register_buffer("mean", mean.clone())
        self.register_buffer("scale", scale.clone())
        if hidden:
            self.w1 = nn.Parameter(_init((members, in_dim, hidden), in_dim, generator))
            self.b1 = nn.Parameter(torch.zeros(members, hidden))
            self.w2 = nn.Parameter(_init((members, hidden), hidden, generator))
        else:
            self.w1 = nn.Parameter(_init((members, in_dim), in_dim, generator))
        self.b2 = nn.Parameter(torch.zeros(members))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (x - self.mean) * self.scale
        if not self.hidden:
            return z @ self.w1.t() + self.b2
        in_dim = self.w1.shape[1]
        # One matmul for all members: [in, M*H] (constant-folded on export).
        stacked = self.w1.permute(1, 0, 2).reshape(in_dim, self.members * self.hidden)
        h = torch.relu((z @ stacked).reshape(-1, self.members, self.hidden) + self.b1)
        return (h * self.w2).sum(-1) + self.b2

    def decayed_parameters(self) -> list[nn.Parameter]:
        """Weights (decayed); biases are left alone."""
        return [self.w1] + ([self.w2] if self.hidden else [])

    def other_parameters(self) -> list[nn.Parameter]:
        return [self.b2] + ([self.b1] if self.hidden else [])


def _init(shape: tuple[int, ...], fan_in: int, generator: torch.Generator) -> torch.Tensor:
    return torch.randn(*shape, generator=generator) / fan_in ** 0.5


class EnsembleScorer(nn.Module):
    """The exported graph of an ensemble: reward [N], members [N, M], uncertainty [N]."""

    output_names = ("reward", "members", "uncertainty")

    def __init__(self, head: EnsembleHead) -> None:
        super().__init__()
        self.head = head

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        members = self.head(x)
        reward = members.mean(1)
        spread = ((members - reward.unsqueeze(1)) ** 2).mean(1).sqrt()
        return reward, members, spread
