"""Build small C++ libraries at first use with plain ``g++`` and load them with :mod:`ctypes`.

Shared by the CPU kernels of the families (the spiking neuron scans, the MemN2N hops). Why not
``torch.utils.cpp_extension.load_inline``: it compiles against all of torch's headers, which took 63 s for
a one-line function on the project's 2-core machine (measured 2026-11-28); these sources use no torch
headers, so ``g++`` builds each in seconds, once, into a cache folder keyed by the source, the flags, the
compiler and the CPU. A library links the same ``libgomp.so.1`` that torch already loaded, so its OpenMP
threads are torch's.
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
from collections.abc import Callable
from pathlib import Path

FLAGS = ("-O3", "-march=native", "-ffp-contract=off", "-fopenmp", "-fPIC", "-shared", "-std=c++17")


class CompilerUnavailable(RuntimeError):
    """No working C++ compiler, or the build failed; the message says which and how to fix it."""


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


def library_path(stem: str, source: str, cxx: str) -> Path:
    """Where the library built from ``source`` by ``cxx`` is cached: ``<cache_dir>/<stem>_<key>.so``."""
    key = hashlib.sha256("\n".join([source, " ".join(FLAGS), cxx, _cpu_id()]).encode()).hexdigest()[:16]
    return cache_dir() / f"{stem}_{key}.so"


def _torch_lib_dir() -> str:
    import torch

    return str(Path(torch.__file__).parent / "lib")


def build(stem: str, source: str, what: str, cxx: str | None = None) -> ctypes.CDLL:
    """Compile ``source`` with ``cxx`` (default :func:`compiler`) unless cached, and load it. ``what`` names
    the library in error messages.

    Raises:
        CompilerUnavailable: no compiler, or the build failed (with the command and the compiler's output).
    """
    cxx = cxx or compiler()
    if cxx is None:
        raise CompilerUnavailable(f"no C++ compiler found for the {what} (set $CXX or install g++)")
    path = library_path(stem, source, cxx)
    try:
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
                src = Path(tmp) / f"{stem}.cpp"
                src.write_text(source)
                out = Path(tmp) / path.name
                torch_lib = _torch_lib_dir()
                cmd = [cxx, *FLAGS, str(src), "-o", str(out), f"-L{torch_lib}", f"-Wl,-rpath,{torch_lib}"]
                proc = subprocess.run(cmd, capture_output=True, text=True)
                if proc.returncode != 0:
                    raise CompilerUnavailable(f"compiling the {what} failed ({' '.join(cmd)}):\n{proc.stderr[-2000:]}")
                os.replace(out, path)  # atomic: concurrent first uses race harmlessly
        return ctypes.CDLL(str(path))
    except OSError as err:  # an unwritable cache folder, a compiler that cannot start, a library that cannot load
        raise CompilerUnavailable(
            f"building or loading the {what} in {path.parent} failed ({err}); set $OVERLOOKED_KERNEL_CACHE to a writable folder"
        ) from err


class Library:
    """A C++ library built from ``source`` at its first :meth:`load` and kept for the process; a failed build
    is remembered, so later calls raise the same error at once.

    Args:
        stem: the cached file's name start.
        source: the C++ source.
        what: names the library in error messages.
        declare: sets the ``argtypes``/``restype`` of the library's functions.
        hint: appended to a build error (what to use instead).
    """

    def __init__(self, stem: str, source: str, what: str, declare: Callable[[ctypes.CDLL], None], hint: str = ""):
        self.stem, self.source, self.what, self.declare, self.hint = stem, source, what, declare, hint
        self.lib: ctypes.CDLL | None = None
        self.error: str | None = None
        self._lock = threading.Lock()

    def load(self, cxx: str | None = None) -> ctypes.CDLL:
        """The compiled library (built with ``cxx``, default :func:`compiler`, on the first call).

        Raises:
            CompilerUnavailable: no compiler, or the build failed.
        """
        with self._lock:
            if self.lib is not None:
                return self.lib
            if self.error is not None:
                raise CompilerUnavailable(self.error)
            try:
                lib = build(self.stem, self.source, self.what, cxx)
            except CompilerUnavailable as err:
                self.error = f"{err}{self.hint}"
                raise CompilerUnavailable(self.error) from err
            self.declare(lib)
            self.lib = lib
            return lib
