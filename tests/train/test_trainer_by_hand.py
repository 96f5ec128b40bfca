"""The trainer, its schedules and evaluation, and the repeats / --each aggregation, against numbers worked out by hand."""

from __future__ import annotations

import json
import math
import statistics
import types

import pytest
import torch
from torch import nn

from overlooked import api
from overlooked.config import ExperimentConfig, TrainConfig
from overlooked.data.base import ArrayDataset, Splits
from overlooked.objectives import CrossEntropy
from overlooked.train import trainer
from overlooked.train.callbacks import Callback
from overlooked.train.evaluate import evaluate
from overlooked.train.schedules import lr_factor

pytestmark = pytest.mark.filterwarnings("ignore:train.lr=0")  # most runs here train at lr 0 on purpose

LN3 = math.log(3.0)
# the validation split of the selection tests: 5 examples of class 0, 3 of class 1, 2 of class 2
VAL_LABELS = [0] * 5 + [1] * 3 + [2] * 2


def _data(labels: list[int]) -> ArrayDataset:
    return ArrayDataset({"x": torch.ones(len(labels), 2), "label": torch.tensor(labels)})


def _splits(n_train: int, val_labels: list[int] = VAL_LABELS) -> Splits:
    """``n_train`` training examples (labels 0, 1, 2, 0, ...), and the given validation (and test) labels."""
    return Splits(_data([i % 3 for i in range(n_train)]), _data(val_labels), _data(val_labels), ("x",), "label", {"num_classes": 3})


def _cfg(**train) -> TrainConfig:
    return TrainConfig(**{"epochs": 1, "batch_size": 1, "optimizer": "sgd", "lr": 0.0, "progress": False, **train})


def _zero_linear() -> nn.Linear:
    model = nn.Linear(2, 3)
    nn.init.zeros_(model.weight)
    nn.init.zeros_(model.bias)
    return model


class _Const(nn.Module):
    """Logits ``theta`` for every example, whatever the input."""

    def __init__(self):
        super().__init__()
        self.theta = nn.Parameter(torch.zeros(3))

    def forward(self, x):
        return self.theta.unsqueeze(0).expand(x.shape[0], 3)


class _Steer(Callback):
    """Sets the logits after each step from a list, may restart the selection at one pass, and keeps what it saw."""

    def __init__(self, thetas: list[list[float]], restart_at: int = 0):
        self.thetas, self.restart_at = thetas, restart_at
        self.records: list[dict] = []
        self.best_metric = "unset"

    def on_step_end(self, ctx, loss):
        with torch.no_grad():
            ctx.model.theta.copy_(torch.tensor(self.thetas[ctx.state.step - 1]))

    def on_eval_end(self, ctx, metrics):
        self.records.append(dict(metrics))
        if len(self.records) == self.restart_at:
            ctx.restart_selection = True

    def on_train_end(self, ctx, summary):
        self.best_metric = ctx.state.best_metric


def _val_ce(theta: list[float]) -> float:
    """Cross-entropy of the constant logits ``theta`` on VAL_LABELS, by hand: -(0.5 ln p0 + 0.3 ln p1 + 0.2 ln p2)."""
    z = sum(math.exp(t) for t in theta)
    return -sum(w * (t - math.log(z)) for w, t in zip((0.5, 0.3, 0.2), theta))


# validation accuracy / loss after each step: the accuracy peaks at step 2, the loss bottoms at step 3
THETAS = [
    [0.0, 5.0, 0.0],  # 1: predicts 1 -> 0.3, loss 3.51
    [5.0, 0.0, 0.0],  # 2: predicts 0 -> 0.5 (the best accuracy), loss 2.51
    [math.log(0.40), math.log(0.42), math.log(0.18)],  # 3: predicts 1 -> 0.3, loss 1.06 (the lowest)
    [0.0, 0.0, 5.0],  # 4: predicts 2 -> 0.2 (the worst accuracy), loss 4.01 (the highest)
    [0.0, 2.0, 0.0],  # 5: predicts 1 -> 0.3, loss 1.64
    [0.0, 0.0, 2.0],  # 6: predicts 2 -> 0.2, loss 1.84
]


def _fit_steered(select_metric: str, n_steps: int, restart_at: int = 0, thetas: list[list[float]] = THETAS) -> tuple[dict, _Steer]:
    steer = _Steer(thetas, restart_at)
    cfg = _cfg(eval_every=1, select_metric=select_metric)
    summary = trainer.fit(_Const(), _splits(n_steps), CrossEntropy(), cfg, None, callbacks=[steer])
    return summary, steer


