"""Arguments and inputs the capsule code refuses (with the problem and the fix named) or now handles:
second derivatives of the fused routing, chunk sizes, loss reductions and margins, EM activations,
fp16 squash, the meta device, labels beyond num_classes, iterations and image sizes."""

from __future__ import annotations

import pytest
import torch

from overlooked.capsules import functional as CF
from overlooked.capsules.fused import fused_routing
from overlooked.capsules.matrix import ClassCaps, ConvCaps
from overlooked.capsules.models import CapsuleLoss, SpreadLoss, matcaps_em_small
from overlooked.capsules.modules import CapsNet, RoutingCaps
from overlooked.errors import InputError


def _uw(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    u = torch.randn(3, 7, 4, dtype=torch.float64, generator=gen, requires_grad=True)
    W = torch.randn(7, 4, 18, dtype=torch.float64, generator=gen, requires_grad=True)
    return u, W


def test_fused_routing_refuses_a_second_derivative_the_reference_computes():
    u, W = _uw()
    v, _ = fused_routing(u, W, 3, 3)
    with pytest.raises(RuntimeError, match="the fused capsule routing has no second derivative .* use backend='reference'"):
        torch.autograd.grad(v.norm(dim=-1).sum(), u, create_graph=True)
    (g,) = torch.autograd.grad(fused_routing(u, W, 3, 3)[0].norm(dim=-1).sum(), u)  # first order as before
    layer = RoutingCaps(7, 4, 3, 6, 3, backend="reference").double()
    with torch.no_grad():
        layer.W.copy_(W)
    v_ref, _ = layer(u)
    (g_ref,) = torch.autograd.grad(v_ref.norm(dim=-1).sum(), u, create_graph=True)
    torch.testing.assert_close(g_ref, g)  # first derivatives agree
    assert all(x is not None for x in torch.autograd.grad((g_ref**2).sum(), (u, layer.W)))


@pytest.mark.parametrize("chunk", [0, -1, 2.5, True])
def test_chunk_must_be_a_positive_whole_number(chunk):
    u, W = _uw()
    with pytest.raises(ValueError, match="chunk .* must be a whole number >= 1"):
        fused_routing(u, W, 3, 3, chunk=chunk)
    with pytest.raises(ValueError, match="chunk .* must be a whole number >= 1"):
        RoutingCaps(7, 4, 3, 6, backend="fused", chunk=chunk)


def test_losses_take_mean_or_sum_and_spread_margin_is_fixed_when_given():
    for loss in (CapsuleLoss, SpreadLoss):
        with pytest.raises(ValueError, match="reduction must be 'mean' or 'sum'"):
            loss(reduction="none")
    a = torch.tensor([[0.9, 0.5, 0.1], [0.2, 0.6, 0.3]])
    y = torch.tensor([0, 1])
    out = {"logits": a, "spread_margin": torch.tensor(0.2)}
    assert float(SpreadLoss()(out, {"label": y})) == pytest.approx(float(CF.spread_loss(a, y, 0.2).mean()))  # the model's margin
    assert float(SpreadLoss(margin=0.9)(out, {"label": y})) == pytest.approx(float(CF.spread_loss(a, y, 0.9).mean()))  # fixed
    assert float(SpreadLoss()({"logits": a}, {"label": y})) == pytest.approx(float(CF.spread_loss(a, y, 0.2).mean()))  # none reported


def test_em_routing_names_activations_outside_zero_one():
    votes = torch.randn(2, 8, 3, 16)
    with pytest.raises(InputError, match=r"child activations in \[0, 1\] .* pass sigmoid\(logits\)"):
        CF.em_routing(votes, torch.randn(2, 8), torch.zeros(3), torch.zeros(3), 3)
    mu, a, R = CF.em_routing(votes, torch.rand(2, 8), torch.zeros(3), torch.zeros(3), 3)
    assert torch.isfinite(mu).all() and torch.isfinite(a).all() and torch.isfinite(R).all()
    nan = torch.rand(2, 8)
    nan[0, 0] = float("nan")  # a diverged model: not "pass sigmoid(logits)"; the trainer names the non-finite loss
    assert torch.isnan(CF.em_routing(votes, nan, torch.zeros(3), torch.zeros(3), 3)[1]).any()


def test_a_fixed_spread_margin_and_the_margin_schedule_are_refused_together():
    from overlooked import api
    from overlooked.errors import ConfigError

    with pytest.raises(ConfigError, match="fixes the spread loss margin, so the spread_margin callback's schedule would have no effect"):
        api.load("capsule_em_small_mnist", ["objective.kwargs.margin=0.2"])


def test_squash_is_finite_at_zero_in_fp16_and_unchanged_in_float32():
    for s in (torch.zeros(2, 8).half(), torch.full((1, 8), 1e-4).half()):
        assert torch.isfinite(CF.squash(s)).all()
    s = torch.randn(4, 8)
    n2 = (s * s).sum(-1, keepdim=True)
    assert torch.equal(CF.squash(s), s * (n2 / (1.0 + n2)) / torch.sqrt(n2 + 1e-8))


def test_capsnet_runs_on_the_meta_device():
    with torch.device("meta"):
        model = CapsNet(decoder=False)
        out = model(torch.randn(2, 1, 28, 28))
    assert out["logits"].shape == (2, 10) and out["logits"].device.type == "meta"


def test_a_label_beyond_num_classes_is_named():
    lengths = torch.rand(2, 5)
    with pytest.raises(InputError, match=r"margin_loss got class index 7 but has 5 classes \(0\.\.4\): the model's num_classes must cover the data's labels"):
        CF.margin_loss(lengths, torch.tensor([1, 7]))
    with pytest.raises(InputError, match="got class index -1"):
        CF.mask_capsules(torch.rand(2, 5, 16), torch.tensor([-1, 0]))


def test_iterations_and_image_size_are_checked_when_built():
    for bad in (0, -2):
        with pytest.raises(ValueError, match="iterations .* must be a whole number >= 1"):
            matcaps_em_small(iterations=bad)
    with pytest.raises(ValueError, match="inverse_temperatures needs one value per iteration: 3, got 2"):
        ConvCaps(4, 4, iterations=3, inverse_temperatures=[0.1, 0.2])
    with pytest.raises(ValueError, match="iterations"):
        ClassCaps(4, iterations=0)
    with pytest.raises(ValueError, match="image_size must be at least 17"):
        CapsNet(image_size=16)
    assert CapsNet(image_size=17, decoder=False)(torch.rand(1, 1, 17, 17))["logits"].shape == (1, 10)


def test_capsule_input_checks_are_input_errors():
    with pytest.raises(InputError, match="takes images"):
        CapsNet(decoder=False)(torch.rand(2, 1, 32, 32))
    with pytest.raises(InputError, match="spread_loss takes class indices"):
        CF.spread_loss(torch.rand(2, 10), torch.zeros(2, 10, dtype=torch.long), 0.2)


def test_matrix_capsule_layers_name_a_grid_of_another_shape():
    with pytest.raises(InputError, match=r"ConvCaps takes poses \[N, H, W, 8, 16\] .* got poses \[2, 5, 5, 4, 16\]"):
        ConvCaps(8, 4, 3, 2)(torch.randn(2, 5, 5, 4, 16), torch.rand(2, 5, 5, 4))
    with pytest.raises(InputError, match=r"flatten the 4x4 poses with pose.flatten\(-2\)"):
        ConvCaps(8, 4, 3, 2)(torch.randn(2, 5, 5, 8, 4, 4), torch.rand(2, 5, 5, 8))
    with pytest.raises(InputError, match="needs a capsule grid of at least 3x3; got 2x2"):
        ConvCaps(8, 4, 3, 2)(torch.randn(2, 2, 2, 8, 16), torch.rand(2, 2, 2, 8))
    with pytest.raises(InputError, match=r"ClassCaps takes poses \[N, H, W, 8, 16\]"):
        ClassCaps(8, 10)(torch.randn(2, 3, 3, 4, 16), torch.rand(2, 3, 3, 4))
    pose, act = ConvCaps(8, 4, 3, 2)(torch.randn(2, 5, 5, 8, 16), torch.rand(2, 5, 5, 8))
    assert pose.shape == (2, 2, 2, 4, 16) and act.shape == (2, 2, 2, 4)


def test_images_on_another_device_than_the_weights_are_named():
    """CPU weights with meta images returned CPU zeros as logits (bmm mixed the devices without a word)."""
    from overlooked import create_model

    for name in ("capsnet", "matcaps_em_small"):
        model = create_model(name).eval()
        with pytest.raises(InputError, match=r"weights are on cpu; got images on meta: move them with image.to\('cpu'\)"):
            model(torch.rand(2, 1, 28, 28, device="meta"))


def test_capsule_losses_schedules_sizes_and_shifts_out_of_range_are_refused():
    """An adversarial review's: lam=-1 (validation loss -1.59), recon_weight=-1 (rewarding bad
    reconstructions), m_plus < m_minus, a spread-margin ramp of -5 steps or a negative end margin (the loss
    exactly 0) all trained without a word; matrix capsules with A=0 failed in conv2d; recon_keys naming one
    image for two reconstructions was an index error; random_shift of -3 a torch error and of 100 on a
    28-pixel image moved 92% of the digits out of frame, silently."""
    from overlooked.errors import InputError
    from overlooked.registry import AUGMENTATIONS, CALLBACKS, MODELS, OBJECTIVES

    for bad in ({"lam": -1}, {"recon_weight": -1}, {"m_plus": 0.1, "m_minus": 0.9}, {"m_plus": 1.5}, {"lam": float("nan")}):
        with pytest.raises(ValueError, match=r"capsule_margin needs 0 <= m_minus < m_plus <= 1, lam >= 0 and recon_weight >= 0"):
            OBJECTIVES.create("capsule_margin", **bad)
    for bad in ({"ramp_steps": -5}, {"ramp_steps": 0}, {"end": -1.0}, {"start": float("nan")}):
        with pytest.raises(ValueError, match=r"spread_margin needs ramp_steps a whole number >= 1 and margins start, end >= 0"):
            CALLBACKS.create("spread_margin", **bad)
    for size in ("A", "B", "C", "D"):
        with pytest.raises(ValueError, match=rf"matrix capsules: {size} must be an int >= 1, got 0"):
            MODELS.create("matcaps_em_small", **{size: 0})
    loss = OBJECTIVES.create("capsule_margin", recon_keys=["image_a"])
    output = {"logits": torch.rand(2, 10), "reconstruction": torch.rand(2, 2, 16), "reconstruction_classes": torch.zeros(2, 2, dtype=torch.long)}
    batch = {"label": torch.zeros(2, 10), "image_a": torch.rand(2, 1, 4, 4), "image_b": torch.rand(2, 1, 4, 4), "labels": torch.zeros(2, 2, dtype=torch.long)}
    with pytest.raises(InputError, match=r"recon_keys=\['image_a'\] names 1 image\(s\) but the model reconstructs 2 per example"):
        loss(output, batch)
    with pytest.raises(InputError, match=r"max_shift must be a whole number of pixels >= 0, got -3"):
        AUGMENTATIONS.create("random_shift", max_shift=-3)
    shift = AUGMENTATIONS.create("random_shift", max_shift=28)
    with pytest.raises(InputError, match=r"0 <= max_shift < 28 \(the image side\); got 28"):
        shift({"image": torch.rand(2, 1, 28, 28)}, torch.Generator())
    assert AUGMENTATIONS.create("random_shift", max_shift=27)({"image": torch.rand(2, 1, 28, 28)}, torch.Generator())["image"].shape == (2, 1, 28, 28)


@pytest.mark.data
def test_multimnist_pair_counts_must_be_whole_numbers(data_dir):
    from overlooked.errors import DataError
    from overlooked.registry import DATASETS

    for bad in ({"n_test": -1}, {"n_train": 0}, {"n_val": 2.5}):
        with pytest.raises(DataError, match=r"multimnist: n_\w+=.*: the number of generated pairs per split must be a whole number >= 1"):
            DATASETS.create("multimnist", data_dir=data_dir, **bad)


def test_margin_targets_of_other_values_and_inverse_temperatures_out_of_range_are_refused():
    """An adversarial review's: a multi-hot target holding 2 or NaN made the absent-class term negative
    (silently); em_routing with a float for its lambdas was a TypeError, NaN or negative lambdas gave NaN
    poses, em_inverse_temperatures(-2) returned []."""
    lengths = torch.rand(2, 10)
    for bad in (torch.full((2, 10), 2.0), torch.full((2, 10), float("nan"))):
        with pytest.raises(InputError, match=r"margin_loss takes a multi-hot \[B, K\] of 0s and 1s"):
            CF.margin_loss(lengths, bad)
    two = torch.zeros(2, 10)
    two[:, [1, 3]] = 1
    assert CF.margin_loss(lengths, two).shape == (2,)
    votes, acts = torch.randn(2, 4, 3, 16), torch.rand(2, 4)
    for lambdas, says in ((0.01, r"inverse_temperatures is a list with one lambda per iteration"), ([0.01, float("nan"), 0.01], r"finite numbers > 0"), ([0.01, -1.0, 0.01], r"finite numbers > 0")):
        with pytest.raises(ValueError, match=says):
            CF.em_routing(votes, acts, torch.zeros(3), torch.zeros(3), iterations=3, inverse_temperatures=lambdas)
    with pytest.raises(ValueError, match=r"em_inverse_temperatures needs iterations a whole number >= 1"):
        CF.em_inverse_temperatures(-2)


def test_capsule_layers_and_routing_name_odd_arguments_and_squash_survives_overflow():
    """An adversarial review's: RoutingCaps(iterations=2.5) passed its check and failed in the fused kernel;
    ConvCaps(kernel_size=0) was accepted and stride=0 a raw error; dynamic_routing on integer predictions
    raised softmax's NotImplementedError; squash of a vector longer than ~1.8e19 returned NaN."""
    with pytest.raises(ValueError, match=r"iterations must be a whole number >= 1, got 2\.5"):
        RoutingCaps(10, 8, 3, 4, iterations=2.5)
    for kwargs in ({"kernel_size": 0}, {"stride": 0}):
        with pytest.raises(ValueError, match=rf"ConvCaps: {next(iter(kwargs))} must be an int >= 1, got 0"):
            ConvCaps(2, 2, **kwargs)
    with pytest.raises(InputError, match=r"dynamic_routing takes floating-point predictions u_hat; got torch\.int64"):
        CF.dynamic_routing(torch.ones(1, 3, 2, 4, dtype=torch.long))
    v = CF.squash(torch.tensor([[3e19, 4e19], [3.0, 4.0], [0.0, 0.0]]))
    assert torch.allclose(v[0], torch.tensor([0.6, 0.8])) and torch.allclose(v[1], torch.tensor([3.0, 4.0]) * 25 / 26 / 5) and torch.equal(v[2], torch.zeros(2))


def test_spread_loss_names_a_multi_label_target_and_a_margin_of_the_wrong_shape():
    """An adversarial review's: a two-digit target (MultiMNIST on a matrix-capsule config) was told to take
    target.argmax(1), which would drop a digit silently; a margin [1, B] was a raw broadcast error."""
    acts, index = torch.rand(4, 10), torch.zeros(4, dtype=torch.long)
    two = torch.zeros(4, 10)
    two[:, [1, 2]] = 1
    with pytest.raises(InputError, match=r"take one class per example; for two digits at once \(MultiMNIST\) use capsnet_multimnist"):
        CF.spread_loss(acts, two, 0.2)
    with pytest.raises(InputError, match=r"spread_loss takes one margin per example \(\[B\] or \[B, 1\], B=4\) or one for all; got shape \[1, 4\]"):
        CF.spread_loss(acts, index, torch.rand(1, 4))
    assert CF.spread_loss(acts, index, torch.full((4, 1), 0.2)).shape == (4,)
