"""The CPU kernel of MemN2N's packed hops under adjacent tying: all K hops forward in one C++ call, all of
their backward in another (built at first use by :mod:`overlooked.native`).

A hop over the packed real memories of a batch is a few hundred dot products of length d: microseconds of
arithmetic, which PyTorch spreads over about 25 operations per hop (forward and backward), each costing
more to dispatch than to compute on a 2-core CPU. The loops below do the same sums serially, in the order
the PyTorch path (:func:`overlooked.memory.functional._adjacent_hops`) adds them, except the dot products
and the softmax's exponentials, which round differently. Tested equal to that path in float64 and
float32, and by ``gradcheck`` (``tests/memory/test_functional.py``).
"""

from __future__ import annotations

import ctypes
import threading

import torch

from overlooked import native

SOURCE = r"""
#include <cmath>
#include <cstdint>
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

// u_all [K+1, B, d] (u_all[0] = u0 on entry), mem [R, ldm] (keys of hop k at column k d, values at (k+1) d),
// slots/owner [R], bias/gate [B, M]; out: q_all [K, B, M] (softmax output, softmax only), att [B, K, M], w_all [K, R].
template <typename T>
void forward(int64_t B, int64_t M, int64_t R, int64_t d, int64_t K, int softmax, const T* mem, int64_t ldm,
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
void backward(int64_t B, int64_t M, int64_t R, int64_t d, int64_t K, int softmax, const T* mem, int64_t ldm,
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

}  // namespace

extern "C" {

int ovl_memn2n_hops_forward(int dbl, int64_t B, int64_t M, int64_t R, int64_t d, int64_t K, int softmax, const void* mem,
                            int64_t ldm, const int64_t* slots, const int64_t* owner, const void* bias, const void* gate,
                            void* u_all, void* q_all, void* att, void* w_all) {
    if (dbl)
        forward<double>(B, M, R, d, K, softmax, (const double*)mem, ldm, slots, owner, (const double*)bias, (const double*)gate,
                        (double*)u_all, (double*)q_all, (double*)att, (double*)w_all);
    else
        forward<float>(B, M, R, d, K, softmax, (const float*)mem, ldm, slots, owner, (const float*)bias, (const float*)gate,
                       (float*)u_all, (float*)q_all, (float*)att, (float*)w_all);
    return 0;
}

int ovl_memn2n_hops_backward(int dbl, int64_t B, int64_t M, int64_t R, int64_t d, int64_t K, int softmax, const void* mem,
                             int64_t ldm, const int64_t* slots, const int64_t* owner, const void* gate, const void* u_all,
                             const void* q_all, const void* w_all, const void* gatt, void* gu, void* gmem, int64_t ldg) {
    if (dbl)
        backward<double>(B, M, R, d, K, softmax, (const double*)mem, ldm, slots, owner, (const double*)gate, (const double*)u_all,
                         (const double*)q_all, (const double*)w_all, (const double*)gatt, (double*)gu, (double*)gmem, ldg);
    else
        backward<float>(B, M, R, d, K, softmax, (const float*)mem, ldm, slots, owner, (const float*)gate, (const float*)u_all,
                        (const float*)q_all, (const float*)w_all, (const float*)gatt, (float*)gu, (float*)gmem, ldg);
    return 0;
}

}
"""

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_error: str | None = None
CALLS = {"forward": 0, "backward": 0}  # kernel calls in this process (tests check that the fast path ran)


def load() -> ctypes.CDLL:
    """The compiled library, building it on the first call; raises :class:`overlooked.native.CompilerUnavailable`."""
    global _lib, _error
    with _lock:
        if _lib is not None:
            return _lib
        if _error is not None:
            raise native.CompilerUnavailable(_error)
        try:
            lib = native.build("ovl_memn2n_hops", SOURCE, "C++ MemN2N hops")
        except native.CompilerUnavailable as err:
            _error = str(err)
            raise
        vp, i64, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
        lib.ovl_memn2n_hops_forward.argtypes = [i32, i64, i64, i64, i64, i64, i32, vp, i64, vp, vp, vp, vp, vp, vp, vp, vp]
        lib.ovl_memn2n_hops_forward.restype = i32
        lib.ovl_memn2n_hops_backward.argtypes = [i32, i64, i64, i64, i64, i64, i32, vp, i64, vp, vp, vp, vp, vp, vp, vp, vp, vp, i64]
        lib.ovl_memn2n_hops_backward.restype = i32
        _lib = lib
        return lib


def usable(x: torch.Tensor) -> bool:
    """Whether the kernel runs ``x``'s tensors: float32/float64 on the CPU, with a compiler (builds on the first call)."""
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64):
        return False
    try:
        load()
    except native.CompilerUnavailable:
        return False
    return True


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def hops_forward(u0, mem, slots, owner, bias, gate, softmax, hops):
    """The kernel's forward: ``(u_all [K+1, B, d], q_all [K, B, M] or empty, attention [B, K, M], w_all [K, R])``.
    Every tensor must be contiguous (``mem`` rows may be wider than ``(K+1) d``), slots/owner int64."""
    B, M = bias.shape
    R, d = slots.numel(), u0.shape[1]
    u_all = u0.new_empty(hops + 1, B, d)
    u_all[0] = u0
    q_all = u0.new_empty(hops, B, M) if softmax else u0.new_empty(0)
    att = u0.new_empty(B, hops, M)
    w_all = u0.new_empty(hops, R)
    CALLS["forward"] += 1
    load().ovl_memn2n_hops_forward(
        int(u0.dtype == torch.float64), B, M, R, d, hops, int(softmax), _ptr(mem), mem.stride(0), _ptr(slots), _ptr(owner),
        _ptr(bias), _ptr(gate), _ptr(u_all), _ptr(q_all), _ptr(att), _ptr(w_all),
    )
    return u_all, q_all, att, w_all


def hops_backward(gu, grad_attention, gmem, mem, slots, owner, gate, u_all, q_all, w_all, softmax):
    """The kernel's backward: ``gu`` ``[B, d]`` (``dL/du^{K+1}``, contiguous) becomes ``dL/du^1`` in place and
    ``dL/dmem`` is added into ``gmem`` (``[R, >= (K+1) d]``, rows contiguous)."""
    B, M = gate.shape
    R, d, K = slots.numel(), gu.shape[1], w_all.shape[0]
    CALLS["backward"] += 1
    load().ovl_memn2n_hops_backward(
        int(gu.dtype == torch.float64), B, M, R, d, K, int(softmax), _ptr(mem), mem.stride(0), _ptr(slots), _ptr(owner),
        _ptr(gate), _ptr(u_all), _ptr(q_all), _ptr(w_all), _ptr(grad_attention), _ptr(gu), _ptr(gmem), gmem.stride(0),
    )
