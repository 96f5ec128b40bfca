"""What a new user runs into: settings that would do nothing, a mistyped path, data of another kind, a long
run in a batch job, an interrupted one, output piped into `head`, options in an unexpected place."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from overlooked import api
from overlooked.cli import main
from overlooked.data import store
from overlooked.errors import CheckpointError, ConfigError, DataError, InputError
from overlooked.registry import CALLBACKS
from overlooked.train.callbacks import Callback

TINY = {
    "name": "tiny",
    "data": {"name": "synthetic", "kwargs": {"n_train": 100, "n_test": 40}},
    "model": {"name": "mlp", "kwargs": {"hidden": [16]}},
    "train": {"epochs": 1, "batch_size": 10, "progress": False, "eval_every": 5},
}


def _config(tmp_path, **train):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({**TINY, "train": {**TINY["train"], **train}}))
    return path


def test_settings_of_an_encoder_or_augmentation_the_config_does_not_name_are_refused(tmp_path, capsys):
    """`encoder.steps=4` on a config without an encoder used to be recorded and then ignored by the run."""
    cfg = _config(tmp_path)
    for override, section in (("encoder.steps=4", "encoder"), ("augment.max_shift=2", "augment")):
        assert main(["show", str(cfg), override]) == 2
        err = capsys.readouterr().err
        assert f"{override.split('=')[0]} set, but this config names no {section}, so nothing would use it" in err
        assert f"{section}.name=..." in err
    assert main(["show", str(cfg), "augment.name=random_shift", "augment.max_shift=2"]) == 0  # named: the setting is the augmentation's
    assert "name: random_shift" in capsys.readouterr().out


def test_a_config_without_a_dataset_or_model_says_which_is_missing(tmp_path):
    for body, kind in (("", "dataset"), ("name: b\nmodel: mlp\n", "dataset"), ("name: b\ndata: synthetic\n", "model")):
        path = tmp_path / "c.yaml"
        path.write_text(body)
        with pytest.raises(ConfigError, match=rf"the config names no {kind}: set (data|model)\.name"):
            api.load(str(path))


def test_a_device_that_is_no_device_is_refused_wherever_the_config_is_checked(tmp_path, capsys):
    cfg = _config(tmp_path)
    assert main(["show", str(cfg), "train.device=gpu"]) == 2
    assert "train.device 'gpu' is not a torch device" in capsys.readouterr().err
    assert main(["show", str(cfg), "train.device=meta"]) == 2
    assert "runs on cpu, cuda, cuda:N or mps, not on 'meta'" in capsys.readouterr().err
    assert main(["show", str(cfg), "train.device=cuda:1"]) == 0  # a real device, if not of this machine: checked when a run starts


def test_a_mistyped_init_from_is_named_before_the_data_are_built(tmp_path):
    cfg = api.load("cnn_mnist", [f"train.init_from={tmp_path / 'no_such_run'}"])
    # MNIST's folder does not exist either: building the data first would fail on that instead
    with pytest.raises(CheckpointError, match=r"train.init_from=.*no_such_run \(train.init_checkpoint=best\): .*no_such_run does not exist: pass a run folder"):
        api.train(cfg, data_dir=str(tmp_path / "no_data"), out=tmp_path / "runs")
    (tmp_path / "a_file").write_text("")
    cfg = api.load(str(_config(tmp_path)), [f"train.init_from={tmp_path / 'a_file'}"])
    with pytest.raises(CheckpointError, match=r"a_file is a file: pass a run folder"):
        api.train(cfg, out=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


@pytest.mark.data
def test_evaluating_on_data_the_model_cannot_read_is_one_clear_error(tmp_path, data_dir, capsys):
    """A CNN trained on MNIST loads its weights for N-MNIST (no layer size changes) and then fails inside conv2d:
    the user gets one line that names both datasets, not a traceback."""
    cfg = api.load("cnn_mnist", ["train.max_steps=1", "train.eval_limit=20", "train.progress=false", "train.num_threads=1"])
    run, _ = api.train(cfg, data_dir=str(data_dir), out=tmp_path / "runs")
    assert main(["evaluate", str(run), "data.name=nmnist_small", "--data-dir", str(data_dir)]) == 2
    err = capsys.readouterr().err
    assert f"the model of {run} (small_cnn, trained on mnist" in err and "cannot read the data of ['data.name=nmnist_small']" in err
    assert "RuntimeError: Expected 3D (unbatched) or 4D (batched) input to conv2d" in err and "Traceback" not in err
    assert main(["evaluate", str(run), "--limit", "5", "--groups", "--data-dir", str(data_dir)]) == 0  # MNIST has no groups: said
    assert "this dataset has no groups" in capsys.readouterr().err


def test_only_a_model_that_cannot_read_the_other_data_is_called_a_data_mismatch(tmp_path, monkeypatch):
    """Two examples are scored first; what fails there is the mismatch. Running out of memory there, or any
    failure of the full pass after it, is raised as it is."""
    import overlooked.train.evaluate as E

    run, _ = api.train(api.load(str(_config(tmp_path)), ["train.max_steps=2"]), out=tmp_path / "runs")
    real = E.evaluate

    def failing(message, when):
        def evaluate(model, dataset, *args, **kwargs):
            if when(len(dataset)):
                raise RuntimeError(message)
            return real(model, dataset, *args, **kwargs)

        return evaluate

    monkeypatch.setattr(E, "evaluate", failing("mat1 and mat2 shapes cannot be multiplied", lambda n: True))
    with pytest.raises(InputError, match=r"cannot read the data of \['data.kwargs.n_test=20'\]: RuntimeError: mat1 and mat2"):
        api.evaluate(run, data_overrides=["data.kwargs.n_test=20"])
    monkeypatch.setattr(E, "evaluate", failing("CUDA out of memory. Tried to allocate 20.00 GiB", lambda n: True))
    with pytest.raises(RuntimeError, match="^CUDA out of memory"):
        api.evaluate(run, data_overrides=["data.kwargs.n_test=20"])
    monkeypatch.setattr(E, "evaluate", failing("a bug in the full pass", lambda n: n > 2))
    with pytest.raises(RuntimeError, match="^a bug in the full pass$"):
        api.evaluate(run, data_overrides=["data.kwargs.n_test=20"])
    monkeypatch.setattr(E, "evaluate", real)
    assert api.evaluate(run, data_overrides=["data.kwargs.n_test=20"])["n"] == 20


class _StopByCtrlC(Callback):
    def __init__(self, at_step: int = 6):
        self.at_step = at_step

    def on_step_end(self, ctx, loss):
        if ctx.state.step == self.at_step:
            raise KeyboardInterrupt


@pytest.fixture
def ctrl_c(monkeypatch):
    """A callback named `ctrl_c` that interrupts training at step 6 (or ``at_step``), as Ctrl-C would."""
    CALLBACKS.names()
    monkeypatch.setattr(CALLBACKS, "_builders", {**CALLBACKS._builders, "ctrl_c": lambda at_step=6: _StopByCtrlC(at_step)})
    monkeypatch.setattr(CALLBACKS, "_tags", {**CALLBACKS._tags, "ctrl_c": {}})


def test_train_names_its_folder_at_the_start_and_the_folder_to_resume_after_ctrl_c(tmp_path, capsys, ctrl_c):
    cfg = _config(tmp_path, progress=True)  # pytest's stderr is no terminal: a line of metrics after a validation pass
    assert main(["train", str(cfg), "train.max_steps=6", "--out", str(tmp_path / "runs")]) == 0
    err = capsys.readouterr().err
    (run,) = (tmp_path / "runs").iterdir()
    assert err.startswith(f"run folder: {run}\n")
    first = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])  # the line says what metrics.jsonl holds
    assert f"step {first['step']} (epoch {first['epoch']:.2f}): train loss {first['train_loss']:.4f}" in err
    assert f"val loss {first['val_loss']:.4f} acc {first['val_accuracy']:.4f}" in err
    assert len([line for line in err.splitlines() if line.startswith("step ")]) == 1  # at most one line per 30 s
    assert main(["train", str(cfg), "train.progress=false", "train.max_steps=6", "--out", str(tmp_path / "quiet")]) == 0
    assert "step " not in capsys.readouterr().err  # progress off: no lines

    stop = ["callbacks=[{name: ctrl_c}]", "train.max_steps=8", "train.progress=false"]  # after the checkpoint of step 5
    assert main(["train", str(cfg), *stop, "--repeats", "2", "--out", str(tmp_path / "cut")]) == 130
    (parent,) = (tmp_path / "cut").iterdir()
    err = capsys.readouterr().err
    assert f"run folder: {parent / 'seed0'}" in err  # each seed's folder as it starts; the whole --repeats run to resume
    assert f"overlooked: interrupted; continue with `overlooked train --resume {parent}`" in err
    assert main(["train", "--resume", str(parent)]) == 130  # the callback interrupts the resumed seed again, at step 6
    assert f"overlooked: interrupted; continue with `overlooked train --resume {parent}`" in capsys.readouterr().err
    assert main(["train", str(cfg), *stop, "--out", str(tmp_path / "one")]) == 130
    (one,) = (tmp_path / "one").iterdir()
    assert f"continue with `overlooked train --resume {one}`" in capsys.readouterr().err
    early = ["callbacks=[{name: ctrl_c, kwargs: {at_step: 2}}]", "train.max_steps=8", "train.progress=false"]
    assert main(["train", str(cfg), *early, "--out", str(tmp_path / "early")]) == 130
    assert "interrupted before the run's first checkpoint; nothing was kept" in capsys.readouterr().err
    assert not any((tmp_path / "early").glob("*/config.yaml"))


def test_callbacks_see_the_whole_record_of_a_validation_pass(tmp_path):
    seen = []

    class Record(Callback):
        def on_eval_end(self, ctx, metrics):
            seen.append((ctx.run_dir, dict(metrics)))

    cfg = api.load(str(_config(tmp_path)), ["train.max_steps=5"])
    run, _ = api.train(cfg, out=tmp_path / "runs", callbacks=[Record()])
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [record for _, record in seen] == logged and seen[0][0] == run


class _ClosedPipe:
    """A stdout whose reader has gone: the text it holds cannot be written, now or at a later flush."""

    def __init__(self, fd):
        self.fd, self.held = fd, ""

    def write(self, text):
        self.held += text
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self):
        if self.held:
            raise BrokenPipeError(32, "Broken pipe")

    def fileno(self):
        return self.fd


def test_output_into_a_closed_pipe_ends_quietly_and_another_broken_pipe_does_not(tmp_path, monkeypatch, capsys):
    """`overlooked ... | head`: once the reader has gone, writing raises BrokenPipeError; the command stops with
    exit status 141 (as a process killed by SIGPIPE) and no traceback. A broken pipe of something else (a plugin's
    subprocess) is a genuine error and is raised."""
    with open(tmp_path / "stdout", "w") as spare:  # the fd that the command points at /dev/null
        monkeypatch.setattr(sys, "stdout", _ClosedPipe(spare.fileno()))
        assert main(["list"]) == 141
    monkeypatch.undo()
    plugin = tmp_path / "pipe_plugin.py"
    plugin.write_text("raise BrokenPipeError(32, 'Broken pipe (a subprocess)')\n")
    with pytest.raises(BrokenPipeError, match="a subprocess"):
        main(["--import", str(plugin), "list"])


@pytest.mark.parametrize("unbuffered", ["1", ""])
def test_a_real_pipe_without_a_reader_ends_quietly_buffered_or_not(unbuffered):
    """The same through a real pipe whose reader has already gone, in a process of its own. With
    PYTHONUNBUFFERED=1 no text is left to fail a second flush; the pipe itself says its reader is gone."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # no reader from the start, as after `| head` has quit
    env = {**os.environ, "PYTHONUNBUFFERED": unbuffered}
    try:
        done = subprocess.run([sys.executable, "-m", "overlooked", "list"], stdout=write_end, stderr=subprocess.PIPE, env=env, timeout=120)
    finally:
        os.close(write_end)
    assert done.returncode == 141 and "Traceback" not in done.stderr.decode(), done.stderr.decode()


