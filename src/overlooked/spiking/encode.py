"""Spike encoders: rate (Bernoulli), latency (time to first spike), delta. Seeded and deterministic.

Each takes values in [0, 1] (``[B, ...]``) or a signal over time and returns a time-first ``[T, B, ...]``
float tensor of 0/1 spikes. The generator is passed in, so the same seed gives the same spikes.
"""

from __future__ import annotations

import torch

from overlooked.registry import ENCODERS


def rate_encode(x: torch.Tensor, steps: int, generator: torch.Generator, max_rate: float = 1.0) -> torch.Tensor:
    """Bernoulli rate code: at each step a spike with probability ``max_rate * x``.

    >>> z = rate_encode(torch.tensor([0.0, 1.0]), 4, torch.Generator().manual_seed(0))
    >>> z.tolist()
    [[0.0, 1.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0]]
    """
    p = (x.clamp(0, 1) * max_rate).expand(steps, *x.shape)  # [T, B, ...]
    draws = torch.rand(p.shape, generator=generator).to(x.device)  # the generator lives on the CPU
    return (draws < p).to(x.dtype)


def latency_encode(x: torch.Tensor, steps: int, threshold: float = 0.01) -> torch.Tensor:
    """Time to first spike: one spike at step ``round((1 - x) (steps - 1))``; brighter is earlier. Values at
    or below ``threshold`` never spike.

    >>> latency_encode(torch.tensor([1.0, 0.5, 0.0]), 3).T.tolist()
    [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]
    """
    t_fire = torch.round((1 - x.clamp(0, 1)) * (steps - 1)).long()  # [B, ...]
    t = torch.arange(steps, device=x.device).view(steps, *([1] * x.dim()))
    return ((t == t_fire) & (x > threshold)).to(x.dtype)


def delta_encode(signal: torch.Tensor, threshold: float) -> torch.Tensor:
    """Delta modulation of a time-first signal ``[T, B, ...]``: a spike when the value has moved by more
    than ``threshold`` since the last spike (ON and OFF changes alike; the reference resets at each spike).

    >>> delta_encode(torch.tensor([[0.0], [0.05], [0.3], [0.35], [0.0]]), 0.2)[:, 0].tolist()
    [0.0, 0.0, 1.0, 0.0, 1.0]
    """
    ref = signal[0].clone()
    out = torch.zeros_like(signal)
    for t in range(1, signal.shape[0]):
        fire = (signal[t] - ref).abs() > threshold
        out[t] = fire.to(signal.dtype)
        ref = torch.where(fire, signal[t], ref)
    return out


class RateEncoder:
    """Batch transform for the trainer: replaces ``key`` by its ``[T, B, ...]`` Bernoulli rate code."""

    def __init__(self, steps: int = 8, key: str = "image", max_rate: float = 1.0):
        self.steps, self.key, self.max_rate = steps, key, max_rate

    def __call__(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        return {**batch, self.key: rate_encode(batch[self.key], self.steps, generator, self.max_rate)}


@ENCODERS.register("rate", family="spiking")
def rate(steps: int = 8, key: str = "image", max_rate: float = 1.0) -> RateEncoder:
    """Bernoulli rate coding over ``steps`` time steps."""
    return RateEncoder(steps, key, max_rate)
