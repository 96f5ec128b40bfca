"""Pins from the mutation audit of bench/suites.py (results/audits/mutants_memory_ckpt_store.yaml): the budget a
case is cut to, a conversion naming a later case, and latency per example."""

from __future__ import annotations

import itertools

import pytest
import torch

from overlooked import catalog
from overlooked.bench import suites as S
from overlooked.errors import ConfigError

catalog.load_all()


def _write(tmp_path, text):
    path = tmp_path / "suite.yaml"
    path.write_text(text)
    return str(path)


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
