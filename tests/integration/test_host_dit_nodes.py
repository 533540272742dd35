"""The DiT loader and LoRA nodes inside the host's python: ModelPatcher, the host's LoRA patches, comfy.ops."""

import pytest
import torch
from safetensors.torch import save_file


_PROBE = """
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
"""


def test_dit_and_lora_nodes_use_the_hosts_model_management(host_probe, comfy_base):
    from poseanimate.tiny_models.wan_dit import save_comfy_single_file, tiny_wan_state_dict
    models = comfy_base / "models"
    (models / "diffusion_models").mkdir(parents=True, exist_ok=True)
    (models / "loras").mkdir(parents=True, exist_ok=True)
    save_comfy_single_file(tiny_wan_state_dict("i2v", seed=5), models / "diffusion_models" /
                           "wan2.1_i2v_480p_14B_fp16.safetensors", dtype=torch.float16, num_heads=2)
    g = torch.Generator().manual_seed(2)
    save_file({"diffusion_model.blocks.1.self_attn.q.lora_A.weight": torch.randn(4, 64, generator=g),
               "diffusion_model.blocks.1.self_attn.q.lora_B.weight": torch.randn(64, 4, generator=g)},
              str(models / "loras" / "probe_lora.safetensors"))
    out = host_probe(_PROBE)
    assert out["patcher"] == "ModelPatcher" and out["is_clone"]
    assert out["ops"] == "comfy.ops"
    assert out["patched_err"] < 1e-5
    assert out["tracked"]
    assert out["restored"]


_FP8_PROBE = """
    import torch
    from poseanimate import host
    from poseanimate.models.checkpoint import load_wan_dit
    from poseanimate.nodes.dit_loaders import PoseAnimateDiTLoader

    name = probe_args[0]
    (handle,) = PoseAnimateDiTLoader().load(name, "default", "fp32", "sdpa")
    q = handle.model.blocks[0].self_attn.q
    reference, _ = load_wan_dit(base + "/models/diffusion_models/" + name, storage_dtype=torch.float32)
    model = host.load_to_device(handle.managed)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(1, 16, 2, 4, 4, generator=g), torch.randn(1, 20, 2, 4, 4, generator=g)
    ctx, clip = torch.randn(1, 5, 32, generator=g), torch.randn(1, 257, 32, generator=g)
    t = torch.tensor([500.0])
    with torch.no_grad():
        got = model(x, t, ctx, clip_fea=clip, y=y)
        want = reference(x, t, ctx, clip_fea=clip, y=y)
    stored = getattr(q.weight, "storage_dtype", None) or q.weight.dtype  # a host QuantizedTensor keeps its fp8 inside
    print("PROBE" + json.dumps({"weight_dtype": str(stored), "ops": type(q).__module__ + "." + type(q).__qualname__,
                                "host": host.host_features().version,
                                "rel": float((got - want).abs().max() / want.abs().max())}))
"""

# measured 4.1e-7 in 0.3.64 and exactly 0 in 0.8.0 and 0.33.0, for every generation; each run prints its figure
FP8_HOST_TOLERANCE = 1e-5


@pytest.mark.parametrize("generation", ["scaled_fp8", "comfy_quant", "header"])
def test_scaled_fp8_file_keeps_fp8_weights_in_the_host(generation, host_probe, comfy_base):
    """Both generations of Comfy-Org fp8-scaled repacks stay fp8 inside every host: through its scaled-fp8
    layers (0.3.x) or its per-layer quantization layers (0.8+), and compute what the dequantized model does."""
    from poseanimate.tiny_models.wan_dit import save_comfy_single_file, tiny_wan_state_dict
    folder = comfy_base / "models" / "diffusion_models"
    folder.mkdir(parents=True, exist_ok=True)
    name = f"wan2.1_i2v_480p_14B_fp8_scaled_{generation}.safetensors"
    save_comfy_single_file(tiny_wan_state_dict("i2v", seed=6), folder / name, scaled_fp8=torch.float8_e4m3fn,
                           num_heads=2, fp8_generation=generation)
    out = host_probe(_FP8_PROBE, args=(name,))
    print(f"fp8 {generation} in ComfyUI {out['host']}: {out['ops']}, max relative error {out['rel']:.2e}")
    assert out["weight_dtype"] == "torch.float8_e4m3fn", out  # kept in fp8, not dequantized to bf16
    assert out["ops"].startswith("comfy.ops") and ("scaled" in out["ops"].lower() or "Mixed" in out["ops"]), out
    assert out["rel"] < FP8_HOST_TOLERANCE, out


