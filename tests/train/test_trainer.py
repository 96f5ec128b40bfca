"""The one trainer: NaN guard, exact resume after SIGKILL, DDP equivalence, repeats, config checking."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from overlooked import api
from overlooked.config import ExperimentConfig, apply_overrides
from overlooked.errors import CheckpointError, ConfigError, NonFiniteLossError, OverlookedError, RegistryError
from overlooked.train.callbacks import Callback
from overlooked.train.checkpoint import read_checkpoint

SMALL = {
    "name": "tiny",
    "data": {"name": "synthetic", "kwargs": {"n_train": 200, "n_test": 64, "image_shape": [1, 12, 12]}},
    "model": {"name": "small_cnn", "kwargs": {"channels": [4, 8], "hidden": 16, "dropout": 0.3}},
    "augment": {"name": "random_shift", "kwargs": {"max_shift": 1}},
    "train": {"epochs": 3, "batch_size": 16, "lr": 0.01, "optimizer": "adam", "progress": False, "eval_batch_size": 64},
}


def _cfg(**train):
    raw = json.loads(json.dumps(SMALL))
    raw["train"].update(train)
    return ExperimentConfig.from_dict(raw)


def _weights(run: Path, name: str = "last") -> dict[str, torch.Tensor]:
    tensors, _ = read_checkpoint(run / "checkpoints" / f"{name}.safetensors")
    return {k: v for k, v in tensors.items() if k.startswith("model.")}


def test_nan_loss_stops_with_message(tmp_path):
    cfg = _cfg(lr=1e30, optimizer="sgd")
    with pytest.raises(NonFiniteLossError, match=r"loss is (nan|inf).*Lower train.lr.*step \d+"):
        api.train(cfg, out=tmp_path)


def test_unknown_config_key_fails_before_work(tmp_path):
    raw = json.loads(json.dumps(SMALL))
    raw["train"]["learning_rate"] = 0.1
    with pytest.raises(ConfigError, match="unknown config key.*train.learning_rate.*allowed.*lr"):
        ExperimentConfig.from_dict(raw)
    raw = json.loads(json.dumps(SMALL))
    raw["model"]["kwargs"]["widht"] = 3
    with pytest.raises(ConfigError, match="model.kwargs.widht.*allowed.*channels"):
        api.check_config(ExperimentConfig.from_dict(raw))
    raw["model"] = {"name": "small_cn"}
    with pytest.raises(RegistryError, match="Did you mean 'small_cnn'"):
        api.check_config(ExperimentConfig.from_dict(raw))
    raw = json.loads(json.dumps(SMALL))
    raw["train"]["epochs"] = "many"
    with pytest.raises(ConfigError, match="train.epochs: expected int"):
        ExperimentConfig.from_dict(raw)
    assert not list(tmp_path.iterdir())  # nothing was written


def test_repeats_report_both_selection_rules(tmp_path):
    cfg = _cfg(epochs=1, repeats=2)
    path, summary = api.train(cfg, out=tmp_path)
    assert summary["repeats"] == 2 and summary["seeds"] == [0, 1]
    assert "lowest training error" in summary["best_by_train"]["rule"]
    assert "validation" in summary["best_by_val"]["rule"]
    accs = [json.loads((path / f"seed{s}" / "summary.json").read_text())["test_accuracy"] for s in (0, 1)]
    assert summary["test_accuracy_mean"] == pytest.approx(sum(accs) / 2)
    assert (path / "summary.json").exists()


class _StopAfter(Callback):
    """Stops its run after ``n`` steps; the count is its state (saved and restored by --resume)."""

    def __init__(self, n: int):
        self.n, self.count, self.runs = n, 0, []

    def on_train_start(self, ctx):
        self.runs.append(self.count)  # what each run found: collected outside the state, kept across runs

    def on_step_end(self, ctx, loss):
        self.count += 1
        if self.count >= self.n:
            ctx.stop = True

    def state_dict(self):
        return {"count": self.count}

    def load_state_dict(self, state):
        self.count = state["count"]


def test_a_callback_passed_from_python_starts_each_seed_and_each_value_afresh(tmp_path):
    """It kept its state from one seed to the next: the extension audit's step counter let seed 0 train 4
    steps and seeds 1 and 2 one each, reported as equal repeats. Each seed now starts from the state the
    callback had when the run began; what it collects outside state_dict stays."""
    cb = _StopAfter(3)
    path, summary = api.train(_cfg(epochs=1, repeats=3), out=tmp_path, callbacks=[cb])
    assert [json.loads((path / f"seed{s}" / "summary.json").read_text())["steps"] for s in (0, 1, 2)] == [3, 3, 3]
    assert cb.runs == [0, 0, 0]
    cb = _StopAfter(2)
    path, _ = api.train_each(_cfg(epochs=1), "train.lr", [0.01, 0.02], out=tmp_path, callbacks=[cb])
    assert [json.loads((path / f"lr={v}" / "summary.json").read_text())["steps"] for v in (0.01, 0.02)] == [2, 2]


KILL_SCRIPT = textwrap.dedent(
    """
    import json, os, signal, sys
    from overlooked import api
    from overlooked.config import ExperimentConfig
    from overlooked.train.callbacks import Callback

    class KillAt(Callback):
        def __init__(self, step):
            self.step = step
        def on_step_end(self, ctx, loss):
            if ctx.state.step == self.step:
                os.kill(os.getpid(), signal.SIGKILL)

    raw = json.loads(sys.argv[1]); run_dir = sys.argv[2]; kill = int(sys.argv[3])
    cfg = ExperimentConfig.from_dict(raw)
    if sys.argv[4] == "resume":
        api.resume(run_dir)
    else:
        api.train(cfg, run_dir=run_dir, callbacks=[KillAt(kill)] if kill >= 0 else [])
    """
)


def _run(tmp_path: Path, raw: dict, run_dir: Path, kill: int, mode: str) -> int:
    script = tmp_path / "kill_script.py"
    script.write_text(KILL_SCRIPT)
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    return subprocess.run([sys.executable, str(script), json.dumps(raw), str(run_dir), str(kill), mode], env=env, timeout=300).returncode


@pytest.mark.slow
# Killed strictly between checkpoints (every 5 steps; 12 steps per epoch, ceil(180 / 16); validation every
# 10): at step 13, one step into the second epoch; at 24, the last step of the second epoch; at 17, after a
# checkpoint (15) that is not a validation step, so the resumed run must restore the training-loss window.
@pytest.mark.parametrize("ema_decay, kill", [(None, 13), (0.9, 24), (None, 17)])
def test_sigkill_then_resume_is_bitwise_identical(tmp_path, ema_decay, kill):
    raw = json.loads(json.dumps(SMALL))
    raw["train"].update({"epochs": 3, "checkpoint_every": 5, "eval_every": 10, "ema_decay": ema_decay})
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    assert _run(tmp_path, raw, ref, -1, "train") == 0
    rc = _run(tmp_path, raw, cut, kill, "train")
    assert rc == -9, f"the run was not killed (rc={rc})"
    step_saved = read_checkpoint(cut / "checkpoints" / "last.safetensors")[1]["info"]["state"]["step"]
    assert step_saved == (kill // 5) * 5 < kill
    assert _run(tmp_path, raw, cut, -1, "resume") == 0
    a, b = read_checkpoint(ref / "checkpoints" / "last.safetensors")[0], read_checkpoint(cut / "checkpoints" / "last.safetensors")[0]
    a, b = ({k: v for k, v in t.items() if k.startswith(("model.", "ema."))} for t in (a, b))
    assert a.keys() == b.keys() and any(k.startswith("ema.") for k in a) == (ema_decay is not None)
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs after resume (killed at step {kill})"
    ref_metrics = (ref / "metrics.jsonl").read_text()
    # throughput and times differ between the runs; the logged steps and validation numbers must not
    steps = [json.loads(line)["step"] for line in (cut / "metrics.jsonl").read_text().splitlines()]
    assert steps == [json.loads(line)["step"] for line in ref_metrics.splitlines()]
    for key in ("val_loss", "train_loss", "train_accuracy"):
        got = [json.loads(line)[key] for line in (cut / "metrics.jsonl").read_text().splitlines()]
        assert got == [json.loads(line)[key] for line in ref_metrics.splitlines()], key


DDP_CFG = {
    "name": "ddp",
    "data": {"name": "synthetic", "kwargs": {"n_train": 128, "n_test": 32, "image_shape": [1, 8, 8]}},
    "model": {"name": "mlp", "kwargs": {"hidden": [32], "dropout": 0.0}},
    "train": {"epochs": 1, "max_steps": 6, "batch_size": 16, "lr": 0.05, "optimizer": "sgd", "momentum": 0.9, "progress": False, "eval_every": 3},
}


# MemN2N's recipe: the cost summed over the batch (DDP's gradient average must be undone: loss_scale) and each
# parameter's gradient clipped, which must happen after the all-reduce, on the global batch's gradient. The clip
# is set so that some but not all steps clip (a clip on every step would hide a wrong scale).
SUMMED = {"objective": {"name": "cross_entropy", "kwargs": {"reduction": "sum"}}}
SUMMED_CLIPPED = {**SUMMED, "train": {**DDP_CFG["train"], "lr": 0.004, "grad_clip": 3.0, "grad_clip_per_tensor": True}}


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["mean", "summed", "summed_clipped"])
def test_ddp_two_ranks_equal_one_process(tmp_path, variant):
    """2 ranks x batch B/2 give the same parameters as 1 process x batch B on the same samples per step, for a
    mean cost, a summed one, and a summed one with per-tensor clipping."""
    cfg_path = tmp_path / "ddp.yaml"
    import yaml

    extra = {"mean": {}, "summed": {**SUMMED, "train": {**DDP_CFG["train"], "lr": 0.004}}, "summed_clipped": SUMMED_CLIPPED}[variant]
    cfg_path.write_text(yaml.safe_dump({**DDP_CFG, **extra}))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = subprocess.run([sys.executable, "-m", "overlooked", "train", str(cfg_path), "--out", str(tmp_path / "one")], env=env, capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    multi = subprocess.run([*torchrun, "-m", "overlooked", "train", str(cfg_path), "--out", str(tmp_path / "two")], env=env, capture_output=True, text=True, timeout=300)
    assert multi.returncode == 0, multi.stderr[-3000:]
    (one,) = (tmp_path / "one").iterdir()
    (two,) = (tmp_path / "two").iterdir()  # rank 0 alone wrote a run folder
    a, b = _weights(one), _weights(two)
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=0)
    s1, s2 = json.loads((one / "summary.json").read_text()), json.loads((two / "summary.json").read_text())
    assert s2["world_size"] == 2 and s1["examples_seen"] == s2["examples_seen"] == 6 * 16


ONE_RANK_STOPS = textwrap.dedent(
    """
    import json, sys, torch
    from overlooked import api
    from overlooked.config import ExperimentConfig
    from overlooked.train.callbacks import Callback

    class StopOnRankOne(Callback):
        def on_step_end(self, ctx, loss):
            if torch.distributed.get_rank() == 1 and ctx.state.step == 4:
                ctx.stop = True

    calls = []  # the trainer's own all-reduces (DDP's gradient buckets go through its C++ reducer, not this)
    all_reduce = torch.distributed.all_reduce
    torch.distributed.all_reduce = lambda *a, **k: calls.append(1) or all_reduce(*a, **k)
    cfg = ExperimentConfig.from_dict(json.loads(sys.argv[1]))
    path, summary = api.train(cfg, out=sys.argv[2], callbacks=[StopOnRankOne()])
    rank = torch.distributed.get_rank()  # one file per rank: printed lines of two processes may interleave
    with open(f"{sys.argv[2]}/rank{rank}.txt", "w") as fh:
        fh.write(f"RANK {rank} STEPS {summary['steps']} STOPPED {summary['stopped_by']} ALL_REDUCES {len(calls)}")
    import gc

    gc.collect()
    torch.distributed.destroy_process_group()  # as the CLI does on exit
    """
)


@pytest.mark.slow
def test_ddp_a_stop_on_one_rank_stops_every_rank(tmp_path):
    """A callback that stops on rank 1 only stops rank 0 at the same step (the ranks agree each step; if
    they did not, rank 0 would wait in its next all-reduce and the run would hang)."""
    script = tmp_path / "one_rank_stops.py"
    script.write_text(ONE_RANK_STOPS)
    raw = {**DDP_CFG, "train": {**DDP_CFG["train"], "max_steps": 8}}
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    proc = subprocess.run([*torchrun, str(script), json.dumps(raw), str(tmp_path / "runs")], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [(tmp_path / "runs" / f"rank{r}.txt").read_text() for r in (0, 1)]
    # one agreement per step (4), one per validation pass (at step 3, eval_every, and at the stop), and one at
    # the end, where every rank learns that rank 0 wrote the run
    assert lines == ["RANK 0 STEPS 4 STOPPED callback ALL_REDUCES 7", "RANK 1 STEPS 4 STOPPED callback ALL_REDUCES 7"], proc.stdout


def test_bf16_autocast_trains_and_stays_finite(tmp_path):
    path, summary = api.train(_cfg(epochs=1, bf16=True), out=tmp_path / "bf16")
    assert summary["steps"] == 12 and 0.0 <= summary["test_accuracy"] <= 1.0
    weights = _weights(path)
    assert all(torch.isfinite(v).all() and v.dtype == torch.float32 for v in weights.values())  # fp32 master weights
    config = (path / "config.yaml").read_text()
    assert "bf16: true" in config
    # autocast is really on: the same seed in float32 (bit-reproducible on CPU) ends at other weights
    fp32, _ = api.train(_cfg(epochs=1), out=tmp_path / "fp32")
    again, _ = api.train(_cfg(epochs=1), out=tmp_path / "fp32_again")
    fp32_w, again_w = _weights(fp32), _weights(again)
    assert all(torch.equal(fp32_w[k], again_w[k]) for k in fp32_w)
    assert any(not torch.equal(weights[k], fp32_w[k]) for k in weights)


@pytest.mark.filterwarnings("ignore:train.lr=0")  # one case sets lr=0 on purpose
def test_lr_schedule_and_clipping_follow_the_config(tmp_path):
    """The step schedule halves the lr on time; per-tensor clipping bounds each gradient norm."""
    from overlooked.train.schedules import lr_factor
    from overlooked.train.trainer import build_optimizer, train_step

    cfg = ExperimentConfig.from_dict({**json.loads(json.dumps(SMALL)), "train": {"schedule": "step", "step_epochs": 2, "gamma": 0.5}}).train
    assert [lr_factor(cfg, s, 10, 100) for s in (0, 19, 20, 40)] == [1.0, 1.0, 0.5, 0.25]
    model = torch.nn.Linear(4, 3)
    for per_tensor in (True, False):
        tcfg = ExperimentConfig.from_dict({"train": {"grad_clip": 1e-3, "grad_clip_per_tensor": per_tensor, "optimizer": "sgd", "lr": 0.0}}).train
        opt = build_optimizer(tcfg, model.parameters())
        batch = {"x": torch.randn(8, 4) * 100, "label": torch.randint(0, 3, (8,))}
        from overlooked.objectives import CrossEntropy

        train_step(model, batch, ("x",), CrossEntropy(), opt, tcfg)
        norms = torch.stack([p.grad.norm() for p in model.parameters()])
        if per_tensor:  # each tensor clipped to the bound on its own (under global clipping each would be below it)
            torch.testing.assert_close(norms, torch.full_like(norms, 1e-3))
        else:  # one factor for all: the joint norm is the bound, the ratio of the two norms is kept
            torch.testing.assert_close(norms.norm(), torch.tensor(1e-3))
            assert norms.min() < 0.99e-3


def test_eval_limit_evaluates_the_first_n_examples_only(tmp_path):
    _, full = api.train(_cfg(max_steps=3), out=tmp_path / "a")
    _, cut = api.train(_cfg(max_steps=3, eval_limit=7), out=tmp_path / "b")
    assert full["test_examples"] == 64 and cut["test_examples"] == 7 and cut["val_examples"] <= 7
    assert round(cut["test_accuracy"] * 7, 6) == round(cut["test_accuracy"] * 7)  # k / 7
    assert cut["test_accuracy_ci95"]["n"] == 7
    assert cut["train_examples"] == 7 and full["train_examples"] > 7 and full["steps"] == cut["steps"] == 3


def test_report_train_off_skips_only_the_training_split(tmp_path, monkeypatch):
    from overlooked.train import trainer

    scored = []
    real = trainer.evaluate

    def counting(model, data, *args, **kwargs):
        scored.append(len(data))
        return real(model, data, *args, **kwargs)

    monkeypatch.setattr(trainer, "evaluate", counting)
    _, full = api.train(_cfg(max_steps=2), out=tmp_path / "a")
    n_full = len(scored)
    _, cut = api.train(_cfg(max_steps=2, report_train=False), out=tmp_path / "b")
    assert len(scored) - n_full == n_full - 1  # the same validation passes and report, less one split
    assert "train_accuracy" in full and "train_examples" in full
    assert not any(k.startswith("train_") and k != "train_time_s" for k in cut)
    assert cut["val_accuracy"] == full["val_accuracy"] and cut["test_accuracy"] == full["test_accuracy"]
    with pytest.raises(ConfigError, match="repeats=2.*training error.*report_train=true"):
        api.train(_cfg(max_steps=2, repeats=2, report_train=False), out=tmp_path / "c")
    with pytest.raises(ConfigError, match="report_train=true"):
        api.train_each(_cfg(max_steps=2, repeats=2, report_train=False), "train.seed", [0, 1], out=tmp_path / "c")
    assert not (tmp_path / "c").exists()


def test_a_component_its_builder_refuses_is_a_config_error_and_leaves_no_folder(tmp_path):
    cfg = ExperimentConfig.from_dict({**DDP_CFG, "model": {"name": "mlp", "kwargs": {"hidden": [32], "dropout": 1.5}}})
    with pytest.raises(ConfigError, match=r"model 'mlp' could not be built from its settings: .*dropout.*model\.\*") as info:
        api.train(cfg, out=tmp_path / "runs")
    assert isinstance(info.value.__cause__, ValueError)
    assert not (tmp_path / "runs").exists()
    with pytest.raises(ConfigError, match="model 'mlp' could not be built"):
        api.train(replace(cfg, train=replace(cfg.train, repeats=2)), out=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


def test_an_empty_validation_split_is_a_config_error_and_leaves_no_folder(tmp_path):
    data = {"name": "synthetic", "kwargs": {**DDP_CFG["data"]["kwargs"], "val_fraction": 0.0}}
    cfg = ExperimentConfig.from_dict({**DDP_CFG, "data": data})
    with pytest.raises(ConfigError, match=r"the val split of 'synthetic' is empty .*val_fraction=0\.1"):
        api.train(cfg, out=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


def test_max_minutes_stops_after_a_validation_pass_and_says_so(tmp_path):
    """A budget that has already passed after the first step: one step, one validation pass (the best
    checkpoint is that step's), and ``stopped_by`` names the budget; other runs name their own reason."""
    path, summary = api.train(_cfg(max_minutes=1e-9), out=tmp_path / "a")
    assert summary["steps"] == 1 and summary["stopped_by"] == "max_minutes" and summary["best_step"] == 1
    records = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1]
    _, capped = api.train(_cfg(max_steps=2), out=tmp_path / "b")
    _, whole = api.train(_cfg(epochs=1), out=tmp_path / "c")
    assert capped["stopped_by"] == "max_steps" and whole["stopped_by"] == "epochs" and whole["metric"] == "top1"


