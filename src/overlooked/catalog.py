"""Imports every module that registers names, so the registries are complete. Importing does nothing else."""

from __future__ import annotations

import importlib

MODULES = (
    "overlooked.objectives",
    "overlooked.augment",
    "overlooked.baselines.mlp",
    "overlooked.baselines.cnn",
    "overlooked.data.synthetic",
    "overlooked.data.mnist",
    "overlooked.data.nmnist",
    "overlooked.data.multimnist",
    "overlooked.data.affnist",
    "overlooked.data.smallnorb",
    "overlooked.data.gas",
    "overlooked.data.babi",
    "overlooked.memory.models",
    "overlooked.memory.training",
    "overlooked.memory.memnn",
    "overlooked.memory.memnn_objective",
    "overlooked.memory.demo",
    "overlooked.bench.baselines",
    "overlooked.bench.memory",
    "overlooked.bench.capsules",
    "overlooked.bench.spiking",
    "overlooked.demos",
    "overlooked.spiking.surrogate",
    "overlooked.spiking.encode",
    "overlooked.spiking.models",
    "overlooked.spiking.demo",
    "overlooked.capsules.models",
    "overlooked.capsules.demo",
    "overlooked.baselines.lstm",
    "overlooked.baselines.transformer",
)


def load_all() -> None:
    """Import every registering module (idempotent)."""
    for name in MODULES:
        importlib.import_module(name)
