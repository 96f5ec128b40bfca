"""``overlooked bench capsules``: CapsNet (and EM-routing) training and inference throughput in images/s.

The issue's setting: the exact 8,215,568-parameter CapsNet, batch 128, 3 routing iterations, decoder on,
margin + 0.0005 x reconstruction loss, Adam. One training step is the trainer's own
:func:`overlooked.train.trainer.train_step` (forward, loss, backward, Adam update), in float32 and on the
bf16 path (``train.bf16``: the convolutions and the decoder under bfloat16 autocast; routing stays float32).
Every figure says whether routing detached its non-final iterations (off here, as in the paper) and which
backend ran. Timing does not depend on pixel values, so the input is seeded noise and no data is needed.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from overlooked.bench.timing import full_float32, time_call
from overlooked.capsules.models import CapsuleLoss, SpreadLoss, capsnet, matcaps_em, matcaps_em_small
from overlooked.config import TrainConfig
from overlooked.registry import BENCHMARKS
from overlooked.train import trainer


def time_cpu(fn: Callable[[], object], *, warmup: int = 1, repeats: int = 5) -> dict[str, float]:
    """Like :func:`~overlooked.bench.timing.time_call`, but in CPU seconds of this process
    (``time.process_time``): with one thread, the time the step held a core, which stays meaningful on a
    machine shared with other jobs (wall-clock time there measures the queue). CPU work on one thread only:
    with more threads the seconds of every thread add up, and a GPU's work is not the process's CPU time."""
    _check_one_thread()
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return {"median_s": statistics.median(times), "min_s": min(times), "mean_s": statistics.fmean(times), "repeats": repeats}


def capsnet_throughput(
    *, backend: str = "fused", bf16: bool = False, batch_size: int = 128, iterations: int = 3, detach_intermediate: bool = False, repeats: int = 5, device: str = "cpu", clock: str = "wall"
) -> list[dict[str, Any]]:
    """Training and inference images/s of CapsNet on ``[B, 1, 28, 28]`` input.

    ``clock="cpu"`` times CPU seconds instead of wall seconds (see :func:`time_cpu`; use it with one thread,
    where it reads as images/s per uncontended core).

    Returns:
        Two figures (train, infer), each with ``value`` in images/s, the timing record of
        :func:`~overlooked.bench.timing.time_call`, and the setting (backend, precision, threads, detach).
    """
    _check_clock(clock, device)
    torch.manual_seed(0)
    model = capsnet(iterations=iterations, detach_intermediate=detach_intermediate, backend=backend).to(device)
    setting = {"backend": backend, "precision": "bf16" if bf16 else "fp32", "batch_size": batch_size, "iterations": iterations, "decoder": True, "detach_intermediate": detach_intermediate}
    tag = f"capsnet {backend} {setting['precision']} batch {batch_size} r={iterations} detach={'on' if detach_intermediate else 'off'}"
    return _throughput(model, CapsuleLoss(), ("image", "label"), batch_size, bf16, repeats, device, clock, setting, tag)


def em_throughput(
    *, model_name: str = "matcaps_em_small", routing_backend: str = "compiled", batch_size: int = 128, iterations: int = 2, repeats: int = 5, device: str = "cpu", clock: str = "wall"
) -> list[dict[str, Any]]:
    """Training and inference images/s of a matrix-capsule (EM routing) model on ``[B, 1, 28, 28]`` input,
    one training step being the trainer's ``train_step`` with the spread loss and Adam, in float32. The
    ``"compiled"`` backend compiles in the warm-up call (once for training, once for inference), which the
    timing leaves out."""
    builders = {"matcaps_em_small": matcaps_em_small, "matcaps_em": matcaps_em}
    if model_name not in builders:
        raise ValueError(f"model_name must be one of {sorted(builders)}, got {model_name!r}")
    _check_clock(clock, device)
    torch.manual_seed(0)
    model = builders[model_name](iterations=iterations, routing_backend=routing_backend).to(device)
    setting = {"backend": routing_backend, "precision": "fp32", "batch_size": batch_size, "iterations": iterations, "model": model_name}
    tag = f"{model_name} {routing_backend} fp32 batch {batch_size} r={iterations}"
    return _throughput(model, SpreadLoss(), ("image",), batch_size, False, repeats, device, clock, setting, tag)


def _check_clock(clock: str, device: str) -> None:
    """Before any model is built: clock='cpu' counts one CPU thread's seconds, so it runs on the CPU with one thread."""
    if clock not in ("wall", "cpu"):
        raise ValueError(f"clock must be 'wall' or 'cpu', got {clock!r}")
    if clock == "cpu" and torch.device(device).type != "cpu":
        raise ValueError(f"clock='cpu' times the CPU's work, not a {device} device's queued kernels: use clock='wall' there")
    if clock == "cpu":
        _check_one_thread()


