"""Load the umT5-XXL text encoder from the files users have.

- Comfy-Org's ``umt5_xxl_fp16.safetensors`` / ``umt5_xxl_fp8_e4m3fn_scaled.safetensors``
  (Hugging Face T5 names: ``shared.weight``,
  ``encoder.block.0.layer.0.SelfAttention.q.weight``, ...; fp8 with scales of
  either generation), carrying the tokenizer as the ``spiece_model`` tensor;
- the official Wan ``models_t5_umt5-xxl-enc-bf16.pth`` (the module names of
  :mod:`..text.umt5`; it carries no tokenizer).

The config is read from the shapes, so tiny test files load the same way.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

import torch

from ...errors import InputError
from ..ops import CastOps
from ..text.tokenizer import SPIECE_KEY, UMT5Tokenizer
from ..text.umt5 import UMT5Config, UMT5Encoder
from .encoder_files import load_into, open_encoder_file
from .identify import describe_checkpoint

log = logging.getLogger(__name__)

EXPECTED = ("the umT5-XXL text encoder: umt5_xxl_fp8_e4m3fn_scaled.safetensors or umt5_xxl_fp16.safetensors "
            "(Comfy-Org/Wan_2.1_ComfyUI_repackaged, split_files/text_encoders), or Wan's "
            "models_t5_umt5-xxl-enc-bf16.pth")
_COMFY_BLOCK = re.compile(r"^encoder\.block\.(\d+)\.layer\.([01])\.(.+)$")
_COMFY_NAMES = {
    ("0", "SelfAttention.q.weight"): "attn.q.weight", ("0", "SelfAttention.k.weight"): "attn.k.weight",
    ("0", "SelfAttention.v.weight"): "attn.v.weight", ("0", "SelfAttention.o.weight"): "attn.o.weight",
    ("0", "SelfAttention.relative_attention_bias.weight"): "pos_embedding.embedding.weight",
    ("0", "layer_norm.weight"): "norm1.weight",
    ("1", "DenseReluDense.wi_0.weight"): "ffn.gate.0.weight", ("1", "DenseReluDense.wi_1.weight"): "ffn.fc1.weight",
    ("1", "DenseReluDense.wo.weight"): "ffn.fc2.weight", ("1", "layer_norm.weight"): "norm2.weight",
}
_TOP = {"shared.weight": "token_embedding.weight", "encoder.embed_tokens.weight": "token_embedding.weight",
        "encoder.final_layer_norm.weight": "norm.weight"}


def official_umt5_key(key: str) -> str | None:
    """The official (Wan) name of a Comfy-Org / Hugging Face umT5 key; official keys map to themselves;
    None for keys that are not part of the encoder."""
    if key in _TOP:
        return _TOP[key]
    m = _COMFY_BLOCK.match(key)
    if m:
        name = _COMFY_NAMES.get((m.group(2), m.group(3)))
        return f"blocks.{m.group(1)}.{name}" if name else None
    if key.startswith(("blocks.", "token_embedding.")) or key == "norm.weight":
        return key
    return None


def infer_umt5_config(shapes: dict[str, tuple[int, ...]], source: str) -> UMT5Config:
    """The encoder's sizes from official-name tensor shapes."""
    needed = ("token_embedding.weight", "blocks.0.attn.q.weight", "blocks.0.ffn.fc1.weight",
              "blocks.0.pos_embedding.embedding.weight", "norm.weight")
    if not all(k in shapes for k in needed):
        raise InputError(source, f"is not a umT5 text encoder: it {describe_checkpoint(shapes)}", EXPECTED)
    vocab, dim = shapes["token_embedding.weight"]
    buckets, heads = shapes["blocks.0.pos_embedding.embedding.weight"]
    layers = 1 + max(int(k.split(".")[1]) for k in shapes if k.startswith("blocks."))
    return UMT5Config(vocab=vocab, dim=dim, dim_attn=shapes["blocks.0.attn.q.weight"][0],
                      dim_ffn=shapes["blocks.0.ffn.fc1.weight"][0], num_heads=heads, num_layers=layers,
                      num_buckets=buckets)


def load_umt5(path: str | Path, device: torch.device | str = "cpu", storage_dtype: torch.dtype | None = None,
              operations=None) -> tuple[UMT5Encoder, UMT5Tokenizer | None]:
    """The encoder (weights in the file's dtype unless ``storage_dtype``; scaled fp8 kept in fp8) and the
    tokenizer the file carries (None when it carries none: the official .pth)."""
    source = f"text encoder file '{Path(path).name}'"
    opened = open_encoder_file(path, source, EXPECTED)
    spiece = opened.getters.pop(SPIECE_KEY, None)
    opened.shapes.pop(SPIECE_KEY, None)
    weights, shapes, scales, dropped = {}, {}, {}, []
    if "shared.weight" in opened.getters:  # the tied copy, when a file has both
        opened.getters.pop("encoder.embed_tokens.weight", None)
    for key, getter in opened.getters.items():
        name = official_umt5_key(key)
        if name is None:
            dropped.append(key)
            continue
        weights[name], shapes[name] = getter, opened.shapes[key]
    for module, module_scales in opened.scales.items():
        name = official_umt5_key(f"{module}.weight")
        if name is not None:
            scales[name.rpartition(".")[0]] = module_scales
    config = infer_umt5_config(shapes, source)
    if dropped:
        log.info("%s: ignoring %d tensors outside the encoder (%s)", source, len(dropped), dropped[:4])
    operations = operations or CastOps
    model = UMT5Encoder(config, operations, device="meta")
    load_into(model, weights, shapes, scales, operations, source, "umT5 text encoder", EXPECTED, device,
              storage_dtype)
    tokenizer = UMT5Tokenizer.from_tensor(spiece()) if spiece is not None else None
    log.info("loaded umT5 encoder from %s (%d layers, dim %d, tokenizer %s)", source, config.num_layers,
             config.dim, "embedded" if tokenizer else "none")
    return model, tokenizer
