"""Skeleton geometry the retargeting modes share: joint indices, the reference person, bone chains.

Both the references' own retargeting (retarget_reference.py) and the pack's whole-body retargeting
(retarget.py) rebuild a body bone by bone from the neck and move hands, feet and face with the wrist,
ankle or nose they hang from; the pieces for that live here.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import InputError
from .keypoints import BODY, FEET, PoseFrame

NOSE, NECK, R_SHOULDER, R_ELBOW, R_WRIST, L_SHOULDER, L_ELBOW, L_WRIST = range(8)
R_HIP, R_KNEE, R_ANKLE, L_HIP, L_KNEE, L_ANKLE, R_EYE, L_EYE, R_EAR, L_EAR = range(8, 18)
L_TOE, R_TOE = 18, 19            # toe midpoints, when the feet are seen as one point each

LEFT_FOOT = np.arange(FEET.start, FEET.start + 3)
RIGHT_FOOT = np.arange(FEET.start + 3, FEET.stop)


def first_person(frame: PoseFrame) -> np.ndarray | None:
    return frame.people[0] if frame.count else None


def reference_person(reference: PoseFrame) -> np.ndarray:
    person = first_person(reference)
    if person is None or not (person[BODY, 2] > 0).any():
        raise InputError("reference pose", "has no person",
                         "a pose of the reference image with the character's body detected")
    return person


def with_neck(person: np.ndarray) -> np.ndarray:
    """A working copy whose neck has a position even when its confidence is 0
    (DWPose gives the neck 0 when a shoulder is unsure): the shoulders' mean,
    as both references define the neck, with a tiny confidence so that it
    anchors the body (the output keeps the original confidence)."""
    person = person.copy()
    if person[NECK, 2] <= 0 and person[R_SHOULDER, 2] > 0 and person[L_SHOULDER, 2] > 0:
        person[NECK, :2] = (person[R_SHOULDER, :2] + person[L_SHOULDER, :2]) / 2
        person[NECK, 2] = 1e-6
    return person


def chain_bones(points: np.ndarray, present: np.ndarray, bones: Sequence[tuple[int, int]],
           vectors: dict[int, np.ndarray], roots_new: dict[int, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Rebuild a skeleton bone by bone from its roots.

    ``vectors[b]`` is the new parent-to-child vector of bone ``b`` (for bones
    whose ends are both present). A child whose parent is missing moves as its
    nearest present ancestor moved. Returns new positions and displacements.
    """
    new = points[:, :2].copy()
    moved = np.zeros_like(new)
    for root, position in roots_new.items():
        new[root] = position
        moved[root] = position - points[root, :2]
    for b, (parent, child) in enumerate(bones):
        if present[child] and present[parent]:
            new[child] = new[parent] + vectors[b]
        else:
            new[child] = points[child, :2] + moved[parent]
        moved[child] = new[child] - points[child, :2]
    return new, moved


def attach_part(people_row: np.ndarray, out_row: np.ndarray, group: np.ndarray | slice, anchor_old: np.ndarray,
            anchor_new: np.ndarray, scale: float = 1.0) -> None:
    """Move the present points of ``group`` rigidly with an anchor, scaled about it."""
    pts = people_row[group]
    have = pts[:, 2] > 0
    moved = anchor_new + (pts[:, :2] - anchor_old) * scale
    out_row[group, :2] = np.where(have[:, None], moved, 0.0)


