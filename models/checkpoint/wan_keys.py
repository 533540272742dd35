"""The one key map: every Wan DiT naming scheme to the official checkpoint keys.

The DiT's modules carry the official names (``blocks.0.self_attn.q.weight``), so
official files load as they are. Comfy-Org repackaged files add a wrapper
prefix (``model.diffusion_model.``); LoRA files add their trainer's
(``pipe.dit.``, ``transformer.``, ``base_model.model.``); diffusers
(``WanTransformer3DModel``) renames modules. Checkpoint loading and LoRA
loading both go through this module, so a name is converted in one place.

The diffusers names were checked against diffusers' own converter and model
(tests/fixtures/make_wan_key_map_fixture.py writes the evidence).
"""
from __future__ import annotations

import re
from typing import Iterable

# Wrapper prefixes, longest first: checkpoint and LoRA files put the DiT under one of these.
WRAPPER_PREFIXES = (
    "model.diffusion_model.",
    "base_model.model.",
    "diffusion_model.",
    "transformer.",
    "pipe.dit.",
    "model.",
    "dit.",
)

# diffusers module path -> official module path, outside the blocks
_DIFFUSERS_TOP = {
    "condition_embedder.text_embedder.linear_1": "text_embedding.0",
    "condition_embedder.text_embedder.linear_2": "text_embedding.2",
    "condition_embedder.time_embedder.linear_1": "time_embedding.0",
    "condition_embedder.time_embedder.linear_2": "time_embedding.2",
    "condition_embedder.time_proj": "time_projection.1",
    "condition_embedder.image_embedder.norm1": "img_emb.proj.0",
    "condition_embedder.image_embedder.ff.net.0.proj": "img_emb.proj.1",
    "condition_embedder.image_embedder.ff.net.2": "img_emb.proj.3",
    "condition_embedder.image_embedder.norm2": "img_emb.proj.4",
    "condition_embedder.image_embedder.pos_embed": "img_emb.emb_pos",  # a bare parameter
    "proj_out": "head.head",
    "scale_shift_table": "head.modulation",  # a bare parameter
    "patch_embedding": "patch_embedding",
}

# diffusers module path -> official module path, inside ``blocks.{i}.``
_DIFFUSERS_BLOCK = {
    "attn1.to_q": "self_attn.q",
    "attn1.to_k": "self_attn.k",
    "attn1.to_v": "self_attn.v",
    "attn1.to_out.0": "self_attn.o",
    "attn1.norm_q": "self_attn.norm_q",
    "attn1.norm_k": "self_attn.norm_k",
    "attn2.to_q": "cross_attn.q",
    "attn2.to_k": "cross_attn.k",
    "attn2.to_v": "cross_attn.v",
    "attn2.to_out.0": "cross_attn.o",
    "attn2.norm_q": "cross_attn.norm_q",
    "attn2.norm_k": "cross_attn.norm_k",
    "attn2.add_k_proj": "cross_attn.k_img",
    "attn2.add_v_proj": "cross_attn.v_img",
    "attn2.norm_added_k": "cross_attn.norm_k_img",
    "norm2": "norm3",  # diffusers' norm2 is the cross-attention norm: official norm3
    "ffn.net.0.proj": "ffn.0",
    "ffn.net.2": "ffn.2",
    "scale_shift_table": "modulation",  # a bare parameter
}

# Keys diffusers itself drops on load (an unused norm some converted files carry).
DIFFUSERS_IGNORED = re.compile(r"^blocks\.\d+\.attn2\.norm_added_q\.(weight|bias)$")

_OFFICIAL_TOP = {v: k for k, v in _DIFFUSERS_TOP.items()}
_OFFICIAL_BLOCK = {v: k for k, v in _DIFFUSERS_BLOCK.items()}
_BLOCK = re.compile(r"^blocks\.(\d+)\.(.+)$")
# Module names that only diffusers uses: one of them in a key set means the diffusers layout.
_DIFFUSERS_MARKERS = re.compile(r"(^|\.)(condition_embedder|attn1|attn2|proj_out|scale_shift_table)(\.|$)|\.ffn\.net\.")
PARAM_SUFFIXES = ("weight", "bias", "scale_weight", "scale_input")


