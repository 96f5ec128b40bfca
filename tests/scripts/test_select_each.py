"""scripts/select_each.py: per-value choice among `--each` runs by validation accuracy, never by test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def select_each(load_script):
    return load_script("select_each")


def _each_run(root: Path, name: str, accs: dict[int, tuple[float | None, float]]) -> Path:
    run = root / name
    for task, (val, test) in accs.items():
        sub = run / f"tasks={task}"
        sub.mkdir(parents=True)
        (sub / "summary.json").write_text(json.dumps({"val_accuracy": val, "test_accuracy": test}))
    return run


def test_choose_takes_best_validation_per_value_ignoring_test_and_first_on_ties(select_each, tmp_path):
    a = _each_run(tmp_path, "a", {1: (0.90, 0.99), 2: (0.80, 0.80), 3: (0.70, 0.70)})
    b = _each_run(tmp_path, "b", {1: (0.95, 0.50), 2: (0.80, 0.99), 3: (0.60, 0.90)})
    chosen = select_each.choose("data.tasks", [a, b])
    assert {v: c["chosen"] for v, c in chosen.items()} == {"tasks=1": "b", "tasks=2": "a", "tasks=3": "a"}
    assert chosen["tasks=1"]["candidates"] == {"a": 0.90, "b": 0.95}
    assert chosen["tasks=1"]["folder"] == b / "tasks=1"


def test_choose_refuses_runs_without_validation_or_over_different_values(select_each, tmp_path):
    a = _each_run(tmp_path, "a", {1: (0.9, 0.9), 2: (0.9, 0.9)})
    blind = _each_run(tmp_path, "blind", {1: (None, 0.9), 2: (0.5, 0.9)})
    with pytest.raises(ValueError, match="val_accuracy"):
        select_each.choose("data.tasks", [a, blind])
    fewer = _each_run(tmp_path, "fewer", {1: (0.5, 0.5)})
    with pytest.raises(ValueError, match="same values"):
        select_each.choose("data.tasks", [a, fewer])
    with pytest.raises(ValueError, match="no tasks="):
        select_each.choose("data.tasks", [a, tmp_path / "empty"])


def test_choose_refuses_nan_unfinished_and_repeated_runs_and_keeps_same_named_folders_apart(select_each, tmp_path):
    """A NaN validation accuracy is refused (it was chosen over 0.76 when listed first); an unfinished sub-run
    is named; a run listed twice is refused; two folders of one name in different places stay two candidates."""
    a = _each_run(tmp_path, "a", {1: (0.76, 0.9)})
    nan = _each_run(tmp_path, "nan", {1: (float("nan"), 0.9)})
    with pytest.raises(ValueError, match="no finite val_accuracy"):
        select_each.choose("data.tasks", [nan, a])
    with pytest.raises(ValueError, match="listed more than once"):
        select_each.choose("data.tasks", [a, a])
    half = tmp_path / "half"
    (half / "tasks=1").mkdir(parents=True)
    with pytest.raises(ValueError, match="has no summary.json: it is unfinished"):
        select_each.choose("data.tasks", [a, half])
    other = _each_run(tmp_path / "elsewhere", "a", {1: (0.80, 0.1)})
    chosen = select_each.choose("data.tasks", [a, other])
    assert chosen["tasks=1"]["candidates"] == {str(a): 0.76, str(other): 0.80} and chosen["tasks=1"]["chosen"] == str(other)


def test_collect_refuses_a_folder_that_holds_runs(load_script, tmp_path):
    """Gathering into a folder that exists and holds files is refused unless forced (select_each over an LSTM
    run's folder replaced its summary, config and sub-runs)."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "summary.json").write_text("{}")
    with pytest.raises(SystemExit, match="exists and is not empty: its run files would be replaced.*--force"):
        load_script("collect_each").main(str(victim), "data.tasks", [str(tmp_path / "a")])
    assert (victim / "summary.json").read_text() == "{}"
    with pytest.raises(SystemExit, match="is one of the runs gathered"):
        load_script("collect_each").main(str(victim), "data.tasks", [str(victim)], force=True)
