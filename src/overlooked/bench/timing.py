"""Timing with warm-up and synchronisation (the nanoGPT ``bench.py`` habit)."""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Iterator

import torch


def synchronize(device: str | torch.device) -> None:
    """Wait for queued GPU work so a timer measures it (no-op on CPU)."""
    kind = torch.device(device).type
    if kind == "cuda":
        torch.cuda.synchronize(device)  # that GPU's queue: the current device may be another one
    elif kind == "mps":  # Apple GPUs queue work too
        torch.mps.synchronize()


@contextlib.contextmanager
def full_float32(device: str | torch.device) -> Iterator[None]:
    """On a CUDA ``device``, TF32 off for matmuls and cuDNN while the block runs (then put back as it was), so a
    GPU figure is of the same float32 arithmetic as the CPU's and the peers'; nothing changes on the CPU."""
    if torch.device(device).type != "cuda":
        yield
        return
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def time_call(fn: Callable[[], object], *, warmup: int = 3, repeats: int = 10, device: str = "cpu") -> dict[str, float]:
    """Run ``fn`` ``warmup`` times untimed, then ``repeats`` times timed; seconds per call.

    Returns:
        ``{"median_s", "min_s", "mean_s", "repeats"}``.
    """
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "min_s": min(times), "mean_s": statistics.fmean(times), "repeats": repeats}
