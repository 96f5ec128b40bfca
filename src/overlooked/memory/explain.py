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


def in_linear_start(model: Any, out: dict[str, Any]) -> bool:
    """During linear start MemN2N has no softmax: its hop values (soft ``attention``) are raw scores, not
    weights summing to 1."""
    return "attention" in out and not getattr(model, "use_softmax", True)

def reads_memory(out: Any) -> bool:
    """Whether a model output (a tensor of logits, or a dict) holds per-hop memory addressing
    (``attention`` or ``chosen``)."""
    return isinstance(out, dict) and ("attention" in out or "chosen" in out)


def hop_weights(out: dict[str, torch.Tensor], row: int, n: int) -> np.ndarray:
    """``[K, n]`` addressing weights of batch row ``row`` over its first ``n`` memories.

    Soft weights from ``out["attention"]``; from ``out["chosen"]`` (hard hops), 1 at the chosen memory and a
    row of zeros for a hop that read none (stopped, or no memory left): a row of :func:`all_hop_weights`.
    """
    return all_hop_weights(out, n)[row, :, :n].numpy()


def _words(ids: list[int], vocab: list[str]) -> str:
    return " ".join(vocab[i] for i in ids if i)


def explain_example(model: torch.nn.Module, split: ArrayDataset, input_keys: tuple[str, ...], vocab: list[str], index: int, path: str | Path | None = None, split_name: str | None = None) -> dict[str, Any]:
    """Answer question ``index`` of ``split`` with ``model`` (in eval mode) and describe what it read
    (``attention`` None and no figure for a model without addressable memory).

    Args:
        model: a bAbI model; its per-hop addressing is shown when its output has ``attention`` or ``chosen``.
        split: a bAbI split (``story``, ``query``, ``memory_mask``, ``answer``, ``supporting``, ``task``).
        input_keys: the batch keys the model takes, in order.
        vocab: word of each index (index 0 is the null word).
        index: row of ``split``.
        path: where to draw the attention figure (PNG); None draws nothing.
        split_name: ``train``, ``val`` or ``test``, recorded for the printed form.

    Returns:
        ``row`` (= ``index``), ``task``, ``story`` (the memories, oldest first), ``question``, ``answer`` (None where
        the example holds the null word: no answer given), ``predicted``, ``correct`` (None without an answer),
        ``attention`` (``[K][n]`` per hop; None for a model without hops), ``supporting`` (memory numbers of the
        dataset's supporting facts, oldest = 0; facts older than the memory window are left out) and ``figure``.
    """
    if not 0 <= index < len(split):
        raise IndexError(f"question {index} does not exist: the split has {len(split)} questions (0..{len(split) - 1})")
    batch = split[torch.tensor([index])]
    with torch.no_grad():
        out = model(*(batch[k] for k in input_keys))
    n = int(batch["memory_mask"][0].sum())
    weights = hop_weights(out, 0, n) if reads_memory(out) else None  # the LSTM/Transformer readers have no hops
    logits = out["logits"] if isinstance(out, dict) else out
    support = sorted(int(s) for s in batch["supporting"][0].tolist() if 0 <= s < n) if "supporting" in batch else []
    result: dict[str, Any] = {
        "split": split_name,
        "row": index,
        "task": int(batch["task"][0]) if "task" in batch else None,
        # which question of its task this row is (explain --task T --index I shows the same one)
        "task_index": _task_index(split, index) if "task" in batch else None,
        "story": [_words(batch["story"][0, i].tolist(), vocab) for i in range(n)],
        "question": _words(batch["query"][0].tolist(), vocab),
        "answer": vocab[int(batch["answer"][0])] if int(batch["answer"][0]) else None,  # the null word: no answer given (api.ask)
        "predicted": vocab[int(logits[0].argmax())],
        "attention": None if weights is None else weights.round(4).tolist(),
        "supporting": support,
        "figure": None,
        "linear_start": isinstance(out, dict) and in_linear_start(model, out),
    }
    result["correct"] = None if result["answer"] is None else result["answer"] == result["predicted"]
    if path is not None and weights is not None:
        from overlooked.plots.memory import attention_figure

        result["figure"] = str(attention_figure(result["story"], weights, result["question"], result["answer"] or "(not given)", result["predicted"], path, supporting=support))
    return result


