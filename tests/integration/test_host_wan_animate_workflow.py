"""The shipped Wan2.2-Animate workflows (animation; replacement with the pose mask and relighting LoRA), queued
through the API of a real ComfyUI on tiny files (the host's umT5 and CLIP ViT-H swapped for the test kit's)."""
import importlib.util
import json
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
WORKFLOWS = HERE.parents[1] / "workflows"
W, H = 48, 32


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


inputs = _load("pose_inputs", HERE / "pose_inputs.py")


def tiny_animate(name: str, **sets) -> dict:
    wf = json.loads((WORKFLOWS / f"{name}.api.json").read_text())
    for node_id in ("11", "14"):
        del wf[node_id]
    for node_id, seed in (("12", 1), ("13", 2)):
        wf[node_id] = {"class_type": "PoseAnimateTestTextEncode", "inputs": {"seed": seed, "tokens": 6,
                                                                             "width": 4096}}
    wf["15"] = {"class_type": "PoseAnimateTestClipVisionEncode", "inputs": {"seed": 3, "width": 1280}}
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
    for key, value in sets.items():
        node_id, input_name = key.split("__")
        wf[node_id]["inputs"][input_name] = value
    return wf


@pytest.mark.parametrize("name", ["wan_animate", "wan_animate_replacement"])
def test_wan_animate_workflow_writes_the_whole_video(method_server, host_paths, name):
    comfy = method_server
    result = comfy.run(tiny_animate(name), timeout=600)
    assert result.status == "success", (result.error or {}).get("exception_message") or comfy.log()[-4000:]
    entries = [e for out in result.outputs.get("20", {}).values() if isinstance(out, list) for e in out
               if isinstance(e, dict) and "filename" in e]
    video = inputs.probe_video(host_paths.python, comfy.output_dir / entries[0].get("subfolder", "") /
                               entries[0]["filename"])
    # 12 driving frames in chained clips of 5 (refert 1): every input frame comes back, no more
    assert video["frames"] == inputs.VIDEO_FRAMES and (video["width"], video["height"]) == (W, H)


def test_refert_num_outside_1_and_5_is_refused_by_the_host(method_server):
    with pytest.raises(method_server.Rejected) as err:
        method_server.queue(tiny_animate("wan_animate", **{"18__refert_num": "3"}))
    assert "refert_num" in json.dumps(err.value.node_errors)
