"""Registries: names, kwargs checking, uniform API."""

from __future__ import annotations

import pytest

from overlooked import api
from overlooked.errors import RegistryError
from overlooked.registry import ALL, MODELS, Registry


def test_every_registry_lists_names():
    regs = api.registries()
    assert set(regs) == set(ALL)
    assert {"mlp", "small_cnn"} <= set(regs["models"])
    assert {"mnist", "babi", "synthetic"} <= set(regs["datasets"])


def test_unknown_name_and_kwargs_raise_with_choices():
    with pytest.raises(RegistryError, match="unknown models 'mpl'.*Did you mean 'mlp'"):
        MODELS.create("mpl")
    with pytest.raises(RegistryError, match="unknown argument.*depth.*allowed: input_shape, hidden"):
        MODELS.create("mlp", depth=3)


def test_duplicate_registration_is_refused():
    reg = Registry("things")
    reg.register("a")(lambda: 1)
    with pytest.raises(RegistryError, match="already registered"):
        reg.register("a")(lambda: 2)


def test_every_registered_model_is_in_a_family_matrix():
    """Each family's test module runs the forward/backward/no-NaN matrix over a list it filters from the
    registry by tags; a model that no filter picks up (a new family, a missing tag) would go untested."""
    import importlib.util
    from pathlib import Path

    tests = Path(__file__).parent
    matrices = {
        "memory/test_modules.py": "MEMORY_MODELS",
        "spiking/test_models.py": "SPIKING",
        "capsules/test_models.py": "CAPSULE_MODELS",
        "baselines/test_text_models.py": "TEXT_MODELS",
        "baselines/test_models.py": "IMAGE_MODELS",
    }
    covered: list[str] = []
    for path, attr in matrices.items():
        spec = importlib.util.spec_from_file_location(f"_matrix_{attr.lower()}", tests / path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        covered += getattr(module, attr)
    api.registries()
    assert sorted(covered) == sorted(MODELS.names())  # every model once, none twice
