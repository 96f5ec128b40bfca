"""Spiking neural networks: LIF-family neurons, surrogate gradients, conversion, energy, NIR.

The modules networks are built from are re-exported here (``from overlooked.spiking import LIF``): the
sequence neurons (time-first ``[T, B, ...]``), their one-step cells, and the spiking MLP/CNN building blocks.
The functional truth stays in :mod:`~overlooked.spiking.neurons` and :mod:`~overlooked.spiking.surrogate`;
conversion, NIR and the event simulator are imported from their own modules (NIR pulls in ``nir``).
"""

from overlooked.spiking.models import SpikingBlock, SpikingNet, TimeDistributed
from overlooked.spiking.modules import (
    ALIF,
    IF,
    LIF,
    PLIF,
    ALIFCell,
    CubaLIF,
    CubaLIFCell,
    IFCell,
    LIFCell,
    PLIFCell,
    RecurrentLIF,
    RecurrentLIFCell,
)

__all__ = [
    "ALIF",
    "IF",
    "LIF",
    "PLIF",
    "ALIFCell",
    "CubaLIF",
    "CubaLIFCell",
    "IFCell",
    "LIFCell",
    "PLIFCell",
    "RecurrentLIF",
    "RecurrentLIFCell",
    "SpikingBlock",
    "SpikingNet",
    "TimeDistributed",
]
