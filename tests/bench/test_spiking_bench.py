"""The spiking benchmark times the fused kernel it claims to, and its peers agree with it."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from overlooked import catalog
from overlooked.bench import spiking as bench_spiking
from overlooked.registry import BENCHMARKS
from overlooked.spiking import kernels
from overlooked.spiking.kernels import _build


def test_registered_with_quick_and_device():
    catalog.load_all()
    assert "spiking" in BENCHMARKS.names()
    assert {"quick", "device"} <= set(BENCHMARKS.accepted_kwargs("spiking"))


@pytest.mark.skipif(_build.compiler() is None, reason="no C++ compiler")
def test_linear_lif_figures_run_the_fused_kernel_and_report_agreement():
    torch.set_num_threads(1)
    before = kernels.CALLS["cpp_backward"]
    peers = any(importlib.util.find_spec(p) for p in bench_spiking.PEERS)
    figures = bench_spiking.linear_lif_figures(20, 2, 16, warmup=0, repeats=2, with_peers=peers)
    assert kernels.CALLS["cpp_backward"] == before + 2  # one backward per timed fwd+bwd round
    names = {f["name"] for f in figures}
    assert "spiking T=20 B=2 n=16 Linear+LIF fwd+bwd overlooked (auto)" in names
    agreement = [f for f in figures if "equal to ours" in f["name"]]
    assert agreement and all(f["unit"] == "%" and f["value"] > 99 for f in agreement)
    if peers:
        assert any("as % of the fastest peer" in n for n in names)


@pytest.mark.skipif(_build.compiler() is None, reason="no C++ compiler")
def test_neuron_only_figures_name_the_pass_counts():
    torch.set_num_threads(1)
    figures = bench_spiking.neuron_only_figures(10, 2, 16, warmup=0, repeats=1)
    units = {f["name"]: f["unit"] for f in figures}
    assert units["spiking T=10 B=2 n=16 LIF-only bwd (cpp, 3 passes, best of 1)"] == "us"
    assert any("pass bound, 3/2 copies" in n for n in units)


def test_event_crossover_plot_writes_a_png(tmp_path):
    from overlooked.plots.spiking_speed import event_crossover_figure

    rows = [{"name": f"event sim X activity {a}% {k}", "value": v, "unit": "ms", "activity": a / 100, "path": k} for a, k, v in ((50, "event", 9.0), (50, "dense", 2.0), (1, "event", 0.5), (1, "dense", 2.0))]
    rows.append({"name": "event sim X crossover activity (event faster below)", "value": 12.0, "unit": "%"})
    path = event_crossover_figure(rows, tmp_path / "x.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="no event-simulator rows"):
        event_crossover_figure(rows[-1:], tmp_path / "y.png")


def test_the_spiking_bench_puts_tf32_back(monkeypatch):
    """On CUDA the bench turns TF32 off for its timings; it left it off for the rest of the process."""
    from overlooked.bench import spiking as S

    monkeypatch.setattr(S, "_bench_spiking", lambda quick, device: (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32))
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = True, True
        assert S.bench_spiking(device="cuda") == (False, False)  # off while timing
        assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == (True, True)  # back after
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def test_round_robin_takes_the_median_of_an_even_count_and_figures_name_peer_versions(monkeypatch):
    """An even number of repeats gives the mean of the middle two (it took the upper one); every figure of the
    bench names the peer libraries' versions (None where not installed)."""
    from overlooked.bench import spiking as bench

    clock = iter([0.0, 1.0, 0.0, 3.0, 0.0, 2.0, 0.0, 10.0])  # durations 1, 3, 2, 10: median 2.5, mean 4
    monkeypatch.setattr(bench.time, "perf_counter", lambda: next(clock))
    out = bench.round_robin({"f": lambda: None}, warmup=0, repeats=4, device="cpu")["f"]
    assert out["median_s"] == 2.5 and out["min_s"] == 1.0 and out["mean_s"] == 4.0 and out["repeats"] == 4
    monkeypatch.undo()
    monkeypatch.setattr(bench, "peer_versions", lambda: {"snntorch": "9.9", "spikingjelly": None, "norse": None})
    for name in ("linear_lif_figures", "neuron_only_figures", "event_crossover_figures"):
        monkeypatch.setattr(bench, name, lambda *a, **k: [{"name": "x"}])
    figures = bench._bench_spiking(quick=True, device="cpu")
    assert figures and all(f["peer_versions"] == {"snntorch": "9.9", "spikingjelly": None, "norse": None} for f in figures)
