"""Loading Wan2.2-Animate-2 under the names users have, and refusing other files with what they are."""
from __future__ import annotations

import logging

import pytest
import torch

from poseanimate.errors import InputError
from poseanimate.methods.animate2.weights import load_animate2
from poseanimate.models.checkpoint import load_wan_dit
from poseanimate.tiny_models.model_files import (ANIMATE2_COMFY_METADATA, ANIMATE2_DISTILLED_FILE, ANIMATE2_FILE,
                                                 animate_modules_state_dict)
from poseanimate.tiny_models.wan_dit import save_comfy_single_file, tiny_wan_state_dict


@pytest.fixture(scope="module")
def i2v():
    return tiny_wan_state_dict("i2v", seed=6)


def test_official_name_loads_and_says_why(tmp_path, i2v):
    path = save_comfy_single_file(i2v, tmp_path / ANIMATE2_FILE, prefix=False, dtype=torch.bfloat16, num_heads=2)
    dit, info = load_animate2(path)
    assert info.evidence == "its name says Animate-2" and not info.distilled
    assert dit.config.in_dim == 36 and dit.config.has_image_branch
    assert torch.equal(dit.state_dict()["blocks.0.self_attn.q.weight"], i2v["blocks.0.self_attn.q.weight"].bfloat16())


def test_distilled_variant_is_recognised(tmp_path, i2v):
    path = save_comfy_single_file(i2v, tmp_path / ANIMATE2_DISTILLED_FILE, prefix=False, dtype=torch.bfloat16,
                                  num_heads=2)
    assert load_animate2(path)[1].distilled


@pytest.mark.parametrize("generation", ["scaled_fp8", "comfy_quant"])
def test_comfy_repack_by_its_metadata_and_fp8_scaled_stays_fp8(tmp_path, i2v, generation):
    path = save_comfy_single_file(i2v, tmp_path / "some_repack_fp8_scaled.safetensors", num_heads=2,
                                  scaled_fp8=torch.float8_e4m3fn, fp8_generation=generation,
                                  metadata=ANIMATE2_COMFY_METADATA)
    dit, info = load_animate2(path)
    assert info.evidence == "its metadata says model_type animate2"
    assert info.checkpoint.prefix == "model.diffusion_model."
    assert dit.state_dict()["blocks.0.self_attn.q.weight"].dtype == torch.float8_e4m3fn


def test_unmarked_i2v_file_loads_with_a_log_line(tmp_path, i2v, caplog):
    path = save_comfy_single_file(i2v, tmp_path / "wan2.1_i2v_480p_14B_fp16.safetensors", num_heads=2)
    with caplog.at_level(logging.WARNING):
        _, info = load_animate2(path)
    assert info.evidence is None
    assert "no Wan2.2-Animate-2 marker" in caplog.text


def test_other_loaders_name_an_animate2_file(tmp_path, i2v):
    path = save_comfy_single_file(i2v, tmp_path / "x.safetensors", num_heads=2, metadata=ANIMATE2_COMFY_METADATA)
    with pytest.raises(InputError, match=r"is Wan2.2-Animate-2 \(its metadata says model_type animate2\); "
                                         r"expected .*Load Wan2.2-Animate-2 \(PoseAnimate\)"):
        load_wan_dit(path)


def test_t2v_file_is_refused_with_what_it_is(tmp_path):
    path = save_comfy_single_file(tiny_wan_state_dict("t2v"), tmp_path / "wan2.1_t2v_14B.safetensors", num_heads=2)
    with pytest.raises(InputError, match=r"is a Wan T2V DiT without the CLIP branch \(in_dim 16, dim 64\), not "
                                         r"Wan2.2-Animate-2"):
        load_animate2(path)


def test_first_animate_file_is_refused_with_what_it_is(tmp_path, i2v):
    path = save_comfy_single_file({**i2v, **animate_modules_state_dict()}, tmp_path / "wan2.2_animate_14B.safetensors",
                                  num_heads=2)
    with pytest.raises(InputError, match=r"is Wan2.2-Animate \(the first Animate.*Load Wan2.2-Animate, not "
                                         r"Wan2.2-Animate-2"):
        load_animate2(path)


def test_a_vae_is_refused_with_what_it_is(tmp_path):
    from safetensors.torch import save_file
    path = tmp_path / "wan_2.1_vae.safetensors"
    save_file({"encoder.conv1.weight": torch.zeros(4, 3, 3, 3, 3), "decoder.conv1.weight": torch.zeros(4, 4, 3, 3, 3)},
              str(path))
    with pytest.raises(InputError, match="looks like a Wan VAE"):
        load_animate2(path)
