"""Typed configs: YAML, overrides, type and key checking."""

from __future__ import annotations

import pytest

from overlooked import api
from overlooked.config import ExperimentConfig, apply_overrides, check_type, load_config, packaged_configs
from overlooked.errors import ConfigError


def test_every_packaged_config_loads_and_checks():
    names = packaged_configs()
    assert {"cnn_mnist", "mlp_mnist"} <= set(names)
    for name in names:
        api.check_config(load_config(name))


def test_overrides_apply_with_types():
    cfg = load_config("cnn_mnist", ["train.lr=1e-3", "train.epochs=3", "model.hidden=64", "train.grad_clip=40", "train.betas=[0.8, 0.9]"])
    assert cfg.train.lr == 0.001 and cfg.train.epochs == 3 and cfg.model.kwargs["hidden"] == 64
    assert cfg.train.grad_clip == 40.0 and isinstance(cfg.train.grad_clip, float)
    assert cfg.train.betas == (0.8, 0.9)
    assert cfg.data.kwargs["val_fraction"] == 0.1  # untouched


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.lrate=1", "unknown config key.*train.lrate.*allowed.*lr"),
        ("train.epochs=ten", "train.epochs: expected int"),
        ("train.optimizer=lbfgs", "expected one of 'sgd', 'adam', 'adamw'"),
        ("bogus=1", "unknown config key.*bogus"),
        ("train", "not of the form key=value"),
    ],
)
def test_bad_overrides_fail_listing_what_is_allowed(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config("cnn_mnist", [override])


def test_unknown_builder_kwarg_is_caught_before_work():
    cfg = load_config("cnn_mnist", ["model.widths=[3]"])
    with pytest.raises(ConfigError, match="model.kwargs.widths.*allowed: in_channels, channels"):
        api.check_config(cfg)
    cfg = load_config("cnn_mnist", ["model.hidden=wide"])
    with pytest.raises(ConfigError, match="model.kwargs.hidden: expected int"):
        api.check_config(cfg)


def test_round_trip_through_dict():
    cfg = load_config("mlp_mnist")
    assert ExperimentConfig.from_dict(cfg.to_dict()) == cfg
    assert apply_overrides(cfg, []) == cfg


def test_check_type_unions_and_tuples():
    assert check_type(None, int | None, "x") is None
    assert check_type([1, 2], tuple[int, int], "x") == (1, 2)
    with pytest.raises(ConfigError, match="expected 2 items"):
        check_type([1], tuple[int, int], "x")
    with pytest.raises(ConfigError, match="expected int"):
        check_type(True, int, "x")  # a bool is not an int here


def test_missing_config_names_packaged_ones():
    with pytest.raises(ConfigError, match="packaged configs: .*cnn_mnist"):
        load_config("no_such_config")


def test_override_into_a_list_of_callbacks():
    cfg = load_config("memn2n_babi1k", ["callbacks.0.kwargs.max_epochs=5"])
    assert cfg.callbacks[0].kwargs["max_epochs"] == 5
    with pytest.raises(ConfigError, match="unknown key '3'"):
        load_config("memn2n_babi1k", ["callbacks.3.kwargs.lr=1"])
