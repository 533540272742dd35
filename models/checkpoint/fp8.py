"""fp8 weights, plain and "scaled" (ComfyUI's ``*_fp8_scaled`` files), in both generations.

A scaled fp8 file stores each quantized Linear weight as ``w8`` in fp8 plus a
float32 per-tensor scale so that the real weight is ``w8 * scale``, and
optionally an activation scale for fp8 matrix multiplication (it plays no part
in the weight's value). Comfy-Org's repacks come in two generations:

- the first (ComfyUI up to 0.3.x): ``<module>.scale_weight`` / ``scale_input``
  and an empty ``scaled_fp8`` marker whose dtype is the fp8 format (a float32
  marker means e4m3fn);
- the second (ComfyUI 0.8 and newer): ``<module>.weight_scale`` /
  ``input_scale`` and, per layer, ``<module>.comfy_quant`` (JSON bytes such as
  ``{"format": "float8_e4m3fn"}``) or the same per-layer table in the header's
  ``_quantization_metadata``.

Reading, both become one form: the first generation's names (``SCALE_NAMES``)
plus a format per layer. Kept in fp8, the weight goes where its layer reads it
(:func:`keep_scaled_weight`): the pack's layers and older hosts' scaled ops take
``scale_weight`` as an attribute and multiply it in when they run; newer hosts'
per-layer quantization ops load the second generation's entries themselves.
Converted to another storage dtype, the weight is dequantized here, once.
"""
from __future__ import annotations

import json

import torch
from torch import nn

from ...errors import InputError

FP8_DTYPES = (torch.float8_e4m3fn, torch.float8_e5m2)
SCALED_FP8_MARKER = "scaled_fp8"
SCALE_NAMES = ("scale_weight", "scale_input")
SECOND_GENERATION_NAMES = {"weight_scale": "scale_weight", "input_scale": "scale_input"}
LAYER_FORMAT_SUFFIX = ".comfy_quant"
QUANTIZATION_METADATA = "_quantization_metadata"
FP8_FORMATS = {"float8_e4m3fn": torch.float8_e4m3fn, "float8_e5m2": torch.float8_e5m2}
# per-layer formats other than fp8 and the ComfyUI version whose own loaders read them
OTHER_FORMATS_FROM = {"nvfp4": "0.8.0", "mxfp8": "0.33.0", "int8_tensorwise": "0.33.0", "convrot_w4a4": "0.33.0"}


def is_fp8(dtype: object) -> bool:
    return dtype in FP8_DTYPES


def marker_dtype(marker: torch.Tensor | torch.dtype) -> torch.dtype:
    """The fp8 format a ``scaled_fp8`` marker announces."""
    dtype = marker if isinstance(marker, torch.dtype) else marker.dtype
    return dtype if is_fp8(dtype) else torch.float8_e4m3fn


def split_scale_key(key: str) -> tuple[str, str] | None:
    """``('blocks.0.ffn.0', 'scale_weight')`` for a scale key of either generation, else None."""
    module, _, name = key.rpartition(".")
    name = SECOND_GENERATION_NAMES.get(name, name)
    return (module, name) if name in SCALE_NAMES and module else None


def canonical_scale_key(key: str) -> str:
    """A second-generation scale key under the first generation's name (other keys unchanged)."""
    module, _, name = key.rpartition(".")
    return f"{module}.{SECOND_GENERATION_NAMES[name]}" if module and name in SECOND_GENERATION_NAMES else key


def layer_format_module(key: str) -> str | None:
    """The module a ``<module>.comfy_quant`` key describes, else None."""
    return key[:-len(LAYER_FORMAT_SUFFIX)] if key.endswith(LAYER_FORMAT_SUFFIX) else None


def decode_layer_format(value: torch.Tensor | dict | str) -> str | None:
    """The ``format`` of a per-layer quantization entry (uint8 JSON bytes, a dict or a JSON string)."""
    if torch.is_tensor(value):
        value = bytes(value.to(torch.uint8).cpu().numpy().tobytes()).decode("utf-8")
    if isinstance(value, str):
        value = json.loads(value)
    return value.get("format") if isinstance(value, dict) else None


def header_layer_formats(metadata: dict[str, str]) -> dict[str, str]:
    """``{file module name: format}`` from a safetensors header's ``_quantization_metadata``."""
    raw = metadata.get(QUANTIZATION_METADATA)
    if not raw:
        return {}
    try:
        layers = json.loads(raw).get("layers", {})
    except (ValueError, AttributeError):
        return {}
    return {name: decode_layer_format(conf) for name, conf in layers.items() if isinstance(conf, dict)}


def check_layer_format(fmt: str | None, layer: str, source: str) -> None:
    """Refuse a per-layer quantization format the pack's layers cannot keep, naming what reads it."""
    if fmt in FP8_FORMATS:
        return
    where = (f"ComfyUI {OTHER_FORMATS_FROM[fmt]} and newer read it with their own Load Diffusion Model"
             if fmt in OTHER_FORMATS_FROM else "no ComfyUI version known to the pack reads it")
    raise InputError(source, f"stores layer '{layer}' in the quantization format '{fmt}' ({where}, whose model "
                     "the pack's nodes do not take)",
                     "a bf16, fp16, fp8 or fp8-scaled file (float8_e4m3fn / float8_e5m2 layers)")


