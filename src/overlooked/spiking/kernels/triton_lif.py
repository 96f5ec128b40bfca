"""The fused scan for CUDA tensors, in Triton: one program per block of neurons walks all T steps.

Same maths, pass counts and saved tensor (the pre-reset membrane ``h``) as the C++ scan in ``cpu.py``;
the constants travel as a tensor of the input's dtype so float64 runs in float64, and fp fusion is off
so the forward rounds like the reference. With ``TRITON_INTERPRET=1`` the same kernels run on CPU
tensors through Triton's interpreter (how the equivalence tests can run without a GPU).

Status (2026-11-28): with Triton 3.9.0 under ``TRITON_INTERPRET=1`` on CPU, all four neuron kinds, both
resets, both dtypes and all five surrogates equal the reference (spikes exactly, gradients to 1e-4
relative). On 2026-12-06 they ran on an H100 (Triton 3.6, torch 2.11): the `gpu` tests pass.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import torch

from overlooked.errors import InputError
from overlooked.spiking.kernels.cpu import CALLS, KIND_CUBA, ScanSpec

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU builds of torch ship no triton: the kernels below stay plain, never-called functions
    triton = tl = None

BLOCK = 256


def _jit(fn):
    return triton.jit(fn) if triton is not None else fn


@_jit
def _surrogate(u, alpha, SURR: tl.constexpr):
    if SURR == 0:  # fast sigmoid
        d = 1.0 + alpha * tl.abs(u)
        g = 1.0 / (d * d)
    elif SURR == 1:  # atan
        q = 1.5707963267948966 * alpha * u
        g = (alpha / 2.0) / (1.0 + q * q)
    elif SURR == 2:  # sigmoid
        s = tl.sigmoid(alpha * u)
        g = alpha * s * (1.0 - s)
    elif SURR == 3:  # triangle
        g = alpha * tl.maximum(1.0 - alpha * tl.abs(u), 0.0)
    else:  # rectangle
        g = tl.where(tl.abs(u) < 0.5 / alpha, alpha, 0.0 * u)
    return g


@_jit
def _forward(x_ptr, z_ptr, h_ptr, v_ptr, i_ptr, p_ptr, T, N, KIND: tl.constexpr, RESET: tl.constexpr, SAVE: tl.constexpr, BLOCK_N: tl.constexpr):
    offs = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    mask = offs < N
    a, c, r, vl = tl.load(p_ptr + 0), tl.load(p_ptr + 1), tl.load(p_ptr + 2), tl.load(p_ptr + 3)
    th, vr, rc = tl.load(p_ptr + 4), tl.load(p_ptr + 5), tl.load(p_ptr + 6)
    b, w = tl.load(p_ptr + 7), tl.load(p_ptr + 8)
    v = tl.load(v_ptr + offs, mask=mask, other=0.0)
    cur = v * 0.0
    if KIND == 2:
        cur = tl.load(i_ptr + offs, mask=mask, other=0.0)
    for t in range(T):
        xt = tl.load(x_ptr + t * N + offs, mask=mask, other=0.0)
        if KIND == 0:
            h = v + c * xt
        elif KIND == 1:
            h = v + a * ((vl - v) + r * xt)
        else:
            h = v + a * ((vl - v) + r * cur)
        s = tl.where((h - th) > 0.0, 1.0, 0.0).to(h.dtype)
        tl.store(z_ptr + t * N + offs, s, mask=mask)
        if SAVE:
            tl.store(h_ptr + t * N + offs, h, mask=mask)
        if RESET == 0:
            v = h - s * (h - vr)
        else:
            v = h - s * rc
        if KIND == 2:
            cur = (cur - b * cur) + w * xt
    tl.store(v_ptr + offs, v, mask=mask)
    if KIND == 2:
        tl.store(i_ptr + offs, cur, mask=mask)


@_jit
def _backward(gz_ptr, h_ptr, x_ptr, v0_ptr, gvT_ptr, giT_ptr, gx_ptr, gv0_ptr, gi0_ptr, ga_ptr, p_ptr, T, N, detach_keep,
              KIND: tl.constexpr, RESET: tl.constexpr, SURR: tl.constexpr, LEARN: tl.constexpr, BLOCK_N: tl.constexpr):
    pid = tl.program_id(0)
    offs = pid * BLOCK_N + tl.arange(0, BLOCK_N)
    mask = offs < N
    a, c, r, vl = tl.load(p_ptr + 0), tl.load(p_ptr + 1), tl.load(p_ptr + 2), tl.load(p_ptr + 3)
    th, vr, rc = tl.load(p_ptr + 4), tl.load(p_ptr + 5), tl.load(p_ptr + 6)
    b, w, alpha = tl.load(p_ptr + 7), tl.load(p_ptr + 8), tl.load(p_ptr + 9)
    gv = tl.load(gvT_ptr + offs, mask=mask, other=0.0)
    gi = gv * 0.0
    if KIND == 2:
        gi = tl.load(giT_ptr + offs, mask=mask, other=0.0)
    acc = gv * 0.0
    for k in range(T):
        t = T - 1 - k
        h = tl.load(h_ptr + t * N + offs, mask=mask, other=0.0)
        u = h - th
        s = tl.where(u > 0.0, 1.0, 0.0).to(h.dtype)
        sg = _surrogate(u, alpha, SURR)
        if RESET == 0:
            dvdh = (1.0 - s) - detach_keep * (h - vr) * sg
        else:
            dvdh = 1.0 - detach_keep * rc * sg
        gh = tl.load(gz_ptr + t * N + offs, mask=mask, other=0.0) * sg + gv * dvdh
        if KIND == 0:
            tl.store(gx_ptr + t * N + offs, gh * c, mask=mask)
            gv = gh
        elif KIND == 1:
            tl.store(gx_ptr + t * N + offs, gh * (a * r), mask=mask)
            gv = gh * (1.0 - a)
            if LEARN:
                if t > 0:
                    q = tl.load(h_ptr + (t - 1) * N + offs, mask=mask, other=0.0)
                    sp = tl.where((q - th) > 0.0, 1.0, 0.0).to(h.dtype)
                    if RESET == 0:
                        vp = q - sp * (q - vr)
                    else:
                        vp = q - sp * rc
                else:
                    vp = tl.load(v0_ptr + offs, mask=mask, other=0.0)
                xt = tl.load(x_ptr + t * N + offs, mask=mask, other=0.0)
                acc += tl.where(mask, gh * ((vl - vp) + r * xt), 0.0)
        else:
            tl.store(gx_ptr + t * N + offs, gi * w, mask=mask)
            gi = gi * (1.0 - b) + gh * (a * r)
            gv = gh * (1.0 - a)
    tl.store(gv0_ptr + offs, gv, mask=mask)
    if KIND == 2:
        tl.store(gi0_ptr + offs, gi, mask=mask)
    if LEARN:
        tl.store(ga_ptr + pid, tl.sum(acc, axis=0))


def _launch_options() -> dict:
    # The interpreter rejects compiler options; on GPU, fp fusion off keeps the reference's rounding.
    return {} if os.environ.get("TRITON_INTERPRET") == "1" else {"enable_fp_fusion": False}


def _on_device_of(t: torch.Tensor) -> Any:
    """``torch.cuda.device(t.device)`` for a CUDA tensor (a kernel launched on another GPU than its pointers' would
    read foreign memory, unordered with their stream); nothing for the interpreter's CPU tensors."""
    return torch.cuda.device(t.device) if t.is_cuda else contextlib.nullcontext()


