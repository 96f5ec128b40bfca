"""The baselines checked by hand: the MLP's ReLU, dropout off in evaluation, the Transformer readers' inputs
(word embedding + sentence recency + sinusoidal positions), key-padding length, readouts and recency clamp,
and the small CNN's classifier dropout."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from overlooked.baselines.cnn import SmallCNN, small_cnn
from overlooked.baselines.lstm import lstm_reader
from overlooked.baselines.mlp import MLP
from overlooked.baselines.transformer import sinusoidal_positions, transformer_facts, transformer_reader
from overlooked.memory.functional import time_index

V, D = 12, 8


def _batch():
    """Two stories of word indices < V: sample 0 has 2 sentences and a 2-word question, sample 1 has 3 and 1."""
    story = torch.tensor(
        [
            [[4, 5, 0], [6, 0, 0], [0, 0, 0]],
            [[3, 0, 0], [8, 9, 2], [7, 0, 0]],
        ]
    )
    query = torch.tensor([[7, 1, 0], [5, 0, 0]])
    mask = torch.tensor([[True, True, False], [True, True, True]])
    return story, query, mask, time_index(mask)


def _capture(module, pre):
    """Register a hook on ``module`` that stores its first input (``pre``) or its output in the returned list."""
    seen = []
    if pre:
        module.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
    else:
        module.register_forward_hook(lambda m, args, out: seen.append(out.detach().clone()))
    return seen


# --- MLP -----------------------------------------------------------------------------------------------


def test_mlp_hidden_layer_applies_relu():
    """One hidden unit copying x0, output copying it: input [-3, 0] gives 0 and [2, 0] gives 2 (ReLU)."""
    model = MLP(input_shape=(2,), hidden=(1,), num_classes=1)
    first, last = [m for m in model.net if isinstance(m, nn.Linear)]
    with torch.no_grad():
        first.weight.copy_(torch.tensor([[1.0, 0.0]]))
        first.bias.zero_()
        last.weight.copy_(torch.tensor([[1.0]]))
        last.bias.zero_()
    assert model(torch.tensor([[-3.0, 0.0], [2.0, 0.0]])).flatten().tolist() == [0.0, 2.0]


def test_mlp_dropout_follows_each_hidden_relu():
    """dropout=0.3: Flatten, (Linear, ReLU, Dropout(0.3)) per hidden layer, Linear; dropout=0 adds none."""
    kinds = [type(m) for m in MLP(input_shape=(2,), hidden=(3, 3), num_classes=1, dropout=0.3).net]
    assert kinds == [nn.Flatten, nn.Linear, nn.ReLU, nn.Dropout, nn.Linear, nn.ReLU, nn.Dropout, nn.Linear]
    assert [m.p for m in MLP(input_shape=(2,), hidden=(3, 3), dropout=0.3).net if isinstance(m, nn.Dropout)] == [0.3, 0.3]
    assert not any(isinstance(m, nn.Dropout) for m in MLP(input_shape=(2,), hidden=(3, 3)).net)


# --- dropout off in evaluation ---------------------------------------------------------------------------

DROPOUT_MODELS = {
    "transformer_reader-cls": lambda: transformer_reader(vocab_size=V, memory_size=4, d_model=D, layers=1, heads=2, dropout=0.5),
    "transformer_reader-question": lambda: transformer_reader(
        vocab_size=V, memory_size=4, d_model=D, layers=1, heads=2, dropout=0.5, readout="question"
    ),
    "transformer_facts": lambda: transformer_facts(vocab_size=V, sentence_len=3, d_model=D, layers=1, heads=2, dropout=0.5),
    "lstm_reader": lambda: lstm_reader(vocab_size=V, embed_dim=D, hidden=6, dropout=0.5),
}


@pytest.mark.parametrize("name", sorted(DROPOUT_MODELS))
def test_dropout_is_off_in_eval(name):
    """dropout=0.5 in eval: two passes agree exactly and each row equals that sample run alone."""
    torch.manual_seed(0)
    model = DROPOUT_MODELS[name]().eval()
    story, query, mask, time = _batch()
    with torch.no_grad():
        first = model(story, query, mask, time)
        second = model(story, query, mask, time)
        alone = torch.cat([model(story[i : i + 1], query[i : i + 1], mask[i : i + 1], time[i : i + 1]) for i in range(2)])
    assert torch.equal(first, second)
    torch.testing.assert_close(first, alone, atol=1e-5, rtol=1e-5)
    model.train()  # the switch does act: in training two passes differ
    with torch.no_grad():
        assert not torch.equal(model(story, query, mask, time), model(story, query, mask, time))


# --- Transformer word reader -----------------------------------------------------------------------------


def _reader(**kwargs):
    """A seeded one-layer word reader of width D without dropout, in eval mode."""
    torch.manual_seed(0)
    return transformer_reader(vocab_size=V, memory_size=4, d_model=D, layers=1, heads=2, dropout=0.0, **kwargs).eval()


def test_sinusoidal_positions_row_zero():
    """Position 0 is sin(0), cos(0) repeated: [0, 1, 0, 1, ...]."""
    assert sinusoidal_positions(3, 6)[0].tolist() == [0.0, 1.0, 0.0, 1.0, 0.0, 1.0]


@pytest.mark.parametrize("group_tokens", [None, 100])
def test_reader_encoder_input_is_word_plus_recency_plus_position(group_tokens):
    """Block 0's input for [CLS] 4 5 6 [SEP] 7 1 is embed + recency (cls, 1, 1, 0, q, q, q) + PE, as hand-laid."""
    model = _reader(group_tokens=group_tokens)
    seen = _capture(model.blocks[0], pre=True)
    story, query, mask, time = _batch()
    with torch.no_grad():
        model(story[:1], query[:1], mask[:1], time[:1])
    cls, sep, q, c = V, V + 1, 4, 5  # [CLS] and [SEP] words; question and [CLS] recency rows (memory_size 4)
    tokens = torch.tensor([cls, 4, 5, 6, sep, 7, 1])
    recency = torch.tensor([c, 1, 1, 0, q, q, q])
    expected = model.embed.weight[tokens] + model.recency.weight[recency] + sinusoidal_positions(7, D)
    torch.testing.assert_close(seen[0][0], expected.detach(), atol=1e-6, rtol=1e-6)


