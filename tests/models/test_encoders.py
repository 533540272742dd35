"""umT5 and CLIP ViT-H encoders against Wan2.1's references (and ComfyUI's T5), in every file layout.

The fixture (tests/fixtures/make_encoder_parity.py) holds tiny random weights under the official
names and what Wan2.1's ``wan/modules/t5.py`` / ``clip.py`` computed from them in float32; the tests
write those weights as the files users have (Comfy-Org safetensors, fp16 / fp8 scaled, Hugging Face
and open_clip CLIP names, the official .pth) and check the loaded encoders reproduce the outputs.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from poseanimate.errors import InputError
from poseanimate.models.checkpoint.clip_vision import load_clip_vision
from poseanimate.models.checkpoint.umt5 import load_umt5
from poseanimate.models.clip_vision import encode_image
from poseanimate.models.text.tokenizer import UMT5Tokenizer, clean_prompt
from poseanimate.models.text.umt5 import encode_ids
from poseanimate.tiny_models.encoders import (TINY_SPIECE, hf_clip_names, openclip_names, save_clip_file,
                                              save_umt5_file)

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "encoder_parity.safetensors"


@pytest.fixture(scope="module")
def parity():
    with safe_open(str(FIXTURE), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()


def group(tensors, prefix):
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


# ---------------------------------------------------------------------------------------------- umT5
@pytest.mark.parametrize("layout", ["comfy_fp32", "official_pth"])
def test_umt5_matches_wan_reference(parity, tmp_path, layout):
    tensors, _ = parity
    sd = group(tensors, "t5/sd/")
    if layout == "comfy_fp32":
        path = save_umt5_file(sd, tmp_path / "umt5_xxl_fp16.safetensors", dtype=torch.float32)
    else:
        path = tmp_path / "models_t5_umt5-xxl-enc-bf16.pth"
        torch.save(sd, path)
    model, tokenizer = load_umt5(path)
    assert (tokenizer is not None) == (layout == "comfy_fp32")
    assert model.config.num_layers == 2 and model.config.num_heads == 4 and model.config.vocab == 160
    for row, name in ((0, "t5/out0"), (1, "t5/out1")):
        ids = tensors["t5/ids"][row][tensors["t5/mask"][row].bool()].tolist()
        out = encode_ids(model, ids)
        assert out.shape == (1, len(ids), 32)
        torch.testing.assert_close(out[0], tensors[name], atol=2e-5, rtol=1e-5)
    # the padded batch with the mask, as Wan runs it
    full = model(tensors["t5/ids"], tensors["t5/mask"])
    torch.testing.assert_close(full[1, :7], tensors["t5/out1"], atol=2e-5, rtol=1e-5)


def test_umt5_matches_comfyui_t5(parity, tmp_path):
    tensors, _ = parity
    model, _ = load_umt5(save_umt5_file(group(tensors, "t5/sd/"), tmp_path / "u.safetensors", dtype=torch.float32))
    out = encode_ids(model, tensors["t5/ids"][0][:12].tolist())
    torch.testing.assert_close(out[0], tensors["t5/comfy0"], atol=2e-5, rtol=1e-5)


def test_umt5_fp16_and_fp8_scaled_files(parity, tmp_path):
    tensors, _ = parity
    sd = group(tensors, "t5/sd/")
    ids = tensors["t5/ids"][0][:12].tolist()
    fp16, _ = load_umt5(save_umt5_file(sd, tmp_path / "umt5_xxl_fp16.safetensors"))
    assert fp16.compute_dtype == torch.float16 and fp16.blocks[0].attn.q.weight.dtype == torch.float16
    fp8, _ = load_umt5(save_umt5_file(sd, tmp_path / "umt5_xxl_fp8_e4m3fn_scaled.safetensors", fp8_scaled=True),
                       storage_dtype=None)
    q = fp8.blocks[0].attn.q
    assert q.weight.dtype == torch.float8_e4m3fn and q.scale_weight is not None
    expected = tensors["t5/out0"]
    for model, tol in ((fp16, 0.05), (fp8, 0.25)):
        out = encode_ids(model, ids)[0]
        assert torch.isfinite(out).all()
        assert (out - expected).abs().max() < tol * expected.abs().max()


def test_umt5_refuses_other_files(tmp_path):
    path = tmp_path / "vae.safetensors"
    save_file({"encoder.conv1.weight": torch.zeros(4, 3, 3, 3, 3), "decoder.conv1.weight": torch.zeros(1)},
              str(path))
    with pytest.raises(InputError, match="is not a umT5 text encoder"):
        load_umt5(path)
    with pytest.raises(InputError, match="was not found"):
        load_umt5(tmp_path / "missing.safetensors")


# ---------------------------------------------------------------------------------------------- CLIP
@pytest.mark.parametrize("layout", ["hf", "openclip", "official_pth"])
def test_clip_vision_matches_wan_reference(parity, tmp_path, layout):
    tensors, _ = parity
    sd = group(tensors, "clip/sd/")
    if layout == "hf":
        path = save_clip_file(sd, tmp_path / "clip_vision_h.safetensors", num_heads=4, dtype=torch.float32)
    elif layout == "openclip":
        path = tmp_path / "open_clip.safetensors"
        save_file({k: v.contiguous() for k, v in openclip_names(sd).items()}, str(path))
    else:
        path = tmp_path / "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth"
        torch.save({**{f"visual.{k}": v for k, v in sd.items()}, "log_scale": torch.tensor(1.0),
                    "textual.head.0.weight": torch.zeros(2, 2)}, path)
    model = load_clip_vision(path, num_heads=None if layout == "hf" else 4)
    assert len(model.transformer) == 2 and model.config.image_size == 28  # 3 blocks in the file, last unused
    image = tensors["clip/image"].permute(0, 2, 3, 1) * 0.5 + 0.5  # -1..1 CHW -> ComfyUI IMAGE
    out = encode_image(model, image)
    assert out.shape == (1, 5, 32)
    torch.testing.assert_close(out, tensors["clip/out"], atol=3e-5, rtol=1e-5)


def test_clip_hf_names_cover_comfyui_layout(parity):
    names = hf_clip_names(group(parity[0], "clip/sd/"))
    # the keys ComfyUI's clip_vision.py keys its config choice and loading on
    assert "vision_model.encoder.layers.0.layer_norm1.weight" in names
    assert "vision_model.embeddings.position_embedding.weight" in names
    assert names["vision_model.encoder.layers.0.self_attn.q_proj.weight"].shape == (32, 32)


def test_clip_refuses_text_encoder(parity, tmp_path):
    path = save_umt5_file(group(parity[0], "t5/sd/"), tmp_path / "umt5.safetensors")
    with pytest.raises(InputError, match="is not a CLIP ViT image encoder.*umT5"):
        load_clip_vision(path)


# ---------------------------------------------------------------------------------------------- tokenizer
def test_tokenizer_ids_match_comfyui_and_sentencepiece(parity):
    pytest.importorskip("sentencepiece")
    import sentencepiece

    tensors, meta = parity
    prompts = json.loads(meta["prompts"])
    tokenizer = UMT5Tokenizer(TINY_SPIECE.read_bytes())
    sp = sentencepiece.SentencePieceProcessor(model_proto=TINY_SPIECE.read_bytes())
    for i, prompt in enumerate(prompts):
        ids = tokenizer(prompt)
        assert ids == tensors[f"tok/ids{i}"].tolist()  # ComfyUI's UMT5XXlTokenizer, padding removed
        assert ids == sp.encode(clean_prompt(prompt)) + [1]
    assert tokenizer("a" * 3000)[-1] == 1 and len(tokenizer("a " * 3000)) == 512


def test_prompt_cleaning_as_wan():
    assert clean_prompt("  walk &amp;amp; talk\n\t now ") == "walk & talk now"


def test_tokenizer_travels_in_the_umt5_file(parity, tmp_path):
    pytest.importorskip("sentencepiece")
    path = save_umt5_file(group(parity[0], "t5/sd/"), tmp_path / "u.safetensors")
    _, tokenizer = load_umt5(path)
    assert tokenizer.model_proto == TINY_SPIECE.read_bytes()
    assert tokenizer("a woman dancing") == UMT5Tokenizer(TINY_SPIECE.read_bytes())("a woman dancing")


# ---------------------------------------------------------------------------------------------- full-size layouts
def test_full_size_umt5_layout_from_comfy_names():
    """umt5_xxl's real sizes (umt5_config_xxl.json) under Comfy-Org's names: the config read back, every
    tensor where the encoder expects it (built on meta: no memory)."""
    from poseanimate.models.checkpoint.convert import check_tensors
    from poseanimate.models.checkpoint.fp8 import expected_shapes
    from poseanimate.models.checkpoint.umt5 import infer_umt5_config, official_umt5_key
    from poseanimate.models.text.umt5 import UMT5Config, UMT5Encoder
    from poseanimate.tiny_models.encoders import comfy_umt5_names

    real = UMT5Config()
    official = expected_shapes(UMT5Encoder(real, device="meta"))
    comfy = comfy_umt5_names({k: torch.empty(s, device="meta") for k, s in official.items()})
    assert comfy["shared.weight"].shape == (256384, 4096)
    assert comfy["encoder.block.23.layer.1.DenseReluDense.wi_0.weight"].shape == (10240, 4096)
    assert comfy["encoder.block.5.layer.0.SelfAttention.relative_attention_bias.weight"].shape == (32, 64)
    back = {official_umt5_key(k): tuple(v.shape) for k, v in comfy.items()}
    assert infer_umt5_config(back, "x") == real
    check_tensors(back, official, "x", "umT5", "")


def test_full_size_clip_vision_h_layout_from_hf_names():
    """ViT-H/14's real sizes (comfy/clip_vision_config_h.json) under Hugging Face names: 257 tokens x 1280,
    16 heads, 32 layers; the penultimate output needs 31 of them."""
    from poseanimate.models.checkpoint.clip_vision import infer_clip_config, official_clip_tensors
    from poseanimate.models.clip_vision import ClipVisionConfig

    dim, layers = 1280, 32
    official = {"patch_embedding.weight": (dim, 3, 14, 14), "cls_embedding": (1, 1, dim),
                "pos_embedding": (1, 257, dim), "pre_norm.weight": (dim,), "pre_norm.bias": (dim,),
                "post_norm.weight": (dim,), "post_norm.bias": (dim,), "head": (dim, 1024)}
    for i in range(layers):
        for name, shape in {"norm1.weight": (dim,), "norm1.bias": (dim,), "norm2.weight": (dim,),
                            "norm2.bias": (dim,), "attn.to_qkv.weight": (3 * dim, dim), "attn.to_qkv.bias": (3 * dim,),
                            "attn.proj.weight": (dim, dim), "attn.proj.bias": (dim,), "mlp.0.weight": (5120, dim),
                            "mlp.0.bias": (5120,), "mlp.2.weight": (dim, 5120), "mlp.2.bias": (dim,)}.items():
            official[f"transformer.{i}.{name}"] = shape
    hf = hf_clip_names({k: torch.empty(s, device="meta") for k, s in official.items()})
    assert "vision_model.encoder.layers.30.layer_norm1.weight" in hf  # what ComfyUI picks the H config by
    _, shapes = official_clip_tensors({k: (lambda: None) for k in hf}, {k: tuple(v.shape) for k, v in hf.items()},
                                      {})
    assert infer_clip_config(shapes, "x") == ClipVisionConfig()
    assert ClipVisionConfig().tokens == 257


def test_umt5_second_generation_fp8_file(parity, tmp_path):
    """ComfyUI 0.8+'s scaled fp8 names (``weight_scale`` and a ``comfy_quant`` entry per layer)."""
    from poseanimate.models.checkpoint.fp8 import layer_format_entry

    tensors, _ = parity
    sd = group(tensors, "t5/sd/")
    first = tmp_path / "first.safetensors"
    save_umt5_file(sd, first, fp8_scaled=True)
    with safe_open(str(first), "pt") as f:
        old = {k: f.get_tensor(k) for k in f.keys()}
    new = {}
    for key, value in old.items():
        if key.endswith(".scale_weight"):
            module = key[:-len(".scale_weight")]
            new[f"{module}.weight_scale"] = value
            new[f"{module}.comfy_quant"] = layer_format_entry(torch.float8_e4m3fn)
        elif key != "scaled_fp8":
            new[key] = value
    second = tmp_path / "second.safetensors"
    save_file(new, str(second))
    ids = tensors["t5/ids"][0][:12].tolist()
    a, b = (encode_ids(load_umt5(p)[0], ids) for p in (first, second))
    torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_missing_sentencepiece_is_one_clear_error(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_sentencepiece(name, *args, **kwargs):
        if name == "sentencepiece":
            raise ImportError("No module named 'sentencepiece'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_sentencepiece)
    tokenizer = UMT5Tokenizer(TINY_SPIECE.read_bytes())  # loading needs no sentencepiece
    with pytest.raises(InputError, match="sentencepiece.*is not installed.*pip install sentencepiece"):
        tokenizer("hello")
