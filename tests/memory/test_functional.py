"""Memory-network maths against hand-computed values, gradcheck, and the padding/batch invariances."""

from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck

from overlooked import native
from overlooked.errors import InputError
from overlooked.memory import functional as MF


def test_position_encoding_matches_hand_computed_values():
    # J = 3 words, d = 2: l_kj = (1 - j/3) - (k/2)(1 - 2j/3)
    pe = MF.position_encoding(3, 2)
    expected = torch.tensor(
        [
            [(1 - 1 / 3) - 0.5 * (1 - 2 / 3), (1 - 1 / 3) - 1.0 * (1 - 2 / 3)],
            [(1 - 2 / 3) - 0.5 * (1 - 4 / 3), (1 - 2 / 3) - 1.0 * (1 - 4 / 3)],
            [(1 - 3 / 3) - 0.5 * (1 - 6 / 3), (1 - 3 / 3) - 1.0 * (1 - 6 / 3)],
        ]
    )
    torch.testing.assert_close(pe, expected)
    torch.testing.assert_close(pe, torch.tensor([[0.5, 1 / 3], [0.5, 2 / 3], [0.5, 1.0]]))

    for args in ((-1, 4), (3, 0), (2.5, 4)):  # an arange error, an empty or a fractional matrix before
        with pytest.raises(InputError, match=r"position_encoding: (sentence_len|embed_dim) must be a whole number >= 1"):
            MF.position_encoding(*args)


def test_encode_sentences_fast_path_equals_explicit_sum():
    """Two embedding bags (alpha, beta factorisation) = sum_j l_j * A x_j with each sentence's own J."""
    torch.manual_seed(0)
    V, d, n = 11, 4, 3
    table = torch.randn(V, n * d, dtype=torch.float64)
    table[0] = 0
    words = torch.tensor([[3, 5, 7, 0, 0], [1, 2, 0, 0, 0], [0, 0, 0, 0, 0], [4, 4, 9, 10, 6]])
    out = MF.encode_sentences(words, table, "pe", d)
    for i, sentence in enumerate(words.tolist()):
        real = [w for w in sentence if w]
        expected = torch.zeros(n * d, dtype=torch.float64)
        if real:
            pe = MF.position_encoding(len(real), d).double()  # [J, d]
            for j, w in enumerate(real):
                expected += pe[j].repeat(n) * table[w]
        torch.testing.assert_close(out[i], expected)
    bow = MF.encode_sentences(words, table, "bow", d)
    torch.testing.assert_close(bow[0], table[3] + table[5] + table[7])


def test_padding_does_not_change_an_encoding():
    torch.manual_seed(1)
    table = torch.randn(9, 6)
    table[0] = 0
    a = MF.encode_sentences(torch.tensor([[2, 3, 4]]), table, "pe", 3)
    b = MF.encode_sentences(torch.tensor([[2, 3, 4, 0, 0, 0, 0]]), table, "pe", 3)
    torch.testing.assert_close(a, b)


def _rows(softmax: bool):
    torch.manual_seed(2)
    u = torch.randn(3, 5, dtype=torch.float64)
    keys = torch.randn(3, 6, 5, dtype=torch.float64)
    values = torch.randn(3, 6, 5, dtype=torch.float64)
    mask = torch.tensor([[True] * 4 + [False] * 2, [True] * 6, [True] * 1 + [False] * 5])
    return u, keys, values, mask


def test_masked_addressing_ignores_padding_content_and_batch_mates():
    for softmax in (True, False):
        u, keys, values, mask = _rows(softmax)
        o, p = MF.memory_hop(u, keys, values, mask, softmax)
        assert torch.equal(p[~mask], torch.zeros_like(p[~mask]))
        garbage_k, garbage_v = keys.clone(), values.clone()
        garbage_k[~mask] = 1e3
        garbage_v[~mask] = -1e3
        o2, p2 = MF.memory_hop(u, garbage_k, garbage_v, mask, softmax)
        torch.testing.assert_close(o, o2)
        torch.testing.assert_close(p, p2)
        # one sample alone, with its memory trimmed to its real slots, gives the same answer
        n = int(mask[0].sum())
        o3, _ = MF.memory_hop(u[:1], keys[:1, :n], values[:1, :n], mask[:1, :n], softmax)
        torch.testing.assert_close(o[:1], o3)
        if softmax:
            torch.testing.assert_close(p.sum(-1), torch.ones(3, dtype=torch.float64))


def test_all_padding_story_gives_zeros_and_finite_gradients():
    for softmax in (True, False):
        u = torch.randn(2, 4, requires_grad=True)
        keys = torch.randn(2, 3, 4, requires_grad=True)
        values = torch.randn(2, 3, 4, requires_grad=True)
        mask = torch.tensor([[False, False, False], [True, False, False]])
        o, p = MF.memory_hop(u, keys, values, mask, softmax)
        assert torch.equal(o[0], torch.zeros(4)) and torch.equal(p[0], torch.zeros(3))
        (o.sum() + p.sum()).backward()
        for t in (u, keys, values):
            assert torch.isfinite(t.grad).all()


def test_gradcheck_addressing_and_hops():
    u, keys, values, mask = _rows(True)
    for t in (u, keys, values):
        t.requires_grad_(True)
    for softmax in (True, False):
        assert gradcheck(lambda a, b, c, sm=softmax: MF.memory_hop(a, b, c, mask, sm)[0], (u, keys, values))
        assert gradcheck(lambda s, sm=softmax: MF.masked_address(s, mask, sm), (torch.randn(3, 6, dtype=torch.float64, requires_grad=True),))
    R = torch.randn(5, 5, dtype=torch.float64, requires_grad=True)
    assert gradcheck(lambda a, b, c, r: MF.key_value_hop(a, b, c, mask, r)[0], (u, keys, values, R))
    table = torch.randn(8, 10, dtype=torch.float64, requires_grad=True)
    words = torch.tensor([[1, 2, 3, 0], [4, 5, 0, 0]])
    assert gradcheck(lambda t: MF.encode_sentences(words, t, "pe", 5), (table,))


