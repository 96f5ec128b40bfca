"""NIR export then import gives the same outputs; what NIR cannot express is refused; peers read our files."""

from __future__ import annotations

import nir
import numpy as np
import pytest
import torch
from torch import nn

from overlooked.spiking import modules as M
from overlooked.spiking.convert import convert
from overlooked.spiking.models import spiking_cnn, spiking_mlp
from overlooked.spiking.nir import NIRExportError, export_layers, export_nir_graph, from_nir, strip_metadata

DT = 1e-3


def _roundtrip(graph: nir.NIRGraph, tmp_path) -> nir.NIRGraph:
    """Write without any extra metadata, read back: the importer sees standard fields only."""
    path = tmp_path / "g.nir"
    nir.write(str(path), strip_metadata(graph))
    back = nir.read(str(path))
    assert back.metadata == {} and all(not n.metadata for n in back.nodes.values())
    return back


def _trained_bn(net: nn.Module, x: torch.Tensor) -> nn.Module:
    net.train()
    with torch.no_grad():
        for _ in range(3):  # non-trivial running statistics for the BN folding
            net(x)
        for block in net.blocks:  # strong, shifted currents, so that every layer spikes
            block.norm.weight.mul_(3)
            block.norm.bias.add_(1.0)
    return net.eval()


@pytest.mark.parametrize("build", [lambda: spiking_cnn(channels=(3, 4), hidden=12, steps=5, neuron="plif"), lambda: spiking_mlp(hidden=(20, 10), steps=5, neuron="lif", tau_mem=5e-3)])
def test_spikingnet_roundtrip_same_outputs_and_spikes(build, tmp_path):
    torch.manual_seed(0)
    net = build()
    x = torch.rand(6, 1, 28, 28) * 3
    _trained_bn(net, x)
    with torch.no_grad():
        ref = net(x)
    graph = export_nir_graph(net, input_shape=(1, 28, 28))
    assert graph.metadata["dt"] == DT  # information only
    back = from_nir(_roundtrip(graph, tmp_path), dt=DT)
    with torch.no_grad():
        y, _, trace = back(x.unsqueeze(0).expand(net.steps, *x.shape), record=True)  # direct encoding: same image each step
    assert torch.allclose(y.mean(0), ref["logits"], atol=1e-5)
    spikes = [trace[n].sum() for n in back.order if isinstance(back._layer(n), M._Cell)]
    assert torch.equal(torch.stack(spikes), ref["spike_counts"])
    assert ref["spike_counts"].min() > 0, "a silent layer would make the spike comparison vacuous"


def _reference(layers: list[nn.Module], x: torch.Tensor) -> torch.Tensor:
    """Our modules run directly: stateless layers on every step, neuron sequences over time."""
    z = x
    for layer in layers:
        if isinstance(layer, M._Sequence):
            z, _ = layer(z)
        else:
            y = layer(z.flatten(0, 1))
            z = y.view(z.shape[0], z.shape[1], *y.shape[1:])
    return z


def test_chain_of_every_supported_layer_roundtrips(tmp_path):
    torch.manual_seed(1)
    layers = [
        nn.Conv2d(2, 4, 3, padding=1),
        M.IF(dt=DT, r=800.0, reset="zero"),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(4 * 3 * 3, 10),
        M.CubaLIF(dt=DT, tau_syn=4e-3, tau_mem=6e-3, r=2.0, v_leak=0.1, w_in=0.7),
        nn.Linear(10, 8, bias=False),
        M.RecurrentLIF(8, dt=DT, tau_mem=5e-3, v_reset=-0.2),
        nn.Linear(8, 6),
        M.LIF(dt=DT, tau_mem=3e-3, v_threshold=0.5),
        nn.Linear(6, 3),
    ]
    with torch.no_grad():
        for layer in layers:
            if isinstance(layer, nn.Linear):
                layer.weight.mul_(4)
        layers[6].weight.mul_(4)
        layers[7].cell.recurrent.weight.normal_(0, 1.0)
    x = torch.rand(12, 5, 2, 6, 6) * 2  # [T, B, C, H, W]
    with torch.no_grad():
        ref = _reference(layers, x)
        graph = export_layers(layers, (2, 6, 6), DT)
        assert {type(n).__name__ for n in graph.nodes.values()} >= {"Conv2d", "IF", "AvgPool2d", "Flatten", "Affine", "CubaLIF", "Linear", "LIF"}
        assert ("7_recurrentlif_rec", "7_recurrentlif") in graph.edges  # the recurrence is a graph cycle
        assert list(graph.nodes["output"].output_type["output"]) == [3]
        y, _, trace = from_nir(_roundtrip(graph, tmp_path), dt=DT)(x, record=True)
    assert torch.allclose(y, ref, atol=1e-5)
    for name in ("1_if", "5_cubalif", "7_recurrentlif", "9_lif"):
        assert 0 < trace[name].mean() < 1, f"{name} must spike sometimes for the test to mean anything"


