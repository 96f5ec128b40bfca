"""Surrogates: Heaviside forward, backward = derivative of the primitive, gradcheck of that backward."""

from __future__ import annotations

import math

import pytest
import torch
from torch.autograd import gradcheck

from overlooked.registry import SURROGATES
from overlooked.spiking import surrogate as _surrogates  # noqa: F401  (registers them)
from overlooked.spiking.kernels import _build

NAMES = SURROGATES.names()


def test_all_five_are_registered():
    assert set(NAMES) == {"fast_sigmoid", "atan", "sigmoid", "triangle", "rectangle"}


@pytest.mark.parametrize("name", NAMES)
def test_forward_is_heaviside(name):
    sg = SURROGATES.create(name)
    x = torch.tensor([-1.0, -1e-6, 0.0, 1e-6, 2.0])
    assert sg(x).tolist() == [0.0, 0.0, 0.0, 1.0, 1.0]


@pytest.mark.parametrize("name", NAMES)
def test_backward_equals_derivative_of_primitive(name):
    sg = SURROGATES.create(name)
    x = torch.linspace(-2, 2, 41, dtype=torch.float64).requires_grad_(True)
    (g_spike,) = torch.autograd.grad(sg(x).sum(), x)
    x2 = x.detach().clone().requires_grad_(True)
    (g_primitive,) = torch.autograd.grad(sg.primitive(x2).sum(), x2)
    off_kinks = (x.detach().abs() - 0.5 / sg.alpha).abs() > 1e-9  # the rectangle's derivative jumps there
    torch.testing.assert_close(g_spike[off_kinks], g_primitive[off_kinks])


@pytest.mark.parametrize("name", NAMES)
def test_gradcheck_of_the_custom_backward(name):
    sg = SURROGATES.create(name)
    x = (torch.rand(12, dtype=torch.float64) * 1.6 - 0.8).requires_grad_(True)
    if name in ("rectangle", "triangle"):  # keep away from the kinks where finite differences jump
        x = x.detach()
        x = torch.where((x.abs() - 0.5 / sg.alpha).abs() < 0.05, x + 0.1, x)
        x = torch.where((x.abs() - 1 / sg.alpha).abs() < 0.05, x * 0.5, x).requires_grad_(True)
    assert gradcheck(sg.smooth, (x,))


@pytest.mark.parametrize("name", NAMES)
def test_forward_mode_uses_the_same_surrogate_derivative(name):
    """jvp, jacfwd and forward-AD dual numbers see the Jacobian the backward sees: diag(derivative(x))."""
    import torch.autograd.forward_ad as fwAD

    sg = SURROGATES.create(name)
    x = torch.linspace(-1.5, 1.5, 31, dtype=torch.float64)
    t = torch.randn(31, dtype=torch.float64)
    out, tangent = torch.func.jvp(sg, (x,), (t,))
    assert torch.equal(out, sg(x))
    torch.testing.assert_close(tangent, t * sg.derivative(x), rtol=0, atol=0)
    torch.testing.assert_close(torch.func.jacfwd(sg)(x), torch.func.jacrev(sg)(x), rtol=0, atol=0)
    with fwAD.dual_level():
        dual_out = sg(fwAD.make_dual(x, t))
        torch.testing.assert_close(fwAD.unpack_dual(dual_out).tangent, t * sg.derivative(x), rtol=0, atol=0)


def test_second_order_is_exact_or_refused():
    """hessian (jacfwd over jacrev) and jacrev over jacrev agree, with the surrogate's own second derivative in
    them; jacfwd over jacfwd would drop it (a review found it returned zeros), so it raises."""
    sg = SURROGATES.create("atan")
    x = torch.linspace(-1.5, 1.5, 7, dtype=torch.float64)
    f = lambda v: (sg(v) ** 2 + sg(v)).sum()  # noqa: E731
    by_hessian, by_reverse = torch.func.hessian(f)(x), torch.func.jacrev(torch.func.jacrev(f))(x)
    torch.testing.assert_close(by_hessian, by_reverse)
    x2 = x.clone().requires_grad_(True)
    (slope,) = torch.autograd.grad(sg.derivative(x2).sum(), x2)  # the surrogate's second derivative, d'(x)
    torch.testing.assert_close(torch.func.hessian(lambda v: sg(v).sum())(x).diagonal(), slope)
    assert slope.abs().max() > 0.1
    with pytest.raises(NotImplementedError, match="jacfwd of jacfwd"):
        torch.func.jacfwd(torch.func.jacfwd(sg))(x)


@pytest.mark.parametrize("name", SURROGATES.names())
def test_reverse_over_forward_equals_reverse_over_reverse(name):
    """jacrev over jacfwd (the gradient by forward mode, differentiated in reverse) is the same Hessian as
    jacrev over jacrev, with the surrogate's second derivative on the diagonal, for every surrogate."""
    sg = SURROGATES.create(name)
    x = torch.linspace(-1.5, 1.5, 7, dtype=torch.float64)
    w = torch.linspace(0.5, 2.0, 7, dtype=torch.float64)
    f = lambda v: (w * sg(v) + sg(v) ** 2).sum()  # noqa: E731
    by_reverse = torch.func.jacrev(torch.func.jacrev(f))(x)
    torch.testing.assert_close(torch.func.jacrev(torch.func.jacfwd(f))(x), by_reverse, rtol=1e-12, atol=1e-12)
    x2 = x.clone().requires_grad_(True)
    d = (w * sg.derivative(x2)).sum()
    # w d'(x): the linear term's Hessian diagonal (the rectangle's d is piecewise constant: no graph, d' = 0)
    slope = torch.autograd.grad(d, x2)[0] if d.requires_grad else torch.zeros_like(x)
    assert d.requires_grad == (name != "rectangle")
    torch.testing.assert_close(torch.func.jacrev(torch.func.jacfwd(lambda v: (w * sg(v)).sum()))(x), torch.diag(slope), rtol=1e-12, atol=1e-12)


