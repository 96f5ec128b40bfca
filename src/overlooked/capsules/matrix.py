"""Matrix capsules with EM routing (Hinton, Sabour, Frosst 2018): parameters here, maths in ``functional``.

A capsule is a 4x4 pose matrix ``M`` (stored flat, 16 numbers) and an activation ``a`` in [0, 1]. A child
votes for a parent with ``V_ij = M_i W_ij``; :func:`overlooked.capsules.functional.em_routing` turns votes
into parent poses and activations. Layouts: poses ``[N, H, W, C, 16]``, activations ``[N, H, W, C]``
(``C`` capsule types per position).

Speed: ``routing_backend="compiled"`` runs each layer's votes and EM routing through ``torch.compile`` (one
fused kernel per pass instead of a dozen memory-bound passes over the votes; the same maths, tested equal to
``"reference"``). On the 2-core dev CPU, `overlooked bench capsules` (2026-12-04) times the small model
(2 iterations, batch 128, the trainer's step) at 74 training images/s against 32 for the reference, after
about 15 s of compiling per layer and input shape. It needs a C++ compiler on CPU or Triton on CUDA.

Simplification, stated: ConvCaps routes each receptive field on its own (a child that falls in several
overlapping windows is normalised within each window), as the public ports do; the paper normalises a
child's assignments over every parent it reaches.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import _get_current_dispatch_mode

from overlooked.capsules import functional as CF
from overlooked.capsules.fused import autocast_off
from overlooked.capsules.modules import check_image
from overlooked.checks import check_sizes, in_torch_func, is_count
from overlooked.errors import InputError

POSE = 16  # 4x4 pose matrix, flattened
ROUTING_BACKENDS = ("reference", "compiled")
COMPILE_RECOMPILE_LIMIT = 64  # static graphs kept for the compiled backend (shapes x layers x grad modes)


def _votes(poses: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """``poses`` ``[N, I, 16]``, ``W`` ``[I, J, 4, 4]`` -> votes ``V_ij = M_i W_ij`` ``[N, I, J, 16]``, stored
    parent-major (a transposed view of a contiguous ``[N, J, I, 16]``, the layout EM routing reads)."""
    N, I, _ = poses.shape
    J = W.shape[1]
    # one [N*4, 4] @ [4, J*4] product per child i (a broadcast matmul of 4x4 blocks is far slower on CPU)
    M = poses.view(N, I, 4, 4).permute(1, 0, 2, 3).reshape(I, N * 4, 4)  # rows (n, a), cols b
    Wi = W.permute(0, 2, 1, 3).reshape(I, 4, J * 4)  # rows b, cols (j, c)
    V = torch.bmm(M, Wi).view(I, N, 4, J, 4)  # V[i, n, a, j, c] = sum_b M[n,i,a,b] W[i,j,b,c]
    return V.permute(1, 3, 0, 2, 4).reshape(N, J, I, POSE).transpose(1, 2)


def votes_and_route(
    poses: torch.Tensor,
    W: torch.Tensor,
    activations: torch.Tensor,
    beta_u: torch.Tensor,
    beta_a: torch.Tensor,
    iterations: int,
    inverse_temperatures: list[float] | None = None,
    offset: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Votes ``V_ij = M_i W_ij`` (plus ``offset`` ``[I, 16]``, coordinate addition, when given), then
    :func:`overlooked.capsules.functional.em_routing`: ``poses`` ``[N, I, 16]``, ``W`` ``[I, J, 4, 4]``,
    ``activations`` ``[N, I]`` -> ``(mu [N, J, 16], a [N, J], R [N, I, J])``."""
    votes = _votes(poses, W)
    if offset is not None:
        votes = votes + offset.view(1, offset.shape[0], 1, POSE)
    return CF.em_routing(votes, activations, beta_u, beta_a, iterations, inverse_temperatures)


_compiled_route = None


def _route(backend: str):
    """:func:`votes_and_route` (``"reference"``) or its ``torch.compile`` (``"compiled"``, built once), run in
    :func:`~overlooked.capsules.functional.compute_dtype` with autocast off, as dynamic routing is: the E-step's
    log-sum-exp and variances over hundreds of children stay float32 for bf16 models and under autocast, and a
    float64 model routes in float64 (float32 inputs pass through unchanged)."""
    return _in_compute_dtype(votes_and_route if backend == "reference" else _compiled())


