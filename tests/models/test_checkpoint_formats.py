"""Every supported checkpoint layout and dtype loads to the same Wan DiT weights."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
import wan_checkpoint_writers as writers  # noqa: E402

from poseanimate.errors import InputError  # noqa: E402
from poseanimate.models.checkpoint import load_wan_dit, resolve_checkpoint  # noqa: E402
from poseanimate.models.checkpoint.wan_keys import (diffusers_key_to_official, official_key_to_diffusers,  # noqa: E402
                                                    to_official_keys)
from poseanimate.tiny_models.wan_dit import (quantize_scaled_fp8, save_comfy_single_file, tiny_wan_state_dict,  # noqa: E402
                                     wan_official_shapes)

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "wan_key_map.json"
HEADS = 2


@pytest.fixture(scope="module")
def i2v() -> dict[str, torch.Tensor]:
    return tiny_wan_state_dict("i2v", seed=3)


def _assert_weights(model, expected: dict[str, torch.Tensor]) -> None:
    state = model.state_dict()
    assert set(state) == set(expected)
    for key, value in expected.items():
        assert state[key].dtype == value.dtype, key
        assert torch.equal(state[key], value), key


# ---------------------------------------------------------------- the key map
def test_key_map_matches_diffusers_and_official_reference():
    """Our table against diffusers' own converter and both reference models (see the fixture script)."""
    reference = json.loads(FIXTURE.read_text())
    assert set(reference) == {"t2v", "i2v", "flf2v"}
    for kind, data in reference.items():
        ours = wan_official_shapes(kind, dim=64, ffn_dim=128, text_dim=32, freq_dim=32, clip_dim=1280)
        assert ours == {k: tuple(v) for k, v in data["official_shapes"].items()}, kind
        for official, diffusers in data["official_to_diffusers"].items():
            assert official_key_to_diffusers(official) == diffusers
            assert diffusers_key_to_official(diffusers) == official


def test_key_map_keeps_official_norm2_and_norm3_apart():
    official = {"blocks.0.norm3.weight": 0, "blocks.0.self_attn.q.weight": 0}
    assert to_official_keys(official)[0]["blocks.0.norm3.weight"] == "blocks.0.norm3.weight"
    diffusers = {"transformer.blocks.0.norm2.weight": 0, "transformer.blocks.0.attn1.to_q.weight": 0}
    mapping, facts = to_official_keys(diffusers)
    assert mapping["transformer.blocks.0.norm2.weight"] == "blocks.0.norm3.weight"
    assert facts == {"prefix": "transformer.", "layout": "diffusers", "ignored": []}


# ---------------------------------------------------------------- layouts
def _write(fmt: str, state, tmp_path: Path):
    """Write ``state`` in layout ``fmt``; return what a user would point the loader at."""
    if fmt == "comfy_prefixed":
        return save_comfy_single_file(state, tmp_path / "wan2.1_i2v_480p_14B_fp32.safetensors", num_heads=HEADS)
    if fmt == "comfy_bare":
        return save_comfy_single_file(state, tmp_path / "wan.safetensors", prefix=False, num_heads=HEADS)
    if fmt == "diffusion_model_prefix":
        return save_comfy_single_file(state, tmp_path / "wan.safetensors", prefix="diffusion_model.",
                                      num_heads=HEADS)
    official_config = {"_class_name": "WanModel", "num_heads": HEADS}
    if fmt == "sharded_folder":
        writers.save_sharded(state, tmp_path / "Wan2.1-I2V", config=official_config)
        return tmp_path / "Wan2.1-I2V"
    if fmt == "sharded_index":
        writers.save_sharded(state, tmp_path, config=official_config)
        return tmp_path / "diffusion_pytorch_model.safetensors.index.json"
    if fmt == "sharded_one_shard":
        paths = writers.save_sharded(state, tmp_path, index=False, config=official_config)
        return paths[1]
    if fmt == "sharded_list":
        return [str(p) for p in writers.save_sharded(state, tmp_path, config=official_config)]
    if fmt == "diffusers_single":
        return writers.save_diffusers(state, tmp_path / "Wan2.1-I2V-Diffusers", HEADS)
    if fmt == "diffusers_sharded":
        return writers.save_diffusers(state, tmp_path / "Wan2.1-I2V-Diffusers", HEADS, shards=2)
    raise AssertionError(fmt)