def _ticking_clock(monkeypatch) -> type[Callback]:
    """Give the trainer a fake clock, and return the callback class that moves it 10 s at each step's end."""
    clock = [1000.0]

    class Tick(Callback):
        def on_step_end(self, ctx, loss):
            clock[0] += 10.0

    monkeypatch.setattr(trainer, "time", types.SimpleNamespace(perf_counter=lambda: clock[0]))
    return Tick


def test_max_minutes_are_minutes_on_a_clock_that_moves_ten_seconds_a_step(monkeypatch):
    """A fake clock gaining 10 s a step: max_minutes m stops after ceil(60 m / 10) steps; a budget past the run ends by epochs."""
    Tick = _ticking_clock(monkeypatch)
    got = {}
    for minutes in (0.25, 0.5, 2.0):  # 15 s: after step 2; 30 s: after step 3 (exactly on the deadline); 120 s: never
        summary = trainer.fit(_zero_linear(), _splits(6), CrossEntropy(), _cfg(max_minutes=minutes), None, callbacks=[Tick()])
        got[minutes] = (summary["steps"], summary["stopped_by"], summary["best_step"])
    assert got == {0.25: (2, "max_minutes", 2), 0.5: (3, "max_minutes", 3), 2.0: (6, "epochs", 6)}


def test_val_accuracy_selection_keeps_the_highest_accuracy():
    """select_metric=val_accuracy keeps step 2 (0.5), not the lowest (step 4), the lowest loss (step 3) nor the later tie (step 5)."""
    summary, steer = _fit_steered("val_accuracy", 5, thetas=[*THETAS[:4], [3.0, 0.0, 0.0]])  # step 5: 0.5 again, loss 1.60
    assert [r["val_accuracy"] for r in steer.records] == pytest.approx([0.3, 0.5, 0.3, 0.2, 0.5])
    assert summary["best_step"] == 2 == steer.records[1]["step"]
    assert summary["val_accuracy"] == pytest.approx(0.5) and summary["val_loss"] == pytest.approx(steer.records[1]["val_loss"])
    assert summary["val_loss"] == pytest.approx(_val_ce(THETAS[1]))
    assert steer.best_metric == pytest.approx(0.5)


def test_val_loss_selection_keeps_the_lowest_loss_and_stores_it():
    """select_metric=val_loss keeps step 3 (loss H(0.4, 0.42, 0.18) by hand), not the highest loss (step 4) nor the best accuracy (step 2)."""
    summary, steer = _fit_steered("val_loss", 4)
    losses = [_val_ce(t) for t in THETAS[:4]]
    assert [r["val_loss"] for r in steer.records] == pytest.approx(losses, rel=1e-5)
    want = -(0.5 * math.log(0.40) + 0.3 * math.log(0.42) + 0.2 * math.log(0.18))
    assert summary["best_step"] == 3 == steer.records[2]["step"]
    assert summary["val_loss"] == pytest.approx(want, rel=1e-5) and summary["val_accuracy"] == pytest.approx(0.3)
    assert steer.best_metric == pytest.approx(want, rel=1e-5)  # the loss, not the accuracy of that pass


def test_val_loss_selection_keeps_the_first_of_a_tie():
    """Step 5 repeats step 3's logits, so its loss ties the best exactly: the earlier pass (step 3) stays chosen."""
    summary, steer = _fit_steered("val_loss", 5, thetas=[*THETAS[:4], THETAS[2]])
    assert steer.records[4]["val_loss"] == steer.records[2]["val_loss"]
    assert summary["best_step"] == 3


def test_restart_selection_forgets_the_old_best_loss():
    """A restart at pass 4 (after step 3's loss 1.06 was kept) chooses among passes 5-6 only: step 5 (1.64 > the forgotten 1.06)."""
    summary, steer = _fit_steered("val_loss", 6, restart_at=4)
    assert summary["best_step"] == 5 == steer.records[4]["step"]
    assert steer.best_metric == pytest.approx(_val_ce(THETAS[4]), rel=1e-5) and steer.best_metric > _val_ce(THETAS[2])
    assert summary["val_loss"] == pytest.approx(steer.records[4]["val_loss"]) and summary["val_accuracy"] == pytest.approx(0.3)


