"""SteadyDancer's pose alignment: the driving skeleton fitted to the reference pose by its first frame.

``preprocess/pose_align.py`` (MCG-NJU/SteadyDancer, after MusePose): ten scale
factors, each "reference length over the first driving frame's length" (neck,
the two sides of the face, shoulders, upper and lower arms, hands, torso,
upper and lower legs), then on every frame each limb is rescaled around its
parent joint, from the neck outwards, and the whole body shifted so the first
frame's neck lands on the reference's neck. Lengths are measured in units of
each image's *height* (x times width over height), so a driving video and a
reference of different aspect ratios are aligned without distortion, the
result living in the reference's frame: the alignment logs a line saying so.

Differences from the script, where it has no rule: a scale whose joints are
missing (in the reference or the first frame) takes the mean of the measured
ones (what the script's ``align_img`` means to do with an infinite scale, a
zero-length driving bone: it writes the mean into a list it then never reads);
a 0/0 scale is 1, as in the script; a limb whose parent joint is missing on a frame hangs from its nearest
present ancestor; the feet follow their ankle at the lower-leg scale and the
face its nose at the mean face scale (the script moves neither, as its
renders draw neither). Hands use the arms' mean scale, as the script does
(its finger measure runs over zero iterations). :func:`augment_negative` makes
the negative poses of ``pose_align_withdiffaug.py`` (its pose guidance's
negative branch).
"""
from __future__ import annotations

import logging
from typing import Sequence

import numpy as np

from ..errors import InputError
from .keypoints import FACE, FEET, LEFT_HAND, RIGHT_HAND, PoseFrame
from .retarget_geometry import (L_ANKLE, L_EAR, L_ELBOW, L_EYE, L_HIP, L_KNEE, L_SHOULDER, L_WRIST, NECK, NOSE,
                                R_ANKLE, R_EAR, R_ELBOW, R_EYE, R_HIP, R_KNEE, R_SHOULDER, R_WRIST, reference_person,
                                with_neck)

log = logging.getLogger(__name__)

DETECTED = 0.35  # DWPose's visibility threshold in SteadyDancer's detector (points below are -1 there)
SCALES = ("neck", "face_left", "face_right", "shoulder", "arm_upper", "arm_lower", "body_len", "leg_upper",
          "leg_lower")
# (child, parent, scale): the script's order, every parent before its children
CHAIN = ((NOSE, NECK, "neck"), (R_EYE, NOSE, "face_left"), (R_EAR, NOSE, "face_left"),
         (L_EYE, NOSE, "face_right"), (L_EAR, NOSE, "face_right"),
         (R_SHOULDER, NECK, "shoulder"), (L_SHOULDER, NECK, "shoulder"),
         (R_ELBOW, R_SHOULDER, "arm_upper"), (R_WRIST, R_ELBOW, "arm_lower"),
         (L_ELBOW, L_SHOULDER, "arm_upper"), (L_WRIST, L_ELBOW, "arm_lower"),
         (R_HIP, NECK, "body_len"), (L_HIP, NECK, "body_len"),
         (R_KNEE, R_HIP, "leg_upper"), (R_ANKLE, R_KNEE, "leg_lower"),
         (L_KNEE, L_HIP, "leg_upper"), (L_ANKLE, L_KNEE, "leg_lower"))
PARENT = {child: parent for child, parent, _ in CHAIN}
# (points, anchor joint, scale name or 'hand' / 'face')
PARTS = ((RIGHT_HAND, R_WRIST, "hand"), (LEFT_HAND, L_WRIST, "hand"), (np.arange(FEET.start, FEET.start + 3),
         L_ANKLE, "leg_lower"), (np.arange(FEET.start + 3, FEET.stop), R_ANKLE, "leg_lower"), (FACE, NOSE, "face"))


def _units(person: np.ndarray, height: int) -> np.ndarray:
    """Points in units of the image height (the script's ``x * W / H`` on 0..1 coordinates)."""
    return person[:, :2] / float(height)


def _length(p: np.ndarray, seen: np.ndarray, path: Sequence[int]) -> float | None:
    if not all(seen[i] for i in path):
        return None
    return float(sum(np.linalg.norm(p[a] - p[b]) for a, b in zip(path[:-1], path[1:])))


def _ratio(ref: np.ndarray, ref_seen: np.ndarray, first: np.ndarray, first_seen: np.ndarray,
           paths: Sequence[Sequence[int]]) -> float | None:
    """Mean over ``paths`` of reference length / first-frame length (None if any is unmeasured)."""
    ratios = []
    for path in paths:
        a, b = _length(ref, ref_seen, path), _length(first, first_seen, path)
        if a is None or b is None:
            return None
        ratios.append(a / b if b > 0 else (np.nan if a == 0 else np.inf))
    return float(np.mean(ratios))


