"""The pose data model: one array per frame, and POSE_KEYPOINT conversion.

Inside the pack a frame's people are one ``float64`` array ``[P, 136, 3]`` of
``(x, y, confidence)`` in pixels of the ``width x height`` frame they came
from. The 136 points are laid out as::

    0..17    body, OpenPose-18 order (nose, neck, right shoulder, ...)
    18..23   feet, COCO-WholeBody order (left big toe, left small toe, left heel,
             right big toe, right small toe, right heel)
    24..44   left hand, 21 points (OpenPose/COCO hand order, wrist first)
    45..65   right hand
    66..135  face, 70 points: 68 landmarks, then right and left pupil

A confidence of 0 means "no point" (the coordinates are meaningless); any
other value is a real model confidence, kept as it came.

At the node boundary poses are ComfyUI's POSE_KEYPOINT (the OpenPose JSON that
comfyui_controlnet_aux writes): a list with one dict per frame, ``{"people":
[{"pose_keypoints_2d": [x, y, c] * 18, "face_keypoints_2d": ..., ...}],
"canvas_width": W, "canvas_height": H}``. Some writers store coordinates
normalised to 0..1, others in pixels; :func:`from_pose_keypoint` accepts both
(a frame is normalised when every present point lies within 0..1) and
:func:`to_pose_keypoint` always writes pixels. Feet, which OpenPose-18 has no
place for, travel in an extra ``"foot_keypoints_2d"`` field that other packs
ignore. A frame that reaches :func:`to_pose_keypoint` unchanged is written back
exactly as it was read, so another pack's list round-trips untouched.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from ..errors import InputError

BODY_COUNT, FOOT_COUNT, HAND_COUNT, FACE_COUNT = 18, 6, 21, 70
FACE_LANDMARKS = 68
BODY = slice(0, 18)
FEET = slice(18, 24)
LEFT_HAND = slice(24, 45)
RIGHT_HAND = slice(45, 66)
FACE = slice(66, 136)
POINT_COUNT = 136

VISIBLE = 0.3
"""DWPose's confidence threshold for drawing and measuring a point."""

BODY_NAMES = ("nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder",
              "left_elbow", "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip",
              "left_knee", "left_ankle", "right_eye", "left_eye", "right_ear", "left_ear")
FOOT_NAMES = ("left_big_toe", "left_small_toe", "left_heel", "right_big_toe", "right_small_toe",
              "right_heel")

# POSE_KEYPOINT person fields: (name, slice in our layout, accepted point counts)
FIELDS = (
    ("pose_keypoints_2d", BODY, (BODY_COUNT,)),
    ("foot_keypoints_2d", FEET, (FOOT_COUNT,)),
    ("hand_left_keypoints_2d", LEFT_HAND, (HAND_COUNT,)),
    ("hand_right_keypoints_2d", RIGHT_HAND, (HAND_COUNT,)),
    ("face_keypoints_2d", FACE, (FACE_COUNT, FACE_LANDMARKS)),
)

# COCO-WholeBody (133) index for each OpenPose-18 body point; -1 is the neck.
_WHOLEBODY_BODY = (0, -1, 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3)
_WHOLEBODY_FEET = tuple(range(17, 23))
_WHOLEBODY_FACE = tuple(range(23, 91)) + (2, 1)   # 68 landmarks, right eye, left eye as pupils
_WHOLEBODY_LEFT_HAND = tuple(range(91, 112))
_WHOLEBODY_RIGHT_HAND = tuple(range(112, 133))


def empty_people(count: int = 0) -> np.ndarray:
    """``count`` people with no points."""
    return np.zeros((count, POINT_COUNT, 3), dtype=np.float64)


@dataclass(eq=False)
class PoseFrame:
    """The people in one frame, in pixels of a ``width x height`` image."""

    people: np.ndarray
    width: int
    height: int
    source: dict | None = field(default=None, repr=False)
    _as_read: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        people = np.asarray(self.people, dtype=np.float64)
        if people.ndim != 3 or people.shape[1:] != (POINT_COUNT, 3):
            raise ValueError(f"people must be [P, {POINT_COUNT}, 3], got {people.shape}")
        self.people = people
        self.width, self.height = int(self.width), int(self.height)

    @property
    def count(self) -> int:
        return int(self.people.shape[0])

    def replace(self, people: np.ndarray | None = None, width: int | None = None,
                height: int | None = None) -> "PoseFrame":
        """A new frame with some fields swapped. It remembers where it was read
        from, so if nothing really changed it is still written back verbatim."""
        return PoseFrame(self.people.copy() if people is None else people,
                         self.width if width is None else width,
                         self.height if height is None else height,
                         self.source, self._as_read)

    def unchanged(self) -> bool:
        """Whether this frame still holds exactly what was read from ``source``."""
        if self.source is None or self._as_read is None:
            return False
        return (self.width == _canvas(self.source, "canvas_width")
                and self.height == _canvas(self.source, "canvas_height")
                and self.people.shape == self._as_read.shape
                and np.array_equal(self.people, self._as_read))


