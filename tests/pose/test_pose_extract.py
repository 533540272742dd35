"""Frames in, poses out, on tiny ONNX stand-ins: batching, no-person frames, progress."""
import numpy as np
import pytest

from poseanimate.pose import keypoints as kp
from poseanimate.pose.extract import load_pose_estimator, to_uint8_frames
from poseanimate.pose.people import fill_empty_frames, select_people


def _clip():
    frames = np.zeros((4, 240, 320, 3), np.float32)
    frames[0, 30:200, 40:120] = 0.8            # a figure ...
    frames[0, 90, 80] = 1.0                     # ... with a brightest spot where the tiny models put every keypoint
    frames[2, 60:230, 200:300] = 0.9
    frames[2, 100, 250] = 1.0
    return frames                               # frames 1 and 3: nobody


@pytest.mark.parametrize("detector,keypoints", [("yolox", "rtmpose"), ("yolov10", "vitpose")])
def test_extraction_finds_people_and_skips_empty_frames(tiny_pose_files, detector, keypoints):
    estimator = load_pose_estimator(tiny_pose_files[keypoints], tiny_pose_files[detector], device="cpu")
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


def test_full_frame_fallback_is_the_reference_behaviour(tiny_pose_files):
    estimator = load_pose_estimator(tiny_pose_files["rtmpose"], tiny_pose_files["yolox"], device="cpu")
    poses = estimator(_clip())
    assert [p.count for p in poses] == [1, 1, 1, 1]               # nobody found: the whole frame is searched
    assert (poses[1].people[0, :, 2] <= 0).all()                 # ... and, on a black frame, finds nothing sure


def test_batched_equals_one_by_one(tiny_pose_files):
    estimator = load_pose_estimator(tiny_pose_files["vitpose"], tiny_pose_files["yolov10"], device="cpu")
    clip = _clip()
    batched = estimator(clip, batch_size=16)
    single = estimator(clip, batch_size=1)
    for a, b in zip(batched, single):
        np.testing.assert_allclose(a.people, b.people, atol=1e-6)


def test_without_a_detector_every_frame_is_one_person(tiny_pose_files):
    estimator = load_pose_estimator(tiny_pose_files["rtmpose"], device="cpu")
    poses = estimator(_clip(), when_none_found="skip")
    assert [p.count for p in poses] == [0, 0, 0, 0]
    poses = estimator(_clip())
    assert [p.count for p in poses] == [1, 1, 1, 1]


def test_empty_batch_and_uint8_conversion(tiny_pose_files):
    estimator = load_pose_estimator(tiny_pose_files["rtmpose"], tiny_pose_files["yolox"], device="cpu")
    assert estimator(np.zeros((0, 64, 64, 3), np.uint8)) == []
    frames = to_uint8_frames(np.array([[[[0.0, 0.5, 1.0, 0.3]]]], np.float32))
    assert frames.dtype == np.uint8 and frames.tolist() == [[[[0, 128, 255]]]]


def test_frames_are_prepared_and_cropped_one_batch_at_a_time(tiny_pose_files):
    """A long video's detector inputs and keypoint crops are never all held: each batch is prepared just before
    it runs, so progress and interrupt checks come between batches from the first one on (issue 19)."""
    import numpy as np
    from poseanimate.pose.extract import load_pose_estimator
    estimator = load_pose_estimator(tiny_pose_files["rtmpose"], tiny_pose_files["yolox"], "cpu")
    frames = np.full((10, 64, 96, 3), 20, np.uint8)
    frames[:, 10:60, 30:60] = 200
    prepared, cropped, seen = [], [], []
    detector, keypoints = estimator.detector, estimator.keypoints
    prepare, crop = detector.prepare, keypoints.crop
    detector.prepare = lambda *a, **k: prepared.append(1) or prepare(*a, **k)
    keypoints.crop = lambda *a, **k: cropped.append(1) or crop(*a, **k)
    try:
        poses = estimator(frames, batch_size=4, progress=lambda done, total: seen.append((len(prepared),
                                                                                         len(cropped))))
    finally:
        del detector.prepare, keypoints.crop
    assert len(poses) == 10
    assert seen[:3] == [(4, 0), (8, 0), (10, 0)]  # the detector's batches: 4, 4, 2 frames prepared
    assert seen[3][1] <= 4  # the keypoint model's first batch: at most one batch of crops
