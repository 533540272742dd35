"""The umT5-XXL encoder that turns a prompt into the Wan DiT's text context.

Module names follow the official Wan file ``models_t5_umt5-xxl-enc-bf16.pth``
(``blocks.0.attn.q.weight``, ``blocks.0.pos_embedding.embedding.weight``), so
that file loads as it is; Comfy-Org's ``umt5_xxl_*.safetensors`` (Hugging Face
T5 names) converts through ``models/checkpoint/umt5.py``. umT5 differs from
T5 v1.1 in one way that matters here: every block has its own relative
position bias (no sharing), which is why the bias lives in each block.
T5 attention has no 1/sqrt(d) scaling: the weights were trained without it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..ops import CastOps

TEXT_LEN = 512  # the context length Wan was trained with (shared_config.text_len)


@dataclass(frozen=True)
class UMT5Config:
    vocab: int = 256384
    dim: int = 4096
    dim_attn: int = 4096
    dim_ffn: int = 10240
    num_heads: int = 64
    num_layers: int = 24
    num_buckets: int = 32
    max_distance: int = 128
    eps: float = 1e-6


class RMSNorm(nn.Module):
    """T5's layer norm: scale only, no mean subtraction, statistics in float32."""

    def __init__(self, dim: int, eps: float, device=None, dtype=None):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim, device=device, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * torch.rsqrt(x.float().pow(2).mean(dim=-1, keepdim=True) + self.eps).to(x.dtype)
        return self.weight.to(x.dtype) * x


def relative_buckets(length: int, num_buckets: int, max_distance: int, device) -> torch.Tensor:
    """Bidirectional T5 buckets ``[L, L]`` of key position minus query position."""
    rel = torch.arange(length, device=device)[None, :] - torch.arange(length, device=device)[:, None]
    half = num_buckets // 2
    buckets = (rel > 0).long() * half
    rel = rel.abs()
    exact = half // 2
    large = exact + (torch.log(rel.float().clamp(min=1) / exact) / math.log(max_distance / exact)
                     * (half - exact)).long()
    large = large.clamp(max=half - 1)
    return buckets + torch.where(rel < exact, rel, large)


class RelativeBias(nn.Module):
    def __init__(self, cfg: UMT5Config, device=None, dtype=None):
        super().__init__()
        self.num_buckets, self.max_distance = cfg.num_buckets, cfg.max_distance
        self.embedding = nn.Embedding(cfg.num_buckets, cfg.num_heads, device=device, dtype=dtype)

    def forward(self, length: int) -> torch.Tensor:
        """``[1, heads, L, L]`` float32 attention bias."""
        buckets = relative_buckets(length, self.num_buckets, self.max_distance, self.embedding.weight.device)
        return self.embedding.weight.float()[buckets].permute(2, 0, 1)[None]


class Attention(nn.Module):
    def __init__(self, cfg: UMT5Config, operations, device=None, dtype=None):
        super().__init__()
        self.num_heads = cfg.num_heads
        for name, (fan_in, fan_out) in {"q": (cfg.dim, cfg.dim_attn), "k": (cfg.dim, cfg.dim_attn),
                                        "v": (cfg.dim, cfg.dim_attn), "o": (cfg.dim_attn, cfg.dim)}.items():
            setattr(self, name, operations.Linear(fan_in, fan_out, bias=False, device=device, dtype=dtype))

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, n = x.shape[0], self.num_heads
        q, k, v = (proj(x).view(b, x.shape[1], n, -1).transpose(1, 2) for proj in (self.q, self.k, self.v))
        scores = torch.matmul(q.float(), k.float().transpose(-1, -2)) + bias  # no 1/sqrt(d): T5 trained so
        out = torch.matmul(scores.softmax(dim=-1).to(v.dtype), v)
        return self.o(out.transpose(1, 2).reshape(b, x.shape[1], -1))


class GatedFFN(nn.Module):
    """``fc2(fc1(x) * gelu_tanh(gate(x)))``: umT5's gated-GELU feed-forward."""

    def __init__(self, cfg: UMT5Config, operations, device=None, dtype=None):
        super().__init__()
        self.gate = nn.Sequential(operations.Linear(cfg.dim, cfg.dim_ffn, bias=False, device=device, dtype=dtype))
        self.fc1 = operations.Linear(cfg.dim, cfg.dim_ffn, bias=False, device=device, dtype=dtype)
        self.fc2 = operations.Linear(cfg.dim_ffn, cfg.dim, bias=False, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.fc1(x) * F.gelu(self.gate[0](x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, cfg: UMT5Config, operations, device=None, dtype=None):
        super().__init__()
        self.norm1 = RMSNorm(cfg.dim, cfg.eps, device, dtype)
        self.attn = Attention(cfg, operations, device, dtype)
        self.norm2 = RMSNorm(cfg.dim, cfg.eps, device, dtype)
        self.ffn = GatedFFN(cfg, operations, device, dtype)
        self.pos_embedding = RelativeBias(cfg, device, dtype)

    def forward(self, x: torch.Tensor, mask_bias: torch.Tensor) -> torch.Tensor:
        x = clamp_fp16(x + self.attn(self.norm1(x), self.pos_embedding(x.shape[1]) + mask_bias))
        return clamp_fp16(x + self.ffn(self.norm2(x)))


def clamp_fp16(x: torch.Tensor) -> torch.Tensor:
    """fp16 activations of T5 overflow in a few channels; the reference clamps them back to finite."""
    if x.dtype == torch.float16 and torch.isinf(x).any():
        limit = torch.finfo(x.dtype).max - 1000
        x = x.clamp(-limit, limit)
    return x


class UMT5Encoder(nn.Module):
    """Token ids ``[B, L]`` (and a 0/1 mask) -> hidden states ``[B, L, dim]``."""

    def __init__(self, config: UMT5Config, operations=None, device=None, dtype=None):
        super().__init__()
        operations = operations or CastOps
        self.config = config
        self.token_embedding = nn.Embedding(config.vocab, config.dim, device=device, dtype=dtype)
        self.blocks = nn.ModuleList(Block(config, operations, device, dtype) for _ in range(config.num_layers))
        self.norm = RMSNorm(config.dim, config.eps, device, dtype)

    @property
    def compute_dtype(self) -> torch.dtype:
        dtype = self.norm.weight.dtype
        return dtype if dtype in (torch.float32, torch.float16, torch.bfloat16) else torch.bfloat16

    def forward(self, ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self.token_embedding(ids).to(self.compute_dtype)
        mask_bias = torch.zeros((), device=x.device)
        if mask is not None:
            mask_bias = torch.zeros(mask.shape, device=x.device).masked_fill(mask == 0, torch.finfo(torch.float32).min)
            mask_bias = mask_bias[:, None, None, :]
        for block in self.blocks:
            x = block(x, mask_bias)
        return self.norm(x)


@torch.no_grad()
def encode_ids(model: UMT5Encoder, ids: list[int], device: torch.device | str | None = None) -> torch.Tensor:
    """The text context ``[1, len(ids), dim]`` float32 of one prompt's ids (end token included).

    Wan pads the ids to 512 with a mask and keeps the real tokens' outputs;
    masked keys add nothing and T5's bias depends only on distance, so
    running the real tokens alone gives the same numbers for less work. The
    DiT pads the context back to 512 with zeros, as Wan does.
    """
    device = device or model.norm.weight.device
    out = model(torch.tensor([ids], dtype=torch.long, device=device))
    return out.float()
