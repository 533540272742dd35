"""Loading Wan2.2-Animate checkpoints (official shards, Comfy-style single files, fp8 scaled) and its relighting LoRA.

A mini Animate model (tiny I2V DiT of 2 blocks + Animate modules with narrow
face and motion encoders; the same code, smaller widths) is written in each
layout the real files use, with the key names the parity fixtures recorded
from the official model and ComfyUI's.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "fixtures"))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "models"))
import wan_animate_tiny as tiny  # noqa: E402
import wan_checkpoint_writers as writers  # noqa: E402

from poseanimate.errors import InputError  # noqa: E402
from poseanimate.methods.wan_animate import (AnimateConfig, AnimateModules, load_relight_lora,  # noqa: E402
                                             load_wan_animate)
from poseanimate.methods.wan_animate.lora import RELIGHT_TARGET, parse_relight_lora  # noqa: E402
from poseanimate.methods.wan_animate.motion import MotionEncoderConfig, blur_kernel  # noqa: E402
from poseanimate.models.checkpoint import load_wan_dit  # noqa: E402
from poseanimate.models.lora import merge_loras  # noqa: E402
from poseanimate.models.ops import cast_weight  # noqa: E402
from poseanimate.tiny_models.wan_dit import quantize_scaled_fp8, tiny_wan_state_dict  # noqa: E402

MINI = AnimateConfig(dim=64, num_heads=1, adapters=1, face_in_dim=16, face_streams=2, face_width=8,
                     motion=MotionEncoderConfig(size=8, style_dim=16, motion_dim=4, widths=(8, 8)))
RELIGHT_MODULES = ("self_attn.q", "self_attn.k", "self_attn.v", "self_attn.o", "cross_attn.q", "cross_attn.k",
                   "cross_attn.v", "cross_attn.o", "cross_attn.k_img", "cross_attn.v_img", "ffn.0", "ffn.2")


def animate_state() -> dict[str, torch.Tensor]:
    shapes = {k: tuple(v.shape) for k, v in AnimateModules(MINI, device="meta").state_dict().items()}
    state = tiny.formula_state_dict(shapes)
    state.update({k: blur_kernel() for k in shapes if k.endswith(".kernel")})  # the released files carry them
    return state


@pytest.fixture(scope="module")
def state() -> dict[str, torch.Tensor]:
    return {**tiny_wan_state_dict("i2v", seed=3), **animate_state()}


def check_modules(modules: AnimateModules, reference: dict[str, torch.Tensor], dtype: torch.dtype) -> None:
    assert modules.config == MINI
    for key, value in modules.state_dict().items():
        assert value.dtype == (torch.float32 if key.endswith(".kernel") else dtype), key
        assert torch.equal(value.float(), reference[key].to(dtype).float()), key


def test_official_shards(state, tmp_path):
    writers.save_sharded(state, tmp_path / "Wan2.2-Animate-14B", shards=3, config={"num_heads": 1})
    dit, modules, info = load_wan_animate(tmp_path / "Wan2.2-Animate-14B")
    check_modules(modules, state, torch.float32)
    assert info.layout == "official" and info.extra_tensors == {}
    assert torch.equal(dit.blocks[1].ffn[0].weight, state["blocks.1.ffn.0.weight"])
    assert modules.compute_dtype == dit.compute_dtype == torch.float32


def test_comfy_single_file_bf16(state, tmp_path):
    path = tmp_path / "wan2.2_animate_14B_bf16.safetensors"
    save_file({f"model.diffusion_model.{k}": v.to(torch.bfloat16) if not k.endswith(".kernel") else v
               for k, v in state.items()}, str(path))
    dit, modules, info = load_wan_animate(path)
    check_modules(modules, state, torch.bfloat16)
    assert info.prefix == "model.diffusion_model." and modules.compute_dtype == torch.bfloat16


def scaled_fp8_file(state: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """ComfyUI's scaled fp8: block and face-block Linear weights in fp8 with a scale; returns the dequantized truth."""
    tensors, reference = quantize_scaled_fp8(state)
    for key, value in state.items():
        if key.startswith("face_adapter.") and key.endswith(".weight") and value.dim() == 2:
            scale = value.abs().amax() / 448.0
            tensors[key] = (value / scale).to(torch.float8_e4m3fn)
            tensors[key[:-len("weight")] + "scale_weight"] = scale.reshape(())
            reference[key] = tensors[key].float() * scale
        elif key.endswith(".kernel"):
            tensors[key] = reference[key] = value
    save_file({f"model.diffusion_model.{k}": v for k, v in tensors.items()}, str(path))
    return reference


def test_comfy_single_file_fp8_scaled(state, tmp_path):
    path = tmp_path / "wan2.2_animate_14B_fp8_scaled.safetensors"
    reference = scaled_fp8_file(state, path)
    dit, modules, info = load_wan_animate(path)
    layer = modules.face_adapter.fuser_blocks[0].linear1_kv
    assert layer.weight.dtype == torch.float8_e4m3fn and modules.compute_dtype == torch.bfloat16
    weight, _ = cast_weight(layer, torch.zeros((), dtype=torch.float32))
    assert torch.equal(weight, reference["face_adapter.fuser_blocks.0.linear1_kv.weight"])
    _, converted, _ = load_wan_animate(path, storage_dtype="bf16")
    kv = converted.face_adapter.fuser_blocks[0].linear1_kv
    assert kv.weight.dtype == torch.bfloat16 and getattr(kv, "scale_weight", None) is None
    assert torch.equal(kv.weight, reference["face_adapter.fuser_blocks.0.linear1_kv.weight"].to(torch.bfloat16))


