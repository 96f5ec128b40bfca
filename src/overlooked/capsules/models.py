"""Registered capsule builders and the capsule objective. With no arguments each builds the paper's model."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from overlooked.capsules import baselines as _baselines  # noqa: F401  (registers the paper's CNN baselines)
from overlooked.capsules import functional as CF
from overlooked.capsules.matrix import MatrixCapsNet
from overlooked.capsules.modules import CapsNet
from overlooked.checks import is_count, is_real
from overlooked.errors import InputError
from overlooked.registry import CALLBACKS, MODELS, OBJECTIVES
from overlooked.train.callbacks import Callback


@MODELS.register("capsnet", family="capsules", paper="Sabour et al. 2017, arXiv 1710.09829", input_keys=("image", "label"))
def capsnet(in_channels: int = 1, image_size: int = 28, num_classes: int = 10, iterations: int = 3, decoder: bool = True, detach_intermediate: bool = False, backend: str = "reference") -> CapsNet:
    """CapsNet on MNIST: 8,215,568 parameters with the decoder, 6,804,224 without. ``backend="fused"`` is the
    fast CPU path (same maths, tested equal)."""
    return CapsNet(in_channels, image_size, num_classes, iterations, decoder, detach_intermediate, backend)


@MODELS.register("capsnet_multimnist", family="capsules", paper="Sabour et al. 2017, §6 (MultiMNIST)", input_keys=("image", "labels"))
def capsnet_multimnist(in_channels: int = 1, image_size: int = 36, num_classes: int = 10, iterations: int = 3, decoder: bool = True, detach_intermediate: bool = False, backend: str = "reference") -> CapsNet:
    """CapsNet on 36x36 MultiMNIST, reconstructing each of the two digits from its own capsule
    (11,361,808 parameters). Takes the two class indices ``"labels"`` ``[B, 2]`` for masking in training."""
    return CapsNet(in_channels, image_size, num_classes, iterations, decoder, detach_intermediate, backend, reconstruct=2)


def check_reduction(reduction: str) -> str:
    """The trainer takes one scalar loss: the batch's ``"mean"`` or ``"sum"``."""
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum' (the trainer takes one scalar loss), got {reduction!r}; per-example losses: call the functional loss (overlooked.capsules.functional)")
    return reduction


