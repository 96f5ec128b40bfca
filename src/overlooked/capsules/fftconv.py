"""A strided, unpadded 2-D convolution computed in the frequency domain: the fused CPU path's PrimaryCaps conv.

The maths is ``torch.nn.functional.conv2d(x, w, b, stride)`` (cross-correlation, no padding), unchanged up to
floating-point rounding; ``tests/capsules/test_fftconv.py`` proves it, gradients included. Why: CapsNet's
PrimaryCaps conv (256 -> 256 channels, 9x9, stride 2, on 20x20 maps) is ~80 % of a training step, and its
direct backward pass costs three times its forward. In the frequency domain each of the
``F = H x (W/2 + 1)`` bins is one dense complex matmul over channels, ``[B, C] @ [C, O]``, for the forward
pass and for both gradients: about a third of the direct FLOPs, all in large GEMMs. A size-``H x W``
circular transform is exact here because no valid output, input gradient or weight gradient wraps around.

Only the transforms that are needed are taken: the image's full ``rfft2``; the kernel's and the output
gradient's spectra, and the outputs and weight gradient at their few positions, as small real matmuls with
DFT matrices; the input gradient's full ``irfft2``.
"""

from __future__ import annotations

import math

import torch

from overlooked.capsules.functional import compute_dtype
from overlooked.capsules.fused import autocast_off
from overlooked.checks import in_torch_func, is_count
from overlooked.errors import InputError