FORMATS = ["comfy_prefixed", "comfy_bare", "diffusion_model_prefix", "sharded_folder", "sharded_index",
           "sharded_one_shard", "sharded_list", "diffusers_single", "diffusers_sharded"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_layout_loads_the_same_weights(fmt, i2v, tmp_path):
    model, info = load_wan_dit(_write(fmt, i2v, tmp_path))
    _assert_weights(model, i2v)
    assert info.config.num_heads == HEADS and info.config.kind == "i2v" and info.config.image_embed_dim == 32
    assert info.layout == ("diffusers" if fmt.startswith("diffusers") else "official")
    assert info.prefix == {"comfy_prefixed": "model.diffusion_model.",
                           "diffusion_model_prefix": "diffusion_model."}.get(fmt, "")
    assert info.compute_dtype == torch.float32 and model.compute_dtype == torch.float32


def test_num_heads_come_from_the_diffusers_config(tmp_path):
    state = tiny_wan_state_dict("t2v", seed=0)
    model, info = load_wan_dit(writers.save_diffusers(state, tmp_path, num_heads=4))
    assert (info.config.num_heads, info.num_heads_from) == (4, "config.json")
    model, info = load_wan_dit(save_comfy_single_file(state, tmp_path / "bare.safetensors"))
    assert (info.config.num_heads, info.num_heads_from) == (1, "128-wide heads")  # dim 64 / 128-wide heads


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_files_load_exactly(dtype, i2v, tmp_path):
    path = save_comfy_single_file(i2v, tmp_path / "wan.safetensors", dtype=dtype, num_heads=HEADS)
    model, info = load_wan_dit(path)
    _assert_weights(model, {k: v.to(dtype) for k, v in i2v.items()})
    assert info.compute_dtype == dtype and info.file_dtypes == {str(dtype)[6:]: sum(v.numel() for v in i2v.values())}
    # and converted on the way in, per tensor
    model, info = load_wan_dit(path, storage_dtype=torch.float32)
    _assert_weights(model, {k: v.to(dtype).float() for k, v in i2v.items()})


# ---------------------------------------------------------------- fp8
GENERATIONS = ["scaled_fp8", "comfy_quant", "header"]  # Comfy-Org repacks: first generation, second (two ways)


@pytest.mark.parametrize("generation", GENERATIONS)
@pytest.mark.parametrize("fp8", [torch.float8_e4m3fn, torch.float8_e5m2])
def test_scaled_fp8_stays_fp8_with_its_scale(fp8, generation, i2v, tmp_path):
    path = save_comfy_single_file(i2v, tmp_path / "wan2.1_i2v_480p_14B_fp8_scaled.safetensors", scaled_fp8=fp8,
                                  num_heads=HEADS, fp8_generation=generation)
    stored, reference = quantize_scaled_fp8(i2v, fp8, generation=generation)
    scale_name = "scale_weight" if generation == "scaled_fp8" else "weight_scale"
    model, info = load_wan_dit(path)
    assert info.scaled_fp8 == fp8 and info.compute_dtype == torch.bfloat16
    q = model.blocks[1].cross_attn.k_img
    assert q.weight.dtype == fp8
    assert torch.equal(q.weight.view(torch.uint8), stored["blocks.1.cross_attn.k_img.weight"].view(torch.uint8))
    assert torch.equal(q.scale_weight, stored[f"blocks.1.cross_attn.k_img.{scale_name}"])
    for key, expected in reference.items():
        module_name, _, param = key.rpartition(".")
        module = model.get_submodule(module_name) if module_name else model
        value = getattr(module, param).float()
        if param == "weight" and getattr(module, "scale_weight", None) is not None:
            value = value * module.scale_weight
        assert torch.equal(value, expected), key
    assert model.blocks[0].modulation.dtype == torch.bfloat16  # not quantized in the file


@pytest.mark.parametrize("fmt, version", [("nvfp4", "0.8.0"), ("mxfp8", "0.33.0"), ("int4_magic", None)])
def test_a_layer_format_the_pack_cannot_keep_is_refused_naming_it(fmt, version, i2v, tmp_path):
    import json
    from safetensors.torch import load_file, save_file
    path = save_comfy_single_file(i2v, tmp_path / "wan.safetensors", scaled_fp8=torch.float8_e4m3fn,
                                  num_heads=HEADS, fp8_generation="comfy_quant")
    tensors = load_file(str(path))
    key = "model.diffusion_model.blocks.0.ffn.0.comfy_quant"
    tensors[key] = torch.tensor(list(json.dumps({"format": fmt}).encode()), dtype=torch.uint8)
    save_file(tensors, str(path))
    with pytest.raises(InputError) as err:
        load_wan_dit(path)
    message = str(err.value)
    assert "wan.safetensors" in message and f"'{fmt}'" in message and "blocks.0.ffn.0" in message
    assert (f"ComfyUI {version} and newer" in message) if version else ("no ComfyUI version" in message)


@pytest.mark.parametrize("generation", GENERATIONS)
def test_scaled_fp8_dequantizes_to_a_requested_float_dtype(generation, i2v, tmp_path):
    path = save_comfy_single_file(i2v, tmp_path / "wan.safetensors", scaled_fp8=torch.float8_e4m3fn, num_heads=HEADS,
                                  fp8_generation=generation)
    reference = quantize_scaled_fp8(i2v, torch.float8_e4m3fn)[1]
    model, info = load_wan_dit(path, storage_dtype=torch.float32)
    _assert_weights(model, reference)
    assert info.scaled_fp8 is None and getattr(model.blocks[0].ffn[0], "scale_weight", None) is None


def test_plain_fp8_file_and_fp8_storage_request(i2v, tmp_path):
    path = save_comfy_single_file(i2v, tmp_path / "wan_fp8_e4m3fn.safetensors", dtype=torch.float8_e4m3fn,
                                  num_heads=HEADS)
    model, info = load_wan_dit(path)
    assert model.blocks[0].ffn[0].weight.dtype == torch.float8_e4m3fn and info.scaled_fp8 is None
    # plain parameters are never left in fp8: they are upcast exactly
    assert torch.equal(model.blocks[0].modulation, i2v["blocks.0.modulation"].to(torch.float8_e4m3fn).float())
    # asking for fp8 storage of a float32 file quantizes the Linear weights only
    model, info = load_wan_dit(save_comfy_single_file(i2v, tmp_path / "f32.safetensors", num_heads=HEADS),
                               storage_dtype=torch.float8_e4m3fn)
    quantized = i2v["blocks.0.self_attn.q.weight"].to(torch.float8_e4m3fn)
    assert torch.equal(model.blocks[0].self_attn.q.weight.view(torch.uint8), quantized.view(torch.uint8))
    assert model.blocks[0].self_attn.q.bias.dtype == torch.float32
    assert model.patch_embedding.weight.dtype == torch.float32 and info.compute_dtype == torch.bfloat16


# ---------------------------------------------------------------- compute dtype
def _run(model) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 16, 1, 4, 4, generator=g)
    y = torch.randn(1, 20, 1, 4, 4, generator=g)
    context = torch.randn(1, 7, 32, generator=g)
    clip = torch.randn(1, 257, 32, generator=g)
    return model(x, torch.tensor([500.0]), context, clip_fea=clip, y=y)


