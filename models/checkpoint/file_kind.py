"""What model a file holds, from its key names alone, so each loader can offer its own files first.

A ComfyUI ``diffusion_models`` or ``loras`` folder holds every method's files side by side, and a dropdown
preselects its first entry: without this, Load Wan2.2-Animate offered the RealisDance file and the relighting
LoRA node the UniAnimate checkpoint. Only the index of a file is read, never its tensors: the safetensors JSON
header, a sharded checkpoint's ``.index.json``, or the ``data.pkl`` record of a ``torch.save`` zip archive,
whose key strings are searched as bytes (nothing is unpickled). Results are cached by path, size and
modification time, so a dropdown refresh reads only files that changed.
"""
from __future__ import annotations

import functools
import json
import os
import re
import struct
import zipfile
from pathlib import Path

WAN_DIT, WAN_ANIMATE, REALISDANCE, UNIANIMATE, LORA, WAN_VAE, STEADYDANCER, ANIMATE2 = (
    "wan_dit", "wan_animate", "realisdance", "unianimate", "lora", "wan_vae", "steadydancer", "animate2")
MAX_HEADER = 64 * 1024 * 1024  # a 14B file's header is a few MB; more is not a safetensors header

_BLOCKS = re.compile(r"(^|\.)blocks\.\d+\.(self_attn|cross_attn|ffn|attn1|attn2)\.")
_LORA = re.compile(r"(lora_(A|B|up|down)|\.alpha$|\.diff(_b)?$|^lora_unet_)")
_UNIANIMATE = re.compile(r"(^|\.)(dwpose_embedding|randomref_embedding_pose)\.")
_ANIMATE = re.compile(r"(^|\.)(face_encoder|motion_encoder|face_adapter|pose_patch_embedding)\.")
_STEADYDANCER = re.compile(r"(^|\.)(patch_embedding_fuse|patch_embedding_ref_c|condition_embedding_"
                           r"(spatial|temporal|align))\.")
_REALISDANCE = re.compile(r"(^|\.)(add_conv_in|attn_conv_in|add_proj)\.")
_WAN_VAE = re.compile(r"^(encoder|decoder)\.(conv1|downsamples|upsamples|middle|head)\.")
_PICKLED_NAME = re.compile(rb"[A-Za-z_][A-Za-z0-9_.]{2,300}")


def kind_of_keys(keys: list[str]) -> str | None:
    """The kind of model whose state dict has these key names; None when it is none of the pack's."""
    if any(_UNIANIMATE.search(k) for k in keys):
        return UNIANIMATE
    if any(_LORA.search(k) for k in keys):
        return LORA
    if any(_BLOCKS.search(k) for k in keys):
        if any(_ANIMATE.search(k) for k in keys):
            return WAN_ANIMATE
        if any(_REALISDANCE.search(k) for k in keys):
            return REALISDANCE
        if any(_STEADYDANCER.search(k) for k in keys):
            return STEADYDANCER
        return WAN_DIT
    if any(_WAN_VAE.search(k) for k in keys):
        return WAN_VAE
    return None


def index_keys(path: str | Path) -> list[str] | None:
    """The key names a file declares without reading its tensors; None when its format has no index."""
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix in (".safetensors", ".sft"):
            with open(path, "rb") as f:
                size = struct.unpack("<Q", f.read(8))[0]
                if size > MAX_HEADER:
                    return None
                return [k for k in json.loads(f.read(size)) if k != "__metadata__"]
        if suffix == ".json":
            return list(json.loads(path.read_text(encoding="utf-8")).get("weight_map", {}))
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                record = next((n for n in archive.namelist() if n.endswith("data.pkl")), None)
                if record is None or archive.getinfo(record).file_size > MAX_HEADER:
                    return None
                return [m.decode() for m in _PICKLED_NAME.findall(archive.read(record))]
    except (OSError, ValueError, struct.error, zipfile.BadZipFile, UnicodeDecodeError, AttributeError):
        return None
    return None


@functools.lru_cache(maxsize=4096)
def _cached_kind(path: str, size: int, mtime_ns: int) -> str | None:
    keys = index_keys(path)
    kind = kind_of_keys(keys) if keys else None
    if kind == WAN_DIT and _animate2(path):  # Animate-2 has the plain I2V layout: its metadata or name tells
        return ANIMATE2
    return kind


def _animate2(path: str) -> bool:
    from .identify import animate2_evidence
    metadata = {}
    if path.lower().endswith((".safetensors", ".sft")):
        try:
            with open(path, "rb") as f:
                size = struct.unpack("<Q", f.read(8))[0]
                if size <= MAX_HEADER:
                    metadata = json.loads(f.read(size)).get("__metadata__", {}) or {}
        except (OSError, ValueError, struct.error):
            metadata = {}
    return animate2_evidence(metadata, path) is not None


def file_kind(path: str | Path) -> str | None:
    """:func:`kind_of_keys` of the file's index (cached by path, size and modification time); None for a
    file that cannot be read or is none of the pack's kinds."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return _cached_kind(str(path), stat.st_size, stat.st_mtime_ns)