def _theta(H: int, W: int, rows: torch.Tensor, cols: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Phases ``2 pi (k1 r / H + k2 c / W)`` ``[F, P]`` of the half-spectrum bins (``rfft2`` order) at positions
    (on the positions' device)."""
    k1 = torch.arange(H, dtype=dtype, device=rows.device).repeat_interleave(W // 2 + 1)  # [F]
    k2 = torch.arange(W // 2 + 1, dtype=dtype, device=rows.device).repeat(H)
    return 2 * math.pi * (k1[:, None] * rows[None, :].to(dtype) / H + k2[:, None] * cols[None, :].to(dtype) / W)


def _forward_dft(H: int, W: int, rows: torch.Tensor, cols: torch.Tensor, sign: float, dtype: torch.dtype) -> torch.Tensor:
    """``[2F, P]``: times a real signal ``[P, n]`` at the positions, gives its spectrum ``sum e^{sign i theta}``
    as planes: rows ``:F`` the real parts, rows ``F:`` the imaginary parts."""
    th = _theta(H, W, rows, cols, dtype)  # [F, P]
    return torch.cat([torch.cos(th), sign * torch.sin(th)], 0)


def _inverse_dft(H: int, W: int, rows: torch.Tensor, cols: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``[P, 2F]``: times planar half spectra ``[2F, n]`` of real signals, gives the signals at the positions
    (``irfft2`` evaluated only there): ``(1 / HW) sum_k c_k2 Re(Y_k e^{i theta})``, with ``c = 2`` for the
    bins whose mirror image is not stored."""
    th = _theta(H, W, rows, cols, dtype)  # [F, P]
    M = W // 2 + 1
    k2 = torch.arange(M, device=rows.device).repeat(H)
    weight = torch.full((H * M,), 2.0, dtype=dtype, device=rows.device)
    weight[k2 == 0] = 1.0
    if W % 2 == 0:
        weight[k2 == W // 2] = 1.0
    weight = weight[:, None] / (H * W)
    return torch.cat([weight * torch.cos(th), -weight * torch.sin(th)], 0).T.contiguous()


def _grid(n_rows: int, n_cols: int, step: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column indices ``[n_rows * n_cols]`` of a grid with spacing ``step``, row-major, on ``device``."""
    r = torch.arange(n_rows, device=device).repeat_interleave(n_cols) * step
    c = torch.arange(n_cols, device=device).repeat(n_rows) * step
    return r, c


def _cmm(ar, ai, br, bi, conj_a: bool = False, conj_b: bool = False) -> torch.Tensor:
    """Planar complex batched matmul ``op(A) @ op(B)`` from four real ``bmm`` (transposed operands cost no
    copy) -> ``[2, F, n, m]``. ``conj_*`` conjugates that operand."""
    sa, sb = (-1.0 if conj_a else 1.0), (-1.0 if conj_b else 1.0)
    out = ar.new_empty(2, ar.shape[0], ar.shape[1], br.shape[2])
    torch.bmm(ar, br, out=out[0])
    out[0].baddbmm_(ai, bi, alpha=-sa * sb)  # re = ar br - (sa ai)(sb bi)
    torch.bmm(ar, bi, out=out[1])
    out[1].mul_(sb).baddbmm_(ai, br, alpha=sa)  # im = ar (sb bi) + (sa ai) br
    return out


class FFTConv2d(torch.autograd.Function):
    """``(x [B, C, H, W], w [O, C, k, k], b [O]) -> y [B, O, Ho, Wo]``, stride ``s``, no padding.

    Spectra are kept as real planes ``[2, F, ...]`` (real, imaginary) so that every complex product is four
    real GEMMs on contiguous matrices, and the transforms at a few positions are single GEMMs that write
    their results in the layout the next step reads.
    """

    @staticmethod
    def forward(ctx, x, w, b, stride: int):
        B, C, H, W = x.shape
        O, _, k, _ = w.shape
        Ho, Wo = (H - k) // stride + 1, (W - k) // stride + 1
        F = H * (W // 2 + 1)
        kr, kc = _grid(k, k, 1, x.device)
        orow, ocol = _grid(Ho, Wo, stride, x.device)
        X = torch.view_as_real(torch.fft.rfft2(x)).reshape(B, C, F, 2).permute(3, 2, 0, 1).contiguous()  # [2, F, B, C]
        w_p = w.permute(2, 3, 1, 0).reshape(k * k, C * O)  # [k*k, C*O]
        G = (_forward_dft(H, W, kr, kc, 1.0, x.dtype) @ w_p).view(2, F, C, O)  # conj(DFT w), [2, F, C, O]
        Y = _cmm(X[0], X[1], G[0], G[1])  # [2, F, B, O]: per bin [B, C] @ [C, O]
        y = (_inverse_dft(H, W, orow, ocol, x.dtype) @ Y.view(2 * F, B * O)).view(Ho, Wo, B, O)
        ctx.save_for_backward(X, G)
        ctx.dims = (B, C, H, W, O, k, stride, Ho, Wo)
        return (y.permute(2, 3, 0, 1) + b.view(1, O, 1, 1)).contiguous()

    @staticmethod
    def backward(ctx, gy):
        with autocast_off(ctx.saved_tensors[0]):  # the engine runs this under the caller's autocast (bf16 bmm into a float32 out)
            return FFTConv2d._backward(ctx, gy)

    @staticmethod
    def _backward(ctx, gy):
        if torch.is_grad_enabled():  # create_graph=True: the hand-written backward has no derivative of its own
            raise RuntimeError(
                "fft_conv2d's backward is hand-written and has no second derivative; for a gradient penalty or any "
                "create_graph=True use torch.nn.functional.conv2d (CapsNet: backend='reference')"
            )
        X, G = ctx.saved_tensors
        B, C, H, W, O, k, stride, Ho, Wo = ctx.dims
        dtype = X.dtype
        F = H * (W // 2 + 1)
        orow, ocol = _grid(Ho, Wo, stride, X.device)
        gy_t = gy.to(dtype).permute(2, 3, 0, 1).reshape(Ho * Wo, B * O)
        GY = (_forward_dft(H, W, orow, ocol, -1.0, dtype) @ gy_t).view(2, F, B, O)  # spectrum of the upsampled gy
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:  # transposed conv: GX = GY conj(G)^T, [2, F, B, C]
            GX = _cmm(GY[0], GY[1], G[0].transpose(1, 2), G[1].transpose(1, 2), conj_b=True)
            GX = torch.view_as_complex(GX.permute(2, 3, 1, 0).contiguous()).view(B, C, H, W // 2 + 1)
            gx = torch.fft.irfft2(GX, s=(H, W))
        if ctx.needs_input_grad[1]:  # correlation of x with gy: GW = conj(GY)^T X, [2, F, O, C]
            GW = _cmm(GY[0].transpose(1, 2), GY[1].transpose(1, 2), X[0], X[1], conj_a=True)
            kr, kc = _grid(k, k, 1, X.device)
            gw = (_inverse_dft(H, W, kr, kc, dtype) @ GW.view(2 * F, O * C)).view(k, k, O, C).permute(2, 3, 0, 1).contiguous()
        if ctx.needs_input_grad[2]:
            gb = gy.sum((0, 2, 3))
        return gx, gw, gb, None


def fft_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, stride: int = 1) -> torch.Tensor:
    """``conv2d(x, weight, bias, stride)`` with no padding, in the frequency domain, in
    :func:`~overlooked.capsules.functional.compute_dtype` of the three (float32, or float64 when any is
    float64; autocast does not reach inside). The result has that dtype. On this CPU the bf16 path is faster with oneDNN's direct bf16
    convolution than with bf16 per-bin GEMMs, so :class:`~overlooked.capsules.modules.PrimaryCaps` uses this
    only outside autocast.

    >>> x, w, b = torch.randn(2, 3, 10, 10), torch.randn(4, 3, 5, 5), torch.randn(4)
    >>> torch.allclose(fft_conv2d(x, w, b, 2), torch.nn.functional.conv2d(x, w, b, stride=2), atol=1e-4)
    True
    """
    ok = isinstance(x, torch.Tensor) and isinstance(weight, torch.Tensor) and x.dim() == 4 and weight.dim() == 4
    ok = ok and weight.shape[1] == x.shape[1] and weight.shape[2] == weight.shape[3] and weight.shape[2] <= min(x.shape[2:])
    ok = ok and (bias is None or (isinstance(bias, torch.Tensor) and tuple(bias.shape) == (weight.shape[0],)))
    if not ok or not is_count(stride):
        raise InputError(
            f"fft_conv2d needs x [B, C, H, W], a square kernel weight [O, C, k, k] with k <= H, W, bias [O] or None and an int "
            f"stride >= 1; got x {_shape(x)}, weight {_shape(weight)}, bias {_shape(bias)}, stride={stride!r}. "
            "Fix: use torch.nn.functional.conv2d for other shapes"
        )
    if bias is None:
        bias = weight.new_zeros(weight.shape[0])
    dtype = compute_dtype(x, weight, bias)
    if any(in_torch_func(t) for t in (x, weight, bias)):  # a torch.func transform: the same conv by autograd, in the
        with autocast_off(x):  # same dtype (the FFT node has no setup_context)
            return torch.nn.functional.conv2d(x.to(dtype), weight.to(dtype), bias.to(dtype), stride=stride)
    with autocast_off(x):
        if x.shape[0] == 0:  # no examples: MKL's FFT refuses an empty batch, and there is nothing to transform
            return torch.nn.functional.conv2d(x.to(dtype), weight.to(dtype), bias.to(dtype), stride=stride)
        return FFTConv2d.apply(x.to(dtype), weight.to(dtype), bias.to(dtype), stride)


def _shape(t: object) -> str:
    return f"{list(t.shape)}" if isinstance(t, torch.Tensor) else type(t).__name__