def test_max_minutes_must_be_positive(tmp_path):
    with pytest.raises(ConfigError, match=r"train.max_minutes must be > 0 or null, got 0.0"):
        api.train(_cfg(max_minutes=0.0), out=tmp_path)


@pytest.mark.parametrize(
    "setting, message",
    [
        ({"epochs": -1}, "train.epochs must be >= 1, got -1"),
        ({"epochs": 0}, "train.epochs must be >= 1, got 0"),
        ({"batch_size": 0}, "train.batch_size must be >= 1"),
        ({"repeats": -2}, "train.repeats must be >= 1"),
        ({"lr": -1.0}, "train.lr must be >= 0"),
        ({"grad_clip": 0.0}, "train.grad_clip must be > 0 or null"),
        ({"max_steps": 0}, "train.max_steps must be >= 1 or null"),
        ({"momentum": 2.0, "optimizer": "sgd"}, r"train.momentum must be in \[0, 1\), got 2.0"),  # trained to inf, blamed on the lr
        ({"betas": [2, 0.9]}, r"train.betas must be two numbers in \[0, 1\) .* got \[2.0, 0.9\]"),  # PyTorch's own error mid-build
    ],
    ids=str,
)
def test_settings_no_run_can_use_are_refused_before_a_folder_exists(tmp_path, setting, message):
    with pytest.raises(ConfigError, match=message):
        api.train(_cfg(**setting), out=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


def test_a_device_this_machine_lacks_is_refused_before_a_folder_exists(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"train.device is 'cuda' but this torch .* sees no CUDA GPU; use --device cpu"):
        api.train(_cfg(device="cuda"), out=tmp_path / "runs")
    with pytest.raises(ConfigError, match="'gpu' is not a torch device"):
        api.train(_cfg(device="gpu"), out=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


class _RestartSelectionAt(Callback):
    """Test callback: at validation pass ``at`` (1-based) the model "changes" and selection restarts."""

    def __init__(self, at: int):
        self.at, self.seen = at, 0

    def on_eval_end(self, ctx, metrics):
        self.seen += 1
        if self.seen == self.at:
            ctx.restart_selection = True

    def state_dict(self):
        return {"seen": self.seen}

    def load_state_dict(self, state):
        self.seen = state["seen"]


@pytest.mark.parametrize("at", [2, 4])
def test_restart_selection_discards_earlier_and_current_scores(tmp_path, monkeypatch, at):
    """A callback that changes the model (MemN2N's linear start re-inserting its softmaxes) restarts the
    choice of the best checkpoint: only later validation passes are candidates, so the reported validation
    accuracy is the best of those; with the restart at the last pass, the final weights are reported and
    written as the best checkpoint (so evaluate finds what the summary reports)."""
    from overlooked.registry import CALLBACKS

    monkeypatch.setitem(CALLBACKS._builders, "test_restart", lambda at=1: _RestartSelectionAt(at))
    monkeypatch.setitem(CALLBACKS._tags, "test_restart", {})
    raw = json.loads(json.dumps(SMALL))
    raw["train"].update(epochs=4)
    raw["callbacks"] = [{"name": "test_restart", "kwargs": {"at": at}}]
    path, summary = api.train(ExperimentConfig.from_dict(raw), out=tmp_path)
    records = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines() if "val_accuracy" in line]
    assert len(records) == 4
    later = records[at:]
    if later:
        best = max(later, key=lambda r: r["val_accuracy"])  # first of the maxima, as the trainer keeps it
        assert summary["best_step"] == best["step"] and summary["val_accuracy"] == pytest.approx(best["val_accuracy"])
        assert summary["selection"] == "checkpoint with the best val_accuracy (validation split, never test)"
    else:
        assert summary["best_step"] == -1
        assert summary["selection"].startswith("the final weights: no validation pass chose")
        torch.testing.assert_close(summary["val_accuracy"], records[-1]["val_accuracy"])
        best, last = _weights(path, "best"), _weights(path, "last")
        assert best.keys() == last.keys() and all(torch.equal(best[k], last[k]) for k in best)
        assert api.evaluate(path, split="val")["accuracy"] == summary["val_accuracy"]


class _Fields(Callback):
    """Adds its fields, the numbers raised by the validation passes already seen."""

    def __init__(self, fields):
        self.fields, self.passes = fields, 0

    def on_eval_end(self, ctx, metrics):
        self.passes += 1

    def record_fields(self):
        return {k: v + self.passes if isinstance(v, int) else v for k, v in self.fields.items()}


class _Stop(Callback):
    def on_step_end(self, ctx, loss):
        raise AssertionError("a clash of record fields must be named before the first step")


def test_callbacks_add_fields_to_each_record_and_may_not_overwrite_the_trainers_or_each_others(tmp_path, monkeypatch):
    from overlooked.registry import CALLBACKS

    monkeypatch.setitem(CALLBACKS._builders, "test_fields", lambda **fields: _Fields(fields))
    monkeypatch.setitem(CALLBACKS._tags, "test_fields", {})
    monkeypatch.setitem(CALLBACKS._builders, "test_stop", _Stop)
    monkeypatch.setitem(CALLBACKS._tags, "test_stop", {})
    raw = json.loads(json.dumps(SMALL))
    raw["callbacks"] = [{"name": "test_fields", "kwargs": {"phase": 10}}]
    path, _ = api.train(ExperimentConfig.from_dict(raw), out=tmp_path)
    records = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]
    assert [r["phase"] for r in records] == [10, 11, 12] and all("val_loss" in r for r in records)  # written before on_eval_end
    for fields, message in (
        ([{"val_loss": 0}], "callback _Fields adds record fields ['val_loss'] that the trainer writes too"),
        ([{"phase": 0}, {"phase": 1, "x": 2}], "callback _Fields adds record fields ['phase'] that callback _Fields writes too"),
    ):
        raw["callbacks"] = [{"name": "test_fields", "kwargs": f} for f in fields] + [{"name": "test_stop"}]
        with pytest.raises(ConfigError, match=re.escape(message)):
            api.train(ExperimentConfig.from_dict(raw), out=tmp_path / "clash")


