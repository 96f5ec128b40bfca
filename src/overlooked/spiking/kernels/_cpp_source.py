"""The C++ source of the CPU neuron scans (kept as a string so it ships inside the wheel).

One forward and one backward function per neuron kind; each walks the time axis sequentially and splits
the neurons into contiguous chunks across OpenMP threads (the same libgomp that torch already loaded). The
inner loop over a chunk is plain C++ that the compiler vectorises. The float operations of the forward pass
are written in the same order as ``overlooked.spiking.neurons`` so float32 spikes equal the reference's
bit for bit; ``-ffp-contract=off`` forbids fused multiply-adds that would round differently.
"""

SOURCE = r"""
#include <cmath>
#include <cstdint>
#include <algorithm>
#include <vector>
#include <omp.h>

namespace {

enum Kind { IF_ = 0, LIF_ = 1, CUBA_ = 2 };
enum Reset { ZERO_ = 0, SUB_ = 1 };
enum Surr { FAST_SIGMOID_ = 0, ATAN_ = 1, SIGMOID_ = 2, TRIANGLE_ = 3, RECTANGLE_ = 4 };

// Parameters, as doubles in this order (the Python side packs them):
// 0 a = dt / tau_mem, 1 c = dt * r (IF), 2 r, 3 v_leak, 4 v_threshold, 5 v_reset,
// 6 reset_c = v_threshold - v_reset, 7 b = dt / tau_syn, 8 w_in, 9 alpha (surrogate)
template <typename T>
struct P {
    T a, c, r, vl, th, vr, rc, b, w, alpha;
    explicit P(const double* p)
        : a((T)p[0]), c((T)p[1]), r((T)p[2]), vl((T)p[3]), th((T)p[4]), vr((T)p[5]), rc((T)p[6]), b((T)p[7]), w((T)p[8]), alpha((T)p[9]) {}
};

template <typename T, int S>
inline T surrogate(T x, T alpha) {
    if (S == FAST_SIGMOID_) { T d = T(1) + alpha * std::abs(x); return T(1) / (d * d); }
    if (S == ATAN_) { T u = T(M_PI / 2) * alpha * x; return (alpha / T(2)) / (T(1) + u * u); }
    if (S == SIGMOID_) { T s = T(1) / (T(1) + std::exp(-alpha * x)); return alpha * s * (T(1) - s); }
    if (S == TRIANGLE_) { return alpha * std::max(T(0), T(1) - alpha * std::abs(x)); }
    return std::abs(x) < T(0.5) / alpha ? alpha : T(0);  // RECTANGLE_
}

template <typename T, int K, int R>
void forward(const T* x, T* z, T* hs, T* v_io, T* i_io, int64_t nt, int64_t n, int64_t ch, const double* pp, int nthreads) {
    const P<T> p(pp);
    const int64_t nchunks = (n + ch - 1) / ch;
#pragma omp parallel for num_threads(nthreads) schedule(static)
    for (int64_t k = 0; k < nchunks; ++k) {
        const int64_t n0 = k * ch, m = std::min(ch, n - n0);
        T* v = v_io + n0;
        T* cur = K == CUBA_ ? i_io + n0 : nullptr;
        for (int64_t t = 0; t < nt; ++t) {
            const T* xt = x + t * n + n0;
            T* zt = z + t * n + n0;
            T* ht = hs ? hs + t * n + n0 : nullptr;
            for (int64_t j = 0; j < m; ++j) {
                const T vv = v[j];
                T h;
                if (K == IF_) h = vv + p.c * xt[j];                           // v + (dt r) x
                else if (K == LIF_) h = vv + p.a * ((p.vl - vv) + p.r * xt[j]);  // v + a ((v_leak - v) + r x)
                else h = vv + p.a * ((p.vl - vv) + p.r * cur[j]);               // charged with last step's current
                const T s = (h - p.th) > T(0) ? T(1) : T(0);
                zt[j] = s;
                if (ht) ht[j] = h;
                v[j] = R == ZERO_ ? h - s * (h - p.vr) : h - s * p.rc;
                if (K == CUBA_) cur[j] = (cur[j] - p.b * cur[j]) + p.w * xt[j];
            }
        }
    }
}

// BPTT. gh_t = gz_t sg_t + gv_t dv_t/dh_t, then the charge's Jacobian carries gh_t to x_t and v_{t-1}.
// LEARN (LIF only): also d loss / d a, with d h_t / d a = (v_leak - v_{t-1}) + r x_t and v_{t-1} rebuilt
// from h_{t-1}; accumulated per neuron in double so the inner loop still vectorises.
template <typename T, int K, int R, int S, bool LEARN>
void backward(const T* gz, const T* hs, const T* x, const T* v0, const T* gvT, const T* giT, T* gx, T* gv0, T* gi0,
              double* ga, int64_t nt, int64_t n, int64_t ch, const double* pp, int detach, int nthreads) {
    const P<T> p(pp);
    const int64_t nchunks = (n + ch - 1) / ch;
    const T one_minus_a = T(1) - p.a, one_minus_b = T(1) - p.b, ar = p.a * p.r;
    const T keep = detach ? T(0) : T(1);
#pragma omp parallel for num_threads(nthreads) schedule(static)
    for (int64_t k = 0; k < nchunks; ++k) {
        const int64_t n0 = k * ch, m = std::min(ch, n - n0);
        T* __restrict gv = gv0 + n0;  // running gradient w.r.t. v_t, written out as the gradient w.r.t. v_0
        T* __restrict gi = K == CUBA_ ? gi0 + n0 : nullptr;
        for (int64_t j = 0; j < m; ++j) gv[j] = gvT ? gvT[n0 + j] : T(0);
        if (K == CUBA_) for (int64_t j = 0; j < m; ++j) gi[j] = giT ? giT[n0 + j] : T(0);
        std::vector<double> acc(LEARN ? m : 0, 0.0);
        double* __restrict ac = acc.data();
        for (int64_t t = nt - 1; t >= 0; --t) {
            const T* __restrict gzt = gz + t * n + n0;
            const T* __restrict ht = hs + t * n + n0;
            T* __restrict gxt = gx + t * n + n0;
            const T* __restrict xt = LEARN ? x + t * n + n0 : nullptr;
            const T* __restrict hp = LEARN ? (t > 0 ? hs + (t - 1) * n + n0 : v0 + n0) : nullptr;
            const bool first = t == 0;
            for (int64_t j = 0; j < m; ++j) {
                const T h = ht[j], u = h - p.th;
                const T s = u > T(0) ? T(1) : T(0);
                const T sg = surrogate<T, S>(u, p.alpha);
                const T dvdh = R == ZERO_ ? (T(1) - s) - keep * (h - p.vr) * sg : T(1) - keep * p.rc * sg;
                const T gh = gzt[j] * sg + gv[j] * dvdh;
                if (K == IF_) { gxt[j] = gh * p.c; gv[j] = gh; }
                else if (K == LIF_) {
                    gxt[j] = gh * ar;
                    gv[j] = gh * one_minus_a;
                    if (LEARN) {
                        const T q = hp[j];  // h_{t-1}, or v_0 at t = 0 (no reset applies to it)
                        const T sp = (!first && (q - p.th) > T(0)) ? T(1) : T(0);
                        const T vp = R == ZERO_ ? q - sp * (q - p.vr) : q - sp * p.rc;
                        ac[j] += (double)(gh * ((p.vl - vp) + p.r * xt[j]));
                    }
                } else {
                    gxt[j] = gi[j] * p.w;
                    gi[j] = gi[j] * one_minus_b + gh * ar;
                    gv[j] = gh * one_minus_a;
                }
            }
        }
        if (LEARN) { double sum = 0.0; for (int64_t j = 0; j < m; ++j) sum += ac[j]; ga[k] = sum; }
    }
}

template <typename T, int K, int R>
int backward_s(int surr, const T* gz, const T* hs, const T* x, const T* v0, const T* gvT, const T* giT, T* gx, T* gv0, T* gi0,
               double* ga, int64_t nt, int64_t n, int64_t ch, const double* pp, int detach, int nthreads) {
#define OVL_CASE(SID) case SID: \
        if constexpr (K == LIF_) { if (ga) { backward<T, K, R, SID, true>(gz, hs, x, v0, gvT, giT, gx, gv0, gi0, ga, nt, n, ch, pp, detach, nthreads); return 0; } } \
        else if (ga) return 1; \
        backward<T, K, R, SID, false>(gz, hs, x, v0, gvT, giT, gx, gv0, gi0, ga, nt, n, ch, pp, detach, nthreads); return 0;
    switch (surr) {
        OVL_CASE(FAST_SIGMOID_) OVL_CASE(ATAN_) OVL_CASE(SIGMOID_) OVL_CASE(TRIANGLE_) OVL_CASE(RECTANGLE_)
    }
#undef OVL_CASE
    return 1;
}

template <typename T>
int forward_d(int kind, int reset, const void* x, void* z, void* hs, void* v, void* i, int64_t nt, int64_t n, int64_t ch, const double* pp, int nthreads) {
    auto X = (const T*)x; auto Z = (T*)z; auto H = (T*)hs; auto V = (T*)v; auto I = (T*)i;
#define OVL_FWD(K, R) if (kind == K && reset == R) { forward<T, K, R>(X, Z, H, V, I, nt, n, ch, pp, nthreads); return 0; }
    OVL_FWD(IF_, ZERO_) OVL_FWD(IF_, SUB_) OVL_FWD(LIF_, ZERO_) OVL_FWD(LIF_, SUB_) OVL_FWD(CUBA_, ZERO_) OVL_FWD(CUBA_, SUB_)
#undef OVL_FWD
    return 1;
}

template <typename T>
int backward_d(int kind, int reset, int surr, const void* gz, const void* hs, const void* x, const void* v0, const void* gvT, const void* giT,
               void* gx, void* gv0, void* gi0, double* ga, int64_t nt, int64_t n, int64_t ch, const double* pp, int detach, int nthreads) {
#define OVL_BWD(K, R) if (kind == K && reset == R) return backward_s<T, K, R>(surr, (const T*)gz, (const T*)hs, (const T*)x, (const T*)v0, (const T*)gvT, (const T*)giT, (T*)gx, (T*)gv0, (T*)gi0, ga, nt, n, ch, pp, detach, nthreads);
    OVL_BWD(IF_, ZERO_) OVL_BWD(IF_, SUB_) OVL_BWD(LIF_, ZERO_) OVL_BWD(LIF_, SUB_) OVL_BWD(CUBA_, ZERO_) OVL_BWD(CUBA_, SUB_)
#undef OVL_BWD
    return 1;
}

}  // namespace

extern "C" {

// dtype: 0 float32, 1 float64. Returns 0 on success, 1 on an unknown kind/reset/surrogate/dtype.
int ovl_neuron_forward(int dtype, int kind, int reset, const void* x, void* z, void* hs, void* v, void* i,
                       int64_t nt, int64_t n, int64_t ch, const double* pp, int nthreads) {
    if (dtype == 0) return forward_d<float>(kind, reset, x, z, hs, v, i, nt, n, ch, pp, nthreads);
    if (dtype == 1) return forward_d<double>(kind, reset, x, z, hs, v, i, nt, n, ch, pp, nthreads);
    return 1;
}

int ovl_neuron_backward(int dtype, int kind, int reset, int surr, const void* gz, const void* hs, const void* x, const void* v0,
                        const void* gvT, const void* giT, void* gx, void* gv0, void* gi0, double* ga,
                        int64_t nt, int64_t n, int64_t ch, const double* pp, int detach, int nthreads) {
    if (dtype == 0) return backward_d<float>(kind, reset, surr, gz, hs, x, v0, gvT, giT, gx, gv0, gi0, ga, nt, n, ch, pp, detach, nthreads);
    if (dtype == 1) return backward_d<double>(kind, reset, surr, gz, hs, x, v0, gvT, giT, gx, gv0, gi0, ga, nt, n, ch, pp, detach, nthreads);
    return 1;
}

}
"""
