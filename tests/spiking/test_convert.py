"""ANN-to-SNN conversion: IF with reset by subtraction, normalisation, rates = clipped normalised activations."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from overlooked.spiking.convert import ConversionError, calibration_images, convert, evaluate_curve, normalised_activations


def _small_net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 16),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Linear(16, 3),
    )


def _calibration(n: int = 48) -> torch.Tensor:
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(1))


def _constant_quarter_snn(**kwargs):
    """The one-neuron net of the hand case below, its current set back to 0.25 per step after normalisation."""
    net = nn.Sequential(nn.Linear(1, 1), nn.ReLU(), nn.Linear(1, 1))
    with torch.no_grad():
        net[0].weight.zero_()
        net[0].bias.fill_(0.25)
        net[2].weight.fill_(1.0)
        net[2].bias.zero_()
    snn = convert(net, torch.zeros(4, 1), norm="max", **kwargs)
    with torch.no_grad():
        snn.stages[0].synapse.bias.fill_(0.25)
    return snn


def _spike_steps(snn, steps: int = 17) -> list[int]:
    sim = snn.simulate(torch.zeros(1, 1), steps=steps)
    return torch.nonzero(sim.spikes[0]).flatten().add(1).tolist()  # 1-based steps with a spike


def test_constant_current_spikes_by_subtraction_hand_computed():
    # One IF neuron fed a constant 0.25 (the Linear's bias; weight 0): v = .25, .5, .75, 1.0 (not > 1), 1.25 -> spike,
    # subtract 1 -> .25, ...: spikes at steps 5, 9, 13, 17 (strict threshold, reset by subtraction).
    snn = _constant_quarter_snn()
    assert snn.stages[0].scale == 0.25  # lambda_1 = max activation = 0.25: rescaled to 1 per step, then set back
    sim = snn.simulate(torch.zeros(1, 1), steps=17)
    spikes = torch.tensor([float(s) for s in sim.spikes[0]])
    assert torch.nonzero(spikes).flatten().add(1).tolist() == [5, 9, 13, 17]
    # the readout integrates W s_t (weight 1 x lambda_1 0.25): 4 spikes -> 1.0
    assert sim.readout[-1].item() == pytest.approx(4 * 0.25)


def test_inplace_backend_does_not_spike_when_v_lands_exactly_on_the_threshold():
    """In-place IF path, constant 0.25: v reaches exactly 1.0 at step 4 (no spike, strict >), spikes at 5, 9, 13, 17."""
    snn = _constant_quarter_snn(backend="inplace")
    assert _spike_steps(snn) == [5, 9, 13, 17] and snn.fast_steps == 17


@pytest.mark.parametrize("backend", ["reference", "inplace"])
def test_v_init_shifts_the_hand_computed_spike_times(backend):
    """v_init 0.5, constant 0.25: v = 0.75, 1.0 (no spike), 1.25 -> spike at step 3, then every 4 steps: 3, 7, 11, 15."""
    snn = _constant_quarter_snn(v_init=0.5, backend=backend)
    assert snn.v_init == 0.5
    assert _spike_steps(snn) == [3, 7, 11, 15]


@pytest.mark.parametrize("norm", ["max", "p99.9"])
def test_a_silent_layer_keeps_scale_one_and_its_weights_unchanged(norm):
    """A hidden layer whose ReLU output is all zero on the calibration set: lambda = 1, every weight finite and as given."""
    net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 2))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[-1.0, 0.5], [0.25, -2.0], [-0.5, -0.5]]))
        net[0].bias.fill_(-5.0)  # inputs in [0, 1): every pre-activation is below -2.5
        net[2].weight.copy_(torch.tensor([[1.0, -2.0, 3.0], [0.5, 0.25, -1.0]]))
        net[2].bias.copy_(torch.tensor([0.1, -0.2]))
    calib = torch.rand(16, 2, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert float(torch.relu(net[0](calib)).max()) == 0.0
    snn = convert(net, calib, norm=norm)
    assert [s.scale for s in snn.stages] == [1.0, 1.0]
    for stage, layer in zip(snn.stages, (net[0], net[2])):
        assert torch.equal(stage.synapse.weight, layer.weight) and torch.equal(stage.synapse.bias, layer.bias)
    out = snn(calib, steps=4)["logits"]
    assert torch.isfinite(out).all() and torch.allclose(out, net[2].bias.expand(16, 2))  # no spikes: the readout is its bias


def test_conversion_never_mutates_the_input_network():
    net = _small_net()
    before = copy.deepcopy(net.state_dict())
    net.train()
    snn = convert(net, _calibration(), norm="p99.9")
    assert net.training, "the caller's train/eval mode must be left alone"
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k
    ptrs = {p.data_ptr() for p in net.parameters()}
    assert not ptrs & {p.data_ptr() for p in snn.parameters()}


@pytest.mark.parametrize("norm", ["max", "p99.9"])
def test_rates_at_256_steps_match_normalised_clipped_activations(norm):
    net = _small_net().eval()
    calib = _calibration()
    snn = convert(net, calib, norm=norm)
    sim = snn.simulate(calib, steps=256)
    if norm == "max":  # independent reference: the original ANN's ReLU outputs / lambda_l (nothing clips)
        acts, h = [], calib
        for layer in net:
            h = layer(h)
            if isinstance(layer, nn.ReLU):
                acts.append(h.detach())
        scales = [s.scale for s in snn.stages if s.spiking]
        reference = [torch.clamp(a / s, 0, 1) for a, s in zip(acts, scales)]
        assert max(float(r.max()) for r in reference) == pytest.approx(1.0)
    else:  # activations above the percentile saturate at one spike per step: the clipped chain is the target
        reference = normalised_activations(snn, calib)
        assert any(bool((r == 1).any()) for r in reference), "p99.9 should clip some activations"
    for rate, ref in zip(sim.rates, reference):
        assert rate.shape == ref.shape
        assert float((rate - ref).abs().max()) <= 0.02


def test_p999_scales_are_percentiles_of_the_original_anns_positive_relu_outputs():
    """Rueckauer 2017 §2.2.2: lambda_l is the 99.9th percentile of layer l's *positive* ReLU outputs (silent
    neurons left out), measured on the original ANN over all calibration images, units and positions."""
    net = _small_net().eval()
    calib = _calibration()
    snn = convert(net, calib, norm="p99.9")
    with torch.no_grad():  # the original network's ReLU outputs, read off its own layers
        relu1 = net[1](net[0](calib))  # [N, 4, 8, 8]
        relu2 = net[5](net[4](net[3](net[2](relu1))))  # [N, 16]
    expected = [float(np.percentile(a[a > 0].double().numpy(), 99.9)) for a in (relu1, relu2)]
    scales = [s.scale for s in snn.stages if s.spiking]
    assert scales == pytest.approx(expected, rel=1e-6)
    assert snn.stages[-1].scale == 1.0  # the readout is not normalised
    for a, got in zip((relu1, relu2), scales):  # the statistic is discriminating: not the max, not counting zeros
        assert got < float(a.max()) * 0.999
        assert got != pytest.approx(float(np.percentile(a.double().numpy(), 99.9)), rel=1e-3)
    # Reference rates from the ORIGINAL weights: the SNN computes the ANN with every ReLU output clipped at
    # lambda_l (a rate cannot exceed one spike per step), so layer l sees the clipped layer l-1; the rate is
    # min(a_l, lambda_l) / lambda_l = clamp(a_l / lambda_l, 0, 1) of that clipped chain.
    with torch.no_grad():
        h1 = torch.clamp(net[1](net[0](calib)), max=scales[0])
        h2 = torch.clamp(net[5](net[4](net[3](net[2](h1)))), max=scales[1])
        logits = net[7](net[6](h2))  # the readout's time-averaged input: the clipped chain's logits
    reference = [h1 / scales[0], h2 / scales[1]]
    assert all(bool((r == 1).any()) for r in reference), "p99.9 should clip some activations in every layer"
    sim = snn.simulate(calib, steps=256)
    for rate, ref in zip(sim.rates, reference):
        assert rate.shape == ref.shape
        assert float((rate - ref).abs().max()) <= 0.02
    assert float((sim.readout[-1] / 256 - logits).abs().max()) < 0.05


def _curve_predictions(snn, x: torch.Tensor, steps: int, classes: int) -> torch.Tensor:
    """Each image's predicted class after every step ``[T, N]``, read from :func:`evaluate_curve` alone: run
    one image per batch with every image labelled ``k``; the progress callback's running count of correct
    answers grows, step by step, exactly where that image's prediction is ``k``."""
    pred = torch.full((steps, len(x)), classes - 1, dtype=torch.long)  # the last class: none of the others
    for k in range(classes - 1):
        seen = [torch.zeros(steps, dtype=torch.long)]
        evaluate_curve(snn, x, torch.full((len(x),), k), steps, batch_size=1, progress=lambda _n, correct, seen=seen: seen.append(correct.clone()))
        hit = torch.stack(seen).diff(dim=0).T == 1  # [T, N]: image i counted correct at step t
        pred[hit] = k
    return pred


