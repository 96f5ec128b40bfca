"""The fused CPU scan: one C++ call runs all T steps forward, one runs the whole BPTT backward.

Memory passes over the ``[T, N]`` tensors (``N`` = neurons times batch): the forward reads ``x`` and
writes ``z`` and the pre-reset membrane ``h`` (3 passes; 2 when no gradient is needed, as ``h`` is then not
kept). The backward reads ``grad_z`` and ``h`` and writes ``grad_x`` (3 passes; PLIF, whose decay is learned,
also reads ``x``: 4). ``y.copy_(x)`` is 2 passes, so the bounds are 1.5x a copy for both directions.
Spikes and the post-reset membrane are recomputed from ``h`` in the backward, never stored.
"""

from __future__ import annotations

import ctypes
from collections import Counter
from typing import NamedTuple

import torch

from overlooked.spiking.kernels import _build

# How many times each fused kernel ran: the tests read it to prove the fast path was taken.
CALLS: Counter[str] = Counter()

KIND_IF, KIND_LIF, KIND_CUBA = 0, 1, 2
RESET_IDS = {"zero": 0, "subtract": 1}
SURROGATE_IDS = {"fast_sigmoid": 0, "atan": 1, "sigmoid": 2, "triangle": 3, "rectangle": 4}
DTYPE_IDS = {torch.float32: 0, torch.float64: 1}
FORWARD_PASSES_WITH_GRAD, FORWARD_PASSES_NO_GRAD, BACKWARD_PASSES, BACKWARD_PASSES_LEARNED_DECAY = 3, 2, 3, 4
MAX_CHUNK = 16384  # neurons per thread task: long contiguous rows stream best (measured 64..8192)


class ScanSpec(NamedTuple):
    """What the kernel needs: neuron kind, reset rule, surrogate and the ten packed constants.

    ``params``: ``(a = dt/tau_mem, c = dt r, r, v_leak, v_threshold, v_reset, v_threshold - v_reset,
    b = dt/tau_syn, w_in, alpha)``, in the order of the C++ ``P`` record.
    """

    kind: int
    reset: int
    surrogate: int
    detach: bool
    params: tuple[float, ...]


def chunk_size(n: int, threads: int) -> int:
    """Neurons per task: an even split over the threads, rounded to 16, at most :data:`MAX_CHUNK`."""
    per = -(-n // max(threads, 1))
    return max(16, min(MAX_CHUNK, -(-per // 16) * 16))


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


class CppNeuronScan(torch.autograd.Function):
    """``(x [T, *S], v0 [*S], i0 [*S] | None, a 0-dim | None, spec) -> (z [T, *S], v_T [*S], i_T [*S])``.

    ``i`` is the synaptic current of CubaLIF (an empty tensor for IF/LIF). ``a`` is given as a tensor only
    when the decay ``dt / tau_mem`` is learned (PLIF); its gradient is then reduced in float64.
    """

    @staticmethod
    def forward(ctx, x, v0, i0, a, spec: ScanSpec):  # type: ignore[override]
        lib = _build.load()
        x = x.contiguous()
        nt, n = x.shape[0], x[0].numel() if x.shape[0] else v0.numel()
        params = list(spec.params)
        if a is not None:
            params[0] = float(a.detach())
        pp = (ctypes.c_double * 10)(*params)
        need_grad = any(ctx.needs_input_grad[:4])
        z = torch.empty_like(x)
        h = torch.empty_like(x) if need_grad else None
        v = v0.detach().to(x.dtype).contiguous().clone()
        i = i0.detach().to(x.dtype).contiguous().clone() if spec.kind == KIND_CUBA else x.new_empty(0)
        threads = torch.get_num_threads()
        ch = chunk_size(n, threads)
        rc = lib.ovl_neuron_forward(DTYPE_IDS[x.dtype], spec.kind, spec.reset, _ptr(x), _ptr(z), _ptr(h), _ptr(v), _ptr(i) if spec.kind == KIND_CUBA else None, nt, n, ch, pp, threads)
        if rc != 0:
            raise RuntimeError(f"C++ neuron forward rejected kind={spec.kind} reset={spec.reset} dtype={x.dtype}")
        CALLS["cpp_forward"] += 1
        if need_grad:
            learned = a is not None and ctx.needs_input_grad[3]
            ctx.save_for_backward(h, x if learned else None, v0.detach().to(x.dtype).contiguous() if learned else None)
            ctx.spec, ctx.params, ctx.ch, ctx.learned = spec, params, ch, learned
            ctx.a_dtype = a.dtype if a is not None else None
        if spec.kind != KIND_CUBA:
            ctx.mark_non_differentiable(i)
        return z, v, i

    @staticmethod
    def backward(ctx, gz, gv, gi):  # type: ignore[override]
        lib = _build.load()
        h, x, v0 = ctx.saved_tensors
        spec: ScanSpec = ctx.spec
        nt, n = h.shape[0], gv.numel()
        # The C++ code reads raw pointers: every tensor it reads must stay referenced until the call returns
        # (``_ptr(g.contiguous())`` would hand it the address of a copy freed at once; the gradient of
        # ``v.sum()`` is an expanded, non-contiguous tensor).
        gz, gv = gz.contiguous(), gv.contiguous()
        gi = gi.contiguous() if spec.kind == KIND_CUBA else None
        gx = torch.empty_like(h)
        gv0 = torch.empty(gv.shape, dtype=h.dtype)
        cuba = spec.kind == KIND_CUBA
        gi0 = torch.empty(gv.shape, dtype=h.dtype) if cuba else None
        nchunks = -(-n // ctx.ch)
        ga = torch.zeros(nchunks, dtype=torch.float64) if ctx.learned else None
        ga_ptr = ctypes.cast(ga.data_ptr(), ctypes.POINTER(ctypes.c_double)) if ga is not None else None
        pp = (ctypes.c_double * 10)(*ctx.params)
        rc = lib.ovl_neuron_backward(
            DTYPE_IDS[h.dtype], spec.kind, spec.reset, spec.surrogate, _ptr(gz), _ptr(h), _ptr(x), _ptr(v0),
            _ptr(gv), _ptr(gi), _ptr(gx), _ptr(gv0), _ptr(gi0), ga_ptr,
            nt, n, ctx.ch, pp, int(spec.detach), torch.get_num_threads(),
        )
        if rc != 0:
            raise RuntimeError(f"C++ neuron backward rejected kind={spec.kind} reset={spec.reset} surrogate={spec.surrogate}")
        CALLS["cpp_backward"] += 1
        grad_a = ga.sum().to(ctx.a_dtype) if ga is not None else None
        return gx, gv0 if ctx.needs_input_grad[1] else None, gi0 if ctx.needs_input_grad[2] else None, grad_a, None
