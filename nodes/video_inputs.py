"""What the method nodes share: their VAE and prompt inputs, and checks of video sizes and frame counts as
Wan's VAE and DiT take them."""
from __future__ import annotations

import logging

import torch

from .. import memory_budget
from ..errors import InputError
from ..models.wan.latent_space import is_frame_count, latent_frames, nearest_frame_counts, pixel_frames

log = logging.getLogger(__name__)

PIXELS_PER_TOKEN = 16  # 8 (VAE) x 2 (DiT patch)
VAE_TYPES = "VAE,POSEANIMATE_VAE"  # inputs that take the host's VAE or the pack's streaming one
VAE_INPUT = (VAE_TYPES, {"tooltip": "The Wan 2.1 VAE: the host's Load VAE or Load Wan VAE (PoseAnimate)."})


def prompt_inputs(negative_tooltip: str = "The negative prompt (used when cfg > 1).") -> dict:
    """The positive and negative CONDITIONING inputs of a method node (the host's umT5 encodes them)."""
    return {"positive": ("CONDITIONING", {"tooltip": "The prompt, from CLIP Text Encode with the umT5 text encoder "
                                                     "(Load CLIP, type wan)."}),
            "negative": ("CONDITIONING", {"tooltip": negative_tooltip})}


def check_video_size(height: int, width: int, input_name: str) -> None:
    """Width and height multiples of 16; else the nearest valid sizes."""
    for name, size in (("height", height), ("width", width)):
        if size % PIXELS_PER_TOKEN:
            lower = size - size % PIXELS_PER_TOKEN
            raise InputError(input_name, f"{name} {size} is not a multiple of {PIXELS_PER_TOKEN}",
                             f"a {name} of {lower or PIXELS_PER_TOKEN} or {lower + PIXELS_PER_TOKEN} pixels")


def whole_video_frames(available: int) -> int:
    """frames = 0: every frame there is, rounded down to the 4k+1 frames Wan's VAE takes."""
    count = pixel_frames(latent_frames(available))
    if count < available:
        log.info("frames 0: using %d of the %d frames (Wan videos have 4k+1 frames)", count, available)
    return count


def check_frame_count(count: int, input_name: str = "frames") -> None:
    """A 4k+1 frame count within the pack's bound; else the nearest valid counts."""
    memory_budget.check_frames(count, input_name)
    if not is_frame_count(count):
        lower, upper = nearest_frame_counts(count)
        raise InputError(input_name, f"{count} frames is not of the form 4k+1 that Wan's VAE needs",
                         f"{lower} or {upper} frames" if lower > 0 else "5 frames")


def video_frames(images: torch.Tensor, input_name: str) -> torch.Tensor:
    """An IMAGE batch of at least one RGB frame, alpha dropped."""
    if not torch.is_tensor(images) or images.dim() != 4 or images.shape[0] == 0 or images.shape[-1] not in (3, 4):
        raise InputError(input_name, f"has shape {list(getattr(images, 'shape', []))}",
                         "an IMAGE batch [frames, height, width, 3] with at least one frame")
    return images[..., :3]