def test_exported_parameters_follow_nir_units():
    # LIF: the same tau, r, v_leak under forward Euler. CubaLIF: our per-step jump w_in = NIR's w_in * dt / tau_syn.
    g = export_layers([nn.Linear(2, 2), M.CubaLIF(dt=DT, tau_syn=5e-3, tau_mem=8e-3, w_in=1.0), nn.Linear(2, 2), M.LIF(dt=DT, tau_mem=7e-3, r=2.0, v_leak=0.5)], (2,), DT)
    cuba, lif = g.nodes["1_cubalif"], g.nodes["3_lif"]
    assert np.allclose(cuba.w_in, 5.0) and np.allclose(cuba.tau_syn, 5e-3) and np.allclose(cuba.tau_mem, 8e-3)
    assert np.allclose(lif.tau, 7e-3) and np.allclose(lif.r, 2.0) and np.allclose(lif.v_leak, 0.5) and lif.tau.shape == (2,)


def test_what_nir_cannot_express_is_refused():
    with pytest.raises(NIRExportError, match="reset by subtraction"):
        export_layers([nn.Linear(2, 2), M.IF(dt=DT, reset="subtract")], (2,), DT)
    with pytest.raises(NIRExportError, match="ALIF"):
        export_layers([nn.Linear(2, 2), M.ALIF(dt=DT)], (2,), DT)
    with pytest.raises(NIRExportError, match="dt"):
        export_layers([nn.Linear(2, 2), M.LIF(dt=DT)], (2,), 2 * DT)
    snn = convert(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)), torch.rand(8, 3))
    with pytest.raises(NIRExportError, match="subtraction"):
        export_nir_graph(snn)
    with pytest.raises(NIRExportError, match="input_shape"):
        export_nir_graph(spiking_mlp(hidden=(4,), steps=2))