class CapsuleLoss(nn.Module):
    """Margin loss plus ``recon_weight`` x the sum of squared reconstruction errors (§3-4.1), both per
    example, averaged over the batch (``reduction='mean'``) or summed; computed in float32 (float64 for a
    float64 model).

    With several reconstructions per example (``[B, R, P]``, MultiMNIST) the targets are the single-digit
    images ``recon_keys`` (e.g. ``("image_a", "image_b")``) whose classes are ``batch[labels_key]`` ``[B, R]``
    in the same order; each reconstruction is compared with the digit of the class it was decoded from
    (``output["reconstruction_classes"]``), and their errors add (§6: "each digit reconstructed separately").
    A reconstruction of a class that is not present (a wrong guess at evaluation) is compared with the digit
    the other reconstruction did not take, so both digits are always scored.
    """

    def __init__(self, target_key: str = "label", image_key: str = "image", m_plus: float = 0.9, m_minus: float = 0.1, lam: float = 0.5, recon_weight: float = 0.0005, reduction: str = "mean", recon_keys: tuple[str, ...] = (), labels_key: str = "labels"):
        super().__init__()
        self.target_key, self.image_key, self.recon_keys, self.labels_key = target_key, image_key, tuple(recon_keys), labels_key
        self.m_plus, self.m_minus, self.lam, self.recon_weight, self.reduction = m_plus, m_minus, lam, recon_weight, check_reduction(reduction)
        ok = all(is_real(v) for v in (m_plus, m_minus, lam, recon_weight))
        if not ok or lam < 0 or recon_weight < 0 or not 0 <= m_minus < m_plus <= 1:  # lam=-1 rewarded absent-class lengths; recon_weight=-1 bad reconstructions
            raise ValueError(f"capsule_margin needs 0 <= m_minus < m_plus <= 1, lam >= 0 and recon_weight >= 0 (the defaults: 0.1, 0.9, 0.5, 0.0005); got m_minus={m_minus!r}, m_plus={m_plus!r}, lam={lam!r}, recon_weight={recon_weight!r}")

    def recon_targets(self, output: dict[str, torch.Tensor], batch: dict[str, Any]) -> torch.Tensor:
        """The image each reconstruction is scored against: ``[B, P]``, or ``[B, R, P]`` for several."""
        recon = output["reconstruction"]
        if recon.dim() == 2:
            if self.recon_keys:
                raise InputError(f"recon_keys={list(self.recon_keys)} is set but the model returns one reconstruction per example: use a model with reconstruct={len(self.recon_keys)} (capsnet_multimnist) or drop recon_keys")
            return batch[self.image_key].flatten(1)
        if not self.recon_keys:
            raise InputError("the model returns several reconstructions per example: set the objective's recon_keys to the batch keys of the single-object images (MultiMNIST: [image_a, image_b])")
        if len(self.recon_keys) != recon.shape[1]:
            raise InputError(f"recon_keys={list(self.recon_keys)} names {len(self.recon_keys)} image(s) but the model reconstructs {recon.shape[1]} per example: name one batch key per reconstructed object (MultiMNIST: [image_a, image_b])")
        targets = torch.stack([batch[k].flatten(1) for k in self.recon_keys], 1)  # [B, R, P]
        classes = output["reconstruction_classes"]  # [B, R]
        match = classes[:, :, None] == batch[self.labels_key][:, None, :]  # [B, R, R]
        matched = match.any(-1)  # [B, R]
        pick = match.float().argmax(-1)  # [B, R]: the digit of the class each reconstruction was decoded from
        if classes.shape[1] == 2:  # an unmatched (wrongly guessed) reconstruction takes the digit the other left
            p0 = torch.where(matched[:, 0], pick[:, 0], torch.where(matched[:, 1], 1 - pick[:, 1], 0))
            p1 = torch.where(matched[:, 1], pick[:, 1], torch.where(matched[:, 0], 1 - pick[:, 0], 1))
            pick = torch.stack([p0, p1], 1)
        else:
            own = torch.arange(classes.shape[1], device=classes.device).expand_as(classes)
            pick = torch.where(matched, pick, own)
        return targets.gather(1, pick[:, :, None].expand(-1, -1, targets.shape[-1]))

    def forward(self, output: dict[str, torch.Tensor], batch: dict[str, Any]) -> torch.Tensor:
        logits = output["logits"]
        loss = CF.margin_loss(logits.to(CF.compute_dtype(logits)), batch[self.target_key], self.m_plus, self.m_minus, self.lam)  # [B]
        if "reconstruction" in output and self.recon_weight > 0:
            recon, target = output["reconstruction"], self.recon_targets(output, batch)
            dtype = CF.compute_dtype(recon, target)  # float32 also under bf16; float64 stays
            sse = ((recon.to(dtype) - target.to(dtype)) ** 2).flatten(1).sum(-1)  # [B]
            loss = loss + self.recon_weight * sse
        return loss.mean() if self.reduction == "mean" else loss.sum()


@OBJECTIVES.register("capsule_margin", family="capsules")
def capsule_margin(target_key: str = "label", image_key: str = "image", m_plus: float = 0.9, m_minus: float = 0.1, lam: float = 0.5, recon_weight: float = 0.0005, reduction: str = "mean", recon_keys: list[str] | None = None, labels_key: str = "labels") -> CapsuleLoss:
    """CapsNet's margin loss (m+ 0.9, m- 0.1, lambda 0.5) plus 0.0005 x reconstruction SSE (per digit and
    added, with ``recon_keys``, for MultiMNIST)."""
    return CapsuleLoss(target_key, image_key, m_plus, m_minus, lam, recon_weight, reduction, tuple(recon_keys or ()), labels_key)


_EM_PAPER = "Hinton, Sabour, Frosst 2018, Matrix capsules with EM routing (OpenReview HJWLfGWRb)"


@MODELS.register("matcaps_em_small", family="capsules", paper=_EM_PAPER, input_keys=("image",))
def matcaps_em_small(A: int = 64, B: int = 8, C: int = 16, D: int = 16, num_classes: int = 10, iterations: int = 3, in_channels: int = 1, coordinate_addition: bool = True, routing_backend: str = "reference") -> MatrixCapsNet:
    """The paper's small matrix-capsule model: A=64, B=8, C=D=16. ``routing_backend="compiled"``: the same
    maths through ``torch.compile`` (2.3x the training throughput on the 2-core CPU; see :mod:`overlooked.capsules.matrix`)."""
    return MatrixCapsNet(A, B, C, D, num_classes, iterations, in_channels, coordinate_addition, routing_backend)


