"""Robustness in a real ComfyUI (issue 19), on tiny models through /prompt: bad values, huge requests,
broken and malicious files, an interrupt inside a long node, and back-to-back jobs. Each case asserts the
pack's one-line message (as ``node_errors`` when the host's own validation catches it first, or as
``execution_error``) and that the server then runs the next job."""
import importlib.util
import json
import math
import os
import pickle
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("method_workflows", HERE / "method_workflows.py")
mw = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mw)
W, H = mw.W, mw.H


def tiny_workflow(**sets) -> dict:
    """The shipped UniAnimate-DiT workflow on tiny models, 5 frames, 2 steps (as its workflow test)."""
    wf = mw.with_test_encoders(mw.shipped("unianimate"), ("12", "13"), ("15",), drop=("11", "14"))
    wf["4"]["inputs"].update(width=W, height=H)
    for node_id in ("9", "10"):
        wf[node_id]["inputs"].update(width=W, height=H)
    wf["17"]["inputs"].update(weight_dtype="fp32", compute_dtype="fp32")
    wf["16"]["inputs"].update(dtype="fp32")
    wf["19"]["inputs"].update(frames=5)
    wf["20"]["inputs"].update(steps=2)
    return mw.apply_sets(wf, sets)


def decode_workflow(width: int, height: int, length: int) -> dict:
    """An empty video latent through the pack's streamed VAE decode, into a cheap output node."""
    return {"1": {"class_type": "EmptyHunyuanLatentVideo",
                  "inputs": {"width": width, "height": height, "length": length, "batch_size": 1}},
            "2": {"class_type": "PoseAnimateVAELoader",
                  "inputs": {"vae_name": "wan_2.1_vae.safetensors", "dtype": "fp32", "tile_size": 0,
                             "tile_overlap": 8}},
            "3": {"class_type": "PoseAnimateVAEDecode", "inputs": {"samples": ["1", 0], "vae": ["2", 0]}},
            "4": {"class_type": "PoseAnimateTestMemory", "inputs": {"images": ["3", 0]}}}


def refused(comfy, workflow: dict, node_id: str) -> str:
    """The message a bad workflow is refused with: the host's validation (node_errors) or the node's own
    execution_error."""
    try:
        result = comfy.run(workflow, timeout=300)
    except comfy.Rejected as err:
        return json.dumps(err.node_errors.get(node_id, err.body))
    assert result.status == "error", f"not refused: {result.status}"
    assert str(result.error.get("node_id")) == node_id, result.error
    return result.error["exception_message"]


def next_job_runs(comfy, seed: int) -> None:
    result = comfy.run(tiny_workflow(**{"20__seed": seed}), timeout=600)
    assert result.status == "success", (result.error or {}).get("exception_message") or comfy.log()[-3000:]


@pytest.mark.parametrize("node_id,name", [("20", "cfg"), ("18", "lora_strength"), ("19", "pose_strength")])
def test_nan_and_infinity_are_refused(method_server, node_id, name):
    comfy = method_server
    nan = refused(comfy, tiny_workflow(**{f"{node_id}__{name}": math.nan}), node_id)
    assert nan.startswith(f"{name}: is nan (not a finite number); expected a finite number"), nan
    inf = refused(comfy, tiny_workflow(**{f"{node_id}__{name}": math.inf}), node_id)
    # the host's own range check catches infinity first (its message names the input and the bound)
    assert (f"{name}: is inf" in inf) or (name in inf and "inf" in inf and "max" in inf.lower()), inf
    next_job_runs(comfy, seed=hash(name) % 1000)


def test_huge_frame_count_and_size_are_refused_before_work(method_server):
    comfy = method_server
    frames = refused(comfy, tiny_workflow(**{"19__frames": 100001}), "19")
    assert frames.startswith("frames: 100001 frames is more than the 10001 the pack takes"), frames
    # 8192x8192: one chunk of the fp32 VAE alone is estimated far above any machine's memory
    started = time.monotonic()
    size = refused(comfy, decode_workflow(8192, 8192, 5), "3")
    assert size.startswith("samples: decoding ") and "8192x8192" in size and "GB, more than the" in size, size
    assert time.monotonic() - started < 30, "refused only after working"
    next_job_runs(comfy, seed=101)


