"""The person mask for Wan2.2-Animate's replacement mode, from poses.

The reference's preprocessing (``wan/modules/animate/preprocess``) segments
the person with SAM 2 prompted by body keypoints, then grows the mask: a
dilation with a ``k x k`` square kernel (``iterations`` 3, ``k`` 7) and
``get_aug_mask``, which cuts the mask's bounding box into a ``w_len x h_len``
grid and fills every cell the mask touches (1 x 1 by default: the whole
box). Here the segmentation is the filled convex hull of the person's
keypoints, widened by a margin (keypoints sit inside the silhouette: the head
reaches above the eyes, limbs are wider than their joints); the growing is
the reference's, exactly (:func:`coarsen_mask`).

A frame without the person takes the nearest frame's mask (the person is
still there, the detector missed them); no person in any frame is an error.
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from ...errors import InputError
from ...pose.keypoints import VISIBLE, PoseFrame

DILATE_ITERATIONS, DILATE_KERNEL = 3, 7  # the reference preprocessing's defaults
GRID_W, GRID_H = 1, 1
HULL_MARGIN = 0.06  # of the keypoints' height, added around the hull


def coarsen_mask(mask: np.ndarray, iterations: int = DILATE_ITERATIONS, kernel: int = DILATE_KERNEL,
                 w_len: int = GRID_W, h_len: int = GRID_H) -> np.ndarray:
    """The reference's growing of a 0/1 ``[H, W]`` mask: square dilation, then the grid fill.

    With ``iterations`` 0 the mask is returned as is (the reference then skips
    both steps). Grid cells span ``[start, start + bbox_size // len)`` from
    the bounding box's first pixel, clipped at (and excluding) its last one.
    """
    mask = np.ascontiguousarray(mask, dtype=np.uint8)
    if iterations <= 0:
        return mask.copy()
    grown = cv2.dilate(mask, np.ones((kernel, kernel), np.uint8), iterations=iterations)
    ys, xs = np.nonzero(grown)
    if len(xs) == 0:
        return grown
    x0, x1, y0, y1 = int(xs.min()), int(xs.max()), int(ys.min()), int(ys.max())
    w_step = max(1, int((x1 - x0) / w_len))
    h_step = max(1, int((y1 - y0) / h_len))
    out = grown.copy()
    for w_start in range(x0, x1, w_step):
        w_end = min(w_start + w_step, x1)
        for h_start in range(y0, y1, h_step):
            h_end = min(h_start + h_step, y1)
            if grown[h_start:h_end, w_start:w_end].any():
                out[h_start:h_end, w_start:w_end] = 1
    return out


def hull_mask(points: np.ndarray, height: int, width: int, margin: float = HULL_MARGIN) -> np.ndarray:
    """The filled convex hull of ``[K, 2]`` pixel points, grown by ``margin`` x their height (uint8 0/1)."""
    mask = np.zeros((height, width), np.uint8)
    hull = cv2.convexHull(np.round(points).astype(np.int32))
    cv2.fillConvexPoly(mask, hull, 1)
    radius = int(round(margin * float(np.ptp(points[:, 1]))))
    if radius > 0:
        disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        mask = cv2.dilate(mask, disc)
    return mask


def pose_mask(frames: Sequence[PoseFrame], size: tuple[int, int], person: int = 0, margin: float = HULL_MARGIN,
              iterations: int = DILATE_ITERATIONS, kernel: int = DILATE_KERNEL, w_len: int = GRID_W,
              h_len: int = GRID_H) -> np.ndarray:
    """Person masks ``[N, height, width]`` (float32 0/1; 1 = the person to replace) for ``size = (height, width)``.

    Keypoints above the drawing threshold (body, feet, hands, face) of the
    ``person``-th person, scaled from each frame's size to ``size``, give the
    hull (:func:`hull_mask`), which is grown as the reference grows SAM's
    mask (:func:`coarsen_mask`).
    """
    height, width = (int(s) for s in size)
    if height < 1 or width < 1:
        raise InputError("mask size", f"{width}x{height} is empty", "the video's width and height")
    if not frames:
        raise InputError("poses", "are empty", "one pose frame per video frame")
    for name, value, lowest in (("mask dilation iterations", iterations, 0), ("mask dilation kernel", kernel, 1),
                                ("mask grid columns", w_len, 1), ("mask grid rows", h_len, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
            raise InputError(name, f"{value!r} is not a whole number of {lowest} or more", f"an integer >= {lowest}")
    masks: list[np.ndarray | None] = []
    for frame in frames:
        mask = None
        if frame.count > person:
            people = frame.people[person]
            points = people[people[:, 2] > VISIBLE, :2] * (width / frame.width, height / frame.height)
            if len(points) >= 3 and np.ptp(points[:, 0]) > 0 and np.ptp(points[:, 1]) > 0:
                mask = coarsen_mask(hull_mask(points, height, width, margin), iterations, kernel, w_len, h_len)
        masks.append(mask)
    found = [i for i, m in enumerate(masks) if m is not None]
    if not found:
        raise InputError("poses", f"show no person {person} in any frame",
                         "poses with the person to replace (at least three visible keypoints)")
    filled = [m if m is not None else masks[min(found, key=lambda j: (abs(j - i), j))] for i, m in enumerate(masks)]
    return np.stack(filled).astype(np.float32)