def alignment_scales(ref: np.ndarray, ref_seen: np.ndarray, first: np.ndarray, first_seen: np.ndarray) -> dict:
    """The script's ``align_args``: scale per body part (points in height units)."""
    def mid_hips(p):
        q = p.copy()
        q[R_HIP] = (p[R_HIP] + p[L_HIP]) / 2
        return q
    paths = {
        "neck": [(NOSE, NECK)],
        "face_left": [(R_EAR, R_EYE, NOSE)],
        "face_right": [(L_EAR, L_EYE, NOSE)],
        "shoulder": [(R_SHOULDER, L_SHOULDER)],
        "arm_upper": [(R_SHOULDER, R_ELBOW), (L_SHOULDER, L_ELBOW)],
        "arm_lower": [(R_ELBOW, R_WRIST), (L_ELBOW, L_WRIST)],
        "leg_upper": [(R_HIP, R_KNEE), (L_HIP, L_KNEE)],
        "leg_lower": [(R_KNEE, R_ANKLE), (L_KNEE, L_ANKLE)],
    }
    scales = {name: _ratio(ref, ref_seen, first, first_seen, p) for name, p in paths.items()}
    hips = lambda s: s.copy() if s[R_HIP] and s[L_HIP] else np.zeros_like(s)  # noqa: E731
    scales["body_len"] = _ratio(mid_hips(ref), hips(ref_seen), mid_hips(first), hips(first_seen), [(NECK, R_HIP)])
    scales = {k: (1.0 if v is not None and np.isnan(v) else v) for k, v in scales.items()}  # the script: nan -> 1
    finite = [v for v in scales.values() if v is not None and np.isfinite(v)]
    if not finite:
        raise InputError("driving poses", "share no measurable limb with the reference pose on their first frame",
                         "a first driving frame and a reference pose that both show the upper body")
    mean = float(np.mean(finite))
    scales = {k: (v if v is not None and np.isfinite(v) else mean) for k, v in scales.items()}
    scales["hand"] = (scales["arm_upper"] + scales["arm_lower"]) / 2
    scales["face"] = (scales["face_left"] + scales["face_right"]) / 2
    return scales


def _align_frame(p: np.ndarray, seen: np.ndarray, scales: dict) -> np.ndarray:
    """One frame's points (height units) with every limb rescaled around its parent, the neck fixed."""
    out = p.copy()
    for child, parent, scale in CHAIN:
        anchor = parent
        while not seen[anchor] and anchor in PARENT:
            anchor = PARENT[anchor]
        if seen[anchor]:
            out[child] = out[anchor] + scales[scale] * (p[child] - p[anchor])
    for group, anchor, scale in PARTS:
        if seen[anchor]:
            out[group] = out[anchor] + scales[scale] * (p[group] - p[anchor])
    return out


def retarget_steadydancer(driving: Sequence[PoseFrame], reference: PoseFrame,
                          threshold: float = DETECTED) -> list[PoseFrame]:
    """SteadyDancer's alignment of the driving poses (first person of each frame) to the reference pose.

    Scales come from the first frame with a person; output frames are in the
    reference's pixels; points below ``threshold`` are not measured and come
    back with their confidence (0 means absent).
    """
    ref_person = with_neck(reference_person(reference))
    ref_seen = ref_person[:, 2] >= threshold
    ref = _units(ref_person, reference.height)
    starts = [i for i, f in enumerate(driving) if f.count]
    if not starts:
        raise InputError("driving poses", "have no person in any frame", "poses of a driving video with a dancer")
    first_frame = driving[starts[0]]
    first_person = with_neck(first_frame.people[0])
    first_seen = first_person[:, 2] >= threshold
    if not (first_seen[NECK] and ref_seen[NECK]):
        raise InputError("driving poses" if not first_seen[NECK] else "reference pose",
                         "have no neck on the first frame" if not first_seen[NECK] else "has no neck",
                         "a pose whose shoulders or neck were found (SteadyDancer aligns on the neck)")
    first = _units(first_person, first_frame.height)
    scales = alignment_scales(ref, ref_seen, first, first_seen)
    offset = ref[NECK] - first[NECK]
    d_aspect, r_aspect = first_frame.width / first_frame.height, reference.width / reference.height
    if abs(d_aspect - r_aspect) > 1e-3 * r_aspect:
        log.info("steadydancer alignment: driving poses %dx%d and reference %dx%d differ in aspect ratio; lengths "
                 "measured in image heights and the poses placed in the reference's frame (pose_align.py's rule)",
                 first_frame.width, first_frame.height, reference.width, reference.height)
    out = []
    for frame in driving:
        if not frame.count:
            out.append(PoseFrame(frame.people[:0].copy(), reference.width, reference.height))
            continue
        original = frame.people[0]
        person = with_neck(original)
        seen = person[:, 2] >= threshold
        aligned = (_align_frame(_units(person, frame.height), seen, scales) + offset) * reference.height
        row = original.copy()
        row[:, :2] = aligned
        row[row[:, 2] <= 0, :2] = 0.0
        out.append(PoseFrame(row[None], reference.width, reference.height))
    return out


# pose_align_withdiffaug.py's negative-pose augmentation: per frame, x stretched by a factor in ASPECT_RANGE and
# both axes by one in SCALE_RANGE, around the neck (its offsets are drawn but left unused there, so here too)
ASPECT_RANGE, SCALE_RANGE = (0.6, 1.4), (0.7, 1.3)


def augment_negative(frames: Sequence[PoseFrame], seed: int = 0) -> list[PoseFrame]:
    """SteadyDancer's negative poses: aligned poses each distorted at random around its neck (``pose_aug_diff``).

    The script draws with Python's unseeded ``random``; here a generator seeded by ``seed`` makes the same
    distribution reproducible. Frames without a person stay empty.
    """
    rng = np.random.default_rng(seed)
    out = []
    for frame in frames:
        aspect, scale = rng.uniform(*ASPECT_RANGE), rng.uniform(*SCALE_RANGE)
        if not frame.count:
            out.append(frame.replace())
            continue
        row = frame.people[0].copy()
        neck = with_neck(row)[NECK, :2]
        row[:, :2] = neck + np.array([aspect * scale, scale]) * (row[:, :2] - neck)
        row[row[:, 2] <= 0, :2] = 0.0
        out.append(PoseFrame(row[None], frame.width, frame.height))
    return out


__all__ = ["alignment_scales", "augment_negative", "retarget_steadydancer"]
