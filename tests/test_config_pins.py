"""Behaviour of overlooked.config that the mutation audit of 2026-12-08 (results/audits/mutants_api_cli.yaml)
found unpinned, with the values worked out by hand."""

from __future__ import annotations

import pytest

from overlooked.config import MAX_RANGE, ExperimentConfig, apply_overrides, integer_range, parse_override
from overlooked.errors import ConfigError


def test_a_range_of_max_range_values_is_the_longest_accepted():
    """1..10000 lists 10,000 values (MAX_RANGE), accepted; 1..10001 and 0..10000 list 10,001, refused."""
    assert MAX_RANGE == 10_000
    values = integer_range("1..10000")
    assert len(values) == 10_000 and values[0] == 1 and values[-1] == 10_000
    for text in ("1..10001", "0..10000"):
        with pytest.raises(ConfigError, match="has 10,001 values"):
            integer_range(text)


def test_an_override_splits_at_its_first_equals_sign():
    """notes=a=b sets notes to 'a=b' (the value may hold '='; a key never does)."""
    assert parse_override("notes=a=b") == (["notes"], "a=b")
    assert parse_override("data.kwargs.path=x=1=2") == (["data", "kwargs", "path"], "x=1=2")
    cfg = apply_overrides(ExperimentConfig.from_dict({"name": "demo", "model": {"name": "mlp"}, "data": {"name": "mnist"}}), ["notes=lr=0.1 run"])
    assert cfg.notes == "lr=0.1 run"


def test_a_fixed_length_tuple_with_too_many_items_is_refused():
    """train.betas holds two numbers: three are refused by count, not cut to the first two."""
    with pytest.raises(ConfigError, match=r"train\.betas: expected 2 items, got 3"):
        ExperimentConfig.from_dict({"train": {"betas": [0.9, 0.99, 0.5]}})
    with pytest.raises(ConfigError, match=r"train\.betas: expected 2 items, got 1"):
        ExperimentConfig.from_dict({"train": {"betas": [0.9]}})
    assert ExperimentConfig.from_dict({"train": {"betas": [0.8, 0.99]}}).train.betas == (0.8, 0.99)
