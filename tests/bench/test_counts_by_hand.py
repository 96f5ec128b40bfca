"""The numbers every comparison table prints, pinned by hand: trainable parameters, forward FLOPs per
example (with a model's own uncounted products), the fields the fair-comparison rule requires, and the
config's lossless conversions."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from overlooked import api
from overlooked.bench.fair import UnfairComparisonError, check_fair
from overlooked.config import check_type, load_config
from overlooked.data.base import ArrayDataset, Splits


def _splits(n_in: int = 3) -> Splits:
    data = ArrayDataset({"x": torch.ones(4, n_in), "label": torch.zeros(4, dtype=torch.int64)})
    return Splits(data, data, data, ("x",), "label", {})


def test_parameters_are_the_trainable_ones_without_buffers():
    """BatchNorm1d(4): weight and bias, 8 (its 9 buffer entries are not parameters); a frozen weight is not counted."""
    assert api.count_parameters(nn.BatchNorm1d(4)) == 8
    frozen = nn.Linear(3, 2)
    frozen.weight.requires_grad_(False)
    assert api.count_parameters(frozen) == 2 and api.count_parameters(nn.Linear(3, 2)) == 8


class _WithExtra(nn.Module):
    """Linear(3, 2) (2 * 3 * 2 = 12 FLOPs an example) plus 5 products the counter cannot see."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 2)
        self.seen_training: list[bool] = []

    def forward(self, x):
        self.seen_training.append(self.training)
        return self.fc(x)

    def uncounted_flops(self, x):
        return 5 * x.shape[0]


class _Unknown(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        raise RuntimeError("an op the counter cannot follow")


def test_flops_per_example_counts_one_example_adds_the_models_own_and_never_guesses():
    model = _WithExtra()
    assert api.flops_per_example(model, _splits()) == 12 + 5
    assert model.seen_training == [False] and model.training  # counted in eval mode, the mode given back after
    assert api.flops_per_example(_Unknown(), _splits()) is None  # unknown, not 0


@pytest.mark.parametrize("field", ["params", "wall_time_s", "examples_seen", "data_fingerprint"])
def test_a_row_without_a_required_field_is_refused(field):
    row = {"model": "a", "params": 1, "flops_per_example": 2, "wall_time_s": 1.0, "examples_seen": 10, "data_fingerprint": "x", "trials": 1}
    check_fair([row, {**row, "model": "b"}], max_examples=10)
    with pytest.raises(UnfairComparisonError, match=f"b does not report {field}"):
        check_fair([row, {**row, "model": "b", field: None}], max_examples=10)


def test_lists_become_tuples_and_whole_numbers_floats_where_the_type_says():
    value = check_type([1, 2], tuple[int, ...], "x")
    assert value == (1, 2) and isinstance(value, tuple)
    cfg = load_config("transformer_babi1k", ["model.kwargs.dropout=0"])
    api.check_config(cfg)  # checks each component's kwargs against its builder, converting them in place
    assert cfg.model.kwargs["dropout"] == 0.0 and isinstance(cfg.model.kwargs["dropout"], float)
