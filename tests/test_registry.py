"""Registries: names, kwargs checking, uniform API."""

from __future__ import annotations

import re
import warnings

import pytest
import torch

from overlooked import api
from overlooked.errors import ConfigError, RegistryError
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


def test_a_name_of_your_own_that_the_library_uses_is_refused_at_registration_and_nothing_is_lost():
    """In a fresh interpreter, registering "small_cnn" before any lookup used to succeed and then break the
    first lookup half way through loading the library's modules, leaving every registry half empty for the
    rest of the process ("unknown models 'memn2n'")."""
    import subprocess
    import sys

    code = """
from overlooked.errors import ConfigError, RegistryError
from overlooked.registry import DATASETS, MODELS
try:
    @MODELS.register("small_cnn")
    def mine(num_classes: int = 10):
        return None
except RegistryError as e:
    print("refused:", e)
print("memn2n" in MODELS, "mnist" in DATASETS, len(MODELS.names()) > 10)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "refused: models 'small_cnn' is already registered (by overlooked.baselines.cnn.small_cnn); register __main__.mine under another name" in out
    assert out.strip().endswith("True True True")


def test_the_same_function_defined_again_replaces_itself():
    """A re-run notebook cell defines a new function object with the same module and name: it replaces the old
    builder instead of raising; another function under the name is still refused."""
    reg = Registry("things")

    def build():
        return 1

    reg.register("a")(build)
    first = build

    def build():  # noqa: F811 (the cell, run again)
        return 2

    reg.register("a")(build)
    assert build is not first and reg.create("a") == 2

    def other():
        return 3

    with pytest.raises(RegistryError, match=r"'a' is already registered \(by .*build\); register .*other under another name"):
        reg.register("a")(other)
    import functools

    @functools.wraps(build)  # carries build's module and name, but is other code
    def wrapper():
        return build() + 1

    with pytest.raises(RegistryError, match=r"register .*build \(wrapped by wrapper in .*test_registry.py, line \d+\) under another name"):
        reg.register("a")(wrapper)
    from overlooked.registry import _is_library

    assert _is_library(MODELS.get("memn2n")) and not _is_library(wrapper)
    assert not _is_library(functools.wraps(MODELS.get("memn2n"))(lambda **kw: None))  # a library name copied onto user code


def test_a_builder_taking_kwargs_gets_the_facts_it_names_and_a_warning_for_the_rest(monkeypatch):
    """timm-style ``def net(**kwargs)`` used to get no dataset facts at all, silently (a 10-way head on 3-class
    data); it now gets those it names and a ConfigWarning naming the others and the fix."""
    from overlooked.config import Component, ConfigWarning, ExperimentConfig

    reg = Registry("models")
    got = {}
    reg.register("kw")(lambda num_classes=10, **kwargs: got.update(num_classes=num_classes, **kwargs))
    reg.register("named")(lambda num_classes=10, input_shape=(1,): got.update(num_classes=num_classes, input_shape=input_shape))
    monkeypatch.setattr(api, "MODELS", reg)
    meta = {"num_classes": 3, "input_shape": (4,), "name": "gas", "classes": ["a"]}
    with pytest.warns(ConfigWarning, match=r"models 'kw' takes \*\*kwargs, so the dataset's input_shape=\(4,\) were not passed .* or set model.kwargs.input_shape"):
        api.build_model(ExperimentConfig(model=Component("kw")), meta)
    assert got == {"num_classes": 3}
    got.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every fact named: no warning
        api.build_model(ExperimentConfig(model=Component("named")), meta)
        api.build_model(ExperimentConfig(model=Component("kw", {"input_shape": [4]})), meta)  # given in the config
    assert got == {"num_classes": 3, "input_shape": [4]}


def test_a_fact_the_data_does_not_give_and_the_config_does_not_set_is_named_with_the_default_used(monkeypatch):
    """A 3-class dataset whose meta lacked num_classes trained a 10-way model without a word (the extension
    audit); the builder's default is still used, with a ConfigWarning naming it and both fixes."""
    from overlooked.config import Component, ConfigWarning, ExperimentConfig

    reg = Registry("models")
    got = {}
    reg.register("net")(lambda num_classes=10, input_shape=(784,), hidden=8: got.update(num_classes=num_classes, input_shape=input_shape))
    monkeypatch.setattr(api, "MODELS", reg)
    with pytest.warns(ConfigWarning, match=r"model 'net' takes num_classes, which the dataset's meta does not give .* default \(num_classes=10\) is used.*model.kwargs.num_classes"):
        api.build_model(ExperimentConfig(model=Component("net")), {"input_shape": (4,)})
    assert got == {"num_classes": 10, "input_shape": (4,)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        api.build_model(ExperimentConfig(model=Component("net", {"num_classes": 3})), {"input_shape": (4,)})  # set in the config
        api.build_model(ExperimentConfig(model=Component("net")), {"input_shape": (4,), "num_classes": 3})  # given by the data
    assert got == {"num_classes": 3, "input_shape": (4,)}


def test_a_model_registered_as_a_class_has_its_settings_checked_against_its_constructor(monkeypatch):
    """get_type_hints of the class read its attributes: nn.Module's ``training: bool`` refused a constructor
    argument ``training: str``, and ``hidden: int`` went unchecked."""
    from overlooked.config import Component, ExperimentConfig, check_component_kwargs

    reg = Registry("models")

    @reg.register("cls_net")
    class ClsNet(torch.nn.Module):
        def __init__(self, num_classes: int = 10, hidden: int = 8, training: str = "x"):
            super().__init__()

    with pytest.raises(ConfigError, match=r"model.kwargs.hidden: expected int, got str 'abc'"):
        check_component_kwargs(reg, Component("cls_net", {"hidden": "abc"}), "model")
    comp = Component("cls_net", {"training": "abc", "hidden": 3})
    check_component_kwargs(reg, comp, "model")  # the constructor's str, not nn.Module's bool attribute
    assert comp.kwargs == {"training": "abc", "hidden": 3} and ExperimentConfig(model=comp).model.name == "cls_net"


def test_reprs_name_each_models_key_settings():
    """A timm user reads a model's settings off its repr: MemN2N, MemNN and KVMemNN printed as one bare word,
    the routing layers and SpikingNet without iterations, backend or steps, PLIF's learned tau as a tensor
    with its grad_fn."""
    from overlooked.spiking import PLIF

    expected = {
        ("memn2n", "vocab_size=30"): "MemN2N(vocab_size=30, num_classes=30, memory_size=50, embed_dim=20, hops=3, encoding='pe', temporal=True, tying='adjacent', pe_length='sentence', padding='mask', fused=True, linear_start=False)",
        ("kvmemnn", "vocab_size=30"): "KVMemNN(vocab_size=30, memory_size=50, embed_dim=50, hops=2, key_encoding='pe', value_encoding='bow', query_encoding='pe')",
        ("memnn", "vocab_size=30"): "MemNN(vocab_size=30, memory_size=50, embed_dim=100, hops=2, adaptive=False, ngrams=False, nonlinear=False, time_features=True, r_features='shared')",
        ("capsnet", ""): "(digits): RoutingCaps(in_caps=1152, in_dim=8, out_caps=10, out_dim=16, iterations=3, backend=",
        ("matcaps_em_small", ""): "ConvCaps(kernel_size=3, stride=2, out_types=16, iterations=3, routing_backend=",
        ("spiking_mlp", ""): "SpikingNet(\n  input_shape=(1, 28, 28), steps=8",
    }
    for (name, kw), text in expected.items():
        model = MODELS.create(name, **({"vocab_size": 30} if kw else {}))
        assert text in repr(model), (name, repr(model)[:300])
    plif = repr(PLIF(backend="auto"))
    assert "backend='auto'" in plif and "tau_mem=0.002" in plif and "grad_fn" not in plif
    assert "PLIFCell(" in repr(PLIF(backend="auto").to("meta"))  # a learned value on meta has no number to print


def test_a_library_class_registered_by_user_code_under_a_library_name_is_refused_at_once():
    """It was taken for the catalog's own registration (judged by the class's file), accepted before any
    lookup, and every later lookup then failed blaming the library's builder. In a fresh interpreter, so the
    catalog has not loaded yet."""
    import subprocess
    import sys

    code = (
        "from overlooked.registry import MODELS\n"
        "from overlooked.capsules.modules import RoutingCaps\n"
        "try:\n"
        "    MODELS.register('mlp')(RoutingCaps)\n"
        "except Exception as e:\n"
        "    print(type(e).__name__, e)\n"
        "print(MODELS.get('mlp').__module__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert re.search(r"RegistryError models 'mlp' is already registered \(by overlooked\.baselines\.\S+\); register overlooked\.capsules\.modules\.RoutingCaps under another name", out.stdout), out.stdout
    assert out.stdout.strip().endswith("overlooked.baselines.mlp")  # the library's builder still answers
