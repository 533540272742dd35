"""Say what a file that is not a Wan DiT looks like, from its key names.

Users pick model files from long dropdowns; the common mistake is the wrong
file of the right set (the VAE, the text encoder, a LoRA). The error should
name it, so the user knows which file to pick instead.
"""
from __future__ import annotations

import json
import re
from typing import Iterable, Mapping

# (what it is, a pattern over key names); the first match wins
_KINDS = (
    ("a LoRA (load it with the LoRA input instead)",
     re.compile(r"(lora_(A|B|up|down)|\.alpha$|\.diff(_b)?$|^lora_unet_)")),
    ("a Wan VAE", re.compile(r"^(encoder|decoder)\.(conv1|downsamples|upsamples|middle|head)")),
    ("a VAE", re.compile(r"^(first_stage_model\.|vae\.|(encoder|decoder)\.(conv_in|down|up|mid))")),
    ("a T5 / umT5 text encoder",
     re.compile(r"(SelfAttention|EncDecAttention|^shared\.weight$|^token_embedding\.|"
                r"^encoder\.block\.|^blocks\.\d+\.attn\.(q|k|v|o)\.weight$|relative_attention_bias)")),
    ("a CLIP image/text encoder",
     re.compile(r"(^visual\.|vision_model\.|text_model\.|^textual\.|\.resblocks\.)")),
    ("a Stable Diffusion UNet", re.compile(r"(^|\.)(input_blocks|output_blocks|middle_block)\.")),
    ("a Flux / SD3 / other DiT", re.compile(r"(double_blocks|single_blocks|joint_blocks|transformer_blocks)\.")),
    ("a Wan VACE module", re.compile(r"(^|\.)vace_(blocks|patch_embedding)\.")),
    ("a pose or motion module",
     re.compile(r"(dwpose_embedding|randomref_embedding_pose|pose_patch_embedding|motion_encoder)")),
)


# Wan DiTs of a method (tensors beside the plain DiT's): what they are, a pattern over official key names
_METHOD_DITS = (
    ("a SteadyDancer DiT (load it with the SteadyDancer loader)",
     re.compile(r"^(patch_embedding_fuse|patch_embedding_ref_c|condition_embedding_(spatial|temporal|align))\.")),
    ("a RealisDance-DiT transformer (load it with the RealisDance loader)",
     re.compile(r"^(add_conv_in|add_proj|attn_conv_in)\.")),
    ("a Wan2.2-Animate DiT (load it with the Wan-Animate loader)",
     re.compile(r"^(pose_patch_embedding|motion_encoder|face_adapter|face_encoder)\.")),
    ("a Wan VACE DiT", re.compile(r"^vace_(blocks|patch_embedding)\.")),
)


def method_of_keys(keys: Iterable[str]) -> str | None:
    """'a SteadyDancer DiT (load it with ...)' when official ``keys`` hold a method's own tensors, else None."""
    keys = list(keys)
    for what, pattern in _METHOD_DITS:
        if any(pattern.search(k) for k in keys):
            return what
    return None


def sample_keys(keys: Iterable[str], count: int = 4) -> str:
    """A few key names for a message."""
    keys = sorted(keys)
    shown = ", ".join(keys[:count])
    if len(keys) > count:
        shown += f", ... ({len(keys)} in all)"
    return shown or "no tensors"


def describe_checkpoint(keys: Iterable[str]) -> str:
    """'looks like a Wan VAE (found keys like ...)' or 'found keys like ...'."""
    keys = list(keys)
    for what, pattern in _KINDS:
        hits = [k for k in keys if pattern.search(k)]
        if hits and len(hits) * 4 >= len(keys) or (hits and what.startswith("a LoRA")):
            return f"looks like {what} (found keys like {sample_keys(hits)})"
    return f"found keys like {sample_keys(keys)}"


# Wan2.2-Animate-2 has the plain Wan 2.1 I2V layout: only its markers tell it apart. ComfyUI reads
# ``{"transformer": {"model_type": "animate2"}}`` from a Comfy-Org file's ``config`` metadata; the official
# and community files carry the name (wan_animate_2_bf16[_distillation], wan2.2_animate2_14B_fp8_scaled, ...).
_ANIMATE2_NAME = re.compile(r"animate[-_ ]?2(?!\d)", re.IGNORECASE)
ANIMATE2 = "Wan2.2-Animate-2"


def _model_type(metadata: Mapping[str, str]) -> str | None:
    if metadata.get("model_type"):
        return str(metadata["model_type"])
    try:
        config = json.loads(metadata.get("config", "") or "{}")
    except ValueError:
        return None
    if not isinstance(config, dict):
        return None
    nested = config.get("transformer", config)
    return nested.get("model_type") if isinstance(nested, dict) else None


def animate2_evidence(metadata: Mapping[str, str], name: str, config: Mapping | None = None) -> str | None:
    """Why a Wan DiT file is Wan2.2-Animate-2 ('its metadata says model_type animate2', 'its name ...'), or None."""
    if _model_type(metadata) == "animate2":
        return "its metadata says model_type animate2"
    config = config or {}
    if str(config.get("model_type", "")).lower() == "animate2" or \
            "animate2" in str(config.get("_class_name", "")).lower():
        return "its config.json says animate2"
    tail = "/".join(str(name or "").replace("\\", "/").rstrip("/").split("/")[-2:])  # file and its folder only
    if _ANIMATE2_NAME.search(tail):
        return "its name says Animate-2"
    return None


# torch.save writes a zip archive (since 1.6) or a protocol-2 pickle (before): "PK\x03\x04" or the PROTO opcode
_CHECKPOINT_HEADERS = (b"PK\x03\x04", b"\x80")


def is_torch_checkpoint(path) -> bool:
    """Whether ``path`` starts the way ``torch.save`` writes files; random or foreign bytes do not, so the
    weights-only unpickler's refusal is then not a safety refusal but a file that is no checkpoint at all."""
    with open(path, "rb") as f:
        head = f.read(4)
    return any(head.startswith(magic) for magic in _CHECKPOINT_HEADERS)
