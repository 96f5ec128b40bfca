"""Shared fixtures: where the real data lives, and markers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _shared_data() -> Path | None:
    env = os.environ.get("OVERLOOKED_DATA")
    for cand in ([Path(env)] if env else []) + [REPO.parent / "shared" / "data"]:
        if cand.is_dir():
            return cand.resolve()
    return None


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real data folder (``$OVERLOOKED_DATA`` or ``../shared/data``); tests using it are marked ``data``.

    Without ``$OVERLOOKED_DATA`` and without ``../shared/data`` the data tests skip. When the variable names a
    folder that does not exist (``.ci/run`` always sets it), they fail: a mistyped path must not turn the
    real-data tests, the short bAbI training run among them, into silent skips.
    """
    env = os.environ.get("OVERLOOKED_DATA")
    if env and not Path(env).is_dir():
        pytest.fail(f"OVERLOOKED_DATA={env!r} is not a folder. Fix: point it at a folder laid out like ../shared/data, or unset it to skip the data tests.")
    found = _shared_data()
    if found is None:
        pytest.skip("real data not found: set OVERLOOKED_DATA to a folder laid out like ../shared/data")
    return found


def _assert_every_parameter_learns(model) -> None:
    """After a backward pass: every parameter has a finite, non-zero gradient."""
    import torch

    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"{name} got no gradient"


@pytest.fixture
def every_parameter_learns():
    """The shared registry-matrix check, as a function: ``every_parameter_learns(model)``."""
    return _assert_every_parameter_learns


@pytest.fixture
def register_for_test(monkeypatch):
    """``register_for_test(REGISTRY, name, builder, **tags)``: a name registered for this test only (the
    registries are process-wide; a test's own name left behind would enter every later registry-wide check)."""

    def register(registry, name, builder, **tags):
        registry.names()  # the library's names first, as a registration from user code does
        monkeypatch.setitem(registry._builders, name, builder)
        monkeypatch.setitem(registry._tags, name, dict(tags))
        return builder

    return register
