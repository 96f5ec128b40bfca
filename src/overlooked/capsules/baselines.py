"""The CNN baselines of Sabour et al. 2017 (§5 and §6), registered beside CapsNet.

The layer layouts are the ones that reproduce the published parameter counts exactly (see
``../shared/reference/paper_numbers.md`` §2.2): *same* padding everywhere, biases on every layer.
"""

from __future__ import annotations

import torch
from torch import nn

from overlooked.capsules.modules import check_image
from overlooked.registry import MODELS


class BaselineCNN(nn.Module):
    """MNIST baseline: conv 5x5 256, 256, 128 (same padding, ReLU, no pooling), FC 328, FC 192, dropout, FC 10.

    35,445,522 parameters on 28x28 input: convs 6,656 + 1,638,656 + 819,328; FC 100,352->328 32,915,784;
    328->192 63,168; 192->10 1,930.
    """

    def __init__(self, in_channels: int = 1, image_size: int = 28, num_classes: int = 10, dropout: float = 0.5):
        super().__init__()
        self.in_channels, self.image_size = in_channels, image_size
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 256, 5, padding=2),
            nn.ReLU(),
            nn.Conv2d(256, 256, 5, padding=2),
            nn.ReLU(),
            nn.Conv2d(256, 128, 5, padding=2),
            nn.ReLU(),
        )
        self.classifier = nn.Sequential(
            nn.Linear(128 * image_size * image_size, 328),
            nn.ReLU(),
            nn.Linear(328, 192),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(192, num_classes),
        )

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """``[B, C, S, S]`` -> logits ``[B, num_classes]``."""
        check_image(image, type(self).__name__, self.in_channels, self.image_size)
        return self.classifier(self.features(image).flatten(1))  # [B, 128*S*S] -> [B, K]


class MultiMNISTBaselineCNN(nn.Module):
    """MultiMNIST baseline: conv 9x9 512, max-pool 2, conv 5x5 256, max-pool 2 (same padding, ReLU), FC 1024,
    dropout, FC 10. 24,563,978 parameters on 36x36 input (36 -> 18 -> 9; 9*9*256 = 20,736 features).

    Its 10 outputs are independent per-class logits (two digits are present): train with a sigmoid loss and
    score the top two.
    """

    def __init__(self, in_channels: int = 1, image_size: int = 36, num_classes: int = 10, dropout: float = 0.5):
        super().__init__()
        self.in_channels, self.image_size = in_channels, image_size
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 512, 9, padding=4),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(512, 256, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        side = image_size // 4
        self.classifier = nn.Sequential(nn.Linear(256 * side * side, 1024), nn.ReLU(), nn.Dropout(dropout), nn.Linear(1024, num_classes))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """``[B, C, S, S]`` -> logits ``[B, num_classes]``."""
        check_image(image, type(self).__name__, self.in_channels, self.image_size)
        return self.classifier(self.features(image).flatten(1))


@MODELS.register("capsnet_baseline_cnn", family="capsules", paper="Sabour et al. 2017, §5 (baseline)", input_keys=("image",))
def capsnet_baseline_cnn(in_channels: int = 1, image_size: int = 28, num_classes: int = 10, dropout: float = 0.5) -> BaselineCNN:
    """The paper's MNIST baseline CNN (35,445,522 parameters)."""
    return BaselineCNN(in_channels, image_size, num_classes, dropout)


@MODELS.register("multimnist_baseline_cnn", family="capsules", paper="Sabour et al. 2017, §6 (baseline)", input_keys=("image",))
def multimnist_baseline_cnn(in_channels: int = 1, image_size: int = 36, num_classes: int = 10, dropout: float = 0.5) -> MultiMNISTBaselineCNN:
    """The paper's MultiMNIST baseline CNN (24,563,978 parameters)."""
    return MultiMNISTBaselineCNN(in_channels, image_size, num_classes, dropout)
