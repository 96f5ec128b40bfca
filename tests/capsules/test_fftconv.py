"""The frequency-domain convolution equals conv2d (values and every gradient), and CapsNet's fused backend
really uses it in float32."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck

from overlooked.capsules.fftconv import fft_conv2d
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
