"""The original Memory Network (MemNN) and its bAbI extensions: hard-max memory selection trained with strong
supervision (the supporting facts) by a margin ranking loss.

Papers and equations cited below:

- **[W14]** Weston, Chopra, Bordes 2014, "Memory Networks", arXiv 1410.3916, §3.1 (I, G, O, R; eqs. 1-3 of
  the argmax hops and the response, eq. 4 the embedding score ``s(x, y) = Phi_x(x)^T U^T U Phi_y(y)``, the
  margin ranking loss of §3.1, "eqs. 6-8" below) and §3.4 (write time: ``s_Ot``).
- **[W15]** Weston et al. 2015, "Towards AI-Complete Question Answering", arXiv 1502.05698, §5 and appendix
  A (A.2.1 adaptive memories, A.2.2 N-grams and the nonlinear embedding eq. 6).

The four components, as built here:

- **I** (input feature map): each sentence becomes a bag of features over the vocabulary (``Phi``): its
  words, or with ``ngrams=True`` its words plus its word 2- and 3-grams ([W15] A.2.2: "a bag-of-N-grams, we
  consider N=1,2 and 3"). The 2-/3-grams are hashed into ``ngram_buckets`` extra features (see
  :func:`ngram_features`), since a builder only knows the vocabulary size, not the corpus's n-grams.
- **G** (generalization): the simplest G of [W14]: each story sentence sits in its own slot, oldest first,
  never rewritten (the bAbI tensors are already in this form).
- **O** (output): ``k`` hard-max hops ([W14] eqs. 1-2; ``k = 2``). Hop ``h`` scores every memory against the
  input list ``[x, m_o1, ..., m_o(h-1)]`` and takes the best. With write-time features the argmax becomes the
  paper's loop over memories, comparing the current winner with the next memory by ``s_Ot``
  (:func:`preference`, :func:`select_memory`). With ``adaptive=True`` ([W15] A.2.1) a special fact ``m_STOP``
  with its own learned embedding is a candidate at every hop, and hopping stops when it wins (at most
  ``max_hops``, 10 in [W15]).
- **R** (response): one word, ``argmax_w s_R([x, m_o1, ...], w)`` over every vocabulary word ([W14] eq. 3),
  with its own matrix ``U_R``.

Feature split ([W14] §3.1, "D = 3|W|"): every feature has three rows in ``U_O``: one for words of the
question x, one for words of supporting memories in the input list (both in ``Phi_x``), one for the candidate
memory (``Phi_y``); ``s_R`` uses the same split, its ``Phi_y`` being the candidate answer word. Write time adds
three indicator features (``U_Ot`` has three more columns), and adaptive memory one feature for ``m_STOP``.
With ``r_features="last"`` (our deviation, off by default) ``U_R`` gets a fourth block for the most recently
retrieved memory: with the paper's split both retrieved facts of "Daniel moved to the office. Afterwards he
moved to the hallway." fall into one bag, so R cannot tell which location is current (tasks 11 and 13).
Here these blocks are stored as separate tables so one embedding-bag call reads a sentence for all of them;
``U^T Phi(x)`` is then a sum of rows (shape comments use ``F`` features, ``d`` embedding size).

Choices where the papers leave things open (each also stated where it is made):

1. Time of the input list: "x older than y" compares y with the most recently *retrieved* fact of the input
   list (the question itself is newer than every memory, so at hop 1 both x-features are 0).
2. Orientation of ``s_Ot`` (not symmetric in y, y'): the older memory of a pair, or ``m_STOP``, takes the
   ``y`` slot. The loop compares the current winner (older) with the next memory (newer), and the ranking
   loss scores each (true, wrong) pair in that same orientation, so zero loss means the loop picks the true
   fact. Scoring a pair in both orders would ask the content alone to separate a newer true fact from an
   older look-alike ("Mary went to X"), which it cannot.
3. k = 2 with fewer true facts (bAbI task 1 has one): the last true fact is the target again at the
   remaining hops, and R is trained on the same list the hops then produce. With more than k, the first k
   (``facts="first"``, the default) or the last k (``facts="last"``) in the file's order, which is the order
   of reasoning (see :func:`true_hop_targets`). In bAbI tasks 3 and 16 (three facts each) the answer word
   is in the last two listed facts in all 1000 training questions and in the first two in none, so with
   the first two R is never shown the answer.
4. Nonlinear scoring with write time: ``s_Ot = E(x) . (E(y) - E(y') + U_t Phi_t)``: the time indicators enter
   linearly after the nonlinearity (``Phi_t`` depends on the pair, so it cannot sit inside ``E(y)``).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from overlooked.checks import autocast_enabled, check_sizes, check_std, in_torch_func, reads_values
from overlooked.errors import InputError
from overlooked.memory.functional import check_memory_inputs, time_index
from overlooked.registry import MODELS

# Multipliers of the n-gram hash (odd, < 2^31, so products of word ids < 2^20 stay exact in int64).
_NGRAM_PRIMES = {2: (1_000_003, 2_000_029), 3: (3_000_017, 4_000_037, 5_000_011)}
QUESTION_TIME = -1  # the question is newer than every memory (time 0 = newest memory)


# ----------------------------------------------------------------------------------------------------------
# I: features


def ngram_features(words: torch.Tensor, vocab_size: int, buckets: int, n_max: int = 3) -> torch.Tensor:
    """Feature ids of each sentence's bag of 1..n_max-grams ([W15] A.2.2, N = 1, 2, 3).

    Word ``w`` is feature ``w``; a 2- or 3-gram of real words is feature ``vocab_size + hash(gram) % buckets``
    (a fixed multiplicative hash, different for 2- and 3-grams); n-grams never span padding. Feature 0 is
    "none" (padding, the null word).

    Args:
        words: ``[..., L]`` word indices, left-aligned, 0 = padding.
        vocab_size: ``V``; unigram features are ``0..V-1``.
        buckets: number of hashed n-gram features (``0`` or ``n_max = 1``: words only).
        n_max: largest n.

    Returns:
        ``[..., L + (L-1) + ... ]`` int64 feature ids.

    >>> ngram_features(torch.tensor([[3, 4, 5, 0]]), vocab_size=10, buckets=100)[0, :4].tolist()
    [3, 4, 5, 0]
    """
    parts = [words]
    L = words.shape[-1]
    if buckets > 0:
        for n in range(2, n_max + 1):
            if L < n:
                break
            grams = torch.stack([words[..., i : L - n + 1 + i] for i in range(n)], -1)  # [..., L-n+1, n]
            primes = torch.tensor(_NGRAM_PRIMES[n], dtype=torch.int64, device=words.device)
            code = (grams * primes).sum(-1) % buckets  # [..., L-n+1]
            parts.append(torch.where((grams != 0).all(-1), vocab_size + code, torch.zeros_like(code)))
    return torch.cat(parts, -1)


def bag(features: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """``U^T Phi(x)`` for a bag of features: the sum of the table rows of the features (feature 0 skipped).

    Args:
        features: ``[..., Lf]`` feature ids, 0 = none.
        table: ``[F, n]`` one or more ``U`` blocks side by side.

    Returns:
        ``[..., n]``.
    """
    lead = features.shape[:-1]
    out = F.embedding_bag(features.reshape(-1, features.shape[-1]), table, mode="sum", padding_idx=0)
    return out.reshape(*lead, table.shape[1])


def nonlinear_embedding(e: torch.Tensor, W: torch.Tensor | None) -> torch.Tensor:
    """``E(x) = tanh(W tanh(Phi_x(x)^T U))`` ([W15] A.2.2 eq. 6) given ``e = U^T Phi(x)``; identity if W is None.

    Args:
        e: ``[..., d]`` linear embeddings.
        W: ``[d, d]``, or None for the linear model of [W14].
    """
    return e if W is None else torch.tanh(torch.tanh(e) @ W.T)


# ----------------------------------------------------------------------------------------------------------
# O: scores, write-time preference, selection


def embedding_score(e_x: torch.Tensor, e_y: torch.Tensor) -> torch.Tensor:
    """``s(x, y) = Phi_x(x)^T U^T U Phi_y(y)`` ([W14] eq. 4), or ``E(x) . E(y)`` (nonlinear, [W15] eq. 6).

    Args:
        e_x: ``[..., d]`` embedded input list.
        e_y: ``[..., C, d]`` embedded candidates.

    Returns:
        ``[..., C]``.
    """
    return (e_y * e_x.unsqueeze(-2)).sum(-1)


def older(t_a: torch.Tensor, t_b: torch.Tensor, has_a: torch.Tensor | bool, has_b: torch.Tensor | bool, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Write-time indicator "a is older than b" ([W14] §3.4): 1.0 or 0.0 in ``dtype`` (the scores' dtype; default
    torch's default dtype); 0 when either has no write time.

    Times count back from the newest memory (0 = newest, larger = older), so older means a larger time.
    """
    return ((t_a > t_b) & has_a & has_b).to(dtype or torch.get_default_dtype())


