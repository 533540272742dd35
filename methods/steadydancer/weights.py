"""Loading SteadyDancer's released transformer: a Wan 2.1 I2V 14B DiT plus its condition modules.

``MCG-NJU/SteadyDancer-14B`` is a diffusers-style folder (``config.json``,
``diffusion_pytorch_model.safetensors.index.json`` and its shards) under the
official Wan key names plus ``patch_embedding_fuse.*``, ``patch_embedding_ref_c.*``
and ``condition_embedding_{spatial,temporal,align}.*``; single-file repacks
(kijai's ``Wan21_SteadyDancer_fp8_e4m3fn_scaled_KJ.safetensors``, bf16 ones,
with or without ComfyUI's ``model.diffusion_model.`` prefix) hold the same
names. All go through the pack's one checkpoint loader and key map; the
method's tensors come back as its extras.

After loading, the DiT's ``patch_embedding`` (which in this file embeds the
reference latent ``ref_x``) moves to the layers, and the DiT gets the video
part of ``patch_embedding_fuse`` instead (see :mod:`.layers`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Union

import torch
from torch import nn

from ...errors import InputError
from ...models.checkpoint.fp8 import is_fp8
from ...models.checkpoint.identify import method_of_keys, sample_keys
from ...models.checkpoint.wan_dit import WanCheckpointInfo, load_wan_dit, scan_checkpoint
from ...models.wan.dit import WanDiT
from .layers import EXTRA_MODULES, EXTRA_PREFIXES, SteadyDancerLayers

log = logging.getLogger(__name__)

PathLike = Union[str, Path]
EXPECTED_FILE = ("SteadyDancer's transformer (the MCG-NJU/SteadyDancer-14B folder or its shards, or a single-file "
                 "repack such as Wan21_SteadyDancer_fp8_e4m3fn_scaled_KJ), which holds a Wan 2.1 I2V 14B DiT plus "
                 "patch_embedding_fuse, patch_embedding_ref_c and the condition_embedding modules")


@dataclass
class SteadyDancerModel:
    """What :func:`load_steadydancer` returns: the DiT (video patch embedding already fused) and the layers."""

    dit: WanDiT
    layers: SteadyDancerLayers
    info: WanCheckpointInfo


def check_steadydancer_file(path_or_paths: PathLike | Sequence[PathLike]) -> None:
    """Refuse a checkpoint without SteadyDancer's modules before any weight is read (headers only)."""
    scan = scan_checkpoint(path_or_paths, EXTRA_PREFIXES)
    try:
        found = {key.split(".", 1)[0] for key in scan.extra}
        missing = [name for name in EXTRA_MODULES if name not in found]
        name = f"model file '{scan.files.name}'"
        if len(missing) == len(EXTRA_MODULES):
            other = method_of_keys(scan.weights)
            what = other or f"a plain Wan {'' if scan.layout == 'official' else scan.layout + ' '}DiT"
            raise InputError(name, f"is {what}, without SteadyDancer's modules (no patch_embedding_fuse or "
                             "condition_embedding tensors)", EXPECTED_FILE)
        if missing:
            raise InputError(name, f"has only part of SteadyDancer's modules: {', '.join(missing)} missing "
                             f"(found {sample_keys(scan.extra)})", EXPECTED_FILE)
    finally:
        scan.reader.close()


def load_steadydancer(path_or_paths: PathLike | Sequence[PathLike], storage_dtype: torch.dtype | str | None = None,
                      device: torch.device | str = "cpu", operations=None, compute_dtype: torch.dtype | None = None,
                      num_heads: int | None = None) -> SteadyDancerModel:
    """Load SteadyDancer's transformer: the Wan DiT (any layout and dtype the loader takes) and its layers.

    Arguments as :func:`~...models.checkpoint.wan_dit.load_wan_dit`. The layers
    are kept in float32 (fp8 ones dequantized with their scale).
    """
    check_steadydancer_file(path_or_paths)
    dit, info = load_wan_dit(path_or_paths, storage_dtype=storage_dtype, device=device, operations=operations,
                             compute_dtype=compute_dtype, num_heads=num_heads, extra_prefixes=EXTRA_PREFIXES)
    source = f"model file '{info.source}'"
    config = dit.config
    if config.kind != "i2v" or not config.has_image_branch:
        raise InputError(source, f"is a Wan {config.kind.upper()} DiT"
                         f"{'' if config.has_image_branch else ' without a CLIP image branch'}",
                         "SteadyDancer, built on the Wan 2.1 I2V 14B DiT (36 input channels, CLIP image branch)")
    ref_weight, ref_bias = _dense(dit.patch_embedding)
    tensors = dict(info.extra_tensors, **{"patch_embedding.weight": ref_weight, "patch_embedding.bias": ref_bias})
    layers = SteadyDancerLayers.from_state_dict(tensors, source, device=device)
    if layers.dim != config.dim or layers.patch_size != tuple(config.patch_size) or \
            layers.video_channels != config.in_dim:
        raise InputError(source, f"its SteadyDancer modules are {layers.dim} wide over {layers.video_channels} "
                         f"channels with patch {layers.patch_size}, the DiT {config.dim} wide over {config.in_dim} "
                         f"with patch {tuple(config.patch_size)}", EXPECTED_FILE)
    _set_video_embedding(dit.patch_embedding, *layers.video_embedding())
    info.extra_tensors = {}  # now owned by the layers
    log.info("loaded SteadyDancer from %s (%s layout)", info.source, info.layout)
    return SteadyDancerModel(dit, layers, info)


def _dense(conv: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """A conv's weight and bias in float32, an fp8 weight times its scale."""
    weight = conv.weight.detach()
    scale = getattr(conv, "scale_weight", None)
    weight = weight.float() * (scale.float() if is_fp8(conv.weight.dtype) and scale is not None else 1.0)
    return weight, conv.bias.detach().float()


def _set_video_embedding(conv: nn.Module, weight: torch.Tensor, bias: torch.Tensor) -> None:
    """Give the DiT's patch embedding the video part of ``patch_embedding_fuse`` (its own dtype kept, fp8
    widened to bf16)."""
    dtype = conv.weight.dtype if not is_fp8(conv.weight.dtype) else torch.bfloat16
    conv.weight = nn.Parameter(weight.detach().to(conv.weight.device, dtype).clone(), requires_grad=False)
    conv.bias = nn.Parameter(bias.detach().to(conv.bias.device, conv.bias.dtype if conv.bias.is_floating_point()
                                              else dtype).clone(), requires_grad=False)
    if getattr(conv, "scale_weight", None) is not None:
        conv.scale_weight = None