def _check_one_thread() -> None:
    """CPU seconds count one core's time only with one thread (more threads add their seconds up)."""
    if torch.get_num_threads() != 1:
        raise ValueError(f"clock='cpu' counts one core's seconds: run with one thread (torch.set_num_threads(1)), not {torch.get_num_threads()}")


def _throughput(model: torch.nn.Module, objective: torch.nn.Module, keys: tuple[str, ...], batch_size: int, bf16: bool, repeats: int, device: str, clock: str, setting: dict[str, Any], tag: str) -> list[dict[str, Any]]:
    """Time ``trainer.train_step`` and a no-grad forward on seeded noise; two figures (train, infer) in images/s."""
    _check_clock(clock, device)
    cfg = TrainConfig(optimizer="adam", lr=1e-3, bf16=bf16, device=device)
    optimizer = trainer.build_optimizer(cfg, model.parameters())
    gen = torch.Generator().manual_seed(0)
    batch = {"image": torch.rand(batch_size, 1, 28, 28, generator=gen).to(device), "label": torch.randint(0, 10, (batch_size,), generator=gen).to(device)}
    model.train()

    def timed(fn: Callable[[], object]) -> dict[str, float]:
        return time_cpu(fn, repeats=repeats) if clock == "cpu" else time_call(fn, warmup=1, repeats=repeats, device=device)

    train = timed(lambda: trainer.train_step(model, batch, keys, objective, optimizer, cfg))
    model.eval()

    def infer() -> None:
        with torch.no_grad(), torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
            model(batch["image"])

    inference = timed(infer)
    setting = {**setting, "threads": torch.get_num_threads(), "clock": clock}
    return [
        {"name": f"{tag} train", "value": batch_size / train["median_s"], "unit": "images/s", **setting, **train},
        {"name": f"{tag} infer", "value": batch_size / inference["median_s"], "unit": "images/s", **setting, **inference},
    ]


@BENCHMARKS.register("capsules")
def bench_capsules(quick: bool = False, device: str = "cpu") -> list[dict[str, Any]]:
    """CapsNet (8,215,568 parameters), batch 128, 3 iterations, decoder on, detach off: the fused backend in
    fp32 and bf16, and the plain reference backend in fp32 for comparison; then the small EM-routing model
    (A=64, B=8, C=D=16, 2 iterations, batch 128, fp32) with compiled and reference routing."""
    repeats = 2 if quick else 5
    figures: list[dict[str, Any]] = []
    with full_float32(device):  # TF32 off on a GPU: its "fp32" figures are float32 arithmetic, as the CPU's
        for backend, bf16 in (("fused", False), ("fused", True), ("reference", False)):
            figures += capsnet_throughput(backend=backend, bf16=bf16, repeats=repeats, device=device)
        for routing_backend in ("compiled", "reference"):
            figures += em_throughput(routing_backend=routing_backend, repeats=repeats, device=device)
    return figures
