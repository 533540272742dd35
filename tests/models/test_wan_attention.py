"""Attention backends: SDPA against plain softmax math, query chunking, and clear errors."""
from __future__ import annotations

import sys
import types

import pytest
import torch

from poseanimate.errors import InputError
from poseanimate.models.wan.attention import Attention, attention


def softmax_attention(q, k, v):
    scores = torch.einsum("bqnd,bknd->bnqk", q.double(), k.double()) / q.shape[-1] ** 0.5
    return torch.einsum("bnqk,bknd->bqnd", scores.softmax(-1), v.double())


def qkv(lq=23, lk=17, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(2, lq, 3, 16, generator=gen), torch.randn(2, lk, 3, 16, generator=gen),
            torch.randn(2, lk, 3, 16, generator=gen))


def test_sdpa_matches_softmax_math():
    q, k, v = qkv()
    out = attention(q, k, v)
    assert out.shape == (2, 23, 3, 16)
    assert torch.allclose(out.double(), softmax_attention(q, k, v), atol=1e-6)


@pytest.mark.parametrize("chunk", [1, 5, 23, 100])
def test_query_chunks_equal_unchunked(chunk):
    q, k, v = qkv()
    assert torch.allclose(Attention("sdpa", chunk)(q, k, v), attention(q, k, v), atol=1e-6, rtol=0)


def test_backend_names_are_forgiving():
    assert Attention("SDPA").backend == "sdpa" and Attention("torch").backend == "sdpa"


def test_unknown_backend_and_bad_chunk():
    with pytest.raises(InputError, match="one of sdpa, flash_attn, sageattention"):
        Attention("xformers")
    with pytest.raises(InputError, match="positive"):
        Attention("sdpa", 0)


@pytest.mark.parametrize("backend,modules,hint", [
    ("flash_attn", ("flash_attn_interface", "flash_attn"), "pip install flash-attn"),
    ("sageattention", ("sageattention",), "pip install sageattention"),
])
def test_missing_optional_backend_says_what_to_install(monkeypatch, backend, modules, hint):
    for name in modules:
        monkeypatch.setitem(sys.modules, name, None)  # makes the import fail
    with pytest.raises(InputError) as info:
        Attention(backend)
    message = str(info.value)
    assert backend in message and hint in message and "sdpa" in message


def test_cuda_only_backend_refuses_cpu_tensors(monkeypatch):
    fake = types.ModuleType("flash_attn")
    fake.flash_attn_func = lambda q, k, v: q
    monkeypatch.setitem(sys.modules, "flash_attn_interface", None)
    monkeypatch.setitem(sys.modules, "flash_attn", fake)
    with pytest.raises(InputError, match="CUDA only"):
        Attention("flash_attn")(*qkv())
