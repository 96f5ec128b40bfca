"""Encoders are seeded and correct; the energy formula uses the recorded 45 nm constants."""

from __future__ import annotations

import pytest
import torch

from overlooked.spiking.encode import delta_encode, latency_encode, rate_encode
from overlooked.spiking.energy import HOROWITZ_45NM, ann_energy_pj, snn_energy_pj


def test_rate_code_is_seeded_and_matches_probability():
    x = torch.full((2000,), 0.3)
    a = rate_encode(x, 50, torch.Generator().manual_seed(1))
    b = rate_encode(x, 50, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == (50, 2000)
    assert abs(a.mean().item() - 0.3) < 0.01


def test_rate_code_spike_probability_is_max_rate_times_intensity():
    """All-ones input at max_rate 0.5 spikes half the time (within 5 standard errors), directly and via the registry."""
    from overlooked.registry import ENCODERS

    x = torch.ones(2000)
    n = 100 * 2000
    tolerance = 5 * (0.5 * 0.5 / n) ** 0.5  # about 0.0056
    direct = rate_encode(x, 100, torch.Generator().manual_seed(2), max_rate=0.5)
    assert abs(direct.mean().item() - 0.5) < tolerance
    encoded = ENCODERS.create("rate", steps=100, max_rate=0.5)({"image": x, "label": torch.zeros(1)}, torch.Generator().manual_seed(3))["image"]
    assert encoded.shape == (100, 2000) and abs(encoded.mean().item() - 0.5) < tolerance


def test_latency_first_spike_step_is_rounded_and_the_threshold_itself_is_silent():
    """Spike at round((1 - x)(steps - 1)); x at or below the threshold never spikes (by hand, steps 5)."""
    # (1 - x) * 4: 1.0 -> 0; 0.8 -> 0.8 -> 1; 0.6 -> 1.6 -> 2; 0.3 -> 2.8 -> 3 (floor would give 0, 1, 2);
    # 0.25 = threshold: silent; 0.1 below it: silent
    x = torch.tensor([1.0, 0.8, 0.6, 0.3, 0.25, 0.1])
    z = latency_encode(x, 5, threshold=0.25)
    assert z.sum(0).tolist() == [1.0, 1.0, 1.0, 1.0, 0.0, 0.0]
    assert z.argmax(0)[:4].tolist() == [0, 1, 2, 3]
    # default threshold 0.01: 0.05 -> 3.8 -> the last step, 4
    assert latency_encode(torch.tensor([0.05]), 5)[:, 0].tolist() == [0.0, 0.0, 0.0, 0.0, 1.0]


def test_latency_one_spike_brighter_earlier():
    x = torch.tensor([0.9, 0.2, 0.6])
    z = latency_encode(x, 10)
    assert z.sum(0).tolist() == [1.0, 1.0, 1.0]
    first = z.argmax(0)
    assert first[0] < first[2] < first[1]


def test_delta_spikes_on_change_only():
    sig = torch.tensor([0.0, 0.0, 0.5, 0.5, 0.5, 0.1])[:, None]
    assert delta_encode(sig, 0.3)[:, 0].tolist() == [0.0, 0.0, 1.0, 0.0, 0.0, 1.0]


def test_energy_constants_and_formula():
    assert (HOROWITZ_45NM["fp32"].mac_pj, HOROWITZ_45NM["fp32"].ac_pj) == (4.6, 0.9)
    assert (HOROWITZ_45NM["int8"].mac_pj, HOROWITZ_45NM["int8"].ac_pj) == (0.23, 0.03)
    assert snn_energy_pj(10, 100, "fp16") == 1.5 * 10 + 0.4 * 100
    assert ann_energy_pj(10, "int8") == 0.23 * 10


def test_encoders_refuse_what_they_would_saturate_or_cannot_read():
    """An adversarial review's: an 8-bit image (0..255) or floats in 0..255 were clamped to [0, 1], so every
    lit pixel spiked at every step, silently; max_rate=-1 trained on all-zero input; steps=-1 gave a raw
    'expanded size' error; T=0 in delta_encode an IndexError; a missing batch key a KeyError."""
    import pytest

    from overlooked.errors import InputError
    from overlooked.registry import ENCODERS

    gen = torch.Generator().manual_seed(0)
    img = torch.rand(2, 4)
    for bad, says in (((img * 255).to(torch.uint8), r"takes float intensities in \[0, 1\]; got a torch.uint8 tensor\. Fix: x.float\(\) / 255"),
                      (img * 255, r"got values in \[.*\]\. Fix: x / 255 for an image in 0\.\.255"),
                      (img - 0.5, r"takes intensities in \[0, 1\]"), (torch.full((2,), float("nan")), r"takes intensities in \[0, 1\]")):
        with pytest.raises(InputError, match=says):
            rate_encode(bad, 4, gen)
        with pytest.raises(InputError, match=says.replace("rate", "latency")):
            latency_encode(bad, 4)
    for steps in (-1, 0, 2.5, True):
        with pytest.raises(InputError, match=r"steps \(time steps of the code\) must be a whole number >= 1"):
            rate_encode(img, steps, gen)
        with pytest.raises(InputError, match=r"steps \(time steps of the code\) must be a whole number >= 1"):
            ENCODERS.create("rate", steps=steps)
    for max_rate in (-1, 0, 5, float("nan")):
        with pytest.raises(InputError, match=r"max_rate .* must be in \(0, 1\]"):
            ENCODERS.create("rate", max_rate=max_rate)
    with pytest.raises(InputError, match=r"delta_encode takes a float signal \[T, \.\.\.\] with T >= 1"):
        delta_encode(torch.zeros(0, 3), 0.1)
    for name in ("rate", "time_first"):
        with pytest.raises(InputError, match=rf"the {name} encoder reads the batch key 'x', which this dataset's batches do not have \(image, label\)"):
            ENCODERS.create(name, key="x")({"image": img, "label": torch.zeros(2)}, gen)
    with pytest.raises(InputError, match=r"the time_first encoder takes 'frames' as \[B, T, \.\.\.\]"):
        ENCODERS.create("time_first")({"frames": torch.zeros(3)}, gen)
    assert rate_encode(img.clamp(max=1 - 1e-3) + 1e-7, 3, gen).shape == (3, 2, 4)  # a rounding past 1 is clamped, as before


def test_latency_and_delta_thresholds_are_checked():
    """A negative threshold spiked at every step, NaN never, a string was a raw TypeError."""
    import numpy as np

    from overlooked.errors import InputError

    for bad in (-0.1, float("nan"), "0.1", torch.tensor([0.1, -0.2])):
        with pytest.raises(InputError, match=r"delta_encode: threshold .* must be a finite number >= 0"):
            delta_encode(torch.zeros(3, 2), bad)
        with pytest.raises(InputError, match=r"latency_encode: threshold .* must be a finite number in \[0, 1\)"):
            latency_encode(torch.zeros(2), 4, threshold=bad)
    with pytest.raises(InputError, match="latency_encode: threshold"):
        latency_encode(torch.zeros(2), 4, threshold=1.0)  # nothing could ever spike
    signal = torch.tensor([[0.0, 0.0], [0.15, 0.15], [0.3, 0.3]])
    for fine in (np.float32(0.1), torch.tensor(0.1), torch.tensor([0.1, 0.2])):  # any real number, or one per feature
        assert delta_encode(signal, fine).shape == signal.shape
    assert delta_encode(signal, torch.tensor([0.1, 0.2]))[:, 1].tolist() == [0.0, 0.0, 1.0]
