"""Encoders are seeded and correct; the energy formula uses the recorded 45 nm constants."""

from __future__ import annotations

import torch

from overlooked.spiking.encode import delta_encode, latency_encode, rate_encode
from overlooked.spiking.energy import HOROWITZ_45NM, ann_energy_pj, snn_energy_pj


def test_rate_code_is_seeded_and_matches_probability():
    x = torch.full((2000,), 0.3)
    a = rate_encode(x, 50, torch.Generator().manual_seed(1))
    b = rate_encode(x, 50, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == (50, 2000)
    assert abs(a.mean().item() - 0.3) < 0.01


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
