"""The bAbI text baselines (LSTM and Transformer readers, the fact-level Transformer): registry matrix,
padding and batch-mate invariance, the grouped Transformer path equal to the reference, a tiny overfit, and
a short real-data run."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F

from overlooked import api, catalog
from overlooked.baselines.lstm import read_order
from overlooked.baselines.transformer import fact_encoding
from overlooked.config import ExperimentConfig, load_config
from overlooked.errors import InputError, RegistryError
from overlooked.memory.functional import time_index
from overlooked.registry import MODELS

catalog.load_all()
TEXT_MODELS = [n for n in MODELS.names() if MODELS.tags(n).get("text") == "babi"]
V, M, L = 30, 10, 6
# every model and the Transformer's other paths: (name, extra kwargs)
VARIANTS = [(n, {}) for n in TEXT_MODELS] + [
    ("transformer_reader", {"group_tokens": 40}),
    ("transformer_reader", {"readout": "question"}),
]
IDS = [f"{n}-{'-'.join(f'{k}={v}' for k, v in kw.items()) or 'default'}" for n, kw in VARIANTS]


def _create(name, **kwargs):
    """``name`` sized for the toy batch, without dropout so train and eval agree."""
    allowed = MODELS.accepted_kwargs(name) or []
    facts = {"vocab_size": V, "memory_size": M, "dropout": 0.0}
    return MODELS.create(name, **{k: v for k, v in facts.items() if k in allowed}, **kwargs)


def _batch(B=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    story = torch.randint(1, V, (B, M, L), generator=gen)
    story[..., 4:] = 0  # short sentences
    story[:, ::3, 2:] = 0  # some shorter still
    n = torch.tensor([3, 10, 1, 6])[:B]
    mask = torch.arange(M)[None, :] < n[:, None]
    story[~mask] = 0
    query = torch.randint(1, V, (B, L), generator=gen)
    query[:, 3:] = 0
    return story, query, mask, time_index(mask)


def test_text_models_are_registered():
    assert {"lstm_reader", "transformer_reader"} <= set(TEXT_MODELS)
    for name in TEXT_MODELS:
        assert MODELS.tags(name)["family"] == "baseline"
        MODELS.create(name)  # no kwargs: the default configuration builds


@pytest.mark.parametrize("name,kwargs", VARIANTS, ids=IDS)
def test_forward_backward_no_nan_every_parameter(name, kwargs, every_parameter_learns):
    torch.manual_seed(0)
    model = _create(name, **kwargs)
    logits = model(*_batch())
    assert logits.shape == (4, V) and torch.isfinite(logits).all()
    logits.logsumexp(-1).sum().backward()
    every_parameter_learns(model)


@pytest.mark.parametrize("name", TEXT_MODELS)
def test_unknown_kwargs_raise(name):
    with pytest.raises(RegistryError, match="unknown argument"):
        MODELS.create(name, vocab_size=V, no_such_switch=True)


@pytest.mark.parametrize("name,kwargs", VARIANTS, ids=IDS)
def test_output_ignores_padding(name, kwargs):
    torch.manual_seed(1)
    model = _create(name, **kwargs).eval()
    story, query, mask, time = _batch()
    with torch.no_grad():
        ref = model(story, query, mask, time)
        # more padding words per sentence, more (masked) memory slots holding garbage, a longer query slot
        wide = F.pad(story, (0, 3, 0, 4))  # [B, M+4, L+3]
        wide[:, M:, :2] = 7  # garbage in the masked slots must be ignored too
        wide_mask = F.pad(mask, (0, 4))
        padded = model(wide, F.pad(query, (0, 5)), wide_mask, time_index(wide_mask))
    torch.testing.assert_close(padded, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name,kwargs", VARIANTS, ids=IDS)
def test_output_ignores_batch_mates(name, kwargs):
    torch.manual_seed(2)
    model = _create(name, **kwargs).eval()
    story, query, mask, time = _batch()
    with torch.no_grad():
        full = model(story, query, mask, time)
        for i in range(4):
            alone = model(story[i : i + 1], query[i : i + 1], mask[i : i + 1], time[i : i + 1])
            torch.testing.assert_close(full[i : i + 1], alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name,kwargs", VARIANTS, ids=IDS)
def test_an_empty_batch_gives_empty_logits(name, kwargs):
    """B = 0, as any PyTorch module takes it (was, for the readers: "max(): Expected reduction dim" in read_order)."""
    model = _create(name, **kwargs)
    logits = model(*(x[:0] for x in _batch()))
    assert logits.shape == (0, V)
    logits.sum().backward()


@pytest.mark.parametrize("name", TEXT_MODELS)
def test_inputs_that_do_not_fit_are_refused_as_the_memory_models_refuse_them(name):
    """The memory models' check (check_memory_inputs), named after the model: a float mask was
    "~ (operator.invert) is only implemented on integer and Boolean-type tensors"."""
    model = _create(name)
    story, query, mask, time = _batch()
    with pytest.raises(InputError, match=re.escape(f"{name}: memory_mask must be a bool tensor [B, M] = [4, 10] matching story [B, M, L] = [4, 10, 6]; got float32 [4, 10]. Fix: memory_mask.bool()")):
        model(story, query, mask.float(), time)
    with pytest.raises(InputError, match=re.escape(f"{name}: memory_mask must be a bool tensor [B, M] = [4, 10]") + r".*got bool \[4, 5\]"):
        model(story, query, mask[:, :5], time)
    with pytest.raises(InputError, match=re.escape(f"{name}: story must be an int64 (or int32) tensor [B, M, L]") + r".*Fix: story.long\(\)"):
        model(story.float(), query, mask, time)
    # a word id past the vocabulary: an IndexError from the embedding, or, at V (the readers' separator or
    # [CLS]), read silently as that token
    for words in (V, V + 5):
        far = query.clone()
        far[0, 0] = words
        with pytest.raises(InputError, match=re.escape(f"{name}: query holds word id {words}, outside the model's vocabulary 0..{V - 1}")):
            model(story, far, mask, time)


def test_time_defaults_to_the_mask_recency():
    model = _create("transformer_reader").eval()
    story, query, mask, time = _batch()
    with torch.no_grad():
        torch.testing.assert_close(model(story, query, mask), model(story, query, mask, time))


def _rows_per_encoder_pass(model) -> list[int]:
    """A forward hook on the first encoder block: the batch rows of every pass the model really ran."""
    rows: list[int] = []
    model.blocks[0].register_forward_hook(lambda _module, args, _out: rows.append(args[0].shape[0]))
    return rows


def test_grouped_transformer_equals_reference_in_training_too():
    """``group_tokens`` is a speed choice only: same weights, same outputs and gradients, more than one group.
    The groups are observed in the model (hooked encoder passes), not inferred from lengths computed here."""
    torch.manual_seed(3)
    ref = _create("transformer_reader")
    fast = _create("transformer_reader", group_tokens=40)
    fast.load_state_dict(ref.state_dict())
    story, query, mask, time = _batch()
    tokens, _, lengths = read_order(story, query, mask, time, V, M)
    assert int(lengths.max() + 1) * len(lengths) > 40  # the batch really is split into several groups
    ref_rows, fast_rows = _rows_per_encoder_pass(ref), _rows_per_encoder_pass(fast)
    out_ref, out_fast = ref(story, query, mask, time), fast(story, query, mask, time)
    assert ref_rows == [len(story)]  # the reference: the whole batch in one padded pass
    assert len(fast_rows) > 1 and sum(fast_rows) == len(story)  # grouped: several passes, every row once
    torch.testing.assert_close(out_fast, out_ref, atol=1e-5, rtol=1e-5)
    out_ref.square().sum().backward()
    out_fast.square().sum().backward()
    for (name, a), b in zip(ref.named_parameters(), fast.parameters()):
        torch.testing.assert_close(b.grad, a.grad, atol=1e-4, rtol=1e-4, msg=name)


def test_fact_transformer_reads_real_facts_in_slot_order_wherever_they_sit():
    """Facts are read oldest first from whichever slots are real: a story whose real sentences are spread
    over the slots (garbage in the others) is the same story as the left-aligned one."""
    torch.manual_seed(5)
    model = _create("transformer_facts").eval()
    story, query, mask, time = _batch()
    spread_story, spread_mask = torch.full_like(story, 7), torch.zeros_like(mask)
    for b in range(story.shape[0]):
        n = int(mask[b].sum())
        slots = torch.randperm(M, generator=torch.Generator().manual_seed(b))[:n].sort().values  # n slots, in order
        spread_story[b, slots], spread_mask[b, slots] = story[b, :n], True
    with torch.no_grad():
        torch.testing.assert_close(model(spread_story, query, spread_mask), model(story, query, mask, time), atol=1e-5, rtol=1e-5)


def test_fact_transformer_masks_start_at_one_so_facts_start_as_bags_of_words():
    """At initialisation (masks of ones) a fact's vector is the sum of its word embeddings (the masks'
    learned weights then make word order matter, as MemN2N's position encoding does by formula)."""
    model = _create("transformer_facts")
    story, _, _, _ = _batch()
    emb = model.embed(story)  # [B, M, L, d]
    torch.testing.assert_close(fact_encoding(emb, model.story_mask[:L]), emb.sum(-2))


