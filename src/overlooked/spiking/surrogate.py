"""Surrogate gradients: a Heaviside spike forward, the derivative of a smooth primitive backward.

Each surrogate carries its smooth primitive ``primitive(x)`` and that primitive's derivative
``derivative(x)``; the spike function's backward is exactly ``derivative`` (a test compares it with
autograd's derivative of ``primitive``). ``x`` is ``v - v_threshold``; a spike is emitted when ``x > 0``.
"""

from __future__ import annotations

import math
import numbers

import torch

from overlooked.registry import SURROGATES


class Surrogate:
    """Base class. ``alpha`` sets the sharpness (larger: narrower). Each carries its smooth ``primitive`` and
    its ``derivative``; all but :class:`FastSigmoid` are step-like (the primitive runs from 0 to 1, so the
    derivative's total mass is 1 at any alpha)."""

    name = "surrogate"

    def __init__(self, alpha: float):
        if not (isinstance(alpha, numbers.Real) and not isinstance(alpha, bool) and 0 < alpha < math.inf):
            raise ValueError(
                f"{type(self).__name__}: alpha = {alpha!r} must be a positive, finite number (the sharpness; zero gives no "
                "gradient, a negative value flips the gradient's sign)"
            )
        self.alpha = float(alpha)

    def primitive(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Spikes ``(x > 0)`` as ``x.dtype``, with this surrogate's gradient."""
        return _SpikeFn.apply(x, self, False)

    def smooth(self, x: torch.Tensor) -> torch.Tensor:
        """The primitive in the forward pass with the same custom backward (used to gradcheck the backward)."""
        return _SpikeFn.apply(x, self, True)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(alpha={self.alpha})"


class _SpikeFn(torch.autograd.Function):
    """Heaviside forward (or the surrogate's primitive, ``smooth``), the surrogate's derivative backward.
    Written with ``setup_context`` and ``generate_vmap_rule`` so that ``torch.func`` transforms (``grad``,
    ``vmap``, per-sample gradients) run through it; its backward is made of PyTorch operations, so it can
    be differentiated again. Forward mode (``torch.func.jvp``, ``jacfwd``, ``torch.autograd.forward_ad``) uses
    the same surrogate derivative: the spike's Jacobian is the diagonal ``derivative(x)`` in both modes, so
    ``jacfwd`` equals ``jacrev``. Second order: ``torch.func.hessian`` (jacfwd over jacrev), jacrev over jacrev and
    jacrev over jacfwd are exact; jacfwd over jacfwd raises (it would silently drop the surrogate's own second derivative)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: torch.Tensor, surrogate: Surrogate, smooth: bool) -> torch.Tensor:  # type: ignore[override]
        return surrogate.primitive(x) if smooth else (x > 0).to(x.dtype)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # type: ignore[override]
        x, surrogate, _ = inputs
        ctx.save_for_backward(x)
        ctx.save_for_forward(x)
        ctx.surrogate = surrogate

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad * ctx.surrogate.derivative(x), None, None

    @staticmethod
    def jvp(ctx, tangent: torch.Tensor, _surrogate, _smooth) -> torch.Tensor:  # type: ignore[override]
        if _forward_levels() > 1:
            raise NotImplementedError(
                "forward mode over forward mode (jacfwd of jacfwd) through the surrogate spike is not supported: the "
                "outer level would not see that the surrogate's derivative depends on the input and would drop its "
                "second derivative; use torch.func.hessian (jacfwd over jacrev) or jacrev over jacrev, which are exact"
            )
        (x,) = ctx.saved_tensors
        return tangent * ctx.surrogate.derivative(x)


def _forward_levels() -> int:
    """How many torch.func forward-mode (jvp) levels are active: the jvp rule runs at its own level, so more than
    one means forward over forward. 0 where this PyTorch does not expose its transform stack."""
    stack = getattr(torch._C._functorch, "get_interpreter_stack", lambda: None)() or []
    jvp = getattr(getattr(torch._C._functorch, "TransformType", None), "Jvp", None)
    return sum(level.key() == jvp for level in stack) if jvp is not None else 0


class FastSigmoid(Surrogate):
    """SuperSpike (Zenke & Ganguli 2018): ``d = 1 / (1 + alpha |x|)^2``, primitive ``x / (1 + alpha |x|)``.

    Unlike the others its peak is 1 whatever alpha, and its total mass is ``2 / alpha`` (the primitive runs
    from ``-1/alpha`` to ``1/alpha``): at the default alpha = 10 it passes a fifth of ATan's total gradient, and
    a larger alpha narrows it and shrinks it. The same function as snnTorch's ``fast_sigmoid(slope=alpha)``
    (whose default slope is 25); SpikingJelly's ``SoftSign(alpha)`` is this scaled by ``alpha / 2``."""

    name = "fast_sigmoid"

    def primitive(self, x):
        return x / (1 + self.alpha * x.abs())

    def derivative(self, x):
        return 1.0 / (1 + self.alpha * x.abs()) ** 2


class ATan(Surrogate):
    """Arctan (Fang et al. 2021): primitive ``arctan(pi/2 alpha x) / pi + 1/2``."""

    name = "atan"

    def primitive(self, x):
        return torch.atan(math.pi / 2 * self.alpha * x) / math.pi + 0.5

    def derivative(self, x):
        return (self.alpha / 2) / (1 + (math.pi / 2 * self.alpha * x) ** 2)


class Sigmoid(Surrogate):
    """Logistic: primitive ``sigmoid(alpha x)``, derivative ``alpha s (1 - s)``."""

    name = "sigmoid"

    def primitive(self, x):
        return torch.sigmoid(self.alpha * x)

    def derivative(self, x):
        s = torch.sigmoid(self.alpha * x)
        return self.alpha * s * (1 - s)


class Triangle(Surrogate):
    """Triangle (Esser et al. 2016): ``d = alpha max(0, 1 - alpha |x|)``, support ``|x| < 1/alpha``."""

    name = "triangle"

    def primitive(self, x):
        a = self.alpha
        y = torch.clamp(a * x, -1.0, 1.0)
        return 0.5 + y - y * y.abs() / 2  # integral of the triangle, 0 at -1/alpha, 1 at +1/alpha

    def derivative(self, x):
        return self.alpha * torch.clamp(1 - self.alpha * x.abs(), min=0.0)


class Rectangle(Surrogate):
    """Rectangular / straight-through: ``d = alpha`` on ``|x| < 1 / (2 alpha)``, 0 elsewhere."""

    name = "rectangle"

    def primitive(self, x):
        return torch.clamp(self.alpha * x + 0.5, 0.0, 1.0)

    def derivative(self, x):
        return self.alpha * (x.abs() < 0.5 / self.alpha).to(x.dtype)


@SURROGATES.register("fast_sigmoid")
def fast_sigmoid(alpha: float = 10.0) -> FastSigmoid:
    return FastSigmoid(alpha)


@SURROGATES.register("atan")
def atan(alpha: float = 2.0) -> ATan:
    return ATan(alpha)


@SURROGATES.register("sigmoid")
def sigmoid(alpha: float = 4.0) -> Sigmoid:
    return Sigmoid(alpha)


@SURROGATES.register("triangle")
def triangle(alpha: float = 1.0) -> Triangle:
    return Triangle(alpha)


@SURROGATES.register("rectangle")
def rectangle(alpha: float = 1.0) -> Rectangle:
    return Rectangle(alpha)
