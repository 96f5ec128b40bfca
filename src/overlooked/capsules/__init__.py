"""Capsule networks: dynamic routing (Sabour et al. 2017) and EM routing (Hinton et al. 2018).

What networks are built from, importable from here: the layers and models (``CapsNet``, ``RoutingCaps``,
``MatrixCapsNet``, ...), the paper's CNN baselines, the two objectives, and the functional maths. Importing
this package registers the family's models and objectives (as :mod:`overlooked.catalog` does) and nothing else.
"""

from overlooked.capsules.baselines import BaselineCNN, MultiMNISTBaselineCNN
from overlooked.capsules.functional import compute_dtype, dynamic_routing, em_routing, margin_loss, mask_capsules, spread_loss, squash
from overlooked.capsules.fused import fused_routing
from overlooked.capsules.matrix import ClassCaps, ConvCaps, MatrixCapsNet, PrimaryMatCaps
from overlooked.capsules.models import CapsuleLoss, SpreadLoss
from overlooked.capsules.modules import CapsNet, PrimaryCaps, RoutingCaps

__all__ = [
    # dynamic routing (Sabour et al. 2017)
    "PrimaryCaps",
    "RoutingCaps",
    "CapsNet",
    "CapsuleLoss",
    # EM routing (Hinton et al. 2018)
    "PrimaryMatCaps",
    "ConvCaps",
    "ClassCaps",
    "MatrixCapsNet",
    "SpreadLoss",
    # the paper's CNN baselines
    "BaselineCNN",
    "MultiMNISTBaselineCNN",
    # the maths, written once
    "squash",
    "dynamic_routing",
    "fused_routing",
    "margin_loss",
    "mask_capsules",
    "em_routing",
    "spread_loss",
    "compute_dtype",
]
