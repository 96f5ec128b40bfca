"""Argument checks that several families' builders share."""

from __future__ import annotations

import math
import numbers
from collections import Counter

import torch


def is_count(v: object, least: int = 1) -> bool:
    """Whether ``v`` is a whole number >= ``least`` of any integral type (``numpy.int64`` too), not a bool or float.

    >>> is_count(3), is_count(0), is_count(2.0), is_count(True), is_count(0, least=0)
    (True, False, False, False, True)
    """
    return not isinstance(v, bool) and isinstance(v, numbers.Integral) and v >= least


def is_real(v: object) -> bool:
    """Whether ``v`` is a finite int or float, not a bool (NaN and inf pass every comparison a range check makes).

    >>> is_real(0.5), is_real(float("nan")), is_real(True), is_real("1")
    (True, False, False, False)
    """
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def repeated(items: list) -> list:
    """The items that occur more than once, sorted (hashable items).

    >>> repeated([3, 1, 3, 2, 1])
    [1, 3]
    """
    return sorted(item for item, n in Counter(items).items() if n > 1)


def check_sizes(name: str, **sizes: int | None) -> tuple[int | None, ...]:
    """Refuse sizes that are not integers >= 1 (``hops=0``, ``embed_dim=2.5``, ``True``) when a model is built,
    not at its first step; any integral type passes (``numpy.int64`` too), None means "not given". Returns the
    sizes in the order given, as Python ints (so that a model stores ints, not numpy scalars).

    >>> import numpy as np
    >>> check_sizes("memn2n", embed_dim=np.int64(20), hops=3)
    (20, 3)

    >>> check_sizes("memn2n", embed_dim=20, hops=0)
    Traceback (most recent call last):
    ...
    ValueError: memn2n: hops must be an int >= 1, got 0
    """
    bad = [
        f"{k} must be an int >= 1, got {v!r}"
        for k, v in sizes.items()
        if v is not None and not is_count(v)
    ]
    if bad:
        raise ValueError(f"{name}: " + "; ".join(bad))
    return tuple(None if v is None else int(v) for v in sizes.values())


def check_std(name: str, init_std: object) -> float:
    """A weight initialisation's standard deviation: a finite number >= 0 (``init_std=-1`` drew nothing
    sensible and was accepted), as a float.

    >>> check_std("memn2n", 0.1)
    0.1
    >>> check_std("memn2n", -1)
    Traceback (most recent call last):
    ...
    ValueError: memn2n: init_std must be a finite number >= 0 (the weights' standard deviation), got -1
    """
    if not (is_real(init_std) and init_std >= 0):
        raise ValueError(f"{name}: init_std must be a finite number >= 0 (the weights' standard deviation), got {init_std!r}")
    return float(init_std)


def reads_values(t: torch.Tensor) -> bool:
    """Whether an input check may read ``t``'s values: on the CPU, where that costs microseconds, and not while
    ``torch.compile`` traces (a data-dependent branch would break the graph) nor inside a ``torch.func``
    transform. On a GPU it would stall every
    step, and an index out of range stops the kernel there anyway."""
    # inside torch.func transforms (vmap, grad, jacrev) a value read is a data-dependent branch they refuse
    return t.device.type == "cpu" and not torch.compiler.is_compiling() and not in_torch_func(t)


def in_torch_func(t: torch.Tensor) -> bool:
    """Whether ``t`` is a ``torch.func`` transform's tensor (the parameters under ``grad`` / ``jacrev`` of a
    ``functional_call``, the inputs under ``vmap``)."""
    return torch._C._functorch.is_functorch_wrapped_tensor(t)


def in_transform() -> bool:
    """Whether the code runs inside a ``torch.func`` transform (``vmap``, ``grad``, ``jacrev``, ``jvp``), whether
    or not the tensors at hand are the transform's: a ``vmap`` over the questions alone still refuses an
    autograd.Function without a vmap rule that a plain story reaches."""
    return torch._C._functorch.maybe_current_level() is not None


def outside(t: torch.Tensor, lo: float, hi: float) -> tuple[float, float] | None:
    """``(min, max)`` of ``t`` when some value lies outside ``[lo, hi]``, else None; None too when
    :func:`reads_values` says not to read it. NaN counts as inside (a diverged model is the trainer's
    non-finite-loss error, not a range error) and is left out of the min and max.

    >>> outside(torch.tensor([0, 3, 9]), 0, 4), outside(torch.tensor([0.5, float("nan")]), 0, 1)
    ((0, 9), None)
    """
    if not t.numel() or not reads_values(t):
        return None
    mn, mx = (v.item() for v in torch.aminmax(t))  # one pass; NaN propagates into both
    if lo <= mn and mx <= hi:
        return None
    if t.is_floating_point():
        t = t[~t.isnan()]
        if not t.numel():
            return None
        mn, mx = (v.item() for v in torch.aminmax(t))
        if lo <= mn and mx <= hi:
            return None
    return mn, mx


def broadcast_shape(*shapes: tuple[int, ...] | torch.Size) -> tuple[int, ...] | None:
    """The shape ``shapes`` broadcast to, or None where they do not broadcast (``torch.broadcast_shapes``
    without its exception).

    >>> broadcast_shape((1, 4), (2, 4)), broadcast_shape((3,), (2, 4))
    ((2, 4), None)
    """
    try:
        return tuple(torch.broadcast_shapes(*shapes))
    except RuntimeError:
        return None


def autocast_enabled(t: torch.Tensor) -> bool:
    """Whether autocast is on for ``t``'s device type; False on a device type that has none (the meta device,
    where ``torch.is_autocast_enabled`` raises)."""
    try:
        return torch.is_autocast_enabled(t.device.type)
    except RuntimeError:
        return False
