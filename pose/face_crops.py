"""Face crops for Wan2.2-Animate's face encoder.

Wan2.2-Animate drives facial expression with a 512x512 crop of the driving
face per frame. The box is the face landmarks' bounding box grown to 1.3x its
area, keeping its aspect ratio, with three quarters of the extra height added
above (forehead) and one quarter below, clipped to the image and truncated to
whole pixels, as its preprocessing does; the crop is then stretched to
512x512. A frame without a usable face borrows the box of the nearest frame
that has one.
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from ..errors import InputError
from .keypoints import FACE, FACE_LANDMARKS, PoseFrame
from .people import select_people


def face_box(landmarks: np.ndarray, image_hw: tuple[int, int], scale: float = 1.3) -> tuple[int, int, int, int] | None:
    """``(x1, y1, x2, y2)`` around ``[K, 2]`` landmarks in image pixels, or None
    when they span no area."""
    h, w = image_hw
    (min_x, min_y), (max_x, max_y) = landmarks.min(axis=0), landmarks.max(axis=0)
    width, height = max_x - min_x, max_y - min_y
    if width <= 0 or height <= 0:
        return None
    area = width * height * scale
    new_w = np.sqrt(area * (width / height))
    new_h = np.sqrt(area * (height / width))
    grow_w = (new_w - width) / 2
    grow_h = (new_h - height) / 4
    x1, x2 = max(min_x - grow_w, 0), min(max_x + grow_w, w)
    y1, y2 = max(min_y - 3 * grow_h, 0), min(max_y + grow_h, h)
    box = int(x1), int(y1), int(x2), int(y2)
    return box if box[2] > box[0] and box[3] > box[1] else None


def face_boxes(frames: Sequence[PoseFrame], image_hw: tuple[int, int], scale: float = 1.3, person: int = 0,
               min_confidence: float = 0.0) -> list[tuple[int, int, int, int]]:
    """One face box per frame (image pixels) for tracked person ``person``
    (:func:`~.people.select_people`, "index": the same person in every
    frame), using the 68 landmarks with confidence above ``min_confidence``
    (Wan uses all of them). Frames without a face take the nearest frame's box; if no
    frame has a face this is an :class:`InputError`."""
    h, w = image_hw
    boxes: list[tuple[int, int, int, int] | None] = []
    for frame in select_people(frames, "index", person):
        box = None
        if frame.count:
            lmks = frame.people[0][FACE][:FACE_LANDMARKS]
            keep = lmks[:, 2] > min_confidence
            if keep.sum() >= 2:
                pts = lmks[keep, :2] * (w / frame.width, h / frame.height)
                box = face_box(pts, image_hw, scale)
        boxes.append(box)
    found = [i for i, b in enumerate(boxes) if b is not None]
    if not found:
        raise InputError("face crops", "found no face in any frame",
                         "poses with face landmarks (extract poses with a whole-body model)")
    return [b if b is not None else boxes[min(found, key=lambda j: (abs(j - i), j))] for i, b in enumerate(boxes)]


def crop_faces(images: np.ndarray, frames: Sequence[PoseFrame], size: int = 512, scale: float = 1.3,
               person: int = 0) -> np.ndarray:
    """``[N, size, size, C]`` face crops of ``images`` (``[N, H, W, C]``, any dtype)."""
    if len(images) != len(frames):
        raise InputError("face crops", f"got {len(images)} images and {len(frames)} poses",
                         "one pose frame per image")
    boxes = face_boxes(frames, images.shape[1:3], scale, person)
    out = [cv2.resize(np.ascontiguousarray(img[y1:y2, x1:x2]), (size, size))
           for img, (x1, y1, x2, y2) in zip(images, boxes)]
    return np.stack(out).reshape(len(out), size, size, -1)