def test_readout_approaches_ann_logits_and_curve_is_one_pass():
    """The curve after t steps is what a separate t-step simulation predicts, image by image (not only the
    same accuracy, which different predictions can share), and the one pass's readout / t is that run's
    logits. ``_small_net`` predicts class 0 for every image at every step (accuracy 1 throughout), so the
    per-image check also runs on a copy whose readout is centred on the calibration mean: its predictions
    differ between images and change over the steps."""
    net = _small_net().eval()
    calib = _calibration()
    snn = convert(net, calib, norm="max")
    x = calib[:16]
    out = snn(x, steps=256)
    assert float((out["logits"] - net(x).detach()).abs().max()) < 0.05
    labels = net(x).argmax(-1)
    res = evaluate_curve(snn, x, labels, 24, batch_size=5, snapshots=(8,))
    for t in (1, 8, 24):  # the curve after t steps equals a separate t-step simulation
        alone = snn(x, steps=t)["logits"].argmax(-1)
        assert res["accuracy"][t - 1] == pytest.approx(float((alone == labels).double().mean()))
    assert set(res["position_counts"]) == {8, 24}
    centred = copy.deepcopy(net)
    with torch.no_grad():
        centred[7].weight.mul_(4)
        centred[7].bias.copy_(-centred[7].weight @ centred[:7](calib).mean(0))  # logits vary from image to image
    centred_snn = convert(centred, calib, norm="max")
    curve = _curve_predictions(centred_snn, x, 24, classes=3)
    for model in (snn, centred_snn):
        one_pass = model.simulate(x, steps=24).readout  # [T, N, C], accumulated
        for t in range(1, 25):
            alone = model(x, steps=t)["logits"]
            torch.testing.assert_close(one_pass[t - 1] / t, alone, rtol=1e-6, atol=1e-6)  # the logits of a t-step run
            if model is centred_snn:
                assert torch.equal(curve[t - 1], alone.argmax(-1)), t
    assert len(set(curve[-1].tolist())) > 1 and bool((curve != curve[-1]).any()), "predictions must vary for the check to mean anything"


