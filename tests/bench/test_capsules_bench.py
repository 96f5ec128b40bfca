"""The capsule benchmark times the trainer's own step on the exact CapsNet and states its setting."""

from __future__ import annotations

import pytest
import torch

from overlooked import catalog
from overlooked.bench import capsules as bench_capsules
from overlooked.registry import BENCHMARKS
from overlooked.train import trainer


def _count_train_steps(monkeypatch) -> list:
    """Make ``trainer.train_step`` record the model of each call; returns the list it appends to."""
    calls = []
    real = trainer.train_step

    def counting(*args, **kwargs):
        calls.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer, "train_step", counting)
    return calls


@pytest.mark.parametrize("backend, bf16", [("fused", False), ("reference", True)])
def test_bench_calls_the_trainer_step_and_states_the_setting(monkeypatch, backend, bf16):
    calls = _count_train_steps(monkeypatch)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # clock="cpu" counts one core's seconds
    try:
        figures = bench_capsules.capsnet_throughput(backend=backend, bf16=bf16, batch_size=2, repeats=1, clock="cpu" if bf16 else "wall")
    finally:
        torch.set_num_threads(threads)
    assert len(calls) == 2  # warm-up plus one timed step, all through trainer.train_step
    assert sum(p.numel() for p in calls[0].parameters()) == 8_215_568  # the exact CapsNet, decoder on
    assert [f["unit"] for f in figures] == ["images/s", "images/s"] and all(f["value"] > 0 for f in figures)
    for f in figures:
        assert f["detach_intermediate"] is False and "detach=off" in f["name"]
        assert f["backend"] == backend and f["precision"] == ("bf16" if bf16 else "fp32") and f["iterations"] == 3
        assert f["clock"] == ("cpu" if bf16 else "wall")


def test_em_bench_calls_the_trainer_step_and_states_the_setting(monkeypatch):
    calls = _count_train_steps(monkeypatch)
    figures = bench_capsules.em_throughput(routing_backend="reference", batch_size=2, repeats=1)
    assert len(calls) == 2 and calls[0].caps1.routing_backend == "reference"  # warm-up plus one timed step
    assert sum(p.numel() for p in calls[0].parameters()) == 68_444  # the small model (A=64, B=8, C=D=16)
    assert [f["name"].split()[-1] for f in figures] == ["train", "infer"] and all(f["value"] > 0 for f in figures)
    assert all(f["model"] == "matcaps_em_small" and f["iterations"] == 2 and f["backend"] == "reference" for f in figures)
    with pytest.raises(ValueError, match="model_name must be one of"):
        bench_capsules.em_throughput(model_name="capsnet")


def test_bench_is_registered():
    catalog.load_all()
    assert "capsules" in BENCHMARKS.names()
    assert {"quick", "device"} <= set(BENCHMARKS.accepted_kwargs("capsules"))


def test_cpu_seconds_are_one_threads_and_the_cpus_only():
    """clock='cpu' sums every thread's CPU seconds and does not see a GPU's work: it is refused with more
    than one thread, and off the CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with pytest.raises(ValueError, match="clock='cpu' counts one core's seconds: run with one thread"):
            bench_capsules.time_cpu(lambda: None)
    finally:
        torch.set_num_threads(threads)
    for throughput in (bench_capsules.capsnet_throughput, bench_capsules.em_throughput):  # before any model is built
        with pytest.raises(ValueError, match="clock='cpu' times the CPU's work"):
            throughput(batch_size=2, repeats=1, clock="cpu", device="cuda")
