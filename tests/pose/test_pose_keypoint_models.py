"""RTMPose and ViTPose crops and decoding against the reference code's outputs
(tests/fixtures/make_pose_decoding_parity.py), and batched == one-by-one."""
from pathlib import Path

import cv2
import numpy as np
import pytest

from poseanimate.pose import keypoint_models as km
from poseanimate.pose.detect import Detections

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "pose_decoding_parity.npz"


@pytest.fixture(scope="module")
def ref():
    return dict(np.load(FIXTURE))


def _png(data):
    return cv2.imdecode(data, cv2.IMREAD_UNCHANGED)


def test_rtmpose_crops_match_reference(ref):
    """Equal with the OpenCV the fixture was made with (5.0); OpenCV 4.x rounds
    warpAffine's fixed-point interpolation differently: up to 4 levels on a few
    pixels."""
    image = _png(ref["rtm_image"])
    level = 1 / km.RTM_STD.min()
    for box, expected in zip(ref["rtm_boxes"], ref["rtm_crops"]):
        crop, _, _ = km.rtmpose_crop(image, box, (48, 64))
        diff = np.abs(crop - expected)
        assert diff.max() <= 4.5 * level and (diff > 1e-5).mean() < 0.05


def test_simcc_decoding_matches_reference_within_half_a_pixel(ref):
    image = _png(ref["rtm_image"])
    locs, vals = km.simcc_decode(ref["rtm_simcc_x"].astype(np.float32), ref["rtm_simcc_y"].astype(np.float32), 2.0)
    points = []
    for box, loc in zip(ref["rtm_boxes"], locs):
        _, center, scale = km.rtmpose_crop(image, box, (48, 64))
        points.append(km.simcc_to_frame(loc, (48, 64), center, scale))
    err = np.abs(np.stack(points) - ref["rtm_keypoints"]).max()
    assert err < 1e-6, err
    np.testing.assert_allclose(vals, ref["rtm_scores"], atol=1e-7)
    assert (vals <= 0).any(), "fixture should cover points without a positive response"


def test_vitpose_crops_and_boxes_match_reference(ref):
    image = _png(ref["vit_image"])
    for box, crop_ref, center_ref, scale_ref in zip(ref["vit_boxes"], ref["vit_crops"], ref["vit_centers"],
                                                   ref["vit_scales"]):
        usable = km.ViTPoseModel.usable_box(box[:4], box[4], image.shape[:2])
        center, scale = km.vitpose_center_scale(usable, (64, 48))
        np.testing.assert_allclose(center, center_ref, atol=1e-9)
        np.testing.assert_allclose(scale, scale_ref, atol=1e-12)
        np.testing.assert_allclose(km.vitpose_crop(image, center, scale, (64, 48)), crop_ref, atol=1e-5)


def test_heatmap_decoding_matches_reference_within_half_a_pixel(ref):
    heat = ref["hm_heatmaps"].astype(np.float32)
    points, vals = km.heatmap_decode(heat, ref["hm_centers"], ref["hm_scales"])
    expected = ref["hm_points"]
    err = np.abs(points - expected).max()
    assert err < 0.5, err
    assert np.abs(points - expected).mean() < 1e-3          # float32 vs float64 refinement
    np.testing.assert_allclose(vals, ref["hm_probs"][..., 0], atol=1e-7)


def _frames_with_dots():
    frames = np.zeros((3, 240, 320, 3), np.uint8)
    dots = [[(60, 50), (200, 120)], [(100, 180)], []]
    for f, spots in enumerate(dots):
        for x, y in spots:
            frames[f, y - 1:y + 2, x - 1:x + 2] = 255
    boxes = [Detections(np.array([[20.0, 10.0, 120.0, 110.0], [150.0, 60.0, 260.0, 200.0]]), np.array([0.9, 0.8])),
             Detections(np.array([[40.0, 120.0, 170.0, 235.0]]), np.array([0.7])),
             Detections.none()]
    return frames, boxes, dots


@pytest.mark.parametrize("kind,tolerance", [("rtmpose", 1.5), ("vitpose", 3.0)])
def test_keypoint_model_end_to_end_finds_the_dot_and_batching_changes_nothing(tiny_pose, tiny_pose_files, tmp_path,
                                                                            kind, tolerance):
    dynamic = km.load_keypoint_model(tiny_pose_files[kind], "cpu")
    static = km.load_keypoint_model(getattr(tiny_pose, kind)(tmp_path / "static.onnx", dynamic=False), "cpu")
    assert dynamic.model.dynamic_batch and not static.model.dynamic_batch
    frames, boxes, dots = _frames_with_dots()
    rgb = [f for f in frames]
    batched = dynamic(rgb, boxes, batch_size=8)
    single = static(rgb, boxes, batch_size=8)
    for f, spots in enumerate(dots):
        points, scores = batched[f]
        assert points.shape == (len(spots), 133, 2)
        np.testing.assert_allclose(points, single[f][0], atol=1e-9)
        np.testing.assert_allclose(scores, single[f][1], atol=1e-6)
        for person, (x, y) in enumerate(spots):
            assert np.abs(points[person] - (x, y)).max() <= tolerance
            assert np.all(scores[person] > 0)
