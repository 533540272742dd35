"""Loading SteadyDancer's released formats, and every loader naming a file of the wrong method."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from steadydancer_fixture import official_state, relative_error, write_file  # noqa: E402
from test_parity import forward  # noqa: E402

from poseanimate.errors import InputError  # noqa: E402
from poseanimate.methods.realisdance import load_realisdance  # noqa: E402
from poseanimate.methods.steadydancer import load_steadydancer  # noqa: E402
from poseanimate.methods.steadydancer.layers import EXTRA_PREFIXES  # noqa: E402
from poseanimate.methods.wan_animate.modules import load_wan_animate  # noqa: E402
from poseanimate.models.checkpoint.wan_dit import load_wan_dit  # noqa: E402
from poseanimate.tiny_models.wan_dit import save_comfy_single_file  # noqa: E402


@pytest.fixture(scope="module")
def state(fx):
    return official_state(fx)


def write_shards(state: dict[str, torch.Tensor], folder: Path) -> Path:
    """The released layout: config.json, diffusion_pytorch_model-0000i-of-00002.safetensors and the index."""
    folder.mkdir(parents=True, exist_ok=True)
    keys = sorted(state)
    half = len(keys) // 2
    weight_map = {}
    for i, part in enumerate((keys[:half], keys[half:]), start=1):
        name = f"diffusion_pytorch_model-{i:05d}-of-00002.safetensors"
        save_file({k: state[k].contiguous() for k in part}, str(folder / name))
        weight_map.update({k: name for k in part})
    (folder / "diffusion_pytorch_model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    (folder / "config.json").write_text(json.dumps({"_class_name": "WanModel", "model_type": "i2v", "dim": 64,
                                                    "num_heads": 2, "num_layers": 2, "in_dim": 36}))
    return folder


def test_released_shards_with_their_index_load_and_match_the_reference(fx, state, tmp_path):
    model = load_steadydancer(write_shards(state, tmp_path / "SteadyDancer-14B"), storage_dtype="fp32")
    assert model.info.num_heads_from == "config.json"
    assert relative_error(forward(model, fx), fx["forward/out"]) < 1e-5


def test_comfy_single_file_with_prefix_in_bf16(fx, state, tmp_path):
    path = save_comfy_single_file(state, tmp_path / "Wan21_SteadyDancer_bf16.safetensors", prefix=True,
                                  dtype=torch.bfloat16, num_heads=2)
    model = load_steadydancer(path)
    assert model.info.prefix == "model.diffusion_model."
    assert model.dit.patch_embedding.weight.dtype == torch.bfloat16
    assert model.layers.patch_embedding_fuse.weight.dtype == torch.float32  # widened, kept float32
    assert torch.equal(model.layers.patch_embedding_fuse.weight,
                       state["patch_embedding_fuse.weight"].bfloat16().float())
    out = forward(model, fx)
    assert torch.isfinite(out).all() and relative_error(out, fx["forward/out"]) < 5e-2


def test_kijai_scaled_fp8_single_file(fx, state, tmp_path):
    """Blocks' Linear weights in fp8 with scale_weight (the KJ repack), one condition Linear quantized too."""
    path = save_comfy_single_file(state, tmp_path / "Wan21_SteadyDancer_fp8_e4m3fn_scaled_KJ.safetensors",
                                  prefix=False, scaled_fp8=torch.float8_e4m3fn, num_heads=2)
    from safetensors.torch import load_file
    tensors = load_file(str(path))
    key = "condition_embedding_spatial.fc_phi.weight"
    value = state[key]
    scale = value.abs().amax() / 448.0
    tensors[key] = (value / scale).to(torch.float8_e4m3fn)
    tensors["condition_embedding_spatial.fc_phi.scale_weight"] = scale.reshape(())
    save_file(tensors, str(path))
    model = load_steadydancer(path, device="cpu", num_heads=2)
    assert model.info.scaled_fp8 == torch.float8_e4m3fn
    dequantized = tensors[key].float() * scale
    assert torch.equal(model.layers.condition_embedding_spatial.fc_phi.weight, dequantized)
    out = forward(model, fx)
    assert torch.isfinite(out).all() and relative_error(out, fx["forward/out"]) < 0.1


def test_plain_wan_loader_names_a_steadydancer_file(state, tmp_path):
    path = write_file(state, tmp_path / "steadydancer.safetensors")
    with pytest.raises(InputError, match="is a SteadyDancer DiT .load it with the SteadyDancer loader"):
        load_wan_dit(path, num_heads=2)


def test_other_method_loaders_name_a_steadydancer_file(state, tmp_path):
    path = write_file(state, tmp_path / "steadydancer.safetensors")
    with pytest.raises(InputError, match="is a SteadyDancer DiT .*without RealisDance-DiT's layers"):
        load_realisdance(path, num_heads=2)
    with pytest.raises(InputError, match="is a SteadyDancer DiT"):
        load_wan_animate(path, num_heads=2)


def test_steadydancer_loader_names_a_plain_wan_or_another_methods_file(state, tmp_path):
    plain = {k: v for k, v in state.items() if not k.startswith(EXTRA_PREFIXES)}
    with pytest.raises(InputError, match="is a plain Wan DiT, without SteadyDancer's modules"):
        load_steadydancer(write_file(plain, tmp_path / "wan2.1_i2v.safetensors"), num_heads=2)
    realisdance = dict(plain, **{"add_conv_in.weight": torch.zeros(64, 32, 1, 2, 2),
                                 "add_conv_in.bias": torch.zeros(64)})
    with pytest.raises(InputError, match="is a RealisDance-DiT transformer .load it with the RealisDance loader"):
        load_steadydancer(write_file(realisdance, tmp_path / "realisdance.safetensors"), num_heads=2)
    partial = {k: v for k, v in state.items() if not k.startswith("condition_embedding_align.")}
    with pytest.raises(InputError, match="only part of SteadyDancer's modules: condition_embedding_align missing"):
        load_steadydancer(write_file(partial, tmp_path / "partial.safetensors"), num_heads=2)
