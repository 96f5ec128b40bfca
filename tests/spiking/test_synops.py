"""The synaptic-operation counter equals hand-computed counts; the energy report adds up."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from overlooked.spiking.convert import convert
from overlooked.spiking.models import spiking_cnn, spiking_mlp
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
    spikes = [float(s.sum()) for s in sim.spikes]  # the per-step record, not the rates the report reads
    assert min(spikes) > 0
    rep = energy_report(snn, calib, steps=20)
    rows = rep["layers"]
    assert rows[0]["macs"] == 5 * 8 and rows[0]["sops"] == 0
    assert rows[1]["sops"] == pytest.approx(spikes[0] * 4 / 32)
    assert rows[2]["sops"] == pytest.approx(spikes[1] * 3 / 32)
    assert rows[1]["firing_rate"] == pytest.approx(spikes[1] / (32 * 20 * 4))


def _windows(side: int, k: int, stride: int, pad: int) -> list[int]:
    """By enumeration: for each input row, how many output rows' windows read it (borders read fewer)."""
    out = (side + 2 * pad - k) // stride + 1
    return [sum(1 for o in range(out) if o * stride - pad <= y < o * stride - pad + k) for y in range(side)]


def _if_counts(first: torch.Tensor, stages: list, steps: int) -> list[torch.Tensor]:
    """A plain IF simulation (v += I, spike when v > 1, v -= 1) of the converted stages, written out here:
    per spiking stage, each neuron's spikes summed over the batch and the steps ``[C, H, W]`` or ``[F]``."""
    v = [None] * len(stages)
    counts = [None] * len(stages)
    for _ in range(steps):
        s = None
        for k, stage in enumerate(stages):
            cur = first if k == 0 else stage.synapse(stage.pre(s))
            v[k] = cur.clone() if v[k] is None else v[k] + cur
            s = (v[k] > 1).float()
            v[k] = v[k] - s
            counts[k] = s.sum(0) if counts[k] is None else counts[k] + s.sum(0)
    return counts


def test_energy_report_of_converted_conv_pool_net_equals_a_hand_count():
    """Conv (real input: MACs) -> ReLU -> Conv (spikes in: border fan-outs) -> ReLU -> AvgPool -> Flatten ->
    Linear readout (pooled fan-out). On a 7 x 7 map, AvgPool(2) reads rows and columns 0..5 only, so a spike
    in row or column 6 reaches no synapse at all."""
    torch.manual_seed(0)
    ann = nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(2, 3, 3, padding=1),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(3 * 3 * 3, 4),
    )
    with torch.no_grad():
        ann[0].bias.add_(0.3)  # most first-layer neurons active, at varied rates
    x = torch.rand(6, 1, 7, 7, generator=torch.Generator().manual_seed(2))
    steps = 16
    snn = convert(ann, x, norm="max")
    with torch.no_grad():
        counts = _if_counts(snn.stages[0].current(x), list(snn.stages[:2]), steps)  # [2, 7, 7], [3, 7, 7]
    assert all(0.05 < c.sum() / (c.numel() * len(x) * steps) < 0.9 for c in counts), "both spiking layers must spike, below saturation"
    assert counts[1][:, 6, :].sum() > 0 and counts[1][:, :, 6].sum() > 0, "the unpooled border must spike"
    win = torch.tensor(_windows(7, 3, 1, 1), dtype=torch.float64)  # [2, 3, 3, 3, 3, 3, 2]
    conv_fan = win[:, None] * win[None, :]  # [7, 7] output positions reading each input position
    pooled = torch.zeros(7, 7, dtype=torch.float64)
    pooled[:6, :6] = 1.0  # AvgPool2d(2) floor: row 6 and column 6 are never read
    n = x.shape[0]
    macs0 = 2 * float(conv_fan.sum())  # every connection of the real-valued image, once per example
    sops1 = 3 * float((counts[0].double() * conv_fan).sum())  # each spike: its border-dependent fan-out x 3 channels
    sops2 = 4 * float((counts[1].double() * pooled).sum())  # each pooled spike reaches the 4 readout units
    rep = energy_report(snn, x, steps=steps)
    rows = rep["layers"]
    assert [r["input"] for r in rows] == ["real", "spikes", "spikes"]
    assert macs0 == 2 * 19 * 19 and rows[0]["macs"] == macs0 and rows[0]["sops"] == 0
    assert rows[1]["macs"] == 0 and rows[1]["sops"] == pytest.approx(sops1 / n, rel=1e-12)
    assert rows[2]["macs"] == 0 and rows[2]["sops"] == pytest.approx(sops2 / n, rel=1e-12)
    assert sops2 < 4 * float(counts[1].sum())  # the dropped border really mattered
    assert [r["spikes"] for r in rows] == pytest.approx([float(counts[0].sum()) / n, float(counts[1].sum()) / n, 0.0])
    assert [r["neurons"] for r in rows] == [2 * 49, 3 * 49, 0]
    assert rows[1]["firing_rate"] == pytest.approx(float(counts[1].sum()) / (n * steps * 3 * 49))
    assert [r["ann_macs"] for r in rows] == [2 * 19 * 19, 3 * 2 * 19 * 19, 27 * 4]
    tot = rep["totals"]
    assert tot["sops"] == pytest.approx((sops1 + sops2) / n) and tot["neuron_updates"] == (2 + 3) * 49 * steps
    assert tot["snn_energy_pj"] == pytest.approx(4.6 * macs0 + 0.9 * (sops1 + sops2) / n)


