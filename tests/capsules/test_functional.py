"""Capsule maths: squash, routing couplings, margin loss, gradcheck, parameter counts."""

from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck

from overlooked.capsules import functional as CF
from overlooked.capsules.models import CapsuleLoss, capsnet


def test_squash_norm_below_one_and_monotone():
    lengths = torch.linspace(0.0, 20.0, 201)
    s = lengths[:, None] * torch.nn.functional.normalize(torch.randn(201, 8), dim=-1)
    norms = CF.squash(s).norm(dim=-1)
    assert (norms < 1).all()
    assert (norms[1:] > norms[:-1]).all()
    torch.testing.assert_close(norms, lengths**2 / (1 + lengths**2), atol=1e-4, rtol=1e-4)
    v = CF.squash(torch.tensor([1.0, 0.0]))  # |s| = 1 -> length 1/2, same direction
    torch.testing.assert_close(v, torch.tensor([0.5, 0.0]))


def test_couplings_of_each_child_sum_to_one_over_its_parents():
    torch.manual_seed(0)
    u_hat = torch.randn(2, 7, 5, 4)  # [B, I, J, D]
    for iterations in (1, 2, 3):
        v, c = CF.dynamic_routing(u_hat, iterations)
        torch.testing.assert_close(c.sum(dim=2), torch.ones(2, 7))  # over parents j
        assert not torch.allclose(c.sum(dim=1), torch.ones(2, 5))  # not over children
        assert v.shape == (2, 5, 4)
    _, c1 = CF.dynamic_routing(u_hat, 1)
    torch.testing.assert_close(c1, torch.full((2, 7, 5), 1 / 5))  # b = 0 at the first iteration


def test_routing_by_agreement_hand_example():
    """Two children agree on parent 0 and disagree on parent 1: routing shifts their coupling to parent 0."""
    u_hat = torch.zeros(1, 2, 2, 2)
    u_hat[0, :, 0] = torch.tensor([2.0, 0.0])  # both predict the same vector for parent 0
    u_hat[0, 0, 1] = torch.tensor([0.0, 2.0])
    u_hat[0, 1, 1] = torch.tensor([0.0, -2.0])  # opposite predictions for parent 1
    _, c = CF.dynamic_routing(u_hat, 3)
    assert (c[0, :, 0] > 0.5).all()
    # first iteration by hand: s_0 = 0.5*2 + 0.5*2 = 2 -> v_0 = 0.8 * e_x; s_1 = 0 -> v_1 = 0
    v1, _ = CF.dynamic_routing(u_hat, 1)
    torch.testing.assert_close(v1[0, 0], torch.tensor([0.8, 0.0]))
    torch.testing.assert_close(v1[0, 1], torch.zeros(2))


def test_gradcheck_routing_and_squash():
    u_hat = torch.randn(2, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    # the exact gradient; detach_intermediate=True deliberately drops part of it (tested below)
    assert gradcheck(lambda x: CF.dynamic_routing(x, 3)[0], (u_hat,))
    assert gradcheck(lambda x: CF.dynamic_routing(x, 3)[1], (u_hat,))
    s = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    assert gradcheck(CF.squash, (s,))


def test_detach_changes_only_the_gradient():
    torch.manual_seed(1)
    u_hat = torch.randn(2, 4, 3, 3, requires_grad=True)
    a, _ = CF.dynamic_routing(u_hat, 3, False)
    b, _ = CF.dynamic_routing(u_hat, 3, True)
    torch.testing.assert_close(a, b)
    ga = torch.autograd.grad(a.sum(), u_hat)[0]
    gb = torch.autograd.grad(b.sum(), u_hat)[0]
    assert not torch.allclose(ga, gb)


def test_margin_loss_hand_values():
    lengths = torch.tensor([[0.5, 0.3, 0.05]])
    # class 0 present: (0.9 - 0.5)^2 = 0.16; absent: 0.5 * (0.3 - 0.1)^2 = 0.02; 0.05 < m- -> 0
    torch.testing.assert_close(CF.margin_loss(lengths, torch.tensor([0])), torch.tensor([0.18]))
    two = CF.margin_loss(lengths, torch.tensor([[1.0, 1.0, 0.0]]))  # MultiMNIST: two digits present
    torch.testing.assert_close(two, torch.tensor([0.16 + 0.36]))


def test_capsule_loss_adds_scaled_reconstruction():
    out = {"logits": torch.tensor([[0.9, 0.05]]), "reconstruction": torch.zeros(1, 4)}
    batch = {"label": torch.tensor([0]), "image": torch.ones(1, 1, 2, 2)}
    torch.testing.assert_close(CapsuleLoss()(out, batch), torch.tensor(0.0005 * 4))


@pytest.mark.parametrize("kwargs, expected", [({}, 8_215_568), ({"decoder": False}, 6_804_224), ({"image_size": 36}, 11_361_808)])
def test_published_parameter_counts(kwargs, expected):
    assert sum(p.numel() for p in capsnet(**kwargs).parameters()) == expected


def test_capsnet_forward_backward_no_nan_and_masking():
    torch.manual_seed(0)
    model = capsnet()
    image, label = torch.rand(2, 1, 28, 28), torch.tensor([3, 7])
    out = model(image, label)
    assert out["logits"].shape == (2, 10) and out["reconstruction"].shape == (2, 784)
    torch.testing.assert_close(out["couplings"].sum(-1), torch.ones(2, 1152))
    loss = CapsuleLoss()(out, {"label": label, "image": image})
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    model.eval()
    with torch.no_grad():
        ev = model(image, label)
        wrong = model.decoder(CF.mask_capsules(ev["poses"], ev["logits"].argmax(-1)))
    torch.testing.assert_close(ev["reconstruction"], wrong)  # evaluation decodes the longest capsule, not the label
