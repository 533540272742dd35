"""SteadyDancer's layers beside the Wan 2.1 I2V DiT, and how they fill its extension points.

The released transformer (``WanModel`` of ``model_dancer.py``) is a Wan 2.1
I2V 14B DiT whose video tokens are embedded differently:

* ``patch_embedding_fuse`` (Conv3d over 36 + 16 + 16 channels: the latent with
  the I2V ``y``, the fused pose, the aligned pose) embeds the video;
* ``patch_embedding`` (the plain Wan one, 36 channels) embeds ``ref_x``, the
  reference image's latent with a mask of ones, appended as one more frame;
* ``patch_embedding_ref_c`` (16 channels) embeds ``ref_c``, the first pose
  frame's latent, appended as the frame after that.

Convolution is linear, so ``fuse(cat[x, y, c, a]) = fuse[:36](cat[x, y]) +
fuse[36:](cat[c, a])``: the pack's DiT keeps its own patch embedding, loaded
with the first 36 input channels of ``patch_embedding_fuse`` and its bias
(:meth:`SteadyDancerLayers.video_embedding`), and the pose part is *added*
tokens computed from the noisy latent at each forward (``latent_tokens``,
because the aligner reads it). The two reference frames are ``extra_tokens``
at RoPE frames ``T`` and ``T + 1`` (right after the video, as the reference
concatenates them on the frame axis), dropped before the head.

The layers are small (a few million numbers for the 14B model) and run in
float32 whatever the DiT's dtype: fp8 or bf16 tensors are widened on loading.
"""
from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import InputError
from ...models.checkpoint.convert import check_tensors
from ...models.checkpoint.fp8 import is_fp8, split_scale_key
from ...models.wan.rope import shifted_grid_positions
from .modules import DynamicConv, PoseAligner, TemporalBranch, fused_pose

SPATIAL, TEMPORAL, ALIGN = "condition_embedding_spatial", "condition_embedding_temporal", "condition_embedding_align"
FUSE, REF_X, REF_C = "patch_embedding_fuse", "patch_embedding", "patch_embedding_ref_c"
CONDITION_MODULES = (SPATIAL, TEMPORAL, ALIGN)
EXTRA_MODULES = (FUSE, REF_C) + CONDITION_MODULES  # what a plain Wan DiT does not have
EXTRA_PREFIXES = tuple(f"{name}." for name in EXTRA_MODULES)
POSE_CHANNELS = 16
ALIGN_WIDTH, ALIGN_HEADS = 128, 8
EXPECTED_TENSORS = ("SteadyDancer's condition modules (condition_embedding_spatial, condition_embedding_temporal, "
                    "condition_embedding_align) and patch embeddings (patch_embedding_fuse, patch_embedding_ref_c), "
                    "as in MCG-NJU/SteadyDancer-14B")