def test_reader_word_order_matters():
    """Swapping two words of one sentence (same recency) changes the [CLS] logits: only positions tell them apart."""
    model = _reader()
    story, query, mask, time = _batch()
    swapped = story.clone()
    swapped[0, 0, :2] = torch.tensor([5, 4])
    with torch.no_grad():
        a, b = model(story, query, mask, time), model(swapped, query, mask, time)
    assert (a[0] - b[0]).abs().max() > 1e-4
    assert torch.equal(a[1], b[1])


@pytest.mark.parametrize("kwargs", [{}, {"readout": "question"}, {"group_tokens": 100}], ids=["cls", "question", "grouped"])
def test_reader_last_real_query_word_is_read(kwargs):
    """Changing only sample 0's last real query word changes logits row 0 and leaves row 1 as it was."""
    model = _reader(**kwargs)
    story, query, mask, time = _batch()
    changed = query.clone()
    changed[0, 1] = 11  # sample 0's question is [7, 1]: its last real word
    with torch.no_grad():
        a, b = model(story, query, mask, time), model(story, changed, mask, time)
    assert (a[0] - b[0]).abs().max() > 1e-4
    torch.testing.assert_close(a[1], b[1], atol=1e-6, rtol=0)


def test_reader_cls_readout():
    """cls readout: logits = classifier(final-norm state at position 0)."""
    model = _reader()
    seen = _capture(model.norm, pre=False)
    with torch.no_grad():
        logits = model(*_batch())
        expected = model.classifier(seen[0][:, 0])
    torch.testing.assert_close(logits, expected, atol=1e-6, rtol=1e-6)


