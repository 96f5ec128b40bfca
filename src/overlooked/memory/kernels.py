"""The CPU kernel of MemN2N under adjacent tying: one C++ call encodes the packed memories and the questions
(bag of words, PE or centred PE, as :func:`overlooked.memory.functional.position_weights`), adds the temporal
rows and runs all K hops; one call does the whole backward, adding into the gradients of the embedding and
temporal tables. Built at first use by :mod:`overlooked.native`.

A hop over the packed real memories of a batch is a few hundred dot products of length d: microseconds of
arithmetic, which PyTorch spreads over about 25 operations per hop (forward and backward), each costing
more to dispatch than to compute on a 2-core CPU; the encoding and its backward took about 40 more. The
loops below do the same sums serially, in the order the PyTorch path
(:func:`overlooked.memory.functional._adjacent_hops`) adds them, except the dot products, the bags' sums and
the softmax's exponentials, which round differently. Tested equal to that path in float64 and float32, and
by ``gradcheck`` (``tests/memory/test_functional.py``).
"""

from __future__ import annotations

import ctypes
import warnings

import torch

from overlooked import native
from overlooked.errors import InputError

SOURCE = r"""
#include <cmath>
#include <cstdint>
#include <algorithm>
#include <cstring>
#include <limits>
#include <vector>

namespace {

template <typename T>
inline T dot(const T* a, const T* b, int64_t n) {
    T s = 0;
    for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
    return s;
}

// How the sentences are encoded (functional.position_weights): word j (1-based among the real words) of a
// sentence of J words weighs l_kj = alpha_j + c_k beta_j, c_k = -k/d, in every one of the n matrices.
struct Enc {
    int kind;        // 0 bag of words (alpha = 1, beta = 0), 1 PE, 2 centred PE
    int fixed_len;   // 0: J = the sentence's real words (at least 1); 1: J = J_fixed
    double J_fixed;
    int64_t d;
};

template <typename T>
inline void weights(const Enc& e, int64_t j1, T J, T& alpha, T& beta) {
    const T j = T(j1);
    if (e.kind == 0) { alpha = T(1); beta = T(0); return; }
    if (e.kind == 1) { alpha = T(1) - j / J; beta = T(1) - (T(2) * j) / J; return; }
    const T dd = T(e.d);
    const T g = (j - (J + T(1)) / T(2)) / J;
    alpha = T(1) - T(2.0 * (double(e.d) + 1.0) / double(e.d)) * g;
    beta = T(-4) * g;
    (void)dd;
}

template <typename T>
inline T sentence_len(const Enc& e, const int64_t* w, int64_t L) {
    if (e.fixed_len) return T(e.J_fixed);
    int64_t n = 0;
    for (int64_t l = 0; l < L; ++l) n += w[l] != 0;
    return T(n > 0 ? n : 1);
}

// out[0:cols] = sum_j alpha_j E[x_j] + c (.) sum_j beta_j E[x_j] over the real words of one sentence.
template <typename T>
void encode(const Enc& e, const int64_t* w, int64_t L, const T* table, int64_t nd, int64_t cols, const T* c, T* out, T* acc_b) {
    const T J = sentence_len<T>(e, w, L);
    std::fill(out, out + cols, T(0));
    std::fill(acc_b, acc_b + cols, T(0));
    int64_t j = 0;
    for (int64_t l = 0; l < L; ++l) {
        if (!w[l]) continue;
        T alpha, beta;
        weights<T>(e, ++j, J, alpha, beta);
        const T* row = table + w[l] * nd;
        for (int64_t i = 0; i < cols; ++i) { out[i] += alpha * row[i]; acc_b[i] += beta * row[i]; }
    }
    if (e.kind != 0)
        for (int64_t i = 0; i < cols; ++i) out[i] += c[i] * acc_b[i];
}

// grad_table[x_j, 0:cols] += (alpha_j + c beta_j) g for the real words of one sentence.
template <typename T>
void encode_backward(const Enc& e, const int64_t* w, int64_t L, int64_t nd, int64_t cols, const T* c, const T* g, T* grad_table) {
    const T J = sentence_len<T>(e, w, L);
    int64_t j = 0;
    for (int64_t l = 0; l < L; ++l) {
        if (!w[l]) continue;
        T alpha, beta;
        weights<T>(e, ++j, J, alpha, beta);
        T* row = grad_table + w[l] * nd;
        if (e.kind == 0)
            for (int64_t i = 0; i < cols; ++i) row[i] += alpha * g[i];
        else
            for (int64_t i = 0; i < cols; ++i) row[i] += alpha * g[i] + c[i] * (beta * g[i]);
    }
}

// The K hops over mem [R, nd] (keys of hop k at column k d, values at (k+1) d); u_all [K+1, B, d] with
// u_all[0] = u^1 on entry; out: q_all [K, B, M] (softmax output, softmax only), att [B, K, M], w_all [K, R].
template <typename T>
void hops(int64_t B, int64_t M, int64_t R, int64_t d, int64_t K, int softmax, const T* mem, int64_t ldm,
          const int64_t* slots, const int64_t* owner, const T* bias, const T* gate, T* u_all, T* q_all, T* att, T* w_all) {
    std::vector<T> sc(B * M);
    for (int64_t k = 0; k < K; ++k) {
        const T* u = u_all + k * B * d;
        T* un = u_all + (k + 1) * B * d;
        if (softmax) std::memcpy(sc.data(), bias, sizeof(T) * B * M); else std::fill(sc.begin(), sc.end(), T(0));
        for (int64_t r = 0; r < R; ++r) sc[slots[r]] += dot(mem + r * ldm + k * d, u + owner[r] * d, d);
        for (int64_t b = 0; b < B; ++b) {
            const T* s = sc.data() + b * M;
            T* p = att + (b * K + k) * M;
            const T* g = gate + b * M;
            if (softmax) {
                T* q = q_all + (k * B + b) * M;
                T mx = -std::numeric_limits<T>::infinity();
                for (int64_t m = 0; m < M; ++m) mx = s[m] > mx ? s[m] : mx;
                T z = 0;
                for (int64_t m = 0; m < M; ++m) { q[m] = std::exp(s[m] - mx); z += q[m]; }
                for (int64_t m = 0; m < M; ++m) { q[m] = q[m] / z; p[m] = q[m] * g[m]; }
            } else {
                for (int64_t m = 0; m < M; ++m) p[m] = s[m] * g[m];
            }
        }
        std::memcpy(un, u, sizeof(T) * B * d);
        T* w = w_all + k * R;
        for (int64_t r = 0; r < R; ++r) {
            const int64_t b = owner[r];
            w[r] = att[(b * K + k) * M + (slots[r] - b * M)];
            const T* v = mem + r * ldm + (k + 1) * d;
            T* o = un + b * d;
            for (int64_t i = 0; i < d; ++i) o[i] += v[i] * w[r];
        }
    }
}

// gu [B, d]: dL/du^{K+1} on entry, dL/du^1 on exit; gmem [R, ldg] accumulated into; gatt [B, K, M] or null.
template <typename T>
void hops_backward(int64_t B, int64_t M, int64_t R, int64_t d, int64_t K, int softmax, const T* mem, int64_t ldm,
                   const int64_t* slots, const int64_t* owner, const T* gate, const T* u_all, const T* q_all, const T* w_all,
                   const T* gatt, T* gu, T* gmem, int64_t ldg) {
    std::vector<T> gp(B * M);
    for (int64_t k = K - 1; k >= 0; --k) {
        std::fill(gp.begin(), gp.end(), T(0));
        const T* w = w_all + k * R;
        for (int64_t r = 0; r < R; ++r) {  // dL/dc_i = p_i dL/do, dL/dp_i = c_i . dL/do
            const T* g = gu + owner[r] * d;
            const T* v = mem + r * ldm + (k + 1) * d;
            T* gv = gmem + r * ldg + (k + 1) * d;
            for (int64_t i = 0; i < d; ++i) gv[i] += g[i] * w[r];
            gp[slots[r]] = dot(v, g, d);
        }
        if (gatt)
            for (int64_t b = 0; b < B; ++b)
                for (int64_t m = 0; m < M; ++m) gp[b * M + m] += gatt[(b * K + k) * M + m] * gate[b * M + m];
        if (softmax)  // dL/ds = q (dL/dq - sum q dL/dq)
            for (int64_t b = 0; b < B; ++b) {
                const T* q = q_all + (k * B + b) * M;
                T* g = gp.data() + b * M;
                T s = 0;
                for (int64_t m = 0; m < M; ++m) s += g[m] * q[m];
                for (int64_t m = 0; m < M; ++m) g[m] = q[m] * (g[m] - s);
            }
        const T* u = u_all + k * B * d;
        for (int64_t r = 0; r < R; ++r) {  // dL/dm_i = dL/ds_i u, dL/du += dL/ds_i m_i
            const T g = gp[slots[r]];
            const int64_t b = owner[r];
            const T* key = mem + r * ldm + k * d;
            T* gk = gmem + r * ldg + k * d;
            const T* ub = u + b * d;
            T* gub = gu + b * d;
            for (int64_t i = 0; i < d; ++i) { gk[i] += ub[i] * g; gub[i] += key[i] * g; }
        }
    }
}

// 0 when every index lies in range, else 1 (a word outside the table), 2 (a time index), 3 (a slot/owner).
int check(int64_t N, int64_t L, const int64_t* words, int64_t V, int64_t R, const int64_t* time, int64_t Mt,
          const int64_t* slots, const int64_t* owner, int64_t B, int64_t M) {
    for (int64_t i = 0; i < N * L; ++i) if (words[i] < 0 || words[i] >= V) return 1;
    if (time) for (int64_t r = 0; r < R; ++r) if (time[r] < 0 || time[r] >= Mt) return 2;
    for (int64_t r = 0; r < R; ++r) if (slots[r] < 0 || slots[r] >= B * M || owner[r] < 0 || owner[r] >= B || slots[r] / M != owner[r]) return 3;
    return 0;
}

template <typename T>
void forward(const Enc& e, int64_t R, int64_t B, int64_t L, const int64_t* words, const T* table, int64_t nd, const T* c,
             const T* temporal, const int64_t* time, const T* tscale, int64_t M, int64_t K, int softmax,
             const int64_t* slots, const int64_t* owner, const T* bias, const T* gate, T* mem, T* u_all, T* q_all, T* att, T* w_all) {
    const int64_t d = e.d;
    std::vector<T> acc(nd);
    for (int64_t r = 0; r < R; ++r) {  // memories: all n matrices, plus their temporal rows
        T* m = mem + r * nd;
        encode<T>(e, words + r * L, L, table, nd, nd, c, m, acc.data());
        if (temporal) {
            const T* t = temporal + time[r] * nd;
            if (tscale) for (int64_t i = 0; i < nd; ++i) m[i] += t[i] * tscale[i];
            else for (int64_t i = 0; i < nd; ++i) m[i] += t[i];
        }
    }
    for (int64_t b = 0; b < B; ++b)  // questions: u^1 = B q with B = E_0, the first d columns
        encode<T>(e, words + (R + b) * L, L, table, nd, d, c, u_all + b * d, acc.data());
    hops<T>(B, M, R, d, K, softmax, mem, nd, slots, owner, bias, gate, u_all, q_all, att, w_all);
}

template <typename T>
void backward(const Enc& e, int64_t R, int64_t B, int64_t L, const int64_t* words, int64_t nd, const T* c,
              const int64_t* time, const T* tscale, int64_t M, int64_t K, int softmax, const int64_t* slots, const int64_t* owner,
              const T* gate, const T* mem, const T* u_all, const T* q_all, const T* w_all, const T* gatt, T* gu,
              T* grad_table, T* grad_temporal) {
    const int64_t d = e.d;
    std::vector<T> gmem(R * nd, T(0));
    hops_backward<T>(B, M, R, d, K, softmax, mem, nd, slots, owner, gate, u_all, q_all, w_all, gatt, gu, gmem.data(), nd);
    for (int64_t r = 0; r < R; ++r) {
        const T* g = gmem.data() + r * nd;
        encode_backward<T>(e, words + r * L, L, nd, nd, c, g, grad_table);
        if (grad_temporal) {
            T* t = grad_temporal + time[r] * nd;
            if (tscale) for (int64_t i = 0; i < nd; ++i) t[i] += g[i] * tscale[i];
            else for (int64_t i = 0; i < nd; ++i) t[i] += g[i];
        }
    }
    for (int64_t b = 0; b < B; ++b) encode_backward<T>(e, words + (R + b) * L, L, nd, d, c, gu + b * d, grad_table);
}

}  // namespace

extern "C" {

int ovl_memn2n_forward(int dbl, int kind, int fixed_len, double J_fixed, int64_t d, int64_t R, int64_t B, int64_t L,
                       const int64_t* words, const void* table, int64_t V, int64_t nd, const void* c, const void* temporal,
                       const int64_t* time, int64_t Mt, const void* tscale, int64_t M, int64_t K, int softmax,
                       const int64_t* slots, const int64_t* owner, const void* bias, const void* gate,
                       void* mem, void* u_all, void* q_all, void* att, void* w_all) {
    const int bad = check(R + B, L, words, V, R, temporal ? time : nullptr, Mt, slots, owner, B, M);
    if (bad) return bad;
    const Enc e{kind, fixed_len, J_fixed, d};
    if (dbl)
        forward<double>(e, R, B, L, words, (const double*)table, nd, (const double*)c, (const double*)temporal, time,
                        (const double*)tscale, M, K, softmax, slots, owner, (const double*)bias, (const double*)gate,
                        (double*)mem, (double*)u_all, (double*)q_all, (double*)att, (double*)w_all);
    else
        forward<float>(e, R, B, L, words, (const float*)table, nd, (const float*)c, (const float*)temporal, time,
                       (const float*)tscale, M, K, softmax, slots, owner, (const float*)bias, (const float*)gate,
                       (float*)mem, (float*)u_all, (float*)q_all, (float*)att, (float*)w_all);
    return 0;
}

int ovl_memn2n_backward(int dbl, int kind, int fixed_len, double J_fixed, int64_t d, int64_t R, int64_t B, int64_t L,
                        const int64_t* words, int64_t nd, const void* c, const int64_t* time, const void* tscale, int64_t M,
                        int64_t K, int softmax, const int64_t* slots, const int64_t* owner, const void* gate, const void* mem,
                        const void* u_all, const void* q_all, const void* w_all, const void* gatt, void* gu,
                        void* grad_table, void* grad_temporal) {
    const Enc e{kind, fixed_len, J_fixed, d};
    if (dbl)
        backward<double>(e, R, B, L, words, nd, (const double*)c, time, (const double*)tscale, M, K, softmax, slots, owner,
                         (const double*)gate, (const double*)mem, (const double*)u_all, (const double*)q_all,
                         (const double*)w_all, (const double*)gatt, (double*)gu, (double*)grad_table, (double*)grad_temporal);
    else
        backward<float>(e, R, B, L, words, nd, (const float*)c, time, (const float*)tscale, M, K, softmax, slots, owner,
                        (const float*)gate, (const float*)mem, (const float*)u_all, (const float*)q_all,
                        (const float*)w_all, (const float*)gatt, (float*)gu, (float*)grad_table, (float*)grad_temporal);
    return 0;
}

}
"""

