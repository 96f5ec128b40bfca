"""The fused routing backend equals the plain reference (values and every gradient), it really runs, and the
bf16 path stays within its stated tolerance of float32."""

from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck

from overlooked.capsules import functional as CF
from overlooked.capsules import fused
from overlooked.capsules.models import CapsuleLoss, capsnet
from overlooked.capsules.modules import RoutingCaps

# bf16 tolerance, stated: relative L2 error of capsule lengths and poses, and of the loss, vs float32
BF16_REL_TOL = 2e-2
BF16_RECON_ATOL = 1e-2  # sigmoid outputs in [0, 1]


def _reference(u, W, J, iterations, detach):
    B, I, _ = u.shape
    u_hat = torch.bmm(u.transpose(0, 1), W).transpose(0, 1).reshape(B, I, J, -1)  # [B, I, J, D], the plain way
    return CF.dynamic_routing(u_hat, iterations, detach)


@pytest.mark.parametrize("iterations", [1, 2, 3])
@pytest.mark.parametrize("detach", [False, True])
def test_fused_equals_reference_values_and_gradients(iterations, detach):
    torch.manual_seed(iterations)
    u = torch.randn(5, 7, 3, dtype=torch.float64, requires_grad=True)  # B=5 with chunk=2: a ragged last chunk
    W = torch.randn(7, 3, 4 * 2, dtype=torch.float64, requires_grad=True)
    g_v, g_c = torch.randn(5, 4, 2, dtype=torch.float64), torch.randn(5, 7, 4, dtype=torch.float64)
    results = []
    for fn in (_reference, lambda *a: fused.fused_routing(*a[:2], a[2], a[3], a[4], chunk=2)):
        v, c = fn(u, W, 4, iterations, detach)
        grads = torch.autograd.grad((v * g_v).sum() + (c * g_c).sum(), (u, W))
        results.append((v, c, *grads))
    for ref, got in zip(*results):
        torch.testing.assert_close(got, ref)


def test_fused_weight_gradient_when_only_the_weights_ask_for_one():
    """Routing on frozen features (a frozen conv and PrimaryCaps before it): u asks for no gradient, W does,
    and W's gradient equals the reference's (each is computed only when its own input asks for it)."""
    torch.manual_seed(4)
    u = torch.randn(3, 5, 2, dtype=torch.float64)
    W = torch.randn(5, 2, 4 * 3, dtype=torch.float64, requires_grad=True)
    got, want = (torch.autograd.grad(fn(u, W, 4, 3, False)[0].pow(2).sum(), W)[0] for fn in (lambda *a: fused.fused_routing(*a, chunk=2), _reference))
    assert want.abs().sum() > 0
    torch.testing.assert_close(got, want)
    (g_u,) = torch.autograd.grad(fused.fused_routing(u.requires_grad_(), W.detach(), 4, 3, chunk=2)[0].pow(2).sum(), u)
    torch.testing.assert_close(g_u, torch.autograd.grad(_reference(u, W.detach(), 4, 3, False)[0].pow(2).sum(), u)[0])


def test_fused_gradcheck_float64():
    gen = torch.Generator().manual_seed(0)
    u = torch.randn(3, 5, 2, dtype=torch.float64, generator=gen, requires_grad=True)
    W = torch.randn(5, 2, 3 * 2, dtype=torch.float64, generator=gen, requires_grad=True)
    for out in (0, 1):
        assert gradcheck(lambda a, b, out=out: fused.fused_routing(a, b, 3, 3, chunk=2)[out], (u, W))


def test_squash_backward_matches_autograd_including_zero():
    gen = torch.Generator().manual_seed(0)
    s = torch.randn(4, 6, dtype=torch.float64, generator=gen)
    s[0] = 0.0  # |s| = 0: the derivative stays finite
    s.requires_grad_(True)
    gv = torch.randn(4, 6, dtype=torch.float64, generator=gen)
    (expected,) = torch.autograd.grad((CF.squash(s) * gv).sum(), s)
    torch.testing.assert_close(fused._squash_backward(s.detach(), gv, CF.SQUASH_EPS), expected)


def test_fused_backend_really_runs_and_couplings_sum_to_one():
    torch.manual_seed(0)  # the layer's initial W and the input
    layer = RoutingCaps(in_caps=6, in_dim=3, out_caps=4, out_dim=2, backend="fused")
    v, c = layer(torch.randn(2, 6, 3))
    assert type(v.grad_fn).__name__ == "FusedRoutingBackward"  # the sentinel: the fused function produced v
    torch.testing.assert_close(c.sum(-1), torch.ones(2, 6))
    with pytest.raises(ValueError, match="backend"):
        RoutingCaps(backend="cuda-magic")


def _twins():
    torch.manual_seed(0)
    ref = capsnet(backend="reference")
    fast = capsnet(backend="fused")
    fast.load_state_dict(ref.state_dict())
    return ref, fast


