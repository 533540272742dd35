"""The pose nodes' canvas preview: what web/js/pose_preview.js plays inside the node.

A node returns ``{"ui": preview_ui(...), "result": (...)}``; the host sends the
``ui`` part to the front end after the node ran (and keeps it in /history).
The browser draws the skeletons itself, over the frames saved as small temp
JPEGs, so the payload stays small: at most ``MAX_FRAMES`` frames (every k-th
frame of a long video), frames at most ``MAX_SIDE`` pixels on their long side,
keypoints rounded to 0.1 px, parts without any point left out.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from .. import host
from ..pose.keypoints import BODY, FACE, FEET, LEFT_HAND, RIGHT_HAND, VISIBLE, PoseFrame

PREVIEW_KEY = "poseanimate_pose_preview"   # the UI output's key; web/js/pose_preview.js reads it
VERSION = 1
MAX_FRAMES = 64
MAX_SIDE = 256
MAX_PEOPLE = 8                # "all" people on a crowded frame: the first 8 are drawn
PARTS = (("body", BODY), ("feet", FEET), ("left_hand", LEFT_HAND), ("right_hand", RIGHT_HAND), ("face", FACE))


def frame_indices(count: int, max_frames: int = MAX_FRAMES) -> list[int]:
    """Every k-th frame, k the smallest stride that keeps at most ``max_frames``."""
    stride = max(1, math.ceil(count / max_frames))
    return list(range(0, count, stride))


def downscale(images: np.ndarray, max_side: int = MAX_SIDE) -> np.ndarray:
    """uint8 ``[N, H, W, 3]`` shrunk (area averaging) so the long side is at most ``max_side``."""
    h, w = images.shape[1:3]
    scale = max_side / max(h, w)
    if scale >= 1.0:
        return np.ascontiguousarray(images)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    small = torch.nn.functional.interpolate(torch.from_numpy(images).permute(0, 3, 1, 2).float(), size=size,
                                            mode="area")
    return small.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def _uint8(images: np.ndarray | torch.Tensor) -> np.ndarray:
    """uint8 numpy frames from uint8 numpy or a ComfyUI IMAGE (float 0..1)."""
    if isinstance(images, torch.Tensor):
        return (images[..., :3].detach().cpu().float().clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    return np.asarray(images)[..., :3].astype(np.uint8)


def _points(part: np.ndarray) -> list[float]:
    """``[x, y, c] * n`` flat: pixels to 0.1, confidences to 0.001, absent points as zeros."""
    out: list[float] = []
    for x, y, c in part:
        out.extend((round(float(x), 1), round(float(y), 1), round(float(c), 3)) if c > 0 else (0, 0, 0))
    return out


def person_payload(person: np.ndarray) -> dict[str, list[float]]:
    """One person ``[136, 3]`` as its parts that have at least one point."""
    return {name: _points(person[part]) for name, part in PARTS if (person[part][:, 2] > 0).any()}


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _note(total: int, shown: list[int], image_size: tuple[int, int] | None, source: tuple[int, int] | None) -> str:
    """What the preview leaves out, in words for the widget (empty when nothing)."""
    parts = []
    if len(shown) < total:
        stride = shown[1] - shown[0] if len(shown) > 1 else total
        parts.append(f"every {_ordinal(stride)} of {total} frames")
    if image_size is not None and source is not None and image_size != source:
        parts.append(f"frames shrunk to {image_size[0]}x{image_size[1]}")
    return "preview: " + ", ".join(parts) if parts else ""


def preview_ui(kind: str, poses: Sequence[PoseFrame] | None = None, images: np.ndarray | torch.Tensor | None = None,
               fps: float = 30.0, max_frames: int = MAX_FRAMES, max_side: int = MAX_SIDE) -> dict[str, list[dict]]:
    """The ``ui`` dict of a pose node: skeletons (``poses``), frames (uint8 ``images``), or both.

    ``poses`` and ``images`` (uint8 numpy, or an IMAGE tensor; when both are
    given, the same frames) are sampled before anything is copied. Frames go
    to the host's temp folder through :func:`host.temp_preview_images` (no files
    outside the host); skeletons stay in the pixels of their own canvas, which
    the browser maps onto the frame it draws.
    """
    total = len(poses) if poses is not None else len(images)
    shown = frame_indices(total, max_frames)
    payload: dict = {"version": VERSION, "kind": kind, "total_frames": total, "frame_indices": shown,
                     "fps": float(fps), "threshold": VISIBLE, "images": [], "image_size": None, "frames": []}
    source = None
    if images is not None:
        small = downscale(_uint8(images[shown]), max_side)
        payload["images"] = host.temp_preview_images(small, prefix=f"poseanimate_{kind}")
        payload["image_size"] = [int(small.shape[2]), int(small.shape[1])]
        source = (int(images.shape[2]), int(images.shape[1]))
    if poses is not None:
        payload["frames"] = [{"w": poses[i].width, "h": poses[i].height,
                              "people": [person_payload(p) for p in poses[i].people[:MAX_PEOPLE]]} for i in shown]
    size = tuple(payload["image_size"]) if payload["image_size"] else None
    payload["note"] = _note(total, shown, size, source)
    return {PREVIEW_KEY: [payload]}
