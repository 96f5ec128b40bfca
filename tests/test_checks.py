"""overlooked.checks.is_count: one rule for "a whole number >= 1" wherever a builder takes a count."""

import numpy as np
import pytest
import torch

from overlooked.capsules.fused import check_chunk
from overlooked.capsules.matrix import _check_iterations
from overlooked.checks import check_sizes, is_count
from overlooked.data.babi import load_babi
from overlooked.data.nmnist import nmnist_small
from overlooked.errors import DataError
from overlooked.memory.memnn_objective import MemNNMargin
from overlooked.spiking.convert import ConvertedSNN


@pytest.mark.parametrize("v", [1, 7, np.int64(3), np.int32(1), torch.tensor(2).item()])
def test_counts(v):
    assert is_count(v)
    check_sizes("m", hops=v)


@pytest.mark.parametrize("v", [0, -1, 2.0, 2.5, True, False, "3", None, np.float64(2.0)])
def test_not_counts(v):
    assert not is_count(v)


def test_every_count_argument_takes_a_numpy_integer_and_returns_a_python_int():
    """A count computed with numpy (np.arange, a sweep script) is accepted and leaves as an int, so it can go
    into a JSON summary; a float or bool is refused with the argument's own message."""
    for got in (check_chunk(np.int64(4)), _check_iterations(np.int64(2), None), ConvertedSNN([], steps=5)._steps(np.int64(3)), MemNNMargin(negatives=np.int64(5)).negatives):
        assert type(got) is int
    with pytest.raises(ValueError, match="chunk .* whole number >= 1, got 2.0"):
        check_chunk(2.0)
    with pytest.raises(ValueError, match="negatives must be 'all' or a positive int, got True"):
        MemNNMargin(negatives=True)


def test_dataset_counts_are_checked_before_the_files(tmp_path):
    """bins and memory_size are argument errors, named before the (here missing) files are looked for; a numpy
    integer passes the argument check and reaches the missing-file error."""
    with pytest.raises(DataError, match="bins .* whole number >= 1, got 2.0"):
        nmnist_small(str(tmp_path), bins=2.0)
    with pytest.raises(DataError, match="memory_size must be a positive int, got 0"):
        load_babi(tasks=[1], data_dir=str(tmp_path), memory_size=0)
    for call in (lambda: nmnist_small(str(tmp_path), bins=np.int64(2)), lambda: load_babi(tasks=[1], data_dir=str(tmp_path), memory_size=np.int64(10))):
        with pytest.raises(DataError) as err:
            call()
        assert "bins" not in str(err.value) and "memory_size" not in str(err.value)
