"""Neuron modules. A ``*Cell`` does one time step; the plain name runs a time-first ``[T, B, ...]``
sequence through the very same step function, so the two cannot drift apart. ``forward(x, state=None)``
returns ``(out, state)``; with no state a call starts from rest, and nothing persists on the module."""

from __future__ import annotations

import inspect
import math
import numbers
from typing import Any

import numpy as np
import torch
from torch import nn

from overlooked.checks import autocast_enabled, broadcast_shape, check_sizes
from overlooked.errors import InputError
from overlooked.registry import SURROGATES
from overlooked.spiking import kernels
from overlooked.spiking import neurons as N
from overlooked.spiking import surrogate as _surrogates  # noqa: F401  (registers the surrogates)


def _check_dt(dt: Any) -> float:
    """``dt`` as a float, or a ``ValueError`` when it is not a positive, finite number of seconds."""
    why = N.dt_error(dt)
    if why is not None:
        raise ValueError(why)
    return float(dt)


def _numeric(value: Any) -> bool:
    """A neuron parameter's value: a real number, or a tensor / array of real numbers (not a bool)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, torch.Tensor):
        return value.dtype != torch.bool and not value.dtype.is_complex
    if isinstance(value, np.ndarray):
        return value.dtype.kind in "iuf"
    return isinstance(value, numbers.Real)


def _bounds(value: Any) -> tuple[float, float] | None:
    """``(smallest, largest)`` of a numeric parameter (a number or a tensor; NaN for both if any element is),
    else None. A tensor is read once, on a CPU copy in float64 (devices without float64, such as MPS, included)."""
    if isinstance(value, torch.Tensor):
        if value.numel() == 0 or value.device.type == "meta":  # nothing to read
            return None
        v = value.detach().cpu().double()
        return (math.nan, math.nan) if v.isnan().any() else (float(v.min()), float(v.max()))
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value), float(value)
    return None


def _smallest(value: Any) -> float | None:
    """The smallest of a numeric parameter (see :func:`_bounds`), else None."""
    bounds = _bounds(value)
    return None if bounds is None else bounds[0]


RESETS = ("zero", "subtract")


def _keywords_only(cls: type, args: tuple[Any, ...]) -> None:
    """Neuron parameters are keywords: ``LIF(5e-3)`` (snnTorch's ``Leaky(beta)`` habit) would otherwise set
    ``dt`` without a word."""
    if args:
        name = cls.__name__.removesuffix("Cell")
        accepted = inspect.signature(cls.__init__).parameters
        first = next(f for f in ("tau_mem", "init_tau", "v_threshold") if f in accepted or (f in cls.params_cls._fields and f not in cls.learned))
        default = accepted[first].default if first in accepted else cls.params_cls._field_defaults[first]
        size = "size, " if "size" in accepted else ""
        raise TypeError(
            f"{name} takes its parameters by keyword, got positional {', '.join(map(repr, args))}; "
            f"write e.g. {name}({size}{first}={default!r}, dt=0.001) (help({name}) lists them)"
        )


def check_current(module: nn.Module, x: Any) -> None:
    """A neuron's input is a floating-point current; bool or integer spikes must be cast first (an
    ``InputError``, as every model's dtype check in the package raises)."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        got = x.dtype if isinstance(x, torch.Tensor) else type(x).__name__
        raise InputError(f"{type(module).__name__} takes a floating-point input current, got {got}; cast it first (e.g. x.float())")


def check_state_kind(cell: _Cell, state: Any) -> None:
    """A state handed to a neuron is the cell's own record (``VState``, ``CubaState``, ``ALIFState``): a tuple,
    a bare tensor or another neuron's record is named (the fused backends read ``state.v`` / ``state.i``)."""
    kind = cell.state_cls
    if kind is not None and not isinstance(state, kind):
        raise InputError(
            f"{type(cell).__name__} takes its state as {kind.__name__}({', '.join(kind._fields)}); got {type(state).__name__}: "
            "pass the state the previous call returned, or None to start from rest"
        )


def check_state(cell: _Cell, state: Any, x: torch.Tensor) -> None:
    """A state handed to one step is the cell's own record (``VState``, ``CubaState``, ``ALIFState``) whose
    tensors broadcast to the step's input ``x``'s shape (never beyond it: a state of a larger batch would
    silently widen the output); anything else is
    an ``InputError`` naming it (it failed as ``'str' object has no attribute 'v'`` or a broadcast error inside
    the step). Shapes equal to ``x``'s, the loop's case after its first step, cost one tuple comparison each."""
    kind = cell.state_cls
    if kind is None:
        return
    check_state_kind(cell, state)
    rest = "pass the state the previous call returned, or None to start from rest"
    for name, value in zip(kind._fields, state):
        if isinstance(value, torch.Tensor) and (value.shape == x.shape or broadcast_shape(value.shape, x.shape) == tuple(x.shape)):
            continue
        got = f"shape {tuple(value.shape)}" if isinstance(value, torch.Tensor) else type(value).__name__
        raise InputError(
            f"{type(cell).__name__}: state.{name} has {got}, which does not broadcast to the input's shape {tuple(x.shape)} "
            f"(a state from another batch would change the output's shape); {rest}"
        )


def _check_loaded_time_constants(cell: _Cell, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
    """``load_state_dict`` pre-hook: refuse loaded time constants the constructor would refuse."""
    loaded = {k: state_dict[prefix + k] for k in cell._tensor_fields if isinstance(state_dict.get(prefix + k), torch.Tensor)}
    if loaded:
        cell._check_time_constants(cell._fixed._replace(**loaded))


def check_input_dtype(module: nn.Module, x: Any) -> None:
    """A network's input is a floating-point tensor of its weights' dtype (a float64 batch for float32 weights
    would otherwise fail deep inside a matrix product)."""
    check_current(module, x)
    check_weight_dtype(module, x)


def check_weight_dtype(module: nn.Module, x: torch.Tensor) -> None:
    """Refuse a floating-point input of another dtype than ``module``'s weights, naming both casts."""
    weight = next(module.parameters(), None)
    if weight is not None and x.dtype != weight.dtype:
        raise InputError(
            f"{type(module).__name__}'s weights are {weight.dtype} but the input is {x.dtype}; cast one to the other "
            f"(x.to({weight.dtype}), or model.to({x.dtype}))"
        )


class _Cell(nn.Module):
    """One step of a neuron: ``step(x, state, params, dt, spike_fn)``.

    Tensor-valued parameters are registered as buffers (so they follow ``.to()`` and are in the
    ``state_dict``), an ``nn.Parameter`` as a parameter (learned, e.g. a threshold); numbers stay plain
    attributes. :meth:`params` rebuilds the record from both.
    """

    step_fn: Any = None
    params_cls: Any = None
    state_cls: Any = N.VState  # what initial_state returns and the step takes back (None: not checked)
    learned: tuple[str, ...] = ()  # fields params() supplies from learned weights: not arguments

    def __init__(self, *args: Any, dt: float = 1e-3, surrogate: str = "atan", surrogate_alpha: float | None = None, **params: Any):
        super().__init__()
        _keywords_only(type(self), args)
        self.dt = _check_dt(dt)
        self._check_names(params)
        kwargs = {} if surrogate_alpha is None else {"alpha": surrogate_alpha}
        self.spike_fn = SURROGATES.create(surrogate, **kwargs)  # resolved once, never inside the loop
        record = self.params_cls(**params)
        if "reset" in record._fields and record.reset not in RESETS:  # checked now, not at the first forward
            raise ValueError(f"{type(self).__name__}: reset must be one of {RESETS}, got {record.reset!r}")
        self._check_time_constants(record)
        self._tensor_fields = tuple(k for k, v in record._asdict().items() if isinstance(v, torch.Tensor))
        for k in self._tensor_fields:
            value = getattr(record, k)
            if isinstance(value, nn.Parameter):  # learned: the optimiser sees it (a buffer got a gradient no step used)
                self.register_parameter(k, value)
            else:
                self.register_buffer(k, value)
        self._fixed = record._replace(**dict.fromkeys(self._tensor_fields))  # the numbers; tensors live in buffers
        # Loaded buffers are held to the same rule as the constructor's arguments, before they replace them.
        self.register_load_state_dict_pre_hook(_check_loaded_time_constants)

    def _check_names(self, params: dict[str, Any]) -> None:
        allowed = [f for f in self.params_cls._fields if f not in self.learned]
        unknown = sorted(set(params) - set(allowed))
        if unknown:
            sig = inspect.signature(type(self).__init__).parameters.values()
            others = [q.name for q in sig if q.name != "self" and q.kind not in (q.VAR_KEYWORD, q.VAR_POSITIONAL)]
            learned = f" ({', '.join(self.learned)} is learned, not an argument)" if self.learned else ""
            raise TypeError(
                f"{type(self).__name__} got unknown keyword argument(s) {unknown}; its {self.params_cls.__name__} fields are "
                f"{', '.join(allowed)}{learned}, and its other arguments {', '.join(others)}"
            )

    def _check_time_constants(self, record: Any) -> None:
        """Refuse a ``tau_*`` that forward Euler at ``dt`` cannot run (:func:`neurons.euler_step_error`), and a
        NaN or infinite voltage or gain (``v_threshold=nan`` built a neuron that never spikes)."""
        for field in record._fields:
            value = getattr(record, field)
            if field == "detach_reset" and not isinstance(value, bool):  # "no" was read as True
                raise ValueError(f"{type(self).__name__}: detach_reset must be True or False, got {value!r}")
            if field in ("reset", "detach_reset") or field in self.learned:
                continue
            if not _numeric(value):
                # None or "0.01" built a neuron that failed at its first step ("unsupported operand")
                raise ValueError(f"{type(self).__name__}: {field} must be a number or a numeric tensor / array, got {type(value).__name__} {value!r}")
            bounds = _bounds(value)  # one CPU read per field
            if not field.startswith("tau_"):
                if bounds is not None and not all(math.isfinite(b) for b in bounds):
                    raise ValueError(f"{type(self).__name__}: {field} = {bounds[0] if math.isnan(bounds[0]) else getattr(record, field)!r} is not a finite number; give {field} a finite value")
                continue
            tau = None if bounds is None else bounds[0]
            if field == "tau_mem" and bounds is not None and bounds[1] == math.inf:
                tau = math.inf  # one neuron that never charges is refused as all of them would be
            why = None if tau is None else N.euler_step_error(field, tau, self.dt)
            if why is not None:
                fix = f". Give {field} >= dt = {self.dt:g} s, or a dt <= {field}" if math.isfinite(tau) else ""
                raise ValueError(f"{type(self).__name__}: {why}{fix}")

    def params(self) -> Any:
        """The parameter record used in the step, tensor fields read from the buffers (PLIF adds its learned tau)."""
        if not self._tensor_fields:
            return self._fixed
        return self._fixed._replace(**{k: getattr(self, k) for k in self._tensor_fields})

    def initial_state(self, x: torch.Tensor) -> Any:
        zeros = torch.zeros_like(x)
        return N.VState(zeros)

    def forward(self, x: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        """``x``: input current ``[B, ...]`` -> spikes ``[B, ...]`` and the new state."""
        check_current(self, x)
        if state is None:
            state = self.initial_state(x)
        else:
            check_state(self, state, x)
        return type(self).step_fn(x, state, self.params(), self.dt, self.spike_fn)

    def extra_repr(self) -> str:
        params = self.params()
        if self.learned:  # a learned value prints as its number, not as a tensor with its grad_fn
            params = params._replace(**{k: float(getattr(params, k).detach()) for k in self.learned if getattr(params, k).numel() == 1 and not getattr(params, k).is_meta})
        return f"dt={self.dt}, {params}, surrogate={self.spike_fn}"


class _Sequence(nn.Module):
    """Runs a cell over the leading time dimension.

    Args:
        backend: ``"reference"`` (this loop over the cell's step function: the truth), ``"cpp"`` (one fused
            C++ kernel for all steps, forward and backward), ``"triton"`` (CUDA) or ``"auto"`` (the fastest
            that can run the input); see :mod:`overlooked.spiking.kernels`. ``resolved_backend`` tells which
            ran on the last call (before any call: what CPU float32 input would get).
        *args, **kwargs: the cell's arguments.
    """

    cell_cls: Any = None
    state_doc = "VState(v)"  # the state's name in help()

    def __init_subclass__(cls, **kwargs: Any):
        super().__init_subclass__(**kwargs)
        cls.__doc__ = _sequence_doc(cls)  # its own summary, then every argument with the code's default
        cell = cls.cell_cls  # and its one-step cell points there (its help() listed no arguments: *args, **params)
        if cell is not None and cell.__dict__.get("__doc__") and f"help({cls.__name__})" not in cell.__doc__:
            cell.__doc__ = inspect.cleandoc(cell.__doc__) + (
                f"\n\nOne step of :class:`{cls.__name__}`, with the same keyword arguments but ``backend`` (``help({cls.__name__})`` "
                "lists them with their units and defaults). Call with ``x``, one step's input current ``[B, ...]``, and "
                "``state`` (None: start from rest) -> ``(spikes [B, ...], state)``."
            )

    def __init__(self, *args: Any, backend: str = "reference", **kwargs: Any):
        super().__init__()
        self.cell = self.cell_cls(*args, **kwargs)
        self.backend = backend
        self.resolved_backend = kernels.static_choice(backend, self.cell)  # raises for impossible requests

    def extra_repr(self) -> str:
        return f"backend={self.backend!r}"

    def forward(self, x: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        """``x`` ``[T, B, ...]`` -> spikes ``[T, B, ...]`` and the final state.

        Time is always the first axis: a 2-D ``x`` is read as ``T`` steps of ``B`` neurons (or of one
        unbatched layer), never as one step of a batch. For one step of ``[B, N]`` (snnTorch's ``Leaky``
        habit), call the cell (``LIFCell``, ...) or pass ``x[None]``."""
        check_current(self, x)
        if x.dim() == 0:  # a sequence needs a time axis (an IndexError before)
            raise InputError(f"{type(self).__name__} takes a sequence x [T, ...] with time first; got a 0-D tensor. Fix: x.reshape(1, 1) for one step of one neuron, or call the cell ({type(self.cell).__name__}) for one step")
        backend = kernels.choose(self.backend, self.cell, x)
        self.resolved_backend = backend  # a record of what ran, never read back by the computation
        if backend != "reference":
            return kernels.run_fused(backend, self.cell, x, state)
        if x.shape[0] == 0:  # no steps: no spikes, the state unchanged (as the fused kernels)
            return torch.empty_like(x), state if state is not None else self.cell.initial_state(x.new_zeros(x.shape[1:]))
        out = []
        for t in range(x.shape[0]):
            z, state = self.cell(x[t], state)
            if t == 0 and z.shape != x.shape[1:]:  # a parameter wider than one step of the input widened the state
                wide = [f"{k} {tuple(getattr(self.cell, k).shape)}" for k in getattr(self.cell, "_tensor_fields", ()) if broadcast_shape(tuple(getattr(self.cell, k).shape), tuple(x.shape[1:])) != tuple(x.shape[1:])]
                raise InputError(
                    f"{type(self).__name__}: the neuron's {'parameters ' + ', '.join(wide) if wide else 'state'} broadcast one step of the input {tuple(x.shape[1:])} "
                    f"to {tuple(z.shape)}; give parameters of the input's per-step shape (or a batch axis to the input: x[:, None] for one sequence)"
                )
            out.append(z)
        return torch.stack(out), state


class IFCell(_Cell):
    """Integrate-and-fire, one step (reset by subtraction by default: the conversion neuron)."""

    step_fn = staticmethod(N.if_step)
    params_cls = N.IFParameters


class LIFCell(_Cell):
    """Leaky integrate-and-fire, one step."""

    step_fn = staticmethod(N.lif_step)
    params_cls = N.LIFParameters


class CubaLIFCell(_Cell):
    """Current-based LIF, one step."""

    step_fn = staticmethod(N.cuba_lif_step)
    params_cls = N.CubaLIFParameters
    state_cls = N.CubaState

    def initial_state(self, x: torch.Tensor) -> N.CubaState:
        return N.CubaState(torch.zeros_like(x), torch.zeros_like(x))


class ALIFCell(_Cell):
    """Adaptive LIF, one step."""

    step_fn = staticmethod(N.alif_step)
    params_cls = N.ALIFParameters
    state_cls = N.ALIFState

    def initial_state(self, x: torch.Tensor) -> N.ALIFState:
        return N.ALIFState(torch.zeros_like(x), torch.zeros_like(x))


class PLIFCell(LIFCell):
    """Parametric LIF (Fang et al. 2021): ``dt / tau_mem = sigmoid(w)`` with ``w`` learned (one per layer).

    Args:
        init_tau: initial ``tau_mem`` in units of ``dt`` (PLIF's tau_0, e.g. 2); a finite number above 1,
            since ``w = -log(init_tau - 1)`` (``sigmoid(w) = 1 / init_tau``). ``tau_mem`` itself is learned,
            not an argument.
    """

    learned = ("tau_mem",)

    def __init__(self, *args: Any, dt: float = 1e-3, surrogate: str = "atan", surrogate_alpha: float | None = None, init_tau: float = 2.0, **params: Any):
        super().__init__(*args, dt=dt, surrogate=surrogate, surrogate_alpha=surrogate_alpha, **params)
        tau0 = _smallest(init_tau)
        if tau0 is None or not 1 < tau0 < math.inf or (isinstance(init_tau, torch.Tensor) and init_tau.numel() != 1):
            initial = f"tau_mem = init_tau * dt = {tau0 * self.dt:g} s at dt = {self.dt:g} s" if tau0 is not None else f"dt = {self.dt:g} s"
            raise ValueError(
                f"PLIF init_tau = {init_tau!r} (the initial tau_mem in units of dt: {initial}) must be one finite number > 1: "
                "PLIF learns dt / tau_mem = sigmoid(w) in (0, 1) from w = -log(init_tau - 1), which is infinite at init_tau = 1 "
                "and undefined below. Give init_tau > 1, i.e. tau_mem > dt (e.g. init_tau=2)"
            )
        # sigmoid(w) = 1 / init_tau; computed in float32 as before (same bits), without .item(), so it builds on the meta device too
        self.w = nn.Parameter(-torch.log(torch.tensor(tau0 - 1.0)))

    def params(self) -> N.LIFParameters:
        return super().params()._replace(tau_mem=self.dt / torch.sigmoid(self.w))


class RecurrentLIFCell(LIFCell):
    """LIF whose input current adds ``W_rec z_{t-1}`` (recurrent spikes; NIR expresses it as a graph cycle).

    Args:
        size: number of neurons (the recurrent matrix is ``size x size``).
    """

    def __init__(self, size: int, *args: Any, dt: float = 1e-3, surrogate: str = "atan", surrogate_alpha: float | None = None, **params: Any):
        super().__init__(*args, dt=dt, surrogate=surrogate, surrogate_alpha=surrogate_alpha, **params)
        (size,) = check_sizes(type(self).__name__, size=size)  # -1, 4.5, "4" were raw errors of nn.Linear
        self.recurrent = nn.Linear(size, size, bias=False)

    def initial_state(self, x: torch.Tensor) -> tuple[N.VState, torch.Tensor]:
        return (N.VState(torch.zeros_like(x)), torch.zeros_like(x))

    def forward(self, x: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        check_current(self, x)
        if not autocast_enabled(x):  # its recurrent weights meet the spikes in a matmul (a raw dtype error before)
            check_weight_dtype(self, x)
        size = self.recurrent.in_features
        if x.shape[-1:] != (size,):
            raise InputError(f"{type(self).__name__} has {size} neurons, so the input's last dimension must be {size}; got shape {tuple(x.shape)}")
        if state is None:
            state = self.initial_state(x)
        elif not (isinstance(state, tuple) and len(state) == 2 and isinstance(state[1], torch.Tensor)):
            raise InputError(f"{type(self).__name__} takes its state as (VState(v), z), the pair a previous call returned; got {type(state).__name__}: pass that pair, or None to start from rest")
        else:
            check_state(self, state[0], x)
            if state[1].shape != x.shape and broadcast_shape(state[1].shape, x.shape) != tuple(x.shape):  # equal shapes: the loop's case, one comparison
                raise InputError(f"{type(self).__name__}: the state's spikes z have shape {tuple(state[1].shape)}, which does not broadcast to the input's shape {tuple(x.shape)}; pass the state the previous call returned, or None to start from rest")
        vstate, z_prev = state
        z, vstate = N.lif_step(x + self.recurrent(z_prev), vstate, self.params(), self.dt, self.spike_fn)
        return z, (vstate, z)


# What help() says of each neuron parameter: (unit, meaning). The defaults are read from the code.
_FIELD_DOCS = {
    "tau_mem": ("seconds", "membrane time constant, at least ``dt``"),
    "tau_syn": ("seconds", "synaptic current time constant, at least ``dt``"),
    "tau_adapt": ("seconds", "time constant of the adaptation ``a``, at least ``dt``"),
    "beta_adapt": ("voltage", "threshold increase per unit of ``a`` (per recent spike)"),
    "r": (None, "input resistance, from input current to voltage"),
    "v_leak": ("voltage", "the resting potential the leak pulls ``v`` towards"),
    "v_threshold": ("voltage", "spike when ``v - v_threshold > 0``"),
    "v_reset": ("voltage", 'the value "zero" resets ``v`` to; "subtract" subtracts ``v_threshold - v_reset``'),
    "w_in": (None, "the jump of the synaptic current per unit of input, each step"),
    "reset": (None, 'after a spike, "zero" sets ``v = v_reset``, "subtract" subtracts ``v_threshold - v_reset``'),
    "detach_reset": (None, "cut the reset out of the gradient"),
    "init_tau": ("units of dt", "the initial ``tau_mem / dt``, a number > 1 (``tau_mem`` itself is learned, not an argument)"),
    "size": (None, "number of neurons (the last dimension of ``x``; the recurrent matrix is ``size x size``)"),
    "dt": ("seconds", "the forward-Euler time step"),
    "surrogate": (None, "the surrogate gradient's name in ``SURROGATES`` (atan, fast_sigmoid, ...)"),
    "surrogate_alpha": (None, "the surrogate's sharpness; None keeps the surrogate's own default"),
    "backend": (None, '"reference", "cpp", "triton" or "auto" (see :class:`_Sequence`)'),
}


def _sequence_doc(seq: type[_Sequence]) -> str:
    """``help()`` text of a sequence neuron: its own summary, then the call, every argument with its unit and
    its default as the code has it (the parameter record's fields, the cell's and the sequence's arguments)."""
    cell = seq.cell_cls
    record = cell.params_cls
    args: list[tuple[str, Any]] = []
    for name, q in inspect.signature(cell.__init__).parameters.items():
        if name != "self" and q.kind not in (q.VAR_KEYWORD, q.VAR_POSITIONAL):
            args.append((name, q.default))
    fields = [(f, record._field_defaults[f]) for f in record._fields if f not in cell.learned]
    args = [a for a in args if a[0] == "size"] + fields + [a for a in args if a[0] != "size"] + [("backend", "reference")]
    lines = []
    for name, default in args:
        unit, meaning = _FIELD_DOCS.get(name, (None, f"see :class:`{cell.__name__}`"))  # a user's own cell may add arguments
        paren = ", ".join(x for x in (unit, "" if default is inspect.Parameter.empty else f"default {default!r}") if x)
        lines.append(f"    {name}{f' ({paren})' if paren else ''}: {meaning}.")
    taus = [f for f, _ in fields if f.startswith("tau_")]
    value_error = "``dt`` not a positive, finite number" + (
        ", or a time constant below ``dt`` (forward Euler needs ``dt / tau <= 1``)" if taus else ""
    ) + (", or ``init_tau`` not a finite number above 1" if "init_tau" in dict(args) else "") + (
        ', or ``reset`` not "zero" or "subtract"' if "reset" in record._fields else ""
    )
    own = inspect.cleandoc(seq.__dict__.get("__doc__") or "")
    return (
        f"{own}\n\n"
        "Call with ``x``, input current ``[T, B, ...]`` (time first), and ``state`` (None: start from rest, all "
        f"zeros) -> ``(spikes [T, B, ...], state)``: spikes 0/1 and the ``{seq.state_doc}`` after the last step "
        "(each ``[B, ...]``). A numeric neuron parameter is a number or a tensor broadcastable to ``[B, ...]`` "
        "(a tensor is a buffer: it follows ``.to()`` and is in the ``state_dict``; an ``nn.Parameter`` is learned, "
        "an optimiser updates it; the fused backends take numbers). Voltages share one arbitrary unit, that of ``v_threshold``.\n\n"
        "Args:\n" + "\n".join(lines) + "\n\n"
        "Raises:\n"
        "    TypeError: a positional neuron parameter (they are keywords), or an unknown keyword argument (the message "
        "lists the allowed ones).\n"
        f"    ValueError: {value_error}.\n"
        "    overlooked.errors.InputError (a ValueError): at call time, an input that is not a floating-point tensor, "
        "or a state that does not fit it.\n"
    )


class IF(_Sequence):
    """Integrate-and-fire over a sequence (:class:`IFCell` each step): ``v <- v + dt r x``, fire, reset
    (:func:`overlooked.spiking.neurons.if_step`)."""

    cell_cls = IFCell


class LIF(_Sequence):
    """Leaky integrate-and-fire over a sequence (:class:`LIFCell` each step), forward Euler of
    ``tau_mem dv/dt = (v_leak - v) + r x`` (:func:`overlooked.spiking.neurons.lif_step`)."""

    cell_cls = LIFCell


class CubaLIF(_Sequence):
    """Current-based LIF over a sequence (:class:`CubaLIFCell` each step): the synaptic current ``i`` decays
    with ``tau_syn`` and receives ``w_in x``; ``v`` integrates ``i`` with ``tau_mem``
    (:func:`overlooked.spiking.neurons.cuba_lif_step`)."""

    cell_cls = CubaLIFCell
    state_doc = "CubaState(v, i)"


class ALIF(_Sequence):
    """Adaptive LIF (Bellec et al. 2018) over a sequence (:class:`ALIFCell` each step): a LIF whose threshold is
    ``v_threshold + beta_adapt a``, ``a`` decaying with ``tau_adapt`` and rising by 1 per spike
    (:func:`overlooked.spiking.neurons.alif_step`)."""

    cell_cls = ALIFCell
    state_doc = "ALIFState(v, a)"


class PLIF(_Sequence):
    """Parametric LIF (Fang et al. 2021) over a sequence (:class:`PLIFCell` each step): a LIF whose
    ``dt / tau_mem = sigmoid(w)`` is learned (one ``w`` per layer), so ``tau_mem`` stays above ``dt``."""

    cell_cls = PLIFCell


class RecurrentLIF(_Sequence):
    """LIF with recurrent spikes over a sequence (:class:`RecurrentLIFCell` each step): the input current
    adds ``W_rec z_{t-1}`` (a learned ``size x size`` matrix, no bias)."""

    cell_cls = RecurrentLIFCell
    state_doc = "(VState(v), z)"  # z: the last step's spikes
