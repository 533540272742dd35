"""Which people to keep, and what to do with frames where nobody was found.

The animation methods drive one character, so most workflows keep one person
per frame; frames without a person must not break a clip, so they are left
empty, hold the last pose, or are interpolated between their neighbours. No
policy raises on empty frames, not even when every frame is empty.

People are **tracked** across frames (:func:`track_ids`): a detector lists the
people of each frame in its own order, which changes when two people cross, so
"the largest" or "the k-th" person is decided once per video, on tracks, and
that track is followed in every frame. Retargeting, face crops and masks all
choose their person through :func:`select_people`.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import InputError
from .keypoints import BODY, VISIBLE, PoseFrame, empty_people

SELECT_MODES = ("largest", "index", "all")
FILL_POLICIES = ("empty", "hold", "interpolate")
MAX_JUMP = 0.5
"""A person moves at most this many body sizes (their box's diagonal) per frame
and stays the same track; a larger jump starts a new track."""


def body_area(person: np.ndarray, threshold: float = VISIBLE) -> float:
    """Area of the box around a person's confident body points (0 if under two)."""
    points = person[BODY]
    points = points[points[:, 2] >= threshold, :2]
    if len(points) < 2:
        return 0.0
    span = points.max(0) - points.min(0)
    return float(span[0] * span[1])


def _box(person: np.ndarray, threshold: float) -> np.ndarray | None:
    points = person[BODY]
    points = points[points[:, 2] >= threshold, :2]
    if len(points) < 2:
        return None
    return np.concatenate([points.min(0), points.max(0)])


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    inter = np.clip(np.minimum(a[2:], b[2:]) - np.maximum(a[:2], b[:2]), 0, None).prod()
    union = np.prod(a[2:] - a[:2]) + np.prod(b[2:] - b[:2]) - inter
    return float(inter / union) if union > 0 else 0.0


def _jump(track: np.ndarray, person: np.ndarray, threshold: float) -> float:
    """Mean distance of the body points both poses have, in body sizes of ``track``."""
    box = _box(track, threshold)
    both = (track[BODY, 2] >= threshold) & (person[BODY, 2] >= threshold)
    if box is None or both.sum() < 2:
        return np.inf
    size = max(float(np.linalg.norm(box[2:] - box[:2])), 1e-9)
    return float(np.linalg.norm(track[BODY][both, :2] - person[BODY][both, :2], axis=1).mean() / size)


def track_ids(frames: Sequence[PoseFrame], max_jump: float = MAX_JUMP,
              threshold: float = VISIBLE) -> list[np.ndarray]:
    """The track of every person of every frame: ``ids[t][j]`` for person ``j`` of frame ``t``.

    A person continues the track whose pose, predicted from its last pose and
    velocity, is nearest, measured as the mean distance of their shared confident body points in body sizes (the
    track's box diagonal) minus the boxes' overlap (IoU); pairs are taken
    nearest first, and a pair further apart than ``max_jump`` body sizes per
    frame since the track was last seen (frames in between count) is no match:
    that person starts a new track. Tracks are numbered in order of first
    appearance (within a frame, in the detector's order), so track 0 is the
    detector's first person of the first frame with anyone.
    """
    last: list[tuple[np.ndarray, int, np.ndarray]] = []     # per track: last pose, frame seen, velocity
    out = []
    for t, frame in enumerate(frames):
        ids = np.full(frame.count, -1, dtype=int)
        pairs = []
        for j, person in enumerate(frame.people):
            box = _box(person, threshold)
            for k, (pose, seen, velocity) in enumerate(last):
                predicted = pose.copy()
                predicted[:, :2] += velocity * (t - seen)
                jump = _jump(predicted, person, threshold)
                if jump <= max_jump * (t - seen):
                    other = _box(predicted, threshold)
                    overlap = _iou(box, other) if box is not None and other is not None else 0.0
                    pairs.append((jump - overlap, j, k))
        taken_people, taken_tracks = set(), set()
        for _, j, k in sorted(pairs):
            if j in taken_people or k in taken_tracks:
                continue
            ids[j] = k
            taken_people.add(j)
            taken_tracks.add(k)
        for j in range(frame.count):
            person = frame.people[j]
            if ids[j] < 0:
                ids[j] = len(last)
                last.append((person, t, np.zeros((len(person), 2))))
            else:
                pose, seen, _ = last[ids[j]]
                both = ((pose[:, 2] >= threshold) & (person[:, 2] >= threshold))[:, None]
                velocity = np.where(both, (person[:, :2] - pose[:, :2]) / (t - seen), 0.0)
                last[ids[j]] = (person, t, velocity)
        out.append(ids)
    return out


def select_people(frames: Sequence[PoseFrame], mode: str = "largest", index: int = 0,
                  max_jump: float = MAX_JUMP) -> list[PoseFrame]:
    """Keep one tracked person in every frame, or everyone.

    ``"largest"``: the track whose body boxes have the largest total area over
    the video; ``"index"``: track ``index`` (tracks in order of first
    appearance, see :func:`track_ids`: 0 is the detector's best-ranked person
    of the first frame with anyone); ``"all"``: everyone, each frame's people
    in track order. A frame without that person becomes empty. A video with at
    most one person per frame is one person: ``"largest"`` and ``"index"`` 0
    keep every frame's person (``"index"`` above 0 finds nobody).
    """
    if mode not in SELECT_MODES:
        raise InputError("person selection", f"is '{mode}'", f"one of {', '.join(SELECT_MODES)}")
    if mode != "all" and index < 0:
        raise InputError("person index", f"is {index}", "0 or more")
    frames = list(frames)
    if all(f.count <= 1 for f in frames):
        if mode == "index" and index > 0:
            return [f.replace(people=empty_people()) for f in frames]
        return [f.replace(people=f.people.copy()) for f in frames]
    ids = track_ids(frames, max_jump)
    if mode == "all":
        return [f.replace(people=f.people[np.argsort(i, kind="stable")].copy()) for f, i in zip(frames, ids)]
    if mode == "largest":
        total: dict[int, float] = {}
        for frame, frame_ids in zip(frames, ids):
            for person, k in zip(frame.people, frame_ids):
                total[int(k)] = total.get(int(k), 0.0) + body_area(person)
        index = max(total, key=lambda k: (total[k], -k)) if total else 0
    out = []
    for frame, frame_ids in zip(frames, ids):
        pick = np.flatnonzero(frame_ids == index)
        out.append(frame.replace(people=frame.people[pick[:1]].copy() if len(pick) else empty_people()))
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