def test_lr_factor_cosine_exponential_and_warmup_by_hand():
    """Cosine 1, 0.5, 0 at the start, middle and end; exponential halves at each epoch boundary; a 4-step warm-up gives 0.25 then 1."""
    cos = TrainConfig(schedule="cosine")
    assert [lr_factor(cos, s, 5, 10) for s in (0, 5, 10)] == pytest.approx([1.0, 0.5, 0.0], abs=1e-12)
    assert lr_factor(cos, 2, 5, 10) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.2)))
    exp = TrainConfig(schedule="exponential", gamma=0.5)
    assert [lr_factor(exp, s, 10, 100) for s in (0, 9, 10, 19, 20)] == [1.0, 1.0, 0.5, 0.5, 0.25]
    warm = TrainConfig(warmup_steps=4)
    assert [lr_factor(warm, s, 10, 100) for s in (0, 1, 3, 4, 50)] == [0.25, 0.5, 1.0, 1.0, 1.0]


def test_a_schedule_restart_shortens_the_cosine_horizon_to_the_steps_left():
    """Cosine over 8 steps restarted after step 4: steps 4-7 anneal over 4 steps (1, 0.854, 0.5, 0.146), not 8."""

    class Restart(Callback):
        def __init__(self):
            self.lrs = []

        def on_step_end(self, ctx, loss):
            self.lrs.append(ctx.optimizer.param_groups[0]["lr"])
            if ctx.state.step == 4:
                ctx.schedule_start = 4

    cb = Restart()
    trainer.fit(_zero_linear(), _splits(8), CrossEntropy(), _cfg(lr=2.0, schedule="cosine"), None, callbacks=[cb])
    want = [2.0 * 0.5 * (1 + math.cos(math.pi * s / 8)) for s in range(4)] + [2.0 * 0.5 * (1 + math.cos(math.pi * s / 4)) for s in range(4)]
    assert cb.lrs == pytest.approx(want)
    assert cb.lrs[6] == pytest.approx(1.0)  # half of lr=2, where an 8-step horizon would give 1.71


def _step_once(grad_clip: float | None, per_tensor: bool = False, norm: str = "frobenius") -> nn.Linear:
    """One SGD step, lr 1, of a zero Linear(2, 3) on x = (3, 4), label 0: the gradient of the logits is (-2/3, 1/3, 1/3)."""
    model = _zero_linear()
    cfg = TrainConfig(optimizer="sgd", lr=1.0, grad_clip=grad_clip, grad_clip_per_tensor=per_tensor, grad_clip_norm=norm)
    opt = trainer.build_optimizer(cfg, model.parameters())
    trainer.train_step(model, {"x": torch.tensor([[3.0, 4.0]]), "label": torch.tensor([0])}, ("x",), CrossEntropy(), opt, cfg)
    return model


G = torch.tensor([-2 / 3, 1 / 3, 1 / 3])
GRAD_W, GRAD_B = G[:, None] * torch.tensor([3.0, 4.0]), G  # |dW| = 5 |g| = 4.08, |db| = 0.816, together 4.16


def test_clipping_bounds_the_update_itself():
    """Clipped before the step: with lr 1 from zero weights, the change has norm grad_clip (jointly, or per tensor)."""
    model = _step_once(1.0)
    change = torch.cat([model.weight.detach().flatten(), model.bias.detach()])
    assert float(change.norm()) == pytest.approx(1.0, rel=1e-5)
    torch.testing.assert_close(change, -torch.cat([GRAD_W.flatten(), GRAD_B]) / math.sqrt(26 * 6 / 9), rtol=1e-5, atol=1e-7)
    for norm in ("frobenius", "spectral"):
        model = _step_once(0.5, per_tensor=True, norm=norm)
        assert float(model.weight.detach().norm()) == pytest.approx(0.5, rel=1e-5)
        assert float(model.bias.detach().norm()) == pytest.approx(0.5, rel=1e-5)


