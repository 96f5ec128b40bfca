"""Event-driven simulation = clock-driven simulation, and its synaptic-update count is exact."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from overlooked.bench.spiking import crossover
from overlooked.spiking import event as E
from overlooked.spiking import modules as M
from overlooked.spiking.synops import fanout


def _dyadic(t: torch.Tensor, scale: float) -> torch.Tensor:
    """Multiples of 1/64: every sum of a few thousand of them is exact in float64."""
    return torch.round(t * scale * 64) / 64


def _net(seed: int = 0, groups: int = 1) -> list[nn.Module]:
    """conv, LIF, AvgPool, IF, conv2, LIF cell, Flatten, linear, LIF. ``groups=2`` makes conv2 a grouped
    ``Conv2d(4, 6, 3, groups=2)``: AvgPool is a grouped convolution with one channel per group, so only this
    exercises ``_scatter_conv`` with several input and output channels per group."""
    torch.manual_seed(seed)
    conv = nn.Conv2d(2, 4, 3, stride=2, padding=1).double()  # stride 2 with padding: uneven borders
    out2 = 3 if groups == 1 else 6
    conv2 = nn.Conv2d(4, out2, 3, padding=2, groups=groups).double()  # padding wider than needed: more borders
    lin = nn.Linear(out2 * 5 * 5, 10).double()
    for layer, w, b, offset in ((conv, 3.0, 0.3, 1 / 16), (conv2, 2.0, 0.2, 1 / 4), (lin, 2.0, 0.2, 1 / 8)):
        layer.weight.data = _dyadic(layer.weight.data, w) + offset
        layer.bias.data = _dyadic(layer.bias.data, b) + 1 / 8
    # dt / tau_mem = 1/2: dyadic decay, so every membrane is exact in float64
    return [conv, M.LIF(tau_mem=2e-3), nn.AvgPool2d(2), M.IF(r=4000.0, reset="subtract"), conv2, M.LIFCell(tau_mem=2e-3), nn.Flatten(), lin, M.LIF(tau_mem=2e-3)]


def _fan_out_by_enumeration(syn: nn.Conv2d | nn.AvgPool2d, c: int, h: int, w: int) -> torch.Tensor:
    """Fan-out counted by brute force: for every output position, mark the inputs its window reads."""
    if isinstance(syn, nn.AvgPool2d):
        k, s, p, per_group = syn.kernel_size, syn.stride, 0, 1
    else:
        k, s, p, per_group = syn.kernel_size[0], syn.stride[0], syn.padding[0], syn.out_channels // syn.groups
    ho, wo = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    count = torch.zeros(h, w, dtype=torch.int64)
    for oy in range(ho):
        for ox in range(wo):
            for ky in range(k):
                for kx in range(k):
                    y, x = oy * s - p + ky, ox * s - p + kx
                    if 0 <= y < h and 0 <= x < w:
                        count[y, x] += 1
    return per_group * count.expand(c, h, w)


@pytest.mark.parametrize("groups", [1, 2])
def test_event_spikes_equal_clock_spikes_and_count_is_exact(groups):
    layers = _net(groups=groups)
    assert layers[4].groups == groups
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(12, 3, 2, 11, 11, generator=gen) < 0.3).double()  # [T, B, C, H, W], odd size: ragged borders
    events = E.run_events(layers, x)
    clock = E.run_clock(layers, x)
    assert len(events.spikes) == len(clock) == 4
    for ev, cl in zip(events.spikes, clock):
        assert torch.equal(ev, cl)
        assert 0.01 < cl.mean() < 0.9, "every layer must spike for the test to mean anything"
    inputs = [x, events.spikes[0], events.spikes[1], events.spikes[2].flatten(2)]
    synapses = [layers[0], layers[2], layers[4], layers[7]]
    total = 0
    for syn, s, (updates, dense) in zip(synapses, inputs, events.per_layer):
        shape = tuple(s.shape[2:])
        fo = fanout(syn, shape)  # the count energy_report uses
        if not isinstance(syn, nn.Linear):
            assert torch.equal(fo, _fan_out_by_enumeration(syn, *shape).float())
        assert updates == int((s * fo).sum())  # each spike reaches exactly its fan-out
        assert dense == int(fo.sum()) * s.shape[0] * s.shape[1]
        total += updates
    assert events.synaptic_updates == total
    assert events.synaptic_updates < 0.5 * events.dense_updates


def _layer_by_layer(layers: list[nn.Module], x: torch.Tensor) -> list[torch.Tensor]:
    """The network run as written, without the simulator's grouping: every stateless layer on each step's
    tensor, a neuron sequence module over the whole sequence, a neuron cell in a loop over the steps."""
    z, spikes = x, []
    for layer in layers:
        if isinstance(layer, M._Sequence):
            z, _ = layer(z)
        elif isinstance(layer, M._Cell):
            state, out = None, []
            for t in range(z.shape[0]):
                step, state = layer(z[t], state)
                out.append(step)
            z = torch.stack(out)
        else:
            y = layer(z.flatten(0, 1))  # [T*B, ...]
            z = y.view(z.shape[0], z.shape[1], *y.shape[1:])
        if isinstance(layer, (M._Sequence, M._Cell)):
            spikes.append(z)
    return spikes


@pytest.mark.parametrize("groups", [1, 2])
def test_clock_and_event_simulations_equal_a_plain_layer_by_layer_run(groups):
    """run_clock shares run_events' grouping (``_stages``), so a grouping bug (a wrong cell or parameters for
    a layer, a reshape in the wrong place) would pass the event = clock test; this reference has no grouping."""
    layers = _net(groups=groups)
    x = (torch.rand(12, 3, 2, 11, 11, generator=torch.Generator().manual_seed(0)) < 0.3).double()
    with torch.no_grad():
        reference = _layer_by_layer(layers, x)
    clock = E.run_clock(layers, x)
    events = E.run_events(layers, x)
    assert len(reference) == len(clock) == len(events.spikes) == 4
    for ref, cl, ev in zip(reference, clock, events.spikes):
        assert 0.01 < ref.mean() < 0.9, "every layer must spike for the test to mean anything"
        assert torch.equal(cl, ref) and torch.equal(ev, ref)


def test_sparse_input_counts_far_below_dense():
    torch.manual_seed(1)
    layers = [nn.Linear(200, 50).double(), M.LIF(tau_mem=2e-3)]
    x = torch.zeros(20, 4, 200, dtype=torch.float64)
    x[torch.rand(20, 4, 200) < 0.02] = 1.0
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)  # not 1, which a one-thread CI (OMP_NUM_THREADS=1) would leave unchanged
        result = E.run_events(layers, x)
        assert torch.get_num_threads() == 2  # the one-thread section restores the caller's setting
    finally:
        torch.set_num_threads(threads)
    assert result.synaptic_updates == int(x.sum()) * 50
    assert result.synaptic_updates < 0.05 * result.dense_updates
    assert torch.equal(result.spikes[0], E.run_clock(layers, x)[0])


def test_invalid_networks_fail_clearly():
    with pytest.raises(ValueError, match="must be followed by an IF/LIF neuron"):
        E.run_events([nn.Linear(3, 3), nn.Linear(3, 3), M.LIF()], torch.zeros(2, 1, 3))
    with pytest.raises(ValueError, match="must end with a neuron"):
        E.run_events([nn.Linear(3, 3)], torch.zeros(2, 1, 3))
    with pytest.raises(ValueError, match="supports"):
        E.run_events([nn.Linear(3, 3), nn.ReLU()], torch.zeros(2, 1, 3))
    for recurrent in (M.RecurrentLIFCell(3), M.RecurrentLIF(3)):  # a LIFCell subclass, whose recurrent synapses it would not count
        with pytest.raises(ValueError, match=r"recurrent weights would run dense inside the cell and go uncounted.*RecurrentLIF over"):
            E.run_events([nn.Linear(3, 3), recurrent], torch.zeros(2, 1, 3))
    x = torch.zeros(2, 1, 1, 6, 6)
    with pytest.raises(ValueError, match="event Conv2d needs square kernels, strides and paddings"):  # padding (1, 0): one side only
        E.run_events([nn.Conv2d(1, 2, 3, padding=(1, 0)), M.IF()], x)
    for pool in (nn.AvgPool2d((2, 3)), nn.AvgPool2d(2, stride=(2, 1))):  # once simulated as square, silently
        with pytest.raises(ValueError, match=r"event AvgPool2d needs a square kernel and stride, got kernel_size=(\(2, 3\) stride=\(2, 3\)|2 stride=\(2, 1\))$"):
            E.run_events([pool, M.IF()], x)
    assert E.run_events([nn.AvgPool2d([2, 2], stride=[2, 2]), M.IF()], x).spikes[0].shape == (2, 1, 1, 3, 3)  # given as lists


def test_crossover_interpolates_between_bracketing_rates():
    rows = [(0.5, 2.0, 1.0), (0.1, 1.0, 1.0 * 2.0), (0.01, 0.1, 1.0)]  # (activity, event s, dense s)
    # log(event/dense) goes from log 2 to log 0.5: zero halfway in log-activity between 0.5 and 0.1
    assert crossover(rows) == pytest.approx((0.5 * 0.1) ** 0.5)
    assert crossover([(0.5, 1.0, 2.0)]) == 0.5
    assert crossover([(0.5, 3.0, 2.0), (0.1, 3.0, 2.0)]) == 0.0


def _trained_looking(net: nn.Module, x: torch.Tensor, seed: int) -> nn.Module:
    """``net`` in float64 eval mode with batch-norm statistics measured on ``x`` (as training leaves them) and
    affine terms that are not the identity, so that folding them matters and every layer spikes."""
    g = torch.Generator().manual_seed(seed)
    norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d)]
    net.double().train()
    with torch.no_grad():
        for m in norms:
            m.momentum = None  # a cumulative average: the statistics of this one batch
            m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.75)
            m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.2 + 0.4)
        for m in net.modules():
            if isinstance(m, M.PLIFCell):  # a learned time constant other than the initial one
                m.w.fill_(0.8 * float(torch.randn((), generator=g)) - 0.3)
        net(x)
    return net.eval()


def _block_spikes(net: nn.Module, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    seen: list[torch.Tensor] = []
    hooks = [b.register_forward_hook(lambda m, a, z: seen.append(z)) for b in net.blocks]
    try:
        with torch.no_grad():
            logits = net(x)["logits"]
    finally:
        for h in hooks:
            h.remove()
    return seen, logits


@pytest.mark.parametrize("neuron", ["plif", "lif"])
@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_a_trained_spikingnet_runs_event_driven_as_its_own_forward(arch, neuron):
    """EventNetwork.from_model = the model's own (clock-driven, fused-scan) forward in eval mode: the same
    spikes in every block and the same logits, for direct encoding and for a spike sequence; and its counts
    are the SOPs and MACs that synops.energy_report computes from the same run's spike counts."""
    from overlooked.spiking.encode import rate_encode
    from overlooked.spiking.models import spiking_cnn, spiking_mlp
    from overlooked.spiking.synops import energy_report

    torch.manual_seed(0)
    if arch == "mlp":
        net = spiking_mlp(input_shape=(1, 6, 6), hidden=(24, 16), steps=5, neuron=neuron)
    else:
        net = spiking_cnn(image_size=8, channels=(3, 4), kernel_size=3, hidden=12, steps=4, neuron=neuron)
    side = 6 if arch == "mlp" else 8
    image = torch.rand(5, 1, side, side, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    net = _trained_looking(net, image, seed=1)
    events = E.EventNetwork.from_model(net)
    for x in (image, rate_encode(image, net.steps, generator=torch.Generator().manual_seed(3))):
        result = events.run(x)
        spikes, logits = _block_spikes(net, x)
        assert len(result.spikes) == len(spikes) == len(net.blocks)
        for got, want in zip(result.spikes, spikes):
            assert torch.equal(got, want)
            assert 0 < float(want.mean()) < 1  # every block spikes, and not everywhere
        torch.testing.assert_close(result.logits, logits, rtol=1e-12, atol=1e-12)
        report = energy_report(net, x)
        n = report["examples"]
        assert len(result.per_layer) == len(report["layers"]) == len(net.blocks) + 1  # the readout last
        for (updates, _), row in zip(result.per_layer, report["layers"]):
            assert updates == pytest.approx(row["sops"] * n, rel=1e-12, abs=1e-9)
        assert result.synaptic_updates == pytest.approx(report["totals"]["sops"] * n, rel=1e-12)
        assert result.macs == pytest.approx(report["totals"]["macs"] * n, rel=1e-12)
        assert (result.macs > 0) == (x.dim() == image.dim())  # MACs only for the real-valued (static) input


def test_from_model_refuses_what_it_cannot_step_or_the_model_would_refuse():
    from overlooked.errors import InputError
    from overlooked.spiking.models import SpikingBlock, SpikingNet, spiking_mlp

    with pytest.raises(TypeError, match="takes a SpikingNet"):
        E.EventNetwork.from_model(nn.Sequential(nn.Linear(2, 2)))
    alif = SpikingNet([SpikingBlock(nn.Linear(4, 3), M.ALIF())], nn.Linear(3, 2), steps=2, input_shape=(4,)).eval()
    with pytest.raises(ValueError, match="block 0: event simulation steps IF, LIF and PLIF neurons, got ALIF"):
        E.EventNetwork.from_model(alif)
    net = spiking_mlp(input_shape=(1, 4, 4), hidden=(8,), steps=2).eval()
    events = E.EventNetwork.from_model(net)
    for bad in (torch.zeros(2, 3, 16), torch.zeros(3, 5, 1, 4, 4), torch.zeros(0, 5, 1, 4, 4)):  # other layout, T != steps, T = 0
        with pytest.raises(ValueError, match="takes a static input") as refused:
            events.run(bad)
        with pytest.raises(ValueError) as own:
            net(bad)
        assert str(refused.value).split(": ", 1)[1] == str(own.value).split(": ", 1)[1]  # the model's own rule and words
    with pytest.raises(InputError, match="weights are torch.float32 but the input is torch.float64"):
        events.run(torch.rand(3, 1, 4, 4, dtype=torch.float64))  # as the model refuses it, not silently at float64
    with pytest.raises(ValueError, match=r"run the model itself \(model\(x\)\) for count-valued input"):
        events.run(torch.full((2, 3, 1, 4, 4), 2.0))
    with pytest.raises(ValueError, match="steps is for a converted network's images"):
        events.run(torch.rand(3, 1, 4, 4), steps=3)
    with pytest.warns(UserWarning, match="in training mode"):
        E.EventNetwork.from_model(net.train())


@pytest.mark.parametrize("variant", ["no_affine", "no_running_stats", "if_neuron"])
def test_from_model_with_other_batch_norms_and_neurons(variant):
    """Batch norm without affine terms folds as gamma = 1, beta = 0; without running statistics it cannot be
    folded and is refused, naming the fix; IF neurons step as in the model."""
    from overlooked.spiking.models import SpikingBlock, SpikingNet

    torch.manual_seed(0)
    norm = nn.BatchNorm1d(6, affine=variant != "no_affine", track_running_stats=variant != "no_running_stats", momentum=None)
    neuron = M.IF(r=500.0, v_threshold=0.5) if variant == "if_neuron" else M.LIF(tau_mem=2e-3, v_threshold=0.3)
    net = SpikingNet([SpikingBlock(nn.Linear(5, 6), neuron, norm)], nn.Linear(6, 3), steps=4, input_shape=(5,)).double()
    x = torch.rand(7, 5, dtype=torch.float64) * 3
    if variant == "no_running_stats":
        with pytest.raises(ValueError, match="without running statistics .* Train with track_running_stats=True"):
            E.EventNetwork.from_model(net.eval())
        return
    net.train()
    with torch.no_grad():
        net(x)  # running statistics: this batch's (momentum None: a cumulative average)
    net.eval()
    result = E.EventNetwork.from_model(net).run(x)
    spikes, logits = _block_spikes(net, x)
    assert torch.equal(result.spikes[0], spikes[0]) and 0 < float(spikes[0].mean()) < 1
    torch.testing.assert_close(result.logits, logits, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("side", [8, 9])  # 9: each pooling drops a row and a column, which the folded synapse must skip too
def test_a_converted_network_runs_event_driven_as_it_simulates(side):
    """EventNetwork.from_model(ConvertedSNN) = ConvertedSNN.simulate: every stage's spike counts per neuron and
    the readout, at its own steps and at others; pooling folded into the next synapse (conv and Linear), so a
    spike's synaptic updates are the SOPs energy_report counts through pooling and synapse composed."""
    from overlooked.spiking.convert import convert
    from overlooked.spiking.synops import energy_report

    torch.manual_seed(0)
    ann = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(6 * (side // 4) ** 2, 10), nn.ReLU(), nn.Linear(10, 3),
    ).double()
    gen = torch.Generator().manual_seed(side)
    snn = convert(ann, torch.rand(64, 1, side, side, dtype=torch.float64, generator=gen), norm="max", steps=12)
    image = torch.rand(5, 1, side, side, dtype=torch.float64, generator=gen)
    events = E.EventNetwork.from_model(snn)
    for steps in (None, 5):
        result = events.run(image, steps=steps)
        t = steps or snn.steps
        sim = snn.simulate(image, t)
        assert len(result.spikes) == len(sim.rates) == 3
        for spikes, rate in zip(result.spikes, sim.rates):
            assert spikes.shape[0] == t and torch.equal(spikes.sum(0), rate * t)
            assert 0 < float(rate.mean()) < 1
        torch.testing.assert_close(result.logits, sim.readout[-1] / t, rtol=1e-12, atol=1e-12)
        report = energy_report(snn, image, steps=t)
        n = report["examples"]
        assert len(result.per_layer) == len(report["layers"]) == 4
        for (updates, _), row in zip(result.per_layer, report["layers"]):
            assert updates == pytest.approx(row["sops"] * n, rel=1e-12, abs=1e-9)
        assert result.macs == pytest.approx(report["totals"]["macs"] * n, rel=1e-12)
        # the dense work is the network's own synapses' on the pooled maps, not the folded ones' (p^2 more)
        for (_, dense), row in zip(result.per_layer[1:], report["layers"][1:]):
            assert dense == row["ann_macs"] * t * n
    with pytest.raises(ValueError, match="laid out for"):
        events.run(torch.rand(2, 1, side + 4, side + 4, dtype=torch.float64))  # another image size needs another layout
    with pytest.raises(ValueError, match="v_init = 0.5: convert with v_init=0"):
        E.EventNetwork.from_model(convert(ann, image, norm="max", v_init=0.5))
    import numpy as np

    assert torch.equal(events.run(image, steps=np.int64(5)).logits, events.run(image, steps=5).logits)  # as snn(x, steps) takes it
    before = events.run(image).logits
    with torch.no_grad():
        for p in snn.parameters():
            p.mul_(0.5)  # the event network is a copy: later changes to snn do not reach it
    assert torch.equal(events.run(image).logits, before)


def test_converted_networks_event_simulation_refuses_clearly():
    from overlooked.spiking.convert import convert

    torch.manual_seed(0)
    calib = torch.rand(16, 1, 8, 8, dtype=torch.float64)
    strided = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2, stride=(2, 1)), nn.Conv2d(4, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(40, 3)).double()
    with pytest.raises(ValueError, match="square kernel equal to its stride"):
        E.EventNetwork.from_model(convert(strided, calib, norm="max"))
    linear = nn.Sequential(nn.Flatten(), nn.Linear(64, 3)).double()
    with pytest.raises(ValueError, match="readout alone"):
        E.EventNetwork.from_model(convert(linear, calib, norm="max"))
    pooled = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(4 * 4 * 4, 3)).double()
    events = E.EventNetwork.from_model(convert(pooled, calib, norm="max"))
    with pytest.raises(ValueError, match="reads 64 inputs, but 4 x 6 x 6 pooled positions arrive"):
        events.run(torch.rand(2, 1, 12, 12, dtype=torch.float64))
    assert events.run(calib[:2]).logits.shape == (2, 3)  # a refused size leaves the layout free for the right one
