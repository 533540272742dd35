"""Write a Wan DiT state dict (official keys) in the layouts other tools publish.

Test helpers only: the official sharded folder with its index, and the
diffusers folder (``transformer/config.json`` + weights under diffusers names).
Single Comfy-style files come from ``poseanimate.tiny_models.wan_dit``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

import torch
from safetensors.torch import save_file

from poseanimate.models.checkpoint.wan_keys import official_key_to_diffusers

SHARD_STEM = "diffusion_pytorch_model"


def _split(keys: list[str], shards: int) -> list[list[str]]:
    per = -(-len(keys) // shards)
    return [keys[i:i + per] for i in range(0, len(keys), per)]


def save_sharded(state: Mapping[str, torch.Tensor], folder: Path, shards: int = 3, index: bool = True,
                 config: dict | None = None) -> list[Path]:
    """``diffusion_pytorch_model-0000k-of-0000n.safetensors`` (+ index, + config.json)."""
    folder.mkdir(parents=True, exist_ok=True)
    groups = _split(list(state), shards)
    paths, weight_map = [], {}
    for i, keys in enumerate(groups, start=1):
        name = f"{SHARD_STEM}-{i:05d}-of-{len(groups):05d}.safetensors"
        save_file({k: state[k].contiguous() for k in keys}, str(folder / name))
        weight_map.update({k: name for k in keys})
        paths.append(folder / name)
    if index:
        (folder / f"{SHARD_STEM}.safetensors.index.json").write_text(
            json.dumps({"metadata": {"total_size": 0}, "weight_map": weight_map}))
    if config is not None:
        (folder / "config.json").write_text(json.dumps(config))
    return paths


def to_diffusers(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        name = official_key_to_diffusers(key)
        assert name is not None, key
        out[name] = value
    return out


def save_diffusers(state: Mapping[str, torch.Tensor], root: Path, num_heads: int, shards: int = 1) -> Path:
    """A diffusers model folder: ``root/transformer/{config.json, weights}``."""
    folder = root / "transformer"
    folder.mkdir(parents=True, exist_ok=True)
    dim = state["patch_embedding.weight"].shape[0]
    config = {"_class_name": "WanTransformer3DModel", "num_attention_heads": num_heads,
              "attention_head_dim": dim // num_heads, "in_channels": state["patch_embedding.weight"].shape[1]}
    converted = to_diffusers(state)
    if shards == 1:
        save_file({k: v.contiguous() for k, v in converted.items()}, str(folder / f"{SHARD_STEM}.safetensors"))
        (folder / "config.json").write_text(json.dumps(config))
    else:
        save_sharded(converted, folder, shards, config=config)
    return root