def strip_wrapper_prefix(key: str, prefixes: Iterable[str] = WRAPPER_PREFIXES) -> tuple[str, str]:
    """``(prefix, rest)``: the key without the first wrapper prefix it starts with."""
    for prefix in prefixes:
        if key.startswith(prefix):
            return prefix, key[len(prefix):]
    return "", key


def is_diffusers_layout(keys: Iterable[str]) -> bool:
    """True when the (prefix-stripped) keys use diffusers module names.

    Decided per file, not per key: ``blocks.{i}.norm2`` exists in both layouts
    and means different layers (diffusers' cross-attention norm is official norm3).
    """
    return any(_DIFFUSERS_MARKERS.search(k) for k in keys)


def diffusers_module_to_official(module: str) -> str | None:
    """Official module path for a diffusers module path (no .weight/.bias), or None."""
    m = _BLOCK.match(module)
    if m:
        inner = _DIFFUSERS_BLOCK.get(m.group(2))
        return None if inner is None else f"blocks.{m.group(1)}.{inner}"
    return _DIFFUSERS_TOP.get(module)


def official_module_to_diffusers(module: str) -> str | None:
    """Inverse of :func:`diffusers_module_to_official`."""
    m = _BLOCK.match(module)
    if m:
        inner = _OFFICIAL_BLOCK.get(m.group(2))
        if inner is None and m.group(2) == "norm2":
            return None  # official norm2 has no weights; diffusers' norm2 is a different layer
        return None if inner is None else f"blocks.{m.group(1)}.{inner}"
    return _OFFICIAL_TOP.get(module)


def _split_param(key: str) -> tuple[str, str]:
    """``('blocks.0.attn1.to_q', '.weight')``; bare parameters (modulation) get suffix ''."""
    module, _, last = key.rpartition(".")
    if module and last in PARAM_SUFFIXES:
        return module, "." + last
    return key, ""


def diffusers_key_to_official(key: str) -> str | None:
    """Official key for a diffusers parameter key; None when diffusers has no such key."""
    module, suffix = _split_param(key)
    official = diffusers_module_to_official(module)
    return None if official is None else official + suffix


def official_key_to_diffusers(key: str) -> str | None:
    """Diffusers key for an official parameter key (used to write diffusers test files)."""
    module, suffix = _split_param(key)
    name = official_module_to_diffusers(module)
    return None if name is None else name + suffix


def to_official_keys(keys: Iterable[str]) -> tuple[dict[str, str], dict[str, object]]:
    """Map a file's keys to official names.

    Returns ``(mapping, facts)``: ``mapping`` is file key -> official key for
    every key (a key the map does not know keeps its stripped name, so the
    caller can report it as unexpected); ``facts`` says what was found:
    ``prefix`` (the wrapper prefix, '' for none), ``layout``
    ('official' | 'diffusers') and ``ignored`` (keys dropped as diffusers does).
    """
    keys = list(keys)
    stripped = {}
    prefixes = set()
    for key in keys:
        prefix, rest = strip_wrapper_prefix(key)
        prefixes.add(prefix)
        stripped[key] = rest
    diffusers = is_diffusers_layout(stripped.values())
    mapping: dict[str, str] = {}
    ignored: list[str] = []
    for key, rest in stripped.items():
        if diffusers:
            if DIFFUSERS_IGNORED.match(rest):
                ignored.append(key)
                continue
            official = diffusers_key_to_official(rest)
            mapping[key] = official if official is not None else rest
        else:
            mapping[key] = rest
    prefix = "" if not prefixes else sorted(prefixes, key=len)[-1]
    return mapping, {"prefix": prefix, "layout": "diffusers" if diffusers else "official", "ignored": ignored}
