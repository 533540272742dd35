"""Loading UniAnimate-DiT's file: released key names in .ckpt and fp16 .safetensors, the LoRA scale, refusals."""
from __future__ import annotations

import logging

import pytest
import torch
from safetensors.torch import save_file

from poseanimate.errors import InputError
from poseanimate.methods.unianimate import UniAnimateEncoders, load_unianimate
from poseanimate.methods.unianimate.encoders import expected_shapes
from poseanimate.models.lora import merge_loras
from poseanimate.tiny_models.wan_dit import tiny_wan_state_dict, wan_official_shapes
from poseanimate.models.wan.config import infer_config
from poseanimate.models.wan.dit import WanDiT

DIM, RANK = 64, 4


def tiny_dit(kind: str = "i2v") -> WanDiT:
    sd = tiny_wan_state_dict(kind)
    model = WanDiT(infer_config(sd, num_heads=2), device="meta")
    model.load_state_dict(sd, strict=True, assign=True)
    return model


def released_state(dim: int = DIM, seed: int = 0, encoder_prefix: str = "") -> dict[str, torch.Tensor]:
    """A tiny file with UniAnimate's released keys (values rounded to fp16 so both formats hold the same)."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    shapes = wan_official_shapes("i2v")
    for i in range(2):
        targets = [f"blocks.{i}.{a}.{p}" for a in ("self_attn", "cross_attn") for p in "qkvo"]
        for target in targets + [f"blocks.{i}.ffn.0", f"blocks.{i}.ffn.2"]:
            out_f, in_f = shapes[f"{target}.weight"]
            state[f"pipe.dit.{target}.lora_A.default.weight"] = torch.randn(RANK, in_f, generator=g).half().float()
            state[f"pipe.dit.{target}.lora_B.default.weight"] = torch.randn(out_f, RANK, generator=g).half().float()
    for key, shape in expected_shapes(dim).items():
        state[encoder_prefix + key] = (0.1 * torch.randn(shape, generator=g)).half().float()
    return state


@pytest.fixture(scope="module")
def model() -> WanDiT:
    return tiny_dit()


@pytest.mark.parametrize("fmt", ["ckpt", "safetensors_fp16", "ckpt_pipe_prefix"])
def test_released_layout_loads_from_both_formats(fmt, model, tmp_path):
    prefix = "pipe." if fmt == "ckpt_pipe_prefix" else ""
    state = released_state(encoder_prefix=prefix)
    if fmt == "safetensors_fp16":
        path = tmp_path / "UniAnimate-Wan2.1-14B-Lora-12000.safetensors"
        save_file({k: v.half() for k, v in state.items()}, str(path))
    else:
        path = tmp_path / "UniAnimate-Wan2.1-14B-Lora-12000.ckpt"
        torch.save(state, str(path))
    weights = load_unianimate(path, model)

    assert len(weights.lora.updates) == 2 * 10 and not weights.lora.unmatched and not weights.lora.extra
    update = weights.lora.updates["blocks.1.cross_attn.o.weight"][0]
    assert torch.equal(update.up.float(), state["pipe.dit.blocks.1.cross_attn.o.lora_B.default.weight"])
    encoders = weights.encoders
    assert isinstance(encoders, UniAnimateEncoders) and encoders.dim == DIM
    stored = encoders.dwpose_embedding[12].weight
    assert stored.dtype == (torch.float16 if fmt == "safetensors_fp16" else torch.float32)
    assert torch.equal(stored.float(), state[prefix + "dwpose_embedding.12.weight"])
    # fp16 storage computes in the input's float32: same output from both formats
    pose = torch.rand(5, 32, 48, 3, generator=torch.Generator().manual_seed(1))
    reference = UniAnimateEncoders(DIM)
    reference.load_state_dict({k[len(prefix):]: v for k, v in state.items() if "embedding" in k})
    assert torch.equal(encoders.pose_tokens(pose), reference.pose_tokens(pose))
    assert torch.equal(encoders.reference_pose(pose[0]), reference.reference_pose(pose[0]))


def test_lora_merges_as_w_plus_b_a_without_alpha_over_rank(tmp_path):
    """DiffSynth merges UniAnimate's PEFT file as W += lora_alpha * B @ A (lora_alpha = strength 1), no /rank."""
    model = tiny_dit()
    state = released_state()
    path = tmp_path / "u.ckpt"
    torch.save(state, str(path))
    weights = load_unianimate(path, model)
    key = "blocks.0.self_attn.q.weight"
    before = model.get_parameter(key).detach().clone()
    merged = merge_loras(model, [(weights.lora, 1.0)])
    delta = state["pipe.dit.blocks.0.self_attn.q.lora_B.default.weight"] @ state[
        "pipe.dit.blocks.0.self_attn.q.lora_A.default.weight"]
    assert torch.allclose(model.get_parameter(key) - before, delta, atol=1e-6)
    merged.restore()
    assert torch.equal(model.get_parameter(key), before)


def _save(state, tmp_path, name="u.ckpt"):
    path = tmp_path / name
    torch.save(state, str(path))
    return path


def test_encoders_without_the_lora_are_refused(model, tmp_path):
    state = {k: v for k, v in released_state().items() if "lora" not in k}
    with pytest.raises(InputError, match="only UniAnimate's pose encoders"):
        load_unianimate(_save(state, tmp_path), model)


def test_a_lora_without_the_encoders_is_refused(model, tmp_path):
    state = {k: v for k, v in released_state().items() if "lora" in k}
    with pytest.raises(InputError, match="without UniAnimate's pose encoders"):
        load_unianimate(_save(state, tmp_path), model)


def test_a_file_with_neither_is_refused(model, tmp_path):
    with pytest.raises(InputError, match="neither UniAnimate's LoRA nor its pose encoders"):
        load_unianimate(_save({"something.weight": torch.zeros(2)}, tmp_path), model)


def test_incomplete_encoders_name_the_missing_tensors(model, tmp_path):
    state = released_state()
    del state["randomref_embedding_pose.10.bias"]
    with pytest.raises(InputError, match=r"missing 1 tensor\(s\) of the UniAnimate-DiT pose encoders: "
                                         r"randomref_embedding_pose\.10\.bias"):
        load_unianimate(_save(state, tmp_path), model)


def test_encoders_for_another_width_are_refused(model, tmp_path):
    state = released_state(dim=128)
    with pytest.raises(InputError, match="width 128, but the loaded DiT has width 64"):
        load_unianimate(_save(state, tmp_path), model)


def test_a_text_to_video_dit_is_refused(tmp_path):
    with pytest.raises(InputError, match="not an image-to-video model"):
        load_unianimate(_save(released_state(), tmp_path), tiny_dit("t2v"))


def test_stray_tensors_are_named_in_a_warning(model, tmp_path, caplog):
    state = released_state()
    state["pipe.something_else.weight"] = torch.zeros(3)
    with caplog.at_level(logging.WARNING):
        load_unianimate(_save(state, tmp_path), model)
    assert "something_else.weight" in caplog.text