def test_a_double_backward_through_memn2n_is_right_or_refused():
    """The sentence encoder's backward was marked once-differentiable, so a gradient penalty through MemN2N
    (fused=False, which the docs named for it) or KV-MemNN came out wrong without an error (the helper's probe:
    0.000193 against the finite difference 0.000147). Now gradgradcheck passes for the encoder and the penalty
    matches finite differences; the fused node, whose backward is hand-written, refuses create_graph by name."""
    import torch.nn.functional as F
    from torch.autograd import gradgradcheck

    from overlooked.memory.models import KVMemNN, MemN2N

    table = torch.randn(8, 10, dtype=torch.float64, requires_grad=True)
    words = torch.tensor([[1, 2, 3, 0], [4, 5, 0, 0]])
    for encoding in ("pe", "bow"):
        assert gradgradcheck(lambda t, e=encoding: MF.encode_sentences(words, t, e, 5), (table,))
    gen = torch.Generator().manual_seed(0)
    story, query = torch.randint(1, 12, (2, 4, 3), generator=gen), torch.randint(1, 12, (2, 3), generator=gen)
    mask = torch.tensor([[True, True, True, False], [True, True, False, False]])
    target = torch.tensor([1, 2])
    for model in (MemN2N(12, memory_size=4, embed_dim=4, hops=2, fused=False), MemN2N(12, memory_size=4, embed_dim=4, hops=2, tying="layerwise"), KVMemNN(12, memory_size=4, embed_dim=4, hops=2)):
        torch.manual_seed(0)
        model = model.double()
        weight = next(model.parameters())

        def penalty(create, model=model):
            loss = F.cross_entropy(model(story, query, mask)["logits"], target)
            return sum((g**2).sum() for g in torch.autograd.grad(loss, list(model.parameters()), create_graph=create))

        analytic = torch.autograd.grad(penalty(True), weight)[0]
        i = tuple(int(v) for v in (analytic.abs() == analytic.abs().max()).nonzero()[0])
        values = []
        for step in (1e-6, -2e-6, 1e-6):  # central difference, the weight restored at the end
            with torch.no_grad():
                weight[i] += step
            values.append(float(penalty(False)))
        up, down = values[:2]
        assert abs(float(analytic[i]) - (up - down) / 2e-6) <= 1e-6 * max(1.0, abs(float(analytic[i]))), type(model).__name__
    fused = MemN2N(12, memory_size=4, embed_dim=4, hops=2, fused=True).double()
    loss = F.cross_entropy(fused(story, query, mask)["logits"], target)
    with pytest.raises(RuntimeError, match="fused node .* cannot itself be differentiated: .* build the model with fused=False"):
        torch.autograd.grad(loss, list(fused.parameters()), create_graph=True)


def test_time_index_and_random_noise():
    mask = torch.tensor([[True] * 5 + [False] * 3, [True] * 8, [False] * 8])
    assert MF.time_index(mask).tolist()[0] == [4, 3, 2, 1, 0, 0, 0, 0]
    gen = torch.Generator().manual_seed(0)
    seen_gap = False
    for _ in range(50):
        t = MF.random_time_index(mask, 0.5, 7, gen)
        for row, m in zip(t, mask):
            real = row[m]
            assert (real[:-1] >= real[1:]).all()  # older sentences never get a smaller index
            assert (row[~m] == 0).all() and (real <= 7).all()
            n = int(m.sum())
            if n and int(real.max()) > n - 1:
                seen_gap = True
    assert seen_gap  # empty memories were inserted at least once
    assert torch.equal(MF.random_time_index(mask, 0.0, 7, torch.Generator().manual_seed(3)), MF.time_index(mask))


def test_random_noise_draws_as_the_authors_code():
    """Random noise's distribution, by hand (the authors' ``randomize_time``): a story of n = 5 sentences
    gets e ~ U{0..ceil(0.1 * 5)} = U{0, 1} empty memories, and its sentences take a uniform 5-subset of the
    5 + e time slots. So the indices are 0..4 with probability 1/2 + 1/2 * 1/6 = 7/12 (no blank, or the
    blank in the oldest slot), and 0..5 without k with probability 1/12 for each k in 0..4; never beyond 5.
    5,000 stories a case: each frequency within 4.5 standard errors (fixed seeds)."""
    n, rows = 5, 5000
    mask = torch.tensor([[True] * n + [False] * 3]).repeat(rows, 1)
    times = MF.random_time_index(mask, 0.1, 7, torch.Generator().manual_seed(0))
    assert (times[:, n:] == 0).all()
    real = times[:, :n]
    assert (real[:, :-1] > real[:, 1:]).all() and int(real.max()) == 5  # order kept, the blank reaches slot 5
    counts = {k: 0 for k in range(-1, n)}  # -1: indices 0..4; k: the blank took slot k
    for row in real.tolist():
        missing = sorted(set(range(n + 1)) - set(row))
        assert len(missing) == 1  # five distinct indices out of 0..5
        counts[-1 if missing[0] == n else missing[0]] += 1
    for k, p in [(-1, 7 / 12)] + [(k, 1 / 12) for k in range(n)]:
        se = (p * (1 - p) / rows) ** 0.5
        assert abs(counts[k] / rows - p) < 4.5 * se, (k, counts[k] / rows, p)
    # n = 12: e ~ U{0, 1, 2} (ceil(1.2) = 2); the oldest sentence gets index 13 when e = 2 and slot 13 is
    # among the 12 of 14 drawn: 1/3 * 12/14 = 2/7; never beyond 13.
    oldest = MF.random_time_index(torch.ones(rows, 12, dtype=torch.bool), 0.1, 20, torch.Generator().manual_seed(1))[:, 0]
    assert int(oldest.max()) == 13 and int(oldest.min()) >= 11
    p = 2 / 7
    assert abs(float((oldest == 13).float().mean()) - p) < 4.5 * (p * (1 - p) / rows) ** 0.5


def test_padded_pe_length_uses_the_padded_width():
    words = torch.tensor([[3, 4, 0, 0]])
    a_s, b_s = MF.position_weights(words, "pe", "sentence")  # J = 2
    a_p, b_p = MF.position_weights(words, "pe", "padded")  # J = 4
    torch.testing.assert_close(a_s, torch.tensor([[0.5, 0.0, 0.0, 0.0]]))
    torch.testing.assert_close(a_p, torch.tensor([[0.75, 0.5, 0.0, 0.0]]))
    torch.testing.assert_close(b_p, torch.tensor([[0.5, 0.0, 0.0, 0.0]]))


def test_centered_pe_matches_the_authors_code_by_hand():
    """``pe_centered``: ``l_kj = 1 + 4 (k - (d+1)/2) (j - (J+1)/2) / (d J)``, the authors' released code.

    J = 2, d = 2: ``l = 1 + (k - 1.5)(j - 1.5)`` -> k=1: (1.25, 0.75) over j; k=2: (0.75, 1.25).
    """
    table = torch.tensor([[0.0, 0.0], [1.0, 10.0], [100.0, 1000.0]], dtype=torch.float64)
    out = MF.encode_sentences(torch.tensor([[1, 2, 0]]), table, "pe_centered", 2)
    expected = torch.tensor([[1.25 * 1 + 0.75 * 100, 0.75 * 10 + 1.25 * 1000]], dtype=torch.float64)
    torch.testing.assert_close(out, expected)
    # J = 3, d = 4: spot-check every (j, k) against the formula.
    alpha, beta = MF.position_weights(torch.tensor([[5, 3, 7]]), "pe_centered", "sentence", 4)
    for j in range(1, 4):
        for k in range(1, 5):
            want = 1 + 4 * (k - 2.5) * (j - 2) / 12
            assert abs(float(alpha[0, j - 1] - k / 4 * beta[0, j - 1]) - want) < 1e-6


