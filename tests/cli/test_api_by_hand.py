"""Behaviour of overlooked.api and overlooked.cli that a mutation audit of the two modules found unpinned.

Each test pins one decision (a bound, a comparison, a flag passed through) that no other test caught when it
was changed. The tiny runs are shared: synthetic data (100 training / 40 test images of 1x8x8), an 8-unit MLP
or spiking MLP trained for 4 steps, and a bAbI task-1 MemN2N trained for 1 step (the ``data`` tests).
"""

from __future__ import annotations

import json
import shutil

import nir
import pytest
import torch
import yaml
from safetensors.torch import save_file

from overlooked import api
from overlooked.cli import _top_of, main
from overlooked.errors import CheckpointError, ConfigError, OverlookedError
from overlooked.train.callbacks import Callback
from overlooked.train.checkpoint import read_checkpoint

SMALL = ["train.progress=false", "train.num_threads=1"]
TINY = [*SMALL, "data.name=synthetic", "data.kwargs={n_train: 100, n_test: 40, image_shape: [1, 8, 8]}", "model.input_shape=[1,8,8]", "train.max_steps=4", "train.eval_every=2"]
BABI = ["data.tasks=[1]", "train.max_steps=1", *SMALL]


def _tiny(tmp_path_factory, config: str = "mlp_mnist", extra: tuple[str, ...] = (), hidden: str = "model.hidden=[8]"):
    cfg = api.load(config, [*TINY, hidden, *extra])
    run, _ = api.train(cfg, out=tmp_path_factory.mktemp("runs"))
    return run


@pytest.fixture(scope="module")
def mlp_run(tmp_path_factory):
    """An 8-unit ReLU MLP, 4 steps: stopped by max_steps, scored on all 40 test images."""
    return _tiny(tmp_path_factory)


@pytest.fixture(scope="module")
def snn_run(tmp_path_factory):
    """The spiking MLP (it has BatchNorm running statistics), 4 steps."""
    return _tiny(tmp_path_factory, "snn_mlp_mnist")


@pytest.fixture(scope="module")
def trial_runs(tmp_path_factory):
    """Three runs each recording train.trials=2: a and b differ in lr, d in its hidden width."""
    return (_tiny(tmp_path_factory, extra=("train.trials=2", "train.lr=0.01")),
            _tiny(tmp_path_factory, extra=("train.trials=2", "train.lr=0.02")),
            _tiny(tmp_path_factory, extra=("train.trials=2",), hidden="model.hidden=[6]"))


@pytest.fixture(scope="module")
def babi_run(tmp_path_factory, data_dir):
    """A MemN2N on bAbI task 1 (its vocabulary: 20 words), one step."""
    run, _ = api.train(api.load("memn2n_babi1k", BABI), data_dir=str(data_dir), out=tmp_path_factory.mktemp("babi"))
    return run


