"""Matrix capsule layers (Hinton et al. 2018) pinned against children gathered and votes multiplied by hand:
the ConvCaps window order, ClassCaps' transform per child type, coordinate addition, the network's wiring and
layer sizes, and its unscheduled spread margin."""

from __future__ import annotations

import pytest
import torch

from overlooked.capsules import functional as CF
from overlooked.capsules.matrix import ClassCaps, ConvCaps, MatrixCapsNet
from overlooked.capsules.models import SpreadLoss, matcaps_em_small

F64 = torch.float64


def _hand_votes(M: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """Votes by hand: child poses ``M`` ``[I, 4, 4]``, one transform per child ``W`` ``[I, J, 4, 4]`` ->
    ``V_ij = M_i W_ij`` flattened, ``[1, I, J, 16]`` (a plain 4x4 matrix product per pair)."""
    I, J = W.shape[:2]
    V = torch.zeros(I, J, 4, 4, dtype=W.dtype)
    for i in range(I):
        for j in range(J):
            V[i, j] = M[i] @ W[i, j]
    return V.reshape(1, I, J, 16)


def test_convcaps_routes_window_children_in_row_column_type_order():
    """One 3x3 window of 2 types (Hinton et al. 2018, §3 ConvCaps): child (kh, kw, c) votes through
    W[(3 kh + kw) 2 + c] with its own pose and its own activation."""
    torch.manual_seed(0)
    layer = ConvCaps(in_types=2, out_types=2, kernel_size=3, stride=1, iterations=2).double()
    with torch.no_grad():
        layer.beta_u.copy_(torch.tensor([0.3, -0.2]))
        layer.beta_a.copy_(torch.tensor([1.0, 0.5]))
    pose = torch.randn(1, 3, 3, 2, 16, dtype=F64)
    act = 0.05 + 0.9 * torch.rand(1, 3, 3, 2, dtype=F64)  # distinct activations in (0, 1)
    mu, a = layer(pose, act)
    assert mu.shape == (1, 1, 1, 2, 16) and a.shape == (1, 1, 1, 2)
    order = [(kh, kw, c) for kh in range(3) for kw in range(3) for c in range(2)]  # the documented order
    M = torch.stack([pose[0, kh, kw, c].view(4, 4) for kh, kw, c in order])  # [18, 4, 4]
    a_in = torch.stack([act[0, kh, kw, c] for kh, kw, c in order]).view(1, 18)
    mu_ref, a_ref, _ = CF.em_routing(_hand_votes(M, layer.W.detach()), a_in, layer.beta_u.detach(), layer.beta_a.detach(), 2)
    torch.testing.assert_close(mu.detach().view(1, 2, 16), mu_ref)
    torch.testing.assert_close(a.detach().view(1, 2), a_ref)


def test_class_caps_child_at_h_w_c_votes_through_the_transform_of_its_type():
    """ClassCaps shares one transform per (child type, class) across positions (Hinton et al. 2018, §3):
    the child at (h, w, c) of a 2x2 grid of 2 types votes with W[c]."""
    torch.manual_seed(1)
    caps = ClassCaps(in_types=2, num_classes=3, iterations=2, coordinate_addition=False).double()
    pose = torch.randn(1, 2, 2, 2, 16, dtype=F64)
    act = 0.05 + 0.9 * torch.rand(1, 2, 2, 2, dtype=F64)
    mu, a, R = caps(pose, act)
    order = [(h, w, c) for h in range(2) for w in range(2) for c in range(2)]
    M = torch.stack([pose[0, h, w, c].view(4, 4) for h, w, c in order])  # [8, 4, 4]
    W = torch.stack([caps.W.detach()[c] for _, _, c in order])  # [8, 3, 4, 4]: W of the child's type
    a_in = torch.stack([act[0, h, w, c] for h, w, c in order]).view(1, 8)
    mu_ref, a_ref, R_ref = CF.em_routing(_hand_votes(M, W), a_in, caps.beta_u.detach(), caps.beta_a.detach(), 2)
    torch.testing.assert_close(mu.detach(), mu_ref)
    torch.testing.assert_close(a.detach(), a_ref)
    torch.testing.assert_close(R.detach(), R_ref)


@pytest.mark.parametrize(("h", "w", "row", "col"), [(1, 0, 0.75, 1 / 6), (0, 2, 0.25, 5 / 6)])
def test_coordinate_addition_adds_the_scaled_cell_centre_row_then_column(h, w, row, col):
    """Coordinate addition (Hinton et al. 2018, §3): on a 2x3 grid the child at (h, w) adds (h + 0.5) / 2 to
    vote element (0, 3) and (w + 0.5) / 3 to element (1, 3); with W = 0 and that child alone active, every
    class pose is that offset."""
    caps = ClassCaps(in_types=1, num_classes=2, iterations=1).double()
    with torch.no_grad():
        caps.W.zero_()
    act = torch.zeros(1, 2, 3, 1, dtype=F64)
    act[0, h, w, 0] = 1.0
    mu, _, _ = caps(torch.zeros(1, 2, 3, 1, 16, dtype=F64), act)
    expected = torch.zeros(1, 2, 16, dtype=F64)
    expected[..., 3], expected[..., 7] = row, col
    torch.testing.assert_close(mu.detach(), expected, atol=1e-6, rtol=0)  # mu = R V / (R + 1e-8)


def test_matrix_capsnet_layer_sizes_on_28x28_are_the_papers():
    """Hinton et al. 2018's small network on 28x28: 28 -> 12 (conv1 5x5/2) -> 12 (PrimaryCaps 1x1) -> 5
    (ConvCaps 3x3/2) -> 3 (ConvCaps 3x3/1) -> 3*3*D children of the class capsules."""
    torch.manual_seed(0)
    model = MatrixCapsNet(A=4, B=2, C=3, D=2, iterations=1)
    shapes = {}
    for name in ("conv1", "primary", "caps1", "caps2"):
        getattr(model, name).register_forward_hook(lambda mod, inp, out, name=name: shapes.__setitem__(name, out[0].shape if isinstance(out, tuple) else out.shape))
    out = model(torch.rand(2, 1, 28, 28))
    assert shapes == {"conv1": (2, 4, 12, 12), "primary": (2, 12, 12, 2, 16), "caps1": (2, 5, 5, 3, 16), "caps2": (2, 3, 3, 2, 16)}
    assert out["assignments"].shape == (2, 3 * 3 * 2, 10) and out["logits"].shape == (2, 10)


def test_matrix_capsnet_forward_is_relu_conv_then_primary_convcaps_convcaps_classcaps():
    """The network's wiring (Hinton et al. 2018, §3): ReLU(conv1), then PrimaryMatCaps, ConvCaps 3x3/2,
    ConvCaps 3x3/1 and ClassCaps, composed by hand from the model's own layers."""
    torch.manual_seed(0)
    model = MatrixCapsNet(A=4, B=2, C=2, D=2, iterations=2).double()
    image = torch.rand(1, 1, 28, 28, dtype=F64)
    out = model(image)
    with torch.no_grad():
        pre = torch.nn.functional.conv2d(image, model.conv1.weight, model.conv1.bias, stride=2)
        assert (pre < 0).any()  # the ReLU has something to cut
        pose, act = model.primary(pre.clamp_min(0))
        pose, act = model.caps1(pose, act)
        pose, act = model.caps2(pose, act)
        mu, a, R = model.classes(pose, act)
    torch.testing.assert_close(out["logits"].detach(), a)
    torch.testing.assert_close(out["poses"].detach(), mu)
    torch.testing.assert_close(out["assignments"].detach(), R)


def test_unscheduled_spread_margin_is_0_2():
    """The spread loss margin starts at 0.2 (Hinton et al. 2018, §3.1) until a schedule raises it."""
    model = matcaps_em_small(A=4, B=2, C=2, D=2, iterations=1)
    out = model(torch.rand(1, 1, 28, 28))
    assert float(out["spread_margin"]) == pytest.approx(0.2, abs=1e-7)
    # the objective reads it: a_t - a_i = 0.1 leaves (0.2 - 0.1)^2 = 0.01
    assert float(SpreadLoss()({"logits": torch.tensor([[0.5, 0.4]]), "spread_margin": out["spread_margin"]}, {"label": torch.tensor([0])})) == pytest.approx(0.01)
    assert float(SpreadLoss()({"logits": torch.tensor([[0.5, 0.4]])}, {"label": torch.tensor([0])})) == pytest.approx(0.01)


def test_matcaps_em_small_defaults_are_the_papers():
    """matcaps_em_small() is Hinton et al. 2018's small model: A=64, B=8, C=D=16, 3 EM iterations, coordinate
    addition on, ConvCaps 3x3 at strides 2 then 1, conv1 5x5/2."""
    model = matcaps_em_small()
    assert model.conv1.out_channels == 64 and model.conv1.kernel_size == (5, 5) and model.conv1.stride == (2, 2)
    assert model.primary.types == 8 and model.caps1.W.shape[1] == 16 and model.caps2.W.shape[1] == 16
    assert (model.caps1.kernel_size, model.caps1.stride, model.caps2.kernel_size, model.caps2.stride) == (3, 2, 3, 1)
    assert model.classes.coordinate_addition is True
    assert model.caps1.iterations == model.caps2.iterations == model.classes.iterations == 3
    assert model.caps1.routing_backend == "reference"