def layer_format_entry(dtype: torch.dtype) -> torch.Tensor:
    """The ``comfy_quant`` entry (uint8 JSON bytes) for an fp8 layer of ``dtype``, as ComfyUI writes it."""
    name = next(k for k, v in FP8_FORMATS.items() if v == dtype)
    return torch.tensor(list(json.dumps({"format": name}).encode("utf-8")), dtype=torch.uint8)


def reads_layer_quantization(module: nn.Module) -> bool:
    """True for a host layer that loads its own quantized weight from ``weight``, ``weight_scale``,
    ``input_scale`` and ``comfy_quant`` entries (ComfyUI 0.8+ mixed-precision ops)."""
    return hasattr(module, "factory_kwargs") and hasattr(module, "_full_precision_mm")


def expected_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    """The shape of every tensor the model's state dict holds, read without ``state_dict()``: a host layer
    that loads its own quantized weight has no ``weight`` until it is loaded (its state dict would skip it)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for name, module in model.named_modules():
        prefix = f"{name}." if name else ""
        for key, param in module._parameters.items():
            if param is not None:
                shapes[prefix + key] = tuple(param.shape)
        for key, buffer in module._buffers.items():
            if buffer is not None and key not in module._non_persistent_buffers_set:
                shapes[prefix + key] = tuple(buffer.shape)
        if reads_layer_quantization(module) and module._parameters.get("weight") is None:
            shapes[prefix + "weight"] = (module.out_features, module.in_features)
    return shapes


def self_loading_dtype(module: nn.Module) -> torch.dtype | None:
    """The dtype a self-loading host layer keeps its unquantized tensors (bias, plain weights) in: its
    compute dtype, which it does not cast to at run time in every host generation. None for other layers."""
    return module.factory_kwargs.get("dtype") if reads_layer_quantization(module) else None


def keeps_scaled_fp8(module: nn.Module) -> bool:
    """True when the layer can keep a scaled fp8 weight in fp8 (either way of taking the scale)."""
    return takes_scale(module) or reads_layer_quantization(module)


def prepare_self_loading_layers(model: nn.Module, device: torch.device | str) -> None:
    """Layers that load their own weights (the host's mixed-precision ops) put them on the device they
    were built for; a model built on ``meta`` is told the real one before its weights are loaded."""
    for module in model.modules():
        if reads_layer_quantization(module):
            module.factory_kwargs = {**module.factory_kwargs, "device": torch.device(device)}


def keep_scaled_weight(state: dict[str, torch.Tensor], module: nn.Module, key: str, weight: torch.Tensor,
                       scales: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Put a scaled fp8 ``weight`` (state key ``key``, on its device already) where ``module`` reads it.

    A self-loading host layer gets the second generation's entries in ``state`` (its own loader takes
    them when the state dict is loaded); returns ``{}`` then. Otherwise the weight goes into ``state``
    and the scales come back, to be set on the layer as attributes once the weights are in.
    """
    state[key] = weight
    if not reads_layer_quantization(module):
        return scales
    module_name = key.rpartition(".")[0]
    state[f"{module_name}.weight_scale"] = scales["scale_weight"]
    if scales.get("scale_input") is not None:
        state[f"{module_name}.input_scale"] = scales["scale_input"]
    state[f"{module_name}{LAYER_FORMAT_SUFFIX}"] = layer_format_entry(weight.dtype)
    return {}


def dequantize(weight: torch.Tensor, scale: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor:
    """``weight * scale`` computed in float32, stored as ``dtype``."""
    out = weight.to(torch.float32)
    if scale is not None:
        out = out * scale.to(device=out.device, dtype=torch.float32)
    return out.to(dtype)


def set_module_tensor(module: nn.Module, name: str, value: torch.Tensor | None) -> None:
    """Put ``value`` on ``module`` as ``name``, replacing a parameter, buffer or attribute.

    A slot the layer class declared as a parameter (ComfyUI's scaled ops) stays
    a parameter. A name the class declares as a plain attribute
    (``CastLinear.scale_weight = None``) can only be shadowed by an instance
    attribute: a buffer of that name would never be found by attribute lookup.
    Otherwise the scale becomes a buffer, so ``model.to(device)`` moves it.
    """
    if name in module._parameters:
        module._parameters[name] = None if value is None else nn.Parameter(value, requires_grad=False)
    elif name in module._buffers:
        module._buffers[name] = value
    elif hasattr(type(module), name):
        object.__setattr__(module, name, value)
    else:
        module.register_buffer(name, value)


def takes_scale(module: nn.Module, name: str = "scale_weight") -> bool:
    """True when the layer applies ``name`` itself (our CastOps, ComfyUI's scaled ops)."""
    return hasattr(module, name)
