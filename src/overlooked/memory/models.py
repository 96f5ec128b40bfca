"""Registered memory-network builders. With no arguments each builds its paper's configuration."""

from __future__ import annotations

from typing import Literal

from overlooked.memory.modules import KVMemNN, MemN2N
from overlooked.registry import MODELS


@MODELS.register("memn2n", family="memory", paper="Sukhbaatar et al. 2015, arXiv 1503.08895")
def memn2n(
    vocab_size: int = 200,
    num_classes: int | None = None,
    memory_size: int = 50,
    embed_dim: int = 20,
    hops: int = 3,
    encoding: Literal["pe", "pe_centered", "bow"] = "pe",
    temporal: bool = True,
    tying: Literal["adjacent", "layerwise"] = "adjacent",
    init_std: float = 0.1,
    pe_length: Literal["sentence", "padded", "padded_time"] = "sentence",
    padding: Literal["mask", "attend"] = "mask",
    fused: bool = True,
) -> MemN2N:
    """MemN2N; defaults are the paper's independent setting: d = 20, K = 3, PE, temporal, adjacent tying."""
    return MemN2N(vocab_size, num_classes, memory_size, embed_dim, hops, encoding, temporal, tying, init_std, pe_length, padding, fused)


@MODELS.register("kvmemnn", family="memory", paper="Miller et al. 2016, arXiv 1606.03126")
def kvmemnn(
    vocab_size: int = 200,
    num_classes: int | None = None,
    memory_size: int = 50,
    embed_dim: int = 50,
    hops: int = 2,
    key_encoding: Literal["pe", "bow"] = "pe",
    value_encoding: Literal["pe", "bow"] = "bow",
    temporal: bool = True,
    init_std: float = 0.1,
    query_encoding: Literal["pe", "bow"] = "pe",
) -> KVMemNN:
    """KV-MemNN with sentence-level keys (PE + time) and values (bag of words), the question position-encoded;
    the paper has no bAbI setting, so the key/value split and H are ours."""
    return KVMemNN(vocab_size, num_classes, memory_size, embed_dim, hops, key_encoding, value_encoding, temporal, init_std, query_encoding)
