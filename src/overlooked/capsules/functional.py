"""The maths of capsule networks, written once: squash, dynamic routing, margin loss, masking.

Shapes: ``B`` batch, ``I`` child (input) capsules, ``J`` parent (output) capsules, ``D`` parent dimension.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

SQUASH_EPS = 1e-8  # inside the square root of squash: keeps the gradient finite at s = 0


def squash(s: torch.Tensor, dim: int = -1, eps: float = SQUASH_EPS) -> torch.Tensor:
    """Squash non-linearity (Sabour et al. 2017, eq. 1): ``v = |s|^2 / (1 + |s|^2) * s / |s|``.

    Short vectors shrink to almost zero length, long ones to just below 1; the direction is kept.

    >>> v = squash(torch.tensor([[3.0, 4.0]]))
    >>> round(float(v.norm()), 6)  # |s| = 5: 25 / 26
    0.961538
    """
    n2 = (s * s).sum(dim=dim, keepdim=True)
    return s * (n2 / (1.0 + n2)) / torch.sqrt(n2 + eps)


def dynamic_routing(u_hat: torch.Tensor, iterations: int = 3, detach_intermediate: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Routing by agreement (Sabour et al. 2017, Procedure 1).

    ``b_ij = 0``; repeat ``iterations`` times: ``c_i = softmax_j(b_i)`` (each child's couplings sum to 1 over
    its parents), ``s_j = sum_i c_ij u_hat_{j|i}``, ``v_j = squash(s_j)``, and except after the last
    iteration ``b_ij += u_hat_{j|i} . v_j``.

    Args:
        u_hat: predictions ``[B, I, J, D]`` of every child for every parent.
        iterations: routing iterations r (3 in the paper).
        detach_intermediate: use ``u_hat.detach()`` in the non-final iterations (a common speed-up that
            changes the gradient; off by default, and results say when it was on).

    Returns:
        ``(v, c)``: parent capsules ``[B, J, D]`` and the final couplings ``[B, I, J]``.
    """
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    B, I, J, _ = u_hat.shape
    b = torch.zeros(B, I, J, dtype=u_hat.dtype, device=u_hat.device)  # [B, I, J]
    for r in range(iterations):
        last = r == iterations - 1
        u = u_hat if (last or not detach_intermediate) else u_hat.detach()
        c = torch.softmax(b, dim=2)  # over parents j
        s = torch.einsum("bij,bijd->bjd", c, u)  # [B, J, D]
        v = squash(s)  # [B, J, D]
        if not last:
            b = b + torch.einsum("bijd,bjd->bij", u, v)
    return v, c


def margin_loss(lengths: torch.Tensor, target: torch.Tensor, m_plus: float = 0.9, m_minus: float = 0.1, lam: float = 0.5) -> torch.Tensor:
    """Margin loss (Sabour et al. 2017, eq. 4), summed over classes, one value per example.

    ``L_k = T_k max(0, m+ - |v_k|)^2 + lambda (1 - T_k) max(0, |v_k| - m-)^2``.

    Args:
        lengths: capsule lengths ``[B, K]``.
        target: class indices ``[B]`` or a multi-hot ``[B, K]`` (MultiMNIST has two digits present).

    Returns:
        ``[B]``.

    >>> float(margin_loss(torch.tensor([[0.9, 0.1]]), torch.tensor([0])))
    0.0
    """
    T = F.one_hot(target, lengths.shape[-1]).to(lengths.dtype) if target.dim() == 1 else target.to(lengths.dtype)
    present = T * F.relu(m_plus - lengths) ** 2
    absent = lam * (1.0 - T) * F.relu(lengths - m_minus) ** 2
    return (present + absent).sum(-1)


def mask_capsules(v: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Keep only capsule ``index`` of each example (the decoder's input, §4.1): ``[B, J, D]`` -> ``[B, J*D]``
    with every other capsule zeroed. ``index`` is ``[B]`` (one capsule) or a multi-hot ``[B, J]``."""
    keep = F.one_hot(index, v.shape[1]).to(v.dtype) if index.dim() == 1 else index.to(v.dtype)
    return (v * keep.unsqueeze(-1)).flatten(1)