CALLS = {"forward": 0, "backward": 0}  # kernel calls in this process (tests check that the fast path ran)


def _declare(lib: ctypes.CDLL) -> None:
    vp, i64, i32, dbl = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_double
    lib.ovl_memn2n_forward.argtypes = [i32, i32, i32, dbl, i64, i64, i64, i64, vp, vp, i64, i64, vp, vp, vp, i64, vp, i64, i64, i32, vp, vp, vp, vp, vp, vp, vp, vp, vp]
    lib.ovl_memn2n_forward.restype = i32
    lib.ovl_memn2n_backward.argtypes = [i32, i32, i32, dbl, i64, i64, i64, i64, vp, i64, vp, vp, vp, i64, i64, i32, vp, vp, vp, vp, vp, vp, vp, vp, vp, vp, vp]
    lib.ovl_memn2n_backward.restype = i32


LIBRARY = native.Library("ovl_memn2n", SOURCE, "C++ MemN2N kernel", _declare, hint="; MemN2N runs its hops in PyTorch operations instead")
_warned = False


def load() -> ctypes.CDLL:
    """The compiled library, building it on the first call; raises :class:`overlooked.native.CompilerUnavailable`."""
    return LIBRARY.load()


def usable(x: torch.Tensor) -> bool:
    """Whether the kernel runs ``x``'s tensors: float32/float64 on the CPU, with a compiler (builds on the first call)."""
    global _warned
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64):
        return False
    try:
        load()
    except native.CompilerUnavailable as err:
        if not _warned:  # once per process: the PyTorch path gives the same numbers, only slower
            _warned = True
            warnings.warn(f"MemN2N's C++ kernel is unavailable, the PyTorch path runs instead: {err}", RuntimeWarning, stacklevel=3)
        return False
    return True


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _check_buffers(dtype: torch.dtype, floats: dict[str, torch.Tensor | None], ints: dict[str, torch.Tensor | None]) -> None:
    """The kernel reads raw pointers, so a buffer of another dtype, layout or device would be read or
    written as the wrong bytes (a bf16 gradient made under autocast corrupted the heap): refuse it, naming
    the buffer. ``floats`` must have ``dtype``, ``ints`` int64; all contiguous CPU tensors (or None)."""
    for want, group in ((dtype, floats), (torch.int64, ints)):
        for name, t in group.items():
            if t is not None and (t.dtype != want or t.device.type != "cpu" or not t.is_contiguous()):
                raise InputError(
                    f"MemN2N's C++ kernel got {name} as {str(t.dtype).removeprefix('torch.')} on {t.device}"
                    f"{'' if t.is_contiguous() else ', not contiguous'}; it reads contiguous CPU {str(want).removeprefix('torch.')} buffers. "
                    "Fix: call it through adjacent_memn2n (which converts its inputs), or use backend='torch'"
                )