def test_memory_hop_equals_the_papers_sums_and_temporal_encoding_equals_embedding():
    """The fast forms against the plain ones: p_i = softmax(u . m_i), o = sum_i p_i c_i (MemN2N eqs. 1-2),
    and T(i) read by index_select against F.embedding, forward and backward."""
    torch.manual_seed(0)
    u, keys, values = torch.randn(4, 6, dtype=torch.float64), torch.randn(4, 7, 6, dtype=torch.float64), torch.randn(4, 7, 6, dtype=torch.float64)
    mask = torch.ones(4, 7, dtype=torch.bool)
    o, p = MF.memory_hop(u, keys, values, mask)
    scores = torch.stack([torch.stack([keys[b, i] @ u[b] for i in range(7)]) for b in range(4)])
    torch.testing.assert_close(p, torch.softmax(scores, -1))
    torch.testing.assert_close(o, (p[..., None] * values).sum(1))
    table = torch.randn(9, 5, dtype=torch.float64, requires_grad=True)
    time = torch.tensor([[0, 1, 2, 8], [3, 3, 0, 1]])
    grad = torch.randn(2, 4, 5, dtype=torch.float64)
    fast = MF.temporal_encoding(time, table)
    (fast_grad,) = torch.autograd.grad(fast, table, grad)
    ref = torch.nn.functional.embedding(time, table)
    (ref_grad,) = torch.autograd.grad(ref, table, grad)
    assert torch.equal(fast, ref) and torch.equal(fast_grad, ref_grad)
    assert gradcheck(lambda t: MF.temporal_encoding(time, t), (table,))


def test_temporal_encoding_refuses_indices_outside_its_table_and_non_integer_time():
    """An age past the table's last row (or below 0) is named with the table's size, where index_select
    said only 'index out of range in self'; float time is named before index_select's dtype error."""
    table = torch.randn(5, 3)
    with pytest.raises(InputError, match=r"time holds index 7, outside the table's rows 0\.\.4"):
        MF.temporal_encoding(torch.tensor([[0, 1, 7]]), table)
    with pytest.raises(InputError, match=r"time holds index -1"):
        MF.temporal_encoding(torch.tensor([[-1, 0]]), table)
    with pytest.raises(InputError, match=r"integer time indices.*time\.long\(\)"):
        MF.temporal_encoding(torch.tensor([[0.0, 1.0]]), table)
    assert MF.temporal_encoding(torch.tensor([[4, 0]]), table).shape == (1, 2, 3)


def test_packed_hop_equals_the_padded_hop_and_passes_gradcheck():
    """memory_hop_packed on the real memories = memory_hop on the padded ones whose empty slots are zero
    vectors, for masked padding (-inf) and for padding kept in the softmax (score 0); an all-padding story
    gives zeros; gradients by gradcheck."""
    u, keys, values, _ = _rows(True)
    mask = torch.tensor([[True] * 4 + [False] * 2, [True] * 6, [False] * 6])
    slots, owner = MF.pack_memories(mask)
    assert slots.tolist() == [0, 1, 2, 3, 6, 7, 8, 9, 10, 11] and owner.tolist() == [0] * 4 + [1] * 6
    zeroed_k, zeroed_v = keys * mask[..., None], values * mask[..., None]
    packed_k, packed_v = keys.reshape(-1, 5)[slots], values.reshape(-1, 5)[slots]
    for softmax in (True, False):
        for in_softmax in (mask, torch.ones_like(mask)):  # padding="mask", padding="attend"
            o, p = MF.memory_hop_packed(u, packed_k, packed_v, slots, owner, MF.mask_bias(in_softmax), softmax)
            o_ref, p_ref = MF.memory_hop(u, zeroed_k, zeroed_v, in_softmax, softmax)
            torch.testing.assert_close(o, o_ref)
            torch.testing.assert_close(p, p_ref)
        o, p = MF.memory_hop_packed(u, packed_k, packed_v, slots, owner, MF.mask_bias(mask), softmax)
        assert torch.equal(o[2], torch.zeros(5)) and torch.equal(p[2], torch.zeros(6))
        for t in (u, packed_k, packed_v):
            t.requires_grad_(True)
        assert gradcheck(lambda a, b, c, sm=softmax: MF.memory_hop_packed(a, b, c, slots, owner, MF.mask_bias(mask), sm)[0], (u, packed_k, packed_v))
        for t in (u, packed_k, packed_v):
            t.requires_grad_(False)


