"""Retargeting: move a driving video's motion onto the reference character's body.

The driving person's proportions (shoulder width, limb lengths, height) differ
from the character in the reference image; drawn as they are, the pose would
tell the model to reshape the character. Both methods keep the driving motion
(bone directions, foreshortening, travel) while giving every bone of the
reference body (:data:`BONES`: head, arms, torso, hip width, legs) the
reference's length, and hands, feet and face the reference's size, and anchor
the body where the reference stands. Each bone's ratio is measured over every
frame where its joints are seen with confidence (the median driving length;
the first frame is not special), with a fallback of its own when it cannot be
measured (:class:`_WholeBody`). The person retargeted is tracked through the
video (track 0 of :func:`~.people.select_people`: the first person of the
first frame); frames without them stay empty. Output frames live in the
reference image's pixels. :func:`retarget_report` says how far the result is
from the reference and which frames miss joints.

* :func:`retarget_unianimate` follows UniAnimate-DiT's ``run_align_pose.py``:
  global x/y scale from shoulder width and torso height (the bones'
  directions), bones from the neck, anchored at the reference's neck.
* :func:`retarget_wan_animate` follows Wan2.2-Animate's ``retarget_pose.py``:
  one scale from body height, bones from the neck, anchored at the feet for
  full bodies, else the neck.

``reference_compat=True`` runs the references' own rules instead
(:func:`_unianimate_reference`, :func:`_wan_animate_reference`, parity-tested
against both projects): ratios from the first frame, hips placed by the global
scale (UniAnimate) or along neck-to-hip limbs (Wan), the face at the driving
size (UniAnimate), unmeasured limbs at the global or mean shoulder ratio, the
first person of each frame; UniAnimate's ``space="normalized"`` exists only
there. Where the references misbehave on missing points (they measure bones
from undetected points, or flip the body when shoulders are seen from behind)
these versions skip what cannot be measured; the docstrings say where.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..errors import InputError
from .keypoints import BODY, FACE, FEET, LEFT_HAND, RIGHT_HAND, VISIBLE, PoseFrame, empty_people
from .people import select_people

NOSE, NECK, R_SHOULDER, R_ELBOW, R_WRIST, L_SHOULDER, L_ELBOW, L_WRIST = range(8)
R_HIP, R_KNEE, R_ANKLE, L_HIP, L_KNEE, L_ANKLE, R_EYE, L_EYE, R_EAR, L_EAR = range(8, 18)
L_TOE, R_TOE = 18, 19            # toe midpoints, when the feet are seen as one point each

_LEFT_FOOT = np.arange(FEET.start, FEET.start + 3)
_RIGHT_FOOT = np.arange(FEET.start + 3, FEET.stop)


def _first_person(frame: PoseFrame) -> np.ndarray | None:
    return frame.people[0] if frame.count else None


def _reference_person(reference: PoseFrame) -> np.ndarray:
    person = _first_person(reference)
    if person is None or not (person[BODY, 2] > 0).any():
        raise InputError("reference pose", "has no person",
                         "a pose of the reference image with the character's body detected")
    return person


def _with_neck(person: np.ndarray) -> np.ndarray:
    """A working copy whose neck has a position even when its confidence is 0
    (DWPose gives the neck 0 when a shoulder is unsure): the shoulders' mean,
    as both references define the neck, with a tiny confidence so that it
    anchors the body (the output keeps the original confidence)."""
    person = person.copy()
    if person[NECK, 2] <= 0 and person[R_SHOULDER, 2] > 0 and person[L_SHOULDER, 2] > 0:
        person[NECK, :2] = (person[R_SHOULDER, :2] + person[L_SHOULDER, :2]) / 2
        person[NECK, 2] = 1e-6
    return person


def _chain(points: np.ndarray, present: np.ndarray, bones: Sequence[tuple[int, int]],
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


def _attach(people_row: np.ndarray, out_row: np.ndarray, group: np.ndarray | slice, anchor_old: np.ndarray,
            anchor_new: np.ndarray, scale: float = 1.0) -> None:
    """Move the present points of ``group`` rigidly with an anchor, scaled about it."""
    pts = people_row[group]
    have = pts[:, 2] > 0
    moved = anchor_new + (pts[:, :2] - anchor_old) * scale
    out_row[group, :2] = np.where(have[:, None], moved, 0.0)


# ---------------------------------------------------------------- UniAnimate-DiT
# (parent, child) in an order where every parent comes before its children.
UNIANIMATE_BONES = ((NECK, NOSE), (NOSE, R_EYE), (NOSE, L_EYE), (R_EYE, R_EAR), (L_EYE, L_EAR),
                    (NECK, R_SHOULDER), (R_SHOULDER, R_ELBOW), (R_ELBOW, R_WRIST),
                    (NECK, L_SHOULDER), (L_SHOULDER, L_ELBOW), (L_ELBOW, L_WRIST),
                    (R_HIP, R_KNEE), (R_KNEE, R_ANKLE), (L_HIP, L_KNEE), (L_KNEE, L_ANKLE))
_UNI_ROOTS = (NECK, R_HIP, L_HIP)      # the hips keep their scaled places; only the legs below them change


def _global_ratios(ref: np.ndarray, first: np.ndarray, threshold: float,
                   fallback: tuple[float, float]) -> tuple[float, float]:
    """UniAnimate's global scale: shoulder-width ratio for x, torso-height ratio for y."""
    seen = lambda p, idx: all(p[i, 2] >= threshold for i in idx)  # noqa: E731
    x_ratio = y_ratio = None
    if seen(ref, (R_SHOULDER, L_SHOULDER)) and seen(first, (R_SHOULDER, L_SHOULDER)):
        den = first[L_SHOULDER, 0] - first[R_SHOULDER, 0]
        if abs(den) > 1e-9:
            x_ratio = abs((ref[L_SHOULDER, 0] - ref[R_SHOULDER, 0]) / den)
    torso = (R_SHOULDER, L_SHOULDER, R_HIP, L_HIP)
    if seen(ref, torso) and seen(first, torso):
        torso_h = lambda p: (p[R_HIP, 1] + p[L_HIP, 1]) / 2 - (p[R_SHOULDER, 1] + p[L_SHOULDER, 1]) / 2  # noqa: E731
        den = torso_h(first)
        if abs(den) > 1e-9:
            y_ratio = abs(torso_h(ref) / den)
    if x_ratio is None and y_ratio is None:
        return fallback
    return (x_ratio if x_ratio is not None else y_ratio), (y_ratio if y_ratio is not None else x_ratio)