@pytest.mark.parametrize("generation", GENERATIONS)
def test_compute_dtype_is_independent_of_storage_dtype(generation, i2v, tmp_path):
    path = save_comfy_single_file(i2v, tmp_path / "wan.safetensors", scaled_fp8=torch.float8_e4m3fn, num_heads=HEADS,
                                  fp8_generation=generation)
    reference = quantize_scaled_fp8(i2v, torch.float8_e4m3fn)[1]
    ref_path = save_comfy_single_file(reference, tmp_path / "ref.safetensors", num_heads=HEADS)
    fp8_model, _ = load_wan_dit(path, compute_dtype=torch.float32)
    ref_model, _ = load_wan_dit(ref_path)
    assert fp8_model.blocks[0].ffn[0].weight.dtype == torch.float8_e4m3fn
    with torch.no_grad():
        out_fp8, out_ref = _run(fp8_model), _run(ref_model)
    # fp8 storage computing in float32 equals float32 storage of the dequantized weights
    assert out_fp8.dtype == torch.float32
    torch.testing.assert_close(out_fp8, out_ref, rtol=1e-5, atol=1e-5)
    # the same fp8 weights computing in bf16 differ by bf16 rounding only
    bf16_model, info = load_wan_dit(path)
    with torch.no_grad():
        out_bf16 = _run(bf16_model)
    assert info.compute_dtype == torch.bfloat16 and out_bf16.dtype == torch.float32
    error = (out_bf16 - out_ref).abs().max() / out_ref.abs().max()
    assert 0 < error < 0.05