def format_example(ex: dict[str, Any], threshold: float = 0.1) -> str:
    """The printed form: each memory with the hops that put at least ``threshold`` on it; ``*`` marks the
    dataset's supporting facts."""
    if ex.get("row") is None:  # a question of your own (api.ask)
        where = "your question"
    else:
        where = f"{ex['split']} question {ex['row']}" if ex.get("split") else f"question {ex['row']}"
    if ex.get("task") is not None:
        where += f" (task {ex['task']}" + (f", its question {ex['task_index']})" if ex.get("task_index") is not None else ")")
    if ex.get("data_overrides"):  # explained on other data than the run's own
        where += f" of the data of {' '.join(ex['data_overrides'])}"
    raw = bool(ex.get("linear_start"))  # raw scores may be negative: a score far below zero is shown too
    values = f"hop scores (linear start: no softmax, not weights) of size below {threshold:g}" if raw else f"hop weights below {threshold:g}"
    has_hops = ex.get("attention") is not None
    head = [where] + (["* = supporting fact in the dataset"] if ex.get("row") is not None else [])
    lines = ["; ".join(head + ([f"{values} left blank:"] if has_hops else ["the model has no memory hops to show:"]))]
    weights = np.asarray(ex["attention"]) if has_hops else np.zeros((0, len(ex["story"])))
    shown = np.abs(weights) >= threshold if raw else weights >= threshold
    if ex.get("not_read"):
        lines.append(f"  ({ex['not_read']} earlier sentence(s) not read: the model's memory holds the last {len(ex['story'])})")
    for i, sentence in enumerate(ex["story"]):
        marks = "  ".join(f"hop{k + 1} {weights[k, i]:.2f}" for k in range(weights.shape[0]) if shown[k, i])
        star = "*" if i in ex["supporting"] else " "
        lines.append(f" {star}{i + 1:2d}. {sentence:<40} {marks}".rstrip())
    if ex.get("answer") is None:  # a question of your own without an expected answer
        lines.append(f"question: {ex['question']}?   predicted: {ex['predicted']}")
    else:
        verdict = "right" if ex["correct"] else "wrong"
        lines.append(f"question: {ex['question']}?   answer: {ex['answer']}   predicted: {ex['predicted']} ({verdict})")
    return "\n".join(lines)


def all_hop_weights(out: dict[str, torch.Tensor], memory_size: int) -> torch.Tensor:
    """``[B, K, M]`` addressing weights of a whole batch: soft ``attention``, or one-hot rows from hard
    ``chosen`` slots (a row of zeros where a hop read no memory)."""
    if "attention" in out:
        return out["attention"].detach().float()
    if "chosen" in out:
        chosen = out["chosen"]  # [B, H]
        read = (chosen >= 0) & (chosen < memory_size)
        weights = torch.zeros(*chosen.shape, memory_size + 1)  # column M takes the hops that read nothing
        return weights.scatter_(2, torch.where(read, chosen, memory_size)[..., None], 1.0)[..., :memory_size]
    raise ValueError(f"the model output has no memory addressing (keys {sorted(out)}); expected 'attention' or 'chosen'")


