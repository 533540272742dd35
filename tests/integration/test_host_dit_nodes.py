"""The DiT loader and LoRA nodes inside the host's python: ModelPatcher, the host's LoRA patches, comfy.ops."""
import json
import subprocess
import textwrap
from pathlib import Path

import torch
from safetensors.torch import save_file

REPO_ROOT = Path(__file__).resolve().parents[2]

_PROBE = textwrap.dedent("""
    import json, sys
    comfy_root, repo_root, base = sys.argv[1:4]
    sys.argv = ["probe", "--cpu", "--base-directory", base]
    sys.path.insert(0, comfy_root)
    import comfy.options
    comfy.options.enable_args_parsing()
    sys.path.insert(0, repo_root)
    import standalone
    sys.path.remove(repo_root)
    standalone.load_pack()
    import torch
    import comfy.model_management as mm
    from safetensors.torch import load_file
    from poseanimate.nodes.dit_loaders import PoseAnimateDiTLoader, PoseAnimateLoRA

    (base_handle,) = PoseAnimateDiTLoader().load("wan2.1_i2v_480p_14B_fp16.safetensors", "fp32", "fp32", "sdpa")
    key = "blocks.1.self_attn.q.weight"
    before = base_handle.model.get_parameter(key).detach().clone()
    (handle,) = PoseAnimateLoRA().apply(base_handle, "probe_lora.safetensors", 0.5)
    out = {"patcher": type(handle.managed).__name__, "is_clone": handle.managed is not base_handle.managed,
           "ops": type(handle.model.blocks[0].self_attn.q).__module__}
    model = __import__("poseanimate").host.load_to_device(handle.managed)
    lora = load_file(base + "/models/loras/probe_lora.safetensors")
    up = lora["diffusion_model.blocks.1.self_attn.q.lora_B.weight"]
    down = lora["diffusion_model.blocks.1.self_attn.q.lora_A.weight"]
    expected = before + 0.5 * (up @ down)
    out["patched_err"] = float((model.get_parameter(key).detach() - expected).abs().max())
    out["tracked"] = any(m.model is handle.managed for m in mm.current_loaded_models)
    mm.unload_all_models()
    out["restored"] = bool(torch.equal(base_handle.model.get_parameter(key).detach(), before))
    print("PROBE" + json.dumps(out))
""")


def test_dit_and_lora_nodes_use_the_hosts_model_management(host_paths, comfy_base, tmp_path):
    from poseanimate.models.tiny import save_comfy_single_file, tiny_wan_state_dict
    models = comfy_base / "models"
    (models / "diffusion_models").mkdir(parents=True, exist_ok=True)
    (models / "loras").mkdir(parents=True, exist_ok=True)
    save_comfy_single_file(tiny_wan_state_dict("i2v", seed=5), models / "diffusion_models" /
                           "wan2.1_i2v_480p_14B_fp16.safetensors", dtype=torch.float16, num_heads=2)
    g = torch.Generator().manual_seed(2)
    save_file({"diffusion_model.blocks.1.self_attn.q.lora_A.weight": torch.randn(4, 64, generator=g),
               "diffusion_model.blocks.1.self_attn.q.lora_B.weight": torch.randn(64, 4, generator=g)},
              str(models / "loras" / "probe_lora.safetensors"))
    proc = subprocess.run([host_paths.python, "-c", _PROBE, str(host_paths.root), str(REPO_ROOT), str(comfy_base)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=180)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("PROBE")]
    assert proc.returncode == 0 and lines, f"probe failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    out = json.loads(lines[-1][len("PROBE"):])
    assert out["patcher"] == "ModelPatcher" and out["is_clone"]
    assert out["ops"] == "comfy.ops"
    assert out["patched_err"] < 1e-5
    assert out["tracked"]
    assert out["restored"]
