"""The C++ build helper: which compiler it takes, that a build is cached, that a failed one is remembered."""

from __future__ import annotations

import ctypes
import shutil

import pytest

from overlooked import native

NO_CXX = native.compiler() is None


def _fake_compiler(tmp_path, name: str = "my-cxx"):
    """An executable that counts its runs in ``runs.txt`` and then runs the real compiler."""
    real = shutil.which("g++") or shutil.which("c++")
    script = tmp_path / name
    script.write_text(f'#!/bin/sh\necho x >> "{tmp_path}/runs.txt"\nexec "{real}" "$@"\n')
    script.chmod(0o755)
    return script


@pytest.mark.skipif(NO_CXX, reason="no C++ compiler")
def test_cxx_picks_the_compiler_before_g_plus_plus(tmp_path, monkeypatch):
    script = _fake_compiler(tmp_path)
    monkeypatch.setenv("CXX", str(script))
    assert native.compiler() == str(script)
    monkeypatch.setenv("CXX", str(tmp_path / "not-there"))  # a $CXX that is not a program: the next one
    assert native.compiler() in (shutil.which("g++"), shutil.which("c++"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.delenv("CXX")
    assert native.compiler() is None
    with pytest.raises(native.CompilerUnavailable, match=r"no C\+\+ compiler found for the test library \(set \$CXX or install g\+\+\)"):
        native.build("t", "int f() { return 1; }", "test library")


@pytest.mark.skipif(NO_CXX, reason="no C++ compiler")
def test_a_build_is_cached_and_a_failed_one_is_remembered(tmp_path, monkeypatch):
    monkeypatch.setenv("OVERLOOKED_KERNEL_CACHE", str(tmp_path / "cache"))
    script = _fake_compiler(tmp_path)
    runs = tmp_path / "runs.txt"
    source = 'extern "C" int seven() { return 7; }\n'
    lib = native.build("t", source, "test library", str(script))
    assert lib.seven() == 7 and runs.read_text().count("x") == 1
    assert native.library_path("t", source, str(script)).is_file()
    assert native.build("t", source, "test library", str(script)).seven() == 7 and runs.read_text().count("x") == 1  # cached
    declared = []
    good = native.Library("t", source, "test library", lambda lib: declared.append(lib))
    assert good.load(str(script)) is good.load(str(script)) and len(declared) == 1 and runs.read_text().count("x") == 1
    assert isinstance(good.lib, ctypes.CDLL)
    bad = native.Library("bad", "this is not C++ ;", "test library", lambda lib: None, hint="; use backend='reference'")
    for _ in range(3):  # the compiler runs once; later loads raise the remembered error at once
        with pytest.raises(native.CompilerUnavailable, match=r"(?s)compiling the test library failed \(.*my-cxx .*\):\n.*; use backend='reference'$"):
            bad.load(str(script))
    assert runs.read_text().count("x") == 2