def test_refusals(state, tmp_path):
    plain = tmp_path / "plain.safetensors"
    save_file({k: v for k, v in state.items() if not k.startswith(("face_", "motion_", "pose_"))}, str(plain))
    with pytest.raises(InputError, match="plain Wan DiT without the Animate modules"):
        load_wan_animate(plain)
    full = tmp_path / "animate.safetensors"
    save_file(state, str(full))
    with pytest.raises(InputError, match="Animate"):  # the plain DiT loader names the variant
        load_wan_dit(full)
    broken = tmp_path / "broken.safetensors"
    save_file({k: v for k, v in state.items() if k != "face_encoder.out_proj.weight"}, str(broken))
    with pytest.raises(InputError, match=r"broken\.safetensors.*missing 1 tensor\(s\) of the Wan2\.2-Animate modules: "
                                         r"face_encoder\.out_proj\.weight"):
        load_wan_animate(broken)


# ---------------------------------------------------------------- relighting LoRA
@pytest.fixture()
def loaded(state, tmp_path):
    path = tmp_path / "animate.safetensors"
    save_file(state, str(path))
    return load_wan_animate(path)[:2]


def relight_pairs(dit, rank: int = 4) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``{block module: (A [r, in], B [out, r])}`` for every relighting target, fp16-representable."""
    pairs = {}
    for i in range(len(dit.blocks)):
        for module in RELIGHT_MODULES:
            name = f"blocks.{i}.{module}"
            out_f, in_f = dit.get_parameter(f"{name}.weight").shape
            a = tiny.formula_tensor(f"{name}.A", (rank, in_f), 0.1).half().float()
            b = tiny.formula_tensor(f"{name}.B", (out_f, rank), 0.1).half().float()
            pairs[name] = (a, b)
    return pairs


def check_merge(dit, modules, lora, pairs) -> None:
    before = {k: v.clone() for k, v in dit.state_dict().items()}
    modules_before = {k: v.clone() for k, v in modules.state_dict().items()}
    assert set(lora.updates) == {f"{name}.weight" for name in pairs}
    merge_loras(dit, [(lora, 1.0)])
    for key, value in dit.state_dict().items():
        name = key[:-len(".weight")]
        if name in pairs:
            a, b = pairs[name]
            assert RELIGHT_TARGET.match(key)
            torch.testing.assert_close(value - before[key], b @ a, rtol=0, atol=1e-6)
        else:
            assert torch.equal(value, before[key]), key  # modulation, norms, embeddings, head: untouched
    for key, value in modules.state_dict().items():
        assert torch.equal(value, modules_before[key]), key  # face blocks and encoders: untouched


def test_official_relighting_lora_ckpt(loaded, tmp_path):
    dit, modules = loaded
    pairs = relight_pairs(dit)
    state_dict = {}
    for name, (a, b) in pairs.items():
        state_dict[f"{name}.lora_A.weight"], state_dict[f"{name}.lora_B.weight"] = a, b
    path = tmp_path / "relighting_lora.ckpt"
    torch.save({"state_dict": state_dict, "epoch": 3}, str(path))
    check_merge(dit, modules, load_relight_lora(path, dit, modules), pairs)


@pytest.mark.parametrize("alpha", [None, 4.0])
def test_comfy_relighting_lora_safetensors(loaded, tmp_path, alpha):
    dit, modules = loaded
    pairs = relight_pairs(dit)
    tensors = {}
    for name, (a, b) in pairs.items():
        tensors[f"diffusion_model.{name}.lora_down.weight"] = a.half()
        tensors[f"diffusion_model.{name}.lora_up.weight"] = b.half()
        if alpha is not None:  # alpha == rank: scale 1, like the official 128 / 128
            tensors[f"diffusion_model.{name}.alpha"] = torch.tensor(alpha, dtype=torch.float16)
    path = tmp_path / "WanAnimate_relight_lora_fp16.safetensors"
    save_file(tensors, str(path))
    check_merge(dit, modules, load_relight_lora(path, dit, modules), pairs)


@pytest.mark.parametrize("key", ["face_adapter.fuser_blocks.0.linear1_q.lora_A.weight",
                                 "diffusion_model.blocks.0.modulation.lora_down.weight",
                                 "lora_unet_face_adapter_fuser_blocks_0_linear2.lora_down.weight"])
def test_relighting_lora_targeting_face_or_modulation_is_refused(loaded, key):
    dit, modules = loaded
    good = {"blocks.0.self_attn.q.lora_A.weight": torch.zeros(4, 64),
            "blocks.0.self_attn.q.lora_B.weight": torch.zeros(64, 4)}
    up = key.replace("lora_A", "lora_B").replace("lora_down", "lora_up")
    bad = {key: torch.zeros(4, 64), up: torch.zeros(64, 4)}
    with pytest.raises(InputError, match="face or modulation"):
        parse_relight_lora({**good, **bad}, dit, modules)
    with pytest.raises(InputError, match="face or modulation"):
        parse_relight_lora({**good, **bad}, dit)  # without the modules too


def test_relighting_lora_given_unianimate_file_is_refused(loaded):
    """Issue 19: the relighting node given UniAnimate-DiT's checkpoint used to drop its pose encoders silently."""
    dit, modules = loaded
    state = {"blocks.0.self_attn.q.lora_A.weight": torch.zeros(4, 64),
             "blocks.0.self_attn.q.lora_B.weight": torch.zeros(64, 4),
             "dwpose_embedding.0.weight": torch.zeros(16, 3, 3, 3, 3),
             "randomref_embedding_pose.0.weight": torch.zeros(16, 3, 3, 3)}
    with pytest.raises(InputError, match="UniAnimate-DiT's file.*Load UniAnimate-DiT"):
        parse_relight_lora(state, dit, modules, "UniAnimate-Wan2.1-14B-Lora-12000.ckpt")
