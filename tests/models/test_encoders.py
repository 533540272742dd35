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
