"""``overlooked demo memory``: train MemN2N on two bAbI tasks and show what each hop attended to."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from overlooked.data.babi import task_path
from overlooked.memory.explain import explain_example, format_example
from overlooked.registry import DEMOS

DEMO_TASKS = (1, 2)


@DEMOS.register("memory", datasets={"babi": [task_path(t, "en", s) for t in DEMO_TASKS for s in ("train", "test")]})
def demo_memory(run_dir: Path, data_dir: str | None = None) -> dict[str, Any]:
    """MemN2N (PE, LS, RN, 3 hops) trained jointly on bAbI 1k tasks 1 and 2, with its attention per hop."""
    from overlooked import api

    cfg = api.load("memn2n_babi1k", ["data.tasks=[1, 2]", "train.epochs=40", "callbacks.0.kwargs.max_epochs=10", "train.step_epochs=10", "train.progress=false"])
    path, summary = api.train(cfg, data_dir=data_dir, run_dir=run_dir / "memn2n_babi_1_2")
    _, splits, model = api.load_run(path, data_dir=data_dir)
    shown = [explain_example(model, splits.test, splits.input_keys, splits.meta["vocab"], i, run_dir / f"memory_attention_{i}.png", split_name="test") for i in (0, 1005)]
    for example in shown:
        print(format_example(example))
        if example.get("figure"):
            print(f"attention per hop: {example['figure']}")
    return {
        "what": "MemN2N on bAbI 1k tasks 1+2, 40 epochs",
        "test_accuracy": summary["test_accuracy"],
        "task_accuracy": summary.get("test_group_accuracy"),
        "wall_time_s": summary["wall_time_s"],
        "examples": shown,
        "run": str(path),
    }
