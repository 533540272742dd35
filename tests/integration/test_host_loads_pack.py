"""The pack inside a real ComfyUI: it imports cleanly, its nodes and web files are
served, the harness round-trips workflows, and the host seam talks to the real
comfy modules (run inside the host's python)."""
from __future__ import annotations

import json
import subprocess
import textwrap
import urllib.parse
from pathlib import Path

import pytest

import poseanimate
REPO_ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------- the pack in the server
def test_pack_imports_without_errors(comfy):
    """Read from the API, not the log (whose format each host changes): the server lists the pack's nodes
    as coming from the pack's module; no traceback up to the server's start passes through the pack's files."""
    info = comfy.object_info()
    module = f"custom_nodes.{comfy.pack_folder}"
    assert any(node.get("python_module") == module for node in info.values()), "the pack's nodes are not served"
    log = comfy.log().split("Starting server")[0]  # the import; later jobs' expected refusals may log tracebacks
    path = str(comfy.pack_path)
    assert f'File "{path}/' not in log and f'File "{REPO_ROOT}/' not in log, log[-4000:]


def test_pack_nodes_are_exactly_the_ones_it_declares(comfy):
    info = comfy.object_info()
    assert "KSampler" in info  # the core nodes are there: the listing is real
    module = f"custom_nodes.{comfy.pack_folder}"
    served = {name for name, node in info.items() if node.get("python_module") == module}
    assert served == set(poseanimate.NODE_CLASS_MAPPINGS)
    for name, display in poseanimate.NODE_DISPLAY_NAME_MAPPINGS.items():
        assert info[name]["display_name"] == display


def test_web_directory_is_served(comfy):
    web_dir = REPO_ROOT / poseanimate.WEB_DIRECTORY
    assert web_dir.is_dir()
    prefix = f"/extensions/{urllib.parse.quote(comfy.pack_folder)}/"
    expected = {prefix + p.relative_to(web_dir).as_posix() for p in web_dir.rglob("*.js")}
    listed = {e for e in comfy.get_json("/extensions") if e.startswith(prefix)}
    assert listed == expected
    for url in sorted(expected):
        status, body = comfy.get_bytes(url)
        assert status == 200 and body == (web_dir / url[len(prefix):]).read_bytes()


# ---------------------------------------------------------------- the harness itself
def test_harness_runs_an_api_workflow_and_reads_its_outputs(comfy):
    workflow = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 24, "height": 16, "batch_size": 3, "color": 0}},
        "2": {"class_type": "GetImageSize", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 2]}},
        "4": {"class_type": "PreviewAny", "inputs": {"source": ["2", 0]}},
    }
    result = comfy.run(workflow, timeout=120)
    assert result.status == "success", result.error
    assert result.outputs["3"]["text"] == ["3"]
    assert result.outputs["4"]["text"] == ["24"]


def test_harness_reports_validation_errors_per_node(comfy):
    workflow = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 0, "height": 16, "batch_size": 1, "color": 0}},
        "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}},
    }
    with pytest.raises(comfy.Rejected) as err:
        comfy.queue(workflow)
    errors = err.value.node_errors["1"]["errors"]
    assert any(e["extra_info"].get("input_name") == "width" for e in errors), errors


def test_harness_free_and_interrupt_are_accepted(comfy):
    comfy.free(unload_models=True)
    comfy.interrupt()
    assert comfy.queue_state() == {"queue_running": [], "queue_pending": []}


# ---------------------------------------------------------------- the host seam, in the host's python
_PROBE = textwrap.dedent("""
    import json, sys
    comfy_root, repo_root, base = sys.argv[1:4]
    sys.argv = ["probe", "--cpu", "--base-directory", base]
    sys.path.insert(0, comfy_root)
    import comfy.options
    comfy.options.enable_args_parsing()          # as main.py does: --cpu and --base-directory apply
    sys.path.insert(0, repo_root)
    import standalone
    sys.path.remove(repo_root)
    standalone.load_pack()
    import torch
    import comfy.model_management as mm
    import comfy.model_patcher
    import comfy.ops
    import folder_paths
    from poseanimate import host
    from poseanimate.errors import InputError

    out = {"in_host": host.in_host(),
           "device": str(host.compute_device()), "offload": str(host.offload_device()),
           "ops_same_dtype": host.operations() is comfy.ops.disable_weight_init,
           "ops_cast": host.operations(torch.bfloat16, torch.float32) is comfy.ops.manual_cast,
           "pose_folder": folder_paths.get_folder_paths(host.POSE_MODEL_FOLDER),
           "lora_listed": host.list_model_files("loras"),
           "lora_path": host.model_file("loras", "probe.safetensors")}
    for name in ("../x", "../../etc/passwd", "/etc/passwd", "missing.safetensors"):
        try:
            host.model_file("loras", name)
            out[name] = "accepted"
        except InputError as e:
            out[name] = str(e)

    from poseanimate.tiny_models.wan_dit import tiny_wan_state_dict
    from poseanimate.models.wan.config import infer_config
    from poseanimate.models.wan.dit import WanDiT
    state = tiny_wan_state_dict("i2v", seed=1)
    model = WanDiT(infer_config(state, "probe", 2), operations=host.operations())  # shaped like the pack's
    model.load_state_dict(state)
    patcher = host.manage(model)
    out["loaded_is_model"] = host.load_to_device(patcher) is model
    out["host_tracks_it"] = any(m.model is patcher for m in mm.current_loaded_models)
    out["features_missing"] = host.host_features().problems()

    progress = host.Progress(4)
    progress.update(); progress.update(2)
    out["progress"] = progress.current
    host.request_interrupt()
    try:
        host.check_interrupt()
        out["interrupt"] = "not raised"
    except mm.InterruptProcessingException:
        out["interrupt"] = "raised"
    host.check_interrupt()                       # the host clears its flag once thrown
    print("PROBE" + json.dumps(out))
""")


def test_host_seam_uses_the_real_comfy_modules(host_paths, comfy_base, tmp_path):
    loras = comfy_base / "models" / "loras"
    loras.mkdir(parents=True, exist_ok=True)
    (loras / "probe.safetensors").write_bytes(b"not really")
    proc = subprocess.run([host_paths.python, "-c", _PROBE, str(host_paths.root), str(REPO_ROOT), str(comfy_base)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=180)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("PROBE")]
    assert proc.returncode == 0 and lines, f"probe failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    out = json.loads(lines[-1][len("PROBE"):])

    assert out["in_host"] is True
    assert out["device"] == "cpu" and out["offload"] == "cpu"
    assert out["ops_same_dtype"] and out["ops_cast"]
    assert out["pose_folder"] == [str(comfy_base / "models" / "poseanimate_pose")]
    assert "probe.safetensors" in out["lora_listed"]  # other tests share the models folder
    assert Path(out["lora_path"]) == loras / "probe.safetensors"
    for name in ("../x", "../../etc/passwd", "/etc/passwd"):
        assert "not a plain file name" in out[name], out[name]
    assert "was not found in the 'loras' model folder" in out["missing.safetensors"]
    assert out["loaded_is_model"] and out["host_tracks_it"]
    assert not [p for p in out["features_missing"] if "required" in p], out["features_missing"]
    assert out["progress"] == 3
    assert out["interrupt"] == "raised"
