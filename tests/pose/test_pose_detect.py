"""Detectors against the reference code's outputs (tests/fixtures/make_pose_decoding_parity.py)
and end to end on tiny ONNX stand-ins."""
from pathlib import Path

import cv2
import numpy as np
import pytest

from poseanimate.pose import detect

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "pose_decoding_parity.npz"


@pytest.fixture(scope="module")
def ref():
    return dict(np.load(FIXTURE))


def _png(data):
    return cv2.imdecode(data, cv2.IMREAD_UNCHANGED)


def _raw_yolox(ref, name):
    raw = np.zeros((8400, 85), np.float32)
    raw[ref[f"yolox_{name}_index"]] = ref[f"yolox_{name}_rows"]
    return raw


@pytest.mark.parametrize("name", ["a", "b"])
def test_yolox_letterbox_matches_reference_exactly(ref, name):
    tensor, ratio = detect.yolox_input(_png(ref[f"yolox_{name}_image"]), (640, 640))
    expected = _png(ref[f"yolox_{name}_input"])
    assert np.array_equal(tensor.transpose(1, 2, 0).astype(np.uint8), expected)
    image = _png(ref[f"yolox_{name}_image"])
    assert ratio == min(640 / image.shape[0], 640 / image.shape[1])


@pytest.mark.parametrize("name", ["a", "b"])
def test_yolox_decoding_and_nms_match_reference(ref, name):
    image = _png(ref[f"yolox_{name}_image"])
    ratio = min(640 / image.shape[0], 640 / image.shape[1])
    found = detect.yolox_people(_raw_yolox(ref, name), (640, 640), ratio)
    expected = ref[f"yolox_{name}_boxes"]
    assert len(expected) >= 2, "fixture should keep several people"
    np.testing.assert_allclose(found.boxes, expected, atol=1e-4)
    assert np.all(found.scores > 0.3) and np.all(np.diff(found.scores) <= 0)


@pytest.mark.parametrize("name", ["a", "b"])
def test_yolov10_resize_matches_reference_exactly(ref, name):
    image_as_fed = _png(ref[f"y10_{name}_image"])           # Wan hands the detector the flip of this
    tensor = detect.yolov10_input(detect.with_channel_order(image_as_fed[..., ::-1], "rgb"), (640, 640))
    expected = _png(ref[f"y10_{name}_input"])
    assert np.array_equal(np.round(tensor * 255).astype(np.uint8).transpose(1, 2, 0), expected)


@pytest.mark.parametrize("name", ["a", "b"])
def test_yolov10_boxes_nms_and_person_choice_match_reference(ref, name):
    image = _png(ref[f"y10_{name}_image"])
    rows = detect.yolov10_boxes(ref[f"y10_{name}_raw"], image.shape[:2], (640, 640))
    np.testing.assert_allclose(rows, ref[f"y10_{name}_rows"], rtol=0, atol=1e-6)
    order = detect.wan_person_order(rows)
    np.testing.assert_allclose(rows[order[0], :5], ref[f"y10_{name}_main"], atol=1e-6)
    np.testing.assert_allclose(rows[order, :5], ref[f"y10_{name}_people"], atol=1e-6)


def test_nms_opencv_agrees_with_cv2():
    rng = np.random.default_rng(0)
    xy = rng.integers(0, 200, (60, 2))
    wh = rng.integers(5, 120, (60, 2))
    boxes = np.concatenate([xy, wh], 1).astype(np.int32)
    scores = rng.uniform(0, 1, 60).astype(np.float32)
    scores[10:14] = scores[9]                                  # ties keep input order
    ours = detect.nms_opencv(boxes, scores, 0.05, 0.5)
    theirs = cv2.dnn.NMSBoxes(boxes.tolist(), scores.tolist(), 0.05, 0.5)
    assert ours == [int(i) for i in np.asarray(theirs).reshape(-1)]


def test_wan_person_order_skips_thin_boxes_and_ranks_by_area():
    rows = np.array([[0, 0, 50, 100, 0.9, 0],       # side 100 < 0.4 x the longest side: skipped
                     [0, 0, 8, 2000, 0.9, 0],       # chosen first (side 2000), then beaten on area
                     [0, 0, 1000, 900, 0.9, 2],     # not a person
                     [0, 0, 900, 850, 0.5, 0],      # the main person: largest area, side 900 >= 800
                     [0, 0, 400, 400, 0.7, 0],      # another person: over 0.1 of the main area
                     [0, 0, 900, 850, 0.03, 0]], float)  # under the score threshold
    assert detect.wan_person_order(rows) == [3, 4]


@pytest.mark.parametrize("kind", ["yolox", "yolov10"])
def test_detector_end_to_end_finds_the_bright_figure(tiny_pose_files, kind):
    det = detect.load_detector(tiny_pose_files[kind], device="cpu")
    assert det.kind == kind
    frames = np.zeros((3, 360, 480, 3), np.uint8)
    frames[0, 40:300, 100:180] = 230
    frames[1, 10:200, 300:470] = 250
    found = det(frames, batch_size=2)
    tolerance = 1.5 if kind == "yolox" else 3.0       # YOLOv10's boxes are truncated to whole pixels
    np.testing.assert_allclose(found[0].boxes, [[100, 40, 180, 300]], atol=tolerance)
    np.testing.assert_allclose(found[1].boxes, [[300, 10, 470, 200]], atol=tolerance)
    assert len(found[2].boxes) == 0