def supporting_stats(model: torch.nn.Module, split: ArrayDataset, input_keys: tuple[str, ...], batch_size: int = 500) -> dict[str, Any]:
    """How a memory model's hops relate to the supporting facts bAbI lists, per task and over all questions.

    Over the hops that read a memory (all hops of MemN2N and KV-MemNN; MemNN's until it stops):

    - ``hop_precision``: the share of hops whose most-weighted memory is a supporting fact;
    - ``weight_on_supporting``: the mean weight a hop puts on the supporting facts (1 or 0 for hard hops;
      None for a MemN2N checkpoint in linear start, whose hops hold raw scores, flagged by ``linear_start``);
    - ``all_retrieved``: the share of questions whose every supporting fact (in the memory window) is the
      most-weighted memory of some hop;
    - ``accuracy``: answers right, over the same questions.

    Questions whose supporting facts all lie outside the memory window (older than its ``M`` slots) are left
    out and counted in ``skipped``; a task with none left has ``None`` for the shares.
    """
    model.eval()
    per_task: dict[int, dict[str, float]] = {}
    n = len(split)
    linear_start = False
    with torch.no_grad():
        for start in range(0, n, batch_size):
            batch = split[torch.arange(start, min(start + batch_size, n))]
            out = model(*(batch[k] for k in input_keys))
            M = batch["memory_mask"].shape[1]
            weights = all_hop_weights(out, M)  # [B, K, M]
            sup = batch["supporting"]  # [B, S], -1 = none or outside the window
            is_sup = torch.zeros(sup.shape[0], M + 1, dtype=torch.bool).scatter_(1, torch.where(sup >= 0, sup, M), True)[:, :M]  # [B, M]
            has_sup = is_sup.any(1)  # [B]
            soft = "attention" in out
            linear_start = in_linear_start(model, out)
            if soft:  # every soft hop reads the memory (under linear start its raw scores may sum to <= 0)
                read = batch["memory_mask"].any(1, keepdim=True).expand(-1, weights.shape[1])  # [B, K]
            else:
                read = weights.sum(-1) > 0  # [B, K] hard hops that read a memory (MemNN until it stops)
            valid = batch["memory_mask"][:, None, :]  # [B, 1, M]; raw scores (linear start) leave padded slots at 0
            top = weights.masked_fill(~valid, float("-inf")).argmax(-1) if soft else weights.argmax(-1)  # [B, K]
            top_is_sup = is_sup.gather(1, top) & read  # [B, K]
            mass = (weights * is_sup[:, None, :]).sum(-1)  # [B, K]
            retrieved = torch.zeros(is_sup.shape, dtype=torch.long).scatter_add_(1, top, read.long()) > 0  # [B, M] memories some hop picked
            all_found = (retrieved | ~is_sup).all(1)  # [B]
            right = out["logits"].argmax(-1) == batch["answer"]  # [B]
            tasks = batch["task"] if "task" in batch else torch.zeros(sup.shape[0], dtype=torch.long)
            for t in tasks.unique().tolist():
                rows = tasks == t
                used = rows & has_sup
                acc = per_task.setdefault(int(t), dict.fromkeys(("questions", "skipped", "hops", "top_hits", "mass", "all_found", "right"), 0.0))
                acc["questions"] += float(used.sum())
                acc["skipped"] += float((rows & ~has_sup).sum())
                acc["hops"] += float(read[used].sum())
                acc["top_hits"] += float(top_is_sup[used].sum())
                acc["mass"] += float((mass * read)[used].sum())
                acc["all_found"] += float(all_found[used].sum())
                acc["right"] += float(right[used].sum())

    def finish(a: dict[str, float]) -> dict[str, Any]:
        q, h = a["questions"], a["hops"]
        return {
            "questions": int(q),
            "skipped": int(a["skipped"]),
            "hop_precision": a["top_hits"] / h if h else None,
            "weight_on_supporting": a["mass"] / h if h and not linear_start else None,
            "all_retrieved": a["all_found"] / q if q else None,
            "accuracy": a["right"] / q if q else None,
        }

    total = {k: sum(a[k] for a in per_task.values()) for k in ("questions", "skipped", "hops", "top_hits", "mass", "all_found", "right")}
    return {"tasks": {t: finish(a) for t, a in sorted(per_task.items())}, "all": finish(total), "linear_start": linear_start}


def format_stats(stats: dict[str, Any]) -> str:
    """A per-task table of :func:`supporting_stats`."""
    lines = [f"{'task':>5} {'questions':>9} {'hop precision':>13} {'weight on sup.':>14} {'all retrieved':>13} {'accuracy':>8}"]
    rows = [*((str(t), s) for t, s in stats["tasks"].items()), ("all", stats["all"])]
    def cell(value: float | None, width: int) -> str:
        return f"{value:>{width}.3f}" if value is not None else f"{'-':>{width}}"

    for name, s in rows:
        lines.append(f"{name:>5} {s['questions']:>9} {cell(s['hop_precision'], 13)} {cell(s['weight_on_supporting'], 14)} {cell(s['all_retrieved'], 13)} {cell(s['accuracy'], 8)}")
    if stats.get("linear_start"):
        lines.append("(the checkpoint is in linear start: no softmax, so the hops hold raw scores and no weight on supporting facts is given)")
    if stats["all"]["skipped"]:
        n = stats["all"]["skipped"]
        lines.append(f"({n} question{'s' if n != 1 else ''} left out: {'their' if n != 1 else 'its'} supporting facts are older than the memory window)")
    return "\n".join(lines)


def _task_index(split: ArrayDataset, index: int) -> int | None:
    """The position of row ``index`` among the rows of its task (0-based), as ``explain --task`` counts them."""
    tasks = split.tensors.get("task") if hasattr(split, "tensors") else None
    if tasks is None:
        return None
    return int((tasks[:index] == tasks[index]).sum())
