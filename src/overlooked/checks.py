"""Argument checks that several families' builders share."""

from __future__ import annotations

import numbers


def check_sizes(name: str, **sizes: int | None) -> None:
    """Refuse sizes that are not integers >= 1 (``hops=0``, ``embed_dim=2.5``, ``True``) when a model is built,
    not at its first step; any integral type passes (``numpy.int64`` too), None means "not given".

    >>> check_sizes("memn2n", embed_dim=20, hops=0)
    Traceback (most recent call last):
    ...
    ValueError: memn2n: hops must be an int >= 1, got 0
    """
    bad = [
        f"{k} must be an int >= 1, got {v!r}"
        for k, v in sizes.items()
        if v is not None and (isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1)
    ]
    if bad:
        raise ValueError(f"{name}: " + "; ".join(bad))