def test_record_fields_take_one_element_tensors_as_numbers_and_name_what_json_cannot_hold():
    """A callback returning {"grad_norm": tensor(0.5)} failed inside json after the epoch, leaving a run
    without its summary (the extension audit)."""
    import numpy as np

    from overlooked.train.trainer import with_record_fields

    out = with_record_fields({"step": 1}, [_Fields({"t": torch.tensor(0.5), "n": np.float32(2.0), "v": torch.tensor([3])})])
    assert out == {"step": 1, "t": 0.5, "n": 2.0, "v": 3} and all(type(out[k]) in (int, float) for k in out)
    json.dumps(out)
    with pytest.raises(ConfigError, match=r"callback _Fields's record field 'w' is Tensor .* cannot hold; return numbers"):
        with_record_fields({"step": 1}, [_Fields({"w": torch.ones(2)})])
    with pytest.raises(ConfigError, match=r"callback _Fields's record field 'o' is object"):
        with_record_fields({"step": 1}, [_Fields({"o": object()})])


def test_sampling_with_replacement_draws_full_batches_per_seed_and_epoch():
    """train.sampling=replacement: n // B full batches per epoch, drawn with replacement (the MemN2N authors'
    train.m), fixed by (seed, epoch), and split over DDP ranks without changing the global batches."""
    from overlooked.train.distributed import DistInfo
    from overlooked.train.trainer import _Sequence

    one = _Sequence(100, 3, DistInfo(), "replacement", 16)
    assert one.steps_per_epoch() == 6  # floor(100 / 16); the shuffled epoch has ceil = 7
    assert _Sequence(100, 3, DistInfo(), "shuffle", 16).steps_per_epoch() == 7
    ep0 = one.epoch(0)
    assert len(ep0) == 6 and all(b.shape == (16,) for b in ep0)
    drawn = torch.cat(ep0)
    assert 0 <= int(drawn.min()) and int(drawn.max()) < 100
    assert len(drawn.unique()) < len(drawn)  # with replacement: 96 draws from 100 repeat (P(no repeat) < 1e-17)
    assert all(torch.equal(a, b) for a, b in zip(ep0, _Sequence(100, 3, DistInfo(), "replacement", 16).epoch(0)))
    assert not torch.equal(drawn, torch.cat(one.epoch(1)))  # a new draw each epoch
    assert not torch.equal(drawn, torch.cat(_Sequence(100, 4, DistInfo(), "replacement", 16).epoch(0)))  # and seed
    ranks = [_Sequence(100, 3, DistInfo(rank=r, world_size=2), "replacement", 16).epoch(0) for r in (0, 1)]
    for step, batch in enumerate(ep0):
        assert torch.equal(torch.cat([ranks[0][step], ranks[1][step]]), batch)


def test_trainer_counts_steps_of_sampling_with_replacement(tmp_path):
    _, summary = api.train(_cfg(epochs=2, sampling="replacement"), out=tmp_path)
    assert summary["steps"] == 2 * (180 // 16) and summary["examples_seen"] == 2 * (180 // 16) * 16
    with pytest.raises(ConfigError, match="train.sampling"):
        _cfg(sampling="bootstrap")


class _RecordWeights(Callback):
    """Test callback: a copy of the model's weights after every optimiser step."""

    def __init__(self):
        self.seen: list[dict[str, torch.Tensor]] = []

    def on_step_end(self, ctx, loss):
        self.seen.append({k: v.detach().clone() for k, v in ctx.model.state_dict().items()})


def _fit_three_sgd_steps(tmp_path: Path, **train) -> tuple[dict, torch.nn.Module, list[dict[str, torch.Tensor]]]:
    """Three SGD steps of the small config through ``trainer.fit`` with one validation pass at the end:
    ``(summary, model, weights after each step)``."""
    from overlooked import catalog
    from overlooked.api import build_data, build_model, build_objective
    from overlooked.train import trainer

    catalog.load_all()
    cfg = _cfg(max_steps=3, eval_every=3, optimizer="sgd", lr=0.1, **train)
    splits = build_data(cfg)
    model, objective = build_model(cfg, splits.meta), build_objective(cfg, splits)
    record = _RecordWeights()
    summary = trainer.fit(model, splits, objective, cfg.train, tmp_path, callbacks=[record])
    return summary, model, record.seen


def _assert_floats_close(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], prefix: str = "") -> None:
    for k in expected:
        if expected[k].is_floating_point():
            torch.testing.assert_close(actual[prefix + k], expected[k], rtol=1e-6, atol=1e-7)


def test_ema_weights_are_the_hand_computed_average_and_are_what_is_scored(tmp_path):
    """``train.ema_decay = d``: after step 1 the average is w1, then e_t = d e_(t-1) + (1 - d) w_t. The
    validation pass, the best checkpoint and the final report use the average; ``last`` keeps the trained
    weights (to resume from) and the average beside them."""
    summary, model, (w1, w2, w3) = _fit_three_sgd_steps(tmp_path, ema_decay=0.75)
    expected = {k: 0.75 * (0.75 * w1[k] + 0.25 * w2[k]) + 0.25 * w3[k] for k in w1}
    best = {k[len("model."):]: v for k, v in _weights(tmp_path, "best").items()}
    last, _ = read_checkpoint(tmp_path / "checkpoints" / "last.safetensors")
    _assert_floats_close(best, expected)
    _assert_floats_close(last, expected, prefix="ema.module.")
    for k in expected:
        if expected[k].is_floating_point():
            assert torch.equal(last[f"model.{k}"], w3[k])
    assert not all(torch.equal(expected[k], w3[k]) for k in expected)  # the average is not the last step
    assert int(last["ema.n_averaged"]) == 3
    torch.testing.assert_close(dict(model.state_dict()), best)  # the final report's weights
    assert summary["weights"] == "exponential moving average of the weights, decay 0.75"


def test_ema_decay_outside_zero_one_and_resume_without_average_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="ema_decay must lie strictly between 0 and 1"):
        api.train(_cfg(max_steps=1, ema_decay=1.0), out=tmp_path / "a")
    from overlooked.api import build_data, build_model
    from overlooked.errors import CheckpointError
    from overlooked.train.checkpoint import load_checkpoint
    from overlooked.train.trainer import build_ema

    path, _ = api.train(_cfg(max_steps=1), out=tmp_path / "b")
    cfg = _cfg(ema_decay=0.9)
    model = build_model(cfg, build_data(cfg).meta)
    ema = build_ema(model, cfg.train)
    with pytest.raises(CheckpointError, match="no weight average.*without train.ema_decay"):
        load_checkpoint(path / "checkpoints" / "last.safetensors", model, None, ema)