def _unianimate_reference(driving: Sequence[PoseFrame], reference: PoseFrame, space: str = "pixels",
                          keep_bone_lengths: bool = True, threshold: float = VISIBLE) -> list[PoseFrame]:
    """UniAnimate-DiT's retargeting (``reference_compat=True``).

    Every point is scaled by ``(x_ratio, y_ratio)`` (reference over first
    driving frame: shoulder width, shoulders-to-hips height); then each bone
    from the neck outwards (and below each hip) is rescaled so that on the
    first frame it has the reference's length; hands, feet and face follow
    their wrist, ankle and nose; finally the body is shifted so the first
    frame's neck lands on the reference's neck.

    ``space="pixels"`` measures lengths in pixels; ``"normalized"`` measures in
    coordinates divided by each image's size, as the reference code does (the
    same when both images have one aspect ratio). With
    ``keep_bone_lengths=False`` a bone keeps the first frame's ratio in every
    frame (the reference: a bone that turns changes length when x and y were
    scaled differently); with True (default) its length is the reference's
    times the driving bone's own change of length, so it only shortens when
    the driving bone does. Bones not seen (confidence < ``threshold``) in the
    reference or the first frame keep the global scale. The reference flips the
    body when the two people face opposite ways; the ratios here are unsigned.
    It also leaves the face where the global scale put it; here it follows the
    nose.
    """
    if space not in ("pixels", "normalized"):
        raise InputError("retarget space", f"is '{space}'", "'pixels' or 'normalized'")
    ref = _reference_person(reference).copy()
    starts = [i for i, f in enumerate(driving) if f.count]
    out_empty = [PoseFrame(empty_people(), reference.width, reference.height) for _ in driving]
    if not starts:
        return out_empty

    def to_space(person: np.ndarray, frame: PoseFrame) -> np.ndarray:
        person = _with_neck(person)
        if space == "normalized":
            person[:, :2] /= (frame.width, frame.height)
        return person

    ref = to_space(ref, reference)
    first_frame = driving[starts[0]]
    first = to_space(driving[starts[0]].people[0], first_frame)
    fallback = (1.0, 1.0) if space == "normalized" else (reference.height / first_frame.height,) * 2
    scale = np.array(_global_ratios(ref, first, threshold, fallback))

    first_scaled = first[:, :2] * scale
    ratios, measured = [], []
    for parent, child in UNIANIMATE_BONES:
        ok = all(p[i, 2] >= threshold for p in (ref, first) for i in (parent, child))
        length0 = np.linalg.norm(first_scaled[child] - first_scaled[parent])
        measured.append(bool(ok and length0 > 1e-9))
        ratios.append(np.linalg.norm(ref[child, :2] - ref[parent, :2]) / length0 if measured[-1] else 1.0)
    offset = ref[NECK, :2] - first_scaled[NECK]

    out = list(out_empty)
    for i in starts:
        person = to_space(driving[i].people[0], driving[i])
        scaled = person.copy()
        scaled[:, :2] *= scale
        present = person[:, 2] > 0
        vectors = {}
        for b, (parent, child) in enumerate(UNIANIMATE_BONES):
            v = scaled[child, :2] - scaled[parent, :2]
            raw0 = first[child, :2] - first[parent, :2]
            length0 = np.linalg.norm(raw0)
            if keep_bone_lengths and measured[b] and np.linalg.norm(v) > 1e-12:
                target = ratios[b] * np.linalg.norm(raw0 * scale)     # the reference bone's length
                change = np.linalg.norm(person[child, :2] - person[parent, :2]) / length0
                vectors[b] = v / np.linalg.norm(v) * target * change
            else:
                vectors[b] = ratios[b] * v
        roots = {r: scaled[r, :2] for r in _UNI_ROOTS}
        body, moved = _chain(scaled[BODY], present[BODY], UNIANIMATE_BONES, vectors, roots)
        row = person.copy()
        row[BODY, :2] = body
        for group, anchor in ((RIGHT_HAND, R_WRIST), (LEFT_HAND, L_WRIST), (_RIGHT_FOOT, R_ANKLE),
                              (_LEFT_FOOT, L_ANKLE), (FACE, NOSE)):
            _attach(scaled, row, group, scaled[anchor, :2], scaled[anchor, :2] + moved[anchor])
        row[:, :2] += offset
        if space == "normalized":
            row[:, :2] *= (reference.width, reference.height)
        row[:, 2] = driving[i].people[0, :, 2]
        row[row[:, 2] <= 0, :2] = 0.0
        out[i] = PoseFrame(row[None], reference.width, reference.height)
    return out


