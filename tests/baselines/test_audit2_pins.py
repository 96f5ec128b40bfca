"""Pins from the second spiking/capsules mutation audit (results/audits/mutants_spiking_capsules_2.yaml): the
Transformer baselines' sinusoidal positions at every position and frequency, the pre-LN block written out by hand
with its two LayerNorms told apart, the length groups' token bound, and the step-by-step LSTM's two biases."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from overlooked.baselines.lstm import lstm_scan
from overlooked.baselines.transformer import PreLNBlock, _length_groups, sinusoidal_positions


def test_sinusoidal_positions_equal_vaswanis_formula_at_every_position_and_frequency():
    """PE[p, 2i] = sin(p / 10000^(2i/d)), PE[p, 2i+1] = cos(p / 10000^(2i/d)), computed here in float64 from the
    formula (row 0, sin 0 and cos 0, is the same for any frequency, so later rows are what pin the frequencies)."""
    T, d = 6, 8
    expected = torch.empty(T, d, dtype=torch.float64)
    for p in range(T):
        for i in range(d // 2):
            angle = p / 10000.0 ** (2 * i / d)
            expected[p, 2 * i], expected[p, 2 * i + 1] = math.sin(angle), math.cos(angle)
    torch.testing.assert_close(sinusoidal_positions(T, d).double(), expected, atol=1e-6, rtol=0)
    # one entry by hand: position 3, pair 1 of d = 8 -> 3 / 10000^(1/4) = 0.3 rad
    assert abs(float(sinusoidal_positions(4, 8)[3, 2]) - math.sin(0.3)) < 1e-6


def test_preln_block_feed_forward_branch_normalises_with_its_own_layer_norm():
    """x1 = x + Proj(Attn(LN1(x))), out = x1 + FF(LN2(x1)), written out by hand with LN1 and LN2 given different
    affine parameters (both start as the identity affine, so at initialisation the two cannot be told apart)."""
    torch.manual_seed(0)
    d, heads, T = 4, 2, 3
    block = PreLNBlock(d, heads, ff_dim=6, dropout=0.0).eval()
    with torch.no_grad():
        block.norm1.weight.copy_(torch.tensor([1.0, 0.5, 2.0, -1.0]))
        block.norm1.bias.copy_(torch.tensor([0.1, -0.2, 0.0, 0.3]))
        block.norm2.weight.copy_(torch.tensor([-2.0, 1.5, 0.25, 3.0]))
        block.norm2.bias.copy_(torch.tensor([0.7, 0.0, -0.4, 0.2]))
    x = torch.randn(1, T, d)
    keep = torch.tensor([True, True, False])[None, None, None, :]  # the last key is padding

    def layer_norm(z, norm):
        mean = z.mean(-1, keepdim=True)
        var = ((z - mean) ** 2).mean(-1, keepdim=True)
        return (z - mean) / torch.sqrt(var + norm.eps) * norm.weight + norm.bias

    with torch.no_grad():
        qkv = F.linear(layer_norm(x, block.norm1), block.qkv.weight, block.qkv.bias)[0]  # [T, 3d]
        q, k, v = qkv[:, :d], qkv[:, d : 2 * d], qkv[:, 2 * d :]
        dh = d // heads
        heads_out = []
        for h in range(heads):
            qh, kh, vh = q[:, h * dh : (h + 1) * dh], k[:, h * dh : (h + 1) * dh], v[:, h * dh : (h + 1) * dh]
            scores = qh @ kh.T / math.sqrt(dh)
            scores[:, 2] = -math.inf  # padding key
            heads_out.append(torch.softmax(scores, -1) @ vh)
        x1 = x[0] + F.linear(torch.cat(heads_out, -1), block.proj.weight, block.proj.bias)
        expected = x1 + block.ff(layer_norm(x1, block.norm2))
        got = block(x, keep)[0]
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_length_groups_keep_rows_times_longest_within_the_budget():
    """Rows sorted by length, cut greedily so that each group's rows x longest stays within max_tokens (a longer
    single sample alone): lengths [5, 2, 9, 3] in groups of 10 tokens are [1, 3] (2 x 3 = 6), [0] (5), [2] (9);
    adding row 0 to [1, 3] would make 3 x 5 = 15 > 10."""
    lengths = torch.tensor([5, 2, 9, 3])
    assert [g.tolist() for g in _length_groups(lengths, 10)] == [[1, 3], [0], [2]]
    gen = torch.Generator().manual_seed(0)
    lengths = torch.randint(1, 40, (60,), generator=gen)
    groups = _length_groups(lengths, 64)
    assert sorted(torch.cat(groups).tolist()) == list(range(60))  # every row once
    for g in groups:
        assert len(g) == 1 or len(g) * int(lengths[g].max()) <= 64, g.tolist()


def test_lstm_scan_equals_torch_lstm_with_both_biases():
    """The step-by-step LSTM the reader runs under torch.func equals nn.LSTM, whose gates add bias_ih and bias_hh
    (both non-zero here, so dropping either shows)."""
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(3, 4, batch_first=True)
    with torch.no_grad():
        lstm.bias_ih_l0.fill_(0.3)
        lstm.bias_hh_l0.copy_(torch.linspace(-1.0, 1.0, 16))
    x = torch.randn(2, 5, 3)
    with torch.no_grad():
        expected, _ = lstm(x)
        got = lstm_scan(x, lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0, lstm.bias_hh_l0)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)
