"""The command line: train a few steps, evaluate the result, help on every subcommand, clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import yaml

from overlooked import api
from overlooked.bench.fair import UnfairComparisonError
from overlooked.cli import build_parser, main
from overlooked.config import ConfigWarning
from overlooked.errors import OverlookedError
from overlooked.registry import MODELS

TINY = {
    "name": "tiny",
    "data": {"name": "synthetic", "kwargs": {"n_train": 100, "n_test": 40}},
    "model": {"name": "mlp", "kwargs": {"hidden": [16]}},
    "train": {"epochs": 1, "batch_size": 10, "progress": False, "eval_every": 5},
}


def _config(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


def test_train_then_evaluate(tmp_path, capsys):
    assert main(["train", str(_config(tmp_path)), "train.max_steps=6", "--out", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    assert "test_accuracy:" in out and "run folder:" in out
    (run,) = (tmp_path / "runs").iterdir()
    for name in ("config.yaml", "environment.json", "metrics.jsonl", "summary.json", "checkpoints/best.safetensors", "checkpoints/last.safetensors"):
        assert (run / name).is_file(), name
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 6 and summary["examples_seen"] == 60
    ci = summary["test_accuracy_ci95"]  # Wilson interval over the 40 test examples
    assert ci["n"] == 40 and ci["k"] == round(40 * summary["test_accuracy"]) and ci["low"] <= summary["test_accuracy"] <= ci["high"]
    assert main(["evaluate", str(run), "--split", "test"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["n"] == 40 and res["accuracy"] == pytest.approx(summary["test_accuracy"])
    env = json.loads((run / "environment.json").read_text())
    assert {"torch", "python", "git_commit", "device", "argv"} <= set(env)


def test_evaluate_on_other_data_takes_data_overrides_only(tmp_path, capsys):
    assert main(["train", str(_config(tmp_path)), "train.max_steps=2", "--out", str(tmp_path / "runs")]) == 0
    (run,) = (tmp_path / "runs").iterdir()
    capsys.readouterr()
    assert main(["evaluate", str(run), "data.kwargs.n_test=24"]) == 0  # the same model on a 24-example test set
    res = json.loads(capsys.readouterr().out)
    assert res["n"] == 24 and res["data_overrides"] == ["data.kwargs.n_test=24"] and res["data"]["kwargs"]["n_test"] == 24
    assert main(["evaluate", str(run), "model.kwargs.hidden=[8]"]) == 2  # would not match the checkpoint
    err = capsys.readouterr().err
    assert "data.* overrides only" in err and "model.kwargs.hidden" in err


def test_unknown_key_exits_2_with_message(tmp_path, capsys):
    assert main(["train", str(_config(tmp_path)), "train.learning_rate=1", "--out", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert "unknown config key" in err and "train.learning_rate" in err and "lr" in err
    assert not (tmp_path / "runs").exists()  # failed before any work


def test_every_subcommand_has_help():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(sub.choices) == {"train", "evaluate", "explain", "ask", "bench", "demo", "report", "show", "list", "data", "export-nir", "convert"}
    for name in sub.choices:
        with pytest.raises(SystemExit) as exc:
            parser.parse_args([name, "--help"])
        assert exc.value.code == 0


def test_python_dash_m_version():
    out = subprocess.run([sys.executable, "-m", "overlooked", "--version"], capture_output=True, text=True, check=True).stdout
    assert out.startswith("overlooked ")


def test_list_prints_registries(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "models:" in out and "small_cnn" in out and "configs:" in out and "cnn_mnist" in out


def test_export_nir_refuses_non_spiking_model(tmp_path, capsys):
    assert main(["train", str(_config(tmp_path)), "train.max_steps=2", "--out", str(tmp_path / "runs")]) == 0
    (run,) = (tmp_path / "runs").iterdir()
    capsys.readouterr()
    assert main(["export-nir", str(run), str(tmp_path / "m.nir")]) == 2
    assert "is not a spiking model" in capsys.readouterr().err


def test_resume_of_a_non_run_is_clear(tmp_path, capsys):
    assert main(["train", "--resume", str(tmp_path)]) == 2
    assert "not a run folder" in capsys.readouterr().err
    demo = tmp_path / "demo-1"  # as `overlooked demo memory` writes: its run one folder down, which is named
    (demo / "memn2n_babi_1_2").mkdir(parents=True)
    (demo / "memn2n_babi_1_2" / "config.yaml").write_text("name: x\n")
    assert main(["evaluate", str(demo)]) == 2
    assert f"is not a run folder (no config.yaml); pass the folder `overlooked train` printed, or one of the runs inside it: {demo / 'memn2n_babi_1_2'}" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, said",
    [
        (["train.lr=0.1", "train.lr=0.2"], "'train.lr=0.1' and 'train.lr=0.2' both set train.lr"),
        (["model.hidden=[8]", "model.kwargs.hidden=[4]"], "'model.hidden=[8]' and 'model.kwargs.hidden=[4]' both set model.kwargs.hidden"),
        (["train.seed=3", "--seed", "5"], "'train.seed=3' and --seed 5 both set train.seed"),
        (["--each", "train.lr=0.1,0.2", "train.lr=0.3"], "'train.lr=0.3' and --each train.lr=0.1,0.2 both set train.lr"),
        (["--each", "model.kwargs={hidden: [8]}", "model.hidden=[4]"], "'model.hidden=[4]' and --each model.kwargs={hidden: [8]} both set model.kwargs.hidden"),
        (["--each", "train.seed=1,2", "--each", "train.lr=0.1"], "--each given 2 times (train.seed=1,2, train.lr=0.1); one --each"),
    ],
)
def test_a_setting_given_twice_on_the_command_line_is_refused_before_anything_runs(tmp_path, capsys, args, said):
    """Before: the last one won without a word (a second --each replaced the first, an override beside --each
    was dropped for the --each values)."""
    assert main(["train", str(_config(tmp_path)), *args, "--out", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert said in err, err
    assert not (tmp_path / "runs").exists()
    assert main(["show", str(_config(tmp_path)), "train.epochs=2", "train.epochs=3"]) == 2
    assert "both set train.epochs" in capsys.readouterr().err


@pytest.mark.data
@pytest.mark.slow
def test_train_cnn_on_mnist_through_cli(tmp_path, data_dir, capsys):
    args = ["train", "cnn_mnist", "train.max_steps=30", "train.eval_every=30", "train.progress=false", "train.report_train=false"]
    args += ["--data-dir", str(data_dir), "--out", str(tmp_path)]  # (not scoring the 54,000 training images halves the test)
    assert main(args) == 0
    (run,) = tmp_path.iterdir()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["dataset"] == "mnist" and summary["test_accuracy"] > 0.5  # 30 steps already learn something


def test_each_runs_one_model_per_value_and_merges_groups(tmp_path, capsys):
    path = _each_config(tmp_path)
    assert main(["train", str(path), "train.max_steps=2", "--each", "data.seed=1,2", "--out", str(tmp_path / "runs")]) == 0
    (run,) = (tmp_path / "runs").iterdir()
    assert sorted(p.name for p in run.iterdir() if p.is_dir()) == ["seed=1", "seed=2"]
    merged = json.loads((run / "summary.json").read_text())
    subs = [json.loads((run / name / "summary.json").read_text()) for name in ("seed=1", "seed=2")]
    assert merged["test_accuracy"] == pytest.approx((subs[0]["test_accuracy"] + subs[1]["test_accuracy"]) / 2)
    assert merged["each"] == {"key": "data.seed", "values": [1, 2]}
    assert merged["flops_per_example"] == pytest.approx((subs[0]["flops_per_example"] + subs[1]["flops_per_example"]) / 2)
    assert merged["trials"] == 1 and len(merged["data_fingerprint"]) == 16 and len(merged["test_fingerprint"]) == 16
    assert all(len(sub["test_fingerprint"]) == 16 for sub in subs) and subs[0]["test_fingerprint"] != subs[1]["test_fingerprint"]  # data.seed draws other test data here


def test_bench_compare_takes_each_runs_and_refuses_other_splits(tmp_path, capsys):
    """Merged `--each` folders carry one fingerprint of all their splits: the same values give the same
    fingerprint (compare accepts them), other values another one (compare refuses the pair)."""
    path = _each_config(tmp_path)
    for values in ("1,2", "1,2", "1,3"):
        assert main(["train", str(path), "train.max_steps=2", "--each", f"data.seed={values}", "--out", str(tmp_path / "runs" / values.replace(",", "_"))]) == 0
    same = sorted(str(p) for p in (tmp_path / "runs" / "1_2").iterdir())
    assert len(same) == 2  # two folders, one per launch
    (other,) = (tmp_path / "runs" / "1_3").iterdir()
    capsys.readouterr()
    assert main(["bench", "compare", "--runs", *same, "--max-examples", "1000"]) == 0
    assert main(["bench", "compare", "--runs", same[0], str(other), "--max-examples", "1000"]) == 2
    assert "different data splits" in capsys.readouterr().err


def test_overrides_may_follow_options(tmp_path, capsys):
    assert main(["train", str(_config(tmp_path)), "--out", str(tmp_path / "runs"), "train.max_steps=3", "--seed", "1", "train.lr=0.01"]) == 0
    (run,) = (tmp_path / "runs").iterdir()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 3 and summary["seed"] == 1
    with pytest.raises(SystemExit):
        main(["list", "--bogus"])


def test_bench_compare_enforces_the_fair_rule(tmp_path, capsys):
    for name, hidden in (("a", [8]), ("b", [16])):
        cfg = dict(TINY, name=name, model={"name": "mlp", "kwargs": {"hidden": hidden}})
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(cfg))
        assert main(["train", str(tmp_path / f"{name}.yaml"), "train.max_steps=3", "--out", str(tmp_path / "runs")]) == 0
    runs = sorted(str(p) for p in (tmp_path / "runs").iterdir())
    capsys.readouterr()
    assert main(["bench", "compare", "--runs", *runs, "--max-examples", "30"]) == 0
    out = capsys.readouterr().out
    assert "params" in out and out.count("mlp") == 2
    assert main(["bench", "compare", "--runs", *runs, "--max-examples", "20"]) == 2  # each saw 30 examples
    assert "over the budget of 20" in capsys.readouterr().err
    # a run from before `trials` was recorded: named, never taken as 1; --trials states it; --unfair prints the
    # table with the breach named beneath it (exit 0)
    summary_path = Path(runs[1]) / "summary.json"
    summary = json.loads(summary_path.read_text())
    del summary["trials"]
    summary_path.write_text(json.dumps(summary))
    assert main(["bench", "compare", "--runs", *runs, "--max-examples", "30"]) == 2
    assert "does not record its hyper-parameter trials" in capsys.readouterr().err
    assert main(["bench", "compare", "--runs", *runs, "--max-examples", "30", "--trials", f"{runs[1]}=1"]) == 0
    capsys.readouterr()
    assert main(["bench", "compare", "--runs", *runs, "--max-examples", "30", "--trials", f"{runs[1]}=12"]) == 2
    assert "used 12 hyper-parameter trials, more than 6" in capsys.readouterr().err
    assert main(["bench", "compare", "--runs", *runs, "--max-examples", "30", "--trials", f"{runs[1]}=12", "--unfair"]) == 0
    out = capsys.readouterr().out
    assert out.count("\nmlp ") == 2 and "NOT a fair comparison (docs/fair_comparison.md):" in out and "different numbers of hyper-parameter trials" in out
    assert main(["bench", "compare", "--runs", *runs, "--max-examples", "30", "--trials", f"{runs[0]}=3", f"{runs[1]}=3"]) == 0  # more than recorded
    assert f"trials restated: {runs[0]}: its summary records trials=1, --trials states 3" in capsys.readouterr().out
    summary_path.write_text(json.dumps({**summary, "trials": 4}))  # --trials never lowers a recorded count (a review: 4 passed as 1)
    assert main(["bench", "compare", "--runs", *runs, "--max-examples", "30", "--trials", f"{runs[0]}=1", f"{runs[1]}=1"]) == 2
    assert f"--trials {runs[1]}=1 is fewer than the 4 trials its summary records" in capsys.readouterr().err
    assert main(["bench", "compare", "--runs", *runs, "--max-examples", "30", "--trials", "elsewhere=3"]) == 2
    assert "--trials names elsewhere, which --runs does not list" in capsys.readouterr().err


def test_bench_compare_chooses_a_rows_trials_on_validation(tmp_path, capsys):
    """`--runs A,B,C` is one row's trials: the row is the trial with the best validation accuracy (never test),
    counted as len(group) trials for the fair rule; ties go to the first listed. A group's breaches (a trial over
    the budget, init_from counted; other splits; other validation sizes) are refused, or named under --unfair;
    malformed groups (other models, no finite validation accuracy, more trials recorded than listed, --trials
    naming a member) are errors."""
    for name, hidden in (("a", [8]), ("b", [16]), ("c", [4]), ("d", [12])):
        cfg = dict(TINY, name=name, model={"name": "mlp", "kwargs": {"hidden": hidden}})
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(cfg))
        assert main(["train", str(tmp_path / f"{name}.yaml"), "train.max_steps=3", "--out", str(tmp_path / "runs" / name)]) == 0
    a, b, c, d = (str(next((tmp_path / "runs" / n).iterdir())) for n in "abcd")

    def edit(run, **values):
        path = Path(run) / "summary.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), **values}))

    def restore():
        for r, text in originals.items():
            (Path(r) / "summary.json").write_text(text)

    edit(a, val_accuracy=0.50, test_accuracy=0.90)  # best on test, worst on validation
    edit(b, val_accuracy=0.70, test_accuracy=0.60)
    edit(c, val_accuracy=0.70, test_accuracy=0.10)  # ties with b, listed after it
    edit(d, trials=3)
    originals = {r: (Path(r) / "summary.json").read_text() for r in (a, b, c, d)}
    capsys.readouterr()
    rows = api.compare([f"{a},{b},{c}", d], 30)
    assert [r["run"] for r in rows] == [b, d] and rows[0]["trials"] == 3 and rows[0]["test_accuracy"] == 0.60
    assert rows[0]["candidates"] == {a: 0.5, b: 0.7, c: 0.7}
    out = capsys.readouterr().out
    assert f"chosen on validation among 3 trials: {a} val 0.5000; {b} val 0.7000 <- chosen; {c} val 0.7000" in out
    assert "recipes differ" not in out
    # a recipe difference the rule does not judge is named under the table
    raw = yaml.safe_load((Path(d) / "config.yaml").read_text())
    (Path(d) / "config.yaml").write_text(yaml.safe_dump({**raw, "augment": {"name": "random_shift", "kwargs": {"max_shift": 2}}, "train": {**raw["train"], "ema_decay": 0.999}}))
    api.compare([f"{a},{b},{c}", d], 30)
    out = capsys.readouterr().out
    assert f'recipes differ in augmentation (augment), which the rule leaves to the table\'s prose: {b}: none; {d}: random_shift {{"max_shift": 2}}' in out
    assert f"recipes differ in weight averaging (train.ema_decay), which the rule leaves to the table's prose: {b}: none; {d}: 0.999" in out
    (Path(d) / "config.yaml").write_text("{damaged")
    api.compare([f"{a},{b},{c}", d], 30)  # a damaged config only makes the note read "unknown"
    assert f"{d}: unknown" in capsys.readouterr().out
    (Path(d) / "config.yaml").write_text(yaml.safe_dump(raw))
    # the same trials listed one per row: unequal counts (1 each against d's 3) break rule 3
    assert main(["bench", "compare", "--runs", a, d, "--max-examples", "30"]) == 2
    # --trials may restate the group as written, never one of its members
    assert main(["bench", "compare", "--runs", f"{a},{b},{c}", d, "--max-examples", "30", "--trials", f"{a},{b},{c}=3"]) == 0
    assert main(["bench", "compare", "--runs", f"{a},{b},{c}", d, "--max-examples", "30", "--trials", f"{a},{b},{c}=5", f"{d}=5"]) == 0
    assert f"trials restated: {a},{b},{c}: its trials count trials=3, --trials states 5" in capsys.readouterr().out
    with pytest.raises(OverlookedError, match=f"--trials {a},{b},{c}=1 is fewer than the 3 trials the row chose among"):
        api.compare([f"{a},{b},{c}", d], 30, trials={f"{a},{b},{c}": 1})
    for member in (a, b):  # not chosen, chosen: both refused the same way
        with pytest.raises(OverlookedError, match=f"a trial of the row {a},{b},{c}; name the row as written"):
            api.compare([f"{a},{b},{c}", d], 30, trials={member: 3})
    with pytest.raises(OverlookedError, match="named more than once"):
        api.compare([f"{a},{b}", f"{b},{c}"], 30)
    with pytest.raises(OverlookedError, match="empty name between commas"):
        api.compare([f"{a},", d], 30)
    # breaches of the rule inside a group: refused, or named under --unfair
    edit(a, examples_seen=10, init_from={"run": "x", "examples_seen": 25})  # 35 counted, not chosen
    with pytest.raises(UnfairComparisonError, match=f"trial {a} saw 35 training examples, over the budget of 30"):
        api.compare([f"{a},{b},{c}", d], 30)
    rows = api.compare([f"{a},{b},{c}", d], 30, unfair=True)
    assert [r["run"] for r in rows] == [b, d]
    assert "NOT a fair comparison (docs/fair_comparison.md): trial" in capsys.readouterr().out
    restore()
    for run, change, runs, error, match in (
        (c, {"data_fingerprint": "0123456789abcdef"}, [f"{b},{c}", a], UnfairComparisonError, "the trials of one row differ in data splits"),
        (c, {"val_examples": 7}, [f"{b},{c}", a], UnfairComparisonError, "differ in numbers of validation examples"),
        (c, {"model": "transformer"}, [f"{b},{c}", a], OverlookedError, "are of different models"),  # malformed groups from here
        (d, {"trials": 5}, [f"{c},{d}", a], OverlookedError, "records trials=5, more than the 2 listed"),
    ):
        edit(run, **change)
        with pytest.raises(error, match=match):
            api.compare(runs, 30)
        restore()
    for bad in (None, True, float("nan")):
        edit(b, val_accuracy=bad)
        with pytest.raises(OverlookedError, match="records no single finite val_accuracy" if bad is None else "is damaged or edited: val_accuracy is"):
            api.compare([f"{a},{b}", d], 30)
    restore()
    # a run folder whose name holds a comma is one run, not a group
    comma = Path(a).parent / "x,y"
    Path(a).rename(comma)
    rows = api.compare([str(comma), b], 30)
    assert [r["run"] for r in rows] == [str(comma), b]


def test_each_with_repeats_prints_the_paper_rule_summary(tmp_path, capsys):
    """`--each` with `--repeats`: each value's run is chosen by the rule; the summary and the CLI give their mean."""
    path = _each_config(tmp_path)
    assert main(["train", str(path), "train.max_steps=2", "--each", "data.seed=1,2", "--repeats", "2", "--out", str(tmp_path / "runs")]) == 0
    (run,) = (tmp_path / "runs").iterdir()
    merged = json.loads((run / "summary.json").read_text())
    chosen = [json.loads((run / name / "summary.json").read_text())["best_by_train"]["test_accuracy"] for name in ("seed=1", "seed=2")]
    assert merged["best_by_train"]["test_accuracy"] == pytest.approx(sum(chosen) / 2)
    assert f"best_by_train: test_accuracy {sum(chosen) / 2:.4f}" in capsys.readouterr().out


