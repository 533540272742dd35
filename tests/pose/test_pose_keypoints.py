"""The pose data model: POSE_KEYPOINT in and out, validation, 133 -> OpenPose mapping."""
import copy
import json
from pathlib import Path

import numpy as np
import pytest

from poseanimate.errors import InputError
from poseanimate.pose import keypoints as kp

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "pose_decoding_parity.npz"


def _controlnet_aux_frame(normalised: bool) -> dict:
    """A frame as comfyui_controlnet_aux writes it: confidences 1.0, missing
    points [0, 0, 0], absent hands None, 70-point face."""
    w, h = 640, 480
    rng = np.random.default_rng(3)
    body = []
    for i in range(18):
        if i in (3, 16):
            body += [0.0, 0.0, 0.0]
        else:
            x, y = rng.uniform(10, w - 10), rng.uniform(10, h - 10)
            body += [x / w, y / h, 1.0] if normalised else [x, y, 1.0]
    face = [v for _ in range(70) for v in ([0.5, 0.25, 1.0] if normalised else [320.0, 120.0, 1.0])]
    return {"people": [{"pose_keypoints_2d": body, "face_keypoints_2d": face,
                        "hand_left_keypoints_2d": None, "hand_right_keypoints_2d": None}],
            "canvas_height": h, "canvas_width": w}


@pytest.mark.parametrize("normalised", [False, True])
def test_controlnet_aux_list_round_trips_unchanged(normalised):
    data = [_controlnet_aux_frame(normalised), {"people": [], "canvas_height": 480, "canvas_width": 640}]
    original = copy.deepcopy(data)
    frames = kp.from_pose_keypoint(data)
    assert data == original                                   # reading does not touch the input
    assert kp.to_pose_keypoint(frames) == original
    # a no-op through the pack's own helpers still round-trips
    again = [f.replace() for f in frames]
    assert json.dumps(kp.to_pose_keypoint(again)) == json.dumps(original)


def test_normalised_coordinates_become_pixels():
    data = [_controlnet_aux_frame(True)]
    frame = kp.from_pose_keypoint(data)[0]
    body = np.asarray(data[0]["people"][0]["pose_keypoints_2d"]).reshape(18, 3)
    np.testing.assert_allclose(frame.people[0, kp.BODY, 0], body[:, 0] * 640)
    np.testing.assert_allclose(frame.people[0, kp.BODY, 1], body[:, 1] * 480)
    assert frame.people[0, 3, 2] == 0 and frame.people[0, 0, 2] == 1.0
    assert (frame.people[0, kp.LEFT_HAND, 2] == 0).all()      # None hand: no points
    # a changed frame is written in pixels
    moved = frame.replace(people=frame.people + np.array([1.0, 0.0, 0.0]))
    out = kp.to_pose_keypoint([moved])[0]["people"][0]
    np.testing.assert_allclose(np.asarray(out["pose_keypoints_2d"]).reshape(18, 3)[0, :2],
                               (body[0, 0] * 640 + 1, body[0, 1] * 480))
    assert len(out["hand_left_keypoints_2d"]) == 63 and len(out["foot_keypoints_2d"]) == 18


def test_real_confidences_are_written_and_binary_mode_thresholds():
    people = kp.empty_people(1)
    people[0, 0] = (10.5, 20.25, 0.42)
    people[0, 1] = (30.0, 40.0, 0.1)
    frame = kp.PoseFrame(people, 64, 48)
    real = kp.to_pose_keypoint([frame])[0]["people"][0]["pose_keypoints_2d"]
    assert real[:6] == [10.5, 20.25, 0.42, 30.0, 40.0, 0.1]
    binary = kp.to_pose_keypoint([frame], confidence="binary")[0]["people"][0]["pose_keypoints_2d"]
    assert binary[:6] == [10.5, 20.25, 1.0, 0.0, 0.0, 0.0]
    back = kp.from_pose_keypoint(kp.to_pose_keypoint([frame]))[0]
    np.testing.assert_array_equal(back.people, people)


def test_nested_points_and_68_point_faces_are_accepted():
    frame = {"people": [{"pose_keypoints_2d": [[1.0, 2.0, 0.5]] * 18, "face_keypoints_2d": [3.0, 4.0, 0.9] * 68}],
             "canvas_width": 100, "canvas_height": 50}
    pose = kp.from_pose_keypoint(frame)[0]
    assert pose.people[0, 0].tolist() == [1.0, 2.0, 0.5]
    assert pose.people[0, kp.FACE][67].tolist() == [3.0, 4.0, 0.9]
    assert pose.people[0, kp.FACE][68:, 2].tolist() == [0.0, 0.0]