_DISTILL_PROBE = """
    import torch
    import comfy.model_management as mm
    from poseanimate import host
    from poseanimate.models.checkpoint import load_wan_dit
    from poseanimate.models.lora import load_lora, merge_loras
    from poseanimate.nodes.dit_loaders import PoseAnimateDiTLoader, PoseAnimateLoRA

    dit_name, lora_name, strength = probe_args[0], probe_args[1], float(probe_args[2])
    (base_handle,) = PoseAnimateDiTLoader().load(dit_name, "fp32", "fp32", "sdpa")
    before = {k: v.detach().clone() for k, v in base_handle.model.state_dict().items()}
    (handle,) = PoseAnimateLoRA().apply(base_handle, lora_name, strength)
    model = host.load_to_device(handle.managed)
    reference, _ = load_wan_dit(base + "/models/diffusion_models/" + dit_name, storage_dtype=torch.float32)
    lora = load_lora(base + "/models/loras/" + lora_name, reference)
    merge_loras(reference, [(lora, strength)])
    reference = reference.to(next(model.parameters()).device)
    got, want = model.state_dict(), reference.state_dict()
    roles, bad = {}, []
    for target, updates in lora.updates.items():
        for u in updates:
            role = u.source.rsplit(".", 1)[-1] if u.diff is not None else "lora"
            err = float((got[target].float() - want[target].float()).abs().max())
            roles[role] = max(roles.get(role, 0.0), err)
            if err > 1e-5:
                bad.append(target)
    changed = {r: 0 for r in roles}
    for target, updates in lora.updates.items():
        role = updates[0].source.rsplit(".", 1)[-1] if updates[0].diff is not None else "lora"
        changed[role] += int(not torch.equal(got[target].cpu(), before[target]))
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(1, 16, 2, 4, 4, generator=g), torch.randn(1, 20, 2, 4, 4, generator=g)
    ctx, clip = torch.randn(1, 5, 32, generator=g), torch.randn(1, 257, 32, generator=g)
    dev = next(model.parameters()).device
    x, y, ctx, clip = (v.to(dev) for v in (x, y, ctx, clip))
    t = torch.tensor([750.0], device=dev)
    with torch.no_grad():
        out, ref = model(x, t, ctx, clip_fea=clip, y=y), reference(x, t, ctx, clip_fea=clip, y=y)
    mm.unload_all_models()
    restored = all(torch.equal(v.detach().cpu(), before[k]) for k, v in base_handle.model.state_dict().items())
    print("PROBE" + json.dumps({"param_err": roles, "changed": changed, "targets": len(lora.updates), "bad": bad[:8],
                                "out_err": float((out - ref).abs().max()), "host": host.host_features().version,
                                "restored": restored}))
"""


def test_distill_lora_with_bias_and_norm_deltas_in_the_host_matches_the_merged_model(host_probe, comfy_base):
    """A lightx2v-style distill LoRA (down/up/alpha, .diff_b on biases, .diff on norms and modulations, bf16,
    rank 32, strength above 1) applied by the LoRA node as the host's weight patches equals the LoRA merged
    outside the host, and the host puts the weights back when it unloads."""
    from poseanimate.models.wan.config import infer_config
    from poseanimate.models.wan.dit import WanDiT
    from poseanimate.tiny_models.distill_lora import DISTILL_LORA_FILE, base_shapes, write_distill_lora
    from poseanimate.tiny_models.wan_dit import save_comfy_single_file, tiny_wan_state_dict
    models = comfy_base / "models"
    (models / "diffusion_models").mkdir(parents=True, exist_ok=True)
    state = tiny_wan_state_dict("i2v", seed=7)
    dit_name = "wan2.1_i2v_480p_14B_distill_probe.safetensors"
    save_comfy_single_file(state, models / "diffusion_models" / dit_name, dtype=torch.float16, num_heads=2)
    shapes = base_shapes(WanDiT(infer_config(state, num_heads=2), device="meta"))
    write_distill_lora(models / "loras" / DISTILL_LORA_FILE, shapes, rank=32, alpha=16.0, dtype=torch.bfloat16, seed=1)
    out = host_probe(_DISTILL_PROBE, args=(dit_name, DISTILL_LORA_FILE, "1.5"))
    print(f"distill LoRA in ComfyUI {out['host']}: max parameter error by kind {out['param_err']}, "
          f"forward {out['out_err']:.2e}")
    assert set(out["param_err"]) == {"lora", "diff", "diff_b"}, out
    assert out["targets"] == len(shapes)
    assert max(out["param_err"].values()) < 1e-5 and out["out_err"] < 1e-5, out
    assert all(n > 0 for n in out["changed"].values()), out
    assert out["restored"], out
