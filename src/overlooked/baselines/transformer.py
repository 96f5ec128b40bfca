"""A small pre-LN Transformer encoder reading a bAbI story: the "vanilla Transformer" of the Universal
Transformer paper's bAbI table (Dehghani et al. 2018, Table 1), built on PyTorch's
:func:`~torch.nn.functional.scaled_dot_product_attention`.

The input is ``[CLS] story words [SEP] question words`` (real words only, see
:func:`overlooked.baselines.lstm.read_order`), padded on the right and hidden from attention by a key-padding
mask. Each token's input is the sum of three parts:

- its word embedding;
- a sinusoidal position over the whole sequence (Vaswani et al. 2017, §3.5), for word order;
- a learned *sentence recency* embedding: the recency of the token's sentence (0 = newest, as MemN2N's
  temporal encoding ``T_A`` of Sukhbaatar et al. 2015, §4.1), with one more row for the separator and
  the question and one for ``[CLS]``. It tells the model where sentences begin and end and which came
  last, independent of how many words each sentence has.

The answer is read from the final ``[CLS]`` state (or the mean over the separator and question tokens).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from overlooked.baselines.lstm import read_order
from overlooked.checks import check_sizes, in_torch_func
from overlooked.memory.functional import check_memory_inputs, time_index
from overlooked.registry import MODELS


def sinusoidal_positions(length: int, dim: int, device: torch.device | None = None) -> torch.Tensor:
    """The sinusoidal position table ``PE[p, 2i] = sin(p / 10000^(2i/d))``, ``PE[p, 2i+1] = cos(...)``.

    Args:
        length: positions ``T``.
        dim: model width ``d`` (even).

    Returns:
        ``[T, d]`` float32.

    >>> sinusoidal_positions(2, 2).tolist()
    [[0.0, 1.0], [0.8414709568023682, 0.5403023362159729]]
    """
    pos = torch.arange(length, dtype=torch.float32, device=device)[:, None]  # [T, 1]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32, device=device) * (-math.log(10000.0) / dim))  # [d/2]
    table = torch.empty(length, dim, device=device)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq)
    return table


class PreLNBlock(nn.Module):
    """One pre-LN encoder layer (Xiong et al. 2020): ``x + Attn(LN(x))``, then ``x + FF(LN(x))``.

    Written out over :func:`torch.nn.functional.scaled_dot_product_attention` rather than taken from
    ``nn.TransformerEncoderLayer``, whose inference fast path is a single fused op that
    :class:`~torch.utils.flop_counter.FlopCounterMode` cannot see (the FLOPs of the fair-comparison table
    would be undercounted), and which computes evaluation differently from training.

    Args:
        d_model: width ``d``.
        heads: attention heads ``H`` (``d`` divisible by ``H``).
        ff_dim: feed-forward width.
        dropout: dropout on both residual branches. None on the attention weights: on CPU it would force the
            unfused attention path and, drawing a mask per score, cost a third of the training time.
    """

    def __init__(self, d_model: int, heads: int, ff_dim: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.ff = nn.Sequential(nn.Linear(d_model, ff_dim), nn.GELU(), nn.Linear(ff_dim, d_model))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """``x``: ``[B, T, d]``; ``keep``: ``[B, 1, 1, T]`` bool, False on padding keys -> ``[B, T, d]``."""
        B, T, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(B, T, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4).unbind(0)  # 3 x [B, H, T, d/H]
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)  # [B, H, T, d/H]
        x = x + self.drop(self.proj(a.transpose(1, 2).reshape(B, T, d)))  # [B, T, d]
        return x + self.drop(self.ff(self.norm2(x)))  # [B, T, d]


def encoder_blocks(d_model: int, heads: int, layers: int, ff_dim: int | None, dropout: float) -> nn.ModuleList:
    """``layers`` :class:`PreLNBlock` s of width ``d_model`` (feed-forward ``4 * d_model`` when ``ff_dim`` is
    None), after checking that the width is even (sinusoidal positions) and divisible by ``heads``."""
    if d_model % 2 or d_model % heads:
        raise ValueError(f"d_model={d_model} must be even and divisible by heads={heads}")
    return nn.ModuleList(PreLNBlock(d_model, heads, ff_dim or 4 * d_model, dropout) for _ in range(layers))


class TransformerReader(nn.Module):
    """Pre-LN Transformer encoder over ``[CLS] story [SEP] question`` with a linear answer classifier.

    Args:
        vocab_size: ``V`` words (index 0 = null word); ``[CLS]`` and ``[SEP]`` take indices ``V`` and ``V+1``.
        num_classes: answer classes (the vocabulary, by default).
        memory_size: sentences the recency embedding distinguishes; older ones share the last row.
        d_model: model width.
        layers: encoder layers.
        heads: attention heads.
        ff_dim: feed-forward width (``4 * d_model`` when None).
        dropout: dropout inside every layer and on the embeddings.
        readout: ``"cls"`` (the final ``[CLS]`` state) or ``"question"`` (mean over separator and question).
        group_tokens: None runs the whole batch as one padded block (the reference). A number sorts the
            batch by length and runs it in groups of at most this many (padded) tokens, so short stories
            are not padded to the longest one: the same function, several times faster on bAbI's skewed
            lengths (a test proves both paths agree), and evaluation memory bounded by the group size.
    """

    def __init__(
        self,
        vocab_size: int,
        num_classes: int | None = None,
        memory_size: int = 50,
        d_model: int = 64,
        layers: int = 2,
        heads: int = 4,
        ff_dim: int | None = None,
        dropout: float = 0.1,
        readout: Literal["cls", "question"] = "cls",
        group_tokens: int | None = None,
    ):
        super().__init__()
        if readout not in ("cls", "question"):
            raise ValueError(f"readout must be 'cls' or 'question', got {readout!r}")
        self.vocab_size, self.memory_size, self.readout, self.group_tokens = vocab_size, memory_size, readout, group_tokens
        self.num_classes = num_classes or vocab_size
        self.cls_index, self.sep_index = vocab_size, vocab_size + 1
        self.question_index, self.cls_recency = memory_size, memory_size + 1  # recency rows after the sentences'
        self.embed = nn.Embedding(vocab_size + 2, d_model, padding_idx=0)
        self.recency = nn.Embedding(memory_size + 2, d_model)
        self.drop = nn.Dropout(dropout)
        self.blocks = encoder_blocks(d_model, heads, layers, ff_dim, dropout)  # created here: the seeded init order
        self.norm = nn.LayerNorm(d_model)  # pre-LN leaves the residual stream unnormalised: one final norm
        self.classifier = nn.Linear(d_model, self.num_classes)

    def forward(self, story: torch.Tensor, query: torch.Tensor, memory_mask: torch.Tensor, time: torch.Tensor | None = None) -> torch.Tensor:
        """Answer ``query`` from ``story``.

        Args:
            story: ``[B, M, L]`` word indices.
            query: ``[B, Lq]`` word indices.
            memory_mask: ``[B, M]`` bool, True on real sentences.
            time: ``[B, M]`` sentence recency (0 = newest); computed from the mask when None.

        Returns:
            logits ``[B, num_classes]`` (``[0, num_classes]`` for an empty batch).

        Raises:
            InputError: (a ``ValueError``) when the shapes or dtypes do not fit together
                (:func:`~overlooked.memory.functional.check_memory_inputs`, the memory models' check).
        """
        check_memory_inputs(story, query, memory_mask, time, vocab_size=self.vocab_size, name="transformer_reader")
        if time is None:
            time = time_index(memory_mask)
        time = time.clamp(max=self.memory_size - 1)
        tokens, recency, lengths = read_order(story, query, memory_mask, time, self.sep_index, self.question_index)  # [B, T]
        B = tokens.shape[0]
        tokens = torch.cat([tokens.new_full((B, 1), self.cls_index), tokens], 1)  # [B, T+1]
        recency = torch.cat([recency.new_full((B, 1), self.cls_recency), recency], 1)  # [B, T+1]
        lengths = lengths + 1  # [B], with [CLS]
        # an empty batch has no group to cut; under a vmap over stories the lengths cannot be read (one width for all)
        if self.group_tokens is None or B == 0 or in_torch_func(lengths):
            return self.classifier(self._encode(tokens, recency, lengths))  # [B, C]
        groups = _length_groups(lengths, self.group_tokens)
        parts = []
        for rows in groups:
            T = int(lengths[rows].max())  # this group's longest sample
            parts.append(self._encode(tokens[rows, :T], recency[rows, :T], lengths[rows]))  # [b, d]
        read = torch.cat(parts)[torch.argsort(torch.cat(groups))]  # [B, d], back in batch order
        return self.classifier(read)  # [B, C]

    def _encode(self, tokens: torch.Tensor, recency: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``[B, T]`` tokens and recency, ``[B]`` lengths -> the read-out state ``[B, d]``."""
        T = tokens.shape[1]
        padding = torch.arange(T, device=tokens.device)[None, :] >= lengths[:, None]  # [B, T], True = ignore
        keep = ~padding[:, None, None, :]  # [B, 1, 1, T]: no query attends to a padding key
        h = self.embed(tokens) + self.recency(recency)  # [B, T, d]
        h = self.drop(h + sinusoidal_positions(T, self.embed.embedding_dim, tokens.device).to(h.dtype))
        for block in self.blocks:
            h = block(h, keep)  # [B, T, d]
        h = self.norm(h)  # [B, T, d]
        if self.readout == "cls":
            return h[:, 0]  # [B, d]
        question = (recency == self.question_index) & ~padding  # [B, T]
        return (h * question[..., None]).sum(1) / question.sum(1, keepdim=True)  # [B, d]


def _length_groups(lengths: torch.Tensor, max_tokens: int) -> list[torch.Tensor]:
    """Row indices sorted by length, cut greedily so each group's ``rows * longest`` stays within ``max_tokens``.

    A single sample longer than ``max_tokens`` forms its own group.

    >>> [g.tolist() for g in _length_groups(torch.tensor([5, 2, 9, 3]), 10)]
    [[1, 3], [0], [2]]
    """
    order = torch.argsort(lengths, stable=True).tolist()
    sizes = lengths.tolist()
    groups, current = [], []
    for i in order:
        if current and (len(current) + 1) * sizes[i] > max_tokens:
            groups.append(current)
            current = []
        current.append(i)
    groups.append(current)
    return [torch.tensor(g, dtype=torch.long, device=lengths.device) for g in groups]


@MODELS.register("transformer_reader", family="baseline", text="babi", paper="Dehghani et al. 2018, arXiv 1807.03819 (vanilla Transformer on bAbI)")
def transformer_reader(
    vocab_size: int = 200,
    num_classes: int | None = None,
    memory_size: int = 50,
    d_model: int = 64,
    layers: int = 2,
    heads: int = 4,
    ff_dim: int | None = None,
    dropout: float = 0.1,
    readout: Literal["cls", "question"] = "cls",
    group_tokens: int | None = None,
) -> TransformerReader:
    """A small pre-LN Transformer reader: 2 layers, d_model 64, 4 heads, GELU feed-forward of 256, [CLS] readout."""
    check_sizes("transformer_reader", num_classes=num_classes)  # None: the vocabulary
    return TransformerReader(vocab_size, num_classes, memory_size, d_model, layers, heads, ff_dim, dropout, readout, group_tokens)


def fact_encoding(embedded: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """One vector per sentence: word embeddings weighted element-wise by a learned positional mask, summed.

    The input encoding of the Universal Transformer paper's bAbI models (Dehghani et al. 2018; the first
    author's MostafaDehghani/bAbI-T2T README calls it the "fact-level (sentence-level) embedding ... used in
    this paper", and its code cites Henaff et al. 2017, §2.1, eq. 1): MemN2N's position encoding with the
    weights learned. Null words must embed to zero (``padding_idx=0``), so padding adds nothing.

    Args:
        embedded: ``[..., L, d]`` word embeddings of sentences of ``L`` word slots.
        mask: ``[L, d]`` positional weights (initialised to ones).

    Returns:
        ``[..., d]``.

    >>> fact_encoding(torch.ones(1, 2, 3), torch.tensor([[1.0, 2.0, 3.0], [0.5, 0.5, 0.5]])).tolist()
    [[1.5, 2.5, 3.5]]
    """
    return (embedded * mask).sum(-2)


class FactTransformer(nn.Module):
    """The vanilla Transformer of the Universal Transformer paper's bAbI table, as its authors feed it: one
    token per fact, not per word.

    Each story sentence and the question become one vector by :func:`fact_encoding` (separate learned masks
    for story and question, one shared word embedding), as in the first author's bAbI code
    (MostafaDehghani/bAbI-T2T, ``t2t_usr_dir/babi_transformer.py``: ``inputs_encoding``, masks initialised to
    1). The sequence is the story's facts oldest first, then the question right after the last fact, with
    sinusoidal positions (so the newest fact always sits next to the question, whatever the padding) and
    padding hidden from attention. That placement is ours: the authors' code pads every story to the
    longest one and concatenates the question after the padding (``tf.concat([stories, questions], 1)``),
    so there the question's position, and its distance to the newest fact, depends on the padded length.
    A pre-LN encoder (:class:`PreLNBlock`) reads it, and the answer comes from
    the mean of the final states over the facts and the question (tensor2tensor's class-label top averages
    over every position, padding included; we leave padding out, so outputs do not depend on it).

    Args:
        vocab_size: ``V`` words (index 0 = null word).
        num_classes: answer classes (the vocabulary, by default).
        sentence_len: word slots per sentence and question (the learned masks' length).
        d_model, layers, heads, ff_dim, dropout: as :class:`TransformerReader`.
    """

    def __init__(
        self,
        vocab_size: int,
        num_classes: int | None = None,
        sentence_len: int = 12,
        d_model: int = 64,
        layers: int = 2,
        heads: int = 4,
        ff_dim: int | None = None,
        dropout: float = 0.1,
    ):
        super().__init__()
        self.sentence_len = sentence_len
        self.embed = nn.Embedding(vocab_size, d_model, padding_idx=0)
        self.story_mask = nn.Parameter(torch.ones(sentence_len, d_model))
        self.query_mask = nn.Parameter(torch.ones(sentence_len, d_model))
        self.drop = nn.Dropout(dropout)
        self.blocks = encoder_blocks(d_model, heads, layers, ff_dim, dropout)
        self.norm = nn.LayerNorm(d_model)
        self.num_classes = num_classes or vocab_size
        self.classifier = nn.Linear(d_model, self.num_classes)

    def forward(self, story: torch.Tensor, query: torch.Tensor, memory_mask: torch.Tensor, time: torch.Tensor | None = None) -> torch.Tensor:
        """Answer ``query`` from ``story``.

        Args:
            story: ``[B, M, L]`` word indices, sentences oldest first.
            query: ``[B, Lq]`` word indices.
            memory_mask: ``[B, M]`` bool, True on real sentences (any slots; they are read in slot order).
            time: unused (the order of the facts gives their recency); accepted so the model takes bAbI batches.

        Returns:
            logits ``[B, num_classes]``.

        Raises:
            InputError: (a ``ValueError``) when the shapes or dtypes do not fit together
                (:func:`~overlooked.memory.functional.check_memory_inputs`, the memory models' check), or
                sentences are longer than the positional masks.
        """
        check_memory_inputs(story, query, memory_mask, time, vocab_size=self.embed.num_embeddings, name="transformer_facts")
        B, M, L = story.shape
        if L > self.sentence_len or query.shape[-1] > self.sentence_len:
            raise ValueError(
                f"sentences of {L} and questions of {query.shape[-1]} words, but the model's positional masks hold "
                f"{self.sentence_len}; build it with sentence_len >= {max(L, query.shape[-1])} (the dataset's meta sets it)"
            )
        facts = fact_encoding(self.embed(story), self.story_mask[:L])  # [B, M, d]
        question = fact_encoding(self.embed(query), self.query_mask[: query.shape[-1]])  # [B, d]
        order = torch.argsort((~memory_mask).to(torch.int8), dim=1, stable=True)  # real facts first, in order
        facts = facts.gather(1, order[..., None].expand_as(facts))  # [B, M, d]; slots past n are hidden below
        n = memory_mask.sum(1)  # [B] facts per story
        x = torch.cat([facts, facts.new_zeros(B, 1, facts.shape[-1])], 1)  # [B, M+1, d]
        x = x.scatter(1, n[:, None, None].expand(B, 1, x.shape[-1]), question[:, None])  # question at slot n
        real = torch.arange(M + 1, device=x.device)[None, :] <= n[:, None]  # [B, M+1]: facts and question
        h = self.drop(x + sinusoidal_positions(M + 1, x.shape[-1], x.device).to(x.dtype))  # [B, M+1, d]
        for block in self.blocks:
            h = block(h, real[:, None, None, :])  # [B, M+1, d]
        h = self.norm(h)  # [B, M+1, d]
        read = (h * real[..., None]).sum(1) / real.sum(1, keepdim=True)  # [B, d]
        return self.classifier(read)  # [B, C]


@MODELS.register("transformer_facts", family="baseline", text="babi", paper="Dehghani et al. 2018, arXiv 1807.03819 (vanilla Transformer on bAbI, fact-level input)")
def transformer_facts(
    vocab_size: int = 200,
    num_classes: int | None = None,
    sentence_len: int = 12,
    d_model: int = 64,
    layers: int = 2,
    heads: int = 4,
    ff_dim: int | None = None,
    dropout: float = 0.1,
) -> FactTransformer:
    """The UT paper's bAbI Transformer input: one token per fact (learned positional masks), mean readout."""
    check_sizes("transformer_facts", num_classes=num_classes)  # None: the vocabulary
    return FactTransformer(vocab_size, num_classes, sentence_len, d_model, layers, heads, ff_dim, dropout)
