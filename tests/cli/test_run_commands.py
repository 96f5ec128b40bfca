"""evaluate / export-nir / convert on the runs users have: event data, EMA, limited evaluation, other data,
conversion folders and models that are not ANNs (each found by a walkthrough of the documented commands)."""

from __future__ import annotations

import json

import nir
import pytest
import torch

from overlooked import api
from overlooked.cli import main
from overlooked.errors import CheckpointError, OverlookedError

SMALL = ["train.progress=false", "train.num_threads=1"]


@pytest.mark.data
def test_export_nir_of_an_event_data_run_reimports_to_the_same_logits(tmp_path, data_dir):
    """N-MNIST frames are [T, 2, 34, 34]: the graph's input is one time step, (2, 34, 34)."""
    from overlooked.spiking.nir import NIRDtWarning, from_nir

    cfg = api.load("snn_nmnist_small", [*SMALL, "train.max_steps=2", "model.channels=[4,4]", "model.hidden=16"])
    run, _ = api.train(cfg, data_dir=str(data_dir), out=tmp_path / "runs")
    out = tmp_path / "new" / "folder" / "n.nir"  # missing folders are made
    with pytest.warns(NIRDtWarning, match=r"n.nir: the graph steps at the training dt \(0.001 s\) while one input step is a 0.03 s event bin; .*--dt 0.03"):
        assert main(["export-nir", str(run), str(out), "--data-dir", str(data_dir)]) == 0
    graph = nir.read(str(out))
    assert tuple(graph.nodes["input"].input_type["input"]) == (2, 34, 34)
    assert int(graph.metadata["steps"]) == 10 and "time_first" in str(graph.metadata["input"])  # T and the encoder travel with the file
    _, splits, model = api.load_run(run, data_dir=str(data_dir))
    frames = api.build_encoder(cfg)(splits.test[torch.arange(4)], torch.Generator())["frames"]  # [T, B, 2, 34, 34]
    with torch.no_grad():
        y, _ = from_nir(graph, dt=1e-3)(frames)
        torch.testing.assert_close(y.mean(0), model(frames)["logits"], rtol=1e-5, atol=1e-5)
    assert main(["export-nir", str(run), str(out), "--data-dir", str(data_dir)]) == 2  # exists: kept
    assert graph.metadata["step_duration_s"] == pytest.approx(0.03) and graph.metadata["data"].startswith("nmnist_small")
    # --dt 0.03: the same network for a reader stepping once per 30 ms event bin
    assert main(["export-nir", str(run), str(out), "--force", "--dt", "0.03", "--data-dir", str(data_dir)]) == 0
    slow = nir.read(str(out))
    assert slow.metadata["dt"] == pytest.approx(0.03)
    # The plumbing only: this 2-step model does not fire in evaluation, so its logits are the readout's bias;
    # retime's maths is tested spike for spike in tests/spiking/test_nir.py (test_retime_...)
    with torch.no_grad():
        torch.testing.assert_close(from_nir(slow, dt=0.03)(frames)[0].mean(0), model(frames)["logits"], rtol=1e-5, atol=1e-5)


def test_evaluate_reports_what_the_summary_reports_ema_and_eval_limit(tmp_path, capsys):
    """With train.eval_limit the summary scores the first N examples, and so does evaluate by default; with
    train.ema_decay the run reports the average, and `--checkpoint last` loads the average too."""
    cfg = api.load("mlp_mnist", [*SMALL, "data.name=synthetic", "data.kwargs={n_train: 200, n_test: 300, image_shape: [1, 8, 8]}", "model.input_shape=[1,8,8]", "model.hidden=[16]", "train.epochs=2", "train.ema_decay=0.9", "train.eval_limit=100"])
    run, summary = api.train(cfg, out=tmp_path)
    best, last = api.evaluate(run), api.evaluate(run, checkpoint="last")
    assert best["examples"] == last["examples"] == 100 and best["accuracy"] == summary["test_accuracy"]
    assert best["weights"].startswith("exponential moving average")
    raw = api.load_run(run, checkpoint="last")[2]
    from overlooked.train.checkpoint import read_checkpoint

    tensors, _ = read_checkpoint(run / "checkpoints" / "last.safetensors")
    for name, value in raw.state_dict().items():  # the averaged weights, not the raw ones, were loaded
        assert torch.equal(value, tensors[f"ema.module.{name}"])
    assert any(not torch.equal(tensors[f"ema.module.{n}"], tensors[f"model.{n}"]) for n, _ in raw.named_parameters())
    assert api.evaluate(run, limit=None)["examples"] == 300
    assert main(["evaluate", str(run), "--split", "val", "data.kwargs.seed=0", "--limit", "0"]) == 0  # overrides may follow options
    assert json.loads(capsys.readouterr().out)["examples"] == 20