@pytest.mark.parametrize("per_tensor, norm", [(False, "frobenius"), (True, "frobenius"), (True, "spectral")])
def test_a_large_clip_leaves_the_gradient_as_it_is(per_tensor, norm):
    """A clip far above the gradient's norm scales nothing, up or down: the gradient is the hand-computed one."""
    model = _step_once(100.0, per_tensor, norm)
    torch.testing.assert_close(model.weight.grad, GRAD_W)
    torch.testing.assert_close(model.bias.grad, GRAD_B)
    torch.testing.assert_close(model.weight.detach(), -GRAD_W)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_evaluate_weighs_every_example_once(reduction):
    """Zero logits over 3 classes cost ln 3 per example: 10 examples in batches of 4, 4, 2 average to ln 3, mean or summed cost."""
    res = evaluate(_zero_linear(), _data([i % 3 for i in range(10)]), ("x",), "label", CrossEntropy(reduction=reduction), batch_size=4)
    assert res["n"] == 10 and res["loss"] == pytest.approx(LN3)
    assert res["accuracy"] == pytest.approx(0.4)  # arg-max of equal logits is class 0, the label of 4 of the 10


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_the_logged_training_loss_is_per_example(reduction):
    """lr 0, zero weights: the epoch's record (batches 4, 4, 2) has train_loss ln 3 and train_accuracy 4/10."""

    class Keep(Callback):
        def __init__(self):
            self.records = []

        def on_eval_end(self, ctx, metrics):
            self.records.append(dict(metrics))

    keep = Keep()
    trainer.fit(_zero_linear(), _splits(10), CrossEntropy(reduction=reduction), _cfg(batch_size=4), None, callbacks=[keep])
    (record,) = keep.records
    assert record["step"] == 3 and record["train_loss"] == pytest.approx(LN3) and record["train_accuracy"] == pytest.approx(0.4)


def test_summary_epochs_keep_the_fraction_of_an_epoch():
    """max_steps=3 with 13 steps per epoch: the summary (and the record) count 3/13 epochs, not 0."""
    summary = trainer.fit(_zero_linear(), _splits(13), CrossEntropy(), _cfg(max_steps=3), None)
    assert summary["steps"] == 3 and summary["epochs"] == pytest.approx(3 / 13) and summary["stopped_by"] == "max_steps"


def _seed(seed: int, train: float, val: float, test: float, groups: dict[str, float] | None = None) -> dict:
    s = {"seed": seed, "train_accuracy": train, "val_accuracy": val, "test_accuracy": test, "wall_time_s": 1.0}
    if groups is not None:
        s["test_group_accuracy"] = groups
    return s


def test_aggregate_picks_each_rules_seed_and_takes_the_sample_std():
    """Train 1.0/0.9, val 0.8/0.9: best_by_train is seed 0 (test 0.5), best_by_val seed 1 (0.7); mean 0.6, std sqrt(0.02) (ddof 1)."""
    agg = api.aggregate([_seed(0, 1.0, 0.8, 0.5), _seed(1, 0.9, 0.9, 0.7)])
    assert (agg["best_by_train"]["seed"], agg["best_by_train"]["test_accuracy"]) == (0, 0.5)
    assert (agg["best_by_val"]["seed"], agg["best_by_val"]["test_accuracy"]) == (1, 0.7)
    assert agg["test_accuracy_mean"] == pytest.approx(0.6) and agg["test_accuracy_std"] == pytest.approx(0.141421, abs=1e-6)
    assert "tied_seeds" not in agg["best_by_train"] and "tied_seeds" not in agg["best_by_val"]


def test_tied_seeds_are_named_only_under_the_rule_that_tied():
    """Train 1.0/1.0 ties (the first seed wins, both named); val 0.8/0.9 does not."""
    agg = api.aggregate([_seed(0, 1.0, 0.8, 0.5), _seed(1, 1.0, 0.9, 0.7)])
    assert agg["best_by_train"]["seed"] == 0 and agg["best_by_train"]["tied_seeds"] == [0, 1]
    assert agg["best_by_val"]["seed"] == 1 and "tied_seeds" not in agg["best_by_val"]


def test_group_errors_are_mean_and_sample_std_over_seeds():
    """Task accuracies 0.9, 0.8, 0.4 are errors 10, 20, 60: mean 30, sample std sqrt(700) = 26.458; test 0.2, 0.3, 0.7: mean 0.4."""
    seeds = [_seed(i, 1.0 - i / 10, 0.5, t, {"1": a, "2": 1.0}) for i, (a, t) in enumerate(((0.9, 0.2), (0.8, 0.3), (0.4, 0.7)))]
    agg = api.aggregate(seeds)
    assert agg["test_accuracy_mean"] == pytest.approx(0.4) and agg["test_accuracy_std"] == pytest.approx(math.sqrt(0.07))  # not the median 0.3
    assert agg["group_error_mean"] == pytest.approx({"1": 30.0, "2": 0.0})
    assert agg["group_error_std"] == pytest.approx({"1": math.sqrt(700), "2": 0.0})
    assert agg["group_error_std"]["1"] == pytest.approx(26.458, abs=1e-3)
    assert agg["mean_group_error_over_runs"] == pytest.approx({"mean": 15.0, "std": math.sqrt(175)})  # run means 5, 10, 30


