"""The Wan DiT as a sampler :data:`~.guidance.Denoiser`: one conditioning object in, velocity out.

Every method ends up here: it builds a positive and a negative
:class:`WanCond` (text and image embeddings, the I2V latent ``y``, and the DiT
extension points it fills) and the sampler calls the model on either. The DiT
is given ``on_block`` so an interrupt stops a run within one block.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..models.wan.dit import DiTExtensions, WanDiT
from .loop import interrupt_check


@dataclass(frozen=True)
class WanCond:
    """One branch of conditioning for the Wan DiT (see ``WanDiT.forward``)."""

    context: torch.Tensor                 # umT5 embeddings [B, Lt <= 512, 4096]
    clip_fea: torch.Tensor | None = None  # CLIP ViT-H penultimate tokens [B, 257, 1280]
    y: torch.Tensor | None = None         # I2V condition [B, 4 + 16, F, H, W]
    ext: DiTExtensions | None = None      # method tokens, extra tokens, adapters


class WanDenoiser:
    """Calls a :class:`WanDiT` with a :class:`WanCond`; checks for interruption before each block."""

    def __init__(self, model: WanDiT, on_block: Callable[[int], None] | None = None, runner=None):
        self.model = model
        self.runner = runner  # a block runner for every forward (a step cache); None: the model's own
        if on_block is None:
            check = interrupt_check()
            on_block = lambda _index: check()  # noqa: E731
        self.on_block = on_block

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, timestep: torch.Tensor, cond: WanCond) -> torch.Tensor:
        device = next(self.model.parameters()).device
        extra = {} if self.runner is None else {"runner": self.runner}  # stand-in models need not take one
        out = self.model(x.to(device), timestep.to(device), cond.context.to(device),
                         clip_fea=None if cond.clip_fea is None else cond.clip_fea.to(device),
                         y=None if cond.y is None else cond.y.to(device),
                         ext=cond.ext, on_block=self.on_block, **extra)
        return out.to(x.device)
