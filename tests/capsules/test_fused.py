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


def test_capsnet_fused_equals_reference():
    ref, fast = _twins()
    image, label = torch.rand(3, 1, 28, 28), torch.tensor([1, 4, 9])
    outs, grads = [], []
    for model in (ref, fast):
        out = model(image, label)
        CapsuleLoss()(out, {"image": image, "label": label}).backward()
        outs.append(out)
        grads.append({n: p.grad for n, p in model.named_parameters()})
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
