"""The fused scan for CUDA tensors, in Triton: one program per block of neurons walks all T steps.

Same maths, pass counts and saved tensor (the pre-reset membrane ``h``) as the C++ scan in ``cpu.py``;
the constants travel as a tensor of the input's dtype so float64 runs in float64, and fp fusion is off
so the forward rounds like the reference. With ``TRITON_INTERPRET=1`` the same kernels run on CPU
tensors through Triton's interpreter (how the equivalence tests can run without a GPU).

Status: with Triton 3.9.0 under ``TRITON_INTERPRET=1`` on CPU, all four neuron kinds, both resets, both dtypes
and all five surrogates equal the reference (spikes exactly, gradients to 1e-4 relative, the initial state's
included), for every unroll (1, 2, 4, 8) at every length T = 1..unroll and 10, and for blocks of 32 and 256. On 2026-12-06 the one-step loop (the kernels before the
unrolling) ran on an H100 (Triton 3.6, torch 2.11): the `gpu` tests passed, and the neuron alone looked latency
bound (370 us for T = 500 over 8,192 neurons, 21x a copy of the same tensor). The unrolled loop, the default
since, compiles for sm_90 with Triton 3.6 and 3.9 (checked on the CPU, issuing a block's loads before its
stores), but has not run on a GPU yet: ``SWEEP=1 scripts/gpu_spiking.sh`` checks and times it there.
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

BLOCK = 256  # neurons per program (at most; see launch_config)
UNROLL = 8  # time steps per loop iteration, whose loads are issued together (1, 2, 4 or 8)
MIN_PROGRAMS = 0  # launch_config shrinks the block (down to 32) until the grid has this many programs


def launch_config(n: int) -> tuple[int, int, int]:
    """``(block, unroll, num_warps)`` for ``n`` neurons. The scan walks time in sequence, so a program waits one
    memory latency per loop iteration: ``UNROLL`` steps per iteration divide the waits, and smaller blocks put more
    programs (SMs) on a small layer when ``MIN_PROGRAMS`` asks for them."""
    if UNROLL not in (1, 2, 4, 8) or BLOCK < 32 or BLOCK & (BLOCK - 1):  # the kernels spell out 1, 2, 4 or 8 steps
        raise ValueError(f"triton_lif: UNROLL must be 1, 2, 4 or 8 and BLOCK a power of two >= 32; got UNROLL={UNROLL}, BLOCK={BLOCK}")
    block = BLOCK
    while block > 32 and -(-n // block) < MIN_PROGRAMS:
        block //= 2
    return block, UNROLL, max(1, min(8, block // 64))


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
def _fstep(v, cur, xt, a, c, r, vl, th, vr, rc, b, w, KIND: tl.constexpr, RESET: tl.constexpr):
    """One time step of the neuron: the pre-reset membrane h, the spike s, the next v (and current)."""
    if KIND == 0:
        h = v + c * xt
    elif KIND == 1:
        h = v + a * ((vl - v) + r * xt)
    else:
        h = v + a * ((vl - v) + r * cur)
    s = tl.where((h - th) > 0.0, 1.0, 0.0).to(h.dtype)
    if RESET == 0:
        v = h - s * (h - vr)
    else:
        v = h - s * rc
    if KIND == 2:
        cur = (cur - b * cur) + w * xt
    return h, s, v, cur


@_jit
def _forward(x_ptr, z_ptr, h_ptr, v_ptr, i_ptr, p_ptr, T, N, KIND: tl.constexpr, RESET: tl.constexpr, SAVE: tl.constexpr, BLOCK_N: tl.constexpr, UNROLL: tl.constexpr):
    offs = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    mask = offs < N
    a, c, r, vl = tl.load(p_ptr + 0), tl.load(p_ptr + 1), tl.load(p_ptr + 2), tl.load(p_ptr + 3)
    th, vr, rc = tl.load(p_ptr + 4), tl.load(p_ptr + 5), tl.load(p_ptr + 6)
    b, w = tl.load(p_ptr + 7), tl.load(p_ptr + 8)
    v = tl.load(v_ptr + offs, mask=mask, other=0.0)
    cur = v * 0.0
    if KIND == 2:
        cur = tl.load(i_ptr + offs, mask=mask, other=0.0)
    # UNROLL steps per iteration: their UNROLL input loads are issued together, before any of the steps' stores
    # (which the compiler may not move loads across), so one memory latency is waited for per UNROLL steps.
    for t0 in range(0, T, UNROLL):
        tv = offs * 0 + t0  # the step as a vector: a scalar condition does not make a load mask everywhere
        x0 = tl.load(x_ptr + t0 * N + offs, mask=mask, other=0.0)
        if UNROLL >= 2:
            x1 = tl.load(x_ptr + (t0 + 1) * N + offs, mask=mask & (tv + 1 < T), other=0.0)
        if UNROLL >= 4:
            x2 = tl.load(x_ptr + (t0 + 2) * N + offs, mask=mask & (tv + 2 < T), other=0.0)
            x3 = tl.load(x_ptr + (t0 + 3) * N + offs, mask=mask & (tv + 3 < T), other=0.0)
        if UNROLL >= 8:
            x4 = tl.load(x_ptr + (t0 + 4) * N + offs, mask=mask & (tv + 4 < T), other=0.0)
            x5 = tl.load(x_ptr + (t0 + 5) * N + offs, mask=mask & (tv + 5 < T), other=0.0)
            x6 = tl.load(x_ptr + (t0 + 6) * N + offs, mask=mask & (tv + 6 < T), other=0.0)
            x7 = tl.load(x_ptr + (t0 + 7) * N + offs, mask=mask & (tv + 7 < T), other=0.0)
        v, cur = _fwd_one(z_ptr, h_ptr, t0, T, N, offs, mask, v, cur, x0, a, c, r, vl, th, vr, rc, b, w, KIND, RESET, SAVE)
        if UNROLL >= 2:
            v, cur = _fwd_one(z_ptr, h_ptr, t0 + 1, T, N, offs, mask, v, cur, x1, a, c, r, vl, th, vr, rc, b, w, KIND, RESET, SAVE)
        if UNROLL >= 4:
            v, cur = _fwd_one(z_ptr, h_ptr, t0 + 2, T, N, offs, mask, v, cur, x2, a, c, r, vl, th, vr, rc, b, w, KIND, RESET, SAVE)
            v, cur = _fwd_one(z_ptr, h_ptr, t0 + 3, T, N, offs, mask, v, cur, x3, a, c, r, vl, th, vr, rc, b, w, KIND, RESET, SAVE)
        if UNROLL >= 8:
            v, cur = _fwd_one(z_ptr, h_ptr, t0 + 4, T, N, offs, mask, v, cur, x4, a, c, r, vl, th, vr, rc, b, w, KIND, RESET, SAVE)
            v, cur = _fwd_one(z_ptr, h_ptr, t0 + 5, T, N, offs, mask, v, cur, x5, a, c, r, vl, th, vr, rc, b, w, KIND, RESET, SAVE)
            v, cur = _fwd_one(z_ptr, h_ptr, t0 + 6, T, N, offs, mask, v, cur, x6, a, c, r, vl, th, vr, rc, b, w, KIND, RESET, SAVE)
            v, cur = _fwd_one(z_ptr, h_ptr, t0 + 7, T, N, offs, mask, v, cur, x7, a, c, r, vl, th, vr, rc, b, w, KIND, RESET, SAVE)
    tl.store(v_ptr + offs, v, mask=mask)
    if KIND == 2:
        tl.store(i_ptr + offs, cur, mask=mask)


@_jit
def _fwd_one(z_ptr, h_ptr, t, T, N, offs, mask, v, cur, xt, a, c, r, vl, th, vr, rc, b, w, KIND: tl.constexpr, RESET: tl.constexpr, SAVE: tl.constexpr):
    """Step t of the forward scan: its spike (and h) stored, the state advanced; a step past T (the tail of the
    last unrolled block) stores nothing and leaves the state as it was."""
    h, s, v_new, cur_new = _fstep(v, cur, xt, a, c, r, vl, th, vr, rc, b, w, KIND, RESET)
    live = (offs * 0 + t) < T  # [BLOCK_N], all one value
    tl.store(z_ptr + t * N + offs, s, mask=mask & live)
    if SAVE:
        tl.store(h_ptr + t * N + offs, h, mask=mask & live)
    return tl.where(live, v_new, v), tl.where(live, cur_new, cur)


@_jit
def _bstep(gz_t, h, gv, gi, x_t, q, v0, acc, mask, first, a, c, r, vl, th, vr, rc, b, w, alpha, detach_keep,
           KIND: tl.constexpr, RESET: tl.constexpr, SURR: tl.constexpr, LEARN: tl.constexpr):
    """One step of the backward scan, from step t's pre-reset membrane h and the gradients flowing back into it:
    returns the input gradient of step t and the gradients carried to step t - 1 (and PLIF's decay gradient)."""
    u = h - th
    s = tl.where(u > 0.0, 1.0, 0.0).to(h.dtype)
    sg = _surrogate(u, alpha, SURR)
    if RESET == 0:
        dvdh = (1.0 - s) - detach_keep * (h - vr) * sg
    else:
        dvdh = 1.0 - detach_keep * rc * sg
    gh = gz_t * sg + gv * dvdh
    if KIND == 0:
        gx = gh * c
        gv = gh
    elif KIND == 1:
        gx = gh * (a * r)
        gv = gh * (1.0 - a)
        if LEARN:
            sp = tl.where((q - th) > 0.0, 1.0, 0.0).to(h.dtype)
            if RESET == 0:
                vp = q - sp * (q - vr)
            else:
                vp = q - sp * rc
            vp = tl.where(first, v0, vp)  # step 0's previous membrane is the initial state
            acc += tl.where(mask, gh * ((vl - vp) + r * x_t), 0.0)
    else:
        gx = gi * w
        gi = gi * (1.0 - b) + gh * (a * r)
        gv = gh * (1.0 - a)
    return gx, gv, gi, acc


@_jit
def _bwd_one(gx_ptr, t, N, offs, mask, gz_t, h, x_t, q, gv, gi, v0, acc, a, c, r, vl, th, vr, rc, b, w, alpha, detach_keep,
             KIND: tl.constexpr, RESET: tl.constexpr, SURR: tl.constexpr, LEARN: tl.constexpr):
    """Step t of the backward scan from its loaded h, spike gradient and (PLIF's learned decay) input x_t and
    previous pre-reset membrane q = h[t - 1]; t < 0 (the head of the last unrolled block) changes nothing."""
    live = (offs * 0 + t) >= 0  # [BLOCK_N], all one value
    m = mask & live
    gx, gv_new, gi_new, acc_new = _bstep(gz_t, h, gv, gi, x_t, q, v0, acc, m, (offs * 0 + t) == 0, a, c, r, vl, th, vr, rc, b, w, alpha, detach_keep, KIND, RESET, SURR, LEARN)
    tl.store(gx_ptr + t * N + offs, gx, mask=m)
    return tl.where(live, gv_new, gv), tl.where(live, gi_new, gi), acc_new


@_jit
def _bload(h_ptr, gz_ptr, x_ptr, t, N, offs, m, LEARN: tl.constexpr):
    """Step t's loads for the backward scan: its pre-reset membrane, spike gradient and (learned decay) input."""
    h = tl.load(h_ptr + t * N + offs, mask=m, other=0.0)
    g = tl.load(gz_ptr + t * N + offs, mask=m, other=0.0)
    x = h * 0.0
    if LEARN:
        x = tl.load(x_ptr + t * N + offs, mask=m, other=0.0)
    return h, g, x


@_jit
def _backward(gz_ptr, h_ptr, x_ptr, v0_ptr, gvT_ptr, giT_ptr, gx_ptr, gv0_ptr, gi0_ptr, ga_ptr, p_ptr, T, N, detach_keep,
              KIND: tl.constexpr, RESET: tl.constexpr, SURR: tl.constexpr, LEARN: tl.constexpr, BLOCK_N: tl.constexpr, UNROLL: tl.constexpr):
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
    v0 = gv * 0.0
    if LEARN:
        v0 = tl.load(v0_ptr + offs, mask=mask, other=0.0)
    acc = gv * 0.0
    # Backwards in blocks of UNROLL steps; all the block's loads (h, the spike gradient and, for a learned decay,
    # the input and the h before the block) are issued before its stores (see _forward). Step t0 - j reads
    # q = h[t0 - j - 1], which is the next step's h, or hq for the block's last step.
    for k0 in range(0, T, UNROLL):
        t0 = T - 1 - k0
        tv = offs * 0 + t0  # the step as a vector (see _forward)
        h0, g0, x0 = _bload(h_ptr, gz_ptr, x_ptr, t0, N, offs, mask, LEARN)
        if UNROLL >= 2:
            h1, g1, x1 = _bload(h_ptr, gz_ptr, x_ptr, t0 - 1, N, offs, mask & (tv >= 1), LEARN)
        if UNROLL >= 4:
            h2, g2, x2 = _bload(h_ptr, gz_ptr, x_ptr, t0 - 2, N, offs, mask & (tv >= 2), LEARN)
            h3, g3, x3 = _bload(h_ptr, gz_ptr, x_ptr, t0 - 3, N, offs, mask & (tv >= 3), LEARN)
        if UNROLL >= 8:
            h4, g4, x4 = _bload(h_ptr, gz_ptr, x_ptr, t0 - 4, N, offs, mask & (tv >= 4), LEARN)
            h5, g5, x5 = _bload(h_ptr, gz_ptr, x_ptr, t0 - 5, N, offs, mask & (tv >= 5), LEARN)
            h6, g6, x6 = _bload(h_ptr, gz_ptr, x_ptr, t0 - 6, N, offs, mask & (tv >= 6), LEARN)
            h7, g7, x7 = _bload(h_ptr, gz_ptr, x_ptr, t0 - 7, N, offs, mask & (tv >= 7), LEARN)
        hq = gv * 0.0  # h before the block (a learned decay's last step reads it)
        if LEARN:
            hq = tl.load(h_ptr + (t0 - UNROLL) * N + offs, mask=mask & (tv >= UNROLL), other=0.0)
        if UNROLL == 1:
            gv, gi, acc = _bwd_one(gx_ptr, t0, N, offs, mask, g0, h0, x0, hq, gv, gi, v0, acc, a, c, r, vl, th, vr, rc, b, w, alpha, detach_keep, KIND, RESET, SURR, LEARN)
        else:
            gv, gi, acc = _bwd_one(gx_ptr, t0, N, offs, mask, g0, h0, x0, h1, gv, gi, v0, acc, a, c, r, vl, th, vr, rc, b, w, alpha, detach_keep, KIND, RESET, SURR, LEARN)
        if UNROLL == 2:
            gv, gi, acc = _bwd_one(gx_ptr, t0 - 1, N, offs, mask, g1, h1, x1, hq, gv, gi, v0, acc, a, c, r, vl, th, vr, rc, b, w, alpha, detach_keep, KIND, RESET, SURR, LEARN)
        if UNROLL >= 4:
            gv, gi, acc = _bwd_one(gx_ptr, t0 - 1, N, offs, mask, g1, h1, x1, h2, gv, gi, v0, acc, a, c, r, vl, th, vr, rc, b, w, alpha, detach_keep, KIND, RESET, SURR, LEARN)
            gv, gi, acc = _bwd_one(gx_ptr, t0 - 2, N, offs, mask, g2, h2, x2, h3, gv, gi, v0, acc, a, c, r, vl, th, vr, rc, b, w, alpha, detach_keep, KIND, RESET, SURR, LEARN)
        if UNROLL == 4:
            gv, gi, acc = _bwd_one(gx_ptr, t0 - 3, N, offs, mask, g3, h3, x3, hq, gv, gi, v0, acc, a, c, r, vl, th, vr, rc, b, w, alpha, detach_keep, KIND, RESET, SURR, LEARN)
        if UNROLL >= 8:
            gv, gi, acc = _bwd_one(gx_ptr, t0 - 3, N, offs, mask, g3, h3, x3, h4, gv, gi, v0, acc, a, c, r, vl, th, vr, rc, b, w, alpha, detach_keep, KIND, RESET, SURR, LEARN)
            gv, gi, acc = _bwd_one(gx_ptr, t0 - 4, N, offs, mask, g4, h4, x4, h5, gv, gi, v0, acc, a, c, r, vl, th, vr, rc, b, w, alpha, detach_keep, KIND, RESET, SURR, LEARN)
            gv, gi, acc = _bwd_one(gx_ptr, t0 - 5, N, offs, mask, g5, h5, x5, h6, gv, gi, v0, acc, a, c, r, vl, th, vr, rc, b, w, alpha, detach_keep, KIND, RESET, SURR, LEARN)
            gv, gi, acc = _bwd_one(gx_ptr, t0 - 6, N, offs, mask, g6, h6, x6, h7, gv, gi, v0, acc, a, c, r, vl, th, vr, rc, b, w, alpha, detach_keep, KIND, RESET, SURR, LEARN)
            gv, gi, acc = _bwd_one(gx_ptr, t0 - 7, N, offs, mask, g7, h7, x7, hq, gv, gi, v0, acc, a, c, r, vl, th, vr, rc, b, w, alpha, detach_keep, KIND, RESET, SURR, LEARN)
    tl.store(gv0_ptr + offs, gv, mask=mask)
    if KIND == 2:
        tl.store(gi0_ptr + offs, gi, mask=mask)
    if LEARN:
        tl.store(ga_ptr + pid, tl.sum(acc, axis=0))


def _launch_options(num_warps: int) -> dict:
    # The interpreter rejects compiler options; on GPU, fp fusion off keeps the reference's rounding.
    return {} if os.environ.get("TRITON_INTERPRET") == "1" else {"enable_fp_fusion": False, "num_warps": num_warps}


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
        if (nt + 8) * max(n, 1) >= 2**31:  # the kernels index t * N + offs in 32-bit integers, t up to T + 7 (masked lanes of the last block)
            raise InputError(
                f"the Triton neuron kernel indexes in 32-bit integers, so (T + 8) x N must stay below 2**31; this input has T x N = {nt} x {n} = {x.numel():,}. "
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
        block, unroll, warps = launch_config(n)
        grid = (triton.cdiv(n, block),)
        with _on_device_of(x):  # Triton launches on the current GPU: make it the input's (train.device=cuda:1)
            _forward[grid](
                x, z, h, v, i if cuba else v, p, nt, n, KIND=spec.kind, RESET=spec.reset, SAVE=need_grad, BLOCK_N=block, UNROLL=unroll, **_launch_options(warps)
            )
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
        block, unroll, warps = launch_config(n)
        grid = (triton.cdiv(n, block),)
        ga = torch.zeros(grid[0], dtype=h.dtype, device=h.device) if ctx.learned else gv0
        gvT = gv.contiguous()
        with _on_device_of(h):
            _backward[grid](
                gz.contiguous(), h, x if x is not None else h, v0 if v0 is not None else gvT, gvT, gi.contiguous() if cuba else gvT,
                gx, gv0, gi0, ga, p, nt, n, 0.0 if spec.detach else 1.0,
                KIND=spec.kind, RESET=spec.reset, SURR=spec.surrogate, LEARN=ctx.learned, BLOCK_N=block, UNROLL=unroll, **_launch_options(warps),
            )
        CALLS["triton_backward"] += 1
        grad_a = ga.sum().to(ctx.a_dtype) if ctx.learned else None
        return gx, gv0 if ctx.needs_input_grad[1] else None, gi0 if cuba and ctx.needs_input_grad[2] else None, grad_a, None
