"""Compile the C++ neuron scans at first use and load them with :mod:`ctypes`.

Why not ``torch.utils.cpp_extension.load_inline``: it compiles against all of torch's headers, which took
63 s for a one-line function on the project's 2-core machine (measured 2026-11-28); this source uses no
torch headers, so plain ``g++`` builds it in about 9 s, once, into a cache folder keyed by the source,
the flags and the CPU. The library links the same ``libgomp.so.1`` that torch already loaded, so its
OpenMP threads are torch's.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

from overlooked.spiking.kernels._cpp_source import SOURCE

FLAGS = ("-O3", "-march=native", "-ffp-contract=off", "-fopenmp", "-fPIC", "-shared", "-std=c++17")


class CompilerUnavailable(RuntimeError):
    """No working C++ compiler, or the build failed; the message says which and how to fix it."""


_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_error: str | None = None


def compiler() -> str | None:
    """The C++ compiler to use (``$CXX``, else ``g++``, else ``c++``), or None when there is none."""
    for name in (os.environ.get("CXX"), "g++", "c++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def cache_dir() -> Path:
    """``$OVERLOOKED_KERNEL_CACHE`` or ``~/.cache/overlooked/kernels``."""
    return Path(os.environ.get("OVERLOOKED_KERNEL_CACHE", Path.home() / ".cache" / "overlooked" / "kernels"))


def _cpu_id() -> str:
    try:  # -march=native code must not be reused on another CPU model sharing the same home folder
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "flags")):
                return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


def library_path(cxx: str) -> Path:
    key = hashlib.sha256("\n".join([SOURCE, " ".join(FLAGS), cxx, _cpu_id()]).encode()).hexdigest()[:16]
    return cache_dir() / f"ovl_neuron_scan_{key}.so"


def _torch_lib_dir() -> str:
    import torch

    return str(Path(torch.__file__).parent / "lib")


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
        path = library_path(cxx)
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
                src = Path(tmp) / "neuron_scan.cpp"
                src.write_text(SOURCE)
                out = Path(tmp) / path.name
                torch_lib = _torch_lib_dir()
                cmd = [cxx, *FLAGS, str(src), "-o", str(out), f"-L{torch_lib}", f"-Wl,-rpath,{torch_lib}"]
                proc = subprocess.run(cmd, capture_output=True, text=True)
                if proc.returncode != 0:
                    _error = f"compiling the C++ neuron kernels failed ({' '.join(cmd)}):\n{proc.stderr[-2000:]}"
                    raise CompilerUnavailable(_error)
                os.replace(out, path)  # atomic: concurrent first uses race harmlessly
        lib = ctypes.CDLL(str(path))
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
