"""A plain multilayer perceptron: the ANN that spiking networks are compared against."""

from __future__ import annotations

import math

import torch
from torch import nn

from overlooked.registry import MODELS


class MLP(nn.Module):
    """Flatten, then Linear-ReLU(-Dropout) blocks, then a linear classifier.

    Args:
        input_shape: shape of one example, e.g. ``(1, 28, 28)``.
        hidden: widths of the hidden layers.
        num_classes: output classes.
        dropout: dropout probability after each hidden layer.
    """

    def __init__(self, input_shape: tuple[int, ...] = (1, 28, 28), hidden: tuple[int, ...] = (800, 800), num_classes: int = 10, dropout: float = 0.0):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(input_shape)
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``[B, *input_shape]`` -> logits ``[B, num_classes]``."""
        return self.net(x)


@MODELS.register("mlp", family="baseline")
def mlp(input_shape: tuple[int, ...] = (1, 28, 28), hidden: tuple[int, ...] = (800, 800), num_classes: int = 10, dropout: float = 0.0) -> MLP:
    """MLP with two hidden layers of 800 (Simard et al. 2003's MNIST MLP width)."""
    return MLP(input_shape=tuple(input_shape), hidden=tuple(hidden), num_classes=num_classes, dropout=dropout)
