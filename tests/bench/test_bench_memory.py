"""The memory benchmark times the trainer's own step function, not a private copy."""

from __future__ import annotations

import pytest
import torch

from overlooked import catalog
from overlooked.bench import memory as bench_memory
from overlooked.data.base import ArrayDataset, Splits
from overlooked.memory.functional import time_index
from overlooked.train import trainer


def _tiny_babi(n=40, M=6, L=4, V=12):
    gen = torch.Generator().manual_seed(0)
    mask = torch.arange(M)[None, :] < torch.randint(1, M + 1, (n, 1), generator=gen)
    story = torch.randint(1, V, (n, M, L), generator=gen) * mask[..., None]
    ds = ArrayDataset({"story": story, "query": torch.randint(1, V, (n, L), generator=gen), "memory_mask": mask, "time": time_index(mask), "answer": torch.randint(1, V, (n,), generator=gen)})
    return Splits(ds, ds, ds, ("story", "query", "memory_mask", "time"), "answer", {"vocab_size": V, "memory_size": M})


def _count_train_steps(monkeypatch) -> list[int]:
    """Patch ``trainer.train_step`` to count its calls (the list grows by one per call)."""
    catalog.load_all()
    calls: list[int] = []
    real = trainer.train_step

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer, "train_step", counting)
    return calls


def test_bench_calls_the_trainer_step(monkeypatch):
    calls = _count_train_steps(monkeypatch)
    figures = bench_memory.memn2n_throughput(_tiny_babi(), batch_size=8, embed_dim=8, steps=3, repeats=2)
    assert len(calls) == 3 * (1 + 2)  # warm-up plus timed repeats, every step through trainer.train_step
    assert [f["unit"] for f in figures] == ["stories/s", "stories/s"] and all(f["value"] > 0 for f in figures)


def test_the_trainer_loop_runs_the_same_step_function(monkeypatch):
    """``fit`` trains through ``trainer.train_step`` too, one call per step: so the bench times the
    function a real training run spends its steps in."""
    from overlooked.config import TrainConfig
    from overlooked.objectives import CrossEntropy
    from overlooked.registry import MODELS

    calls = _count_train_steps(monkeypatch)
    splits = _tiny_babi()
    model = MODELS.create("memn2n", vocab_size=12, memory_size=6, embed_dim=8)
    cfg = TrainConfig(epochs=2, batch_size=8, optimizer="sgd", lr=0.01, progress=False)
    summary = trainer.fit(model, splits, CrossEntropy(target_key="answer", reduction="sum"), cfg)
    assert summary["steps"] == 2 * 5 and len(calls) == summary["steps"]


def test_figure_names_say_the_device_precision_and_model_switches(monkeypatch):
    """The CPU default keeps its names (the committed figures and the report's grouping read them); another
    device, bf16 or a model switch such as fused=False is named, so two such figures never share a name."""
    figures = bench_memory.memn2n_throughput(_tiny_babi(), batch_size=8, embed_dim=8, steps=1, repeats=1)
    assert [f["name"] for f in figures] == ["memn2n d=8 K=3 batch 8 train", "memn2n d=8 K=3 batch 8 infer"]
    figures = bench_memory.memn2n_throughput(_tiny_babi(), batch_size=8, embed_dim=8, steps=1, repeats=1, bf16=True, fused=False)
    assert [f["name"] for f in figures] == ["memn2n d=8 K=3 batch 8 train cpu bf16 fused=False", "memn2n d=8 K=3 batch 8 infer cpu bf16 fused=False"]


def test_synchronize_waits_for_the_named_gpu_not_the_current_one(monkeypatch):
    """A benchmark on cuda:1 must wait for cuda:1's queue; torch.cuda.synchronize() alone waits for the current
    device (cuda:0 by default), so the timer stopped early."""
    from overlooked.bench import timing

    seen = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: seen.append(device))
    timing.synchronize("cuda:1")
    timing.synchronize("cpu")
    assert seen == ["cuda:1"]


def test_full_float32_turns_tf32_off_on_a_gpu_only_and_puts_it_back():
    """The benchmarks' shared switch: TF32 off for matmuls and cuDNN inside the block on CUDA (also when the
    block raises), the flags as they were afterwards, and nothing touched for the CPU."""
    from overlooked.bench import timing

    flags = torch.backends.cuda.matmul, torch.backends.cudnn
    before = [f.allow_tf32 for f in flags]
    try:
        for f in flags:
            f.allow_tf32 = True
        with timing.full_float32("cpu"):
            assert [f.allow_tf32 for f in flags] == [True, True]
        with pytest.raises(RuntimeError, match="inside"), timing.full_float32("cuda:1"):
            assert [f.allow_tf32 for f in flags] == [False, False]
            raise RuntimeError("inside")
        assert [f.allow_tf32 for f in flags] == [True, True]
    finally:
        for f, value in zip(flags, before):
            f.allow_tf32 = value


