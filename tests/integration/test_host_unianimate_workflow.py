"""The shipped UniAnimate-DiT workflows, queued through the API of a real ComfyUI, on tiny files.

Tiny random-weight models are written under the real file names (DiT, UniAnimate-DiT's .ckpt, the Wan VAE,
the DWPose pair); the host's umT5 and CLIP ViT-H cannot be tiny (fixed configs), so their nodes are swapped
for the test kit's, which return the same host types. Sizes, frame counts and steps are set small, as a user
would with `--set`. Checks: the saved video has the requested frames and size, a run after /free loads
everything again, an interrupt stops a long run within a second and the server then
runs the next job, and a bad input comes back as a readable execution error.
"""
import importlib.util
import json
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("method_workflows", HERE / "method_workflows.py")
mw = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mw)
inputs = mw.load_module("pose_inputs", HERE / "pose_inputs.py")
W, H = mw.W, mw.H


def tiny_workflow(name: str, **sets) -> dict:
    """The shipped UniAnimate API workflow with the test kit's encoders, small sizes and 2 steps."""
    wf = mw.with_test_encoders(mw.shipped(name), ("12", "13"), ("15",), drop=("11", "14"))
    wf["4"]["inputs"].update(width=W, height=H)
    for node_id in ("9", "10"):
        wf[node_id]["inputs"].update(width=W, height=H)
    wf["17"]["inputs"].update(weight_dtype="fp32", compute_dtype="fp32")
    wf["16"]["inputs"].update(dtype="fp32")
    wf["20"]["inputs"].update(steps=2)
    return mw.apply_sets(wf, sets)


@pytest.mark.parametrize("name,sets,frames", [
    ("unianimate", {"19__frames": 9}, 9),
    # frames 0: the whole 12-frame driving video, rounded down to 9; windows of 2 latent frames over 3
    ("unianimate_long_video", {"20__window_length": 2, "20__window_overlap": 1, "20__blending": "linear"}, 9),
])
def test_workflow_writes_the_requested_video(method_server, host_paths, name, sets, frames):
    comfy = method_server
    result = comfy.run(tiny_workflow(name, **sets), timeout=600)
    assert result.status == "success", (result.error or {}).get("exception_message") or comfy.log()[-4000:]
    video = inputs.probe_video(host_paths.python, mw.saved_video(comfy, result, "23"))
    assert video["frames"] == frames and (video["width"], video["height"]) == (W, H)
    assert all(0.0 <= m <= 255.0 for m in video["mean"])


def _loaded(comfy, workflow) -> list[str]:
    result = comfy.run(workflow, timeout=600)
    assert result.status == "success", result.error
    return result.outputs["99"]["text"]


def test_models_are_in_the_hosts_list_and_leave_it_after_free(method_server):
    comfy = method_server
    wf = tiny_workflow("unianimate", **{"19__frames": 5})
    wf["99"] = {"class_type": "PoseAnimateTestLoadedModels", "inputs": {"after": ["20", 0]}}
    assert any(name.endswith(".WanDiT") for name in _loaded(comfy, wf))
    comfy.free(unload_models=True)
    time.sleep(1.0)
    empty = {"1": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
             "99": {"class_type": "PoseAnimateTestLoadedModels", "inputs": {"after": ["1", 0]}}}
    assert not any("poseanimate" in name.lower() or "WanDiT" in name for name in _loaded(comfy, empty))
    # after /free the next run loads everything again and still succeeds
    again = comfy.run(tiny_workflow("unianimate", **{"19__frames": 5, "20__seed": 7}), timeout=600)
    assert again.status == "success", again.error


def test_interrupt_stops_a_long_run_within_a_second_and_the_next_job_runs(method_server):
    comfy = method_server
    long_run = tiny_workflow("unianimate", **{"19__frames": 9, "20__steps": 200, "20__seed": 11})
    prompt_id = comfy.queue(long_run)
    comfy.wait_for_progress(prompt_id, "20", at_least=2)  # inside sampling, with 198 steps to go
    asked = time.monotonic()
    comfy.interrupt()
    result = comfy.wait(prompt_id, timeout=60, poll_s=0.05)
    stopped_after = time.monotonic() - asked
    assert result.interrupted, result.messages
    assert stopped_after < 1.0 + 0.3, f"stopped {stopped_after:.2f} s after the interrupt (polling adds <= 0.05 s)"
    nxt = comfy.run(tiny_workflow("unianimate", **{"19__frames": 5}), timeout=600)
    assert nxt.status == "success", nxt.error


def test_bad_frame_count_is_a_readable_execution_error(method_server):
    comfy = method_server
    result = comfy.run(tiny_workflow("unianimate", **{"19__frames": 7}), timeout=600)
    assert result.status == "error"
    message = result.error["exception_message"]
    assert "frames" in message and "4k+1" in message and "5 or 9" in message
    ok = comfy.run(tiny_workflow("unianimate", **{"19__frames": 5}), timeout=600)
    assert ok.status == "success", ok.error


def test_bad_values_and_missing_files_come_back_as_node_errors(method_server):
    comfy = method_server
    for sets, node_id, needle in (({"20__steps": 0}, "20", "steps"),
                                  ({"17__dit_name": "missing_model.safetensors"}, "17", "dit_name"),
                                  ({"20__cfg": "lots"}, "20", "cfg")):
        with pytest.raises(comfy.Rejected) as err:
            comfy.queue(tiny_workflow("unianimate", **sets))
        errors = err.value.node_errors[node_id]["errors"]
        assert any(needle in json.dumps(e) for e in errors), errors
    ok = comfy.run(tiny_workflow("unianimate", **{"19__frames": 5}), timeout=600)
    assert ok.status == "success", ok.error