def test_run_folders_that_hold_no_trainable_run_are_refused_clearly(tmp_path):
    conv = tmp_path / "convert-x"
    conv.mkdir()
    conv.joinpath("config.yaml").write_text("name: convert_x\nkind: ann_to_snn_conversion\nsource_run: runs/cnn_mnist-1\nconversion: {norm: p99.9}\n")
    for call in (lambda: api.evaluate(conv), lambda: api.convert(conv)):
        with pytest.raises(OverlookedError, match=r"record of an ANN-to-SNN conversion .* pass the run it converted, runs/cnn_mnist-1"):
            call()
    # export-nir would send the user in a circle (its source run is an ANN, which export-nir refuses too): say why
    with pytest.raises(OverlookedError, match=r"reset by subtraction, which NIR \(nir 1.0.8\) cannot express .* snn_\* configs"):
        api.export_nir(conv, tmp_path / "x.nir")


def test_convert_refuses_a_spiking_run_before_any_work(tmp_path):
    from overlooked.spiking.convert import ConversionError

    cfg = api.load("snn_mlp_mnist", [*SMALL, "data.name=synthetic", "data.kwargs={n_train: 64, n_test: 16, image_shape: [1, 8, 8]}", "model.input_shape=[1,8,8]", "model.hidden=[8]", "train.max_steps=1"])
    run, _ = api.train(cfg, out=tmp_path / "runs")
    with pytest.raises(ConversionError, match=r"convert takes a run of a ReLU/average-pooling ANN \(.*mlp.*\); .* trained 'spiking_mlp', a spiking model"):
        api.convert(run, out=tmp_path / "conv")
    assert not (tmp_path / "conv").exists()


def _keyed_xy(n_train: int = 64, n_test: int = 16):
    """The synthetic images under other batch keys, ``x`` and ``y``."""
    from overlooked.data.base import ArrayDataset, Splits
    from overlooked.data.synthetic import synthetic

    s = synthetic(n_train=n_train, n_test=n_test, image_shape=(1, 8, 8))
    rekey = lambda d: ArrayDataset({"x": d.tensors["image"], "y": d.tensors["label"]})  # noqa: E731
    return Splits(rekey(s.train), rekey(s.val), rekey(s.test), ("x",), "y", s.meta)


def _relu_mlp_of_mine(num_classes: int = 4, input_shape: tuple[int, ...] = (1, 8, 8)):
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 16), torch.nn.ReLU(), torch.nn.Linear(16, num_classes))


def test_convert_takes_a_users_relu_network_on_data_with_its_own_batch_keys(tmp_path, register_for_test):
    """A ReLU MLP registered under a family of its own was refused by its tag, and one tagged "baseline" on data
    keyed x / y died with KeyError: 'image'; C.convert judges the layers, and the data's own keys are read."""
    from overlooked.registry import DATASETS, MODELS

    register_for_test(DATASETS, "test_keyed_xy", _keyed_xy)
    register_for_test(MODELS, "test_relu_mlp_of_mine", _relu_mlp_of_mine, family="mine")
    cfg = api.load("mlp_mnist", [*SMALL, "data.name=test_keyed_xy", "data.kwargs={}", "model.name=test_relu_mlp_of_mine", "model.kwargs={}", "train.max_steps=2"])
    run, _ = api.train(cfg, out=tmp_path / "runs")
    _, summary = api.convert(run, out=tmp_path / "conv", steps=4, calibration=16, limit=8)
    assert summary["test_examples"] == 8 and 0 <= summary["ann_test_accuracy"] <= 1
    # more calibration images than the training split holds: the record names the number used (an
    # adversarial review's: it recorded 99999), with a warning
    from overlooked.config import ConfigWarning

    with pytest.warns(ConfigWarning, match=r"--calibration 99999 asks for more training images than the split holds; all \d+ are used"):
        _, summary = api.convert(run, out=tmp_path / "conv2", steps=4, calibration=99999, limit=8)
    assert summary["calibration"] < 99999 and summary["calibration"] == len(api.load_run(run)[1].train)


def test_evaluation_on_data_the_model_cannot_read_says_why(tmp_path):
    cfg = api.load("mlp_mnist", [*SMALL, "data.name=synthetic", "data.kwargs={n_train: 64, n_test: 16, image_shape: [1, 8, 8]}", "model.hidden=[8]", "train.max_steps=1"])
    run, _ = api.train(cfg, out=tmp_path)
    with pytest.raises(CheckpointError, match=r"rebuilt for the data of \['data.kwargs.image_shape=\[1,12,12\]'\].*image_shape"):
        api.evaluate(run, data_overrides=["data.kwargs.image_shape=[1,12,12]"])


