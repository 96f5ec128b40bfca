"""Fast paths for the sequence neurons, chosen by name (``backend=``); the Python step loop is the truth.

Backends:

- ``"reference"``: the sequence module's loop over its cell's step function (``neurons.py``).
- ``"cpp"``: :mod:`overlooked.spiking.kernels.cpu`: one C++ call for all T steps forward and one for the
  whole BPTT backward, OpenMP over neurons, compiled with the system C++ compiler at first use. IF, LIF,
  PLIF and CubaLIF; float32 and float64 CPU tensors; every registered surrogate; both reset rules;
  ``detach_reset`` on and off. Spikes equal the reference's bit for bit. Called as the custom operator
  ``torch.ops.overlooked.neuron_scan_cpu`` (and ``neuron_scan_cpu_backward``), so ``torch.compile`` keeps it in
  its graph, with dynamic shapes.
- ``"triton"``: :mod:`overlooked.spiking.kernels.triton_lif`: the same scans for CUDA tensors (or CPU
  tensors under ``TRITON_INTERPRET=1``).
- ``"auto"``: ``"cpp"`` for supported CPU inputs (chosen over ``torch.compile`` of the reference loop, which
  on the 2-core dev machine took 764 s to compile at T=50, B=16, n=512 and then ran forward+backward in
  48 ms median against the C++ scan's 1.4 ms, 1 thread, 2026-11-28), when a compiler works, ``"triton"`` for CUDA inputs when
  Triton is installed, else ``"reference"`` (with one warning when a compiler was expected but failed).

:func:`resolved_backends` tells, per neuron layer of a model, which backend ran last (or will run).
"""

from __future__ import annotations

import importlib.util
import numbers
import warnings
from typing import Any

import torch
from torch import nn

from overlooked.checks import broadcast_shape
from overlooked.errors import InputError
from overlooked.spiking import neurons as N
from overlooked.spiking.kernels import _build
from overlooked.spiking.kernels.cpu import CALLS, KIND_CUBA, KIND_IF, KIND_LIF, RESET_IDS, SURROGATE_IDS, CppNeuronScan, ScanSpec

BACKENDS = ("reference", "cpp", "triton", "auto")
__all__ = ["BACKENDS", "CALLS", "ScanSpec", "UnsupportedBackend", "choose", "resolved_backends", "run_fused", "scan_spec", "static_choice"]
_warned: set[str] = set()


class UnsupportedBackend(ValueError):
    """An explicitly requested backend cannot run this layer or input; the message says why."""


def _number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def scan_spec(cell: nn.Module) -> tuple[ScanSpec, torch.Tensor | None] | str:
    """The kernel's description of ``cell``, plus the learned decay ``dt / tau_mem`` (PLIF) or None.

    Returns a string saying why when the cell has no fused kernel (ALIF, recurrent LIF, tensor-valued
    parameters, a surrogate outside the registry).
    """
    from overlooked.spiking import modules as M

    kinds = {M.IFCell: KIND_IF, M.LIFCell: KIND_LIF, M.PLIFCell: KIND_LIF, M.CubaLIFCell: KIND_CUBA}
    kind = kinds.get(type(cell))
    if kind is None:
        return f"no fused kernel for {type(cell).__name__} (IF, LIF, PLIF and CubaLIF have one)"
    surrogate = getattr(type(cell.spike_fn), "name", None)
    if surrogate not in SURROGATE_IDS or _fused_surrogates().get(surrogate) is not type(cell.spike_fn):  # a subclass may change the derivative
        return (
            f"surrogate {cell.spike_fn!r} ({type(cell.spike_fn).__module__}.{type(cell.spike_fn).__qualname__}) has no fused backward: the kernels "
            f"compute the library's own {', '.join(SURROGATE_IDS)} classes exactly, not subclasses of them (whose derivative may differ)"
        )
    p, dt = cell.params(), cell.dt
    if p.reset not in RESET_IDS:
        return f"reset must be one of {tuple(RESET_IDS)}, got {p.reset!r}"
    decay: torch.Tensor | None = None
    fields = {k: v for k, v in p._asdict().items() if k not in ("reset", "detach_reset")}
    if isinstance(p, N.LIFParameters | N.CubaLIFParameters) and isinstance(p.tau_mem, torch.Tensor):
        if p.tau_mem.numel() != 1:
            return "tau_mem must be a number or a one-element tensor for the fused kernel"
        decay = (dt / p.tau_mem).reshape(())  # the reference's own expression, so float32 rounding matches
        if kind == KIND_CUBA and decay.requires_grad:
            return "a learned tau_mem of CubaLIF has no fused gradient (the C++ and Triton kernels learn the decay of IF/LIF/PLIF only)"
        fields.pop("tau_mem")
    bad = [k for k, v in fields.items() if not _number(v)]
    if bad:
        return f"parameters {bad} are tensors; the fused kernel takes numbers (use backend='reference')"
    tau_mem = getattr(p, "tau_mem", 1.0)
    a = 0.0 if decay is not None else dt / tau_mem if kind != KIND_IF else 0.0
    c = dt * p.r if kind == KIND_IF else 0.0
    b = dt / p.tau_syn if kind == KIND_CUBA else 0.0
    w_in = p.w_in if kind == KIND_CUBA else 0.0
    v_leak = getattr(p, "v_leak", 0.0)
    params = (float(a), float(c), float(p.r), float(v_leak), float(p.v_threshold), float(p.v_reset), float(p.v_threshold - p.v_reset), float(b), float(w_in), float(cell.spike_fn.alpha))
    return ScanSpec(kind, RESET_IDS[p.reset], SURROGATE_IDS[surrogate], bool(p.detach_reset), params), decay


