"""Input checks of the memory models' forward: a wrong shape or dtype is a ValueError that names the argument,
what was expected, what it got and a fix, raised before any computation (check_memory_inputs)."""

from __future__ import annotations

import re

import pytest
import torch

from overlooked import catalog
from overlooked.memory.functional import check_memory_inputs, time_index
from overlooked.registry import MODELS

catalog.load_all()
V, M, L, B = 30, 10, 6, 4
KWARGS = {  # small versions of every registered memory model; memory_size = M slots
    "memn2n": {"embed_dim": 8},
    "kvmemnn": {"embed_dim": 8},
    "memnn": {"embed_dim": 8},
    "memnn_am_ng_nl": {"embed_dim": 8, "ngram_buckets": 64, "max_hops": 3},
}
TEMPORAL = ["memn2n", "kvmemnn"]  # a temporal table with memory_size rows, indexed by time
MEMNN = ["memnn", "memnn_am_ng_nl"]


def test_every_registered_memory_model_is_covered():
    catalog.load_all()
    assert sorted(n for n in MODELS.names() if MODELS.tags(n).get("family") == "memory") == sorted(KWARGS)


def _model(name, **kw):
    torch.manual_seed(0)
    return MODELS.create(name, vocab_size=V, memory_size=M, **KWARGS[name], **kw)


def _inputs(name, slots=M, seed=0):
    """Valid keyword inputs for ``name``: ``B`` stories of ``slots`` slots (3, all, 1 and 6 real sentences)."""
    gen = torch.Generator().manual_seed(seed)
    story = torch.randint(1, V, (B, slots, L), generator=gen)
    mask = torch.arange(slots)[None, :] < torch.tensor([3, slots, 1, 6])[:, None]
    story[~mask] = 0
    inputs = {"story": story, "query": torch.randint(1, V, (B, L), generator=gen), "memory_mask": mask, "time": time_index(mask)}
    if name in MEMNN:
        inputs["supporting"] = torch.tensor([[2, 0], [5, 9], [0, -1], [3, -1]])
    return inputs


# (argument, how to break it, a part of the message that must appear)
BAD = {
    "mask_too_short": ("memory_mask", lambda x: x[:, :5], "memory_mask must be a bool tensor [B, M] = [4, 10] matching story [B, M, L] = [4, 10, 6]; got bool [4, 5]. Fix: build it from the story, story.ne(0).any(-1)"),
    "mask_float": ("memory_mask", lambda x: x.float(), "memory_mask must be a bool tensor [B, M] = [4, 10] matching story [B, M, L] = [4, 10, 6]; got float32 [4, 10]. Fix: memory_mask.bool()"),
    "mask_int": ("memory_mask", lambda x: x.long(), "got int64 [4, 10]. Fix: memory_mask.bool()"),
    "mask_list": ("memory_mask", lambda x: x.tolist(), "memory_mask must be a bool tensor [B, M] = [4, 10] matching story [B, M, L] = [4, 10, 6]; got list."),
    "story_2d": ("story", lambda x: x[0], "story must be an int64 (or int32) tensor [B, M, L] of word indices (batch, memory slots, words per slot); got int64 [10, 6]. Fix: add the batch dimension (story[None]"),
    "story_4d": ("story", lambda x: x[None], "got int64 [1, 4, 10, 6]. Fix: put each story's sentences in [M, L] slots"),
    "story_float": ("story", lambda x: x.float(), "story must be an int64 (or int32) tensor [B, M, L] of word indices (batch, memory slots, words per slot); got float32 [4, 10, 6]. Fix: story.long()"),
    "query_3d": ("query", lambda x: x[:, None], "query must be an int64 (or int32) tensor [B, L'] with B = 4 as in story [B, M, L] = [4, 10, 6]; got int64 [4, 1, 6]"),
    "query_1d": ("query", lambda x: x[0], "got int64 [6]. Fix: add the batch dimension (query[None]"),
    "query_other_batch": ("query", lambda x: x[:2], "query must be an int64 (or int32) tensor [B, L'] with B = 4 as in story [B, M, L] = [4, 10, 6]; got int64 [2, 6]. Fix: pass one question"),
    "query_float": ("query", lambda x: x.float(), "got float32 [4, 6]. Fix: query.long()"),
    "time_too_short": ("time", lambda x: x[:, :5], "time must be an int64 (or int32) tensor [B, M] = [4, 10] matching story [B, M, L] = [4, 10, 6]; got int64 [4, 5]. Fix: give one temporal index per memory slot"),
    "time_float": ("time", lambda x: x.float(), "time must be an int64 (or int32) tensor [B, M] = [4, 10] matching story [B, M, L] = [4, 10, 6]; got float32 [4, 10]. Fix: time.long()"),
}
BAD_SUPPORTING = {
    "supporting_float": (lambda x: x.float(), "supporting must be an int64 tensor [B, S] with B = 4 as in story [B, M, L] = [4, 10, 6]; got float32 [4, 2]. Fix: supporting.long()"),
    "supporting_int32": (lambda x: x.int(), "got int32 [4, 2]. Fix: supporting.long()"),
    "supporting_1d": (lambda x: x[0], "supporting must be an int64 tensor [B, S] with B = 4 as in story [B, M, L] = [4, 10, 6]; got int64 [2]. Fix: give one row"),
    "supporting_other_batch": (lambda x: x[:3], "got int64 [3, 2]. Fix: give one row of supporting slots per story"),
}


