"""The margin ranking loss of the original Memory Network (Weston, Chopra, Bordes 2014, arXiv 1410.3916, §3.1).

For a question ``x`` with true supporting facts ``m_o1, m_o2`` and true answer ``r``, [W14] minimises

    sum_{f != m_o1}  max(0, gamma - s_O(x, m_o1) + s_O(x, f))
  + sum_{f' != m_o2} max(0, gamma - s_O([x, m_o1], m_o2) + s_O([x, m_o1], f'))
  + sum_{r' != r}    max(0, gamma - s_R([x, m_o1, m_o2], r) + s_R([x, m_o1, m_o2], r'))

over "all other choices than the correct labels", sampling ``f, f', r'`` at each SGD step rather than
computing the whole sums. Every hop's input list holds the *true* earlier facts. With write-time features
each O term becomes ``max(0, gamma - pref)``, where ``pref`` is ``s_Ot`` of the (true, wrong) pair in the
orientation the inference loop compares them (:func:`overlooked.memory.memnn.preference`); without them
``pref = s_O(true) - s_O(wrong)``, the form above. Adaptive memory adds hops up to the ``m_STOP`` target
(Weston et al. 2015, arXiv 1502.05698, A.2.1), each with its own O term.

The model computes the scores (``o_margin``, ``o_negative``, ``r_true``, see
:meth:`overlooked.memory.memnn.MemNN.forward`); this module only ranks them.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

from overlooked.checks import is_count
from overlooked.errors import InputError
from overlooked.registry import OBJECTIVES


def sample_negatives(candidates: torch.Tensor, count: int | None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Keep ``count`` of the True entries of each row of ``candidates`` uniformly at random (all if None).

    Args:
        candidates: ``[..., C]`` bool, the wrong choices.
        count: how many to keep per row (rows with fewer keep all), or None for all.
        generator: random source (the global one when None).

    Returns:
        ``[..., C]`` bool, a subset of ``candidates``.
    """
    if count is None or count >= candidates.shape[-1]:
        return candidates
    where = generator.device if generator is not None else candidates.device  # a CPU generator draws on the CPU
    noise = torch.rand(candidates.shape, generator=generator, device=where).to(candidates.device)
    noise = noise.masked_fill(~candidates, -1.0)  # wrong choices first, in random order
    keep = torch.zeros_like(candidates)
    keep.scatter_(-1, noise.topk(count, dim=-1).indices, True)
    return keep & candidates


def hinge(margin: torch.Tensor, gamma: float) -> torch.Tensor:
    """``max(0, gamma - margin)``: zero once the true choice leads by at least ``gamma``."""
    return torch.clamp(gamma - margin, min=0.0)


def memnn_ranking_loss(
    o_margin: torch.Tensor,
    o_negative: torch.Tensor,
    r_true: torch.Tensor,
    answer: torch.Tensor,
    gamma: float = 0.1,
    negatives: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Per-question margin ranking loss of [W14] §3.1 (O terms of every hop, plus the R term).

    Args:
        o_margin: ``[B, H, C]`` preference of the true candidate over each candidate, per hop.
        o_negative: ``[B, H, C]`` bool, the wrong candidates (real memories, ``m_STOP``) of hops with a target.
        r_true: ``[B, V]`` ``s_R`` of every word given the true facts.
        answer: ``[B]`` true answer word.
        gamma: the margin.
        negatives: sampled wrong choices per hop and for R, or None for all.
        generator: random source of the sampling.

    Returns:
        ``[B]`` loss of each question.

    >>> m = torch.tensor([[[0.0, 0.05, 0.3]]]); neg = torch.tensor([[[False, True, True]]])
    >>> memnn_ranking_loss(m, neg, torch.tensor([[0.0, 1.0]]), torch.tensor([1])).tolist()  # 0.05 + 0 + 0.1 - 1 < 0
    [0.05000000074505806]
    """
    o_keep = sample_negatives(o_negative, negatives, generator)
    o_loss = (hinge(o_margin, gamma) * o_keep).flatten(1).sum(1)  # [B]
    wrong = torch.ones_like(r_true, dtype=torch.bool).scatter_(1, answer[:, None], False)  # [B, V]
    r_keep = sample_negatives(wrong, negatives, generator)
    r_margin = r_true.gather(1, answer[:, None]) - r_true  # [B, V] s_R(r) - s_R(r')
    r_loss = (hinge(r_margin, gamma) * r_keep).sum(1)  # [B]
    return o_loss + r_loss


class MemNNMargin(nn.Module):
    """The MemNN margin ranking objective, ``objective(output, batch) -> scalar``.

    Args:
        margin: ``gamma`` (0.1 here; [W14] names gamma but its value was not read in the paper text).
        negatives: ``"all"`` wrong choices, or how many to sample per hop and for R ([W14] samples).
        reduction: ``"sum"`` over the batch (per-question SGD steps summed) or ``"mean"``.
        target_key: batch key of the answer word.
    """

    def __init__(self, margin: float = 0.1, negatives: int | Literal["all"] = "all", reduction: Literal["sum", "mean"] = "sum", target_key: str = "answer"):
        super().__init__()
        if reduction not in ("sum", "mean"):
            raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
        if negatives != "all" and not is_count(negatives):
            raise ValueError(f"negatives must be 'all' or a positive int, got {negatives!r}")
        self.margin, self.negatives, self.reduction, self.target_key = margin, negatives if negatives == "all" else int(negatives), reduction, target_key

    def forward(self, output: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if not isinstance(output, dict) or "o_margin" not in output:
            raise InputError(
                "memnn_margin needs the ranking scores of a MemNN called with the true supporting facts "
                "(output keys o_margin, o_negative, r_true), and the model's output has none: train a `memnn` or "
                "`memnn_am_ng_nl` model with it (they read the batch's `supporting`), or give other models a "
                "cross-entropy objective (objective.name=cross_entropy)"
            )
        per_question = memnn_ranking_loss(
            output["o_margin"].float(),
            output["o_negative"],
            output["r_true"].float(),
            batch[self.target_key],
            self.margin,
            None if self.negatives == "all" else int(self.negatives),
        )
        return per_question.sum() if self.reduction == "sum" else per_question.mean()


@OBJECTIVES.register("memnn_margin", family="memory", paper="Weston, Chopra, Bordes 2014, arXiv 1410.3916")
def memnn_margin(margin: float = 0.1, negatives: int | str = "all", reduction: Literal["sum", "mean"] = "sum", target_key: str = "answer") -> MemNNMargin:
    """MemNN margin ranking loss over supporting facts and answer words."""
    return MemNNMargin(margin=margin, negatives=negatives, reduction=reduction, target_key=target_key)
