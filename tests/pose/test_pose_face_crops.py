"""Face crops: boxes equal Wan2.2-Animate's get_face_bboxes, crops are the box stretched to 512."""
from pathlib import Path

import cv2
import numpy as np
import pytest

from poseanimate.errors import InputError
from poseanimate.pose import keypoints as kp
from poseanimate.pose.face_crops import crop_faces, face_boxes

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "pose_decoding_parity.npz"


def _frame_with_face(landmarks, w, h, confidence=0.9):
    people = kp.empty_people(1)
    people[0, kp.FACE][:68] = np.concatenate([landmarks, np.full((68, 1), confidence)], 1)
    return kp.PoseFrame(people, w, h)


def test_face_boxes_match_wan():
    ref = np.load(FIXTURE)
    h, w = ref["face_image_hw"]
    frames = [_frame_with_face(f, w, h) for f in ref["face_landmarks"]]
    ours = face_boxes(frames, (h, w))
    theirs = [(x1, y1, x2, y2) for x1, x2, y1, y2 in ref["face_boxes"]]
    assert ours == [tuple(int(v) for v in b) for b in theirs]


def test_crops_are_the_box_resized_and_missing_faces_borrow_the_nearest_box():
    rng = np.random.default_rng(0)
    h, w = 240, 320
    images = rng.integers(0, 256, (4, h, w, 3), dtype=np.uint8)
    face = np.array([150.0, 100.0]) + rng.normal(0, 10, (68, 2))
    frames = [_frame_with_face(face, w, h), kp.PoseFrame(kp.empty_people(), w, h),
              _frame_with_face(face + 20, w, h), _frame_with_face(face, w, h, confidence=0.0)]
    boxes = face_boxes(frames, (h, w))
    assert boxes[1] == boxes[0] and boxes[3] == boxes[2]     # frame 1: nearest is 0 (tie -> earlier); 3: from 2
    crops = crop_faces(images, frames, size=128)
    assert crops.shape == (4, 128, 128, 3) and crops.dtype == np.uint8
    x1, y1, x2, y2 = boxes[2]
    np.testing.assert_array_equal(crops[2], cv2.resize(images[2, y1:y2, x1:x2], (128, 128)))


def test_poses_on_another_canvas_are_scaled_to_the_images():
    face = np.array([300.0, 200.0]) + np.random.default_rng(1).normal(0, 20, (68, 2))
    big = face_boxes([_frame_with_face(face, 640, 480)], (480, 640))[0]
    small = face_boxes([_frame_with_face(face / 2, 320, 240)], (480, 640))[0]
    assert np.abs(np.subtract(big, small)).max() <= 1


def test_no_face_anywhere_is_an_input_error():
    frames = [kp.PoseFrame(kp.empty_people(), 64, 64)] * 2
    with pytest.raises(InputError, match="no face"):
        crop_faces(np.zeros((2, 64, 64, 3), np.uint8), frames)
    with pytest.raises(InputError, match="one pose frame per image"):
        crop_faces(np.zeros((3, 64, 64, 3), np.uint8), frames)


def test_face_boxes_follow_the_tracked_person_when_the_detector_order_flips():
    """Two people walking apart; the detector lists them in a different order in odd frames.
    person=k is the same person (body and face) in every frame."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("synthetic_skeletons",
                                                  Path(__file__).with_name("synthetic_skeletons.py"))
    syn = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(syn)
    a_pts, a_sc = syn.clip(6, neck=(150.0, 150.0))
    b_pts, b_sc = syn.clip(6, neck=(420.0, 160.0), size=0.8)
    a, b = kp.wholebody_to_people(a_pts, a_sc), kp.wholebody_to_people(b_pts, b_sc)
    frames = [kp.PoseFrame(np.stack([a[t], b[t]] if t % 2 == 0 else [b[t], a[t]]), 640, 480) for t in range(6)]
    alone_a = [kp.PoseFrame(a[t][None], 640, 480) for t in range(6)]
    alone_b = [kp.PoseFrame(b[t][None], 640, 480) for t in range(6)]
    assert face_boxes(frames, (480, 640), person=0) == face_boxes(alone_a, (480, 640))
    assert face_boxes(frames, (480, 640), person=1) == face_boxes(alone_b, (480, 640))
