"""Load a Wan DiT from any supported checkpoint, one tensor at a time.

The model is built on the ``meta`` device (no memory), its expected keys and
shapes are compared with the file's headers before any tensor is read, and
then each tensor is read, converted to its storage dtype and assigned in
place: a 28 GB checkpoint never exists twice in memory.

Storage dtype (what the weights are kept in) and compute dtype (what the
layers run in) are separate choices: ``storage_dtype=None`` keeps each tensor
as the file has it (fp8 stays fp8, with its scale on the layer), a float dtype
converts (dequantizing scaled fp8), an fp8 dtype quantizes Linear weights by a
plain cast (as ComfyUI's fp8 weight dtypes do) and leaves the rest as stored.
"""
from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from typing import Mapping, Sequence

import torch
from torch import nn

from ...errors import InputError
from ..wan.config import WanDiTConfig, infer_config
from .convert import FLOAT_STORAGE, FP8_COMPUTE, attach_scales, check_tensors, convert_weights
from .fp8 import (SCALED_FP8_MARKER, canonical_scale_key, check_layer_format, decode_layer_format, expected_shapes,
                  header_layer_formats, is_fp8, layer_format_module, marker_dtype, split_scale_key)
from .identify import ANIMATE2, animate2_evidence, describe_checkpoint, method_of_keys, sample_keys
from .safetensors_files import CheckpointFiles, PathLike, TensorReader, resolve_checkpoint
from .wan_keys import to_official_keys

log = logging.getLogger(__name__)

COMFY_CHECKPOINT_PREFIX = "model.diffusion_model."
WAN_CORE_KEYS = ("patch_embedding.weight", "blocks.0.self_attn.q.weight")
EXPECTED_FILE = "a Wan 2.1/2.2 diffusion model (official, Comfy-Org repackaged or diffusers layout)"
# widget names -> storage dtypes ('default' keeps the file's)
STORAGE_DTYPES = {"default": None, "fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16,
                  "fp8_e4m3fn": torch.float8_e4m3fn, "fp8_e5m2": torch.float8_e5m2}


def storage_dtype_from_name(name: str | torch.dtype | None, input_name: str = "weight dtype") -> torch.dtype | None:
    """A storage dtype from a widget value ('default', 'bf16', 'fp8_e4m3fn', ...) or a dtype."""
    if name is None or isinstance(name, torch.dtype):
        dtype = name
    elif name in STORAGE_DTYPES:
        dtype = STORAGE_DTYPES[name]
    else:
        raise InputError(input_name, f"'{name}' is not a storage dtype", f"one of {', '.join(STORAGE_DTYPES)}")
    if dtype is not None and dtype not in FLOAT_STORAGE and not is_fp8(dtype):
        raise InputError(input_name, f"{dtype} is not a storage dtype", f"one of {', '.join(STORAGE_DTYPES)}")
    return dtype


@dataclass
class WanCheckpointInfo:
    """What was found in a checkpoint and how it was loaded."""

    source: str
    files: list[str]
    layout: str                      # 'official' | 'diffusers' (key names)
    prefix: str                      # wrapper prefix that was stripped ('' | 'model.diffusion_model.' ...)
    config: WanDiTConfig
    num_heads_from: str              # 'argument' | 'config.json' | 'metadata' | '128-wide heads'
    file_dtypes: dict[str, int]      # dtype name -> number of weight elements stored in it in the file
    storage_dtype: torch.dtype | None
    compute_dtype: torch.dtype
    scaled_fp8: torch.dtype | None   # fp8 format kept with per-layer scale_weight (hand to the host's ops)
    extra_tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass
class CheckpointScan:
    """A checkpoint's keys in official names, read from the headers only."""

    files: CheckpointFiles
    reader: TensorReader
    weights: dict[str, str]               # official key -> file key
    scales: dict[str, dict[str, str]]     # official module -> {'scale_weight': file key, ...}
    extra: dict[str, str]                 # official key -> file key, for the caller's extra prefixes
    marker: torch.dtype | None            # fp8 format announced by a 'scaled_fp8' marker
    layout: str
    prefix: str
    layer_formats: dict[str, str] = field(default_factory=dict)  # official module -> 'float8_e4m3fn' (2nd gen.)

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {k: self.reader.shape(v) for k, v in self.weights.items()}

    def meta_state_dict(self) -> dict[str, torch.Tensor]:
        """Shape-only tensors (no memory) for :func:`infer_config`."""
        return {k: torch.empty(s, device="meta") for k, s in self.shapes().items()}


