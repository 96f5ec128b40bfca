"""The maths of memory networks, written once: sentence encodings, temporal encoding, masked addressing,
the hop update and key-value addressing.

Shapes: ``B`` batch, ``M`` memory slots, ``L`` words per sentence (padded), ``d`` embedding size, ``V``
vocabulary. Word index 0 is the null word: its embedding is zero, so padded words add nothing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from overlooked import native
from overlooked.checks import autocast_enabled, in_torch_func, in_transform, is_count, outside, reads_values
from overlooked.errors import InputError
from overlooked.memory import kernels


def position_encoding(sentence_len: int, embed_dim: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The position-encoding matrix of MemN2N §4.1 for a sentence of ``J = sentence_len`` words.

    ``l_kj = (1 - j/J) - (k/d) (1 - 2j/J)`` with 1-based word index ``j`` and dimension ``k``
    (Sukhbaatar et al. 2015, §4.1). A sentence is encoded as ``m_i = sum_j l_j * A x_ij``.

    Returns:
        ``[J, d]`` of ``dtype`` (computed in float64), row ``j-1`` holding ``l_j``.

    >>> position_encoding(2, 2).tolist()
    [[0.5, 0.5], [0.5, 1.0]]
    """
    for name, value in (("sentence_len", sentence_len), ("embed_dim", embed_dim)):
        if not is_count(value):
            raise InputError(f"position_encoding: {name} must be a whole number >= 1, got {value!r}")
    j = torch.arange(1, sentence_len + 1, dtype=torch.float64)[:, None]  # [J, 1]
    k = torch.arange(1, embed_dim + 1, dtype=torch.float64)[None, :]  # [1, d]
    J, d = float(sentence_len), float(embed_dim)
    return ((1 - j / J) - (k / d) * (1 - 2 * j / J)).to(dtype)  # [J, d]


