"""The shipped RealisDance-DiT workflow, queued through the API of a real ComfyUI, on tiny files (the host's
umT5 and CLIP ViT-H swapped for the test kit's, as in test_host_unianimate_workflow.py)."""
import importlib.util
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORKFLOWS = HERE.parents[1] / "workflows"
W, H = 48, 32


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


inputs = _load("pose_inputs", HERE / "pose_inputs.py")


def tiny_realisdance(**sets) -> dict:
    wf = json.loads((WORKFLOWS / "realisdance.api.json").read_text())
    for node_id in ("10", "13", "15"):
        del wf[node_id]
    for node_id, seed in (("11", 1), ("12", 2)):
        wf[node_id] = {"class_type": "PoseAnimateTestTextEncode", "inputs": {"seed": seed, "tokens": 6,
                                                                             "width": 4096}}
    for node_id, seed in (("14", 3), ("16", 4)):
        wf[node_id] = {"class_type": "PoseAnimateTestClipVisionEncode", "inputs": {"seed": seed, "width": 1280}}
    wf["9"]["inputs"].update(width=W, height=H)
    wf["19"]["inputs"].update(width=W, height=H)
    wf["18"]["inputs"].update(weight_dtype="fp32", compute_dtype="fp32")
    wf["17"]["inputs"].update(dtype="fp32")
    wf["20"]["inputs"].update(frames=9)
    wf["21"]["inputs"].update(steps=2)
    for key, value in sets.items():
        node_id, name = key.split("__")
        wf[node_id]["inputs"][name] = value
    return wf


def _saved_video(comfy, result, node_id="24") -> Path:
    entries = [e for out in result.outputs.get(node_id, {}).values() if isinstance(out, list) for e in out
               if isinstance(e, dict) and "filename" in e]
    assert entries, f"SaveVideo reported no file: {result.outputs.get(node_id)}"
    return comfy.output_dir / entries[0].get("subfolder", "") / entries[0]["filename"]


def test_realisdance_workflow_writes_the_requested_video(method_server, host_paths):
    comfy = method_server
    result = comfy.run(tiny_realisdance(), timeout=600)
    assert result.status == "success", (result.error or {}).get("exception_message") or comfy.log()[-4000:]
    video = inputs.probe_video(host_paths.python, _saved_video(comfy, result))
    assert video["frames"] == 9 and (video["width"], video["height"]) == (W, H)


def test_realisdance_long_video_in_windows(method_server, host_paths):
    comfy = method_server
    result = comfy.run(tiny_realisdance(**{"20__frames": 0, "21__window_length": 2, "21__window_overlap": 1}),
                       timeout=600)
    assert result.status == "success", (result.error or {}).get("exception_message")
    video = inputs.probe_video(host_paths.python, _saved_video(comfy, result))
    assert video["frames"] == 9  # the whole 12-frame driving video, rounded down to 4k+1