def test_fact_transformer_refuses_sentences_longer_than_its_masks():
    model = _create("transformer_facts", sentence_len=4)
    with pytest.raises(ValueError, match="sentence_len >= 6"):
        model(*_batch())


def test_read_order_keeps_real_words_in_order():
    story = torch.tensor([[[3, 4, 0], [5, 0, 0], [8, 8, 8]], [[6, 0, 0], [0, 0, 0], [0, 0, 0]]])
    mask = torch.tensor([[True, True, False], [True, False, False]])
    tokens, recency, lengths = read_order(story, torch.tensor([[7, 0], [9, 2]]), mask, time_index(mask), separator=99, question_index=5)
    assert tokens.tolist() == [[3, 4, 5, 99, 7], [6, 99, 9, 2, 0]]
    assert recency.tolist() == [[1, 1, 0, 5, 5], [0, 5, 5, 5, 0]]
    assert lengths.tolist() == [5, 4]


@pytest.mark.parametrize("name", TEXT_MODELS)
def test_overfits_a_handful_of_examples(name):
    torch.manual_seed(4)
    model = _create(name)
    story, query, mask, time = _batch()
    answer = torch.tensor([1, 5, 9, 13])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(60):
        loss = F.cross_entropy(model(story, query, mask, time), answer)
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.05 * first
    assert (model.eval()(story, query, mask, time).argmax(-1) == answer).all()


