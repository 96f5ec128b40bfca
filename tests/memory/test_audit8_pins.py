"""Pins from mutation audit 8 (results/audits/mutants_babi_memory_2.yaml): memory-network behaviour that the
earlier tests left open."""

from __future__ import annotations

import torch

from overlooked.memory.modules import MemN2N


def test_layerwise_question_matrix_null_word_row_is_zero_and_gets_no_gradient():
    """Word 0 is the null word: its embedding is zero in every matrix (MemN2N's docstring), so under
    layer-wise tying B (query_table) starts with a zero row 0 too, as A and C (memory_table) do, and the
    null word (padding) never enters a bag, so that row gets no gradient and stays zero."""
    torch.manual_seed(0)
    model = MemN2N(vocab_size=7, memory_size=4, embed_dim=3, hops=2, tying="layerwise", temporal=False)
    assert torch.equal(model.query_table[0], torch.zeros(3))
    assert torch.equal(model.memory_table[0], torch.zeros(6))
    story = torch.tensor([[[1, 2, 0], [3, 4, 5], [0, 0, 0], [0, 0, 0]]])
    query = torch.tensor([[6, 1, 0]])
    mask = torch.tensor([[True, True, False, False]])
    model(story, query, mask)["logits"].logsumexp(-1).sum().backward()
    assert torch.equal(model.query_table.grad[0], torch.zeros(3))
    assert model.query_table.grad[6].abs().sum() > 0  # a real question word does get one