_ENCODINGS = {"bow": 0, "pe": 1, "pe_centered": 2}
BAD_INPUT = {  # the kernel's input error codes (the PyTorch path checks the same ranges)
    1: "a word index outside the embedding table [0, V)",
    2: "a temporal index outside the temporal table",
    3: "a packed slot or owner that does not fit the mask [B, M] (build them with pack_memories)",
}


def _encoding_args(encoding: str, pe_length: str, L: int) -> tuple[int, int, float]:
    """``(kind, fixed_len, J_fixed)`` of the C++ ``Enc`` for an encoding and ``pe_length`` at padded width ``L``."""
    fixed = {"sentence": None, "padded": float(L), "padded_time": float(L + 1)}[pe_length]
    return _ENCODINGS[encoding], int(fixed is not None), fixed or 0.0


def forward(table, temporal_table, words, time, time_scale, scale, slots, owner, bias, gate, softmax, hops, encoding, pe_length):
    """The kernel's forward: encodes the ``R`` packed memories (``words[:R]``, with their temporal rows) and
    the ``B`` questions (``words[R:]``), and runs the hops. Returns ``(mem [R, (K+1) d], u_all [K+1, B, d],
    q_all [K, B, M] (empty under linear start), attention [B, K, M], w_all [K, R])``. Every tensor must be
    contiguous; ``scale`` is the PE's ``-k/d`` ``[(K+1) d]`` (any values for bag of words)."""
    B, M = bias.shape
    R, L = slots.numel(), words.shape[1]
    V, nd = table.shape
    d = nd // (hops + 1)
    mem = table.new_empty(R, nd)
    u_all = table.new_empty(hops + 1, B, d)
    q_all = table.new_empty(hops, B, M) if softmax else table.new_empty(0)
    att = table.new_empty(B, hops, M)
    w_all = table.new_empty(hops, R)
    kind, fixed, J = _encoding_args(encoding, pe_length, L)
    _check_buffers(table.dtype, {"table": table, "temporal_table": temporal_table, "time_scale": time_scale, "scale": scale, "bias": bias, "gate": gate},
                   {"words": words, "time": time, "slots": slots, "owner": owner})
    CALLS["forward"] += 1
    bad = load().ovl_memn2n_forward(
        int(table.dtype == torch.float64), kind, fixed, J, d, R, B, L, _ptr(words), _ptr(table), V, nd, _ptr(scale),
        _ptr(temporal_table), _ptr(time), temporal_table.shape[0] if temporal_table is not None else 0, _ptr(time_scale), M, hops,
        int(softmax), _ptr(slots), _ptr(owner), _ptr(bias), _ptr(gate), _ptr(mem), _ptr(u_all), _ptr(q_all), _ptr(att), _ptr(w_all),
    )
    if bad:
        raise InputError(f"adjacent MemN2N: {BAD_INPUT[bad]}. Fix: check the inputs against the model's vocabulary and memory size (check_memory_inputs names them)")
    return mem, u_all, q_all, att, w_all


