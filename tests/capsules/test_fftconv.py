"""The frequency-domain convolution equals conv2d (values and every gradient), and CapsNet's fused backend
really uses it in float32."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck

from overlooked.capsules.fftconv import FFTConv2d, fft_conv2d
from overlooked.capsules.models import capsnet


@pytest.mark.parametrize("H, W, k, stride", [(20, 20, 9, 2), (11, 9, 3, 2), (7, 8, 3, 1), (10, 10, 5, 3)])
def test_equals_conv2d_with_gradients_float64(H, W, k, stride):
    torch.manual_seed(H + W)
    x = torch.randn(2, 3, H, W, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, k, k, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, requires_grad=True)
    ref, got = F.conv2d(x, w, b, stride=stride), fft_conv2d(x, w, b, stride)
    torch.testing.assert_close(got, ref, atol=1e-10, rtol=1e-10)  # exact up to rounding: no wrap-around
    gy = torch.randn_like(ref)
    for a, c in zip(torch.autograd.grad((ref * gy).sum(), (x, w, b)), torch.autograd.grad((got * gy).sum(), (x, w, b))):
        torch.testing.assert_close(c, a, atol=1e-10, rtol=1e-10)


def test_gradcheck():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 2, 6, 5, dtype=torch.float64, generator=gen, requires_grad=True)
    w = torch.randn(3, 2, 3, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    b = torch.randn(3, dtype=torch.float64, generator=gen, requires_grad=True)
    assert gradcheck(lambda *a: fft_conv2d(*a, 2), (x, w, b))


def test_float32_at_capsnet_size_and_the_backend_really_uses_it():
    torch.manual_seed(0)
    model = capsnet(backend="fused")
    x = torch.rand(2, 256, 20, 20)
    conv = model.primary.conv
    ref = F.conv2d(x, conv.weight, conv.bias, stride=2)
    torch.testing.assert_close(fft_conv2d(x, conv.weight, conv.bias, 2), ref, atol=1e-5, rtol=1e-4)
    y = fft_conv2d(x.requires_grad_(), conv.weight, conv.bias, 2)
    assert type(y.grad_fn).__name__ == "FFTConv2dBackward"  # the sentinel
    seen = []
    original = model.primary.forward

    def spy(inp):
        out = original(inp)
        seen.append(out.grad_fn)
        return out

    model.primary.forward = spy
    model(torch.rand(1, 1, 28, 28), torch.tensor([0]))
    chain, fn = [], seen[0]
    while fn is not None and len(chain) < 20:  # walk back from the squashed capsules to the conv
        chain.append(type(fn).__name__)
        fn = fn.next_functions[0][0] if fn.next_functions else None
    assert "FFTConv2dBackward" in chain


def test_the_dft_matrices_are_built_on_the_input_device():
    """The DFT matrices and grids were built with ``torch.arange`` on the CPU whatever the input's device, so
    the fused backend failed on a GPU with a cross-device error. Checked here without a GPU on the ``meta``
    device (shapes only; a CPU tensor meeting a meta one is an error), forward and backward. (The autocast guard
    of :func:`fft_conv2d` itself does not run on ``meta``, so the autograd function is called directly.)"""
    x = torch.randn(2, 3, 10, 10, device="meta", requires_grad=True)
    w = torch.randn(4, 3, 5, 5, device="meta", requires_grad=True)
    b = torch.randn(4, device="meta", requires_grad=True)
    y = FFTConv2d.apply(x, w, b, 2)
    assert y.device.type == "meta" and y.shape == (2, 4, 3, 3)
    grads = torch.autograd.grad(y.sum(), (x, w, b))
    assert [g.device.type for g in grads] == ["meta"] * 3
    assert [g.shape for g in grads] == [x.shape, w.shape, b.shape]


def test_computes_in_the_widest_dtype_of_its_inputs():
    """float64 weights are not cast down to a float32 input's dtype; bf16 computes in float32."""
    gen = torch.Generator().manual_seed(0)
    x, w, b = torch.randn(1, 2, 7, 7, generator=gen), torch.randn(3, 2, 3, 3, generator=gen, dtype=torch.float64), torch.randn(3, generator=gen, dtype=torch.float64)
    y = fft_conv2d(x, w, b, 2)
    assert y.dtype == torch.float64
    torch.testing.assert_close(y, F.conv2d(x.double(), w, b, stride=2), atol=1e-12, rtol=1e-12)
    assert fft_conv2d(x.bfloat16(), w.bfloat16(), b.bfloat16(), 2).dtype == torch.float32
    y = fft_conv2d(x, w.float(), b, 2)  # the bias alone in float64: it counts among the three
    assert y.dtype == torch.float64
    torch.testing.assert_close(y, F.conv2d(x.double(), w.float().double(), b, stride=2), atol=1e-12, rtol=1e-12)


def test_fft_conv2d_backward_under_autocast():
    """The backward runs under the caller's autocast: it computes in the forward's dtype (a bf16 bmm into a
    float32 output was a RuntimeError) and gives the gradients of the same call outside autocast."""
    torch.manual_seed(0)
    x, w, b = torch.randn(2, 3, 12, 12, requires_grad=True), torch.randn(5, 3, 3, 3, requires_grad=True), torch.randn(5, requires_grad=True)

    def grads(autocast):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            return torch.autograd.grad(fft_conv2d(x, w, b).square().sum(), (x, w, b))

    for want, got in zip(grads(False), grads(True)):
        assert got.dtype == torch.float32 and torch.equal(got, want)


def test_fft_conv2d_checks_its_inputs_and_refuses_a_second_derivative():
    """Shapes conv2d would refuse are named (raw reshape / bound errors before), bias=None is a zero bias as in
    conv2d, and create_graph=True names the fix (a raw 'out=... don't support automatic differentiation')."""
    from overlooked.errors import InputError

    x, w, b = torch.randn(2, 3, 10, 10), torch.randn(4, 3, 5, 5), torch.randn(4)
    for args in ((x, torch.randn(4, 3, 3, 5), b, 1), (x, torch.randn(4, 2, 5, 5), b, 1), (x, torch.randn(4, 3, 11, 11), b, 1), (x, w, b, (2, 2)), (x, w, torch.randn(3), 1)):
        with pytest.raises(InputError, match="fft_conv2d needs x .* Fix: use torch.nn.functional.conv2d"):
            fft_conv2d(*args)
    assert torch.allclose(fft_conv2d(x, w, None, 2), F.conv2d(x, w, None, stride=2), atol=1e-4)
    w = w.requires_grad_()
    with pytest.raises(RuntimeError, match="no second derivative.*torch.nn.functional.conv2d"):
        torch.autograd.grad(fft_conv2d(x, w, b).square().sum(), w, create_graph=True)
    (g,) = torch.autograd.grad(fft_conv2d(x, w, b).square().sum(), w)  # a first derivative as before
    assert torch.allclose(g, torch.autograd.grad(F.conv2d(x, w, b).square().sum(), w)[0], rtol=1e-3, atol=1e-3)
