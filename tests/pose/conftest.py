"""Fixtures for the tiny ONNX pose-model stand-ins (tiny_models/pose_models.py).

Tests that take ``tiny_pose`` or ``tiny_pose_files`` are skipped where onnx
or onnxruntime is missing; the others in the same file still run.
"""
import importlib.util
from pathlib import Path

import pytest

TINY_POSE_MODELS = Path(__file__).resolve().parents[2] / "tiny_models" / "pose_models.py"


@pytest.fixture(scope="session")
def tiny_pose():
    """The tiny_pose_models module, loaded by path (tests have no packages)."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    spec = importlib.util.spec_from_file_location("tiny_pose_models", TINY_POSE_MODELS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def tiny_pose_files(tiny_pose, tmp_path_factory) -> dict:
    """One file per kind, dynamic batch: ``{"yolox": path, "yolov10": ..., "rtmpose": ..., "vitpose": ...}``."""
    return tiny_pose.build_all(tmp_path_factory.mktemp("tiny_pose_models"))