def test_an_encoder_or_data_with_another_time_length_than_the_model_is_refused(tmp_path):
    """A spiking model runs as many steps as its input has; model.steps only repeats a static input."""
    from overlooked.errors import ConfigError

    cfg = api.load("snn_mlp_mnist", [*SMALL, "data.name=synthetic", "data.kwargs={n_train: 64, n_test: 16, image_shape: [1, 8, 8]}", "model.input_shape=[1,8,8]", "model.hidden=[8]", "train.max_steps=1", "encoder={name: rate, kwargs: {steps: 4}}"])
    with pytest.raises(ConfigError, match=r"the encoder's steps .* = 4 but model.kwargs.steps = 8"):
        api.train(cfg, out=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()
    api.train(api.load("snn_mlp_mnist", [*SMALL, "data.name=synthetic", "data.kwargs={n_train: 64, n_test: 16, image_shape: [1, 8, 8]}", "model.input_shape=[1,8,8]", "model.hidden=[8]", "train.max_steps=1", "encoder={name: rate, kwargs: {steps: 8}}"]), out=tmp_path / "ok")


def test_a_gpu_run_can_be_resumed_and_evaluated_on_cpu(tmp_path, monkeypatch, capsys):
    """A run configured for cuda, interrupted, on a machine without a GPU: --resume takes --device cpu (and
    records it), evaluate takes --device; without them the error says what to pass."""
    from overlooked.errors import ConfigError
    from overlooked.train.callbacks import Callback

    class Stop(Callback):
        def on_step_end(self, ctx, loss):
            ctx.stop = ctx.state.step == 3

    cfg = api.load("mlp_mnist", [*SMALL, "data.name=synthetic", "data.kwargs={n_train: 64, n_test: 16, image_shape: [1, 8, 8]}", "model.hidden=[8]", "train.epochs=2", "train.batch_size=16", "train.checkpoint_every=1"])
    run, _ = api.train(cfg, out=tmp_path, callbacks=[Stop()])
    config = run / "config.yaml"
    config.write_text(config.read_text().replace("device: cpu", "device: cuda"))  # as if it had trained on a GPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["train", "--resume", str(run)]) == 2
    assert "use --device cpu" in capsys.readouterr().err
    assert main(["train", "--resume", str(run), "--device", "cpu"]) == 0
    env = json.loads((run / "environment.json").read_text())
    assert env["resumes"][-1]["device"] == "cpu"
    with pytest.raises(ConfigError, match=r"the run's train.device is 'cuda' but .* use --device cpu \(device='cpu' in Python\)"):
        api.evaluate(run)
    with pytest.raises(ConfigError, match=r"^--device is 'cuda' but .*; use --device cpu$"):  # no train.device=cpu: evaluate takes no such override
        api.evaluate(run, device="cuda")
    assert main(["evaluate", str(run), "--device", "cpu"]) == 0
    assert main(["evaluate", str(run), "--limit", "-3", "--device", "cpu"]) == 2
    assert "--limit takes a number of examples N >= 1, or 0" in capsys.readouterr().err


def test_resuming_after_a_final_best_does_not_call_it_chosen(tmp_path):
    """When no validation pass chose weights, the final weights are written as best (best_step -1); a resume
    from a last checkpoint with best_step -1 must not preload that file as the chosen best."""
    from overlooked.train.callbacks import Callback

    class RestartAtEveryPass(Callback):
        def on_eval_end(self, ctx, metrics):
            ctx.restart_selection = True

    cfg = api.load("mlp_mnist", [*SMALL, "data.name=synthetic", "data.kwargs={n_train: 64, n_test: 16, image_shape: [1, 8, 8]}", "model.hidden=[8]", "train.epochs=2", "train.batch_size=16"])
    run, first = api.train(cfg, out=tmp_path, callbacks=[RestartAtEveryPass()])
    assert first["best_step"] == -1 and (run / "checkpoints" / "best.safetensors").is_file()
    (run / "summary.json").unlink()  # as if killed after its last checkpoint, during the final report
    _, again = api.resume(run, callbacks=[RestartAtEveryPass()])
    assert again["best_step"] == -1 and again["selection"].startswith("the final weights")


@pytest.mark.data
def test_event_frames_without_a_time_first_encoder_are_refused(tmp_path, data_dir):
    """N-MNIST frames are [B, T, ...]; without the time_first encoder a batch of size T would be read as time."""
    from overlooked.errors import ConfigError

    cfg = api.load("snn_nmnist_small", [*SMALL, "train.max_steps=1", "encoder=null"])
    with pytest.raises(ConfigError, match="event frames .* set encoder: {name: time_first"):
        api.train(cfg, data_dir=str(data_dir), out=tmp_path / "runs")
    with pytest.raises(ConfigError, match=r"the data's time bins \(frame_shape\[0\]\) = 5 but model.kwargs.steps = 10"):
        api.train(api.load("snn_nmnist_small", [*SMALL, "train.max_steps=1", "data.bins=5"]), data_dir=str(data_dir), out=tmp_path / "runs")


def test_the_capsule_objective_reads_the_datas_own_input_key():
    """capsule_margin's image_key stayed "image" on data keyed x / y; build_objective now names it from the data
    (a model of one's own whose input is x; the packaged CapsNet reads image and label by name)."""
    cfg = api.load("capsnet_mnist", SMALL)
    objective = api.build_objective(cfg, _keyed_xy(16, 8))
    assert objective.image_key == "x" and objective.target_key == "y"
