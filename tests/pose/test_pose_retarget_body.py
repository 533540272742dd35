"""Retargeting keeps the whole reference body (issue 21): constructed skeleton
sequences of different proportions, scales and aspect ratios; every bone of
every default mode within 5% of the reference in every frame where its joints
are present, the driver's angles kept, frame 0 not special, the tracked person."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from poseanimate.errors import InputError
from poseanimate.pose import keypoints as kp
from poseanimate.pose import retarget as rt
from poseanimate.pose import retarget_geometry
from poseanimate.pose.retarget_report import retarget_report

_spec = importlib.util.spec_from_file_location("synthetic_skeletons",
                                               Path(__file__).with_name("synthetic_skeletons.py"))
syn = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(syn)

ADULT = dict(shoulder=60.0, hip=35.0, torso=150.0, neck=55.0, upper_arm=85.0, forearm=75.0, thigh=110.0,
             shin=105.0, eye=14.0, ear=30.0, foot=30.0, hand=35.0, face=40.0)
CHILD = dict(shoulder=42.0, hip=30.0, torso=90.0, neck=38.0, upper_arm=48.0, forearm=42.0, thigh=58.0, shin=52.0,
             eye=17.0, ear=36.0, foot=20.0, hand=22.0, face=58.0)
TALL = dict(shoulder=72.0, hip=26.0, torso=165.0, neck=50.0, upper_arm=100.0, forearm=96.0, thigh=150.0,
            shin=145.0, eye=11.0, ear=26.0, foot=36.0, hand=42.0, face=33.0)
REFERENCES = {"adult_portrait": (ADULT, 1.0, (260.0, 150.0), (520, 720)),
              "child_square": (CHILD, 1.6, (512.0, 260.0), (1024, 1024)),
              "adult_landscape": (ADULT, 0.8, (450.0, 120.0), (900, 500))}
DRIVERS = {"tall_landscape": (TALL, 1.5, (500.0, 160.0), (1920, 1080)),
           "tall_portrait": (TALL, 1.1, (300.0, 220.0), (720, 1280)),
           "adult_small": (ADULT, 0.6, (200.0, 100.0), (640, 480))}
MODES = {"unianimate": lambda d, r: rt.retarget_unianimate(d, r),
         "wan_animate": lambda d, r: rt.retarget_wan_animate(d, r)}


def _frame(pts, sc, wh):
    return kp.PoseFrame(kp.wholebody_to_people(pts[None], sc[None])[0][None], wh[0], wh[1])


def _reference(name):
    proportions, size, neck, wh = REFERENCES[name]
    return _frame(*syn.person(neck=neck, size=size, proportions=proportions, arms=(0.2, 0.1, 0.2, 0.1),
                              legs=(0.05, 0.0, 0.05, 0.0)), wh)


def _driving(name, frames=12, sizes=None):
    proportions, size, neck, wh = DRIVERS[name]
    pts, sc = syn.clip(frames, neck=neck, size=size, proportions=proportions)
    if sizes is not None:                  # walking toward the camera: the whole body grows about the neck
        centre = np.asarray(neck)
        pts = centre + (pts - centre) * np.asarray(sizes)[:, None, None]
    return [_frame(p, s, wh) for p, s in zip(pts, sc)]


def _vec(person, bone):
    return rt.measure_bone(person, bone)[0]


def _group_size(person, name):
    _, group, anchor = next(g for g in rt.GROUPS if g[0] == name)
    return rt._group_size(person, group, anchor, kp.VISIBLE)


def _errors(out, reference, driving):
    """Per frame and bone: |out / ref - 1| (nan where a joint is missing), and the angle to the driving bone."""
    ref = reference.people[0]
    ref_len = np.array([np.linalg.norm(_vec(ref, b)) for b in rt.BONES])
    err = np.full((len(out), len(rt.BONES)), np.nan)
    ang = np.full_like(err, np.nan)
    for t, (f, d) in enumerate(zip(out, driving)):
        person, src = retarget_geometry.with_neck(f.people[0]), retarget_geometry.with_neck(d.people[0])
        for b, bone in enumerate(rt.BONES):
            if rt.measure_bone(src, bone)[1] < kp.VISIBLE:
                continue
            v, w = _vec(person, bone), _vec(src, bone)
            err[t, b] = np.linalg.norm(v) / ref_len[b] - 1
            cos = np.dot(v, w) / np.linalg.norm(v) / np.linalg.norm(w)
            ang[t, b] = np.degrees(np.arccos(np.clip(cos, -1, 1)))
    return err, ang


CASES = [(m, r, d) for m in MODES for r in REFERENCES for d in DRIVERS]


@pytest.mark.parametrize("mode,ref_name,drive_name", CASES)
def test_every_bone_and_part_within_5_percent_in_every_frame(mode, ref_name, drive_name):
    reference, driving = _reference(ref_name), _driving(drive_name)
    out = MODES[mode](driving, reference)
    err, ang = _errors(out, reference, driving)
    assert not np.isnan(err).any()
    assert np.abs(err).max() < 0.05, (np.abs(err).max(), rt.bone_name(rt.BONES[np.nanargmax(np.abs(err)) % 17]))
    # angles: Wan keeps the driver's directions; UniAnimate takes them from the globally scaled driver
    # (x and y scaled by different ratios): measured at 4.4 degrees at worst (0.8 mean) on these bodies
    assert np.nanmax(ang) < (2.0 if mode == "wan_animate" else 5.0), np.nanmax(ang)
    # hands, feet and face take the reference's size
    for name, *_ in rt.GROUPS:
        ref_size = _group_size(reference.people[0], name)
        for f in out:
            assert abs(_group_size(f.people[0], name) / ref_size - 1) < 0.05, name
    report = retarget_report(driving, out, reference)
    assert report.worst_error < 0.05 and report.missing_frames == [] and report.empty_frames == []


def test_the_driving_proportions_really_differ():
    """The cases above are not trivially met: apart from the adult driving the adults (scale and aspect
    ratio only), some driving bone is more than 13% off the reference's proportions."""
    for ref_name in REFERENCES:
        for drive_name in DRIVERS:
            if REFERENCES[ref_name][0] is DRIVERS[drive_name][0]:
                continue
            reference, driving = _reference(ref_name), _driving(drive_name, 1)
            scale = np.linalg.norm(_vec(driving[0].people[0], rt.BONES[5])) / np.linalg.norm(
                _vec(reference.people[0], rt.BONES[5]))
            ratios = [np.linalg.norm(_vec(driving[0].people[0], b)) / np.linalg.norm(_vec(reference.people[0], b))
                      for b in rt.BONES]
            assert np.abs(np.array(ratios) / scale - 1).max() > 0.13


