"""The references' own retargeting, kept exactly for parity and as the ``*_reference`` modes.

:func:`unianimate_reference` follows UniAnimate-DiT's ``run_align_pose.py`` and
:func:`wan_animate_reference` Wan2.2-Animate's ``retarget_pose.py`` (parity-tested against both projects,
tests/fixtures/make_pose_retarget_parity.py): ratios from the first frame, hips placed by the global scale
(UniAnimate) or along neck-to-hip limbs (Wan), the face at the driving size (UniAnimate), unmeasured limbs at
the global or mean shoulder ratio, the first person of each frame. UniAnimate's ``space="normalized"`` exists
only here. Where the references misbehave on missing points these versions skip what cannot be measured; the
docstrings say where. The pack's default, whole-body retargeting is retarget.py.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import InputError
from .keypoints import BODY, FACE, FEET, LEFT_HAND, RIGHT_HAND, VISIBLE, PoseFrame, empty_people
from .retarget_geometry import (LEFT_FOOT, L_ANKLE, L_EAR, L_ELBOW, L_EYE, L_HIP, L_KNEE, L_SHOULDER, L_TOE, L_WRIST,
                                NECK, NOSE, RIGHT_FOOT, R_ANKLE, R_EAR, R_ELBOW, R_EYE, R_HIP, R_KNEE, R_SHOULDER,
                                R_TOE, R_WRIST, attach_part, chain_bones, reference_person, with_neck)

# ---------------------------------------------------------------- UniAnimate-DiT
# (parent, child) in an order where every parent comes before its children.
UNIANIMATE_BONES = ((NECK, NOSE), (NOSE, R_EYE), (NOSE, L_EYE), (R_EYE, R_EAR), (L_EYE, L_EAR),
                    (NECK, R_SHOULDER), (R_SHOULDER, R_ELBOW), (R_ELBOW, R_WRIST),
                    (NECK, L_SHOULDER), (L_SHOULDER, L_ELBOW), (L_ELBOW, L_WRIST),
                    (R_HIP, R_KNEE), (R_KNEE, R_ANKLE), (L_HIP, L_KNEE), (L_KNEE, L_ANKLE))
_UNI_ROOTS = (NECK, R_HIP, L_HIP)      # the hips keep their scaled places; only the legs below them change


def global_ratios(ref: np.ndarray, first: np.ndarray, threshold: float,
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


def unianimate_reference(driving: Sequence[PoseFrame], reference: PoseFrame, space: str = "pixels",
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
    ref = reference_person(reference).copy()
    starts = [i for i, f in enumerate(driving) if f.count]
    out_empty = [PoseFrame(empty_people(), reference.width, reference.height) for _ in driving]
    if not starts:
        return out_empty

    def to_space(person: np.ndarray, frame: PoseFrame) -> np.ndarray:
        person = with_neck(person)
        if space == "normalized":
            person[:, :2] /= (frame.width, frame.height)
        return person

    ref = to_space(ref, reference)
    first_frame = driving[starts[0]]
    first = to_space(driving[starts[0]].people[0], first_frame)
    fallback = (1.0, 1.0) if space == "normalized" else (reference.height / first_frame.height,) * 2
    scale = np.array(global_ratios(ref, first, threshold, fallback))

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
        body, moved = chain_bones(scaled[BODY], present[BODY], UNIANIMATE_BONES, vectors, roots)
        row = person.copy()
        row[BODY, :2] = body
        for group, anchor in ((RIGHT_HAND, R_WRIST), (LEFT_HAND, L_WRIST), (RIGHT_FOOT, R_ANKLE),
                              (LEFT_FOOT, L_ANKLE), (FACE, NOSE)):
            attach_part(scaled, row, group, scaled[anchor, :2], scaled[anchor, :2] + moved[anchor])
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


def wan_scale(src: np.ndarray, src_frame: PoseFrame, ref: np.ndarray, reference: PoseFrame) -> float:
    """Driving height over reference height (nose to ankles, else nose to hips,
    points above 0.5), else the ratio of the images' sizes."""
    for lower in ((R_ANKLE, L_ANKLE), (R_HIP, L_HIP)):
        idx = (NOSE,) + lower
        if all(src[i, 2] > 0.5 for i in idx) and all(ref[i, 2] > 0.5 for i in idx):
            ref_h = _body_height(ref, lower)
            if ref_h > 1e-9 and _body_height(src, lower) > 1e-9:
                return _body_height(src, lower) / ref_h
    return float(np.sqrt(src_frame.height * src_frame.width) / np.sqrt(reference.height * reference.width))


def body_extent(p: np.ndarray, height: int, threshold: float = 0.4) -> int:
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
    return chain_bones(p, present, WAN_LIMBS, vectors, {NECK: p[NECK, :2]})


def wan_animate_reference(driving: Sequence[PoseFrame], reference: PoseFrame, min_confidence: float = 0.0,
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
    ref_person = reference_person(reference)
    starts = [i for i, f in enumerate(driving) if f.count]
    out = [PoseFrame(empty_people(), reference.width, reference.height) for _ in driving]
    if not starts:
        return out
    first_frame = driving[starts[0]]
    src0, ref = body20(with_neck(first_frame.people[0])), body20(with_neck(ref_person))
    scale = wan_scale(src0, first_frame, ref, reference)
    scaled_w, scaled_h = int(reference.width * scale), int(reference.height * scale)
    ref_scaled = ref.copy()
    ref_scaled[:, :2] = ref[:, :2] / (reference.width, reference.height) * (scaled_w, scaled_h)
    ratios = _wan_ratios(src0, ref_scaled, min_confidence)
    full_body = min(body_extent(ref, reference.height), body_extent(src0, first_frame.height)) == 2

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
        person = with_neck(driving[i].people[0])
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
            attach_part(person, moved, part, anchor_old, anchor_new, hand_scale)
            new_hands[wrist] = moved[part]
        row[RIGHT_HAND] = new_hands[R_WRIST]
        row[LEFT_HAND] = new_hands[L_WRIST]

        for foot, ankle, limb, toe in ((LEFT_FOOT, L_ANKLE, _L_FOOT, L_TOE), (RIGHT_FOOT, R_ANKLE, _R_FOOT, R_TOE)):
            length = np.linalg.norm(src[toe, :2] - src[ankle, :2])
            new_length = np.linalg.norm(rebuilt[toe] - rebuilt[ankle])
            measurable = src[toe, 2] > 0 and length > 1e-9
            factor = (new_length / length if measurable else ratios[limb]) / scale
            attach_part(person, row, foot, src[ankle, :2], placed[ankle], factor)
        attach_part(person, row, FACE, src[NOSE, :2], placed[NOSE], ratios[_NOSE_EYE] / scale)
        row[:, 2] = driving[i].people[0, :, 2]
        row[row[:, 2] <= 0, :2] = 0.0
        out[i] = PoseFrame(row[None], reference.width, reference.height)
    return out


