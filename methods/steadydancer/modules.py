"""SteadyDancer's pose-condition modules, under the released file's names.

The three "Synergistic Pose Modulation Modules" of ``wan/modules/model_dancer.py``
(MCG-NJU/SteadyDancer), each working on the VAE latent of the pose video
(16 channels, model space):

* ``condition_embedding_spatial``: :class:`DynamicConv` (``DYModule`` of
  ``mobilenetv2_dcd.py``, dynamic channel fusion), frame by frame;
* ``condition_embedding_temporal``: :class:`TemporalBranch`, three (2+1)-D
  factorised convolutions (``FactorConv3d``) each followed by SiLU;
* ``condition_embedding_align``: :class:`PoseAligner` (``PoseRefNetNoBNV3``),
  cross-attention from the noisy latent (query) to the fused pose (key, value).

The aligner is ``nn.MultiheadAttention`` without ``batch_first`` called on
``[frames, pixels, width]`` tensors in the reference, so it attends along the
*frame* axis, once per pixel position: every frame of the latent looks at the
pose of every frame at the same place. :meth:`PoseAligner.forward` does exactly
that (per sample, so a batch never mixes samples' frames).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def hard_sigmoid(x: torch.Tensor) -> torch.Tensor:
    """``relu6(x + 3) / 3`` (the reference's ``Hsigmoid``: note the 3, not 6)."""
    return F.relu6(x + 3.0) / 3.0


def dynamic_dims(inp: int, oup: int, fc_squeeze: int = 8) -> tuple[int, int, int]:
    """``(pool multiplier, latent dim, squeeze width)`` that ``DYModule(inp, oup)`` builds with."""
    mul, reduction = (4, 8) if inp < oup else (1, 2)
    dim = min(inp * mul // reduction, oup // reduction)
    while dim ** 2 > inp * mul * 2:
        reduction *= 2
        dim = min(inp * mul // reduction, oup // reduction)
    dim = max(dim, 4)
    squeeze = max(max(inp * mul, dim ** 2) // fc_squeeze, 4)
    return mul, dim, squeeze


class SqueezeGate(nn.Module):
    """``SEModule_small``: ``x * hard_sigmoid(fc(x))``."""

    def __init__(self, channels: int):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(channels, channels, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * hard_sigmoid(self.fc(x))


class DynamicConv(nn.Module):
    """Dynamic channel fusion of one frame ``[N, C, H, W]`` (``DYModule``): a static 1x1 conv scaled
    per sample, plus a per-sample ``dim x dim`` mixing of a squeezed projection."""

    def __init__(self, inp: int, oup: int, fc_squeeze: int = 8):
        super().__init__()
        self.mul, self.dim, squeeze = dynamic_dims(inp, oup, fc_squeeze)
        self.pool = 2 if self.mul == 4 else 1
        self.conv = nn.Conv2d(inp, oup, 1, bias=False)
        self.conv_q = nn.Conv2d(inp, self.dim, 1, bias=False)
        self.fc = nn.Sequential(nn.Linear(inp * self.mul, squeeze, bias=False), SqueezeGate(squeeze))
        self.fc_phi = nn.Linear(squeeze, self.dim ** 2, bias=False)
        self.fc_scale = nn.Linear(squeeze, oup, bias=False)
        self.conv_p = nn.Conv2d(self.dim, oup, 1, bias=False)
        self.bn1 = nn.GroupNorm(4, self.dim)
        self.bn2 = nn.GroupNorm(4, self.dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        static = self.conv(x)
        y = self.fc(F.adaptive_avg_pool2d(x, self.pool).reshape(n, c * self.mul))
        phi = self.fc_phi(y).view(n, self.dim, self.dim)
        static = hard_sigmoid(self.fc_scale(y)).view(n, -1, 1, 1) * static
        q = self.bn1(self.conv_q(x)).view(n, self.dim, h * w)
        q = self.bn2(torch.matmul(phi, q)) + q
        return self.conv_p(q.view(n, self.dim, h, w)) + static


class FactorConv3d(nn.Module):
    """A (2+1)-D convolution: depthwise ``1 x k x k`` in space, SiLU, then ``k x 1 x 1`` in time."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3):
        super().__init__()
        pad = (kernel_size - 1) // 2
        self.spatial = nn.Conv3d(in_channels, in_channels, (1, kernel_size, kernel_size), padding=(0, pad, pad),
                                 groups=in_channels, bias=False)
        self.temporal = nn.Conv3d(in_channels, out_channels, (kernel_size, 1, 1), padding=(pad, 0, 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.temporal(F.silu(self.spatial(x)))


class TemporalBranch(nn.Sequential):
    """``condition_embedding_temporal``: (FactorConv3d, SiLU) x 3; indices 0, 2, 4 hold the weights."""

    def __init__(self, channels: int, layers: int = 3):
        modules: list[nn.Module] = []
        for _ in range(layers):
            modules += [FactorConv3d(channels, channels), nn.SiLU()]
        super().__init__(*modules)


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channels of ``[N, C, H, W]`` (``LayerNorm2D``: weight and bias ``[1, C, 1, 1]``)."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=1, keepdim=True)
        var = x.var(dim=1, keepdim=True, unbiased=False)
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias


class FrameAttention(nn.Module):
    """The ``nn.MultiheadAttention`` weights of the aligner (``in_proj_weight``, ``in_proj_bias``,
    ``out_proj``), run as exact scaled-dot-product attention along the frame axis."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)

    def forward(self, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        """``query``, ``key`` ``[B, L, T, width]`` (L pixel positions, T frames): attention over T."""
        wq, wk, wv = self.in_proj_weight.chunk(3)
        bq, bk, bv = self.in_proj_bias.chunk(3)
        b, length, frames, width = query.shape

        def heads(x: torch.Tensor) -> torch.Tensor:
            return x.view(b, length, x.shape[2], self.heads, width // self.heads).transpose(2, 3)

        q, k, v = heads(F.linear(query, wq, bq)), heads(F.linear(key, wk, bk)), heads(F.linear(key, wv, bv))
        out = F.scaled_dot_product_attention(q, k, v)  # [B, L, heads, T, head_dim]
        return self.out_proj(out.transpose(2, 3).reshape(b, length, frames, width))


class PoseAligner(nn.Module):
    """``PoseRefNetNoBNV3``: the fused pose aligned to the noisy latent, ``[B, C, T, H, W]`` both."""

    def __init__(self, pose_channels: int = 16, latent_channels: int = 16, width: int = 128, heads: int = 8):
        super().__init__()
        self.proj_p = nn.Conv2d(pose_channels, width, 1)
        self.proj_r = nn.Conv2d(latent_channels, width, 1)
        self.proj_p_back = nn.Conv2d(width, pose_channels, 1)
        self.cross_attn = FrameAttention(width, heads)
        self.ffn_pose = nn.Sequential(nn.Conv2d(width, width, 1), nn.SiLU(), nn.Conv2d(width, width, 1))
        self.norm1 = ChannelLayerNorm(width)
        self.norm2 = ChannelLayerNorm(width)

    def forward(self, pose: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        b, _, frames, h, w = pose.shape

        def pixels(x: torch.Tensor, proj: nn.Module) -> torch.Tensor:  # [B, C, T, H, W] -> [B, HW, T, width]
            x = proj(x.transpose(1, 2).flatten(0, 1))  # [B*T, width, H, W]
            return x.view(b, frames, -1, h * w).permute(0, 3, 1, 2)

        out = self.cross_attn(pixels(latent, self.proj_r), pixels(pose, self.proj_p))  # [B, HW, T, width]
        out = out.permute(0, 2, 3, 1).reshape(b * frames, -1, h, w)
        out = self.norm1(out)
        out = self.norm2(out + self.ffn_pose(out))
        out = self.proj_p_back(out)
        return out.view(b, frames, -1, h, w).transpose(1, 2)


def fused_pose(pose: torch.Tensor, spatial: DynamicConv, temporal: TemporalBranch, spatial_strength: float = 1.0,
               temporal_strength: float = 1.0) -> torch.Tensor:
    """``pose + temporal_strength * temporal(pose) + spatial_strength * spatial(pose)`` ("Hierarchical
    Aggregation (1)"); ``[B, C, T, H, W]``. Strengths of 1 are the reference's forward."""
    b, c, frames, h, w = pose.shape
    out = pose
    if temporal_strength:
        out = out + temporal_strength * temporal(pose)
    if spatial_strength:
        per_frame = spatial(pose.transpose(1, 2).reshape(b * frames, c, h, w))
        out = out + spatial_strength * per_frame.view(b, frames, -1, h, w).transpose(1, 2)
    return out
