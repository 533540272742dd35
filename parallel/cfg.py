"""CFG parallelism: the positive branch on one group of ranks, the negative on the other.

Each rank runs one model pass per step instead of two; rank ``i`` and its
partner ``i + G`` then swap velocities (one all-gather of a latent-sized
tensor per step) and both mix them with the same :func:`~..sampling.guidance.cfg`,
so every rank holds the same guided velocity bit for bit.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

from ..sampling.guidance import Denoiser, cfg
from .layout import ParallelLayout


class CfgSplit:
    """Runs this rank's guidance branch and combines it with the partner's (``Guidance.split``)."""

    def __init__(self, layout: ParallelLayout):
        if layout.cfg_degree != 2:
            raise ValueError("CfgSplit needs a layout with two guidance groups")
        self.layout = layout

    def __call__(self, model: Denoiser, x: torch.Tensor, timestep: torch.Tensor, positive: Any, negative: Any,
                 scale: float) -> torch.Tensor:
        mine = model(x, timestep, positive if self.layout.cfg_index == 0 else negative).contiguous()
        both = [torch.empty_like(mine) for _ in range(2)]
        dist.all_gather(both, mine, group=self.layout.cfg_group)
        return cfg(both[0], both[1], scale)
