"""The shipped SteadyDancer workflow, queued through the API of a real ComfyUI, on tiny files (the host's umT5
and CLIP ViT-H swapped for the test kit's, as in test_host_unianimate_workflow.py): pose extraction, the
steadydancer alignment, aligned and negative pose renders, kijai's scaled-fp8 single file, pose guidance."""
import importlib.util
from pathlib import Path

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("method_workflows", HERE / "method_workflows.py")
mw = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mw)
inputs = mw.load_module("pose_inputs", HERE / "pose_inputs.py")
W, H = mw.W, mw.H


def tiny_steadydancer(**sets) -> dict:
    wf = mw.with_test_encoders(mw.shipped("steadydancer"), ("12", "13"), ("15", "17"), drop=("11", "14", "16"))
    for node_id in ("4", "9", "10"):
        wf[node_id]["inputs"].update(width=W, height=H)
    wf["19"]["inputs"].update(weight_dtype="fp32", compute_dtype="fp32")
    wf["18"]["inputs"].update(dtype="fp32")
    wf["20"]["inputs"].update(frames=9, pose_cfg_end=0.6)  # 2 steps: the pose guidance runs on step 1
    wf["21"]["inputs"].update(steps=2)
    return mw.apply_sets(wf, sets)


def test_steadydancer_workflow_writes_the_requested_video(method_server, host_paths):
    comfy = method_server
    result = comfy.run(tiny_steadydancer(), timeout=600)
    assert result.status == "success", (result.error or {}).get("exception_message") or comfy.log()[-4000:]
    video = inputs.probe_video(host_paths.python, mw.saved_video(comfy, result, "24"))
    assert video["frames"] == 9 and (video["width"], video["height"]) == (W, H)


def test_steadydancer_long_video_in_windows(method_server, host_paths):
    comfy = method_server
    result = comfy.run(tiny_steadydancer(**{"20__frames": 0, "21__window_length": 2, "21__window_overlap": 1}),
                       timeout=600)
    assert result.status == "success", (result.error or {}).get("exception_message")
    video = inputs.probe_video(host_paths.python, mw.saved_video(comfy, result, "24"))
    assert video["frames"] == 9  # the whole 12-frame driving video, rounded down to 4k+1


def test_steadydancer_scaled_fp8_file_kept_in_fp8(method_server, host_paths):
    """kijai's scaled-fp8 single file with its weights left as stored (the host's scaled-fp8 layers)."""
    comfy = method_server
    result = comfy.run(tiny_steadydancer(**{"19__weight_dtype": "default", "19__compute_dtype": "fp32"}),
                       timeout=600)
    assert result.status == "success", (result.error or {}).get("exception_message") or comfy.log()[-4000:]