def test_each_expands_ranges_inside_a_list(tmp_path, capsys):
    """`--each data.seed=1,3..4`: ranges are inclusive and may sit in a comma list (bAbI 10k: 1,2,4..20)."""
    path = _each_config(tmp_path)
    assert main(["train", str(path), "train.max_steps=1", "--each", "data.seed=1,3..4", "--out", str(tmp_path / "runs")]) == 0
    (run,) = (tmp_path / "runs").iterdir()
    assert json.loads((run / "summary.json").read_text())["each"]["values"] == [1, 3, 4]


def test_each_takes_grouped_values_and_overrides_take_ranges(tmp_path, capsys):
    path = _each_config(tmp_path)
    assert main(["train", str(path), "train.max_steps=1", "--each", "model.hidden=[8,4],[6]", "--out", str(tmp_path / "runs")]) == 0
    (run,) = (tmp_path / "runs").iterdir()
    assert json.loads((run / "summary.json").read_text())["each"]["values"] == [[8, 4], [6]]
    assert sorted(p.name for p in run.iterdir() if p.is_dir()) == ["hidden=[6]", "hidden=[8, 4]"]
    assert main(["train", str(path), "--each", "model.hidden=[8,4],[6", "--out", str(tmp_path / "other")]) == 2
    assert "its brackets do not balance; write grouped values as [1,2],[3]" in capsys.readouterr().err
    # one bracketed list is one value: one run on all of it, which a user meaning one run per item is told
    assert main(["train", str(path), "train.max_steps=1", "--each", "model.hidden=[8,4]", "--out", str(tmp_path / "one")]) == 0
    assert "note: --each model.hidden=[8,4] is one value, the list [8, 4], so one run on all of it; for one run per item write --each model.hidden=8,4" in capsys.readouterr().err
    from overlooked.config import ConfigError, parse_override

    assert parse_override("data.tasks=2..4") == (["data", "tasks"], [2, 3, 4])
    with pytest.raises(ConfigError, match=r"the range '4\.\.2' is empty"):
        parse_override("data.tasks=4..2")


