"""ONNX sessions: signatures read from the model, CPU notice, clear errors for bad files."""
import logging

import numpy as np
import pytest

from poseanimate.errors import InputError
from poseanimate.pose import onnx_session
from poseanimate.pose.detect import load_detector
from poseanimate.pose.extract import load_pose_estimator
from poseanimate.pose.keypoint_models import load_keypoint_model

pytest.importorskip("onnxruntime")   # every test here opens sessions; the tiny models come from conftest.py


def test_signature_is_read_from_the_model(tmp_path, tiny_pose):
    model = onnx_session.load_onnx(tiny_pose.rtmpose(tmp_path / "m.onnx", dynamic=False, input_hw=(256, 192)), "cpu")
    assert model.input_name == "input" and model.input_shape == (1, 3, 256, 192)
    assert model.output_names == ("simcc_x", "simcc_y")
    assert model.output_shapes == ((1, 133, 384), (1, 133, 512)) and not model.dynamic_batch
    dyn = onnx_session.load_onnx(tiny_pose.yolox(tmp_path / "d.onnx", dynamic=True), "cpu")
    assert dyn.input_name == "images" and dyn.input_shape == (None, 3, 640, 640) and dyn.dynamic_batch
    keypoints = load_keypoint_model(str(tmp_path / "m.onnx"), "cpu")
    assert keypoints.input_wh == (192, 256)


def test_cpu_fallback_logs_one_notice(tmp_path, tiny_pose, caplog):
    path = tiny_pose.vitpose(tmp_path / "v.onnx")
    with caplog.at_level(logging.WARNING):
        model = onnx_session.load_onnx(path, "auto")
    if model.provider == "CPUExecutionProvider":
        notices = [r for r in caplog.records if "runs on CPU" in r.getMessage()]
        assert len(notices) == 1 and "v.onnx" in notices[0].getMessage()
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        onnx_session.load_onnx(path, "cpu")                      # asked for CPU: no notice
    assert not [r for r in caplog.records if "runs on CPU" in r.getMessage()]


def test_corrupt_file_names_the_file(tmp_path):
    bad = tmp_path / "yolox_l.onnx"
    bad.write_bytes(b"this is not a protobuf" * 10)
    with pytest.raises(InputError) as err:
        load_detector(str(bad), "cpu")
    assert "yolox_l.onnx" in str(err.value) and "could not be loaded" in str(err.value)
    with pytest.raises(InputError, match="was not found"):
        load_detector(str(tmp_path / "missing.onnx"), "cpu")


def test_wrong_model_says_what_was_expected(tmp_path, tiny_pose):
    detector_file = tiny_pose.yolox(tmp_path / "yolox_l.onnx")
    with pytest.raises(InputError) as err:
        load_keypoint_model(detector_file, "cpu")
    message = str(err.value)
    assert "yolox_l.onnx" in message and "images [None, 3, 640, 640]" in message
    assert "simcc_x [1, 133, 576]" in message and "heatmaps [1, 133, 64, 48]" in message
    pose_file = tiny_pose.rtmpose(tmp_path / "dw-ll_ucoco_384.onnx")
    with pytest.raises(InputError, match="YOLOX .* or YOLOv10"):
        load_detector(pose_file, "cpu")
    with pytest.raises(InputError, match="dw-ll_ucoco_384.onnx"):
        load_pose_estimator(keypoint_path=pose_file, detector_path=pose_file, device="cpu")


def test_static_batch_runs_one_by_one(tmp_path, tiny_pose):
    model = onnx_session.load_onnx(tiny_pose.vitpose(tmp_path / "s.onnx", dynamic=False), "cpu")
    calls = []
    inputs = [np.full((3, 256, 192), v, np.float32) for v in (1.0, 2.0, 3.0)]
    out = onnx_session.run_batches(model, inputs, batch_size=8, after_batch=calls.append)
    assert calls == [1, 1, 1] and len(out[0]) == 3
    np.testing.assert_allclose([o.max() for o in out[0]], [1.0, 2.0, 3.0])