@pytest.mark.data
@pytest.mark.slow
@pytest.mark.parametrize("name,kwargs,least", [("lstm_reader", {}, 0.35), ("transformer_reader", {"group_tokens": 2048}, 0.35), ("transformer_facts", {}, 0.35)])
def test_learns_babi_task1_through_the_api(name, kwargs, least, data_dir, tmp_path):
    """bAbI task 1 has 6 possible answers (chance ~17%); a few epochs lift test accuracy well above it."""
    cfg = ExperimentConfig.from_dict(
        {
            "name": f"{name}_task1_smoke",
            "data": {"name": "babi", "kwargs": {"tasks": [1], "size": "en", "memory_size": 50, "val_fraction": 0.1, "seed": 0}},
            "model": {"name": name, "kwargs": kwargs},
            "objective": {"name": "cross_entropy", "kwargs": {"reduction": "mean"}},
            "train": {"epochs": 8, "batch_size": 32, "optimizer": "adam", "lr": 3e-3, "eval_batch_size": 500, "progress": False, "num_threads": 1},
        }
    )
    run, summary = api.train(cfg, data_dir=str(data_dir), run_dir=tmp_path / "run")
    assert summary["examples_seen"] <= 8 * 900
    assert summary["test_accuracy"] > least, summary["test_accuracy"]
    assert (run / "summary.json").is_file()


