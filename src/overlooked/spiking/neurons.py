"""Spiking neurons as pure step functions: charge, fire, reset.

Parameters carry NIR's names and meaning (``tau_mem``, ``tau_syn``, ``v_threshold``, ``v_reset``,
``v_leak``, ``r``; times in seconds). ``dt`` is always an explicit argument.

**Discretisation (one rule, used everywhere, the exporter included): forward Euler**, as Norse uses. The
continuous LIF ``tau_mem dv/dt = (v_leak - v) + r i`` becomes ``v <- v + (dt / tau_mem) (v_leak - v + r i)``,
i.e. ``v <- beta v + (1 - beta)(v_leak + r i)`` with ``beta = 1 - dt / tau_mem``. A spike is emitted when
``v - v_threshold > 0``; reset is to ``v_reset`` ("zero") or by subtracting ``v_threshold - v_reset``
("subtract"), with ``detach_reset`` cutting the reset out of the gradient.

Every step function takes ``(input, state, params, dt, spike_fn)`` and returns ``(spikes, new_state)``;
nothing is stored between calls.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Literal, NamedTuple

import torch

Tensor = torch.Tensor
Scalar = float | Tensor
SpikeFn = Callable[[Tensor], Tensor]
ResetMode = Literal["zero", "subtract"]


# ---- parameter and state records --------------------------------------------------------------------


class IFParameters(NamedTuple):
    """Integrate-and-fire: ``dv/dt = r i`` (NIR ``IF``)."""

    r: Scalar = 1.0
    v_threshold: Scalar = 1.0
    v_reset: Scalar = 0.0
    reset: ResetMode = "subtract"
    detach_reset: bool = False


class LIFParameters(NamedTuple):
    """Leaky integrate-and-fire: ``tau_mem dv/dt = (v_leak - v) + r i`` (NIR ``LIF``)."""

    tau_mem: Scalar = 10e-3
    r: Scalar = 1.0
    v_leak: Scalar = 0.0
    v_threshold: Scalar = 1.0
    v_reset: Scalar = 0.0
    reset: ResetMode = "zero"
    detach_reset: bool = False


class CubaLIFParameters(NamedTuple):
    """Current-based LIF (NIR ``CubaLIF``): ``tau_syn di/dt = -i + w_in x``, ``tau_mem dv/dt = (v_leak - v) + r i``."""

    tau_syn: Scalar = 5e-3
    tau_mem: Scalar = 10e-3
    r: Scalar = 1.0
    v_leak: Scalar = 0.0
    v_threshold: Scalar = 1.0
    v_reset: Scalar = 0.0
    w_in: Scalar = 1.0
    reset: ResetMode = "zero"
    detach_reset: bool = False


class ALIFParameters(NamedTuple):
    """Adaptive LIF (Bellec et al. 2018): the threshold rises by ``beta_adapt`` per recent spike,
    ``v_threshold + beta_adapt a`` with ``tau_adapt da/dt = -a`` and ``a += 1`` per spike.

    The LSNN papers write the trace as ``b <- rho b + (1 - rho) z`` (``rho = exp(-dt / tau_adapt)``) with the
    threshold ``b0 + beta b``; here a spike adds 1, not ``1 - rho``, so ``beta_adapt = beta * (1 - rho)``, about
    ``beta * dt / tau_adapt``: their beta = 1.6 at dt = 1 ms and tau_adapt = 200 ms is ``beta_adapt = 0.008``,
    where 1.6 copied in adapts about 200 times as strongly."""

    tau_mem: Scalar = 20e-3
    tau_adapt: Scalar = 200e-3
    beta_adapt: Scalar = 0.2
    r: Scalar = 1.0
    v_leak: Scalar = 0.0
    v_threshold: Scalar = 1.0
    v_reset: Scalar = 0.0
    reset: ResetMode = "zero"
    detach_reset: bool = False


class VState(NamedTuple):
    """Membrane potential only (IF, LIF)."""

    v: Tensor


class CubaState(NamedTuple):
    v: Tensor
    i: Tensor


class ALIFState(NamedTuple):
    v: Tensor
    a: Tensor


# ---- the forward-Euler condition ---------------------------------------------------------------------

EULER_RTOL = 1e-6  # slack on dt / tau <= 1, so a tau stored in float32 (a NIR file, a tensor) equal to dt passes


def dt_error(dt: object) -> str | None:
    """Why ``dt`` is no forward-Euler step (a positive, finite number of seconds), or None. The modules check
    their ``dt`` with this when built and :func:`overlooked.spiking.nir.check_dt` the dt a graph is run at.

    >>> dt_error(1e-3) is None, dt_error(0)
    (True, 'dt must be a positive, finite number of seconds (the forward-Euler step), got 0')
    """
    if isinstance(dt, bool) or not isinstance(dt, numbers.Real) or not math.isfinite(dt) or dt <= 0:
        return f"dt must be a positive, finite number of seconds (the forward-Euler step), got {dt!r}"
    return None


def euler_step_error(field: str, tau: float, dt: float) -> str | None:
    """Why forward Euler at step ``dt`` cannot run the time constant ``tau`` (both in seconds), or None.

    The leak ``v <- v + (dt / tau)(v_leak - v)`` decays monotonically only for ``dt / tau <= 1``; for
    ``1 < dt / tau <= 2`` it overshoots and oscillates around ``v_leak``, beyond 2 it diverges. So a time
    constant must be positive and at least ``dt`` (``tau = dt`` is the memoryless limit). The modules check
    their ``tau_*`` fields with this when built, and :func:`overlooked.spiking.nir.check_euler_steps` a NIR
    graph's when read, so both refuse the same values.

    >>> euler_step_error("tau_mem", 2e-3, 1e-3) is None
    True
    >>> euler_step_error("tau_mem", 0.5e-3, 1e-3)
    'tau_mem = 0.0005 s, so dt / tau_mem = 2 at dt = 0.001 s; forward Euler needs dt / tau <= 1 (between 1 and 2 the leak overshoots and oscillates, beyond 2 it diverges)'
    """
    if not tau > 0:  # NaN too
        return f"{field} = {tau}: a time constant must be positive"
    if field in ("tau_mem", "tau") and math.isinf(tau):  # the input is scaled by dt / tau_mem as well as the leak
        return f"{field} = inf: the membrane would never charge (the input current is scaled by dt / {field} too); for a neuron without leak use IF"
    if dt / tau > 1 + EULER_RTOL:
        return (
            f"{field} = {tau:g} s, so dt / {field} = {dt / tau:.3g} at dt = {dt:g} s; forward Euler needs dt / tau <= 1 "
            "(between 1 and 2 the leak overshoots and oscillates, beyond 2 it diverges)"
        )
    return None


# ---- charge, fire, reset ----------------------------------------------------------------------------


def leaky_charge(v: Tensor, current: Tensor, tau_mem: Scalar, v_leak: Scalar, r: Scalar, dt: float) -> Tensor:
    """Forward-Euler LIF update: ``v + (dt / tau_mem) (v_leak - v + r current)``."""
    return v + (dt / tau_mem) * (v_leak - v + r * current)


def fire(v: Tensor, v_threshold: Scalar, spike_fn: SpikeFn) -> Tensor:
    """Spikes where ``v > v_threshold``, with the surrogate gradient of ``spike_fn``."""
    return spike_fn(v - v_threshold)


def reset(v: Tensor, z: Tensor, v_threshold: Scalar, v_reset: Scalar, mode: ResetMode, detach: bool) -> Tensor:
    """After a spike: ``v <- v_reset`` ("zero") or ``v <- v - (v_threshold - v_reset)`` ("subtract")."""
    zr = z.detach() if detach else z
    if mode == "zero":
        return v - zr * (v - v_reset)
    if mode == "subtract":
        return v - zr * (v_threshold - v_reset)
    raise ValueError(f"reset must be 'zero' or 'subtract', got {mode!r}")


# ---- step functions ---------------------------------------------------------------------------------


def if_step(x: Tensor, state: VState, p: IFParameters, dt: float, spike_fn: SpikeFn) -> tuple[Tensor, VState]:
    """IF: ``v <- v + dt r x``, fire, reset."""
    v = state.v + dt * p.r * x
    z = fire(v, p.v_threshold, spike_fn)
    return z, VState(reset(v, z, p.v_threshold, p.v_reset, p.reset, p.detach_reset))


def lif_step(x: Tensor, state: VState, p: LIFParameters, dt: float, spike_fn: SpikeFn) -> tuple[Tensor, VState]:
    """LIF: charge with input current ``x``, fire, reset.

    >>> from overlooked.spiking.surrogate import FastSigmoid
    >>> p = LIFParameters(tau_mem=2e-3, v_threshold=1.0)  # dt / tau = 0.5
    >>> z, s = lif_step(torch.tensor([4.0]), VState(torch.zeros(1)), p, 1e-3, FastSigmoid(10))
    >>> float(z), float(s.v)  # v = 0 + 0.5 (0 - 0 + 4) = 2 > 1: spike, reset to 0
    (1.0, 0.0)
    """
    v = leaky_charge(state.v, x, p.tau_mem, p.v_leak, p.r, dt)
    z = fire(v, p.v_threshold, spike_fn)
    return z, VState(reset(v, z, p.v_threshold, p.v_reset, p.reset, p.detach_reset))


def cuba_lif_step(x: Tensor, state: CubaState, p: CubaLIFParameters, dt: float, spike_fn: SpikeFn) -> tuple[Tensor, CubaState]:
    """Current-based LIF: the membrane integrates the synaptic current, which decays and receives ``w_in x``.

    Order: ``v`` is charged with the current before this step's input arrives; then the current decays
    and the input is added (as Norse's recurrent ``lif_step``), so the input reaches ``v`` one step later.
    Norse 1.1.0 adds the input first in ``lif_feed_forward_step`` and in the CubaLIF its NIR importer builds:
    with ``v_leak = 0`` its spikes lead ours by exactly one step (a review check, 2026-12-05; with another
    ``v_leak`` Norse also leaks the current towards it, so they differ by more than a shift).
    """
    v = leaky_charge(state.v, state.i, p.tau_mem, p.v_leak, p.r, dt)
    if v.shape != x.shape:  # a state that broadcasts to the input (a scalar, a [1, N] row): spikes take the input's shape
        v = v.expand(torch.broadcast_shapes(v.shape, x.shape))
    z = fire(v, p.v_threshold, spike_fn)
    v = reset(v, z, p.v_threshold, p.v_reset, p.reset, p.detach_reset)
    i = state.i - (dt / p.tau_syn) * state.i + p.w_in * x
    return z, CubaState(v, i)


def alif_step(x: Tensor, state: ALIFState, p: ALIFParameters, dt: float, spike_fn: SpikeFn) -> tuple[Tensor, ALIFState]:
    """Adaptive LIF: the threshold is ``v_threshold + beta_adapt a``; ``a`` decays with ``tau_adapt`` and
    jumps by 1 per spike."""
    v = leaky_charge(state.v, x, p.tau_mem, p.v_leak, p.r, dt)
    threshold = p.v_threshold + p.beta_adapt * state.a
    z = fire(v, threshold, spike_fn)
    v = reset(v, z, threshold, p.v_reset, p.reset, p.detach_reset)
    a = state.a - (dt / p.tau_adapt) * state.a + z
    return z, ALIFState(v, a)