def test_merge_each_averages_each_values_chosen_runs():
    """Two values whose seeds rank differently on train and val: merged best_by_train 0.35, best_by_val 0.8, mean 0.575."""
    a = api.aggregate([_seed(0, 1.0, 0.8, 0.5, {"1": 0.9}), _seed(1, 0.9, 0.9, 0.7, {"1": 0.8})])
    b = api.aggregate([_seed(0, 0.7, 0.95, 0.9, {"2": 0.5}), _seed(1, 0.8, 0.6, 0.2, {"2": 0.7})])
    cfg = ExperimentConfig.from_dict({"name": "each", "data": {"name": "synthetic", "kwargs": {}}, "model": {"name": "mlp"}, "train": {"repeats": 2}})
    merged = api.merge_each({"1": a, "2": b}, cfg, "data.tasks", [1, 2])
    assert merged["best_by_train"]["test_accuracy"] == pytest.approx(statistics.fmean([0.5, 0.2]))
    assert merged["best_by_val"]["test_accuracy"] == pytest.approx(statistics.fmean([0.7, 0.9]))
    assert merged["test_accuracy_mean"] == pytest.approx(0.575)
    assert merged["best_by_train"]["seed_per_value"] == {"1": 0, "2": 1} and merged["best_by_val"]["seed_per_value"] == {"1": 1, "2": 0}
    assert merged["best_by_train"]["test_group_accuracy"] == {"1": 0.9, "2": 0.7}
    assert merged["best_by_val"]["test_group_accuracy"] == {"1": 0.8, "2": 0.5}
    assert merged["group_error_mean"] == pytest.approx({"1": 15.0, "2": 40.0})
    assert merged["group_error_std"] == pytest.approx({"1": math.sqrt(50), "2": math.sqrt(200)})
    # run i of the whole protocol = seed i of every value: errors (10, 50) and (20, 30), means 30 and 25
    assert merged["mean_group_error_by_run"] == pytest.approx([30.0, 25.0])
    assert merged["mean_group_error_over_runs"] == pytest.approx({"mean": 27.5, "std": math.sqrt(12.5), "runs": "seed i of every value"})


def test_merge_each_weighs_each_values_runs_by_its_groups():
    """A value of one task (run errors 10, 20, 30) and one of two tasks (run means 0, 30, 60): run i pools the
    three tasks, (10 + 2*0)/3, (20 + 2*30)/3, (30 + 2*60)/3 = 3.33, 26.67, 50; their mean is the mean of the
    task means (20 and 0, 30 -> 26.67)."""
    one = [_seed(i, 1.0, 0.5, 0.5, {"1": 1 - e / 100}) for i, e in enumerate((10, 20, 30))]
    two = [_seed(i, 1.0, 0.5, 0.5, {"2": 1 - e / 100, "3": 1 - e / 100}) for i, e in enumerate((0, 30, 60))]
    cfg = ExperimentConfig.from_dict({"name": "each", "data": {"name": "synthetic", "kwargs": {}}, "model": {"name": "mlp"}, "train": {"repeats": 3}})
    merged = api.merge_each({"a": api.aggregate(one), "b": api.aggregate(two)}, cfg, "data.tasks", ["a", "b"])
    assert merged["mean_group_error_by_run"] == pytest.approx([10 / 3, 80 / 3, 50.0])
    assert merged["mean_group_error_over_runs"]["mean"] == pytest.approx(statistics.fmean(merged["group_error_mean"].values()))
    assert merged["mean_group_error_over_runs"]["std"] == pytest.approx(statistics.stdev([10 / 3, 80 / 3, 50.0]))


class _CountPasses(Callback):
    """A callback with state: the validation passes it has seen (a resume restores the count from the checkpoint)."""

    def __init__(self):
        self.passes = 0

    def on_eval_end(self, ctx, metrics):
        self.passes += 1

    def state_dict(self):
        return {"passes": self.passes}

    def load_state_dict(self, state):
        self.passes = state["passes"]


