"""Memory-network modules: parameters only; the maths lives in :mod:`overlooked.memory.functional`."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from overlooked.checks import check_sizes, check_std, in_torch_func, in_transform
from overlooked.config import warn_no_effect
from overlooked.memory import functional as MF


def _normal(*shape: int, std: float) -> nn.Parameter:
    w = torch.randn(*shape) * std
    return nn.Parameter(w)


class MemN2N(nn.Module):
    """End-To-End Memory Network (Sukhbaatar et al. 2015) for question answering.

    Every switch of the paper: ``hops`` K, ``encoding`` BoW or PE (§4.1), ``temporal`` encoding (§4.1),
    ``tying`` adjacent or layer-wise (§2.2), linear start (§4.2, via :meth:`set_linear_start`). Random noise
    (§4.1) is a training-time augmentation of the time indices (``babi_random_time``).

    Adjacent tying stores ``K + 1`` embedding matrices ``E_0..E_K`` side by side in one ``[V, (K+1) d]``
    table: ``B = A^1 = E_0``, ``A^{k+1} = C^k = E_k``, ``W^T = C^K = E_K`` (and the temporal matrices
    ``T_A^{k+1} = T_C^k`` likewise), so the story is embedded for every hop by two ``embedding_bag`` calls.
    Only the real sentences are encoded and read, packed story after story
    (:func:`~overlooked.memory.functional.memory_hop_packed`); the result equals the padded computation.
    Under adjacent tying the whole model runs as one autograd node with a hand-written backward, in C++ on
    the CPU (:func:`~overlooked.memory.functional.adjacent_memn2n`; ``fused=False`` for plain autograd).
    Layer-wise tying shares ``A`` and ``C`` across hops, has its own ``B`` and ``W``, and updates
    ``u^{k+1} = H u^k + o^k`` at every hop, the last included, so the answer is ``W u^{K+1} = W(H u^K + o^K)``
    (the paper writes ``a = W(o^K + u^K)`` for adjacent tying and gives H only "between hops"; we read the
    update as applying at each of the K hops). Word 0 is the null word: its embedding is zero and receives no
    gradient.

    Args:
        vocab_size: ``V`` words (index 0 = null word).
        num_classes: answer classes (the vocabulary, by default).
        memory_size: ``M`` slots (temporal encoding has one row per slot).
        embed_dim: ``d`` (20 independent, 50 joint in the paper).
        hops: ``K``.
        encoding: ``"pe"`` (position encoding, §4.1), ``"pe_centered"`` (the authors' code's centred form) or ``"bow"``.
        temporal: add learned temporal encodings ``T_A``, ``T_C``.
        tying: ``"adjacent"`` or ``"layerwise"``.
        init_std: weights drawn from N(0, init_std) (0.1 in the paper).
        pe_length: ``J`` of the position encoding: each sentence's word count (``"sentence"``, the paper),
            the padded length (``"padded"``, some public ports), or the padded length plus one slot for the
            time word (``"padded_time"``, the authors' Matlab code: the temporal embedding is then scaled by
            the encoding's row ``l_J``, :func:`~overlooked.memory.functional.time_word_weight`).
        padding: how empty memory slots take part in addressing. ``"mask"`` (default, the issue's rule):
            they get ``-inf`` before the softmax and are never read. ``"attend"`` (the authors' Matlab code,
            where every empty slot holds null words): an empty slot is a zero vector, with no temporal
            encoding, that stays in the softmax with score 0, so the ``M - n`` empty slots of a story with
            ``n`` sentences act as a sink that lets a hop read (almost) nothing.
        fused: under adjacent tying, run the model as one autograd node with a hand-written backward
            (:func:`~overlooked.memory.functional.adjacent_memn2n`, about twice the training speed on a 2-core
            CPU); False runs autograd through the functional pieces (the reference: the same numbers,
            tested; use it for double backward, e.g. a gradient penalty, checked against finite differences, or
            hooks on intermediate tensors; the fused node refuses ``create_graph`` by name). Layer-wise tying
            always runs the reference.
    """

    def __init__(
        self,
        vocab_size: int,
        num_classes: int | None = None,
        memory_size: int = 50,
        embed_dim: int = 20,
        hops: int = 3,
        encoding: Literal["pe", "pe_centered", "bow"] = "pe",
        temporal: bool = True,
        tying: Literal["adjacent", "layerwise"] = "adjacent",
        init_std: float = 0.1,
        pe_length: Literal["sentence", "padded", "padded_time"] = "sentence",
        padding: Literal["mask", "attend"] = "mask",
        fused: bool = True,
    ):
        super().__init__()
        self.fused = bool(fused)
        vocab_size, memory_size, embed_dim, hops = check_sizes("memn2n", vocab_size=vocab_size, memory_size=memory_size, embed_dim=embed_dim, hops=hops)
        init_std = check_std("memn2n", init_std)
        if pe_length not in ("sentence", "padded", "padded_time"):
            raise ValueError(f"pe_length must be 'sentence', 'padded' or 'padded_time', got {pe_length!r}")
        if padding not in ("mask", "attend"):
            raise ValueError(f"padding must be 'mask' or 'attend', got {padding!r}")
        self.pe_length, self.padding = pe_length, padding
        warn_no_effect([(encoding == "bow" and pe_length != "sentence", f"MemN2N pe_length={pe_length!r} (it sets J of the position encodings; encoding='bow' weighs every word 1)")])
        if tying not in ("adjacent", "layerwise"):
            raise ValueError(f"tying must be 'adjacent' or 'layerwise', got {tying!r}")
        if encoding not in ("pe", "pe_centered", "bow"):
            raise ValueError(f"encoding must be 'pe', 'pe_centered' or 'bow', got {encoding!r}")
        (num_classes,) = check_sizes("memn2n", num_classes=num_classes)  # None: the vocabulary
        num_classes = num_classes or vocab_size
        if tying == "adjacent" and num_classes != vocab_size:
            raise ValueError("adjacent tying sets W^T = C^K, so num_classes must equal vocab_size")
        self.vocab_size, self.num_classes, self.memory_size = vocab_size, num_classes, memory_size
        self.embed_dim, self.hops, self.encoding, self.tying, self.temporal = embed_dim, hops, encoding, tying, temporal
        self.use_softmax = True  # False during linear start
        d, K = embed_dim, hops
        n_mem = K + 1 if tying == "adjacent" else 2
        self.memory_table = _normal(vocab_size, n_mem * d, std=init_std)  # adjacent: E_0..E_K; layer-wise: [A | C]
        self.temporal_table = _normal(memory_size, n_mem * d, std=init_std) if temporal else None
        if tying == "layerwise":
            self.query_table = _normal(vocab_size, d, std=init_std)  # B
            self.H = nn.Linear(d, d, bias=False)
            nn.init.normal_(self.H.weight, std=init_std)
            self.output = _normal(num_classes, d, std=init_std)  # W
        with torch.no_grad():
            self.memory_table[0].zero_()
            if tying == "layerwise":
                self.query_table[0].zero_()

    def set_linear_start(self, enabled: bool) -> None:
        """Remove (``True``) or re-insert (``False``) the softmax of every memory layer (§4.2). The switch is a
        plain attribute, not part of ``state_dict()``: the ``linear_start`` callback keeps it in its own state
        and :func:`overlooked.api.load_run` restores it; weights saved and loaded by hand need this call."""
        self.use_softmax = not enabled

    def gradient_groups(self) -> tuple[list[list[torch.Tensor]], list[nn.Parameter]]:
        """Per-matrix gradient groups for per-matrix clipping (``train.grad_clip_groups``): one group per
        embedding matrix stacked in ``memory_table`` (adjacent: E_0..E_K; layer-wise: A, C), each with the
        same matrix's temporal columns, as in the authors' code where time embeddings are extra rows of each
        memory matrix. Returns the groups (views of the gradients) and the parameters they cover."""
        d = self.embed_dim
        tables = [t for t in (self.memory_table, self.temporal_table) if t is not None and t.grad is not None]
        groups = [[t.grad[:, i * d : (i + 1) * d] for t in tables] for i in range(self.memory_table.shape[1] // d)]
        return [g for g in groups if g], tables

    def uncounted_flops(self, story: torch.Tensor, query: torch.Tensor, memory_mask: torch.Tensor, time: torch.Tensor | None = None) -> int:
        """FLOPs of the hops' products that the FLOP counter does not see, because the packed hops do them as
        element-wise operations: per hop and real memory, ``u . m_i`` and ``p_i c_i`` (2 d each); and, in the
        fused path, the null word's answer score (2 d per question), a constant 0 it does not compute."""
        null_logit = 2 * self.embed_dim * query.shape[0] if self.fused and self.tying == "adjacent" else 0
        return 4 * self.hops * self.embed_dim * int(memory_mask.sum()) + null_logit

    def extra_repr(self) -> str:
        return (f"vocab_size={self.vocab_size}, num_classes={self.num_classes}, memory_size={self.memory_size}, embed_dim={self.embed_dim}, "
                f"hops={self.hops}, encoding={self.encoding!r}, temporal={self.temporal}, tying={self.tying!r}, pe_length={self.pe_length!r}, "
                f"padding={self.padding!r}, fused={self.fused}, linear_start={not self.use_softmax}")

    def forward(self, story: torch.Tensor, query: torch.Tensor, memory_mask: torch.Tensor, time: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Answer ``query`` from ``story``.

        Args:
            story: ``[B, M, L]`` word indices.
            query: ``[B, L]`` word indices.
            memory_mask: ``[B, M]`` bool, True on real sentences.
            time: ``[B, M]`` temporal index (0 = newest); computed from the mask when None.

        Returns:
            ``{"logits": [B, num_classes], "attention": [B, K, M]}``.

        Raises:
            ValueError: when the shapes or dtypes do not fit together, or (with temporal encoding) the story
                has more than ``memory_size`` slots (:func:`~overlooked.memory.functional.check_memory_inputs`).
        """
        MF.check_memory_inputs(story, query, memory_mask, time, memory_size=self.memory_size if self.temporal_table is not None else None, vocab_size=self.vocab_size, name="memn2n")
        d, K = self.embed_dim, self.hops
        if time is None:
            time = MF.time_index(memory_mask)
        B, M, Ls = story.shape
        L = max(Ls, query.shape[-1])
        # Only the real memories are encoded and read (about a fifth of the slots in bAbI), packed story
        # after story; an empty slot is a zero vector that scores 0 (MF.memory_hop_packed).
        # under a vmap over stories (per-example gradients) every slot is read, the empty ones as zero vectors
        batched = any(in_torch_func(t) for t in (story, query, memory_mask, time) if t is not None)
        slots, owner = MF.all_slots(memory_mask) if batched else MF.pack_memories(memory_mask)  # [R], [R]
        R = slots.numel()
        packed_time = time.reshape(-1).index_select(0, slots) if self.temporal_table is not None else None  # [R]
        time_scale = None
        if self.temporal_table is not None and self.pe_length == "padded_time" and self.encoding != "bow":  # the time word sits at position J = L + 1
            time_scale = MF.time_word_weight(L, self.encoding, d, dtype=self.temporal_table.dtype).to(self.temporal_table.device).repeat(self.temporal_table.shape[1] // d)  # [n*d]
        # "attend" (the authors' code): the empty slots stay in the softmax as zero vectors with score 0.
        masks = MF.mask_bias(memory_mask if self.padding == "mask" else torch.ones_like(memory_mask))  # once for all hops
        if self.tying == "adjacent":  # the query is one more sentence, read with B = E_0: one embedding bag for all
            sentences = (story if Ls == L else F.pad(story, (0, L - Ls))).reshape(B * M, L).index_select(0, slots)  # [R, L]
            words = torch.cat([sentences, query if query.shape[-1] == L else F.pad(query, (0, L - query.shape[-1]))], 0)  # [R + B, L]
            # the whole model as one autograd node with a hand-written backward (tested = the path below); under a
            # torch.func transform (grad of a functional_call) the path below, which the transforms can run
            if self.fused and not in_transform():
                logits, attention = MF.adjacent_memn2n(
                    self.memory_table, self.temporal_table, words, packed_time, slots, owner, masks,
                    hops=K, encoding=self.encoding, pe_length=self.pe_length, softmax=self.use_softmax, time_scale=time_scale,
                )
                return {"logits": logits, "attention": attention}  # [B, V], [B, K, M]
            mem, q = MF.encode_sentences(words, self.memory_table, self.encoding, d, self.pe_length).split([R, B], 0)  # [R, (K+1)*d], [B, (K+1)*d]
            u = q[:, :d]  # [B, d]
        else:  # story and question padded to one width L, as above: pe_length='padded' weighs both with J = L
            padded = story if Ls == L else F.pad(story, (0, L - Ls))
            mem = MF.encode_sentences(padded.reshape(B * M, L).index_select(0, slots), self.memory_table, self.encoding, d, self.pe_length)  # [R, 2*d]
            u = MF.encode_sentences(query if query.shape[-1] == L else F.pad(query, (0, L - query.shape[-1])), self.query_table, self.encoding, d, self.pe_length)  # [B, d]
        if packed_time is not None:
            temporal = MF.temporal_encoding(packed_time, self.temporal_table)  # [R, n*d]
            mem = mem + (temporal if time_scale is None else temporal * time_scale)
        if batched:  # an empty slot is a zero vector, as in the packed layout (no temporal encoding, whatever its words)
            mem = mem * memory_mask.reshape(-1, 1).to(mem.dtype)
        parts = mem.view(R, mem.shape[1] // d, d).unbind(1)  # n x [R, d] (unbind's backward is one stack; R may be 0)
        attention = []
        for k in range(K):
            keys, values = (parts[k], parts[k + 1]) if self.tying == "adjacent" else (parts[0], parts[1])
            o, p = MF.memory_hop_packed(u, keys, values, slots, owner, masks, self.use_softmax)  # [B, d], [B, M]
            u = (u if self.tying == "adjacent" else self.H(u)) + o
            attention.append(p)
        if self.tying == "adjacent":  # W^T = C^K; its null-word row stays zero (no gradient reaches it)
            W = F.pad(self.memory_table[1:, K * d :], (0, 0, 1, 0))  # [V, d]
        else:
            W = self.output  # [C, d]
        return {"logits": u @ W.T, "attention": torch.stack(attention, 1)}  # [B, C], [B, K, M]


class KVMemNN(nn.Module):
    """Key-Value Memory Network (Miller et al. 2016, arXiv 1606.03126, §3) for bAbI.

    Key and value memories are addressed and read separately; each hop updates the query with its own
    matrix: ``q_{j+1} = R_j (q_j + o_j)`` with ``o_j = sum_h softmax(q_j . A Phi_K(k_h)) A Phi_V(v_h)``.
    The answer scores are ``q_{H+1} . B Phi_Y(y)`` over every vocabulary word. As in the paper, one
    embedding ``A`` serves question, keys and values, and ``B`` the answers.

    Key/value split used on bAbI (the paper has no bAbI experiment; this is our choice, "sentence level"):
    the key of memory ``h`` is its sentence with position encoding plus a learned temporal feature
    (so keys carry word order and recency, what addressing needs), the value is the same sentence as a
    plain bag of words (what the answer is read from). The question is position-encoded by default
    (``query_encoding``; the paper keeps ``Phi_X`` a bag of words, ``query_encoding="bow"``), so with
    ``key_encoding="bow"`` set ``query_encoding="bow"`` too for a plain bag-of-words ablation. Every stored
    sentence is a memory (at most ``memory_size``): the paper's key hashing (pre-selecting memories that share
    a word with the question) has nothing to prune in a bAbI story. Word 0 is the null word (zero embedding
    in ``A``; its answer row in ``B`` is learned like any other, and no answer is the null word).

    Args:
        vocab_size: ``V``.
        num_classes: answer classes (the vocabulary by default).
        memory_size: ``M`` (rows of the temporal feature).
        embed_dim: ``d``.
        hops: ``H`` query updates (default 2; our bAbI configs set 3, the depth of MemN2N).
        key_encoding, value_encoding, query_encoding: ``"pe"`` or ``"bow"`` for ``Phi_K``, ``Phi_V`` and ``Phi_X``.
        temporal: add the temporal feature to the keys.
        init_std: weights from N(0, init_std); ``R_j`` start at the identity plus that noise (the paper gives
            no initialisation for them; the identity makes the first updates ``q + o`` plus noise).
    """

    def __init__(
        self,
        vocab_size: int,
        num_classes: int | None = None,
        memory_size: int = 50,
        embed_dim: int = 50,
        hops: int = 2,
        key_encoding: Literal["pe", "bow"] = "pe",
        value_encoding: Literal["pe", "bow"] = "bow",
        temporal: bool = True,
        init_std: float = 0.1,
        query_encoding: Literal["pe", "bow"] = "pe",
    ):
        super().__init__()
        vocab_size, memory_size, embed_dim, hops = check_sizes("kvmemnn", vocab_size=vocab_size, memory_size=memory_size, embed_dim=embed_dim, hops=hops)
        init_std = check_std("kvmemnn", init_std)
        for which, enc in (("key_encoding", key_encoding), ("value_encoding", value_encoding), ("query_encoding", query_encoding)):
            if enc not in ("pe", "bow"):
                raise ValueError(f"kvmemnn: {which} must be 'pe' or 'bow', got {enc!r}")
        (num_classes,) = check_sizes("kvmemnn", num_classes=num_classes)  # None: the vocabulary
        num_classes = num_classes or vocab_size
        self.vocab_size, self.num_classes, self.memory_size, self.embed_dim, self.hops = vocab_size, num_classes, memory_size, embed_dim, hops
        self.key_encoding, self.value_encoding, self.query_encoding = key_encoding, value_encoding, query_encoding
        self.A = _normal(vocab_size, embed_dim, std=init_std)
        self.temporal_table = _normal(memory_size, embed_dim, std=init_std) if temporal else None
        self.R = nn.Parameter(torch.eye(embed_dim).repeat(hops, 1, 1) + init_std * torch.randn(hops, embed_dim, embed_dim))
        self.B = _normal(num_classes, embed_dim, std=init_std)
        with torch.no_grad():
            self.A[0].zero_()

    def extra_repr(self) -> str:
        return (f"vocab_size={self.vocab_size}, memory_size={self.memory_size}, embed_dim={self.embed_dim}, hops={self.hops}, "
                f"key_encoding={self.key_encoding!r}, value_encoding={self.value_encoding!r}, query_encoding={self.query_encoding!r}")

    def forward(self, story: torch.Tensor, query: torch.Tensor, memory_mask: torch.Tensor, time: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """``story`` ``[B, M, L]``, ``query`` ``[B, L]``, ``memory_mask`` ``[B, M]``, ``time`` ``[B, M]`` ->
        ``{"logits": [B, C], "attention": [B, H, M]}``.

        Raises:
            ValueError: when the shapes or dtypes do not fit together, or (with the temporal feature) the story
                has more than ``memory_size`` slots (:func:`~overlooked.memory.functional.check_memory_inputs`).
        """
        MF.check_memory_inputs(story, query, memory_mask, time, memory_size=self.memory_size if self.temporal_table is not None else None, vocab_size=self.A.shape[0], name="kvmemnn")
        d = self.embed_dim
        if time is None:
            time = MF.time_index(memory_mask)
        q = MF.encode_sentences(query, self.A, self.query_encoding, d)  # [B, d]
        keys = MF.encode_sentences(story, self.A, self.key_encoding, d)  # [B, M, d]
        if self.temporal_table is not None:
            keys = keys + MF.temporal_encoding(time, self.temporal_table)
        values = MF.encode_sentences(story, self.A, self.value_encoding, d)  # [B, M, d]
        masks = MF.mask_bias(memory_mask)
        attention = []
        for j in range(self.hops):
            q, p = MF.key_value_hop(q, keys, values, masks, self.R[j])  # q_{j+1} = R_j (q_j + o_j): [B, d], [B, M]
            attention.append(p)
        return {"logits": q @ self.B.T, "attention": torch.stack(attention, 1)}
