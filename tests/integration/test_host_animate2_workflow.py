"""The shipped Wan2.2-Animate-2 workflows (raw video; long video with the int8 pose cache and Color Match; the
distilled file), queued through the API of a real ComfyUI on tiny files (the host's umT5 and CLIP ViT-H swapped
for the test kit's)."""
import importlib.util
import json
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("method_workflows", HERE / "method_workflows.py")
mw = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mw)
inputs = mw.load_module("pose_inputs", HERE / "pose_inputs.py")
W, H = mw.W, mw.H


def tiny_animate2(name: str, **sets) -> dict:
    wf = mw.with_test_encoders(mw.shipped(name), ("12", "13"), ("15",), drop=("11", "14"))
    for node_id in ("4", "5"):
        wf[node_id]["inputs"].update(width=W, height=H)
    wf["17"]["inputs"].update(weight_dtype="fp32", compute_dtype="fp32")
    wf["16"]["inputs"].update(dtype="fp32")
    wf["18"]["inputs"].update(steps=2, chunk_frames=5)
    if "21" in wf:  # Color Match follows the chunks
        wf["21"]["inputs"].update(clip_frames=5)
    return mw.apply_sets(wf, sets)


@pytest.mark.parametrize("name", ["animate2", "animate2_long_video", "animate2_distilled"])
def test_animate2_workflow_writes_the_whole_video(method_server, host_paths, name):
    comfy = method_server
    result = comfy.run(tiny_animate2(name), timeout=600)
    assert result.status == "success", (result.error or {}).get("exception_message") or comfy.log()[-4000:]
    video = inputs.probe_video(host_paths.python, mw.saved_video(comfy, result, "20"))
    # the driving frames in chained chunks of 5 (each continuing the last frame): every frame comes back
    assert video["frames"] == inputs.VIDEO_FRAMES and (video["width"], video["height"]) == (W, H)


def test_pose_start_after_end_is_a_clear_error(method_server):
    result = method_server.run(tiny_animate2("animate2", **{"18__pose_start": 0.9, "18__pose_end": 0.1}),
                               timeout=600)
    assert result.status == "error"
    assert "pose start: 0.9 is after the pose end 0.1" in json.dumps(result.error)


def test_first_animate_file_in_the_animate2_loader_names_what_it_is(method_server):
    wf = tiny_animate2("animate2", **{"17__dit_name": "wan2.2_animate_14B_bf16.safetensors"})
    result = method_server.run(wf, timeout=600)
    assert result.status == "error"
    assert "is Wan2.2-Animate (the first Animate" in json.dumps(result.error)
