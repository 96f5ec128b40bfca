"""NIR export then import gives the same outputs; what NIR cannot express is refused; peers read our files."""

from __future__ import annotations

import copy
import json

import nir
import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from overlooked.spiking import modules as M
from overlooked.spiking.convert import convert
from overlooked.spiking.models import spiking_cnn, spiking_mlp
from overlooked.spiking.nir import (
    NIRDtWarning,
    NIRExportError,
    NIRImportError,
    export_layers,
    export_nir_graph,
    from_nir,
    node_module,
    read_nir,
    retime,
    strip_metadata,
)

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
        layers[7].cell.recurrent.weight.normal_(0, 8.0)  # strong enough that the recurrence changes the output
    x = torch.rand(12, 5, 2, 6, 6) * 2  # [T, B, C, H, W]
    with torch.no_grad():
        ref = _reference(layers, x)
        without = copy.deepcopy(layers)
        without[7].cell.recurrent.weight.zero_()
        assert (_reference(without, x) - ref).abs().max() > 0.1, "the recurrence must matter for its round trip to be checked"
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
    net = spiking_mlp(hidden=(4,), steps=2)
    with pytest.raises(NIRExportError, match=r"input_shape=\(1, 32, 32\) but the model was built for input_shape=\(1, 28, 28\)"):
        export_nir_graph(net, input_shape=(1, 32, 32))
    assert list(export_nir_graph(net.eval()).nodes["input"].input_type["input"]) == [1, 28, 28]  # the model's own shape
    del net.input_shape  # a SpikingNet-like model that does not know its input
    with pytest.raises(NIRExportError, match="input_shape"):
        export_nir_graph(net)


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
    assert graph.metadata["steps"] == 3 and graph.metadata["input"].startswith("direct:")  # T and the input, in the file

    from overlooked import api

    _, splits, model = api.load_run(run)
    x = splits.test.tensors["image"][:8]
    with torch.no_grad():
        y, _ = from_nir(graph, dt=DT)(x.unsqueeze(0).expand(3, *x.shape))
        assert torch.allclose(y.mean(0), model(x)["logits"], atol=1e-5)
    # --discretisation exact: the same network for an exact-decay reader (smaller taus), which import maps back
    assert main(["export-nir", str(run), str(tmp_path / "exact.nir"), "--discretisation", "exact"]) == 0
    exact = nir.read(str(tmp_path / "exact.nir"))
    assert exact.metadata["discretisation"] == "exact decay (zero-order hold)" and exact.metadata["steps"] == 3
    assert (np.asarray(exact.nodes["2_plif"].tau) < np.asarray(graph.nodes["2_plif"].tau)).all()
    with torch.no_grad():
        y_exact, _ = from_nir(exact, dt=DT)(x.unsqueeze(0).expand(3, *x.shape))
        assert torch.allclose(y_exact, y, atol=1e-6)
    # without its best checkpoint, export-nir names the one the folder has (it said "pass a run folder")
    from overlooked.errors import CheckpointError

    (run / "checkpoints" / "best.safetensors").unlink()
    with pytest.raises(CheckpointError, match="has no best checkpoint .*it has last: pass --checkpoint last"):
        api.export_nir(run, tmp_path / "n.nir")
    assert api.export_nir(run, tmp_path / "n.nir", checkpoint="last").is_file()


@pytest.mark.data
def test_export_nir_never_writes_over_a_folder_or_the_runs_own_files_nor_a_non_finite_graph(tmp_path, data_dir):
    """An adversarial review's: --force onto a folder was h5py's IsADirectoryError; onto RUN/config.yaml it
    overwrote the run's config with HDF5 (the run destroyed); a damaged checkpoint (a negative BatchNorm
    variance, a PLIF w of -1000: tau = inf) was exported as a graph of NaN / inf with "wrote"; a parent that is
    a file named --out, which export-nir does not have."""
    from safetensors.torch import save_file

    from overlooked import api
    from overlooked.errors import CheckpointError, OverlookedError
    from overlooked.train.checkpoint import read_checkpoint

    cfg = api.load("snn_mlp_mnist", ["train.max_steps=2", "train.progress=false"])
    run, _ = api.train(cfg, data_dir=str(data_dir), out=tmp_path / "runs")
    (tmp_path / "folder").mkdir()
    with pytest.raises(OverlookedError, match=r"folder is a folder; name a file for the graph, e\.g\. .*folder/model\.nir"):
        api.export_nir(run, tmp_path / "folder", force=True)
    before = (run / "config.yaml").read_bytes()
    with pytest.raises(OverlookedError, match=r"config\.yaml is a file of the run .*--force never overwrites a run's own files"):
        api.export_nir(run, run / "config.yaml", force=True)
    assert (run / "config.yaml").read_bytes() == before
    (tmp_path / "a_file").write_text("")
    with pytest.raises(OverlookedError, match=r"a_file is a file, not a folder; give the output path a folder"):
        api.export_nir(run, tmp_path / "a_file" / "m.nir")
    assert api.export_nir(run, run / "model.nir").is_file() and not list(run.glob(".*.partial")) and not list(run.glob(".*.tmp"))  # inside the run, a .nir is fine
    ckpt = run / "checkpoints" / "best.safetensors"
    tensors, doc = read_checkpoint(ckpt)
    import json

    for key, value, says in (("model.blocks.0.norm.running_var", -1.0, r"negative variance \(blocks\.0\.norm\.running_var\)"),
                             ("model.blocks.0.neuron.cell.w", -1000.0, r"holds NaN or inf in node .*nothing was written")):
        edited = {**tensors, key: torch.full_like(tensors[key], value)}
        save_file(edited, str(ckpt), metadata={"overlooked": json.dumps(doc)})
        with pytest.raises((CheckpointError, OverlookedError), match=says):
            api.export_nir(run, tmp_path / "bad.nir")
        assert not (tmp_path / "bad.nir").exists()


def test_metadata_carries_steps_and_input_through_a_file(tmp_path):
    """T and the input encoding travel in the graph's metadata beside dt and the readout (nir.write / nir.read)."""
    torch.manual_seed(0)
    net = spiking_mlp(hidden=(6,), steps=5).eval()
    path = tmp_path / "m.nir"
    nir.write(str(path), export_nir_graph(net))
    meta = nir.read(str(path)).metadata
    assert meta["steps"] == 5 and meta["dt"] == DT
    assert meta["input"] == "direct: one example [1, 28, 28] is the input current of the first layer at each of the T=5 steps (the same values every step)"
    assert meta["readout"] == "mean over the T=5 steps of the output (the logits)"
    nir.write(str(path), export_nir_graph(net, encoder="rate", encoder_kwargs={"steps": 5, "max_rate": 0.8}))
    meta = nir.read(str(path)).metadata
    assert meta["input"] == "encoder 'rate'(max_rate=0.8, steps=5): its spikes, one [1, 28, 28] frame per step for T=5 steps, are the input at each step"