def _indicator_dtype(scores: torch.Tensor) -> torch.dtype:
    """The write-time indicators' dtype: float32 (torch's default) under autocast, which keeps the pair scores in
    float32 there as before; otherwise the scores' own (a model cast with ``.to(torch.bfloat16)``)."""
    return torch.get_default_dtype() if autocast_enabled(scores) else scores.dtype


def pair_score(A_y: torch.Tensor, A_y2: torch.Tensor, c: torch.Tensor | None, o_xy, o_xy2, o_yy2) -> torch.Tensor:
    """``s_Ot(x, y, y') = Phi_x(x)^T U^T U (Phi_y(y) - Phi_y(y') + Phi_t(x, y, y'))`` ([W14] §3.4).

    ``Phi_t`` holds the three indicators (x older than y, x older than y', y older than y'); ``c_k = U^T
    Phi_x(x) . U e_k`` is the score of indicator ``k``. Without time features (``c`` None) this is
    ``s_O(x, y) - s_O(x, y')``. ``s_Ot > 0`` prefers ``y``.

    Args:
        A_y, A_y2: ``s_O(x, y)`` and ``s_O(x, y')``, broadcastable.
        c: ``[..., 3]`` indicator scores (broadcastable after dropping the last dim), or None.
        o_xy, o_xy2, o_yy2: the three indicators (0/1 tensors), broadcastable.
    """
    s = A_y - A_y2
    if c is not None:
        s = s + c[..., 0] * o_xy + c[..., 1] * o_xy2 + c[..., 2] * o_yy2
    return s