def test_cli_export_nir_on_a_tiny_trained_spiking_run(tmp_path):
    from overlooked.cli import main

    cfg = tmp_path / "snn.yaml"
    cfg.write_text(
        "name: snn_tiny\ndata: {name: synthetic, kwargs: {n_train: 64, n_test: 16}}\n"
        "model: {name: spiking_mlp, kwargs: {hidden: [8, 6], steps: 3, neuron: plif}}\nobjective: {name: spiking_cross_entropy}\n"
        "train: {epochs: 1, batch_size: 32, eval_batch_size: 64, progress: false}\n"
    )
    from overlooked.spiking import kernels
    from overlooked.spiking.kernels import _build

    ran = "cpp" if _build.available() else "reference"  # what backend="auto" (the models' default) runs on CPU here
    before = kernels.CALLS["cpp_forward"]
    assert main(["train", str(cfg), "--out", str(tmp_path / "runs")]) == 0
    assert (kernels.CALLS["cpp_forward"] > before) == (ran == "cpp")  # the summary below must name what really ran
    (run,) = (tmp_path / "runs").iterdir()
    import json

    summary = json.loads((run / "summary.json").read_text())
    assert summary["neuron_backends"] == {"blocks.0.neuron": ran, "blocks.1.neuron": ran}  # each spiking layer, by module name
    energy = summary["energy"]  # every spiking run reports it
    assert "compute-only estimate" in energy["label"] and energy["first_examples"] == 16 and energy["layers"][0]["input"] == "real"
    from overlooked import api as _api

    ev = _api.evaluate(run, split="val")  # evaluation of a spiking run reports its energy on that split
    assert ev["energy"]["totals"]["sops"] >= 0 and ev["energy"]["first_examples"] == min(len(_api.load_run(run)[1].val), 2000)
    out = tmp_path / "m.nir"
    assert main(["export-nir", str(run), str(out)]) == 0
    graph = nir.read(str(out))
    assert [type(graph.nodes[n]).__name__ for n in ("input", "0_flatten", "1_linear", "2_plif", "3_linear")] == ["Input", "Flatten", "Affine", "LIF", "Affine"]

    from overlooked import api

    _, splits, model = api.load_run(run)
    x = splits.test.tensors["image"][:8]
    with torch.no_grad():
        y, _ = from_nir(graph, dt=DT)(x.unsqueeze(0).expand(3, *x.shape))
        assert torch.allclose(y.mean(0), model(x)["logits"], atol=1e-5)


@pytest.mark.peers
def test_norse_loads_our_file_and_gives_the_same_spikes(tmp_path):
    norse = pytest.importorskip("norse.torch", reason="norse not installed (scripts/install_peers.sh)")
    torch.manual_seed(2)
    layers = [nn.Linear(6, 10), M.LIF(dt=DT, tau_mem=5e-3, v_leak=0.0), nn.Linear(10, 4), M.LIF(dt=DT, tau_mem=4e-3)]
    with torch.no_grad():
        for layer in layers:
            if isinstance(layer, nn.Linear):
                layer.weight.mul_(4)
                layer.bias.add_(0.8)
        layers[2].bias.add_(0.6)
    x = torch.rand(20, 3, 6) * 2
    with torch.no_grad():
        ref = _reference(layers, x)
        path = tmp_path / "lif.nir"
        nir.write(str(path), strip_metadata(export_layers(layers, (6,), DT)))
        peer = norse.from_nir(str(path), dt=DT)
        state, outs = None, []
        for t in range(x.shape[0]):
            out, state = peer(x[t], state)
            outs.append(out)
    assert 0 < ref.mean() < 1
    assert torch.equal(torch.stack(outs), ref)


@pytest.mark.peers
def test_snntorch_loads_our_file_where_its_fixed_dt_allows(tmp_path):
    """snnTorch 1.0.0's importer hard-codes dt = 1e-4 and needs r = tau / dt (its Leaky adds the input
    unscaled: v <- beta v + I). A model built that way (here dt = 1e-4, r = tau / dt) gives the same spikes."""
    snn_import = pytest.importorskip("snntorch.import_nir", reason="snntorch not installed (scripts/install_peers.sh)")
    dt = 1e-4
    torch.manual_seed(2)
    layers = [nn.Linear(6, 10), M.LIF(dt=dt, tau_mem=5e-4, r=5.0), nn.Linear(10, 4), M.LIF(dt=dt, tau_mem=4e-4, r=4.0)]
    with torch.no_grad():
        for layer in layers:
            if isinstance(layer, nn.Linear):
                layer.weight.mul_(0.8)
                layer.bias.add_(0.16)
        layers[2].bias.add_(0.12)
    x = torch.rand(20, 3, 6) * 2
    with torch.no_grad():
        ref = _reference(layers, x)
        peer = snn_import.import_from_nir(strip_metadata(export_layers(layers, (6,), dt)))
        outs, state = [], None
        for t in range(x.shape[0]):
            out = peer(x[t]) if state is None else peer(x[t], state)
            if isinstance(out, tuple):
                out, state = out
            outs.append(out)
    assert 0 < ref.mean() < 1
    assert torch.equal(torch.stack(outs), ref)
