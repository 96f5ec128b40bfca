"""Whole memory models under torch.func: a vmap over stacked parameters (a model ensemble, as
``torch.func.stack_module_state`` makes it) equals the models run one by one, and per-example gradients (a
vmap of ``grad`` over the stories) equal autograd on each story alone, the fused C++ path included as the
reference. Under a vmap over stories the packed layout (a ``nonzero`` whose length differs per story) gives way
to every slot read as a zero vector when empty (``all_slots``), and the sentence bags to a dense weighted sum."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, stack_module_state, vmap

from overlooked.memory import functional as MF
from overlooked.memory.modules import KVMemNN, MemN2N

V, M, L = 13, 6, 5

CONFIGS = {
    "adjacent_pe_temporal": lambda: MemN2N(V, memory_size=M, embed_dim=4, hops=3),
    "adjacent_padded_time_attend": lambda: MemN2N(V, memory_size=M, embed_dim=4, hops=2, pe_length="padded_time", padding="attend"),
    "adjacent_centered_linear_start": lambda: _linear_start(MemN2N(V, memory_size=M, embed_dim=4, hops=2, encoding="pe_centered")),
    "layerwise_bow": lambda: MemN2N(V, memory_size=M, embed_dim=4, hops=2, encoding="bow", temporal=False, tying="layerwise"),
    "kvmemnn": lambda: KVMemNN(V, memory_size=M, embed_dim=4, hops=2),
}


def _linear_start(model: MemN2N) -> MemN2N:
    model.set_linear_start(True)
    return model


def _batch(B: int = 4) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stories of different lengths (one with no sentence at all), padded words inside sentences, and
    nonzero words in the empty slots, which no model may read."""
    g = torch.Generator().manual_seed(1)
    story = torch.randint(1, V, (B, M, L), generator=g)
    story[:, :, 3:] = 0  # padded words
    story[0, :, 2:] = 0
    mask = torch.zeros(B, M, dtype=torch.bool)
    for b, n in enumerate((3, 5, 0, 6)[:B]):
        mask[b, :n] = True
    query = torch.randint(1, V, (B, L), generator=g)
    query[:, 4:] = 0
    answer = torch.randint(0, V, (B,), generator=g)
    return story, query, mask, answer


