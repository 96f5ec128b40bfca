"""CapsNet (Sabour et al. 2017) pinned by hand: dynamic routing's b / c / s / v updates written out for a
tiny example, the whole forward pass rebuilt from the model's own weights, and the builders' defaults."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from overlooked.capsules import functional as CF
from overlooked.capsules.models import capsnet, capsule_margin, spread_margin_schedule
from overlooked.capsules.modules import CapsNet

F64 = torch.float64


def _squash2(x: float, y: float) -> tuple[float, float]:
    """Sabour et al. 2017, eq. 1 for a 2-D vector: s |s|^2 / (1 + |s|^2) / |s| (0 at s = 0)."""
    n2 = x * x + y * y
    if n2 == 0.0:
        return 0.0, 0.0
    f = n2 / (1.0 + n2) / math.sqrt(n2)
    return x * f, y * f


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def test_dynamic_routing_three_iterations_by_hand():
    """Sabour et al. 2017, Procedure 1 on 2 children, 2 parents, 2-D: every b / c / s / v update written out."""
    # u_hat[i][j]: child 0 predicts (1, 0) for parent 0 and (0, 1) for parent 1; child 1 (1, 1) and (0, -1)
    u_hat = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]], [[1.0, 1.0], [0.0, -1.0]]]], dtype=F64)  # [1, 2, 2, 2]

    # iteration 1: b = 0, so c = 1/2 everywhere; s_0 = (1, 1/2), s_1 = (0, 0)
    v0 = _squash2(1.0, 0.5)  # |s|^2 = 1.25: factor 1.25 / 2.25 / sqrt(1.25)
    assert v0 == pytest.approx((0.4969039949999533, 0.24845199749997662))
    v1 = (0.0, 0.0)
    v, c = CF.dynamic_routing(u_hat, 1)
    torch.testing.assert_close(v[0], torch.tensor([v0, v1], dtype=F64))
    torch.testing.assert_close(c[0], torch.full((2, 2), 0.5, dtype=F64))

    # b_ij += u_hat_{j|i} . v_j
    b00, b01 = 1.0 * v0[0] + 0.0 * v0[1], 0.0 * v1[0] + 1.0 * v1[1]
    b10, b11 = 1.0 * v0[0] + 1.0 * v0[1], 0.0 * v1[0] - 1.0 * v1[1]
    # iteration 2: c_i = softmax over parents (two parents: c_i0 = sigmoid(b_i0 - b_i1))
    c00, c10 = _sigmoid(b00 - b01), _sigmoid(b10 - b11)
    c01, c11 = 1.0 - c00, 1.0 - c10
    assert (c00, c10) == pytest.approx((0.6217314831627833, 0.6781659522962846))
    v0 = _squash2(c00 * 1.0 + c10 * 1.0, c00 * 0.0 + c10 * 1.0)
    v1 = _squash2(c01 * 0.0 + c11 * 0.0, c01 * 1.0 + c11 * -1.0)
    assert v0 + v1 == pytest.approx((0.6051052883270709, 0.31568783267344763, 0.0, 0.003174738243487421))
    v, c = CF.dynamic_routing(u_hat, 2)
    torch.testing.assert_close(v[0], torch.tensor([v0, v1], dtype=F64))
    torch.testing.assert_close(c[0], torch.tensor([[c00, c01], [c10, c11]], dtype=F64))

    # iteration 3: the agreements add to the logits of iteration 2, they do not replace them
    b00, b01 = b00 + v0[0], b01 + v1[1]
    b10, b11 = b10 + v0[0] + v0[1], b11 - v1[1]
    c00, c10 = _sigmoid(b00 - b01), _sigmoid(b10 - b11)
    c01, c11 = 1.0 - c00, 1.0 - c10
    assert (c00, c10) == pytest.approx((0.7500416707623225, 0.8414856522191703))
    v0 = _squash2(c00 + c10, c10)
    v1 = _squash2(0.0, c01 - c11)
    v, c = CF.dynamic_routing(u_hat, 3)
    torch.testing.assert_close(v[0], torch.tensor([v0, v1], dtype=F64))
    torch.testing.assert_close(c[0], torch.tensor([[c00, c01], [c10, c11]], dtype=F64))


def _capsnet_by_hand(model: CapsNet, image: torch.Tensor, iterations: int) -> dict[str, torch.Tensor]:
    """CapsNet's forward pass (Sabour et al. 2017, §4) from the model's weights, in plain torch ops."""
    x = F.relu(F.conv2d(image, model.conv1.weight, model.conv1.bias))  # Conv1, ReLU
    y = F.conv2d(x, model.primary.conv.weight, model.primary.conv.bias, stride=2)  # PrimaryCaps conv, no ReLU
    B, _, H, W = y.shape
    # capsule (channel ch, row h, column w) holds maps 8 ch .. 8 ch + 7 at (h, w), capsules ordered (ch, h, w)
    s = torch.stack([y[:, 8 * ch : 8 * ch + 8, h, w] for ch in range(32) for h in range(H) for w in range(W)], 1)
    n2 = (s * s).sum(-1, keepdim=True)
    u = s * n2 / (1 + n2) / n2.sqrt()  # squash
    I, J = u.shape[1], model.num_classes
    Wd = model.digits.W.view(I, 8, J, 16)
    u_hat = (u[:, :, :, None, None] * Wd[None]).sum(2)  # u_hat_{j|i} = W_ij u_i: [B, I, J, 16]
    b = torch.zeros(B, I, J, dtype=u.dtype)
    for r in range(iterations):
        c = torch.exp(b) / torch.exp(b).sum(2, keepdim=True)  # over parents
        sj = (c[..., None] * u_hat).sum(1)  # [B, J, 16]
        n2 = (sj * sj).sum(-1, keepdim=True)
        v = sj * n2 / (1 + n2) / n2.sqrt()
        if r < iterations - 1:
            b = b + (u_hat * v[:, None]).sum(-1)
    lengths = v.pow(2).sum(-1).sqrt()
    masked = v * (torch.arange(J)[None, :, None] == lengths.argmax(-1)[:, None, None])  # the longest capsule (evaluation)
    d = model.decoder
    h1 = F.relu(F.linear(masked.flatten(1), d[0].weight, d[0].bias))
    h2 = F.relu(F.linear(h1, d[2].weight, d[2].bias))
    recon = 1.0 / (1.0 + torch.exp(-F.linear(h2, d[4].weight, d[4].bias)))
    return {"poses": v, "couplings": c, "logits": lengths, "reconstruction": recon}


def test_capsnet_forward_equals_relu_conv_primary_squash_routing_and_sigmoid_decoder_by_hand():
    """Sabour et al. 2017, §4: ReLU Conv1, PrimaryCaps squashed in groups of 8 maps, routing, class lengths
    |v| as logits and a sigmoid decoder of the longest capsule, equal to the same steps written by hand."""
    torch.manual_seed(0)
    model = CapsNet(image_size=20, iterations=3).double().eval()  # 2x2 PrimaryCaps grid: I = 128
    with torch.no_grad():
        model.primary.conv.weight.mul_(5.0)  # primary capsules of length 0.3 to 0.9: the squash bends them
        model.digits.W.normal_(0.0, 0.3)  # long predictions: routing moves the couplings, |v| is not |v|^2
    image = torch.rand(2, 1, 20, 20, dtype=F64)
    with torch.no_grad():
        out = model(image)
        ref = _capsnet_by_hand(model, image, 3)
        assert (F.conv2d(image, model.conv1.weight, model.conv1.bias) < 0).any()  # the ReLU has something to cut
    assert (ref["couplings"].amax(2) > 0.105).all()  # every child's couplings moved away from 1/10
    for key in ("poses", "couplings", "logits", "reconstruction"):
        torch.testing.assert_close(out[key], ref[key], msg=key)
    torch.testing.assert_close(out["logits"], out["poses"].norm(dim=-1))
    assert 0.0 <= float(out["reconstruction"].min()) and float(out["reconstruction"].max()) <= 1.0


def test_capsnet_primary_capsules_are_squashed_below_length_one():
    """PrimaryCaps outputs are squashed (Sabour et al. 2017, §4): the conv's 8-map groups scaled to
    |s|^2 / (1 + |s|^2), here for conv outputs of length well above 1."""
    torch.manual_seed(0)
    model = CapsNet(image_size=20, decoder=False).double()
    x = 5.0 * torch.rand(1, 256, 12, 12, dtype=F64)
    with torch.no_grad():
        u = model.primary(x)
        s = F.conv2d(x, model.primary.conv.weight, model.primary.conv.bias, stride=2)[0, :8, 0, 0]  # capsule 0: maps 0..7 at (0, 0)
    n = float(s.norm())
    assert n > 1.0
    torch.testing.assert_close(u[0, 0], s * (n / (1 + n * n)))


def test_capsnet_builder_defaults_are_the_papers():
    """capsnet(): 3 routing iterations without the detach speed-up, a decoder, one reconstruction
    (Sabour et al. 2017, §4)."""
    model = capsnet()
    assert model.digits.iterations == 3 and model.digits.detach_intermediate is False
    assert model.digits.backend == "reference" and model.decoder is not None and model.reconstruct == 1
    assert model.image_size == 28 and model.num_classes == 10 and model.digits.W.shape == (1152, 8, 160)
    # routing weights from N(0, 0.01) (the documented init_std; 1.47M draws: the sample std within 1%, mean ~0)
    W = model.digits.W.detach()
    assert abs(float(W.std()) - 0.01) < 1e-4 and abs(float(W.mean())) < 1e-4


def test_capsule_margin_defaults_are_the_papers():
    """Sabour et al. 2017, eq. 4 and §4.1: m+ = 0.9, m- = 0.1, lambda = 0.5, reconstruction weight 0.0005."""
    loss = capsule_margin()
    assert (loss.m_plus, loss.m_minus, loss.lam, loss.recon_weight, loss.reduction) == (0.9, 0.1, 0.5, 0.0005, "mean")
    # (0.9 - 0.8)^2 + 0.5 (0.3 - 0.1)^2 + 0.0005 * 4 (four pixels off by 1) = 0.01 + 0.02 + 0.002
    out = {"logits": torch.tensor([[0.8, 0.3]]), "reconstruction": torch.zeros(1, 4)}
    assert float(loss(out, {"label": torch.tensor([0]), "image": torch.ones(1, 1, 2, 2)})) == pytest.approx(0.032)


def test_spread_margin_schedule_defaults_rise_from_0_2_to_0_9_over_10000_steps():
    """Hinton et al. 2018, §3.1: the spread loss margin starts at 0.2 and rises linearly to 0.9."""
    schedule = spread_margin_schedule()
    assert (schedule.ramp_steps, schedule.start, schedule.end) == (10_000, 0.2, 0.9)
    seen = []

    class Model:
        def set_spread_margin(self, m):
            seen.append(m)

    for step in (0, 5_000, 10_000, 20_000):
        schedule.on_step_end(type("Ctx", (), {"model": Model(), "state": type("S", (), {"step": step})()})(), 0.0)
    assert seen == pytest.approx([0.2, 0.55, 0.9, 0.9])
