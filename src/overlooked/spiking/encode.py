"""Spike encoders: rate (Bernoulli), latency (time to first spike), delta. Seeded and deterministic.

Each takes values in [0, 1] (``[B, ...]``) or a signal over time and returns a time-first ``[T, B, ...]``
float tensor of 0/1 spikes. The generator is passed in, so the same seed gives the same spikes.
"""

from __future__ import annotations

import math
import numbers

import torch

from overlooked.checks import is_count, is_real, reads_values
from overlooked.errors import InputError
from overlooked.registry import ENCODERS

_SLACK = 1e-6  # rounding past [0, 1] (a resampled or shifted image) is clamped, not refused


def _check_steps(steps: object, who: str) -> int:
    if not is_count(steps):
        raise InputError(f"{who}: steps (time steps of the code) must be a whole number >= 1, got {steps!r}")
    return int(steps)


def _check_intensities(x: object, who: str) -> None:
    """``x``: a float tensor of intensities in [0, 1]. An 8-bit image (0..255) or a normalised one (mean 0,
    std 1) was clamped to [0, 1] without a word: every lit pixel spiking at every step, every dark one never."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        got = f"{x.dtype} tensor" if isinstance(x, torch.Tensor) else type(x).__name__
        raise InputError(f"{who} takes float intensities in [0, 1]; got a {got}. Fix: x.float() / 255 for an 8-bit image")
    if reads_values(x) and x.numel():
        lo, hi = float(x.min()), float(x.max())
        if math.isnan(lo) or math.isnan(hi) or lo < -_SLACK or hi > 1 + _SLACK:
            raise InputError(
                f"{who} takes intensities in [0, 1] (a spike probability per step); got values in [{lo:g}, {hi:g}]. Fix: "
                "x / 255 for an image in 0..255, and no mean/std normalisation before a rate or latency code"
            )


def rate_encode(x: torch.Tensor, steps: int, generator: torch.Generator, max_rate: float = 1.0) -> torch.Tensor:
    """Bernoulli rate code: at each step a spike with probability ``max_rate * x``, for ``x`` float in [0, 1]
    (values outside it are refused: an 8-bit or normalised image would saturate) and ``max_rate`` in (0, 1].

    >>> z = rate_encode(torch.tensor([0.0, 1.0]), 4, torch.Generator().manual_seed(0))
    >>> z.tolist()
    [[0.0, 1.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0]]
    """
    steps = _check_steps(steps, "rate_encode")
    _check_max_rate(max_rate)
    _check_intensities(x, "rate_encode")
    p = (x.clamp(0, 1) * max_rate).expand(steps, *x.shape)  # [T, B, ...]
    draws = torch.rand(p.shape, generator=generator).to(x.device)  # the generator lives on the CPU
    return (draws < p).to(x.dtype)


def latency_encode(x: torch.Tensor, steps: int, threshold: float = 0.01) -> torch.Tensor:
    """Time to first spike: one spike at step ``round((1 - x) (steps - 1))``; brighter is earlier. Values at
    or below ``threshold`` never spike.

    >>> latency_encode(torch.tensor([1.0, 0.5, 0.0]), 3).T.tolist()
    [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]
    """
    steps = _check_steps(steps, "latency_encode")
    _check_threshold(threshold, "latency_encode", "an intensity at or below it never spikes", upper=1.0)
    _check_intensities(x, "latency_encode")
    t_fire = torch.round((1 - x.clamp(0, 1)) * (steps - 1)).long()  # [B, ...]
    t = torch.arange(steps, device=x.device).view(steps, *([1] * x.dim()))
    return ((t == t_fire) & (x > threshold)).to(x.dtype)


def delta_encode(signal: torch.Tensor, threshold: float) -> torch.Tensor:
    """Delta modulation of a time-first signal ``[T, B, ...]``: a spike when the value has moved by more
    than ``threshold`` since the last spike (ON and OFF changes alike; the reference resets at each spike).

    >>> delta_encode(torch.tensor([[0.0], [0.05], [0.3], [0.35], [0.0]]), 0.2)[:, 0].tolist()
    [0.0, 0.0, 1.0, 0.0, 1.0]
    """
    if not isinstance(signal, torch.Tensor) or not signal.is_floating_point() or signal.dim() < 1 or signal.shape[0] == 0:
        got = f"{signal.dtype} {list(signal.shape)}" if isinstance(signal, torch.Tensor) else type(signal).__name__
        raise InputError(f"delta_encode takes a float signal [T, ...] with T >= 1 steps, time first; got {got}")
    _check_threshold(threshold, "delta_encode", "the change that makes a spike")
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
        self.steps, self.key, self.max_rate = _check_steps(steps, "rate encoder"), key, _check_max_rate(max_rate)

    def __call__(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        return {**batch, self.key: rate_encode(batch_value(batch, self.key, "rate"), self.steps, generator, self.max_rate)}


def _check_threshold(threshold: object, name: str, meaning: str, upper: float | None = None) -> None:
    """A threshold of finite numbers >= 0 (and below ``upper``): a number of any real type, or a tensor (one
    per feature); a negative one spikes at every step, NaN never."""
    rule = ">= 0" if upper is None else f"in [0, {upper:g})"
    if isinstance(threshold, torch.Tensor) and threshold.is_floating_point():
        values = threshold.detach()
        if not reads_values(values):  # meta tensors, a GPU's, a torch.func transform's: not read here
            return
        ok = bool(torch.isfinite(values).all()) and (values.numel() == 0 or (float(values.min()) >= 0 and (upper is None or float(values.max()) < upper)))
    else:
        ok = isinstance(threshold, numbers.Real) and not isinstance(threshold, bool) and math.isfinite(threshold) and threshold >= 0 and (upper is None or threshold < upper)
    if not ok:
        raise InputError(f"{name}: threshold ({meaning}) must be a finite number {rule} (or a float tensor of them), got {threshold!r}")


def _check_max_rate(max_rate: object) -> float:
    if not (is_real(max_rate) and 0 < max_rate <= 1):
        raise InputError(f"max_rate (the spike probability per step of an intensity of 1) must be in (0, 1], got {max_rate!r}")
    return float(max_rate)


def batch_value(batch: dict[str, torch.Tensor], key: str, encoder: str) -> torch.Tensor:
    """``batch[key]`` for an encoder, or an InputError naming the keys the batch has (a KeyError before)."""
    if key not in batch:
        raise InputError(f"the {encoder} encoder reads the batch key {key!r}, which this dataset's batches do not have ({', '.join(sorted(batch))}). Fix: encoder.kwargs.key=<one of those>")
    return batch[key]


@ENCODERS.register("rate", family="spiking")
def rate(steps: int = 8, key: str = "image", max_rate: float = 1.0) -> RateEncoder:
    """Bernoulli rate coding over ``steps`` time steps."""
    return RateEncoder(steps, key, max_rate)
