"""Which people to keep, and what to do with frames where nobody was found.

The animation methods drive one character, so most workflows keep one person
per frame; frames without a person must not break a clip, so they are left
empty, hold the last pose, or are interpolated between their neighbours. No
policy raises on empty frames, not even when every frame is empty.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import InputError
from .keypoints import BODY, VISIBLE, PoseFrame, empty_people

SELECT_MODES = ("largest", "index", "all")
FILL_POLICIES = ("empty", "hold", "interpolate")


def body_area(person: np.ndarray, threshold: float = VISIBLE) -> float:
    """Area of the box around a person's confident body points (0 if under two)."""
    points = person[BODY]
    points = points[points[:, 2] >= threshold, :2]
    if len(points) < 2:
        return 0.0
    span = points.max(0) - points.min(0)
    return float(span[0] * span[1])


def select_people(frames: Sequence[PoseFrame], mode: str = "largest", index: int = 0) -> list[PoseFrame]:
    """Keep the person with the largest body box (``"largest"``), the
    ``index``-th person in the frame's order (``"index"``; detector order, best
    first), or everyone (``"all"``). A frame without that person becomes empty."""
    if mode not in SELECT_MODES:
        raise InputError("person selection", f"is '{mode}'", f"one of {', '.join(SELECT_MODES)}")
    if mode == "all":
        return list(frames)
    if index < 0:
        raise InputError("person index", f"is {index}", "0 or more")
    out = []
    for frame in frames:
        if mode == "largest" and frame.count:
            pick = int(np.argmax([body_area(p) for p in frame.people]))
        else:
            pick = index
        people = frame.people[pick:pick + 1] if pick < frame.count else empty_people()
        out.append(frame.replace(people=people.copy()))
    return out


def _blend(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """Points between ``a`` and ``b`` at ``t``; a point missing at either end is
    taken from the nearer end."""
    both = (a[..., 2] > 0) & (b[..., 2] > 0)
    mixed = a * (1 - t) + b * t
    nearer = a if t <= 0.5 else b
    return np.where(both[..., None], mixed, nearer)


def fill_empty_frames(frames: Sequence[PoseFrame], policy: str = "empty") -> list[PoseFrame]:
    """Give frames without people a pose: ``"empty"`` leaves them empty,
    ``"hold"`` repeats the last pose before them (the first pose after them at
    the start of the clip), ``"interpolate"`` blends the poses before and after
    them linearly (and holds at the clip's ends). People are matched by their
    position in the frame."""
    if policy not in FILL_POLICIES:
        raise InputError("no-person policy", f"is '{policy}'", f"one of {', '.join(FILL_POLICIES)}")
    frames = list(frames)
    filled = [i for i, f in enumerate(frames) if f.count]
    if policy == "empty" or not filled:
        return frames
    out = list(frames)
    for i, frame in enumerate(frames):
        if frame.count:
            continue
        before = max((j for j in filled if j < i), default=None)
        after = min((j for j in filled if j > i), default=None)
        if policy == "hold" or before is None or after is None:
            source = frames[before if before is not None else after]
            people = source.people.copy()
        else:
            a, b = frames[before].people, frames[after].people
            n = min(len(a), len(b))
            t = (i - before) / (after - before)
            people = _blend(a[:n], b[:n], t)
            if n == 0:
                people = (a if t <= 0.5 else b).copy()
        # a pose held or blended onto a frame of another size keeps its place relative to the frame
        source_frame = frames[before if before is not None else after]
        if (source_frame.width, source_frame.height) != (frame.width, frame.height):
            scale = np.array([frame.width / source_frame.width, frame.height / source_frame.height])
            people = people.copy()
            people[..., :2] *= scale
        out[i] = frame.replace(people=people)
    return out
