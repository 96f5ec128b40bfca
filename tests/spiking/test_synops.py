"""The synaptic-operation counter equals hand-computed counts; the energy report adds up."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from overlooked.spiking.convert import convert
from overlooked.spiking.models import spiking_mlp
from overlooked.spiking.synops import connections, energy_report, fanout, synops


def test_conv_synops_hand_computed_with_borders():
    # Conv 3x3, padding 1, 1 -> 2 channels on a 3x3 input. A corner position is touched by 4 output
    # positions, an edge by 6, the centre by 9; times 2 output channels.
    conv = nn.Conv2d(1, 2, 3, padding=1)
    spikes = torch.tensor([[[1.0, 0.0, 0.0], [2.0, 3.0, 0.0], [0.0, 0.0, 1.0]]])  # [1, 3, 3] spike counts
    # corner 1 x 8 + edge 2 x 12 + centre 3 x 18 + corner 1 x 8 = 8 + 24 + 54 + 8
    assert synops(spikes, fanout(conv, (1, 3, 3))) == 94.0
    # MACs of a dense real input: 2 channels x (4 corners x 4 + 4 edges x 6 + 1 centre x 9) = 2 x 49
    assert connections(conv, (1, 3, 3)) == 98


def test_pooled_spikes_cost_the_pooled_positions_fanout():
    # AvgPool 2 then Conv 3x3 (padding 1, 1 -> 1 channel) on a 2x2 pooled map: every pooled position is a
    # corner touched by all 4 outputs, so each of the 16 input positions reaches 4 synapses.
    fan = fanout([nn.AvgPool2d(2), nn.Conv2d(1, 1, 3, padding=1)], (1, 4, 4))
    assert torch.equal(fan, torch.full((1, 4, 4), 4.0))
    # strided conv without padding: 1 x 5 input, kernel 1 x 3, stride 2: outputs read 0..2 and 2..4
    fan = fanout(nn.Conv2d(1, 3, (1, 3), stride=(1, 2)), (1, 1, 5))  # 3 output channels
    assert fan.flatten().tolist() == [3.0, 3.0, 6.0, 3.0, 3.0]


def test_linear_fanout_is_out_features():
    spikes = torch.tensor([0.0, 2.0, 5.0])
    assert synops(spikes, fanout(nn.Linear(3, 7), (3,))) == 7 * 7.0


def test_energy_report_of_spikingnet_matches_its_own_spike_counts():
    torch.manual_seed(0)
    net = spiking_mlp(hidden=(12, 6), steps=5, batch_norm=False).eval()
    with torch.no_grad():
        for block in net.blocks:  # strong weights so that every layer spikes
            syn = block.synapse[-1] if isinstance(block.synapse, nn.Sequential) else block.synapse
            syn.weight.mul_(20)
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        out = net(x)
    counts = out["spike_counts"]  # [2] total spikes of each hidden layer over T and batch
    assert counts.min() > 0
    rep = energy_report(net, x)
    rows = rep["layers"]
    assert [r["input"] for r in rows] == ["real", "spikes", "spikes"]
    assert rows[0]["macs"] == 784 * 12  # direct encoding: once per example, not per step
    assert rows[1]["sops"] == pytest.approx(float(counts[0]) * 6 / 4)  # Linear 12 -> 6: fan-out 6, per example
    assert rows[2]["sops"] == pytest.approx(float(counts[1]) * 10 / 4)  # readout 6 -> 10
    assert rows[0]["firing_rate"] == pytest.approx(float(counts[0]) / (4 * 5 * 12))
    tot = rep["totals"]
    assert tot["ann_macs"] == 784 * 12 + 12 * 6 + 6 * 10
    assert tot["snn_energy_pj"] == pytest.approx(4.6 * tot["macs"] + 0.9 * tot["sops"])
    assert tot["ann_energy_pj"] == pytest.approx(4.6 * tot["ann_macs"])
    assert "compute-only estimate" in rep["label"]


def test_energy_report_of_converted_net_counts_spikes_times_fanout():
    torch.manual_seed(0)
    ann = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 3))
    calib = torch.rand(32, 5)
    snn = convert(ann, calib, norm="max")
    sim = snn.simulate(calib, steps=20)
    spikes = [float(r.sum() * 20) for r in sim.rates]
    rep = energy_report(snn, calib, steps=20)
    rows = rep["layers"]
    assert rows[0]["macs"] == 5 * 8 and rows[0]["sops"] == 0
    assert rows[1]["sops"] == pytest.approx(spikes[0] * 4 / 32)
    assert rows[2]["sops"] == pytest.approx(spikes[1] * 3 / 32)
    assert rows[1]["firing_rate"] == pytest.approx(spikes[1] / (32 * 20 * 4))
