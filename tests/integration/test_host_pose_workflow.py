"""The shipped pose-extraction workflow (workflows/pose_extraction.api.json) queued on a real ComfyUI, with the
tiny pose models under the real file names and a short video in input/: the pose video it saves, the canvas
preview each pose node sends, and the shipped files being what workflows/build_workflows.py makes from this
host's /object_info."""
from __future__ import annotations

import importlib.util
import json
import sys
import urllib.parse
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
WORKFLOWS = REPO_ROOT / "workflows"
PREVIEW_KEY = "poseanimate_pose_preview"


def _load(name: str, path: Path):
    """A helper module by file path (tests are not packages); registered so its dataclasses resolve."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


inputs = _load("pose_inputs", HERE / "pose_inputs.py")


@pytest.fixture(scope="module")
def pose_run(comfy, host_paths):
    pytest.importorskip("onnx")              # builds the tiny models
    inputs.write_pose_models(comfy.models_dir)
    inputs.write_driving_video(host_paths.python, comfy.input_dir)
    workflow = json.loads((WORKFLOWS / "pose_extraction.api.json").read_text())
    result = comfy.run(workflow, timeout=300)
    assert result.status == "success", result.error
    return result


def test_pose_workflow_saves_one_pose_frame_per_video_frame(comfy, host_paths, pose_run):
    (saved,) = pose_run.outputs["7"]["images"]
    path = comfy.output_dir / saved["subfolder"] / saved["filename"]
    assert saved["subfolder"] == "poseanimate" and path.is_file()
    video = inputs.probe_video(host_paths.python, path)
    assert (video["frames"], video["width"], video["height"]) == (
        inputs.VIDEO_FRAMES, inputs.VIDEO_WIDTH, inputs.VIDEO_HEIGHT)
    assert all(0.05 < m < 20 for m in video["mean"]), video["mean"]     # a few coloured dots on black


def test_extract_node_sends_the_skeletons_and_frames_it_found(comfy, pose_run):
    (payload,) = pose_run.outputs["4"][PREVIEW_KEY]
    assert payload["kind"] == "extract" and payload["total_frames"] == inputs.VIDEO_FRAMES
    assert payload["fps"] == inputs.VIDEO_FPS                              # linked from the video's frame rate
    assert payload["frame_indices"] == list(range(inputs.VIDEO_FRAMES))
    assert payload["image_size"] == [inputs.VIDEO_WIDTH, inputs.VIDEO_HEIGHT] and payload["note"] == ""
    for t, frame in enumerate(payload["frames"]):
        assert (frame["w"], frame["h"]) == (inputs.VIDEO_WIDTH, inputs.VIDEO_HEIGHT)
        (person,) = frame["people"]
        nose = person["body"][:3]
        spot_x = 20 + t * (inputs.VIDEO_WIDTH - 80) // (inputs.VIDEO_FRAMES - 1) + 20   # the white spot
        assert abs(nose[0] - spot_x) <= 4 and abs(nose[1] - 63) <= 4 and nose[2] > 0, (t, nose)
    assert len(payload["images"]) == inputs.VIDEO_FRAMES
    for ref in payload["images"]:
        assert ref["type"] == "temp" and ref["subfolder"] == "poseanimate"
        status, body = comfy.get_bytes("/view?" + urllib.parse.urlencode(ref))
        assert status == 200 and body[:3] == b"\xff\xd8\xff"               # a JPEG, served by the host


def test_render_node_sends_the_drawn_frames(comfy, pose_run):
    (payload,) = pose_run.outputs["5"][PREVIEW_KEY]
    assert payload["kind"] == "render" and payload["frames"] == []
    assert len(payload["images"]) == inputs.VIDEO_FRAMES
    status, body = comfy.get_bytes("/view?" + urllib.parse.urlencode(payload["images"][-1]))
    assert status == 200 and body[:3] == b"\xff\xd8\xff"


def test_shipped_workflows_are_what_the_builder_makes_from_this_host(comfy):
    """The shipped files follow the newest tested host's node schemas (built from its /object_info). In that
    host they are exactly what the builder makes; in an older one the builder still builds every workflow
    from the host's own schemas, with the same nodes, classes and links (core nodes' widgets may differ:
    the newer inputs the files set are ignored by older hosts, whose workflow tests run the files)."""
    from poseanimate.host_contract import NEWEST_TESTED, version_tuple
    builder = _load("build_workflows", WORKFLOWS / "build_workflows.py")
    files = builder.build_files(comfy.object_info())
    assert files, "the builder describes no workflow"
    version = comfy.get_json("/system_stats")["system"]["comfyui_version"]
    newest = version_tuple(version) >= version_tuple(NEWEST_TESTED)
    for name, text in files.items():
        shipped_path = WORKFLOWS / name
        assert shipped_path.is_file(), f"{name} is described in build_workflows.py but not shipped"
        shipped, built = json.loads(shipped_path.read_text()), json.loads(text)
        if newest:
            assert shipped == built, (f"workflows/{name} is out of date: run python workflows/build_workflows.py "
                                      "--server <this ComfyUI>")
        elif name.endswith(".api.json"):
            assert {k: v["class_type"] for k, v in shipped.items()} == {k: v["class_type"] for k, v in built.items()}
            for node_id, node in built.items():
                links = {k: v for k, v in node["inputs"].items() if isinstance(v, list)}
                assert links == {k: v for k, v in shipped[node_id]["inputs"].items() if isinstance(v, list)}, node_id
