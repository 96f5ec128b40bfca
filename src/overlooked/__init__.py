"""overlooked: memory networks, spiking networks and capsule networks, measured against what won.

From Python, as with timm::

    import overlooked
    overlooked.list_models(family="memory")          # ['kvmemnn', 'memn2n', 'memnn', ...]
    model = overlooked.create_model("memn2n", vocab_size=40, hops=3)

Training, evaluation, benchmarks and reports are in :mod:`overlooked.api` (what the CLI calls); each family's
building blocks in :mod:`overlooked.memory`, :mod:`overlooked.spiking` and :mod:`overlooked.capsules`.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def create_model(name: str, **kwargs: Any) -> Any:
    """Build the registered model ``name`` (the paper's configuration when ``kwargs`` is empty); an unknown
    name or keyword raises :class:`~overlooked.errors.RegistryError` listing what is allowed."""
    from overlooked.registry import MODELS

    return MODELS.create(name, **kwargs)


def list_models(pattern: str = "*", family: str | None = None) -> list[str]:
    """Registered model names matching the shell-style ``pattern`` (``"memn2n*"``), optionally of one
    ``family`` (memory, spiking, capsules, baseline), sorted.

    >>> "memn2n" in list_models(family="memory") and "memn2n" not in list_models(family="spiking")
    True
    """
    import fnmatch

    from overlooked.errors import RegistryError
    from overlooked.registry import MODELS

    families = sorted({MODELS.tags(n).get("family") for n in MODELS.names()} - {None})
    if family is not None and family not in families:
        raise RegistryError(f"no model family {family!r}; the families are {', '.join(families)}")
    return [n for n in MODELS.names() if fnmatch.fnmatch(n, pattern) and (family is None or MODELS.tags(n).get("family") == family)]


__all__ = ["__version__", "create_model", "list_models"]
