"""LoRA key styles, exact merge arithmetic, restore, and the errors a user can hit."""
from __future__ import annotations

import logging

import pytest
import torch
from safetensors.torch import save_file

from poseanimate.errors import InputError
from poseanimate.models.checkpoint.wan_keys import official_module_to_diffusers
from poseanimate.models.lora import load_lora, merge_loras, parse_lora, read_lora_file
from poseanimate.tiny_models.wan_dit import tiny_wan_state_dict
from poseanimate.models.wan.config import infer_config
from poseanimate.models.wan.dit import WanDiT

RANK = 4
TARGETS = ["blocks.0.self_attn.q", "blocks.1.self_attn.o", "blocks.1.cross_attn.k", "blocks.0.ffn.0", "blocks.1.ffn.2",
           "head.head", "blocks.0.cross_attn.k_img", "time_projection.1", "patch_embedding"]


def _model(state=None) -> WanDiT:
    state = state or tiny_wan_state_dict("i2v", seed=5)
    model = WanDiT(infer_config(state, num_heads=2), device="meta")
    model.load_state_dict(state, strict=True, assign=True)
    return model.requires_grad_(False)


@pytest.fixture
def model() -> WanDiT:
    return _model()


def _pairs(model, seed: int, targets=TARGETS) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Random (B, A) per target module, shaped as trainers save them (conv: 5-d)."""
    g = torch.Generator().manual_seed(seed)
    pairs = {}
    for module in targets:
        weight = model.get_parameter(module + ".weight")
        if weight.dim() == 5:
            a = torch.randn(RANK, *weight.shape[1:], generator=g)
            b = torch.randn(weight.shape[0], RANK, 1, 1, 1, generator=g)
        else:
            a = torch.randn(RANK, weight.shape[1], generator=g)
            b = torch.randn(weight.shape[0], RANK, generator=g)
        pairs[module] = (b * 0.1, a * 0.1)
    return pairs


def _style(pairs, style: str, alpha: float | None = None) -> dict[str, torch.Tensor]:
    """Write (B, A) pairs under the key names a given trainer uses."""
    out = {}
    for module, (b, a) in pairs.items():
        if style == "peft_unianimate":
            up, down = f"pipe.dit.{module}.lora_B.default.weight", f"pipe.dit.{module}.lora_A.default.weight"
        elif style == "peft_comfy":
            up, down = f"diffusion_model.{module}.lora_B.weight", f"diffusion_model.{module}.lora_A.weight"
        elif style == "peft_base_model":
            up, down = f"base_model.model.{module}.lora_B.weight", f"base_model.model.{module}.lora_A.weight"
        elif style in ("kohya", "wan_fun"):
            stem = ("lora_unet_" if style == "kohya" else "lora_unet__") + module.replace(".", "_")
            up, down = f"{stem}.lora_up.weight", f"{stem}.lora_down.weight"
        elif style == "kohya_dotted":
            up, down = f"diffusion_model.{module}.lora_up.weight", f"diffusion_model.{module}.lora_down.weight"
        elif style == "diffusers":
            name = official_module_to_diffusers(module)
            up, down = f"transformer.{name}.lora_B.weight", f"transformer.{name}.lora_A.weight"
        else:
            raise AssertionError(style)
        out[up], out[down] = b, a
        if alpha is not None:
            out[up.rsplit(".lora_", 1)[0] + ".alpha"] = torch.tensor(alpha)
    return out


def _expected_delta(b, a, shape, strength, scale) -> torch.Tensor:
    return (strength * scale * (b.double().flatten(1) @ a.double().flatten(1))).reshape(shape).float()


STYLES = [("peft_unianimate", None), ("peft_comfy", None), ("peft_base_model", None), ("kohya", 8.0),
          ("wan_fun", 2.0), ("kohya_dotted", 8.0), ("diffusers", None), ("peft_comfy", 16.0)]


@pytest.mark.parametrize("style,alpha", STYLES)
def test_each_key_style_adds_exactly_strength_scale_b_a(style, alpha, model):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    pairs = _pairs(model, seed=1)
    lora = parse_lora(_style(pairs, style, alpha), model, style)
    assert sorted(lora.updates) == sorted(m + ".weight" for m in TARGETS) and not lora.unmatched
    merge_loras(model, [(lora, 0.75)])
    after = model.state_dict()
    scale = alpha / RANK if alpha is not None else 1.0
    for module, (b, a) in pairs.items():
        key = module + ".weight"
        change = after[key] - before[key]
        torch.testing.assert_close(change, _expected_delta(b, a, before[key].shape, 0.75, scale), rtol=0, atol=2e-6)
        assert change.abs().max() > 1e-3
    untouched = set(before) - {m + ".weight" for m in TARGETS}
    assert untouched and all(torch.equal(after[k], before[k]) for k in untouched)


def test_several_loras_add_up_and_restore_bit_exactly(model):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    p1, p2 = _pairs(model, 1), _pairs(model, 2, TARGETS[:3])
    l1 = parse_lora(_style(p1, "kohya", 2.0), model, "one")
    l2 = parse_lora(_style(p2, "peft_comfy"), model, "two")
    handle = merge_loras(model, [(l1, 0.5), (l2, -1.25)])
    after = model.state_dict()
    for module in TARGETS:
        key = module + ".weight"
        expected = _expected_delta(*p1[module], before[key].shape, 0.5, 2.0 / RANK)
        if module in p2:
            expected = expected + _expected_delta(*p2[module], before[key].shape, -1.25, 1.0)
        torch.testing.assert_close(after[key] - before[key], expected, rtol=0, atol=2e-6)
    # a second merge stacks; restores go in reverse order
    second = merge_loras(model, [(l2, 1.0)])
    with pytest.raises(RuntimeError, match="reverse order"):
        handle.restore()
    second.restore()
    assert all(torch.equal(model.state_dict()[k], after[k]) for k in after)
    handle.restore()
    assert all(torch.equal(model.state_dict()[k], before[k]) for k in before)
    assert all(not p.requires_grad for p in model.parameters())


def test_bf16_weights_merge_in_float32_and_round_once():
    state = {k: v.to(torch.bfloat16) for k, v in tiny_wan_state_dict("i2v", seed=5).items()}
    model = _model(state)
    pairs = _pairs(model, 3, ["blocks.0.self_attn.q"])
    merge_loras(model, [(parse_lora(_style(pairs, "peft_comfy"), model), 1.0)])
    weight = state["blocks.0.self_attn.q.weight"]
    expected = (weight.float() + _expected_delta(*pairs["blocks.0.self_attn.q"], weight.shape, 1.0, 1.0))
    got = model.blocks[0].self_attn.q.weight
    assert got.dtype == torch.bfloat16
    assert torch.equal(got, expected.to(torch.bfloat16))


def test_scaled_fp8_weights_are_dequantized_merged_and_restored(model):
    layer = model.blocks[0].ffn[0]
    w8 = layer.weight.to(torch.float8_e4m3fn)
    scale = torch.tensor(0.5)
    layer.weight = torch.nn.Parameter(w8, requires_grad=False)
    layer.scale_weight = scale
    pairs = _pairs(model, 4, ["blocks.0.ffn.0"])
    handle = merge_loras(model, [(parse_lora(_style(pairs, "peft_comfy"), model), 2.0)])
    expected = w8.float() * 0.5 + _expected_delta(*pairs["blocks.0.ffn.0"], w8.shape, 2.0, 1.0)
    assert layer.weight.dtype == torch.bfloat16 and torch.equal(layer.weight, expected.to(torch.bfloat16))
    assert float(layer.scale_weight) == 1.0
    handle.restore()
    assert layer.weight.dtype == torch.float8_e4m3fn
    assert torch.equal(layer.weight.view(torch.uint8), w8.view(torch.uint8))
    assert layer.scale_weight is scale


def test_full_deltas_and_bias_deltas(model):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    g = torch.Generator().manual_seed(7)
    diff = torch.randn(64, generator=g)
    diff_b = torch.randn(64, generator=g)
    modulation = torch.randn(1, 6, 64, generator=g)
    lora = parse_lora({"diffusion_model.blocks.0.norm3.diff": diff, "diffusion_model.blocks.0.norm3.diff_b": diff_b,
                       "diffusion_model.blocks.1.modulation.diff": modulation}, model)
    merge_loras(model, [(lora, 0.5)])
    after = model.state_dict()
    torch.testing.assert_close(after["blocks.0.norm3.weight"] - before["blocks.0.norm3.weight"], 0.5 * diff,
                               rtol=0, atol=1e-6)
    torch.testing.assert_close(after["blocks.0.norm3.bias"] - before["blocks.0.norm3.bias"], 0.5 * diff_b,
                               rtol=0, atol=1e-6)
    torch.testing.assert_close(after["blocks.1.modulation"] - before["blocks.1.modulation"], 0.5 * modulation,
                               rtol=0, atol=1e-6)


def test_diffusers_lora_bias_is_scaled_like_its_pair(model):
    before = model.blocks[1].self_attn.o.bias.clone()
    b, a = _pairs(model, 8, ["blocks.1.self_attn.o"])["blocks.1.self_attn.o"]
    bias = torch.linspace(-1, 1, 64)
    lora = parse_lora({"transformer.blocks.1.attn1.to_out.0.lora_A.weight": a,
                       "transformer.blocks.1.attn1.to_out.0.lora_B.weight": b,
                       "transformer.blocks.1.attn1.to_out.0.lora_B.bias": bias,
                       "transformer.blocks.1.attn1.to_out.0.alpha": torch.tensor(2.0)}, model)
    assert sorted(lora.updates) == ["blocks.1.self_attn.o.bias", "blocks.1.self_attn.o.weight"]
    merge_loras(model, [(lora, 3.0)])
    torch.testing.assert_close(model.blocks[1].self_attn.o.bias - before, 3.0 * (2.0 / RANK) * bias, rtol=0, atol=1e-6)


def test_unmatched_keys_are_named_in_a_warning(model, caplog):
    state = _style(_pairs(model, 1, ["blocks.0.self_attn.q"]), "peft_comfy")
    state["diffusion_model.blocks.9.self_attn.q.lora_A.weight"] = torch.zeros(RANK, 64)
    state["diffusion_model.blocks.9.self_attn.q.lora_B.weight"] = torch.zeros(64, RANK)
    with caplog.at_level(logging.WARNING):
        lora = parse_lora(state, model, "partly.safetensors")
    assert list(lora.updates) == ["blocks.0.self_attn.q.weight"]
    assert sorted(lora.unmatched) == ["diffusion_model.blocks.9.self_attn.q.lora_A.weight",
                                      "diffusion_model.blocks.9.self_attn.q.lora_B.weight"]
    assert "partly.safetensors" in caplog.text and "blocks.9.self_attn.q.lora_A.weight" in caplog.text


def test_a_lora_for_another_architecture_is_refused(model):
    sd15 = {"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(4, 320),
            "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": torch.zeros(320, 4),
            "lora_unet_down_blocks_0_attentions_0_proj_in.alpha": torch.tensor(4.0),
            "lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": torch.zeros(4, 768),
            "lora_te_text_model_encoder_layers_0_mlp_fc1.lora_up.weight": torch.zeros(3072, 4)}
    with pytest.raises(InputError, match="sd15.safetensors.*another architecture.*lora_unet_down_blocks_0"):
        parse_lora(sd15, model, "sd15.safetensors")


def test_shape_mismatch_names_key_and_shapes(model):
    state = {"diffusion_model.blocks.0.self_attn.q.lora_A.weight": torch.zeros(RANK, 5120),
             "diffusion_model.blocks.0.self_attn.q.lora_B.weight": torch.zeros(5120, RANK)}
    with pytest.raises(InputError, match=r"blocks\.0\.self_attn\.q\.lora_B\.weight' \(up \[5120, 4\], "
                                         r"down \[4, 5120\]\) does not fit 'blocks\.0\.self_attn\.q\.weight' "
                                         r"of shape \[64, 64\]"):
        parse_lora(state, model, "big.safetensors")
    state = {"lora_unet_blocks_0_ffn_0.lora_down.weight": torch.zeros(RANK, 64)}
    with pytest.raises(InputError, match="lora_down.weight' has no matching up weight"):
        parse_lora(state, model)


def test_unianimate_extra_tensors_come_back_separately(model, tmp_path):
    state = _style(_pairs(model, 1, ["blocks.0.self_attn.q"]), "peft_unianimate")
    dwpose = torch.arange(12.0).reshape(3, 4)
    randomref = torch.arange(3.0)
    state["pipe.dwpose_embedding.0.weight"] = dwpose
    state["pipe.randomref_embedding_pose.0.bias"] = randomref
    path = tmp_path / "UniAnimate-Wan2.1-14B-Lora-12000.ckpt"
    torch.save(state, path)
    # a LoRA loader given UniAnimate's file refuses it and names the node it belongs to (issue 19)
    with pytest.raises(InputError, match="UniAnimate-DiT's file.*Load UniAnimate-DiT.*2 tensor"):
        load_lora(path, model)


def test_unused_tensors_one_warning_line_and_mostly_unused_refused(model, caplog):
    state = _style(_pairs(model, 1, ["blocks.0.self_attn.q"]), "peft_unianimate")
    state["pipe.other.weight"] = torch.zeros(3)
    with caplog.at_level("WARNING"):
        lora = parse_lora(state, model, "x")
    assert list(lora.extra) == ["other.weight"]
    lines = [r.getMessage() for r in caplog.records if "not used" in r.getMessage()]
    assert len(lines) == 1 and f"1 of its {len(state)} tensors" in lines[0] and "other.weight" in lines[0]
    for i in range(len(state)):
        state[f"pipe.stray{i}.weight"] = torch.zeros(3)
    with pytest.raises(InputError, match="tensors are not used by the Wan DiT LoRA.*file for another node"):
        parse_lora(state, model, "x")


class _NotATensor:
    pass


def test_pickles_load_with_weights_only(tmp_path):
    torch.save({"state_dict": {"blocks.0.self_attn.q.lora_A.weight": torch.ones(2, 2)}}, tmp_path / "a.pt")
    assert list(read_lora_file(tmp_path / "a.pt")) == ["blocks.0.self_attn.q.lora_A.weight"]
    torch.save({"weights": torch.ones(1), "payload": _NotATensor()}, tmp_path / "evil.ckpt")
    with pytest.raises(InputError, match="evil.ckpt.*Python objects besides tensors"):
        read_lora_file(tmp_path / "evil.ckpt")
    save_file({"x.lora_A.weight": torch.ones(1, 1)}, str(tmp_path / "b.safetensors"))
    assert list(read_lora_file(tmp_path / "b.safetensors")) == ["x.lora_A.weight"]