@pytest.mark.parametrize("mode", list(MODES))
def test_hips_and_face_of_a_child_reference(mode):
    """The two parts the reference rules leave at the driver's proportions."""
    reference, driving = _reference("child_square"), _driving("tall_landscape")
    out = MODES[mode](driving, reference)
    ref = reference.people[0]
    for f in out:
        p = f.people[0]
        assert abs(np.linalg.norm(_vec(p, (rt.R_HIP, rt.L_HIP))) / np.linalg.norm(_vec(ref, (rt.R_HIP, rt.L_HIP)))
                   - 1) < 0.05
        assert abs(_group_size(p, "face") / _group_size(ref, "face") - 1) < 0.05
    compat = {"unianimate": lambda: rt.retarget_unianimate(driving, reference, reference_compat=True),
              "wan_animate": lambda: rt.retarget_wan_animate(driving, reference, reference_compat=True)}[mode]()
    hip = np.linalg.norm(_vec(compat[0].people[0], (rt.R_HIP, rt.L_HIP))) / np.linalg.norm(
        _vec(ref, (rt.R_HIP, rt.L_HIP)))
    assert abs(hip - 1) > 0.1                  # the reference rules' hips, kept as they were


@pytest.mark.parametrize("mode", list(MODES))
def test_walking_toward_the_camera_scales_the_whole_figure_evenly(mode):
    sizes = np.linspace(0.7, 1.3, 12)
    reference, driving = _reference("adult_portrait"), _driving("tall_landscape", sizes=sizes)
    out = MODES[mode](driving, reference)
    err, _ = _errors(out, reference, driving)
    ratio = 1 + err
    per_frame = np.median(ratio, axis=1)
    assert np.abs(ratio / per_frame[:, None] - 1).max() < 0.05
    np.testing.assert_allclose(per_frame / per_frame[0], sizes / sizes[0], rtol=0.01)
    assert retarget_report(driving, out, reference).worst_error < 0.05


@pytest.mark.parametrize("mode", list(MODES))
def test_joints_missing_in_frame_0_change_no_other_frame(mode):
    reference, driving = _reference("child_square"), _driving("tall_portrait")
    full = MODES[mode](driving, reference)
    holed = list(driving)
    person = driving[0].people.copy()
    for joint in (rt.R_KNEE, rt.L_ANKLE, rt.L_ELBOW, rt.R_HIP, rt.R_EAR):
        person[0, joint] = 0.0
    person[0, kp.LEFT_HAND, 2] = 0.0
    holed[0] = driving[0].replace(people=person)
    out = MODES[mode](holed, reference)
    for a, b in zip(full[1:], out[1:]):
        pa, pb = a.people[0], b.people[0]
        np.testing.assert_allclose([np.linalg.norm(_vec(pb, bone)) for bone in rt.BONES],
                                   [np.linalg.norm(_vec(pa, bone)) for bone in rt.BONES], rtol=1e-9)
        for name, *_ in rt.GROUPS:
            assert _group_size(pb, name) == pytest.approx(_group_size(pa, name), rel=1e-9)
    err, _ = _errors(out, reference, holed)
    assert np.nanmax(np.abs(err)) < 0.05 and np.isnan(err[0]).sum() > 0
    report = retarget_report(holed, out, reference)
    assert report.missing_frames == [0] and report.worst_error < 0.05
    assert "frames with missing joints: 0" in report.line()


