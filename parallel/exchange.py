"""The collectives sequence parallelism needs, for slices of uneven length.

torch.distributed's ``all_to_all_single`` and ``all_gather`` move equal
chunks, so every slice is padded to the longest one (``ceil(L / ranks)``)
before it leaves and trimmed right after it arrives: padding never reaches a
computation, so the result is exact, not masked. Works on NCCL (GPU) and
gloo (CPU); tensors are made contiguous here.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F

from .layout import SequenceGroup


def pad_tokens(x: torch.Tensor, length: int, dim: int) -> torch.Tensor:
    """``x`` zero-padded at the end of ``dim`` to ``length``."""
    missing = length - x.shape[dim]
    if missing == 0:
        return x
    pad = [0, 0] * (x.dim() - 1 - dim % x.dim()) + [0, missing]
    return F.pad(x, pad)


def gather_sequence(x: torch.Tensor, group: SequenceGroup, sizes: Sequence[int], dim: int = 1) -> torch.Tensor:
    """Every rank's slice of ``dim``, joined in rank order (the whole sequence on every rank)."""
    longest = max(sizes)
    padded = pad_tokens(x, longest, dim).contiguous()
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded, group=group.group)
    return torch.cat([p.narrow(dim, 0, n) for p, n in zip(parts, sizes)], dim=dim)


def sequence_to_heads(x: torch.Tensor, group: SequenceGroup, sizes: Sequence[int]) -> torch.Tensor:
    """Ulysses forward: ``[..., B, L_rank, H, D]`` slices -> ``[..., B, L, H / ranks, D]`` on every rank.

    Rank ``j`` receives heads ``j * H / ranks ..`` of every rank's tokens, in sequence order.
    """
    ranks, longest = group.size, max(sizes)
    lead = x.dim() - 4  # q, k, v may be stacked in front
    padded = pad_tokens(x, longest, lead + 1)
    heads = padded.shape[-2] // ranks
    split = padded.unflatten(-2, (ranks, heads))  # [..., B, Lp, ranks, h, D]
    send = split.movedim(-3, 0).contiguous()  # [ranks, ..., B, Lp, h, D]
    received = torch.empty_like(send)
    dist.all_to_all_single(received, send, group=group.group)
    return torch.cat([received[i].narrow(lead + 1, 0, n) for i, n in enumerate(sizes)], dim=lead + 1)


def heads_to_sequence(x: torch.Tensor, group: SequenceGroup, sizes: Sequence[int]) -> torch.Tensor:
    """Ulysses backward: ``[B, L, H / ranks, D]`` on every rank -> this rank's ``[B, L_rank, H, D]``."""
    longest = max(sizes)
    parts = torch.split(x, list(sizes), dim=1)
    send = torch.stack([pad_tokens(p, longest, 1) for p in parts]).contiguous()  # [ranks, B, Lp, h, D]
    received = torch.empty_like(send)
    dist.all_to_all_single(received, send, group=group.group)
    joined = received.movedim(0, 2).flatten(2, 3)  # [B, Lp, ranks * h, D], heads in rank order
    return joined[:, :sizes[group.index]]


class RingPass:
    """Send a tensor to the next rank of the ring and receive the previous rank's, asynchronously."""

    def __init__(self, group: SequenceGroup):
        self.group = group
        self.next = group.ranks[(group.index + 1) % group.size]
        self.previous = group.ranks[(group.index - 1) % group.size]

    def start(self, x: torch.Tensor) -> tuple[torch.Tensor, list]:
        """Begin the exchange; returns the receive buffer and the requests to wait on."""
        x = x.contiguous()
        buffer = torch.empty_like(x)
        ops = [dist.P2POp(dist.isend, x, self.next, self.group.group),
               dist.P2POp(dist.irecv, buffer, self.previous, self.group.group)]
        return buffer, dist.batch_isend_irecv(ops)