@MODELS.register("matcaps_em", family="capsules", paper=_EM_PAPER, input_keys=("image",))
def matcaps_em(A: int = 32, B: int = 32, C: int = 32, D: int = 32, num_classes: int = 10, iterations: int = 3, in_channels: int = 1, coordinate_addition: bool = True, routing_backend: str = "reference") -> MatrixCapsNet:
    """The A=B=C=D=32 matrix-capsule model (the paper's full model; a public port's 99.3 % MNIST used 2 iterations)."""
    return MatrixCapsNet(A, B, C, D, num_classes, iterations, in_channels, coordinate_addition, routing_backend)


class SpreadLoss(nn.Module):
    """Spread loss on ``output["logits"]`` (class activations); mean or sum over the batch. The margin is
    ``margin`` when given (fixed), else the one the model reports in ``output["spread_margin"]`` (which the
    ``spread_margin`` callback raises over training), else 0.2."""

    def __init__(self, target_key: str = "label", margin: float | None = None, reduction: str = "mean"):
        super().__init__()
        self.target_key, self.margin, self.reduction = target_key, margin, check_reduction(reduction)

    def forward(self, output: dict[str, torch.Tensor], batch: dict[str, Any]) -> torch.Tensor:
        margin = self.margin if self.margin is not None else output.get("spread_margin", CF.SPREAD_MARGIN_START)
        logits = output["logits"]
        loss = CF.spread_loss(logits.to(CF.compute_dtype(logits)), batch[self.target_key], margin)  # [B], float32 also under bf16; float64 stays
        return loss.mean() if self.reduction == "mean" else loss.sum()


@OBJECTIVES.register("spread", family="capsules")
def spread(target_key: str = "label", margin: float | None = None, reduction: str = "mean") -> SpreadLoss:
    """Spread loss (Hinton et al. 2018, eq. 3); ``margin`` fixes the margin (None: the model's, which the
    ``spread_margin`` callback schedules, 0.2 unscheduled)."""
    return SpreadLoss(target_key, margin, reduction)


class SpreadMarginSchedule(Callback):
    """Raise the spread loss margin linearly from ``start`` to ``end`` over ``ramp_steps`` optimiser steps,
    through the model's public :meth:`~overlooked.capsules.matrix.MatrixCapsNet.set_spread_margin`."""

    def __init__(self, ramp_steps: int, start: float = CF.SPREAD_MARGIN_START, end: float = CF.SPREAD_MARGIN_END):
        margins_ok = all(is_real(v) and v >= 0 for v in (start, end))
        if not is_count(ramp_steps) or not margins_ok:  # a negative margin makes the spread loss 0; ramp_steps=-5 jumped to the end
            raise ValueError(f"spread_margin needs ramp_steps a whole number >= 1 and margins start, end >= 0; got ramp_steps={ramp_steps!r}, start={start!r}, end={end!r}")
        self.ramp_steps, self.start, self.end = int(ramp_steps), float(start), float(end)

    def on_train_start(self, ctx: Any) -> None:
        ctx.model.set_spread_margin(CF.spread_margin(ctx.state.step, self.ramp_steps, self.start, self.end))

    def on_step_end(self, ctx: Any, loss: float) -> None:
        ctx.model.set_spread_margin(CF.spread_margin(ctx.state.step, self.ramp_steps, self.start, self.end))


@CALLBACKS.register("spread_margin", family="capsules")
def spread_margin_schedule(ramp_steps: int = 10_000, start: float = CF.SPREAD_MARGIN_START, end: float = CF.SPREAD_MARGIN_END) -> SpreadMarginSchedule:
    """The spread loss margin schedule (0.2 rising linearly to 0.9)."""
    return SpreadMarginSchedule(ramp_steps, start, end)


class StopAtValAccuracy(Callback):
    """End training at the first validation pass whose accuracy reaches ``target``: the paper's affNIST
    comparison stops CapsNet and the baseline at matched accuracy on the translated validation set (§5.2)."""

    def __init__(self, target: float):
        self.target = target

    def on_eval_end(self, ctx: Any, metrics: dict[str, Any]) -> None:
        if metrics.get("val_accuracy", 0.0) >= self.target:
            ctx.stop = True


@CALLBACKS.register("stop_at_val_accuracy", family="capsules")
def stop_at_val_accuracy(target: float = 0.9922) -> StopAtValAccuracy:
    """Stop once validation accuracy reaches ``target`` (default 99.22 %, the baseline's accuracy at which the
    paper compared the two models on affNIST, [S])."""
    return StopAtValAccuracy(target)