@pytest.mark.parametrize("mode", list(MODES))
def test_a_bone_never_seen_in_the_driving_video_takes_the_reference_length(mode):
    """Its own fallback: no other limb's ratio (the reference rules give it the global or shoulder ratio)."""
    reference, driving = _reference("child_square"), _driving("tall_landscape", 6)
    low = []
    for f in driving:
        person = f.people.copy()
        person[0, rt.L_KNEE, 2] = 0.2                 # present, never confident
        low.append(f.replace(people=person))
    out = MODES[mode](low, reference)
    ref_len = np.linalg.norm(_vec(reference.people[0], (rt.L_KNEE, rt.L_ANKLE)))
    for f in out:
        assert np.linalg.norm(_vec(f.people[0], (rt.L_KNEE, rt.L_ANKLE))) == pytest.approx(ref_len, rel=1e-9)
        other = np.linalg.norm(_vec(f.people[0], (rt.R_KNEE, rt.R_ANKLE)))
        assert other == pytest.approx(np.linalg.norm(_vec(reference.people[0], (rt.R_KNEE, rt.R_ANKLE))), rel=0.05)


@pytest.mark.parametrize("mode", list(MODES))
def test_two_crossing_people_keep_their_tracks(mode):
    """Two people walk past each other; the detector's order flips every frame and at the crossing.
    The retargeted motion is the first person's throughout."""
    reference = _reference("adult_portrait")
    a_pts, a_sc = syn.clip(12, neck=(150.0, 200.0), size=1.0, proportions=TALL)
    b_pts, b_sc = syn.clip(12, neck=(520.0, 230.0), size=0.9, proportions=ADULT)
    a_pts[:, :, 0] += np.arange(12)[:, None] * 28.0                  # A walks right, B walks left
    b_pts[:, :, 0] -= np.arange(12)[:, None] * 28.0
    a = kp.wholebody_to_people(a_pts, a_sc)
    b = kp.wholebody_to_people(b_pts, b_sc)
    both = [kp.PoseFrame(np.stack([a[t], b[t]] if t == 0 or t % 3 else [b[t], a[t]]), 800, 600) for t in range(12)]
    alone = [kp.PoseFrame(a[t][None], 800, 600) for t in range(12)]
    out, expected = MODES[mode](both, reference), MODES[mode](alone, reference)
    for o, e in zip(out, expected):
        np.testing.assert_allclose(o.people, e.people, atol=1e-9)
    err, _ = _errors(out, reference, alone)
    assert np.abs(err).max() < 0.05


def test_normalized_space_is_the_reference_behaviour_only():
    reference, driving = _reference("adult_portrait"), _driving("tall_landscape", 3)
    with pytest.raises(InputError, match="normalized"):
        rt.retarget_unianimate(driving, reference, space="normalized")
    # UniAnimate's own measure on non-square images: kept as it is, and it distorts the bones
    out = rt.retarget_unianimate(driving, reference, space="normalized", reference_compat=True)
    err, _ = _errors(out, reference, driving)
    assert np.nanmax(np.abs(err)) > 0.2
    assert retarget_report(driving, out, reference).worst_error > 0.2


@pytest.mark.parametrize("mode", list(MODES))
def test_a_frame_with_one_hip_keeps_that_hip_at_the_reference_distance(mode):
    """Without the other hip there is no torso midpoint or hip width: the seen hip hangs from the neck at
    the reference's neck-to-hip length (its own bone), and its leg follows at the reference's lengths."""
    reference, driving = _reference("child_square"), _driving("tall_landscape", 6)
    person = driving[3].people.copy()
    person[0, rt.L_HIP] = 0.0
    driving[3] = driving[3].replace(people=person)
    out = MODES[mode](driving, reference)
    ref, p = reference.people[0], out[3].people[0]
    assert p[rt.L_HIP, 2] == 0
    for bone in ((rt.NECK, rt.R_HIP), (rt.R_HIP, rt.R_KNEE), (rt.R_KNEE, rt.R_ANKLE)):
        assert np.linalg.norm(_vec(p, bone)) == pytest.approx(np.linalg.norm(_vec(ref, bone)), rel=0.05)
    assert retarget_report(driving, out, reference).missing_frames == [3]
