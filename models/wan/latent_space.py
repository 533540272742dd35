"""The Wan 2.1 VAE's latent statistics, and the two latent spaces the pack meets.

The official Wan code normalises the VAE's output per channel,
``(mu - mean) * (1 / std)``, and the DiT works on that *model space*. ComfyUI's
LATENT holds the raw VAE latent (its ``latent_formats.Wan21`` normalises on the
way into a model), so nodes convert at the edges with these two functions.

Frame counts: the VAE maps ``4k + 1`` pixel frames to ``k + 1`` latent
frames (latent frame 0 is pixel frame 0, latent frame ``t >= 1`` covers pixel
frames ``4t - 3 .. 4t``). :func:`latent_frames`, :func:`pixel_frames`,
:func:`is_frame_count` and :func:`nearest_frame_counts` are the one place that
arithmetic lives.
"""
from __future__ import annotations

import torch

from ...errors import InputError

LATENT_CHANNELS = 16
TEMPORAL_STRIDE = 4  # pixel frames per latent frame after the first
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


# ---------------------------------------------------------------- frame counts
def latent_frames(pixel_frames: int) -> int:
    """Latent frames Wan's VAE makes from ``pixel_frames``: ``1 + (pixel_frames - 1) // 4``."""
    _check_count("pixel frames", pixel_frames)
    return 1 + (pixel_frames - 1) // TEMPORAL_STRIDE


def pixel_frames(latent_frames: int) -> int:
    """Pixel frames decoded from ``latent_frames``: ``4 * (latent_frames - 1) + 1``."""
    _check_count("latent frames", latent_frames)
    return TEMPORAL_STRIDE * (latent_frames - 1) + 1


def is_frame_count(frames: int) -> bool:
    """Whether ``frames`` pixel frames is of the form ``4k + 1`` (k >= 0) that Wan's VAE takes."""
    return frames >= 1 and (frames - 1) % TEMPORAL_STRIDE == 0


def nearest_frame_counts(frames: int) -> tuple[int, int]:
    """The valid ``4k + 1`` counts around ``frames``: ``(lower, upper)``, ``lower`` 0 when none is below."""
    if frames < 1:
        return 0, 1
    lower = frames - (frames - 1) % TEMPORAL_STRIDE
    return lower, lower if lower == frames else lower + TEMPORAL_STRIDE


def _check_count(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(name, f"{value!r} is not a whole number of 1 or more", "an integer of 1 or more")
