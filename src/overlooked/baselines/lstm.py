"""The weakly supervised LSTM reader of the bAbI papers (Weston et al. 2015, Table 3; Sukhbaatar et al. 2015,
Table 1): read the story word by word, then the question, and answer from the last hidden state.

The story arrives in MemN2N's layout (``[B, M, L]`` sentences, oldest first, left-aligned, zero padded), so
:func:`read_order` first lays every sample out as one sequence of its real words only. The Transformer
reader uses the same function, so both baselines read exactly the same tokens.
"""

from __future__ import annotations

import torch
from torch import nn

from overlooked.checks import check_sizes, in_torch_func, in_transform
from overlooked.memory.functional import check_memory_inputs
from overlooked.registry import MODELS


def read_order(
    story: torch.Tensor,
    query: torch.Tensor,
    memory_mask: torch.Tensor,
    time: torch.Tensor,
    separator: int,
    question_index: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Story words in reading order, a separator, then the question words; padding dropped and moved right.

    Word 0 is the null word (padding). Slots with ``memory_mask`` False are dropped whatever they hold.

    Args:
        story: ``[B, M, L]`` word indices, sentences oldest first.
        query: ``[B, Lq]`` word indices.
        memory_mask: ``[B, M]`` bool, True on real sentences.
        time: ``[B, M]`` recency of each sentence (0 = newest).
        separator: the index written between story and question (must be non-zero).
        question_index: the recency index given to the separator and the question words.

    Returns:
        ``(tokens, recency, lengths)``: ``[B, T]`` word indices left-aligned and zero padded, ``[B, T]`` the
        sentence recency of each token (``question_index`` on the separator and question, 0 on padding) and
        ``[B]`` the number of real tokens; ``T`` is the longest sample's length (1 for an empty batch, ``B = 0``; the full width ``M*L + 1 + Lq`` under a ``vmap`` over the inputs).

    >>> story = torch.tensor([[[4, 5, 0], [6, 0, 0], [9, 9, 9]]])
    >>> tokens, recency, lengths = read_order(story, torch.tensor([[7, 0]]), torch.tensor([[True, True, False]]),
    ...                                       torch.tensor([[1, 0, 0]]), separator=10, question_index=3)
    >>> tokens.tolist(), recency.tolist(), lengths.tolist()
    ([[4, 5, 6, 10, 7]], [[1, 1, 0, 3, 3]], [5])
    """
    B, M, L = story.shape
    words = story.masked_fill(~memory_mask[..., None], 0).reshape(B, M * L)  # [B, M*L]
    story_rec = time[..., None].expand(B, M, L).reshape(B, M * L)  # [B, M*L]
    sep = torch.full((B, 1), separator, dtype=story.dtype, device=story.device)  # [B, 1]
    seq = torch.cat([words, sep, query], 1)  # [B, M*L+1+Lq]
    rec = torch.cat([story_rec, torch.full_like(seq[:, : 1 + query.shape[1]], question_index)], 1)  # [B, M*L+1+Lq]
    real = seq != 0  # [B, M*L+1+Lq]
    order = torch.argsort((~real).to(torch.int8), dim=1, stable=True)  # real tokens first, in reading order
    lengths = real.sum(1)  # [B]
    # every sample holds at least the separator; under a vmap over stories the lengths cannot be read: full width
    T = seq.shape[1] if in_torch_func(seq) else int(lengths.max()) if B else 1
    tokens = seq.gather(1, order)[:, :T]  # [B, T]; zeros after each sample's length
    recency = rec.gather(1, order)[:, :T].masked_fill(tokens == 0, 0)  # [B, T]
    return tokens, recency, lengths


def lstm_scan(x: torch.Tensor, weight_ih: torch.Tensor, weight_hh: torch.Tensor, bias_ih: torch.Tensor, bias_hh: torch.Tensor) -> torch.Tensor:
    """One LSTM layer, ``nn.LSTM``'s cell (gates in its order i, f, g, o) run step by step in plain tensor
    operations from zero states: ``x`` ``[B, T, d]`` -> the hidden states ``[B, T, h]``. What the reader runs
    inside a ``torch.func`` transform, which ``nn.LSTM``'s fused kernel does not support; tested equal to it."""
    B, T, _ = x.shape
    h = x.new_zeros(B, weight_hh.shape[1])
    c = torch.zeros_like(h)
    inputs = x @ weight_ih.T + (bias_ih + bias_hh)  # [B, T, 4h], every step's input part at once
    out = []
    for t in range(T):
        i, f, g, o = (inputs[:, t] + h @ weight_hh.T).chunk(4, -1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        out.append(h)
    return torch.stack(out, 1) if out else x.new_zeros(B, 0, weight_hh.shape[1])


class LSTMReader(nn.Module):
    """Embedding, one LSTM layer over story-then-question, linear classifier on the final hidden state.

    Padding (words, sentence slots, memory slots) is dropped before reading and the rest is moved to the
    right of each sample's real words; since the LSTM is causal, the output read at the sample's last real
    word cannot depend on it or on batch mates. (This equals packing the sequences, and its backward pass
    is about 3x faster on CPU than ``pack_padded_sequence``'s.) A learned separator word (index
    ``vocab_size``) marks where the question starts.

    Args:
        vocab_size: ``V`` words (index 0 = null word).
        num_classes: answer classes (the vocabulary, by default).
        embed_dim: word embedding size ``d``.
        hidden: LSTM hidden size.
        dropout: dropout on the embeddings and on the final hidden state.
    """

    def __init__(self, vocab_size: int, num_classes: int | None = None, embed_dim: int = 50, hidden: int = 100, dropout: float = 0.0):
        super().__init__()
        self.vocab_size = vocab_size
        self.num_classes = num_classes or vocab_size
        self.embed = nn.Embedding(vocab_size + 1, embed_dim, padding_idx=0)  # row V: the separator
        self.lstm = nn.LSTM(embed_dim, hidden, num_layers=1, batch_first=True)
        self.drop = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden, self.num_classes)

    def forward(self, story: torch.Tensor, query: torch.Tensor, memory_mask: torch.Tensor, time: torch.Tensor | None = None) -> torch.Tensor:
        """Answer ``query`` from ``story``.

        Args:
            story: ``[B, M, L]`` word indices.
            query: ``[B, Lq]`` word indices.
            memory_mask: ``[B, M]`` bool, True on real sentences.
            time: unused (the LSTM reads the sentences in order); accepted so every bAbI model shares inputs.

        Returns:
            logits ``[B, num_classes]`` (``[0, num_classes]`` for an empty batch).

        Raises:
            InputError: (a ``ValueError``) when the shapes or dtypes do not fit together
                (:func:`~overlooked.memory.functional.check_memory_inputs`, the memory models' check).
        """
        check_memory_inputs(story, query, memory_mask, time, vocab_size=self.vocab_size, name="lstm_reader")
        recency = torch.zeros_like(memory_mask, dtype=torch.long) if time is None else time
        tokens, _, lengths = read_order(story, query, memory_mask, recency, self.vocab_size, 0)  # [B, T], [B]
        x = self.drop(self.embed(tokens))  # [B, T, d]
        if in_transform():  # vmap / grad / jvp: PyTorch's fused LSTM has no batching rule; the same cell step by step
            lstm = self.lstm
            out = lstm_scan(x, lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0, lstm.bias_hh_l0)
        else:
            out, _ = self.lstm(x)  # [B, T, hidden]
        last = out[torch.arange(out.shape[0], device=out.device), lengths - 1]  # [B, hidden], after the last real word
        return self.classifier(self.drop(last))  # [B, C]


@MODELS.register("lstm_reader", family="baseline", text="babi", paper="Weston et al. 2015, arXiv 1502.05698 (LSTM baseline)")
def lstm_reader(vocab_size: int = 200, num_classes: int | None = None, embed_dim: int = 50, hidden: int = 100, dropout: float = 0.0) -> LSTMReader:
    """The bAbI LSTM baseline; d = 50 and one layer of 100 units are our defaults, not sizes from the paper (the vocabulary is filled in from the data)."""
    check_sizes("lstm_reader", vocab_size=vocab_size, num_classes=num_classes, embed_dim=embed_dim, hidden=hidden)
    return LSTMReader(int(vocab_size), None if num_classes is None else int(num_classes), int(embed_dim), int(hidden), dropout)  # nn.LSTM takes Python ints only