# ---------------------------------------------------------------- 133 -> ours
def wholebody_to_people(points: np.ndarray, scores: np.ndarray, neck: str = "dwpose") -> np.ndarray:
    """COCO-WholeBody keypoints ``[P, 133, 2]`` and scores ``[P, 133]`` to our
    ``[P, 136, 3]`` layout.

    The neck is the mean of the shoulders. Its confidence follows the model's
    reference pipeline: ``"dwpose"`` (DWPose/UniAnimate) gives 1 when both
    shoulders are above 0.3 and 0 otherwise; ``"mean"`` (Wan2.2-Animate) gives
    the mean of the shoulders' confidences. The face's two pupils are the body's
    right and left eye, as comfyui_controlnet_aux pads its 68 landmarks to 70.
    Points whose score is not positive become "no point" (all zero).
    """
    points = np.asarray(points, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    if points.ndim != 3 or points.shape[1:] != (133, 2) or scores.shape != points.shape[:2]:
        raise ValueError(f"expected [P, 133, 2] points and [P, 133] scores, got {points.shape}, {scores.shape}")
    full = np.concatenate([points, scores[..., None]], axis=-1)
    out = empty_people(points.shape[0])
    for dst, src in enumerate(_WHOLEBODY_BODY):
        if src >= 0:
            out[:, dst] = full[:, src]
    out[:, 1, :2] = (full[:, 5, :2] + full[:, 6, :2]) / 2
    if neck == "dwpose":
        out[:, 1, 2] = ((full[:, 5, 2] > VISIBLE) & (full[:, 6, 2] > VISIBLE)).astype(np.float64)
    elif neck == "mean":
        out[:, 1, 2] = (full[:, 5, 2] + full[:, 6, 2]) / 2
    else:
        raise ValueError(f"unknown neck rule {neck!r}")
    out[:, FEET] = full[:, _WHOLEBODY_FEET]
    out[:, LEFT_HAND] = full[:, _WHOLEBODY_LEFT_HAND]
    out[:, RIGHT_HAND] = full[:, _WHOLEBODY_RIGHT_HAND]
    out[:, FACE] = full[:, _WHOLEBODY_FACE]
    out[out[..., 2] <= 0] = 0.0          # no response: no point
    return out


# ---------------------------------------------------------------- POSE_KEYPOINT -> frames
def _canvas(frame: dict, key: str) -> int | None:
    try:
        return int(frame[key])
    except (KeyError, TypeError, ValueError):
        return None


def _flat_numbers(value: Any, where: str) -> list[float] | None:
    """A field's numbers as a flat list; None for an absent part."""
    if value is None:
        return None
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, (list, tuple)):
        raise InputError(where, f"is a {type(value).__name__}", "a flat list of numbers x, y, confidence")
    if len(value) == 0:
        return None
    if isinstance(value[0], (list, tuple)):          # nested [[x, y, c], ...] also seen in the wild
        flat = []
        for item in value:
            if not isinstance(item, (list, tuple)) or len(item) != 3:
                raise InputError(where, "mixes nested points of the wrong size", "points of 3 numbers x, y, confidence")
            flat.extend(item)
        value = flat
    try:
        numbers = [float(v) for v in value]
    except (TypeError, ValueError):
        raise InputError(where, "holds something that is not a number", "numbers x, y, confidence") from None
    if not all(np.isfinite(numbers)):
        raise InputError(where, "holds NaN or infinite numbers", "finite coordinates and confidences")
    return numbers


def _read_person(person: Any, where: str) -> np.ndarray:
    if not isinstance(person, dict):
        raise InputError(where, f"is a {type(person).__name__}", "a dict with pose_keypoints_2d and the other fields")
    row = np.zeros((POINT_COUNT, 3), dtype=np.float64)
    for name, part, counts in FIELDS:
        field_where = f"{where} field '{name}'"
        numbers = _flat_numbers(person.get(name), field_where)
        if numbers is None:
            continue
        if len(numbers) not in tuple(3 * c for c in counts):
            expected = " or ".join(f"{3 * c} numbers ({c} points x 3)" for c in counts)
            raise InputError(field_where, f"has {len(numbers)} numbers", expected)
        values = np.asarray(numbers, dtype=np.float64).reshape(-1, 3)
        row[part][: len(values)] = values
    row[row[:, 2] <= 0] = 0.0
    return row


def _is_normalised(people: np.ndarray) -> bool:
    present = people[..., 2] > 0
    if not present.any():
        return False
    return bool(np.abs(people[..., :2][present]).max() <= 1.0)