# ---------------------------------------------------------------- Wan2.2-Animate
WAN_LIMBS = ((NECK, R_SHOULDER), (NECK, L_SHOULDER), (R_SHOULDER, R_ELBOW), (R_ELBOW, R_WRIST),
             (L_SHOULDER, L_ELBOW), (L_ELBOW, L_WRIST), (NECK, R_HIP), (R_HIP, R_KNEE), (R_KNEE, R_ANKLE),
             (NECK, L_HIP), (L_HIP, L_KNEE), (L_KNEE, L_ANKLE), (NECK, NOSE), (NOSE, R_EYE), (R_EYE, R_EAR),
             (NOSE, L_EYE), (L_EYE, L_EAR), (L_ANKLE, L_TOE), (R_ANKLE, R_TOE))
_SYMMETRIC = ((0, 1), (2, 4), (3, 5), (6, 9), (7, 10), (8, 11), (17, 18))
_R_SHIN, _L_SHIN, _L_FOOT, _R_FOOT, _NOSE_EYE = 8, 11, 17, 18, 13


def body20(person: np.ndarray) -> np.ndarray:
    """OpenPose-18 plus left and right toe midpoints (Wan2.2-Animate's body)."""
    out = np.zeros((20, 3))
    out[:18] = person[BODY]
    for dst, (a, b) in ((L_TOE, (0, 1)), (R_TOE, (3, 4))):
        ta, tb = person[FEET.start + a], person[FEET.start + b]
        if ta[2] > 0 and tb[2] > 0:
            out[dst] = (ta + tb) / 2
    return out


def _body_height(p: np.ndarray, lower: tuple[int, int]) -> float:
    return abs((p[lower[0], 1] + p[lower[1], 1]) / 2 - p[NOSE, 1])


def _wan_scale(src: np.ndarray, src_frame: PoseFrame, ref: np.ndarray, reference: PoseFrame) -> float:
    """Driving height over reference height (nose to ankles, else nose to hips,
    points above 0.5), else the ratio of the images' sizes."""
    for lower in ((R_ANKLE, L_ANKLE), (R_HIP, L_HIP)):
        idx = (NOSE,) + lower
        if all(src[i, 2] > 0.5 for i in idx) and all(ref[i, 2] > 0.5 for i in idx):
            ref_h = _body_height(ref, lower)
            if ref_h > 1e-9 and _body_height(src, lower) > 1e-9:
                return _body_height(src, lower) / ref_h
    return float(np.sqrt(src_frame.height * src_frame.width) / np.sqrt(reference.height * reference.width))


def _body_extent(p: np.ndarray, height: int, threshold: float = 0.4) -> int:
    """2 full body (hips and ankles seen inside the image), 1 hips only, 0 upper body."""
    def ok(i: int) -> bool:
        return p[i, 1] <= height and p[i, 2] >= threshold
    if all(ok(i) for i in (R_ANKLE, L_ANKLE, R_HIP, L_HIP)):
        return 2
    return 1 if ok(R_HIP) and ok(L_HIP) else 0


def _wan_ratios(src: np.ndarray, ref_scaled: np.ndarray, min_confidence: float) -> np.ndarray:
    ratios = np.full(len(WAN_LIMBS), -1.0)
    for b, (k1, k2) in enumerate(WAN_LIMBS):
        if all(p[i, 2] > min_confidence for p in (src, ref_scaled) for i in (k1, k2)):
            src_len = np.linalg.norm(src[k2, :2] - src[k1, :2])
            if src_len > 1e-9:
                ratios[b] = np.linalg.norm(ref_scaled[k2, :2] - ref_scaled[k1, :2]) / src_len
    shoulders = (ratios[0] + ratios[1]) / 2 if ratios[0] != -1 and ratios[1] != -1 else 1.0
    ratios[ratios == -1] = shoulders
    for a, b in _SYMMETRIC:
        ratios[a] = ratios[b] = max(ratios[a], ratios[b])
    for a, b in ((13, 15), (14, 16)):
        ratios[a] = ratios[b] = (ratios[a] + ratios[b]) / 2
    return ratios


def _wan_chain(p: np.ndarray, ratios: np.ndarray, clamp_feet: bool) -> tuple[np.ndarray, np.ndarray]:
    """Rebuild a body20 from the neck with each limb scaled by its ratio."""
    present = p[:, 2] > 0
    lengths = np.array([np.linalg.norm(p[k2, :2] - p[k1, :2]) for k1, k2 in WAN_LIMBS]) * ratios
    if clamp_feet:
        for foot, shin in ((_R_FOOT, _R_SHIN), (_L_FOOT, _L_SHIN)):
            lengths[foot] = min(lengths[foot], lengths[shin] * 0.5)
    vectors = {}
    for b, (k1, k2) in enumerate(WAN_LIMBS):
        v = p[k2, :2] - p[k1, :2]
        n = np.linalg.norm(v)
        vectors[b] = v / n * lengths[b] if n > 0 else np.zeros(2)
    return _chain(p, present, WAN_LIMBS, vectors, {NECK: p[NECK, :2]})