def _spread(mask: torch.Tensor, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The same stories with padding slots moved before and between the sentences (order kept): the new
    mask ``[B, M]`` (the same width: the random draws depend on it) and, per row, the slots that the real
    sentences now occupy."""
    gen = torch.Generator().manual_seed(seed)
    B, M = mask.shape
    W = M
    new, where = torch.zeros(B, W, dtype=torch.bool), []
    for b in range(B):
        n = int(mask[b].sum())
        slots = torch.randperm(W, generator=gen)[:n].sort().values
        new[b, slots] = True
        where.append(slots)
    return new, where


def test_time_and_random_noise_skip_padding_wherever_it_stands():
    """Slots need not be left-aligned: padding before or between sentences (a mask built with
    story.ne(0).any(-1) from a story with an empty line) leaves every real sentence its time index."""
    mask = torch.tensor([[True] * 5 + [False] * 3, [True] * 8, [False] * 8, [True] * 2 + [False] * 6])
    spread, where = _spread(mask)
    t, t_spread = MF.time_index(mask), MF.time_index(spread)
    for b, slots in enumerate(where):
        n = len(slots)
        assert t_spread[b, slots].tolist() == t[b, :n].tolist() and (t_spread[b][~spread[b]] == 0).all()
    for seed in range(5):  # the same random draws give every real sentence the same noisy index
        r = MF.random_time_index(mask, 0.5, 7, torch.Generator().manual_seed(seed))
        r_spread = MF.random_time_index(spread, 0.5, 7, torch.Generator().manual_seed(seed))
        for b, slots in enumerate(where):
            assert r_spread[b, slots].tolist() == r[b, : len(slots)].tolist() and (r_spread[b][~spread[b]] == 0).all()


def _closed_form(encoding: str, J: int, d: int) -> torch.Tensor:
    """``l_kj`` ``[J, d]`` in float64 straight from the papers' formulas, independent of the code under test:
    PE (MemN2N 4.1) ``(1 - j/J) - (k/d)(1 - 2j/J)``; centred PE (the authors' code) ``1 + 4 (k - (d+1)/2)(j - (J+1)/2) / (d J)``."""
    j = torch.arange(1, J + 1, dtype=torch.float64)[:, None]
    k = torch.arange(1, d + 1, dtype=torch.float64)[None, :]
    if encoding == "pe":
        return (1 - j / J) - (k / d) * (1 - 2 * j / J)
    return 1 + 4 * (k - (d + 1) / 2) * (j - (J + 1) / 2) / (d * J)


@pytest.mark.parametrize("encoding", ["pe", "pe_centered", "bow"])
def test_a_float64_table_is_encoded_in_float64(encoding):
    """The position weights follow the table's dtype: a float64 model is as exact as float64 (was 1e-7); checked
    against the closed forms, not against the code's own weights. d = 6 and J = 5 make values no float32 holds."""
    gen = torch.Generator().manual_seed(0)
    table = torch.randn(10, 6, dtype=torch.float64, generator=gen)
    words = torch.tensor([[1, 2, 3, 4, 5], [6, 7, 8, 9, 1]])  # full sentences: J = L for every pe_length
    got = MF.encode_sentences(words, table, encoding, 6, pe_length="padded")
    l = torch.ones(5, 6, dtype=torch.float64) if encoding == "bow" else _closed_form(encoding, 5, 6)  # [J, d]
    want = (l[None] * table[words]).sum(1)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, want, rtol=0, atol=1e-13)
    if encoding == "pe":  # and the float64 matrix is the formula in float64, not a float32 copy
        torch.testing.assert_close(MF.position_encoding(5, 6, dtype=torch.float64), l, rtol=0, atol=1e-15)


def test_the_time_word_weight_follows_the_dtype_asked_for(monkeypatch):
    """A float64 MemN2N with pe_length="padded_time" scales its time word in float64 (was float32, 2e-8 off):
    the row l_J, J = L + 1, of the closed form, and the model asks for its temporal table's dtype."""
    for encoding in ("pe", "pe_centered"):
        w64 = MF.time_word_weight(5, encoding, 6, dtype=torch.float64)
        assert w64.dtype == torch.float64
        torch.testing.assert_close(w64, _closed_form(encoding, 6, 6)[-1], rtol=0, atol=1e-15)
        torch.testing.assert_close(MF.time_word_weight(5, encoding, 6), w64.float())  # float32 as before
    from overlooked.memory.modules import MemN2N

    asked = []
    real = MF.time_word_weight
    monkeypatch.setattr(MF, "time_word_weight", lambda *a, **k: asked.append(k.get("dtype")) or real(*a, **k))
    model = MemN2N(20, memory_size=4, embed_dim=6, encoding="pe", pe_length="padded_time").double()
    story = torch.randint(1, 20, (2, 4, 3))
    model(story, torch.randint(1, 20, (2, 3)), torch.ones(2, 4, dtype=torch.bool))
    assert asked == [torch.float64]


def test_the_functional_hops_name_a_wrong_mask_or_shape():
    """memory_hop and key_value_hop called directly (a custom model) used to fail inside torch ("masked_fill_ only
    supports boolean masks", "bitwise_or_cpu not implemented for 'Double'"); like the models' forward they name
    the problem and the fix."""
    from overlooked.errors import InputError

    u, K, V, m = torch.randn(2, 4), torch.randn(2, 3, 4), torch.randn(2, 3, 5), torch.ones(2, 3, dtype=torch.bool)
    for bad in (m.long(), m.double(), m[0]):
        with pytest.raises(InputError, match=r"mask must be a bool tensor \[B, M\].*Fix: pass mask.bool\(\)"):
            MF.memory_hop(u, K, V, bad)
    bad_args = [(u[:, :3], K, V, m), (u, K, V[:, :2], m), (u, K, V, m[:, :2]), (u[:1], K, V, m), (u, K[0], V, m)]
    bad_args += [(u.long(), K, V, m), (u.double(), K, V, m), (u, K.int(), V, m)]  # dtypes: a raw "expected scalar type" before
    for args in bad_args:
        with pytest.raises(InputError, match=r"memory hop needs u \[B, d\], keys \[B, M, d\], values \[B, M, d'\] of one float dtype and a mask \[B, M\]"):
            MF.memory_hop(*args)
    with pytest.raises(InputError, match="mask must be a bool tensor"):
        MF.key_value_hop(u, K, K, m.float(), torch.eye(4))
    # the (bias, gate) pair: a pair of bool masks added True to the scores (attention summing to 0.68, no error)
    m2 = torch.tensor([[True, True, False], [True, False, False]])
    slots, owner = MF.pack_memories(m2)
    for bad in ((m2, m2), (m2.float(),), (m2.float(), m2.float()[:, :2]), [m2.float()[0], m2.float()[0]]):
        with pytest.raises(InputError, match=r"or the \(bias, gate\) pair mask_bias\(mask\) returns, two float \[B, M\] tensors"):
            MF.memory_hop(u, K, V, bad)
        with pytest.raises(InputError, match=r"the \(bias, gate\) pair"):
            MF.memory_hop_packed(u, K.reshape(-1, 4)[slots], V.reshape(-1, 5)[slots], slots, owner, bad)
    o_pair, p_pair = MF.memory_hop(u, K, V, MF.mask_bias(m2))
    o_mask, p_mask = MF.memory_hop(u, K, V, m2)
    assert torch.equal(p_pair, p_mask) and torch.allclose(p_pair.sum(-1), torch.ones(2))
    for R in (torch.randn(4), torch.randn(3, 4)):  # R [d]: q_next came back [B], silently
        with pytest.raises(InputError, match=r"key_value_hop needs a float R \[d, d\] with d = 4"):
            MF.key_value_hop(u, K, K, m, R)
    with pytest.raises(InputError, match=r"key_value_hop needs a float R \[d, d\]"):
        MF.key_value_hop(u, K, K, m, torch.eye(4, dtype=torch.long))  # an int R: a raw matmul dtype error before
    # the other public functions, called directly (an adversarial review's list): raw torch errors before
    words, table = torch.randint(1, 5, (3, 4)), torch.randn(5, 6)
    for args in ((words.float(), table, 3), (words, table.long(), 3), (words, table, 0), (words, table, 4), (words, table[0], 3)):
        with pytest.raises(InputError, match=r"encode_sentences needs int64 \(or int32\) words \[\.\.\., L\], a float table \[V, n \* d\]"):
            MF.encode_sentences(args[0], args[1], "pe", args[2])
    for fn in (MF.time_index, MF.pack_memories, lambda mk: MF.random_time_index(mk, 0.1, 5, torch.Generator())):
        for bad in (m.long(), m[0]):
            with pytest.raises(InputError, match=r"needs a bool memory mask \[B, M\], True on real memories"):
                fn(bad)
    with pytest.raises(InputError, match=r"read_memory needs weights p \[B, M\] and values \[B, M, d\] of one float dtype"):
        MF.read_memory(torch.rand(2, 2), V)
    slots, owner = MF.pack_memories(m)
    pair = MF.mask_bias(m)
    packed_k, packed_v = K.reshape(-1, 4)[slots], V.reshape(-1, 5)[slots]
    for args in ((u[:, :3], packed_k, packed_v, slots, owner), (u, packed_k[:-1], packed_v, slots, owner), (u, packed_k, packed_v, slots.float(), owner), (u[:1], packed_k, packed_v, slots, owner)):
        with pytest.raises(InputError, match=r"memory_hop_packed needs u \[B, d\], keys \[R, d\], values \[R, d'\]"):
            MF.memory_hop_packed(*args, pair)
    with pytest.raises(InputError, match=r"masked_address needs float scores of the mask's shape \[B, M\] = \[2, 3\]"):
        MF.masked_address(torch.randn(3), m)  # broadcast over the batch before
    o, p = MF.memory_hop(u, K, V, m)  # values may be wider than keys (d' != d)
    assert o.shape == (2, 5) and p.shape == (2, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast mixes dtypes and casts at the matmul
        assert MF.memory_hop(u.bfloat16(), K, V, m)[0].shape == (2, 5)


@pytest.mark.parametrize("encoding", ["pe", "bow", "pe_centered"])
def test_encode_sentences_backward_equals_embedding_bags_under_autograd(encoding):
    """encode_sentences computes the table's gradient by hand (one embedding bag per weight over the words
    sorted once); it equals autograd through F.embedding_bag, for repeated words, empty sentences and a
    word that never occurs, and passes gradcheck."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    V, d, n = 12, 4, 3
    table = torch.randn(V, n * d, dtype=torch.float64, requires_grad=True)
    words = torch.tensor([[3, 5, 3, 0, 0], [1, 2, 0, 0, 0], [0, 0, 0, 0, 0], [4, 4, 9, 10, 6], [5, 0, 0, 0, 0]])  # word 7, 8, 11 absent
    grad = torch.randn(5, n * d, dtype=torch.float64)
    (fast,) = torch.autograd.grad(MF.encode_sentences(words, table, encoding, d), table, grad)
    alpha, beta = MF.position_weights(words, encoding, "sentence", d, dtype=torch.float64)
    real = words != 0
    lengths = real.sum(-1)
    offsets = torch.cumsum(lengths, 0) - lengths
    bag = lambda w: F.embedding_bag(words[real], table, offsets, mode="sum", per_sample_weights=w[real])  # noqa: E731
    k_over_d = (torch.arange(1, d + 1, dtype=torch.float64) / d).repeat(n)
    ref_out = bag(alpha) if beta is None else bag(alpha) - k_over_d * bag(beta)
    (ref,) = torch.autograd.grad(ref_out, table, grad)
    torch.testing.assert_close(fast, ref)
    assert torch.equal(fast[[0, 7, 8, 11]], torch.zeros(4, n * d, dtype=torch.float64))
    assert gradcheck(lambda t: MF.encode_sentences(words, t, encoding, d), (table,))


def _adjacent_inputs(softmax_mask):
    """A packed batch for adjacent_memn2n: 3 stories (4 real, 6 real, none) of M = 6 slots, V = 9, K = 2, d = 3."""
    torch.manual_seed(1)
    V, M, K, d = 9, 6, 2, 3
    mask = torch.tensor([[True] * 4 + [False] * 2, [True] * 6, [False] * 6])
    story = torch.randint(1, V, (3, M, 4)) * mask[..., None]
    story[..., 3] = 0  # padded words
    query = torch.randint(1, V, (3, 4))
    query[:, 2:] = 0
    slots, owner = MF.pack_memories(mask)
    words = torch.cat([story.reshape(-1, 4)[slots], query])
    time = MF.time_index(mask).reshape(-1)[slots]
    table = torch.randn(V, (K + 1) * d, dtype=torch.float64)
    table[0] = 0
    temporal = torch.randn(M, (K + 1) * d, dtype=torch.float64)
    masks = MF.mask_bias(mask if softmax_mask else torch.ones_like(mask))
    return table.requires_grad_(), temporal.requires_grad_(), words, time, slots, owner, masks, K, d


NO_CXX = native.compiler() is None


@pytest.mark.parametrize("backend", [pytest.param("cpp", marks=pytest.mark.skipif(NO_CXX, reason="no C++ compiler")), "torch"])
@pytest.mark.parametrize("softmax", [True, False])
@pytest.mark.parametrize("softmax_mask", [True, False])
def test_adjacent_memn2n_gradcheck_and_bad_shapes(softmax, softmax_mask, backend):
    """The fused MemN2N node, with its hops in C++ or in PyTorch operations: gradcheck of the logits and of
    the attention for both weight tables, with masked or attended padding, with and without the softmax, a
    story with no sentence among them; the null word gets no gradient; wrong shapes are named."""
    from overlooked.errors import InputError
    from overlooked.memory import kernels

    table, temporal, words, time, slots, owner, masks, K, d = _adjacent_inputs(softmax_mask)
    calls = dict(kernels.CALLS)

    def run(t, tt):
        logits, attention = MF.adjacent_memn2n(t, tt, words, time, slots, owner, masks, hops=K, softmax=softmax, backend=backend)
        return logits, attention

    assert gradcheck(run, (table, temporal))
    logits, attention = run(table, temporal)
    assert torch.equal(logits[:, 0], torch.zeros(3, dtype=torch.float64))  # the null word scores 0
    (g,) = torch.autograd.grad(logits.sum() + attention.sum(), table)
    assert torch.equal(g[0], torch.zeros((K + 1) * d, dtype=torch.float64))
    with pytest.raises(InputError, match=r"adjacent MemN2N needs table \[V, \(K\+1\) d\].*Fix: pack the memories"):
        MF.adjacent_memn2n(table[:, :-1], temporal, words, time, slots, owner, masks, hops=K)
    with pytest.raises(InputError, match="adjacent MemN2N needs"):
        MF.adjacent_memn2n(table, temporal, words[:-1], time, slots, owner, masks, hops=K)  # one question short
    with pytest.raises(RuntimeError):  # differentiable once: a second-order gradient is refused, not wrong
        (g2,) = torch.autograd.grad(run(table, temporal)[0].square().sum(), table, create_graph=True)
        torch.autograd.grad(g2.sum(), table)
    ran = kernels.CALLS["forward"] > calls["forward"] and kernels.CALLS["backward"] > calls["backward"]
    assert ran == (backend == "cpp")  # the C++ hops ran exactly when asked for


@pytest.mark.skipif(NO_CXX, reason="no C++ compiler")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("softmax", [True, False])
@pytest.mark.parametrize(("encoding", "pe_length"), [("pe", "sentence"), ("bow", "sentence"), ("pe", "padded"), ("pe_centered", "padded_time")])
def test_adjacent_memn2n_cpp_kernel_equals_the_torch_path(dtype, softmax, encoding, pe_length):
    """The C++ kernel (encoding, temporal rows and hops) and the PyTorch-operation path give the same
    logits, attention and gradients of both tables (also from a loss on the attention), in float64 and
    float32, for each encoding and sentence length J (the time word's scale included), on a batch whose
    stories have 0-6 real memories; 'auto' picks the C++ kernel on the CPU; a bf16 table is refused by
    'cpp' and run by 'auto'; an index outside the tables is refused, not read."""
    from overlooked.errors import InputError

    table, temporal, words, time, slots, owner, masks, K, d = _adjacent_inputs(True)
    table, temporal = table.detach().to(dtype).requires_grad_(), temporal.detach().to(dtype).requires_grad_()
    scale = MF.time_word_weight(words.shape[1], encoding, d, dtype=dtype).repeat(K + 1) if pe_length == "padded_time" else None
    weigh = torch.randn(3, K, 6, dtype=dtype)
    results = []
    for backend in ("cpp", "torch", "auto"):
        logits, attention = MF.adjacent_memn2n(
            table, temporal, words, time, slots, owner, masks, hops=K, softmax=softmax, backend=backend, encoding=encoding, pe_length=pe_length, time_scale=scale
        )
        grads = torch.autograd.grad(logits.square().sum() + (attention * weigh).sum(), (table, temporal))
        results.append((logits, attention, *grads))
    tol = {"rtol": 1e-4, "atol": 1e-4} if dtype == torch.float32 else {}  # float32 sums in another order
    for a, b, c in zip(*results):
        torch.testing.assert_close(a, b, **tol)
        assert torch.equal(a, c)  # auto = cpp here
    with pytest.raises(InputError, match="backend='cpp' runs float32/float64 CPU tensors"):
        MF.adjacent_memn2n(table.bfloat16(), temporal.bfloat16(), words, time, slots, owner, masks, hops=K, backend="cpp")
    logits, _ = MF.adjacent_memn2n(table.bfloat16(), temporal.bfloat16(), words, time, slots, owner, masks, hops=K)
    assert logits.dtype == torch.bfloat16 and bool(torch.isfinite(logits).all())
    with pytest.raises(ValueError, match="backend must be 'auto', 'cpp' or 'torch'"):
        MF.adjacent_memn2n(table, temporal, words, time, slots, owner, masks, hops=K, backend="c++")
    past_vocab = words.clone()
    past_vocab[0, 0] = table.shape[0]  # one past the vocabulary
    for bad_words, bad_time, what in [(past_vocab, time, "a word index outside"), (words, time + 6, "a temporal index outside")]:
        with pytest.raises(InputError, match=what):
            MF.adjacent_memn2n(table, temporal, bad_words, bad_time, slots, owner, masks, hops=K, backend="cpp")


@pytest.mark.skipif(NO_CXX, reason="no C++ compiler")
@pytest.mark.parametrize("softmax", [True, False])
def test_adjacent_memn2n_cpp_kernel_equals_the_torch_path_with_a_soft_gate(softmax):
    """mask_pair accepts any float (bias, gate) pair, not only mask_bias's 0/1 gate: with a hand-made gate
    of 1, 0.5 and 0.25 on real slots, the C++ kernel's gradients (through the gated attention into the read)
    still equal the PyTorch path's."""
    table, temporal, words, time, slots, owner, (bias, gate), K, d = _adjacent_inputs(True)
    gate = gate * torch.tensor([1.0, 0.5, 1.0, 0.25, 1.0, 1.0])
    weigh = torch.randn(3, K, 6, dtype=torch.float64)
    results = []
    for backend in ("cpp", "torch"):
        logits, attention = MF.adjacent_memn2n(table, temporal, words, time, slots, owner, (bias, gate), hops=K, softmax=softmax, backend=backend)
        results.append((logits, attention, *torch.autograd.grad(logits.square().sum() + (attention * weigh).sum(), (table, temporal))))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b)


@pytest.mark.skipif(NO_CXX, reason="no C++ compiler")
def test_adjacent_memn2n_cpp_softmax_is_stable_at_large_scores():
    """Scores far past float32's exp range (tables x 30: hop scores in the hundreds): the C++ kernel's
    softmax subtracts each story's largest score, as torch.softmax does, so its logits, attention and
    gradients stay finite and equal the PyTorch path's."""
    table, temporal, words, time, slots, owner, masks, K, d = _adjacent_inputs(True)
    table, temporal = (30 * table).detach().float().requires_grad_(), (30 * temporal).detach().float().requires_grad_()
    results = []
    for backend in ("cpp", "torch"):
        logits, attention = MF.adjacent_memn2n(table, temporal, words, time, slots, owner, masks, hops=K, backend=backend)
        grads = torch.autograd.grad(logits.sum() / 1e4, (table, temporal))
        results.append((logits, attention, *grads))
    assert float(attention.detach().max()) > 0.999  # some hop is near one-hot: its scores were far apart
    for a, b in zip(*results):
        assert bool(torch.isfinite(a).all())
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-3)


@pytest.mark.skipif(NO_CXX, reason="no C++ compiler")
@pytest.mark.parametrize("hops", [1, 2])
def test_adjacent_memn2n_cpp_equals_torch_with_attended_padding_and_one_hop(hops):
    """Padding kept in the softmax (the authors' code) and a single hop, C++ kernel against the PyTorch path."""
    table, temporal, words, time, slots, owner, masks, K, d = _adjacent_inputs(False)
    table = table.detach()[:, : (hops + 1) * d].contiguous().requires_grad_()
    temporal = temporal.detach()[:, : (hops + 1) * d].contiguous().requires_grad_()
    out = []
    for backend in ("cpp", "torch"):
        logits, attention = MF.adjacent_memn2n(table, temporal, words, time, slots, owner, masks, hops=hops, backend=backend)
        out.append((logits, attention, *torch.autograd.grad(logits.square().sum() + attention.sum(), (table, temporal))))
    for a, b in zip(*out):
        torch.testing.assert_close(a, b)


@pytest.mark.skipif(NO_CXX, reason="no C++ compiler")
def test_adjacent_memn2n_refuses_tables_that_do_not_fit_and_converts_dtypes():
    """A temporal table or time scale of another width is named (the kernel would read past it); one of
    another dtype is converted (the kernel reads the table's); a packed slot outside the mask is refused."""
    from overlooked.errors import InputError

    table, temporal, words, time, slots, owner, masks, K, d = _adjacent_inputs(True)
    for bad in (dict(temporal_table=temporal[:, :d]), dict(time_scale=torch.ones(d, dtype=torch.float64))):
        kwargs = {"temporal_table": temporal, **bad}
        tt = kwargs.pop("temporal_table")
        for backend in ("cpp", "torch"):
            with pytest.raises(InputError, match=r"temporal_table \[M, \(K\+1\) d\] or None, time_scale \[\(K\+1\) d\] or None"):
                MF.adjacent_memn2n(table, tt, words, time, slots, owner, masks, hops=K, backend=backend, **kwargs)
    scale = torch.linspace(0.5, 1.5, (K + 1) * d, dtype=torch.float64)
    ref, _ = MF.adjacent_memn2n(table, temporal, words, time, slots, owner, masks, hops=K, backend="torch", time_scale=scale)
    got, _ = MF.adjacent_memn2n(table, temporal.float(), words, time, slots, owner, masks, hops=K, backend="cpp", time_scale=scale.float())
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)  # float32 tables read as float64, not as raw bytes
    with pytest.raises(InputError, match="a packed slot or owner that does not fit the mask"):
        MF.adjacent_memn2n(table, temporal, words, time, slots, owner.flip(0), masks, hops=K, backend="cpp")