def from_pose_keypoint(data: Any, input_name: str = "pose_keypoint") -> list[PoseFrame]:
    """ComfyUI POSE_KEYPOINT (a list of frame dicts, or one dict) to frames.

    Coordinates normalised to 0..1 are scaled to pixels by the canvas size.
    Absent parts (None or empty lists) become points with confidence 0.
    """
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, (list, tuple)):
        raise InputError(input_name, f"is a {type(data).__name__}",
                         "a POSE_KEYPOINT list with one dict per frame")
    frames = []
    for f, frame in enumerate(data):
        where = f"{input_name} frame {f}"
        if not isinstance(frame, dict):
            raise InputError(where, f"is a {type(frame).__name__}",
                             "a dict with 'people', 'canvas_width' and 'canvas_height'")
        width, height = _canvas(frame, "canvas_width"), _canvas(frame, "canvas_height")
        if width is None or height is None or width <= 0 or height <= 0:
            raise InputError(where, f"has canvas {frame.get('canvas_width')!r} x {frame.get('canvas_height')!r}",
                             "positive integer 'canvas_width' and 'canvas_height'")
        people_in = frame.get("people") or []
        if not isinstance(people_in, (list, tuple)):
            raise InputError(f"{where} 'people'", f"is a {type(people_in).__name__}", "a list of person dicts")
        people = empty_people(len(people_in))
        for p, person in enumerate(people_in):
            people[p] = _read_person(person, f"{where} person {p}")
        if _is_normalised(people):
            present = people[..., 2] > 0
            people[..., 0] = np.where(present, people[..., 0] * width, 0.0)
            people[..., 1] = np.where(present, people[..., 1] * height, 0.0)
        frames.append(PoseFrame(people, width, height, source=frame, _as_read=people.copy()))
    return frames


# ---------------------------------------------------------------- frames -> POSE_KEYPOINT
def _write_points(points: np.ndarray, confidence: str, threshold: float) -> list[float]:
    out: list[float] = []
    for x, y, c in points:
        if confidence == "binary":
            out.extend((float(x), float(y), 1.0) if c >= threshold else (0.0, 0.0, 0.0))
        else:
            out.extend((float(x), float(y), float(c)) if c > 0 else (0.0, 0.0, 0.0))
    return out


def to_pose_keypoint(frames: Sequence[PoseFrame], confidence: str = "real",
                     threshold: float = VISIBLE) -> list[dict]:
    """Frames to ComfyUI POSE_KEYPOINT, coordinates in pixels.

    ``confidence="real"`` writes the model confidences; ``"binary"`` writes 1
    for points at or above ``threshold`` and drops the rest, which is what
    comfyui_controlnet_aux's own drawing nodes expect (they skip any point below
    1.0). Unchanged frames are written back exactly as they were read.
    """
    if confidence not in ("real", "binary"):
        raise ValueError(f"confidence must be 'real' or 'binary', got {confidence!r}")
    out = []
    for frame in frames:
        if confidence == "real" and frame.unchanged():
            out.append(copy.deepcopy(frame.source))
            continue
        people = []
        for person in frame.people:
            entry = {}
            for name, part, _ in FIELDS:
                entry[name] = _write_points(person[part], confidence, threshold)
            people.append(entry)
        out.append({"people": people, "canvas_width": int(frame.width), "canvas_height": int(frame.height)})
    return out


# ---------------------------------------------------------------- helpers
def scale_frames(frames: Iterable[PoseFrame], width: int, height: int, mode: str = "stretch") -> list[PoseFrame]:
    """Move frames onto a ``width x height`` canvas: ``"stretch"`` scales x and
    y separately; ``"letterbox"`` keeps the aspect ratio and centres the pose
    (Wan2.2-Animate's ``padding_resize``); ``"crop"`` keeps the aspect ratio and
    fills the canvas, centred (points past the edges keep their coordinates
    outside the canvas)."""
    out = []
    for frame in frames:
        people = frame.people.copy()
        sx, sy = width / frame.width, height / frame.height
        ox = oy = 0.0
        if mode == "letterbox":
            if frame.height / frame.width > height / width:
                sx = sy = height / frame.height
                ox = int((width - int(height / frame.height * frame.width)) / 2)
            else:
                sx = sy = width / frame.width
                oy = int((height - int(width / frame.width * frame.height)) / 2)
        elif mode == "crop":
            sx = sy = max(width / frame.width, height / frame.height)
            ox, oy = (width - frame.width * sx) / 2, (height - frame.height * sy) / 2
        elif mode != "stretch":
            raise ValueError(f"unknown mode {mode!r}")
        present = people[..., 2] > 0
        people[..., 0] = np.where(present, people[..., 0] * sx + ox, 0.0)
        people[..., 1] = np.where(present, people[..., 1] * sy + oy, 0.0)
        out.append(frame.replace(people=people, width=width, height=height))
    return out