def _wan_animate_reference(driving: Sequence[PoseFrame], reference: PoseFrame, min_confidence: float = 0.0,
                           hand_threshold: float = 0.4) -> list[PoseFrame]:
    """Wan2.2-Animate's retargeting (``reference_compat=True``; its path without the FLUX-edited poses).

    The reference is scaled to the driving body's height; each of the 19
    limbs (body, head, toe midpoints) gets the ratio of the scaled reference
    limb to the first driving frame's, left and right limbs take the larger of
    their two ratios, limbs missing on either side take the mean shoulder
    ratio; every frame is rebuilt from the neck with those ratios (a foot at
    most half its shin), and placed so that the first frame stands where the
    reference stands: hip centre and lowest foot for full bodies, neck
    otherwise. Hands are scaled by the shoulder ratio about their wrist point
    and attached to the body's wrists (swapped when the right hand sits nearer
    the left wrist); feet and face follow their ankle and nose.

    Points with confidence at most ``min_confidence`` are not measured (the
    reference measures every point, and drops points missing in the reference
    or first frame from every frame; here they just are not measured). Hand
    points are kept whatever their confidence (the reference drops those under
    ``hand_threshold``; renderers skip them anyway); ``hand_threshold`` still
    decides whether a hand's wrist point can anchor it. The reference does not
    carry the face; here it follows the nose. When the hands look swapped the
    reference shifts them by the distance between the two hand roots; here they
    are put on the wrist they sit nearest to, and relabelled.
    """
    ref_person = _reference_person(reference)
    starts = [i for i, f in enumerate(driving) if f.count]
    out = [PoseFrame(empty_people(), reference.width, reference.height) for _ in driving]
    if not starts:
        return out
    first_frame = driving[starts[0]]
    src0, ref = body20(_with_neck(first_frame.people[0])), body20(_with_neck(ref_person))
    scale = _wan_scale(src0, first_frame, ref, reference)
    scaled_w, scaled_h = int(reference.width * scale), int(reference.height * scale)
    ref_scaled = ref.copy()
    ref_scaled[:, :2] = ref[:, :2] / (reference.width, reference.height) * (scaled_w, scaled_h)
    ratios = _wan_ratios(src0, ref_scaled, min_confidence)
    full_body = min(_body_extent(ref, reference.height), _body_extent(src0, first_frame.height)) == 2

    rebuilt0, _ = _wan_chain(src0, ratios, clamp_feet=False)
    if full_body:
        ground = max(ref_scaled[R_ANKLE, 1], ref_scaled[L_ANKLE, 1])
        if ref[L_TOE, 2] > 0 and ref[R_TOE, 2] > 0:
            ground = max((ref_scaled[L_ANKLE, 1] + ref_scaled[L_TOE, 1]) / 2,
                         (ref_scaled[R_ANKLE, 1] + ref_scaled[R_TOE, 1]) / 2)
        hips_x = (rebuilt0[R_HIP, 0] + rebuilt0[L_HIP, 0]) / 2 - (ref_scaled[R_HIP, 0] + ref_scaled[L_HIP, 0]) / 2
        shift = np.array([hips_x, max(rebuilt0[R_ANKLE, 1], rebuilt0[L_ANKLE, 1]) - ground])
    else:
        shift = rebuilt0[NECK] - ref_scaled[NECK, :2]
    hand_scale = max(ratios[0], ratios[1]) / scale

    for i in starts:
        person = _with_neck(driving[i].people[0])
        src = body20(person)
        rebuilt, _ = _wan_chain(src, ratios, clamp_feet=True)
        placed = (rebuilt - shift) / scale
        row = person.copy()
        row[BODY, :2] = placed[:18]

        hands = {R_WRIST: RIGHT_HAND, L_WRIST: LEFT_HAND}
        r_root = person[RIGHT_HAND.start]
        if (r_root[2] >= hand_threshold and
                np.linalg.norm(src[R_WRIST, :2] - r_root[:2]) > np.linalg.norm(src[L_WRIST, :2] - r_root[:2])):
            hands = {R_WRIST: LEFT_HAND, L_WRIST: RIGHT_HAND}     # the hand model swapped them
        new_hands = {}
        for wrist, part in hands.items():
            root = person[part.start]
            if root[2] >= hand_threshold:          # the hand's wrist point goes onto the body's wrist
                anchor_old, anchor_new = root[:2], placed[wrist]
            elif root[2] > 0:                      # an unsure wrist point: the hand moves with the body's wrist
                anchor_old, anchor_new = root[:2], root[:2] + placed[wrist] - src[wrist, :2]
            else:
                anchor_old, anchor_new = src[wrist, :2], placed[wrist]
            moved = row.copy()
            _attach(person, moved, part, anchor_old, anchor_new, hand_scale)
            new_hands[wrist] = moved[part]
        row[RIGHT_HAND] = new_hands[R_WRIST]
        row[LEFT_HAND] = new_hands[L_WRIST]

        for foot, ankle, limb, toe in ((_LEFT_FOOT, L_ANKLE, _L_FOOT, L_TOE), (_RIGHT_FOOT, R_ANKLE, _R_FOOT, R_TOE)):
            length = np.linalg.norm(src[toe, :2] - src[ankle, :2])
            new_length = np.linalg.norm(rebuilt[toe] - rebuilt[ankle])
            measurable = src[toe, 2] > 0 and length > 1e-9
            factor = (new_length / length if measurable else ratios[limb]) / scale
            _attach(person, row, foot, src[ankle, :2], placed[ankle], factor)
        _attach(person, row, FACE, src[NOSE, :2], placed[NOSE], ratios[_NOSE_EYE] / scale)
        row[:, 2] = driving[i].people[0, :, 2]
        row[row[:, 2] <= 0, :2] = 0.0
        out[i] = PoseFrame(row[None], reference.width, reference.height)
    return out


