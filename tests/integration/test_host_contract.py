"""The host contract in a real ComfyUI: every host attribute the pack uses (host_contract.REQUIREMENTS, checked
inside the host's python, signatures included), and every core node the shipped workflows use, with the
inputs they set and the types they link. Each test fails with the whole list of what is gone.

The front-end APIs web/ calls are checked in the browser suite (tests/browser).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import poseanimate
from poseanimate import host_contract

WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"
FILE_NAME = re.compile(r"\.(safetensors|ckpt|pt|pth|onnx|png|jpe?g|webp|mp4|webm|mov|gif)$")  # the user's files

_CONTRACT_PROBE = """
    from poseanimate import host
    features = host.host_features()
    print("PROBE" + json.dumps({"version": features.version, "problems": features.problems(),
                                "required_missing": [r.name for r in features.required_missing],
                                "fp8_layers": features.fp8_layers, "features": sorted(features.features)}))
"""


def test_the_host_has_every_piece_the_pack_uses(host_probe):
    out = host_probe(_CONTRACT_PROBE)
    print(f"ComfyUI {out['version']}: optional features {out['features']}; not offered: {out['problems']}")
    assert out["version"] != "unknown"
    assert out["required_missing"] == [], "\n".join(out["problems"])
    assert out["fp8_layers"] is not None, "neither generation of the host's fp8 layers: " + "; ".join(out["problems"])
    if host_contract.version_tuple(out["version"]) >= host_contract.version_tuple(host_contract.NEWEST_TESTED):
        assert host_contract.PROGRESS_TEXT in out["features"], out["problems"]  # optional, but there since 0.4


def _accepted(spec) -> set[str] | None:
    """The socket types an input accepts (None for a widget-only input such as a combo list)."""
    kind = spec[0]
    if isinstance(kind, list):
        return None
    return set(str(kind).split(","))


def _inputs(info: dict) -> dict[str, list]:
    specs: dict[str, list] = {}
    for group in ("required", "optional", "hidden"):
        specs.update(info.get("input", {}).get(group, {}) or {})
    return specs


def test_the_core_nodes_of_the_shipped_workflows_take_what_they_are_given(comfy):
    """Every core node the workflows use exists, with every required input set, every link of a type it
    takes and every dropdown value among its options. The files follow the newest tested host's schemas: an
    input an older host does not declare (a newer optional input such as CreateVideo's bit_depth) is ignored
    by that host, so there it is listed, not failed; in the newest it is a mistake."""
    info = comfy.object_info()
    version = comfy.get_json("/system_stats")["system"]["comfyui_version"]
    strict = host_contract.version_tuple(version) >= host_contract.version_tuple(host_contract.NEWEST_TESTED)
    ours = set(poseanimate.NODE_CLASS_MAPPINGS)
    problems, ignored = [], []
    for path in sorted(WORKFLOWS.glob("*.api.json")):
        prompt = json.loads(path.read_text())
        for node_id, node in prompt.items():
            kind = node["class_type"]
            if kind in ours:
                continue
            where = f"{path.name} node {node_id} ({kind})"
            if kind not in info:
                problems.append(f"{where}: no such node in this ComfyUI")
                continue
            specs = _inputs(info[kind])
            for name, value in node["inputs"].items():
                spec = specs.get(name.split(".")[0])  # 'format.codec': a dynamic combo's sub-input
                if spec is None:
                    (problems if strict else ignored).append(f"{where}: no input '{name}' (it has {', '.join(specs)})")
                    continue
                if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
                    source = prompt[value[0]]["class_type"]
                    out_type = info[source]["output"][value[1]] if source in info else None
                    accepted = _accepted(spec)
                    if out_type is not None and accepted is not None and "*" not in accepted \
                            and out_type not in accepted:
                        problems.append(f"{where}: input '{name}' takes {sorted(accepted)}, "
                                        f"linked from {source} output {out_type}")
                elif isinstance(spec[0], list) and value not in spec[0] and not FILE_NAME.search(str(value)):
                    problems.append(f"{where}: '{name}' = {value!r} is not one of {spec[0]}")
            for group in ("required",):
                for name, spec in (info[kind].get("input", {}).get(group) or {}).items():
                    if name not in node["inputs"]:
                        problems.append(f"{where}: required input '{name}' is not set")
    if ignored:
        print(f"ComfyUI {version} ignores these newer inputs:\n" + "\n".join(ignored))
    assert not problems, "\n".join(problems)
