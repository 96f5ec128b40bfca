"""The fused CPU path of a routing capsule layer: predictions ``u_hat = W u`` and dynamic routing in one
autograd function, routed a few examples at a time so that the routing passes over ``u_hat`` hit the cache.

The maths is :func:`overlooked.capsules.functional.dynamic_routing` applied to
:meth:`overlooked.capsules.modules.RoutingCaps.predictions`, unchanged; ``tests/capsules/test_fused.py``
proves the outputs and every gradient equal that reference. What differs is the schedule:

- ``u_hat`` for the whole batch is 128 x 1152 x 10 x 16 floats (94 MB) on MNIST. The reference reads it
  five times in the forward pass (with layout copies inside ``einsum``), and autograd writes a gradient of
  the same size for each of its five uses and sums them. Here ``u_hat`` is predicted for the whole batch by
  one batched matmul (small-matrix BLAS calls are costly, so they are not chunked), then routed ``chunk``
  examples at a time (about 6 MB at 8), so the five passes hit the cache; the backward pass collects the
  gradient of all five uses in one batched matmul per chunk and writes it once.
- Inside a chunk ``u_hat`` is laid out ``[n, J, I, D]`` so that every routing step is a ``bmm`` over the
  ``n * J`` (example, parent) pairs with no copy: weighted sums over children ``[1, I] @ [I, D]``,
  agreements ``[I, D] @ [D, 1]``.
- Routing always runs in float32, also under bf16 autocast (the convolutions are where bf16 pays).

Shapes: ``n`` examples in a chunk, ``I`` children, ``K`` child dimension, ``J`` parents, ``D`` parent dimension.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from overlooked.capsules.functional import SQUASH_EPS, compute_dtype
from overlooked.checks import is_count
from overlooked.errors import InputError

DEFAULT_CHUNK = 8  # examples per chunk: 8 x 1152 x 160 floats = 5.9 MB of u_hat, well inside a 32 MB L3


def _predict(u: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """``u`` ``[B, I, K]``, ``W`` ``[I, K, J*D]`` -> ``u_hat`` ``[I, B, J*D]``: one ``[B, K] @ [K, J*D]`` per child."""
    return torch.bmm(u.transpose(0, 1), W)  # [I, B, J*D]


def _chunk_into(out: torch.Tensor, uh_all: torch.Tensor, lo: int, hi: int, J: int) -> torch.Tensor:
    """Copy examples ``lo:hi`` of ``u_hat`` ``[I, B, J*D]`` into ``out`` ``[n*J, I, D]`` (one copy): a contiguous
    ``[I, D]`` block per (example, parent), so each routing step is a single ``bmm``."""
    I, n = uh_all.shape[0], hi - lo
    out.view(n, J, I, -1).copy_(uh_all[:, lo:hi].view(I, n, J, -1).permute(1, 2, 0, 3))
    return out


def _agree(uh: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``uh`` ``[P, I, D]``, ``v`` ``[P, D]`` -> ``[P, I]`` dot products, as a row vector times ``uh^T``
    (much faster on CPU BLAS than the equal matrix-vector product ``uh @ v``)."""
    return torch.bmm(v.unsqueeze(1), uh.transpose(1, 2)).squeeze(1)


