"""Evaluation: loss, accuracy and per-group accuracy of a model on one split."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from overlooked.data.base import ArrayDataset
from overlooked.objectives import hits_of, sums_over_batch

Transform = Callable[[dict[str, torch.Tensor], torch.Generator], dict[str, torch.Tensor]]


def to_device(batch: dict[str, torch.Tensor], device: str | torch.device) -> dict[str, torch.Tensor]:
    """Move every tensor of a batch to ``device``."""
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def forward(model: nn.Module, batch: dict[str, torch.Tensor], input_keys: tuple[str, ...]) -> Any:
    """Call the model on the batch's input keys, in order."""
    return model(*(batch[k] for k in input_keys))


@torch.no_grad()
def evaluate(
    model: nn.Module,
    dataset: ArrayDataset,
    input_keys: tuple[str, ...],
    target_key: str,
    objective: nn.Module,
    batch_size: int = 1000,
    device: str = "cpu",
    encoder: Transform | None = None,
    group_key: str | None = None,
    bf16: bool = False,
    seed: int = 0,
    metric: str = "top1",
) -> dict[str, Any]:
    """Mean loss per example, accuracy under ``metric`` (see :func:`overlooked.objectives.hits_of`), and
    (when ``group_key`` is set) accuracy per group value.

    The encoder, if any, draws from a generator seeded with ``seed``, so evaluation is repeatable.
    """
    was_training = model.training
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    n = len(dataset)
    total_loss, correct = 0.0, 0
    group_correct: dict[int, int] = {}
    group_count: dict[int, int] = {}
    for start in range(0, n, batch_size):
        batch = dataset[torch.arange(start, min(start + batch_size, n))]
        if encoder is not None:
            batch = encoder(batch, gen)
        batch = to_device(batch, device)
        with torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
            out = forward(model, batch, input_keys)
            loss = objective(out, batch)
        b = batch[target_key].shape[0]
        total_loss += float(loss) if sums_over_batch(objective) else float(loss) * b
        hits = hits_of(out, batch, target_key, metric)  # [B]
        correct += int(hits.sum())
        if group_key is not None:
            for g, h in zip(batch[group_key].tolist(), hits.tolist()):
                group_correct[g] = group_correct.get(g, 0) + int(h)
                group_count[g] = group_count.get(g, 0) + 1
    model.train(was_training)
    result: dict[str, Any] = {"loss": total_loss / max(n, 1), "accuracy": correct / max(n, 1), "n": n}
    if group_key is not None:
        result["group_accuracy"] = {str(g): group_correct[g] / group_count[g] for g in sorted(group_count)}
    return result