def test_the_folder_to_resume_is_the_runs_own_container_and_no_folder_above_it(tmp_path, monkeypatch):
    from overlooked.cli import _top_of

    (tmp_path / "config.yaml").write_text("name: mine\n")  # a user's own config above the runs
    single = tmp_path / "tiny-1"
    single.mkdir()
    (single / "config.yaml").write_text("train: {repeats: 1}\n")
    assert _top_of(single) == single
    rep = tmp_path / "tiny-2"
    (rep / "seed3").mkdir(parents=True)
    (rep / "config.yaml").write_text("train: {repeats: 2, seed: 3}\n")
    assert _top_of(rep / "seed3") == rep
    each = tmp_path / "tiny-each-3"
    (each / "tasks=1" / "seed0").mkdir(parents=True)
    (each / "each.json").write_text("{}")
    (each / "config.yaml").write_text("train: {repeats: 2}\n")
    (each / "tasks=1" / "config.yaml").write_text("train: {repeats: 2}\n")
    assert _top_of(each / "tasks=1" / "seed0") == each and _top_of(each / "tasks=1") == each
    monkeypatch.chdir(tmp_path)
    assert _top_of(Path(".")) == Path(".")  # --out . beside a config.yaml: no climbing, no endless loop


def test_data_commands_take_a_configs_dataset_name_where_it_names_one_download(tmp_path, capsys):
    assert main(["data", "path", "gas_drift", "--data-dir", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(tmp_path / "uci_gas_sensor_drift") and "gas_drift (a config's dataset) reads the download uci_gas_sensor_drift" in captured.err
    assert main(["data", "verify", "affnist_style", "--data-dir", str(tmp_path)]) == 2
    assert "affnist_style is a config's dataset name; it reads the downloads mnist and affnist" in capsys.readouterr().err
    assert main(["data", "fetch", "synthetic", "--data-dir", str(tmp_path)]) == 2
    assert "synthetic is a config's dataset name; it downloads nothing" in capsys.readouterr().err


def test_a_mirror_may_be_a_local_path_of_the_kind_the_dataset_downloads(tmp_path, data_dir):
    """A folder of files for a dataset fetched file by file; the archive itself for one fetched as an archive."""
    files = tmp_path / "files"
    files.mkdir()
    for check in store.dataset_files("mnist"):
        (files / check.path.split("/")[-1]).write_bytes((data_dir / check.path).read_bytes())
    assert store.fetch("mnist", tmp_path / "root", mirrors=[str(files)]) == tmp_path / "root"  # no trailing slash either
    assert store.verify("mnist", tmp_path / "root").complete
    with pytest.raises(DataError, match="babi is downloaded as one archive, so a mirror is the archive itself, not a folder"):
        store.fetch("babi", tmp_path / "root2", mirrors=[str(files)])
    with pytest.raises(DataError, match="babi is downloaded as one archive, so a mirror is the archive itself, not a folder"):
        store.fetch("babi", tmp_path / "root2", mirrors=[files.as_uri()])
    with pytest.raises(DataError, match="mnist is downloaded file by file, so a mirror is a folder"):
        store.fetch("mnist", tmp_path / "root3", mirrors=[str(files / "t10k-labels-idx1-ubyte.gz")])
    with pytest.raises(DataError, match=r"mirror '/no/such/place' is neither a URL \(https://..., file://...\) nor an existing path"):
        store.fetch("mnist", tmp_path / "root3", mirrors=["/no/such/place"])


def test_two_runs_started_in_the_same_second_get_two_folders(tmp_path, monkeypatch):
    """The name is claimed by making the folder: before, a name was only chosen, so two runs of a job array
    started in the same second were handed one folder and wrote into it together."""
    import datetime as dt

    class Frozen(dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return cls(2026, 12, 6, 4, 30, 0)

    monkeypatch.setattr(api._dt, "datetime", Frozen)
    first, second = api.new_run_dir(tmp_path / "runs", "tiny"), api.new_run_dir(tmp_path / "runs", "tiny")
    assert (first.name, second.name) == ("tiny-20261206-043000", "tiny-20261206-043000-1") and first.is_dir() and second.is_dir()
    cfg = api.load(str(_config(tmp_path)), ["train.max_steps=2"])
    run, _ = api.train(cfg, out=tmp_path / "runs")
    assert run.name == "tiny-20261206-043000-2" and (run / "summary.json").is_file()
    bad = api.load(str(_config(tmp_path)), ["train.max_steps=2", "data.kwargs.n_test=0"])  # refused when the data are built
    with pytest.raises(ConfigError, match="test split"):
        api.train(bad, out=tmp_path / "other")
    assert not (tmp_path / "other").exists()  # the claimed folder and the parent made for it are gone again


def _summary(seed, train, val, test, groups):
    return {"seed": seed, "train_accuracy": train, "val_accuracy": val, "test_accuracy": test, "wall_time_s": 1.0, "test_group_accuracy": groups}


def test_the_selection_rules_say_which_seeds_tied_and_break_ties_by_the_first():
    """Several seeds at 100% training accuracy are common on bAbI: the paper's rule then picks the first of them,
    blind to test, and the summary names the tied seeds so that the spread the tie leaves can be read."""
    runs = [_summary(0, 0.9, 0.80, 0.70, {"1": 0.7}), _summary(1, 1.0, 0.85, 0.60, {"1": 0.6}), _summary(2, 1.0, 0.85, 0.95, {"1": 0.95})]
    agg = api.aggregate(runs)
    assert agg["best_by_train"]["seed"] == 1 and agg["best_by_train"]["tied_seeds"] == [1, 2] and agg["best_by_train"]["tie_break"] == "the first seed"
    assert agg["best_by_val"]["seed"] == 1 and agg["best_by_val"]["tied_seeds"] == [1, 2]
    assert "tied_seeds" not in api.aggregate(runs[:2])["best_by_train"]


def test_a_sweep_of_another_setting_over_the_same_tasks_keeps_each_values_tasks():
    """`--each model.kwargs.hops=1,2 data.tasks=[1]`: both values answer task 1, so one table of tasks would hold
    only the last value's; the merged summary keeps them per value beside the mean over values."""
    cfg = api.load("memn2n_babi1k")
    subs = {"1": {**_summary(0, 1.0, 0.9, 0.047, {"1": 0.047}), "name": "x"}, "2": {**_summary(0, 1.0, 0.9, 0.163, {"1": 0.163}), "name": "x"}}
    merged = api.merge_each(subs, cfg, "model.kwargs.hops", [1, 2])
    assert "test_group_accuracy" not in merged and merged["test_group_accuracy_by_value"] == {"1": {"1": 0.047}, "2": {"1": 0.163}}
    assert merged["test_accuracy"] == pytest.approx(0.105)
    tasks = {"1": {**_summary(0, 1.0, 0.9, 0.5, {"1": 0.5}), "name": "x"}, "2": {**_summary(0, 1.0, 0.9, 0.7, {"2": 0.7}), "name": "x"}}
    assert api.merge_each(tasks, cfg, "data.tasks", [1, 2])["test_group_accuracy"] == {"1": 0.5, "2": 0.7}
    rep = {v: {**api.aggregate([_summary(0, 1.0, 0.9, a, {"1": a}), _summary(1, 1.0, 0.9, a, {"1": a})]), "name": "x"} for v, a in (("1", 0.2), ("2", 0.4))}
    merged = api.merge_each(rep, api.load("memn2n_babi1k", ["train.repeats=2"]), "model.kwargs.hops", [1, 2])
    assert merged["best_by_train"]["test_group_accuracy_by_value"] == {"1": {"1": 0.2}, "2": {"1": 0.4}} and merged["best_by_train"]["seed_per_value"] == {"1": 0, "2": 0}
    assert merged["group_error_mean_by_value"]["2"]["1"] == pytest.approx(60.0)


@pytest.mark.data
def test_train_prints_the_babi_papers_two_numbers_for_each_rule(tmp_path, data_dir, capsys):
    """Mean test error over the tasks and tasks failed (error > 5%), for each selection rule, computed from the
    merged summary's per-task accuracies."""
    argv = ["train", "memn2n_babi1k", "--each", "data.tasks=1,2", "--repeats", "2", "train.epochs=1", "train.num_threads=1", "train.progress=false"]
    assert main([*argv, "--data-dir", str(data_dir), "--out", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    (run,) = (tmp_path / "runs").iterdir()
    merged = json.loads((run / "summary.json").read_text())
    for rule in ("best_by_train", "best_by_val"):
        errors = [round(100 * (1 - a), 6) for a in merged[rule]["test_group_accuracy"].values()]
        failed = sum(e > 5 for e in errors)
        assert f"{rule} groups: mean test error {sum(errors) / 2:.2f}% over 2, {failed} failed (error > 5%)" in out