def scan_checkpoint(path_or_paths: PathLike | Sequence[PathLike],
                    extra_prefixes: Sequence[str] = ()) -> CheckpointScan:
    """Open a checkpoint and map its keys to official names; refuse what is not a Wan DiT."""
    files = resolve_checkpoint(path_or_paths)
    reader = TensorReader(files)
    keys = reader.keys()
    if not keys:
        raise InputError(f"model file '{files.name}'", "holds no tensors", EXPECTED_FILE)
    mapping, facts = to_official_keys(keys)
    if facts["prefix"] == COMFY_CHECKPOINT_PREFIX:
        # a full ComfyUI checkpoint also holds the VAE / text encoders under their own prefixes
        others = {k for k in mapping if not k.startswith(COMFY_CHECKPOINT_PREFIX) and mapping[k] != SCALED_FP8_MARKER}
        if others:
            log.info("%s: ignoring %d tensors outside %s (%s)", files.name, len(others), COMFY_CHECKPOINT_PREFIX,
                     sample_keys(others))
        mapping = {k: v for k, v in mapping.items() if k not in others}
    weights: dict[str, str] = {}
    scales: dict[str, dict[str, str]] = {}
    extra: dict[str, str] = {}
    marker = None
    source = f"model file '{files.name}'"
    formats = {mapping.get(f"{m}.weight", f"{m}.weight").rpartition(".")[0]: f
               for m, f in header_layer_formats(reader.metadata).items()}
    for file_key, key in mapping.items():
        if key == SCALED_FP8_MARKER:
            marker = marker_dtype(reader.dtype(file_key))
            continue
        quantized = layer_format_module(key)
        if quantized is not None:  # second generation: the format rides in the file, one entry per layer
            formats[quantized] = decode_layer_format(reader.get(file_key))
            continue
        key = canonical_scale_key(key)
        scale = split_scale_key(key)
        if any(key.startswith(p) for p in extra_prefixes):
            extra[key] = file_key  # fp8 scales of extra modules too: their loader applies them
        elif scale is not None:
            scales.setdefault(scale[0], {})[scale[1]] = file_key
        elif key in weights:
            raise InputError(f"model file '{files.name}'",
                             f"holds '{key}' twice (as '{weights[key]}' and '{file_key}')",
                             "one tensor per weight")
        else:
            weights[key] = file_key
    if not all(k in weights for k in WAN_CORE_KEYS):
        raise InputError(source, f"is not a Wan DiT: it {describe_checkpoint(keys)}", EXPECTED_FILE)
    for layer, fmt in sorted(formats.items()):
        check_layer_format(fmt, layer, source)
    return CheckpointScan(files, reader, weights, scales, extra, marker, facts["layout"], facts["prefix"], formats)


def checkpoint_num_heads(scan: CheckpointScan) -> tuple[int | None, str]:
    """Head count from diffusers/official config.json or the file's metadata, if either says."""
    config = scan.files.config
    for key in ("num_attention_heads", "num_heads"):
        if isinstance(config.get(key), int):
            return config[key], "config.json"
    meta = scan.reader.metadata
    if "num_heads" in meta:
        try:
            return int(meta["num_heads"]), "metadata"
        except ValueError:
            pass
    if "config" in meta:
        try:
            nested = json.loads(meta["config"])
            heads = nested.get("num_heads") or nested.get("num_attention_heads")
            if isinstance(heads, int):
                return heads, "metadata"
        except (ValueError, AttributeError):
            pass
    return None, "128-wide heads"


def check_keys(scan: CheckpointScan, expected: Mapping[str, tuple[int, ...]], kind: str) -> None:
    """Raise an InputError naming missing, unexpected and mis-shaped tensors (:func:`~.convert.check_tensors`);
    a file of another method (tensors of its own beside the DiT's) is named as such."""
    unexpected = [k for k in scan.weights if k not in expected]
    method = method_of_keys(unexpected)
    if method is not None:
        raise InputError(f"model file '{scan.files.name}'", f"is {method}, not a plain {kind} Wan DiT (it holds "
                         f"{sample_keys(unexpected)})", "a plain Wan DiT for this loader")
    check_tensors(scan.shapes(), expected, f"model file '{scan.files.name}'", f"{kind} Wan DiT",
                  "a complete, unmodified Wan DiT checkpoint (all shards, none from another model size; VACE, "
                  "Animate and other variants load through their own loaders)",
                  scales=[f"{m}.{s}" for m, names in scan.scales.items() for s in names])


