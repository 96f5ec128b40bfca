"""The capsule family's model matrix, generated from the registry: forward shape, backward reaches every
parameter, no NaN, unknown kwargs raise; and the published parameter counts."""

from __future__ import annotations

import pytest
import torch

from overlooked import catalog
from overlooked.errors import RegistryError
from overlooked.registry import MODELS

catalog.load_all()
CAPSULE_MODELS = [n for n in MODELS.names() if MODELS.tags(n).get("family") == "capsules"]
SMALL_KWARGS = {"matcaps_em": {"A": 8, "B": 4, "C": 4, "D": 4, "iterations": 2}}  # the layout, at a test size
IMAGE_SIZE = {"multimnist_baseline_cnn": 36, "capsnet_multimnist": 36}


def _logits(out):
    return out["logits"] if isinstance(out, dict) else out


def test_the_family_is_registered():
    assert {"capsnet", "capsnet_baseline_cnn", "multimnist_baseline_cnn", "matcaps_em_small", "matcaps_em"} <= set(CAPSULE_MODELS)


@pytest.mark.parametrize("name", CAPSULE_MODELS)
def test_forward_backward_no_nan(name, every_parameter_learns):
    torch.manual_seed(0)
    model = MODELS.create(name, **SMALL_KWARGS.get(name, {}))
    size = IMAGE_SIZE.get(name, 28)
    batch = {"image": torch.rand(2, 1, size, size), "label": torch.tensor([3, 7]), "labels": torch.tensor([[3, 1], [7, 0]])}
    out = model(*(batch[k] for k in MODELS.tags(name)["input_keys"]))
    logits = _logits(out)
    assert logits.shape == (2, 10) and torch.isfinite(logits).all()
    loss = logits.square().sum()
    if isinstance(out, dict) and "reconstruction" in out:
        loss = loss + out["reconstruction"].sum()
    loss.backward()
    every_parameter_learns(model)


@pytest.mark.parametrize("name", CAPSULE_MODELS)
def test_unknown_kwargs_raise(name):
    with pytest.raises(RegistryError, match="unknown argument"):
        MODELS.create(name, not_an_argument=1)


@pytest.mark.parametrize(
    "name, expected",
    [
        ("capsnet_baseline_cnn", 35_445_522),  # paper_numbers.md §2.2
        ("multimnist_baseline_cnn", 24_563_978),
        ("capsnet_multimnist", 11_361_808),  # the two-digit CapsNet (§6), decoder included
    ],
)
def test_baseline_parameter_counts(name, expected):
    assert sum(p.numel() for p in MODELS.create(name).parameters()) == expected


def test_matrix_capsule_layer_sizes_by_hand():
    small = MODELS.create("matcaps_em_small")
    # conv1 5x5 1->64: 1,664; primary 1x1 64->8*16 + 64->8: 8,320 + 520; ConvCaps 3x3x8 -> 16 types of 4x4:
    # 72*16*16 + 2*16 = 18,464; ConvCaps 3x3x16 -> 16: 144*16*16 + 32 = 36,896; ClassCaps 16 -> 10: 16*10*16 + 20 = 2,580
    assert sum(p.numel() for p in small.parameters()) == 1_664 + 8_320 + 520 + 18_464 + 36_896 + 2_580
    big = MODELS.create("matcaps_em")  # A=B=C=D=32
    assert big.conv1.out_channels == 32 and big.caps1.W.shape == (9 * 32, 32, 4, 4) and big.classes.W.shape == (32, 10, 4, 4)