@pytest.mark.parametrize("stop_after", [3, 5])
def test_a_max_minutes_stop_between_passes_resumes_as_a_run_never_stopped(tmp_path, monkeypatch, stop_after):
    """Validation every 2 steps, selection on the lowest validation loss. Unstopped, the passes at steps 2, 4
    and 6 score losses 2.51, 4.01, 4.01 (THETAS' steps 2 and 4): step 2 is the best. Stopped by a clock after
    step 3 (loss 1.06, the lowest of all) or 5 (1.64), the extra pass chooses that step, as the stopped run
    reports; resumed, the run drops that pass (its record, its choice, the callbacks' sight of it, and the
    training-loss window it closed) and ends as the unstopped one: the same records, best step 2 with step 2's
    logits in best.safetensors, the same callback state."""
    from overlooked.train.checkpoint import read_checkpoint

    thetas = [*THETAS[:5], THETAS[3]]
    Tick = _ticking_clock(monkeypatch)
    cfg = _cfg(eval_every=2, select_metric="val_loss")

    def run(run_dir, cfg, resume=None):
        model, count = _Const(), _CountPasses()
        summary = trainer.fit(model, _splits(6), CrossEntropy(), cfg, run_dir, callbacks=[Tick(), _Steer(thetas), count], resume=resume)
        return summary, count

    ref, (ref_summary, ref_count) = tmp_path / "ref", run(tmp_path / "ref", cfg)
    cut = tmp_path / "cut"
    stopped, _ = run(cut, _cfg(eval_every=2, select_metric="val_loss", max_minutes=stop_after * 10 / 60))
    assert stopped["stopped_by"] == "max_minutes" and stopped["steps"] == stop_after and stopped["best_step"] == stop_after
    stop_record = json.loads((cut / "metrics.jsonl").read_text().splitlines()[-1])
    assert stop_record["step"] == stop_after and stop_record["val_loss"] == pytest.approx(_val_ce(thetas[stop_after - 1]))
    last_state = read_checkpoint(cut / "checkpoints" / "last.safetensors")[1]["info"]["state"]
    assert last_state["stop_pass"] is True and last_state["best_step"] == 2 and last_state["callbacks"][2] == {"passes": stop_after // 2}
    best_state = read_checkpoint(cut / "checkpoints" / "best.safetensors")[1]["info"]["state"]
    assert best_state["best_step"] == stop_after and best_state["stop_pass"] is False  # only `last` carries the flag
    assert read_checkpoint(cut / "checkpoints" / "best_before_stop.safetensors")[1]["info"]["state"]["best_step"] == 2

    resumed, count = run(cut, cfg, resume=cut / "checkpoints" / "last.safetensors")
    read = lambda d: [json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    keys = ("step", "epoch", "lr", "train_loss", "train_accuracy", "examples_seen", "val_loss", "val_accuracy")
    assert [[r[k] for k in keys] for r in read(cut)] == [[r[k] for k in keys] for r in read(ref)]
    assert [r["step"] for r in read(ref)] == [2, 4, 6]
    for key in ("best_step", "val_loss", "test_loss", "test_accuracy", "steps", "examples_seen"):
        assert resumed[key] == ref_summary[key], key
    assert ref_summary["best_step"] == 2 and count.passes == ref_count.passes == 3
    tensors, doc = read_checkpoint(cut / "checkpoints" / "best.safetensors")
    assert doc["info"]["state"]["best_step"] == 2 and torch.equal(tensors["model.theta"], torch.tensor(thetas[1]))
    assert not (cut / "checkpoints" / "best_before_stop.safetensors").exists() and not (cut / "checkpoints" / "best_before_stop.json").exists()
    assert json.loads((cut / "checkpoints" / "best.json").read_text())["state"]["best_step"] == 2  # the readable sidecar moved with it


def test_a_max_minutes_stop_at_a_regular_pass_is_no_extra_pass(tmp_path, monkeypatch):
    """The clock runs out after step 4, where a regular pass falls (every 2 steps): that pass is the run's own,
    `last` is not flagged, nothing is set aside, and the resumed run keeps the pass: records at 2, 4 and 6 as
    the unstopped run's."""
    from overlooked.train.checkpoint import read_checkpoint

    thetas = [*THETAS[:5], THETAS[3]]
    Tick = _ticking_clock(monkeypatch)

    def run(run_dir, cfg, resume=None):
        return trainer.fit(_Const(), _splits(6), CrossEntropy(), cfg, run_dir, callbacks=[Tick(), _Steer(thetas)], resume=resume)

    ref = run(tmp_path / "ref", _cfg(eval_every=2, select_metric="val_loss"))
    cut = tmp_path / "cut"
    stopped = run(cut, _cfg(eval_every=2, select_metric="val_loss", max_minutes=40 / 60))
    assert stopped["stopped_by"] == "max_minutes" and stopped["steps"] == 4
    assert read_checkpoint(cut / "checkpoints" / "last.safetensors")[1]["info"]["state"]["stop_pass"] is False
    assert not (cut / "checkpoints" / "best_before_stop.safetensors").exists()
    resumed = run(cut, _cfg(eval_every=2, select_metric="val_loss"), resume=cut / "checkpoints" / "last.safetensors")
    read = lambda d: [json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    keys = ("step", "train_loss", "val_loss", "examples_seen")
    assert [r["step"] for r in read(cut)] == [2, 4, 6] and [[r[k] for k in keys] for r in read(cut)] == [[r[k] for k in keys] for r in read(tmp_path / "ref")]
    assert resumed["best_step"] == ref["best_step"] == 2


def test_examples_seen_counts_a_short_last_batch():
    """Ten examples in batches of 4: steps of 4, 4 and 2, so 10 examples seen, not 3 x 4 = 12."""
    summary = trainer.fit(_zero_linear(), _splits(10), CrossEntropy(), _cfg(batch_size=4), None)
    assert summary["steps"] == 3 and summary["examples_seen"] == 10


class _Weighted(nn.Module):
    """One 2x2 parameter W (zero at the start); the output, used as the loss, is sum(W * x[0]), so dL/dW = x[0]."""

    def __init__(self):
        super().__init__()
        self.W = nn.Parameter(torch.zeros(2, 2))

    def forward(self, x):
        return (self.W * x[0]).sum()


def test_spectral_clipping_uses_the_largest_singular_value():
    """The gradient [[3, 0], [0, 4]] has spectral norm 4 (Frobenius 5): clipped to 2 it is halved, so one SGD
    step at lr 1 gives W = -[[1.5, 0], [0, 2]] (with the Frobenius norm it would be -[[1.2, 0], [0, 1.6]])."""
    from overlooked.train.trainer import build_optimizer, train_step

    x = torch.tensor([[[3.0, 0.0], [0.0, 4.0]]])
    for norm, want in (("spectral", [[-1.5, 0.0], [0.0, -2.0]]), ("frobenius", [[-1.2, 0.0], [0.0, -1.6]])):
        model = _Weighted()
        cfg = TrainConfig(optimizer="sgd", lr=1.0, grad_clip=2.0, grad_clip_per_tensor=True, grad_clip_norm=norm)
        train_step(model, {"x": x}, ("x",), lambda out, batch: out, build_optimizer(cfg, model.parameters()), cfg)
        assert torch.allclose(model.W.detach(), torch.tensor(want), atol=1e-6), norm


def test_merge_each_without_repeats_means_val_and_test():
    """Two values, one run each: validation 0.8 and 0.6, test 0.5 and 0.7 -> merged 0.7 and 0.6."""
    cfg = ExperimentConfig.from_dict({"name": "each", "data": {"name": "synthetic", "kwargs": {}}, "model": {"name": "mlp"}})
    merged = api.merge_each({"1": _seed(0, 1.0, 0.8, 0.5), "2": _seed(0, 1.0, 0.6, 0.7)}, cfg, "data.tasks", [1, 2])
    assert merged["val_accuracy"] == pytest.approx(0.7) and merged["test_accuracy"] == pytest.approx(0.6)


def test_a_callback_stop_at_the_step_the_clock_runs_out_is_the_callbacks(tmp_path, monkeypatch):
    """A callback stops training after step 3, the step the clock also runs out (validation every 2 steps): the
    run ends as it would without a clock (its pass at step 3 is its last regular one, not an extra pass a resume
    would drop), says it was stopped by the callback, and a resume continues it as it continues the clock-free run."""
    Tick = _ticking_clock(monkeypatch)

    class StopAfter(Callback):
        def on_step_end(self, ctx, loss):
            if ctx.state.step == 3:
                ctx.stop = True


    def run(run_dir, cfg, resume=None):
        return trainer.fit(_Const(), _splits(6), CrossEntropy(), cfg, run_dir, callbacks=[Tick(), _Steer(THETAS), StopAfter()], resume=resume)

    from overlooked.train.checkpoint import read_checkpoint

    read = lambda d: [(r["step"], r["val_loss"], r["train_loss"]) for r in map(json.loads, (d / "metrics.jsonl").read_text().splitlines())]  # noqa: E731
    cfg = _cfg(eval_every=2, select_metric="val_loss")
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    alone = run(ref, cfg)
    both = run(cut, _cfg(eval_every=2, select_metric="val_loss", max_minutes=0.5))
    assert alone["stopped_by"] == both["stopped_by"] == "callback" and alone["steps"] == both["steps"] == 3
    assert read(cut) == read(ref) and [r[0] for r in read(ref)] == [2, 3]
    assert read_checkpoint(cut / "checkpoints" / "last.safetensors")[1]["info"]["state"]["stop_pass"] is False
    run(ref, cfg, resume=ref / "checkpoints" / "last.safetensors")
    run(cut, cfg, resume=cut / "checkpoints" / "last.safetensors")
    assert read(cut) == read(ref) and [r[0] for r in read(ref)] == [2, 3, 4, 6]  # the pass at 3 kept in both


def test_a_best_set_aside_by_a_stop_that_no_resume_chooses_is_removed(tmp_path, monkeypatch):
    """Validation every 4 steps, stops by the clock after steps 1 and 3, before any regular pass: the second
    stop sets aside the first stop's best, which the resumed state (no pass chosen yet) never names, so the
    resume removes it (files and sidecar); until then commands name only best and last."""
    from overlooked import api
    from overlooked.errors import CheckpointError

    Tick = _ticking_clock(monkeypatch)
    run_dir, ckpts = tmp_path / "run", tmp_path / "run" / "checkpoints"

    def run(cfg, resume=None):
        return trainer.fit(_Const(), _splits(6), CrossEntropy(), cfg, run_dir, callbacks=[Tick(), _Steer(THETAS)], resume=resume)

    assert run(_cfg(eval_every=4, max_minutes=10 / 60))["steps"] == 1
    assert run(_cfg(eval_every=4, max_minutes=20 / 60), resume=ckpts / "last.safetensors")["steps"] == 3
    assert (ckpts / "best_before_stop.safetensors").exists() and (ckpts / "best_before_stop.json").exists()
    (ckpts / "best.safetensors").rename(tmp_path / "best.safetensors")  # as if killed before the pass wrote its best
    with pytest.raises(CheckpointError, match=r"it has last: pass --checkpoint last$"):
        api.check_checkpoint_exists(run_dir, "best")
    (tmp_path / "best.safetensors").rename(ckpts / "best.safetensors")
    summary = run(_cfg(eval_every=4), resume=ckpts / "last.safetensors")
    assert summary["steps"] == 6 and summary["best_step"] in (4, 6)
    assert sorted(p.name for p in ckpts.iterdir()) == ["best.json", "best.safetensors", "last.json", "last.safetensors"]


def test_a_validation_tie_goes_to_the_first_seed():
    """Validation 0.9 and 0.9: best_by_val is seed 0 (test 0.5), both seeds named as tied."""
    agg = api.aggregate([_seed(0, 0.9, 0.9, 0.5), _seed(1, 1.0, 0.9, 0.7)])
    assert (agg["best_by_val"]["seed"], agg["best_by_val"]["test_accuracy"], agg["best_by_val"]["tied_seeds"]) == (0, 0.5, [0, 1])


def test_last_checkpoint_follows_eval_every_when_checkpoint_every_is_unset(tmp_path):
    """8 examples, batch 2: 4 steps an epoch; eval_every=2 and checkpoint_every=0 write `last` at step 2 (with the
    pass), so it exists when step 3 ends (at once an epoch it would first appear at step 4)."""

    class Look(Callback):
        def __init__(self):
            self.seen = {}

        def on_step_end(self, ctx, loss):
            self.seen[ctx.state.step] = (ctx.run_dir / "checkpoints" / "last.safetensors").exists()

    look = Look()
    trainer.fit(_zero_linear(), _splits(8, [0, 1, 2]), CrossEntropy(), _cfg(batch_size=2, eval_every=2), tmp_path, callbacks=[look])
    assert look.seen == {1: False, 2: False, 3: True, 4: True}  # step 2's hook runs before its pass writes it


@pytest.mark.parametrize("training", [False, True])
def test_evaluate_hands_the_model_back_in_the_mode_it_found_it(training):
    """evaluate switches to eval mode for the pass and back to whichever mode the model was in."""
    model = _zero_linear().train(training)
    res = evaluate(model, _data([0, 1, 2]), ("x",), "label", CrossEntropy())
    assert res["loss"] == pytest.approx(math.log(3.0))
    assert model.training is training