def _outputs_and_grads(models, image, label):
    """Each model's outputs and parameter gradients after one CapsuleLoss backward on the same batch."""
    outs, grads = [], []
    for model in models:
        out = model(image, label)
        CapsuleLoss()(out, {"image": image, "label": label}).backward()
        outs.append(out)
        grads.append({n: p.grad for n, p in model.named_parameters()})
    return outs, grads


def _assert_routes_fused(ref, fast, outs):
    """``capsnet(backend=...)`` reaches the routing layer, and the fused function really produced the fast
    model's poses (the sentinel of ``test_fused_backend_really_runs_and_couplings_sum_to_one``), while the
    reference model's did not: otherwise "fused equals reference" could compare the reference with itself."""
    assert ref.digits.backend == "reference" and fast.digits.backend == "fused"
    assert type(outs[1]["poses"].grad_fn).__name__ == "FusedRoutingBackward"
    assert type(outs[0]["poses"].grad_fn).__name__ != "FusedRoutingBackward"


def test_capsnet_fused_equals_reference():
    models = _twins()
    outs, grads = _outputs_and_grads(models, torch.rand(3, 1, 28, 28), torch.tensor([1, 4, 9]))
    _assert_routes_fused(*models, outs)
    for key in outs[0]:
        torch.testing.assert_close(outs[1][key], outs[0][key], atol=1e-6, rtol=1e-4)
    for name, g in grads[0].items():
        torch.testing.assert_close(grads[1][name], g, atol=1e-7, rtol=1e-3, msg=name)


@pytest.mark.parametrize("backend", ["fused", "reference"])  # the GPU runs use the reference backend
@pytest.mark.parametrize("w_scale", [1.0, 30.0])  # default init (lengths ~1e-3) and lengths near the margins
def test_bf16_path_within_stated_tolerance_of_fp32(w_scale, backend):
    model = dict(zip(("reference", "fused"), _twins()))[backend]
    with torch.no_grad():
        model.digits.W.mul_(w_scale)
    image, label = torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(1)), torch.arange(8)
    batch = {"image": image, "label": label}
    out32 = model(image, label)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out16 = model(image, label)
        loss16 = CapsuleLoss()(out16, batch)
    assert out16["logits"].dtype == torch.float32  # routing stays float32 on the bf16 path

    def rel(a, b):
        return float((a.detach().float() - b.detach().float()).norm() / b.detach().float().norm())

    assert rel(out16["logits"], out32["logits"]) < BF16_REL_TOL
    assert rel(out16["poses"], out32["poses"]) < BF16_REL_TOL
    assert rel(loss16, CapsuleLoss()(out32, batch)) < BF16_REL_TOL
    assert (out16["reconstruction"].float() - out32["reconstruction"]).abs().max() < BF16_RECON_ATOL


def test_reference_backend_keeps_float64_and_equals_the_fused_one():
    """Was: a ``.double()`` CapsNet on the reference backend raised "expected scalar type Double but found
    Float" (routing cast its input to float32 but not W); the fused backend already routed in float64.
    Both now route in the promotion of the input's and W's dtypes with float32, so float64 stays float64 and
    the two backends agree to float64 rounding, gradients included."""
    ref, fast = (model.double() for model in _twins())
    image, label = torch.rand(2, 1, 28, 28, dtype=torch.float64, generator=torch.Generator().manual_seed(2)), torch.tensor([3, 8])
    outs, grads = _outputs_and_grads((ref, fast), image, label)
    _assert_routes_fused(ref, fast, outs)
    for key, value in outs[0].items():
        assert value.dtype == torch.float64 and outs[1][key].dtype == torch.float64, key
        torch.testing.assert_close(outs[1][key], value, atol=1e-12, rtol=1e-10, msg=key)
    for name, g in grads[0].items():
        assert g.dtype == torch.float64, name
        torch.testing.assert_close(grads[1][name], g, atol=1e-15, rtol=1e-9, msg=name)
    # and the reference layer alone equals the plain float64 maths
    u = torch.randn(2, 1152, 8, dtype=torch.float64)
    v, c = ref.digits(u)
    v_exact, c_exact = _reference(u, ref.digits.W, 10, 3, False)
    torch.testing.assert_close(v, v_exact, atol=0, rtol=0)
    torch.testing.assert_close(c, c_exact, atol=0, rtol=0)
    # a float32 input against the float64 weights routes in float64 on both backends (the promotion of both)
    v32, _ = ref.digits(u.float())
    v32_fast, _ = fast.digits(u.float())
    assert v32.dtype == v32_fast.dtype == torch.float64
    assert type(v32_fast.grad_fn).__name__ == "FusedRoutingBackward"  # the fast layer alone routes fused too
    torch.testing.assert_close(v32, _reference(u.float().double(), ref.digits.W, 10, 3, False)[0], atol=0, rtol=0)