def preference(A_a, A_b, c, t_x, t_a, t_b, has_a, has_b) -> torch.Tensor:
    """By how much O prefers candidate ``a`` over ``b`` when it compares them (> 0: ``a`` wins).

    The pair is scored in one orientation (choice 2 of the module docstring): the older memory, or
    ``m_STOP`` (no write time), takes the ``y`` slot of :func:`pair_score`. So the preference is
    ``s_Ot(x, a, b)`` when ``a`` sits in ``y``, else ``-s_Ot(x, b, a)``. Without time features it is
    ``s_O(x, a) - s_O(x, b)``.

    Args:
        A_a, A_b: scores ``s_O(x, .)`` of the two candidates, broadcastable.
        c: ``[..., 3]`` indicator scores or None.
        t_x: time of the input list (:data:`QUESTION_TIME` for the bare question).
        t_a, t_b: write times; ``has_a``, ``has_b``: False for ``m_STOP``.
    """
    if c is None:
        return A_a - A_b
    has_a, has_b = torch.as_tensor(has_a, device=A_a.device), torch.as_tensor(has_b, device=A_a.device)
    dt = _indicator_dtype(A_a)
    o_xa, o_xb = older(t_x, t_a, True, has_a, dt), older(t_x, t_b, True, has_b, dt)
    o_ab, o_ba = older(t_a, t_b, has_a, has_b, dt), older(t_b, t_a, has_b, has_a, dt)
    a_first = (~has_a) | (has_b & (t_a > t_b))
    return torch.where(a_first, pair_score(A_a, A_b, c, o_xa, o_xb, o_ab), -pair_score(A_b, A_a, c, o_xb, o_xa, o_ba))


