"""Pins from the sixth mutation audit (results/audits/mutants_trainer_registry.yaml): objectives, the registry,
the shared argument checks, the native-library cache and the HTML report's images, against values worked out by
hand."""

from __future__ import annotations

import base64

import numpy as np
import pytest
import torch

from overlooked import native, registry
from overlooked.bench.html import embed_images
from overlooked.checks import check_sizes, check_std, outside
from overlooked.errors import RegistryError
from overlooked.objectives import both_correct


def test_both_correct_takes_the_two_labels_in_either_order():
    """Scores (0.9, 0.1, 0.8): the top two are classes 0 and 2, matching labels (2, 0) and (0, 2) alike, not (0, 1)."""
    scores = torch.tensor([[0.9, 0.1, 0.8]] * 3)
    assert both_correct(scores, torch.tensor([[2, 0], [0, 2], [0, 1]])).tolist() == [True, True, False]


def test_a_builder_without_parameters_refuses_any_keyword_as_a_registry_error():
    """A builder taking nothing accepts no keyword: RegistryError naming the argument and "(none)" allowed."""
    reg = registry.Registry("widgets")
    reg.register("plain")(lambda: 1)
    assert reg.create("plain") == 1
    with pytest.raises(RegistryError, match=r"got unknown argument\(s\) size; allowed: \(none\)"):
        reg.create("plain", size=2)


def test_tags_hands_out_a_copy():
    """Changing the dict tags() returns leaves the registered tags as they were."""
    reg = registry.Registry("widgets")
    reg.register("square", family="shapes")(lambda: 4)
    reg.tags("square")["family"] = "changed"
    assert reg.tags("square") == {"family": "shapes"}


def test_a_catalog_load_that_failed_is_tried_again_at_the_next_lookup(monkeypatch):
    """The first lookup's catalog import fails (and raises); the second lookup imports it again, rather than
    working from the names half an import left."""
    from overlooked import catalog

    calls = []

    def load_all():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("broken module")

    monkeypatch.setattr(registry, "_CATALOG_LOADED", False)
    monkeypatch.setattr(catalog, "load_all", load_all)
    reg = registry.Registry("things", catalogued=True)
    with pytest.raises(RuntimeError, match="broken module"):
        reg.names()
    assert reg.names() == [] and len(calls) == 2
    reg.names()
    assert len(calls) == 2  # loaded once it worked


def test_check_std_takes_zero():
    """A standard deviation of 0 (all weights at their mean) is a valid init_std: 0.0 comes back as a float."""
    assert check_std("m", 0) == 0.0 and isinstance(check_std("m", 0), float)


def test_check_sizes_hands_back_python_ints():
    """numpy.int64(20) passes and comes back as the Python int 20."""
    sizes = check_sizes("m", embed_dim=np.int64(20), hops=None)
    assert sizes == (20, None) and type(sizes[0]) is int


def test_outside_of_an_empty_tensor_is_none():
    """No values, none outside any range (and no min/max to read)."""
    assert outside(torch.tensor([]), 0, 1) is None
    assert outside(torch.zeros(0, dtype=torch.long), 0, 1) is None


def test_the_kernel_cache_key_includes_the_cpu(monkeypatch):
    """The same source, flags and compiler on two CPU models get two library files (-march=native)."""
    monkeypatch.setattr(native, "_cpu_id", lambda: "model name : CPU A")
    a = native.library_path("k", "int f();", "/usr/bin/g++")
    monkeypatch.setattr(native, "_cpu_id", lambda: "model name : CPU B")
    b = native.library_path("k", "int f();", "/usr/bin/g++")
    assert a != b and a.name.startswith("k_") and b.name.startswith("k_")


@pytest.mark.parametrize("src", ["https://example.org/a.png", "http://example.org/a.png", "data:image/png;base64,AAAA"])
def test_remote_and_data_images_are_left_as_they_are(tmp_path, src):
    """Only relative files are embedded: an http(s) or data: source stays, and nothing is reported embedded."""
    body = f'<p><img alt="x" src="{src}"></p>'
    assert embed_images(body, tmp_path) == (body, [])


def test_an_upper_case_png_suffix_is_embedded_as_png(tmp_path):
    """FIG.PNG is a PNG: embedded as data:image/png with its bytes base64-encoded."""
    payload = b"\x89PNG"
    (tmp_path / "FIG.PNG").write_bytes(payload)
    out, files = embed_images('<img src="FIG.PNG">', tmp_path)
    assert out == '<img src="data:image/png;base64,' + base64.b64encode(payload).decode() + '">'
    assert files == [(tmp_path / "FIG.PNG").resolve()]
