"""Wan2.2-Animate's face path inside the DiT: the face encoder and the face adapter blocks.

* ``face_encoder``: the per-frame motion vectors ``[B, T, 512]`` of the
  ``T = 4k + 1`` driving frames go through a causal Conv1d (kernel 3, padded
  by repeating the first frame) to ``4 x 1024`` channels, which split into 4
  token streams; each stream runs LayerNorm (no affine) and SiLU, then two
  stride-2 causal convs (each followed by LayerNorm and SiLU), so
  ``4k + 1 -> 2k + 1 -> k + 1`` frames, the clip's latent frame count; then a
  Linear to the DiT width. A learned padding token joins the 4, giving 5 tokens
  per latent frame, ``[B, k + 1, 5, dim]``. The caller prepends a zero frame
  for the reference latent frame.
* ``face_adapter.fuser_blocks.{i}``: after DiT block ``5 i`` the video tokens
  of latent frame ``t`` attend to the 5 motion tokens of frame ``t`` (pre
  LayerNorms without affine, RMSNorm on q and k per head); the output is added
  to the residual stream.

Names are the official keys (``face_encoder.conv1_local.conv.weight``,
``face_adapter.fuser_blocks.0.linear1_kv.weight`` ...). Weighted layers come
from ``operations`` (ComfyUI's ops in the host); normalisations and the
residual add run in float32, weighted layers in the caller's compute dtype.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...models.ops import CastConv1d, CastOps
from ...models.wan.layers import RMSNorm

FACE_STREAMS = 4  # token streams the first conv splits into (the reference's num_heads=4)
STREAM_WIDTH = 1024  # channels per stream
FACE_TOKENS = FACE_STREAMS + 1  # the streams plus the learned padding token
ADAPTER_EVERY = 5  # a face block follows DiT blocks 0, 5, 10, ...
NORM_EPS = 1e-6


def _conv1d_class(operations) -> type:
    return getattr(operations, "Conv1d", CastConv1d)


class CausalConv1d(nn.Module):
    """Conv1d over time that sees only the past: pad ``kernel - 1`` copies of the first frame in front."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, operations=CastOps, device=None,
                 dtype=None):
        super().__init__()
        self.pad = kernel - 1
        self.conv = _conv1d_class(operations)(cin, cout, kernel, stride=stride, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (self.pad, 0), mode="replicate"))


def face_frames_after(frames: int) -> int:
    """Latent-rate frames the face encoder makes from ``frames`` motion vectors (two stride-2 causal convs)."""
    for _ in range(2):
        frames = (frames - 1) // 2 + 1
    return frames


class FaceEncoder(nn.Module):
    """Motion vectors ``[B, T, in_dim]`` -> face tokens ``[B, face_frames_after(T), 5, dim]`` (float32)."""

    def __init__(self, in_dim: int, dim: int, streams: int = FACE_STREAMS, width: int = STREAM_WIDTH,
                 operations=CastOps, device=None, dtype=None):
        super().__init__()
        ops = operations
        self.streams = streams
        self.conv1_local = CausalConv1d(in_dim, width * streams, 3, 1, ops, device, dtype)
        self.conv2 = CausalConv1d(width, width, 3, 2, ops, device, dtype)
        self.conv3 = CausalConv1d(width, width, 3, 2, ops, device, dtype)
        for name in ("norm1", "norm2", "norm3"):
            setattr(self, name, ops.LayerNorm(width, eps=NORM_EPS, elementwise_affine=False, device=device,
                                              dtype=dtype))
        self.out_proj = ops.Linear(width, dim, device=device, dtype=dtype)
        self.padding_tokens = nn.Parameter(torch.empty(1, 1, 1, dim, device=device, dtype=dtype),
                                           requires_grad=False)

    def forward(self, motion: torch.Tensor, compute_dtype: torch.dtype = torch.float32) -> torch.Tensor:
        batch = motion.shape[0]
        x = self.conv1_local(motion.transpose(1, 2).to(compute_dtype))  # [B, streams * width, T]
        x = x.unflatten(1, (self.streams, -1)).flatten(0, 1)  # [B * streams, width, T]
        for norm, conv in ((self.norm1, self.conv2), (self.norm2, self.conv3)):
            x = F.silu(norm(x.transpose(1, 2).float())).to(compute_dtype)  # over channels
            x = conv(x.transpose(1, 2))
        x = F.silu(self.norm3(x.transpose(1, 2).float())).to(compute_dtype)  # [B * streams, T', width]
        x = self.out_proj(x).float()
        x = x.unflatten(0, (batch, self.streams)).transpose(1, 2)  # [B, T', streams, dim]
        padding = self.padding_tokens.to(device=x.device, dtype=torch.float32)
        return torch.cat([x, padding.expand(batch, x.shape[1], 1, -1)], dim=2)


class FaceBlock(nn.Module):
    """Cross-attention from each latent frame's video tokens to that frame's face tokens."""

    def __init__(self, dim: int, num_heads: int, operations=CastOps, device=None, dtype=None):
        super().__init__()
        ops = operations
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.linear1_kv = ops.Linear(dim, 2 * dim, device=device, dtype=dtype)
        self.linear1_q = ops.Linear(dim, dim, device=device, dtype=dtype)
        self.linear2 = ops.Linear(dim, dim, device=device, dtype=dtype)
        self.q_norm = RMSNorm(head_dim, NORM_EPS, device, dtype)
        self.k_norm = RMSNorm(head_dim, NORM_EPS, device, dtype)
        self.pre_norm_feat = ops.LayerNorm(dim, eps=NORM_EPS, elementwise_affine=False, device=device, dtype=dtype)
        self.pre_norm_motion = ops.LayerNorm(dim, eps=NORM_EPS, elementwise_affine=False, device=device,
                                             dtype=dtype)

    def forward(self, x: torch.Tensor, face: torch.Tensor, compute_dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """``x`` ``[B, F * S, dim]`` video tokens frame by frame, ``face`` ``[B, F, N, dim]``; returns the
        float32 update ``[B, F * S, dim]`` to add to ``x``."""
        batch, frames, count, _ = face.shape
        if x.shape[1] % frames:
            raise ValueError(f"{x.shape[1]} video tokens do not split into {frames} frames")
        per_frame = x.shape[1] // frames
        heads = self.num_heads
        kv = self.linear1_kv(self.pre_norm_motion(face.float()).to(compute_dtype))
        k, v = kv.unflatten(-1, (2, heads, -1)).unbind(dim=-3)  # [B, F, N, heads, head_dim] each
        q = self.linear1_q(self.pre_norm_feat(x.float()).to(compute_dtype)).unflatten(-1, (heads, -1))
        q = self.q_norm(q).to(v.dtype).reshape(batch * frames, per_frame, heads, -1)
        k = self.k_norm(k).to(v.dtype).reshape(batch * frames, count, heads, -1)
        v = v.reshape(batch * frames, count, heads, -1)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        out = out.transpose(1, 2).reshape(batch, frames * per_frame, -1)
        return self.linear2(out).float()


class FaceAdapter(nn.Module):
    def __init__(self, dim: int, num_heads: int, blocks: int, operations=CastOps, device=None, dtype=None):
        super().__init__()
        self.fuser_blocks = nn.ModuleList(FaceBlock(dim, num_heads, operations, device, dtype)
                                          for _ in range(blocks))