def test_mps_is_synchronised_and_the_capsule_and_baseline_benches_run_without_tf32(monkeypatch):
    """Apple GPUs queue work as CUDA does (the timer stopped before it ran); the capsule and baseline benches
    turn TF32 off on a GPU as memory's and spiking's do (their "fp32" GPU figures used TF32 convolutions)."""
    from overlooked.bench import baselines, capsules, timing

    seen = []
    monkeypatch.setattr(torch.mps, "synchronize", lambda: seen.append("mps"))
    timing.synchronize("mps")
    assert seen == ["mps"]
    flags = []
    monkeypatch.setattr(capsules, "capsnet_throughput", lambda **kw: flags.append(torch.backends.cudnn.allow_tf32) or [])
    monkeypatch.setattr(capsules, "em_throughput", lambda **kw: flags.append(torch.backends.cudnn.allow_tf32) or [])
    monkeypatch.setattr(baselines, "step_throughput", lambda *a, **kw: flags.append(torch.backends.cuda.matmul.allow_tf32) or [])
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    try:
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
        capsules.bench_capsules(quick=True, device="cuda")
        baselines.bench_baselines(quick=True, device="cuda")
        assert flags and not any(flags) and torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


def test_bench_memory_runs_the_issue_setting(monkeypatch):
    """`overlooked bench memory` times MemN2N with PE, temporal encoding, adjacent tying, d = 50, K = 3, memory
    padded to 50, batch 32, on all 20 bAbI 1k tasks, each step summed cross-entropy, per-tensor clipping at 40
    and SGD at 0.01 (issue 3, item 7): the arguments its step receives, read by a spy."""
    import overlooked.data.babi as babi
    from overlooked.memory.modules import MemN2N

    loaded = {}

    def fake_load(**kwargs):
        loaded.update(kwargs)
        tiny = _tiny_babi(n=64, M=50)
        tiny.meta["memory_size"] = kwargs["memory_size"]
        return tiny

    monkeypatch.setattr(babi, "load_babi", fake_load)
    seen = []
    catalog.load_all()
    real = trainer.train_step

    def spy(model, batch, keys, objective, optimizer, cfg, *args, **kwargs):
        seen.append((model, batch, objective, optimizer, cfg, model.training))
        return real(model, batch, keys, objective, optimizer, cfg, *args, **kwargs)

    monkeypatch.setattr(trainer, "train_step", spy)
    bench_memory.bench_memory(quick=True)
    assert loaded == {"tasks": "all", "size": "en", "data_dir": None, "memory_size": 50}
    model, batch, objective, optimizer, cfg, training = seen[0]
    assert isinstance(model, MemN2N) and model.fused and training
    assert (model.embed_dim, model.hops, model.memory_size, model.encoding, model.tying) == (50, 3, 50, "pe", "adjacent")
    assert model.temporal_table is not None and model.use_softmax
    assert batch["story"].shape[:2] == (32, 50) and objective.reduction == "sum"
    assert (cfg.optimizer, cfg.lr, cfg.grad_clip, cfg.grad_clip_per_tensor) == ("sgd", 0.01, 40.0, True)
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.param_groups[0]["lr"] == 0.01 and optimizer.param_groups[0]["momentum"] == 0
    assert len(seen) == 50 * (1 + 3)  # quick: 50 batches, one warm-up and three timed passes


def test_memory_stories_per_second_count_every_batch_and_infer_times_no_training_step(monkeypatch):
    """steps=3 batches of 8 stories = 24 stories per timed epoch; with a fake median of 2 s per epoch both
    figures are 24 / 2 = 12 stories/s. The train epoch runs trainer.train_step 3 times (once per batch), the
    inference epoch never (and with the model in eval mode)."""
    steps_per_call = []
    calls = _count_train_steps(monkeypatch)

    def fake_time_call(fn, warmup, repeats, device):
        before = len(calls)
        fn()
        steps_per_call.append(len(calls) - before)
        return {"median_s": 2.0, "min_s": 2.0, "mean_s": 2.0, "repeats": 1}  # a fake median of 2 s

    monkeypatch.setattr(bench_memory, "time_call", fake_time_call)
    figures = bench_memory.memn2n_throughput(_tiny_babi(), batch_size=8, embed_dim=8, steps=3, repeats=1)
    assert steps_per_call == [3, 0]
    assert [f["value"] for f in figures] == [12.0, 12.0]
    assert [f["unit"] for f in figures] == ["stories/s", "stories/s"]