def _copy(run, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(run, dst)
    return dst


def _damage(run, key: str, edit) -> None:
    best = run / "checkpoints" / "best.safetensors"
    tensors, doc = read_checkpoint(best)
    tensors[key] = tensors[key].clone()
    edit(tensors[key])
    save_file(tensors, str(best), metadata={"overlooked": json.dumps(doc)})


# ---- evaluate and the checkpoint checks ---------------------------------------------------------------------


def test_evaluate_refuses_a_limit_of_zero_examples(mlp_run):
    """api.evaluate(limit=0) is refused (it would score an empty subset); limit=1 scores one example."""
    with pytest.raises(ConfigError, match="limit must be a positive number of examples"):
        api.evaluate(mlp_run, limit=0)
    assert api.evaluate(mlp_run, limit=1)["examples"] == 1


def test_one_nan_in_one_weight_is_refused_naming_the_tensor(mlp_run, tmp_path):
    """a single NaN among the 8x64 entries of the first Linear's weight is enough to refuse the checkpoint."""
    run = _copy(mlp_run, tmp_path)

    def one_nan(t):
        t.view(-1)[0] = float("nan")

    _damage(run, "model.net.1.weight", one_nan)
    with pytest.raises(CheckpointError, match=r"hold NaN or inf \(net\.1\.weight\)"):
        api.evaluate(run)


def test_one_negative_running_variance_entry_is_refused(snn_run, tmp_path):
    """one negative entry of a BatchNorm running_var (the others positive) is refused."""
    run = _copy(snn_run, tmp_path)
    key = next(k for k in read_checkpoint(run / "checkpoints" / "best.safetensors")[0] if k.startswith("model.") and k.endswith("running_var"))

    def one_negative(t):
        t[0] = -1.0

    _damage(run, key, one_negative)
    with pytest.raises(CheckpointError, match="negative variance"):
        api.evaluate(run)


def test_evaluate_scores_the_summarys_eval_limit_by_default(tmp_path_factory, capsys):
    """`overlooked evaluate RUN` without --limit scores train.eval_limit's first 25 test examples, as the
    summary did (not all 40), and reports the summary's test accuracy."""
    run = _tiny(tmp_path_factory, extra=("train.eval_limit=25",))
    summary = json.loads((run / "summary.json").read_text())
    assert main(["evaluate", str(run)]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["examples"] == 25 and res["accuracy"] == summary["test_accuracy"]


# ---- names, devices, command lines ----------------------------------------------------------------------------


def test_a_run_name_starting_with_a_dot_is_refused():
    """name=.hidden would make a hidden run folder: refused like a name holding '/'."""
    for name in (".hidden", "a/b"):
        with pytest.raises(ConfigError, match="must be a plain file name"):
            api.load("mlp_mnist", [f"name={name}"])


def test_a_gpu_index_equal_to_the_gpu_count_is_refused(monkeypatch):
    """on a machine with one GPU, cuda:0 is the only one: cuda:1 is refused."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    api.check_device("cuda:0")
    with pytest.raises(ConfigError, match=r"has 1 CUDA GPU\(s\); use cuda:0 \.\. cuda:0"):
        api.check_device("cuda:1")


def test_explain_refuses_an_override_given_twice(capsys):
    """the same key given twice (once would not be enough to say which wins) is refused before the run is read."""
    assert main(["explain", "/nonexistent/run", "data.tasks=[1]", "data.tasks=[2]"]) == 2
    err = capsys.readouterr().err
    assert "given more than once" in err and "not a run folder" not in err


def test_explain_takes_overrides_after_its_options(capsys):
    """`explain RUN --split test data.tasks=[1]` parses (no SystemExit from argparse); it fails on the run folder."""
    assert main(["explain", "/nonexistent/run", "--split", "test", "data.tasks=[1]"]) == 2
    assert "not a run folder" in capsys.readouterr().err


def test_check_no_resplit_with_the_runs_own_dataset_named_again():
    """naming the run's own dataset (data.name=mnist on an mnist config) does not switch the re-split check
    off; naming another dataset (its own splits) does."""
    mnist = api.load("mlp_mnist")
    with pytest.raises(ConfigError, match="data.kwargs.seed changed splits"):
        api._check_no_resplit(mnist, "val", ["data.name=mnist", "data.kwargs.seed=5"])
    api._check_no_resplit(mnist, "val", ["data.name=synthetic", "data.kwargs.seed=5"])


# ---- seeds, --repeats, --each ---------------------------------------------------------------------------------


def test_seed_folders_are_ordered_by_number_and_a_tie_goes_to_the_first(tmp_path):
    """seed2, seed9, seed10 (not seed10, seed2, seed9); seeds 9 and 10 tie on val 0.7, so seed 9 (test 0.5) is
    best_by_val; seed2 has no summary and is left out of "seeds"."""
    for seed in (10, 9, 2):
        (tmp_path / f"seed{seed}").mkdir()
    assert [p.name for p in api.seed_folders(tmp_path)] == ["seed2", "seed9", "seed10"]
    for seed, test in ((9, 0.5), (10, 0.9)):
        (tmp_path / f"seed{seed}" / "summary.json").write_text(json.dumps({"seed": seed, "test_accuracy": test, "val_accuracy": 0.7, "train_accuracy": 1.0, "wall_time_s": 1.0}))
    agg = api.reaggregate(tmp_path)
    assert agg["seeds"] == [9, 10]
    assert agg["best_by_val"]["seed"] == 9 and agg["best_by_val"]["test_accuracy"] == 0.5


def test_top_of_climbs_only_into_a_repeats_folder(tmp_path):
    """seed3 under a folder whose config.yaml runs one seed (or has no train section) is its own top."""
    (tmp_path / "seed3").mkdir()
    for text in ("name: mine\n", "train: {repeats: 1}\n"):
        (tmp_path / "config.yaml").write_text(text)
        assert _top_of(tmp_path / "seed3") == tmp_path / "seed3", text


def test_show_of_an_each_folder_without_repeats_names_no_seeds(tmp_path, capsys):
    """two models (lr 0.1 and 0.2), one seed each: the first line of `show` names the --each values, no seeds."""
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump({"name": "tiny", "data": {"name": "synthetic", "kwargs": {"n_train": 100, "n_test": 40}},
                                                        "model": {"name": "mlp", "kwargs": {"hidden": [16]}},
                                                        "train": {"epochs": 1, "batch_size": 10, "progress": False, "eval_every": 5, "num_threads": 1}}))
    assert main(["train", str(tmp_path / "tiny.yaml"), "train.max_steps=2", "--each", "train.lr=0.1,0.2", "--out", str(tmp_path / "each")]) == 0
    (each,) = (tmp_path / "each").iterdir()
    capsys.readouterr()
    assert main(["show", str(each)]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.endswith(", one model per train.lr in [0.1, 0.2]") and "seeds" not in first


# ---- compare and report ---------------------------------------------------------------------------------------


def test_compare_counts_a_row_of_two_trials_recording_two_trials(trial_runs):
    """runs a,b (one row) and d each record trials=2: the row of 2 runs is 2 trials, not "more than listed"."""
    a, b, d = trial_runs
    rows = api.compare([f"{a},{b}", str(d)], 10**6)
    assert [r["trials"] for r in rows] == [2, 2]


def test_compare_reads_trials_keys_as_runs_are_read(trial_runs):
    """--trials "RUN/" (tab completion's slash) names the run RUN: both rows are counted as 3 trials."""
    _, b, d = trial_runs
    rows = api.compare([str(b), str(d)], 10**6, trials={f"{b}/": 3, f"{d}/": 3})
    assert [r["trials"] for r in rows] == [3, 3]


def test_report_refuses_one_folder_named_relatively_and_absolutely(tmp_path, monkeypatch, mlp_run):
    """"runs" from inside tmp and tmp/runs are one folder: refused before anything is written."""
    shutil.copytree(mlp_run, tmp_path / "runs" / mlp_run.name)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(OverlookedError, match=r"more than once \(as the same folder\)"):
        api.report(["runs", str(tmp_path / "runs")], output=tmp_path / "out" / "results.md")
    assert not (tmp_path / "out").exists()


# ---- export-nir and convert -----------------------------------------------------------------------------------


def test_export_nir_force_never_overwrites_a_checkpoint_of_the_run(snn_run):
    """RUN/checkpoints/best.safetensors is a file of the run (one folder down): --force does not write over it."""
    best = snn_run / "checkpoints" / "best.safetensors"
    before = best.read_bytes()
    with pytest.raises(OverlookedError, match="is a file of the run"):
        api.export_nir(snn_run, best, force=True)
    assert best.read_bytes() == before


def test_export_nir_flat_input_from_the_command_line(snn_run, tmp_path, capsys):
    """--flat-input reaches export_nir: the graph reads one flat example of 1*8*8 = 64 values, no Flatten node."""
    out = tmp_path / "flat.nir"
    assert main(["export-nir", str(snn_run), str(out), "--flat-input"]) == 0
    graph = nir.read(str(out))
    assert tuple(graph.nodes["input"].input_type["input"]) == (64,)
    assert not any(type(n).__name__ == "Flatten" for n in graph.nodes.values())


def test_convert_reports_the_headline_steps_within_and_the_steps_simulated(mlp_run, tmp_path):
    """--steps 40: accuracy and energy at T=32 (a headline T <= 40) and T=40 (the last step); 64 > 40 is not."""
    _, s = api.convert(mlp_run, steps=40, calibration=16, limit=8, out=tmp_path)
    assert list(s["snn_test_accuracy"]) == ["32", "40"] and list(s["energy"]) == ["32", "40"]
    assert s["snn_test_accuracy"]["40"] == s["accuracy_curve"][39]


def test_convert_limit_zero_scores_every_test_image(mlp_run, tmp_path, capsys):
    """`convert --limit 0` (the help: "default, or 0: all") scores all 40 test images."""
    assert main(["convert", str(mlp_run), "--limit", "0", "--steps", "4", "--calibration", "16", "--out", str(tmp_path)]) == 0
    (conv,) = tmp_path.iterdir()
    assert json.loads((conv / "summary.json").read_text())["test_examples"] == 40


# ---- resume ---------------------------------------------------------------------------------------------------


def test_a_resume_may_follow_edited_notes_and_out(tmp_path):
    """notes and out are not training settings: editing them in an interrupted run's config.yaml does not
    refuse the resume, which finishes the 2 epochs of 64/16 = 4 steps: 8 steps."""

    class Stop(Callback):
        def on_step_end(self, ctx, loss):
            ctx.stop = ctx.state.step == 3

    cfg = api.load("mlp_mnist", [*SMALL, "data.name=synthetic", "data.kwargs={n_train: 64, n_test: 16, image_shape: [1, 8, 8]}", "model.input_shape=[1,8,8]",
                                 "model.hidden=[8]", "train.epochs=2", "train.batch_size=16", "train.checkpoint_every=1"])
    run, _ = api.train(cfg, out=tmp_path, callbacks=[Stop()])
    config = run / "config.yaml"
    text = config.read_text()
    assert "notes: ''" in text and "out: runs" in text
    config.write_text(text.replace("notes: ''", "notes: resumed on another machine").replace("out: runs", "out: elsewhere"))
    _, summary = api.resume(run)
    assert summary["steps"] == 8


def test_a_run_stopped_by_max_steps_is_not_resumed(mlp_run, tmp_path):
    """a run that reached train.max_steps has nothing to continue: refused, summary.json kept byte for byte."""
    run = _copy(mlp_run, tmp_path)
    before = (run / "summary.json").read_bytes()
    assert json.loads(before)["stopped_by"] == "max_steps"
    with pytest.raises(OverlookedError, match=r"has finished \(stopped by max_steps"):
        api.resume(run)
    assert (run / "summary.json").read_bytes() == before


# ---- bAbI runs (real data) ------------------------------------------------------------------------------------


@pytest.mark.data
def test_a_changed_memory_size_is_the_users_not_pinned(babi_run):
    """data.kwargs.memory_size=20 differs from the run's own: it is not pinned back to the run's size (the
    vocabulary and sentence length still are), and the model, whose temporal table has other rows, is refused."""
    own = api.run_config(babi_run)
    pinned = api._pinned_data_kwargs(babi_run, own, api.apply_overrides(own, ["data.kwargs.memory_size=20"]), None)
    assert "vocab" in pinned and "sentence_len" in pinned and "memory_size" not in pinned
    with pytest.raises(CheckpointError, match="'memory_size': 20"):
        api.load_run(babi_run, data_overrides=["data.kwargs.memory_size=20"])


@pytest.mark.data
def test_a_vocabulary_with_an_inserted_word_is_the_runs_damage(babi_run, tmp_path):
    """vocab.json with one word too many (21 for the model's 20) is refused by evaluate and by ask."""
    run = _copy(babi_run, tmp_path)
    vocab = json.loads((run / "vocab.json").read_text())
    assert len(vocab) == 20
    (run / "vocab.json").write_text(json.dumps(vocab[:3] + ["zebra"] + vocab[3:]))
    said = f"holds 21 words but {run / 'data_meta.json'} says the model reads 20"
    with pytest.raises(CheckpointError) as e:
        api.evaluate(run)
    assert said in str(e.value)
    with pytest.raises(CheckpointError) as e:
        api.ask(run, "Mary moved to the bathroom.", "Where is Mary?", out=run / "ask")
    assert said in str(e.value)


@pytest.mark.data
def test_ask_reads_the_checkpoint_it_is_given(babi_run, tmp_path):
    """ask(checkpoint="last") with best.safetensors gone answers as explain(checkpoint="last") on the same story."""
    run = _copy(babi_run, tmp_path)
    (ex,) = api.explain(run, [0], checkpoint="last", out=run / "x")
    (run / "checkpoints" / "best.safetensors").unlink()
    mine = api.ask(run, ". ".join(ex["story"]) + ".", ex["question"] + "?", checkpoint="last", out=run / "ask")
    assert mine["attention"] == ex["attention"] and mine["predicted"] == ex["predicted"]


@pytest.mark.data
def test_evaluate_prints_group_accuracy_only_with_groups(babi_run, data_dir, capsys):
    """a task-1 run has one group, task 1: its accuracy is printed with --groups, not without."""

    def evaluate(*flags):
        assert main(["evaluate", str(babi_run), "--limit", "50", "--data-dir", str(data_dir), *flags]) == 0
        return json.loads(capsys.readouterr().out)

    assert "group_accuracy" not in evaluate()
    assert list(evaluate("--groups")["group_accuracy"]) == ["1"]


@pytest.mark.data
def test_a_text_model_one_word_short_is_refused_before_any_folder(tmp_path, data_dir):
    """bAbI task 1 holds 20 words; vocab_size=19 (one short) is a ConfigError before the run folder is made."""
    cfg = api.load("lstm_babi1k_single", ["data.kwargs.tasks=[1]", "model.kwargs.vocab_size=19", "train.max_steps=1", *SMALL])
    with pytest.raises(ConfigError, match=r"has vocab_size=19 but the data's vocabulary holds 20 words"):
        api.train(cfg, data_dir=str(data_dir), out=tmp_path / "runs")
    assert not any(tmp_path.rglob("config.yaml"))


def test_evaluate_and_load_run_read_the_best_checkpoint_by_default(mlp_run, tmp_path):
    """Without last.safetensors the defaults still work (they read best); without best.safetensors they are
    refused, and checkpoint='last' is what reads the other file. The weights each loads are the file's own."""
    run = _copy(mlp_run, tmp_path)
    best, last = run / "checkpoints" / "best.safetensors", run / "checkpoints" / "last.safetensors"
    assert best.is_file() and last.is_file()
    moved = tmp_path / "last.safetensors"
    last.rename(moved)
    assert api.evaluate(run)["checkpoint"] == "best"
    weights = read_checkpoint(best)[0]["model.net.1.weight"]
    assert torch.equal(api.load_run(run)[2].net[1].weight.detach(), weights)
    moved.rename(last)
    best.unlink()
    for call in (lambda: api.evaluate(run), lambda: api.load_run(run)):
        with pytest.raises(CheckpointError, match="best"):
            call()
    assert api.evaluate(run, checkpoint="last")["checkpoint"] == "last"
    assert torch.equal(api.load_run(run, checkpoint="last")[2].net[1].weight.detach(), read_checkpoint(last)[0]["model.net.1.weight"])