def _squash_parts(s: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``v = f(|s|^2) s`` with ``f(q) = q / ((1 + q) sqrt(q + eps))``: returns ``(v, f, q)``."""
    q = (s * s).sum(-1, keepdim=True)  # [.., 1]
    f = q / ((1.0 + q) * torch.sqrt(q + eps))
    return s * f, f, q


def _squash_backward(s: torch.Tensor, gv: torch.Tensor, eps: float) -> torch.Tensor:
    """Gradient of :func:`overlooked.capsules.functional.squash` (written as ``s * (q / (1 + q)) / sqrt(q + eps)``):
    ``g_s = f g_v + 2 f'(q) (s . g_v) s``, with ``f'(q) = 1 / ((1 + q) sqrt(q + eps)) - f / (1 + q) - f / (2 (q + eps))``
    (finite at ``q = 0``)."""
    _, f, q = _squash_parts(s, eps)
    root = torch.sqrt(q + eps)
    df = 1.0 / ((1.0 + q) * root) - f / (1.0 + q) - 0.5 * f / (q + eps)
    return f * gv + 2.0 * df * (s * gv).sum(-1, keepdim=True) * s


class FusedRouting(torch.autograd.Function):
    """``(u [B, I, K], W [I, K, J*D]) -> (v [B, J, D], c [B, I, J])``: predictions, then dynamic routing."""

    @staticmethod
    def forward(ctx, u, W, J: int, iterations: int, detach_intermediate: bool, chunk: int, eps: float):
        B, I, _ = u.shape
        D = W.shape[-1] // J
        R = iterations
        uh_all = _predict(u, W)  # [I, B, J*D]: one large batched matmul for the whole batch
        uh_rows = u.new_empty(B * J, I, D)  # u_hat re-laid out chunk by chunk, kept for the backward pass
        vs = u.new_empty(R, B, J, D)  # v_r of every iteration
        ss = u.new_empty(R, B, J, D)  # s_r
        cs = u.new_empty(R, B, J, I)  # c_r, stored [B, J, I] (the bmm layout)
        for lo in range(0, B, chunk):
            hi = min(lo + chunk, B)
            n = hi - lo
            uh = _chunk_into(uh_rows[lo * J : hi * J], uh_all, lo, hi, J)  # [nJ, I, D], cache-sized
            logits = u.new_zeros(n * J, I)  # b_ij, [nJ, I]
            for r in range(R):
                c = torch.softmax(logits.view(n, J, I), dim=1)  # over parents j, [n, J, I]
                cs[r, lo:hi] = c
                s = torch.bmm(c.view(n * J, 1, I), uh).view(n, J, D)  # sum_i c_ij u_hat_j|i
                v, _, _ = _squash_parts(s, eps)
                ss[r, lo:hi], vs[r, lo:hi] = s, v
                if r < R - 1:
                    logits = logits + _agree(uh, v.view(n * J, D))  # b_ij += u_hat_j|i . v_j
        ctx.save_for_backward(u, W, uh_rows, cs, ss, vs)
        ctx.dims = (J, R, detach_intermediate, chunk, eps)
        return vs[-1].clone(), cs[-1].transpose(1, 2).contiguous()

    @staticmethod
    def backward(ctx, g_v, g_c):
        # the engine runs this under the caller's autocast: routing's backward, like its forward, stays float32
        with autocast_off(ctx.saved_tensors[0]):
            return FusedRouting._backward(ctx, g_v, g_c)

    @staticmethod
    def _backward(ctx, g_v, g_c):
        if torch.is_grad_enabled():  # create_graph=True: the hand-written backward has no derivative of its own
            raise RuntimeError(
                "the fused capsule routing has no second derivative (its backward is hand-written); for a gradient "
                "penalty or any create_graph=True use backend='reference' (the same maths in plain PyTorch)"
            )
        u, W, uh_rows, cs, ss, vs = ctx.saved_tensors
        J, R, detach, chunk, eps = ctx.dims
        B, I, K = u.shape
        D = W.shape[-1] // J
        if g_v is None:
            g_v = torch.zeros_like(vs[-1])
        g_all = u.new_empty(I, B, J * D)  # d loss / d u_hat, [I, B, J*D]
        for lo in range(0, B, chunk):
            hi = min(lo + chunk, B)
            n = hi - lo
            uh = uh_rows[lo * J : hi * J]  # [nJ, I, D]
            # g_uhat = sum over the uses of u_hat of c_r (x) g_s_r and g_a_r (x) v_r: one [nJ, I, m] @ [nJ, m, D]
            left, right = [], []
            gv = g_v[lo:hi]  # [n, J, D]
            g_logits = None  # gradient reaching the logits b_r from later iterations, [n, J, I]
            for r in range(R - 1, -1, -1):
                c = cs[r, lo:hi]  # [n, J, I]
                gs = _squash_backward(ss[r, lo:hi], gv, eps)  # [n, J, D]
                left.append(c.reshape(n * J, I, 1))
                right.append(gs.reshape(n * J, 1, D))
                if detach:
                    break  # earlier iterations saw u_hat.detach(): nothing else reaches u_hat
                gc = _agree(uh, gs.view(n * J, D)).view(n, J, I)  # d s_r / d c_r
                if r == R - 1 and g_c is not None:
                    gc = gc + g_c[lo:hi].transpose(1, 2)
                gb = c * (gc - (c * gc).sum(1, keepdim=True))  # softmax over j, backward
                g_logits = gb if g_logits is None else g_logits + gb
                if r == 0:
                    break
                # b_r = b_{r-1} + u_hat . v_{r-1}: the agreement of iteration r-1 receives g_logits
                left.append(g_logits.reshape(n * J, I, 1))
                right.append(vs[r - 1, lo:hi].reshape(n * J, 1, D))
                gv = torch.bmm(g_logits.view(n * J, 1, I), uh).view(n, J, D)
            g_uh = torch.bmm(torch.cat(left, 2), torch.cat(right, 1))  # [nJ, I, D]
            g_all[:, lo:hi].view(I, n, J, D).copy_(g_uh.view(n, J, I, D).permute(2, 0, 1, 3))
        grad_u = torch.bmm(g_all, W.transpose(1, 2)).transpose(0, 1) if ctx.needs_input_grad[0] else None  # [B, I, K]
        grad_W = torch.bmm(u.transpose(0, 1).transpose(1, 2), g_all) if ctx.needs_input_grad[1] else None  # [I, K, J*D]
        return grad_u, grad_W, None, None, None, None, None


def check_routing_inputs(u: torch.Tensor, W: torch.Tensor, out_caps: int, what: str = "fused_routing") -> None:
    """Raise a ``ValueError`` unless ``u`` is ``[B, I, K]`` and ``W`` ``[I, K, J*D]`` with ``J = out_caps``,
    naming the expected layout and what was given (shape checks only, no device sync)."""
    want = f"child capsules u [B, I, K] (batch, child capsules, child dimension) and weights W [I, K, J*D] (J=out_caps={out_caps})"
    if u.dim() != 3 or W.dim() != 3 or W.shape[-1] % out_caps != 0 or tuple(u.shape[1:]) != tuple(W.shape[:2]):
        fix = ": add the batch dimension with u.unsqueeze(0)" if u.dim() == 2 and tuple(u.shape) == tuple(W.shape[:2]) else ""
        raise InputError(f"{what} takes {want}; got u {list(u.shape)} and W {list(W.shape)}{fix}")


def check_chunk(chunk: int) -> int:
    """``chunk``, the examples routed at a time, as a whole number >= 1."""
    if not is_count(chunk):
        raise ValueError(f"chunk (examples routed at a time) must be a whole number >= 1, got {chunk!r}")
    return int(chunk)


def autocast_off(t: torch.Tensor) -> Any:
    """A context that turns autocast off for ``t``'s device type (nothing to turn off on e.g. the meta device)."""
    return torch.autocast(device_type=t.device.type, enabled=False) if t.device.type in ("cpu", "cuda") else contextlib.nullcontext()


def fused_routing(u: torch.Tensor, W: torch.Tensor, out_caps: int, iterations: int = 3, detach_intermediate: bool = False, chunk: int = DEFAULT_CHUNK, eps: float = SQUASH_EPS) -> tuple[torch.Tensor, torch.Tensor]:
    """Predictions and dynamic routing of a :class:`~overlooked.capsules.modules.RoutingCaps` layer, fused.

    Args:
        u: child capsules ``[B, I, K]``.
        W: the layer's weights ``[I, K, J*D]``.
        out_caps: ``J``.
        iterations: routing iterations (>= 1).
        detach_intermediate: as in :func:`overlooked.capsules.functional.dynamic_routing`.
        chunk: examples routed at a time (a speed knob only; results do not depend on it).
        eps: squash epsilon.

    Returns:
        ``(v, c)``: parents ``[B, J, D]`` and final couplings ``[B, I, J]``, at least float32 (routing runs
        in float32 also under autocast).
    """
    if not is_count(iterations):
        raise ValueError(f"iterations must be a whole number >= 1, got {iterations!r}")
    check_chunk(chunk)
    check_routing_inputs(u, W, out_caps)
    with autocast_off(u):
        dtype = compute_dtype(u, W)  # bf16 -> f32; f64 stays
        return FusedRouting.apply(u.to(dtype).contiguous(), W.to(dtype), out_caps, iterations, detach_intermediate, chunk, eps)
