"""Losses by name. The loss never lives inside a model's forward.

An objective is a module called as ``objective(output, batch) -> scalar loss``. ``output`` is what the model
returned: a logits tensor ``[B, C]``, or a dict with at least ``"logits"``. Its ``reduction`` attribute
('mean' or 'sum') tells the trainer how to scale the loss under data parallelism.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from overlooked.registry import OBJECTIVES


def logits_of(output: Any) -> torch.Tensor:
    """The class scores inside a model output (a tensor, or a dict holding ``"logits"``)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, dict) and "logits" in output:
        return output["logits"]
    raise TypeError(f"model output must be a tensor or a dict with 'logits', got {type(output).__name__}")


def sums_over_batch(objective: Any) -> bool:
    """True when ``objective`` sums its loss over the batch (``reduction == 'sum'``) rather than averaging."""
    return getattr(objective, "reduction", "mean") == "sum"


class CrossEntropy(nn.Module):
    """Softmax cross-entropy on integer targets.

    Args:
        target_key: batch key of the target ``[B]``.
        reduction: 'mean' over the batch, or 'sum' (MemN2N sums its cost over the batch).
        label_smoothing: as in :func:`torch.nn.functional.cross_entropy`.

    >>> obj = CrossEntropy()
    >>> round(obj(torch.zeros(2, 4), {"label": torch.tensor([0, 1])}).item(), 4)  # log(4)
    1.3863
    """

    def __init__(self, target_key: str = "label", reduction: Literal["mean", "sum"] = "mean", label_smoothing: float = 0.0):
        super().__init__()
        self.target_key = target_key
        self.reduction = reduction
        self.label_smoothing = label_smoothing

    def forward(self, output: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = logits_of(output).float()  # [B, C]
        return F.cross_entropy(logits, batch[self.target_key], reduction=self.reduction, label_smoothing=self.label_smoothing)


@OBJECTIVES.register("cross_entropy")
def cross_entropy(target_key: str = "label", reduction: Literal["mean", "sum"] = "mean", label_smoothing: float = 0.0) -> CrossEntropy:
    """Softmax cross-entropy (the default objective)."""
    return CrossEntropy(target_key=target_key, reduction=reduction, label_smoothing=label_smoothing)
