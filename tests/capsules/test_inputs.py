"""Every registered capsule-family model checks its input at the top of forward: a wrong shape or dtype
raises a ValueError naming the expected ``[B, C, H, W]``, what was given and the fix (it used to fail deep
inside routing or a conv with a message about internal sizes)."""

from __future__ import annotations

import pytest
import torch

from overlooked import catalog
from overlooked.registry import MODELS

catalog.load_all()
CAPSULE_MODELS = [n for n in MODELS.names() if MODELS.tags(n).get("family") == "capsules"]
SMALL = {  # small builds: the checks run before any layer, so size does not matter, construction time does
    "matcaps_em": {"A": 8, "B": 4, "C": 4, "D": 4, "iterations": 1},
    "matcaps_em_small": {"A": 8, "B": 4, "C": 4, "D": 4, "iterations": 1},
    "capsnet": {"decoder": False, "iterations": 1},
    "capsnet_multimnist": {"decoder": False, "iterations": 1},
    "capsnet_baseline_cnn": {"image_size": 12},
    "multimnist_baseline_cnn": {"image_size": 12},
}


def _build(name):
    torch.manual_seed(0)
    return MODELS.create(name, **SMALL.get(name, {})).eval()


def _side(model) -> int:
    return getattr(model, "image_size", None) or model.min_size


def test_every_capsule_model_is_covered():
    assert set(CAPSULE_MODELS) <= set(SMALL), "a new capsule model: add its small build here"


@pytest.mark.parametrize("name", CAPSULE_MODELS)
def test_missing_channel_dimension_is_named(name):
    model = _build(name)
    s = _side(model)
    with pytest.raises(ValueError, match=rf"takes images \[B, 1, .*got \[2, {s}, {s}\]: add the channel dimension with image.unsqueeze\(1\)"):
        model(torch.rand(2, s, s))


@pytest.mark.parametrize("name", CAPSULE_MODELS)
def test_wrong_channels_channels_last_and_dtype_are_named(name):
    model = _build(name)
    s = _side(model)
    with pytest.raises(ValueError, match=rf"got \[2, 3, {s}, {s}\]: the model was built with in_channels=1"):
        model(torch.rand(2, 3, s, s))
    with pytest.raises(ValueError, match=r"channels come second: image.permute\(0, 3, 1, 2\)"):
        model(torch.rand(2, s, s, 1))
    with pytest.raises(ValueError, match=r"floating-point images; got dtype torch.uint8: convert with image.float\(\)"):
        model(torch.zeros(2, 1, s, s, dtype=torch.uint8))


@pytest.mark.parametrize("name", [n for n in CAPSULE_MODELS if not n.startswith("matcaps")])
def test_fixed_size_models_name_their_image_size(name):
    model = _build(name)
    s = model.image_size
    with pytest.raises(ValueError, match=rf"takes images \[B, 1, {s}, {s}\] \(in_channels=1, image_size={s}\); got \[2, 1, {s + 4}, {s + 4}\]: .*build it with image_size={s + 4}"):
        model(torch.rand(2, 1, s + 4, s + 4))
    with pytest.raises(ValueError, match=rf"takes square {s}x{s} images"):
        model(torch.rand(2, 1, s, s + 4))


def test_capsnet_at_32x32_names_the_fix_not_the_routing_sizes():
    """Was: "Expected size ... batch2 ... [2048, 8] but got [1152, 8]" from inside the routing."""
    model = MODELS.create("capsnet")
    with pytest.raises(ValueError, match=r"^CapsNet takes images \[B, 1, 28, 28\] \(in_channels=1, image_size=28\); got \[2, 1, 32, 32\]: the model was built for 28x28 images: build it with image_size=32"):
        model(torch.rand(2, 1, 32, 32))
    with pytest.raises(ValueError, match=r"got \[2, 28, 28\]: add the channel dimension"):  # was: "expected input[1, 2, 28, 28] to have 1 channels"
        model(torch.rand(2, 28, 28))


