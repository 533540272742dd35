"""Images the methods take, fitted to the video: shared by every method whose reference image must match the
pose video's size (UniAnimate-DiT's reference image and reference pose, Wan2.2-Animate's reference image).

Core (plain torch). Images are ComfyUI IMAGE tensors (channels last, floats in 0..1).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import InputError

__all__ = ["ASPECT_TOLERANCE", "fit_image"]

ASPECT_TOLERANCE = 0.02  # relative difference of width/height ratios treated as the same shape


def fit_image(image: torch.Tensor, height: int, width: int, name: str = "reference pose") -> torch.Tensor:
    """One image ``[H, W, 3]`` at the video's size: resized when only its size differs, refused when its shape does."""
    if torch.is_tensor(image) and image.dim() == 4 and image.shape[0] == 1:
        image = image[0]
    if not torch.is_tensor(image) or not image.is_floating_point() or image.dim() != 3 or image.shape[-1] != 3:
        raise InputError(name, f"has shape {list(getattr(image, 'shape', []))}",
                         "one IMAGE [height, width, 3], floats in 0..1")
    got_h, got_w = image.shape[:2]
    if (got_h, got_w) == (height, width):
        return image
    if abs((got_w / got_h) / (width / height) - 1.0) > ASPECT_TOLERANCE:
        raise InputError(name, f"is {got_w}x{got_h} pixels, a different shape from the "
                         f"{width}x{height} video",
                         f"an image of {width}x{height} pixels (or the same aspect ratio): crop or pad it first")
    resized = F.interpolate(image.permute(2, 0, 1).unsqueeze(0).float(), size=(height, width), mode="bilinear",
                            align_corners=False, antialias=True)
    return resized[0].permute(1, 2, 0).clamp(0.0, 1.0)