def test_averaged_weights_are_scored_through_the_live_model_and_put_back_exactly():
    """Validation scores the average through the model itself (so flags a callback set on it, such as
    MemN2N's linear start, apply), and the trained weights come back bit for bit."""
    from overlooked.train.trainer import averaged_weights, build_ema

    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    ema = build_ema(model, _cfg(ema_decay=0.5).train)
    ema.update_parameters(model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    model(torch.randn(4, 3))  # moves the batch-norm statistics too
    ema.update_parameters(model)
    model.flag = "set after the copy"
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with averaged_weights(model, ema):
        assert model.flag == "set after the copy"
        for k, v in model.state_dict().items():
            assert torch.equal(v, ema.module.state_dict()[k])
        assert not torch.equal(model[0].weight, before["0.weight"])
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    with averaged_weights(model, None):  # no average: nothing changes
        assert torch.equal(model[0].weight, before["0.weight"])


def test_ema_warmup_follows_the_hand_computed_decays(tmp_path):
    """With ``train.ema_warmup`` the n-th update (n = 1, 2, ... after the copy) uses
    min(decay, (1 + n) / (10 + n)): 2/11 and 3/12 for the second and third steps here."""
    _, _, (w1, w2, w3) = _fit_three_sgd_steps(tmp_path, ema_decay=0.99, ema_warmup=True)
    d2, d3 = 2 / 11, 3 / 12
    expected = {k: d3 * (d2 * w1[k] + (1 - d2) * w2[k]) + (1 - d3) * w3[k] for k in w1}
    _assert_floats_close({k[len("model."):]: v for k, v in _weights(tmp_path, "best").items()}, expected)


def test_environment_records_the_threads_training_uses(tmp_path):
    """train.num_threads is applied inside fit, after environment.json is written: the record names it."""
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        cfg = ExperimentConfig.from_dict({**json.loads(json.dumps(SMALL)), "train": {**SMALL["train"], "epochs": 1, "num_threads": 1}})
        path, _ = api.train(cfg, out=tmp_path)
        assert json.loads((path / "environment.json").read_text())["torch_threads"] == 1
    finally:
        torch.set_num_threads(before)


def test_select_last_reports_the_final_weights(tmp_path):
    """select_metric=last (the MemN2N authors' code tests its final model): the report scores the weights of
    the last validation pass, whatever the earlier scores."""

    class Scramble(Callback):  # wreck the weights after the third validation pass, so the last pass scores worse
        def __init__(self):
            self.passes = 0

        def on_eval_end(self, ctx, metrics):
            self.passes += 1
            if self.passes == 3:
                with torch.no_grad():
                    for p in ctx.model.parameters():
                        p.add_(torch.randn_like(p) * 5.0)

    torch.manual_seed(0)
    cfg = ExperimentConfig.from_dict({**json.loads(json.dumps(SMALL)), "train": {**SMALL["train"], "epochs": 4, "select_metric": "last"}})
    path, summary = api.train(cfg, out=tmp_path, callbacks=[Scramble()])
    records = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["val_accuracy"] < max(r["val_accuracy"] for r in records)  # the choice matters here
    assert summary["best_step"] == summary["steps"] == records[-1]["step"]
    assert summary["val_accuracy"] == pytest.approx(records[-1]["val_accuracy"])
    assert summary["selection"].startswith("the final weights")


def test_resume_keeps_the_first_environment_and_records_its_own(tmp_path):
    """A resumed run keeps environment.json's first record (command, date, commit) and appends one per
    resume; its summary says from which step the process continued (wall_time_s is this process's)."""
    from overlooked.train.callbacks import Callback

    class Stop(Callback):
        def on_step_end(self, ctx, loss):
            if ctx.state.step == 10:
                ctx.stop = True

    run, _ = api.train(_cfg(epochs=2, checkpoint_every=5), run_dir=tmp_path / "run", callbacks=[Stop()])
    first = json.loads((run / "environment.json").read_text())
    assert "resumes" not in first
    _, summary = api.resume(run)
    env = json.loads((run / "environment.json").read_text())
    assert {k: v for k, v in env.items() if k != "resumes"} == first
    assert len(env["resumes"]) == 1 and set(env["resumes"][0]) == set(first) - {"config"}  # the config only at the start
    assert first["config"] == yaml.safe_load((run / "config.yaml").read_text())  # as config.yaml was written
    assert summary["resumed_from_step"] == 10 and summary["steps"] == 2 * 12


def test_evaluating_a_run_without_the_checkpoint_says_what_it_has(tmp_path):
    run, _ = api.train(_cfg(max_steps=2), out=tmp_path)
    (run / "checkpoints" / "best.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"has no best checkpoint \(checkpoints/best.safetensors\); it has last: pass --checkpoint last"):
        api.evaluate(run)
    assert api.evaluate(run, checkpoint="last")["accuracy"] >= 0
    (run / "checkpoints" / "last.safetensors").unlink()
    with pytest.raises(CheckpointError, match="it has no checkpoint at all"):
        api.evaluate(run)


def test_a_run_failing_before_its_first_record_leaves_no_folder(tmp_path):
    """A fresh run that fails before it logs or checkpoints anything is removed with its folder; one that
    fails later keeps its folder, as the record of what happened."""
    from overlooked.train.callbacks import Callback

    class FailAt(Callback):
        def __init__(self, step):
            self.step = step

        def on_train_start(self, ctx):
            if self.step == 0:
                raise RuntimeError("broken at the start")

        def on_step_end(self, ctx, loss):
            if ctx.state.step == self.step:
                raise RuntimeError("broken later")

    with pytest.raises(RuntimeError, match="broken at the start"):
        api.train(_cfg(), out=tmp_path / "runs", callbacks=[FailAt(0)])
    assert not (tmp_path / "runs").exists()  # the parent folder too, made for this run
    with pytest.raises(RuntimeError, match="broken later"):
        api.train(_cfg(eval_every=2), out=tmp_path / "runs", callbacks=[FailAt(3)])
    (kept,) = (tmp_path / "runs").iterdir()
    assert (kept / "metrics.jsonl").is_file() and (kept / "config.yaml").is_file()


def test_a_callback_stop_between_passes_validates_and_checkpoints_where_it_stopped(tmp_path):
    """Stopped by a callback at step 7 with validation every 5: the summary's weights, the last validation
    record and last.safetensors are all those of step 7 (before: step 5's, under 'the final weights')."""
    from overlooked.train.callbacks import Callback
    from overlooked.train.checkpoint import read_checkpoint

    class StopAt7(Callback):
        def on_step_end(self, ctx, loss):
            ctx.stop = ctx.stop or ctx.state.step == 7

    run, summary = api.train(_cfg(eval_every=5, select_metric="last"), out=tmp_path, callbacks=[StopAt7()])
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [5, 7] and summary["steps"] == 7 and summary["stopped_by"] == "callback"
    assert read_checkpoint(run / "checkpoints" / "last.safetensors")[1]["info"]["state"]["step"] == 7
    assert summary["val_accuracy"] == records[-1]["val_accuracy"]


def test_resume_ignores_a_best_checkpoint_written_after_the_resume_point(tmp_path):
    """best every 5 steps, last every 10: a kill at step 17 leaves last at 10 and best possibly at 15, from a
    continuation the resumed run may not repeat. A best whose step is not the resumed state's best_step is
    not preloaded (here: a finished run, so the resume trains no further and reports its final weights)."""
    from overlooked.train.checkpoint import read_checkpoint, save_checkpoint

    run, first = api.train(_cfg(epochs=1, eval_every=6), out=tmp_path)
    best = run / "checkpoints" / "best.safetensors"
    _, doc = read_checkpoint(best)
    model = api.build_model(api.run_config(run), api.build_data(api.run_config(run)).meta)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(0.5)  # weights no pass of this run produced
    later = {**doc["info"], "state": {**doc["info"]["state"], "best_step": first["best_step"] + 100}}
    save_checkpoint(best, model, info=later)
    (run / "summary.json").unlink()  # as if killed after its last checkpoint, during the final report
    _, summary = api.resume(run)
    best_w, last_w = _weights(run, "best"), _weights(run, "last")
    assert all(torch.equal(best_w[k], last_w[k]) for k in best_w)  # the final weights, written as best
    assert summary["selection"].startswith("the final weights") and summary["best_step"] == -1


def test_checkpoint_files_get_the_usual_mode_and_ema_counters_follow_the_model(tmp_path):
    import os
    import stat

    raw = {  # a model with batch norm, whose step counters are integer buffers
        "name": "bn",
        "data": {"name": "synthetic", "kwargs": {"n_train": 64, "n_test": 16, "image_shape": [1, 6, 6]}},
        "model": {"name": "spiking_mlp", "kwargs": {"input_shape": [1, 6, 6], "hidden": [8], "steps": 2}},
        "objective": {"name": "spiking_cross_entropy"},
        "train": {"epochs": 1, "batch_size": 16, "ema_decay": 0.9, "progress": False},
    }
    run, _ = api.train(ExperimentConfig.from_dict(raw), out=tmp_path)
    umask = os.umask(0)
    os.umask(umask)
    mode = stat.S_IMODE((run / "checkpoints" / "last.safetensors").stat().st_mode)
    assert mode == 0o666 & ~umask
    from overlooked.train.checkpoint import read_checkpoint

    tensors, _ = read_checkpoint(run / "checkpoints" / "last.safetensors")
    counters = [k for k in tensors if k.startswith("model.") and k.endswith("num_batches_tracked")]
    assert counters and all(int(tensors[k]) == 4 for k in counters)  # 4 training steps
    assert all(torch.equal(tensors[k], tensors["ema.module." + k[len("model."):]]) for k in counters)


def test_on_epoch_end_runs_before_the_epochs_checkpoint(tmp_path):
    from overlooked.train.callbacks import Callback
    from overlooked.train.checkpoint import read_checkpoint

    class CountEpochs(Callback):
        def __init__(self):
            self.epochs = 0

        def on_epoch_end(self, ctx):
            self.epochs += 1

        def state_dict(self):
            return {"epochs": self.epochs}

    run, _ = api.train(_cfg(epochs=2), out=tmp_path, callbacks=[CountEpochs()])
    info = read_checkpoint(run / "checkpoints" / "last.safetensors")[1]["info"]
    assert info["state"]["step"] == 24 and info["state"]["callbacks"] == [{"epochs": 2}]


@pytest.mark.slow
def test_ddp_checkpoints_keep_each_ranks_augmentation_stream(tmp_path):
    """Only rank 0 writes checkpoints; each rank's augmentation generator state goes in as augment.<rank>
    (a resume restores its own; before, every rank got rank 0's)."""
    import yaml

    from overlooked.train.checkpoint import read_checkpoint

    cfg = {**DDP_CFG, "augment": {"name": "random_shift", "kwargs": {"max_shift": 1}}, "train": {**DDP_CFG["train"], "checkpoint_every": 3}}
    cfg_path = tmp_path / "ddp.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    multi = subprocess.run([*torchrun, "-m", "overlooked", "train", str(cfg_path), "--out", str(tmp_path / "two")], env=env, capture_output=True, text=True, timeout=300)
    assert multi.returncode == 0, multi.stderr[-3000:]
    (run,) = (tmp_path / "two").iterdir()
    tensors, _ = read_checkpoint(run / "checkpoints" / "last.safetensors")
    for key in ("augment", "torch"):  # augmentation and dropout streams, each rank's own
        assert torch.equal(tensors[f"rng.{key}.0"], tensors[f"rng.{key}"])
        assert not torch.equal(tensors[f"rng.{key}.0"], tensors[f"rng.{key}.1"])


def test_repeats_summaries_carry_trials_and_test_examples(tmp_path):
    """The fair-comparison rule reads both from a --repeats parent too (they were dropped there)."""
    _, summary = api.train(_cfg(epochs=1, repeats=2, trials=3, eval_limit=16), out=tmp_path)
    assert summary["repeats"] == 2 and summary["trials"] == 3 and summary["test_examples"] == 16


def test_threads_and_determinism_are_put_back_after_a_run(tmp_path):
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    try:
        torch.use_deterministic_algorithms(False)
        torch.set_num_threads(2)
        api.train(_cfg(epochs=1, num_threads=1, deterministic=True), out=tmp_path)
        assert torch.get_num_threads() == 2 and not torch.are_deterministic_algorithms_enabled()
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


def _cublas(monkeypatch, initialized: bool, **kw):
    from overlooked.config import TrainConfig
    from overlooked.train.trainer import cublas_for_determinism

    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: initialized)
    cublas_for_determinism(TrainConfig(**kw))


@pytest.fixture
def no_cublas_env(monkeypatch):
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", "x")  # recorded first, so the teardown removes what a test sets
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG")


def test_a_deterministic_cuda_run_sets_the_cublas_workspace(monkeypatch, no_cublas_env, recwarn):
    """cuBLAS is deterministic only with CUBLAS_WORKSPACE_CONFIG set before the first CUDA matmul."""
    _cublas(monkeypatch, False, deterministic=False, device="cuda")
    _cublas(monkeypatch, False, deterministic=True, device="cpu")  # CPU runs leave the environment alone
    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ
    _cublas(monkeypatch, False, deterministic=True, device="cuda:1")
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8" and not recwarn.list
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")  # the user's own choice is kept
    _cublas(monkeypatch, True, deterministic=True, device="cuda")
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8" and not recwarn.list


def test_setting_the_cublas_workspace_after_cuda_started_warns(monkeypatch, no_cublas_env):
    with pytest.warns(RuntimeWarning, match="CUBLAS_WORKSPACE_CONFIG=:4096:8 in the environment before Python starts"):
        _cublas(monkeypatch, True, deterministic=True, device="cuda")


@pytest.mark.parametrize("entry", ["train", "resume"])
def test_train_and_resume_fix_cublas_and_the_rank_device_before_touching_the_rng(tmp_path, monkeypatch, entry):
    """Order matters: CUBLAS_WORKSPACE_CONFIG before anything starts CUDA, and init_distributed (which sets each
    rank's GPU) before own_rng reads the current device."""
    run, _ = api.train(_cfg(max_steps=2), run_dir=tmp_path / "run") if entry == "resume" else (None, None)
    if run is not None:
        (run / "summary.json").unlink()  # as if killed during its final report: a finished run is not resumed
    calls = []

    class Stop(Exception):
        pass

    monkeypatch.setattr(api, "cublas_for_determinism", lambda cfg: calls.append("cublas"))
    from overlooked.train.distributed import DistInfo

    monkeypatch.setattr(api, "init_distributed", lambda device: calls.append("init_distributed") or DistInfo())

    def own_rng(device):
        calls.append("own_rng")
        raise Stop

    monkeypatch.setattr(api, "own_rng", own_rng)
    with pytest.raises(Stop):
        api.train(_cfg(max_steps=2), out=tmp_path / "new") if entry == "train" else api.resume(run)
    assert calls == ["cublas", "init_distributed", "own_rng"]


def test_a_run_dir_that_holds_a_run_is_refused_and_left_as_it_was(tmp_path):
    """api.train(run_dir=<a finished run>) appended a second run's records to the first one's metrics.jsonl
    and overwrote its checkpoints and summary; it is refused before anything is written."""
    run, _ = api.train(_cfg(max_steps=2), run_dir=tmp_path / "run")
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    with pytest.raises(ConfigError, match="already holds a run.*--resume"):
        api.train(_cfg(max_steps=3), run_dir=run)
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


def test_training_puts_the_callers_random_state_back(tmp_path):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    api.train(_cfg(max_steps=2, seed=7), out=tmp_path)
    api.train(_cfg(max_steps=2, seed=7, repeats=2), out=tmp_path)
    assert torch.equal(torch.rand(3), expected)


def test_each_refuses_a_value_named_twice_before_any_run(tmp_path):
    with pytest.raises(ConfigError, match="names 1 more than once"):
        api.train_each(_cfg(max_steps=2), "train.seed", [1, 0, 1], out=tmp_path)
    assert not any(tmp_path.iterdir())


def test_a_repeats_folder_whose_seed_runs_exist_is_refused(tmp_path):
    """A --repeats run stopped before its own files were written leaves only seedN/ folders: training into the
    folder again would append to their metrics.jsonl."""
    (tmp_path / "run" / "seed8").mkdir(parents=True)
    (tmp_path / "run" / "seed8" / "metrics.jsonl").write_text('{"step": 1}\n')
    with pytest.raises(ConfigError, match="seed8 already holds a run"):
        api.train(_cfg(max_steps=2, seed=7, repeats=2), run_dir=tmp_path / "run")
    assert not (tmp_path / "run" / "seed7").exists()


def test_each_refuses_values_that_name_the_same_folder(tmp_path):
    with pytest.raises(ConfigError, match="names 1 more than once"):
        api.train_each(_cfg(max_steps=2), "train.seed", [1, "1"], out=tmp_path)


@pytest.mark.filterwarnings("ignore:train.lr=0")  # lr=0 on purpose: the weights must not move
def test_init_from_starts_from_a_runs_weights_and_counts_its_examples(tmp_path):
    """train.init_from loads the run's reported weights (best, or last) before the first step; the summary
    records the run and the examples it saw, which the fair-comparison rule adds to this run's own."""
    from overlooked.bench.fair import UnfairComparisonError, check_fair

    source, first = api.train(_cfg(epochs=2), out=tmp_path / "a")
    for checkpoint in ("best", "last"):  # lr 0: the weights stay the ones loaded
        run, summary = api.train(_cfg(epochs=1, optimizer="sgd", lr=0.0, init_from=str(source), init_checkpoint=checkpoint), out=tmp_path / checkpoint)
        loaded, started = _weights(source, checkpoint), _weights(run, "last")
        assert loaded.keys() == started.keys() and all(torch.equal(loaded[k], started[k]) for k in loaded)
        assert summary["init_from"] == {"run": str(source), "checkpoint": checkpoint, "examples_seen": first["examples_seen"]}
    fresh, _ = api.train(_cfg(epochs=1, optimizer="sgd", lr=0.0), out=tmp_path / "fresh")
    assert any(not torch.equal(a, b) for a, b in zip(_weights(fresh).values(), _weights(run).values()))
    rows = [{**summary, "run": "init"}, {**summary, "run": "plain", "init_from": None}]
    check_fair(rows, max_examples=summary["examples_seen"] + first["examples_seen"])
    with pytest.raises(UnfairComparisonError, match=rf"saw {summary['examples_seen'] + first['examples_seen']} training examples \({summary['examples_seen']} here, {first['examples_seen']} in the run it started from\)"):
        check_fair(rows, max_examples=summary["examples_seen"])


def test_init_from_refuses_another_model_and_leaves_no_folder(tmp_path):
    source, _ = api.train(_cfg(epochs=1), out=tmp_path / "a")
    raw = json.loads(json.dumps(SMALL))
    raw["model"]["kwargs"]["hidden"] = 7
    raw["train"].update(epochs=1, init_from=str(source))
    with pytest.raises(CheckpointError, match=rf"train.init_from={re.escape(str(source))} \(train.init_checkpoint=best\): .*does not fit this model"):
        api.train(ExperimentConfig.from_dict(raw), out=tmp_path / "b")
    with pytest.raises(CheckpointError, match="nowhere does not exist: pass a run folder"):
        api.train(_cfg(epochs=1, init_from=str(tmp_path / "nowhere")), out=tmp_path / "b")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="has no best checkpoint .*it has no checkpoint at all"):
        api.train(_cfg(epochs=1, init_from=str(tmp_path / "empty")), out=tmp_path / "b")
    from safetensors.torch import save_file

    best = source / "checkpoints" / "best.safetensors"  # a diverged run: its first training step said "lower train.lr"
    tensors, doc = read_checkpoint(best)
    tensors = {k: v.fill_(float("nan")) if k.endswith("classifier.1.weight") else v for k, v in tensors.items()}
    save_file(tensors, str(best), metadata={"overlooked": json.dumps(doc)})
    with pytest.raises(CheckpointError, match=r"its weights hold NaN or inf \(classifier.1.weight\): that run diverged"):
        api.train(_cfg(epochs=1, init_from=str(source)), out=tmp_path / "b")
    assert not (tmp_path / "b").exists() or not any((tmp_path / "b").iterdir())
    with pytest.raises(CheckpointError, match=r"best.safetensors: its weights hold NaN or inf \(classifier.1.weight\)"):
        api.evaluate(source)  # scored, NaN weights gave a chance-level accuracy that read as a result
    best.unlink()
    best.mkdir()  # a folder where the file should be: "has no best checkpoint ... it has best" before
    with pytest.raises(CheckpointError, match=r"best.safetensors is not a file \(a folder in its place\?\); restore it"):
        api.evaluate(source)