@pytest.mark.parametrize("backend", ["reference", "fused"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float64])
def test_a_bf16_or_float64_model_runs_forward_and_backward(backend, dtype):
    """Was: a ``.bfloat16()`` CapsNet failed with "expected m1 and m2 to have the same dtype" in routing
    (reference) or in the decoder (fused: routing returns float32, the decoder was bf16). Routing runs in
    float32 (float64 for a float64 model) and the decoder reads its input in its own dtype."""
    torch.manual_seed(0)
    model = capsnet(backend=backend).to(dtype)
    image, label = torch.rand(2, 1, 28, 28, dtype=dtype), torch.tensor([3, 8])
    out = model(image, label)
    routed = torch.promote_types(dtype, torch.float32)
    assert out["logits"].dtype == routed and out["poses"].dtype == routed and out["couplings"].dtype == routed
    assert out["reconstruction"].dtype == dtype
    loss = CapsuleLoss()(out, {"image": image, "label": label})
    assert loss.dtype == routed and torch.isfinite(loss)
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.dtype == dtype and torch.isfinite(p.grad).all(), name
    model.eval()
    with torch.no_grad():
        assert model(image)["reconstruction"].dtype == dtype


def test_routing_inputs_name_the_expected_layout():
    """Was: "not enough values to unpack (expected 3, got 2)" for an unbatched input."""
    u, W = torch.randn(6, 3), torch.randn(6, 3, 4 * 2)
    with pytest.raises(ValueError, match=r"fused_routing takes child capsules u \[B, I, K\] \(batch, child capsules, child dimension\) and weights W \[I, K, J\*D\] \(J=out_caps=4\); got u \[6, 3\] and W \[6, 3, 8\]: add the batch dimension with u.unsqueeze\(0\)"):
        fused.fused_routing(u, W, 4)
    with pytest.raises(ValueError, match=r"got u \[2, 5, 3\] and W \[6, 3, 8\]$"):  # children disagree with W
        fused.fused_routing(torch.randn(2, 5, 3), W, 4)
    with pytest.raises(ValueError, match=r"\(J=out_caps=3\); got u \[2, 6, 3\] and W \[6, 3, 8\]$"):  # 8 is no multiple of 3
        fused.fused_routing(torch.randn(2, 6, 3), W, 3)
    for backend in ("reference", "fused"):
        layer = RoutingCaps(in_caps=6, in_dim=3, out_caps=4, out_dim=2, backend=backend)
        with pytest.raises(ValueError, match=r"takes child capsules u \[B, I, K\].*got u \[6, 3\].*u.unsqueeze\(0\)"):
            layer(u)


def test_a_subclass_overriding_predictions_is_refused_by_the_fused_backend_and_routed_by_the_reference():
    """The fused backend computes W u itself: a subclass's predictions() was ignored without a word
    (capsule lengths 0.995 on the reference path against 0.0056 fused in the extension audit)."""

    class Scaled(RoutingCaps):
        def predictions(self, u):
            return 50 * super().predictions(u)

    with pytest.raises(ValueError, match=r"Scaled overrides predictions\(\), which the fused backend never calls.*backend='reference'"):
        Scaled(in_caps=6, in_dim=4, out_caps=3, out_dim=5, backend="fused")
    torch.manual_seed(0)
    scaled, plain = Scaled(in_caps=6, in_dim=4, out_caps=3, out_dim=5), RoutingCaps(in_caps=6, in_dim=4, out_caps=3, out_dim=5)
    plain.load_state_dict(scaled.state_dict())
    u = torch.randn(2, 6, 4)
    torch.testing.assert_close(scaled(u)[0], CF.dynamic_routing(50 * plain.predictions(u), 3, False)[0])


def test_fused_routing_backward_under_autocast_stays_float32():
    """The engine runs the hand-written backward under the caller's autocast; routing's backward computes in
    float32 as its forward does (its products ran in bf16 there: gradients off by 0.4%, silently)."""
    torch.manual_seed(0)
    u, W = torch.randn(4, 32, 8, requires_grad=True), torch.randn(32, 8, 10 * 16, requires_grad=True)

    def grads(autocast):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            v, _ = fused.fused_routing(u, W, 10)
            return torch.autograd.grad(v.norm(dim=-1).sum(), (u, W))

    for want, got in zip(grads(False), grads(True)):
        assert got.dtype == torch.float32 and torch.equal(got, want)


def test_torch_func_grad_runs_through_the_fused_capsnet_and_fractional_iterations_are_named():
    """Inside a torch.func transform the fused CapsNet reads through the reference maths (its routing and FFT
    nodes have no setup_context, PyTorch's generic error before): the same gradients as autograd. An
    iteration count of 2.5 is named (a TypeError inside new_empty before)."""
    from torch.func import functional_call, grad

    torch.manual_seed(0)
    model = capsnet(backend="fused").double()
    x = torch.rand(2, 1, 28, 28, dtype=torch.float64)

    def loss(params):
        out = functional_call(model, params, (x,))
        return out["logits"].sum() + out["reconstruction"].mean()

    got = grad(loss)(dict(model.named_parameters()))
    loss(dict(model.named_parameters())).backward()
    for name, p in model.named_parameters():
        assert torch.allclose(got[name], p.grad, rtol=0, atol=1e-10), name
    with pytest.raises(ValueError, match="iterations must be a whole number >= 1, got 2.5"):
        fused.fused_routing(torch.randn(2, 4, 3), torch.randn(4, 3, 2 * 5), 2, iterations=2.5)