def _make(name: str, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return CONFIGS[name]().double()


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_ensemble_vmap_equals_the_models_one_by_one(name):
    models = [_make(name, seed) for seed in range(3)]
    params, buffers = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")
    story, query, mask, _ = _batch()

    def run(p, b):
        out = functional_call(base, (p, b), (story, query, mask))
        return out["logits"], out["attention"]

    logits, attention = vmap(run)(params, buffers)
    for i, model in enumerate(models):
        out = model(story, query, mask)
        assert torch.allclose(logits[i], out["logits"], rtol=0, atol=1e-12)
        assert torch.allclose(attention[i], out["attention"], rtol=0, atol=1e-12)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_per_example_gradients_equal_autograd_on_each_story(name):
    model = _make(name, 0)
    params = {k: v.detach() for k, v in model.named_parameters()}
    story, query, mask, answer = _batch()

    def loss(p, s, q, m, a):
        return F.cross_entropy(functional_call(model, p, (s[None], q[None], m[None]))["logits"], a[None], reduction="sum")

    per_example = vmap(grad(loss), in_dims=(None, 0, 0, 0, 0))(params, story, query, mask, answer)
    for b in range(story.shape[0]):
        model.zero_grad()
        F.cross_entropy(model(story[b : b + 1], query[b : b + 1], mask[b : b + 1])["logits"], answer[b : b + 1], reduction="sum").backward()
        for k, p in model.named_parameters():
            assert torch.allclose(per_example[k][b], p.grad, rtol=0, atol=1e-12), (name, k, b)
    # the batch's gradient is the sum of the per-example ones
    model.zero_grad()
    F.cross_entropy(model(story, query, mask)["logits"], answer, reduction="sum").backward()
    for k, p in model.named_parameters():
        assert torch.allclose(per_example[k].sum(0), p.grad, rtol=0, atol=1e-11)


def test_vmap_over_stories_with_plain_parameters_runs_unfused_and_equals_the_fused_model():
    """A vmap over the inputs alone (the parameters are plain tensors) must not reach the fused node, which
    refuses transforms: it reads every slot, and its answer equals the fused model's on each story."""
    model = _make("adjacent_pe_temporal", 0)
    assert model.fused
    story, query, mask, _ = _batch()
    out = vmap(lambda s, q, m: model(s[None], q[None], m[None])["logits"][0])(story, query, mask)
    assert torch.allclose(out, model(story, query, mask)["logits"], rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_vmap_over_some_inputs_only(name):
    """Inside a transform the plain tensors take the transform path too: a vmap over the questions with one
    shared story, over the time indices alone, and over the targets of a model called on plain inputs (no
    input of the model is the transform's) each equal the plain model."""
    model = _make(name, 0)
    story, query, mask, answer = _batch()
    one_story, one_mask = story[1:2], mask[1:2]
    time = torch.stack([torch.randperm(M, generator=torch.Generator().manual_seed(i)) for i in range(4)])
    expected = model(one_story.expand(4, -1, -1), query, one_mask.expand(4, -1))["logits"]
    got = vmap(lambda q: model(one_story, q[None], one_mask)["logits"][0])(query)
    assert torch.allclose(got, expected, rtol=0, atol=1e-12)
    expected = model(one_story.expand(4, -1, -1), query[:1].expand(4, -1), one_mask.expand(4, -1), time)["logits"]
    got = vmap(lambda t: model(one_story, query[:1], one_mask, t[None])["logits"][0])(time)
    assert torch.allclose(got, expected, rtol=0, atol=1e-12)
    plain = F.cross_entropy(model(story, query, mask)["logits"], answer)
    got = vmap(lambda a: F.cross_entropy(model(story, query, mask)["logits"], a))(torch.stack([answer, answer.flip(0)]))
    assert torch.allclose(got[0], plain, rtol=0, atol=1e-12) and not torch.allclose(got[1], plain, rtol=0, atol=1e-6)


@pytest.mark.parametrize("encoding", ["pe", "pe_centered", "bow"])
@pytest.mark.parametrize("pe_length", ["sentence", "padded", "padded_time"])
def test_dense_bags_equal_the_packed_bags(encoding, pe_length):
    story, _, _, _ = _batch()
    table = torch.randn(V, 3 * 4, dtype=torch.float64)
    table[0] = 7.0  # the null word's row is never read, whatever it holds
    packed = MF.encode_sentences(story, table, encoding, 4, pe_length)
    dense = vmap(lambda w: MF.encode_sentences(w, table, encoding, 4, pe_length))(story)
    assert torch.allclose(dense, packed, rtol=0, atol=1e-12)


def test_all_slots_read_as_zero_vectors_give_the_packed_hop():
    torch.manual_seed(0)
    mask = torch.tensor([[True, True, False], [False, False, False]])
    u, mem = torch.randn(2, 4, dtype=torch.float64), torch.randn(6, 8, dtype=torch.float64)
    slots, owner = MF.all_slots(mask)
    full = mem * mask.reshape(-1, 1)
    packed_slots, packed_owner = MF.pack_memories(mask)
    for softmax in (True, False):
        a = MF.memory_hop_packed(u, full[:, :4], full[:, 4:], slots, owner, MF.mask_bias(mask), softmax)
        b = MF.memory_hop_packed(u, mem[packed_slots, :4], mem[packed_slots, 4:], packed_slots, packed_owner, MF.mask_bias(mask), softmax)
        assert all(torch.allclose(x, y, rtol=0, atol=1e-12) for x, y in zip(a, b))


# ---------------------------------------------------------------------------------------------------------
# MemNN (hard-max hops, margin ranking loss) and the bAbI baselines under the same transforms
# ---------------------------------------------------------------------------------------------------------

MEMNN_NAMES = ("memnn", "memnn_am_ng_nl")


def _registered(name: str, seed: int) -> torch.nn.Module:
    from overlooked.registry import MODELS

    torch.manual_seed(seed)
    return MODELS.get(name)(vocab_size=V).double()


@pytest.mark.parametrize("name", MEMNN_NAMES)
def test_memnn_ensemble_and_per_story_vmap_equal_the_plain_model(name):
    """The hard hops (the write-time loop of [W14] §3.4 in torch operations under a transform, the early stop
    when every question has stopped skipped) choose what the plain model chooses, and answer the same."""
    story, query, mask, _ = _batch()
    models = [_registered(name, seed) for seed in range(3)]
    params, buffers = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")
    logits, chosen = vmap(lambda p, b: (lambda o: (o["logits"], o["chosen"]))(functional_call(base, (p, b), (story, query, mask))))(params, buffers)
    for i, model in enumerate(models):
        out = model(story, query, mask)
        assert torch.equal(chosen[i], out["chosen"]) and torch.allclose(logits[i], out["logits"], rtol=0, atol=1e-12)
    one = models[0]
    out = vmap(lambda s, q, m: (lambda o: (o["logits"][0], o["chosen"][0]))(one(s[None], q[None], m[None])))(story, query, mask)
    ref = one(story, query, mask)
    assert torch.equal(out[1], ref["chosen"]) and torch.allclose(out[0], ref["logits"], rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", MEMNN_NAMES)
def test_memnn_per_example_gradients_of_the_ranking_loss(name):
    from overlooked.memory.memnn_objective import memnn_ranking_loss

    story, query, mask, answer = _batch()
    supporting = torch.tensor([[0, 2], [4, -1], [-1, -1], [5, 1]])
    model = _registered(name, 0)
    params = {k: v.detach() for k, v in model.named_parameters()}

    def loss(p, s, q, m, sup, a):
        out = functional_call(model, p, (s[None], q[None], m[None]), {"supporting": sup[None]})
        return memnn_ranking_loss(out["o_margin"], out["o_negative"], out["r_true"], a[None]).sum()

    per_example = vmap(grad(loss), in_dims=(None, 0, 0, 0, 0, 0))(params, story, query, mask, supporting, answer)
    for b in range(story.shape[0]):
        model.zero_grad()
        out = model(story[b : b + 1], query[b : b + 1], mask[b : b + 1], supporting=supporting[b : b + 1])
        memnn_ranking_loss(out["o_margin"], out["o_negative"], out["r_true"], answer[b : b + 1]).sum().backward()
        for k, p in model.named_parameters():
            expected = torch.zeros_like(p) if p.grad is None else p.grad
            assert torch.allclose(per_example[k][b], expected, rtol=0, atol=1e-12), (name, k, b)


def test_sequential_choice_in_torch_equals_the_numpy_loop():
    """select_memory's write-time loop: the torch form a transform runs equals the NumPy loop, ties included
    (equal scores, equal write times), and picks nothing where no slot is valid."""
    from overlooked.memory import memnn

    g = torch.Generator().manual_seed(3)
    B, Mx = 64, 7
    A = torch.randint(-2, 3, (B, Mx), generator=g).double()  # small integers: many ties
    c = torch.randint(-1, 2, (B, 3), generator=g).double()
    t = torch.randint(0, 4, (B, Mx), generator=g)
    valid = torch.rand(B, Mx, generator=g) < 0.7
    valid[0] = False
    t_x = torch.full((B,), -1)
    numpy_choice = memnn.select_memory(A, c, t_x, t, valid)
    torch_choice = vmap(lambda a, cc, tx, tt, v: memnn.select_memory(a[None], cc[None], tx[None], tt[None], v[None])[0])(A, c, t_x, t, valid)
    assert torch.equal(torch_choice, numpy_choice)
    assert numpy_choice[0] == -1 and (numpy_choice[1:] >= 0).all() == valid[1:].any(-1).all()
    # float64 scores apart by less than float32 resolves: both loops compare in float64
    A = 1.0 + torch.rand(B, Mx, generator=g, dtype=torch.float64) * 1e-9
    c = torch.rand(B, 3, generator=g, dtype=torch.float64) * 1e-9
    numpy_choice = memnn.select_memory(A, c, t_x, t, valid)
    torch_choice = vmap(lambda a, cc, tx, tt, v: memnn.select_memory(a[None], cc[None], tx[None], tt[None], v[None])[0])(A, c, t_x, t, valid)
    assert torch.equal(torch_choice, numpy_choice)
    assert not torch.equal(numpy_choice, memnn.select_memory(A.float(), c.float(), t_x, t, valid))  # float32 would choose otherwise


@pytest.mark.parametrize("name", ["transformer_reader", "transformer_facts", "lstm_reader"])
def test_baselines_per_example_gradients_and_ensembles(name):
    """The bAbI baselines read the full padded width under a vmap over stories (the longest-sample trim and
    the Transformer's length groups read values): per-example gradients equal autograd on each story. An
    ensemble vmap runs them all (the LSTM reader as lstm_scan: PyTorch's fused LSTM has no batching rule)."""
    story, query, mask, answer = _batch()
    model = _registered(name, 0).eval()  # no dropout: the same function every call
    tol = 1e-10
    params = {k: v.detach() for k, v in model.named_parameters()}

    def loss(p, s, q, m, a):
        return F.cross_entropy(functional_call(model, p, (s[None], q[None], m[None])), a[None], reduction="sum")

    per_example = vmap(grad(loss), in_dims=(None, 0, 0, 0, 0))(params, story, query, mask, answer)
    for b in range(story.shape[0]):
        model.zero_grad()
        F.cross_entropy(model(story[b : b + 1], query[b : b + 1], mask[b : b + 1]), answer[b : b + 1], reduction="sum").backward()
        for k, p in model.named_parameters():
            expected = torch.zeros_like(p) if p.grad is None else p.grad
            assert torch.allclose(per_example[k][b], expected, rtol=0, atol=tol), (name, k, b)
    models = [_registered(name, seed).eval() for seed in range(2)]
    params, buffers = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")
    logits = vmap(lambda p, b: functional_call(base, (p, b), (story, query, mask)))(params, buffers)
    for i, m in enumerate(models):
        assert torch.allclose(logits[i], m(story, query, mask), rtol=0, atol=1e-10)


@pytest.mark.parametrize("name", ["adjacent_pe_temporal", "layerwise_bow", "kvmemnn", "lstm_reader", "memnn", "transformer_reader"])
def test_forward_mode(name):
    """jvp through MemN2N, KV-MemNN and the LSTM reader equals the Jacobian (reverse mode) times the tangent; MemNN and the
    Transformer reader stop in PyTorch, which has no forward derivative of embedding_bag / CPU flash attention."""
    from torch.func import jacrev, jvp

    model = _make(name, 0) if name in CONFIGS else _registered(name, 0).eval()
    story, query, mask, _ = _batch()
    params = {k: v.detach() for k, v in model.named_parameters()}
    tangent = {k: torch.randn_like(v) for k, v in params.items()}

    def logits(p):
        out = functional_call(model, p, (story, query, mask))
        return out["logits"] if isinstance(out, dict) else out

    if name in MEMNN_NAMES or name == "transformer_reader":
        with pytest.raises((RuntimeError, NotImplementedError), match="forward|derivative|jvp"):
            jvp(logits, (params,), (tangent,))
        return
    _, forward = jvp(logits, (params,), (tangent,))
    jac = jacrev(logits)(params)
    reverse = sum((jac[k] * tangent[k]).flatten(2).sum(-1) for k in params)
    assert torch.allclose(forward, reverse, rtol=0, atol=1e-10)


def test_lstm_scan_equals_torch_lstm():
    """The step-by-step cell the LSTM reader runs under a transform equals nn.LSTM, values and gradients."""
    from overlooked.baselines.lstm import lstm_scan

    torch.manual_seed(0)
    lstm = torch.nn.LSTM(3, 5, batch_first=True).double()
    x = torch.randn(4, 7, 3, dtype=torch.float64, requires_grad=True)
    weights = (lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0, lstm.bias_hh_l0)
    ours = lstm_scan(x, *weights)
    theirs, _ = lstm(x)
    assert torch.allclose(ours, theirs, rtol=0, atol=1e-12)
    g1 = torch.autograd.grad(ours.square().sum(), (x, *weights))
    g2 = torch.autograd.grad(theirs.square().sum(), (x, *weights))
    assert all(torch.allclose(a, b, rtol=0, atol=1e-12) for a, b in zip(g1, g2))
    assert lstm_scan(x[:, :0], *weights).shape == (4, 0, 5)
