"""One way from checkpoint tensors to a loaded module, for every loader of the pack.

The Wan DiT loader, Wan2.2-Animate's modules and RealisDance-DiT's layers all
build their module tree on ``meta`` (no memory) and then:

1. :func:`check_tensors`: the file's keys and shapes against the model's
   (:func:`~.fp8.expected_shapes`, which also knows the host's self-loading
   layers); one error names every missing, unexpected and mis-shaped tensor;
2. :func:`convert_weights`: each tensor read (lazily, if given a getter),
   converted to its storage dtype (:func:`storage_for`) and put on the device;
   scaled fp8 weights kept in fp8 go where their layer reads them
   (:func:`~.fp8.keep_scaled_weight`);
3. ``model.load_state_dict(converted.state, strict=False, assign=True)``;
4. :func:`attach_scales`: the kept fp8 scales set on the layers that take them
   as attributes, scale slots the file did not fill made neutral.

UniAnimate-DiT's pose encoders keep their stored tensors as they are and use
step 1 only.
"""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Collection, Iterable, Mapping, Sequence, TypeVar, Union

import torch
from torch import nn

from ...errors import InputError
from .fp8 import (SCALE_NAMES, dequantize, is_fp8, keep_scaled_weight, keeps_scaled_fp8, prepare_self_loading_layers,
                  self_loading_dtype, set_module_tensor, split_scale_key)
from .identify import sample_keys

FLOAT_STORAGE = (torch.float32, torch.float16, torch.bfloat16)
FP8_COMPUTE = torch.bfloat16  # what fp8 weights compute in, and are dequantized to when nothing else is asked
# the layer classes an operations namespace may hold (the pack's CastOps, ComfyUI's comfy.ops): their weights
# are cast when the layer runs, so they may stay in fp8
LAYER_CLASS_NAMES = ("Linear", "Conv1d", "Conv2d", "Conv3d", "LayerNorm", "GroupNorm", "RMSNorm")
SHOWN = 6  # keys named per problem in a message

log = logging.getLogger(__name__)
MOSTLY_UNUSED = 0.5  # a file with more than this share of its tensors unused is not for this node

TensorSource = Union[torch.Tensor, Callable[[], torch.Tensor]]
T = TypeVar("T")


# ---------------------------------------------------------------------------------------------- checking
def check_tensors(found: Mapping[str, Sequence[int]], expected: Mapping[str, Sequence[int]], source: str, kind: str,
                  wanted: str, optional: Collection[str] = (), scales: Iterable[str] = ()) -> None:
    """Raise one :class:`InputError` naming every missing, unexpected and mis-shaped tensor.

    ``found``: key -> shape of the tensors a file holds (fp8 scale keys left out); ``expected``: key ->
    shape the model has (:func:`~.fp8.expected_shapes`); ``source``: the file (``"model file 'x'"``),
    the error's input name; ``kind``: what the tensors make up (``"T2V Wan DiT"``,
    ``"Wan2.2-Animate modules"``); ``wanted``: what the file should be (the error's "expected").
    ``optional``: expected keys the file may lack; ``scales``: the fp8 scale keys found (either
    generation), unexpected unless their layer's ``weight`` is expected.

    The message reads, for instance, ``model file 'a.safetensors': is missing 1 tensor(s) of the I2V
    Wan DiT: blocks.1.ffn.2.bias; has 1 tensor(s) of the wrong shape for the I2V Wan DiT:
    'blocks.1.ffn.0.weight' has shape [96, 64] instead of [128, 64]; expected ...``.
    """
    missing = sorted(k for k in expected if k not in found and k not in optional)
    unexpected = sorted(k for k in found if k not in expected)
    unexpected += sorted(k for k in scales if f"{split_scale_key(k)[0]}.weight" not in expected)
    wrong = sorted(k for k in expected if k in found and tuple(found[k]) != tuple(expected[k]))
    problems = []
    if missing:
        problems.append(f"is missing {len(missing)} tensor(s) of the {kind}: {sample_keys(missing, SHOWN)}")
    if unexpected:
        problems.append(f"has {len(unexpected)} tensor(s) that are not part of the {kind}: "
                        f"{sample_keys(unexpected, SHOWN)}")
    if wrong:
        shapes = ", ".join(f"'{k}' has shape {list(found[k])} instead of {list(expected[k])}" for k in wrong[:SHOWN])
        more = f", ... ({len(wrong)} in all)" if len(wrong) > SHOWN else ""
        problems.append(f"has {len(wrong)} tensor(s) of the wrong shape for the {kind}: {shapes}{more}")
    if problems:
        raise InputError(source, "; ".join(problems), wanted)


