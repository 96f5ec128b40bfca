"""Compile the C++ neuron scans at first use and load them with :mod:`ctypes` (through
:mod:`overlooked.native`, which says why plain ``g++`` and not ``torch.utils.cpp_extension``)."""

from __future__ import annotations

import ctypes
import threading
from pathlib import Path

from overlooked import native
from overlooked.native import FLAGS, CompilerUnavailable, cache_dir, compiler  # noqa: F401  (this module's names since the start)
from overlooked.spiking.kernels._cpp_source import SOURCE

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_error: str | None = None


def library_path(cxx: str) -> Path:
    return native.library_path("ovl_neuron_scan", SOURCE, cxx)


def load() -> ctypes.CDLL:
    """The compiled library, building it on the first call; raises :class:`CompilerUnavailable`."""
    global _lib, _error
    with _lock:
        if _lib is not None:
            return _lib
        if _error is not None:
            raise CompilerUnavailable(_error)
        cxx = compiler()
        if cxx is None:
            _error = "no C++ compiler found (set $CXX or install g++); backend='reference' needs none"
            raise CompilerUnavailable(_error)
        try:
            lib = native.build("ovl_neuron_scan", SOURCE, "C++ neuron kernels", cxx)
        except CompilerUnavailable as err:
            _error = f"{err}; backend='reference' needs none"
            raise CompilerUnavailable(_error) from err
        vp, i64, i32, dp = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.POINTER(ctypes.c_double)
        lib.ovl_neuron_forward.argtypes = [i32, i32, i32, vp, vp, vp, vp, vp, i64, i64, i64, dp, i32]
        lib.ovl_neuron_forward.restype = i32
        lib.ovl_neuron_backward.argtypes = [i32, i32, i32, i32, vp, vp, vp, vp, vp, vp, vp, vp, vp, dp, i64, i64, i64, dp, i32, i32]
        lib.ovl_neuron_backward.restype = i32
        _lib = lib
        return lib


def available() -> bool:
    """Whether the library is (or can be) built; compiles on the first call."""
    try:
        load()
    except CompilerUnavailable:
        return False
    return True