def position_weights(
    words: torch.Tensor, encoding: str, pe_length: str = "sentence", embed_dim: int | None = None, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-word scalars ``(alpha, beta)`` with ``l_kj = alpha_j - (k/d) beta_j``.

    Position encoding factors as ``l_kj = (1 - j/J) - (k/d)(1 - 2j/J)``, so a sentence's encoding is two
    weighted bags of words, ``sum_j alpha_j A x_j - (k/d) sum_j beta_j A x_j``: no ``[B, M, L, d]`` tensor
    is ever built. ``J`` is the sentence's own word count (the paper's "number of words in the sentence"),
    not the padded length. For bag-of-words, ``alpha = 1`` on real words and ``beta`` is None.

    Args:
        words: word indices ``[..., L]``, 0 for padding.
        encoding: ``"pe"`` or ``"bow"``.
        pe_length: ``"sentence"`` (``J`` = the sentence's word count, the paper's text), ``"padded"``
            (``J = L``, the padded length, as several public ports do) or ``"padded_time"`` (``J = L + 1``:
            the authors' Matlab code appends the time word to every memory as word ``J``, and the question
            takes the first ``L`` columns of the same matrix; see :func:`time_word_weight`).

        dtype: of the weights (:func:`encode_sentences` passes its table's, so float64 models stay float64).

    Returns:
        ``alpha`` and ``beta`` (or None), each ``[..., L]`` of ``dtype``, zero on padding.
    """
    real = (words != 0).to(dtype)  # [..., L]
    if encoding == "bow":
        return real, None
    if encoding not in ("pe", "pe_centered"):
        raise ValueError(f"encoding must be 'pe', 'pe_centered' or 'bow', got {encoding!r}")
    if pe_length == "sentence":
        J = real.sum(-1, keepdim=True).clamp(min=1.0)  # [..., 1] words in each sentence
    elif pe_length in ("padded", "padded_time"):
        J = torch.full_like(real[..., :1], float(words.shape[-1] + (pe_length == "padded_time")))
    else:
        raise ValueError(f"pe_length must be 'sentence', 'padded' or 'padded_time', got {pe_length!r}")
    j = torch.cumsum(real, dim=-1)  # [..., L] 1-based position of each real word
    if encoding == "pe_centered":
        if embed_dim is None:
            raise ValueError("pe_centered needs embed_dim")
        g = (j - (J + 1) / 2) / J  # [..., L] centred position
        d = float(embed_dim)
        return (1 - 2 * (d + 1) / d * g) * real, (-4 * g) * real
    alpha = (1 - j / J) * real
    beta = (1 - 2 * j / J) * real
    return alpha, beta


def time_word_weight(sentence_len: int, encoding: str, embed_dim: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The position-encoding row ``l_J`` that weighs the time word under ``pe_length="padded_time"``.

    In the authors' Matlab code (facebookarchive/MemNN, MemN2N-babi-matlab: ``config_babi.m`` adds one
    word slot for time, ``MemoryL.m`` multiplies every memory word, the time word included, by the
    position-encoding matrix) the temporal embedding of a memory is the word at position ``J = L + 1`` and
    is scaled element-wise by ``l_J``. A fixed per-dimension scale of a learned embedding: it changes the
    effective initial scale and learning rate of each dimension, not what the model can express.

    Args:
        sentence_len: ``L``, the padded sentence length (``J = L + 1``).
        encoding: ``"pe"`` or ``"pe_centered"``.
        embed_dim: ``d``.
        dtype: of the result (the temporal table's, so a float64 model stays float64).

    Returns:
        ``[d]`` of ``dtype``.

    >>> time_word_weight(1, "pe_centered", 2).tolist()  # J = 2: 1 + 4 (k - 3/2)(2 - 3/2) / 4
    [0.75, 1.25]
    """
    if encoding not in ("pe", "pe_centered"):
        raise InputError(f"time_word_weight weighs the time word by a position encoding: encoding must be 'pe' or 'pe_centered', got {encoding!r} (under 'bow' every word, the time word too, weighs 1)")
    words = torch.ones(1, sentence_len + 1, dtype=torch.long)  # a full sentence of J = L + 1 words
    alpha, beta = position_weights(words, encoding, "padded", embed_dim, dtype=dtype)  # [1, J]
    k_over_d = torch.arange(1, embed_dim + 1, dtype=dtype) / embed_dim  # [d]
    return alpha[0, -1] - k_over_d * beta[0, -1]


def encode_sentences(words: torch.Tensor, table: torch.Tensor, encoding: str, embed_dim: int, pe_length: str = "sentence") -> torch.Tensor:
    """Encode sentences with one or more stacked embedding matrices by ``embedding_bag`` (one call for BoW, two for PE).

    Args:
        words: ``[..., L]`` word indices (0 = null word).
        table: ``[V, n * d]``: ``n`` embedding matrices side by side (e.g. A^1..A^K and C^K for MemN2N).
        encoding: ``"pe"`` (position encoding, §4.1), ``"pe_centered"`` (the authors' code's centred form,
            :func:`position_weights`) or ``"bow"`` (bag of words).
        embed_dim: ``d``; the dimension index ``k`` of the encoding restarts at 1 in each matrix.
        pe_length: ``J`` of the encoding: ``"sentence"`` (each sentence's word count, the paper),
            ``"padded"`` (the padded width ``L``) or ``"padded_time"`` (``L + 1``), as :func:`position_weights`.

    Returns:
        ``[..., n * d]``: ``sum_j l_j * E x_j`` for each of the ``n`` matrices.
    """
    ok = isinstance(words, torch.Tensor) and words.dim() >= 1 and words.dtype in _INDEX_DTYPES and isinstance(table, torch.Tensor) and table.dim() == 2
    ok = ok and table.is_floating_point() and isinstance(embed_dim, int) and embed_dim >= 1 and table.shape[1] % embed_dim == 0 and table.shape[1] > 0
    if not ok:
        raise InputError(
            f"encode_sentences needs int64 (or int32) words [..., L], a float table [V, n * d] and d = embed_dim >= 1 dividing "
            f"its width; got words {_describe(words)}, table {_describe(table)}, embed_dim={embed_dim!r}"
        )
    found = outside(words, 0, table.shape[0] - 1)
    if found is not None:
        raise InputError(f"encode_sentences: words hold index {found[0] if found[0] < 0 else found[1]}, outside the table's rows 0..{table.shape[0] - 1}. Fix: map the words with the vocabulary the table was built for (0 = null word)")
    lead = words.shape[:-1]
    if in_transform():  # vmap / grad / jvp: a dense weighted sum they can batch, whichever inputs they map
        return _dense_bags(words, table, encoding, embed_dim, pe_length)
    out = _WeightedBags.apply(table, *_bag_layout(words, table, encoding, embed_dim, pe_length))
    return out.reshape(*lead, table.shape[1])  # [..., n*d]


def _dense_bags(words: torch.Tensor, table: torch.Tensor, encoding: str, embed_dim: int, pe_length: str) -> torch.Tensor:
    """:func:`encode_sentences` as a dense weighted sum over the padded words, ``[..., n*d]``: what runs under
    a ``torch.func`` transform, where the packed bags (a ``nonzero`` of data-dependent length and a
    hand-written backward) cannot be batched. It builds the ``[..., L, n*d]`` embedded words, so it is
    slower; tested equal to the bags."""
    alpha, beta = position_weights(words, encoding, pe_length, embed_dim, dtype=table.dtype)  # [..., L], zero on padding
    emb = F.embedding(words, table)  # [..., L, n*d]
    out = (alpha.unsqueeze(-1) * emb).sum(-2)
    if beta is None:
        return out
    scale = _minus_k_over_d(embed_dim, table.shape[1] // embed_dim, table.dtype, str(table.device))
    return out + scale * (beta.unsqueeze(-1) * emb).sum(-2)


def _bag_layout(words: torch.Tensor, table: torch.Tensor, encoding: str, embed_dim: int, pe_length: str) -> tuple:
    """What :class:`_WeightedBags` takes besides the table, for sentences ``words`` ``[..., L]``: the real
    words ``index`` ``[T]`` bag after bag, each bag's start ``offsets`` ``[N]``, each word's sentence ``bag``
    ``[T]``, its weights ``a`` (and ``b`` for PE, else None) ``[T]`` and the PE's ``-k/d`` (or None)."""
    L = words.shape[-1]
    flat = words.reshape(-1, L).contiguous()  # [N, L]; any strides in (a copy only when reshape returns a strided view)
    alpha, beta = position_weights(flat, encoding, pe_length, embed_dim, dtype=table.dtype)
    # Only real words enter the bags (padding is most of a padded story): 1-D input plus bag offsets.
    real = flat != 0  # [N, L]
    lengths = real.sum(-1)  # [N]
    where = real.view(-1).nonzero().squeeze(1)  # [T] flat positions of the real words, bag after bag
    index = flat.view(-1).index_select(0, where)  # [T]
    offsets = torch.cumsum(lengths, 0) - lengths  # [N] start of each bag; empty bags give zeros
    bag = torch.div(where, L, rounding_mode="floor")  # [T] the sentence of each real word
    a = alpha.view(-1).index_select(0, where)  # [T]
    if beta is None:  # bag of words
        return index, offsets, bag, a, None, None
    # PE: the same words weighed by alpha and by beta: alpha bag - (k/d) beta bag
    scale = _minus_k_over_d(embed_dim, table.shape[1] // embed_dim, table.dtype, str(table.device))
    return index, offsets, bag, a, beta.view(-1).index_select(0, where), scale


_SCALES: dict[tuple, torch.Tensor] = {}


def _minus_k_over_d(embed_dim: int, n: int, dtype: torch.dtype, device: str) -> torch.Tensor:
    """``-k/d`` for ``k = 1..d``, repeated for ``n`` stacked matrices (a constant, made once per shape;
    never written to). Made outside inference mode even when first asked for inside it, so that the cached
    tensor can be saved for a later backward; one made inside a ``torch.func`` transform is that transform's
    tensor, and is not kept (outside it, it has no storage)."""
    key = (embed_dim, n, dtype, device)
    scale = _SCALES.get(key)
    if scale is None:
        with torch.inference_mode(False):
            scale = (torch.arange(1, embed_dim + 1, dtype=dtype) / -embed_dim).repeat(n).to(device)  # [n*d]
        if not in_torch_func(scale):
            if len(_SCALES) >= 32:
                _SCALES.pop(next(iter(_SCALES)))
            _SCALES[key] = scale
    return scale


class _WeightedBags(torch.autograd.Function):
    """``sum_j a_j E x_j`` (and, with ``b``, ``- (k/d) sum_j b_j E x_j``) for every sentence, by
    ``embedding_bag``, with the gradient of ``E`` computed the same way: the gradient of a word's row is a
    weighted bag of the output gradients of the sentences it occurs in, so the backward sorts the words
    once and makes one ``embedding_bag`` per weight over the output gradient. That replaces PyTorch's
    ``embedding_bag`` backward (a sort and a dense accumulation per call), which took most of a MemN2N
    step's sentence encoding on a 2-core CPU. Tested equal to ``F.embedding_bag`` under autograd, and with
    ``gradcheck`` and ``gradgradcheck``. The weights ``a``, ``b`` come from the words and get no gradient. The
    backward is made of differentiable operations (an ``embedding_bag`` over the output gradient), so a
    double backward (a gradient penalty) differentiates through it; without ``create_graph`` it runs with
    autograd off, as any backward does."""

    @staticmethod
    def forward(table, index, offsets, bag, a, b, scale):
        return _bags(table, index, offsets, a, b, scale)

    @staticmethod
    def setup_context(ctx, inputs, output):  # a separate setup_context lets torch.func.grad / jacrev run it
        table, index, offsets, bag, a, b, scale = inputs
        ctx.vocab, ctx.device_type = table.shape[0], table.device.type
        ctx.save_for_backward(index, bag, a, b, scale)

    @staticmethod
    def backward(ctx, grad):
        index, bag, a, b, scale = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return (None,) * 7
        with torch.autocast(device_type=ctx.device_type, enabled=False):  # the backward runs in the caller's autocast
            return _bags_backward(grad, index, bag, a, b, scale, ctx.vocab), None, None, None, None, None, None


def _bags(table, index, offsets, a, b, scale):
    """The forward of :class:`_WeightedBags`: ``[N, n*d]``."""
    out = F.embedding_bag(index, table, offsets, mode="sum", per_sample_weights=a)
    return out if b is None else torch.addcmul(out, F.embedding_bag(index, table, offsets, mode="sum", per_sample_weights=b), scale)


def _bags_backward(grad, index, bag, a, b, scale, vocab):
    """The gradient of :func:`_bags`'s table, ``[V, n*d]``, from the output gradient ``[N, n*d]``: each word's
    row gathers ``a`` (and ``-(k/d) b``) times the gradients of the sentences it occurs in, one
    ``embedding_bag`` per weight over the words sorted once."""
    grad = grad.contiguous()
    order = index.argsort()  # the occurrences of word 0, 1, ... in turn
    counts = torch.bincount(index, minlength=vocab)
    starts = torch.cumsum(counts, 0) - counts  # [V] each word's first occurrence in that order
    rows = bag.index_select(0, order)  # [T] the sentence of each occurrence

    def bags(w: torch.Tensor) -> torch.Tensor:  # [V, n*d]: sum over a word's occurrences of w dL/d(sentence)
        return F.embedding_bag(rows, grad, starts, mode="sum", per_sample_weights=w.index_select(0, order))

    return bags(a) if b is None else torch.addcmul(bags(a), bags(b), scale)


def time_index(memory_mask: torch.Tensor) -> torch.Tensor:
    """Temporal index of each memory slot: 0 for the most recent sentence, counting back; 0 on padding.

    Slots hold sentences in chronological order, the newest real slot last; a real slot's index is the
    number of real slots after it. With the usual left-aligned layout (slot ``n-1`` the newest of ``n``) that
    is ``n - 1 - slot``; padding before or between sentences is skipped, not counted. This makes the temporal
    encoding ``T(i)`` of MemN2N §4.1 independent of how much padding there is and where.

    >>> time_index(torch.tensor([[True, True, True, False]])).tolist()
    [[2, 1, 0, 0]]
    >>> time_index(torch.tensor([[False, True, False, True]])).tolist()
    [[0, 1, 0, 0]]
    """
    _check_mask(memory_mask, "time_index")
    later = memory_mask.flip(-1).cumsum(-1).flip(-1) - 1  # [B, M] real slots after each slot (for real ones)
    return torch.where(memory_mask, later, torch.zeros_like(later)).long()


def random_time_index(memory_mask: torch.Tensor, ratio: float, max_index: int, generator: torch.Generator) -> torch.Tensor:
    """Temporal indices with random empty memories inserted ("random noise", MemN2N §4.1).

    For a story of ``n`` sentences, ``e ~ U{0..ceil(ratio * n)}`` empty memories are inserted at random
    places: the real sentences keep their order but take a random sorted subset of ``n`` of the
    ``n + e`` time slots (capped at ``max_index``), as the authors' Matlab code does (``randomize_time``).
    Empty memories hold no words, so only the time indices of the real sentences change.

    Args:
        memory_mask: ``[B, M]`` bool, True on real sentences (in time order; padding anywhere, as in
            :func:`time_index`).
        ratio: fraction of empty memories (0.1 in the paper).
        max_index: largest temporal index (memory size - 1).
        generator: source of randomness (the trainer's, so resuming is exact).

    Returns:
        ``[B, M]`` long, 0 on padding; each row decreasing over its real slots, strictly until the cap:
        indices drawn above ``max_index`` are clamped to it, so the oldest
        sentences of a long story may share it.
    """
    _check_mask(memory_mask, "random_time_index")
    B, M = memory_mask.shape
    device = memory_mask.device
    mask = memory_mask.cpu()  # the draws are made on the CPU generator
    n = mask.sum(-1)  # [B] real sentences
    blanks = torch.floor(torch.rand(B, generator=generator) * (torch.ceil(ratio * n.float()) + 1)).long()  # [B] in 0..ceil(ratio n)
    total = n + blanks  # [B] time slots after the insertion
    width = max(int(total.max()) if B else 1, M, 1)
    keys = torch.rand(B, width, generator=generator)  # [B, W]
    keys = keys.masked_fill(torch.arange(width)[None, :] >= total[:, None], 2.0)  # only slots < total can win
    chosen = keys.argsort(dim=-1)[:, :M]  # [B, M]: the first n columns are a uniform random n-subset
    slot = torch.arange(M)[None, :]  # [1, M]
    big = torch.iinfo(torch.long).max
    ordered = torch.where(slot < n[:, None], chosen, torch.full_like(chosen, big)).sort(dim=-1).values  # t_0 < ... < t_{n-1}
    # The r-th real slot (r = 0 the oldest) holds sentence r; the newest (r = n-1) takes the smallest index t_0.
    rank = mask.long().cumsum(-1) - 1  # [B, M] order of each real slot among the real ones
    pick = (n[:, None] - 1 - rank).clamp(0, M - 1)  # [B, M]
    times = torch.where(mask, ordered.gather(1, pick), torch.zeros_like(ordered))
    return times.clamp(max=max_index).to(device)


def masked_address(scores: torch.Tensor, mask: torch.Tensor, softmax: bool = True) -> torch.Tensor:
    """Attention over memory slots with padding masked out (MemN2N eq. 1).

    With ``softmax``, padded slots get ``-inf`` before the softmax; without it (linear start, §4.2) the raw
    scores are used and padded slots are zeroed. A row whose slots are all padding gives all zeros, never
    NaN, in the forward and the backward pass.

    Args:
        scores: ``[B, M]`` match scores ``u^T m_i``.
        mask: ``[B, M]`` bool, True for real memories.
        softmax: apply the softmax (False under linear start).

    Returns:
        ``p``: ``[B, M]``.

    >>> masked_address(torch.tensor([[0.0, 0.0, 5.0]]), torch.tensor([[True, True, False]])).tolist()
    [[0.5, 0.5, 0.0]]
    """
    bias, gate = mask_bias(mask)
    if not isinstance(scores, torch.Tensor) or tuple(scores.shape) != tuple(mask.shape) or not scores.is_floating_point():
        raise InputError(f"masked_address needs float scores of the mask's shape [B, M] = {list(mask.shape)}; got scores {_describe(scores)}. Fix: one score per memory slot, u^T m_i")
    return address_with_bias(scores, bias, gate, softmax)


def temporal_encoding(time: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """The temporal encoding ``T(i)`` of each memory slot (MemN2N §4.1): row ``time[b, i]`` of ``table``.

    Args:
        time: ``[B, M]`` temporal index of each slot (0 = newest).
        table: ``[M_max, D]`` learned temporal rows.

    Returns:
        ``[B, M, D]``. The same rows as ``F.embedding(time, table)``, read with ``index_select``, whose
        backward (an ``index_add``) runs about twice as fast on CPU as embedding's dense backward.

    Raises:
        InputError: ``time`` not an integer tensor, ``table`` not a float matrix, or (on the CPU) an index
            outside ``0..M_max-1``.
    """
    if not (isinstance(time, torch.Tensor) and time.dtype in _INDEX_DTYPES) or not (isinstance(table, torch.Tensor) and table.is_floating_point() and table.dim() == 2):
        raise InputError(
            f"temporal_encoding needs integer time indices [B, M] and a float table [M_max, D]; got time {_describe(time)}, table {_describe(table)}. "
            "Fix: time.long() (0 = newest slot), and the learned table as a 2-d float tensor"
        )
    found = outside(time, 0, table.shape[0] - 1)
    if found is not None:
        raise InputError(
            f"temporal_encoding: time holds index {found[0] if found[0] < 0 else found[1]}, outside the table's rows 0..{table.shape[0] - 1}. "
            f"Fix: give each memory's age, 0 for the newest, below {table.shape[0]} (keep the last {table.shape[0]} sentences), or use a larger table"
        )
    return table.index_select(0, time.reshape(-1)).view(*time.shape, table.shape[-1])


def mask_bias(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """What :func:`masked_address` derives from a mask, computed once for all hops.

    Returns:
        ``(bias, gate)``: ``bias`` ``[B, M]`` is 0 on real slots and ``-inf`` on padding (0 everywhere in
        an all-padding row, which keeps its softmax finite); ``gate`` ``[B, M]`` float is the mask itself,
        zeroing padding (and all-padding rows) after the softmax.
    """
    _check_mask(mask, None)
    any_real = mask.any(-1, keepdim=True)  # [B, 1]
    keep = mask | ~any_real
    bias = torch.zeros(mask.shape, dtype=torch.float32, device=mask.device).masked_fill(~keep, float("-inf"))  # not in place: vmap
    return bias, mask.float()


def mask_pair(mask: torch.Tensor | tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``(bias, gate)`` the hops read: :func:`mask_bias` of a bool mask, or a pair it returned, checked
    (a pair of bool masks would add ``True`` to the scores: no error, wrong weights).

    >>> bias, gate = mask_pair(torch.tensor([[True, False]]))
    >>> bias.tolist(), gate.tolist()
    ([[0.0, -inf]], [[1.0, 0.0]])
    """
    if isinstance(mask, torch.Tensor):
        return mask_bias(mask)
    pair = tuple(mask) if isinstance(mask, (tuple, list)) else ()
    ok = len(pair) == 2 and all(isinstance(t, torch.Tensor) and t.is_floating_point() and t.dim() == 2 for t in pair) and pair[0].shape == pair[1].shape
    if not ok:
        got = _describe(mask) if isinstance(mask, torch.Tensor) or not pair else ", ".join(_describe(t) for t in pair)
        raise InputError(
            f"mask must be a bool tensor [B, M] (True on real memories) or the (bias, gate) pair mask_bias(mask) returns, two "
            f"float [B, M] tensors; got {got}. Fix: pass the bool mask itself, or mask_bias(mask) computed once for all hops"
        )
    return pair[0], pair[1]


def address_with_bias(scores: torch.Tensor, bias: torch.Tensor, gate: torch.Tensor, softmax: bool = True) -> torch.Tensor:
    """:func:`masked_address` with the mask pre-digested by :func:`mask_bias`."""
    if not softmax:
        return scores * gate.to(scores.dtype)
    return torch.softmax(scores + bias.to(scores.dtype), dim=-1) * gate.to(scores.dtype)


def read_memory(p: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Weighted sum of memory vectors: ``o = sum_i p_i c_i`` (MemN2N eq. 2). ``p`` ``[B, M]``, ``values``
    ``[B, M, d]`` -> ``[B, d]``."""
    if not (isinstance(p, torch.Tensor) and isinstance(values, torch.Tensor) and p.dim() == 2 and values.dim() == 3 and tuple(p.shape) == tuple(values.shape[:2]) and _one_float_dtype(p, values)):
        raise InputError(f"read_memory needs weights p [B, M] and values [B, M, d] of one float dtype; got p {_describe(p)}, values {_describe(values)}")
    return torch.bmm(p.unsqueeze(1), values).squeeze(1)  # [B, d]


def memory_hop(u: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor | tuple[torch.Tensor, torch.Tensor], softmax: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """One memory hop: address with ``u``, read, and return ``(o, p)`` (MemN2N eqs. 1-2).

    The caller forms the next controller state: ``u + o`` (adjacent tying) or ``H u + o`` (layer-wise).

    Args:
        u: controller state ``[B, d]``.
        keys: input memory ``m_i`` ``[B, M, d]``.
        values: output memory ``c_i`` ``[B, M, d]``.
        mask: ``[B, M]`` bool, or the ``(bias, gate)`` pair of :func:`mask_bias` computed once for all hops.
        softmax: False under linear start.
    """
    bias, gate = mask_pair(mask)
    _check_hop(u, keys, values, bias)
    # u^T K^T rather than K u: the same numbers, but a [1, d] x [d, M] product per story runs about 4x
    # faster on CPU than a matrix-vector [M, d] x [d, 1] one (about 10% of a MemN2N training step).
    scores = torch.bmm(u.unsqueeze(1), keys.transpose(1, 2)).squeeze(1)  # [B, M]
    p = address_with_bias(scores, bias, gate, softmax)
    return read_memory(p, values), p


def _one_float_dtype(*tensors: torch.Tensor) -> bool:
    """Floating tensors of one dtype, or of several under autocast (which casts them at the matmul)."""
    if not all(t.is_floating_point() for t in tensors):
        return False
    return len({t.dtype for t in tensors}) == 1 or autocast_enabled(tensors[0])


def _check_hop(u: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, bias: torch.Tensor) -> None:
    """Shapes of one padded hop: ``u`` ``[B, d]``, ``keys`` ``[B, M, d]``, ``values`` ``[B, M, d']``, mask ``[B, M]``
    (a handful of attribute reads; a mismatch would otherwise fail inside ``bmm`` or broadcast)."""
    ok = u.dim() == 2 and keys.dim() == 3 and values.dim() == 3 and tuple(keys.shape[:2]) == tuple(values.shape[:2]) == tuple(bias.shape)
    if not ok or u.shape[0] != keys.shape[0] or u.shape[1] != keys.shape[2] or not _one_float_dtype(u, keys, values):
        raise InputError(
            f"memory hop needs u [B, d], keys [B, M, d], values [B, M, d'] of one float dtype and a mask [B, M]; got u {_describe(u)}, "
            f"keys {_describe(keys)}, values {_describe(values)}, mask {list(bias.shape)}. Fix: embed each story to [B, M, d] and the question to [B, d]"
        )


def pack_memories(memory_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Where the real memories of a padded batch are: ``(slots, owner)``, both ``[R]`` int64, story after
    story and oldest first; ``slots`` are flat indices ``b * M + i`` into ``[B, M]``, ``owner`` is ``b``.

    >>> pack_memories(torch.tensor([[True, True, False], [True, False, False]]))
    (tensor([0, 1, 3]), tensor([0, 0, 1]))
    """
    _check_mask(memory_mask, "pack_memories")
    slots = memory_mask.reshape(-1).nonzero().squeeze(1)  # [R]
    return slots, torch.div(slots, memory_mask.shape[1], rounding_mode="floor")


def all_slots(memory_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(slots, owner)`` as :func:`pack_memories` gives them, but for every slot of ``[B, M]``, real or not: the
    layout a ``vmap`` over stories uses, where the number of real memories may differ from one example to the
    next (``nonzero`` cannot be batched). Read with :func:`memory_hop_packed` as usual, the empty slots must
    hold zero vectors (the padded computation): then the numbers are those of the packed layout.

    >>> all_slots(torch.tensor([[True, False], [True, True]]))
    (tensor([0, 1, 2, 3]), tensor([0, 0, 1, 1]))
    """
    _check_mask(memory_mask, "all_slots")
    B, M = memory_mask.shape[-2:]
    slots = torch.arange(B * M, device=memory_mask.device)
    return slots, torch.div(slots, M, rounding_mode="floor")


def memory_hop_packed(
    u: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    slots: torch.Tensor,
    owner: torch.Tensor,
    mask: tuple[torch.Tensor, torch.Tensor],
    softmax: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`memory_hop` with only the real memories stored, packed story after story (:func:`pack_memories`).

    The same numbers as :func:`memory_hop` on the padded ``[B, M, d]`` memories whose empty slots hold zero
    vectors (tested): a slot that is not packed scores 0 and is read as a zero vector; the ``(bias, gate)``
    pair of :func:`mask_bias` decides whether it takes part in the softmax (``-inf``) or not. In bAbI 1k
    joint training about 18% of 50 slots are real, so the hops touch about a fifth of the memory.

    Args:
        u: controller state ``[B, d]``.
        keys, values: ``[R, d]`` the real memories ``m_i`` and ``c_i``.
        slots, owner: ``[R]`` from :func:`pack_memories`.
        mask: ``(bias, gate)`` ``[B, M]`` from :func:`mask_bias`.
        softmax: False under linear start.

    Returns:
        ``(o, p)``: ``[B, d]`` and the addressing weights ``[B, M]``.
    """
    bias, gate = mask_pair(mask)
    B, M = bias.shape
    R = slots.numel() if isinstance(slots, torch.Tensor) else -1
    ok = isinstance(u, torch.Tensor) and isinstance(keys, torch.Tensor) and isinstance(values, torch.Tensor) and isinstance(owner, torch.Tensor)
    ok = ok and u.dim() == 2 and u.shape[0] == B and keys.dim() == 2 and values.dim() == 2 and keys.shape == (R, u.shape[1]) and values.shape[0] == R
    ok = ok and slots.dim() == 1 and owner.shape == slots.shape and slots.dtype in _INDEX_DTYPES and owner.dtype in _INDEX_DTYPES and _one_float_dtype(u, keys, values)
    if not ok:
        raise InputError(
            f"memory_hop_packed needs u [B, d], keys [R, d], values [R, d'] of one float dtype and int64 slots, owner [R] "
            f"(pack_memories(mask)) for a mask [B, M] = {list(bias.shape)}; got u {_describe(u)}, keys {_describe(keys)}, "
            f"values {_describe(values)}, slots {_describe(slots)}, owner {_describe(owner)}"
        )
    s = (keys * u.index_select(0, owner)).sum(-1)  # [R] u . m_i
    scores = s.new_zeros(B * M).index_copy(0, slots, s).view(B, M)  # [B, M], 0 on empty slots
    p = address_with_bias(scores, bias, gate, softmax)  # [B, M]
    weights = p.reshape(-1).index_select(0, slots)  # [R]
    o = u.new_zeros(B, values.shape[-1]).index_add(0, owner, values * weights[:, None])  # [B, d] sum_i p_i c_i
    return o, p


def _adjacent_hops(u, mem, slots, owner, bias, gate, softmax, hops):
    """``hops`` packed hops under adjacent tying (keys ``E_k``, values ``E_{k+1}``, ``u^{k+1} = u^k + o^k``),
    without autograd: the same numbers as :func:`memory_hop_packed` hop after hop. Returns ``u^{K+1}``, the
    attention ``[B, K, M]`` and, per hop, what :func:`_adjacent_hops_backward` needs: each memory's
    controller state ``[R, d]``, its weight ``p_i`` ``[R]`` and the softmax output ``[B, M]`` (None under
    linear start)."""
    B, M = bias.shape
    d = u.shape[1]
    uos, weights, probs, attention = [], [], [], []
    flat_bias = bias.reshape(-1)
    for k in range(hops):
        keys, values = mem[:, k * d : (k + 1) * d], mem[:, (k + 1) * d : (k + 2) * d]
        uo = u.index_select(0, owner)  # [R, d] each memory's controller state
        s = torch.linalg.vecdot(keys, uo)  # [R] u . m_i
        if softmax:  # bias + scores in one op (bias is 0 on real slots), the softmax, gated for all-padding rows
            q = torch.softmax(flat_bias.index_add(0, slots, s).view(B, M), dim=-1)
            p = q * gate
        else:
            q = None
            p = gate.new_zeros(B * M).index_copy_(0, slots, s).view(B, M) * gate
        w = p.reshape(-1).index_select(0, slots)  # [R] p_i of the real memories
        u = u.index_add(0, owner, values * w[:, None])  # u + o, o = sum_i p_i c_i
        uos.append(uo)
        weights.append(w)
        probs.append(q)
        attention.append(p)
    return u, torch.stack(attention, 1) if hops else bias.new_zeros(B, 0, M), uos, weights, probs


def _adjacent_hops_backward(gu, grad_attention, gmem, mem, slots, owner, gate, uos, weights, probs, softmax):
    """The backward of :func:`_adjacent_hops`: from ``dL/du^{K+1}`` ``gu`` (updated in place to ``dL/du^1``)
    and ``dL/d(attention)`` (or None), accumulates ``dL/dmem`` into ``gmem`` ``[R, (K+1) d]``."""
    B, M = gate.shape
    d = gu.shape[1]
    for k in reversed(range(len(uos))):  # u_{k+1} = u_k + sum_i p_i c_i,  p = softmax(u_k . m_i) (masked, gated)
        keys, values = mem[:, k * d : (k + 1) * d], mem[:, (k + 1) * d : (k + 2) * d]
        guo = gu.index_select(0, owner)  # [R, d] dL/do for each memory's story
        gmem[:, (k + 1) * d : (k + 2) * d].addcmul_(guo, weights[k][:, None])  # dL/dc_i = p_i dL/do
        # dL/dp: the gate is 1 on every slot that is read, so it only weighs a gradient given to the attention
        gp = gate.new_zeros(B * M).index_copy_(0, slots, torch.linalg.vecdot(values, guo)).view(B, M)
        if grad_attention is not None:
            gp = torch.addcmul(gp, grad_attention[:, k], gate)
        gs = torch._softmax_backward_data(gp, probs[k], -1, probs[k].dtype) if softmax else gp  # dL/ds
        gs = gs.reshape(-1).index_select(0, slots)  # [R] (empty slots' scores are constants)
        gmem[:, k * d : (k + 1) * d].addcmul_(uos[k], gs[:, None])  # dL/dm_i = dL/ds_i u
        gu.index_add_(0, owner, keys * gs[:, None])  # dL/du_k = dL/du_{k+1} + sum_i dL/ds_i m_i


class _AdjacentMemN2N(torch.autograd.Function):
    """Forward and hand-written backward of :func:`adjacent_memn2n` (one autograd node for the whole model).

    ``inputs`` holds what is not differentiated: ``("cpp", words, encoding, pe_length, scale)`` for the C++
    kernel, which encodes the sentences itself, or ``("torch", layout)`` with :func:`_bag_layout`'s tensors."""

    @staticmethod
    def forward(ctx, table, temporal_table, inputs, time, time_scale, R, slots, owner, bias, gate, softmax, hops):
        d = table.shape[1] // (hops + 1)
        if inputs[0] == "cpp":  # encoding, temporal rows and all K hops in one C++ call (overlooked.memory.kernels)
            _, words, encoding, pe_length, scale = inputs
            mem, u_all, q_all, attention, w_all = kernels.forward(table, temporal_table, words, time, time_scale, scale, slots, owner, bias, gate, softmax, hops, encoding, pe_length)
            u, saved = u_all[hops], (words, scale, u_all, q_all, w_all)
        else:
            index, offsets, bag, a, b, scale = layout = inputs[1]
            enc = _bags(table, index, offsets, a, b, scale)  # [R + B, (K+1) d] memories, then questions
            mem = enc[:R]
            if temporal_table is not None:
                t = temporal_table.index_select(0, time)  # [R, (K+1) d]
                mem = mem + (t if time_scale is None else t * time_scale)
            u, attention, uos, weights, probs = _adjacent_hops(enc[R:, :d], mem, slots, owner, bias, gate, softmax, hops)
            saved = (*layout, *uos, *weights, *(probs if softmax else ()))
        W = table[1:, hops * d :]  # W^T = C^K without the null word, whose logit is 0
        logits = F.pad(u @ W.T, (1, 0))  # [B, V]
        ctx.meta = (R, softmax, hops, temporal_table.shape[0] if temporal_table is not None else None, inputs[0] == "cpp", inputs[2:4] if inputs[0] == "cpp" else None)
        ctx.set_materialize_grads(False)  # an output the loss does not use (usually the attention) comes as None, not zeros
        ctx.save_for_backward(table, time, time_scale, slots, owner, gate, mem, u, *saved)
        return logits, attention

    @staticmethod
    def backward(ctx, grad_logits, grad_attention):
        if torch.is_grad_enabled():  # create_graph=True: the engine runs a backward with grad mode on only then
            # (once_differentiable would return gradients that silently drop their dependence on the weights)
            raise RuntimeError(
                "MemN2N's fused node (fused=True) has a hand-written backward that cannot itself be differentiated: "
                "for a double backward (create_graph=True, e.g. a gradient penalty) build the model with fused=False"
            )
        table = ctx.saved_tensors[0]
        # The engine runs this in the caller's thread, under the autocast the loss was computed in: a bf16
        # ``g @ W`` here was written by the float kernel into a buffer half its size (heap corruption).
        with torch.autocast(device_type=table.device.type, enabled=False):
            return _AdjacentMemN2N._backward(ctx, grad_logits, grad_attention)

    @staticmethod
    def _backward(ctx, grad_logits, grad_attention):
        R, softmax, K, temporal_rows, cpp, encoding = ctx.meta
        table, time, time_scale, slots, owner, gate, mem, u, *rest = ctx.saved_tensors
        grad_logits = None if grad_logits is None else grad_logits.to(table.dtype)
        grad_attention = None if grad_attention is None else grad_attention.to(table.dtype)
        d = table.shape[1] // (K + 1)
        W = table[1:, K * d :]
        if grad_logits is not None:
            g = grad_logits[:, 1:]  # [B, V-1]; the null word's logit is a constant
            gu = g @ W  # [B, d]
        else:
            g, gu = None, u.new_zeros(u.shape)
        grad_temporal = None
        if cpp:
            words, scale, u_all, q_all, w_all = rest
            grad_table = table.new_zeros(table.shape)
            grad_temporal = table.new_zeros(temporal_rows, table.shape[1]) if temporal_rows is not None else None
            gatt = None if grad_attention is None else grad_attention.contiguous()
            kernels.backward(gu.contiguous(), gatt, grad_table, grad_temporal, words, time, time_scale, scale, slots, owner, gate, mem, u_all, q_all, w_all, softmax, *encoding)
        else:
            index, offsets, bag, a, b, scale, *rest = rest
            uos, weights, probs = rest[:K], rest[K : 2 * K], rest[2 * K :]
            genc = mem.new_zeros(R + u.shape[0], table.shape[1])  # dL/d(encoded sentences): memories, then questions
            _adjacent_hops_backward(gu, grad_attention, genc[:R], mem, slots, owner, gate, uos, weights, probs, softmax)
            genc[R:, :d] = gu
            if temporal_rows is not None:
                gt = genc[:R] if time_scale is None else genc[:R] * time_scale
                grad_temporal = gt.new_zeros(temporal_rows, gt.shape[1]).index_add_(0, time, gt)
            grad_table = _bags_backward(genc, index, bag, a, b, scale, table.shape[0])
        if g is not None:
            grad_table[1:, K * d :].addmm_(g.T, u)  # dL/dW = g^T u^{K+1}
        return (grad_table, grad_temporal) + (None,) * 10


def adjacent_memn2n(
    table: torch.Tensor,
    temporal_table: torch.Tensor | None,
    words: torch.Tensor,
    time: torch.Tensor | None,
    slots: torch.Tensor,
    owner: torch.Tensor,
    mask: tuple[torch.Tensor, torch.Tensor],
    *,
    hops: int,
    encoding: str = "pe",
    pe_length: str = "sentence",
    softmax: bool = True,
    time_scale: torch.Tensor | None = None,
    backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """MemN2N under adjacent tying from its weights to its answer scores, as one autograd node with a
    hand-written backward (the fast path of :class:`~overlooked.memory.modules.MemN2N`).

    The same numbers as the same model written with autograd from :func:`encode_sentences`,
    :func:`temporal_encoding` and :func:`memory_hop_packed` hop after hop (tested, values and
    ``gradcheck`` in float64): ``u^1 = B q`` with ``B = E_0``; hop ``k`` addresses keys ``E_{k-1}`` and reads
    values ``E_k`` (plus the temporal rows); ``u^{k+1} = u^k + o^k``; ``a = W u^{K+1}`` with ``W^T = C^K``
    whose null-word row is held at zero (its logit is 0, and it gets no gradient). On a 2-core CPU the
    autograd version spends most of a training step between operations (about 750 operator calls per
    step); with the C++ kernel the step makes about 200, with none of autograd's bookkeeping between
    them. Differentiable once.

    Args:
        table: ``[V, (K+1) d]`` the embedding matrices ``E_0..E_K`` side by side.
        temporal_table: ``[M, (K+1) d]`` the temporal rows ``T_0..T_K``, or None.
        words: ``[R + B, L]`` the real memories packed (:func:`pack_memories`), then the questions.
        time: ``[R]`` each memory's temporal index (None without a temporal table).
        slots, owner: ``[R]`` from :func:`pack_memories`.
        mask: ``(bias, gate)`` ``[B, M]`` from :func:`mask_bias`.
        hops: ``K``.
        encoding, pe_length: as :func:`encode_sentences`.
        softmax: False under linear start.
        time_scale: ``[(K+1) d]`` a factor of the temporal rows (``pe_length="padded_time"``), or None; a
            constant (it gets no gradient).
        backend: who runs the K hops. ``"cpp"``: one C++ call forward and one backward
            (:mod:`overlooked.memory.kernels`; float32/float64 CPU tensors, built by ``g++`` at first use);
            ``"torch"``: PyTorch operations (any device and dtype); ``"auto"``: ``cpp`` where it runs, else
            ``torch``. The two are tested equal.

    Returns:
        ``(logits, attention)``: ``[B, V]`` and ``[B, K, M]``.
    """
    bias, gate = mask_pair(mask)
    R = slots.numel()
    ok = table.dim() == 2 and hops >= 0 and table.shape[1] % (hops + 1) == 0 and words.dim() == 2 and words.shape[0] >= R
    ok = ok and bias.dim() == 2 and bias.shape == gate.shape and words.shape[0] - R == bias.shape[0] and owner.numel() == R
    ok = ok and (temporal_table is None or (temporal_table.dim() == 2 and temporal_table.shape[1] == table.shape[1] and time is not None and time.numel() == R))
    ok = ok and (time_scale is None or tuple(time_scale.shape) == (table.shape[1],))
    if not ok:
        raise InputError(
            f"adjacent MemN2N needs table [V, (K+1) d] (K = {hops}), temporal_table [M, (K+1) d] or None, time_scale [(K+1) d] or None, "
            f"words [R + B, L], slots/owner [R], time [R] with a temporal table, and a mask [B, M]; got table {_describe(table)}, temporal_table {_describe(temporal_table)}, "
            f"time_scale {_describe(time_scale)}, words {_describe(words)}, time {_describe(time)}, {R} slots, mask {list(bias.shape)}. "
            "Fix: pack the memories with pack_memories and put the questions after them"
        )
    if backend not in ("auto", "cpp", "torch"):
        raise ValueError(f"backend must be 'auto', 'cpp' or 'torch', got {backend!r}")
    if in_transform():
        raise InputError(
            "adjacent_memn2n is one autograd node with a hand-written backward that torch.func transforms (grad, jacrev, vmap) "
            "cannot run. Fix: build MemN2N as usual (it reads through the unfused path under a transform) or with fused=False"
        )
    if backend == "cpp":
        if table.device.type != "cpu" or table.dtype not in (torch.float32, torch.float64):
            raise InputError(f"backend='cpp' runs float32/float64 CPU tensors; got {table.dtype} on {table.device}. Fix: use backend='auto' or 'torch'")
        try:
            kernels.load()
        except native.CompilerUnavailable as err:
            raise InputError(f"backend='cpp': {err}. Fix: use backend='auto' or 'torch'") from err
    cpp = backend != "torch" and kernels.usable(table)
    d = table.shape[1] // (hops + 1)
    slots, owner, dt = slots.long().contiguous(), owner.long().contiguous(), table.dtype
    if cpp:
        if encoding not in ("pe", "pe_centered", "bow") or pe_length not in ("sentence", "padded", "padded_time"):
            position_weights(words[:0], encoding, pe_length, d)  # names the unknown setting
        scale = _minus_k_over_d(d, hops + 1, dt, str(table.device))
        c = lambda t: None if t is None else t.to(dt).contiguous()  # noqa: E731  (the kernel reads the table's dtype)
        inputs = ("cpp", words.long().contiguous(), encoding, pe_length, scale)
        table, temporal_table, time, time_scale = table.contiguous(), c(temporal_table), None if time is None else time.long().contiguous(), c(time_scale)
    else:
        if reads_values(words):  # the ranges the C++ kernel checks as it reads (raw index errors here before)
            B, M = bias.shape
            bad = 1 if words.numel() and (int(words.min()) < 0 or int(words.max()) >= table.shape[0]) else 0
            if not bad and time is not None and R and temporal_table is not None and (int(time.min()) < 0 or int(time.max()) >= temporal_table.shape[0]):
                bad = 2
            if not bad and R and (int(slots.min()) < 0 or int(slots.max()) >= B * M or not torch.equal(owner, torch.div(slots, max(M, 1), rounding_mode="floor"))):
                bad = 3
            if bad:
                raise InputError(f"adjacent MemN2N: {kernels.BAD_INPUT[bad]}. Fix: check the inputs against the model's vocabulary and memory size (check_memory_inputs names them)")
        inputs = ("torch", _bag_layout(words, table, encoding, d, pe_length))
    with torch.autocast(device_type=table.device.type, enabled=False):
        return _AdjacentMemN2N.apply(table, temporal_table, inputs, time, time_scale, R, slots, owner, bias.to(dt).contiguous(), gate.to(dt).contiguous(), bool(softmax), hops)


def key_value_hop(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor | tuple[torch.Tensor, torch.Tensor], R: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One key-value memory hop (Miller et al. 2016, §3.1): ``p_h = softmax(q . A Phi_K(k_h))``,
    ``o = sum_h p_h A Phi_V(v_h)``, ``q' = R_j (q + o)``.

    Args:
        q: query ``[B, d]``.
        keys: embedded keys ``[B, M, d]``.
        values: embedded values ``[B, M, d]``.
        mask: ``[B, M]`` bool, or the pair of :func:`mask_bias`.
        R: ``[d, d]`` the hop's query-update matrix ``R_j``.

    Returns:
        ``(q_next, p)``: ``[B, d]`` and the addressing weights ``[B, M]``.
    """
    o, p = memory_hop(q, keys, values, mask, softmax=True)
    if not isinstance(R, torch.Tensor) or tuple(R.shape) != (q.shape[1], values.shape[2]) or q.shape[1] != values.shape[2] or not R.is_floating_point():
        raise InputError(f"key_value_hop needs a float R [d, d] with d = {q.shape[1]} (the query's width) and values [B, M, d]; got R {_describe(R)}, q {_describe(q)}, values {_describe(values)}")
    return (q + o) @ R.T, p


# Index dtypes that embedding_bag, index_select and gather all accept.
_INDEX_DTYPES = (torch.int64, torch.int32)


def _describe(x: object) -> str:
    """``"float32 [4, 5]"`` for a tensor, the type's name for anything else."""
    if isinstance(x, torch.Tensor):
        return f"{str(x.dtype).removeprefix('torch.')} {list(x.shape)}"
    return type(x).__name__


def _check_mask(mask: object, where: str | None) -> None:
    """A ``[B, M]`` bool memory mask, or an InputError naming ``where`` it was passed (the function's name;
    None: the mask argument of the addressing functions) and the fix."""
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or mask.dim() != 2:
        what = "mask must be a bool tensor" if where is None else f"{where} needs a bool memory mask"
        raise InputError(f"{what} [B, M], True on real memories; got {_describe(mask)}. Fix: pass mask.bool() (or mask > 0) of shape [B, M]")


def check_memory_inputs(
    story: torch.Tensor,
    query: torch.Tensor,
    memory_mask: torch.Tensor,
    time: torch.Tensor | None = None,
    *,
    supporting: torch.Tensor | None = None,
    memory_size: int | None = None,
    vocab_size: int | None = None,
    name: str = "memn2n",
) -> None:
    """Check that the inputs of a memory model's forward fit together, before they fail deep inside it.

    Without this a ``[B, 5]`` mask for a ``[B, 10, L]`` story runs and reads half the memory, and other
    mistakes surface as unrelated errors (unpacking, ``index out of range``, a ``torch.where`` dtype clash).
    Shapes and dtypes are always checked; values (word ids within the vocabulary, time indices within the
    temporal table) only for CPU tensors, where reading them costs microseconds; on a GPU that would stall
    every step, and an index out of range stops the kernel there anyway.

    Args:
        story: ``[B, M, L]`` int64 (or int32) word indices.
        query: ``[B, L']`` int64 (or int32) word indices (``L'`` may differ from ``L``).
        memory_mask: ``[B, M]`` bool, True on real sentences.
        time: ``[B, M]`` int64 (or int32) temporal indices, or None.
        supporting: MemNN's ``[B, S]`` int64 supporting slots, or None.
        memory_size: rows of a table indexed by slot or time (the temporal encoding of MemN2N and KV-MemNN),
            so at most ``memory_size`` slots fit and time indices lie in ``0..memory_size-1``; None when the
            model has no such table.
        vocab_size: the model's vocabulary ``V``: word ids must lie in ``0..V-1``; None to skip.
        name: the model's name, which starts every message.

    Raises:
        InputError: (a ``ValueError``) naming the argument, what was expected, what it got, and a fix.

    >>> story, query = torch.ones(2, 3, 4, dtype=torch.long), torch.ones(2, 4, dtype=torch.long)
    >>> check_memory_inputs(story, query, torch.ones(2, 2, dtype=torch.bool))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    overlooked.errors.InputError: memn2n: memory_mask must be a bool tensor [B, M] = [2, 3] matching story [B, M, L] = [2, 3, 4]; got bool [2, 2]. Fix: ...
    """

    def fail(what: str, fix: str) -> InputError:
        return InputError(f"{name}: {what}. Fix: {fix}")

    def is_tensor(x: object, ndim: int) -> bool:
        return isinstance(x, torch.Tensor) and x.dim() == ndim

    if not (is_tensor(story, 3) and story.dtype in _INDEX_DTYPES):
        what = f"story must be an int64 (or int32) tensor [B, M, L] of word indices (batch, memory slots, words per slot); got {_describe(story)}"
        if is_tensor(story, 3):
            raise fail(what, "story.long()")
        if is_tensor(story, 2):
            raise fail(what, "add the batch dimension (story[None] for a single story of [M, L])")
        raise fail(what, "put each story's sentences in [M, L] slots and stack the stories into [B, M, L]")
    B, M, _ = story.shape
    against = f"story [B, M, L] = {list(story.shape)}"
    if not (is_tensor(query, 2) and query.shape[0] == B and query.dtype in _INDEX_DTYPES):
        what = f"query must be an int64 (or int32) tensor [B, L'] with B = {B} as in {against}; got {_describe(query)}"
        if is_tensor(query, 2) and query.shape[0] == B:
            raise fail(what, "query.long()")
        if is_tensor(query, 1):
            raise fail(what, "add the batch dimension (query[None] for a single question)")
        raise fail(what, "pass one question of word indices per story, row b answering story b")
    if story.shape[-1] == 0 or query.shape[-1] == 0:
        raise fail(f"sentences need at least one word slot; got story {_describe(story)}, query {_describe(query)}", "pad each sentence and the question to L >= 1 words with the null word 0")
    if not (isinstance(memory_mask, torch.Tensor) and memory_mask.dtype == torch.bool and memory_mask.shape == (B, M)):
        what = f"memory_mask must be a bool tensor [B, M] = {[B, M]} matching {against}; got {_describe(memory_mask)}"
        if isinstance(memory_mask, torch.Tensor) and memory_mask.shape == (B, M):
            raise fail(what, "memory_mask.bool() (True on real sentences), or build it as story.ne(0).any(-1)")
        raise fail(what, "build it from the story, story.ne(0).any(-1), so it has one entry per memory slot")
    if time is not None and not (isinstance(time, torch.Tensor) and time.dtype in _INDEX_DTYPES and time.shape == (B, M)):
        what = f"time must be an int64 (or int32) tensor [B, M] = {[B, M]} matching {against}; got {_describe(time)}"
        if isinstance(time, torch.Tensor) and time.shape == (B, M):
            raise fail(what, "time.long(), or pass time=None to count back from each story's newest sentence")
        raise fail(what, "give one temporal index per memory slot, or pass time=None to compute it from memory_mask")
    if supporting is not None and not (is_tensor(supporting, 2) and supporting.shape[0] == B and supporting.dtype == torch.int64):
        what = f"supporting must be an int64 tensor [B, S] with B = {B} as in {against}; got {_describe(supporting)}"
        if is_tensor(supporting, 2) and supporting.shape[0] == B:
            raise fail(what, "supporting.long() (memory slots, -1 for none)")
        raise fail(what, "give one row of supporting slots per story, padded with -1 (supporting[None] for a single story)")
    if memory_size is not None and M > memory_size:
        raise fail(
            f"story has {M} memory slots but the model's temporal table holds memory_size={memory_size}",
            f"build the model with memory_size >= {M}, or keep the last {memory_size} sentences of each story "
            f"(the bAbI loader's memory_size: data.kwargs.memory_size={memory_size})",
        )
    if vocab_size is not None:
        for arg, words in (("story", story), ("query", query)):
            found = outside(words, 0, vocab_size - 1)
            if found is not None:
                bad = found[0] if found[0] < 0 else found[1]
                raise fail(
                    f"{arg} holds word id {bad}, outside the model's vocabulary 0..{vocab_size - 1}",
                    "index words with the vocabulary the model was built for (0 = padding), or build the model with a larger vocab_size",
                )
    found = None if memory_size is None or time is None else outside(time, 0, memory_size - 1)
    if found is not None:
        raise fail(
            f"time holds index {found[0] if found[0] < 0 else found[1]}, outside the temporal table's rows 0..{memory_size - 1}",
            "give each memory's age, 0 for the newest, below memory_size, or pass time=None to compute it from memory_mask",
        )