def load_wan_dit(path_or_paths: PathLike | Sequence[PathLike], storage_dtype: torch.dtype | str | None = None,
                 device: torch.device | str = "cpu", operations=None, compute_dtype: torch.dtype | None = None,
                 num_heads: int | None = None, extra_prefixes: Sequence[str] = (),
                 allow_animate2: bool = False) -> tuple[nn.Module, WanCheckpointInfo]:
    """Build a :class:`WanDiT` from a checkpoint in any supported layout and dtype.

    ``storage_dtype`` (a dtype or a STORAGE_DTYPES name): None / 'default' keeps
    the file's dtypes; fp32/fp16/bf16 convert; fp8 quantizes Linear weights.
    ``compute_dtype``: what the layers run in (default: the storage dtype, bf16
    for fp8, else the dtype most weights have in the file). ``operations``: the layer
    classes (default: the pack's CastOps; the host passes ComfyUI's).
    ``extra_prefixes``: official-name prefixes of tensors that are not part of
    the DiT (e.g. a method's own modules in the same file); they come back in
    ``info.extra_tensors`` instead of being refused as unexpected. A Wan2.2-Animate-2 file (plain I2V
    layout, recognised by its metadata or name) is refused unless ``allow_animate2``: without its pose
    branch it would run as a plain I2V model and ignore the driving video.
    """
    from ..ops import CastOps
    from ..wan.dit import WanDiT

    storage_dtype = storage_dtype_from_name(storage_dtype)
    operations = operations or CastOps
    scan = scan_checkpoint(path_or_paths, extra_prefixes)
    evidence = animate2_evidence(scan.reader.metadata, scan.files.name, scan.files.config)
    if evidence and not allow_animate2:
        scan.reader.close()
        raise InputError(f"model file '{scan.files.name}'", f"is {ANIMATE2} ({evidence})",
                         f"the model of this loader; load {ANIMATE2} with Load Wan2.2-Animate-2 (PoseAnimate)")
    with scan.reader:
        heads, heads_from = (num_heads, "argument") if num_heads else checkpoint_num_heads(scan)
        config = infer_config(scan.meta_state_dict(), f"model file '{scan.files.name}'", heads)
        model = WanDiT(config, operations=operations, device="meta")
        model.requires_grad_(False)
        expected = {k: v for k, v in expected_shapes(model).items() if split_scale_key(k) is None}
        check_keys(scan, expected, config.kind.upper())
        reader = scan.reader
        converted = convert_weights(model, {k: partial(reader.get, v) for k, v in scan.weights.items()},
                                    {m: {n: partial(reader.get, v) for n, v in names.items()}
                                     for m, names in scan.scales.items()}, operations, storage_dtype, device)
        result = model.load_state_dict(converted.state, strict=False, assign=True)
        leftover = [k for k in result.missing_keys + result.unexpected_keys if split_scale_key(k) is None]
        if leftover:  # check_keys ran first, so this is a bug, not a user mistake
            raise RuntimeError(f"state dict did not match the model after checking: {leftover[:5]}")
        converted.state.clear()
        attach_scales(model, converted.scales, device)
        file_dtypes, kept_fp8 = converted.file_dtypes, converted.kept_fp8
        scaled_fp8 = (scan.marker or kept_fp8) if kept_fp8 is not None else None
        extra = {k: scan.reader.get(v).to(device) for k, v in scan.extra.items()}
        compute = compute_dtype or _default_compute(storage_dtype, file_dtypes, scan)
        model.compute_dtype = compute
        info = WanCheckpointInfo(
            source=scan.files.name, files=[str(p) for p in scan.files.files], layout=scan.layout,
            prefix=scan.prefix, config=config, num_heads_from=heads_from,
            file_dtypes={str(k).replace("torch.", ""): n for k, n in file_dtypes.items()},
            storage_dtype=storage_dtype, compute_dtype=compute, scaled_fp8=scaled_fp8,
            extra_tensors=extra, metadata=dict(scan.reader.metadata))
    log.info("loaded Wan DiT %s (%s, %d layers, dim %d) from %s", config.kind, info.layout, config.num_layers,
             config.dim, scan.files.name)
    return model.eval(), info


def _default_compute(storage_dtype, file_dtypes: Counter, scan: CheckpointScan) -> torch.dtype:
    if storage_dtype in FLOAT_STORAGE:
        return storage_dtype
    if storage_dtype is not None:
        return FP8_COMPUTE
    dominant = max(file_dtypes, key=file_dtypes.get)  # by elements: the Linear weights
    return FP8_COMPUTE if is_fp8(dominant) else dominant


def scaled_fp8_format(path_or_paths: PathLike | Sequence[PathLike]) -> torch.dtype | None:
    """The fp8 format of a ComfyUI "scaled fp8" checkpoint (fp8 weights with per-layer ``scale_weight``),
    read from the headers alone; None for any other file. The host's scaled-fp8 layers need it before the
    model is built."""
    scan = scan_checkpoint(path_or_paths, ())
    with scan.reader:
        if not scan.scales:
            return None
        if scan.marker is not None:
            return scan.marker
        for module_name in scan.scales:
            weight = scan.weights.get(f"{module_name}.weight")
            if weight is not None and is_fp8(scan.reader.dtype(weight)):
                return scan.reader.dtype(weight)
    return None
