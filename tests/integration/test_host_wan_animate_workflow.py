"""The shipped Wan2.2-Animate workflows (animation; replacement with the pose mask and relighting LoRA), queued
through the API of a real ComfyUI on tiny files (the host's umT5 and CLIP ViT-H swapped for the test kit's)."""
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


def tiny_animate(name: str, **sets) -> dict:
    wf = mw.with_test_encoders(mw.shipped(name), ("12", "13"), ("15",), drop=("11", "14"))
    for node_id in ("4", "9", "23"):
        if node_id in wf:
            wf[node_id]["inputs"].update(width=W, height=H)
    # the tiny keypoint model puts every point on one spot, so no face box exists: run without face crops
    # (the face path runs outside the host in tests/nodes/test_wan_animate_chain.py)
    del wf["10"]
    for input_name in ("face_video", "face_poses"):
        wf["18"]["inputs"].pop(input_name, None)
    if "22" in wf:  # the pose mask needs a body: the test kit's figure stands in for the tiny models' poses
        wf["26"] = {"class_type": "PoseAnimateTestPoses", "inputs": {"frames": inputs.VIDEO_FRAMES, "width": W,
                                                                     "height": H}}
        wf["22"]["inputs"]["poses"] = ["26", 0]
    wf["17"]["inputs"].update(weight_dtype="fp32", compute_dtype="fp32")
    wf["16"]["inputs"].update(dtype="fp32")
    wf["18"]["inputs"].update(steps=2, clip_frames=5)
    return mw.apply_sets(wf, sets)


@pytest.mark.parametrize("name", ["wan_animate", "wan_animate_replacement"])
def test_wan_animate_workflow_writes_the_whole_video(method_server, host_paths, name):
    comfy = method_server
    result = comfy.run(tiny_animate(name), timeout=600)
    assert result.status == "success", (result.error or {}).get("exception_message") or comfy.log()[-4000:]
    video = inputs.probe_video(host_paths.python, mw.saved_video(comfy, result, "20"))
    # 12 driving frames in chained clips of 5 (refert 1): every input frame comes back, no more
    assert video["frames"] == inputs.VIDEO_FRAMES and (video["width"], video["height"]) == (W, H)


def test_refert_num_outside_1_and_5_is_refused_by_the_host(method_server):
    with pytest.raises(method_server.Rejected) as err:
        method_server.queue(tiny_animate("wan_animate", **{"18__refert_num": "3"}))
    assert "refert_num" in json.dumps(err.value.node_errors)
