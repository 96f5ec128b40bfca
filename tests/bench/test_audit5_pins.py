"""Pins for the bench modules' arithmetic, for which function each figure times, and for what the baselines demo reports (audit 5).

No timing is asserted: every clock and timer is replaced by a fake with known durations, and the figures
are checked against values computed by hand from those durations.
"""

from __future__ import annotations

import torch
from torch import nn

from overlooked.bench import capsules as bench_capsules
from overlooked.bench import spiking as bench_spiking


def _fake_timing(median_s: float, min_s: float | None = None) -> dict[str, float]:
    return {"median_s": median_s, "min_s": median_s if min_s is None else min_s, "mean_s": median_s, "repeats": 1}


def test_round_robin_leaves_the_warm_up_rounds_out_of_its_statistics(monkeypatch):
    """warmup=1, repeats=2. A warm-up round reads the clock once (its start) and records nothing; the
    timed rounds read 0 -> 1 and 0 -> 3: durations 1 and 3, so median 2, min 1, mean 2, repeats 2
    (keeping the warm-up would make three durations)."""
    clock = iter([100.0, 0.0, 1.0, 0.0, 3.0, 0.0])
    monkeypatch.setattr(bench_spiking.time, "perf_counter", lambda: next(clock))
    out = bench_spiking.round_robin({"f": lambda: None}, warmup=1, repeats=2, device="cpu")["f"]
    assert out == {"median_s": 2.0, "min_s": 1.0, "mean_s": 2.0, "repeats": 2}


def test_neuron_only_percentages_use_the_best_times_and_the_three_over_two_copy_bound(monkeypatch):
    """Fake best times: copy 2 s, fwd 3 s, inference 1 s, bwd 6 s (medians 50 s, never used). The bwd pass
    bound is copy x BACKWARD_PASSES / COPY_PASSES = 2 x 3 / 2 = 3 s, so bwd is 100 x 6 / 3 = 200 % of it;
    fwd is 100 x 3 / 2 = 150 % of the copy and inference 100 x 1 / 2 = 50 %; the copy row is 2e6 us."""
    assert (bench_spiking.BACKWARD_PASSES, bench_spiking.COPY_PASSES) == (3, 2)
    best = iter([2.0, 3.0, 1.0, 6.0])  # the ops dict's order: copy, fwd, infer, bwd
    monkeypatch.setattr(bench_spiking, "time_call", lambda op, **kw: _fake_timing(50.0, next(best)))
    figures = bench_spiking.neuron_only_figures(4, 1, 3, backend="reference", warmup=0, repeats=1)
    values = [f["value"] for f in figures]
    assert values[0] == 2e6 and values[1] == 3e6 and values[2] == 1e6 and values[3] == 6e6
    assert values[4:] == [150.0, 50.0, 200.0]
    assert "pass bound, 3/2 copies" in figures[6]["name"]


class _Spikes(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x > 0.5).float()


def test_peer_ratio_is_ours_over_the_fastest_peers_time(monkeypatch):
    """Fake fwd+bwd medians: ours 1 s, snntorch 4 s, norse 2 s. The fastest peer is norse (2 s), ours
    takes 100 x 1 / 2 = 50 % of its time, a speedup of 2 / 1 = 2."""
    impls = {"overlooked (auto)": _Spikes(), "snntorch": _Spikes(), "norse": _Spikes()}
    monkeypatch.setattr(bench_spiking, "build_impls", lambda *a, **k: impls)
    medians = {"overlooked (auto)": 1.0, "snntorch": 4.0, "norse": 2.0}
    monkeypatch.setattr(bench_spiking, "round_robin", lambda fns, **kw: {k: _fake_timing(medians[k]) for k in fns})
    figures = bench_spiking.linear_lif_figures(3, 1, 4, device="cpu")
    (ratio,) = [f for f in figures if "fastest peer" in f["name"]]
    assert "(norse;" in ratio["name"]
    assert ratio["value"] == 50.0 and ratio["unit"] == "%" and ratio["speedup"] == 2.0
    fb = {f["name"]: f["value"] for f in figures if "fwd+bwd" in f["name"] and f["unit"] == "ms"}
    assert fb["spiking T=3 B=1 n=4 Linear+LIF fwd+bwd snntorch"] == 4000.0


def test_capsule_cpu_clock_reads_process_time_and_skips_the_warm_up(monkeypatch):
    """time_cpu(warmup=1, repeats=3) with process-time readings 0 -> 2, 10 -> 11, 20 -> 24: durations 2, 1,
    4 (the warm-up call reads no clock), so median 2, min 1, mean 7 / 3."""
    clock = iter([0.0, 2.0, 10.0, 11.0, 20.0, 24.0])
    monkeypatch.setattr(bench_capsules.time, "process_time", lambda: next(clock))
    ran = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = bench_capsules.time_cpu(lambda: ran.append(1), warmup=1, repeats=3)
    finally:
        torch.set_num_threads(threads)
    assert len(ran) == 4
    assert out["median_s"] == 2.0 and out["min_s"] == 1.0 and abs(out["mean_s"] - 7 / 3) < 1e-12 and out["repeats"] == 3


def test_capsule_images_per_second_divide_the_batch_by_each_figures_own_time(monkeypatch):
    """Batch 2, fake medians: training step 4 s, inference 0.5 s: train 2 / 4 = 0.5 images/s, infer
    2 / 0.5 = 4 images/s."""
    medians = iter([4.0, 0.5])
    monkeypatch.setattr(bench_capsules, "time_call", lambda fn, **kw: _fake_timing(next(medians)))
    figures = bench_capsules.em_throughput(routing_backend="reference", batch_size=2, repeats=1)
    assert [f["name"].split()[-1] for f in figures] == ["train", "infer"]
    assert [f["value"] for f in figures] == [0.5, 4.0]


def test_baselines_demo_reports_the_runs_test_accuracy_not_its_validation(monkeypatch, tmp_path):
    """The demo hands on summary["test_accuracy"] (0.91 here), not the validation 0.5, from a 200-step run."""
    from overlooked import api
    from overlooked.demos import demo_baselines

    seen = {}
    monkeypatch.setattr(api, "load", lambda name, overrides: seen.update(name=name, overrides=overrides) or {"cfg": name})
    summary = {"test_accuracy": 0.91, "val_accuracy": 0.5, "params": 7, "wall_time_s": 1.5}
    monkeypatch.setattr(api, "train", lambda cfg, data_dir, run_dir: (run_dir, summary))
    out = demo_baselines(tmp_path)
    assert out["test_accuracy"] == 0.91 and out["params"] == 7
    assert seen["name"] == "cnn_mnist" and "train.max_steps=200" in seen["overrides"]