@pytest.mark.parametrize("case", sorted(BAD))
@pytest.mark.parametrize("name", sorted(KWARGS))
def test_bad_input_raises_a_clear_value_error(name, case):
    key, spoil, message = BAD[case]
    inputs = _inputs(name)
    inputs[key] = spoil(inputs[key])
    with pytest.raises(ValueError, match=re.escape(f"{'memnn' if name in MEMNN else name}: ") + ".*" + re.escape(message)):
        _model(name)(**inputs)


@pytest.mark.parametrize("case", sorted(BAD_SUPPORTING))
@pytest.mark.parametrize("name", MEMNN)
def test_bad_supporting_raises_a_clear_value_error(name, case):
    spoil, message = BAD_SUPPORTING[case]
    inputs = _inputs(name)
    inputs["supporting"] = spoil(inputs["supporting"])
    with pytest.raises(ValueError, match=re.escape(message)):
        _model(name)(**inputs)


@pytest.mark.parametrize("name", TEMPORAL)
@pytest.mark.parametrize("with_time", [True, False])
def test_more_slots_than_the_temporal_table_raises(name, with_time):
    inputs = _inputs(name, slots=M + 2)
    if not with_time:
        del inputs["time"]
    message = f"{name}: story has 12 memory slots but the model's temporal table holds memory_size=10. Fix: build the model with memory_size >= 12, or keep the last 10 sentences"
    with pytest.raises(ValueError, match=re.escape(message)):
        _model(name)(**inputs)


@pytest.mark.parametrize("name", ["memn2n", "kvmemnn", *MEMNN])
def test_more_slots_than_memory_size_is_fine_without_a_temporal_table(name):
    """Only a table indexed by slot or time limits the slots: MemN2N and KV-MemNN without temporal encoding,
    and MemNN (whose time table holds three write-time indicators) read any number."""
    kw = {"temporal": False} if name in TEMPORAL else {}
    out = _model(name, **kw)(**_inputs(name, slots=M + 2))
    assert out["logits"].shape[0] == B and torch.isfinite(out["logits"]).all()


@pytest.mark.parametrize("name", sorted(KWARGS))
def test_valid_inputs_run_in_float64_and_int32(name):
    """The checks let every valid input through: float64 models, int32 indices, time given or not."""
    model = _model(name).double()
    inputs = _inputs(name)
    out = model(**inputs)
    assert out["logits"].dtype == torch.float64 and torch.isfinite(out["logits"]).all()
    out["logits"].logsumexp(-1).sum().backward()
    narrow = {k: v.int() if k in ("story", "query", "time") else v for k, v in inputs.items()}
    torch.testing.assert_close(model(**narrow)["logits"], out["logits"])
    del inputs["time"]
    torch.testing.assert_close(model(**inputs)["logits"], out["logits"])