# ---------------------------------------------------------------- the whole reference body (default)
PELVIS = -1                      # a virtual point: the hips' midpoint
HEAD_BONES = ((NECK, NOSE), (NOSE, R_EYE), (NOSE, L_EYE), (R_EYE, R_EAR), (L_EYE, L_EAR))
ARM_BONES = ((NECK, R_SHOULDER), (R_SHOULDER, R_ELBOW), (R_ELBOW, R_WRIST),
             (NECK, L_SHOULDER), (L_SHOULDER, L_ELBOW), (L_ELBOW, L_WRIST))
HIP_BONES = ((NECK, PELVIS), (R_HIP, L_HIP))           # torso (neck to the hips' midpoint), hip width
LEG_BONES = ((R_HIP, R_KNEE), (R_KNEE, R_ANKLE), (L_HIP, L_KNEE), (L_KNEE, L_ANKLE))
_ONE_HIP = ((NECK, R_HIP), (NECK, L_HIP))              # only when the other hip is missing
BONES = HEAD_BONES + ARM_BONES + HIP_BONES + LEG_BONES
"""Every bone the default modes keep at the reference's length (and report on)."""
_ALL_BONES = BONES + _ONE_HIP
_TORSO, _HIP_WIDTH = len(HEAD_BONES) + len(ARM_BONES), len(HEAD_BONES) + len(ARM_BONES) + 1

_POINT_NAMES = ("nose", "neck", "right shoulder", "right elbow", "right wrist", "left shoulder", "left elbow",
                "left wrist", "right hip", "right knee", "right ankle", "left hip", "left knee", "left ankle",
                "right eye", "left eye", "right ear", "left ear")


def bone_name(bone: tuple[int, int]) -> str:
    if bone == (NECK, PELVIS):
        return "torso"
    if bone == (R_HIP, L_HIP):
        return "hip width"
    return f"{_POINT_NAMES[bone[0]]}-{_POINT_NAMES[bone[1]]}"


# groups that move rigidly with an anchor point, scaled by their own size ratio
GROUPS = (("right hand", RIGHT_HAND, R_WRIST), ("left hand", LEFT_HAND, L_WRIST),
          ("right foot", _RIGHT_FOOT, R_ANKLE), ("left foot", _LEFT_FOOT, L_ANKLE),
          ("face", np.arange(FACE.start, FACE.start + 68), NOSE))


