"""Loading RealisDance-DiT's released transformer: a Wan 2.1 I2V 14B DiT plus three layers.

The release (``theFoxofSky/RealisDance-DiT`` on Hugging Face) is a diffusers
folder: ``transformer/`` holds ``config.json`` (``_class_name: RealisDanceDiT``)
and sharded safetensors under diffusers' Wan names, plus ``add_conv_in.*``,
``add_proj.*`` and ``attn_conv_in.*``. The DiT loads through the pack's one
checkpoint loader and key map (:func:`~...models.checkpoint.wan_dit.load_wan_dit`);
the three layers come back as its "extra" tensors. A single-file repack
(official or Comfy names) loads the same way.

The RoPE shift switches (``shift_f``, ``shift_h``, ``shift_w``) are read from
``config.json`` when the checkpoint has one; a switch it does not set takes
the reference class's default (on), which is what diffusers' ``from_pretrained``
does with the same folder. ``shifts=`` overrides them (a single file has no
config.json).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Union

import torch

from ...errors import InputError
from ...models.checkpoint.identify import method_of_keys, sample_keys
from ...models.checkpoint.wan_dit import WanCheckpointInfo, load_wan_dit, scan_checkpoint
from ...models.wan.dit import WanDiT
from .layers import (CLASS_DEFAULT_SHIFTS, LAYER_NAMES, LAYER_PREFIXES, RealisDanceLayers, RopeShifts,
                                 shifts_from_config)

log = logging.getLogger(__name__)

PathLike = Union[str, Path]
EXPECTED_FILE = ("RealisDance-DiT's transformer (the diffusers folder from theFoxofSky/RealisDance-DiT, or a "
                 "single-file repack of it), which holds a Wan 2.1 I2V 14B DiT plus add_conv_in, add_proj and "
                 "attn_conv_in")


@dataclass
class RealisDanceModel:
    """What :func:`load_realisdance` returns: the DiT, the method's layers and its RoPE switches."""

    dit: WanDiT
    layers: RealisDanceLayers
    shifts: RopeShifts
    info: WanCheckpointInfo
    shifts_from: str  # 'config.json' | 'config.json + class defaults' | 'class defaults' | 'argument'


def check_realisdance_file(path_or_paths: PathLike | Sequence[PathLike]) -> tuple[RopeShifts, str]:
    """Refuse a checkpoint without RealisDance-DiT's layers before any weight is read.

    Reads the headers only; returns the RoPE switches its config.json sets
    (class defaults for the rest) and where they came from.
    """
    scan = scan_checkpoint(path_or_paths, LAYER_PREFIXES)
    try:
        found = {key.split(".", 1)[0] for key in scan.extra}
        missing = [name for name in LAYER_NAMES if name not in found]
        name = f"model file '{scan.files.name}'"
        if len(missing) == len(LAYER_NAMES):
            what = method_of_keys(scan.weights) or \
                f"a plain Wan {'' if scan.layout == 'official' else scan.layout + ' '}DiT"
            raise InputError(name, f"is {what}, without RealisDance-DiT's layers (no add_conv_in, add_proj or "
                             "attn_conv_in tensors)", EXPECTED_FILE)
        if missing:
            raise InputError(name, f"has only part of RealisDance-DiT's layers: {', '.join(missing)} missing "
                             f"(found {sample_keys(scan.extra)})", EXPECTED_FILE)
        config = scan.files.config
    finally:
        scan.reader.close()
    if not config:
        return CLASS_DEFAULT_SHIFTS, "class defaults"
    shifts, defaulted = shifts_from_config(config)
    if defaulted:
        log.info("%s: config.json does not set %s; using the RealisDance-DiT class default (on)",
                 scan.files.name, ", ".join(defaulted))
    source = "config.json" if not defaulted else ("class defaults" if len(defaulted) == 3
                                                   else "config.json + class defaults")
    return shifts, source


def load_realisdance(path_or_paths: PathLike | Sequence[PathLike], storage_dtype: torch.dtype | str | None = None,
                     device: torch.device | str = "cpu", operations=None, compute_dtype: torch.dtype | None = None,
                     num_heads: int | None = None, shifts: RopeShifts | None = None) -> RealisDanceModel:
    """Load RealisDance-DiT's transformer: the Wan DiT (any layout and dtype the loader takes) and its layers.

    Arguments as :func:`~...models.checkpoint.wan_dit.load_wan_dit`; ``shifts``
    overrides the RoPE switches read from config.json; ``operations`` builds
    the DiT. The layers keep the file's dtype (fp8 ones are dequantized to
    bf16) and compute in their input's dtype.
    """
    file_shifts, shifts_from = check_realisdance_file(path_or_paths)
    if shifts is not None:
        file_shifts, shifts_from = shifts, "argument"
    dit, info = load_wan_dit(path_or_paths, storage_dtype=storage_dtype, device=device, operations=operations,
                             compute_dtype=compute_dtype, num_heads=num_heads, extra_prefixes=LAYER_PREFIXES)
    source = f"model file '{info.source}'"
    config = dit.config
    if config.kind != "i2v" or not config.has_image_branch:
        raise InputError(source, f"is a Wan {config.kind.upper()} DiT"
                         f"{'' if config.has_image_branch else ' without a CLIP image branch'}",
                         "RealisDance-DiT, built on the Wan 2.1 I2V 14B DiT (36 input channels, CLIP image branch)")
    # the layers are small and live outside the host's model patcher: the pack's casting layers, which
    # compute in their input's dtype whatever the stored one (the host's ops do not cast outside it)
    layers = RealisDanceLayers.from_state_dict(info.extra_tensors, source, operations=_casting_ops())
    if layers.dim != config.dim or layers.patch_size != tuple(config.patch_size):
        raise InputError(source, f"its RealisDance layers are {layers.dim} wide with patch {layers.patch_size}, "
                         f"the DiT {config.dim} wide with patch {tuple(config.patch_size)}", EXPECTED_FILE)
    info.extra_tensors = {}  # now owned by the layers
    log.info("loaded RealisDance-DiT from %s: RoPE %s (%s)", info.source, file_shifts.label, shifts_from)
    return RealisDanceModel(dit, layers, file_shifts, info, shifts_from)


def _casting_ops():
    from ...models.ops import CastOps
    return CastOps