def _spy_on_reads(monkeypatch) -> tuple[list[tuple[str, bool]], list[str]]:
    """Record every ``reads_values`` answer (device, may read) and every value read (``torch.aminmax``, how
    ``overlooked.checks.outside`` reads a range) that the checks make."""
    import overlooked.checks as checks

    answers: list[tuple[str, bool]] = []
    reads: list[str] = []
    real_gate, real_aminmax = checks.reads_values, torch.aminmax

    def gate(t):
        answers.append((t.device.type, real_gate(t)))
        return answers[-1][1]

    def aminmax(t, *args, **kwargs):
        reads.append(t.device.type)
        return real_aminmax(t, *args, **kwargs)

    monkeypatch.setattr(checks, "reads_values", gate)
    monkeypatch.setattr(torch, "aminmax", aminmax)
    return answers, reads


def test_check_passes_valid_inputs_and_reads_no_values(monkeypatch):
    """On the meta device there are no values to read: the check must still pass (no .item(), no sync).
    Observed: with a vocabulary and a temporal table, story, query and time would each be range-checked;
    every one asks ``reads_values``, is told no, and no value is read. The same valid inputs on the CPU are
    read, three times, so the spy does see reads."""
    answers, reads = _spy_on_reads(monkeypatch)
    meta = {"device": "meta"}
    story, query = torch.empty(B, M, L, dtype=torch.long, **meta), torch.empty(B, 3, dtype=torch.int32, **meta)
    mask, time = torch.empty(B, M, dtype=torch.bool, **meta), torch.empty(B, M, dtype=torch.long, **meta)
    check_memory_inputs(story, query, mask, time, supporting=torch.empty(B, 0, dtype=torch.long, **meta), memory_size=M, name="memnn")
    assert answers == [("meta", False)] and reads == []  # time's range: asked, not read
    answers.clear()
    check_memory_inputs(story, query, mask, time, memory_size=M, vocab_size=V, name="memn2n")
    assert answers == [("meta", False)] * 3 and reads == []  # story, query and time: asked, none read
    answers.clear()
    cpu = [torch.zeros(t.shape, dtype=t.dtype) for t in (story, query, mask, time)]
    check_memory_inputs(*cpu, memory_size=M, vocab_size=V, name="memn2n")
    assert answers == [("cpu", True)] * 3 and reads == ["cpu"] * 3


@pytest.mark.parametrize("name", ["memn2n", "kvmemnn", "memnn", "memnn_am_ng_nl"])
@pytest.mark.parametrize("size", ["embed_dim", "memory_size", "vocab_size"])
@pytest.mark.parametrize("bad", [0, 2.5, True])
def test_sizes_not_ints_from_one_are_refused_when_the_model_is_built(name, size, bad):
    kwargs = {"vocab_size": 12, "memory_size": 6, size: bad}
    with pytest.raises(ValueError, match=re.escape(f"{size} must be an int >= 1, got {bad!r}")):
        MODELS.create(name, **kwargs)


@pytest.mark.parametrize("name", ["memn2n", "kvmemnn", "memnn"])
def test_zero_hops_are_refused_when_the_model_is_built(name):
    with pytest.raises(ValueError, match="hops must be an int >= 1, got 0"):
        MODELS.create(name, vocab_size=12, hops=0)


@pytest.mark.parametrize("size", ["vocab_size", "embed_dim", "hidden"])
def test_the_lstm_reader_refuses_sizes_with_the_same_check(size):
    with pytest.raises(ValueError, match=f"lstm_reader: {size} must be an int >= 1, got 0"):
        MODELS.create("lstm_reader", **{"vocab_size": 12, size: 0})


