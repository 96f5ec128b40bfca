"""Memory-network figures: attention over memories per hop, per-task error bars against a paper."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from overlooked.plots.common import plt, save_figure


def attention_figure(sentences: Sequence[str], attention: np.ndarray, question: str, answer: str, predicted: str, path: str | Path, supporting: Sequence[int] = ()) -> Path:
    """Heat map of the attention each hop paid to each memory, with the sentences as row labels.

    Args:
        sentences: the story's memories, oldest first (``n`` strings).
        attention: ``[K, n]`` addressing weights per hop.
        question, answer, predicted: shown in the title.
        path: PNG to write.
        supporting: memory numbers (0 = oldest) of the dataset's supporting facts: their labels get a ``*``
            and are set in bold.
    """
    attention = np.asarray(attention)
    n = len(sentences)
    if attention.ndim != 2 or attention.shape[1] != n:
        raise ValueError(f"attention must be [hops, {n}] for {n} sentences, got shape {tuple(attention.shape)}")
    K = attention.shape[0]
    support = set(supporting)
    title = f"Q: {question}?  A: {answer}  (predicted: {predicted})"
    longest = max((len(s) for s in sentences), default=0)
    # wide enough for the title as well as the sentences and hops (tight_layout cannot shrink a title)
    width = max(2.2 + 1.1 * K + 0.06 * longest, 0.075 * len(title) + 1.0)
    fig, ax = plt.subplots(figsize=(width, 0.9 + 0.32 * n))
    im = ax.imshow(attention.T, aspect="auto", cmap="Blues", vmin=0.0, vmax=1.0)  # weights in [0, 1]: one scale for every figure
    ax.set_yticks(range(n), labels=[f"* {s}" if i in support else s for i, s in enumerate(sentences)], fontsize=8)
    for i, label in enumerate(ax.get_yticklabels()):
        if i in support:
            label.set_fontweight("bold")
    ax.set_xticks(range(K), labels=[f"hop {k + 1}" for k in range(K)])
    for k in range(K):
        for i in range(n):
            if attention[k, i] >= 0.05:
                ax.text(k, i, f"{attention[k, i]:.2f}", ha="center", va="center", fontsize=7, color="white" if attention[k, i] > 0.5 else "black")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.04).set_label("attention weight", fontsize=8)
    return save_figure(fig, path)


def task_error_figure(
    errors: dict[int, Sequence[float]], paper: dict[int, float] | None, path: str | Path, title: str = "", chosen: dict[int, float] | None = None
) -> Path:
    """Per-task test error: the mean over runs with bars from the lowest to the highest run, beside the
    paper's value per task.

    Args:
        errors: task -> errors in % over repeated runs.
        paper: task -> the paper's error in %, or None.
        path: PNG to write.
        chosen: task -> the error in % of the run a rule picked among the repeats (the MemN2N paper reports
            the run with the lowest training error), drawn as a marker on each bar: what compares with a
            paper's best-of-N column.
    """
    tasks = sorted(errors)
    mean = np.array([np.mean(errors[t]) for t in tasks])
    # the range over runs, not +- std: errors are bounded at 0 and often bimodal (a task fails in some seeds)
    low = mean - np.array([np.min(errors[t]) for t in tasks])
    high = np.array([np.max(errors[t]) for t in tasks]) - mean
    runs = [len(errors[t]) for t in tasks]
    x = np.arange(len(tasks))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(tasks) + 2), 3.6))
    width = 0.4 if paper else 0.7
    spread = any(n > 1 for n in runs)  # one run has no spread to draw
    ax.bar(x - (width / 2 if paper else 0), mean, width, yerr=np.stack([low, high]) if spread else None, capsize=2, label=spread_label(runs))
    if chosen:
        ax.scatter(x - (width / 2 if paper else 0), [chosen.get(t, np.nan) for t in tasks], marker="D", s=14, color="black", zorder=3, label="reported run (best by training error)")
    if paper:
        ax.bar(x + width / 2, [paper.get(t, np.nan) for t in tasks], width, label="paper")
    ax.axhline(5.0, color="grey", lw=0.8, ls="--", label="5% (failed above)")
    ax.set_xticks(x, labels=[str(t) for t in tasks])
    ax.set_xlabel("bAbI task")
    ax.set_ylabel("test error %")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def spread_label(runs: Sequence[int]) -> str:
    """The legend of :func:`task_error_figure`'s bars, for ``runs`` runs per task: one run has no spread, so
    it is said, and the count of runs the bars average is named.

    >>> spread_label([1, 1]), spread_label([10, 10]), spread_label([3, 1])
    ('overlooked (one run)', 'overlooked (mean; bars: min-max over 10 runs)', 'overlooked (mean; bars: min-max over 1-3 runs)')
    """
    low, high = (min(runs), max(runs)) if runs else (1, 1)
    if high <= 1:
        return "overlooked (one run)"
    return f"overlooked (mean; bars: min-max over {high if low == high else f'{low}-{high}'} runs)"
