"""What a trained memory network read to answer one question: the story, each hop's addressing over the
memories, the dataset's supporting facts, the answer and the prediction (``overlooked explain``).

MemN2N and KV-MemNN return soft addressing weights (``"attention"`` ``[B, K, M]``); MemNN returns the
memory its hard-max O module chose at each hop (``"chosen"`` ``[B, H]``, -1 when it read none), shown as
weights of 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from overlooked.data.base import ArrayDataset


def reads_memory(out: Any) -> bool:
    """Whether a model output (a tensor of logits, or a dict) holds per-hop memory addressing
    (``attention`` or ``chosen``)."""
    return isinstance(out, dict) and ("attention" in out or "chosen" in out)


def hop_weights(out: dict[str, torch.Tensor], row: int, n: int) -> np.ndarray:
    """``[K, n]`` addressing weights of batch row ``row`` over its first ``n`` memories.

    Soft weights from ``out["attention"]``; from ``out["chosen"]`` (hard hops), 1 at the chosen memory and a
    row of zeros for a hop that read none (stopped, or no memory left).
    """
    if "attention" in out:
        return out["attention"][row, :, :n].detach().float().numpy()
    if "chosen" in out:
        chosen = out["chosen"][row].tolist()  # [H]
        weights = np.zeros((len(chosen), n), dtype=np.float32)
        for k, slot in enumerate(chosen):
            if 0 <= slot < n:
                weights[k, slot] = 1.0
        return weights
    raise ValueError(f"the model output has no memory addressing (keys {sorted(out)}); expected 'attention' or 'chosen'")


def _words(ids: list[int], vocab: list[str]) -> str:
    return " ".join(vocab[i] for i in ids if i)


def explain_example(model: torch.nn.Module, split: ArrayDataset, input_keys: tuple[str, ...], vocab: list[str], index: int, path: str | Path | None = None, split_name: str | None = None) -> dict[str, Any]:
    """Answer question ``index`` of ``split`` with ``model`` (in eval mode) and describe what it read.

    Args:
        model: a memory model whose output has ``attention`` or ``chosen``.
        split: a bAbI split (``story``, ``query``, ``memory_mask``, ``answer``, ``supporting``, ``task``).
        input_keys: the batch keys the model takes, in order.
        vocab: word of each index (index 0 is the null word).
        index: row of ``split``.
        path: where to draw the attention figure (PNG); None draws nothing.
        split_name: ``train``, ``val`` or ``test``, recorded for the printed form.

    Returns:
        ``row`` (= ``index``), ``task``, ``story`` (the memories, oldest first), ``question``, ``answer``, ``predicted``,
        ``correct``, ``attention`` (``[K][n]`` per hop), ``supporting`` (memory numbers of the dataset's
        supporting facts, oldest = 0; facts older than the memory window are left out) and ``figure``.
    """
    if not 0 <= index < len(split):
        raise IndexError(f"question {index} does not exist: the split has {len(split)} questions (0..{len(split) - 1})")
    batch = split[torch.tensor([index])]
    with torch.no_grad():
        out = model(*(batch[k] for k in input_keys))
    n = int(batch["memory_mask"][0].sum())
    weights = hop_weights(out, 0, n)
    support = sorted(int(s) for s in batch["supporting"][0].tolist() if 0 <= s < n) if "supporting" in batch else []
    result: dict[str, Any] = {
        "split": split_name,
        "row": index,
        "task": int(batch["task"][0]) if "task" in batch else None,
        "story": [_words(batch["story"][0, i].tolist(), vocab) for i in range(n)],
        "question": _words(batch["query"][0].tolist(), vocab),
        "answer": vocab[int(batch["answer"][0])],
        "predicted": vocab[int(out["logits"][0].argmax())],
        "attention": weights.round(4).tolist(),
        "supporting": support,
        "figure": None,
    }
    result["correct"] = result["answer"] == result["predicted"]
    if path is not None:
        from overlooked.plots.memory import attention_figure

        result["figure"] = str(attention_figure(result["story"], weights, result["question"], result["answer"], result["predicted"], path, supporting=support))
    return result


def format_example(ex: dict[str, Any], threshold: float = 0.1) -> str:
    """The printed form: each memory with the hops that put at least ``threshold`` on it; ``*`` marks the
    dataset's supporting facts."""
    where = f"{ex['split']} question {ex['row']}" if ex.get("split") else f"question {ex['row']}"
    if ex.get("task") is not None:
        where += f" (task {ex['task']}" + (f", its question {ex['task_index']})" if ex.get("task_index") is not None else ")")
    lines = [f"{where}; * = supporting fact in the dataset:"]
    weights = np.asarray(ex["attention"])
    for i, sentence in enumerate(ex["story"]):
        marks = "  ".join(f"hop{k + 1} {weights[k, i]:.2f}" for k in range(weights.shape[0]) if weights[k, i] >= threshold)
        star = "*" if i in ex["supporting"] else " "
        lines.append(f" {star}{i + 1:2d}. {sentence:<40} {marks}")
    verdict = "right" if ex["correct"] else "wrong"
    lines.append(f"question: {ex['question']}?   answer: {ex['answer']}   predicted: {ex['predicted']} ({verdict})")
    return "\n".join(lines)
