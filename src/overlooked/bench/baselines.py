"""Throughput of the plain baselines (MLP, small CNN) through the trainer's own step function."""

from __future__ import annotations

from typing import Any

import torch

from overlooked.bench.timing import full_float32, time_call
from overlooked.config import TrainConfig
from overlooked.objectives import CrossEntropy
from overlooked.registry import BENCHMARKS, MODELS
from overlooked.train.trainer import build_optimizer, train_step


def step_throughput(model_name: str, batch_size: int, *, repeats: int, device: str = "cpu", bf16: bool = False) -> list[dict[str, Any]]:
    """Training and inference images/s of ``model_name`` on MNIST-shaped input ``[B, 1, 28, 28]``.

    Timing does not depend on pixel values, so the input is seeded noise and no data is needed.
    """
    torch.manual_seed(0)
    model = MODELS.create(model_name).to(device)
    cfg = TrainConfig(optimizer="adam", lr=1e-3, bf16=bf16, device=device)
    optimizer = build_optimizer(cfg, model.parameters())
    batch = {"image": torch.rand(batch_size, 1, 28, 28, device=device), "label": torch.randint(0, 10, (batch_size,), device=device)}
    objective = CrossEntropy()
    model.train()
    train = time_call(lambda: train_step(model, batch, ("image",), objective, optimizer, cfg), repeats=repeats, device=device)
    model.eval()

    def infer() -> None:
        with torch.no_grad(), torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
            model(batch["image"])

    inference = time_call(infer, repeats=repeats, device=device)
    tag = f"{model_name} {'bf16' if bf16 else 'fp32'} batch {batch_size}"
    return [
        {"name": f"{tag} train", "value": batch_size / train["median_s"], "unit": "images/s", **train},
        {"name": f"{tag} infer", "value": batch_size / inference["median_s"], "unit": "images/s", **inference},
    ]


@BENCHMARKS.register("baselines")
def bench_baselines(quick: bool = False, device: str = "cpu") -> list[dict[str, Any]]:
    """MLP and small CNN, batch 128, fp32: one training step = forward, loss, backward, Adam update."""
    repeats = 5 if quick else 20
    figures: list[dict[str, Any]] = []
    with full_float32(device):  # TF32 off on a GPU: float32 arithmetic, as the CPU's
        for name in ("mlp", "small_cnn"):
            figures += step_throughput(name, 128, repeats=repeats, device=device)
    return figures
