"""EM routing, spread loss and matrix capsule layers: hand-computed values, assignments summing to one over
parents, gradcheck in float64, no NaN at the edges."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.autograd import gradcheck

from overlooked.capsules import functional as CF
from overlooked.capsules.matrix import ClassCaps, ConvCaps
from overlooked.capsules.models import SpreadLoss, SpreadMarginSchedule, matcaps_em_small


def test_em_one_parent_by_hand():
    votes = torch.tensor([[[[1.0]], [[3.0]]]], dtype=torch.float64)  # [N=1, I=2, J=1, H=1]
    act = torch.ones(1, 2, dtype=torch.float64)
    beta_u, beta_a = torch.tensor([0.5], dtype=torch.float64), torch.tensor([2.0], dtype=torch.float64)
    mu, a, R = CF.em_routing(votes, act, beta_u, beta_a, iterations=1, inverse_temperatures=[0.1])
    # mu = 2, sigma^2 = 1 + eps, mass = 2: cost = (0.5 + 0.5 log(1 + eps)) * 2
    var = 1.0 + CF.EM_EPS_VAR
    mass = 2.0 + CF.EM_EPS_MASS
    cost = (0.5 + 0.5 * math.log(var)) * mass
    torch.testing.assert_close(mu, torch.full((1, 1, 1), 2.0 * 2.0 / mass, dtype=torch.float64))
    torch.testing.assert_close(a, torch.sigmoid(torch.tensor([[0.1 * (2.0 - cost)]], dtype=torch.float64)))
    torch.testing.assert_close(R, torch.ones(1, 2, 1, dtype=torch.float64))


def test_em_assignments_sum_to_one_over_parents_and_follow_the_votes():
    torch.manual_seed(0)
    # children 0-2 agree (near +3) on parent 0 and scatter for parent 1; children 3-5 the other way round
    votes = torch.randn(1, 6, 2, 4)
    votes[0, :3, 0] = 3 + 0.1 * torch.randn(3, 4)
    votes[0, 3:, 1] = -3 + 0.1 * torch.randn(3, 4)
    zeros = torch.zeros(2)
    _, _, R1 = CF.em_routing(votes, torch.ones(1, 6), zeros, zeros, iterations=1)
    torch.testing.assert_close(R1, torch.full((1, 6, 2), 0.5))  # uniform before any E-step
    _, a, R = CF.em_routing(votes, torch.ones(1, 6), zeros, zeros, iterations=3, inverse_temperatures=[0.01] * 3)
    torch.testing.assert_close(R.sum(-1), torch.ones(1, 6))
    assert R[0, :3, 0].mean() > 0.75 and R[0, 3:, 1].mean() > 0.75  # each group routes to the parent it agrees on


def _em_reference(V, a_in, beta_u, beta_a, lambdas, eps_var, eps_mass):
    """Hinton et al. 2018, Procedure 1, written plainly in float64 numpy with explicit loops; an independent
    reference for ``CF.em_routing``. The variant is the code's documented one: ``cost_h = (beta_u + log sigma_h)
    sum_i R_ij`` as in Procedure 1, ``eps_var`` added to every ``sigma_h^2`` and ``eps_mass`` to ``sum_i R_ij``
    in the M-step (in the divisions and in the cost, as the code does), the caller's inverse temperatures, and no
    E-step after the last M-step (the paper's final E-step changes neither ``mu`` nor ``a``), so the returned
    ``R`` is the one the last M-step used (before the ``R_ij a_i`` weighting).

    Returns ``(mu [N, J, H], a [N, J], R [N, I, J])``."""
    N, I, J, H = V.shape
    R = np.full((N, I, J), 1.0 / J)
    for t, lam in enumerate(lambdas):
        mu, var, a = np.zeros((N, J, H)), np.zeros((N, J, H)), np.zeros((N, J))
        for n in range(N):
            for j in range(J):  # M-step for parent j
                r = [R[n, i, j] * a_in[n, i] for i in range(I)]  # R_ij <- R_ij a_i
                mass = sum(r) + eps_mass
                total_cost = 0.0
                for h in range(H):
                    mu[n, j, h] = sum(r[i] * V[n, i, j, h] for i in range(I)) / mass
                    var[n, j, h] = sum(r[i] * (V[n, i, j, h] - mu[n, j, h]) ** 2 for i in range(I)) / mass + eps_var
                    total_cost += (beta_u[j] + math.log(math.sqrt(var[n, j, h]))) * mass  # cost_h
                a[n, j] = 1.0 / (1.0 + math.exp(-lam * (beta_a[j] - total_cost)))  # logistic
        if t == len(lambdas) - 1:
            return mu, a, R
        R = np.zeros((N, I, J))
        for n in range(N):
            for i in range(I):  # E-step for child i: p_j = N(V_ij | mu_j, diag sigma_j^2), the density itself
                p = [
                    math.exp(-sum((V[n, i, j, h] - mu[n, j, h]) ** 2 / (2 * var[n, j, h]) for h in range(H)))
                    / math.sqrt(math.prod(2 * math.pi * var[n, j, h] for h in range(H)))
                    for j in range(J)
                ]
                norm = sum(a[n, k] * p[k] for k in range(J))
                for j in range(J):
                    R[n, i, j] = a[n, j] * p[j] / norm
    raise AssertionError("no iterations")


EM_EXAMPLE_EPS_VAR = 0.05  # the variance floor of the unit-scale example: comparable to its votes' spread


def _em_example(scale=1.0):
    """3 children, 2 parents, 4x4 poses: ``(M [1, 3, 4, 4], W [3, 2, 4, 4], V [1, 3, 2, 16], a_in, beta_u, beta_a)``
    with votes ``V_ij = M_i W_ij`` (numpy matmul, flattened row-major).

    The children's votes for parent 0 spread half as far as those for parent 1, so the parents end with different
    variances and activations. Sixteen-dimensional densities of three points easily saturate the assignments to
    0 or 1, where the E-step's terms no longer show; a variance floor ``EM_EXAMPLE_EPS_VAR`` comparable to the
    spread keeps every R_ij and a_j well inside (0, 1) over three iterations. ``scale`` multiplies the poses (so
    the votes and sigma) and shifts ``beta_u`` by ``-log(scale)``: with the floor scaled by ``scale^2`` too, the
    costs, activations and assignments are unchanged (``scale = sqrt(EM_EPS_VAR / EM_EXAMPLE_EPS_VAR)`` lets the
    code's default floor play the same part)."""
    rng = np.random.default_rng(1)
    M = np.eye(4) + 0.1 * rng.normal(size=(1, 3, 4, 4))  # [N, I, 4, 4]
    W0 = rng.normal(size=(2, 4, 4))  # [J, 4, 4]
    W = W0[None] + np.array([0.1, 0.2])[None, :, None, None] * rng.normal(size=(3, 2, 4, 4))  # [I, J, 4, 4]
    M = scale * M
    V = np.einsum("niab,ijbc->nijac", M, W).reshape(1, 3, 2, 16)  # [N, I, J, 16]
    a_in = np.array([[0.9, 0.7, 0.4]])
    beta_u, beta_a = np.array([1.0, 0.8]) - math.log(scale), np.array([0.5, -0.5])
    return M, W, V, a_in, beta_u, beta_a


def _f64(x):
    return torch.tensor(x, dtype=torch.float64)


@pytest.mark.parametrize("lambdas", [[0.05, 0.1, 0.2], [0.1, 0.2], [0.02, 0.05, 0.1, 0.15]])
def test_em_routing_equals_an_independent_float64_reference(lambdas):
    """mu, a and R after 2-4 iterations (so at least one E-step ran) equal a plain re-implementation of
    Procedure 1 in float64. Catches the E-step mutations the other tests miss (dropping the log(2 pi sigma^2)
    normaliser, sqrt(sigma^2) in it, logit for log a_j, removing a_j, dropping the 1/2 of the exponent,
    normalising over children) and M-step ones (R not weighted by a_i, log sigma^2 for log sigma in the cost,
    the cost not weighted by the routed mass, the variance floor left out)."""
    _, _, V, a_in, beta_u, beta_a = _em_example()
    mu_ref, a_ref, R_ref = _em_reference(V, a_in, beta_u, beta_a, lambdas, EM_EXAMPLE_EPS_VAR, eps_mass=0.0)
    inputs = (_f64(V), _f64(a_in), _f64(beta_u), _f64(beta_a))
    mu, a, R = CF.em_routing(*inputs, len(lambdas), lambdas, eps_var=EM_EXAMPLE_EPS_VAR, eps_mass=0.0)
    torch.testing.assert_close(mu, _f64(mu_ref), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(a, _f64(a_ref), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(R, _f64(R_ref), rtol=1e-10, atol=1e-12)
    # not a degenerate example: the assignments and activations are well inside (0, 1), far from uniform
    assert 0.003 < R_ref.min() and R_ref.max() < 0.997 and np.abs(R_ref - 0.5).max() > 0.25
    assert 0.05 < a_ref.min() and a_ref.max() < 0.95 and abs(a_ref[0, 0] - a_ref[0, 1]) > 0.2


def test_em_routing_defaults_equal_the_reference():
    """Every default at once (3 iterations, the inverse temperature schedule, ``EM_EPS_VAR``, ``EM_EPS_MASS``)
    against the reference with the documented schedule written out: ``lambda_t = 0.01 (1 - 0.95^(t+1))``."""
    _, _, V, a_in, beta_u, beta_a = _em_example(scale=math.sqrt(CF.EM_EPS_VAR / EM_EXAMPLE_EPS_VAR))
    lambdas = [0.01 * (1 - 0.95 ** (t + 1)) for t in range(3)]
    mu_ref, a_ref, R_ref = _em_reference(V, a_in, beta_u, beta_a, lambdas, CF.EM_EPS_VAR, CF.EM_EPS_MASS)
    mu, a, R = CF.em_routing(_f64(V), _f64(a_in), _f64(beta_u), _f64(beta_a))
    for got, want in ((mu, mu_ref), (a, a_ref), (R, R_ref)):
        torch.testing.assert_close(got, _f64(want), rtol=1e-10, atol=1e-12)
    assert np.abs(R_ref - 0.5).max() > 0.3  # the E-steps moved the assignments


def test_votes_and_route_equals_the_reference_on_4x4_poses():
    """The matrix layers' path: votes ``V_ij = M_i W_ij`` from 4x4 poses (the parent-major layout of
    ``matrix._votes``) then EM routing with the default floors, equal to numpy matmuls plus the reference. The
    scaled example behaves as the unit one (same activations and assignments, poses scaled)."""
    from overlooked.capsules.matrix import votes_and_route

    scale = math.sqrt(CF.EM_EPS_VAR / EM_EXAMPLE_EPS_VAR)
    M, W, V, a_in, beta_u, beta_a = _em_example(scale)
    lambdas = [0.05, 0.1, 0.2]
    mu_ref, a_ref, R_ref = _em_reference(V, a_in, beta_u, beta_a, lambdas, CF.EM_EPS_VAR, CF.EM_EPS_MASS)
    mu, a, R = votes_and_route(_f64(M).view(1, 3, 16), _f64(W), _f64(a_in), _f64(beta_u), _f64(beta_a), 3, lambdas)
    for got, want in ((mu, mu_ref), (a, a_ref), (R, R_ref)):
        torch.testing.assert_close(got, _f64(want), rtol=1e-9, atol=1e-12)
    mu1, a1, R1 = _em_reference(*_em_example()[2:], lambdas, EM_EXAMPLE_EPS_VAR, 0.0)
    np.testing.assert_allclose(a_ref, a1, rtol=1e-6)
    np.testing.assert_allclose(R_ref, R1, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(mu_ref, scale * mu1, rtol=1e-6, atol=1e-9)


def test_em_gradcheck_float64():
    torch.manual_seed(1)
    votes = torch.randn(2, 5, 3, 4, dtype=torch.float64, requires_grad=True)
    act = torch.rand(2, 5, dtype=torch.float64, requires_grad=True)
    beta_u = torch.randn(3, dtype=torch.float64, requires_grad=True)
    beta_a = torch.randn(3, dtype=torch.float64, requires_grad=True)
    for out in (0, 1):
        assert gradcheck(lambda v, a, bu, ba, out=out: CF.em_routing(v, a, bu, ba, 3, [0.5, 0.75, 1.0])[out], (votes, act, beta_u, beta_a))


def test_em_no_nan_at_the_edges():
    votes = torch.zeros(2, 4, 3, 16, requires_grad=True)  # identical votes: variance 0 before eps
    act = torch.zeros(2, 4)  # no child active: no mass reaches any parent
    mu, a, R = CF.em_routing(votes, act, torch.zeros(3), torch.zeros(3), iterations=3)
    (mu.sum() + a.sum()).backward()
    for t in (mu, a, R, votes.grad):
        assert torch.isfinite(t).all()
    big = 1e3 * torch.randn(2, 4, 3, 16)  # far-apart votes: tiny densities, handled in log space
    mu, a, R = CF.em_routing(big, torch.ones(2, 4), torch.zeros(3), torch.zeros(3), iterations=3, inverse_temperatures=[1.0] * 3)
    assert torch.isfinite(R).all() and torch.isfinite(a).all()
    with pytest.raises(ValueError, match="inverse temperature"):
        CF.em_routing(big, torch.ones(2, 4), torch.zeros(3), torch.zeros(3), iterations=2, inverse_temperatures=[1.0])


def test_spread_loss_hand_values_and_margin_schedule():
    a = torch.tensor([[0.8, 0.7, 0.1], [0.2, 0.9, 0.3]])
    # m = 0.5. ex 0, target 0: (0.5 - (0.8-0.7))^2 + max(0, 0.5 - (0.8-0.1))^2 = 0.16 + 0
    # ex 1, target 2: (0.5 - (0.3-0.2))^2 + (0.5 - (0.3-0.9))^2 = 0.16 + 1.21
    expected = torch.tensor([0.16, 0.16 + 1.21])
    torch.testing.assert_close(CF.spread_loss(a, torch.tensor([0, 2]), 0.5), expected)
    out = {"logits": a, "spread_margin": torch.tensor(0.5)}
    torch.testing.assert_close(SpreadLoss()(out, {"label": torch.tensor([0, 2])}), expected.mean())
    assert CF.spread_margin(0, 10) == pytest.approx(0.2) and CF.spread_margin(10, 10) == pytest.approx(0.9)

    class Ctx:  # what the trainer hands callbacks, reduced to what the schedule reads
        def __init__(self, model, step):
            self.model, self.state = model, type("S", (), {"step": step})()

    model = matcaps_em_small(A=4, B=2, C=2, D=2, iterations=1)
    SpreadMarginSchedule(ramp_steps=100).on_step_end(Ctx(model, 50), 0.0)
    assert float(model(torch.rand(1, 1, 28, 28))["spread_margin"]) == pytest.approx(0.55)


def test_convcaps_window_and_class_caps_coordinate_addition():
    torch.manual_seed(0)
    layer = ConvCaps(in_types=2, out_types=3, kernel_size=3, stride=2, iterations=2)
    pose, act = layer(torch.randn(1, 7, 7, 2, 16), torch.rand(1, 7, 7, 2))
    assert pose.shape == (1, 3, 3, 3, 16) and act.shape == (1, 3, 3, 3)
    caps = ClassCaps(in_types=1, num_classes=2, iterations=1)
    with torch.no_grad():
        caps.W.zero_()  # every vote is 0 before coordinate addition, so mu is the mean coordinate offset
    mu, _, _ = caps(torch.zeros(1, 2, 2, 1, 16), torch.ones(1, 2, 2, 1))
    expected = torch.zeros(16)
    expected[3] = expected[7] = 0.5  # centres (0.25, 0.75) in rows and columns average to 0.5
    torch.testing.assert_close(mu[0, 0], expected, atol=1e-6, rtol=0)


def test_routing_backend_compiled_equals_reference_values_and_gradients():
    """``routing_backend="compiled"`` (torch.compile of votes + EM routing) is the same maths as the reference:
    outputs and every parameter gradient of a whole small matrix-capsule net agree in float64, also at a
    second batch size (a recompile) and without gradients (the evaluation path)."""
    from torch._dynamo.utils import counters

    from overlooked.capsules import matrix

    graphs_before = counters["stats"]["unique_graphs"]
    torch.manual_seed(0)
    kwargs = dict(A=8, B=4, C=4, D=3, num_classes=5, iterations=2)
    ref = matcaps_em_small(**kwargs).double()
    fast = matcaps_em_small(**kwargs, routing_backend="compiled").double()
    fast.load_state_dict(ref.state_dict())
    for batch in (3, 2):
        x = torch.randn(batch, 1, 20, 20, dtype=torch.float64)  # 20 -> 8 -> 8 -> 3 -> 1
        out_r, out_f = ref(x), fast(x)
        torch.testing.assert_close(out_f["logits"], out_r["logits"], rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(out_f["poses"], out_r["poses"], rtol=1e-9, atol=1e-12)
        for m, out in ((ref, out_r), (fast, out_f)):
            m.zero_grad()
            (out["logits"].square().sum() + out["poses"].sin().sum()).backward()
        for (name, p_r), p_f in zip(ref.named_parameters(), fast.parameters()):
            torch.testing.assert_close(p_f.grad, p_r.grad, rtol=1e-8, atol=1e-11, msg=name)
    with torch.no_grad():
        torch.testing.assert_close(fast(x)["logits"], ref(x)["logits"], rtol=1e-9, atol=1e-12)
    assert matrix._compiled_route is not None and counters["stats"]["unique_graphs"] > graphs_before  # compiled graphs ran


def test_routing_backend_compiled_runs_eagerly_on_meta_tensors_and_inside_torch_func():
    """Meta tensors and torch.func transforms do not compile: the compiled backend runs the same maths eagerly
    there (a meta forward blamed a missing C++ compiler; grad of a functional_call was a raw Dynamo error)."""
    from torch.func import functional_call, grad

    kwargs = dict(A=8, B=4, C=4, D=3, num_classes=5, iterations=2)
    with torch.device("meta"):
        meta = matcaps_em_small(**kwargs, routing_backend="compiled")
    assert meta(torch.empty(2, 1, 20, 20, device="meta"))["logits"].shape == (2, 5)
    torch.manual_seed(0)
    model = matcaps_em_small(**kwargs, routing_backend="compiled").double()
    x = torch.randn(2, 1, 20, 20, dtype=torch.float64)

    def loss(params):
        return functional_call(model, params, (x,))["logits"].square().sum()

    got = grad(loss)(dict(model.named_parameters()))
    loss(dict(model.named_parameters())).backward()
    for name, p in model.named_parameters():
        torch.testing.assert_close(got[name], p.grad, rtol=1e-8, atol=1e-11, msg=name)


def test_routing_backend_compiled_failure_names_the_fix(monkeypatch):
    """A machine where torch.compile cannot build (no C++ compiler, no Triton) gets an error naming the cause
    and the fallback, not inductor's traceback alone."""
    from torch._dynamo.exc import BackendCompilerFailed

    from overlooked.capsules import matrix

    def broken(fn, **kwargs):
        def call(*args, **kw):
            raise BackendCompilerFailed(lambda *a: None, RuntimeError("no working C++ compiler"), None)

        return call

    monkeypatch.setattr(matrix, "_compiled_route", None)
    monkeypatch.setattr(torch, "compile", broken)
    model = matcaps_em_small(A=4, B=2, C=2, D=2, iterations=1, routing_backend="compiled")
    with pytest.raises(RuntimeError, match="routing_backend='reference'") as info:
        model(torch.rand(1, 1, 20, 20))
    assert "no working C++ compiler" in str(info.value.__cause__)


def test_routing_backend_compiled_counts_the_same_flops_as_the_reference():
    """FlopCounterMode cannot see inside compiled graphs; under it the compiled backend runs the same maths eagerly."""
    from torch.utils.flop_counter import FlopCounterMode

    def flops(model):
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            model(torch.rand(1, 1, 20, 20))
        return counter.get_total_flops()

    kwargs = dict(A=4, B=2, C=2, D=2, iterations=2)
    reference = flops(matcaps_em_small(**kwargs))
    assert reference > 0 and flops(matcaps_em_small(**kwargs, routing_backend="compiled")) == reference


def test_routing_backend_unknown_name_is_refused():
    with pytest.raises(ValueError, match="routing_backend must be one of"):
        matcaps_em_small(routing_backend="fused")


def test_em_routing_names_the_expected_shapes():
    """Was: "not enough values to unpack (expected 4, got 3)" for one example's votes."""
    votes, act, beta = torch.randn(2, 6, 3, 16), torch.rand(2, 6), torch.zeros(3)
    with pytest.raises(ValueError, match=r"em_routing takes votes \[N, I, J, H\] \(batch, child capsules, parent capsules, pose size 16\); got \[6, 3, 16\]"):
        CF.em_routing(votes[0], act, beta, beta)
    with pytest.raises(ValueError, match=r"em_routing takes child activations \[N, I\] = \[2, 6\] .*; got \[2, 6, 1\]"):
        CF.em_routing(votes, act.unsqueeze(-1), beta, beta)
    with pytest.raises(ValueError, match=r"got \[6\]$"):
        CF.em_routing(votes, act[0], beta, beta)
    with pytest.raises(ValueError, match=r"got \[2, 5\]$"):  # two dims, but not the votes' children
        CF.em_routing(votes, act[:, :5], beta, beta)
    # betas of another size, and integer votes, failed inside the M-step's broadcast or bmm
    with pytest.raises(ValueError, match=r"em_routing takes beta_u \[J\] = \[3\] .*; got \[4\]$"):
        CF.em_routing(votes, act, torch.zeros(4), beta)
    with pytest.raises(ValueError, match=r"em_routing takes beta_a \[J\] = \[3\] .*; got str$"):
        CF.em_routing(votes, act, beta, "0.5")
    torch.testing.assert_close(CF.em_routing(votes, act, 0.5, 0.5)[1], CF.em_routing(votes, act, torch.full((3,), 0.5), torch.full((3,), 0.5))[1])  # a number: every parent
    with pytest.raises(ValueError, match=r"em_routing takes floating-point votes and activations; got torch.int64"):
        CF.em_routing(votes.long(), act, beta, beta)
    assert CF.em_routing(votes, act, beta, torch.zeros(2, 3))[1].shape == (2, 3)  # [N, J] betas broadcast: allowed


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_spread_loss_objective_keeps_float64_and_takes_int32_targets(dtype):
    """SpreadLoss casts its activations to at least float32 (not always float32) and takes integer targets
    of any dtype."""
    acts = torch.tensor([[0.9, 0.5, 0.1]], dtype=dtype)
    loss = SpreadLoss(margin=0.5)({"logits": acts}, {"label": torch.tensor([0], dtype=torch.int32)})
    assert loss.dtype == torch.promote_types(dtype, torch.float32)
    torch.testing.assert_close(loss, CF.spread_loss(acts.to(loss.dtype), torch.tensor([0]), 0.5)[0], rtol=0, atol=0)


def test_em_routing_computes_in_float32_for_bf16_models_and_under_autocast(monkeypatch):
    """As dynamic routing does: the E-step over hundreds of children in bf16 moved class activations by 0.009
    (autocast) and 0.017 (a .bfloat16() model); votes reach em_routing in float32 now, float64 models in float64."""
    seen = []
    real = CF.em_routing
    monkeypatch.setattr(CF, "em_routing", lambda votes, *a, **k: seen.append(votes.dtype) or real(votes, *a, **k))
    torch.manual_seed(0)
    model = matcaps_em_small(iterations=2, routing_backend="reference").eval()
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        y32 = model(x)["logits"]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y_auto = model(x)["logits"]
        y_bf16 = model.to(torch.bfloat16)(x.bfloat16())["logits"]
        y64 = model.to(torch.float64)(x.double())["logits"]
    assert seen == [torch.float32] * 9 + [torch.float64] * 3  # three routing layers, four passes
    assert y_auto.dtype == y_bf16.dtype == torch.float32 and y64.dtype == torch.float64
    assert (y_auto - y32).abs().max() < 3e-3 and (y_bf16 - y32).abs().max() < 1e-2