@pytest.mark.parametrize("name", ["memn2n", "kvmemnn", "memnn", "lstm_reader"])
def test_sizes_of_any_integral_type_are_accepted(name):
    """numpy integers (``vocab_size=arr.max() + 1``) are sizes too; only non-integers and bools are refused.
    Accepted means used: the model built from them is the one built from the same Python ints (every
    parameter and buffer, same seed), and it runs with the same answer."""
    import numpy as np

    torch.manual_seed(0)
    model = MODELS.create(name, vocab_size=np.int64(V), embed_dim=np.int32(4))
    torch.manual_seed(0)
    plain = MODELS.create(name, vocab_size=V, embed_dim=4)
    # the same model as with Python ints: every parameter and buffer, shape and value
    got, want = model.state_dict(), plain.state_dict()
    assert list(got) == list(want)
    for key, value in want.items():
        assert got[key].shape == value.shape and torch.equal(got[key], value), key
    inputs = {k: v for k, v in _inputs(name).items() if k != "supporting"}
    out, expected = model(**inputs), plain(**inputs)  # and it runs, with the same answer
    out, expected = (o["logits"] if isinstance(o, dict) else o for o in (out, expected))
    assert out.shape == (B, V) and torch.equal(out, expected)


@pytest.mark.parametrize("name", sorted(KWARGS))
def test_word_ids_outside_the_vocabulary_are_named(name):
    model = _model(name)
    for arg, shift in (("story", V), ("query", V), ("story", -V)):
        kw = _inputs(name)
        kw[arg] = torch.where(kw[arg] > 0, kw[arg] + shift, kw[arg]) if shift > 0 else kw[arg] - V
        with pytest.raises(ValueError, match=rf"{name.split('_')[0]}: {arg} holds word id -?\d+, outside the model's vocabulary 0\.\.{V - 1}"):
            model(**kw)


@pytest.mark.parametrize("name", TEMPORAL)
def test_time_indices_outside_the_temporal_table_are_named(name):
    model = _model(name)
    for bad in (M, -1):
        kw = _inputs(name)
        kw["time"] = torch.full((B, M), bad)
        with pytest.raises(ValueError, match=rf"time holds index {bad}, outside the temporal table's rows 0\.\.{M - 1}"):
            model(**kw)


def _strided(x: torch.Tensor) -> torch.Tensor:
    """The same values as ``x`` in a non-contiguous layout (every other element of a wider tensor)."""
    y = torch.stack([x, torch.zeros_like(x)], -1)[..., 0]
    assert torch.equal(y, x) and not y.is_contiguous()
    return y


@pytest.mark.parametrize("batch", [1, B])
@pytest.mark.parametrize("name", TEMPORAL)
def test_non_contiguous_inputs_give_the_outputs_of_contiguous_ones(name, batch):
    """Any strides work (was, for kvmemnn: "view size is not compatible with input tensor's size and stride"
    in encode_sentences, for a strided query, or for the review's story ``s.transpose(1, 2).contiguous().transpose(1, 2)``
    of one story)."""
    model = _model(name)
    inputs = {k: v[:batch] for k, v in _inputs(name).items()}
    want = model(**inputs)
    transposed = inputs["story"].transpose(1, 2).contiguous().transpose(1, 2)
    assert not transposed.is_contiguous()
    for strided in ({k: _strided(v) for k, v in inputs.items()}, {**inputs, "story": transposed}, {**inputs, "query": _strided(inputs["query"])}):
        got = model(**strided)
        for key in want:
            torch.testing.assert_close(got[key], want[key], rtol=0, atol=0)


