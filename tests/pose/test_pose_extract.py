"""Frames in, poses out, on tiny ONNX stand-ins: batching, no-person frames, progress."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from poseanimate.pose import keypoints as kp  # noqa: E402
from poseanimate.pose.extract import load_pose_estimator, to_uint8_frames  # noqa: E402
from poseanimate.pose.people import fill_empty_frames, select_people  # noqa: E402


def _tiny():
    spec = importlib.util.spec_from_file_location("tiny_pose_models", Path(__file__).with_name("tiny_pose_models.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tiny = _tiny()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("pose_models")
    return {name: getattr(tiny, name)(d / f"{name}.onnx", dynamic=True)
            for name in ("yolox", "yolov10", "rtmpose", "vitpose")}


def _clip():
    frames = np.zeros((4, 240, 320, 3), np.float32)
    frames[0, 30:200, 40:120] = 0.8            # a figure ...
    frames[0, 90, 80] = 1.0                     # ... with a brightest spot where the tiny models put every keypoint
    frames[2, 60:230, 200:300] = 0.9
    frames[2, 100, 250] = 1.0
    return frames                               # frames 1 and 3: nobody


@pytest.mark.parametrize("detector,keypoints", [("yolox", "rtmpose"), ("yolov10", "vitpose")])
def test_extraction_finds_people_and_skips_empty_frames(models, detector, keypoints):
    estimator = load_pose_estimator(models[keypoints], models[detector], device="cpu")
    seen = []
    poses = estimator(_clip(), when_none_found="skip", batch_size=3, progress=lambda d, t: seen.append((d, t)))
    assert [p.count for p in poses] == [1, 0, 1, 0]
    assert (poses[0].width, poses[0].height) == (320, 240)
    tolerance = 1.5 if keypoints == "rtmpose" else 3.5
    assert np.abs(poses[0].people[0, kp.RIGHT_HAND, :2] - (80, 90)).max() <= tolerance
    assert np.abs(poses[2].people[0, kp.FACE][:68, :2] - (250, 100)).max() <= tolerance
    assert seen[-1][0] == seen[-1][1] and all(d <= t for d, t in seen)
    # DWPose's neck is 1/0, Wan's the shoulders' mean confidence
    neck = poses[0].people[0, 1, 2]
    assert neck == 1.0 if keypoints == "rtmpose" else 0 < neck
    # the whole clip still makes a full POSE_KEYPOINT list, and a full clip after the no-person policy
    assert len(kp.to_pose_keypoint(poses)) == 4
    filled = fill_empty_frames(select_people(poses, "largest"), "hold")
    assert [p.count for p in filled] == [1, 1, 1, 1]


def test_full_frame_fallback_is_the_reference_behaviour(models):
    estimator = load_pose_estimator(models["rtmpose"], models["yolox"], device="cpu")
    poses = estimator(_clip())
    assert [p.count for p in poses] == [1, 1, 1, 1]               # nobody found: the whole frame is searched
    assert (poses[1].people[0, :, 2] <= 0).all()                 # ... and, on a black frame, finds nothing sure


def test_batched_equals_one_by_one(models):
    estimator = load_pose_estimator(models["vitpose"], models["yolov10"], device="cpu")
    clip = _clip()
    batched = estimator(clip, batch_size=16)
    single = estimator(clip, batch_size=1)
    for a, b in zip(batched, single):
        np.testing.assert_allclose(a.people, b.people, atol=1e-6)


def test_without_a_detector_every_frame_is_one_person(models):
    estimator = load_pose_estimator(models["rtmpose"], device="cpu")
    poses = estimator(_clip(), when_none_found="skip")
    assert [p.count for p in poses] == [0, 0, 0, 0]
    poses = estimator(_clip())
    assert [p.count for p in poses] == [1, 1, 1, 1]


def test_empty_batch_and_uint8_conversion(models):
    estimator = load_pose_estimator(models["rtmpose"], models["yolox"], device="cpu")
    assert estimator(np.zeros((0, 64, 64, 3), np.uint8)) == []
    frames = to_uint8_frames(np.array([[[[0.0, 0.5, 1.0, 0.3]]]], np.float32))
    assert frames.dtype == np.uint8 and frames.tolist() == [[[[0, 128, 255]]]]