def report_unused(source: str, unused: Collection[str], total: int, kind: str, wanted: str) -> None:
    """Say which of a file's tensors a loader does not use: one warning line naming how many and a few
    keys; an :class:`InputError` when they are most of the file (more than :data:`MOSTLY_UNUSED` of
    ``total``), which is then a file for another node. ``source``/``kind``/``wanted`` as in
    :func:`check_tensors`."""
    if not unused:
        return
    if len(unused) > MOSTLY_UNUSED * max(total, 1):
        raise InputError(source, f"{len(unused)} of its {total} tensors are not used by the {kind} (keys like "
                         f"{sample_keys(unused, SHOWN)}), so it is a file for another node", wanted)
    log.warning("%s: %d of its %d tensors are not used by the %s and are ignored: %s", source, len(unused), total,
                kind, sample_keys(unused, SHOWN))


# ---------------------------------------------------------------------------------------------- converting
def layer_classes(operations) -> tuple[type, ...]:
    """The layer classes of ``operations`` (:data:`LAYER_CLASS_NAMES`) plus the pack's ``CastConv1d``, which
    modules use where ``operations`` has no Conv1d: layers that cast their weight when they run."""
    from ..ops import CastConv1d

    found = tuple(c for c in (getattr(operations, n, None) for n in LAYER_CLASS_NAMES) if isinstance(c, type))
    return found + (CastConv1d,)


def storage_for(dtype: torch.dtype, scaled: bool, storage_dtype: torch.dtype | None, cast_by_ops: bool,
                linear_weight: bool, layer_takes_scale: bool,
                dequantize_fp8: torch.dtype | None = None) -> tuple[torch.dtype, bool]:
    """``(dtype to store, keep the fp8 scale with the weight)`` for one tensor stored as ``dtype``.

    ``storage_dtype``: None keeps the file's dtype (a scaled fp8 weight stays fp8 where its layer can
    take the scale, else becomes bf16; an fp8 plain parameter becomes float32); a float dtype converts;
    an fp8 dtype quantizes Linear weights by a plain cast and keeps the rest as stored. ``cast_by_ops``:
    the tensor belongs to a layer of ``operations`` (plain parameters, such as modulation and RMS
    norms, are never kept in fp8). ``dequantize_fp8`` (with ``storage_dtype`` None): fp8 tensors become
    this dtype, all others stay as stored.
    """
    if not dtype.is_floating_point:
        return dtype, False
    if dequantize_fp8 is not None:
        return (dequantize_fp8 if is_fp8(dtype) else dtype), False
    if not cast_by_ops:
        if storage_dtype in FLOAT_STORAGE:
            return storage_dtype, False
        return (torch.float32 if is_fp8(dtype) else dtype), False
    if storage_dtype in FLOAT_STORAGE:
        return storage_dtype, False
    if is_fp8(storage_dtype) and linear_weight and dtype != storage_dtype:
        return storage_dtype, False  # dequantized (if scaled), then a plain cast
    if scaled:
        return (dtype, True) if layer_takes_scale else (FP8_COMPUTE, False)
    return dtype, False


@dataclass
class ConvertedWeights:
    """What :func:`convert_weights` made: load ``state``, then :func:`attach_scales` ``scales``."""

    state: dict[str, torch.Tensor] = field(default_factory=dict)
    scales: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)  # module -> scales to set on it
    file_dtypes: Counter = field(default_factory=Counter)  # stored dtype -> number of elements read
    kept_fp8: torch.dtype | None = None  # fp8 format of the scaled weights kept in fp8


def group_scales(tensors: Mapping[str, T]) -> dict[str, dict[str, T]]:
    """``{module: {'scale_weight': ..., 'scale_input': ...}}`` from the scale keys (either generation) among
    ``tensors``; other keys are left out."""
    grouped: dict[str, dict[str, T]] = {}
    for key, value in tensors.items():
        scale = split_scale_key(key)
        if scale is not None:
            grouped.setdefault(scale[0], {})[scale[1]] = value
    return grouped


