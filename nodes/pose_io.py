"""The pose nodes' boundary: ComfyUI IMAGE and POSE_KEYPOINT in and out, checked.

Every check raises an :class:`InputError` that names the node input, so a
mistake on the canvas reads as one line in the UI.
"""
from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any, Callable, Sequence

import numpy as np
import torch

from .. import host
from ..errors import InputError
from ..pose.keypoints import PoseFrame, from_pose_keypoint, to_pose_keypoint

CATEGORY = "PoseAnimate/pose"
POSE_KEYPOINT = "POSE_KEYPOINT"
PROGRESS_STEPS = 100


def opencv_core(name: str) -> ModuleType:
    """A pose core module that needs OpenCV (extract, render, face_crops),
    imported when a node runs, not when the pack loads: a ComfyUI without
    opencv still loads every other node, and this node says what is missing."""
    try:
        return importlib.import_module(f"...pose.{name}", __name__)
    except ImportError as err:
        if err.name != "cv2":
            raise
        raise InputError("opencv", "is not installed",
                         "the opencv-python package (run the pack's install.py, or pip install opencv-python)"
                         ) from None


def choice(value: str, options: Sequence[str], input_name: str) -> str:
    """A dropdown value, checked (the host checks too; direct calls and API prompts may not)."""
    if value not in options:
        raise InputError(input_name, f"is '{value}'", f"one of {', '.join(options)}")
    return value


def check_smoothing(min_cutoff: float, beta: float, fps: float) -> None:
    """The One-Euro filter's settings, checked (the host checks ranges; API prompts and scripts may not)."""
    for name, value in (("min_cutoff", min_cutoff), ("fps", fps)):
        if value <= 0.0:
            raise InputError(name, f"is {value}", "more than 0")
    if beta < 0:
        raise InputError("beta", f"is {beta}", "0 or more")


def image_frames(image: Any, input_name: str) -> np.ndarray:
    """An IMAGE batch as float32 numpy ``[N, H, W, 3]`` in 0..1 (alpha dropped)."""
    if isinstance(image, torch.Tensor):
        array = image.detach().cpu().float().numpy()
    elif isinstance(image, np.ndarray):
        array = image.astype(np.float32)
    else:
        raise InputError(input_name, f"is a {type(image).__name__}", "an IMAGE batch [frames, height, width, channels]")
    if array.ndim != 4 or array.shape[-1] not in (3, 4):
        raise InputError(input_name, f"has shape {list(array.shape)}",
                         "an IMAGE batch [frames, height, width, 3 or 4 channels]")
    if array.shape[0] == 0:
        raise InputError(input_name, "is an empty batch (0 frames)", "at least one frame")
    if array.shape[1] == 0 or array.shape[2] == 0:
        raise InputError(input_name, f"has frames of {array.shape[2]}x{array.shape[1]} pixels", "a non-empty image")
    return array[..., :3]


def image_out(images: np.ndarray) -> torch.Tensor:
    """``[N, H, W, 3]`` uint8 or 0..1 floats as a ComfyUI IMAGE (float32 torch)."""
    if images.dtype == np.uint8:
        return torch.from_numpy(images.astype(np.float32) / 255.0)
    return torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))


def poses_in(data: Any, input_name: str) -> list[PoseFrame]:
    """A POSE_KEYPOINT (this pack's or another pack's, pixels or normalised) as frames."""
    frames = from_pose_keypoint(data, input_name)
    if not frames:
        raise InputError(input_name, "has no frames", "a POSE_KEYPOINT with at least one frame")
    return frames


def poses_out(frames: Sequence[PoseFrame]) -> list[dict]:
    """Frames as POSE_KEYPOINT, pixels and real confidences."""
    return to_pose_keypoint(frames)


def progress_callback(steps: int = PROGRESS_STEPS) -> Callable[[int, int], None]:
    """A ``(done, total)`` callback for the core that drives the host's progress
    bar; ``total`` may grow as the work is discovered (people per frame)."""
    bar = host.Progress(steps)

    def report(done: int, total: int) -> None:
        target = steps * done // max(total, 1)
        if target > bar.current:
            bar.update(target - bar.current)

    return report
