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