@pytest.mark.parametrize("name", sorted(KWARGS))
def test_an_empty_batch_gives_empty_outputs(name):
    """B = 0, as any PyTorch module takes it: outputs of batch size 0 (was, for MemNN: IndexError)."""
    model = _model(name)
    inputs = {k: v[:0] for k, v in _inputs(name).items()}
    if name not in MEMNN:
        inputs.pop("supporting", None)
    out = model(**inputs)
    assert out["logits"].shape == (0, V)
    assert all(v.shape[0] == 0 for v in out.values())
    out["logits"].sum().backward()
    if name in MEMNN:  # inference alone, without the ranking tensors
        del inputs["supporting"]
        assert model(**inputs)["chosen"].shape == (0, KWARGS[name].get("max_hops", 2))


@pytest.mark.parametrize("name", MEMNN)
def test_memnn_trains_under_bf16_autocast(name):
    """``train.bf16=true`` autocasts the forward pass and the loss to bfloat16 (was: "Got unsupported ScalarType
    BFloat16" from NumPy in the write-time loop of select_memory). The hops choose what they choose in float32."""
    from overlooked.registry import OBJECTIVES

    model, objective = _model(name), OBJECTIVES.create("memnn_margin")
    inputs = _inputs(name)
    batch = {**inputs, "answer": torch.arange(B) + 1}
    want = model(**inputs)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(**inputs)
        loss = objective(out, batch)
    assert torch.equal(out["chosen"], want["chosen"]) and torch.isfinite(loss)
    from overlooked.memory import memnn as MN

    with torch.autocast("cpu", dtype=torch.bfloat16):  # the write-time indicators stay float32 under autocast
        assert MN._indicator_dtype(torch.zeros(2, dtype=torch.bfloat16)) == torch.float32
    assert MN._indicator_dtype(torch.zeros(2, dtype=torch.bfloat16)) == torch.bfloat16  # a model cast to bf16
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", list(KWARGS))
def test_a_model_cast_to_bfloat16_runs_in_bfloat16(name):
    """``model.to(torch.bfloat16)``: MemNN built its write-time indicators in torch's default dtype (an einsum
    dtype clash), like the Transformer readers' position table (a LayerNorm one); they follow the scores' dtype."""
    model = _model(name).eval()
    inputs = {k: v for k, v in _inputs(name).items() if k != "supporting"}
    with torch.no_grad():
        full = model(**inputs)["logits"]
        half = model.to(torch.bfloat16)(**inputs)["logits"]
    assert half.dtype == torch.bfloat16
    assert (half.float() - full).abs().max() < 0.05 * max(1.0, full.abs().max().item())


def test_sentences_of_no_word_slot_are_named_on_every_path():
    """L = 0 (story[:, :, :0]): the fused MemN2N ran, the other paths failed in a reshape (an adversarial
    review's); every memory model now names it with the fix."""
    from overlooked import catalog
    from overlooked.errors import InputError
    from overlooked.registry import MODELS

    catalog.load_all()
    story, query, mask = torch.ones(2, 3, 4, dtype=torch.long), torch.ones(2, 4, dtype=torch.long), torch.ones(2, 3, dtype=torch.bool)
    for name, kwargs in (("memn2n", {}), ("memn2n", {"fused": False}), ("memn2n", {"tying": "layerwise"}), ("kvmemnn", {}), ("memnn", {})):
        model = MODELS.create(name, vocab_size=10, memory_size=5, **kwargs)
        for s, q in ((story[:, :, :0], query), (story, query[:, :0])):
            with pytest.raises(InputError, match=rf"{name}: sentences need at least one word slot.*Fix: pad each sentence and the question to L >= 1"):
                model(s, q, mask)


def test_a_negative_or_non_finite_init_std_is_refused_when_the_model_is_built():
    from overlooked import catalog
    from overlooked.registry import MODELS

    catalog.load_all()
    for name in ("memn2n", "kvmemnn", "memnn", "memnn_am_ng_nl"):
        for bad in (-1, float("nan"), "0.1", True):
            with pytest.raises(ValueError, match=r"init_std must be a finite number >= 0 \(the weights' standard deviation\)"):
                MODELS.create(name, vocab_size=10, init_std=bad)
        assert MODELS.create(name, vocab_size=10, init_std=0) is not None  # zero weights are a choice, not an error