def test_unconvertible_layers_are_refused_clearly():
    with pytest.raises(ConversionError, match="average pooling"):
        convert(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(18, 2)), torch.rand(4, 1, 8, 8))
    with pytest.raises(ConversionError, match="fold batch norm"):
        convert(nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2)), torch.rand(4, 3))
    with pytest.raises(ConversionError, match="norm must be"):
        convert(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)), torch.rand(4, 3), norm="p99")  # type: ignore[arg-type]


def test_small_cnn_structure_converts():
    from overlooked.baselines.cnn import small_cnn

    ann = small_cnn(channels=(2, 3), hidden=8).eval()
    snn = convert(ann, torch.rand(6, 1, 28, 28), norm="p99.9")
    assert [s.spiking for s in snn.stages] == [True, True, True, False]
    assert [type(m).__name__ for m in snn.stages[2].pre] == ["AvgPool2d", "Flatten"]
    assert snn(torch.rand(2, 1, 28, 28), steps=4)["logits"].shape == (2, 10)


def test_calibration_subset_is_seeded():
    images = torch.arange(100.0)
    a, b = calibration_images(images, 10, seed=3), calibration_images(images, 10, seed=3)
    assert torch.equal(a, b) and len(set(a.tolist())) == 10


def test_inplace_backend_is_bit_identical_to_the_reference_and_runs():
    net = _small_net().eval()
    calib = _calibration()
    ref = convert(net, calib, norm="p99.9")
    fast = convert(net, calib, norm="p99.9", backend="inplace")
    a, b = ref.simulate(calib, steps=64), fast.simulate(calib, steps=64)
    assert fast.fast_steps == 64 * 2 and ref.fast_steps == 0  # the fast path really ran (2 spiking stages)
    assert torch.equal(a.readout, b.readout)
    assert all(torch.equal(x, y) for x, y in zip(a.rates, b.rates))
    assert all(torch.equal(x, y) for x, y in zip(a.spikes, b.spikes))


