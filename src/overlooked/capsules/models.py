"""Registered capsule builders and the capsule objective. With no arguments each builds the paper's model."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from overlooked.capsules import functional as CF
from overlooked.capsules.modules import CapsNet
from overlooked.registry import MODELS, OBJECTIVES


@MODELS.register("capsnet", family="capsules", paper="Sabour et al. 2017, arXiv 1710.09829", input_keys=("image", "label"))
def capsnet(in_channels: int = 1, image_size: int = 28, num_classes: int = 10, iterations: int = 3, decoder: bool = True, detach_intermediate: bool = False, backend: str = "reference") -> CapsNet:
    """CapsNet on MNIST: 8,215,568 parameters with the decoder, 6,804,224 without. ``backend="fused"`` is the
    fast CPU path (same maths, tested equal)."""
    return CapsNet(in_channels, image_size, num_classes, iterations, decoder, detach_intermediate, backend)


class CapsuleLoss(nn.Module):
    """Margin loss plus ``recon_weight`` x the sum of squared reconstruction errors (§3-4.1), both per
    example, averaged over the batch (``reduction='mean'``) or summed."""

    def __init__(self, target_key: str = "label", image_key: str = "image", m_plus: float = 0.9, m_minus: float = 0.1, lam: float = 0.5, recon_weight: float = 0.0005, reduction: str = "mean"):
        super().__init__()
        self.target_key, self.image_key = target_key, image_key
        self.m_plus, self.m_minus, self.lam, self.recon_weight, self.reduction = m_plus, m_minus, lam, recon_weight, reduction

    def forward(self, output: dict[str, torch.Tensor], batch: dict[str, Any]) -> torch.Tensor:
        loss = CF.margin_loss(output["logits"].float(), batch[self.target_key], self.m_plus, self.m_minus, self.lam)  # [B]
        if "reconstruction" in output and self.recon_weight > 0:
            target = batch[self.image_key].flatten(1).to(output["reconstruction"].dtype)
            loss = loss + self.recon_weight * ((output["reconstruction"] - target) ** 2).sum(-1).float()
        return loss.mean() if self.reduction == "mean" else loss.sum()


@OBJECTIVES.register("capsule_margin", family="capsules")
def capsule_margin(target_key: str = "label", image_key: str = "image", m_plus: float = 0.9, m_minus: float = 0.1, lam: float = 0.5, recon_weight: float = 0.0005, reduction: str = "mean") -> CapsuleLoss:
    """CapsNet's margin loss (m+ 0.9, m- 0.1, lambda 0.5) plus 0.0005 x reconstruction SSE."""
    return CapsuleLoss(target_key, image_key, m_plus, m_minus, lam, recon_weight, reduction)