def _lif_graph(tau: float = 5e-3, tau_syn: float | None = None, keep_dt: bool = False) -> nir.NIRGraph:
    """Linear -> LIF (or CubaLIF with ``tau_syn``); its metadata keeps the exported dt only with ``keep_dt``."""
    layers = [nn.Linear(3, 2), M.LIF(dt=DT, tau_mem=tau) if tau_syn is None else M.CubaLIF(dt=DT, tau_mem=tau, tau_syn=tau_syn)]
    graph = export_layers(layers, (3,), DT)
    assert graph.metadata["dt"] == DT
    return graph if keep_dt else strip_metadata(graph)


@pytest.mark.parametrize("dt", [0, 0.0, -1e-3, float("nan"), float("inf"), "1e-3", None, True])
def test_from_nir_refuses_a_dt_that_is_not_a_positive_number(dt):
    with pytest.raises(NIRImportError, match=r"dt must be a positive, finite number of seconds.*got"):
        from_nir(_lif_graph(), dt)
    with pytest.raises(ValueError):  # NIRImportError is a ValueError as well
        from_nir(_lif_graph(), dt)


def test_from_nir_warns_when_dt_differs_from_the_exported_one():
    import warnings

    with pytest.warns(NIRDtWarning, match=r"exported at dt = 0.001 s, and it is being run at dt = 0.0005 s.*pass dt=0.001"):
        from_nir(_lif_graph(keep_dt=True), dt=DT / 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from_nir(_lif_graph(keep_dt=True), dt=DT)  # the exported dt: silent
        from_nir(_lif_graph(keep_dt=True), dt=np.float32(DT))  # the same dt rounded to float32: silent too
        from_nir(_lif_graph(), dt=DT / 2)  # no dt in the metadata (a foreign or stripped graph): nothing to compare


@pytest.mark.parametrize(
    "tau, tau_syn, dt, node, field",
    [
        (3e-3, None, 4e-3, "1_lif", "tau"),  # dt / tau = 1.33: the leak overshoots
        (3e-3, None, 7e-3, "1_lif", "tau"),  # dt / tau = 2.33: forward Euler diverges
        (8e-3, 2e-3, 3e-3, "1_cubalif", "tau_syn"),
        (2e-3, 8e-3, 3e-3, "1_cubalif", "tau_mem"),
    ],
)
def test_from_nir_refuses_a_dt_too_large_for_forward_euler(tau, tau_syn, dt, node, field):
    graph = _lif_graph(tau, tau_syn)
    small = min(tau, tau_syn or tau)
    with pytest.raises(NIRImportError, match=rf"'{node}' .* has {field} = {small:g} s, so dt / {field} = .* at dt = {dt:g} s.*dt <= {small:g} s"):
        from_nir(graph, dt)
    from_nir(graph, small)  # dt = tau: the memoryless limit, still allowed


def test_from_nir_refuses_a_non_positive_time_constant():
    graph = _lif_graph()
    graph.nodes["1_lif"].tau = np.array([5e-3, 0.0], dtype=np.float32)
    with pytest.raises(NIRImportError, match=r"'1_lif' \(LIF\) has tau = 0.0: a time constant must be positive"):
        from_nir(graph, DT)


def test_files_that_are_not_nir_fail_clearly(tmp_path):
    import h5py

    text = tmp_path / "notes.nir"
    text.write_text("not a graph")
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = np.ones(3)
    for path in (text, other):
        with pytest.raises(NIRImportError, match=rf"{path.name} is not a NIR graph that nir .* can read .*nir.write.*overlooked export-nir"):
            from_nir(path, DT)
        with pytest.raises(NIRImportError, match="is not a NIR graph"):
            read_nir(str(path))
    with pytest.raises(NIRImportError, match=r"missing.nir: no such NIR file.*export-nir"):
        from_nir(str(tmp_path / "missing.nir"), DT)


def _lif_node(n: int) -> nir.LIF:
    return nir.LIF(tau=np.full(n, 5e-3), r=np.ones(n), v_leak=np.zeros(n), v_threshold=np.ones(n), v_reset=np.zeros(n))


def _graph_with(extra_edges: list[tuple[str, str]], type_check: bool = False) -> nir.NIRGraph:
    nodes = {"input": nir.Input(input_type=np.array([3])), "a": nir.Affine(weight=np.ones((2, 3), np.float32), bias=np.zeros(2, np.float32)), "x": _lif_node(2), "output": nir.Output(output_type=np.array([2]))}
    return nir.NIRGraph(nodes=nodes, edges=[("input", "a"), ("a", "output"), *extra_edges], type_check=type_check)


def test_a_disconnected_or_unused_node_is_refused_by_name():
    with pytest.raises(NIRImportError, match=r"not reachable from the Input 'input'.*\['x'\]"):
        from_nir(_graph_with([("x", "output")]), DT)  # x gets no input (was: "stack expects a non-empty TensorList")
    with pytest.raises(NIRImportError, match=r"not reachable from the Input 'input'.*\['x'\]"):
        from_nir(_graph_with([]), DT)  # x has no edge at all
    with pytest.raises(NIRImportError, match=r"not leading to the Output 'output' \(their output is unused\): \['x'\]"):
        from_nir(_graph_with([("a", "x")]), DT)
    with pytest.raises(NIRImportError, match=r"nodes it does not have: \['ghost'\]"):
        from_nir(_graph_with([("ghost", "output")]), DT)
    # nir's own type check gives a lone node its own Input and Output: the message says which node that is
    with pytest.raises(NIRImportError, match=r"exactly one Input and one Output.*look disconnected: \['x'\]"):
        from_nir(_graph_with([], type_check=True), DT)
    assert from_nir(_graph_with([("a", "x"), ("x", "output")]), DT)(torch.rand(2, 1, 3))[0].shape == (2, 1, 2)


def _affine_graph(weight: np.ndarray, bias: np.ndarray, extra_edges: list[tuple[str, str]] = ()) -> nir.NIRGraph:
    nodes = {"input": nir.Input(input_type=np.array([weight.shape[-1]])), "fc": nir.Affine(weight=weight, bias=bias), "output": nir.Output(output_type=np.array([weight.shape[0]]))}
    return nir.NIRGraph(nodes=nodes, edges=[("input", "fc"), ("fc", "output"), *extra_edges], type_check=False)


def test_a_bias_that_does_not_fit_the_weight_is_refused_on_import_by_name(tmp_path):
    """nir.read accepts such a file; from_nir refused it with torch's "The size of tensor a (3) must match"."""
    w = np.ones((4, 3), np.float32)
    bad = _affine_graph(w, np.zeros(3, np.float32))
    path = tmp_path / "bad_bias.nir"
    nir.write(str(path), bad)
    message = r"NIR node 'fc' \(Affine\) has a bias of shape \[3\] \(3 values\), but its weight \[4, 3\] has 4 outputs.*shape \[4\]"
    for graph in (bad, nir.read(str(path)), path):
        with pytest.raises(NIRImportError, match=message):
            from_nir(graph, DT)
    with pytest.raises(NIRImportError, match=r"'fc' \(Affine\) has a bias of shape \[2, 2\]"):
        from_nir(_affine_graph(w, np.zeros((2, 2), np.float32)), DT)  # 4 values, but not one per output
    with pytest.raises(NIRImportError, match=r"'fc' \(Affine\) has a weight of shape \[2, 4, 3\]; from_nir runs Affine weights of shape \[out, in\]"):
        from_nir(_affine_graph(np.ones((2, 4, 3), np.float32), np.zeros(4, np.float32)), DT)
    conv = nir.NIRGraph(
        nodes={"input": nir.Input(input_type=np.array([1, 4, 4])), "conv": nir.Conv2d(input_shape=(4, 4), weight=np.ones((2, 1, 3, 3), np.float32), stride=1, padding=1, dilation=1, groups=1, bias=np.zeros(5, np.float32)), "output": nir.Output(output_type=np.array([2, 4, 4]))},
        edges=[("input", "conv"), ("conv", "output")],
        type_check=False,
    )
    with pytest.raises(NIRImportError, match=r"NIR node 'conv' \(Conv2d\) has a bias of shape \[5\].*weight \[2, 1, 3, 3\] has 2 outputs"):
        from_nir(conv, DT)
    # a bias of one value per output, or one value for all of them (what broadcasting always gave), still runs
    for bias, want in ((np.arange(4, dtype=np.float32), 3 + torch.arange(4.0)), (np.full(1, 0.5, np.float32), torch.full((4,), 3.5))):
        y = from_nir(_affine_graph(w, bias), DT)(torch.ones(2, 1, 3))[0]
        assert y.shape == (2, 1, 4) and torch.allclose(y, want.expand(2, 1, 4))


def test_a_neuron_node_whose_size_disagrees_is_refused_on_import_by_name():
    """Built with type_check=False, such a graph imported and then failed at its first step with torch's
    "The size of tensor a (3) must match the size of tensor b (4)"."""
    def graph(lif: nir.LIF) -> nir.NIRGraph:
        nodes = {"input": nir.Input(input_type=np.array([5])), "fc": nir.Affine(weight=np.ones((4, 5), np.float32), bias=np.zeros(4, np.float32)), "lif": lif, "output": nir.Output(output_type=np.array([4]))}
        return nir.NIRGraph(nodes=nodes, edges=[("input", "fc"), ("fc", "lif"), ("lif", "output")], type_check=False)

    def lif(n: int) -> nir.LIF:  # nir itself keeps every parameter of a node one shape
        return nir.LIF(tau=np.full(n, 5e-3, np.float32), r=np.ones(n, np.float32), v_leak=np.zeros(n, np.float32), v_threshold=np.ones(n, np.float32), v_reset=np.zeros(n, np.float32))

    with pytest.raises(NIRImportError, match=r"'lif' \(LIF\) has 3 neurons .* but node 'fc' \(Affine, weight \[4, 5\]\) feeds it 4 outputs"):
        from_nir(graph(lif(3)), DT)
    for n in (4, 1):  # one value per neuron, or one for all, still runs
        assert from_nir(graph(lif(n)), DT)(torch.ones(3, 2, 5))[0].shape == (3, 2, 4)
    edited = lif(4)
    edited.v_threshold = np.ones(5, np.float32)  # a node changed after nir built it: 4 values, v_threshold 5
    with pytest.raises(NIRImportError, match=r"'lif' \(LIF\) has parameters of different sizes \(tau 4, r 4, v_leak 4, v_threshold 5, v_reset 4\)"):
        from_nir(graph(edited), DT)
    edited = lif(1)
    edited.v_threshold = np.ones(5, np.float32)  # one value for all beside 5: sized by the 5, which the Affine does not feed
    with pytest.raises(NIRImportError, match=r"'lif' \(LIF\) has 5 neurons .* feeds it 4 outputs"):
        from_nir(graph(edited), DT)


def test_a_pool_with_a_divisor_override_exports_as_what_it_computes_or_is_refused(tmp_path):
    """AvgPool2d(divisor_override=1) was written as nir.AvgPool2d, which divides by the window: a different
    network (639 spikes against 295 in the audit's case). Now divisor 1 is a SumPool2d, the window size an
    AvgPool2d (padding counted, as that divisor means), any other divisor refused."""
    torch.manual_seed(0)
    x = torch.rand(6, 2, 1, 8, 8)
    for pool, node, scale in ((nn.AvgPool2d(2, divisor_override=1), "SumPool2d", 1.0), (nn.AvgPool2d(3, 1, 1, count_include_pad=False, divisor_override=9), "AvgPool2d", 3.0)):
        layers = [nn.Conv2d(1, 2, 3, padding=1, bias=False), pool, M.LIF(dt=DT, tau_mem=2e-3)]
        with torch.no_grad():
            layers[0].weight.abs_()
            graph = export_layers(layers, (1, 8, 8), DT)
            assert type(graph.nodes["1_avgpool2d"]).__name__ == node
            ref = _reference(layers, x * scale)
            y = from_nir(_roundtrip(graph, tmp_path), dt=DT)(x * scale)[0]
        assert 0 < ref.mean() < 1 and torch.equal(y, ref)
    with pytest.raises(NIRExportError, match=r"AvgPool2d\(divisor_override=3\) divides each window's sum by 3, which no NIR node expresses"):
        export_layers([nn.Conv2d(1, 2, 3), nn.AvgPool2d(2, divisor_override=3), M.LIF(dt=DT)], (1, 8, 8), DT)
    with pytest.raises(NIRExportError, match="padding and count_include_pad=False"):
        export_layers([nn.Conv2d(1, 2, 3), nn.AvgPool2d(3, 1, 1, count_include_pad=False), M.LIF(dt=DT)], (1, 8, 8), DT)


def test_an_input_shape_the_first_layer_cannot_take_is_named_on_export():
    with pytest.raises(NIRExportError, match=r"layer 0 \(Linear\(in_features=4.*cannot take one example of shape \[5\].*Fix: pass the input_shape"):
        export_layers([nn.Linear(4, 3), M.LIF(dt=DT)], (5,), DT)
    # the shape probe runs in the layers' own dtype: a float64 chain exports (it was refused as a shape error)
    graph = export_layers([nn.Linear(4, 3).double(), M.LIF(dt=DT), nn.Linear(3, 2).double()], (4,), DT)
    assert list(graph.nodes["output"].output_type["output"]) == [2]


def test_an_edge_into_the_input_is_refused_by_name():
    """It was dropped without a word: the Input passes the external signal on and ignored its predecessors."""
    graph = _affine_graph(np.ones((3, 3), np.float32), np.zeros(3, np.float32), [("fc", "input")])
    with pytest.raises(NIRImportError, match=r"edges into its Input node 'input': \[\('fc', 'input'\)\]; from_nir does not support them"):
        from_nir(graph, DT)


def test_nirnetwork_requires_time_first_input():
    net = from_nir(export_layers([nn.Linear(3, 2), M.LIF(dt=DT, tau_mem=5e-3)], (3,), DT), DT)
    assert net(torch.rand(4, 2, 3))[0].shape == (4, 2, 2)
    with pytest.raises(ValueError, match=r"time-first input \[T, B, 3\].*got \[5, 3\].*x.unsqueeze\(0\).expand\(T, \*x.shape\)"):
        net(torch.rand(5, 3))  # [B, n]: was run silently as T = 5 steps of one unbatched vector
    with pytest.raises(ValueError, match=r"got \[4, 2, 4\]"):
        net(torch.rand(4, 2, 4))


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
        outs = _run_snntorch(snn_import.import_from_nir(strip_metadata(export_layers(layers, (6,), dt))), x)
    assert 0 < ref.mean() < 1
    assert torch.equal(outs, ref)
    # a model trained at dt = 1 ms, retimed for snnTorch's 0.1 ms (docs: `export-nir --dt 1e-4`)
    layers_ms = [nn.Linear(6, 10), M.LIF(dt=DT, tau_mem=5e-3, r=5.0), nn.Linear(10, 4), M.LIF(dt=DT, tau_mem=4e-3, r=4.0)]
    for ours_layer, theirs_layer in zip(layers_ms, layers):
        ours_layer.load_state_dict(theirs_layer.state_dict())
    with torch.no_grad():
        ref_ms = _reference(layers_ms, x)
        outs = _run_snntorch(snn_import.import_from_nir(retime(export_layers(layers_ms, (6,), DT), dt)), x)
    assert 0 < ref_ms.mean() < 1
    assert torch.equal(outs, ref_ms)


def _run_snntorch(peer, x: torch.Tensor) -> torch.Tensor:
    """Step an snnTorch network imported from NIR over time-first ``x``; its outputs stacked ``[T, ...]``."""
    outs, state = [], None
    for t in range(x.shape[0]):
        out = peer(x[t]) if state is None else peer(x[t], state)
        if isinstance(out, tuple):
            out, state = out
        outs.append(out)
    return torch.stack(outs)


@pytest.mark.parametrize("ratio", [0.5, 1.0, 1.0 + 1e-7, 1.0 + 1e-4, 1.5, 2.5])
def test_the_modules_and_from_nir_refuse_the_same_time_constants(ratio):
    """One rule (neurons.euler_step_error) for a module built here and a graph read from NIR."""
    graph = _lif_graph()
    tau = np.float32(DT / ratio)  # a NIR file stores float32
    graph.nodes["1_lif"].tau = np.full(2, tau, dtype=np.float32)
    try:
        from_nir(graph, DT)
        nir_ok = True
    except NIRImportError:
        nir_ok = False
    try:
        M.LIFCell(dt=DT, tau_mem=torch.tensor(tau))
        module_ok = True
    except ValueError as err:
        assert "forward Euler needs dt / tau <= 1" in str(err)
        module_ok = False
    assert nir_ok == module_ok == (ratio < 1 + 1e-6)


def test_an_imported_network_keeps_its_neuron_parameters_as_buffers():
    net = from_nir(_lif_graph(), DT)
    names = set(net.state_dict())
    assert {"layers.1_lif.tau_mem", "layers.1_lif.v_threshold"} <= names
    net.double()
    assert net.layers["1_lif"].params().tau_mem.dtype == torch.float64
    y, _ = net(torch.rand(4, 2, 3, dtype=torch.float64))
    assert y.dtype == torch.float64


def _record_spikes(net) -> dict[str, list[torch.Tensor]]:
    """Forward hooks on the network's neuron cells: each one's spikes ``[B, ...]`` at every step, by node."""
    spikes: dict[str, list[torch.Tensor]] = {}
    for name, layer in net.layers.items():
        if isinstance(layer, M._Cell):
            spikes[name] = []
            layer.register_forward_hook(lambda _module, _args, out, name=name: spikes[name].append(out[0].detach().clone()))
    return spikes


@pytest.mark.parametrize("kind", ["lif", "cubalif", "if"])
def test_retime_gives_the_same_network_at_another_dt(kind):
    """Forward Euler sees tau only through dt / tau: the graph rescaled to 30 ms steps, run at 30 ms, computes
    what the original computes at its 1 ms (IF: r scaled instead), spike for spike."""
    torch.manual_seed(3)
    neuron = {"lif": lambda: M.LIF(dt=DT, tau_mem=4e-3), "cubalif": lambda: M.CubaLIF(dt=DT, tau_mem=4e-3, tau_syn=2e-3), "if": lambda: M.IF(dt=DT, r=300.0, reset="zero")}[kind]()
    synapse = nn.Linear(5, 6)
    with torch.no_grad():
        synapse.weight.mul_(6.0)  # enough drive that every neuron type spikes within the 12 steps
    graph = export_layers([synapse, neuron, nn.Linear(6, 3)], (5,), DT)
    slow = retime(graph, 0.03)
    assert slow.metadata["dt"] == 0.03 and graph.metadata["dt"] == DT  # a copy: the original is unchanged
    x = torch.rand(12, 4, 5) * 3
    fast_net, slow_net = from_nir(graph, dt=DT), from_nir(slow, dt=0.03)
    fast_spikes, slow_spikes = _record_spikes(fast_net), _record_spikes(slow_net)
    with torch.no_grad():
        y, _ = fast_net(x)
        y_slow, _ = slow_net(x)
    assert list(fast_spikes) == list(slow_spikes) and len(fast_spikes) == 1  # the one neuron layer
    for name, spikes in fast_spikes.items():
        fast, slow = torch.stack(spikes), torch.stack(slow_spikes[name])  # [T, B, 6], one per step
        assert fast.shape == (12, 4, 6) and set(fast.unique().tolist()) == {0.0, 1.0}, "spikes, some and not all"
        assert torch.equal(slow, fast), name  # spike for spike
    assert (y - y[0]).abs().max() > 0  # the readout moves with the neurons' spikes
    torch.testing.assert_close(y_slow, y, rtol=1e-5, atol=1e-6)
    with pytest.raises(NIRImportError, match="records no dt"):
        retime(strip_metadata(graph), 0.03)


@pytest.mark.peers
def test_spikingjelly_loads_an_exported_spiking_cnn_and_gives_the_same_outputs(tmp_path):
    """SpikingJelly 2.0.0's NIR importer runs our packaged layout (Conv2d, AvgPool2d, Flatten, Affine, PLIF with
    its tau frozen, batch norm folded) at the exported dt with the same outputs, without any change to the file."""
    sj = pytest.importorskip("spikingjelly.activation_based.nir_exchange", reason="spikingjelly not installed (scripts/install_peers.sh)")
    torch.manual_seed(4)
    net = spiking_cnn(image_size=12, channels=(4,), hidden=16, steps=6).eval()
    with torch.no_grad():
        for block in net.blocks:  # training-like batch-norm statistics, so folding is exercised
            if block.norm is not None:
                block.norm.running_mean.uniform_(-0.2, 0.2)
                block.norm.running_var.uniform_(0.5, 1.5)
        net.blocks[-1].synapse[1].weight.mul_(6)  # the last hidden layer fires, so the readout depends on spikes
    path = tmp_path / "cnn.nir"
    nir.write(str(path), export_nir_graph(net))
    x = torch.rand(3, 1, 12, 12) * 4
    frames = x.unsqueeze(0).expand(6, *x.shape)
    with torch.no_grad():
        ours, _ = from_nir(str(path), dt=DT)(frames)
        peer, state, outs = sj.import_from_nir(str(path), dt=DT), None, []
        for t in range(frames.shape[0]):
            out, state = peer(frames[t], state)
            outs.append(out)
    theirs = torch.stack(outs)
    assert (ours - ours[0]).abs().max() > 0  # the output moves with the spikes, not only the readout's bias
    torch.testing.assert_close(theirs, ours, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "edit, says",
    [
        (lambda f: _replace(f, "node/nodes/1_lif/type", "Bogus"), r"its node '1_lif' \(type 'Bogus'\) does not build"),
        (lambda f: f.__delitem__("node/nodes/1_lif/r"), r"its node '1_lif' \(type 'LIF'\) does not build"),
        (lambda f: _replace(f, "node/edges", np.array([["input", "0_linear"], ["0_linear", "gone"], ["1_lif", "output"]], dtype="S")), "every node builds and the graph does not: its edges"),
    ],
)
def test_a_hand_edited_file_names_the_part_that_is_wrong(tmp_path, edit, says):
    """A valid NIR file with one bad node or edge was reported as "not a NIR graph ... the HDF5 file nir.write
    makes", pointing at the file format; now the node (with its type) or the edges are named."""
    import h5py

    path = tmp_path / "edited.nir"
    nir.write(str(path), export_layers([nn.Linear(3, 2), M.LIF(dt=DT, tau_mem=5e-3)], (3,), DT))
    with h5py.File(path, "r+") as f:
        edit(f)
    with pytest.raises(NIRImportError, match=rf"edited.nir is a NIR file, but {says}.*re-export it"):
        read_nir(path)


def _replace(f, key: str, value) -> None:
    del f[key]
    f[key] = value


def test_a_node_dataset_or_an_empty_graph_fails_clearly(tmp_path):
    import h5py

    dataset, empty = tmp_path / "ds.nir", tmp_path / "empty.nir"
    with h5py.File(dataset, "w") as f:
        f["node"] = np.ones(3)  # 'node' is no group: not a NIR file (was a bare AttributeError)
    with h5py.File(empty, "w") as f:
        f.create_group("node")
    with pytest.raises(NIRImportError, match="ds.nir is not a NIR graph"):
        read_nir(dataset)
    with pytest.raises(NIRImportError, match="empty.nir is a NIR file, but its graph has no nodes"):
        read_nir(empty)


def test_retime_refuses_a_node_whose_time_it_does_not_rescale():
    graph = _lif_graph(keep_dt=True)
    graph.nodes["1_lif"] = nir.LI(tau=np.full(2, 5e-3), r=np.ones(2), v_leak=np.zeros(2))
    with pytest.raises(NIRImportError, match=r"'1_lif' \(LI\) is not one retime rescales"):
        retime(graph, 0.03)


def test_export_nir_and_load_model_need_only_the_run_folder(tmp_path, monkeypatch):
    """An engineer given a run folder, without the dataset, can export it (and load the model, api.load_model): the run records the data's facts
    the model was built from (data_meta.json); the graph equals the one exported with the data."""
    from overlooked import api

    cfg = api.load("snn_mlp_mnist", ["data.name=synthetic", "data.kwargs={n_train: 64, n_test: 16, image_shape: [1, 8, 8]}", "model.input_shape=[1,8,8]", "model.hidden=[8]", "train.max_steps=2", "train.progress=false"])
    run, _ = api.train(cfg, out=tmp_path / "runs")
    meta = json.loads((run / "data_meta.json").read_text())
    assert meta["image_shape"] == [1, 8, 8] and meta["num_classes"] == api.build_data(cfg).meta["num_classes"]
    with_data = nir.read(str(api.export_nir(run, tmp_path / "a.nir")))
    (run / "data_meta.json").rename(tmp_path / "kept.json")  # a run from before the file: the data is read instead
    assert nir.read(str(api.export_nir(run, tmp_path / "b.nir"))).nodes.keys() == with_data.nodes.keys()
    (tmp_path / "kept.json").rename(run / "data_meta.json")
    _, splits, with_data_model = api.load_run(run)

    def no_data(*args, **kwargs):
        raise AssertionError("export-nir read the dataset")

    monkeypatch.setattr(api, "build_data", no_data)
    _, model = api.load_model(run)  # the same model in Python, without the data either
    x = splits.test.tensors["image"]
    with torch.no_grad():
        assert not model.training and torch.equal(model(x)["logits"], with_data_model(x)["logits"])
    graph = nir.read(str(api.export_nir(run, tmp_path / "c.nir")))
    assert graph.nodes.keys() == with_data.nodes.keys()
    for name, node in graph.nodes.items():
        for field, value in vars(node).items():
            if isinstance(value, np.ndarray):
                assert np.array_equal(value, vars(with_data.nodes[name])[field]), (name, field)


def test_a_flat_input_mlp_graph_has_no_flatten_and_computes_the_same_on_flat_examples(tmp_path):
    """For readers that mishandle NIR's Flatten(start_dim=0) (Norse and snnTorch import an MLP with it and then fail
    on a matrix product), an MLP exports flat: Input [784], no Flatten node, the same network on x.flatten(1)."""
    torch.manual_seed(0)
    net = spiking_mlp(hidden=(20, 10), steps=5, neuron="lif", tau_mem=5e-3)
    x = torch.rand(6, 1, 28, 28) * 3
    _trained_bn(net, x)
    with torch.no_grad():
        ref = net(x)
    graph = export_nir_graph(net, input_shape=(1, 28, 28), flat_input=True)
    assert not any(isinstance(n, nir.Flatten) for n in graph.nodes.values())
    assert list(graph.nodes["input"].input_type["input"]) == [784] and "[784]" in graph.metadata["input"]
    back = from_nir(_roundtrip(graph, tmp_path), dt=DT)
    flat = x.flatten(1)
    with torch.no_grad():
        y, _ = back(flat.unsqueeze(0).expand(net.steps, *flat.shape))
    assert torch.allclose(y.mean(0), ref["logits"], atol=1e-5)
    with pytest.raises(NIRExportError, match="flat_input=True leaves out the first layer's Flatten, but this network begins with Conv2d"):
        export_nir_graph(spiking_cnn(channels=(3, 4), hidden=12, steps=5), input_shape=(1, 28, 28), flat_input=True)


@pytest.mark.peers
def test_norse_runs_a_flat_input_mlp_export(tmp_path):
    norse = pytest.importorskip("norse.torch", reason="norse not installed (scripts/install_peers.sh)")
    torch.manual_seed(0)
    net = spiking_mlp(hidden=(20,), steps=5, neuron="lif", tau_mem=5e-3)
    x = torch.rand(6, 1, 28, 28) * 3
    _trained_bn(net, x)
    path = tmp_path / "mlp.nir"
    nir.write(str(path), strip_metadata(export_nir_graph(net, input_shape=(1, 28, 28), flat_input=True)))
    ours = from_nir(read_nir(path), dt=DT)
    peer = norse.from_nir(str(path), dt=DT)
    flat = x.flatten(1)
    with torch.no_grad():
        mine, _ = ours(flat.unsqueeze(0).expand(net.steps, *flat.shape))
        state, outs = None, []
        for _ in range(net.steps):
            out, state = peer(flat, state)
            outs.append(out)
    assert torch.allclose(torch.stack(outs), mine, atol=1e-5)


def test_malformed_graphs_are_named_by_node_at_import():
    """An adversarial review's: a layer size that does not chain, Conv2d groups=0, an AvgPool2d kernel of 0, NaN
    weights or neuron parameters failed in torch (some at the first forward, NaN weights not at all), naming
    neither NIR nor the node; T = 0 and a state of the wrong type were raw errors."""
    import warnings

    from overlooked.spiking.nir import NIRImportError

    def graph(middle, shape_in, shape_out):
        return nir.NIRGraph(nodes={"input": nir.Input(np.array(shape_in)), "x": middle, "output": nir.Output(np.array(shape_out))}, edges=[("input", "x"), ("x", "output")], type_check=False)

    f32 = np.float32
    cases = [
        (graph(nir.Affine(np.ones((2, 3), dtype=f32), np.zeros(2, dtype=f32)), [4], [2]), r"layers do not fit together for its Input shape \[4\]"),
        (graph(nir.Affine(np.full((2, 3), np.nan, dtype=f32), np.zeros(2, dtype=f32)), [3], [2]), r"node 'x' \(Affine\) has NaN or inf in its weight"),
        (graph(nir.Conv2d(input_shape=(8, 8), weight=np.ones((4, 2, 3, 3), dtype=f32), stride=1, padding=1, dilation=1, groups=0, bias=np.zeros(4, dtype=f32)), [2, 8, 8], [4, 8, 8]), r"node 'x' \(Conv2d\) cannot be built: groups must be a positive integer"),
        (graph(nir.AvgPool2d(kernel_size=np.array([0, 0]), stride=np.array([1, 1]), padding=np.array([0, 0])), [2, 8, 8], [2, 8, 8]), r"layers do not fit together"),
        (graph(nir.LIF(tau=np.full(3, 0.01), r=np.ones(3), v_leak=np.zeros(3), v_threshold=np.full(3, np.nan)), [3], [3]), r"node 'x' \(LIF\) cannot be built: LIFCell: v_threshold = nan"),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for g, says in cases:
            with pytest.raises(NIRImportError, match=says):
                from_nir(g, dt=1e-3)
        net = from_nir(graph(nir.Affine(np.ones((2, 3), dtype=f32), np.zeros(2, dtype=f32)), [3], [2]), dt=1e-3)
    with pytest.raises(ValueError, match=r"takes T >= 1 time steps; got T = 0"):
        net(torch.zeros(0, 1, 3))
    with pytest.raises(ValueError, match=r"takes the state as the dict a previous call returned"):
        net(torch.zeros(2, 1, 3), state=[1, 2])
    assert net(torch.ones(2, 1, 3))[0].shape == (2, 1, 2)


def test_grouped_or_non_square_convolutions_are_refused_at_export_with_the_reason():
    """An adversarial review's: nir's own 'Type inference error' came out raw. nir 1.0.8's Conv2d infers its
    shapes from weight.shape[1] and kernel_size[0] alone, so such a file would not even pass nir.read."""
    from overlooked.spiking.nir import NIRExportError

    for conv, says in ((nn.Conv2d(2, 4, 3, groups=2, padding=1), "groups=2"), (nn.Conv2d(2, 4, (3, 1), padding=(1, 0)), "a 3x1 kernel")):
        with pytest.raises(NIRExportError, match=rf"Conv2d with {says} cannot be exported: nir .* use groups=1 and a square kernel"):
            export_layers([conv, M.LIF(tau_mem=5e-3)], (2, 8, 8), DT)


def test_export_refuses_a_subclassed_neuron_with_its_own_dynamics():
    """A user's neuron built on LIFCell with its own step function was written as a plain nir.LIF (41 spikes in
    torch, 33 read back): it is refused, naming what it overrides; a subclass keeping the library's step
    exports as before."""
    from overlooked.spiking import neurons as N

    class SoftLIFCell(M.LIFCell):
        step_fn = staticmethod(lambda x, state, p, dt, spike_fn: N.lif_step(x, state, p, dt, spike_fn))

    class SoftLIF(M.LIF):
        cell_cls = SoftLIFCell

    with pytest.raises(NIRExportError, match="SoftLIFCell subclasses LIFCell but defines its own step_fn.*nir.LIF node would not spike"):
        export_layers([nn.Linear(3, 2), SoftLIF(dt=DT, tau_mem=2e-3)], (3,), DT)

    class NamedLIFCell(M.LIFCell):  # the library's dynamics under another name
        pass

    class NamedLIF(M.LIF):
        cell_cls = NamedLIFCell

    graph = export_layers([nn.Linear(3, 2), NamedLIF(dt=DT, tau_mem=2e-3)], (3,), DT)
    assert any(isinstance(node, nir.LIF) for node in graph.nodes.values())


def test_export_of_a_model_in_training_mode_warns():
    """As EventNetwork.from_model: the graph is the network as eval() runs it."""
    model = spiking_mlp(input_shape=(1, 2, 2), num_classes=2, hidden=[3], steps=2)
    with pytest.warns(UserWarning, match="export_nir_graph: the model is in training mode"):
        export_nir_graph(model.train())
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        export_nir_graph(model.eval())


def test_a_recurrent_lif_round_trip_keeps_the_back_edge_spike_for_spike_by_hand(tmp_path):
    """RecurrentLIF with W_rec = [[0, 3], [0, 0]] through a file: neuron 0 fires one step after neuron 1, by hand."""
    synapse = nn.Linear(2, 2, bias=False)
    neuron = M.RecurrentLIF(2, dt=DT, tau_mem=2e-3)
    with torch.no_grad():
        synapse.weight.copy_(torch.eye(2))
        neuron.cell.recurrent.weight.copy_(torch.tensor([[0.0, 3.0], [0.0, 0.0]]))
    graph = export_layers([synapse, neuron], (2,), DT)
    assert ("1_recurrentlif_rec", "1_recurrentlif") in graph.edges
    x = torch.tensor([[0.5, 3.0], [0.5, 0.0], [0.5, 0.0], [0.5, 3.0], [0.5, 0.0], [0.5, 0.0]])[:, None]  # [T, 1, 2]
    with torch.no_grad():
        y, _ = from_nir(_roundtrip(graph, tmp_path), dt=DT)(x)
    # v <- 0.5 v + 0.5 (x + W z_prev), spike when v > 1, reset to 0. Neuron 1: 1.5 (spike), 0, 0, 1.5 (spike), 0, 0.
    # Neuron 0 (0.5 plus 3 z1[t-1]): 0.25; 1.875 spike; 0.25; 0.375; 1.9375 spike; 0.25.
    assert y[:, 0, 1].tolist() == [1.0, 0.0, 0.0, 1.0, 0.0, 0.0]
    assert y[:, 0, 0].tolist() == [0.0, 1.0, 0.0, 0.0, 1.0, 0.0]


def test_v_leak_and_v_reset_away_from_their_defaults_are_exported_and_imported(tmp_path):
    """LIF v_leak 0.3 and v_reset -0.3, IF v_reset -0.3: written to the NIR fields as given, and the imported
    network spikes as the original (each field changes the spikes, so a dropped one would show)."""

    def chain(lif_leak: float = 0.3, lif_reset: float = -0.3, if_reset: float = -0.3) -> list[nn.Module]:
        torch.manual_seed(4)
        return [nn.Linear(3, 4), M.LIF(dt=DT, tau_mem=3e-3, v_leak=lif_leak, v_reset=lif_reset), nn.Linear(4, 4), M.IF(dt=DT, r=1000.0, v_reset=if_reset, reset="zero")]

    layers = chain()
    with torch.no_grad():
        layers[2].weight.copy_(torch.eye(4) * 0.6)
        layers[2].bias.fill_(0.3)
    graph = export_layers(layers, (3,), DT)
    lif, if_ = graph.nodes["1_lif"], graph.nodes["3_if"]
    assert np.allclose(lif.v_leak, 0.3) and np.allclose(lif.v_reset, -0.3) and np.allclose(if_.v_reset, -0.3)
    assert lif.v_leak.shape == lif.v_reset.shape == if_.v_reset.shape == (4,)
    x = torch.rand(20, 6, 3, generator=torch.Generator().manual_seed(5)) * 1.5
    with torch.no_grad():
        _, _, trace = from_nir(_roundtrip(graph, tmp_path), dt=DT)(x, record=True)
        lif_ref, _ = layers[1](layers[0](x))
        if_ref, _ = layers[3](layers[2](lif_ref))
    assert torch.equal(trace["1_lif"], lif_ref) and torch.equal(trace["3_if"], if_ref)
    assert 0 < lif_ref.mean() < 1 and 0 < if_ref.mean() < 1
    # each value matters: the default in its place changes the spikes
    with torch.no_grad():
        for kwargs in ({"lif_leak": 0.0}, {"lif_reset": 0.3}, {"if_reset": 0.0}):
            other = chain(**kwargs)
            other[2].weight.copy_(torch.eye(4) * 0.6)
            other[2].bias.fill_(0.3)
            z_lif, _ = other[1](other[0](x))
            z_if, _ = other[3](other[2](z_lif))
            assert not (torch.equal(z_lif, lif_ref) and torch.equal(z_if, if_ref)), kwargs


def _exact_decay_reader(graph: nir.NIRGraph, x: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """An independent reader of a chain graph (Input -> ... -> Output) that integrates the leak exactly, in
    float64, with each step's input current held over the step (zero-order hold), as many chips and event
    simulators do: LIF ``v <- v_leak + r I + (v - v_leak - r I) exp(-dt / tau)``, IF ``v <- v + dt r I``; a spike
    where ``v > v_threshold``, then ``v <- v_reset``. ``x`` is ``[T, B, n]``; returns the output and each
    neuron node's spikes ``[T, B, n]``."""
    dt = float(graph.metadata["dt"])
    nxt = {a: b for a, b in graph.edges}
    chain, name = [], next(n for n, node in graph.nodes.items() if isinstance(node, nir.Input))
    while name in nxt:
        name = nxt[name]
        chain.append(name)
    f64 = lambda a: np.asarray(a, dtype=np.float64)  # noqa: E731
    v = {n: None for n in chain}
    spikes: dict[str, list[np.ndarray]] = {n: [] for n in chain if isinstance(graph.nodes[n], (nir.LIF, nir.IF))}
    out = []
    for t in range(x.shape[0]):
        h = f64(x[t])
        for n in chain:
            node = graph.nodes[n]
            if isinstance(node, nir.Affine):
                h = h @ f64(node.weight).T + f64(node.bias)
            elif isinstance(node, nir.Linear):
                h = h @ f64(node.weight).T
            elif isinstance(node, (nir.LIF, nir.IF)):
                state = np.zeros_like(h) if v[n] is None else v[n]
                if isinstance(node, nir.LIF):
                    target = f64(node.v_leak) + f64(node.r) * h
                    state = target + (state - target) * np.exp(-dt / f64(node.tau))
                else:
                    state = state + dt * f64(node.r) * h
                z = (state > f64(node.v_threshold)).astype(np.float64)
                v[n] = np.where(z > 0, f64(node.v_reset), state)
                spikes[n].append(z)
                h = z
        out.append(h)
    return np.stack(out), {n: np.stack(s) for n, s in spikes.items()}


def test_exact_decay_time_constant_by_hand():
    """dt / tau = 0.5: the exact reader's tau' = dt / ln 2 = 1.4427 ms, so its factor exp(-dt / tau') is 0.5,
    Euler's 1 - dt / tau; IF and the nodes without time are left as they are; from_exact_decay maps back."""
    from overlooked.spiking.nir import EXACT_DECAY, from_exact_decay, to_exact_decay

    graph = export_layers([nn.Linear(3, 2), M.LIF(dt=DT, tau_mem=2e-3, v_leak=0.1), nn.Linear(2, 2), M.IF(dt=DT, r=200.0, reset="zero")], (3,), DT)
    exact = to_exact_decay(graph)
    (lif,) = [n for n in exact.nodes.values() if isinstance(n, nir.LIF)]
    tau = np.float64(np.float32(2e-3))  # the exported (float32) tau
    assert np.allclose(lif.tau, DT / np.log(2.0), rtol=1e-6, atol=0) and np.allclose(np.exp(-DT / lif.tau), 1 - DT / tau, rtol=1e-14, atol=0)
    assert np.array_equal(lif.v_leak, np.full(2, 0.1, dtype=np.float32))
    (if_node,) = [n for n in exact.nodes.values() if isinstance(n, nir.IF)]
    assert np.array_equal(if_node.r, np.full(2, 200.0, dtype=np.float32))
    assert exact.metadata["discretisation"] == EXACT_DECAY and "exp(-dt / tau)" in exact.metadata["equations"]
    assert graph.metadata["discretisation"] == "forward Euler"  # a copy: the original is unchanged
    back = from_exact_decay(exact)
    (lif_back,) = [n for n in back.nodes.values() if isinstance(n, nir.LIF)]
    assert np.allclose(lif_back.tau, tau, rtol=1e-12, atol=0) and back.metadata["discretisation"] == "forward Euler" and "equations" not in back.metadata


def test_an_exact_decay_reader_runs_the_exported_network_spike_for_spike(tmp_path):
    """A LIF layer (v_leak away from 0) and an IF layer: an independent exact-decay reader running the graph
    to_exact_decay wrote gives the trained network's spikes and outputs (our forward-Euler import of the
    export), step for step; the same reader on the forward-Euler graph does not (the rewrite matters). Through a
    file, with its metadata, from_nir maps the exact graph back: the same outputs again."""
    from overlooked.spiking.nir import to_exact_decay

    torch.manual_seed(5)
    layers = [nn.Linear(5, 7), M.LIF(dt=DT, tau_mem=2.5e-3, v_leak=0.2), nn.Linear(7, 6), M.IF(dt=DT, r=400.0, reset="zero"), nn.Linear(6, 3)]
    with torch.no_grad():
        layers[0].weight.mul_(4.0)
        layers[2].weight.mul_(3.0)
    graph = export_layers(layers, (5,), DT)
    exact = to_exact_decay(graph)
    x = torch.rand(16, 4, 5) * 2
    euler_net = from_nir(graph, dt=DT).double()
    recorded = _record_spikes(euler_net)
    with torch.no_grad():
        y, _ = euler_net(x.double())
    ours = {name: torch.stack(s).numpy() for name, s in recorded.items()}
    y_exact, spikes_exact = _exact_decay_reader(exact, x.numpy())
    assert sorted(spikes_exact) == sorted(ours) and len(ours) == 2
    for name in ours:
        assert set(np.unique(ours[name])) == {0.0, 1.0}, "spikes, some and not all"
        assert np.array_equal(spikes_exact[name], ours[name]), name
    np.testing.assert_allclose(y_exact, y.numpy(), rtol=1e-9, atol=1e-9)
    _, spikes_unconverted = _exact_decay_reader(graph, x.numpy())
    lif_name = next(n for n, node in graph.nodes.items() if isinstance(node, nir.LIF))
    assert not np.array_equal(spikes_unconverted[lif_name], ours[lif_name])  # the Euler graph read exactly is another network

    path = tmp_path / "exact.nir"
    nir.write(str(path), exact)
    with torch.no_grad():
        y_back, _ = from_nir(path, dt=DT)(x)
        y_euler, _ = from_nir(graph, dt=DT)(x)
    assert torch.equal(y_back, y_euler)


def test_exact_decay_refuses_what_it_cannot_rewrite_by_name():
    from overlooked.spiking.nir import from_exact_decay, to_exact_decay

    with pytest.raises(NIRExportError, match="'1_cubalif' is a CubaLIF: integrated exactly, its synaptic current decays inside the step"):
        to_exact_decay(_lif_graph(tau_syn=2e-3, keep_dt=True))
    at_dt = _lif_graph(keep_dt=True)
    at_dt.nodes["1_lif"].tau = np.array([5e-3, DT])  # Euler's factor 1 - dt/tau is 0: no exp(-dt/tau') is
    with pytest.raises(NIRExportError, match=r"'1_lif' \(LIF\) has tau = 0.001 s, not above dt = 0.001 s"):
        to_exact_decay(at_dt)
    exact = to_exact_decay(_lif_graph(keep_dt=True))
    with pytest.raises(NIRExportError, match=r"this one says 'exact decay \(zero-order hold\)'"):
        to_exact_decay(exact)  # twice would rewrite the rewritten taus
    with pytest.raises(NIRExportError, match="this one says None"):
        to_exact_decay(_lif_graph())  # no metadata: neither the discretisation nor the dt is known
    exact.metadata.pop("dt")
    with pytest.raises(NIRImportError, match="records no dt"):
        from_exact_decay(exact)
    with pytest.raises(NIRImportError, match="records no dt"):
        from_nir(exact, dt=DT)
    from overlooked import api
    from overlooked.errors import OverlookedError

    with pytest.raises(OverlookedError, match="discretisation must be 'euler' .* or 'exact' .*, got 'rk4'"):
        api.export_nir("no-such-run", "out.nir", discretisation="rk4")


# ---- pins from mutation audit 7 (results/audits/mutants_nir_spiking_modules.yaml): NIR Conv2d export and import of
# stride, padding, dilation and groups; a pool that excludes padding on one axis; detach_reset's type check


def test_a_strided_dilated_asymmetrically_padded_conv_keeps_each_setting_through_a_file(tmp_path):
    """Conv2d(stride=(2, 1), padding=(1, 0), dilation=(1, 2)) on a 7x8 input: every setting differs per axis and
    from the others, so a dropped dilation, a padding copied to both axes or stride and dilation swapped each
    change the output shape. Output size per axis: floor((n + 2p - d (k - 1) - 1) / s) + 1, i.e.
    H: (7 + 2 - 2 - 1) / 2 + 1 = 4 and W: (8 + 0 - 4 - 1) / 1 + 1 = 4. The imported network's currents (the
    conv node's trace) equal torch's conv of the same input at every step."""
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, 3, stride=(2, 1), padding=(1, 0), dilation=(1, 2))
    graph = export_layers([conv, M.LIF(dt=DT, tau_mem=2e-3)], (2, 7, 8), DT)
    node = graph.nodes["0_conv2d"]
    assert tuple(np.atleast_1d(node.stride)) == (2, 1)
    assert tuple(np.atleast_1d(node.padding)) == (1, 0)
    assert tuple(np.atleast_1d(node.dilation)) == (1, 2)
    x = torch.rand(3, 2, 2, 7, 8)
    with torch.no_grad():
        _, _, trace = from_nir(_roundtrip(graph, tmp_path), dt=DT)(x, record=True)
        want = torch.stack([conv(x[t]) for t in range(3)])
    assert trace["0_conv2d"].shape == (3, 2, 3, 4, 4)
    assert torch.allclose(trace["0_conv2d"], want, atol=1e-6)


def test_a_grouped_conv_node_imports_with_all_its_input_channels():
    """nir.Conv2d with groups=2 and weight [4, 1, 1, 1] (in_channels / groups = 1): the torch layer takes
    1 * 2 = 2 input channels. With weights 1, 2, 3, 4 and bias 0, output channels 0, 1 read input channel 0
    (times 1 and 2) and 2, 3 read channel 1 (times 3 and 4): for input channels (5, 7), outputs 5, 10, 21, 28."""
    w = np.arange(1, 5, dtype=np.float32).reshape(4, 1, 1, 1)
    node = nir.Conv2d(input_shape=None, weight=w, stride=1, padding=0, dilation=1, groups=2, bias=np.zeros(4, np.float32))
    conv = node_module(node, DT)
    assert conv.in_channels == 2 and conv.groups == 2
    x = torch.tensor([5.0, 7.0]).reshape(1, 2, 1, 1)
    with torch.no_grad():
        assert conv(x).flatten().tolist() == [5.0, 10.0, 21.0, 28.0]


def test_a_pool_excluding_padding_on_one_axis_only_is_refused():
    """AvgPool2d(2, padding=(1, 0), count_include_pad=False): the border windows of the padded axis divide by
    fewer cells (a corner window of a 2x2 pool over one real row divides by 2, not 4), which nir.AvgPool2d cannot
    say; padding on one axis is as much padding as on both."""
    with pytest.raises(NIRExportError, match="count_include_pad=False"):
        export_layers([nn.Conv2d(1, 2, 3), nn.AvgPool2d(2, 2, (1, 0), count_include_pad=False), M.LIF(dt=DT)], (1, 8, 8), DT)


@pytest.mark.parametrize("value", [0, 1])
def test_detach_reset_refuses_an_integer(value):
    """detach_reset is True or False: an int 0 / 1 is refused, as "no" is, not read by its truthiness."""
    with pytest.raises(ValueError, match="detach_reset must be True or False"):
        M.LIF(dt=DT, detach_reset=value)


def test_a_grouped_padded_conv_node_imports_as_torchs_grouped_conv():
    """Cross-check of the grouped import against F.conv2d with the node's own weight (random values)."""
    w = np.random.default_rng(0).standard_normal((4, 2, 3, 3)).astype(np.float32)
    b = np.arange(4, dtype=np.float32)
    node = nir.Conv2d(input_shape=None, weight=w, stride=1, padding=1, dilation=1, groups=2, bias=b)
    conv = node_module(node, DT)
    x = torch.rand(2, 4, 5, 5)
    with torch.no_grad():
        assert torch.allclose(conv(x), F.conv2d(x, torch.from_numpy(w), torch.from_numpy(b), padding=1, groups=2), atol=1e-5)
