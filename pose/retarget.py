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
reference image's pixels. ``retarget_report.py`` says how far the result is
from the reference and which frames miss joints.

* :func:`retarget_unianimate` follows UniAnimate-DiT's ``run_align_pose.py``:
  global x/y scale from shoulder width and torso height (the bones'
  directions), bones from the neck, anchored at the reference's neck.
* :func:`retarget_wan_animate` follows Wan2.2-Animate's ``retarget_pose.py``:
  one scale from body height, bones from the neck, anchored at the feet for
  full bodies, else the neck.

``reference_compat=True`` runs the references' own rules instead
(``retarget_reference.py``: :func:`unianimate_reference`, :func:`wan_animate_reference`, parity-tested
against both projects): ratios from the first frame, hips placed by the global
scale (UniAnimate) or along neck-to-hip limbs (Wan), the face at the driving
size (UniAnimate), unmeasured limbs at the global or mean shoulder ratio, the
first person of each frame; UniAnimate's ``space="normalized"`` exists only
there. Where the references misbehave on missing points (they measure bones
from undetected points, or flip the body when shoulders are seen from behind)
these versions skip what cannot be measured; the docstrings say where.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import InputError
from .keypoints import BODY, FACE, LEFT_HAND, RIGHT_HAND, VISIBLE, PoseFrame, empty_people
from .people import select_people
from .retarget_geometry import (LEFT_FOOT, L_ANKLE, L_EAR, L_ELBOW, L_EYE, L_HIP, L_KNEE, L_SHOULDER, L_TOE, L_WRIST,
                                NECK, NOSE, RIGHT_FOOT, R_ANKLE, R_EAR, R_ELBOW, R_EYE, R_HIP, R_KNEE, R_SHOULDER,
                                R_TOE, R_WRIST, attach_part, chain_bones, reference_person, with_neck)
from .retarget_reference import (body20, body_extent, global_ratios, unianimate_reference, wan_animate_reference,
                                 wan_scale)

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
          ("right foot", RIGHT_FOOT, R_ANKLE), ("left foot", LEFT_FOOT, L_ANKLE),
          ("face", np.arange(FACE.start, FACE.start + 68), NOSE))


def _point(p: np.ndarray, i: int, xy: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    xy = p[:, :2] if xy is None else xy
    if i == PELVIS:
        return (xy[R_HIP] + xy[L_HIP]) / 2, float(min(p[R_HIP, 2], p[L_HIP, 2]))
    return xy[i], float(p[i, 2])


def measure_bone(p: np.ndarray, bone: tuple[int, int], xy: np.ndarray | None = None) -> tuple[np.ndarray, float]:
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
            v, c = measure_bone(ref, bone)
            n = float(np.linalg.norm(v))
            self.ref_len.append(n if c >= threshold and n > 1e-9 else None)
            lengths = []
            for person in persons:
                v, c = measure_bone(person, bone, work(person) if measure_in_work else None)
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
        v, _ = measure_bone(person, bone, xy)
        n = float(np.linalg.norm(v))
        if self.ref_len[b] is None or n <= 1e-12:
            return v                                             # global scale
        if self.drive_len[b] is None:
            return v / n * self.ref_len[b]                       # the reference's own length
        raw = n if self.measure_in_work else float(np.linalg.norm(measure_bone(person, bone)[0]))
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
        body, _ = chain_bones(np.column_stack([xy[BODY], person[BODY, 2]]), present, bones,
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
    (with a neck, :func:`with_neck`) and their poses as they came."""
    tracked = select_people(driving, "index", 0)
    starts = [i for i, f in enumerate(tracked) if f.count]
    return starts, [with_neck(tracked[i].people[0]) for i in starts], [tracked[i].people[0] for i in starts]


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
    (:func:`unianimate_reference`): ratios from the first frame only, hips
    placed by the global scale, the face at the driving size, the first
    person of each frame.
    """
    if space not in ("pixels", "normalized"):
        raise InputError("retarget space", f"is '{space}'", "'pixels' or 'normalized'")
    if reference_compat:
        return unianimate_reference(driving, reference, space, keep_bone_lengths, threshold)
    if space == "normalized":
        raise InputError("retarget space", "is 'normalized' without the reference behaviour",
                         "'pixels' (normalized lengths mix x and y units and distort bones on non-square "
                         "images; it stays available as UniAnimate's own behaviour, reference_compat=True)")
    ref = with_neck(reference_person(reference))
    out = [PoseFrame(empty_people(), reference.width, reference.height) for _ in driving]
    starts, persons, originals = _persons(driving)
    if not starts:
        return out
    sx, sy = [], []
    for person in persons:
        x, y = global_ratios(ref, person, threshold, (np.nan, np.nan))
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
    (:func:`wan_animate_reference`): ratios from the first frame, left/right
    take the larger, unmeasured limbs the mean shoulder ratio.
    """
    if reference_compat:
        return wan_animate_reference(driving, reference, min_confidence, hand_threshold)
    ref_person = with_neck(reference_person(reference))
    out = [PoseFrame(empty_people(), reference.width, reference.height) for _ in driving]
    starts, persons, originals = _persons(driving)
    if not starts:
        return out
    first_frame = driving[starts[0]]
    src0, ref20 = body20(persons[0]), body20(ref_person)
    scale = wan_scale(src0, first_frame, ref20, reference)
    ref_scaled = ref_person.copy()            # exactly (Wan truncates the scaled canvas to whole pixels)
    ref_scaled[:, :2] = ref_person[:, :2] * scale
    seen = [p.copy() for p in persons]
    for p in seen:
        p[p[:, 2] <= min_confidence, 2] = 0.0
    body = _WholeBody(seen, lambda p: p[:, :2], ref_scaled, max(threshold, min_confidence + 1e-12),
                      measure_in_work=False)
    body.output_scale = 1.0 / scale
    full_body = min(body_extent(ref20, reference.height), body_extent(src0, first_frame.height)) == 2

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
            attach_part(person, moved, part, anchor_old, anchor_new, (ratio if ratio is not None else 1.0) / scale)
            new_hands[wrist] = moved[part]
        row[RIGHT_HAND] = new_hands[R_WRIST]
        row[LEFT_HAND] = new_hands[L_WRIST]
        out[i] = _finish(row, original, reference)
    return out


