"""The lightx2v step/CFG-distill LoRAs as users have them, on every method's base DiT (issue 14, item 1).

kohya/ComfyUI dotted keys with ``alpha``, ``.diff_b`` on biases, ``.diff`` on norm weights and modulations,
fp16/bf16/fp32 files, rank 32 here (256 at the 14B's shapes), strength above 1; merged exactly, restored bit
for bit; a merged full checkpoint loads like any DiT; a LoRA for another size or kind names the first key
that does not fit and both shapes.
"""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from poseanimate.errors import InputError
from poseanimate.methods.realisdance.weights import load_realisdance
from poseanimate.methods.wan_animate.modules import load_wan_animate
from poseanimate.models.checkpoint import load_wan_dit
from poseanimate.models.lora import check_strength, load_lora, merge_loras, parse_lora
from poseanimate.tiny_models.distill_lora import base_shapes, distill_lora_state_dict, write_distill_lora
from poseanimate.tiny_models.model_files import write_tiny_model_files
from poseanimate.tiny_models.wan_dit import save_comfy_single_file, wan_official_shapes

RANK, ALPHA, STRENGTH = 32, 16.0, 1.7  # scale alpha / rank = 0.5; strength above 1
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
SHAPES_14B = dict(dim=5120, num_layers=1, ffn_dim=13824, text_dim=4096, freq_dim=256, clip_dim=1280)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return write_tiny_model_files(tmp_path_factory.mktemp("models"))


def _base_dit(method: str, files) -> torch.nn.Module:
    """The DiT each method runs on, loaded in float32 as its node loads it."""
    if method == "unianimate":  # UniAnimate-DiT: its LoRA and encoders on the Wan 2.1 I2V DiT
        model, _ = load_wan_dit(files["dit"], storage_dtype=torch.float32)
    elif method == "realisdance":
        model = load_realisdance(files["realisdance"], storage_dtype=torch.float32).dit
    else:
        model, modules, _ = load_wan_animate(files["animate"], storage_dtype=torch.float32)
        model.add_module("animate_modules", modules)  # as the node hangs them under the DiT
    return model.requires_grad_(False)


def _check_merge(model, file_sd, lora, strength, scale):
    """Every weight moves by exactly strength*scale*B·A, every bias/norm/modulation by strength*diff, with B, A
    and diff the file's own tensors."""
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    targets = base_shapes(model)
    assert sorted(lora.updates) == sorted(targets) and not lora.unmatched and not lora.extra
    handle = merge_loras(model, [(lora, strength)])
    after = model.state_dict()
    by_target = {u.target: u for updates in lora.updates.values() for u in updates}
    for key in targets:
        update = by_target[key]
        change = after[key] - before[key]
        if update.diff is not None:
            diff = file_sd[update.source]
            assert torch.equal(after[key], before[key] + diff.float().reshape(before[key].shape) * strength), key
        else:
            b = file_sd[update.source].double().flatten(1)
            a = file_sd[update.source.replace(".lora_up.", ".lora_down.")].double().flatten(1)
            expected = (strength * scale * (b @ a)).reshape(before[key].shape)
            torch.testing.assert_close(change.double(), expected, rtol=0, atol=1e-6 * (1 + expected.abs().max()))
        assert change.abs().max() > 0, key
    untouched = [k for k in before if k not in targets]
    assert all(torch.equal(after[k], before[k]) for k in untouched)
    handle.restore()
    restored = model.state_dict()
    assert all(torch.equal(restored[k], before[k]) and restored[k].dtype == before[k].dtype for k in before)


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("method", ["unianimate", "realisdance", "wan_animate"])
def test_distill_lora_file_merges_exactly_and_restores_on_every_method(method, dtype, files, tmp_path):
    model = _base_dit(method, files)
    path = write_distill_lora(tmp_path / f"distill_{dtype}.safetensors", base_shapes(model), rank=RANK, alpha=ALPHA,
                              dtype=DTYPES[dtype], seed=3)
    lora = load_lora(path, model)
    file_sd = load_file(str(path))
    assert all(v.dtype == DTYPES[dtype] for v in file_sd.values())
    assert {k.rsplit(".", 1)[-1] for k in file_sd} == {"weight", "alpha", "diff", "diff_b"}
    assert {u.rank for ups in lora.updates.values() for u in ups if u.down is not None} == {RANK}
    assert all(u.scale == ALPHA / RANK for ups in lora.updates.values() for u in ups if u.down is not None)
    _check_merge(model, file_sd, lora, STRENGTH, ALPHA / RANK)


@pytest.mark.parametrize("style,diff_m", [("kohya", False), ("comfy", True), ("kohya", True)])
def test_underscored_keys_and_lightx2v_diff_m(style, diff_m, files):
    model = _base_dit("unianimate", files)
    state = distill_lora_state_dict(base_shapes(model), rank=RANK, style=style, diff_m=diff_m, dtype=torch.float32)
    assert any(k.endswith(".diff_m") for k in state) is diff_m
    lora = parse_lora(state, model, style)
    assert {"blocks.0.modulation", "blocks.1.modulation", "head.modulation"} <= set(lora.updates)
    _check_merge(model, state, lora, 3.0, 1.0)


