"""Registries: names for models, datasets, encoders, objectives and surrogates.

One small :class:`Registry` class serves every kind of named thing. A builder is registered under a name;
``create(name, **kwargs)`` calls it. With no keyword arguments a builder returns the paper's
configuration. Unknown names and unknown keyword arguments raise :class:`RegistryError` listing what is
allowed, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import difflib
import inspect
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from overlooked.errors import RegistryError

F = TypeVar("F", bound=Callable[..., Any])


class Registry:
    """A name -> builder table.

    >>> REG = Registry("widgets")
    >>> @REG.register("square")
    ... def square(side: int = 2):
    ...     return side * side
    >>> REG.names(), REG.create("square"), REG.create("square", side=3)
    (['square'], 4, 9)
    """

    def __init__(self, kind: str, *, catalogued: bool = False):
        self.kind = kind
        self.catalogued = catalogued  # the library's own registries: a lookup first imports every registering module
        self._builders: dict[str, Callable[..., Any]] = {}
        self._tags: dict[str, dict[str, Any]] = {}

    def _complete(self) -> None:
        """Before the first lookup in one of the library's registries, import every module that registers
        names (:func:`overlooked.catalog.load_all`), so ``MODELS.create("memn2n")`` works without it."""
        global _CATALOG_LOADED
        if self.catalogued and not _CATALOG_LOADED:
            _CATALOG_LOADED = True  # set first: the modules being imported may look names up themselves
            from overlooked import catalog

            try:
                catalog.load_all()
            except BaseException:
                _CATALOG_LOADED = False  # the next lookup tries again rather than working from half the names
                raise

    def register(self, name: str, **tags: Any) -> Callable[[F], F]:
        """Decorator registering ``fn`` under ``name``; ``tags`` are free-form facts (family, paper...).

        A name the library or another module already uses is refused at once (your own registration first
        completes the library's names); the same function defined again in the same module (a re-run
        notebook cell) replaces the old one."""

        def deco(fn: F) -> F:
            caller = sys._getframe(1).f_code.co_filename  # who registers: the catalog, or your code (a library class included)
            if not (_is_library(fn) and str(Path(caller).resolve()).startswith(_PACKAGE_DIR + os.sep)):
                self._complete()  # a name of your own is checked against the library's names now, not at a later lookup
            old = self._builders.get(name)
            if old is not None and old is not fn and _origin(old) != _origin(fn):
                raise RegistryError(f"{self.kind} {name!r} is already registered (by {_origin(old)}); register {_origin(fn)} under another name")
            self._builders[name] = fn  # the same function defined again (a re-run notebook cell, a reload) replaces it
            self._tags[name] = dict(tags)
            return fn

        return deco

    def names(self) -> list[str]:
        """All registered names, sorted."""
        self._complete()
        return sorted(self._builders)

    def __contains__(self, name: str) -> bool:
        self._complete()
        return name in self._builders

    def tags(self, name: str) -> dict[str, Any]:
        """The tags ``name`` was registered with."""
        self.get(name)
        return dict(self._tags[name])

    def get(self, name: str) -> Callable[..., Any]:
        """The builder registered as ``name``; an unknown name lists the known ones."""
        self._complete()
        try:
            return self._builders[name]
        except KeyError:
            close = difflib.get_close_matches(name, self.names(), n=3)
            hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
            own = " A name of your own: import the module that registers it first (on the command line, `overlooked --import MODULE ...`)." if self.catalogued else ""
            raise RegistryError(
                f"unknown {self.kind} {name!r}.{hint} Known {self.kind}: {', '.join(self.names()) or '(none)'}.{own}"
            ) from None

    def parameters(self, name: str) -> list[inspect.Parameter]:
        """The builder's parameters (a class's ``__init__``'s), read from its signature."""
        return list(inspect.signature(self.get(name)).parameters.values())

    def accepted_kwargs(self, name: str) -> list[str] | None:
        """Keyword arguments the builder accepts, or None when it takes ``**kwargs``."""
        params = self.parameters(name)
        return None if takes_var_kwargs(params) else keyword_names(params)

    def create(self, name: str, **kwargs: Any) -> Any:
        """Build ``name`` with ``kwargs``; unknown keyword arguments raise, listing the allowed ones."""
        fn = self.get(name)
        allowed = self.accepted_kwargs(name)
        if allowed is not None:
            unknown = sorted(set(kwargs) - set(allowed))
            if unknown:
                raise RegistryError(
                    f"{self.kind} {name!r} got unknown argument(s) {', '.join(unknown)}; "
                    f"allowed: {', '.join(allowed) or '(none)'}"
                )
        return fn(**kwargs)


def keyword_names(params: list[inspect.Parameter]) -> list[str]:
    """The names of the parameters a builder takes by keyword."""
    return [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def takes_var_kwargs(params: list[inspect.Parameter]) -> bool:
    """Whether the parameters include ``**kwargs``."""
    return any(p.kind is p.VAR_KEYWORD for p in params)


def _origin(fn: Callable[..., Any]) -> str:
    """Where a builder is defined: ``module.qualname`` (with its file and line for a lambda, which has no name of
    its own, and for a ``functools.wraps`` wrapper, which carries the name of what it wraps). Defining the same
    name in the same module again (a re-run notebook cell, ``importlib.reload``) is the same origin, so it
    replaces the old builder; anything else under a taken name is refused."""
    where = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"
    code = getattr(fn, "__code__", None)
    if code is not None and hasattr(fn, "__wrapped__"):
        return f"{where} (wrapped by {code.co_name} in {code.co_filename}, line {code.co_firstlineno})"
    return f"{where} (line {code.co_firstlineno})" if "<lambda>" in where and code is not None else where


_PACKAGE_DIR = str(Path(__file__).resolve().parent)


def _is_library(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` is one of this package's own builders (registered while the catalog loads): judged by the
    file its code is in when it has code (``functools.wraps`` copies a name, not the code), else its module."""
    code = getattr(fn, "__code__", None)
    if code is not None:
        return str(Path(code.co_filename).resolve()).startswith(_PACKAGE_DIR + os.sep)
    module = getattr(fn, "__module__", "") or ""
    return module == "overlooked" or module.startswith("overlooked.")


_CATALOG_LOADED = False
MODELS = Registry("models", catalogued=True)
DATASETS = Registry("datasets", catalogued=True)
ENCODERS = Registry("encoders", catalogued=True)
OBJECTIVES = Registry("objectives", catalogued=True)
SURROGATES = Registry("surrogates", catalogued=True)
AUGMENTATIONS = Registry("augmentations", catalogued=True)
CALLBACKS = Registry("callbacks", catalogued=True)
METRICS = Registry("metrics", catalogued=True)
BENCHMARKS = Registry("benchmarks", catalogued=True)
DEMOS = Registry("demos", catalogued=True)

ALL = {
    "models": MODELS,
    "datasets": DATASETS,
    "encoders": ENCODERS,
    "objectives": OBJECTIVES,
    "surrogates": SURROGATES,
    "augmentations": AUGMENTATIONS,
    "callbacks": CALLBACKS,
    "metrics": METRICS,
    "benchmarks": BENCHMARKS,
    "demos": DEMOS,
}
