"""Retargeting: parity with UniAnimate-DiT's and Wan2.2-Animate's code
(tests/fixtures/make_pose_retarget_parity.py), and bone lengths, scale and
placement on synthetic people with known proportions."""
import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest

from poseanimate.errors import InputError
from poseanimate.pose import keypoints as kp
from poseanimate.pose import retarget, retarget_reference
from poseanimate.pose.render import render_pose

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def _synthetic():
    spec = importlib.util.spec_from_file_location("synthetic_skeletons",
                                                  Path(__file__).with_name("synthetic_skeletons.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


syn = _synthetic()


@pytest.fixture(scope="module")
def ref():
    return dict(np.load(FIXTURES / "pose_retarget_parity.npz"))


def _frames(points, scores, hw, neck="dwpose"):
    people = kp.wholebody_to_people(points, scores, neck=neck)
    return [kp.PoseFrame(p[None], hw[1], hw[0]) for p in people]


def _toe_means(people):
    feet = people[:, kp.FEET]
    return np.stack([(feet[:, 0, :2] + feet[:, 1, :2]) / 2, (feet[:, 3, :2] + feet[:, 4, :2]) / 2], 1)


# ---------------------------------------------------------------- parity with the references
def test_unianimate_matches_reference(ref):
    dh, dw = ref["driving_hw"]
    rh, rw = ref["reference_hw"]
    driving = _frames(ref["uni_drive_points"], ref["uni_drive_scores"], (dh, dw))
    reference = _frames(ref["uni_ref_points"][None], ref["uni_ref_scores"][None], (rh, rw))[0]
    out = retarget.retarget_unianimate(driving, reference, space="normalized", keep_bone_lengths=False,
                                      reference_compat=True)
    people = np.stack([f.people[0] for f in out])
    size = np.array([rw, rh], float)
    body = ref["uni_body"]                                           # [T, 20, 2] in 0..1 of the reference
    np.testing.assert_allclose(people[:, kp.BODY, :2] / size, body[:, :18], atol=1e-9)
    np.testing.assert_allclose(_toe_means(people) / size, body[:, 18:20], atol=1e-9)
    np.testing.assert_allclose(people[:, kp.LEFT_HAND, :2] / size, ref["uni_hands"][:, 0], atol=1e-9)
    np.testing.assert_allclose(people[:, kp.RIGHT_HAND, :2] / size, ref["uni_hands"][:, 1], atol=1e-9)
    assert (out[0].width, out[0].height) == (rw, rh)
    # and drawn as UniAnimate draws its pose frames (its BGR canvas, as the model read it)
    for index in (0, 3):
        expected = cv2.imread(str(FIXTURES / f"pose_unianimate_retarget_{index:04d}.png"))[..., ::-1]
        ours = render_pose(out[index], 512, 768, style="unianimate")
        assert np.array_equal(ours, expected)


@pytest.mark.parametrize("case", ["full", "upper"])
def test_wan_animate_matches_reference(ref, case):
    dh, dw = ref["driving_hw"]
    rh, rw = ref["reference_hw"]
    driving = _frames(ref["wan_drive_points"], ref[f"wan_{case}_drive_scores"], (dh, dw), neck="mean")
    reference = _frames(ref["wan_ref_points"][None], ref[f"wan_{case}_ref_scores"][None], (rh, rw), neck="mean")[0]
    out = retarget.retarget_wan_animate(driving, reference, reference_compat=True)
    people = np.stack([f.people[0] for f in out])
    body = ref[f"wan_{case}_body"]                                    # [T, 20, 3] reference pixels
    np.testing.assert_allclose(people[:, kp.BODY, :2], body[:, :18, :2], atol=1e-6)
    np.testing.assert_allclose(people[:, kp.BODY, 2], body[:, :18, 2], atol=1e-9)
    np.testing.assert_allclose(_toe_means(people), body[:, 18:20, :2], atol=1e-6)
    # hands: the reference truncates them to whole pixels and drops points under 0.4
    for ours, theirs in ((people[:, kp.RIGHT_HAND], ref[f"wan_{case}_hand_a"]),
                         (people[:, kp.LEFT_HAND], ref[f"wan_{case}_hand_b"])):
        kept = ~np.isnan(theirs[..., 0])
        assert kept.sum() > 100 and (~kept).sum() > 0
        assert np.abs(ours[..., :2][kept] - theirs[..., :2][kept]).max() < 1.0
    expected = cv2.imread(str(FIXTURES / f"pose_wan_retarget_{case}.png"))[..., ::-1]
    ours = render_pose(out[2], style="wan_animate")
    assert np.array_equal(ours, expected)


# ---------------------------------------------------------------- known proportions
REFERENCE_LOOK = dict(neck=(260.0, 150.0), size=1.0, arms=(0.2, 0.1, 0.2, 0.1), legs=(0.05, 0.0, 0.05, 0.0))
DRIVING_LOOK = dict(neck=(200.0, 180.0), size=1.5,
                    proportions=dict(shoulder=80.0, hip=30.0, torso=130.0, upper_arm=70.0, forearm=95.0,
                                     thigh=95.0, shin=125.0, neck=45.0, eye=10.0, ear=26.0))


def _reference_frame():
    pts, sc = syn.person(**REFERENCE_LOOK)
    return _frames(pts[None], sc[None], (720, 520))[0]


def _driving_clip(frames=10):
    pts, sc = syn.clip(frames, **DRIVING_LOOK)
    return _frames(pts, sc, (1000, 800))


def _bone_lengths(person, bones):
    return np.array([np.linalg.norm(person[c, :2] - person[p, :2]) for p, c in bones])


BODY_BONES = retarget_reference.UNIANIMATE_BONES          # neck-to-head, arms, legs below the hips
WAN_BODY_LIMBS = retarget_reference.WAN_LIMBS[:17]        # all but the toe limbs, which are clamped to half a shin


@pytest.mark.parametrize("method", ["unianimate", "wan_animate"])
def test_retargeted_bones_keep_the_reference_lengths_in_every_frame(method):
    reference, driving = _reference_frame(), _driving_clip()
    if method == "unianimate":
        out, bones = retarget.retarget_unianimate(driving, reference), BODY_BONES
    else:
        out, bones = retarget.retarget_wan_animate(driving, reference), WAN_BODY_LIMBS
    ref_len = _bone_lengths(reference.people[0], bones)
    drive_len = _bone_lengths(driving[0].people[0], bones)
    assert np.abs(drive_len / ref_len - 1).max() > 0.3, "driving proportions should differ"
    worst = max(np.abs(_bone_lengths(f.people[0], bones) / ref_len - 1).max() for f in out)
    assert worst < 0.05, worst
    # hands stay on their wrists (the synthetic hands start exactly at the wrist)
    for f in out:
        person = f.people[0]
        assert np.linalg.norm(person[kp.RIGHT_HAND][0, :2] - person[retarget.R_WRIST, :2]) < 1e-6
        assert np.linalg.norm(person[kp.LEFT_HAND][0, :2] - person[retarget.L_WRIST, :2]) < 1e-6


def test_unianimate_reference_mode_lets_turning_bones_change_length():
    reference, driving = _reference_frame(), _driving_clip()
    out = retarget.retarget_unianimate(driving, reference, keep_bone_lengths=False, reference_compat=True)
    ref_len = _bone_lengths(reference.people[0], BODY_BONES)
    first = np.abs(_bone_lengths(out[0].people[0], BODY_BONES) / ref_len - 1).max()
    later = max(np.abs(_bone_lengths(f.people[0], BODY_BONES) / ref_len - 1).max() for f in out[1:])
    assert first < 1e-9 and later > 0.05


@pytest.mark.parametrize("neck_missing", [False, True])
@pytest.mark.parametrize("method", ["unianimate", "wan_animate"])
def test_same_body_scaled_and_moved_maps_back_onto_the_reference(method, neck_missing):
    """A driving person with the reference's proportions, 1.6x larger and elsewhere,
    lands exactly on the reference in the first frame, and a later frame that only
    moves the whole body moves the output by that motion divided by the scale."""
    ref_pts, ref_sc = syn.person(**REFERENCE_LOOK)
    s, shift, motion = 1.6, np.array([90.0, -40.0]), np.array([48.0, 16.0])
    drive_pts = np.stack([ref_pts * s + shift, ref_pts * s + shift + motion])
    driving = _frames(drive_pts, np.stack([ref_sc, ref_sc]), (1200, 900))
    reference = _frames(ref_pts[None], ref_sc[None], (720, 520))[0]
    if neck_missing:            # DWPose's neck is 0 when a shoulder is unsure: the body is still anchored
        for frame in driving + [reference]:
            frame.people[:, 1] = 0.0
    run = retarget.retarget_unianimate if method == "unianimate" else retarget.retarget_wan_animate
    out = run(driving, reference)
    expected = reference.people[0].copy()
    if method == "wan_animate":
        # Wan puts the lowest driving ankle on the reference's ankle-to-toe midpoint (its ground line)
        toes = _toe_means(expected[None])[0]
        ground = max((expected[retarget.L_ANKLE, 1] + toes[0, 1]) / 2, (expected[retarget.R_ANKLE, 1] + toes[1, 1]) / 2)
        expected[:, 1] += ground - max(expected[retarget.L_ANKLE, 1], expected[retarget.R_ANKLE, 1])
    if neck_missing:
        expected[1] = 0.0
    np.testing.assert_allclose(out[0].people[0][kp.BODY], expected[kp.BODY], atol=0.02)
    np.testing.assert_allclose(out[0].people[0][kp.LEFT_HAND], expected[kp.LEFT_HAND], atol=0.02)
    moved = expected[kp.BODY, :2] + np.where(expected[kp.BODY, 2:] > 0, motion / s, 0.0)
    np.testing.assert_allclose(out[1].people[0][kp.BODY, :2], moved, atol=0.02)


def test_wan_full_body_stands_where_the_reference_stands():
    reference, driving = _reference_frame(), _driving_clip()
    out = retarget.retarget_wan_animate(driving, reference)[0].people[0]
    r = reference.people[0]
    hips = lambda p: (p[retarget.R_HIP, 0] + p[retarget.L_HIP, 0]) / 2  # noqa: E731
    # within a pixel: Wan sizes the scaled reference canvas in whole pixels
    assert abs(hips(out) - hips(r)) < 1.0
    toes = _toe_means(r[None])[0]
    ground = max((r[retarget.L_ANKLE, 1] + toes[0, 1]) / 2, (r[retarget.R_ANKLE, 1] + toes[1, 1]) / 2)
    assert abs(max(out[retarget.R_ANKLE, 1], out[retarget.L_ANKLE, 1]) - ground) < 1.0


def test_unianimate_neck_lands_on_the_reference_neck():
    reference, driving = _reference_frame(), _driving_clip()
    out = retarget.retarget_unianimate(driving, reference)
    np.testing.assert_allclose(out[0].people[0][1, :2], reference.people[0][1, :2], atol=1e-9)


@pytest.mark.parametrize("run", [retarget.retarget_unianimate, retarget.retarget_wan_animate])
def test_empty_frames_and_missing_points(run):
    reference, driving = _reference_frame(), _driving_clip(4)
    driving[0] = driving[0].replace(people=kp.empty_people())
    person = driving[2].people.copy()
    person[0, retarget.R_ELBOW] = 0                       # elbow lost: the wrist follows the shoulder
    driving[2] = driving[2].replace(people=person)
    out = run(driving, reference)
    assert out[0].count == 0 and all(f.count == 1 for f in out[1:])
    assert out[2].people[0, retarget.R_ELBOW].tolist() == [0.0, 0.0, 0.0]
    assert np.isfinite(out[2].people).all() and out[2].people[0, retarget.R_WRIST, 2] > 0
    assert all(f.count == 0 for f in run([driving[0]] * 3, reference))


@pytest.mark.parametrize("run", [retarget.retarget_unianimate, retarget.retarget_wan_animate])
def test_reference_without_a_person_is_an_input_error(run):
    with pytest.raises(InputError, match="reference pose"):
        run(_driving_clip(2), kp.PoseFrame(kp.empty_people(), 512, 512))
