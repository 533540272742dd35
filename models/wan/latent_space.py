"""The Wan 2.1 VAE's latent statistics, and the two latent spaces the pack meets.

The official Wan code normalises the VAE's output per channel,
``(mu - mean) * (1 / std)``, and the DiT works on that *model space*. ComfyUI's
LATENT holds the raw VAE latent (its ``latent_formats.Wan21`` normalises on the
way into a model), so nodes convert at the edges with these two functions.
"""
from __future__ import annotations

import torch

LATENT_CHANNELS = 16
WAN21_LATENT_MEAN = (-0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
                     0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921)
WAN21_LATENT_STD = (2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
                    3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160)


def latent_stats(like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std shaped to broadcast over ``like`` (channels on dim 1), float32 on its device."""
    shape = (1, LATENT_CHANNELS) + (1,) * (like.dim() - 2)
    mean = torch.tensor(WAN21_LATENT_MEAN, dtype=torch.float32, device=like.device).view(shape)
    std = torch.tensor(WAN21_LATENT_STD, dtype=torch.float32, device=like.device).view(shape)
    return mean, std


def to_model_space(latent: torch.Tensor) -> torch.Tensor:
    """Raw VAE latent (ComfyUI's LATENT) -> the normalised latent the DiT works on, as Wan computes it."""
    mean, std = latent_stats(latent)
    return (latent.float() - mean) * (1.0 / std)


def to_vae_space(latent: torch.Tensor) -> torch.Tensor:
    """The DiT's normalised latent -> raw VAE latent (ComfyUI's LATENT), as Wan's decode computes it."""
    mean, std = latent_stats(latent)
    return latent.float() / (1.0 / std) + mean