def select_memory(A: torch.Tensor, c: torch.Tensor | None, t_x: torch.Tensor, t: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """One hard hop over the memories: ``argmax_i s_O(x, m_i)`` ([W14] eqs. 1-2) or, with write time, the
    loop of [W14] §3.4: keep a winner, compare it with the next memory, keep whichever ``s_Ot`` prefers.

    Padded slots are never chosen; ties keep the earlier (incumbent) memory, as ``argmax`` does.

    Args:
        A: ``[B, M]`` scores ``s_O(x, m_i)``.
        c: ``[B, 3]`` indicator scores, or None (plain argmax).
        t_x: ``[B]`` time of the input list; ``t``: ``[B, M]`` write times.
        valid: ``[B, M]`` bool, True on real memories.

    Returns:
        ``[B]`` int64 slot, -1 where no slot is valid.
    """
    none = torch.full_like(A[:, 0], -1, dtype=torch.long)
    if c is None:
        best = A.masked_fill(~valid, float("-inf")).argmax(-1)
        return torch.where(valid.any(-1), best, none)
    # preference(i over w) = where(w older, u_i - v_w, v_i - u_w): :func:`preference` with each memory's
    # terms precomputed once, so the loop below only compares and selects.
    o_x = older(t_x[:, None], t, True, True, _indicator_dtype(A))  # [B, M] x older than m_i
    u = A - c[:, 1:2] * o_x  # [B, M] value of m_i in the y' slot (the newer memory of the pair)
    v = A + c[:, 0:1] * o_x + c[:, 2:3]  # [B, M] value of m_i in the y slot (the older memory of the pair)
    # The choice is discrete (no gradient), compared in float32 (bf16 / half scores under autocast widen exactly:
    # NumPy has no bfloat16) or float64 for float64 scores, in both loops below.
    wide = torch.float64 if torch.float64 in (u.dtype, v.dtype, c.dtype) else torch.float32
    u, v, c3 = (x.detach().to(wide) for x in (u, v, c[:, 2]))
    if any(in_torch_func(x) for x in (u, v, t, valid)):  # vmap / grad of these scores: the same loop in torch ops
        return _sequential_choice(u, v, c3, t, valid)
    # Outside a transform the loop runs in NumPy: ~1 us per operation instead of ~5.
    u_, v_, c3 = (x.cpu().numpy() for x in (u, v, c3))
    t_, ok = (x.detach().cpu().numpy() for x in (t, valid))
    winner_ = np.full(A.shape[0], -1, dtype=np.int64)
    u_w, v_w, t_w = u_[:, 0].copy(), v_[:, 0].copy(), t_[:, 0].copy()
    last = int(ok.any(0).nonzero()[0].max()) + 1 if ok.any() else 0
    for i in range(last):  # the paper's loop over memories, i = 1..N
        ti = t_[:, i]  # equal write times (never in real stories) put the incumbent in y without "y older"
        beats = np.where(t_w > ti, u_[:, i] - v_w, np.where(ti > t_w, v_[:, i] - u_w, u_[:, i] - v_w + c3)) > 0
        take = ok[:, i] & ((winner_ < 0) | beats)
        winner_[take], u_w[take], v_w[take], t_w[take] = i, u_[take, i], v_[take, i], t_[take, i]
    return torch.from_numpy(winner_).to(A.device)


def _one_hot(index: torch.Tensor, n: int) -> torch.Tensor:
    """``[..., n]`` bool, True at ``index`` (all False where it is outside ``0..n-1``, e.g. -1 = none):
    ``F.one_hot`` reads the indices' range, which a ``torch.func`` transform refuses."""
    return index[..., None] == torch.arange(n, device=index.device)


def _sequential_choice(u: torch.Tensor, v: torch.Tensor, c3: torch.Tensor, t: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """:func:`select_memory`'s loop with write time in torch operations over every slot (no value is read),
    which a ``torch.func`` transform can batch; the NumPy loop there is faster and tested equal to it.
    ``u``, ``v``, ``t``, ``valid``: ``[B, M]``; ``c3``: ``[B]``. Returns ``[B]`` int64, -1 where none is valid."""
    winner = torch.full_like(t[:, 0], -1, dtype=torch.long)
    u_w, v_w, t_w = u[:, 0], v[:, 0], t[:, 0]
    for i in range(u.shape[1]):
        ti = t[:, i]  # equal write times put the incumbent in y without "y older", as in the NumPy loop
        beats = torch.where(t_w > ti, u[:, i] - v_w, torch.where(ti > t_w, v[:, i] - u_w, u[:, i] - v_w + c3)) > 0
        take = valid[:, i] & ((winner < 0) | beats)
        winner = torch.where(take, torch.full_like(winner, i), winner)
        u_w, v_w, t_w = torch.where(take, u[:, i], u_w), torch.where(take, v[:, i], v_w), torch.where(take, ti, t_w)
    return winner


def surrogate_scores(A: torch.Tensor, c: torch.Tensor | None, t_x: torch.Tensor, t: torch.Tensor, has_t: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Per-candidate scores whose softmax gives the straight-through gradient of a hard hop.

    Without time features ``s_O(x, m_i)``; with them the mean preference of ``i`` over every other valid
    candidate (a round-robin stand-in for the sequential loop, which has no per-candidate score).

    Args:
        A: ``[B, C]``; c: ``[B, 3]`` or None; t_x: ``[B]``; t, has_t, valid: ``[B, C]``.

    Returns:
        ``[B, C]``, finite; with time features an invalid candidate gets its mean preference over the
        valid ones, a value with no meaning (the caller masks it, :func:`masked_softmax`).
    """
    if c is None:
        return A
    pref = preference(A[:, :, None], A[:, None, :], c[:, None, None, :], t_x[:, None, None], t[:, :, None], t[:, None, :], has_t[:, :, None], has_t[:, None, :])  # [B, C, C]
    others = valid[:, None, :] & ~torch.eye(A.shape[1], dtype=torch.bool, device=A.device)  # [B, C, C]
    return (pref * others).sum(-1) / others.sum(-1).clamp(min=1)


def masked_softmax(scores: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Softmax over valid entries; an all-invalid row gives zeros (never NaN)."""
    any_valid = valid.any(-1, keepdim=True)
    z = scores.masked_fill(~valid, float("-inf")).masked_fill(~any_valid, 0.0)
    return torch.softmax(z, -1) * valid


# ----------------------------------------------------------------------------------------------------------
# Supervision: the true hop sequence


def true_hop_targets(supporting: torch.Tensor, memory_mask: torch.Tensor, hops: int, adaptive: bool, facts: str = "first") -> torch.Tensor:
    """The candidate O must pick at each hop under strong supervision.

    bAbI lists a question's supporting facts in the order of reasoning, not of time: in task 2 the first
    always mentions the question's object and the last always holds the answer (1000/1000 training
    questions each), while the ids are descending in 705 and ascending in 295. So hop ``h`` targets the
    ``h``-th listed fact. Facts dropped from memory (-1) are skipped (the later ones move up).

    Args:
        supporting: ``[B, S]`` memory slots, -1 for padding and dropped facts.
        memory_mask: ``[B, M]`` bool.
        hops: ``k`` (fixed) or ``max_hops`` (adaptive).
        adaptive: append the ``m_STOP`` target (index ``M``) after the last fact; otherwise use exactly ``k``
            targets, repeating the last fact when there are fewer (choice 3 of the module docstring).
        facts: without ``adaptive``, which ``k`` of more than ``k`` valid facts the hops target, in order:
            ``"first"`` or ``"last"``. Ignored when adaptive (every fact, then ``m_STOP``).

    Returns:
        ``[B, H]`` int64: a slot in ``0..M-1``, ``M`` for ``m_STOP``, or -1 where the hop has no target
        (no valid fact at all, or past ``m_STOP``). ``H = k``, or ``min(S + 1, max_hops)`` when adaptive.
    """
    if facts not in ("first", "last"):
        raise ValueError(f"facts must be 'first' or 'last', got {facts!r}")
    B, M = memory_mask.shape
    in_range = (supporting >= 0) & (supporting < M)
    valid = in_range & memory_mask.gather(1, supporting.clamp(0, M - 1))  # [B, S]
    bad = (supporting < -1) | (supporting >= M) | (in_range & ~valid)
    # Dropping them silently would lose the supervision without a word (read where the input checks read values).
    if reads_values(supporting) and bool(bad.any()):
        row, col = (int(i) for i in bad.nonzero()[0])
        raise InputError(
            f"supporting[{row}, {col}] = {int(supporting[row, col])} is not a real memory slot of that story (slots 0..{M - 1} "
            "where memory_mask is True); give each supporting fact's memory slot, or -1 for none (bAbI's line ids are "
            "mapped to slots by the loader)"
        )
    order = torch.sort((~valid).to(torch.int8), dim=1, stable=True).indices  # valid facts first, in order
    listed = supporting.gather(1, order)  # [B, S] valid facts in the file's order, then the rest
    n = valid.sum(1)  # [B]
    S = supporting.shape[1]
    if adaptive:
        H = min(S + 1, hops)
        h = torch.arange(H, device=supporting.device)[None, :]  # [1, H]
        from_facts = listed.gather(1, h.clamp(max=S - 1).expand(B, H)) if S > 0 else torch.full((B, H), -1, device=supporting.device)
        stop = torch.full_like(from_facts, M)
        out = torch.where(h < n[:, None], from_facts, torch.where(h == n[:, None], stop, torch.full_like(stop, -1)))
        return out
    h = torch.arange(hops, device=supporting.device)[None, :]  # [1, k]
    if facts == "last":  # start so that the last fact lands on the last hop when there are more than k
        h = h + (n[:, None] - hops).clamp(min=0)
    idx = torch.minimum(h, (n[:, None] - 1).clamp(min=0)).clamp(max=max(S - 1, 0))  # [B, k]: repeat the last fact
    out = listed.gather(1, idx) if S > 0 else torch.full((B, hops), -1, device=supporting.device)
    return torch.where(n[:, None] > 0, out, torch.full_like(out, -1))


# ----------------------------------------------------------------------------------------------------------
# The module


def _normal(*shape: int, std: float) -> nn.Parameter:
    return nn.Parameter(torch.randn(*shape) * std)


class MemNN(nn.Module):
    """Memory Network with hard-max hops, write-time features and strongly supervised ranking outputs.

    ``U_O`` and ``U_R`` ([W14] §3.1) are stored in blocks (rows = features, columns = ``d``):

    - ``query_table`` ``[F, 2d]``: the question's rows of ``U_O`` | of ``U_R`` (first block of ``Phi_x``);
    - ``story_table`` ``[F, 3d]``: a memory *in the input list* for ``U_O`` (second block of ``Phi_x``) | a
      memory as the *candidate* ``Phi_y`` of ``U_O`` | a memory in the input list for ``U_R`` (``[F, 4d]``
      with ``r_features="last"``: then a fourth block, ``U_R``'s rows for the most recently retrieved memory,
      which no longer uses the third);
    - ``answer_table`` ``[V, d]``: ``Phi_y`` of ``U_R``, one row per answer word (word 0, the null word, is a
      word like any other here: it is never an answer, so the ranking loss pushes it down);
    - ``time_table`` ``[3, d]``: the three write-time columns of ``U_Ot``; ``stop`` ``[d]``: ``m_STOP``;
    - ``nl_O``, ``nl_R`` ``[d, d]``: the ``W`` of eq. 6 for each score (nonlinear only).

    Forward values are the paper's hard-max inference. With ``straight_through`` (default) the *backward*
    of ``logits`` replaces each hop's zero-almost-everywhere argmax gradient by the gradient of a softmax
    over the candidates (a straight-through estimator, Bengio et al. 2013, arXiv 1308.3432), so gradients of
    ``logits`` reach ``U_O``. The margin objective never differentiates ``logits``, so training with
    ``memnn_margin`` is the same either way (a test checks both facts); only a loss on ``logits`` (e.g.
    cross-entropy, weak supervision, not in the papers) would use this path.

    Args:
        vocab_size: ``V`` words (index 0 = null word / padding).
        memory_size: memory slots of the data (the model itself works with any number).
        embed_dim: ``d`` (``n`` in [W14]).
        hops: ``k`` hops; with ``adaptive`` the hard maximum ``max_hops`` instead.
        adaptive: adaptive memory with ``m_STOP`` ([W15] A.2.1).
        ngrams: bag of 1-, 2- and 3-grams instead of words ([W15] A.2.2).
        ngram_buckets: hashed 2-/3-gram features.
        nonlinear: ``E(x) = tanh(W tanh(U^T Phi(x)))`` on both sides of both scores ([W15] eq. 6).
        time_features: write-time features ``s_Ot`` ([W14] §3.4).
        init_std: weights drawn from N(0, init_std).
        straight_through: gradient path from ``logits`` to ``U_O`` (see above).
        r_features: ``"shared"`` ([W14] §3.1: every retrieved memory in one block of ``Phi_x``) or ``"last"``
            (the most recently retrieved memory in its own block of ``U_R``; our deviation, see the module
            docstring).
        facts: with more than ``k`` supporting facts (not adaptive), train the hops on the ``"first"`` or
            the ``"last"`` ``k`` of them (choice 3 of the module docstring). ``"last"`` validates better
            on bAbI and is what ``memnn_babi1k`` uses; the default stays ``"first"`` so that run folders
            made before the option existed rebuild the model they trained.
    """

    def __init__(
        self,
        vocab_size: int,
        memory_size: int = 50,
        embed_dim: int = 100,
        hops: int = 2,
        adaptive: bool = False,
        ngrams: bool = False,
        ngram_buckets: int = 8192,
        nonlinear: bool = False,
        time_features: bool = True,
        init_std: float = 0.1,
        straight_through: bool = True,
        r_features: str = "shared",
        facts: str = "first",
    ):
        super().__init__()
        if r_features not in ("shared", "last"):
            raise ValueError(f"r_features must be 'shared' or 'last', got {r_features!r}")
        if facts not in ("first", "last"):
            raise ValueError(f"facts must be 'first' or 'last', got {facts!r}")
        self.r_features, self.facts = r_features, facts
        vocab_size, memory_size, embed_dim, hops = check_sizes("memnn", vocab_size=vocab_size, memory_size=memory_size, embed_dim=embed_dim, hops=hops)
        init_std = check_std("memnn", init_std)
        self.vocab_size, self.memory_size, self.embed_dim, self.hops = vocab_size, memory_size, embed_dim, hops
        self.adaptive, self.ngrams, self.nonlinear, self.time_features = adaptive, ngrams, nonlinear, time_features
        self.ngram_buckets = ngram_buckets if ngrams else 0
        self.straight_through = straight_through
        d, n_features = embed_dim, vocab_size + self.ngram_buckets
        self.query_table = _normal(n_features, 2 * d, std=init_std)
        self.story_table = _normal(n_features, (4 if r_features == "last" else 3) * d, std=init_std)
        self.answer_table = _normal(vocab_size, d, std=init_std)
        self.time_table = _normal(3, d, std=init_std) if time_features else None
        self.stop = _normal(d, std=init_std) if adaptive else None
        self.nl_O = _normal(d, d, std=d**-0.5) if nonlinear else None
        self.nl_R = _normal(d, d, std=d**-0.5) if nonlinear else None
        with torch.no_grad():  # feature 0 is "none": zero row (embedding_bag also skips it)
            self.query_table[0].zero_()
            self.story_table[0].zero_()

    def features(self, words: torch.Tensor) -> torch.Tensor:
        """I: feature ids of ``words`` ``[..., L]`` (words, or words + hashed 2-/3-grams)."""
        return ngram_features(words, self.vocab_size, self.ngram_buckets)

    def _time_scores(self, E_in: torch.Tensor) -> torch.Tensor | None:
        return None if self.time_table is None else E_in @ self.time_table.T  # [..., 3]

    def extra_repr(self) -> str:
        return (f"vocab_size={self.vocab_size}, memory_size={self.memory_size}, embed_dim={self.embed_dim}, hops={self.hops}, "
                f"adaptive={self.adaptive}, ngrams={self.ngrams}, nonlinear={self.nonlinear}, time_features={self.time_features}, "
                f"r_features={self.r_features!r}")

    def forward(
        self,
        story: torch.Tensor,
        query: torch.Tensor,
        memory_mask: torch.Tensor,
        time: torch.Tensor | None = None,
        supporting: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Answer ``query`` from ``story`` by hard-max hops; with ``supporting``, also the ranking tensors.

        Args:
            story: ``[B, M, L]`` word indices, oldest sentence first.
            query: ``[B, L]``.
            memory_mask: ``[B, M]`` bool, True on real sentences.
            time: ``[B, M]`` write time (0 = newest); from the mask when None.
            supporting: ``[B, S]`` true supporting slots (-1 = none); None at pure inference.

        Returns:
            ``logits`` ``[B, V]``: ``s_R`` of every word given the model's own hops; ``chosen`` ``[B, H]``:
            the slot of each hop (-1 = no memory: nothing valid, or stopped); ``hops`` ``[B]`` memories used.
            With ``supporting``: ``o_margin`` ``[B, Ht, C]`` the preference (:func:`preference`) of the true
            candidate over each candidate at each hop, the input list holding the *true* earlier facts
            (meaningful where ``o_negative`` is True: the true candidate's own entry is not 0 with write-time
            features, its time indicators against itself, and is never used);
            ``o_negative`` ``[B, Ht, C]`` bool, the wrong real candidates of hops with a target; ``r_true``
            ``[B, V]`` ``s_R`` given the true facts; ``o_target`` ``[B, Ht]`` the true candidate of each hop
            (:func:`true_hop_targets`). ``C = M (+1 for m_STOP)``.

        Raises:
            ValueError: when the shapes or dtypes do not fit together
                (:func:`~overlooked.memory.functional.check_memory_inputs`). Any number of slots fits: no table
                is indexed by slot or time (``time_table`` holds the three write-time indicators).
        """
        check_memory_inputs(story, query, memory_mask, time, supporting=supporting, vocab_size=self.vocab_size, name="memnn")
        B, M, _ = story.shape
        d = self.embed_dim
        if time is None:
            time = time_index(memory_mask)
        q = bag(self.features(query), self.query_table)  # [B, 2d]
        mem = bag(self.features(story), self.story_table)  # [B, M, 3d] (4d with r_features="last")
        q_O, q_R = q[:, :d], q[:, d:]
        mem_in, mem_cand, mem_R = mem[..., :d], mem[..., d : 2 * d], mem[..., 2 * d :]  # [B, M, d] each (mem_R: [B, M, 2d] for "last")
        E_cand = nonlinear_embedding(mem_cand, self.nl_O)  # [B, M, d]
        cand_valid, cand_time = memory_mask, time
        has_time = torch.ones_like(memory_mask)  # every memory has a write time
        if self.stop is not None:  # m_STOP is candidate M: no write time, always available
            E_cand = torch.cat([E_cand, nonlinear_embedding(self.stop, self.nl_O).expand(B, 1, d)], 1)  # [B, M+1, d]
            cand_valid = F.pad(memory_mask, (0, 1), value=True)
            cand_time = F.pad(time, (0, 1), value=0)
            has_time = F.pad(has_time, (0, 1), value=False)
        E_words = nonlinear_embedding(self.answer_table, self.nl_R)  # [V, d]

        out = self._infer(q_O, q_R, mem_in, mem_R, E_cand, cand_valid, cand_time, has_time, E_words, M)
        if supporting is not None:
            out.update(self._ranking(q_O, q_R, mem_in, mem_R, E_cand, cand_valid, cand_time, has_time, E_words, supporting, memory_mask))
        return out

    def _infer(self, q_O, q_R, mem_in, mem_R, E_cand, cand_valid, cand_time, has_time, E_words, M) -> dict[str, torch.Tensor]:
        """The model's own hops (hard max; straight-through gradient if enabled) and its answer scores."""
        B = q_O.shape[0]
        e_in = q_O  # [B, d] U_O^T Phi_x of the input list, grown by each chosen memory
        e_R = q_R  # [B, d]
        t_x = torch.full((B,), QUESTION_TIME, dtype=cand_time.dtype, device=q_O.device)  # [B]
        active = torch.ones(B, dtype=torch.bool, device=q_O.device)
        chosen = []
        last_w = q_O.new_zeros(B, M)  # one-hot weights of the most recently retrieved memory
        for _ in range(self.hops):
            # every question has stopped (or the batch is empty): the remaining hops choose nothing (under a
            # torch.func transform the flag cannot be read; the hop below then chooses nothing for them anyway)
            if not in_torch_func(active) and not bool(active.any()):
                chosen.append(torch.full((B,), -1, dtype=torch.long, device=q_O.device))
                continue
            E_in = nonlinear_embedding(e_in, self.nl_O)  # [B, d]
            A = embedding_score(E_in, E_cand)  # [B, C]
            c = self._time_scores(E_in)  # [B, 3] or None
            slot = select_memory(A[:, :M], c, t_x, cand_time[:, :M], cand_valid[:, :M])  # [B]
            pick = slot
            if self.stop is not None:  # compare the winning memory with m_STOP: stop when m_STOP is preferred
                w = slot.clamp(min=0)[:, None]
                prefer_stop = preference(A[:, M], A.gather(1, w)[:, 0], c, t_x, cand_time[:, M], cand_time.gather(1, w)[:, 0], False, True) > 0
                pick = torch.where((slot < 0) | prefer_stop, torch.full_like(slot, M), slot)
            pick = torch.where(active, pick, torch.full_like(pick, -1))
            hard = _one_hot(pick, A.shape[1]).to(A.dtype)  # [B, C], zero where nothing is picked
            weights = hard
            if self.straight_through:
                p = masked_softmax(surrogate_scores(A, c, t_x, cand_time, has_time, cand_valid), cand_valid) * active[:, None]  # [B, C]
                weights = hard + (p - p.detach())  # value = hard one-hot, gradient = softmax
            e_in = e_in + torch.einsum("bm,bmd->bd", weights[:, :M], mem_in)
            is_memory = (pick >= 0) & (pick < M)
            e_R = e_R + torch.einsum("bm,bmd->bd", weights[:, :M], mem_R[..., : self.embed_dim])
            last_w = torch.where(is_memory[:, None], weights[:, :M], last_w)
            t_x = torch.where(is_memory, cand_time.gather(1, pick.clamp(0, M - 1)[:, None])[:, 0], t_x)
            chosen.append(torch.where(is_memory, pick, torch.full_like(pick, -1)))
            active = active & is_memory
        chosen_t = torch.stack(chosen, 1)  # [B, H]
        e_R = self._last_memory_to_own_block(e_R, last_w, mem_R)
        logits = embedding_score(nonlinear_embedding(e_R, self.nl_R), E_words.expand(B, -1, -1))  # [B, V]
        return {"logits": logits, "chosen": chosen_t, "hops": (chosen_t >= 0).sum(1)}

    def _last_memory_to_own_block(self, e_R: torch.Tensor, last_w: torch.Tensor, mem_R: torch.Tensor) -> torch.Tensor:
        """With ``r_features="last"``, move the most recently retrieved memory (one-hot weights ``last_w``
        ``[B, M]``, zero when none) from the shared block of ``U_R`` to its own block."""
        if self.r_features == "shared":
            return e_R
        d = self.embed_dim
        return e_R + torch.einsum("bm,bmd->bd", last_w, mem_R[..., d:] - mem_R[..., :d])

    def _ranking(self, q_O, q_R, mem_in, mem_R, E_cand, cand_valid, cand_time, has_time, E_words, supporting, memory_mask) -> dict[str, torch.Tensor]:
        """Scores the margin ranking loss needs, each hop conditioned on the true earlier facts."""
        B, M = memory_mask.shape
        target = true_hop_targets(supporting, memory_mask, self.hops, self.adaptive, self.facts)  # [B, Ht]
        is_fact = (target >= 0) & (target < M)  # [B, Ht]
        fact_slot = target.clamp(0, M - 1)
        fact_w = (_one_hot(fact_slot, M) & is_fact[..., None]).to(q_O.dtype)  # [B, Ht, M]
        before = torch.cumsum(fact_w, 1) - fact_w  # [B, Ht, M] true facts of earlier hops
        e_in = q_O[:, None, :] + torch.einsum("bhm,bmd->bhd", before, mem_in)  # [B, Ht, d]
        E_in = nonlinear_embedding(e_in, self.nl_O)
        A = torch.einsum("bhd,bcd->bhc", E_in, E_cand)  # [B, Ht, C]
        c = self._time_scores(E_in)  # [B, Ht, 3] or None
        # Time of the input list = its most recently retrieved fact (choice 1): the true fact of the previous
        # hop (targets are facts up to m_STOP, then none), or the question at hop 1.
        fact_time = cand_time.gather(1, fact_slot)  # [B, Ht]
        prev_is_fact = F.pad(is_fact[:, :-1], (1, 0), value=False)
        prev_time = F.pad(fact_time[:, :-1], (1, 0), value=QUESTION_TIME)
        t_x = torch.where(prev_is_fact, prev_time, torch.full_like(prev_time, QUESTION_TIME))  # [B, Ht]
        tgt = target.clamp(min=0)
        A_f = A.gather(2, tgt[..., None])  # [B, Ht, 1]
        margin = preference(
            A_f, A, None if c is None else c[:, :, None, :], t_x[..., None],
            cand_time.gather(1, tgt)[..., None], cand_time[:, None, :],
            has_time.gather(1, tgt)[..., None], has_time[:, None, :],
        )  # [B, Ht, C]
        C = A.shape[-1]
        negative = cand_valid[:, None, :] & (target[..., None] >= 0) & (torch.arange(C, device=A.device)[None, None, :] != target[..., None])
        e_R = q_R + torch.einsum("bhm,bmd->bd", fact_w, mem_R[..., : self.embed_dim])  # [B, d] question + every true fact used
        last_h = (is_fact * torch.arange(1, is_fact.shape[1] + 1, device=is_fact.device)).argmax(1)  # [B] the last hop with a fact
        e_R = self._last_memory_to_own_block(e_R, fact_w[torch.arange(B), last_h], mem_R)
        r_true = embedding_score(nonlinear_embedding(e_R, self.nl_R), E_words.expand(B, -1, -1))  # [B, V]
        return {"o_margin": margin, "o_negative": negative, "r_true": r_true, "o_target": target}


# ----------------------------------------------------------------------------------------------------------
# Registered builders

INPUT_KEYS = ("story", "query", "memory_mask", "time", "supporting")


@MODELS.register("memnn", family="memory", paper="Weston, Chopra, Bordes 2014, arXiv 1410.3916", input_keys=INPUT_KEYS)
def memnn(
    vocab_size: int = 200,
    memory_size: int = 50,
    embed_dim: int = 100,
    hops: int = 2,
    time_features: bool = True,
    init_std: float = 0.1,
    straight_through: bool = True,
    r_features: Literal["shared", "last"] = "shared",
    facts: Literal["first", "last"] = "first",
) -> MemNN:
    """The original MemNN: bag of words, k = 2 hard-max hops, write-time features, linear scores."""
    return MemNN(vocab_size, memory_size, embed_dim, hops, adaptive=False, ngrams=False, nonlinear=False, time_features=time_features, init_std=init_std, straight_through=straight_through, r_features=r_features, facts=facts)


@MODELS.register("memnn_am_ng_nl", family="memory", paper="Weston et al. 2015, arXiv 1502.05698 (appendix A)", input_keys=INPUT_KEYS)
def memnn_am_ng_nl(
    vocab_size: int = 200,
    memory_size: int = 50,
    embed_dim: int = 100,
    max_hops: int = 10,
    ngram_buckets: int = 8192,
    time_features: bool = True,
    init_std: float = 0.1,
    straight_through: bool = True,
    r_features: Literal["shared", "last"] = "shared",
) -> MemNN:
    """MemNN + adaptive memory (m_STOP, at most 10 hops) + bag of 1-3-grams + nonlinear (eq. 6) scores."""
    return MemNN(vocab_size, memory_size, embed_dim, max_hops, adaptive=True, ngrams=True, ngram_buckets=ngram_buckets, nonlinear=True, time_features=time_features, init_std=init_std, straight_through=straight_through, r_features=r_features)