def test_a_refused_resume_loses_no_records_and_a_finished_run_is_not_resumed(tmp_path):
    """The records after the checkpoint are dropped only once the checkpoint has loaded; a run that trained to
    its end is refused (nothing to resume) with the way to train further; a resumed run's wall time counts the
    earlier process up to its checkpoint."""
    from overlooked.train.callbacks import Callback
    from overlooked.train.checkpoint import read_checkpoint_doc

    class Stop(Callback):
        def on_step_end(self, ctx, loss):
            ctx.stop = ctx.state.step == 10

    run, _ = api.train(_cfg(epochs=2, checkpoint_every=5, eval_every=3), run_dir=tmp_path / "run", callbacks=[Stop()])
    records = (run / "metrics.jsonl").read_text()
    raw = json.loads(json.dumps(SMALL))
    raw["model"]["kwargs"]["hidden"] = 7  # another model trained with the same settings
    raw["train"].update(epochs=2, checkpoint_every=5, eval_every=3)
    foreign, _ = api.train(ExperimentConfig.from_dict(raw), out=tmp_path / "foreign")
    mine = (run / "checkpoints" / "last.safetensors").read_bytes()
    (run / "checkpoints" / "last.safetensors").write_bytes((foreign / "checkpoints" / "last.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match="does not fit this model"):
        api.resume(run)
    assert (run / "metrics.jsonl").read_text() == records
    (run / "checkpoints" / "last.safetensors").write_bytes(mine)
    before = read_checkpoint_doc(run / "checkpoints" / "last.safetensors")["info"]["state"]["wall_time_s"]
    assert before > 0
    _, summary = api.resume(run)
    assert summary["stopped_by"] == "epochs" and summary["wall_time_s"] > before and "wall_time_before_s" not in summary
    with pytest.raises(OverlookedError, match=r"has finished \(stopped by epochs.*train.init_from="):
        api.resume(run)


def test_a_resume_refuses_a_config_yaml_edited_since_the_checkpoint(tmp_path):
    """config.yaml is what a resume reads; the checkpoint stores the training settings it was written with.
    A changed lr, batch size, epochs or optimiser would splice two runs into one folder (an optimiser swap
    failed inside PyTorch's step with KeyError 'betas'): refused, naming the setting, both values and the way
    out, with nothing written; where it runs (device) and this process's time limit may change."""
    import yaml

    from overlooked.train.callbacks import Callback

    class Stop(Callback):
        def on_step_end(self, ctx, loss):
            ctx.stop = ctx.state.step == 6

    run, _ = api.train(_cfg(epochs=2, checkpoint_every=3, eval_every=3), run_dir=tmp_path / "run", callbacks=[Stop()])
    text, records, env = (run / "config.yaml").read_text(), (run / "metrics.jsonl").read_text(), (run / "environment.json").read_text()
    for change, said in [
        ({"lr": 0.5}, r"train.lr=0.5 \(written with 0.01\)"),
        ({"optimizer": "sgd", "batch_size": 7}, r"train.batch_size=7 \(written with 16\), train.optimizer='sgd' \(written with 'adam'\)"),
        ({"epochs": 5}, r"train.epochs=5 \(written with 2\)"),
    ]:
        edited = yaml.safe_load(text)
        edited["train"].update(change)
        (run / "config.yaml").write_text(yaml.safe_dump(edited, sort_keys=False))
        with pytest.raises(ConfigError, match="written with other training settings than the run's config.yaml now holds: " + said + r"\. A resume continues the same run.*train.init_from="):
            api.resume(run)
        assert (run / "metrics.jsonl").read_text() == records
        assert (run / "environment.json").read_text() == env  # no `resumes` entry for a resume that never ran
    for section, change, said in [  # the rest of the config, against the one environment.json kept at the start
        ("data", {"n_train": 150}, r"data.kwargs.n_train=150 \(started with 200\)"),
        ("model", {"dropout": 0.0}, r"model.kwargs.dropout=0.0 \(started with 0.3\)"),
        ("augment", {"max_shift": 2}, r"augment.kwargs.max_shift=2 \(started with 1\)"),
    ]:
        edited = yaml.safe_load(text)
        edited[section]["kwargs"].update(change)
        (run / "config.yaml").write_text(yaml.safe_dump(edited, sort_keys=False))
        with pytest.raises(ConfigError, match=r"config.yaml differs from the config .*run started with \(its environment.json keeps it\): " + said):
            api.resume(run)
        assert (run / "environment.json").read_text() == env and (run / "metrics.jsonl").read_text() == records
    edited = yaml.safe_load(text)
    edited["train"].update(max_minutes=30.0, eval_batch_size=32, progress=False)
    (run / "config.yaml").write_text(yaml.safe_dump(edited, sort_keys=False))
    _, summary = api.resume(run, device="cpu")
    assert summary["stopped_by"] == "epochs"


def test_init_from_counts_a_chain_and_survives_repeats_and_each(tmp_path):
    """A -> B -> C: C's weights saw A's and B's examples; --repeats and --each summaries keep init_from, and
    --each over a non-data setting counts its values as hyper-parameter trials, not as data."""
    a, sa = api.train(_cfg(epochs=1), out=tmp_path / "a")
    b, sb = api.train(_cfg(epochs=1, init_from=str(a)), out=tmp_path / "b")
    _, sc = api.train(_cfg(epochs=1, init_from=str(b), repeats=2), out=tmp_path / "c")
    assert sc["init_from"]["examples_seen"] == sa["examples_seen"] + sb["examples_seen"] and sc["repeats"] == 2
    _, se = api.train_each(_cfg(epochs=1, max_steps=2, init_from=str(a)), "train.lr", [0.01, 0.02], out=tmp_path / "e")
    assert se["trials"] == 2 and "lr" not in se["dataset_kwargs"]
    _, seeds = api.train_each(_cfg(epochs=1, max_steps=2), "train.seed", [0, 1], out=tmp_path / "s")
    assert seeds["trials"] == 1  # seeds are not hyper-parameter trials
    assert se["init_from"]["examples_seen"] == 2 * sa["examples_seen"]


def test_a_dataset_builder_error_is_a_config_error_and_an_empty_test_split_is_refused(tmp_path):
    raw = json.loads(json.dumps(SMALL))
    raw["data"]["kwargs"]["n_train"] = -5
    with pytest.raises(ConfigError, match=r"data 'synthetic' could not be built from its settings: .* \(fix the data.\* settings\)"):
        api.train(ExperimentConfig.from_dict(raw), out=tmp_path / "a")
    raw["data"]["kwargs"].update(n_train=64, n_test=0)
    with pytest.raises(ConfigError, match="the test split of 'synthetic' is empty"):
        api.train(ExperimentConfig.from_dict(raw), out=tmp_path / "b")


def test_evaluate_runs_the_model_on_the_device_it_sends_the_batches_to(tmp_path, monkeypatch):
    """load_run builds the model on the CPU; evaluate moves it to the device the batches go to (a CUDA run
    evaluated on its GPU would otherwise mix devices). Checked with a stand-in device move (no GPU here)."""
    from overlooked.baselines.cnn import SmallCNN

    run, _ = api.train(_cfg(max_steps=2), out=tmp_path)
    moved, real = [], torch.nn.Module.to

    def to(self, *args, **kwargs):
        if isinstance(self, SmallCNN):
            moved.append(args[0] if args else kwargs.get("device"))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(torch.nn.Module, "to", to)
    api.evaluate(run, device="cpu")
    assert moved == ["cpu"]


@pytest.mark.parametrize("kill_at", [7, 3])  # after seed 1's first checkpoint (step 5), and before it (a record at 2)
def test_an_interrupted_repeats_run_resumes_as_a_whole(tmp_path, kill_at):
    """Killed in its second seed, a --repeats run is resumed from its folder: the finished seed is kept, the
    interrupted one continues from its checkpoint, the missing one is trained, and the aggregate equals that
    of an uninterrupted run."""
    from overlooked.train.callbacks import Callback

    class Kill(Callback):
        def on_step_end(self, ctx, loss):
            if ctx.cfg.seed == 1 and ctx.state.step == kill_at:
                raise KeyboardInterrupt

    cfg = _cfg(epochs=1, checkpoint_every=5, eval_every=2, repeats=3)
    _, whole = api.train(cfg, run_dir=tmp_path / "whole")
    with pytest.raises(KeyboardInterrupt):
        api.train(cfg, run_dir=tmp_path / "cut", callbacks=[Kill()])
    cut = tmp_path / "cut"
    assert (cut / "config.yaml").is_file() and not (cut / "summary.json").exists() and not (cut / "seed2").exists()
    _, resumed = api.resume(cut)
    for key in ("seeds", "test_accuracy_mean", "best_by_val", "best_by_train"):
        assert resumed[key] == whole[key], key
    for seed in range(3):
        a, b = _weights(tmp_path / "whole" / f"seed{seed}"), _weights(cut / f"seed{seed}")
        assert all(torch.equal(a[k], b[k]) for k in a)
        # the same records (timings aside): none of the killed attempt's is mixed in
        records = [[{k: r[k] for k in ("step", "val_loss", "train_loss")} for r in map(json.loads, (run / f"seed{seed}" / "metrics.jsonl").read_text().splitlines())] for run in (tmp_path / "whole", cut)]
        assert records[0] == records[1], seed
    assert (cut / "seed1" / "metrics.jsonl.interrupted").is_file() == (kill_at < 5)  # before its first checkpoint: set aside
    with pytest.raises(OverlookedError, match="has finished"):
        api.resume(cut)
    (cut / "config.yaml").unlink()  # a folder from before the config was written first, never finished
    (cut / "summary.json").unlink()
    with pytest.raises(OverlookedError, match=r"holds the seeds of a --repeats run .* copy .*seed0/config.yaml to .*set its train.seed to the first seed and train.repeats to the number of seeds, then --resume"):
        api.resume(cut)
    import yaml  # follow the message's steps: they finish the run

    raw = yaml.safe_load((cut / "seed0" / "config.yaml").read_text())
    raw["train"].update(seed=0, repeats=3)
    (cut / "config.yaml").write_text(yaml.safe_dump(raw))
    assert api.resume(cut)[1]["test_accuracy_mean"] == whole["test_accuracy_mean"]


def test_an_edited_repeats_or_each_config_is_refused_before_any_seed_or_value_trains(tmp_path):
    """The seeds not yet started would have trained from the edited folder config.yaml beside seeds trained on the
    old one, and an edited train.seed named other seed folders, orphaning the finished ones: both refused, with
    nothing trained; restored, the run finishes."""
    import yaml

    from overlooked.train.callbacks import Callback

    class Kill(Callback):
        def on_step_end(self, ctx, loss):
            if ctx.cfg.seed == 1 and ctx.state.step == 7:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        api.train(_cfg(epochs=1, checkpoint_every=5, repeats=3), run_dir=tmp_path / "cut", callbacks=[Kill()])
    cut = tmp_path / "cut"
    text = (cut / "config.yaml").read_text()
    edited = yaml.safe_load(text)
    edited["data"]["kwargs"]["n_train"] = 150
    (cut / "config.yaml").write_text(yaml.safe_dump(edited, sort_keys=False))
    with pytest.raises(ConfigError, match=r"cut/config.yaml differs from the config .*cut/seed0 started with .*data.kwargs.n_train=150 \(started with 200\)"):
        api.resume(cut)
    edited = yaml.safe_load(text)
    edited["train"]["seed"] = 5
    (cut / "config.yaml").write_text(yaml.safe_dump(edited, sort_keys=False))
    with pytest.raises(ConfigError, match=r"no longer names the seed folders seed0, seed1 this run holds; restore train.seed and train.repeats"):
        api.resume(cut)
    assert not (cut / "seed2").exists() and not (cut / "seed5").exists()
    (cut / "config.yaml").write_text(text)
    assert api.resume(cut)[1]["repeats"] == 3
    # an --each folder: a value already started holds the folder's config to the one it started with
    class KillSecond(Callback):
        def on_step_end(self, ctx, loss):
            if ctx.cfg.lr == 0.02 and ctx.state.step == 7:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        api.train_each(_cfg(epochs=1, checkpoint_every=5), "train.lr", [0.01, 0.02, 0.03], out=tmp_path / "e", callbacks=[KillSecond()])
    (each,) = (tmp_path / "e").iterdir()
    edited = yaml.safe_load((each / "config.yaml").read_text())
    edited["model"]["kwargs"]["hidden"] = 8
    (each / "config.yaml").write_text(yaml.safe_dump(edited, sort_keys=False))
    with pytest.raises(ConfigError, match=r"model.kwargs.hidden=8 \(started with 16\)"):
        api.resume(each)
    assert not (each / "lr=0.03").exists()


@pytest.mark.slow
@pytest.mark.data
# 28 steps per epoch (floor(900 / 32) batches drawn with replacement); linear start ends at the validation pass
# closing epoch 2 (step 56), restarting the step schedule there; 'last' checkpoints every 5 steps. Killed at
# 43, inside linear start (the restored callback must bring back the LS lr, the model without softmaxes and
# the warm-up), and at 73, after it (the schedule's restart point and the model's mode come from its state).
@pytest.mark.parametrize("kill", [43, 73])
def test_sigkill_then_resume_is_bitwise_identical_with_a_stateful_callback(tmp_path, data_dir, kill):
    """The constant-lr resume test above has no callback state, schedule, warm-up, clipping or with-replacement
    sampling; MemN2N's recipe has all of them (linear start sets the lr scale, the schedule's start and the
    model's mode, and must be restored from the checkpoint); a resumed run still ends bitwise equal."""
    overrides = [
        "data.kwargs.tasks=[1]",
        "train.epochs=4",
        "train.step_epochs=1",
        "train.warmup_steps=3",
        "train.sampling=replacement",
        "train.grad_clip=2.0",
        "train.checkpoint_every=5",
        "train.progress=false",
        "callbacks=[{name: linear_start, kwargs: {lr: 0.005, patience: 100, max_epochs: 2}}]",
    ]
    raw = api.load("memn2n_babi1k", overrides).to_dict()
    raw["data_dir"] = str(data_dir)
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    assert _run(tmp_path, raw, ref, -1, "train") == 0
    assert _run(tmp_path, raw, cut, kill, "train") == -9
    info = read_checkpoint(cut / "checkpoints" / "last.safetensors")[1]["info"]
    assert info["state"]["step"] == (kill // 5) * 5
    assert _run(tmp_path, raw, cut, -1, "resume") == 0
    a, b = _weights(ref), _weights(cut)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs after resume (killed at step {kill})"
    ref_lines = [json.loads(line) for line in (ref / "metrics.jsonl").read_text().splitlines()]
    cut_lines = [json.loads(line) for line in (cut / "metrics.jsonl").read_text().splitlines()]
    for key in ("step", "lr", "val_loss", "train_loss"):
        assert [r.get(key) for r in cut_lines] == [r.get(key) for r in ref_lines], key
    lrs = [r["lr"] for r in ref_lines if "lr" in r]  # at each epoch's validation pass
    assert lrs == [0.005, 0.005, 0.01, 0.005]  # LS's lr, then the step schedule restarted at step 56 and halved


def test_an_objective_returning_a_vector_is_named():
    """An objective of your own that forgot to reduce (``F.cross_entropy(..., reduction="none")``) used to fail in
    ``float(loss)`` with "only one element tensors can be converted to Python scalars"."""
    import torch.nn.functional as F

    from overlooked.config import TrainConfig
    from overlooked.train.trainer import train_step

    net = torch.nn.Linear(3, 2)
    batch = {"x": torch.randn(4, 3), "label": torch.tensor([0, 1, 1, 0])}
    opt = torch.optim.SGD(net.parameters(), lr=0.1)

    def per_example(out, batch):
        return F.cross_entropy(out, batch["label"], reduction="none")

    with pytest.raises(ConfigError, match=r"objective per_example returned \[4\]; the trainer needs one scalar loss per batch"):
        train_step(net, batch, ("x",), per_example, opt, TrainConfig())
    loss, _ = train_step(net, batch, ("x",), lambda out, b: per_example(out, b).mean(), opt, TrainConfig())
    assert loss > 0
    loss, _ = train_step(net, batch, ("x",), lambda out, b: per_example(out, b).mean().reshape(1), opt, TrainConfig())  # [1] is one loss
    assert loss > 0


def test_a_metrics_line_cut_short_by_a_kill_does_not_block_the_resume(tmp_path):
    """A process killed while appending to metrics.jsonl leaves a half line; the resume, which exists for exactly
    that case, failed on it with a raw JSONDecodeError. The half line is dropped; a damaged line elsewhere is
    named with its number."""
    from overlooked.train.callbacks import Callback

    class Stop(Callback):
        def on_step_end(self, ctx, loss):
            ctx.stop = ctx.state.step == 10

    run, _ = api.train(_cfg(epochs=2, checkpoint_every=5, eval_every=3), run_dir=tmp_path / "run", callbacks=[Stop()])
    (run / "summary.json").unlink()  # as if killed before the end
    good = (run / "metrics.jsonl").read_text()
    (run / "metrics.jsonl").write_text(good + '{"step": 11, "loss": 2.3')
    _, summary = api.resume(run)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert all(json.loads(line) for line in lines) and summary["steps"] == 24
    run2, _ = api.train(_cfg(epochs=2, checkpoint_every=5, eval_every=3), run_dir=tmp_path / "run2", callbacks=[Stop()])
    (run2 / "summary.json").unlink()
    first, *rest = (run2 / "metrics.jsonl").read_text().splitlines(keepends=True)
    (run2 / "metrics.jsonl").write_text("".join([first, "not json\n", *rest]))
    with pytest.raises(OverlookedError, match=r"metrics.jsonl, line 2, is not a metrics record .*repair or delete that line"):
        api.resume(run2)


@pytest.mark.parametrize(("kill_at", "repeats"), [(7, 1), (3, 1), (7, 2)])
def test_an_interrupted_each_run_resumes_as_a_whole(tmp_path, monkeypatch, kill_at, repeats):
    """An --each folder writes its config and values first; killed in its second value (after that value's first
    checkpoint at step 5, before it, or inside a --repeats value), `--resume FOLDER` keeps the finished value,
    continues or restarts the interrupted one, trains the missing one and merges as an uninterrupted run does.
    It used to be "not a run folder (no config.yaml)", and `--each train.repeats=...` lost the merged result."""
    from overlooked.train.callbacks import Callback

    class Kill(Callback):
        def on_step_end(self, ctx, loss):
            if ctx.cfg.lr == 0.02 and ctx.state.step == kill_at and ctx.cfg.seed == repeats - 1:
                raise KeyboardInterrupt

    cfg = _cfg(epochs=1, checkpoint_every=5, eval_every=2, repeats=repeats)
    values = [0.01, 0.02, 0.03]
    whole, merged = api.train_each(cfg, "train.lr", values, out=tmp_path / "whole")
    real_train = api.train
    monkeypatch.setattr(api, "train", lambda c, **kw: real_train(c, **{**kw, "callbacks": [Kill()]}))
    with pytest.raises(KeyboardInterrupt):
        api.train_each(cfg, "train.lr", values, out=tmp_path / "cut")
    monkeypatch.setattr(api, "train", real_train)
    (cut,) = (tmp_path / "cut").iterdir()
    assert (cut / "config.yaml").is_file() and json.loads((cut / "each.json").read_text()) == {"key": "train.lr", "values": values}
    assert not (cut / "summary.json").exists() and not (cut / "lr=0.03").exists()
    _, resumed = api.resume(cut)
    for key in ("test_accuracy", "test_accuracy_mean", "best_by_val", "examples_seen", "each"):
        assert resumed.get(key) == merged.get(key), key
    assert ("test_accuracy_mean" in merged) == (repeats > 1)
    seeds = [f"seed{s}" for s in range(repeats)] if repeats > 1 else [""]
    for value in values:
        for seed in seeds:
            a, b = _weights(whole / f"lr={value}" / seed), _weights(cut / f"lr={value}" / seed)
            assert all(torch.equal(a[k], b[k]) for k in a), (value, seed)
    assert (cut / ".lr=0.02.interrupted").is_dir() == (kill_at < 5 and repeats == 1)  # nothing to continue: set aside
    with pytest.raises(OverlookedError, match="has finished"):
        api.resume(cut)
    with pytest.raises(ConfigError, match=r"--each train.repeats=\.\.\.: the seeds of a run are --repeats N"):
        api.train_each(cfg, "train.repeats", [1, 2], out=tmp_path / "r")


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        ("no_rng", r"its training state cannot be restored \(TypeError"),
        ("short_rng", r"its training state cannot be restored \(RuntimeError"),
        ("no_state", r"its training state cannot be restored \(KeyError: 'state'\)"),
        ("new_field", r"its training state cannot be restored \(TypeError: .*new_field.*another version of overlooked"),
        ("step_text", r"its training state cannot be restored \(TypeError: state.step is '10', not a whole number >= 0\)"),
        ("callback", r"its training state cannot be restored \(KeyError: 'count'\)"),
        # an adversarial review's: each of these was a raw TypeError / ValueError, or accepted
        ("epoch_text", r"\(TypeError: state.epoch is 'x', not a whole number >= 0\)"),
        ("step_negative", r"\(TypeError: state.step is -7, not a whole number >= 0\)"),
        ("best_step_text", r"\(TypeError: state.best_step is '3', not a step \(or -1\)\)"),
        ("best_metric_text", r"\(TypeError: state.best_metric is 'x', not a number \(or null\)\)"),
        ("window_text", r"\(TypeError: state.window is 'abc', not three or four numbers\)"),
        ("ema_shape", r"does not fit this run's weight average \(ema\.\*\): .*shape mismatch \['module.features.0.weight'\]"),
        ("ema_extra", r"does not fit this run's weight average \(ema\.\*\): .*unexpected \['extra'\]"),
        ("ema_int", r"does not fit this run's weight average \(ema\.\*\): .*dtype mismatch \[.module.features.0.weight \(torch.int64"),
    ],
)
def test_a_damaged_training_state_is_named_and_loses_nothing(tmp_path, edit, says):
    """Edited copies of last.safetensors (a review's): a missing or wrongly sized RNG state, a document without
    its state, a state field a newer version wrote, a step as text: raw TypeErrors and RuntimeErrors before,
    some after the metrics had been cut. Now a CheckpointError names the file, and metrics.jsonl is untouched."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from overlooked.train.callbacks import Callback

    class Stop(Callback):
        def on_step_end(self, ctx, loss):
            ctx.stop = ctx.state.step == 10

    ema = {"ema_decay": 0.9} if edit.startswith("ema") else {}
    run, _ = api.train(_cfg(epochs=2, checkpoint_every=5, eval_every=3, **ema), run_dir=tmp_path / "run", callbacks=[Stop()])
    (run / "summary.json").unlink()
    last = run / "checkpoints" / "last.safetensors"
    tensors = dict(read_checkpoint(last)[0])
    with safe_open(str(last), framework="pt") as fh:
        doc = json.loads(fh.metadata()["overlooked"])
    if edit == "no_rng":
        tensors.pop("rng.torch")
    elif edit == "short_rng":
        tensors["rng.torch"] = tensors["rng.torch"][:100].clone()
    elif edit == "no_state":
        doc["info"].pop("state")
    elif edit == "new_field":
        doc["info"]["state"]["new_field"] = 1
    elif edit == "step_text":
        doc["info"]["state"]["step"] = "10"
    elif edit in ("epoch_text", "step_negative", "best_step_text", "best_metric_text", "window_text"):
        field, value = {"epoch_text": ("epoch", "x"), "step_negative": ("step", -7), "best_step_text": ("best_step", "3"), "best_metric_text": ("best_metric", "x"), "window_text": ("window", "abc")}[edit]
        doc["info"]["state"][field] = value
    elif edit == "ema_shape":
        tensors["ema.module.features.0.weight"] = tensors["ema.module.features.0.weight"][:2].clone()
    elif edit == "ema_extra":
        tensors["ema.extra"] = torch.zeros(1)
    elif edit == "ema_int":
        tensors["ema.module.features.0.weight"] = tensors["ema.module.features.0.weight"].long()
    else:
        doc["info"]["state"]["callbacks"] = [{"other": 1}]  # another callback's state

    class Counting(Callback):  # a stateful callback given to the resume
        def load_state_dict(self, state):
            self.count = state["count"]

    save_file(tensors, str(last), metadata={"overlooked": json.dumps(doc)})
    records = (run / "metrics.jsonl").read_text()
    with pytest.raises(CheckpointError, match=says):
        api.resume(run, callbacks=[Counting()] if edit == "callback" else None)
    assert (run / "metrics.jsonl").read_text() == records


def test_under_torchrun_each_rank_sets_its_gpu_before_nccl_and_trains_on_it(monkeypatch):
    """NCCL's communicator was made before the rank's GPU was set (and without device_id), and train.device=cuda:0
    put every rank's model on GPU 0 while DDP was told device_ids=[local_rank]. Checked with mocks: no GPU here."""
    from overlooked.train import distributed as D

    calls = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(D.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(D.dist, "init_process_group", lambda **kw: calls.append(("init", kw)))
    monkeypatch.setattr(D.dist, "get_rank", lambda: 1)
    monkeypatch.setattr(D.dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(D.torch.cuda, "set_device", lambda i: calls.append(("set_device", i)))
    info = D.init_distributed("cuda:0")
    assert calls == [("set_device", 1), ("init", {"backend": "nccl", "device_id": torch.device("cuda", 1)})]
    assert D.rank_device("cuda:0", info) == "cuda:1" and D.rank_device("cuda", info) == "cuda:1"
    calls.clear()
    info = D.init_distributed("cpu")
    assert calls == [("init", {"backend": "gloo"})] and D.rank_device("cpu", info) == "cpu"
    assert D.rank_device("cuda:3", D.DistInfo()) == "cuda:3"  # one process: the device as configured


UNUSED_PLUGIN = """
import torch
from overlooked.registry import MODELS


class WithSpare(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
        self.spare = torch.nn.Linear(4, 4)  # never reaches the loss

    def forward(self, image):
        return self.net(image)


@MODELS.register("with_spare")
def with_spare():
    return WithSpare()
"""


@pytest.mark.slow
def test_ddp_names_a_parameter_that_never_reaches_the_loss(tmp_path):
    """DDP's "Expected to have finished reduction in the prior iteration" at step 2 is named for what it is, with
    the fixes; the model comes from a plugin given with --import under torchrun."""
    import yaml

    (tmp_path / "spare.py").write_text(UNUSED_PLUGIN)
    cfg_path = tmp_path / "ddp.yaml"
    cfg_path.write_text(yaml.safe_dump({**DDP_CFG, "model": {"name": "with_spare"}}))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    proc = subprocess.run([*torchrun, "-m", "overlooked", "--import", str(tmp_path / "spare.py"), "train", str(cfg_path), "--out", str(tmp_path / "runs")], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "overlooked: error: under DDP every parameter must reach the loss" in proc.stderr, proc.stderr[-3000:]


def test_an_objective_with_trainable_parameters_is_refused_by_name(tmp_path):
    """Its parameters were left out of the optimiser and the checkpoint: a learned temperature stayed at its
    initial value with a gradient of -13.6 (the extension audit), without a word."""
    from overlooked import catalog
    from overlooked.api import build_data, build_model
    from overlooked.train import trainer

    class Tempered(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.log_t = torch.nn.Parameter(torch.zeros(()))

        def forward(self, out, batch):
            logits = out["logits"] if isinstance(out, dict) else out
            return torch.nn.functional.cross_entropy(logits / self.log_t.exp(), batch["label"])

    catalog.load_all()
    cfg = _cfg(max_steps=2)
    splits = build_data(cfg)
    model, objective = build_model(cfg, splits.meta), Tempered()
    with pytest.raises(ConfigError, match=r"objective Tempered has trainable parameters \(log_t\).*hold them in the model"):
        trainer.fit(model, splits, objective, cfg.train, tmp_path)
    assert not any(tmp_path.iterdir())  # refused before anything was written
    objective.log_t.requires_grad_(False)  # a frozen one is a constant: it trains
    assert trainer.fit(model, splits, objective, cfg.train, None)["steps"] == 2


def test_the_weight_average_follows_the_scheduled_spread_margin_instead_of_averaging_it(tmp_path):
    """AveragedModel(use_buffers=True) averaged MatrixCapsNet's spread_margin buffer like a weight: validation
    under train.ema_decay scored the spread loss at 0.24 while the schedule stood at 0.90 (the capsule audit).
    Through the trainer: the checkpoint's average holds the margin the schedule set, the weights averaged."""
    from overlooked.config import TrainConfig
    from overlooked.registry import MODELS
    from overlooked.train.trainer import averaged_weights, build_ema, follow_settings, setting_buffers

    torch.manual_seed(0)
    m = MODELS.create("matcaps_em_small", iterations=1)
    assert setting_buffers(m) == ["spread_margin"] and setting_buffers(torch.nn.Linear(2, 2)) == []
    ema = build_ema(m, TrainConfig(ema_decay=0.999))
    for s in range(1, 101):
        with torch.no_grad():
            m.classes.beta_a.add_(0.01)  # a weight that moves, so the average is not the model
        m.set_spread_margin(0.2 + 0.007 * s)
        ema.update_parameters(m)
    assert ema.module.spread_margin.item() < 0.5  # averaged like a weight, lagging the schedule
    with averaged_weights(m, ema):
        assert m.spread_margin.item() == pytest.approx(0.9)
        averaged_beta = m.classes.beta_a.clone()
    assert ema.module.spread_margin.item() == pytest.approx(0.9) and m.spread_margin.item() == pytest.approx(0.9)
    assert not torch.allclose(averaged_beta, m.classes.beta_a)  # the weights themselves were averaged

    class Declared(torch.nn.Module):  # a non-persistent buffer follows too; a name that is no buffer is named
        ema_follows = ("margin",)

        def __init__(self, kind="buffer"):
            super().__init__()
            self.fc = torch.nn.Linear(2, 2)
            if kind == "buffer":
                self.register_buffer("margin", torch.tensor(0.2), persistent=False)
            else:
                self.margin = 0.2

    net = Declared()
    ema = build_ema(net, TrainConfig(ema_decay=0.9))
    ema.update_parameters(net)
    net.margin.fill_(0.7)
    follow_settings(net, ema)
    assert ema.module.margin.item() == pytest.approx(0.7)
    with pytest.raises(ConfigError, match=r"Declared.ema_follows names 'margin', which is not one of its buffers"):
        build_ema(Declared("attribute"), TrainConfig(ema_decay=0.9))

    cfg = api.load("capsule_em_small_mnist", [
        "data.name=synthetic", "data.kwargs={n_train: 32, n_test: 8, image_shape: [1, 20, 20], num_classes: 10}", "model.routing_backend=reference",
        "model.A=4", "model.B=2", "model.C=2", "model.D=2", "train.max_steps=3", "train.batch_size=8", "train.ema_decay=0.9",
        "train.progress=false", "train.num_threads=1", "callbacks=[{name: spread_margin, kwargs: {ramp_steps: 3}}]",
    ])

    class ReadStepTwo(Callback):  # at step 3, the checkpoint written at step 2, where no validation ran
        def on_step_end(self, ctx, loss):
            if ctx.state.step == 3:
                tensors, _ = read_checkpoint(ctx.run_dir / "checkpoints" / "last.safetensors")
                self.margins = (tensors["model.spread_margin"].item(), tensors["ema.module.spread_margin"].item())

    reader = ReadStepTwo()
    path, _ = api.train(apply_overrides(cfg, ["train.checkpoint_every=2", "train.eval_every=3"]), out=tmp_path, callbacks=[reader])
    live, average = reader.margins
    assert live > 0.2 and average == pytest.approx(live)  # averaged, it would trail the ramp
    tensors, _ = read_checkpoint(path / "checkpoints" / "last.safetensors")
    assert tensors["model.spread_margin"].item() == pytest.approx(0.9) == tensors["ema.module.spread_margin"].item()



def test_callbacks_see_the_objective_and_hear_the_end_of_training_with_the_summary(tmp_path):
    """Context had no objective (a margin schedule had to go through the model) and no hook followed the final
    report; both now exist."""

    class Watch(Callback):
        def __init__(self):
            self.objective, self.ended = None, None

        def on_train_start(self, ctx):
            self.objective = ctx.objective

        def on_train_end(self, ctx, summary):
            self.ended = (ctx.state.step, dict(summary))

    watch = Watch()
    path, summary = api.train(_cfg(max_steps=3), out=tmp_path, callbacks=[watch])
    assert type(watch.objective).__name__ == "CrossEntropy"
    step, seen = watch.ended
    assert step == 3 and seen["test_accuracy"] == summary["test_accuracy"] and seen["steps"] == 3


def test_a_metric_of_ones_own_is_registered_by_name_and_an_unknown_one_is_named_before_the_first_step(tmp_path, register_for_test):
    """metric was an if-chain of 'top1' / 'both_correct': a dataset's own meta['metric'] failed after the run
    started. METRICS is a registry now."""
    from overlooked import catalog
    from overlooked.api import build_data, build_model, build_objective
    from overlooked.errors import RegistryError
    from overlooked.registry import METRICS
    from overlooked.train import trainer

    def top2(scores, batch, target_key):
        return (scores.topk(2, dim=-1).indices == batch[target_key][:, None]).any(-1)

    register_for_test(METRICS, "test_top2", top2)

    catalog.load_all()
    cfg = _cfg(max_steps=2)
    splits = build_data(cfg)
    model, objective = build_model(cfg, splits.meta), build_objective(cfg, splits)
    splits.meta["metric"] = "test_top2"
    summary = trainer.fit(model, splits, objective, cfg.train, None)  # the reported weights stay in model
    model.eval()
    with torch.no_grad():
        scores = model(splits.test.tensors["image"])
    labels = splits.test.tensors["label"]
    want = (scores.topk(2, dim=-1).indices == labels[:, None]).any(-1).double().mean().item()
    assert summary["metric"] == "test_top2" and summary["test_accuracy"] == pytest.approx(want)
    assert want > (scores.argmax(-1) == labels).double().mean().item()  # not top-1 under another name
    splits.meta["metric"] = "top_two"
    with pytest.raises(RegistryError, match=r"unknown metrics 'top_two'.*Known metrics: both_correct, test_top2, top1"):
        trainer.fit(build_model(cfg, splits.meta), splits, objective, cfg.train, None)


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_weight_decay_1d_false_leaves_biases_and_norm_gains_undecayed(optimizer):
    """With zero gradients a step moves a tensor only through weight decay: with train.weight_decay_1d=false the
    matrices shrink and the biases / LayerNorm gains stay; with the default every tensor shrinks."""
    from overlooked.config import TrainConfig
    from overlooked.train.trainer import build_optimizer

    for decay_1d in (True, False):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
        with torch.no_grad():
            for p in model.parameters():  # nonzero everywhere (LayerNorm's bias starts at 0, which decay leaves at 0)
                p.uniform_(0.5, 1.5)
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        opt = build_optimizer(TrainConfig(optimizer=optimizer, lr=0.1, weight_decay=0.5, weight_decay_1d=decay_1d), model.parameters())
        for p in model.parameters():
            p.grad = torch.zeros_like(p)
        opt.step()
        for n, p in model.named_parameters():
            moved = not torch.equal(p.detach(), before[n])
            assert moved == (decay_1d or p.ndim > 1), (n, decay_1d)
    from overlooked.config import ConfigWarning

    with pytest.warns(ConfigWarning, match="weight_decay_1d=false"):
        TrainConfig(weight_decay_1d=False)


class _InterruptAt13(Callback):
    def on_step_end(self, ctx, loss):
        if ctx.state.step == 13:
            raise KeyboardInterrupt


def _interrupted_and_resumed(tmp_path: Path, cfg: ExperimentConfig, make: Any, whole: str, cut: str) -> None:
    """Train ``whole`` uninterrupted and ``cut`` interrupted at step 13 (last checkpoint at 10), each with the
    callbacks ``make()`` gives, then resume ``cut`` with them."""
    api.train(cfg, run_dir=tmp_path / whole, callbacks=make())
    with pytest.raises(KeyboardInterrupt):
        api.train(cfg, run_dir=tmp_path / cut, callbacks=[*make(), _InterruptAt13()])


def _same_weights(a: Path, b: Path) -> bool:
    wa, wb = _weights(a), _weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


LR_CFG = {"epochs": 2, "checkpoint_every": 5, "eval_every": 4, "optimizer": "sgd", "lr": 0.05}


def test_lr_steering_a_callback_set_is_restored_on_resume(tmp_path):
    """ctx.lr_scale / lr_hold / schedule_start set once by a stateless callback are part of the checkpoint: a
    resumed run continues with them (it went back to the full lr, silently: test accuracy 0.484 against 0.344
    in a review's run) and ends with the same weights and lr records as the uninterrupted run."""

    class HalveOnce(Callback):
        def on_step_end(self, ctx, loss):
            if ctx.state.step == 5:
                ctx.lr_scale, ctx.schedule_start = 0.5, 5

    _interrupted_and_resumed(tmp_path, _cfg(**LR_CFG), lambda: [HalveOnce()], "whole", "cut")
    state = read_checkpoint(tmp_path / "cut" / "checkpoints" / "last.safetensors")[1]["info"]["state"]
    assert state["step"] == 10 and state["lr_control"] == [0.5, None, 5]
    api.resume(tmp_path / "cut", callbacks=[HalveOnce()])
    assert _same_weights(tmp_path / "whole", tmp_path / "cut")
    lrs = [[json.loads(line)["lr"] for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()] for run in ("whole", "cut")]
    assert lrs[0] == lrs[1] and lrs[0][-1] == pytest.approx(0.025)


def test_lr_control_is_restored_after_on_train_start_and_old_checkpoints_resume_as_before(tmp_path):
    """A callback that scales the lr relatively in on_train_start does not compound on resume (the saved value is
    put back after it); a checkpoint written before lr_control was saved resumes bit for bit as before."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    class HalveAtStart(Callback):
        def on_train_start(self, ctx):
            ctx.lr_scale *= 0.5

    _interrupted_and_resumed(tmp_path, _cfg(**LR_CFG), lambda: [HalveAtStart()], "whole", "cut")
    api.resume(tmp_path / "cut", callbacks=[HalveAtStart()])
    assert _same_weights(tmp_path / "whole", tmp_path / "cut")
    # an old checkpoint: no lr_control in its state (no lr callback): the resume is exact as before
    _interrupted_and_resumed(tmp_path, _cfg(**LR_CFG), list, "plain", "old")
    last = tmp_path / "old" / "checkpoints" / "last.safetensors"
    tensors = dict(read_checkpoint(last)[0])
    with safe_open(str(last), framework="pt") as fh:
        doc = json.loads(fh.metadata()["overlooked"])
    del doc["info"]["state"]["lr_control"]
    save_file(tensors, str(last), metadata={"overlooked": json.dumps(doc)})
    api.resume(tmp_path / "old")
    assert _same_weights(tmp_path / "plain", tmp_path / "old")


def test_a_sweep_of_a_setting_keeps_its_one_split(tmp_path):
    """--each over a setting that is not data (train.lr=...) trains every value on one split: the merged summary
    carries that split's fingerprint (a single run on the same data compares with it) and the size of its
    test set, not the sum over values (128 for one 64-example set scored twice, in a review)."""
    cfg = _cfg(epochs=1, eval_limit=16)
    _, single = api.train(cfg, run_dir=tmp_path / "single")
    _, swept = api.train_each(cfg, "train.lr", [0.01, 0.02], out=tmp_path / "sweep")
    assert swept["data_fingerprint"] == single["data_fingerprint"] and swept["test_fingerprint"] == single["test_fingerprint"]
    assert swept["test_examples"] == single["test_examples"] == 16 and swept["trials"] == 2


def test_a_sweep_without_recorded_fingerprints_does_not_count_its_test_set_twice():
    """A sweep of a setting over summaries that record no data fingerprint (older runs, a plugin dataset) still
    scores one split: its test-set size is the largest part any value scored, not the sum (64 + 64 = 128)."""
    cfg = _cfg(epochs=1)
    subs = {str(v): {"test_examples": 64, "test_accuracy": 0.5, "val_accuracy": 0.5, "train_accuracy": 0.5, "trials": 1} for v in (0.1, 0.01)}
    merged = api.merge_each(subs, cfg, "train.lr", [0.1, 0.01])
    assert merged["test_examples"] == 64 and "data_fingerprint" not in merged


STOP_AND_RESUME = textwrap.dedent(
    """
    import json, sys, types, torch
    from overlooked import api
    from overlooked.config import ExperimentConfig
    from overlooked.train import trainer
    from overlooked.train.callbacks import Callback

    clock = [1000.0]  # each rank's own fake clock, 10 s a step on rank 0 and 7 s on rank 1: the ranks must agree

    class Tick(Callback):
        def on_step_end(self, ctx, loss):
            clock[0] += 10.0 if torch.distributed.get_rank() == 0 else 7.0

    trainer.time = types.SimpleNamespace(perf_counter=lambda: clock[0])
    mode, arg, out = sys.argv[1:4]
    if mode == "train":
        path, summary = api.train(ExperimentConfig.from_dict(json.loads(arg)), out=out, callbacks=[Tick()])
    else:
        path, summary = api.resume(arg, callbacks=[Tick()])
    rank = torch.distributed.get_rank()
    with open(f"{out}/{mode}-rank{rank}.json", "w") as fh:
        json.dump({k: summary[k] for k in ("steps", "stopped_by", "best_step", "val_loss", "test_loss")}, fh)
    import gc

    gc.collect()
    torch.distributed.destroy_process_group()
    """
)


@pytest.mark.slow
def test_ddp_resume_after_a_max_minutes_stop_equals_a_run_never_stopped(tmp_path):
    """Under DDP (2 ranks, gloo) a train.max_minutes stop between two validation passes validates once more,
    sets the best file it replaces aside, and a resume (max_minutes removed) drops that pass and ends as the run
    never stopped: the same records, best step and weights (best and last). The ranks' clocks differ (rank 1's
    would run out later); both stop at rank 0's step, and rank 1 reads the files before rank 0 moves them."""
    import yaml

    script = tmp_path / "stop_and_resume.py"
    script.write_text(STOP_AND_RESUME)
    raw = {**DDP_CFG, "train": {**DDP_CFG["train"], "max_steps": 8, "eval_every": 3, "select_metric": "val_loss", "checkpoint_every": 3}}
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]

    def launch(mode, arg, out):
        proc = subprocess.run([*torchrun, str(script), mode, arg, str(out)], env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return [json.loads((Path(out) / f"{mode}-rank{r}.json").read_text()) for r in (0, 1)]

    ref_summaries = launch("train", json.dumps(raw), tmp_path / "ref")
    stopped = launch("train", json.dumps({**raw, "train": {**raw["train"], "max_minutes": 40 / 60}}), tmp_path / "cut")  # 40 s: after step 4
    assert [s["steps"] for s in stopped] == [4, 4] and {s["stopped_by"] for s in stopped} == {"max_minutes"}
    (ref,) = [p for p in (tmp_path / "ref").iterdir() if p.is_dir()]
    (cut,) = [p for p in (tmp_path / "cut").iterdir() if p.is_dir()]
    ckpt = cut / "checkpoints"
    assert read_checkpoint(ckpt / "last.safetensors")[1]["info"]["state"]["stop_pass"] is True
    assert stopped[0]["best_step"] == 4, "the stop's pass must be the best so far, or nothing is set aside"
    assert read_checkpoint(ckpt / "best_before_stop.safetensors")[1]["info"]["state"]["best_step"] == 3

    config = yaml.safe_load((cut / "config.yaml").read_text())
    config["train"]["max_minutes"] = None
    (cut / "config.yaml").write_text(yaml.safe_dump(config))
    resumed = launch("resume", str(cut), tmp_path / "cut")
    assert resumed == ref_summaries and resumed[0]["stopped_by"] != "max_minutes"
    read = lambda d: [json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    keys = ("step", "lr", "train_loss", "val_loss", "val_accuracy", "examples_seen")
    assert [[r[k] for k in keys] for r in read(cut)] == [[r[k] for k in keys] for r in read(ref)]
    assert not (ckpt / "best_before_stop.safetensors").exists()
    for name in ("best", "last"):
        a, _ = read_checkpoint(ckpt / f"{name}.safetensors")
        b, _ = read_checkpoint(ref / "checkpoints" / f"{name}.safetensors")
        weights = [k for k in b if k.startswith("model.")]
        assert weights and all(torch.equal(a[k], b[k]) for k in weights), name