def test_reader_question_readout_means_separator_and_question():
    """question readout: the mean of the final states over [SEP] and the question words, padding left out."""
    model = _reader(readout="question")
    seen = _capture(model.norm, pre=False)
    with torch.no_grad():
        logits = model(*_batch())
        h = seen[0]
        # sample 0: [CLS] 4 5 6 [SEP] 7 1 (positions 4..6); sample 1: [CLS] 3 8 9 2 7 [SEP] 5 (positions 6..7)
        expected = model.classifier(torch.stack([h[0, 4:7].mean(0), h[1, 6:8].mean(0)]))
    assert h.shape[1] == 8
    torch.testing.assert_close(logits, expected, atol=1e-6, rtol=1e-6)


def test_reader_recency_is_clamped_below_the_question_row():
    """memory_size 3, six one-word sentences: recency used is cls, 2, 2, 2, 2, 1, 0, q, q (never 3+ for a sentence)."""
    torch.manual_seed(0)
    model = transformer_reader(vocab_size=V, memory_size=3, d_model=D, layers=1, heads=2, dropout=0.0).eval()
    seen = _capture(model.recency, pre=True)
    story = torch.tensor([[[1], [2], [3], [4], [5], [6]]])
    mask = torch.ones(1, 6, dtype=torch.bool)
    with torch.no_grad():
        model(story, torch.tensor([[7]]), mask, time_index(mask))
    assert seen[0].tolist() == [[4, 2, 2, 2, 2, 1, 0, 3, 3]]


# --- Transformer facts model ------------------------------------------------------------------------------


def _facts():
    """A seeded one-layer facts model of width D without dropout, in eval mode."""
    torch.manual_seed(0)
    return transformer_facts(vocab_size=V, sentence_len=3, d_model=D, layers=1, heads=2, dropout=0.0).eval()


def test_facts_encoder_input_is_fact_sums_plus_position():
    """Block 0's input: facts (summed word embeddings, masks at 1), then the question, each plus its PE row."""
    model = _facts()
    seen = _capture(model.blocks[0], pre=True)
    story, query, mask, time = _batch()
    with torch.no_grad():
        model(story, query, mask, time)
    e = model.embed.weight.detach()
    pe = sinusoidal_positions(4, D)
    rows0 = torch.stack([e[4] + e[5], e[6], e[7] + e[1]])  # two facts, then the question
    rows1 = torch.stack([e[3], e[8] + e[9] + e[2], e[7], e[5]])  # three facts, then the question
    torch.testing.assert_close(seen[0][0, :3], rows0 + pe[:3], atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(seen[0][1], rows1 + pe, atol=1e-6, rtol=1e-6)


def test_facts_order_matters():
    """Swapping the two real facts of sample 0 changes its logits (the mean readout alone is order-blind)."""
    model = _facts()
    story, query, mask, time = _batch()
    swapped = story.clone()
    swapped[0, [0, 1]] = story[0, [1, 0]]
    with torch.no_grad():
        a, b = model(story, query, mask, time), model(swapped, query, mask, time)
    assert (a[0] - b[0]).abs().max() > 1e-4
    assert torch.equal(a[1], b[1])


def test_facts_readout_is_mean_over_facts_and_question():
    """logits = classifier(mean of the final states over positions 0..n: the n facts and the question)."""
    model = _facts()
    seen = _capture(model.norm, pre=False)
    with torch.no_grad():
        logits = model(*_batch())
        h = seen[0]
        expected = model.classifier(torch.stack([h[0, :3].mean(0), h[1, :4].mean(0)]))
    torch.testing.assert_close(logits, expected, atol=1e-6, rtol=1e-6)


# --- small CNN --------------------------------------------------------------------------------------------


def test_small_cnn_classifier_dropout_p():
    """FC-ReLU-Dropout-FC: the one Dropout sits before the last Linear with p = 0.25 (default) or as passed."""
    assert [type(m) for m in SmallCNN().classifier] == [nn.Flatten, nn.Linear, nn.ReLU, nn.Dropout, nn.Linear]
    assert SmallCNN().classifier[3].p == 0.25
    assert small_cnn(dropout=0.4).classifier[3].p == 0.4
