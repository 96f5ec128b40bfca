"""Neuron modules. A ``*Cell`` does one time step; the plain name runs a time-first ``[T, B, ...]``
sequence through the very same step function, so the two cannot drift apart. ``forward(x, state=None)``
returns ``(out, state)``; with no state a call starts from rest, and nothing persists on the module."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from overlooked.registry import SURROGATES
from overlooked.spiking import kernels
from overlooked.spiking import neurons as N
from overlooked.spiking import surrogate as _surrogates  # noqa: F401  (registers the surrogates)


class _Cell(nn.Module):
    """One step of a neuron: ``step(x, state, params, dt, spike_fn)``."""

    step_fn: Any = None
    params_cls: Any = None

    def __init__(self, dt: float = 1e-3, surrogate: str = "atan", surrogate_alpha: float | None = None, **params: Any):
        super().__init__()
        self.dt = float(dt)
        kwargs = {} if surrogate_alpha is None else {"alpha": surrogate_alpha}
        self.spike_fn = SURROGATES.create(surrogate, **kwargs)  # resolved once, never inside the loop
        self.p = self.params_cls(**params)

    def params(self) -> Any:
        """The parameter record used in the step (PLIF overrides this with its learnable tau)."""
        return self.p

    def initial_state(self, x: torch.Tensor) -> Any:
        zeros = torch.zeros_like(x)
        return N.VState(zeros)

    def forward(self, x: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        """``x``: input current ``[B, ...]`` -> spikes ``[B, ...]`` and the new state."""
        if state is None:
            state = self.initial_state(x)
        return type(self).step_fn(x, state, self.params(), self.dt, self.spike_fn)

    def extra_repr(self) -> str:
        return f"dt={self.dt}, {self.params()}, surrogate={self.spike_fn}"


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

    def __init__(self, *args: Any, backend: str = "reference", **kwargs: Any):
        super().__init__()
        self.cell = self.cell_cls(*args, **kwargs)
        self.backend = backend
        self.resolved_backend = kernels.static_choice(backend, self.cell)  # raises for impossible requests

    def forward(self, x: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        """``x`` ``[T, B, ...]`` -> spikes ``[T, B, ...]`` and the final state."""
        backend = kernels.choose(self.backend, self.cell, x)
        self.resolved_backend = backend  # a record of what ran, never read back by the computation
        if backend != "reference":
            return kernels.run_fused(backend, self.cell, x, state)
        out = []
        for t in range(x.shape[0]):
            z, state = self.cell(x[t], state)
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

    def initial_state(self, x: torch.Tensor) -> N.CubaState:
        return N.CubaState(torch.zeros_like(x), torch.zeros_like(x))


class ALIFCell(_Cell):
    """Adaptive LIF, one step."""

    step_fn = staticmethod(N.alif_step)
    params_cls = N.ALIFParameters

    def initial_state(self, x: torch.Tensor) -> N.ALIFState:
        return N.ALIFState(torch.zeros_like(x), torch.zeros_like(x))


class PLIFCell(LIFCell):
    """Parametric LIF (Fang et al. 2021): ``dt / tau_mem = sigmoid(w)`` with ``w`` learned (one per layer).

    Args:
        init_tau: initial ``tau_mem`` in units of ``dt`` (PLIF's tau_0, e.g. 2).
    """

    def __init__(self, dt: float = 1e-3, surrogate: str = "atan", surrogate_alpha: float | None = None, init_tau: float = 2.0, **params: Any):
        super().__init__(dt, surrogate, surrogate_alpha, **params)
        self.w = nn.Parameter(torch.tensor(-torch.log(torch.tensor(init_tau - 1.0)).item()))  # sigmoid(w) = 1 / init_tau

    def params(self) -> N.LIFParameters:
        return self.p._replace(tau_mem=self.dt / torch.sigmoid(self.w))


class RecurrentLIFCell(LIFCell):
    """LIF whose input current adds ``W_rec z_{t-1}`` (recurrent spikes; NIR expresses it as a graph cycle).

    Args:
        size: number of neurons (the recurrent matrix is ``size x size``).
    """

    def __init__(self, size: int, dt: float = 1e-3, surrogate: str = "atan", surrogate_alpha: float | None = None, **params: Any):
        super().__init__(dt, surrogate, surrogate_alpha, **params)
        self.recurrent = nn.Linear(size, size, bias=False)

    def initial_state(self, x: torch.Tensor) -> tuple[N.VState, torch.Tensor]:
        return (N.VState(torch.zeros_like(x)), torch.zeros_like(x))

    def forward(self, x: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        if state is None:
            state = self.initial_state(x)
        vstate, z_prev = state
        z, vstate = N.lif_step(x + self.recurrent(z_prev), vstate, self.params(), self.dt, self.spike_fn)
        return z, (vstate, z)


class IF(_Sequence):
    cell_cls = IFCell


class LIF(_Sequence):
    cell_cls = LIFCell


class CubaLIF(_Sequence):
    cell_cls = CubaLIFCell


class ALIF(_Sequence):
    cell_cls = ALIFCell


class PLIF(_Sequence):
    cell_cls = PLIFCell


class RecurrentLIF(_Sequence):
    cell_cls = RecurrentLIFCell