def _bad_files(loras: Path) -> dict:
    good = (loras / "UniAnimate-Wan2.1-14B-Lora-12000.ckpt").read_bytes()
    marker = loras.parent.parent / "pickle_ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))
    files = {"rb_truncated.ckpt": good[: len(good) // 2], "rb_empty.ckpt": b"",
             "rb_random.safetensors": os.urandom(4096), "rb_code.ckpt": pickle.dumps({"x": Payload()})}
    for name, data in files.items():
        (loras / name).write_bytes(data)
    return {"files": list(files), "marker": marker}


def test_broken_and_malicious_files_are_refused(method_server):
    comfy = method_server
    bad = _bad_files(comfy.models_dir / "loras")
    for name in bad["files"]:
        message = refused(comfy, tiny_workflow(**{"18__unianimate_name": name}), "18")
        assert message.startswith("LoRA file '") and name in message.split(";")[0], message
        assert "\n" not in message.strip()
        if name == "rb_code.ckpt":
            assert "not loaded for safety" in message, message
    assert not bad["marker"].exists(), "the pickle's code ran"
    next_job_runs(comfy, seed=202)


def _with_dit_lora(wf: dict) -> dict:
    """The tiny UniAnimate-DiT workflow with a Wan DiT LoRA node between Load Wan DiT and the UniAnimate LoRA."""
    wf["30"] = {"class_type": "PoseAnimateLoRA", "inputs": {"dit": ["17", 0], "lora_name": RELIGHT, "strength": 1.0}}
    wf["18"]["inputs"]["dit"] = ["30", 0]
    return wf


_realisdance = mw.load_module("robustness_realisdance", HERE / "test_host_realisdance_workflow.py")
_animate = mw.load_module("robustness_wan_animate", HERE / "test_host_wan_animate_workflow.py")
DIT, REALISDANCE, ANIMATE = ("wan2.1_i2v_480p_14B_fp16.safetensors", "realisdance_dit_14B_bf16.safetensors",
                             "wan2.2_animate_14B_bf16.safetensors")
RELIGHT = "WanAnimate_relight_lora_fp16.safetensors"
# loader -> (a tiny workflow using it, its node id, the file input, the model folder, the intact file, message start)
DIT_LOADERS = {
    "Load Wan DiT": (tiny_workflow, "17", "dit_name", "diffusion_models", DIT, "model file '"),
    "Load RealisDance-DiT": (_realisdance.tiny_realisdance, "18", "dit_name", "diffusion_models", REALISDANCE,
                             "model file '"),
    "Load Wan2.2-Animate": (lambda: _animate.tiny_animate("wan_animate"), "17", "dit_name", "diffusion_models",
                            ANIMATE, "model file '"),
    "Relighting LoRA": (lambda: _animate.tiny_animate("wan_animate_replacement"), "21", "lora_name", "loras",
                        RELIGHT, "LoRA file '"),
    "Wan DiT LoRA": (lambda: _with_dit_lora(tiny_workflow()), "30", "lora_name", "loras", RELIGHT, "LoRA file '"),
}


@pytest.mark.parametrize("loader", list(DIT_LOADERS))
def test_broken_and_malicious_dit_files_are_refused(method_server, loader):
    """The DiT-type loaders given a truncated, an empty and a random file, and a pickle with code renamed
    .safetensors (never unpickled: the safetensors reader refuses its header)."""
    comfy = method_server
    workflow, node_id, input_name, folder, good_name, start = DIT_LOADERS[loader]
    good = (comfy.models_dir / folder / good_name).read_bytes()
    marker = comfy.models_dir.parent / f"pickle_ran_{node_id}"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))
    files = {"truncated": good[: len(good) // 2], "empty": b"", "random": b"\x13" + os.urandom(4095),
             "code": pickle.dumps({"x": Payload()})}
    for kind, data in files.items():
        name = f"rb_{node_id}_{kind}.safetensors"
        (comfy.models_dir / folder / name).write_bytes(data)
        wf = workflow()
        wf[node_id]["inputs"][input_name] = name
        message = refused(comfy, wf, node_id)
        assert message.startswith(start) and name in message.split(";")[0], message
        assert "could not be read" in message and "\n" not in message.strip(), message
    assert not marker.exists(), "the pickle's code ran"
    result = comfy.run(workflow(), timeout=600)  # the same workflow with the intact file
    assert result.status == "success", (result.error or {}).get("exception_message") or comfy.log()[-3000:]


def test_broken_vae_and_pose_model_files_are_refused(method_server):
    """Two more loaders through the host: Load Wan VAE given a truncated file, Load Pose Models an empty one."""
    comfy = method_server
    good_vae = (comfy.models_dir / "vae" / "wan_2.1_vae.safetensors").read_bytes()
    (comfy.models_dir / "vae" / "rb_truncated_vae.safetensors").write_bytes(good_vae[: len(good_vae) // 2])
    wf = decode_workflow(64, 64, 5)
    wf["2"]["inputs"]["vae_name"] = "rb_truncated_vae.safetensors"
    message = refused(comfy, wf, "2")
    assert message.startswith("VAE file '") and "rb_truncated_vae.safetensors" in message.split(";")[0], message
    (comfy.models_dir / "poseanimate_pose" / "rb_empty.onnx").write_bytes(b"")
    wf = pose_extraction_workflow(1, 64)
    wf["4"]["inputs"]["keypoint_model"] = "rb_empty.onnx"
    message = refused(comfy, wf, "4")
    assert message.startswith("pose keypoint model 'rb_empty.onnx'"), message
    assert "\n" not in message.strip()
    next_job_runs(comfy, seed=204)


def _interrupt_quickly(comfy, prompt_id: str, node_id: str, at_least: int, what: str) -> float:
    """Wait until ``node_id`` reports progress, ask for an interrupt, and return how long the run took to stop."""
    comfy.wait_for_progress(prompt_id, node_id, at_least=at_least, timeout=300)
    asked = time.monotonic()
    comfy.interrupt()
    result = comfy.wait(prompt_id, timeout=60, poll_s=0.05)
    stopped_after = time.monotonic() - asked
    assert result.interrupted, f"{what} was not interrupted: {result.status} {result.error}"
    print(f"interrupt inside {what}: stopped {stopped_after:.2f} s after /interrupt")
    return stopped_after


def test_interrupt_inside_vae_decode_returns_quickly_and_the_next_job_runs(method_server):
    comfy = method_server
    prompt_id = comfy.queue(decode_workflow(256, 256, 1601))  # 401 latent frames through the streamed decode
    stopped_after = _interrupt_quickly(comfy, prompt_id, "3", 3, "VAE decode")
    assert stopped_after < 1.0 + 0.5, f"stopped {stopped_after:.2f} s after the interrupt"
    next_job_runs(comfy, seed=303)


def test_interrupt_inside_conditioning_returns_quickly_and_the_next_job_runs(method_server):
    """UniAnimate-DiT Conditioning made long with the tiny models: 1601 frames (the pose video padded with its
    last pose) at 128x128, whose streamed VAE encode reports progress per latent frame."""
    comfy = method_server
    wf = tiny_workflow(**{"19__frames": 1601, "20__seed": 304})
    for node_id in ("4", "9", "10"):
        wf[node_id]["inputs"].update(width=128, height=128)
    prompt_id = comfy.queue(wf)
    stopped_after = _interrupt_quickly(comfy, prompt_id, "19", 3, "UniAnimate-DiT Conditioning")
    assert stopped_after < 1.0 + 0.5, f"stopped {stopped_after:.2f} s after the interrupt"
    next_job_runs(comfy, seed=305)


def pose_extraction_workflow(frames: int, size: int) -> dict:
    """The reference image repeated ``frames`` times at ``size``^2 through Extract Poses, one image per call."""
    return {"1": {"class_type": "LoadImage", "inputs": {"image": "reference.png"}},
            "2": {"class_type": "ImageScale", "inputs": {"image": ["1", 0], "upscale_method": "bilinear",
                                                         "width": size, "height": size, "crop": "center"}},
            "3": {"class_type": "RepeatImageBatch", "inputs": {"image": ["2", 0], "amount": frames}},
            "4": {"class_type": "PoseAnimatePoseModelLoader",
                  "inputs": {"detector": "yolox_l.onnx", "keypoint_model": "dw-ll_ucoco_384.onnx",
                             "device": "auto"}},
            "5": {"class_type": "PoseAnimateExtractPoses",
                  "inputs": {"images": ["3", 0], "pose_model": ["4", 0], "people": "largest", "person_index": 0,
                             "empty_frames": "whole_frame", "smoothing": False, "min_cutoff": 1.0, "beta": 1.0,
                             "fps": 30.0, "batch_size": 1}},
            "6": {"class_type": "PoseAnimateTestMemory", "inputs": {"images": ["5", 1]}}}


def test_interrupt_inside_pose_extraction_returns_quickly_and_the_next_job_runs(method_server):
    comfy = method_server
    prompt_id = comfy.queue(pose_extraction_workflow(2000, 128))
    stopped_after = _interrupt_quickly(comfy, prompt_id, "5", 2, "Extract Poses")
    assert stopped_after < 1.0 + 0.5, f"stopped {stopped_after:.2f} s after the interrupt"
    next_job_runs(comfy, seed=306)


def test_back_to_back_jobs_keep_memory_bounded(method_server):
    """20 jobs of the smallest workflow (the tiny UniAnimate-DiT run, a new seed each: the sampler and decode
    run again every time); resident memory after the warm-up job may grow by at most 64 MB or 5%."""
    comfy = method_server
    rss = []
    started = time.monotonic()
    for seed in range(20):
        wf = tiny_workflow(**{"20__seed": 400 + seed})
        wf["99"] = {"class_type": "PoseAnimateTestMemory", "inputs": {"images": ["21", 0]}}
        result = comfy.run(wf, timeout=600)
        assert result.status == "success", result.error
        rss.append(int(result.outputs["99"]["text"][0]))
    print(f"20 back-to-back jobs in {time.monotonic() - started:.1f} s; resident memory (MB): {rss}")
    assert rss[-1] - rss[1] < max(64, 0.05 * rss[1]), rss  # after the first job warmed the caches


def test_errors_show_a_short_type_folder_relative_names_and_no_escape_codes(method_server):
    """What the UI and the API show of a refused file: ``PoseAnimate.InputError`` (not the pack folder's path
    as a module name), ``loras/<name>`` (not the user's directories), plain text (torch's refusal of a pickle
    carries bold escape codes)."""
    import argparse

    import torch
    comfy = method_server
    torch.save({"x": argparse.Namespace(a=1)}, str(comfy.models_dir / "loras" / "rb_objects.ckpt"))
    result = comfy.run(tiny_workflow(**{"18__unianimate_name": "rb_objects.ckpt"}), timeout=300)
    assert result.status == "error" and str(result.error.get("node_id")) == "18", result.error
    assert result.error["exception_type"] == "PoseAnimate.InputError", result.error["exception_type"]
    message = result.error["exception_message"]
    assert message.startswith("LoRA file 'loras/rb_objects.ckpt': holds Python objects"), message
    assert "it refers to argparse.Namespace" in message, message
    assert str(comfy.models_dir) not in message and os.sep + "models" + os.sep not in message, message
    assert "\x1b" not in message and "\n" not in message.strip(), repr(message)
    next_job_runs(comfy, seed=205)