def convert_weights(model: nn.Module, tensors: Mapping[str, TensorSource],
                    scales: Mapping[str, Mapping[str, TensorSource]], operations,
                    storage_dtype: torch.dtype | None, device: torch.device | str,
                    dequantize_fp8: torch.dtype | None = None) -> ConvertedWeights:
    """Each of ``tensors`` (official key -> tensor, or a getter that reads it) in its storage dtype on
    ``device``, ready for ``model.load_state_dict(state, strict=False, assign=True)``.

    ``model``: the module tree, built on ``meta`` from ``operations`` (checked with :func:`check_tensors`
    first); ``scales``: ``{module: {'scale_weight': ..., 'scale_input': ...}}`` (tensors or getters) of
    scaled fp8 weights (:func:`group_scales`); ``storage_dtype`` and ``dequantize_fp8``: see
    :func:`storage_for`.

    A scaled fp8 weight kept in fp8 goes where its layer reads it: a self-loading host layer (ComfyUI
    0.8+ mixed precision) gets ``weight``, ``weight_scale``, ``input_scale`` (when the file has one) and
    ``comfy_quant`` entries in the state; any other layer gets ``weight``, and its scales come back in
    ``scales`` for :func:`attach_scales`. Tensors that are not kept that way go in the self-loading
    layer's factory dtype where there is one; the self-loading layers are told ``device`` first.
    """
    if dequantize_fp8 is not None and storage_dtype is not None:
        raise ValueError("dequantize_fp8 keeps non-fp8 tensors as stored: it takes no storage_dtype")
    prepare_self_loading_layers(model, device)
    classes = layer_classes(operations)
    linear = getattr(operations, "Linear", nn.Linear)
    out = ConvertedWeights()
    for key, source in tensors.items():
        module_name, _, param = key.rpartition(".")
        module = model.get_submodule(module_name) if module_name else model
        tensor = _read(source)
        out.file_dtypes[tensor.dtype] += tensor.numel()
        scaled_weight = param == "weight" and (dequantize_fp8 is None or is_fp8(tensor.dtype))
        module_scales = scales.get(module_name, {}) if scaled_weight else {}
        scale = _read(module_scales["scale_weight"]) if "scale_weight" in module_scales else None
        dtype, keep_scale = storage_for(tensor.dtype, scale is not None, storage_dtype, isinstance(module, classes),
                                        isinstance(module, linear) and param == "weight", keeps_scaled_fp8(module),
                                        dequantize_fp8)
        if keep_scale:
            kept = {"scale_weight": scale.to(device=device, dtype=torch.float32)}
            if "scale_input" in module_scales:
                kept["scale_input"] = _read(module_scales["scale_input"]).to(device=device, dtype=torch.float32)
            kept = keep_scaled_weight(out.state, module, key, tensor.to(device), kept)
            if kept:
                out.scales[module_name] = kept
            out.kept_fp8 = tensor.dtype
        else:
            dtype = self_loading_dtype(module) or dtype
            if scale is not None or (is_fp8(tensor.dtype) and not is_fp8(dtype)):
                out.state[key] = dequantize(tensor, scale, dtype).to(device)
            else:
                out.state[key] = tensor.to(device=device, dtype=dtype)
        del tensor
    return out


def attach_scales(model: nn.Module, kept: Mapping[str, Mapping[str, torch.Tensor]],
                  device: torch.device | str) -> None:
    """After loading: put kept fp8 scales on the layers that take them as attributes (an activation scale
    only where the layer declares it as a parameter or buffer); give scale slots the file did not fill
    (ComfyUI's scaled ops make them on ``meta``) a neutral value: ``scale_weight`` 1, ``scale_input`` None."""
    for module_name, scales in kept.items():
        module = model.get_submodule(module_name)
        for name, value in scales.items():
            if name == "scale_weight" or name in module._parameters or name in module._buffers or \
                    hasattr(type(module), name):  # the pack's CastLinear keeps scale_input for fp8 matmul
                set_module_tensor(module, name, value)
    for module in model.modules():
        for name in SCALE_NAMES:
            value = getattr(module, name, None)
            if torch.is_tensor(value) and value.device.type == "meta":
                neutral = torch.ones((), device=device, dtype=torch.float32) if name == "scale_weight" else None
                set_module_tensor(module, name, neutral)


def _read(source: TensorSource) -> torch.Tensor:
    return source if torch.is_tensor(source) else source()
