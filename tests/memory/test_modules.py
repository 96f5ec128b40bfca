"""MemN2N module: registry matrix, null word, padding and batch-mate invariance, tying variants."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from overlooked import catalog
from overlooked.errors import RegistryError
from overlooked.memory.functional import time_index
from overlooked.registry import MODELS

catalog.load_all()
MEMORY_MODELS = [n for n in MODELS.names() if MODELS.tags(n).get("family") == "memory"]
V, M, L = 30, 10, 6


def _batch(B=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    story = torch.randint(1, V, (B, M, L), generator=gen)
    story[..., 4:] = 0  # short sentences
    n = torch.tensor([3, 10, 1, 6])[:B]
    mask = torch.arange(M)[None, :] < n[:, None]
    story[~mask] = 0
    query = torch.randint(1, V, (B, L), generator=gen)
    query[:, 3:] = 0
    return story, query, mask, time_index(mask)


@pytest.mark.parametrize("name", MEMORY_MODELS)
def test_forward_backward_no_nan_every_parameter(name, every_parameter_learns):
    torch.manual_seed(0)
    model = MODELS.create(name, vocab_size=V, memory_size=M)
    out = model(*_batch())
    logits = out["logits"] if isinstance(out, dict) else out
    assert logits.shape[0] == 4 and torch.isfinite(logits).all()
    logits.logsumexp(-1).sum().backward()
    every_parameter_learns(model)


@pytest.mark.parametrize("name", MEMORY_MODELS)
def test_unknown_kwargs_raise(name):
    with pytest.raises(RegistryError, match="unknown argument"):
        MODELS.create(name, vocab_size=V, no_such_switch=True)


@pytest.mark.parametrize("tying", ["adjacent", "layerwise"])
@pytest.mark.parametrize("encoding", ["pe", "bow"])
@pytest.mark.parametrize("linear_start", [False, True])
def test_memn2n_ignores_padding_and_batch_mates(tying, encoding, linear_start):
    torch.manual_seed(1)
    model = MODELS.create("memn2n", vocab_size=V, memory_size=M, tying=tying, encoding=encoding)
    model.set_linear_start(linear_start)
    story, query, mask, time = _batch()
    full = model(story, query, mask, time)["logits"]
    alone = model(story[:1], query[:1], mask[:1], time[:1])["logits"]
    torch.testing.assert_close(full[:1], alone)
    # more padding words and slots change nothing
    wide_story = torch.nn.functional.pad(story, (0, 3))
    wide_query = torch.nn.functional.pad(query, (0, 3))
    torch.testing.assert_close(model(wide_story, wide_query, mask, time)["logits"], full)


def _junk_padding(story, mask, time, extra_slots, seed=5):
    """The batch with ``extra_slots`` more empty slots and random words and time indices in every empty slot."""
    gen = torch.Generator().manual_seed(seed)
    story = F.pad(story, (0, 0, 0, extra_slots))
    mask = F.pad(mask, (0, extra_slots), value=False)
    time = F.pad(time, (0, extra_slots))
    story = torch.where(mask[..., None], story, torch.randint(1, V, story.shape, generator=gen))
    time = torch.where(mask, time, torch.randint(0, M, time.shape, generator=gen))
    return story, mask, time


@pytest.mark.parametrize("padding", ["mask", "attend"])
@pytest.mark.parametrize("linear_start", [False, True])
@pytest.mark.parametrize("tying", ["adjacent", "layerwise"])
def test_memn2n_ignores_what_empty_slots_hold(padding, linear_start, tying):
    """Words and time indices in empty slots never matter. Under "mask" extra empty slots change nothing
    either; under "attend" (the authors' code: empty slots are zero vectors inside the softmax) they do."""
    torch.manual_seed(4)
    model = MODELS.create("memn2n", vocab_size=V, memory_size=M + 4, padding=padding, tying=tying)
    model.set_linear_start(linear_start)
    story, query, mask, time = _batch()
    full = model(story, query, mask, time)["logits"]
    junk = _junk_padding(story, mask, time, 0)
    torch.testing.assert_close(model(junk[0], query, junk[1], junk[2])["logits"], full)
    wide = _junk_padding(story, mask, time, 4)
    wide_logits = model(wide[0], query, wide[1], wide[2])["logits"]
    if padding == "mask" or linear_start:  # without the softmax a zero vector adds nothing under either rule
        torch.testing.assert_close(wide_logits, full)
    else:
        assert not torch.allclose(wide_logits, full)


def test_kvmemnn_ignores_extra_empty_slots_with_junk():
    torch.manual_seed(6)
    model = MODELS.create("kvmemnn", vocab_size=V, memory_size=M + 4, hops=2)
    story, query, mask, time = _batch()
    wide = _junk_padding(story, mask, time, 4)
    torch.testing.assert_close(model(wide[0], query, wide[1], wide[2])["logits"], model(story, query, mask, time)["logits"])


def test_null_word_embedding_stays_zero_and_gets_no_gradient():
    model = MODELS.create("memn2n", vocab_size=V, memory_size=M)
    assert torch.equal(model.memory_table[0], torch.zeros_like(model.memory_table[0]))
    out = model(*_batch())["logits"]
    out.logsumexp(-1).sum().backward()
    assert torch.equal(model.memory_table.grad[0], torch.zeros_like(model.memory_table.grad[0]))


def test_adjacent_tying_shares_matrices_by_construction():
    """K hops need K+1 matrices under adjacent tying and W^T = C^K: no separate output matrix exists, and
    with C^K set to zero the logits are exactly zero (a separate W would leave them non-zero)."""
    model = MODELS.create("memn2n", vocab_size=V, memory_size=M, embed_dim=8, hops=3, temporal=False)
    assert model.memory_table.shape == (V, 4 * 8)
    assert [name for name, _ in model.named_parameters()] == ["memory_table"]
    story, query, mask, time = _batch()
    with torch.no_grad():
        logits = model(story, query, mask, time)["logits"]
        assert torch.equal(logits[:, 0], torch.zeros(4))  # the null word's row of W = C^K is zero
        assert logits.abs().sum() > 0
        model.memory_table[:, 3 * 8 :] = 0.0
        assert torch.equal(model(story, query, mask, time)["logits"], torch.zeros_like(logits))


def test_attention_rows_sum_to_one_over_real_memories():
    model = MODELS.create("memn2n", vocab_size=V, memory_size=M)
    story, query, mask, time = _batch()
    att = model(story, query, mask, time)["attention"]  # [B, K, M]
    torch.testing.assert_close(att.sum(-1), torch.ones(4, 3))
    assert torch.equal(att[~mask[:, None, :].expand_as(att)], torch.zeros(int((~mask).sum()) * 3))


@pytest.mark.parametrize("which", ["key_encoding", "value_encoding", "query_encoding"])
def test_kvmemnn_names_an_unknown_encoding(which):
    with pytest.raises(ValueError, match=rf"kvmemnn: {which} must be 'pe' or 'bow', got 'position'"):
        MODELS.create("kvmemnn", vocab_size=V, **{which: "position"})


def test_kvmemnn_ignores_padding_and_batch_mates():
    torch.manual_seed(2)
    model = MODELS.create("kvmemnn", vocab_size=V, memory_size=M, hops=2)
    story, query, mask, time = _batch()
    full = model(story, query, mask, time)["logits"]
    torch.testing.assert_close(full[:1], model(story[:1], query[:1], mask[:1], time[:1])["logits"])
    wide = torch.nn.functional.pad(story, (0, 2)), torch.nn.functional.pad(query, (0, 2))
    torch.testing.assert_close(model(wide[0], wide[1], mask, time)["logits"], full)


@pytest.mark.parametrize(("keys_as", "values_as", "query_as"), [("pe", "bow", "pe"), ("bow", "pe", "bow"), ("pe", "pe", "bow")])
def test_kvmemnn_equals_the_papers_equations_story_by_story(keys_as, values_as, query_as):
    """Miller et al. 2016 §3, written out per story in float64: q = A Phi_X(x), keys A Phi_K(k_h) + T(h),
    values A Phi_V(v_h) (each Phi position-encoded or a bag of words as the switches say; the defaults PE,
    bag of words, PE), p_h = softmax_h(q . key_h) over the real memories, o = sum_h p_h value_h,
    q <- R_j (q + o) for each hop, logits = B q. Padded slots hold junk words and junk time indices, which
    must not matter."""
    from overlooked.memory.functional import position_encoding

    torch.manual_seed(3)
    switches = {"key_encoding": keys_as, "value_encoding": values_as, "query_encoding": query_as}
    model = MODELS.create("kvmemnn", vocab_size=V, memory_size=M, hops=3, **switches).double()
    story, query, mask, time = _batch()
    junk_story = torch.where(mask[..., None], story, torch.randint(1, V, story.shape))
    junk_time = torch.where(mask, time, torch.randint(0, M, time.shape))
    out = model(junk_story, query, mask, junk_time)
    A, T, B_, R = model.A.detach(), model.temporal_table.detach(), model.B.detach(), model.R.detach()

    def encode(words, how):
        words = words[words > 0]
        if how == "bow":
            return A[words].sum(0)
        return (position_encoding(len(words), A.shape[1]).double() * A[words]).sum(0)

    for b in range(story.shape[0]):
        n = int(mask[b].sum())
        q = encode(query[b], query_as)
        keys = torch.stack([encode(story[b, i], keys_as) + T[time[b, i]] for i in range(n)])
        values = torch.stack([encode(story[b, i], values_as) for i in range(n)])
        for j in range(R.shape[0]):
            p = torch.softmax(keys @ q, 0)
            torch.testing.assert_close(out["attention"][b, j, :n], p)
            assert torch.equal(out["attention"][b, j, n:], torch.zeros(M - n, dtype=p.dtype))
            q = R[j] @ (q + p @ values)
        torch.testing.assert_close(out["logits"][b], B_ @ q)


@pytest.mark.filterwarnings("ignore:train.lr=0")  # lr=0 on purpose: the weights must not move
def test_per_matrix_clipping_clips_each_stacked_matrix_with_its_time_columns():
    """grad_clip_groups: each of E_0..E_K (word and temporal columns together) is clipped on its own; the
    plain per-tensor rule clips the whole stacked table as one tensor."""
    from overlooked.config import TrainConfig
    from overlooked.memory.modules import MemN2N
    from overlooked.train.trainer import clip_groups, train_step

    torch.manual_seed(0)
    model = MemN2N(vocab_size=12, memory_size=5, embed_dim=4, hops=3, temporal=True)
    story, query, mask = torch.randint(1, 12, (6, 5, 3)), torch.randint(1, 12, (6, 3)), torch.ones(6, 5, dtype=torch.bool)
    batch = {"story": story, "query": query, "memory_mask": mask, "answer": torch.randint(1, 12, (6,))}

    class Scaled(torch.nn.Module):  # sum of logits scaled per matrix block so one block is large, others small
        def forward(self, out, batch):
            return 1e4 * out["logits"].square().sum()

    cfg = TrainConfig(optimizer="sgd", lr=0.0, grad_clip=1.0, grad_clip_per_tensor=True, grad_clip_groups=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    train_step(model, batch, ("story", "query", "memory_mask"), Scaled(), opt, cfg)
    d = 4
    for i in range(4):  # E_0..E_3
        block = torch.cat([model.memory_table.grad[:, i * d : (i + 1) * d].flatten(), model.temporal_table.grad[:, i * d : (i + 1) * d].flatten()])
        assert block.norm() <= 1.0001
    assert model.memory_table.grad.norm() > 1.0001  # the table as a whole is not clipped to 1: per matrix
    params = [p for p in model.parameters() if p.grad is not None]
    assert len(clip_groups(model, params, False)) == len(params)  # off: one group per parameter, as before


@pytest.mark.filterwarnings("ignore:train.lr=0")  # lr=0 on purpose: the weights must not move
def test_spectral_clipping_measures_the_largest_singular_value():
    """grad_clip_norm=spectral: a gradient whose spectral norm is under the bound is left alone even when its
    Frobenius norm is over it; one over the bound is scaled to it."""
    from overlooked.config import TrainConfig
    from overlooked.train.trainer import group_norm, train_step

    w = torch.nn.Parameter(torch.zeros(4, 3))
    target = torch.diag(torch.tensor([3.0, 3.0, 3.0]))  # singular values 3, 3, 3: spectral 3, Frobenius 5.196
    for bound, expect in ((4.0, 3.0), (1.5, 1.5)):
        w.grad = None
        cfg = TrainConfig(optimizer="sgd", lr=0.0, grad_clip=bound, grad_clip_per_tensor=True, grad_clip_norm="spectral")

        class Lin(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.w = w

            def forward(self, x):
                return x

        class Obj(torch.nn.Module):
            def forward(self, out, batch):
                return (w[:3] * target).sum()  # gradient = target in the first three rows

        model = Lin()
        train_step(model, {"x": torch.zeros(1), "label": torch.zeros(1)}, ("x",), Obj(), torch.optim.SGD(model.parameters(), lr=0.0), cfg)
        assert abs(float(group_norm([w.grad], "spectral")) - expect) < 1e-4
    assert abs(float(group_norm([w.grad], "frobenius")) - 1.5 * 3**0.5) < 1e-4


def test_attend_padding_keeps_empty_slots_in_the_softmax_at_score_zero():
    """padding="attend" (the authors' Matlab code): each of the M - n empty slots is a zero vector with score
    0, so hop 1 gives p_i = exp(s_i) / (sum_real exp(s_j) + (M - n)) on the real slots and 1 / (same) on each empty
    one (the sink, which reads a zero vector), computed here by hand."""
    torch.manual_seed(0)
    model = MODELS.create("memn2n", vocab_size=V, memory_size=M, embed_dim=4, hops=1, padding="attend")
    story, query, mask, time = _batch()
    att = model(story, query, mask, time)["attention"][:, 0]  # [B, M]
    d = 4
    table = model.memory_table.detach()
    u = (position_encoding_bag(query, table[:, :d]))  # [B, d]
    keys = position_encoding_bag(story, table[:, :d]) + model.temporal_table.detach()[time][..., :d]  # [B, M, d]
    s = (keys @ u[..., None]).squeeze(-1)  # [B, M]
    e = torch.where(mask, torch.exp(s), torch.ones_like(s))  # an empty slot: exp(0)
    expected = e / e.sum(-1, keepdim=True)
    torch.testing.assert_close(att, expected)
    real = (att * mask).sum(-1)  # what the real sentences get; the rest goes to the sink
    assert (real[~mask.all(-1)] < 1).all() and torch.allclose(real[mask.all(-1)], torch.ones(int(mask.all(-1).sum())))


def position_encoding_bag(words: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """``sum_j l_j * E x_j`` with the paper's l_kj and J = each sentence's own word count, by loops."""
    out = torch.zeros(*words.shape[:-1], table.shape[1])
    d = table.shape[1]
    flat, res = words.reshape(-1, words.shape[-1]), out.view(-1, d)
    for r, sentence in enumerate(flat):
        real = [int(w) for w in sentence if w != 0]
        J = len(real)
        for j, w in enumerate(real, 1):
            res[r] += torch.tensor([(1 - j / J) - (k / d) * (1 - 2 * j / J) for k in range(1, d + 1)]) * table[w]
    return out


def test_attend_padding_equals_mask_under_linear_start():
    """Without the softmax (linear start) empty slots add zero vectors either way: the two modes agree."""
    torch.manual_seed(0)
    a = MODELS.create("memn2n", vocab_size=V, memory_size=M, padding="mask")
    b = MODELS.create("memn2n", vocab_size=V, memory_size=M, padding="attend")
    b.load_state_dict(a.state_dict())
    for m in (a, b):
        m.set_linear_start(True)
    story, query, mask, time = _batch()
    torch.testing.assert_close(a(story, query, mask, time)["logits"], b(story, query, mask, time)["logits"])
    with pytest.raises(ValueError, match="padding must be"):
        MODELS.create("memn2n", vocab_size=V, padding="zero")


def test_padded_time_pe_matches_the_authors_matrix_by_hand():
    """pe_length="padded_time" (the authors' Matlab code): one centred PE matrix over J = L + 1 columns, the
    time word in column J of every memory, the question reading columns 1..L; rebuilt here by loops from
    ``l_kj = 1 + 4 (k - (d+1)/2)(j - (J+1)/2) / (d J)`` and compared on hop 1's attention and the output."""
    torch.manual_seed(0)
    d = 4
    model = MODELS.create("memn2n", vocab_size=V, memory_size=M, embed_dim=d, hops=1, encoding="pe_centered", pe_length="padded_time", padding="attend")
    story, query, mask, time = _batch()
    out = model(story, query, mask, time)
    L = story.shape[-1]
    J = L + 1
    W = torch.tensor([[1 + 4 * (k - (d + 1) / 2) * (j - (J + 1) / 2) / (d * J) for j in range(1, J + 1)] for k in range(1, d + 1)])  # [d, J]
    table, temporal = model.memory_table.detach(), model.temporal_table.detach()
    A, C = table[:, :d], table[:, d : 2 * d]

    def encode(words, E):  # sum_j W[:, j] * E[x_j] over the padded columns (the null word is zero)
        return sum(W[:, j] * E[words[..., j]] for j in range(words.shape[-1]))

    u = encode(query, A)  # [B, d]
    keys = (encode(story, A) + W[:, J - 1] * temporal[time][..., :d]) * mask[..., None]  # empty slots: null words
    values = (encode(story, C) + W[:, J - 1] * temporal[time][..., d : 2 * d]) * mask[..., None]
    p = torch.softmax((keys @ u[..., None]).squeeze(-1), -1)  # [B, M], empty slots at score 0
    torch.testing.assert_close(out["attention"][:, 0], p)
    o = (p[..., None] * values).sum(1)
    logits = (u + o) @ F.pad(C[1:], (0, 0, 1, 0)).T
    torch.testing.assert_close(out["logits"], logits)


@pytest.mark.parametrize("tying", ["adjacent", "layerwise"])
@pytest.mark.parametrize("softmax", [True, False])
def test_memn2n_gradients_pass_gradcheck(tying, softmax):
    """The fast forward (only the real memories encoded and read, packed; story and query in one bag) has the
    gradients of its own function, in float64, with and without the softmax (linear start)."""
    torch.manual_seed(0)
    model = MODELS.create("memn2n", vocab_size=V, memory_size=M, embed_dim=4, hops=2, tying=tying).double()
    model.set_linear_start(not softmax)
    story, query, mask, time = _batch(B=3)
    names = [n for n, _ in model.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_() for p in model.parameters())

    def logits(*ps):
        return torch.func.functional_call(model, dict(zip(names, ps)), (story, query, mask, time))["logits"]

    assert torch.autograd.gradcheck(logits, params, atol=1e-6)


def _dense_reference(model, story, query, mask, time):
    """MemN2N as the paper writes it, on every padded slot: encode all M slots, add T(i), zero the empty
    slots' memories, and address with MF.memory_hop (masked: -inf on empty slots; attend: all slots at their
    score). The module computes only the real slots (MF.memory_hop_packed); this is its reference."""
    from overlooked.memory import functional as MF

    d, K = model.embed_dim, model.hops
    L = max(story.shape[-1], query.shape[-1])
    story, query = F.pad(story, (0, L - story.shape[-1])), F.pad(query, (0, L - query.shape[-1]))  # one width L: J of a padded encoding
    if model.tying == "adjacent":
        mem = MF.encode_sentences(story, model.memory_table, model.encoding, d, model.pe_length)
        u = MF.encode_sentences(query, model.memory_table, model.encoding, d, model.pe_length)[:, :d]
    else:
        mem = MF.encode_sentences(story, model.memory_table, model.encoding, d, model.pe_length)
        u = MF.encode_sentences(query, model.query_table, model.encoding, d, model.pe_length)
    if model.temporal_table is not None:
        temporal = model.temporal_table[time]
        if model.pe_length == "padded_time" and model.encoding != "bow":
            temporal = temporal * MF.time_word_weight(L, model.encoding, d, dtype=temporal.dtype).to(temporal.device).repeat(model.temporal_table.shape[1] // d)
        mem = mem + temporal
    mem = mem * mask[..., None]
    in_softmax = mask if model.padding == "mask" else torch.ones_like(mask)
    parts = [mem[..., i * d : (i + 1) * d] for i in range(mem.shape[-1] // d)]
    attention = []
    for k in range(K):
        keys, values = (parts[k], parts[k + 1]) if model.tying == "adjacent" else (parts[0], parts[1])
        o, p = MF.memory_hop(u, keys, values, in_softmax, model.use_softmax)
        u = (u if model.tying == "adjacent" else model.H(u)) + o
        attention.append(p)
    W = F.pad(model.memory_table[1:, K * d :], (0, 0, 1, 0)) if model.tying == "adjacent" else model.output
    return u @ W.T, torch.stack(attention, 1)


def _switch_grid(test):
    """The module's switches that change its arithmetic: tying, padding, encoding and J, linear start, fused path."""
    marks = [
        pytest.mark.parametrize("tying", ["adjacent", "layerwise"]),
        pytest.mark.parametrize("padding", ["mask", "attend"]),
        pytest.mark.parametrize("encoding,pe_length", [("pe", "sentence"), ("bow", "sentence"), ("pe", "padded"), ("pe_centered", "padded_time")]),
        pytest.mark.parametrize("linear_start", [False, True]),
        pytest.mark.parametrize("fused", [True, False]),
    ]
    for mark in reversed(marks):
        test = mark(test)
    return test


@_switch_grid
def test_memn2n_packed_forward_equals_the_dense_reference(tying, padding, encoding, pe_length, linear_start, fused):
    """Both paths of the module (fused: one node with a hand-written backward; not: autograd through the
    functional pieces) give the dense reference's logits, attention and every parameter gradient, also
    for a loss on the attention."""
    torch.manual_seed(3)
    model = MODELS.create("memn2n", vocab_size=V, memory_size=M, embed_dim=6, hops=3, tying=tying, padding=padding, encoding=encoding, pe_length=pe_length, fused=fused).double()
    model.set_linear_start(linear_start)
    story, query, mask, time = _batch()
    mask[2] = False  # a story with no sentence at all
    story[2] = 0
    query = F.pad(query, (0, 3))  # a question wider than the sentences: the padded width L decides J
    from overlooked import native
    from overlooked.memory import kernels

    before = kernels.CALLS["forward"]
    out = model(story, query, mask, time)
    assert (kernels.CALLS["forward"] > before) == (fused and tying == "adjacent" and native.compiler() is not None)  # the C++ hops ran
    logits, attention = _dense_reference(model, story, query, mask, time)
    torch.testing.assert_close(out["logits"], logits)
    torch.testing.assert_close(out["attention"], attention)
    weigh = torch.randn(attention.shape, dtype=attention.dtype)  # a loss on the attention (e.g. supervising the hops)
    for loss, ref_loss in [(out["logits"].square().sum(), logits.square().sum()), ((out["attention"] * weigh).sum(), (attention * weigh).sum())]:
        grads = torch.autograd.grad(loss, list(model.parameters()), retain_graph=True, allow_unused=True)
        ref = torch.autograd.grad(ref_loss, list(model.parameters()), retain_graph=True, allow_unused=True)
        for g, r, w in zip(grads, ref, model.parameters()):  # None: the loss does not reach it (as zeros, to compare)
            torch.testing.assert_close(torch.zeros_like(w) if g is None else g, torch.zeros_like(w) if r is None else r)
    empty = (torch.zeros_like(story[:2]), query[:2], torch.zeros_like(mask[:2]), time[:2])  # no sentence in the batch
    torch.testing.assert_close(model(*empty)["logits"], _dense_reference(model, *empty)[0])


@pytest.mark.parametrize("fused", [True, False])
def test_memn2n_flops_count_the_packed_hops_as_the_dense_products(fused):
    """The packed hops' dot products run as element-wise ops the FLOP counter does not see (and the fused
    path skips the null word's constant answer score); uncounted_flops adds them back, so a story with
    every slot real counts what the dense reference's matrix products count."""
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    model = MODELS.create("memn2n", vocab_size=V, memory_size=M, embed_dim=6, hops=3, fused=fused)
    story, query, mask, time = _batch()
    full = (story[1:2], query[1:2], mask[1:2], time[1:2])  # story 1 fills all M slots
    assert bool(full[2].all())
    counted, dense = FlopCounterMode(display=False), FlopCounterMode(display=False)
    with counted, torch.no_grad():
        model(*full)
    with dense, torch.no_grad():
        _dense_reference(model, *full)
    assert counted.get_total_flops() + model.uncounted_flops(*full) == dense.get_total_flops()
    # 2 products (address, read) x 2 FLOPs x 3 hops x d = 6 x 20 real memories (3 + 10 + 1 + 6); fused: + 2 d per question (4)
    assert model.uncounted_flops(*_batch()) == 1440 + (2 * 6 * 4 if fused else 0)


@pytest.mark.parametrize(("name", "linear_start"), [("memn2n", False), ("memn2n", True), ("kvmemnn", False)])
def test_padding_before_and_between_sentences_changes_nothing(name, linear_start):
    """A story whose empty slots stand anywhere (not only after the sentences) reads as the left-aligned one."""
    torch.manual_seed(2)
    model = MODELS.create(name, vocab_size=V, memory_size=2 * M)
    if linear_start:
        model.set_linear_start(True)
    story, query, mask, time = _batch()
    gen = torch.Generator().manual_seed(4)
    spread_story = torch.zeros(story.shape[0], 2 * M, L, dtype=story.dtype)
    for b in range(story.shape[0]):
        n = int(mask[b].sum())
        slots = torch.randperm(2 * M, generator=gen)[:n].sort().values
        spread_story[b, slots] = story[b, :n]
    spread_mask = spread_story.ne(0).any(-1)  # the mask the input check's message suggests
    left = model(torch.nn.functional.pad(story, (0, 0, 0, M)), query, torch.nn.functional.pad(mask, (0, M)), torch.nn.functional.pad(time, (0, M)))["logits"]
    torch.testing.assert_close(model(spread_story, query, spread_mask, time_index(spread_mask))["logits"], left)


def test_the_package_exports_what_networks_are_built_from():
    import overlooked.memory as MEM
    from overlooked.memory import memnn, modules, training

    assert MEM.MemN2N is modules.MemN2N and MEM.KVMemNN is modules.KVMemNN and MEM.MemNN is memnn.MemNN
    assert MEM.LinearStart is training.LinearStart and MEM.functional.time_index is time_index
    assert all(getattr(MEM, name) is not None for name in MEM.__all__)


@pytest.mark.parametrize("pe_length", ["padded", "padded_time"])
def test_pe_length_with_bag_of_words_warns_because_it_changes_nothing(pe_length):
    """Bag of words weighs every word 1, so J of the position encodings is unused: the same weights give
    the same logits for every pe_length, and asking for one other than the default says so."""
    import re
    import warnings

    from overlooked.config import ConfigWarning
    from overlooked.memory.modules import MemN2N

    torch.manual_seed(0)
    story, query = torch.randint(1, 30, (3, 6, 5)), torch.randint(1, 30, (3, 4))
    story[:, 4:] = 0
    story[:, :, 3:] = 0
    mask, time = (story != 0).any(-1), torch.arange(6).expand(3, 6)
    plain = MemN2N(30, memory_size=6, encoding="bow")
    with pytest.warns(ConfigWarning, match=re.escape(f"MemN2N pe_length={pe_length!r} (it sets J of the position encodings; encoding='bow' weighs every word 1) has no effect")):
        other = MemN2N(30, memory_size=6, encoding="bow", pe_length=pe_length)
    other.load_state_dict(plain.state_dict())
    assert torch.equal(other(story, query, mask, time)["logits"], plain(story, query, mask, time)["logits"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConfigWarning)
        MemN2N(30, memory_size=6, encoding="pe", pe_length=pe_length)  # with PE it changes J: no warning


@pytest.mark.parametrize("fused", [True, False])
def test_memn2n_trains_after_a_forward_under_inference_mode(fused):
    """The position encoding's cached -k/d constant is made outside inference mode, so a model that first ran
    under torch.inference_mode() (evaluation, explain) still trains (a review found the cache broke this)."""
    from overlooked.memory import functional as MF

    MF._SCALES.clear()
    model = MODELS.create("memn2n", vocab_size=V, memory_size=M, embed_dim=7, hops=2, fused=fused)  # a shape no other test uses
    story, query, mask, time = _batch()
    with torch.inference_mode():
        model(story, query, mask, time)
    model(story, query, mask, time)["logits"].square().sum().backward()
    assert model.memory_table.grad is not None and bool(model.memory_table.grad.abs().sum() > 0)


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.gpu
@CUDA
@_switch_grid
def test_memn2n_on_cuda_equals_the_dense_reference(tying, padding, encoding, pe_length, linear_start, fused):
    """On a GPU the fused node runs its PyTorch-operation backend (the C++ kernel is the CPU's): in float64 it
    gives the dense reference's logits, attention and every gradient, as on the CPU, and no C++ call is made."""
    from overlooked.memory import kernels

    torch.manual_seed(3)
    model = MODELS.create("memn2n", vocab_size=V, memory_size=M, embed_dim=6, hops=3, tying=tying, padding=padding, encoding=encoding, pe_length=pe_length, fused=fused)
    model = model.double().cuda()
    model.set_linear_start(linear_start)
    story, query, mask, time = (t.cuda() for t in _batch())
    mask[2] = False
    story[2] = 0
    before = dict(kernels.CALLS)
    out = model(story, query, mask, time)
    assert kernels.CALLS == before
    assert out["logits"].is_cuda and out["attention"].is_cuda
    logits, attention = _dense_reference(model, story, query, mask, time)
    torch.testing.assert_close(out["logits"], logits)
    torch.testing.assert_close(out["attention"], attention)
    weigh = torch.randn(attention.shape, dtype=attention.dtype, device="cuda")
    loss, ref_loss = out["logits"].square().sum() + (out["attention"] * weigh).sum(), logits.square().sum() + (attention * weigh).sum()
    grads = torch.autograd.grad(loss, list(model.parameters()), allow_unused=True)
    ref = torch.autograd.grad(ref_loss, list(model.parameters()), allow_unused=True)
    for g, r, w in zip(grads, ref, model.parameters()):
        torch.testing.assert_close(torch.zeros_like(w) if g is None else g, torch.zeros_like(w) if r is None else r)


@pytest.mark.gpu
@CUDA
def test_memn2n_trains_alike_on_cuda_and_cpu_and_under_bf16_autocast():
    """Twenty trainer steps (summed cross-entropy, per-matrix clipping at 40, SGD) of the fused model on the GPU
    end at the CPU's weights (float32, sums in another order); fused = autograd path on the GPU; under the
    trainer's bf16 autocast the step runs, its loss stays finite, and the fused node computes in float32."""
    from overlooked.config import TrainConfig
    from overlooked.objectives import CrossEntropy
    from overlooked.train import trainer

    cfg = TrainConfig(optimizer="sgd", lr=0.01, grad_clip=40.0, grad_clip_per_tensor=True)
    objective = CrossEntropy(target_key="answer", reduction="sum")
    gen = torch.Generator().manual_seed(0)
    batches = []
    for i in range(20):
        story, query, mask, time = _batch(seed=i)
        batches.append({"story": story, "query": query, "mask": mask, "time": time, "answer": torch.randint(1, V, (4,), generator=gen)})
    keys = ("story", "query", "mask", "time")

    def train(device, fused, bf16=False):
        torch.manual_seed(0)
        model = MODELS.create("memn2n", vocab_size=V, memory_size=M, embed_dim=8, hops=3, fused=fused).to(device)
        optimizer = trainer.build_optimizer(cfg, model.parameters())
        step_cfg = dataclasses.replace(cfg, bf16=bf16)
        losses = [trainer.train_step(model, {k: v.to(device) for k, v in b.items()}, keys, objective, optimizer, step_cfg)[0] for b in batches]
        return model, losses

    cpu, cpu_losses = train("cpu", True)
    gpu, gpu_losses = train("cuda", True)
    gpu_autograd, _ = train("cuda", False)
    for a, b, c in zip(cpu.parameters(), gpu.parameters(), gpu_autograd.parameters()):
        torch.testing.assert_close(b.cpu(), a, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(c, b, rtol=1e-4, atol=1e-5)
    assert gpu_losses == pytest.approx(cpu_losses, rel=1e-4)
    half, half_losses = train("cuda", True, bf16=True)
    assert all(torch.isfinite(torch.tensor(half_losses))) and half_losses[0] == pytest.approx(cpu_losses[0], rel=2e-2)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = half(*(batches[0][k].cuda() for k in keys))
    assert out["logits"].dtype == torch.float32  # the fused node is not autocast: the hops run in the tables' dtype


@pytest.mark.parametrize("name", ["memn2n", "memn2n_layerwise", "memn2n_unfused", "kvmemnn"])
def test_memory_models_under_torch_func_grad(name):
    """torch.func.grad of a functional_call gives autograd's gradients: the fused MemN2N reads through its
    unfused path under a transform (a transform cannot run its hand-written node), and a plain call after
    the transform still runs the fused node (the -k/d constant made inside is not cached)."""
    from torch.func import functional_call, grad

    kwargs = {"memn2n_layerwise": {"tying": "layerwise"}, "memn2n_unfused": {"fused": False}}.get(name, {})
    model = MODELS.create(name.split("_")[0], vocab_size=V, memory_size=M, embed_dim=9, hops=2, **kwargs).double()
    story, query, mask, time = _batch()
    from overlooked.memory import functional as MF
    from overlooked.memory import kernels

    MF._SCALES.clear()
    params = {k: v.detach() for k, v in model.named_parameters()}
    got = grad(lambda p: functional_call(model, p, (story, query, mask, time))["logits"].logsumexp(-1).sum())(params)
    before = dict(kernels.CALLS)
    model(story, query, mask, time)["logits"].logsumexp(-1).sum().backward()
    for k, p in model.named_parameters():
        assert p.grad is not None and torch.allclose(got[k], p.grad, rtol=0, atol=1e-12), k
    if name == "memn2n" and kernels.usable(model.memory_table):  # the plain call after the transform ran the fused C++ node
        assert kernels.CALLS["forward"] > before["forward"] and kernels.CALLS["backward"] > before["backward"]
    if name == "memn2n":  # a transform of the temporal table alone reads through the unfused path too
        only = {"temporal_table": model.temporal_table.detach()}
        g = grad(lambda p: functional_call(model, p, (story, query, mask, time))["logits"].logsumexp(-1).sum())(only)
        assert torch.allclose(g["temporal_table"], model.temporal_table.grad, rtol=0, atol=1e-12)


@pytest.mark.parametrize("tying", ["adjacent", "layerwise"])
@pytest.mark.parametrize("pe_length", ["sentence", "padded", "padded_time"])
def test_memn2n_question_and_story_of_other_widths(tying, pe_length):
    """A question wider than the story's sentences (own tensors; bAbI gives both one width) reads as both
    padded to the wider width: padding the story to it changes nothing, under both tyings (layer-wise
    encoded the story at its own width while the time word's weight took the wider one). With J = each
    sentence's length, wider padding of both changes nothing either; with a padded J it is another J."""
    model = MODELS.create("memn2n", vocab_size=V, memory_size=M, embed_dim=8, hops=2, tying=tying, pe_length=pe_length).double()
    story, _, mask, time = _batch()
    query = torch.randint(1, V, (story.shape[0], L + 2))
    want = model(story, query, mask, time)["logits"]
    assert torch.allclose(model(F.pad(story, (0, 2)), query, mask, time)["logits"], want, rtol=0, atol=1e-12)
    wider = model(F.pad(story, (0, 4)), F.pad(query, (0, 2)), mask, time)["logits"]
    assert torch.allclose(wider, want, rtol=0, atol=1e-12) == (pe_length == "sentence")


@pytest.mark.parametrize("name", ["memn2n", "kvmemnn", "lstm_reader", "transformer_reader", "transformer_facts"])
def test_text_models_refuse_zero_classes(name):
    """num_classes=0 is refused (it silently became the vocabulary's size); None still means the vocabulary."""
    with pytest.raises(ValueError, match=f"{name}: num_classes must be an int >= 1, got 0"):
        MODELS.create(name, vocab_size=V, num_classes=0)
    assert MODELS.create(name, vocab_size=V, num_classes=None).num_classes == V
