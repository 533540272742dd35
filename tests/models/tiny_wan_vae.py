"""Tiny Wan VAEs for the VAE tests: the parity fixture's model, a well-conditioned
random one, and a pixel-local stand-in for checking tile blending exactly."""
from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file

from poseanimate.models.wan.vae import FeatureCache, WanVAE, WanVAEConfig

PARITY = Path(__file__).resolve().parents[1] / "fixtures" / "wan_vae_parity.safetensors"


def load_parity() -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    with safe_open(str(PARITY), "pt") as f:
        metadata = f.metadata()
    return load_file(str(PARITY)), metadata


def parity_state_dict(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The official-key state dict stored in the fixture (float16 values)."""
    return {k[3:]: v for k, v in tensors.items() if k.startswith("sd/")}


def parity_vae(tensors, metadata) -> WanVAE:
    config = WanVAEConfig(**json.loads(metadata["config"]))
    model = WanVAE(config, device="meta")
    model.load_state_dict({k: v.float() for k, v in parity_state_dict(tensors).items()}, strict=True, assign=True)
    return model.eval()


def tiny_vae(seed: int = 0, dim: int = 4) -> WanVAE:
    """Random weights near a well-conditioned residual network: unit-ish norms,
    fan-in scaled convs, residual output convs and attention projections x0.1."""
    generator = torch.Generator().manual_seed(seed)
    model = WanVAE(WanVAEConfig(dim=dim))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("gamma"):
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=generator))
            elif p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=generator) / p[0].numel() ** 0.5)
            else:
                p.copy_(0.05 * torch.randn(p.shape, generator=generator))
            if ".residual.6." in name or name.endswith("proj.weight"):
                p.mul_(0.1)
    return model.eval().requires_grad_(False)


class LocalVAE(WanVAE):
    """A stand-in whose every output cell depends only on its own input cell, so
    spatial tiling must reproduce the whole-frame result exactly."""

    def encode_chunk(self, frames: torch.Tensor, cache: FeatureCache) -> torch.Tensor:
        cells = F.avg_pool3d(frames.float(), (frames.shape[2], 8, 8))
        return cells.repeat(1, 6, 1, 1, 1)[:, : self.config.z_dim]

    def decode_step(self, z: torch.Tensor, cache: FeatureCache) -> torch.Tensor:
        n = 4 if self.conv2 in cache else 1
        cache.put(self.conv2, z)
        pixels = F.interpolate(z[:, :3, 0].float(), scale_factor=8, mode="nearest")
        return pixels[:, :, None] * torch.linspace(0.5, 1.0, n).view(1, 1, n, 1, 1)


def smooth_video(generator: torch.Generator, batch: int, frames: int, height: int, width: int) -> torch.Tensor:
    """A video in -1..1 with image-like spatial correlation (bilinearly upsampled noise)."""
    coarse = torch.rand(batch, 3 * frames, height // 8, width // 8, generator=generator)
    video = F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)
    return video.reshape(batch, 3, frames, height, width) * 2 - 1
