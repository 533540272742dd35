"""SteadyDancer's first-frame pose alignment against its own pose_align.py (committed fixture)."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from poseanimate.errors import InputError
from poseanimate.pose.keypoints import BODY, LEFT_HAND, RIGHT_HAND, PoseFrame, wholebody_to_people
from poseanimate.pose.retarget_steadydancer import ASPECT_RANGE, SCALE_RANGE, augment_negative, retarget_steadydancer

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "steadydancer_pose_align_parity.npz"


@pytest.fixture(scope="module")
def fx():
    return dict(np.load(FIXTURE))


def frames(points, scores, size) -> list[PoseFrame]:
    people = wholebody_to_people(points, scores)
    return [PoseFrame(people[i:i + 1], int(size[0]), int(size[1])) for i in range(points.shape[0])]


def align(fx, case: str) -> list[PoseFrame]:
    reference = frames(fx["reference_points"][None], fx["reference_scores"][None], fx["reference_size"])[0]
    return retarget_steadydancer(frames(fx[f"{case}_points"], fx[f"{case}_scores"], fx[f"{case}_size"]), reference)


@pytest.mark.parametrize("case", ["same", "landscape"])
def test_alignment_matches_pose_align_py_within_half_a_pixel(fx, case):
    out = align(fx, case)
    driving = frames(fx[f"{case}_points"], fx[f"{case}_scores"], fx[f"{case}_size"])
    worst = 0.0
    for t, frame in enumerate(out):
        assert (frame.width, frame.height) == tuple(fx["reference_size"])
        seen = driving[t].people[0][:, 2] >= 0.35
        person = frame.people[0]
        for ours, theirs, group, chain in ((person[BODY], fx[f"{case}_body"][t], BODY, ()),
                                           (person[LEFT_HAND], fx[f"{case}_hands"][t, 0], LEFT_HAND, (5, 6, 7)),
                                           (person[RIGHT_HAND], fx[f"{case}_hands"][t, 1], RIGHT_HAND, (2, 3, 4))):
            # a hand whose arm lost a joint: the script moves it from the absent joint's -1, no rule to match
            mask = seen[group] & all(seen[j] for j in chain)
            if mask.any():
                worst = max(worst, float(np.abs(ours[mask, :2] - theirs[mask]).max()))
    assert worst < 0.5, worst


def test_a_missing_wrist_keeps_its_hand_on_the_arm(fx):
    """Frame 3 of 'same' lost the right wrist: the script's chain still moves the right hand from it; ours hangs
    the hand from the elbow, and the wrist comes back absent (confidence kept)."""
    frame = align(fx, "same")[3].people[0]
    assert frame[4, 2] < 0.35
    assert np.isfinite(frame[RIGHT_HAND, :2]).all()


def test_different_aspect_ratios_are_aligned_with_a_log_line(fx, caplog):
    with caplog.at_level(logging.INFO):
        align(fx, "landscape")
    assert "differ in aspect ratio" in caplog.text and "1280x720" in caplog.text


def test_a_reference_without_a_neck_is_refused(fx):
    reference = frames(fx["reference_points"][None], fx["reference_scores"][None], fx["reference_size"])[0]
    people = reference.people.copy()
    people[0, [1, 2, 5], 2] = 0.0  # neck and both shoulders gone
    people[0, 0, 2] = 0.9
    with pytest.raises(InputError, match="reference pose: has no neck"):
        retarget_steadydancer(frames(fx["same_points"], fx["same_scores"], fx["same_size"]),
                              reference.replace(people=people))


def test_negative_poses_are_distorted_around_the_neck_within_the_scripts_ranges(fx):
    aligned = align(fx, "same")
    negative = augment_negative(aligned, seed=3)
    assert [f.people[0][:, :2].tolist() for f in augment_negative(aligned, seed=3)] == \
        [f.people[0][:, :2].tolist() for f in negative]  # seeded: reproducible
    factors = set()
    for a, n in zip(aligned, negative):
        pa, pn = a.people[0], n.people[0]
        np.testing.assert_allclose(pn[1, :2], pa[1, :2])  # the neck stays
        sx = (pn[4, 0] - pn[1, 0]) / (pa[4, 0] - pa[1, 0])
        sy = (pn[10, 1] - pn[1, 1]) / (pa[10, 1] - pa[1, 1])
        assert SCALE_RANGE[0] * ASPECT_RANGE[0] <= sx <= SCALE_RANGE[1] * ASPECT_RANGE[1]
        assert SCALE_RANGE[0] <= sy <= SCALE_RANGE[1]
        factors.add(round(sy, 6))
    assert len(factors) == len(aligned)  # a different distortion on every frame
