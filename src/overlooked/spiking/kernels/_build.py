"""Compile the C++ neuron scans at first use and load them with :mod:`ctypes` (through
:mod:`overlooked.native`, which says why plain ``g++`` and not ``torch.utils.cpp_extension``)."""

from __future__ import annotations

import ctypes
from pathlib import Path

from overlooked import native
from overlooked.native import FLAGS, CompilerUnavailable, cache_dir, compiler  # noqa: F401  (this module's names since the start)
from overlooked.spiking.kernels._cpp_source import SOURCE


def _declare(lib: ctypes.CDLL) -> None:
    vp, i64, i32, dp = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.POINTER(ctypes.c_double)
    lib.ovl_neuron_forward.argtypes = [i32, i32, i32, vp, vp, vp, vp, vp, i64, i64, i64, dp, i32]
    lib.ovl_neuron_forward.restype = i32
    lib.ovl_neuron_backward.argtypes = [i32, i32, i32, i32, vp, vp, vp, vp, vp, vp, vp, vp, vp, dp, i64, i64, i64, dp, i32, i32]
    lib.ovl_neuron_backward.restype = i32


NO_COMPILER = "no C++ compiler found (set $CXX or install g++); backend='reference' needs none"
LIBRARY = native.Library("ovl_neuron_scan", SOURCE, "C++ neuron kernels", _declare, hint="; backend='reference' needs none")


def library_path(cxx: str) -> Path:
    return native.library_path("ovl_neuron_scan", SOURCE, cxx)


def load() -> ctypes.CDLL:
    """The compiled library, building it on the first call; raises :class:`CompilerUnavailable`. Once loaded it
    returns at once: the kernels call this at every forward and backward, and the compiler lookup (a PATH search)
    cost about as much as a small layer's scan."""
    if LIBRARY.lib is not None:
        return LIBRARY.lib
    cxx = compiler()  # looked up here, so that a test can take the compiler away
    if cxx is None:
        raise CompilerUnavailable(NO_COMPILER)
    return LIBRARY.load(cxx)


def available() -> bool:
    """Whether the library is (or can be) built; compiles on the first call."""
    try:
        load()
    except CompilerUnavailable:
        return False
    return True
