"""Load Wan2.2-Animate-2: the plain Wan 2.1 I2V 14B layout, from the files users have.

Names: the official ``wan_animate_2_bf16.safetensors`` and ``wan_animate_2_bf16_distillation.safetensors``
(the distilled 10-step, no-CFG variant), official-layout shards in a ``Wan2.2-Animate-2-14B`` folder, and
Comfy-Org's repacks (``model.diffusion_model.`` prefix, ``{"transformer": {"model_type": "animate2"}}`` in
the ``config`` metadata that ComfyUI's own detection reads), in bf16/fp16 or fp8 scaled (both generations):
all through the pack's one Wan DiT loader, which keeps fp8 as fp8.

The file has no tensor of its own, so the layout is checked (I2V with the CLIP branch, in_dim 36) and the
marker looked for: a file with neither marker nor name loads with a log line (a plain Wan 2.1 I2V file would
run, but it was never trained to read the pose branch's keys). A file of another kind is refused, naming
what it looks like.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Sequence

from torch import nn

from ...errors import InputError
from ...models.checkpoint.identify import ANIMATE2, animate2_evidence
from ...models.checkpoint.safetensors_files import PathLike
from ...models.checkpoint.wan_dit import WanCheckpointInfo, load_wan_dit, scan_checkpoint

__all__ = ["Animate2Info", "load_animate2"]

log = logging.getLogger(__name__)

EXPECTED = (f"{ANIMATE2} 14B (the Wan 2.1 image-to-video layout with the CLIP branch, in_dim 36): "
            "wan_animate_2_bf16.safetensors, its _distillation variant, or a Comfy-Org repack")
_OTHER_VARIANTS = (
    (("face_adapter.", "motion_encoder.", "pose_patch_embedding."),
     "Wan2.2-Animate (the first Animate: face adapter and pose patch embedding); load it with Load Wan2.2-Animate"),
    (("vace_blocks.", "vace_patch_embedding."), "a Wan VACE model"),
    (("add_conv_in.", "add_proj.", "attn_conv_in."), "RealisDance-DiT; load it with Load RealisDance-DiT"),
)
_DISTILLED = re.compile(r"distill", re.IGNORECASE)


@dataclass(frozen=True)
class Animate2Info:
    """What the loader found: the checkpoint info, why it is Animate-2 (None: no marker), distilled or not."""

    checkpoint: WanCheckpointInfo
    evidence: str | None
    distilled: bool


def _other_variant(path_or_paths) -> str | None:
    """What a Wan DiT file with extra tensors is (headers only), or None."""
    scan = scan_checkpoint(path_or_paths, extra_prefixes=tuple(p for prefixes, _ in _OTHER_VARIANTS for p in prefixes))
    with scan.reader:
        keys = list(scan.extra)
    for prefixes, what in _OTHER_VARIANTS:
        if any(k.startswith(prefixes) for k in keys):
            return what
    return None


def load_animate2(path_or_paths: PathLike | Sequence[PathLike], storage_dtype=None, device="cpu", operations=None,
                  compute_dtype=None, num_heads: int | None = None) -> tuple[nn.Module, Animate2Info]:
    """The Animate-2 DiT and what was found; refuses a file of another kind, naming it."""
    other = _other_variant(path_or_paths)
    name = str(path_or_paths if not isinstance(path_or_paths, (list, tuple)) else path_or_paths[0])
    if other is not None:
        raise InputError(f"model file '{name}'", f"is {other}, not {ANIMATE2}", EXPECTED)
    dit, info = load_wan_dit(path_or_paths, storage_dtype, device, operations, compute_dtype, num_heads,
                             allow_animate2=True)
    config = info.config
    if config.kind != "i2v" or not config.has_image_branch or config.in_dim != 36:
        what = f"a Wan {config.kind.upper()} DiT" + ("" if config.has_image_branch else " without the CLIP branch")
        what += f" (in_dim {config.in_dim}, dim {config.dim})"
        if config.kind == "i2v" and not config.has_image_branch:
            what += ", e.g. Wan 2.2 I2V A14B"
        raise InputError(f"model file '{info.source}'", f"is {what}, not {ANIMATE2}", EXPECTED)
    evidence = animate2_evidence(info.metadata, info.source, None)
    if evidence is None:
        log.warning("%s: no %s marker in its metadata or name; loading it as %s (a plain Wan 2.1 I2V file would "
                    "run too, but was never trained to read the pose branch)", info.source, ANIMATE2, ANIMATE2)
    distilled = bool(_DISTILLED.search(info.source))
    return dit, Animate2Info(info, evidence, distilled)
