"""A made-up dancer: driving poses for trying the pack without a driving video.

The main job (``animate.py``) uses it when no ``--driving`` video is given, so
the whole chain (retargeting, rendering, conditioning, sampling, decoding)
runs on a fresh machine with nothing downloaded. Body and feet only, arms and
legs swinging on a slow sway; hands and face are absent (zero confidence).
"""
from __future__ import annotations

import math

import numpy as np

from .keypoints import PoseFrame, wholebody_to_people

# COCO-WholeBody indices used here
_NOSE, _EYES, _EARS = 0, (1, 2), (3, 4)
_SHOULDERS, _ELBOWS, _WRISTS = (5, 6), (7, 8), (9, 10)
_HIPS, _KNEES, _ANKLES = (11, 12), (13, 14), (15, 16)
_FEET = (17, 18, 19, 20, 21, 22)  # left big toe, small toe, heel; right big toe, small toe, heel


def _limb(start: np.ndarray, length: float, angle: float) -> np.ndarray:
    """The end of a limb ``length`` long, ``angle`` radians from hanging straight down (positive: image right)."""
    return start + length * np.array([math.sin(angle), math.cos(angle)])


def dancer_pose(phase: float, width: int, height: int) -> PoseFrame:
    """One frame of the dance at ``phase`` (radians), sized to a ``width x height`` image."""
    s = height / 512.0
    pts = np.zeros((133, 2))
    neck = np.array([width / 2 + 12 * s * math.sin(phase / 2), 150 * s])
    left, right = np.array([45 * s, 0.0]), np.array([-45 * s, 0.0])  # the person's left is the image's right
    pts[_SHOULDERS[0]], pts[_SHOULDERS[1]] = neck + left, neck + right
    pts[_NOSE] = neck + [0, -45 * s]
    pts[_EYES[0]], pts[_EYES[1]] = pts[_NOSE] + [8 * s, -8 * s], pts[_NOSE] + [-8 * s, -8 * s]
    pts[_EARS[0]], pts[_EARS[1]] = pts[_NOSE] + [20 * s, -4 * s], pts[_NOSE] + [-20 * s, -4 * s]
    pelvis = neck + [0, 130 * s]
    pts[_HIPS[0]], pts[_HIPS[1]] = pelvis + 0.6 * left, pelvis + 0.6 * right
    swing = math.sin(phase)
    for side, sign in ((0, 1.0), (1, -1.0)):  # 0: left (image right), 1: right
        arm = sign * (0.5 + 0.9 * (swing if side == 0 else -swing))
        pts[_ELBOWS[side]] = _limb(pts[_SHOULDERS[side]], 70 * s, arm)
        pts[_WRISTS[side]] = _limb(pts[_ELBOWS[side]], 65 * s, arm + sign * 0.6)
        leg = sign * (0.15 + 0.2 * (swing if side == 1 else -swing))
        pts[_KNEES[side]] = _limb(pts[_HIPS[side]], 95 * s, leg)
        pts[_ANKLES[side]] = _limb(pts[_KNEES[side]], 90 * s, leg * 0.3)
        toe = pts[_ANKLES[side]] + [sign * 18 * s, 6 * s]
        pts[_FEET[3 * side]], pts[_FEET[3 * side + 1]] = toe, toe + [-sign * 6 * s, 2 * s]
        pts[_FEET[3 * side + 2]] = pts[_ANKLES[side]] + [-sign * 6 * s, 8 * s]
    scores = np.zeros(133)
    scores[:23] = 0.95
    return PoseFrame(wholebody_to_people(pts[None], scores[None]), width, height)


def dancer(frames: int, width: int, height: int, cycles: float = 1.0) -> list[PoseFrame]:
    """``frames`` poses of the dance, ``cycles`` full swings over the clip."""
    return [dancer_pose(2 * math.pi * cycles * i / max(frames - 1, 1), width, height) for i in range(frames)]