# ---------------------------------------------------------------- refusals
def test_refuses_other_models_and_says_what_they_look_like(tmp_path):
    vae = {"encoder.conv1.weight": torch.zeros(4, 3, 3, 3, 3), "decoder.upsamples.0.residual.0.gamma": torch.zeros(4),
           "conv1.weight": torch.zeros(2, 2, 1, 1, 1)}
    t5 = {"shared.weight": torch.zeros(8, 4), "encoder.block.0.layer.0.SelfAttention.q.weight": torch.zeros(4, 4)}
    lora = {"diffusion_model.blocks.0.self_attn.q.lora_A.weight": torch.zeros(2, 4),
            "diffusion_model.blocks.0.self_attn.q.lora_B.weight": torch.zeros(4, 2)}
    for name, state, words in (("wan_2.1_vae.safetensors", vae, "looks like a Wan VAE"),
                               ("umt5_xxl_fp8.safetensors", t5, "text encoder"),
                               ("some_lora.safetensors", lora, "looks like a LoRA"),
                               ("other.safetensors", {"foo.weight": torch.zeros(1)}, "found keys like foo.weight")):
        save_file(state, str(tmp_path / name))
        with pytest.raises(InputError, match=words) as err:
            load_wan_dit(tmp_path / name)
        assert name in str(err.value) and "not a Wan DiT" in str(err.value)


