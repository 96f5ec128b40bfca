"""The maths of capsule networks, written once: squash, dynamic routing, margin loss, masking, EM routing,
spread loss.

Shapes: ``B`` batch, ``I`` child (input) capsules, ``J`` parent (output) capsules, ``D`` parent dimension.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from overlooked.checks import broadcast_shape, is_count, is_real, outside, reads_values
from overlooked.errors import InputError

SQUASH_EPS = 1e-8  # inside the square root of squash: keeps the gradient finite at s = 0


def compute_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """The dtype routing and the capsule losses compute in: the promotion of the inputs' dtypes and float32,
    so bf16 and fp16 inputs compute in float32 (routing's sums over ~1000 children need its mantissa) and a
    float64 model stays float64.

    >>> compute_dtype(torch.zeros(1, dtype=torch.bfloat16), torch.zeros(1)), compute_dtype(torch.zeros(1, dtype=torch.float64))
    (torch.float32, torch.float64)
    """
    dtype = torch.float32
    for t in tensors:
        dtype = torch.promote_types(dtype, t.dtype)
    return dtype


def class_indices(target: torch.Tensor, what: str, want: str = "class indices [B]") -> torch.Tensor:
    """``target`` as int64 class indices, from any integer dtype; a ``ValueError`` naming ``what`` and ``want``
    for anything else (a float or bool tensor is not a tensor of class indices)."""
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        raise InputError(f"{what} takes {want}; got dtype {target.dtype} with shape {list(target.shape)}: class indices must be integers, convert with .long()")
    return target.long()


def check_class_range(indices: torch.Tensor, num_classes: int, what: str) -> None:
    """An ``InputError`` naming ``what`` when a class index lies outside ``0..num_classes - 1``."""
    found = outside(indices, 0, num_classes - 1)
    if found is not None:
        bad = found[0] if found[0] < 0 else found[1]
        raise InputError(f"{what} got class index {bad} but has {num_classes} classes (0..{num_classes - 1}): the model's num_classes must cover the data's labels")


def one_hot_targets(target: torch.Tensor, num_classes: int, batch: int, dtype: torch.dtype, what: str) -> torch.Tensor:
    """``[B, K]`` targets in ``dtype`` from class indices ``[B]`` (any integer dtype) or a multi-hot ``[B, K]``
    (any dtype); a ``ValueError`` naming ``what``, the accepted shapes and the one given otherwise."""
    want = f"class indices [B] (B={batch}) or a multi-hot [B, K] (K={num_classes})"
    if target.dim() == 1 and target.shape[0] == batch:
        indices = class_indices(target, what, want)
        check_class_range(indices, num_classes, what)
        return F.one_hot(indices, num_classes).to(dtype)
    if target.dim() == 2 and tuple(target.shape) == (batch, num_classes):
        if reads_values(target) and target.numel() and not bool(((target == 0) | (target == 1)).all()):
            # a 2 or a NaN made the absent-class term negative: the loss rewarded long capsules, silently
            raise InputError(f"{what} takes a multi-hot [B, K] of 0s and 1s (present classes); got values other than 0 and 1 (e.g. {target[(target != 0) & (target != 1)][:3].tolist()})")
        return target.to(dtype)
    raise InputError(f"{what} takes {want}; got shape {list(target.shape)} (dtype {target.dtype})")


def squash(s: torch.Tensor, dim: int = -1, eps: float = SQUASH_EPS) -> torch.Tensor:
    """Squash non-linearity (Sabour et al. 2017, eq. 1): ``v = |s|^2 / (1 + |s|^2) * s / |s|``.

    Short vectors shrink to almost zero length, long ones to just below 1; the direction is kept.

    >>> v = squash(torch.tensor([[3.0, 4.0]]))
    >>> round(float(v.norm()), 6)  # |s| = 5: 25 / 26
    0.961538
    """
    if s.dtype == torch.float16:  # |s|^2 overflows fp16 from |s| = 256 on (inf / inf: NaN); bf16 has float32's range
        return squash(s.float(), dim, eps).to(s.dtype)
    n2 = (s * s).sum(dim=dim, keepdim=True)
    eps = max(eps, torch.finfo(s.dtype).tiny) if s.is_floating_point() else eps
    if s.is_floating_point() and reads_values(s) and bool(torch.isinf(n2).any()) and bool(torch.isfinite(s).all()):
        # |s|^2 overflowed (|s| above ~1.8e19 in float32; NaN before): such a vector squashes to its unit direction
        t = s / s.abs().amax(dim=dim, keepdim=True).clamp_min(torch.finfo(s.dtype).tiny)
        return torch.where(torch.isinf(n2), t / t.norm(dim=dim, keepdim=True).clamp_min(torch.finfo(s.dtype).tiny), s * (n2 / (1.0 + n2)) / torch.sqrt(n2 + eps))
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
    if not is_count(iterations):
        raise ValueError(f"iterations must be a whole number >= 1, got {iterations!r}")
    if u_hat.dim() != 4:
        fix = ": add the batch dimension with u_hat.unsqueeze(0)" if u_hat.dim() == 3 else ""
        raise InputError(f"dynamic_routing takes predictions u_hat [B, I, J, D] (batch, child capsules, parent capsules, parent dimension); got {list(u_hat.shape)}{fix}")
    if not u_hat.is_floating_point():  # softmax of the logits failed on an integer dtype
        raise InputError(f"dynamic_routing takes floating-point predictions u_hat; got {u_hat.dtype}: convert with .float()")
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
        target: class indices ``[B]`` of any integer dtype, or a multi-hot ``[B, K]`` of any dtype (MultiMNIST
            has two digits present); anything else is a ``ValueError``.

    Returns:
        ``[B]``.

    >>> float(margin_loss(torch.tensor([[0.9, 0.1]]), torch.tensor([0])))
    0.0
    """
    T = one_hot_targets(target, lengths.shape[-1], lengths.shape[0], lengths.dtype, "margin_loss")  # [B, K]
    present = T * F.relu(m_plus - lengths) ** 2
    absent = lam * (1.0 - T) * F.relu(lengths - m_minus) ** 2
    return (present + absent).sum(-1)


def mask_capsules(v: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Keep only capsule ``index`` of each example (the decoder's input, §4.1): ``[B, J, D]`` -> ``[B, J*D]``
    with every other capsule zeroed. ``index`` is ``[B]`` (one capsule; any integer dtype) or a multi-hot ``[B, J]``."""
    keep = one_hot_targets(index, v.shape[1], v.shape[0], v.dtype, "mask_capsules")  # [B, J]
    return (v * keep.unsqueeze(-1)).flatten(1)


# --- EM routing (Hinton, Sabour, Frosst 2018, "Matrix capsules with EM routing", ICLR; OpenReview HJWLfGWRb) ---

EM_EPS_VAR = 1e-4  # added to every variance sigma_h^2: a parent that one child explains alone keeps a finite log-density
EM_EPS_MASS = 1e-8  # added to the routed mass sum_i R_ij before dividing by it: a parent no child routes to stays finite
EM_FINAL_INVERSE_TEMPERATURE = 0.01  # the scale of the lambda schedule (the paper's text gives no value): lambda
# reaches final * (1 - 0.95^T) at the last of T iterations (0.00143 for 3), approaching final only for large T. The
# schedule below is the one the IBM/Gritzman TensorFlow port quotes from the authors' OpenReview reply (not
# checked against the OpenReview page here). The yl-1993/Matrix-Capsules-EM-PyTorch port, whose 99.3 % MNIST
# result is the reference in paper_numbers.md, uses a constant lambda = 1e-3 instead (its source: "TODO: lambda
# scheduler"), so that comparison is not like for like in lambda.


def em_inverse_temperatures(iterations: int, final: float = EM_FINAL_INVERSE_TEMPERATURE) -> list[float]:
    """Inverse temperature lambda per iteration, rising towards ``final``: ``final * (1 - 0.95^(t+1))``, the schedule
    quoted from the authors' OpenReview reply by the IBM/Gritzman TensorFlow port (the paper's text says only
    that lambda increases over the iterations). The yl-1993 PyTorch port uses a constant 1e-3.

    >>> [round(x, 5) for x in em_inverse_temperatures(2, 1.0)]
    [0.05, 0.0975]
    """
    if not is_count(iterations) or not (is_real(final) and final > 0):
        raise ValueError(f"em_inverse_temperatures needs iterations a whole number >= 1 and final > 0, got iterations={iterations!r}, final={final!r}")
    return [final * (1.0 - 0.95 ** (t + 1)) for t in range(iterations)]


def em_routing(
    votes: torch.Tensor,
    activations: torch.Tensor,
    beta_u: torch.Tensor,
    beta_a: torch.Tensor,
    iterations: int = 3,
    inverse_temperatures: list[float] | None = None,
    eps_var: float = EM_EPS_VAR,
    eps_mass: float = EM_EPS_MASS,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """EM routing (Hinton et al. 2018, Procedure 1), with the E-step in log space.

    ``R_ij = 1/J``; repeat: M-step (``R_ij <- R_ij a_i``; ``mu_j = sum_i R_ij V_ij / sum_i R_ij``;
    ``sigma_j^2 = sum_i R_ij (V_ij - mu_j)^2 / sum_i R_ij``; ``cost_j = sum_h (beta_u + log sigma_j^h) sum_i R_ij``;
    ``a_j = sigmoid(lambda (beta_a - cost_j))``), then, except after the last M-step, E-step
    (``log R_ij = log a_j + log N(V_ij; mu_j, sigma_j^2) - logsumexp_j(...)``: each child's assignments sum to
    1 over its parents; no exponent of a density is ever taken outside a normalised softmax).

    Args:
        votes: ``V`` ``[N, I, J, H]`` (H = 16 for 4x4 poses).
        activations: child activations ``a_i`` ``[N, I]`` in [0, 1].
        beta_u: ``[J]`` (or broadcastable) cost offset per parent type.
        beta_a: ``[J]`` activation offset per parent type.
        iterations: EM iterations (>= 1).
        inverse_temperatures: lambda per iteration (default :func:`em_inverse_temperatures`).
        eps_var: see ``EM_EPS_VAR``.
        eps_mass: see ``EM_EPS_MASS``.

    Returns:
        ``(mu, a, R)``: parent poses ``[N, J, H]``, parent activations ``[N, J]`` and the last assignments
        ``[N, I, J]`` (rows sum to 1 over parents).
    """
    if not is_count(iterations):
        raise ValueError(f"iterations must be a whole number >= 1, got {iterations!r}")
    if inverse_temperatures is not None and not isinstance(inverse_temperatures, (list, tuple)):
        raise ValueError(f"inverse_temperatures is a list with one lambda per iteration ({iterations}), e.g. [{inverse_temperatures!r}] * {iterations}; got {inverse_temperatures!r}")
    lambdas = em_inverse_temperatures(iterations) if inverse_temperatures is None else list(inverse_temperatures)
    if len(lambdas) != iterations:
        raise ValueError(f"need one inverse temperature per iteration: {iterations}, got {len(lambdas)}")
    if not all(is_real(x) and x > 0 for x in lambdas):  # NaN gave NaN poses
        raise ValueError(f"inverse temperatures must be finite numbers > 0, got {lambdas}")
    if votes.dim() != 4:
        raise InputError(f"em_routing takes votes [N, I, J, H] (batch, child capsules, parent capsules, pose size 16); got {list(votes.shape)}")
    N, I, J, H = votes.shape
    if not votes.is_floating_point() or not activations.is_floating_point():
        raise InputError(f"em_routing takes floating-point votes and activations; got {votes.dtype} and {activations.dtype}: convert with .float()")
    betas = []
    for name, beta in (("beta_u", beta_u), ("beta_a", beta_a)):
        if isinstance(beta, (int, float)) and not isinstance(beta, bool):  # one value for every parent type
            beta = torch.tensor(float(beta), dtype=votes.dtype, device=votes.device)
        if not isinstance(beta, torch.Tensor) or broadcast_shape(beta.shape, (N, J)) != (N, J):
            got = list(beta.shape) if isinstance(beta, torch.Tensor) else type(beta).__name__
            raise InputError(f"em_routing takes {name} [J] = [{J}] (one per parent capsule type; a number, or anything that broadcasts to [N, J] = {[N, J]}); got {got}")
        betas.append(beta)
    beta_u, beta_a = betas
    if tuple(activations.shape) != (N, I):
        raise InputError(f"em_routing takes child activations [N, I] = {[N, I]} (batch and child capsules of the votes {list(votes.shape)}); got {list(activations.shape)}")
    found = outside(activations, 0.0, 1.0)  # NaN passes: the trainer names a non-finite loss
    if found is not None:
        raise InputError(
            f"em_routing takes child activations in [0, 1] (probabilities); got values from {found[0]:.3g} to "
            f"{found[1]:.3g}: pass sigmoid(logits), not the logits"
        )
    # [N*J, I, H]: each parent's votes one contiguous block, so the sums over children are row-vector GEMMs
    # (free when the caller built the votes parent-major and passed a transposed view, as ConvCaps does)
    V = votes.transpose(1, 2).contiguous().view(N * J, I, H)
    log_R = votes.new_full((N, I, J), -math.log(J))  # [N, I, J]
    for t in range(iterations):
        # M-step
        R = torch.exp(log_R) * activations.unsqueeze(-1)  # [N, I, J]
        mass = R.sum(1) + eps_mass  # [N, J]
        weights = (R / mass.unsqueeze(1)).transpose(1, 2).reshape(N * J, 1, I)  # R_ij / sum_i R_ij
        mu = torch.bmm(weights, V)  # [NJ, 1, H]
        dev2 = (V - mu).square()  # [NJ, I, H]
        var = torch.bmm(weights, dev2) + eps_var  # [NJ, 1, H]
        cost = ((beta_u.unsqueeze(-1) + 0.5 * torch.log(var.view(N, J, H))) * mass.unsqueeze(-1)).sum(-1)  # [N, J]
        logit = lambdas[t] * (beta_a - cost)  # [N, J]
        if t == iterations - 1:
            return mu.view(N, J, H), torch.sigmoid(logit), torch.exp(log_R)
        # E-step, in log space: log a_j + log p_ij, normalised over parents j
        maha = torch.bmm(var.reciprocal(), dev2.transpose(1, 2)).view(N, J, I)  # sum_h (V - mu)^2 / sigma^2
        log_norm = torch.log(2 * math.pi * var).view(N, J, H).sum(-1, keepdim=True)  # [N, J, 1]
        log_p = (-0.5 * (maha + log_norm)).transpose(1, 2)  # [N, I, J]
        log_ap = F.logsigmoid(logit).unsqueeze(1) + log_p
        log_R = log_ap - torch.logsumexp(log_ap, dim=2, keepdim=True)
    raise AssertionError("unreachable")


SPREAD_MARGIN_START, SPREAD_MARGIN_END = 0.2, 0.9  # the paper's margin schedule: from 0.2, raised linearly to 0.9 ([U] values)


def spread_margin(step: int, ramp_steps: int, start: float = SPREAD_MARGIN_START, end: float = SPREAD_MARGIN_END) -> float:
    """The spread loss margin at ``step``: linear from ``start`` to ``end`` over ``ramp_steps``, then ``end``.

    >>> [round(spread_margin(s, 100), 6) for s in (0, 50, 500)]
    [0.2, 0.55, 0.9]
    """
    return start + (end - start) * min(1.0, step / max(1, ramp_steps))


def spread_loss(activations: torch.Tensor, target: torch.Tensor, margin: float | torch.Tensor) -> torch.Tensor:
    """Spread loss (Hinton et al. 2018, eq. 3): ``L = sum_{i != t} max(0, m - (a_t - a_i))^2``, per example.

    Args:
        activations: class activations ``[B, K]``.
        target: class indices ``[B]``, any integer dtype.
        margin: ``m``: a number, or one per example (a tensor ``[B]``, or one that broadcasts to ``[B, 1]``).

    Returns:
        ``[B]``.

    >>> round(float(spread_loss(torch.tensor([[0.9, 0.5, 0.1]]), torch.tensor([0]), 0.5)), 6)  # (0.5-0.4)^2 + 0
    0.01
    """
    if isinstance(target, torch.Tensor) and target.dim() == 2 and tuple(target.shape) == tuple(activations.shape):  # one-hot, any dtype
        two_d = target.dim() == 2 and target.shape[0] == activations.shape[0]
        several = two_d and reads_values(target) and bool((target.sum(-1) > 1).any())
        hint = (": the spread loss (and EM routing's matrix capsules) take one class per example; for two digits at once (MultiMNIST) use capsnet_multimnist with the margin loss"
                if several else ": a one-hot [B, K] target becomes its indices with target.argmax(1)" if two_d else "")
        raise InputError(f"spread_loss takes class indices [B] (B={activations.shape[0]}); got shape {list(target.shape)}{hint}")
    target = class_indices(target, "spread_loss")
    if target.shape != activations.shape[:1]:
        raise InputError(f"spread_loss takes class indices [B] (B={activations.shape[0]}); got shape {list(target.shape)}: one class index per example")
    check_class_range(target, activations.shape[1], "spread_loss")
    if isinstance(margin, torch.Tensor) and margin.dim() == 1 and margin.numel() > 1:
        if margin.shape[0] != activations.shape[0]:
            raise InputError(f"spread_loss takes one margin per example ([B], B={activations.shape[0]}) or one for all; got shape {list(margin.shape)}")
        margin = margin[:, None]  # [B, 1]: each example's margin against its K activations
    if isinstance(margin, torch.Tensor) and broadcast_shape(tuple(margin.shape), (activations.shape[0], 1)) != (activations.shape[0], 1):
        raise InputError(f"spread_loss takes one margin per example ([B] or [B, 1], B={activations.shape[0]}) or one for all; got shape {list(margin.shape)}")
    a_t = activations.gather(1, target.unsqueeze(1))  # [B, 1]
    gaps = F.relu(margin - (a_t - activations)) ** 2  # [B, K]; the target's own term is m^2
    return gaps.sum(1) - F.one_hot(target, activations.shape[1]).to(gaps.dtype).mul(gaps).sum(1)
