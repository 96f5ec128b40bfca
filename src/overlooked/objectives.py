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

from overlooked.registry import METRICS, OBJECTIVES


def logits_of(output: Any) -> torch.Tensor:
    """The class scores inside a model output (a tensor, or a dict holding ``"logits"``)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, dict) and "logits" in output:
        return output["logits"]
    raise TypeError(f"model output must be a tensor or a dict with 'logits', got {type(output).__name__}")


def both_correct(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The MultiMNIST metric of Sabour et al. 2017 (§6), per example: the two highest ``scores`` ``[B, K]`` are
    exactly the two classes in ``labels`` ``[B, 2]`` (order free) -> bool ``[B]``.

    >>> both_correct(torch.tensor([[0.9, 0.1, 0.8], [0.9, 0.8, 0.1]]), torch.tensor([[2, 0], [0, 2]])).tolist()
    [True, False]
    """
    top2 = scores.topk(2, dim=1).indices.sort(1).values
    return (top2 == labels.sort(1).values).all(1)


@METRICS.register("top1")
def top1(scores: torch.Tensor, batch: dict[str, torch.Tensor], target_key: str) -> torch.Tensor:
    """The arg-max class equals ``batch[target_key]`` ``[B]``."""
    return scores.argmax(-1) == batch[target_key]


@METRICS.register("both_correct")
def both_correct_metric(scores: torch.Tensor, batch: dict[str, torch.Tensor], target_key: str) -> torch.Tensor:
    """The two highest scores are the two classes in ``batch["labels"]`` ``[B, 2]`` (MultiMNIST)."""
    if "labels" not in batch:
        raise KeyError("metric 'both_correct' needs the two class indices under batch['labels'] [B, 2]; this dataset's batches hold " + ", ".join(sorted(batch)))
    return both_correct(scores, batch["labels"])


def hits_of(output: Any, batch: dict[str, torch.Tensor], target_key: str, metric: str = "top1") -> torch.Tensor:
    """Per-example correctness ``[B]`` (bool) under a dataset's metric (its ``meta["metric"]``), a name in the
    ``METRICS`` registry: ``fn(scores [B, C], batch, target_key) -> bool [B]``. The library's: ``"top1"`` (the
    arg-max class equals ``batch[target_key]``) and ``"both_correct"`` (MultiMNIST: the two highest scores are
    the two classes in ``batch["labels"]`` ``[B, 2]``); register your own with ``@METRICS.register("name")``."""
    return METRICS.get(metric)(logits_of(output), batch, target_key)


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


class MultiLabelBCE(nn.Module):
    """Sigmoid cross-entropy on a multi-hot target ``[B, C]``, summed over classes, then averaged (or summed)
    over the batch: the loss for independent per-class outputs, e.g. the MultiMNIST baseline CNN, where two
    classes are present at once.

    >>> obj = MultiLabelBCE()
    >>> round(obj(torch.zeros(1, 2), {"label": torch.tensor([[1.0, 0.0]])}).item(), 4)  # 2 log 2
    1.3863
    """

    def __init__(self, target_key: str = "label", reduction: Literal["mean", "sum"] = "mean"):
        super().__init__()
        self.target_key, self.reduction = target_key, reduction

    def forward(self, output: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = logits_of(output).float()  # [B, C]
        target = batch[self.target_key].to(logits.dtype)
        if target.shape != logits.shape:
            raise ValueError(f"multilabel_bce needs a multi-hot target shaped like the logits {tuple(logits.shape)}, got {tuple(target.shape)}")
        per_example = F.binary_cross_entropy_with_logits(logits, target, reduction="none").sum(-1)  # [B]
        return per_example.mean() if self.reduction == "mean" else per_example.sum()


@OBJECTIVES.register("multilabel_bce")
def multilabel_bce(target_key: str = "label", reduction: Literal["mean", "sum"] = "mean") -> MultiLabelBCE:
    """Sigmoid cross-entropy over independent classes (multi-hot targets)."""
    return MultiLabelBCE(target_key=target_key, reduction=reduction)