def test_refuses_unreadable_and_pickle_files(tmp_path):
    (tmp_path / "broken.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(InputError, match="broken.safetensors.*could not be read as safetensors"):
        load_wan_dit(tmp_path / "broken.safetensors")
    (tmp_path / "Wan2.1_VAE.pth").write_bytes(b"\x00")
    with pytest.raises(InputError, match="PyTorch pickle.*VAE"):
        load_wan_dit(tmp_path / "Wan2.1_VAE.pth")
    with pytest.raises(InputError, match="nothing_here.safetensors.*was not found"):
        load_wan_dit(tmp_path / "nothing_here.safetensors")


def test_missing_unexpected_and_misshaped_tensors_are_named(i2v, tmp_path):
    state = dict(i2v)
    del state["blocks.1.ffn.2.bias"]
    state["blocks.0.self_attn.extra.weight"] = torch.zeros(2)
    path = save_comfy_single_file(state, tmp_path / "a.safetensors")
    with pytest.raises(InputError, match=r"a\.safetensors.*missing 1 tensor.*blocks\.1\.ffn\.2\.bias.*"
                                         r"not part of the I2V Wan DiT: blocks\.0\.self_attn\.extra\.weight"):
        load_wan_dit(path)
    state = dict(i2v, **{"blocks.1.ffn.0.weight": torch.zeros(96, 64)})
    path = save_comfy_single_file(state, tmp_path / "b.safetensors")
    with pytest.raises(InputError, match=r"b\.safetensors.*'blocks\.1\.ffn\.0\.weight' has shape \[96, 64\]"
                                         r".*\[128, 64\]"):
        load_wan_dit(path)


def test_a_missing_shard_is_named(i2v, tmp_path):
    paths = writers.save_sharded(i2v, tmp_path / "idx")
    paths[1].unlink()
    with pytest.raises(InputError, match="diffusion_pytorch_model-00002-of-00003.safetensors.*index.json is missing"):
        load_wan_dit(tmp_path / "idx")
    paths = writers.save_sharded(i2v, tmp_path / "noidx", index=False)
    paths[2].unlink()
    with pytest.raises(InputError, match="shard diffusion_pytorch_model-00003-of-00003.safetensors is missing"):
        load_wan_dit(paths[0])


def test_extra_prefixes_come_back_instead_of_failing(i2v, tmp_path):
    pose = torch.arange(6.0).reshape(2, 3)
    path = save_comfy_single_file(dict(i2v, **{"pose_patch_embedding.weight": pose}), tmp_path / "animate.safetensors")
    with pytest.raises(InputError, match="pose_patch_embedding.weight"):
        load_wan_dit(path)
    model, info = load_wan_dit(path, extra_prefixes=("pose_patch_embedding.",))
    assert torch.equal(info.extra_tensors["pose_patch_embedding.weight"], pose)


def test_resolve_prefers_the_index_and_reads_the_official_config(i2v, tmp_path):
    writers.save_sharded(i2v, tmp_path, shards=2, config={"num_heads": 2})
    found = resolve_checkpoint(tmp_path)
    assert found.layout == "sharded" and len(found.files) == 2 and found.config == {"num_heads": 2}
    assert found.weight_map is not None


def test_folders_with_two_experts_ask_which_one(i2v, tmp_path):
    writers.save_sharded(i2v, tmp_path / "Wan2.2-I2V-A14B" / "high_noise_model", shards=2)
    writers.save_sharded(i2v, tmp_path / "Wan2.2-I2V-A14B" / "low_noise_model", shards=2)
    with pytest.raises(InputError, match="high_noise_model, low_noise_model do: pick one"):
        load_wan_dit(tmp_path / "Wan2.2-I2V-A14B")
    root = tmp_path / "Wan2.2-I2V-A14B-Diffusers"
    writers.save_diffusers(i2v, root, HEADS)
    (root / "transformer_2").mkdir()
    with pytest.raises(InputError, match="transformer/ and transformer_2/"):
        load_wan_dit(root)
    model, info = load_wan_dit(root / "transformer")
    assert info.layout == "diffusers" and info.config.num_heads == HEADS


class _ParameterScaledLinear(torch.nn.Linear):
    """Like ComfyUI's scaled-fp8 ops: every Linear owns scale_weight as a parameter (meta when built on meta)."""

    def __init__(self, *args, device=None, dtype=None, **kwargs):
        super().__init__(*args, device=device, dtype=dtype, **kwargs)
        self.scale_weight = torch.nn.Parameter(torch.ones((), device=device), requires_grad=False)
        self.scale_input = None

    def forward(self, x):
        weight = self.weight.to(x.dtype) * self.scale_weight.to(x.dtype)
        return torch.nn.functional.linear(x, weight, self.bias.to(x.dtype))


def test_host_style_ops_with_scale_parameters(i2v, tmp_path):
    from poseanimate.models.ops import CastOps

    class Ops(CastOps):
        Linear = _ParameterScaledLinear

    path = save_comfy_single_file(i2v, tmp_path / "wan.safetensors", scaled_fp8=torch.float8_e4m3fn, num_heads=HEADS)
    stored = quantize_scaled_fp8(i2v, torch.float8_e4m3fn)[0]
    model, info = load_wan_dit(path, operations=Ops)
    assert info.scaled_fp8 == torch.float8_e4m3fn
    q = model.blocks[0].self_attn.q
    assert isinstance(q.scale_weight, torch.nn.Parameter)
    assert torch.equal(q.scale_weight, stored["blocks.0.self_attn.q.scale_weight"])
    # layers the file did not quantize get a neutral scale instead of an empty meta tensor
    assert torch.equal(model.text_embedding[0].scale_weight, torch.ones(()))
    assert not any(t.is_meta for t in model.state_dict().values())


def test_a_full_comfy_checkpoint_loads_its_diffusion_model_part(i2v, tmp_path):
    state = {f"model.diffusion_model.{k}": v for k, v in i2v.items()}
    state["first_stage_model.encoder.conv1.weight"] = torch.zeros(2, 3, 1, 1, 1)
    state["text_encoders.umt5xxl.shared.weight"] = torch.zeros(4, 2)
    save_file(state, str(tmp_path / "wan_aio.safetensors"), metadata={"num_heads": str(HEADS)})
    model, info = load_wan_dit(tmp_path / "wan_aio.safetensors")
    _assert_weights(model, i2v)