_FUSED_SURROGATES: dict[str, type] = {}  # filled at first use (a module-level import would be circular)


def _fused_surrogates() -> dict[str, type]:
    """The surrogate classes the kernels compute, by their ``name``: these classes exactly, not subclasses.
    Kept in a dict rather than behind ``functools.cache``, which ``torch.compile`` warns about at every trace."""
    if not _FUSED_SURROGATES:
        from overlooked.spiking import surrogate as S

        _FUSED_SURROGATES.update({cls.name: cls for cls in (S.FastSigmoid, S.ATan, S.Sigmoid, S.Triangle, S.Rectangle)})
    return _FUSED_SURROGATES


def _triton_installed() -> bool:
    return importlib.util.find_spec("triton") is not None


def static_choice(backend: str, cell: nn.Module) -> str:
    """What ``backend`` resolves to for CPU float32 input, without compiling; raises for impossible requests."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "reference":
        return "reference"
    spec = scan_spec(cell)
    if isinstance(spec, str):
        if backend == "auto":
            return "reference"
        raise UnsupportedBackend(f"backend={backend!r}: {spec}")
    if backend == "cpp" and _build.compiler() is None:
        raise UnsupportedBackend("backend='cpp' needs a C++ compiler (g++ or $CXX) and none was found; use 'auto' or 'reference'")
    if backend == "triton":
        if not _triton_installed():
            raise UnsupportedBackend("backend='triton' needs the triton package (CUDA builds of torch ship it)")
        return "triton"
    return "cpp" if _build.compiler() is not None else "reference"


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def _under_transform() -> bool:
    """Whether a ``torch.func`` transform (``grad``, ``vmap``, ``jvp``, ...) or a forward-mode AD level
    (``torch.autograd.forward_ad.dual_level``) is active. The fused kernels (C++ and Triton calls on raw memory)
    have a backward but no batching or forward-mode rule, so they cannot run there, whichever tensor the
    transform wraps (the input, the state or a parameter); the reference loop's PyTorch operations can. Both
    queries trace in ``torch.compile`` without a graph break."""
    try:
        level = torch._C._functorch.maybe_current_level()
    except AttributeError:  # a PyTorch without this query: assume none
        level = None
    return level is not None or getattr(torch.autograd.forward_ad, "_current_level", -1) >= 0


@torch.compiler.assume_constant_result
def _cpp_loads() -> bool:
    """Whether the C++ library loads (building it at first use). Called by ``torch.compile`` at trace time and its
    answer kept as a constant, so that neither the compiler lookup nor the build breaks the graph."""
    try:
        _build.load()
    except _build.CompilerUnavailable:
        return False
    return True


def _load_cpp() -> None:
    """Load the C++ library (building it at first use; raises ``CompilerUnavailable``). While ``torch.compile``
    traces, the question goes through :func:`_cpp_loads`, answered once at trace time: no compiler or file lookup
    in the graph, and no guard on whether the library was loaded before (which re-traced once it was)."""
    if torch.compiler.is_compiling():
        if _cpp_loads():
            return
        raise _build.CompilerUnavailable(_build.LIBRARY.error or _build.NO_COMPILER)
    _build.load()


def choose(backend: str, cell: nn.Module, x: torch.Tensor) -> str:
    """The backend that will run ``cell`` on ``x`` (compiles the C++ library on first use)."""
    if backend == "reference":
        return "reference"
    if _under_transform():
        if backend != "auto":
            raise UnsupportedBackend(f"backend={backend!r} cannot run inside a torch.func transform (grad, vmap, jvp, ...) or under forward-mode AD; use backend='reference' or 'auto' (which runs the reference loop there)")
        return "reference"
    cpu_ok = x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)
    if backend == "cpp":
        if not cpu_ok:
            raise UnsupportedBackend(f"backend='cpp' runs float32/float64 CPU tensors, got {x.dtype} on {x.device}")
        try:
            _load_cpp()
        except _build.CompilerUnavailable as err:
            raise UnsupportedBackend(f"backend='cpp': {err}") from err
        return "cpp"
    if backend == "triton":
        if x.device.type != "cuda" and not _interpreting():
            raise UnsupportedBackend(f"backend='triton' runs CUDA tensors, got {x.device}")
        if x.dtype not in (torch.float32, torch.float64):  # its constants and gradients would be rounded to x's dtype
            raise UnsupportedBackend(f"backend='triton' runs float32/float64 tensors, got {x.dtype}; cast the neuron's input to float32, or use backend='auto' (the reference loop for {x.dtype}) or train.bf16=false")
        return "triton"
    # auto
    if isinstance(scan_spec(cell), str):
        return "reference"
    if cpu_ok:
        try:
            _load_cpp()
            return "cpp"
        except _build.CompilerUnavailable as err:
            _warn_once("cpp", f"backend='auto' falls back to 'reference': {err}")
            return "reference"
    if x.device.type == "cuda" and _triton_installed() and x.dtype in (torch.float32, torch.float64):
        return "triton"
    if x.dtype not in (torch.float32, torch.float64):  # e.g. bf16 under autocast: the fused kernels take neither
        _warn_once(
            f"dtype {x.dtype} {x.device.type}",
            f"backend='auto' runs the reference loop for {x.dtype} input on {x.device.type} (the fused kernels take "
            "float32/float64 only): slower, and the membrane is kept in that dtype; cast the neuron's input to float32 "
            "for the fused kernel (the run summary's neuron_backends records what ran)",
        )
    return "reference"


def _interpreting() -> bool:
    import os

    return os.environ.get("TRITON_INTERPRET") == "1" and _triton_installed()


def _state_like(value: Any, x: torch.Tensor, name: str) -> torch.Tensor:
    """A state tensor as the fused kernels read it: one value per neuron of a step, ``x[0]``'s shape, on
    ``x``'s device. A state that broadcasts to that shape (a scalar, ``[1, n]``) is expanded, as the
    reference loop broadcasts it; any other shape or device is refused (the kernels read raw memory)."""
    step = tuple(x.shape[1:])
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"state.{name} must be a tensor of the input's per-step shape {step}, got {type(value).__name__}")
    if value.device != x.device:
        raise InputError(f"state.{name} is on {value.device} but the input on {x.device}; move the state to the input's device")
    if broadcast_shape(value.shape, step) != step:
        raise InputError(
            f"state.{name} has shape {tuple(value.shape)}, which does not broadcast to the input's per-step shape {step} "
            f"(input [T, ...] = {tuple(x.shape)}); pass the state the previous call returned, or None to start from rest"
        )
    return value.expand(step)


def run_fused(backend: str, cell: nn.Module, x: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
    """Run ``cell`` over ``x`` ``[T, B, ...]`` with a fused backend; same return as the reference loop."""
    spec_decay = scan_spec(cell)
    if isinstance(spec_decay, str):
        raise UnsupportedBackend(spec_decay)
    spec, decay = spec_decay
    if state is None:
        state = cell.initial_state(x[0] if x.shape[0] else x.new_zeros(x.shape[1:]))
    else:
        from overlooked.spiking.modules import check_state_kind

        check_state_kind(cell, state)  # as the reference loop checks it (a tuple was an AttributeError here)
        wider = x.dtype
        for value in state:  # every field, as the reference loop's arithmetic promotes with each
            if isinstance(value, torch.Tensor) and value.is_floating_point():
                wider = torch.promote_types(wider, value.dtype)
        if wider != x.dtype:  # a float64 state with float32 input runs in float64, as the reference loop promotes
            x = x.to(wider)
    v0 = _state_like(state.v, x, "v")
    i0 = _state_like(state.i, x, "i") if spec.kind == KIND_CUBA else None
    if backend == "cpp":
        z, v, i = CppNeuronScan.apply(x, v0, i0, decay, spec)
    elif backend == "triton":
        from overlooked.spiking.kernels import triton_lif

        z, v, i = triton_lif.TritonNeuronScan.apply(x, v0, i0, decay, spec)
    else:
        raise ValueError(f"not a fused backend: {backend!r}")
    return z, (N.CubaState(v, i) if spec.kind == KIND_CUBA else N.VState(v))


def resolved_backends(model: nn.Module) -> dict[str, str]:
    """``{module name: backend}`` for every sequence neuron layer in ``model``: the backend its last
    forward ran, or, before any forward, what it resolves to on CPU float32 input."""
    return {name: m.resolved_backend for name, m in model.named_modules() if hasattr(m, "resolved_backend") and hasattr(m, "backend")}
