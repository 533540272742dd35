"""Attention kernels for the Wan DiT, chosen at run time by name.

``sdpa`` (torch's scaled_dot_product_attention) always works and is the
default. ``flash_attn`` (FlashAttention 3 when ``flash_attn_interface`` is
installed, else 2) and ``sageattention`` are imported only when asked for, so
the pack runs without them. Any backend can process the queries in chunks:
softmax is per query row, so chunking changes peak memory, not the result,
which lets long videos run on small GPUs.

Tensors are ``[B, L, heads, head_dim]`` in and out, Wan's layout.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from ...errors import InputError

BACKENDS = ("sdpa", "flash_attn", "sageattention")
_ALIASES = {"torch": "sdpa", "flash-attn": "flash_attn", "flash_attention": "flash_attn",
            "sage": "sageattention", "sage_attention": "sageattention", "sage-attention": "sageattention"}

_INSTALL_HINTS = {
    "flash_attn": "pip install flash-attn --no-build-isolation (NVIDIA GPU, a build matching your torch and CUDA)",
    "sageattention": "pip install sageattention (NVIDIA GPU with triton)",
}
_HALF = (torch.float16, torch.bfloat16)


def _sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    return out.transpose(1, 2)


def _import_kernel(backend: str) -> Callable:
    """The backend's kernel function, importing its package now (InputError if it is not installed)."""
    errors = []
    modules = {"flash_attn": ("flash_attn_interface", "flash_attn"), "sageattention": ("sageattention",)}[backend]
    for module_name in modules:
        try:
            module = importlib.import_module(module_name)
        except Exception as error:  # ImportError, or a broken binary build (OSError, RuntimeError)
            errors.append(f"{module_name}: {error}")
            continue
        return module.sageattn if backend == "sageattention" else module.flash_attn_func
    raise InputError("attention backend", f"'{backend}' was asked for but cannot be imported ({'; '.join(errors)})",
                     f"the package installed ({_INSTALL_HINTS[backend]}), or the 'sdpa' backend")


def _half_precision_kernel(backend: str, kernel: Callable) -> Callable:
    """Wrap a CUDA-only fp16/bf16 kernel: float32 inputs run in bf16 (as the official code does)."""

    def run(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if q.device.type != "cuda":
            raise InputError("attention backend", f"'{backend}' runs on CUDA only, the model is on {q.device}",
                             "the 'sdpa' backend on this device")
        dtype = q.dtype if q.dtype in _HALF else torch.bfloat16
        args = (q.to(dtype), k.to(dtype), v.to(dtype))
        if backend == "sageattention":
            out = kernel(*args, tensor_layout="NHD", is_causal=False)
        else:
            out = kernel(*args)
        if isinstance(out, tuple):  # some FlashAttention 3 builds also return the log-sum-exp
            out = out[0]
        return out.to(q.dtype)

    return run


@dataclass(frozen=True)
class Attention:
    """A chosen backend and query chunk size, called as ``attention(q, k, v)``."""

    backend: str = "sdpa"
    chunk_size: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "backend", _ALIASES.get(self.backend.lower(), self.backend.lower()))
        if self.backend not in BACKENDS:
            raise InputError("attention backend", f"'{self.backend}' is not known", f"one of {', '.join(BACKENDS)}")
        if self.chunk_size is not None and self.chunk_size < 1:
            raise InputError("attention chunk size", f"{self.chunk_size} is not a positive number of query tokens",
                             "a positive integer, or none for no chunking")
        kernel = _sdpa if self.backend == "sdpa" else _half_precision_kernel(self.backend, _import_kernel(self.backend))
        object.__setattr__(self, "_kernel", kernel)

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        kernel = self._kernel  # type: ignore[attr-defined]
        length = q.shape[1]
        if self.chunk_size is None or length <= self.chunk_size:
            return kernel(q, k, v)
        out = q.new_empty(*q.shape[:3], v.shape[-1])
        for start in range(0, length, self.chunk_size):
            stop = min(length, start + self.chunk_size)
            out[:, start:stop] = kernel(q[:, start:stop], k, v)
        return out


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, backend: str = "sdpa",
              chunk_size: int | None = None) -> torch.Tensor:
    """One-off attention ``[B, L, heads, head_dim]`` with the named backend."""
    return Attention(backend, chunk_size)(q, k, v)
