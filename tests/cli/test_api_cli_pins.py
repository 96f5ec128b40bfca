"""Behaviour of overlooked.api and overlooked.cli that the mutation audit of 2026-12-08
(results/audits/mutants_api_cli.yaml) found unpinned: each test pins one decision, with the value worked out by
hand. The runs are tiny: synthetic 1x8x8 images (100 training, 10 of them held out, 40 test), an 8-unit MLP."""

from __future__ import annotations

import json

import pytest
import yaml

from overlooked import api
from overlooked.cli import _trial_counts, main
from overlooked.errors import ConfigError, OverlookedError
from overlooked.registry import CALLBACKS
from overlooked.train.callbacks import Callback

SMALL = ["train.progress=false", "train.num_threads=1"]
# 90 training examples, batch 30: 3 steps an epoch
TINY = [*SMALL, "data.name=synthetic", "data.kwargs={n_train: 100, n_test: 40, image_shape: [1, 8, 8]}", "model.input_shape=[1,8,8]", "model.hidden=[8]", "train.batch_size=30"]


def _train(tmp_path, *extra: str):
    return api.train(api.load("mlp_mnist", [*TINY, *extra]), out=tmp_path / "runs")


# ---- evaluate ---------------------------------------------------------------------------------------------------


def test_evaluate_on_other_data_scores_all_of_it_not_the_runs_eval_limit(tmp_path, capsys):
    """train.eval_limit=25 limits what evaluate scores of the run's own data (25 of 40), but other data (a data
    override) is scored whole by default: all 40 test images of the noisier set, through the API and the CLI."""
    run, _ = _train(tmp_path, "train.max_steps=2", "train.eval_limit=25")
    assert api.evaluate(run)["examples"] == 25
    assert api.evaluate(run, data_overrides=["data.kwargs.noise=0.1"])["examples"] == 40
    assert main(["evaluate", str(run), "data.kwargs.noise=0.1"]) == 0
    assert json.loads(capsys.readouterr().out)["examples"] == 40
    assert api.evaluate(run, data_overrides=["data.kwargs.noise=0.1"], limit=7)["examples"] == 7  # an explicit limit still applies


def test_evaluate_refuses_a_whole_data_section_as_an_override(tmp_path):
    """evaluate takes data.* overrides (key paths of two parts or more): `data={...}`, the whole section, is refused
    by name, as a model.* one is."""
    run, _ = _train(tmp_path, "train.max_steps=1")
    whole = "data={name: synthetic, kwargs: {n_train: 100, n_test: 20, image_shape: [1, 8, 8]}}"
    with pytest.raises(ConfigError, match=r"evaluate and explain take data\.\* overrides only"):
        api.evaluate(run, data_overrides=[whole])
    assert api.evaluate(run, data_overrides=["data.kwargs.n_test=20"])["examples"] == 20  # the same data, as data.* overrides


# ---- the command line -------------------------------------------------------------------------------------------


def test_trials_split_run_and_count_at_the_last_equals_sign():
    """An --each value's folder holds '=' (tasks=1): RUN=N splits at the last '='."""
    assert _trial_counts(["runs/x-each/tasks=1=3", "runs/y=2"]) == {"runs/x-each/tasks=1": 3, "runs/y": 2}


@pytest.mark.parametrize("item", ["runs/a=\u00b2", "runs/a=\u0663", "runs/a=-1", "runs/a=", "=3"])
def test_trials_refuse_a_count_that_is_not_ascii_digits_by_name(item):
    """A count is ASCII digits: '\u00b2' passes str.isdigit but int() refuses it (a ValueError traceback before the fix),
    and the Arabic-Indic '\u0663' int() would read as 3; both are refused with the usage line, as a sign or nothing is."""
    with pytest.raises(OverlookedError, match="--trials takes RUN=N"):
        _trial_counts([item])


def test_data_verify_exits_1_when_incomplete(tmp_path, capsys):
    """`overlooked data verify` of a dataset missing from the data folder prints the fix and exits 1."""
    assert main(["data", "verify", "mnist", "--data-dir", str(tmp_path)]) == 1
    assert "Fix: `overlooked data fetch mnist`" in capsys.readouterr().out


@pytest.mark.data
def test_data_verify_exits_0_when_complete(data_dir, capsys):
    assert main(["data", "verify", "mnist", "--data-dir", str(data_dir)]) == 0
    assert "Fix:" not in capsys.readouterr().out


class _StopByCtrlC(Callback):
    def on_step_end(self, ctx, loss):
        if ctx.state.step == 6:
            raise KeyboardInterrupt


def test_an_interrupted_resume_of_one_seed_names_that_seed(tmp_path, capsys, monkeypatch):
    """`train --resume RUN/seed0` interrupted again: the message names RUN/seed0, the folder that was given (its
    parent --repeats folder is what an interrupted `train CONFIG --repeats 2` names)."""
    CALLBACKS.names()
    monkeypatch.setattr(CALLBACKS, "_builders", {**CALLBACKS._builders, "ctrl_c": _StopByCtrlC})
    monkeypatch.setattr(CALLBACKS, "_tags", {**CALLBACKS._tags, "ctrl_c": {}})
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump({"name": "tiny", "data": {"name": "synthetic", "kwargs": {"n_train": 100, "n_test": 40}}, "model": {"name": "mlp", "kwargs": {"hidden": [8]}},
                                   "train": {"epochs": 1, "batch_size": 10, "progress": False, "eval_every": 5, "max_steps": 8, "num_threads": 1}, "callbacks": [{"name": "ctrl_c"}]}))
    assert main(["train", str(cfg), "--repeats", "2", "--out", str(tmp_path / "cut")]) == 130
    (parent,) = (tmp_path / "cut").iterdir()
    assert f"continue with `overlooked train --resume {parent}`" in capsys.readouterr().err
    assert main(["train", "--resume", str(parent / "seed0")]) == 130  # from its step-5 checkpoint, stopped at step 6 again
    assert f"overlooked: interrupted; continue with `overlooked train --resume {parent / 'seed0'}`" in capsys.readouterr().err
