"""Shared by the method-workflow tests: the shipped API workflows made runnable on tiny models.

The host's umT5 and CLIP ViT-H are built from fixed configs, so their nodes are swapped for the test kit's
(same host types out); sizes, frame counts and steps are set small, as a user would with ``--set``.
Loaded by file path (tests are not packages).
"""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORKFLOWS = HERE.parents[1] / "workflows"
W, H = 48, 32  # the tiny video size every method test uses


def load_module(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


def shipped(name: str) -> dict:
    return json.loads((WORKFLOWS / f"{name}.api.json").read_text())


def with_test_encoders(wf: dict, text_nodes: tuple[str, ...], clip_nodes: tuple[str, ...],
                       drop: tuple[str, ...]) -> dict:
    """``wf`` with its CLIPTextEncode / CLIPVisionEncode nodes replaced by the test kit's and the loaders
    (``drop``) removed."""
    for node_id in drop:
        del wf[node_id]
    for seed, node_id in enumerate(text_nodes, start=1):
        wf[node_id] = {"class_type": "PoseAnimateTestTextEncode", "inputs": {"seed": seed, "tokens": 6,
                                                                             "width": 4096}}
    for seed, node_id in enumerate(clip_nodes, start=10):
        wf[node_id] = {"class_type": "PoseAnimateTestClipVisionEncode", "inputs": {"seed": seed, "width": 1280}}
    return wf


def apply_sets(wf: dict, sets: dict) -> dict:
    """``{"NODE__INPUT": value}`` like the client's ``--set NODE.INPUT=value``."""
    for key, value in sets.items():
        node_id, input_name = key.split("__")
        wf[node_id]["inputs"][input_name] = value
    return wf


def saved_video(comfy, result, node_id: str) -> Path:
    """The file a SaveVideo node reported."""
    entries = [e for out in result.outputs.get(node_id, {}).values() if isinstance(out, list) for e in out
               if isinstance(e, dict) and "filename" in e]
    assert entries, f"SaveVideo reported no file: {result.outputs.get(node_id)}"
    return comfy.output_dir / entries[0].get("subfolder", "") / entries[0]["filename"]