def test_energy_report_of_spikingnet_with_spike_input_counts_the_first_layer_as_sops():
    """A ``[T, B, ...]`` spike input (a rate or event encoder): the first conv's synapses are driven by spikes,
    so they cost SOPs (spikes x border-dependent fan-out), not MACs; counted over every batch of a loader."""
    torch.manual_seed(0)
    net = spiking_cnn(channels=(2,), kernel_size=3, image_size=6, hidden=5, steps=4, dropout=0.0, backend="reference").eval()
    with torch.no_grad():
        for block in net.blocks:  # strong, positive-leaning currents: both layers spike
            block.norm.weight.fill_(3.0)
            block.norm.bias.fill_(1.5)
    gen = torch.Generator().manual_seed(3)
    batches = [(torch.rand(4, b, 1, 6, 6, generator=gen) < 0.4).float() for b in (3, 2)]  # [T, B, 1, 6, 6] spikes
    with torch.no_grad():
        counts = torch.stack([net(x)["spike_counts"] for x in batches]).sum(0)  # [2] hidden spikes over T, B, batches
    assert counts.min() > 0, "both spiking layers must spike"
    assert counts[0] < 0.5 * 4 * 5 * 2 * 3 * 3, "and not saturate"
    win = torch.tensor(_windows(6, 3, 1, 1), dtype=torch.float64)
    conv_fan = 2 * win[:, None] * win[None, :]  # [6, 6]: 2 output channels; the pool acts on currents, after
    in_counts = sum(x.sum((0, 1))[0].double() for x in batches)  # [6, 6] input spikes per position
    rep = energy_report(net, batches)
    rows, n = rep["layers"], 5
    assert [r["input"] for r in rows] == ["spikes", "spikes", "spikes"]
    assert rows[0]["macs"] == 0 and rows[0]["sops"] == pytest.approx(float((in_counts * conv_fan).sum()) / n, rel=1e-12)
    assert rows[1]["sops"] == pytest.approx(float(counts[0]) * 5 / n)  # Flatten -> Linear(18, 5): fan-out 5
    assert rows[2]["sops"] == pytest.approx(float(counts[1]) * 10 / n)  # readout 5 -> 10
    assert rows[0]["spikes"] == pytest.approx(float(counts[0]) / n) and rep["examples"] == n
    assert rows[0]["ann_macs"] == 2 * float(win.sum()) ** 2


def test_fanout_and_synops_read_only_shapes_so_a_gpu_models_layers_work():
    """The energy report of a CUDA run built ones_like(weight) on the GPU and convolved CPU zeros with them (a
    device clash after training, before the summary was written): layers on another device (here meta, which
    holds no values) give the same fan-out, and counts on another device are copied to the CPU."""
    cpu = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.AvgPool2d(2))
    elsewhere = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.AvgPool2d(2)).to("meta")
    torch.testing.assert_close(fanout(elsewhere, (2, 6, 6)), fanout(cpu, (2, 6, 6)))
    assert fanout(nn.Linear(5, 4).to("meta"), (5,)).tolist() == [4.0] * 5
    counts = torch.ones(5, dtype=torch.float32)
    assert synops(counts, fanout(nn.Linear(5, 4), (5,))) == 20.0


def test_a_real_valued_input_sequence_is_counted_as_multiply_accumulates_not_spikes():
    """Spikes and event counts (whole numbers >= 0) cost a synaptic operation per event and target; any other
    value drives every synapse at every step. Before, a real-valued sequence was summed as if it were spikes,
    which gave negative operation counts."""
    torch.manual_seed(0)
    m = spiking_mlp(input_shape=(20,), hidden=(32,), num_classes=3, steps=4).eval()
    real = energy_report(m, torch.randn(4, 16, 20))["layers"][0]
    assert real["input"] == "real" and real["sops"] == 0.0 and real["macs"] == 20 * 32 * 4  # per example: every step
    events = (torch.rand(4, 16, 20) < 0.2).float() * 3  # three events in a bin: three operations each
    counted = energy_report(m, events)["layers"][0]
    assert counted["input"] == "spikes" and counted["macs"] == 0.0
    assert counted["sops"] == pytest.approx(float(events.sum()) * 32 / 16)  # per example, fan-out 32


def test_a_non_negative_non_integer_input_sequence_is_counted_as_multiply_accumulates():
    """Values in [0, 1) that are not whole numbers (torch.rand) are real-valued input, not events: MACs at every step."""
    torch.manual_seed(0)
    m = spiking_mlp(input_shape=(20,), hidden=(32,), num_classes=3, steps=4).eval()
    x = torch.rand(4, 16, 20)
    assert bool((x >= 0).all()) and not bool((x == x.round()).all())
    row = energy_report(m, x)["layers"][0]
    assert row["input"] == "real" and row["sops"] == 0.0 and row["macs"] == 20 * 32 * 4  # per example, every step


def test_mean_firing_rate_is_spikes_over_steps_times_neurons_by_hand():
    """Totals: 30 spikes per example (20 + 10) over 4 steps of 15 neurons (10 + 5) is a mean rate of 30 / 60 = 0.5."""
    from overlooked.spiking.synops import LayerOps, summarise

    # summed over 2 examples: layer 0 40 spikes of 10 neurons, layer 1 20 spikes of 5 neurons, the readout none
    layers = [LayerOps("0", "real", 200.0, 0.0, 100, 10, 40.0), LayerOps("1", "spikes", 0.0, 80.0, 50, 5, 20.0), LayerOps("2 (readout)", "spikes", 0.0, 60.0, 15, 0, 0.0)]
    rep = summarise(layers, examples=2, steps=4)
    tot = rep["totals"]
    assert tot["spikes"] == 30.0  # per example
    assert tot["mean_firing_rate"] == 0.5  # 30 / (4 steps x 15 neurons)
    assert [r["firing_rate"] for r in rep["layers"]] == [0.5, 0.5, None]  # 40 / (2 x 4 x 10), 20 / (2 x 4 x 5)
    assert tot["neuron_updates"] == 15 * 4