class SteadyDancerLayers(nn.Module):
    """The condition modules and the three patch embeddings, named as in the released file."""

    def __init__(self, dim: int, video_channels: int = 36, pose_channels: int = POSE_CHANNELS,
                 latent_channels: int = 16, patch_size: tuple[int, int, int] = (1, 2, 2), device=None):
        super().__init__()
        self.dim, self.patch_size = dim, tuple(patch_size)
        self.video_channels, self.pose_channels, self.latent_channels = video_channels, pose_channels, latent_channels
        with torch.device(device or "cpu"):
            self.condition_embedding_spatial = DynamicConv(pose_channels, pose_channels)
            self.condition_embedding_temporal = TemporalBranch(pose_channels)
            self.condition_embedding_align = PoseAligner(pose_channels, latent_channels, ALIGN_WIDTH, ALIGN_HEADS)
            self.patch_embedding_fuse = nn.Conv3d(video_channels + 2 * pose_channels, dim, self.patch_size,
                                                  stride=self.patch_size)
            self.patch_embedding = nn.Conv3d(video_channels, dim, self.patch_size, stride=self.patch_size)
            self.patch_embedding_ref_c = nn.Conv3d(pose_channels, dim, self.patch_size, stride=self.patch_size)

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_state_dict(cls, state_dict: Mapping[str, torch.Tensor], source: str = "SteadyDancer weights",
                        device: torch.device | str = "cpu") -> "SteadyDancerLayers":
        """Layers holding ``state_dict``'s tensors (the extras above plus the file's ``patch_embedding``),
        widths read from them; fp8 tensors are dequantized with their scale, everything kept in float32."""
        params = {k: v for k, v in state_dict.items() if split_scale_key(k) is None}
        scales = {split_scale_key(k)[0]: v for k, v in state_dict.items()
                  if split_scale_key(k) is not None and split_scale_key(k)[1] == "scale_weight"}
        for key in (f"{FUSE}.weight", f"{REF_X}.weight"):
            if key not in params or params[key].dim() != 5:
                raise InputError(source, f"has no 5-d {key}", EXPECTED_TENSORS)
        fuse, ref = params[f"{FUSE}.weight"], params[f"{REF_X}.weight"]
        dim, video_channels = int(fuse.shape[0]), int(ref.shape[1])
        pose_channels = (int(fuse.shape[1]) - video_channels) // 2
        layers = cls(dim, video_channels, pose_channels, patch_size=tuple(int(s) for s in fuse.shape[2:]),
                     device="meta")
        check_tensors({k: v.shape for k, v in params.items()}, {k: v.shape for k, v in layers.state_dict().items()},
                      source, "SteadyDancer layers", EXPECTED_TENSORS)
        state = {}
        for key, value in params.items():
            scale = scales.get(key.rpartition(".")[0]) if key.endswith(".weight") else None
            value = value.to(device)
            if is_fp8(value.dtype):
                value = value.float() * (scale.to(device).float() if scale is not None else 1.0)
            state[key] = value.float()
        layers.load_state_dict(state, strict=True, assign=True)
        return layers.eval().requires_grad_(False)

    # ------------------------------------------------------------------ running
    @property
    def device(self) -> torch.device:
        return self.patch_embedding_fuse.weight.device

    @property
    def dtype(self) -> torch.dtype:
        """What the layers compute in: their weights' dtype (float32 as loaded; a host may have moved them)."""
        return self.patch_embedding_fuse.weight.dtype

    def video_embedding(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(weight, bias)`` for the DiT's own patch embedding: the latent-and-``y`` part of the fused one."""
        return self.patch_embedding_fuse.weight[:, :self.video_channels], self.patch_embedding_fuse.bias

    def fuse(self, pose: torch.Tensor, spatial_strength: float = 1.0, temporal_strength: float = 1.0) -> torch.Tensor:
        """The fused pose ``[B, 16, T, h, w]`` (float32) from the pose latent (model space)."""
        pose = pose.to(self.device, self.dtype)
        return fused_pose(pose, self.condition_embedding_spatial, self.condition_embedding_temporal,
                          spatial_strength, temporal_strength)

    def pose_tokens(self, fused: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        """The pose part of the video embedding, ``[B, T*h*w / patch, dim]`` float32, for the noisy
        ``latent`` ``[B, 16, T, h, w]`` (the aligner's query); ``fused`` may have batch 1."""
        latent = latent.to(self.device, self.dtype)
        fused = fused.to(self.device, self.dtype).expand(latent.shape[0], -1, -1, -1, -1)
        aligned = self.condition_embedding_align(fused, latent)
        weight = self.patch_embedding_fuse.weight[:, self.video_channels:]
        tokens = F.conv3d(torch.cat([fused, aligned], dim=1), weight, None, stride=self.patch_size)
        return tokens.flatten(2).transpose(1, 2).float()

    def reference_tokens(self, ref_x: torch.Tensor, ref_c: torch.Tensor) -> torch.Tensor:
        """``ref_x`` ``[B, 36, 1, h, w]`` and ``ref_c`` ``[B, >=16, 1, h, w]`` as tokens ``[B, 2*h*w/4, dim]``."""
        x = self.patch_embedding(ref_x.to(self.device, self.dtype))
        c = self.patch_embedding_ref_c(ref_c[:, :self.pose_channels].to(self.device, self.dtype))
        return torch.cat([x, c], dim=2).flatten(2).transpose(1, 2).float()

    def reference_positions(self, video_grid: tuple[int, int, int], device=None) -> torch.Tensor:
        """RoPE positions of the two reference frames: frames ``F`` and ``F + 1`` of the video's grid."""
        frames, h, w = video_grid
        return shifted_grid_positions(2, h, w, offset=(frames, 0, 0), device=device)
