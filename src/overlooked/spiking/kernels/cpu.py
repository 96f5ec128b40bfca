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


def _lib_params(params: list[float], a: torch.Tensor | None) -> ctypes.Array:
    """The packed constants for the C++ ``P`` record; a tensor decay (PLIF, or a tensor ``tau_mem``) replaces
    ``a = dt/tau_mem``."""
    values = list(params)
    if a is not None:
        values[0] = float(a.detach())
    return (ctypes.c_double * 10)(*values)


def _check_scan(x: torch.Tensor, v0: torch.Tensor, i0: torch.Tensor | None, a: torch.Tensor | None, kind: int, reset: int, surrogate: int, params: list[float]) -> None:
    """Refuse what the C++ code would read or write out of bounds (it takes raw pointers): called by the real
    and the fake implementations, so that a direct call of the operator fails here, with a message, not in C++."""
    step = tuple(x.shape[1:])
    problems = []
    if x.dim() < 1:
        problems.append(f"x must be [T, ...], got a {x.dim()}-D tensor")
    if x.dtype not in DTYPE_IDS:
        problems.append(f"x must be float32 or float64, got {x.dtype}")
    if kind not in (KIND_IF, KIND_LIF, KIND_CUBA) or reset not in RESET_IDS.values() or surrogate not in SURROGATE_IDS.values():
        problems.append(f"kind={kind}, reset={reset}, surrogate={surrogate}: kind is 0..2, reset 0..1, surrogate 0..{len(SURROGATE_IDS) - 1}")
    if len(params) != 10:
        problems.append(f"params must hold the 10 constants of ScanSpec.params, got {len(params)}")
    if tuple(v0.shape) != step:
        problems.append(f"v0 has shape {tuple(v0.shape)}, not x's per-step shape {step}")
    if kind == KIND_CUBA and (i0 is None or tuple(i0.shape) != step):
        problems.append(f"CubaLIF needs i0 of x's per-step shape {step}, got {None if i0 is None else tuple(i0.shape)}")
    if a is not None and a.numel() != 1:
        problems.append(f"a (the decay dt/tau_mem) must have one element, got shape {tuple(a.shape)}")
    if problems:
        raise ValueError("overlooked::neuron_scan_cpu: " + "; ".join(problems) + " (the layers IF, LIF, PLIF and CubaLIF build these arguments; see overlooked.spiking.kernels.run_fused)")