def _in_compute_dtype(route: Any) -> Any:
    def call(poses, W, activations, beta_u, beta_a, iterations, inverse_temperatures=None, offset=None):
        dtype = CF.compute_dtype(poses, W)

        def cast(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(dtype)

        with autocast_off(poses):
            return route(cast(poses), cast(W), cast(activations), cast(beta_u), cast(beta_a), iterations, inverse_temperatures, cast(offset))

    return call


def _compiled() -> Any:
    """:func:`votes_and_route` through ``torch.compile``, built once."""
    global _compiled_route
    if _compiled_route is None:
        compiled = torch.compile(votes_and_route, dynamic=False, fullgraph=True)  # a graph break is an error, never a silent eager fallback

        def run(*args, **kwargs):
            tensors = [a for a in args if isinstance(a, torch.Tensor)]
            if _get_current_dispatch_mode() is not None or any(t.is_meta or in_torch_func(t) for t in tensors):
                # FlopCounterMode sees only eager ops; meta tensors and torch.func transforms do not compile: the same
                # maths eagerly
                return votes_and_route(*args, **kwargs)
            try:
                # one static graph per layer, input shape and grad mode (three layers, train / last / eval batches,
                # with and without gradients pass the default limit of 8); each takes seconds to compile
                with torch._dynamo.config.patch(recompile_limit=COMPILE_RECOMPILE_LIMIT):
                    return compiled(*args, **kwargs)
            except _compile_failures() as err:  # inductor's failures (no compiler, no Triton) surface at the first call
                raise RuntimeError(
                    "routing_backend='compiled' could not compile EM routing with torch.compile (it needs a C++ "
                    "compiler on CPU, Triton on CUDA); use routing_backend='reference' (the same maths, slower)"
                ) from err

        _compiled_route = run
    return _compiled_route


def _compile_failures() -> tuple[type[BaseException], ...]:
    """The exception types a failed ``torch.compile`` backend raises (InductorError is newer than torch 2.5)."""
    from torch._dynamo.exc import BackendCompilerFailed

    try:
        from torch._inductor.exc import InductorError
    except ImportError:
        return (BackendCompilerFailed,)
    return (BackendCompilerFailed, InductorError)


def _check_iterations(iterations: int, inverse_temperatures: list[float] | None) -> int:
    """EM iterations as a whole number >= 1, with one inverse temperature each when a schedule is given."""
    if not is_count(iterations):
        raise ValueError(f"iterations (EM routing iterations) must be a whole number >= 1, got {iterations!r}")
    if inverse_temperatures is not None and len(inverse_temperatures) != iterations:
        raise ValueError(f"inverse_temperatures needs one value per iteration: {iterations}, got {len(inverse_temperatures)}")
    return int(iterations)


def check_capsule_grid(layer: nn.Module, pose: torch.Tensor, act: torch.Tensor, types: int, min_side: int = 1) -> None:
    """``pose`` ``[N, H, W, types, 16]`` and ``act`` ``[N, H, W, types]`` with ``H, W >= min_side``, else an
    :class:`~overlooked.errors.InputError` naming the layer, the shapes and what they must be."""
    name = type(layer).__name__
    ok = pose.dim() == 5 and tuple(pose.shape[3:]) == (types, POSE) and tuple(act.shape) == tuple(pose.shape[:4])
    if not ok:
        raise InputError(
            f"{name} takes poses [N, H, W, {types}, {POSE}] ({types} capsule types, 4x4 poses flattened to {POSE}) and "
            f"activations [N, H, W, {types}]; got poses {list(pose.shape)} and activations {list(act.shape)}"
            + (": flatten the 4x4 poses with pose.flatten(-2)" if pose.dim() == 6 else "")
        )
    if min(pose.shape[1], pose.shape[2]) < min_side:
        raise InputError(f"{name} with kernel {min_side} needs a capsule grid of at least {min_side}x{min_side}; got {pose.shape[1]}x{pose.shape[2]}")


def _check_backend(backend: str) -> str:
    if backend not in ROUTING_BACKENDS:
        raise ValueError(f"routing_backend must be one of {ROUTING_BACKENDS}, got {backend!r}")
    return backend


class PrimaryMatCaps(nn.Module):
    """A 1x1 convolution to ``types`` capsules per position: 16 pose numbers and a sigmoid activation each."""

    def __init__(self, in_channels: int, types: int):
        super().__init__()
        self.types = types
        self.pose = nn.Conv2d(in_channels, types * POSE, 1)
        self.activation = nn.Conv2d(in_channels, types, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[N, C, H, W]`` -> poses ``[N, H, W, types, 16]``, activations ``[N, H, W, types]``."""
        N, _, H, W = x.shape
        pose = self.pose(x).permute(0, 2, 3, 1).reshape(N, H, W, self.types, POSE)
        act = torch.sigmoid(self.activation(x)).permute(0, 2, 3, 1)
        return pose, act


class ConvCaps(nn.Module):
    """Convolutional capsules: each ``kernel x kernel`` window of ``in_types`` children votes for
    ``out_types`` parents through transforms ``W`` shared across positions, then EM routing.

    Args:
        in_types, out_types: capsule types in and out.
        kernel_size, stride: the window.
        iterations: EM iterations.
        inverse_temperatures: see :func:`overlooked.capsules.functional.em_routing`.
        routing_backend: ``"reference"`` or ``"compiled"`` (``torch.compile`` of votes + routing; speed only).
    """

    def __init__(self, in_types: int, out_types: int, kernel_size: int = 3, stride: int = 1, iterations: int = 3, inverse_temperatures: list[float] | None = None, routing_backend: str = "reference"):
        super().__init__()
        kernel_size, stride, in_types, out_types = check_sizes("ConvCaps", kernel_size=kernel_size, stride=stride, in_types=in_types, out_types=out_types)
        self.kernel_size, self.stride, self.iterations, self.inverse_temperatures = kernel_size, stride, _check_iterations(iterations, inverse_temperatures), inverse_temperatures
        self.routing_backend = _check_backend(routing_backend)
        self.W = nn.Parameter(torch.randn(kernel_size * kernel_size * in_types, out_types, 4, 4))  # N(0, 1), ours
        self.beta_u = nn.Parameter(torch.zeros(out_types))
        self.beta_a = nn.Parameter(torch.zeros(out_types))

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, out_types={self.W.shape[1]}, iterations={self.iterations}, routing_backend={self.routing_backend!r}"

    def forward(self, pose: torch.Tensor, act: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[N, H, W, C, 16]``, ``[N, H, W, C]`` -> ``[N, H', W', out_types, 16]``, ``[N, H', W', out_types]``."""
        k, s = self.kernel_size, self.stride
        check_capsule_grid(self, pose, act, self.W.shape[0] // (k * k), min_side=k)
        N, _, _, C, _ = pose.shape
        p = pose.unfold(1, k, s).unfold(2, k, s)  # [N, H', W', C, 16, k, k]
        a = act.unfold(1, k, s).unfold(2, k, s)  # [N, H', W', C, k, k]
        Ho, Wo = p.shape[1], p.shape[2]
        p = p.permute(0, 1, 2, 5, 6, 3, 4).reshape(N * Ho * Wo, k * k * C, POSE)  # children of each window
        a = a.permute(0, 1, 2, 4, 5, 3).reshape(N * Ho * Wo, k * k * C)
        mu, a_out, _ = _route(self.routing_backend)(p, self.W, a, self.beta_u, self.beta_a, self.iterations, self.inverse_temperatures)
        J = self.W.shape[1]
        return mu.view(N, Ho, Wo, J, POSE), a_out.view(N, Ho, Wo, J)


class ClassCaps(nn.Module):
    """Class capsules: every child capsule of the last grid votes for each class, with one transform per
    (child type, class) shared across positions, and coordinate addition (Hinton et al. 2018, §3): the child's
    (row, column) on the last capsule grid, as the centre of its grid cell scaled to (0, 1), ``(i + 0.5) / H``,
    is added to the first two elements of the right-hand column of its vote. The paper speaks of the
    receptive field's centre; the scaled grid position is the ports' reading (on 28x28 input the receptive-field
    centres of the 3x3 grid lie at 0.30 / 0.45 / 0.59 of the image, the grid positions at 0.17 / 0.50 / 0.83)."""

    def __init__(self, in_types: int, num_classes: int = 10, iterations: int = 3, coordinate_addition: bool = True, inverse_temperatures: list[float] | None = None, routing_backend: str = "reference"):
        super().__init__()
        self.iterations, self.coordinate_addition, self.inverse_temperatures = _check_iterations(iterations, inverse_temperatures), coordinate_addition, inverse_temperatures
        self.routing_backend = _check_backend(routing_backend)
        self.W = nn.Parameter(torch.randn(in_types, num_classes, 4, 4))  # N(0, 1), ours
        self.beta_u = nn.Parameter(torch.zeros(num_classes))
        self.beta_a = nn.Parameter(torch.zeros(num_classes))

    def extra_repr(self) -> str:
        return f"num_classes={self.W.shape[1]}, iterations={self.iterations}, coordinate_addition={self.coordinate_addition}, routing_backend={self.routing_backend!r}"

    def forward(self, pose: torch.Tensor, act: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``[N, H, W, C, 16]``, ``[N, H, W, C]`` -> class poses ``[N, K, 16]``, activations ``[N, K]``,
        assignments ``[N, H*W*C, K]``."""
        check_capsule_grid(self, pose, act, self.W.shape[0])
        N, H, W, C, _ = pose.shape
        offset = None
        if self.coordinate_addition:
            rows = (torch.arange(H, dtype=pose.dtype, device=pose.device) + 0.5) / H  # centres, scaled to (0, 1)
            cols = (torch.arange(W, dtype=pose.dtype, device=pose.device) + 0.5) / W
            offset = torch.zeros(H, W, C, POSE, dtype=pose.dtype, device=pose.device)
            offset[..., 3] = rows.view(H, 1, 1)  # element (0, 3) of the 4x4 vote
            offset[..., 7] = cols.view(1, W, 1)  # element (1, 3)
            offset = offset.view(H * W * C, POSE)
        route = _route(self.routing_backend)
        mu, a_out, R = route(pose.reshape(N, H * W * C, POSE), self.W.repeat(H * W, 1, 1, 1), act.reshape(N, H * W * C), self.beta_u, self.beta_a, self.iterations, self.inverse_temperatures, offset)
        return mu, a_out, R


class MatrixCapsNet(nn.Module):
    """Hinton et al. 2018's network: ReLU conv 5x5/2 with ``A`` channels, PrimaryMatCaps ``B`` types,
    ConvCaps ``C`` types (3x3/2), ConvCaps ``D`` types (3x3/1), ClassCaps with coordinate addition.

    28x28 MNIST: 28 -> 12 -> 12 -> 5 -> 3. ``routing_backend`` (``"reference"`` / ``"compiled"``) is passed to
    every routing layer. The spread loss margin is a buffer a callback sets through
    :meth:`set_spread_margin`, and the forward pass reports it, so the objective reads it from the output.
    A setting, not a weight: ``ema_follows`` names it so that ``train.ema_decay``'s average copies it.
    """

    ema_follows = ("spread_margin",)

    def __init__(self, A: int = 64, B: int = 8, C: int = 16, D: int = 16, num_classes: int = 10, iterations: int = 3, in_channels: int = 1, coordinate_addition: bool = True, routing_backend: str = "reference"):
        super().__init__()
        A, B, C, D, num_classes, in_channels = check_sizes("matrix capsules", A=A, B=B, C=C, D=D, num_classes=num_classes, in_channels=in_channels)
        self.in_channels = in_channels
        self.conv1 = nn.Conv2d(in_channels, A, 5, stride=2)
        self.primary = PrimaryMatCaps(A, B)
        self.caps1 = ConvCaps(B, C, 3, 2, iterations, routing_backend=routing_backend)
        self.caps2 = ConvCaps(C, D, 3, 1, iterations, routing_backend=routing_backend)
        self.classes = ClassCaps(D, num_classes, iterations, coordinate_addition, routing_backend=routing_backend)
        self.register_buffer("spread_margin", torch.tensor(CF.SPREAD_MARGIN_START))

    @property
    def min_size(self) -> int:
        """The smallest input side that leaves every layer at least one position (17 with the paper's layers:
        the last ConvCaps needs 3, the first 7, conv1 17)."""
        need = 1
        for k, s in ((self.caps2.kernel_size, self.caps2.stride), (self.caps1.kernel_size, self.caps1.stride), (self.conv1.kernel_size[0], self.conv1.stride[0])):
            need = k + s * (need - 1)  # a valid k x k window at stride s: out = (in - k) // s + 1
        return need

    def set_spread_margin(self, margin: float) -> None:
        """Set the spread loss margin the forward pass reports (the margin schedule's hook)."""
        self.spread_margin.fill_(margin)

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """``[N, C, H, W]`` (H, W >= :attr:`min_size`) -> ``{"logits": class activations [N, K], "poses": [N, K, 16],
        "assignments": the class layer's routing assignments R [N, I, K] (rows sum to 1 over classes),
        "spread_margin": []}``."""
        check_image(image, type(self).__name__, self.in_channels, min_size=self.min_size, device=self.conv1.weight.device, dtype=self.conv1.weight.dtype)
        x = torch.relu(self.conv1(image))  # [N, A, 12, 12]
        pose, act = self.primary(x)
        pose, act = self.caps1(pose, act)
        pose, act = self.caps2(pose, act)
        mu, a, R = self.classes(pose, act)
        return {"logits": a, "poses": mu, "assignments": R, "spread_margin": self.spread_margin}
