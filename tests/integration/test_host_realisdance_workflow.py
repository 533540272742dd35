"""The shipped RealisDance-DiT workflow, queued through the API of a real ComfyUI, on tiny files (the host's
umT5 and CLIP ViT-H swapped for the test kit's, as in test_host_unianimate_workflow.py)."""
import importlib.util
from pathlib import Path

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("method_workflows", HERE / "method_workflows.py")
mw = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mw)
inputs = mw.load_module("pose_inputs", HERE / "pose_inputs.py")
W, H = mw.W, mw.H


def tiny_realisdance(**sets) -> dict:
    wf = mw.with_test_encoders(mw.shipped("realisdance"), ("11", "12"), ("14", "16"), drop=("10", "13", "15"))
    wf["9"]["inputs"].update(width=W, height=H)
    wf["19"]["inputs"].update(width=W, height=H)
    wf["18"]["inputs"].update(weight_dtype="fp32", compute_dtype="fp32")
    wf["17"]["inputs"].update(dtype="fp32")
    wf["20"]["inputs"].update(frames=9)
    wf["21"]["inputs"].update(steps=2)
    return mw.apply_sets(wf, sets)


def test_realisdance_workflow_writes_the_requested_video(method_server, host_paths):
    comfy = method_server
    result = comfy.run(tiny_realisdance(), timeout=600)
    assert result.status == "success", (result.error or {}).get("exception_message") or comfy.log()[-4000:]
    video = inputs.probe_video(host_paths.python, mw.saved_video(comfy, result, "24"))
    assert video["frames"] == 9 and (video["width"], video["height"]) == (W, H)


def test_realisdance_long_video_in_windows(method_server, host_paths):
    comfy = method_server
    result = comfy.run(tiny_realisdance(**{"20__frames": 0, "21__window_length": 2, "21__window_overlap": 1}),
                       timeout=600)
    assert result.status == "success", (result.error or {}).get("exception_message")
    video = inputs.probe_video(host_paths.python, mw.saved_video(comfy, result, "24"))
    assert video["frames"] == 9  # the whole 12-frame driving video, rounded down to 4k+1
