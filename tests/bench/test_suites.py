"""Arena suites are data: every packaged suite loads with configs that exist, bad suites fail naming the
case, a tiny suite runs end to end, and an estimate-only suite never fills in an accuracy."""

from __future__ import annotations

import itertools
import json

import pytest
import torch

from overlooked import catalog
from overlooked.bench import suites as S
from overlooked.errors import ConfigError

catalog.load_all()


@pytest.mark.parametrize("name", S.suite_names())
def test_packaged_suites_load(name):
    suite = S.load_suite(name)
    assert suite.arenas
    for arena in suite.arenas:
        assert arena.budget_examples > 0 and arena.cases
        roles = {c.role for c in arena.cases}
        assert roles == {"family", "baseline"}, f"{name}/{arena.name} must put a family beside a baseline"


def test_quick_and_full_exist():
    assert {"quick", "full"} <= set(S.suite_names())
    assert S.load_suite("full").estimate_only and not S.load_suite("quick").estimate_only


def _write(tmp_path, text):
    path = tmp_path / "suite.yaml"
    path.write_text(text)
    return str(path)


def test_unknown_key_and_missing_config_name_the_case(tmp_path):
    with pytest.raises(ConfigError, match="unknown config key"):
        S.load_suite(_write(tmp_path, "name: x\narenas: [{name: a, data: d, budget_examples: 1, cases: [{name: c, confg: mlp_mnist}]}]\n"))
    with pytest.raises(ConfigError, match="arena a, case c"):
        S.load_suite(_write(tmp_path, "name: x\narenas: [{name: a, data: d, budget_examples: 1, cases: [{name: c, config: no_such_config}]}]\n"))
    with pytest.raises(ConfigError, match="earlier case"):
        S.load_suite(_write(tmp_path, "name: x\narenas: [{name: a, data: d, budget_examples: 1, cases: [{name: c, convert_from: d}]}]\n"))


TINY = """
name: tiny
arenas:
  - name: mnist
    data: MNIST
    budget_examples: 256
    cases:
      - {name: mlp, role: baseline, config: mlp_mnist, overrides: ["model.hidden=[16]", "train.batch_size=128"]}
      - {name: mlp2, role: family, config: mlp_mnist, overrides: ["model.hidden=[8]", "train.batch_size=128"]}
"""


@pytest.mark.data
def test_tiny_suite_runs_on_budget(tmp_path, data_dir):
    folder, rows = S.run_suite(_write(tmp_path, TINY), out=tmp_path / "runs", data_dir=str(data_dir))
    assert [r["case"] for r in rows] == ["mlp", "mlp2"]
    for r in rows:
        assert r["status"] == "measured" and r["examples_seen"] == 256  # the budget, exactly
        assert 0.0 <= r["test_accuracy"] <= 1.0 and r["params"] > 0 and r["latency_ms"] > 0
    saved = json.loads((folder / "suite.json").read_text())
    assert saved["rows"] == json.loads(json.dumps(rows))
    assert saved["fairness"] == {"mnist": "met"}  # same split, budget, one declared trial each
    assert saved["wall_time_s"] >= sum(r["train_time_s"] for r in rows)  # the whole suite, training included


@pytest.mark.data
def test_estimate_only_suite_fills_in_no_accuracy(tmp_path, data_dir):
    text = TINY.replace("name: tiny", "name: tiny\nestimate_only: true")
    _, rows = S.run_suite(_write(tmp_path, text), out=tmp_path / "runs", data_dir=str(data_dir))
    for r in rows:
        assert r["status"] == "not run" and r["test_accuracy"] is None and r["run"] is None
        assert r["expected_hours"] > 0 and r["train_examples_per_s"] > 0


def test_cli_suite_loads_the_catalog_itself():
    """`overlooked bench --suite` works in a fresh process (nothing imported the registries before)."""
    import subprocess
    import sys

    code = "from overlooked.bench.suites import load_suite; print(len(load_suite('quick').arenas))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert int(out) >= 2


def test_fair_verdict_names_the_broken_condition():
    row = {"model": "a", "params": 1, "flops_per_example": 2, "wall_time_s": 1.0, "examples_seen": 10, "data_fingerprint": "x", "trials": 1, "run": "a"}
    assert S.fair_verdict([row, {**row, "run": "b"}], 10) == "met"
    verdict = S.fair_verdict([row, {**row, "run": "b", "data_fingerprint": "y"}], 10)
    assert verdict.startswith("NOT met: ") and "different data splits" in verdict
    assert "over the budget of 5" in S.fair_verdict([row], 5)


# ---- pins from the mutation audit (results/audits/mutants_memory_ckpt_store.yaml): the budget a case is cut to, a
# conversion naming a later case, and latency per example


def test_a_conversion_of_a_case_listed_after_it_is_refused_when_the_suite_loads(tmp_path):
    text = (
        "name: x\narenas: [{name: a, data: MNIST, budget_examples: 10, cases: ["
        "{name: snn, convert_from: ann}, {name: ann, role: baseline, config: mlp_mnist}]}]\n"
    )
    with pytest.raises(ConfigError, match=r"arena a, case snn: convert_from 'ann' must name an earlier case of the arena \(none\)"):
        S.load_suite(_write(tmp_path, text))


@pytest.mark.data
def test_a_budget_that_is_not_a_whole_number_of_batches_rounds_the_steps_up(data_dir):
    """300 examples in batches of 128: 3 steps (384 examples, the budget reached), not 2 (256, short of it)."""
    case = S.Case(name="mlp", config="mlp_mnist", overrides=["model.hidden=[8]", "train.batch_size=128"])
    arena = S.Arena(name="mnist", data="MNIST", budget_examples=300, eval_limit=50)
    cfg = S.case_config(case, arena, str(data_dir))
    assert cfg.train.max_steps == 3
    assert cfg.train.epochs == 1 and cfg.train.eval_limit == 50 and cfg.train.repeats == 1


def test_inference_latency_is_per_example_not_per_batch(monkeypatch, tmp_path):
    """A fake clock advancing 10 ms a reading: each timed forward of a 10-example batch takes 10 ms, so the
    latency is 1 ms per example."""
    from overlooked import api

    class Test:
        def __len__(self):
            return 10

        def __getitem__(self, index):
            return {"x": torch.zeros(len(index), 3)}

    class Splits:
        test, input_keys = Test(), ("x",)

    monkeypatch.setattr(api, "load_run", lambda run, data_dir=None: (None, Splits(), torch.nn.Linear(3, 2)))
    clock = itertools.count(0.0, 0.01)
    monkeypatch.setattr(S.time, "perf_counter", lambda: next(clock))
    assert S.inference_latency_ms(tmp_path, None, batch_size=256, repeats=3) == pytest.approx(1.0)
