"""Reading the text and image encoder files (umT5, CLIP ViT-H) into the pack's modules.

Both encoders come as Comfy-Org single safetensors (fp16, bf16 or fp8
"scaled") or as the official Wan ``.pth`` pickles. Safetensors are read lazily,
a tensor at a time; pickles only through ``torch.load(weights_only=True)``.
fp8 scales of either generation are grouped here and applied by the shared
conversion path (:mod:`.convert`), as for the DiT.
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, Mapping

import torch
from torch import nn

from ...errors import InputError, first_line
from .convert import attach_scales, check_tensors, convert_weights
from .fp8 import (SCALED_FP8_MARKER, canonical_scale_key, check_layer_format, decode_layer_format, expected_shapes,
                  header_layer_formats, layer_format_module, split_scale_key)
from .identify import is_torch_checkpoint

PICKLE_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin")


@dataclass
class EncoderFile:
    """A file's tensors by key (a getter each), their shapes, and the fp8 scales grouped per module."""

    getters: dict[str, Callable[[], torch.Tensor]] = field(default_factory=dict)
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    scales: dict[str, dict[str, Callable[[], torch.Tensor]]] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)

    def num_heads(self) -> int | None:
        """The head count the file's metadata gives (``num_heads``), which the shapes cannot tell."""
        try:
            return int(self.metadata["num_heads"])
        except (KeyError, ValueError):
            return None


def open_encoder_file(path: str | Path, source: str, expected: str) -> EncoderFile:
    """The tensors of a .safetensors (lazily) or a tensors-only .pth; scales and fp8 markers set apart."""
    path = Path(path)
    if not path.is_file():
        raise InputError(source, "was not found", expected)
    suffix = path.suffix.lower()
    if suffix in (".safetensors", ".sft"):
        from .safetensors_files import TensorReader, resolve_checkpoint
        reader = TensorReader(resolve_checkpoint(path))
        tensors = {k: partial(reader.get, k) for k in reader.keys()}
        shapes = {k: reader.shape(k) for k in reader.keys()}
        formats = header_layer_formats(reader.metadata)
        metadata = dict(reader.metadata)
    elif suffix in PICKLE_SUFFIXES:
        state = _load_pickle(path, source, expected)
        tensors = {k: partial(_identity, v) for k, v in state.items()}
        shapes = {k: tuple(v.shape) for k, v in state.items()}
        formats, metadata = {}, {}
    else:
        raise InputError(source, f"has the extension '{suffix or 'none'}'", f"{expected}: .safetensors or .pth")
    out = EncoderFile(metadata=metadata)
    for key, getter in tensors.items():
        if key == SCALED_FP8_MARKER:
            continue
        module = layer_format_module(key)
        if module is not None:
            formats[module] = decode_layer_format(getter())
            continue
        scale = split_scale_key(canonical_scale_key(key))
        if scale is not None:
            out.scales.setdefault(scale[0], {})[scale[1]] = getter
        else:
            out.getters[key] = getter
            out.shapes[key] = shapes[key]
    for layer, fmt in sorted(formats.items()):
        check_layer_format(fmt, layer, source)
    return out


def _identity(tensor: torch.Tensor) -> torch.Tensor:
    return tensor


def _load_pickle(path: Path, source: str, expected: str) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as err:
        if not is_torch_checkpoint(path):
            raise InputError(source, "is not a PyTorch checkpoint (it starts as neither a zip archive nor a "
                             "pickle)", "a complete file written by torch.save, or a .safetensors") from err
        raise InputError(source, "holds Python objects besides tensors, which are not loaded for safety",
                         "a file of tensors only, or the .safetensors") from err
    except Exception as err:
        raise InputError(source, f"could not be read ({first_line(err)})", f"a complete file: {expected}") from err
    for wrapper in ("state_dict", "model", "module"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
    if not isinstance(obj, dict):
        raise InputError(source, f"holds a {type(obj).__name__}, not a dict of tensors", expected)
    return {k: v for k, v in obj.items() if isinstance(k, str) and torch.is_tensor(v)}


def load_into(model: nn.Module, weights: Mapping[str, Callable[[], torch.Tensor]],
              shapes: Mapping[str, tuple[int, ...]], scales: Mapping[str, Mapping[str, Callable[[], torch.Tensor]]],
              operations, source: str, kind: str, expected: str, device: torch.device | str,
              storage_dtype: torch.dtype | None) -> nn.Module:
    """Check, convert and load official-name ``weights`` into ``model`` (built on ``meta``); eval, no grad."""
    check_tensors(shapes, expected_shapes(model), source, kind, expected)
    converted = convert_weights(model, weights, {m: s for m, s in scales.items() if f"{m}.weight" in weights},
                                operations, storage_dtype, device)
    model.load_state_dict(converted.state, strict=False, assign=True)
    attach_scales(model, converted.scales, device)
    return model.eval().requires_grad_(False)
