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


@pytest.mark.parametrize("dtype, bound", [(torch.float32, 1e-6), (torch.bfloat16, 5e-3), (torch.float16, 1e-3)])
@pytest.mark.parametrize("chunk", [None, 64])
def test_sdpa_error_per_precision_on_real_head_width(dtype, bound, chunk):
    """What the CPU can state of each backend: SDPA (and chunked SDPA, the same kernel per chunk) in each
    precision against float64 softmax math at Wan's head width 128 (measured max abs error on unit-normal q, k, v:
    float32 5.5e-7, bf16 2.3e-3, fp16 2.9e-4; chunking changes nothing). flash_attn and sageattention are CUDA-only;
    bench/gpu/run_all.py measures their error against float32 SDPA on the GPU."""
    gen = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(1, 300, 2, 128, generator=gen) for _ in range(3))
    out = Attention("sdpa", chunk)(q.to(dtype), k.to(dtype), v.to(dtype))
    error = (out.double() - softmax_attention(q, k, v)).abs().max().item()
    assert out.dtype == dtype and error < bound