def _point(p: np.ndarray, i: int, xy: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    xy = p[:, :2] if xy is None else xy
    if i == PELVIS:
        return (xy[R_HIP] + xy[L_HIP]) / 2, float(min(p[R_HIP, 2], p[L_HIP, 2]))
    return xy[i], float(p[i, 2])


def _bone(p: np.ndarray, bone: tuple[int, int], xy: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """The bone's parent-to-child vector and the lower confidence of its ends."""
    (a, ca), (b, cb) = _point(p, bone[0], xy), _point(p, bone[1], xy)
    return b - a, min(ca, cb)


def _group_size(p: np.ndarray, group: np.ndarray | slice, anchor: int, threshold: float) -> float | None:
    """A group's size: the foot's ankle-to-toes length (Wan's foot limb), else the
    RMS distance of the group's points from their centre, when at least 90% of
    them are seen."""
    pts = p[group]
    if len(pts) == 3:                                   # a foot: big toe, small toe, heel
        if min(pts[0, 2], pts[1, 2], p[anchor, 2]) < threshold:
            return None
        size = float(np.linalg.norm((pts[0, :2] + pts[1, :2]) / 2 - p[anchor, :2]))
        return size if size > 1e-9 else None
    seen = pts[:, 2] >= threshold
    if seen.sum() < 0.9 * len(pts):
        return None
    spread = pts[seen, :2] - pts[seen, :2].mean(0)
    size = float(np.sqrt((spread ** 2).sum(1).mean()))
    return size if size > 1e-9 else None


class _WholeBody:
    """Per-bone and per-group ratios measured over the whole driving video.

    ``work(person)`` gives a frame's points in the work space (where the bones'
    directions are taken); ``ref`` is the reference in that space's output
    units. A bone's driving length is the median of its lengths over every
    frame where both its ends are seen (confidence >= threshold): no frame is
    special, and a frame that misses a joint changes nothing. Fallbacks, each
    bone on its own (none borrows another bone's ratio):

    * seen in the reference but never in the driving video: the reference's
      own length, in the driving bone's direction;
    * not seen in the reference: the driving bone at the body's global scale
      (the work space), as the references do for every bone.

    Hands, feet and face are scaled about their wrist, ankle and nose by their
    own size ratio (hand and face spread, foot length), with the global scale
    as the fallback.
    """

    def __init__(self, persons: Sequence[np.ndarray], work, ref: np.ndarray, threshold: float,
                 measure_in_work: bool):
        self.work, self.threshold, self.measure_in_work = work, threshold, measure_in_work
        self.ref_len, self.drive_len = [], []
        for bone in _ALL_BONES:
            v, c = _bone(ref, bone)
            n = float(np.linalg.norm(v))
            self.ref_len.append(n if c >= threshold and n > 1e-9 else None)
            lengths = []
            for person in persons:
                v, c = _bone(person, bone, work(person) if measure_in_work else None)
                n = float(np.linalg.norm(v))
                if c >= threshold and n > 1e-9:
                    lengths.append(n)
            self.drive_len.append(float(np.median(lengths)) if lengths else None)
        self.group_ratio = {}
        for name, group, anchor in GROUPS:
            ref_size = _group_size(ref, group, anchor, threshold)
            sizes = [s for s in (_group_size(p, group, anchor, threshold) for p in persons) if s is not None]
            self.group_ratio[name] = ref_size / float(np.median(sizes)) if ref_size and sizes else None

    def _vector(self, b: int, person: np.ndarray, xy: np.ndarray) -> np.ndarray:
        bone = _ALL_BONES[b]
        v, _ = _bone(person, bone, xy)
        n = float(np.linalg.norm(v))
        if self.ref_len[b] is None or n <= 1e-12:
            return v                                             # global scale
        if self.drive_len[b] is None:
            return v / n * self.ref_len[b]                       # the reference's own length
        raw = n if self.measure_in_work else float(np.linalg.norm(_bone(person, bone)[0]))
        return v / n * raw * self.ref_len[b] / self.drive_len[b]

    def rebuild(self, person: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The body (18 points) rebuilt in work space from the neck, and the work-space points."""
        xy = self.work(person)
        present = person[BODY, 2] > 0
        vectors = {b: self._vector(b, person, xy) for b in range(len(_ALL_BONES))}
        roots = {NECK: xy[NECK]}
        if present[NECK] and present[R_HIP] and present[L_HIP]:
            pelvis = xy[NECK] + vectors[_TORSO]
            roots[R_HIP], roots[L_HIP] = pelvis - vectors[_HIP_WIDTH] / 2, pelvis + vectors[_HIP_WIDTH] / 2
        elif present[NECK]:
            for b, (_, hip) in enumerate(_ONE_HIP, start=len(BONES)):
                if present[hip]:
                    roots[hip] = xy[NECK] + vectors[b]
        for hip in (R_HIP, L_HIP):
            roots.setdefault(hip, xy[hip])
        bones = HEAD_BONES + ARM_BONES + LEG_BONES
        index = {bone: b for b, bone in enumerate(_ALL_BONES)}
        body, _ = _chain(np.column_stack([xy[BODY], person[BODY, 2]]), present, bones,
                         {k: vectors[index[bone]] for k, bone in enumerate(bones)}, roots)
        return body, xy

    def place_groups(self, person: np.ndarray, xy: np.ndarray, body: np.ndarray, row: np.ndarray,
                     to_output, skip: tuple[str, ...] = ()) -> None:
        """Hands, feet and face onto the rebuilt body; ``to_output`` maps work space to output pixels."""
        for name, group, anchor in GROUPS:
            if name in skip:
                continue
            ratio = self.group_ratio[name]
            anchor_new = to_output(body[anchor])
            if ratio is None:                                    # global scale: move with the anchor
                pts = to_output(xy[group]) - to_output(xy[anchor]) + anchor_new
            else:
                pts = anchor_new + (person[group, :2] - person[anchor, :2]) * ratio * self.output_scale
            row[group, :2] = np.where(person[group, 2:] > 0, pts, 0.0)

    output_scale = 1.0                   # output pixels per work-space pixel, for group ratios


def _persons(driving: Sequence[PoseFrame]) -> tuple[list[int], list[np.ndarray], list[np.ndarray]]:
    """The frames with the tracked person (track 0, see :func:`~.people.select_people`), their poses
    (with a neck, :func:`_with_neck`) and their poses as they came."""
    tracked = select_people(driving, "index", 0)
    starts = [i for i, f in enumerate(tracked) if f.count]
    return starts, [_with_neck(tracked[i].people[0]) for i in starts], [tracked[i].people[0] for i in starts]


def _finish(row: np.ndarray, original: np.ndarray, reference: PoseFrame) -> PoseFrame:
    row[:, 2] = original[:, 2]
    row[row[:, 2] <= 0, :2] = 0.0
    return PoseFrame(row[None], reference.width, reference.height)


def retarget_unianimate(driving: Sequence[PoseFrame], reference: PoseFrame, space: str = "pixels",
                        keep_bone_lengths: bool = True, threshold: float = VISIBLE,
                        reference_compat: bool = False) -> list[PoseFrame]:
    """UniAnimate-DiT's retargeting, keeping every bone of the reference body.

    As UniAnimate-DiT's ``run_align_pose.py``: every point is scaled by
    ``(x_ratio, y_ratio)`` (reference over driving shoulder width and
    shoulders-to-hips height, here the median over the video's frames), which
    gives the bones' directions; then the body is rebuilt from the neck with
    every bone of :data:`BONES` (head, arms, torso, hip width, legs) at the
    reference's length times the driving bone's change of length (its length
    over its median length in the frames where it is seen), so a bone only
    shortens when the driving bone does; hands, feet and face are scaled to the
    reference's by their own size ratio about the wrist, ankle and nose; the
    first frame's neck lands on the reference's neck. Per-bone fallbacks: see
    :class:`_WholeBody`. With ``keep_bone_lengths=False`` a bone is the
    globally scaled driving bone times its own ratio (UniAnimate's rule: a
    turning bone changes length when x and y scale differently).

    The person is track 0 of the video (the first person of the first frame,
    followed through it). ``space="normalized"`` (lengths in coordinates
    divided by each image's size) exists only with ``reference_compat=True``:
    its lengths mix x and y units, so no bone length can be kept in it unless
    both images are square, and made isotropic it is pixel space.

    ``reference_compat=True`` runs UniAnimate's own rule instead
    (:func:`_unianimate_reference`): ratios from the first frame only, hips
    placed by the global scale, the face at the driving size, the first
    person of each frame.
    """
    if space not in ("pixels", "normalized"):
        raise InputError("retarget space", f"is '{space}'", "'pixels' or 'normalized'")
    if reference_compat:
        return _unianimate_reference(driving, reference, space, keep_bone_lengths, threshold)
    if space == "normalized":
        raise InputError("retarget space", "is 'normalized' without the reference behaviour",
                         "'pixels' (normalized lengths mix x and y units and distort bones on non-square "
                         "images; it stays available as UniAnimate's own behaviour, reference_compat=True)")
    ref = _with_neck(_reference_person(reference))
    out = [PoseFrame(empty_people(), reference.width, reference.height) for _ in driving]
    starts, persons, originals = _persons(driving)
    if not starts:
        return out
    sx, sy = [], []
    for person in persons:
        x, y = _global_ratios(ref, person, threshold, (np.nan, np.nan))
        sx.append(x)
        sy.append(y)
    fallback = reference.height / driving[starts[0]].height
    scale = np.array([np.nanmedian(v) if not np.isnan(v).all() else np.nan for v in (sx, sy)])
    scale = np.where(np.isnan(scale), scale[::-1], scale)
    scale = np.where(np.isnan(scale), fallback, scale)
    body = _WholeBody(persons, lambda p: p[:, :2] * scale, ref, threshold, measure_in_work=not keep_bone_lengths)
    neck_frame = next((p for p in persons if p[NECK, 2] > 0), persons[0])
    offset = ref[NECK, :2] - neck_frame[NECK, :2] * scale
    for i, person, original in zip(starts, persons, originals):
        rebuilt, xy = body.rebuild(person)
        row = person.copy()
        row[BODY, :2] = rebuilt + offset
        body.place_groups(person, xy, rebuilt, row, lambda q: q + offset)
        out[i] = _finish(row, original, reference)
    return out


def retarget_wan_animate(driving: Sequence[PoseFrame], reference: PoseFrame, min_confidence: float = 0.0,
                         hand_threshold: float = 0.4, threshold: float = VISIBLE,
                         reference_compat: bool = False) -> list[PoseFrame]:
    """Wan2.2-Animate's retargeting, keeping every bone of the reference body.

    As Wan2.2-Animate's ``retarget_pose.py``: the reference is scaled to the
    first driving frame's body height, every frame is rebuilt from the neck
    with each bone of :data:`BONES` (head, arms, torso, hip width, legs) at the
    driving bone's length times its own ratio (scaled reference bone over the
    driving bone's median length in the frames where it is seen with
    confidence >= ``threshold`` and above ``min_confidence``), and placed so
    that the first frame stands where the reference stands (hip centre and
    lowest foot for full bodies, else the neck). Hands are put on the wrist
    they sit nearest (swapped when the hand model swapped them) and anchored
    by their wrist point above ``hand_threshold``; hands, feet and face are
    scaled by their own size ratio. Per-bone fallbacks: see
    :class:`_WholeBody`. Unlike Wan's rule, left and right keep their own
    ratios (the reference's are kept as they are), the hips are a torso and a
    hip width (not two neck-to-hip limbs), and a foot is the reference's foot
    (not clamped to half a shin). The person is track 0 of the video.

    ``reference_compat=True`` runs Wan's own rule instead
    (:func:`_wan_animate_reference`): ratios from the first frame, left/right
    take the larger, unmeasured limbs the mean shoulder ratio.
    """
    if reference_compat:
        return _wan_animate_reference(driving, reference, min_confidence, hand_threshold)
    ref_person = _with_neck(_reference_person(reference))
    out = [PoseFrame(empty_people(), reference.width, reference.height) for _ in driving]
    starts, persons, originals = _persons(driving)
    if not starts:
        return out
    first_frame = driving[starts[0]]
    src0, ref20 = body20(persons[0]), body20(ref_person)
    scale = _wan_scale(src0, first_frame, ref20, reference)
    ref_scaled = ref_person.copy()            # exactly (Wan truncates the scaled canvas to whole pixels)
    ref_scaled[:, :2] = ref_person[:, :2] * scale
    seen = [p.copy() for p in persons]
    for p in seen:
        p[p[:, 2] <= min_confidence, 2] = 0.0
    body = _WholeBody(seen, lambda p: p[:, :2], ref_scaled, max(threshold, min_confidence + 1e-12),
                      measure_in_work=False)
    body.output_scale = 1.0 / scale
    full_body = min(_body_extent(ref20, reference.height), _body_extent(src0, first_frame.height)) == 2

    rebuilt0, _ = body.rebuild(persons[0])
    if full_body:
        r20 = body20(ref_scaled)
        ground = max(r20[R_ANKLE, 1], r20[L_ANKLE, 1])
        if r20[L_TOE, 2] > 0 and r20[R_TOE, 2] > 0:
            ground = max((r20[L_ANKLE, 1] + r20[L_TOE, 1]) / 2, (r20[R_ANKLE, 1] + r20[R_TOE, 1]) / 2)
        hips_x = (rebuilt0[R_HIP, 0] + rebuilt0[L_HIP, 0]) / 2 - (r20[R_HIP, 0] + r20[L_HIP, 0]) / 2
        shift = np.array([hips_x, max(rebuilt0[R_ANKLE, 1], rebuilt0[L_ANKLE, 1]) - ground])
    else:
        shift = rebuilt0[NECK] - ref_scaled[NECK, :2]

    def to_output(q: np.ndarray) -> np.ndarray:
        return (q - shift) / scale

    for i, person, original in zip(starts, persons, originals):
        rebuilt, xy = body.rebuild(person)
        placed = to_output(rebuilt)
        row = person.copy()
        row[BODY, :2] = placed
        body.place_groups(person, xy, rebuilt, row, to_output, skip=("right hand", "left hand"))
        hands = {R_WRIST: ("right hand", RIGHT_HAND), L_WRIST: ("left hand", LEFT_HAND)}
        r_root = person[RIGHT_HAND.start]
        if (r_root[2] >= hand_threshold and
                np.linalg.norm(person[R_WRIST, :2] - r_root[:2]) > np.linalg.norm(person[L_WRIST, :2] - r_root[:2])):
            hands = {R_WRIST: hands[L_WRIST], L_WRIST: hands[R_WRIST]}      # the hand model swapped them
        new_hands = {}
        for wrist, (name, part) in hands.items():
            root = person[part.start]
            if root[2] >= hand_threshold:          # the hand's wrist point goes onto the body's wrist
                anchor_old, anchor_new = root[:2], placed[wrist]
            elif root[2] > 0:                      # an unsure wrist point: the hand moves with the body's wrist
                anchor_old, anchor_new = root[:2], root[:2] + placed[wrist] - person[wrist, :2]
            else:
                anchor_old, anchor_new = person[wrist, :2], placed[wrist]
            ratio = body.group_ratio[name]
            moved = row.copy()
            _attach(person, moved, part, anchor_old, anchor_new, (ratio if ratio is not None else 1.0) / scale)
            new_hands[wrist] = moved[part]
        row[RIGHT_HAND] = new_hands[R_WRIST]
        row[LEFT_HAND] = new_hands[L_WRIST]
        out[i] = _finish(row, original, reference)
    return out


# ---------------------------------------------------------------- the report
@dataclass
class RetargetReport:
    """How far the retargeted bones are from the reference's, per video.

    ``worst_error`` is the largest ``|bone / reference bone - 1|`` over the
    bones of :data:`BONES` and the frames where both ends of the bone were
    seen in the driving video (confidence >= threshold), after dividing each
    frame by its median bone ratio (a driver walking toward the camera makes
    the whole figure grow, which is not an error). ``missing_frames`` are the
    frames with a person where a body joint that the reference has was not
    seen; ``empty_frames`` have no person at all."""
    worst_error: float = 0.0
    worst_bone: str = ""
    worst_frame: int = -1
    missing_frames: list[int] = field(default_factory=list)
    empty_frames: list[int] = field(default_factory=list)

    def line(self) -> str:
        def frames(idx: list[int]) -> str:
            return ", ".join(map(str, idx[:12])) + (f" (+{len(idx) - 12} more)" if len(idx) > 12 else "")
        text = (f"retarget: worst bone error {self.worst_error * 100:.1f}%"
                + (f" ({self.worst_bone}, frame {self.worst_frame})" if self.worst_frame >= 0 else ""))
        text += f"; frames with missing joints: {frames(self.missing_frames) if self.missing_frames else 'none'}"
        if self.empty_frames:
            text += f"; frames without a person: {frames(self.empty_frames)}"
        return text


def retarget_report(driving: Sequence[PoseFrame], retargeted: Sequence[PoseFrame], reference: PoseFrame,
                    threshold: float = VISIBLE) -> RetargetReport:
    """The :class:`RetargetReport` of ``retargeted`` (the output of a retargeting of ``driving``)."""
    ref = _with_neck(_reference_person(reference))
    ref_len = np.array([np.linalg.norm(_bone(ref, b)[0]) if _bone(ref, b)[1] >= threshold else np.nan
                        for b in BONES])
    report = RetargetReport()
    tracked = select_people(driving, "index", 0)
    needed = ref[BODY, 2] >= threshold
    for i, (src, out) in enumerate(zip(tracked, retargeted)):
        if not src.count or not out.count:
            report.empty_frames.append(i)
            continue
        person = _with_neck(src.people[0])
        if ((person[BODY, 2] < threshold) & needed).any():
            report.missing_frames.append(i)
        ratios = np.full(len(BONES), np.nan)
        for b, bone in enumerate(BONES):
            if _bone(person, bone)[1] >= threshold and np.isfinite(ref_len[b]) and ref_len[b] > 1e-9:
                ratios[b] = np.linalg.norm(_bone(_with_neck(out.people[0]), bone)[0]) / ref_len[b]
        if np.isfinite(ratios).any():
            errors = np.abs(ratios / np.nanmedian(ratios) - 1)
            b = int(np.nanargmax(errors))
            if errors[b] > report.worst_error or report.worst_frame < 0:
                report.worst_error, report.worst_bone, report.worst_frame = float(errors[b]), bone_name(BONES[b]), i
    return report
