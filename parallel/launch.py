"""Starting a parallel run: from ``torchrun``'s environment, or inside a test's spawned processes.

``torchrun --nproc-per-node N script.py`` sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK`` and the rendezvous address; :func:`start_from_env` joins the
process group (NCCL for CUDA, gloo for the CPU), checks that the node has a
GPU per process, builds the :class:`~.layout.ParallelLayout` and makes it the
process's active one, which :func:`~..sampling.video.sample_video` picks up.
Without ``WORLD_SIZE`` > 1 nothing happens: one process runs as before.

Weights: every rank loads the full model itself (the file the main process
names). A 14B model in bf16 (28 GB) or fp8 (14 GB) fits 48 GB+ cards with
room for activations; FSDP-sharded weights would save memory on smaller
cards but add an all-gather of every block's weights per forward, more
traffic than the activations sequence parallelism moves.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist

from ..errors import InputError
from ..models.wan.dit import BlockRunner
from .cfg import CfgSplit
from .layout import ParallelLayout, make_layout
from .sequence import SequenceParallel

_ACTIVE: list[ParallelLayout | None] = [None]


def active_layout() -> ParallelLayout | None:
    """The layout this process runs under (None: one process, nothing split)."""
    return _ACTIVE[0]


def use_layout(layout: ParallelLayout | None) -> None:
    _ACTIVE[0] = layout


def check_gpu_count(processes: int, available: int | None = None) -> None:
    """InputError when more processes than GPUs would share this node (NCCL needs one GPU each)."""
    available = torch.cuda.device_count() if available is None else available
    if processes > available:
        raise InputError("GPUs", f"{processes} processes were started on this machine but it has {available} "
                         "CUDA GPU" + ("" if available == 1 else "s"),
                         f"at most {available} processes per node (torchrun --nproc-per-node {max(available, 1)}),"
                         " or the CPU (gloo)")


def start_from_env(device: str = "cpu", cfg_degree: int = 1, mode: str = "auto") -> ParallelLayout | None:
    """Join the process group torchrun described, on ``device`` ('cpu': gloo, 'cuda': NCCL, one GPU per rank).

    Returns the active layout, or None when the process runs alone.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        if cfg_degree != 1:
            raise InputError("CFG parallel", "needs 2 or more processes but this one runs alone",
                             "torchrun --nproc-per-node 2 (or more, an even number)")
        return None
    backend = "gloo"
    if torch.device(device).type == "cuda":
        check_gpu_count(int(os.environ.get("LOCAL_WORLD_SIZE", world)))
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        backend = "nccl"
    if not dist.is_initialized():
        dist.init_process_group(backend)
    layout = make_layout(cfg_degree, mode)
    use_layout(layout)
    return layout


def rank_device(device: str = "cpu") -> torch.device:
    """This rank's device: ``cuda:LOCAL_RANK`` for CUDA, else ``device`` itself."""
    if torch.device(device).type == "cuda" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device(device)


def finish() -> None:
    """Leave the process group (after the last collective) and forget the layout."""
    use_layout(None)
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def block_runner(layout: ParallelLayout | None, inner: BlockRunner | None = None) -> BlockRunner | None:
    """The DiT's block runner under ``layout``: sequence-parallel around ``inner`` when the group has
    more than one rank, else ``inner`` unchanged."""
    if layout is None or layout.sequence.size == 1:
        return inner
    return SequenceParallel(layout.sequence, inner)


def guidance_split(layout: ParallelLayout | None) -> CfgSplit | None:
    """What ``Guidance.split`` gets under ``layout`` (None without CFG parallelism)."""
    return CfgSplit(layout) if layout is not None and layout.cfg_degree == 2 else None
