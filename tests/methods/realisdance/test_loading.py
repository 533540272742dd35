"""Loading RealisDance-DiT: the released diffusers folder, a single-file repack, the RoPE switches, refusals."""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from realisdance_fixture import load_fixture, transformer_state, write_folder  # noqa: E402

from poseanimate.errors import InputError  # noqa: E402
from poseanimate.methods.realisdance import RopeShifts, load_realisdance  # noqa: E402
from poseanimate.methods.realisdance import RealisDanceLayers  # noqa: E402
from poseanimate.methods.realisdance.layers import LAYER_PREFIXES  # noqa: E402
from poseanimate.models.checkpoint.wan_keys import to_official_keys  # noqa: E402
from poseanimate.tiny_models.wan_dit import save_comfy_single_file, tiny_wan_state_dict  # noqa: E402

SWITCHES = ("shift_f", "shift_h", "shift_w")


@pytest.fixture(scope="module")
def released():
    tensors, metadata = load_fixture()
    return transformer_state(tensors), json.loads(metadata["transformer_config"])


def official_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    mapping, _ = to_official_keys(state)
    return {mapping[k]: v for k, v in state.items() if k in mapping}


def layer_tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if k.startswith(LAYER_PREFIXES)}


def test_folder_and_single_file_repack_load_the_same_model(released, tmp_path):
    state, config = released
    folder = load_realisdance(write_folder(state, config, tmp_path / "folder"), storage_dtype="fp32")
    path = save_comfy_single_file(official_names(state), tmp_path / "realisdance_dit.safetensors", num_heads=2)
    single = load_realisdance(path, storage_dtype="fp32")
    assert single.info.layout == "official" and single.info.prefix == "model.diffusion_model."
    assert single.shifts == RopeShifts(True, True, True) and single.shifts_from == "class defaults"
    for name, tensor in folder.layers.state_dict().items():
        assert torch.equal(tensor, single.layers.state_dict()[name]), name
        assert torch.equal(tensor, state[name].float()), name
    assert not single.info.extra_tensors  # handed to the layers
    dit_a, dit_b = folder.dit.state_dict(), single.dit.state_dict()
    assert dit_a.keys() == dit_b.keys() and all(torch.equal(dit_a[k], dit_b[k]) for k in dit_a)


def test_stored_dtype_is_kept_and_computes_in_the_inputs(released, tmp_path):
    state, config = released
    model = load_realisdance(write_folder(state, config, tmp_path))
    assert model.layers.add_proj.weight.dtype == torch.float16
    pose = torch.randn(1, 32, 2, 4, 4)
    reference = RealisDanceLayers(64)
    reference.load_state_dict({k: v.float() for k, v in layer_tensors(state).items()})
    assert torch.equal(model.layers.pose_tokens(pose), reference.pose_tokens(pose))
    assert model.layers.pose_tokens(pose).dtype == torch.float32


@pytest.mark.parametrize("written,expected,source", [
    ({"shift_f": False, "shift_h": True, "shift_w": True}, (False, True, True), "config.json"),
    ({"shift_f": False, "shift_h": False, "shift_w": False}, (False, False, False), "config.json"),
    ({}, (True, True, True), "class defaults"),  # diffusers fills missing switches with the class defaults
    ({"shift_f": False}, (False, True, True), "config.json + class defaults"),
])
def test_rope_switches_come_from_config_json(released, tmp_path, caplog, written, expected, source):
    state, config = released
    config = {k: v for k, v in config.items() if k not in SWITCHES} | written
    with caplog.at_level(logging.INFO, logger="poseanimate.methods.realisdance.weights"):
        model = load_realisdance(write_folder(state, config, tmp_path))
    assert model.shifts == RopeShifts(*expected) and model.shifts_from == source
    assert ("class default" in caplog.text) == (source != "config.json")
    override = load_realisdance(tmp_path, shifts=RopeShifts(True, False, True))
    assert override.shifts == RopeShifts(True, False, True) and override.shifts_from == "argument"


def test_a_plain_wan_folder_is_refused_before_loading(released, tmp_path):
    state, config = released
    write_folder(state, config | {"_class_name": "WanTransformer3DModel"}, tmp_path, drop=LAYER_PREFIXES)
    with pytest.raises(InputError, match="plain Wan diffusers DiT, without RealisDance-DiT's layers"):
        load_realisdance(tmp_path)


def test_a_file_with_part_of_the_layers_is_refused(released, tmp_path):
    state, config = released
    write_folder(state, config, tmp_path, drop=("add_proj.", "attn_conv_in."))
    with pytest.raises(InputError, match="only part of RealisDance-DiT's layers: add_proj, attn_conv_in missing"):
        load_realisdance(tmp_path)


def test_layers_on_a_text_to_video_dit_are_refused(released, tmp_path):
    state, _ = released
    t2v = tiny_wan_state_dict("t2v") | layer_tensors(state)
    path = save_comfy_single_file(t2v, tmp_path / "t2v_with_layers.safetensors", num_heads=2)
    with pytest.raises(InputError, match="is a Wan T2V DiT"):
        load_realisdance(path)


def test_layers_of_another_width_are_refused(released, tmp_path):
    state, config = released
    narrow = {k: v for k, v in state.items() if not k.startswith(LAYER_PREFIXES)}
    g = torch.Generator().manual_seed(0)
    for name, shape in (("add_conv_in.weight", (32, 32, 1, 2, 2)), ("add_conv_in.bias", (32,)),
                        ("add_proj.weight", (32, 32)), ("add_proj.bias", (32,)),
                        ("attn_conv_in.weight", (32, 16, 1, 2, 2)), ("attn_conv_in.bias", (32,))):
        narrow[name] = torch.randn(shape, generator=g)
    with pytest.raises(InputError, match="32 wide with patch .* the DiT 64 wide"):
        load_realisdance(write_folder(narrow, config, tmp_path))
    broken = dict(state)
    broken["add_proj.weight"] = torch.randn(64, 32, generator=g)
    with pytest.raises(InputError, match=r"model file .*wrong shape for the RealisDance-DiT layers: "
                                         r"'add_proj\.weight' has shape \[64, 32\] instead of \[64, 64\]"):
        load_realisdance(write_folder(broken, config, tmp_path / "broken"))


def test_scaled_fp8_layers_are_dequantized(released):
    state, _ = released
    layers = layer_tensors(state)
    weight = layers["add_proj.weight"].float()
    scale = weight.abs().amax() / 448.0
    fp8 = dict(layers, **{"add_proj.weight": (weight / scale).to(torch.float8_e4m3fn),
                          "add_proj.scale_weight": scale.reshape(())})
    loaded = RealisDanceLayers.from_state_dict(fp8)
    assert loaded.add_proj.weight.dtype == torch.bfloat16
    expected = ((weight / scale).to(torch.float8_e4m3fn).float() * scale).to(torch.bfloat16)
    assert torch.equal(loaded.add_proj.weight, expected)


def test_folder_without_weights_file_names_the_problem(tmp_path):
    (tmp_path / "transformer").mkdir()
    (tmp_path / "transformer" / "config.json").write_text("{}")
    save_file({"x": torch.zeros(1)}, str(tmp_path / "transformer" / "diffusion_pytorch_model.safetensors"))
    with pytest.raises(InputError, match="not a Wan DiT"):
        load_realisdance(tmp_path)
