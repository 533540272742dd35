"""The DiT's run-time speed switches in one call: compiled blocks and fp8 matmul (see compile.py, fp8_matmul.py).

Nodes and the command line call :func:`apply_speed_options` on the model as it is about to run (on its
compute device), every run: a switch turned off restores the plain path, one left on keeps its compiled
code, so a second run with other steps, size or LoRA strength does not compile again.
"""
from __future__ import annotations

import torch
from torch import nn

from ..fp8_matmul import FP8_MATMUL_MODES, set_fp8_matmul
from .compile import COMPILE_MODES, set_compiled_blocks

__all__ = ["COMPILE_MODES", "FP8_MATMUL_MODES", "apply_speed_options"]


def _device(model: nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def apply_speed_options(model: nn.Module, compile: str = "off", fp8_matmul: str = "auto",
                        device: torch.device | str | None = None) -> str:
    """Set both switches on ``model``; returns a short summary for the log (``"compiled blocks, 240 fp8
    matmul layers"``)."""
    device = torch.device(device) if device is not None else _device(model)
    layers = set_fp8_matmul(model, fp8_matmul, device)  # checked first: it raises on a bad mode before compiling
    compiled = set_compiled_blocks(model, compile, device)
    parts = (["compiled blocks"] if compiled else []) + ([f"{layers} fp8 matmul layers"] if layers else [])
    return ", ".join(parts) or "plain"
