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


def test_the_registries_are_complete_without_loading_the_catalog_first():
    """A fresh interpreter: MODELS.create works on first use (it used to say "Known models: (none)"), and
    the top-level create_model / list_models work as timm's do."""
    import subprocess
    import sys

    code = (
        "from overlooked.registry import MODELS, DATASETS\n"
        "assert 'babi' in DATASETS\n"  # first: `in` alone loads the catalog too
        "assert type(MODELS.create('memn2n', vocab_size=12)).__name__ == 'MemN2N'\n"
        "import overlooked\n"
        "assert overlooked.list_models(family='memory') == ['kvmemnn', 'memn2n', 'memnn', 'memnn_am_ng_nl']\n"
        "assert overlooked.list_models('capsnet*') == ['capsnet', 'capsnet_baseline_cnn', 'capsnet_multimnist']\n"
        "assert type(overlooked.create_model('spiking_mlp', hidden=(8,), steps=2)).__name__ == 'SpikingNet'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_a_registry_of_ones_own_does_not_load_the_catalog(monkeypatch):
    from overlooked import registry

    monkeypatch.setattr(registry, "_CATALOG_LOADED", False)
    reg = Registry("widgets")
    with pytest.raises(RegistryError, match=r"Known widgets: \(none\)"):
        reg.get("gadget")
    assert "gadget" not in reg and reg.names() == []
    assert registry._CATALOG_LOADED is False  # only the library's own registries load the catalog
