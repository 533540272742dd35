"""The command line's side of a parallel run: ``torchrun --nproc-per-node N animate.py ...``.

Every process runs the whole script on the same inputs (same seed, same
noise); :func:`start` joins them into one group and makes the layout active,
so sampling splits each forward's sequence (and, with ``--cfg-parallel``, the
guidance branches) and every rank ends with the same latent. Only rank 0
prints and writes files (:func:`is_main`); the others' stdout is silenced.
Started without torchrun, nothing changes.
"""
from __future__ import annotations

import os
import sys

from .launch import active_layout, finish, start_from_env


def start(cfg_parallel: bool = False, device: str = "cpu") -> None:
    """Join torchrun's process group (if any) on ``device``; silence every rank but 0."""
    layout = start_from_env(device, cfg_degree=2 if cfg_parallel else 1)
    if layout is not None and not layout.is_main:
        sys.stdout = open(os.devnull, "w")


def is_main() -> bool:
    """True in a lone process and in rank 0: the one that writes outputs."""
    layout = active_layout()
    return layout is None or layout.is_main


def stop() -> None:
    """Leave the process group (a no-op in a lone process)."""
    if active_layout() is not None:
        finish()
