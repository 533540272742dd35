"""Regional compilation: ``torch.compile`` the repeated DiT block, not the whole model.

Every Wan block is the same class with the same code, so compiling each block's ``forward`` (as ComfyUI's
and kijai's compile nodes do) builds one graph that all 40 blocks share (torch's dynamo treats the blocks'
parameters as inputs), in seconds instead of the minutes a whole-model graph takes, and keeps the block-run
hook (step caches, streaming, adapters) in plain Python around it. Shapes are compiled dynamic.

What does **not** recompile: steps and schedulers, LoRA strength (LoRAs change weight values, which are
graph inputs), guidance scale, seed, the video size and window length (token counts are symbolic after the
first change), step-cache policies (they run outside the blocks). What **does** recompile (once each, then
cached): a new compute dtype or device, another attention backend or chunk size, a model with or without the
CLIP image branch, per-token timesteps (Wan2.2-Animate's reference frame, RealisDance's extra tokens)
after per-sample ones, and torch's default limit of 8 recompiles per block code falls back to eager beyond.

Modes (sampler input ``compile``, CLI ``--compile``): ``off`` (the default), ``auto`` (compile when this
torch can build kernels for the device, else one log line and the run goes on uncompiled), ``on`` (compile,
or stop with one line saying why not: no C compiler for inductor on the CPU, no triton on the GPU).
"""
from __future__ import annotations

import logging
from functools import lru_cache

import torch
from torch import nn

from ...errors import InputError, first_line

log = logging.getLogger(__name__)

COMPILE_MODES = ("off", "auto", "on")


@lru_cache(maxsize=None)
def _compiler_problem(device_type: str, backend: str) -> str | None:
    """None when ``torch.compile(backend=backend)`` builds and runs a kernel on ``device_type``, else why not."""
    def probe(x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.gelu(x * 2.0 + 1.0)

    try:
        compiled = torch.compile(probe, backend=backend, dynamic=False, fullgraph=True)
        compiled(torch.ones(8, device=device_type))
    except Exception as error:  # a missing C compiler / triton surfaces as BackendCompilerFailed, RuntimeError, ...
        return first_line(error)
    finally:
        torch._dynamo.reset()  # drop the probe's cache entries
    return None


def compiler_problem(device: torch.device | str, backend: str = "inductor") -> str | None:
    """Why ``torch.compile`` cannot build kernels on ``device`` (None: it can). Checked once per device type."""
    return _compiler_problem(torch.device(device).type, backend)


def _blocks(model: nn.Module) -> nn.ModuleList:
    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, nn.ModuleList) or not len(blocks):
        raise TypeError(f"{type(model).__name__} has no block list to compile")
    return blocks


def is_compiled(model: nn.Module) -> bool:
    return any(getattr(block, "_compiled_call_impl", None) is not None for block in _blocks(model))


def set_compiled_blocks(model: nn.Module, mode: str, device: torch.device | str, backend: str = "inductor",
                        input_name: str = "compile") -> bool:
    """Compile (or un-compile) every block of ``model`` per ``mode`` (:data:`COMPILE_MODES`); returns whether
    the blocks now run compiled. Idempotent: already-compiled blocks keep their compiled code (no recompile
    between runs); ``off`` restores the plain blocks."""
    if mode not in COMPILE_MODES:
        raise InputError(input_name, f"'{mode}' is not a mode", f"one of {', '.join(COMPILE_MODES)}")
    blocks = _blocks(model)
    if mode == "off":
        for block in blocks:
            block._compiled_call_impl = None
        return False
    problem = compiler_problem(device, backend)
    if problem is not None:
        what = (f"torch {torch.__version__} cannot compile for {torch.device(device).type} with '{backend}' "
                f"({problem})")
        if mode == "on":
            raise InputError(input_name, f"is 'on' but {what}",
                             "'auto' (runs uncompiled when no compiler works), 'off', or a working C compiler "
                             "(CPU) / triton (GPU)")
        log.warning("PoseAnimate: compile 'auto': %s; the blocks run uncompiled", what)
        return False
    if not is_compiled(model):
        for block in blocks:
            block.compile(backend=backend, dynamic=True)
    return True