# The scan is a PyTorch custom operator (``torch.library``), not a bare ``autograd.Function``: its ``register_fake``
# shapes let ``torch.compile`` trace through it without a graph break and with dynamic shapes, and a forward on
# meta tensors works. The ten constants travel as a list of floats, the spec's small integers as ints.
@torch.library.custom_op("overlooked::neuron_scan_cpu", mutates_args=())
def neuron_scan_forward(
    x: torch.Tensor, v0: torch.Tensor, i0: torch.Tensor | None, a: torch.Tensor | None,
    kind: int, reset: int, surrogate: int, detach: bool, params: list[float], keep_h: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``x [T, *S]``, ``v0 [*S]`` -> ``(z [T, *S], v_T [*S], i_T [*S] or empty, h [T, *S] or empty)``.

    ``a`` (0-dim or None): the decay ``dt / tau_mem`` when it is a tensor (PLIF's learned one, or a tensor
    ``tau_mem``); else ``params[0]``. ``h`` is the pre-reset membrane the backward reads, kept only when
    ``keep_h``. ``surrogate`` and ``detach`` are unused here; they are arguments so that the backward receives them."""
    _check_scan(x, v0, i0, a, kind, reset, surrogate, params)
    if x.device.type != "cpu" or v0.device.type != "cpu":
        raise ValueError(f"overlooked::neuron_scan_cpu runs CPU tensors, got x on {x.device} and v0 on {v0.device}")
    lib = _build.load()
    x = x.contiguous()
    nt, n = x.shape[0], x[0].numel() if x.shape[0] else v0.numel()
    z = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    h = torch.empty(x.shape, dtype=x.dtype, device=x.device) if keep_h else x.new_empty(0)
    v = v0.detach().to(x.dtype).contiguous().clone()
    cuba = kind == KIND_CUBA
    i = i0.detach().to(x.dtype).contiguous().clone() if cuba and i0 is not None else x.new_empty(0)
    threads = torch.get_num_threads()
    rc = lib.ovl_neuron_forward(DTYPE_IDS[x.dtype], kind, reset, _ptr(x), _ptr(z), _ptr(h) if keep_h else None, _ptr(v), _ptr(i) if cuba else None, nt, n, chunk_size(n, threads), _lib_params(params, a), threads)
    if rc != 0:
        raise RuntimeError(f"C++ neuron forward rejected kind={kind} reset={reset} dtype={x.dtype}")
    CALLS["cpp_forward"] += 1
    return z, v, i, h


@neuron_scan_forward.register_fake
def _forward_fake(x, v0, i0, a, kind, reset, surrogate, detach, params, keep_h):
    _check_scan(x, v0, i0, a, kind, reset, surrogate, params)
    z = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    v = torch.empty(v0.shape, dtype=x.dtype, device=x.device)
    i = torch.empty(v0.shape, dtype=x.dtype, device=x.device) if kind == KIND_CUBA else x.new_empty(0)
    h = torch.empty(x.shape, dtype=x.dtype, device=x.device) if keep_h else x.new_empty(0)
    return z, v, i, h


def _check_backward(gz: torch.Tensor, gv: torch.Tensor, gi: torch.Tensor | None, h: torch.Tensor, x: torch.Tensor | None, v0: torch.Tensor | None, a: torch.Tensor | None, kind: int, learned: bool) -> None:
    step = tuple(h.shape[1:])
    problems = []
    if h.dim() < 1 or h.dtype not in DTYPE_IDS:
        problems.append(f"h must be the forward's float32/float64 [T, ...] membrane trace, got {h.dtype} of shape {tuple(h.shape)}")
    if tuple(gz.shape) != tuple(h.shape) or tuple(gv.shape) != step or (gi is not None and tuple(gi.shape) != step):
        problems.append(f"gradients of shapes gz {tuple(gz.shape)}, gv {tuple(gv.shape)}, gi {None if gi is None else tuple(gi.shape)} do not match h {tuple(h.shape)}")
    if learned and (a is None or x is None or v0 is None or tuple(x.shape) != tuple(h.shape) or tuple(v0.shape) != step):
        problems.append("the decay's gradient (learned=True) needs a, and x and v0 of the forward's shapes")
    if learned and kind == KIND_CUBA:
        problems.append("the C++ kernel has no gradient for CubaLIF's decay (scan_spec sends a learned one to the reference loop)")
    if problems:
        raise ValueError("overlooked::neuron_scan_cpu_backward: " + "; ".join(problems))


@torch.library.custom_op("overlooked::neuron_scan_cpu_backward", mutates_args=())
def neuron_scan_backward(
    gz: torch.Tensor, gv: torch.Tensor, gi: torch.Tensor | None, h: torch.Tensor, x: torch.Tensor | None,
    v0: torch.Tensor | None, a: torch.Tensor | None, learned: bool, kind: int, reset: int, surrogate: int, detach: bool, params: list[float],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The BPTT of :func:`neuron_scan_forward` -> ``(grad_x, grad_v0, grad_i0 or empty, grad_a float64 0-dim)``.

    ``a`` is the decay's value when it is a tensor; ``learned``: also its gradient, reduced in float64, for
    which ``x`` and ``v0`` are read (zero otherwise)."""
    _check_backward(gz, gv, gi, h, x, v0, a, kind, learned)
    lib = _build.load()
    nt, n = h.shape[0], gv.numel()
    # The C++ code reads raw pointers: every tensor it reads must stay referenced until the call returns
    # (``_ptr(g.contiguous())`` would hand it the address of a copy freed at once; the gradient of
    # ``v.sum()`` is an expanded, non-contiguous tensor).
    gz, gv, h = gz.to(h.dtype).contiguous(), gv.to(h.dtype).contiguous(), h.contiguous()
    cuba = kind == KIND_CUBA
    gi = gi.to(h.dtype).contiguous() if cuba and gi is not None else (torch.zeros(gv.shape, dtype=h.dtype) if cuba else None)
    x = x.to(h.dtype).contiguous() if learned else None
    v0 = v0.detach().to(h.dtype).contiguous() if learned else None
    gx = torch.empty(h.shape, dtype=h.dtype)
    gv0 = torch.empty(gv.shape, dtype=h.dtype)
    gi0 = torch.empty(gv.shape, dtype=h.dtype) if cuba else h.new_empty(0)
    threads = torch.get_num_threads()
    ch = chunk_size(n, threads)
    ga = torch.zeros(-(-n // ch), dtype=torch.float64) if learned else None
    ga_ptr = ctypes.cast(ga.data_ptr(), ctypes.POINTER(ctypes.c_double)) if ga is not None else None
    rc = lib.ovl_neuron_backward(
        DTYPE_IDS[h.dtype], kind, reset, surrogate, _ptr(gz), _ptr(h), _ptr(x), _ptr(v0),
        _ptr(gv), _ptr(gi), _ptr(gx), _ptr(gv0), _ptr(gi0) if cuba else None, ga_ptr,
        nt, n, ch, _lib_params(params, a), int(detach), threads,
    )
    if rc != 0:
        raise RuntimeError(f"C++ neuron backward rejected kind={kind} reset={reset} surrogate={surrogate}")
    CALLS["cpp_backward"] += 1
    return gx, gv0, gi0, ga.sum() if ga is not None else torch.zeros((), dtype=torch.float64)


@neuron_scan_backward.register_fake
def _backward_fake(gz, gv, gi, h, x, v0, a, learned, kind, reset, surrogate, detach, params):
    _check_backward(gz, gv, gi, h, x, v0, a, kind, learned)
    gx = torch.empty(h.shape, dtype=h.dtype, device=h.device)
    gv0 = torch.empty(gv.shape, dtype=h.dtype, device=h.device)
    gi0 = torch.empty(gv.shape, dtype=h.dtype, device=h.device) if kind == KIND_CUBA else h.new_empty(0)
    return gx, gv0, gi0, torch.empty((), dtype=torch.float64, device=h.device)


def _no_double_backward(ctx, *grads):
    raise RuntimeError(
        "the C++ neuron scan's backward is not differentiable (no second derivatives: a gradient penalty, Hessian "
        "products); build the neurons with backend='reference' for those"
    )


neuron_scan_backward.register_autograd(_no_double_backward, setup_context=lambda ctx, inputs, output: None)


def _setup_context(ctx, inputs, output) -> None:
    x, v0, i0, a, kind, reset, surrogate, detach, params, keep_h = inputs
    z, v, i, h = output
    learned = a is not None and ctx.needs_input_grad[3]  # a tensor tau_mem held as a buffer is a value, not learned
    ctx.save_for_backward(h, x if learned else None, v0 if learned else None, a)
    ctx.args = (learned, kind, reset, surrogate, detach, list(params))
    ctx.keep_h, ctx.has_i0, ctx.a_dtype = keep_h, i0 is not None, a.dtype if a is not None else None
    ctx.mark_non_differentiable(h)
    ctx.set_materialize_grads(False)  # no zero-filled [T, ...] gradient for h, never used; None is handled below
    if kind != KIND_CUBA:
        ctx.mark_non_differentiable(i)


def _backward(ctx, gz, gv, gi, gh):
    if not ctx.keep_h:
        raise RuntimeError("the C++ neuron scan ran without keeping its membrane trace (keep_h=False) and cannot be differentiated; call it through run_fused or CppNeuronScan.apply, which keep it whenever a gradient is needed")
    h, x, v0, a = ctx.saved_tensors
    learned, kind = ctx.args[0], ctx.args[1]
    step = h.shape[1:]
    gz = gz if gz is not None else torch.zeros_like(h)
    gv = gv if gv is not None else h.new_zeros(step)
    gi = gi if kind == KIND_CUBA else None
    gx, gv0, gi0, ga = neuron_scan_backward(gz, gv, gi, h, x, v0, a, *ctx.args)
    grad_a = ga.to(ctx.a_dtype) if learned else None
    return gx, gv0, gi0 if kind == KIND_CUBA and ctx.has_i0 else None, grad_a, None, None, None, None, None, None


neuron_scan_forward.register_autograd(_backward, setup_context=_setup_context)


class CppNeuronScan:
    """``(x [T, *S], v0 [*S], i0 [*S] | None, a 0-dim | None, spec) -> (z [T, *S], v_T [*S], i_T [*S])``.

    ``i`` is the synaptic current of CubaLIF (an empty tensor for IF/LIF). ``a`` is given as a tensor only
    when the decay ``dt / tau_mem`` is one (PLIF's learned decay, or a tensor ``tau_mem``); its gradient, when
    asked for, is reduced in float64. The call of the custom operator :func:`neuron_scan_forward`, keeping the
    membrane trace only when a gradient can be asked for (the ``apply`` name is kept from when this was an
    ``autograd.Function``).
    """

    @staticmethod
    def apply(x: torch.Tensor, v0: torch.Tensor, i0: torch.Tensor | None, a: torch.Tensor | None, spec: ScanSpec) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        keep_h = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, v0, i0, a))
        z, v, i, _ = neuron_scan_forward(x, v0, i0 if spec.kind == KIND_CUBA else None, a, spec.kind, spec.reset, spec.surrogate, spec.detach, list(spec.params), keep_h)
        return z, v, i