@pytest.mark.parametrize("name", ["transformer_babi1k_single", "lstm_babi1k_single", "kvmemnn_babi1k_single"])
def test_single_task_configs_share_memn2n_independent_split_and_budget(name):
    """The single-task column (fair-comparison rule): the same bAbI split as the MemN2N independent row
    (memn2n_babi1k_authors), at most its examples per task, one hyper-parameter trial."""
    ours, memn2n = load_config(name), load_config("memn2n_babi1k_authors")
    assert ours.data == memn2n.data
    assert ours.train.epochs <= memn2n.train.epochs  # same training questions per epoch: same data
    assert ours.train.repeats == 1


def test_flop_counter_sees_every_product_of_an_encoder_layer_attention_included():
    """api.flop_counter: the layer's four linear maps plus attention's two batched products, 2 FLOPs per
    multiply-add; PyTorch's own counter has no formula for the CPU attention kernel and would miss the last."""
    from torch.utils.flop_counter import FlopCounterMode

    from overlooked.baselines.transformer import PreLNBlock

    B, T, d, ff = 2, 7, 16, 24
    block = PreLNBlock(d, heads=4, ff_dim=ff, dropout=0.0).eval()
    x, keep = torch.randn(B, T, d), torch.ones(B, 1, 1, T, dtype=torch.bool)
    linear = 2 * B * T * (d * 3 * d + d * d + d * ff + ff * d)
    attention = 2 * 2 * B * T * T * d  # Q K^T and A V over all heads
    with api.flop_counter() as counter, torch.no_grad():
        block(x, keep)
    assert counter.get_total_flops() == linear + attention
    with FlopCounterMode(display=False) as plain, torch.no_grad():
        block(x, keep)
    assert plain.get_total_flops() == linear  # what runs recorded before api.flop_counter


def test_lstm_reader_equals_packing_the_sequences():
    """The docstring's claim: reading each sample's real words (padding dropped, read_order) and taking the
    output at its last real word equals ``pack_padded_sequence`` over the same words, values and gradients."""
    from torch.nn.utils.rnn import pack_padded_sequence

    torch.manual_seed(5)
    model = _create("lstm_reader").double()
    story, query, mask, time = _batch()
    logits = model(story, query, mask, time)
    grads = torch.autograd.grad(logits.square().sum(), list(model.parameters()))
    tokens, _, lengths = read_order(story, query, mask, time, model.vocab_size, 0)
    packed = pack_padded_sequence(model.embed(tokens), lengths, batch_first=True, enforce_sorted=False)
    _, (h, _) = model.lstm(packed)  # h: the state after each sequence's last real word
    reference = model.classifier(h[-1])
    torch.testing.assert_close(logits, reference, rtol=1e-12, atol=1e-12)
    ref_grads = torch.autograd.grad(reference.square().sum(), list(model.parameters()))
    for name, a, b in zip([n for n, _ in model.named_parameters()], grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=name)
    assert len(set(lengths.tolist())) > 1  # the samples really differ in length


@pytest.mark.parametrize("name,kwargs", VARIANTS, ids=IDS)
def test_a_model_cast_to_bfloat16_runs_in_bfloat16(name, kwargs):
    """``model.to(torch.bfloat16)``: the Transformer readers added a float32 position table to bf16 embeddings
    (LayerNorm then refused the mixed dtypes); the table now follows the embeddings' dtype."""
    torch.manual_seed(0)
    model = _create(name, **kwargs).eval()
    batch = _batch()
    with torch.no_grad():
        full = model(*batch)
        half = model.to(torch.bfloat16)(*batch)  # [B, V] logits
    assert half.dtype == torch.bfloat16
    assert (half.float() - full).abs().max() < 0.05 * max(1.0, full.abs().max().item())