class TritonNeuronScan(torch.autograd.Function):
    """Same signature and outputs as :class:`overlooked.spiking.kernels.cpu.CppNeuronScan`."""

    @staticmethod
    def forward(ctx, x, v0, i0, a, spec: ScanSpec):  # type: ignore[override]
        x = x.contiguous()
        nt, n = x.shape[0], v0.numel()
        if x.numel() >= 2**31:  # the kernels index t * N + offs in 32-bit integers
            raise InputError(
                f"the Triton neuron kernel indexes fewer than 2**31 elements per call; this input has T x N = {nt} x {n} = {x.numel():,}. "
                "Fix: split the batch or the time steps, or use backend='reference'"
            )
        params = list(spec.params)
        if a is not None:
            params[0] = float(a.detach())
        p = torch.tensor(params, dtype=x.dtype, device=x.device)
        need_grad = any(ctx.needs_input_grad[:4])
        z = torch.empty_like(x)
        h = torch.empty_like(x) if need_grad else z  # h_ptr unused when SAVE is false
        v = v0.detach().to(x.dtype).contiguous().clone()
        cuba = spec.kind == KIND_CUBA
        i = i0.detach().to(x.dtype).contiguous().clone() if cuba else x.new_empty(0)
        grid = (triton.cdiv(n, BLOCK),)
        with _on_device_of(x):  # Triton launches on the current GPU: make it the input's (train.device=cuda:1)
            _forward[grid](x, z, h, v, i if cuba else v, p, nt, n, KIND=spec.kind, RESET=spec.reset, SAVE=need_grad, BLOCK_N=BLOCK, **_launch_options())
        CALLS["triton_forward"] += 1
        if need_grad:
            learned = a is not None and ctx.needs_input_grad[3]
            ctx.save_for_backward(h, x if learned else None, v0.detach().to(x.dtype).contiguous() if learned else None, p)
            ctx.spec, ctx.learned = spec, learned
            ctx.a_dtype = a.dtype if a is not None else None
        if not cuba:
            ctx.mark_non_differentiable(i)
        return z, v, i

    @staticmethod
    def backward(ctx, gz, gv, gi):  # type: ignore[override]
        h, x, v0, p = ctx.saved_tensors
        spec: ScanSpec = ctx.spec
        nt, n = h.shape[0], gv.numel()
        cuba = spec.kind == KIND_CUBA
        gx = torch.empty_like(h)
        gv0 = torch.empty(gv.shape, dtype=h.dtype, device=h.device)
        gi0 = torch.empty_like(gv0) if cuba else gv0
        grid = (triton.cdiv(n, BLOCK),)
        ga = torch.zeros(grid[0], dtype=h.dtype, device=h.device) if ctx.learned else gv0
        gvT = gv.contiguous()
        with _on_device_of(h):
            _backward[grid](
                gz.contiguous(), h, x if x is not None else h, v0 if v0 is not None else gvT, gvT, gi.contiguous() if cuba else gvT,
                gx, gv0, gi0, ga, p, nt, n, 0.0 if spec.detach else 1.0,
                KIND=spec.kind, RESET=spec.reset, SURR=spec.surrogate, LEARN=ctx.learned, BLOCK_N=BLOCK, **_launch_options(),
            )
        CALLS["triton_backward"] += 1
        grad_a = ga.sum().to(ctx.a_dtype) if ctx.learned else None
        return gx, gv0 if ctx.needs_input_grad[1] else None, gi0 if cuba and ctx.needs_input_grad[2] else None, grad_a, None
