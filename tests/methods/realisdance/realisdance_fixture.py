"""Shared by the RealisDance tests: the committed parity fixture and writing its transformer as a folder.

tests/fixtures/make_realisdance_parity.py wrote the fixture from RealisDance-DiT's
own model and pipeline; its ``transformer/*`` tensors are the reference's tiny
``RealisDanceDiT`` under the reference's own diffusers names.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "realisdance_parity.safetensors"
PREFIX = "transformer/"


def load_fixture() -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    with safe_open(str(FIXTURE), "pt") as f:
        metadata = f.metadata()
    return load_file(str(FIXTURE)), metadata


def transformer_state(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The reference model's tensors under its diffusers names."""
    return {k[len(PREFIX):]: v for k, v in tensors.items() if k.startswith(PREFIX)}


def write_folder(state: dict[str, torch.Tensor], config: dict, root: Path, drop: Iterable[str] = ()) -> Path:
    """A diffusers model folder ``root/transformer/{config.json, diffusion_pytorch_model.safetensors}``."""
    folder = root / "transformer"
    folder.mkdir(parents=True, exist_ok=True)
    dropped = tuple(drop)
    kept = {k: v.contiguous() for k, v in state.items() if not k.startswith(dropped)}
    save_file(kept, str(folder / "diffusion_pytorch_model.safetensors"))
    (folder / "config.json").write_text(json.dumps(config))
    return root


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out.float() - ref.float()).abs().max() / ref.float().abs().max()).item()
