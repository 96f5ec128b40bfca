"""Pins from the mutation audit of memory/kernels.py (Python side), memory/explain.py and memory/memnn.py
(results/audits/mutants_memory_ckpt_store.yaml): hand-computed values or equality with a reference path."""

from __future__ import annotations

import pytest
import torch

from overlooked import native
from overlooked.memory import kernels


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.int64])
def test_the_cpp_kernel_refuses_tensors_other_than_float32_and_float64(dtype):
    """The kernel reads raw float/double buffers: a bf16 or half table must take the PyTorch path (checked
    before anything is built or called, so a wrong answer cannot corrupt memory)."""
    calls = dict(kernels.CALLS)
    assert not kernels.usable(torch.zeros(2, 3, dtype=dtype))
    assert kernels.CALLS == calls


@pytest.mark.skipif(native.compiler() is None, reason="no C++ compiler")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_cpp_kernel_takes_float32_and_float64_cpu_tensors(dtype):
    assert kernels.usable(torch.zeros(2, 3, dtype=dtype))