def test_each_values_cannot_leave_the_folder_be_empty_or_run_away(tmp_path, capsys):
    """Found by an adversarial review: a value's text names its run folder, so a '/' or '..' put a run over
    another run (a finished one was overwritten); an empty item crashed; a typo'd range filled the memory
    before any check; thousands of bad values printed thousands of lines."""
    path = _each_config(tmp_path)
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "summary.json").write_text('{"kept": true}')
    out = tmp_path / "runs" / "a"
    assert main(["train", str(path), "train.max_steps=1", "--each", "notes=../../../victim,x", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "values name their run folders (notes=VALUE, inside the --each folder), so none may climb out of it: '../../../victim'" in err
    assert (victim / "summary.json").read_text() == '{"kept": true}' and not out.exists()  # nothing started
    for bad in ("/abs/path", "a/../../b"):
        assert main(["train", str(path), "--each", f"notes={bad},x", "--out", str(out)]) == 2
        assert "so none may climb out of it" in capsys.readouterr().err
    # a relative path without '..' (e.g. train.init_from=runs/a,runs/b) still names nested folders inside it
    assert main(["train", str(path), "train.max_steps=1", "--each", "notes=sub/a,sub/b", "--out", str(tmp_path / "nested")]) == 0
    (nested,) = (tmp_path / "nested").iterdir()
    assert (nested / "notes=sub" / "a" / "summary.json").is_file() and (nested / "notes=sub" / "b" / "summary.json").is_file()
    capsys.readouterr()
    assert main(["train", str(path), "--each", "data.seed=1,,2", "--out", str(out)]) == 2
    assert "item 2 is empty" in capsys.readouterr().err
    assert main(["train", str(path), "--each", "data.seed=1,", "--out", str(out)]) == 2
    assert "item 2 is empty" in capsys.readouterr().err
    assert main(["show", "memn2n_babi1k", "data.tasks=1..1000000000"]) == 2
    assert "the range '1..1000000000' has 1,000,000,000 values" in capsys.readouterr().err
    assert main(["train", "memn2n_babi1k", "--each", "data.tasks=1..2000", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "1980 of 2000 value(s) cannot run" in err and "... and 1970 more message(s)" in err and err.count("\n") <= 13
    assert main(["train", "memn2n_babi1k", "data.tasks=1..5000", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "got 5,000 values, 21, 22, 23, 24, 25, ... among them" in err and len(err) < 400
    assert main(["train", "memn2n_babi1k", "data.kwargs.tasks=null", "--out", str(out)]) == 2
    assert "tasks must be 'all', an int 1..20 or a list of them; got None" in capsys.readouterr().err


def test_a_run_file_for_its_folder_and_a_section_of_the_wrong_type_are_named(tmp_path, capsys):
    """An adversarial review's: RUN/config.yaml given for RUN said "not a run folder (no config.yaml)"; a
    section given a scalar said "model.: expected a mapping of Component fields" (a trailing dot, a class name)."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("name: x\n")
    (run / "summary.json").write_text("{}")
    for given in (run / "config.yaml", run / "summary.json"):
        with pytest.raises(OverlookedError, match=rf"{given} is a file of the run folder {run}; pass the folder itself"):
            api.run_config(given)
    assert main(["show", "memn2n_babi1k", "model=3"]) == 2
    assert "model: expected a mapping with the keys name, kwargs (or a name alone: model: memn2n), got int 3" in capsys.readouterr().err


def test_a_yaml_file_names_where_component_arguments_go(tmp_path, capsys):
    cfg = dict(TINY, data={"name": "synthetic", "n_train": 60})
    path = tmp_path / "flat.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["train", str(path), "--out", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert "unknown config key(s) data.n_train; allowed in data: name, kwargs (a builder argument goes under kwargs: data.kwargs: {n_train: ...}; the shorthand data.n_train=... is for command-line overrides)" in err
    callbacks = dict(TINY, callbacks=[{"name": "linear_start", "patience": 2}])
    path.write_text(yaml.safe_dump(callbacks))
    assert main(["train", str(path), "--out", str(tmp_path / "runs")]) == 2
    assert "(a builder argument goes under kwargs: callbacks[0].kwargs: {patience: ...})" in capsys.readouterr().err  # no shorthand there


def _each_config(tmp_path):
    """A tiny synthetic-data config file for the --each tests."""
    cfg = dict(TINY, data={"name": "synthetic", "kwargs": {"n_train": 60, "n_test": 20, "num_classes": 3}})
    path = tmp_path / "each.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_bench_and_demo_help_name_every_registered_family(capsys):
    """The help lists are written out by hand; a new benchmark or demo must be added to them."""
    from overlooked import catalog
    from overlooked.cli import build_parser
    from overlooked.registry import BENCHMARKS, DEMOS

    catalog.load_all()
    for command, registry in (("bench", BENCHMARKS), ("demo", DEMOS)):
        with pytest.raises(SystemExit):
            build_parser().parse_args([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert all(name in text for name in registry.names()), (command, registry.names())


def test_data_path_prints_the_root_or_a_datasets_folder(tmp_path, capsys):
    assert main(["data", "path", "--data-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path)
    assert main(["data", "path", "babi", "--data-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "babi")
    assert main(["data", "path", "nope", "--data-dir", str(tmp_path)]) == 2
    assert "unknown dataset 'nope'" in capsys.readouterr().err


def test_data_verify_refuses_the_fetch_options(tmp_path, capsys):
    for extra in (["--force"], ["--mirror", "file:///nowhere/"]):
        assert main(["data", "verify", "babi", "--data-dir", str(tmp_path), *extra]) == 2
        assert "--mirror and --force are options of `overlooked data fetch`" in capsys.readouterr().err


def test_a_spiking_runs_energy_report_keeps_within_eval_limit(tmp_path):
    """train.eval_limit=N scores the first N examples of each split; the energy report scored 2,000 test examples
    whatever the limit said (the slowest part of a quick suite's spiking run). It now takes the first N too, and
    `evaluate` (the run's own limit, or --limit) measures energy on the examples it scores, as the summary did."""
    from overlooked import api

    cfg = tmp_path / "snn.yaml"
    cfg.write_text(
        "name: snn_tiny\ndata: {name: synthetic, kwargs: {n_train: 64, n_test: 40}}\n"
        "model: {name: spiking_mlp, kwargs: {hidden: [8], steps: 3}}\nobjective: {name: spiking_cross_entropy}\n"
        "train: {epochs: 1, batch_size: 32, progress: false}\n"
    )
    for limit, expected in (("train.eval_limit=12", 12), ("train.eval_limit=null", 40)):
        out = tmp_path / limit.replace("=", "_")
        assert main(["train", str(cfg), limit, "--out", str(out)]) == 0
        (run,) = out.iterdir()
        summary = json.loads((run / "summary.json").read_text())
        assert summary["energy"]["first_examples"] == expected
        again = api.evaluate(run)  # the same examples, so the same energy totals
        assert again["examples"] == again["energy"]["first_examples"] == expected and again["energy"] == summary["energy"]
        assert api.evaluate(run, limit=5)["energy"]["first_examples"] == 5


PLUGIN = '''
import torch
from overlooked.registry import MODELS


@MODELS.register("plugin_linear")
def plugin_linear(input_shape=(1, 8, 8), num_classes: int = 10):
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(int(torch.tensor(input_shape).prod()), num_classes))
'''


def test_import_makes_a_model_of_your_own_usable_from_the_command_line(tmp_path, capsys, monkeypatch):
    """`overlooked --import MODULE` (a module from the current folder, or a .py path) registers your own names for
    train, evaluate and show; without it the unknown name says how to bring it in."""
    import sys

    from overlooked.registry import MODELS

    MODELS.names()  # the library's names first; the test's own registrations are undone with these copies
    library = dict(MODELS._builders), dict(MODELS._tags)
    monkeypatch.setattr(MODELS, "_builders", dict(library[0]))
    monkeypatch.setattr(MODELS, "_tags", dict(library[1]))
    (tmp_path / "my_plugin.py").write_text(PLUGIN)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    cfg = _config(tmp_path)
    for name in (str(tmp_path / "my_plugin.py"), "my_plugin"):  # each pass starts without the plugin's name
        monkeypatch.delitem(sys.modules, "my_plugin", raising=False)
        MODELS._builders.pop("plugin_linear", None)
        assert main(["show", str(cfg), "model.name=plugin_linear", "model.kwargs={}"]) == 2  # not without --import
        capsys.readouterr()
        assert main(["--import", name, "show", str(cfg), "model.name=plugin_linear", "model.kwargs={}"]) == 0
        assert "name: plugin_linear" in capsys.readouterr().out
    assert main(["show", str(cfg), "model.name=plugin_linear", "model.kwargs={}", "--import", "my_plugin"]) == 0  # after the command too
    assert "name: plugin_linear" in capsys.readouterr().out
    assert main(["--import", "my_plugin", "train", str(cfg), "model.name=plugin_linear", "model.kwargs={}", "train.max_steps=2", "--out", "runs"]) == 0
    capsys.readouterr()
    (run,) = (tmp_path / "runs").iterdir()
    assert main(["--import", "my_plugin", "evaluate", str(run)]) == 0
    assert main(["--import", "no_such_plugin", "list"]) == 2
    assert "--import no_such_plugin: No module named 'no_such_plugin'; give a module importable" in capsys.readouterr().err
    assert main(["--import", "missing.py", "list"]) == 2
    assert "--import missing.py: no such file" in capsys.readouterr().err
    (tmp_path / "json.py").write_text("")  # a file named like a module already imported
    assert main(["--import", str(tmp_path / "json.py"), "list"]) == 2
    assert "a module named 'json' is already imported" in capsys.readouterr().err
    (tmp_path / "broken.py").write_text("raise RuntimeError('plugin bug')")
    with pytest.raises(RuntimeError, match="plugin bug"):
        main(["--import", str(tmp_path / "broken.py"), "list"])
    assert "broken" not in sys.modules


def test_unknown_names_say_how_to_bring_your_own_in_and_a_changed_name_how_to_drop_old_arguments():
    from overlooked import api
    from overlooked.errors import ConfigError, RegistryError

    with pytest.raises(RegistryError, match=r"unknown models 'gated'.*import the module that registers it first .*overlooked --import MODULE"):
        api.load("mlp_mnist", ["model.name=gated"])
    with pytest.raises(ConfigError, match=r"unknown key\(s\) model.kwargs.dropout, model.kwargs.hidden for models 'memn2n'.*model.kwargs=\{\} drops the arguments"):
        api.load("mlp_mnist", ["model.name=memn2n"])


def test_show_prints_the_resolved_checked_config(capsys):
    assert main(["show", "memn2n_babi1k", "model.kwargs.hops=2"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["model"]["kwargs"]["hops"] == 2 and shown["train"]["lr"] == 0.01
    assert main(["show", "memn2n_babi1k", "model.kwargs.hopz=2"]) == 2
    assert "unknown key(s) model.kwargs.hopz" in capsys.readouterr().err


def test_show_says_which_settings_the_model_would_warn_have_no_effect(capsys):
    """`show` builds the model on the meta device (no data, nothing allocated), so a setting that building it
    would call ineffective is said before a run, once, as the command's one-line warning; a config without one
    prints none, and a model that needs the data's facts to build is left to training."""
    with pytest.warns(ConfigWarning) as caught:  # pytest records them; the printed line is the formatter's (tested below)
        assert main(["show", "memn2n_babi1k", "model.kwargs.encoding=bow", "model.kwargs.pe_length=padded"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["model"]["kwargs"]["pe_length"] == "padded"
    assert [str(w.message).split(" (")[0] for w in caught] == ["MemN2N pe_length='padded'"]
    with warnings.catch_warnings(record=True) as none:
        warnings.simplefilter("always")
        assert main(["show", "memn2n_babi1k"]) == 0
    assert [w for w in none if issubclass(w.category, ConfigWarning)] == []
    unbuildable = api.load("memn2n_babi1k")
    unbuildable.model.kwargs["hops"] = -1
    with pytest.raises(ValueError, match="hops must be an int"):  # the builder refuses it ...
        MODELS.create("memn2n", **unbuildable.model.kwargs)
    assert api.model_warnings(unbuildable) == []  # ... and the preview leaves that to training


def test_show_of_a_run_folder_prints_what_the_run_reported(tmp_path, capsys, monkeypatch):
    """`show RUN`: the run's model, data, budget, machine, command and headline numbers from its own files; per
    group (bAbI tasks) accuracy on each split and test error; refusals for overrides, unfinished and damaged folders."""
    runs = tmp_path / "runs"
    args = ["train", str(_config(tmp_path)), "train.max_steps=4", "--out", str(runs)]
    monkeypatch.setattr(sys, "argv", ["/somewhere/bin/overlooked", *args])  # the process as the console script starts it
    monkeypatch.delenv("OVERLOOKED_DATA", raising=False)
    assert main(args) == 0
    (run,) = runs.iterdir()
    summary = json.loads((run / "summary.json").read_text())
    env = json.loads((run / "environment.json").read_text())
    capsys.readouterr()
    assert main(["show", str(run)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{summary['name']}: model {summary['model']} on {summary['dataset']}, 4 steps")
    assert f"git {env['git_commit'][:12]}" in out and f"test_accuracy: {summary['test_accuracy']:.4f}" in out
    assert f"config: {run / 'config.yaml'}" in out and "test err %" not in out  # ungrouped data: no table
    assert f"command: overlooked train {_config(tmp_path)} train.max_steps=4 --out {runs}\n" in out
    # A grouped run (as bAbI's per-task accuracies): one row per group, test error = 100 (1 - accuracy)
    summary.update(test_group_accuracy={"1": 1.0, "2": 0.875}, val_group_accuracy={"1": 0.5, "2": 0.25})
    summary.update(repeats=3, trials=1, each={"key": "data.tasks", "values": [1, 2]}, dataset="babi")  # as --each ... --repeats 3 writes
    (run / "summary.json").write_text(json.dumps(summary))
    (run / "data_meta.json").write_text(json.dumps({"group_key": "task"}))
    assert main(["show", str(run)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith(" epochs, 3 seeds, one model per data.tasks in [1, 2]")
    header = next(i for i, line in enumerate(lines) if "test err %" in line)
    assert lines[header].split() == ["task", "test", "acc", "val", "acc", "test", "err", "%"]
    assert [line.split() for line in lines[header + 1 : header + 3]] == [["1", "1.0000", "0.5000", "0.00"], ["2", "0.8750", "0.2500", "12.50"]]
    assert "groups: mean test error 6.25% over 2, 1 failed (error > 5%)" in lines
    summary["test_group_accuracy"]["3"] = None  # a damaged value: shown as -, left out of the mean, no traceback
    (run / "summary.json").write_text(json.dumps(summary))
    assert main(["show", str(run)]) == 0
    out = capsys.readouterr().out
    assert "groups: mean test error 6.25% over 2, 1 failed (error > 5%); 1 without a number (a damaged summary)" in out
    assert [r.split() for r in out.splitlines() if r.split()[:1] == ["3"]] == [["3", "-", "-", "-"]]
    summary["dataset"] = "uci_gas_sensor_drift"  # sensor batches: the mean, without bAbI's failed tasks
    (run / "summary.json").write_text(json.dumps(summary))
    assert main(["show", str(run)]) == 0
    assert "groups: mean test error 6.25% over 2; 1 without a number (a damaged summary)" in capsys.readouterr().out
    assert main(["show", str(run), "train.lr=0.1"]) == 2
    assert "is a run folder" in capsys.readouterr().err
    (run / "summary.json").write_text("{not json")
    assert main(["show", str(run)]) == 2
    assert "summary.json is not valid JSON" in capsys.readouterr().err
    (run / "summary.json").unlink()  # unfinished: how far it came (tests/cli/test_show_progress.py)
    assert main(["show", str(run)]) == 0
    assert ", unfinished\nprogress: step " in capsys.readouterr().out
    conv = tmp_path / "convert-1"  # an `overlooked convert` record: T time steps and the accuracy at each T, no training
    conv.mkdir()
    (conv / "config.yaml").write_text("kind: ann_to_snn_conversion\n")
    (conv / "summary.json").write_text(json.dumps({"kind": "ann_to_snn_conversion", "name": "c", "model": "m", "dataset": "mnist", "steps": 64, "norm": "max", "calibration": 10, "source_run": "runs/x", "ann_test_accuracy": 0.99, "snn_test_accuracy": {"64": 0.98, "8": 0.5}}))
    assert main(["show", str(conv)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "c: model m on mnist, simulated for up to T = 64 time steps, max norm from 10 calibration images, of runs/x"
    assert out[2:5] == ["ann_test_accuracy: 0.99", "snn_test_accuracy at T = 8: 0.5", "snn_test_accuracy at T = 64: 0.98"]
    demo = tmp_path / "demo-1"  # a demo's folder: a summary of its own shape and no config
    demo.mkdir()
    (demo / "summary.json").write_text(json.dumps({"spiking": {"test_accuracy": 0.97}}))
    assert main(["show", str(demo)]) == 0
    out = capsys.readouterr().out
    assert "no config.yaml, so not a training run" in out and json.loads(out.split("summary.json:\n", 1)[1]) == {"spiking": {"test_accuracy": 0.97}}
    monkeypatch.chdir(tmp_path)
    (tmp_path / "memn2n_babi1k").mkdir()  # a folder that is not a run, named as a packaged config: the config is shown
    assert main(["show", "memn2n_babi1k"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["name"] == "memn2n_babi1k"


def test_a_run_folder_given_as_config_and_a_flag_for_a_setting_get_the_form_that_works(tmp_path, capsys):
    """`train RUN` said only "no config file ... and no packaged config"; `--epochs 2` only "unrecognized"."""
    runs = tmp_path / "runs"
    assert main(["train", str(_config(tmp_path)), "train.max_steps=2", "--out", str(runs)]) == 0
    (run,) = runs.iterdir()
    capsys.readouterr()
    assert main(["train", str(run)]) == 2
    err = capsys.readouterr().err
    assert f"is a run folder, not a config. To continue it where it stopped: overlooked train --resume {run}; " in err
    assert f"overlooked train {run / 'config.yaml'} train.init_from={run}" in err
    for argv, hint in ((["--epochs", "2"], "for --epochs write train.epochs=2"), (["--batch-size=5"], "for --batch-size write train.batch_size=5")):
        with pytest.raises(SystemExit):
            main(["train", str(_config(tmp_path)), *argv])
        assert f"unrecognized arguments: {' '.join(argv)} (settings are key=value overrides: {hint})" in capsys.readouterr().err


def test_show_orders_tasks_by_number_and_names_partial_scores_and_averaged_weights(tmp_path, capsys):
    """Found by a walkthrough: a joint bAbI run's tasks printed as 1, 10, 11, ..., 2, 20 (the summary's sorted
    keys); a score on train.eval_limit's first examples read as the whole test split; an EMA run said only which
    checkpoint it reported."""
    runs = tmp_path / "runs"
    assert main(["train", str(_config(tmp_path)), "train.max_steps=4", "train.eval_limit=25", "train.ema_decay=0.9", "--out", str(runs)]) == 0
    out = capsys.readouterr().out
    assert "test_accuracy: " in out and "(on the first 25 of 40 test examples: train.eval_limit)" in out
    (run,) = runs.iterdir()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test_examples"] == 25 and summary["test_examples_available"] == 40
    summary["test_group_accuracy"] = {str(t): 1.0 for t in (1, 10, 11, 2, 20, 3)}  # as json.dumps(sort_keys=True) orders them
    (run / "summary.json").write_text(json.dumps(summary, sort_keys=True))
    assert main(["show", str(run)]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = next(i for i, line in enumerate(lines) if "test err %" in line)
    assert [line.split()[0] for line in lines[header + 1 : header + 7]] == ["1", "2", "3", "10", "11", "20"]
    assert any(line.startswith("reported weights: ") and line.endswith("; exponential moving average of the weights, decay 0.9") for line in lines)
    assert any(line.endswith("(on the first 25 of 40 test examples: train.eval_limit)") for line in lines)
    # a --repeats folder's aggregate keeps the mark, and so does an --each folder's merge
    assert main(["train", str(_config(tmp_path)), "train.max_steps=2", "train.eval_limit=25", "--repeats", "2", "--out", str(tmp_path / "rep")]) == 0
    (rep,) = (tmp_path / "rep").iterdir()
    assert json.loads((rep / "summary.json").read_text())["test_examples_available"] == 40
    assert main(["train", str(_config(tmp_path)), "train.max_steps=2", "train.eval_limit=25", "--each", "train.lr=0.1,0.2", "--out", str(tmp_path / "each")]) == 0
    (each,) = (tmp_path / "each").iterdir()
    merged = json.loads((each / "summary.json").read_text())
    assert merged["test_examples"] == 25 and merged["test_examples_available"] == 40  # a sweep of lr: one split's test set, scored per value


def test_damaged_run_files_bad_names_devices_and_resplit_evaluation_are_named(tmp_path, capsys):
    """Found by a bad-input review: each of these was a raw traceback or a silently wrong result."""
    runs = tmp_path / "runs"
    assert main(["train", str(_config(tmp_path)), "train.max_steps=2", "--out", str(runs)]) == 0
    (run,) = runs.iterdir()
    capsys.readouterr()
    # Scoring "val" with the training files split another way would score examples the model trained on.
    assert main(["evaluate", str(run), "--split", "val", "data.kwargs.val_fraction=0.3"]) == 2
    assert "--split val with data.kwargs.val_fraction changed splits the run's training files another way" in capsys.readouterr().err
    assert main(["evaluate", str(run), "--split", "test", "data.kwargs.val_fraction=0.3"]) == 0
    assert main(["evaluate", str(run), "--split", "val", "data.kwargs.seed=3"]) == 0  # synthetic's seed draws a new dataset
    capsys.readouterr()
    from overlooked import api
    from overlooked.errors import ConfigError

    babi, mnist = api.load("memn2n_babi1k"), api.load("mlp_mnist")
    for cfg, overrides, refused in (
        (mnist, ["data.kwargs.seed=5"], True),
        (mnist, ["data.kwargs={seed: 5}"], True),  # a whole-dict override counts each key
        (mnist, ["data.kwargs.seed=0"], False),  # the builder's default, unchanged
        (babi, ["data.kwargs.val_split=last"], True),
        (babi, ["data.kwargs.val_split=last", "data.kwargs.seed=7"], True),
        (api.load("memn2n_babi1k", ["data.kwargs.val_split=last"]), ["data.kwargs.seed=7"], False),  # last 10%: the seed chooses nothing
        (babi, ["data.kwargs.tasks=[2]"], False),
        (api.load("mlp_mnist", ["data.kwargs.val_fraction=0.05"]), ["data.kwargs={seed: 0}"], True),  # replaces the kwargs: val_fraction back to 0.1
        (api.load("mlp_mnist", ["data.kwargs.val_fraction=0.05"]), ["data={name: mnist, kwargs: {val_fraction: 0.05}}"], False),
        (api.load("mlp_mnist", ["data.kwargs.val_fraction=0.05"]), ["data={name: mnist}"], True),
        (mnist, ["data.seed=5"], True),  # a path that skips kwargs
        (mnist, ["data.name=synthetic", "data.kwargs.seed=5"], False),  # another dataset: not the run's splits
    ):
        if refused:
            with pytest.raises(ConfigError, match="changed splits the run's training files another way"):
                api._check_no_resplit(cfg, "val", overrides)
        else:
            api._check_no_resplit(cfg, "val", overrides)
    # A run name is a folder name: a path in it would write outside --out.
    assert main(["train", str(_config(tmp_path)), "name=a/../../b", "--out", str(runs)]) == 2
    assert "must be a plain file name" in capsys.readouterr().err
    assert main(["train", str(_config(tmp_path)), "train.device=meta", "--out", str(runs)]) == 2
    assert "the trainer runs on cpu, cuda, cuda:N or mps, not on 'meta'" in capsys.readouterr().err
    (tmp_path / "afile").write_text("x")
    assert main(["train", str(_config(tmp_path)), "--out", str(tmp_path / "afile")]) == 2
    assert "afile is a file, not a folder; give --out (out) a folder" in capsys.readouterr().err
    assert sorted(runs.iterdir()) == [run]  # nothing was written
    # Damaged small files of a run folder are named, not a parser's traceback.
    for damage in (b"name: [unclosed", b"\xff\xfe"):
        keep = (run / "config.yaml").read_bytes()
        (run / "config.yaml").write_bytes(damage)
        assert main(["evaluate", str(run)]) == 2
        assert "config.yaml is damaged (" in capsys.readouterr().err
        (run / "config.yaml").write_bytes(keep)
    from overlooked import api
    from overlooked.errors import OverlookedError

    (run / "data_meta.json").write_text('{"num_classes": 1')
    with pytest.raises(OverlookedError, match=r"data_meta.json is damaged \(JSONDecodeError"):
        api.data_meta(run, api.run_config(run), None)
    # A config file that is not text, or whose keys are not names.
    (tmp_path / "bin.yaml").write_bytes(b"\xff\xfe\x00")
    (tmp_path / "int.yaml").write_text("1: 2\n")
    assert main(["show", str(tmp_path / "bin.yaml")]) == 2
    assert "not a text (UTF-8) file" in capsys.readouterr().err
    assert main(["show", str(tmp_path / "int.yaml")]) == 2
    assert "unknown config key(s) 1; allowed in the top level" in capsys.readouterr().err


def test_bench_and_convert_options_out_of_place_or_out_of_range_are_refused(tmp_path, capsys):
    """`bench --runs A --max-examples 10` silently ran the baselines speed benchmark; compare took one run twice
    and a negative budget; convert --limit -1 scored all but one image, --limit 0 and --steps 0 were tracebacks
    that left a half-made folder."""
    for argv, says in (
        (["bench", "--runs", "A", "--max-examples", "10"], "--runs and --max-examples belong to `bench compare`; `bench baselines` would ignore them"),
        (["bench", "memory", "--runs", "A"], "--runs belongs to `bench compare`; `bench memory` would ignore it"),
        (["bench", "--arena", "memory"], "--arena chooses arenas of a --suite"),
        (["bench", "--suite", "full", "--quick"], "--quick is for a family's benchmark (`bench memory --quick`); a suite runs its arenas at their own sizes"),
        (["bench", "compare", "--quick", "--runs", "A", "--max-examples", "5"], "--quick is for a family's benchmark"),
        (["bench", "compare", "--runs", "A", "A", "--max-examples", "5"], "A named more than once"),
        (["bench", "compare", "--runs", "A", "--max-examples", "-5"], "a number >= 1; got -5"),
        (["convert", "RUN", "--limit", "-1", "--out", str(tmp_path / "c")], "--limit takes a number of test images N >= 1, or 0 for all of them; got -1"),
        (["convert", "RUN", "--steps", "0", "--out", str(tmp_path / "c")], "convert: steps must be a whole number >= 1 (simulation steps), got 0"),
        (["convert", "RUN", "--calibration", "0", "--out", str(tmp_path / "c")], "calibration must be a whole number >= 1"),
    ):
        assert main(argv) == 2, argv
        assert says in capsys.readouterr().err, argv
    assert not (tmp_path / "c").exists()


def test_an_augmentation_or_encoder_made_for_other_data_is_named_before_the_run(tmp_path, capsys):
    """babi_random_time on image data, time_first on a dataset without event frames: KeyErrors at the first
    step before; now named with the dataset's keys, and no run folder is left."""
    for override, says in (("augment={name: babi_random_time}", "augment 'babi_random_time' reads batch key 'memory_mask' that dataset 'synthetic' does not provide (its keys: "), ("encoder={name: time_first}", "the time_first encoder reads the batch key 'frames', which this dataset's batches do not have")):
        assert main(["train", str(_config(tmp_path)), override, "--out", str(tmp_path / "runs")]) == 2
        assert says in capsys.readouterr().err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_transforms_own_key_error_is_not_blamed_on_the_data():
    """Only a key the dataset lacks is reported as such; a KeyError of the transform's own (here for a key the
    data has, from a dict of its own) is raised as it is."""
    from overlooked import api
    from overlooked.data.synthetic import synthetic
    from overlooked.errors import ConfigError

    cfg = api.load("mlp_mnist", ["data.name=synthetic", "data.kwargs={}", "augment={name: random_shift}"])
    splits = synthetic(n_train=20, n_test=10)

    def needs_mask(batch, generator):
        return batch["memory_mask"]

    with pytest.raises(KeyError):
        api.check_transforms(cfg, splits, lambda b, g: {"image": 1}["label"], None)  # 'label' is a data key
    with pytest.raises(ConfigError, match="augment 'random_shift' reads batch key 'memory_mask' that dataset 'synthetic' does not provide"):
        api.check_transforms(cfg, splits, needs_mask, None)


def test_a_cpu_only_benchmark_refuses_another_device(tmp_path, monkeypatch):
    """A benchmark without a device argument, asked for cuda, would time the CPU while its environment.json named
    cuda (api.bench('memory', device='cuda') did, until bench memory took a device): it is refused instead."""
    from overlooked import api
    from overlooked.errors import OverlookedError
    from overlooked.registry import BENCHMARKS

    BENCHMARKS.names()  # the library's benchmarks first, so that the stand-in below is removed after the test
    monkeypatch.setitem(BENCHMARKS._builders, "cpu_only_probe", lambda quick=False: [])
    monkeypatch.setitem(BENCHMARKS._tags, "cpu_only_probe", {})
    with pytest.raises(OverlookedError, match=r"bench cpu_only_probe runs on the CPU only; device='cuda' is for the benchmarks that take one \(.*memory.*spiking"):
        api.bench("cpu_only_probe", device="cuda", out=tmp_path)
    assert not any(tmp_path.iterdir())


def test_bench_cli_passes_the_device_and_refuses_it_where_it_means_nothing(monkeypatch, capsys):
    """`overlooked bench memory --device cuda` reaches api.bench with the device (every family's benchmark takes
    one); with --suite or `compare` the flag would be ignored, so it is refused."""
    from overlooked import api
    from overlooked.registry import BENCHMARKS

    seen = {}
    monkeypatch.setattr(api, "bench", lambda family, **kw: seen.update(family=family, **kw))
    assert main(["bench", "memory", "--device", "cuda:1", "--quick"]) == 0
    assert seen["family"] == "memory" and seen["device"] == "cuda:1" and seen["quick"] is True
    assert main(["bench", "spiking"]) == 0 and seen["device"] == "cpu"
    assert all("device" in BENCHMARKS.accepted_kwargs(n) for n in BENCHMARKS.names())
    for argv in (["bench", "--suite", "quick", "--device", "cuda"], ["bench", "compare", "--runs", "A", "--max-examples", "5", "--device", "cuda"]):
        assert main(argv) == 2, argv
        assert "--device is for a family's benchmark" in capsys.readouterr().err, argv


def test_bench_names_a_device_this_machine_lacks_and_an_arena_the_suite_lacks(tmp_path, monkeypatch, capsys):
    """`bench memory --device cuda` on a CPU-only torch ended in a raw "Torch not compiled with CUDA enabled"
    traceback; `--suite quick --arena babi` (it is babi1k) ran nothing and exited 0. Both are refused before
    any folder is made."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "runs"
    assert main(["bench", "memory", "--device", "cuda", "--quick", "--out", str(out)]) == 2
    assert "--device is 'cuda' but this torch" in capsys.readouterr().err
    assert main(["bench", "memory", "--device", "gpu", "--quick", "--out", str(out)]) == 2
    assert "--device 'gpu' is not a torch device" in capsys.readouterr().err
    assert main(["bench", "--suite", "quick", "--arena", "babi", "--out", str(out)]) == 2
    assert "suite 'quick' has no arena 'babi'; its arenas: babi1k, " in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.data
def test_a_text_model_smaller_than_the_datas_vocabulary_is_refused_before_the_run(tmp_path, capsys, data_dir):
    """model.kwargs.vocab_size below the data's: on CPU the first step named it, on a GPU it would be a device-side
    assert; it is refused when the run is built, on any device."""
    for config, model in (("lstm_babi1k_single", "lstm_reader"), ("kvmemnn_babi1k_single", "kvmemnn")):
        argv = ["train", config, "data.kwargs.tasks=[1]", "model.kwargs.vocab_size=10", "--data-dir", str(data_dir), "--out", str(tmp_path / "runs")]
        assert main(argv) == 2
        assert f"model '{model}' has vocab_size=10 but the data's vocabulary holds" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_run_files_that_parse_but_hold_the_wrong_thing_are_named_damaged(tmp_path):
    """each.json, vocab.json, data_meta.json edited into other JSON, and a checkpoint whose callbacks' state or
    info is not what a run writes: KeyError / TypeError / AttributeError tracebacks before."""
    from types import SimpleNamespace

    from safetensors import safe_open
    from safetensors.torch import save_file

    from overlooked import api
    from overlooked.errors import CheckpointError, OverlookedError

    each = tmp_path / "each"
    each.mkdir()
    for text in ("{}", "[1, 2]", '{"key": "data.tasks", "values": 3}', '{"key": "data.tasks", "values": []}'):
        (each / "each.json").write_text(text)
        with pytest.raises(OverlookedError, match=r"each.json is damaged: it should hold the --each setting and its values"):
            api.resume(each)
    splits = SimpleNamespace(meta={"vocab": ["<null>", "a"]})
    for text in ('{"a": 1}', "5", '["<null>", 3]'):
        (each / "vocab.json").write_text(text)
        with pytest.raises(OverlookedError, match=r"vocab.json is damaged: it should hold the training vocabulary, a list of words, but holds"):
            api.check_vocab(each, splits)
    (each / "vocab.json").write_text('["<null>", "a"]')
    api.check_vocab(each, splits)  # the run's own vocabulary passes
    assert main(["train", str(_config(tmp_path)), "train.max_steps=2", "--out", str(tmp_path / "runs")]) == 0
    (run,) = (tmp_path / "runs").iterdir()
    (run / "data_meta.json").write_text("[1]")
    with pytest.raises(OverlookedError, match=r"data_meta.json is damaged: it should hold the dataset's facts, a mapping"):
        api.data_meta(run, api.run_config(run), None)
    (run / "data_meta.json").unlink()
    best = run / "checkpoints" / "best.safetensors"
    with safe_open(str(best), framework="pt") as fh:
        tensors, meta = {k: fh.get_tensor(k) for k in fh.keys()}, fh.metadata()
    doc = json.loads(meta["overlooked"])
    for info in ({"state": "x"}, {"state": {"callbacks": [{}]}}, None):
        edited = {k: v for k, v in doc.items() if k != "info"} if info is None else {**doc, "info": info}
        save_file(tensors, str(best), metadata={"overlooked": json.dumps(edited)})
        if info is None:  # no info at all: the weights still load, with nothing to restore
            api.load_run(run)
            continue
        cfg = api.run_config(run)
        cfg.callbacks = [api.Component("linear_start")] if info["state"] != "x" else cfg.callbacks
        with pytest.raises(CheckpointError, match=r"the callbacks' state saved in .* best checkpoint cannot be restored"):
            api.restore_weights(run, "best", api.load_run(run)[2], cfg)


def test_review_findings_of_2026_12_07_messages(tmp_path, capsys, monkeypatch):
    """A walkthrough's findings: `show` of a mistyped run folder listed the 34 packaged configs; a misspelt
    `--each` key repeated one message per value; `--resume` with a thread or time-limit change did not say
    where those are changed; the library's warnings printed an internal file and code line."""

    monkeypatch.chdir(tmp_path)
    assert main(["show", "runs/nope"]) == 2
    err = capsys.readouterr().err
    assert "runs/nope does not exist; show takes a run folder" in err and "packaged configs:" not in err
    (tmp_path / "not_a_run").mkdir()
    assert main(["show", "not_a_run"]) == 2
    assert "not_a_run is a folder but not a run folder (no config.yaml or summary.json)" in capsys.readouterr().err
    assert main(["train", "memn2n_babi1k", "--each", "data.task=1..3", "--out", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert "3 of 3 value(s) cannot run" in err and err.count("unknown key(s) data.kwargs.task") == 1
    assert "\ndata.task=1,2,3: unknown key(s)" in err
    assert main(["train", "--resume", str(tmp_path / "r"), "train.max_minutes=5"]) == 2
    assert f"is edited in {tmp_path / 'r' / 'config.yaml'}" in capsys.readouterr().err
    before = warnings.formatwarning
    with pytest.warns(ConfigWarning, match="train.momentum=0.9"):  # recorded as before: only the printed text changed
        assert main(["show", "cnn_mnist", "train.momentum=0.9"]) == 0
    assert warnings.formatwarning is before  # Python's format again after main
    # printed (pytest records warnings instead of printing them, so in a process of its own)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    done = subprocess.run([sys.executable, "-m", "overlooked", "show", "cnn_mnist", "train.momentum=0.9"], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith("overlooked: warning: train.momentum=0.9 (only sgd uses it") and done.stderr.rstrip().endswith("(ConfigWarning)")
    assert done.stderr.count("\n") == 1 and ".py:" not in done.stderr and "<string>" not in done.stderr


def test_trials_given_twice_and_an_init_checkpoint_the_run_lacks_are_named(tmp_path):
    """An adversarial review's: --trials R=1 R=2 kept the last count silently; train.init_checkpoint=last on a
    run with only best suggested `--checkpoint best`, a flag of evaluate, not of train."""
    from overlooked.cli import _trial_counts
    from overlooked.errors import CheckpointError

    with pytest.raises(OverlookedError, match=r"--trials gives runs/a two counts \(1 and 2\); give each run one"):
        _trial_counts(["runs/a=1", "runs/a=2"])
    assert _trial_counts(["runs/a=3", "runs/a=3", "runs/b=1"]) == {"runs/a": 3, "runs/b": 1}
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "best.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"has no last checkpoint .*it has best: pass train\.init_checkpoint=best$"):
        api.check_checkpoint_exists(run, "last", "train.init_checkpoint=")
    with pytest.raises(CheckpointError, match=r"it has best: pass --checkpoint best$"):
        api.check_checkpoint_exists(run, "last")


def test_a_full_disk_is_one_line_and_other_os_errors_keep_their_traceback(tmp_path, capsys, monkeypatch):
    """safetensors reports a full disk as its own SafetensorError, which came out as a raw traceback: it is an
    OSError (ENOSPC) like every other write's, and the command says it in one line with the fix."""
    from safetensors import SafetensorError

    from overlooked.train import checkpoint

    def full(*args, **kwargs):
        raise SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })')

    monkeypatch.setattr(checkpoint, "save_file", full)
    assert main(["train", str(_config(tmp_path)), "train.max_steps=6", "--out", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert "\noverlooked: error: [Errno 28] could not write " in err and "StorageFull" in err and "--resume RUN" in err and "Traceback" not in err
    assert not list((tmp_path / "runs").rglob("*.tmp"))  # no temporary file left behind

    def lost(*args, **kwargs):
        raise FileNotFoundError(2, "gone")  # not a storage error: a bug's traceback is kept

    monkeypatch.setattr(checkpoint, "save_file", lost)
    with pytest.raises(FileNotFoundError):
        main(["train", str(_config(tmp_path)), "train.max_steps=6", "--out", str(tmp_path / "runs2")])


def test_a_full_disk_while_appending_metrics_is_one_line(tmp_path, capsys, monkeypatch):
    """metrics.jsonl is appended to, not renamed into place: a full disk there was a traceback; it is the same
    one line (a line cut short is dropped on resume)."""
    import builtins
    import errno

    from overlooked.train import trainer

    def full(path, mode="r", *args, **kwargs):
        if mode == "a":
            raise OSError(errno.ENOSPC, "No space left on device")
        return builtins.open(path, mode, *args, **kwargs)

    monkeypatch.setattr(trainer, "open", full, raising=False)
    assert main(["train", str(_config(tmp_path)), "train.max_steps=6", "--out", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert "overlooked: error: [Errno 28] could not write " in err and "metrics.jsonl: No space left on device" in err and "Traceback" not in err
