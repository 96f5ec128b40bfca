"""``overlooked demo memory``: train MemN2N on two bAbI tasks and show what each hop attended to."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from overlooked.data.babi import task_path
from overlooked.registry import DEMOS

DEMO_TASKS = (1, 2)


def _words(ids: list[int], vocab: list[str]) -> str:
    return " ".join(vocab[i] for i in ids if i)


def explain(model: torch.nn.Module, splits: Any, index: int, path: Path) -> dict[str, Any]:
    """Answer test question ``index``, print the story and the attention per hop, and draw it."""
    from overlooked.plots.memory import attention_figure

    vocab = splits.meta["vocab"]
    batch = splits.test[torch.tensor([index])]
    with torch.no_grad():
        out = model(*(batch[k] for k in splits.input_keys))
    n = int(batch["memory_mask"][0].sum())
    sentences = [_words(batch["story"][0, i].tolist(), vocab) for i in range(n)]
    attention = out["attention"][0, :, :n].numpy()  # [K, n]
    question, answer = _words(batch["query"][0].tolist(), vocab), vocab[int(batch["answer"][0])]
    predicted = vocab[int(out["logits"][0].argmax())]
    print(f"story (task {int(batch['task'][0])}):")
    for i, sentence in enumerate(sentences):
        marks = "  ".join(f"hop{k + 1} {attention[k, i]:.2f}" for k in range(attention.shape[0]) if attention[k, i] >= 0.1)
        print(f"  {i + 1:2d}. {sentence:<40} {marks}")
    print(f"question: {question}?   answer: {answer}   predicted: {predicted}")
    attention_figure(sentences, attention, question, answer, predicted, path)
    return {"question": question, "answer": answer, "predicted": predicted, "figure": str(path)}


@DEMOS.register("memory", datasets={"babi": [task_path(t, "en", s) for t in DEMO_TASKS for s in ("train", "test")]})
def demo_memory(run_dir: Path, data_dir: str | None = None) -> dict[str, Any]:
    """MemN2N (PE, LS, RN, 3 hops) trained jointly on bAbI 1k tasks 1 and 2, with its attention per hop."""
    from overlooked import api

    cfg = api.load("memn2n_babi1k", ["data.tasks=[1, 2]", "train.epochs=40", "callbacks.0.kwargs.max_epochs=10", "train.step_epochs=10", "train.progress=false"])
    path, summary = api.train(cfg, data_dir=data_dir, run_dir=run_dir / "memn2n_babi_1_2")
    _, splits, model = api.load_run(path, data_dir=data_dir)
    shown = [explain(model, splits, i, run_dir / f"memory_attention_{i}.png") for i in (0, 1005)]
    return {
        "what": "MemN2N on bAbI 1k tasks 1+2, 40 epochs",
        "test_accuracy": summary["test_accuracy"],
        "task_accuracy": summary.get("test_group_accuracy"),
        "wall_time_s": summary["wall_time_s"],
        "examples": shown,
        "run": str(path),
    }
