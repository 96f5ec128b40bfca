"""Surrogates: Heaviside forward, backward = derivative of the primitive, gradcheck of that backward."""

from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck

from overlooked.registry import SURROGATES
from overlooked.spiking import surrogate as _surrogates  # noqa: F401  (registers them)

NAMES = SURROGATES.names()


def test_all_five_are_registered():
    assert set(NAMES) == {"fast_sigmoid", "atan", "sigmoid", "triangle", "rectangle"}


@pytest.mark.parametrize("name", NAMES)
def test_forward_is_heaviside(name):
    sg = SURROGATES.create(name)
    x = torch.tensor([-1.0, -1e-6, 0.0, 1e-6, 2.0])
    assert sg(x).tolist() == [0.0, 0.0, 0.0, 1.0, 1.0]


@pytest.mark.parametrize("name", NAMES)
def test_backward_equals_derivative_of_primitive(name):
    sg = SURROGATES.create(name)
    x = torch.linspace(-2, 2, 41, dtype=torch.float64).requires_grad_(True)
    (g_spike,) = torch.autograd.grad(sg(x).sum(), x)
    x2 = x.detach().clone().requires_grad_(True)
    (g_primitive,) = torch.autograd.grad(sg.primitive(x2).sum(), x2)
    off_kinks = (x.detach().abs() - 0.5 / sg.alpha).abs() > 1e-9  # the rectangle's derivative jumps there
    torch.testing.assert_close(g_spike[off_kinks], g_primitive[off_kinks])


@pytest.mark.parametrize("name", NAMES)
def test_gradcheck_of_the_custom_backward(name):
    sg = SURROGATES.create(name)
    x = (torch.rand(12, dtype=torch.float64) * 1.6 - 0.8).requires_grad_(True)
    if name in ("rectangle", "triangle"):  # keep away from the kinks where finite differences jump
        x = x.detach()
        x = torch.where((x.abs() - 0.5 / sg.alpha).abs() < 0.05, x + 0.1, x)
        x = torch.where((x.abs() - 1 / sg.alpha).abs() < 0.05, x * 0.5, x).requires_grad_(True)
    assert gradcheck(sg.smooth, (x,))


def test_unknown_surrogate_lists_known():
    with pytest.raises(KeyError, match="atan"):
        SURROGATES.create("arctangent")