def test_report_renders_conversion_and_energy_rows(tmp_path):
    from pathlib import Path

    from overlooked.bench.report import Run, conversion_curves, render_conversion, render_energy
    from overlooked.spiking.synops import LayerOps, summarise

    energy = summarise([LayerOps("0", "real", 100.0, 0.0, 100, 10, 40.0), LayerOps("1 (readout)", "spikes", 0.0, 120.0, 30, 0, 0.0)], examples=2, steps=4)
    summary = {
        "kind": "ann_to_snn_conversion", "source_run": "runs/cnn-x", "norm": "max", "calibration": 1000, "test_examples": 2,
        "ann_test_accuracy": 0.99, "snn_test_accuracy": {"32": 0.95, "64": 0.985, "256": 0.99}, "accuracy_curve": [0.5, 0.99],
        "energy": {"32": energy, "64": energy}, "wall_time_s": 60.0,
    }
    run = Run(Path("convert-x"), {"name": "convert_cnn_mnist"}, {"cpu": "cpu", "torch_threads": 1, "torch": "2", "date": "2026-01-01"}, summary)
    refs = {"convert_cnn_mnist": {"label": "L", "source": "S", "accuracy": 98.44}, "energy_45nm": {"mac_pj": 4.6, "ac_pj": 0.9, "source": "S"}}
    text = "\n".join(render_conversion([run], refs) + render_energy([run], refs))
    assert "| 99.00 | 95.00 | 98.50 | 99.00 | 0.50 |" in text and "98.44%" in text
    # per example: MACs 100 / 2 = 50, SOPs 60, E_SNN = 4.6 * 50 + 0.9 * 60 = 284 pJ; ANN 4.6 * 130 = 598 pJ; rate 40 / (2 * 4 * 10)
    assert "| 64 | 0.500 | 60 | 50 | 130 | 0.00 | 0.00 | 0.47 |" in text
    assert conversion_curves([run]) == {"cnn-x": ({"SNN, max norm": [0.5, 0.99]}, 0.99)}


def test_convert_names_calibration_of_another_dtype():
    """A float64 network with float32 calibration images was a raw 'Input type (float) and bias type (double)'."""
    from torch import nn

    ann = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)).double()
    with pytest.raises(ConversionError, match=r"calibration images are float32 but Sequential's weights float64; cast one to the other"):
        convert(ann, torch.rand(10, 1, 2, 2))


def test_accuracy_curve_spike_counts_add_up_over_every_batch():
    """7 images in batches of 3 (3 + 3 + 1): every image drives the same neuron with 0.25 per step, which
    (v > 1 needed, reset by subtraction) spikes at steps 5, 9, 13 of 14; so the per-step spike count over the
    7 images is 7 at those steps and 0 elsewhere, and the position count after 14 steps is 7 x 3 = 21.
    Keeping only the last batch would give 1 and 3."""
    snn = _constant_quarter_snn()
    x, labels = torch.zeros(7, 1), torch.zeros(7, dtype=torch.long)
    res = evaluate_curve(snn, x, labels, 14, batch_size=3)
    want = torch.zeros(14)
    want[[4, 8, 12]] = 7.0  # 0-based steps 4, 8, 12 = steps 5, 9, 13
    assert torch.equal(res["spikes_per_step"][0], want)
    assert res["position_counts"][14][0].tolist() == [21.0]
    whole = snn.simulate(x, steps=14)  # the same images in one batch: the reference
    assert torch.equal(res["spikes_per_step"][0], whole.spikes[0])
