"""`overlooked demo`: with no data and no network it fails with a message saying how to get the data."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from overlooked import api
from overlooked.data import store
from overlooked.errors import DataError


def test_demo_without_data_or_network_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.delenv("OVERLOOKED_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # ~/.cache/overlooked is empty
    dead = dataclasses.replace(store.SOURCES["mnist"], mirrors=("http://127.0.0.1:9/",))  # discard port: refused
    monkeypatch.setitem(store.SOURCES, "mnist", dead)
    with pytest.raises(DataError) as exc:
        api.demo("baselines", out=tmp_path / "runs")
    message = str(exc.value)
    assert "mnist" in message and "127.0.0.1:9" in message
    assert "OVERLOOKED_DATA" in message or "--data-dir" in message


def test_demo_with_named_folder_never_downloads(tmp_path, monkeypatch):
    from overlooked.data import store

    attempts = []
    monkeypatch.setattr(store, "_download", lambda url, *args, **kwargs: attempts.append(url))
    monkeypatch.setenv("OVERLOOKED_DATA", str(tmp_path / "empty"))
    with pytest.raises(DataError, match="missing"):
        api.demo("baselines", out=tmp_path / "runs")
    assert attempts == []  # a download tried and failed would also end in "missing"


@pytest.mark.data
@pytest.mark.slow
def test_demo_runs_on_real_data(tmp_path, data_dir, capsys):
    path, results = api.demo("baselines", out=tmp_path, data_dir=str(data_dir))
    assert results["baselines"]["test_accuracy"] > 0.9
    assert (path / "summary.json").is_file() and "run folder:" in capsys.readouterr().out


@pytest.mark.data
@pytest.mark.slow
def test_memory_demo_runs_on_real_data(tmp_path, data_dir, capsys):
    """`overlooked demo memory` (issue 3, item 6): trains on bAbI 1k tasks 1 and 2, prints a story, the
    question, the answer and each hop's weights on the memories, and writes the attention maps as PNGs."""
    path, results = api.demo("memory", out=tmp_path, data_dir=str(data_dir))
    res = results["memory"]
    assert res["test_accuracy"] > 0.85 and set(res["task_accuracy"]) == {"1", "2"}
    printed = capsys.readouterr().out
    assert "== demo memory" in printed and "run folder:" in printed
    for example in res["examples"]:
        weights = example["attention"]
        assert len(weights) == 3 and all(abs(sum(hop) - 1) < 1e-4 for hop in weights)  # three hops, softmax weights
        assert f"question: {example['question']}?   answer: {example['answer']}   predicted: {example['predicted']}" in printed
        assert example["story"][0] in printed and "hop1 " in printed
        assert (path / Path(example["figure"]).name).is_file() and Path(example["figure"]).read_bytes()[:4] == b"\x89PNG"
    assert (path / "summary.json").is_file()


@pytest.mark.data
def test_a_demo_that_fails_on_its_data_leaves_no_empty_folder(tmp_path, data_dir):
    """An adversarial review's: a corrupt MNIST file failed the capsules demo clearly, but left an empty
    demo-<date>/ folder behind (train removes its folder in the same case)."""
    import shutil

    shutil.copytree(data_dir / "mnist", tmp_path / "data" / "mnist")
    bad = tmp_path / "data" / "mnist" / "t10k-labels-idx1-ubyte.gz"
    data = bytearray(bad.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(data))
    with pytest.raises(DataError, match="corrupt gzip data"):
        api.demo("capsules", out=tmp_path / "out", data_dir=str(tmp_path / "data"))
    assert not (tmp_path / "out").exists()