def test_multimnist_capsnet_reconstructs_each_digit_from_its_own_capsule():
    """Training: one reconstruction per labelled class, each the decoder applied to that class's capsule
    alone; evaluation: the two longest capsules. The loss scores each against the digit of its class."""
    from overlooked.capsules import functional as CF
    from overlooked.capsules.models import CapsuleLoss

    torch.manual_seed(0)
    model = MODELS.create("capsnet_multimnist", iterations=1)
    image, labels = torch.rand(2, 1, 36, 36), torch.tensor([[3, 1], [7, 0]])
    out = model(image, labels)
    assert out["reconstruction"].shape == (2, 2, 36 * 36) and torch.equal(out["reconstruction_classes"], labels)
    for r in range(2):
        torch.testing.assert_close(out["reconstruction"][:, r], model.decoder(CF.mask_capsules(out["poses"], labels[:, r])))
    model.eval()
    with torch.no_grad():
        ev = model(image, labels)
    torch.testing.assert_close(ev["reconstruction_classes"], ev["logits"].topk(2, dim=-1).indices)
    # the loss pairs reconstruction r with the image of the class it was decoded from, whatever the order
    a, b = torch.rand(2, 1, 36, 36), torch.rand(2, 1, 36, 36)
    multi_hot = torch.zeros(2, 10).scatter(1, labels, 1.0)
    batch = {"label": multi_hot, "labels": labels, "image_a": a, "image_b": b, "image": torch.maximum(a, b)}
    loss = CapsuleLoss(recon_keys=("image_a", "image_b"), reduction="sum")
    swapped = {**out, "reconstruction": out["reconstruction"].flip(1), "reconstruction_classes": labels.flip(1)}
    torch.testing.assert_close(loss(out, batch), loss(swapped, batch))
    by_hand = CF.margin_loss(out["logits"], multi_hot).sum() + 0.0005 * (
        ((out["reconstruction"][:, 0] - a.flatten(1)) ** 2).sum() + ((out["reconstruction"][:, 1] - b.flatten(1)) ** 2).sum()
    )
    torch.testing.assert_close(loss(out, batch), by_hand)
    with pytest.raises(ValueError, match="recon_keys"):
        CapsuleLoss()(out, batch)


def test_reconstruction_targets_score_both_digits_even_after_a_wrong_guess():
    from overlooked.capsules.models import CapsuleLoss

    a, b = torch.zeros(3, 1, 2, 2), torch.ones(3, 1, 2, 2)
    labels = torch.tensor([[3, 5], [3, 5], [3, 5]])
    classes = torch.tensor([[5, 7], [7, 3], [8, 9]])  # one right (second digit), one right (first digit), none right
    out = {"reconstruction": torch.zeros(3, 2, 4), "reconstruction_classes": classes}
    targets = CapsuleLoss(recon_keys=("image_a", "image_b")).recon_targets(out, {"labels": labels, "image_a": a, "image_b": b})
    assert targets[:, :, 0].tolist() == [[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]  # b then a; b then a; a then b
    with pytest.raises(ValueError, match="recon_keys"):
        CapsuleLoss(recon_keys=("image_a", "image_b")).recon_targets({"reconstruction": torch.zeros(3, 4)}, {"image": a})


def test_the_package_exports_what_networks_are_built_from():
    """``overlooked.capsules`` used to export nothing: the layers, models, objectives and functional maths are
    importable from the package itself, and importing it first (before the API) makes no import cycle."""
    import subprocess
    import sys

    import overlooked.capsules as caps
    from overlooked.capsules import functional as CF
    from overlooked.capsules import fused, matrix, models, modules

    assert len(set(caps.__all__)) == len(caps.__all__) and all(hasattr(caps, n) for n in caps.__all__)
    homes = {"CapsNet": modules, "RoutingCaps": modules, "PrimaryCaps": modules, "MatrixCapsNet": matrix, "ConvCaps": matrix, "ClassCaps": matrix, "PrimaryMatCaps": matrix, "CapsuleLoss": models, "SpreadLoss": models, "dynamic_routing": CF, "em_routing": CF, "margin_loss": CF, "spread_loss": CF, "squash": CF, "mask_capsules": CF, "fused_routing": fused}
    for name, home in homes.items():
        assert name in caps.__all__ and getattr(caps, name) is getattr(home, name), name
    code = "import overlooked.capsules as c; import overlooked.api; from overlooked.registry import MODELS; print(isinstance(MODELS.create('capsnet', decoder=False), c.CapsNet))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "True", done.stderr


@pytest.mark.parametrize("name", CAPSULE_MODELS)
def test_an_empty_batch_gives_empty_outputs(name):
    """B = 0: empty logits (and poses, reconstructions) in eval, as PyTorch's own modules give."""
    model = MODELS.create(name, **SMALL_KWARGS.get(name, {})).eval()
    size = IMAGE_SIZE.get(name, 28)
    batch = {"image": torch.rand(0, 1, size, size), "label": torch.zeros(0, dtype=torch.long), "labels": torch.zeros(0, 2, dtype=torch.long)}
    with torch.no_grad():
        out = model(*(batch[k] for k in MODELS.tags(name)["input_keys"]))
    assert _logits(out).shape == (0, 10)
    if isinstance(out, dict):
        assert all(v.shape[0] == 0 for v in out.values() if isinstance(v, torch.Tensor) and v.dim() > 0), {k: v.shape for k, v in out.items() if isinstance(v, torch.Tensor)}