def test_rank_256_at_the_14b_shapes_and_above_a_tiny_width(files):
    shapes = wan_official_shapes("i2v", **SHAPES_14B)
    chosen = {k: shapes[k] for k in ("blocks.0.self_attn.q.weight", "blocks.0.ffn.0.weight", "blocks.0.ffn.0.bias",
                                     "patch_embedding.weight", "blocks.0.norm3.weight", "head.head.weight")}
    chosen["blocks.0.modulation"] = (1, 6, 5120)
    state = distill_lora_state_dict(chosen, rank=256, alpha=256.0, dtype=torch.bfloat16)
    lora = parse_lora(state, {**shapes, "blocks.0.modulation": (1, 6, 5120)}, "rank256")
    assert sorted(lora.updates) == sorted(chosen)
    pairs = [u for ups in lora.updates.values() for u in ups if u.down is not None]
    assert {u.rank for u in pairs} == {256} and {u.scale for u in pairs} == {1.0}
    assert lora.updates["patch_embedding.weight"][0].down.shape == (256, 36, 1, 2, 2)
    # rank 256 on a 64-wide layer still merges exactly (B·A is then full rank)
    model = _base_dit("unianimate", files)
    q = {"blocks.0.self_attn.q.weight": (64, 64)}
    tiny = parse_lora(distill_lora_state_dict(q, rank=256, alpha=64.0, dtype=torch.float32), model)
    before = model.blocks[0].self_attn.q.weight.clone()
    merge_loras(model, [(tiny, 2.5)])
    u = tiny.updates["blocks.0.self_attn.q.weight"][0]
    expected = 2.5 * 0.25 * (u.up.double() @ u.down.double())
    torch.testing.assert_close((model.blocks[0].self_attn.q.weight - before).double(), expected, rtol=0, atol=1e-6)


def test_a_merged_full_checkpoint_loads_like_any_dit(files, tmp_path):
    model = _base_dit("unianimate", files)
    lora = parse_lora(distill_lora_state_dict(base_shapes(model), rank=RANK, seed=4), model)
    merge_loras(model, [(lora, 1.0)])
    merged = {k: v.clone() for k, v in model.state_dict().items()}
    path = save_comfy_single_file(merged, tmp_path / "wan2.1_i2v_480p_14B_lightx2v_4step_bf16.safetensors",
                                  dtype=torch.bfloat16, num_heads=2)
    loaded, info = load_wan_dit(path)
    assert info.config.kind == "i2v" and info.config.has_image_branch
    state = loaded.state_dict()
    assert set(state) == set(merged)
    assert all(state[k].dtype == torch.bfloat16 and torch.equal(state[k], merged[k].to(torch.bfloat16))
               for k in merged)


def test_a_5b_lora_on_the_14b_names_the_first_key_and_both_shapes():
    shapes_5b = wan_official_shapes("t2v", dim=3072, num_layers=1, ffn_dim=14336, text_dim=4096, freq_dim=256,
                                    in_dim=48, out_dim=48)
    state = distill_lora_state_dict(shapes_5b, rank=4)
    with pytest.raises(InputError) as err:
        parse_lora(state, wan_official_shapes("i2v", **SHAPES_14B), "wan2.2_ti2v_5B_distill.safetensors")
    message = str(err.value)
    assert ("'diffusion_model.patch_embedding.lora_up.weight' (up [3072, 4, 1, 1, 1], down [4, 48, 1, 2, 2]) "
            "does not fit 'patch_embedding.weight' of shape [5120, 36, 1, 2, 2]") in message, message
    assert "wan2.2_ti2v_5B_distill.safetensors" in message and "more of its weights do not fit" in message
    # a bias delta that does not fit names both shapes too
    with pytest.raises(InputError, match=r"'diffusion_model.blocks.0.ffn.0.diff_b' has shape \[14336\], which does "
                                         r"not fit 'blocks.0.ffn.0.bias' of shape \[13824\]"):
        parse_lora({"diffusion_model.blocks.0.ffn.0.diff_b": torch.zeros(14336)},
                   wan_official_shapes("i2v", **SHAPES_14B))


def test_a_t2v_lora_on_i2v_is_refused_naming_the_patch_embedding(files, tmp_path):
    model = _base_dit("unianimate", files)
    path = write_distill_lora(tmp_path / "lightx2v_T2V_14B_cfg_step_distill_rank32.safetensors",
                              wan_official_shapes("t2v"), rank=RANK)
    with pytest.raises(InputError) as err:
        load_lora(path, model)
    message = str(err.value)
    assert ("'diffusion_model.patch_embedding.lora_up.weight' (up [64, 32, 1, 1, 1], down [32, 16, 1, 2, 2]) does "
            "not fit 'patch_embedding.weight' of shape [64, 36, 1, 2, 2] (the LoRA is for a T2V DiT, the model is "
            "I2V)") in message, message


def test_nan_or_inf_in_the_file_and_non_finite_strength_are_refused(files):
    model = _base_dit("unianimate", files)
    state = distill_lora_state_dict({"blocks.0.self_attn.q.weight": (64, 64), "blocks.0.norm3.bias": (64,)},
                                    rank=8, dtype=torch.float16)
    bad = dict(state)
    bad["diffusion_model.blocks.0.norm3.diff_b"] = torch.full((64,), float("inf"), dtype=torch.float16)
    with pytest.raises(InputError, match=r"'diffusion_model.blocks.0.norm3.diff_b' holds NaN or infinite values"):
        parse_lora(bad, model, "broken")
    bad = dict(state)
    bad["diffusion_model.blocks.0.self_attn.q.lora_up.weight"][0, 0] = float("nan")
    with pytest.raises(InputError, match="lora_up.weight' holds NaN"):
        parse_lora(bad, model, "broken")
    lora = parse_lora(distill_lora_state_dict({"blocks.0.self_attn.q.weight": (64, 64)}, rank=8), model)
    for strength in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(InputError, match="strength of LoRA.*a finite number"):
            merge_loras(model, [(lora, strength)])
    assert check_strength(4.0) == 4.0 and check_strength(-2) == -2.0