def test_unknown_surrogate_lists_known():
    with pytest.raises(KeyError, match="atan"):
        SURROGATES.create("arctangent")


# (name, alpha or None for the registry default, x = v - v_threshold, derivative by hand from the docstring's formula)
HAND = [
    # fast sigmoid (SuperSpike, Zenke & Ganguli 2018), default alpha 10: 1 / (1 + alpha |x|)^2
    ("fast_sigmoid", None, 0.0, 1.0),
    ("fast_sigmoid", None, 0.1, 1 / (1 + 1) ** 2),  # 0.25
    ("fast_sigmoid", None, -0.3, 1 / (1 + 3) ** 2),  # 1/16, symmetric in x
    ("fast_sigmoid", 2.0, 0.5, 0.25),
    # arctan (Fang et al. 2021), default alpha 2: (alpha / 2) / (1 + (pi/2 alpha x)^2)
    ("atan", None, 0.0, 1.0),
    ("atan", None, 1 / math.pi, 0.5),  # pi/2 * 2 * (1/pi) = 1
    ("atan", 4.0, 0.0, 2.0),
    ("atan", 4.0, -1 / (2 * math.pi), 1.0),  # pi/2 * 4 / (2 pi) = 1: 2 / 2
    # logistic, default alpha 4: alpha s (1 - s) with s = sigmoid(alpha x)
    ("sigmoid", None, 0.0, 1.0),  # 4 x 1/2 x 1/2
    ("sigmoid", None, math.log(3) / 4, 0.75),  # s = 3/4: 4 x 3/4 x 1/4
    ("sigmoid", 1.0, -math.log(3), 3 / 16),  # s = 1/4
    # triangle (Esser et al. 2016), default alpha 1: alpha max(0, 1 - alpha |x|)
    ("triangle", None, 0.0, 1.0),
    ("triangle", None, -0.25, 0.75),
    ("triangle", None, 1.5, 0.0),
    ("triangle", 2.0, 0.0, 2.0),
    ("triangle", 2.0, 0.25, 1.0),  # 2 (1 - 0.5)
    ("triangle", 2.0, 0.6, 0.0),
    # rectangle, default alpha 1: alpha on |x| < 1 / (2 alpha), else 0
    ("rectangle", None, 0.0, 1.0),
    ("rectangle", None, 0.4, 1.0),
    ("rectangle", None, -0.6, 0.0),
    ("rectangle", 2.0, 0.0, 2.0),
    ("rectangle", 2.0, -0.2, 2.0),
    ("rectangle", 2.0, 0.3, 0.0),  # outside 1/4
]


def _create(name: str, alpha: float | None):
    return SURROGATES.create(name) if alpha is None else SURROGATES.create(name, alpha=alpha)


@pytest.mark.parametrize("name", NAMES)
def test_hand_values_cover_every_surrogate_at_zero_and_away_from_zero(name):
    points = [(a, x) for n, a, x, _ in HAND if n == name]
    assert (None, 0.0) in points and any(x != 0 for a, x in points if a is None) and any(a is not None for a, _ in points)


@pytest.mark.parametrize("name, alpha, x, expected", HAND)
def test_spike_gradient_equals_hand_computed_derivative(name, alpha, x, expected):
    """The gradient the spike function hands back (what training uses), against the formula worked by hand;
    the other tests only compare the code with itself (backward = derivative of its own primitive)."""
    sg = _create(name, alpha)
    xt = torch.tensor([x], dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(sg(xt).sum(), xt)
    assert float(grad) == pytest.approx(expected, rel=1e-12, abs=1e-15)


@pytest.mark.skipif(_build.compiler() is None, reason="no C++ compiler: the cpp backend cannot be built here")
@pytest.mark.parametrize("name", NAMES)
def test_cpp_kernel_surrogates_equal_hand_computed_derivatives(name):
    """The C++ backward has its own copy of each surrogate. One IF step with dt r = 1 from v = 0 and threshold 1
    has h = x and d spike / d x = surrogate(x - 1); with a loss on the spikes alone, that is the input gradient."""
    from overlooked.spiking import modules as M

    rows = [(a, x, e) for n, a, x, e in HAND if n == name]
    for alpha in {a for a, _, _ in rows}:
        xs = [x for a, x, _ in rows if a == alpha]
        layer = M.IF(dt=1.0, r=1.0, surrogate=name, surrogate_alpha=alpha, backend="cpp")
        inp = (1.0 + torch.tensor(xs, dtype=torch.float64)).view(1, 1, -1).requires_grad_()  # [T=1, B=1, n]
        z, _ = layer(inp)
        assert layer.resolved_backend == "cpp"
        (grad,) = torch.autograd.grad(z.sum(), inp)
        expected = [e for a, _, e in rows if a == alpha]
        assert grad.flatten().tolist() == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_rectangle_derivative_is_alpha_inside_the_open_window_and_zero_on_its_edges():
    """Rectangle, alpha = 2: d = 2 on |x| < 1/4, 0 at |x| = 1/4 (the primitive's kinks) and beyond."""
    sg = SURROGATES.create("rectangle", alpha=2.0)
    x = torch.tensor([-0.3, -0.25, -0.2499, 0.0, 0.2499, 0.25, 0.3], dtype=torch.float64)
    assert sg.derivative(x).tolist() == [0.0, 0.0, 2.0, 2.0, 2.0, 0.0, 0.0]