def backward(gu, grad_attention, grad_table, grad_temporal, words, time, time_scale, scale, slots, owner, gate, mem, u_all, q_all, w_all, softmax, encoding, pe_length):
    """The kernel's backward: ``gu`` ``[B, d]`` (``dL/du^{K+1}``, contiguous) becomes ``dL/du^1`` in place,
    and the gradients of the embedding and temporal tables are added into ``grad_table`` ``[V, (K+1) d]`` and
    ``grad_temporal`` (or None), both contiguous."""
    B, M = gate.shape
    R, L = slots.numel(), words.shape[1]
    nd, K = grad_table.shape[1], w_all.shape[0]
    kind, fixed, J = _encoding_args(encoding, pe_length, L)
    _check_buffers(grad_table.dtype, {"the answer gradient": gu, "the attention gradient": grad_attention, "grad_table": grad_table, "grad_temporal": grad_temporal,
                                      "time_scale": time_scale, "scale": scale, "gate": gate, "mem": mem, "u_all": u_all, "q_all": q_all, "w_all": w_all},
                   {"words": words, "time": time, "slots": slots, "owner": owner})
    CALLS["backward"] += 1
    load().ovl_memn2n_backward(
        int(gu.dtype == torch.float64), kind, fixed, J, gu.shape[1], R, B, L, _ptr(words), nd, _ptr(scale), _ptr(time),
        _ptr(time_scale), M, K, int(softmax), _ptr(slots), _ptr(owner), _ptr(gate), _ptr(mem), _ptr(u_all), _ptr(q_all),
        _ptr(w_all), _ptr(grad_attention), _ptr(gu), _ptr(grad_table), _ptr(grad_temporal),
    )