def test_matrix_capsules_take_any_size_from_their_minimum():
    """Was, at 10x10: "maximum size for tensor at dimension 1" from an unfold deep inside ConvCaps."""
    model = _build("matcaps_em_small")
    assert model.min_size == 17  # conv1 5x5/2, ConvCaps 3x3/2, ConvCaps 3x3/1
    with pytest.raises(ValueError, match=r"MatrixCapsNet takes images \[B, 1, H, W\] with H, W >= 17 \(in_channels=1\); got \[2, 1, 10, 10\]: each side must be at least 17"):
        model(torch.rand(2, 1, 10, 10))
    with torch.no_grad():
        assert model(torch.rand(2, 1, 17, 17))["logits"].shape == (2, 10)
        assert model(torch.rand(2, 1, 17, 20))["logits"].shape == (2, 10)
        # the bound is tight: one pixel less and the layers themselves cannot run
        x = torch.relu(model.conv1(torch.rand(2, 1, 16, 16)))
        pose, act = model.caps1(*model.primary(x))
        with pytest.raises(ValueError, match="ConvCaps with kernel 3 needs a capsule grid of at least 3x3; got 2x2"):
            model.caps2(pose, act)


@pytest.mark.parametrize("name", CAPSULE_MODELS)
def test_the_right_input_still_runs(name):
    model = _build(name)
    s = _side(model)
    with torch.no_grad():
        out = model(torch.rand(2, 1, s, s))
    logits = out["logits"] if isinstance(out, dict) else out
    assert logits.shape == (2, 10)


def test_flops_count_the_model_not_the_fft_path():
    """CapsNet's CPU fast path computes PrimaryCaps in the frequency domain; the FLOP count must be the
    direct convolution's (9 x 9 x 256 -> 256, stride 2, on a 20 x 20 map: 2 x 81 x 256 x 256 x 36 = 382,205,952
    of the total), whichever path runs, and the model is left on its path."""
    from overlooked.api import flops_per_example
    from overlooked.data.base import ArrayDataset, Splits

    images = torch.rand(2, 1, 28, 28)
    ds = ArrayDataset({"image": images, "label": torch.tensor([1, 2])})
    splits = Splits(ds, ds, ds, ("image", "label"), "label", {"num_classes": 10, "image_shape": (1, 28, 28)})
    fused, reference = MODELS.create("capsnet", backend="fused"), MODELS.create("capsnet", backend="reference")
    assert fused.primary.fft and not reference.primary.fft
    counts = flops_per_example(fused, splits), flops_per_example(reference, splits)
    assert counts[0] == counts[1] and fused.primary.fft  # restored after counting
    assert counts[0] > 2 * 81 * 256 * 256 * 36 and counts[0] < 2 * (2 * 81 * 256 * 256 * 36)


def test_primary_caps_called_directly_names_its_input():
    """A single example [C, H, W] ran the conv unbatched and failed unpacking its output ("not enough values
    to unpack"); wrong channels failed inside conv2d."""
    from overlooked.capsules.modules import PrimaryCaps
    from overlooked.errors import InputError

    caps = PrimaryCaps(in_channels=4, channels=2, dim=3, kernel_size=3, stride=2)
    for bad in (torch.rand(4, 9, 9), torch.rand(1, 5, 9, 9)):
        with pytest.raises(InputError, match=r"PrimaryCaps takes feature maps \[B, C=4, H, W\]; got \[.*\] \(a single example: x.unsqueeze\(0\)\)"):
            caps(bad)
    assert caps(torch.rand(2, 4, 9, 9)).shape == (2, 2 * 4 * 4, 3)


def test_an_empty_batch_runs_through_the_fft_convolution():
    """MKL's FFT refused a batch of 0 ("Inconsistent configuration parameters"), so the fused CapsNet failed
    where every other model returns [0, C]."""
    from overlooked.capsules.fftconv import fft_conv2d

    model = MODELS.create("capsnet", image_size=17, backend="fused")
    assert model(torch.rand(0, 1, 17, 17))["logits"].shape == (0, 10)
    w, b = torch.randn(4, 3, 5, 5), torch.randn(4)
    assert fft_conv2d(torch.randn(0, 3, 10, 10), w, b, 2).shape == torch.nn.functional.conv2d(torch.randn(0, 3, 10, 10), w, b, stride=2).shape