@pytest.mark.parametrize("frame,words", [
    ({"people": [{"pose_keypoints_2d": [0.0] * 51}], "canvas_width": 10, "canvas_height": 10},
     ["frame 0 person 0", "pose_keypoints_2d", "51 numbers", "54 numbers"]),
    ({"people": [{"hand_left_keypoints_2d": [0.0] * 60}], "canvas_width": 10, "canvas_height": 10},
     ["hand_left_keypoints_2d", "60 numbers", "63 numbers"]),
    ({"people": [{"face_keypoints_2d": [0.0] * 9}], "canvas_width": 10, "canvas_height": 10},
     ["face_keypoints_2d", "210 numbers", "204 numbers"]),
    ({"people": [], "canvas_width": 0, "canvas_height": 10}, ["frame 0", "canvas"]),
    ({"people": [{"pose_keypoints_2d": ["a"] * 54}], "canvas_width": 10, "canvas_height": 10}, ["not a number"]),
    ({"people": [{"pose_keypoints_2d": [float("nan")] * 54}], "canvas_width": 10, "canvas_height": 10}, ["NaN"]),
])
def test_bad_lists_name_the_frame_person_field_and_expected_length(frame, words):
    with pytest.raises(InputError) as err:
        kp.from_pose_keypoint([frame])
    for word in words:
        assert word in str(err.value)


def test_not_a_list_is_an_input_error():
    with pytest.raises(InputError, match="POSE_KEYPOINT list"):
        kp.from_pose_keypoint("people")
    with pytest.raises(InputError, match="frame 1"):
        kp.from_pose_keypoint([{"people": [], "canvas_width": 5, "canvas_height": 5}, 7])


def test_wholebody_mapping_matches_dwpose_reference():
    ref = np.load(FIXTURE)
    people = kp.wholebody_to_people(ref["wb_points"], ref["wb_scores"], neck="dwpose")
    ref_pts, ref_sc = ref["wb_ref_points"], ref["wb_ref_scores"]            # [P, 134, 2], [P, 134]
    full = np.concatenate([ref_pts, ref_sc[..., None]], -1)
    full[full[..., 2] <= 0] = 0                                               # ours: no score, no point
    np.testing.assert_allclose(people[:, kp.BODY], full[:, :18], atol=1e-9)
    np.testing.assert_allclose(people[:, kp.FEET], full[:, 18:24], atol=1e-9)
    np.testing.assert_allclose(people[:, kp.FACE][:, :68], full[:, 24:92], atol=1e-9)
    np.testing.assert_allclose(people[:, kp.LEFT_HAND], full[:, 92:113], atol=1e-9)
    np.testing.assert_allclose(people[:, kp.RIGHT_HAND], full[:, 113:134], atol=1e-9)
    assert people[:, 1, 2].tolist() == [1.0, 0.0, 0.0]                     # neck: both shoulders > 0.3
    # pupils as comfyui_controlnet_aux pads the face: right eye (body 14), then left eye (body 15)
    np.testing.assert_array_equal(people[:, kp.FACE][:, 68], people[:, 14])
    np.testing.assert_array_equal(people[:, kp.FACE][:, 69], people[:, 15])


def test_wholebody_mapping_matches_wan_split():
    ref = np.load(FIXTURE)
    people = kp.wholebody_to_people(ref["wb_points"], ref["wb_scores"], neck="mean")
    wan = ref["wb_wan_body"]                                                  # [P, 20, 3]
    np.testing.assert_allclose(people[:, kp.BODY], wan[:, :18], atol=1e-9)
    feet = people[:, kp.FEET]
    np.testing.assert_allclose((feet[:, 0] + feet[:, 1]) / 2, wan[:, 18], atol=1e-9)
    np.testing.assert_allclose((feet[:, 3] + feet[:, 4]) / 2, wan[:, 19], atol=1e-9)


def test_scale_frames_letterbox_matches_wan_padding():
    people = kp.empty_people(1)
    people[0, 0] = (100.0, 50.0, 0.9)
    frame = kp.PoseFrame(people, 200, 100)
    out = kp.scale_frames([frame], 100, 100, mode="letterbox")[0]
    assert (out.width, out.height) == (100, 100)
    assert out.people[0, 0].tolist() == [50.0, 25.0 + 25, 0.9]
    assert out.people[0, 1].tolist() == [0.0, 0.0, 0.0]


def test_scale_frames_crop_fills_the_canvas_centred():
    people = kp.empty_people(1)
    people[0, 0] = (100.0, 50.0, 0.9)          # the frame's centre
    people[0, 2] = (0.0, 0.0, 0.5)             # its top-left corner
    frame = kp.PoseFrame(people, 200, 100)
    out = kp.scale_frames([frame], 100, 100, mode="crop")[0]
    assert (out.width, out.height) == (100, 100)
    assert out.people[0, 0].tolist() == [50.0, 50.0, 0.9]       # scale 1 (height fills), centred
    assert out.people[0, 2].tolist() == [-50.0, 0.0, 0.5]      # cut off: left of the canvas
    assert out.people[0, 1].tolist() == [0.0, 0.0, 0.0]
