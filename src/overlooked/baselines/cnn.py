"""A small CNN with ReLU and average pooling, built to be converted into a spiking network.

No max pooling (a spiking max is not a sum of spikes) and no batch norm, so every layer maps to integrate-
and-fire neurons with the same weights (Diehl et al. 2015; Rueckauer et al. 2017).
"""

from __future__ import annotations

import torch
from torch import nn

from overlooked.registry import MODELS


class SmallCNN(nn.Module):
    """conv5x5(c1)-ReLU-avgpool2 -> conv5x5(c2)-ReLU-avgpool2 -> FC(hidden)-ReLU-Dropout -> FC(num_classes).

    Args:
        in_channels: input channels.
        channels: output channels of the two conv layers.
        hidden: width of the hidden fully connected layer.
        num_classes: output classes.
        image_size: input height and width (square).
        dropout: dropout before the classifier.
        bias: use biases (conversion handles them as constant input currents).
    """

    def __init__(self, in_channels: int = 1, channels: tuple[int, int] = (32, 64), hidden: int = 256, num_classes: int = 10, image_size: int = 28, dropout: float = 0.25, bias: bool = True):
        super().__init__()
        c1, c2 = channels
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, 5, padding=2, bias=bias),  # [B, c1, S, S]
            nn.ReLU(),
            nn.AvgPool2d(2),  # [B, c1, S/2, S/2]
            nn.Conv2d(c1, c2, 5, padding=2, bias=bias),  # [B, c2, S/2, S/2]
            nn.ReLU(),
            nn.AvgPool2d(2),  # [B, c2, S/4, S/4]
        )
        side = image_size // 4
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c2 * side * side, hidden, bias=bias),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes, bias=bias),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``[B, C, S, S]`` -> logits ``[B, num_classes]``."""
        return self.classifier(self.features(x))


@MODELS.register("small_cnn", family="baseline")
def small_cnn(in_channels: int = 1, channels: tuple[int, int] = (32, 64), hidden: int = 256, num_classes: int = 10, image_size: int = 28, dropout: float = 0.25, bias: bool = True) -> SmallCNN:
    """The foundation's ReLU/average-pooling CNN (the one the spiking family converts)."""
    return SmallCNN(in_channels, tuple(channels), hidden, num_classes, image_size, dropout, bias)
