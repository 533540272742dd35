"""Loading Wan 2.1 VAE files: official .pth, Comfy-Org .safetensors, and refusals.

Both published files use the official key names (ComfyUI's comfy/ldm/wan/vae.py
names its modules as Wan's wan/modules/vae.py and comfy/sd.py loads the file
unrenamed), so the tests write the parity fixture's official state dict in
each container and check that the loaded model reproduces the official
outputs. The full-size layout is checked against the key shapes the fixture
script recorded from the official class at dim 96.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tiny_wan_vae as tiny  # noqa: E402

from poseanimate.errors import InputError  # noqa: E402
from poseanimate.models.checkpoint.wan_vae import infer_vae_config, load_wan_vae  # noqa: E402
from poseanimate.models.ops import CastOps  # noqa: E402
from poseanimate.tiny_models.wan_dit import tiny_wan_state_dict  # noqa: E402
from poseanimate.models.wan.latent_space import to_vae_space  # noqa: E402
from poseanimate.models.wan.vae import WanVAE, WanVAEConfig  # noqa: E402


@pytest.fixture(scope="module")
def parity():
    return tiny.load_parity()


@pytest.fixture(scope="module")
def official(parity):
    return tiny.parity_state_dict(parity[0])


def decodes_like_official(vae: WanVAE, tensors) -> float:
    out = vae.decode_raw(to_vae_space(tensors["f5/latent"]))
    ref = tensors["f5/decoded"]
    return ((out - ref).abs().max() / ref.abs().max()).item()


def test_full_size_layout_is_the_official_one(parity):
    real = {k: tuple(v) for k, v in json.loads(parity[1]["real_shapes"]).items()}
    model = WanVAE(device="meta")
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == real
    assert sum(v.numel() for v in model.state_dict().values()) == 126_892_531
    meta = {k: torch.empty(s, device="meta") for k, s in real.items()}
    assert infer_vae_config(meta) == WanVAEConfig()


def test_official_pth_loads(tmp_path, parity, official):
    path = tmp_path / "Wan2.1_VAE.pth"
    torch.save({k: v.float() for k, v in official.items()}, path)
    vae = load_wan_vae(path)
    assert vae.config == WanVAEConfig(dim=4)
    assert vae.compute_dtype == torch.float32 and not vae.training
    assert all(not p.requires_grad and p.dtype == torch.float32 for p in vae.parameters())
    assert decodes_like_official(vae, parity[0]) < 1e-4
    wrapped = tmp_path / "wrapped.ckpt"
    torch.save({"state_dict": {k: v.float() for k, v in official.items()}}, wrapped)
    assert load_wan_vae(wrapped).config == WanVAEConfig(dim=4)


def test_comfy_safetensors_loads_in_its_dtype_or_another(tmp_path, parity, official):
    path = tmp_path / "wan_2.1_vae.safetensors"
    save_file({k: v.to(torch.bfloat16).contiguous() for k, v in official.items()}, str(path))
    vae = load_wan_vae(path)
    assert vae.compute_dtype == torch.bfloat16
    assert {p.dtype for p in vae.parameters()} == {torch.bfloat16}
    assert decodes_like_official(vae, parity[0]) < 0.1
    wide = load_wan_vae(path, dtype=torch.float32, operations=CastOps)
    assert {p.dtype for p in wide.parameters()} == {torch.float32}
    # the fixture's float16 values survive bf16 only approximately; float16 storage is exact
    exact = tmp_path / "wan_2.1_vae_fp16.safetensors"
    save_file({k: v.contiguous() for k, v in official.items()}, str(exact))
    assert decodes_like_official(load_wan_vae(exact, dtype=torch.float32), parity[0]) < 1e-4


def test_full_comfy_checkpoint_prefix_is_stripped(tmp_path, official):
    path = tmp_path / "checkpoint.safetensors"
    tensors = {f"first_stage_model.{k}": v.contiguous() for k, v in official.items()}
    tensors["model.diffusion_model.patch_embedding.weight"] = torch.zeros(4, 16, 1, 2, 2)
    save_file(tensors, str(path))
    assert load_wan_vae(path).config == WanVAEConfig(dim=4)


def test_config_is_read_from_shapes():
    for config in (WanVAEConfig(dim=8, num_res_blocks=1, attn_scales=(0.25,)),
                   WanVAEConfig(dim=4, dim_mult=(1, 2, 2), temperal_downsample=(True, False))):
        state = WanVAE(config, device="meta").state_dict()
        assert infer_vae_config(state) == config


def _write(tmp_path: Path, name: str, tensors: dict[str, torch.Tensor]) -> Path:
    path = tmp_path / name
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
    return path


def test_other_files_are_refused_saying_what_they_are(tmp_path, official):
    dit = _write(tmp_path, "wan2.1_i2v_480p_14B_bf16.safetensors", tiny_wan_state_dict("t2v"))
    with pytest.raises(InputError, match=r"VAE file '.*wan2.1_i2v_480p_14B_bf16.safetensors': is not a Wan 2.1 VAE: "
                                         r"it looks like a Wan diffusion model"):
        load_wan_vae(dit)
    lora = _write(tmp_path, "lora.safetensors", {"blocks.0.self_attn.q.lora_A.weight": torch.zeros(4, 8),
                                                 "blocks.0.self_attn.q.lora_B.weight": torch.zeros(8, 4)})
    with pytest.raises(InputError, match="it looks like a LoRA"):
        load_wan_vae(lora)
    sd_vae = _write(tmp_path, "sdxl_vae.safetensors", {"encoder.conv_in.weight": torch.zeros(8, 3, 3, 3),
                                                       "decoder.mid.block_1.conv1.weight": torch.zeros(8, 8, 3, 3),
                                                       "decoder.up.0.block.0.conv1.weight": torch.zeros(8, 8, 3, 3)})
    with pytest.raises(InputError, match=r"it looks like another model's VAE"):
        load_wan_vae(sd_vae)
    wan22 = dict(official)
    wan22["decoder.upsamples.0.upsamples.0.residual.2.weight"] = torch.zeros(4, 4, 3, 3, 3)
    with pytest.raises(InputError, match="is the Wan 2.2 VAE .*48 latent channels"):
        load_wan_vae(_write(tmp_path, "wan2.2_vae.safetensors", wan22))


def test_broken_files_are_refused(tmp_path, official):
    with pytest.raises(InputError, match="VAE file '.*missing.pth': was not found"):
        load_wan_vae(tmp_path / "missing.pth")
    odd = tmp_path / "vae.gguf"
    odd.write_bytes(b"GGUF")
    with pytest.raises(InputError, match="has the extension '.gguf'"):
        load_wan_vae(odd)
    cut = dict(official)
    del cut["decoder.head.2.bias"]
    with pytest.raises(InputError, match=r"cut\.safetensors.*is missing 1 tensor\(s\) of the Wan 2\.1 VAE: "
                                         r"decoder\.head\.2\.bias"):
        load_wan_vae(_write(tmp_path, "cut.safetensors", cut))
    wrong = dict(official)
    wrong["decoder.head.0.gamma"] = torch.ones(5, 1, 1, 1)
    with pytest.raises(InputError, match=r"wrong\.safetensors.*wrong shape for the Wan 2\.1 VAE: 'decoder\.head\.0\."
                                         r"gamma' has shape \[5, 1, 1, 1\] instead of \[4, 1, 1, 1\]"):
        load_wan_vae(_write(tmp_path, "wrong.safetensors", wrong))
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 64)
    with pytest.raises(InputError, match="could not be read"):
        load_wan_vae(garbage)
    pickled = tmp_path / "object.pth"
    torch.save({"encoder.conv1.weight": torch.zeros(1), "extra": {1, 2}}, pickled)
    with pytest.raises(InputError, match="VAE file '.*object.pth'"):
        load_wan_vae(pickled)