@pytest.mark.parametrize("backend", ["torch", pytest.param("cpp", marks=pytest.mark.skipif(NO_CXX, reason="no C++ compiler"))])
def test_adjacent_memn2n_names_indices_out_of_range_on_both_backends(backend):
    """The C++ kernel checked word, time, slot and owner ranges as it read them; the PyTorch path failed with
    raw index errors (or read a wrong owner silently). Both now raise the same InputError."""
    from overlooked.errors import InputError

    table, temporal, words, time, slots, owner, masks, K, d = _adjacent_inputs(True)
    cases = [
        ("a word index outside the embedding table", dict(words=words.clone().index_fill_(1, torch.tensor([0]), table.shape[0]))),
        ("a word index outside the embedding table", dict(words=words - 1 - words.max())),
        ("a temporal index outside the temporal table", dict(time=time + temporal.shape[0])),
        ("a packed slot or owner that does not fit the mask", dict(owner=owner.flip(0))),
    ]
    for says, change in cases:
        args = {"words": words, "time": time, "owner": owner, **change}
        with pytest.raises(InputError, match=f"adjacent MemN2N: {says}"):
            MF.adjacent_memn2n(table, temporal, args["words"], args["time"], slots, args["owner"], masks, hops=K, backend=backend)


@pytest.mark.skipif(NO_CXX, reason="no C++ compiler")
def test_an_unusable_kernel_cache_falls_back_to_pytorch_with_one_warning(monkeypatch, tmp_path):
    """A cache folder that cannot be made (here: under a file) is not a crash: 'auto' warns once and runs
    the PyTorch path, with the same numbers; 'cpp' names the problem."""
    import warnings

    from overlooked.errors import InputError
    from overlooked.memory import kernels

    (tmp_path / "file").write_text("")
    monkeypatch.setenv("OVERLOOKED_KERNEL_CACHE", str(tmp_path / "file" / "kernels"))
    monkeypatch.setattr(kernels.LIBRARY, "lib", None)
    monkeypatch.setattr(kernels.LIBRARY, "error", None)
    monkeypatch.setattr(kernels, "_warned", False)
    table, temporal, words, time, slots, owner, masks, K, d = _adjacent_inputs(True)
    calls = kernels.CALLS["forward"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = MF.adjacent_memn2n(table, temporal, words, time, slots, owner, masks, hops=K)[0]
        MF.adjacent_memn2n(table, temporal, words, time, slots, owner, masks, hops=K)
    assert [str(w.message)[:40] for w in caught if issubclass(w.category, RuntimeWarning)] == ["MemN2N's C++ kernel is unavailable, the "]
    assert "OVERLOOKED_KERNEL_CACHE" in str(caught[0].message) and kernels.CALLS["forward"] == calls
    torch.testing.assert_close(got, MF.adjacent_memn2n(table, temporal, words, time, slots, owner, masks, hops=K, backend="torch")[0])
    with pytest.raises(InputError, match="backend='cpp': building or loading the C\\+\\+ MemN2N kernel in .* failed .* set \\$OVERLOOKED_KERNEL_CACHE"):
        MF.adjacent_memn2n(table, temporal, words, time, slots, owner, masks, hops=K, backend="cpp")


@pytest.mark.parametrize("backend", [pytest.param("cpp", marks=pytest.mark.skipif(NO_CXX, reason="no C++ compiler")), "torch"])
def test_adjacent_memn2n_without_temporal_table_takes_no_time_and_skips_unused_gradients(backend, monkeypatch):
    """Without a temporal table no time index is needed (None); a loss on the logits alone hands the backward
    no attention gradient (None, not a zero tensor it would have to read), with the same table gradient."""
    table, _, words, time, slots, owner, masks, K, d = _adjacent_inputs(True)
    logits, attention = MF.adjacent_memn2n(table, None, words, None, slots, owner, masks, hops=K, backend=backend)
    (g,) = torch.autograd.grad(logits.square().sum(), table, retain_graph=True)
    (g_both,) = torch.autograd.grad(logits.square().sum() + 0 * attention.sum(), table)
    torch.testing.assert_close(g, g_both)
    seen = []
    original = MF._AdjacentMemN2N.backward

    def spy(ctx, grad_logits, grad_attention):
        seen.append(grad_attention)
        return original(ctx, grad_logits, grad_attention)

    monkeypatch.setattr(MF._AdjacentMemN2N, "backward", staticmethod(spy))
    logits, _ = MF.adjacent_memn2n(table, None, words, None, slots, owner, masks, hops=K, backend=backend)
    logits.sum().backward()
    assert seen == [None]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("softmax", [True, False])
def test_adjacent_memn2n_on_cuda_is_the_torch_path_and_passes_gradcheck(softmax):
    """On CUDA tensors 'auto' runs the PyTorch-operation backend: gradcheck of both tables, the CPU's logits,
    attention and gradients; 'cpp' refuses CUDA tensors with the fix."""
    from overlooked.errors import InputError
    from overlooked.memory import kernels

    cpu = _adjacent_inputs(True)
    table, temporal = (t.detach().cuda().requires_grad_() for t in cpu[:2])
    words, time, slots, owner = (t.cuda() for t in cpu[2:6])
    masks = tuple(m.cuda() for m in cpu[6]) if isinstance(cpu[6], tuple) else cpu[6].cuda()
    K = cpu[7]
    calls = dict(kernels.CALLS)
    run = lambda t, tt: MF.adjacent_memn2n(t, tt, words, time, slots, owner, masks, hops=K, softmax=softmax)  # noqa: E731
    assert gradcheck(run, (table, temporal))
    assert kernels.CALLS == calls
    got = run(table, temporal)
    ref = MF.adjacent_memn2n(*cpu[:7], hops=K, softmax=softmax, backend="torch")
    for a, b in zip(got, ref):
        torch.testing.assert_close(a.cpu(), b)
    g = torch.autograd.grad(got[0].square().sum() + got[1].sum(), (table, temporal))
    r = torch.autograd.grad(ref[0].square().sum() + ref[1].sum(), cpu[:2])
    for a, b in zip(g, r):
        torch.testing.assert_close(a.cpu(), b)
    with pytest.raises(InputError, match="backend='cpp' runs float32/float64 CPU tensors"):
        MF.adjacent_memn2n(table, temporal, words, time, slots, owner, masks, hops=K, backend="cpp")


def test_kvmemnn_runs_under_bf16_autocast():
    """A review's catch: a check that R has the query's dtype stopped KV-MemNN at its second hop under
    train.bf16 (autocast makes q bfloat16 while R stays a float32 parameter)."""
    from overlooked.memory.modules import KVMemNN

    torch.manual_seed(0)
    model = KVMemNN(vocab_size=12, memory_size=5, embed_dim=8, hops=3)
    story, query, mask = torch.randint(1, 12, (2, 5, 4)), torch.randint(1, 12, (2, 4)), torch.ones(2, 5, dtype=torch.bool)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(story, query, mask)
    full = model(story, query, mask)  # float32: the same numbers to bf16's precision (8 bits of mantissa)
    torch.testing.assert_close(out["logits"].float(), full["logits"], rtol=0.02, atol=0.01)  # logits up to 0.34
    torch.testing.assert_close(out["attention"].float(), full["attention"], rtol=0.02, atol=0.004)  # weights 0.17-0.25


@pytest.mark.parametrize("backend", [pytest.param("cpp", marks=pytest.mark.skipif(NO_CXX, reason="no C++ compiler")), "torch"])
def test_adjacent_memn2n_backward_under_autocast_equals_float32(backend):
    """The fused node's backward runs in the caller's thread, under the autocast the loss was computed in: it
    computes in float32 there as its forward does (a bf16 ``g @ W`` was written by the float kernel into a
    buffer half its size, corrupting the heap; the PyTorch path failed in index_copy_). Same gradients as
    outside autocast."""
    table, temporal, words, time, slots, owner, masks, K, _ = _adjacent_inputs(True)
    table, temporal = table.detach().float().requires_grad_(), temporal.detach().float().requires_grad_()
    masks = tuple(m.float() for m in masks)

    def grads(autocast):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            logits, attention = MF.adjacent_memn2n(table, temporal, words, time, slots, owner, masks, hops=K, backend=backend)
            loss = logits.logsumexp(-1).sum() + (attention * torch.arange(attention.shape[-1])).sum()
            return torch.autograd.grad(loss, (table, temporal))

    for want, got in zip(grads(False), grads(True)):
        assert got.dtype == torch.float32 and torch.equal(got, want)


@pytest.mark.skipif(NO_CXX, reason="no C++ compiler")
def test_kernel_refuses_buffers_of_another_dtype():
    """The C++ kernel reads raw pointers: a buffer of another dtype (or not contiguous) is named, never read or
    written as the table's dtype."""
    from overlooked.memory import kernels

    table, temporal, words, time, slots, owner, masks, K, d = _adjacent_inputs(True)
    table, temporal = table.detach(), temporal.detach()
    bias, gate = masks[0].double(), masks[1].double()
    scale = MF._minus_k_over_d(d, K + 1, table.dtype, "cpu")
    args = (words, time, None, scale, slots, owner, bias, gate, True, K, "pe", "sentence")
    mem, u_all, q_all, _, w_all = kernels.forward(table, temporal, *args)
    B = gate.shape[0]
    with pytest.raises(InputError, match="got the answer gradient as bfloat16 on cpu.*contiguous CPU float64"):
        kernels.backward(torch.zeros(B, d, dtype=torch.bfloat16), None, torch.zeros_like(table), torch.zeros_like(temporal), words, time, None, scale,
                         slots, owner, gate, mem, u_all, q_all, w_all, True, "pe", "sentence")
    with pytest.raises(InputError, match="got temporal_table as float32"):
        kernels.forward(table, temporal.float(), *args)
    with pytest.raises(InputError, match="got table as float64 on cpu, not contiguous"):
        kernels.forward(table.t().contiguous().t(), temporal, *args)


def test_functional_core_under_torch_func():
    """torch.func runs the functional core: grad of encode_sentences (a dense weighted sum inside a transform)
    equals autograd through the bags, vmap of the hops equals a loop (mask_bias no longer fills a tensor in place), and the
    cached -k/d constant made inside a transform is not kept (outside it, it has no storage). The fused
    adjacent_memn2n is refused by name under a transform."""
    from torch.func import grad, vmap

    torch.manual_seed(0)
    words = torch.tensor([[1, 2, 3, 0], [4, 1, 0, 0], [0, 0, 0, 0]])
    table = torch.randn(5, 2 * 7, dtype=torch.float64)
    MF._SCALES.clear()
    for encoding in ("pe", "bow"):
        g = grad(lambda t, enc=encoding: MF.encode_sentences(words, t, enc, 7).square().sum())(table)
        t = table.clone().requires_grad_()
        MF.encode_sentences(words, t, encoding, 7).square().sum().backward()
        assert torch.allclose(g, t.grad, rtol=0, atol=1e-12)
    assert not any(torch._C._functorch.is_functorch_wrapped_tensor(t) for t in MF._SCALES.values())  # no transform's tensor kept
    assert MF.encode_sentences(words, table, "pe", 7).shape == (3, 14)  # and the plain call after it runs
    mask = torch.tensor([[True, True, False], [False, False, False]])
    u, keys, values = torch.randn(4, 2, 5), torch.randn(4, 2, 3, 5), torch.randn(4, 2, 3, 5)
    R = torch.randn(5, 5)
    for fn in (lambda u, k, v: MF.memory_hop(u, k, v, mask)[0], lambda u, k, v: MF.key_value_hop(u, k, v, mask, R)[0]):
        assert torch.allclose(vmap(fn)(u, keys, values), torch.stack([fn(u[i], keys[i], values[i]) for i in range(4)]), rtol=0, atol=1e-6)
    table, temporal, words, time, slots, owner, masks, K, _ = _adjacent_inputs(True)
    with pytest.raises(InputError, match="torch.func transforms .* cannot run.*fused=False"):
        grad(lambda t: MF.adjacent_memn2n(t, temporal, words, time, slots, owner, masks, hops=K)[0].sum())(table.detach())


def test_encode_sentences_and_time_word_weight_name_bad_arguments():
    """A word outside the table, and a time-word weight asked for without a position encoding, are named."""
    table = torch.randn(5, 6)
    with pytest.raises(InputError, match=r"words hold index 5, outside the table's rows 0..4"):
        MF.encode_sentences(torch.tensor([[1, 5]]), table, "pe", 3)
    with pytest.raises(InputError, match="words hold index -1"):
        MF.encode_sentences(torch.tensor([[-1, 2]]), table, "bow", 3)
    with pytest.raises(InputError, match="encoding must be 'pe' or 'pe_centered', got 'bow'"):
        MF.time_word_weight(5, "bow", 7)
