"""scripts/pool_seeds.py: the seeds of several --each --repeats runs of one recipe, chosen among by the
--repeats rules (training error, validation), never by test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml


@pytest.fixture(scope="module")
def pool_seeds(load_script):
    return load_script("pool_seeds")


def _cfg(tasks, seed=0, repeats=1, lr=0.01, name="recipe"):
    return {"name": name, "data": {"name": "babi", "kwargs": {"tasks": tasks}}, "model": {"name": "memn2n"}, "train": {"lr": lr, "seed": seed, "repeats": repeats}}


def _run(root: Path, name: str, seeds: dict[int, dict[int, tuple[float, float, float]]], lr=0.01) -> Path:
    """seeds: {task: {seed: (train, val, test)}}."""
    run = root / name
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(_cfg(sorted(seeds), name=name, lr=lr)))
    for task, per_seed in seeds.items():
        sub = run / f"tasks={task}"
        first = min(per_seed)
        for seed, (train, val, test) in per_seed.items():
            (sub / f"seed{seed}").mkdir(parents=True)
            summary = {"seed": seed, "wall_time_s": 1.0, "train_accuracy": train, "val_accuracy": val, "test_accuracy": test, "test_group_accuracy": {str(task): test}}
            (sub / f"seed{seed}" / "summary.json").write_text(json.dumps(summary))
        (sub / "config.yaml").write_text(yaml.safe_dump(_cfg([task], seed=first, repeats=len(per_seed), name=name, lr=lr)))
        (sub / "summary.json").write_text(json.dumps({"seeds": sorted(per_seed)}))  # written when the value finished
    return run


def test_pooled_choice_follows_training_error_then_validation_never_test(pool_seeds, tmp_path):
    a = _run(tmp_path, "a", {1: {0: (0.90, 0.80, 0.99), 1: (0.95, 0.70, 0.50)}, 2: {0: (1.0, 1.0, 0.9), 1: (1.0, 0.9, 1.0)}})
    b = _run(tmp_path, "b", {1: {2: (0.97, 0.60, 0.40), 3: (0.97, 0.90, 0.95)}})
    found = pool_seeds.pool("data.tasks", [a, b])
    assert [p.name for _, p, _ in found["tasks=1"]] == ["seed0", "seed1", "seed2", "seed3"]
    out = tmp_path / "pooled-each-1"
    pool_seeds.main(str(out), "data.tasks", [str(a), str(b)])
    one = json.loads((out / "tasks=1" / "summary.json").read_text())
    assert one["best_by_train"]["seed"] == 2  # 0.97 twice: the first listed (seed 2), whatever its test
    assert one["best_by_val"]["seed"] == 3
    assert one["repeats"] == 4 and (out / "tasks=1" / "seed3" / "summary.json").is_file()
    merged = json.loads((out / "summary.json").read_text())
    assert merged["best_by_train"]["test_group_accuracy"] == {"1": 0.40, "2": 0.9}  # task 2: a tie, seed 0
    assert merged["pooled_seeds"] == {"1": 4, "2": 2} and merged["repeats"] == "2 to 4"
    assert yaml.safe_load((out / "config.yaml").read_text())["name"] == "pooled"
    assert yaml.safe_load((out / "tasks=1" / "config.yaml").read_text())["train"]["repeats"] == 4


def test_pool_refuses_other_recipes_and_shared_seeds(pool_seeds, tmp_path):
    a = _run(tmp_path, "a", {1: {0: (0.9, 0.9, 0.9)}})
    other = _run(tmp_path, "other", {1: {1: (0.9, 0.9, 0.9)}}, lr=0.02)
    with pytest.raises(ValueError, match="another recipe"):
        pool_seeds.pool("data.tasks", [a, other])
    same = _run(tmp_path, "same", {1: {0: (0.8, 0.8, 0.8)}})
    with pytest.raises(ValueError, match="seed0 of tasks=1 is in both a and same"):
        pool_seeds.pool("data.tasks", [a, same])


def _plain_run(root: Path, name: str, seeds: dict[int, tuple[float, float, float]], lr=0.01) -> Path:
    """A plain --repeats run folder: seeds {seed: (train, val, test)} directly inside."""
    run = root / name
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(_cfg("all", seed=min(seeds), repeats=len(seeds), name="recipe", lr=lr)))
    for seed, (train, val, test) in seeds.items():
        (run / f"seed{seed}" / "checkpoints").mkdir(parents=True)
        (run / f"seed{seed}" / "checkpoints" / "last.safetensors").write_bytes(b"weights")
        summary = {"seed": seed, "wall_time_s": 1.0, "train_accuracy": train, "val_accuracy": val, "test_accuracy": test, "test_group_accuracy": {"1": test}}
        (run / f"seed{seed}" / "summary.json").write_text(json.dumps(summary))
    (run / "summary.json").write_text(json.dumps({"seeds": sorted(seeds)}))  # written when the run finished
    return run


def test_plain_repeats_runs_pool_into_one_repeats_summary(pool_seeds, tmp_path):
    a = _plain_run(tmp_path, "a", {0: (0.90, 0.95, 0.99), 1: (0.96, 0.70, 0.50)})
    b = _plain_run(tmp_path, "b", {2: (0.96, 0.60, 0.40), 3: (0.80, 0.90, 0.95)})
    out = tmp_path / "pooled"
    pool_seeds.main(str(out), "-", [str(a), str(b)])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["seeds"] == [0, 1, 2, 3] and summary["repeats"] == 4
    assert summary["best_by_train"]["seed"] == 1  # 0.96 twice: the first listed, whatever its test
    assert summary["best_by_val"]["seed"] == 0
    assert summary["test_accuracy_mean"] == pytest.approx((0.99 + 0.50 + 0.40 + 0.95) / 4)
    assert summary["pooled_seeds"] == ["a/seed0", "a/seed1", "b/seed2", "b/seed3"]
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["name"] == "recipe" and cfg["train"]["seed"] == 0 and cfg["train"]["repeats"] == 4
    assert (out / "seed3" / "summary.json").is_file() and not list(out.rglob("*.safetensors"))
    assert json.loads((out / "environment.json").read_text())["pooled_from"] == ["a", "b"]


def test_plain_pool_refuses_each_runs_other_recipes_shared_and_unfinished_seeds(pool_seeds, tmp_path):
    a = _plain_run(tmp_path, "a", {0: (0.9, 0.9, 0.9)})
    each = _run(tmp_path, "each", {1: {1: (0.9, 0.9, 0.9)}})
    with pytest.raises(ValueError, match="made with --each: pass its KEY"):
        pool_seeds.pool("-", [a, each])
    with pytest.raises(ValueError, match="another recipe than a "):
        pool_seeds.pool("-", [a, _plain_run(tmp_path, "other", {1: (0.9, 0.9, 0.9)}, lr=0.02)])
    with pytest.raises(ValueError, match="seed0 is in both a and same"):
        pool_seeds.pool("-", [a, _plain_run(tmp_path, "same", {0: (0.8, 0.8, 0.8)})])
    running = _plain_run(tmp_path, "running", {5: (0.8, 0.8, 0.8), 6: (0.8, 0.8, 0.8)})
    (running / "seed6" / "summary.json").unlink()
    with pytest.raises(ValueError, match="seed6 has no summary.json"):
        pool_seeds.pool("-", [a, running])
    killed = _plain_run(tmp_path, "killed", {7: (0.8, 0.8, 0.8), 8: (0.8, 0.8, 0.8)})
    (killed / "summary.json").unlink()  # the process died before the run's summary
    with pytest.raises(ValueError, match="killed is not a finished --repeats run \\(its summary.json is missing"):
        pool_seeds.pool("-", [a, killed])
    (killed / "summary.json").write_text(json.dumps({"seeds": [7]}))
    with pytest.raises(ValueError, match=r"lists seeds \[7\], its folders hold seeds \[7, 8\]"):
        pool_seeds.pool("-", [a, killed])
    with pytest.raises(ValueError, match="is one of the runs"):
        pool_seeds.main(str(a), "-", [str(a)])
    gap = _plain_run(tmp_path, "gap", {5: (0.8, 0.8, 0.8)})
    with pytest.raises(ValueError, match=r"seeds \[0, 5\] are not consecutive"):
        pool_seeds.main(str(tmp_path / "out"), "-", [str(a), str(gap)])


def test_plain_pool_orders_seeds_whatever_the_order_of_the_runs(pool_seeds, tmp_path):
    a = _plain_run(tmp_path, "a", {0: (0.9, 0.9, 0.9), 1: (0.95, 0.9, 0.5)})
    b = _plain_run(tmp_path, "b", {2: (0.95, 0.9, 0.4)})
    (b / "seeds.txt").write_text("not a seed folder")
    out = tmp_path / "pooled"
    pool_seeds.main(str(out), "-", [str(b), str(a)])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["seeds"] == [0, 1, 2] and summary["best_by_train"]["seed"] == 1  # a tie goes to the lower seed
    assert yaml.safe_load((out / "config.yaml").read_text())["train"]["seed"] == 0


def test_each_pool_refuses_an_unfinished_sub_run(pool_seeds, tmp_path):
    a = _run(tmp_path, "a", {1: {0: (0.9, 0.9, 0.9)}})
    b = _run(tmp_path, "b", {1: {1: (0.9, 0.9, 0.9), 2: (0.8, 0.8, 0.8)}})
    (b / "tasks=1" / "seed2" / "summary.json").unlink()
    with pytest.raises(ValueError, match="seed2 has no summary.json"):
        pool_seeds.pool("data.tasks", [a, b])


def test_plain_pool_names_same_named_runs_by_their_paths(pool_seeds, tmp_path):
    a = _plain_run(tmp_path / "outa", "recipe-1", {0: (0.9, 0.9, 0.9)})
    b = _plain_run(tmp_path / "outb", "recipe-1", {1: (0.8, 0.8, 0.8)})
    out = tmp_path / "pooled"
    pool_seeds.main(str(out), "-", [str(a), str(b)])
    assert json.loads((out / "summary.json").read_text())["pooled_seeds"] == [f"{a}/seed0", f"{b}/seed1"]
    assert json.loads((out / "environment.json").read_text())["pooled_from"] == [str(a), str(b)]


def test_plain_pool_takes_a_finished_run_assembled_from_two_launches(pool_seeds, tmp_path):
    """A folder gathered by hand (config says repeats 5, ten seed folders, the summary lists all ten)."""
    whole = _plain_run(tmp_path, "whole", {i: (0.9, 0.9, 0.9) for i in range(10)})
    (whole / "config.yaml").write_text(yaml.safe_dump(_cfg("all", seed=0, repeats=5, name="recipe")))
    more = _plain_run(tmp_path, "more", {10: (0.95, 0.9, 0.9)})
    pool_seeds.main(str(tmp_path / "out"), "-", [str(whole), str(more)])
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["best_by_train"]["seed"] == 10


def test_each_pool_orders_seeds_and_refuses_gaps_and_out_among_the_runs(pool_seeds, tmp_path):
    a = _run(tmp_path, "a", {1: {0: (0.9, 0.9, 0.9), 1: (0.95, 0.9, 0.5)}})
    b = _run(tmp_path, "b", {1: {2: (0.95, 0.9, 0.4)}})
    out = tmp_path / "pooled-each-1"
    pool_seeds.main(str(out), "data.tasks", [str(b), str(a)])
    one = json.loads((out / "tasks=1" / "summary.json").read_text())
    assert one["seeds"] == [0, 1, 2] and one["best_by_train"]["seed"] == 1  # a tie goes to the lower seed
    assert yaml.safe_load((out / "tasks=1" / "config.yaml").read_text())["train"]["seed"] == 0
    gap = _run(tmp_path, "gap", {1: {5: (0.8, 0.8, 0.8)}})
    with pytest.raises(ValueError, match=r"seeds \[0, 1, 5\] of tasks=1 are not consecutive"):
        pool_seeds.main(str(tmp_path / "x"), "data.tasks", [str(a), str(gap)])
    with pytest.raises(ValueError, match="is one of the runs"):
        pool_seeds.main(str(a), "data.tasks", [str(b), str(a)])
    assert sorted(p.name for p in (a / "tasks=1").glob("seed*")) == ["seed0", "seed1"]  # nothing copied into it


def test_a_linear_start_without_hold_lr_pools_with_hold_lr_only_where_they_trained_alike(pool_seeds, tmp_path):
    """Runs made before c980107 record no hold_lr; their schedule also ran inside linear start. With a step
    schedule whose first step comes after LS's cap (and no warmup) that changed nothing, so they pool with runs
    recording hold_lr: true; with a schedule that moves the lr inside LS they are another recipe. Keys the
    format gained since (train.trials, init_from...) read as their defaults."""
    def run(name, seed, hold, **train):
        r = _run(tmp_path, name, {1: {seed: (0.9, 0.9, 0.9)}})
        for path in (r / "config.yaml", r / "tasks=1" / "config.yaml"):
            cfg = yaml.safe_load(path.read_text())
            cfg["train"].update({"schedule": "step", "step_epochs": 25, **train})
            cfg["callbacks"] = [{"name": "linear_start", "kwargs": {"max_epochs": 20, **({"hold_lr": True} if hold else {})}}]
            if hold:
                cfg["train"].update(trials=1, init_from=None, init_checkpoint="best")  # written out by newer code
            path.write_text(yaml.safe_dump(cfg))
        return r

    old, new = run("old", 0, hold=False), run("new", 1, hold=True)
    assert [p.name for _, p, _ in pool_seeds.pool("data.tasks", [old, new])["tasks=1"]] == ["seed0", "seed1"]
    for name, train in (("cosine", {"schedule": "cosine"}), ("early_step", {"step_epochs": 10}), ("warmup", {"warmup_steps": 100})):
        other = run(name, 0, hold=False, **train)
        newer = run(f"{name}_new", 1, hold=True, **train)
        with pytest.raises(ValueError, match="another recipe"):
            pool_seeds.pool("data.tasks", [other, newer])
