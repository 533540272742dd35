"""Self-attention over a sequence split across ranks: Ulysses all-to-all, or a ring.

* **Ulysses** (heads divide by the ranks): one all-to-all turns each rank's
  token slice with every head into the whole sequence with ``H / ranks``
  heads; the local kernel (sdpa, flash, sage, chunked: the model's
  :class:`~..models.wan.attention.Attention`) runs on it unchanged; a second
  all-to-all brings the output back. Exact: attention per head is the same.
* **Ring** (any number of ranks): queries stay; the K/V slices travel round
  the ring, each rank attends to one slice at a time and merges the partial
  results with the online-softmax rule (log-sum-exp), the next slice already
  in flight. Computed in float32, queries in chunks to bound the score matrix.

``yunchang``'s Ulysses all-to-all is used when it is installed and the split
is even; the pack's own (:mod:`.exchange`) otherwise.
"""
from __future__ import annotations

import importlib
import math
from typing import Callable, Sequence

import torch

from .exchange import RingPass, heads_to_sequence, pad_tokens, sequence_to_heads
from .layout import SequenceGroup

Attend = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
RING_QUERY_CHUNK = 4096  # query rows per score matrix in the ring (memory, not results)


def _yunchang_all_to_all():
    """yunchang's ``SeqAllToAll4D`` when the package is installed, else None (it is optional)."""
    try:
        return importlib.import_module("yunchang.comm.all_to_all").SeqAllToAll4D
    except Exception:  # not installed, or a build that does not import here
        return None


class UlyssesAttention:
    """``attend(q, k, v)`` on this rank's slices ``[B, L_rank, H, D]``, exchanging heads for sequence."""

    def __init__(self, group: SequenceGroup, sizes: Sequence[int], local: Attend):
        self.group, self.sizes, self.local = group, list(sizes), local
        even = len(set(self.sizes)) == 1
        self.yunchang = _yunchang_all_to_all() if even else None

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if self.yunchang is not None and q.is_cuda:
            try:
                a2a = self.yunchang.apply
                q2, k2, v2 = (a2a(self.group.group, t.contiguous(), 2, 1) for t in (q, k, v))
                return a2a(self.group.group, self.local(q2, k2, v2).contiguous(), 1, 2)
            except TypeError:  # another yunchang generation's signature: found before anything is sent,
                self.yunchang = None  # alike on every rank (all run the same install)
        q, k, v = sequence_to_heads(torch.stack([q, k, v]), self.group, self.sizes).unbind(0)
        return heads_to_sequence(self.local(q, k, v), self.group, self.sizes)


def attend_with_lse(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                    chunk: int = RING_QUERY_CHUNK) -> tuple[torch.Tensor, torch.Tensor]:
    """Float32 softmax attention ``[B, Lq, H, D]`` and its log-sum-exp ``[B, H, Lq, 1]``."""
    scale = 1.0 / math.sqrt(q.shape[-1])
    kh, vh = k.transpose(1, 2).float(), v.transpose(1, 2).float()
    outs, lses = [], []
    for start in range(0, q.shape[1], chunk):
        qh = q[:, start:start + chunk].transpose(1, 2).float() * scale
        scores = qh @ kh.transpose(-1, -2)
        peak = scores.amax(dim=-1, keepdim=True)
        weights = torch.exp(scores - peak)
        total = weights.sum(dim=-1, keepdim=True)
        outs.append((weights @ vh) / total)
        lses.append(peak + torch.log(total))
    return torch.cat(outs, dim=2).transpose(1, 2), torch.cat(lses, dim=2)


def merge_partial(out: torch.Tensor | None, lse: torch.Tensor | None, part: torch.Tensor,
                  part_lse: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Join two attentions over disjoint key sets (online softmax)."""
    if out is None:
        return part, part_lse
    joined = torch.logaddexp(lse, part_lse)
    keep = torch.exp(lse - joined).transpose(1, 2)  # [B, Lq, H, 1]
    take = torch.exp(part_lse - joined).transpose(1, 2)
    return out * keep + part * take, joined


class RingAttention:
    """``attend(q, k, v)`` on this rank's slices, passing K/V round the ring of the group's ranks."""

    def __init__(self, group: SequenceGroup, sizes: Sequence[int], chunk: int | None = None):
        self.group, self.sizes = group, list(sizes)
        self.chunk = chunk or RING_QUERY_CHUNK
        self.ring = RingPass(group)

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        ranks, index = self.group.size, self.group.index
        kv = pad_tokens(torch.stack([k, v]), max(self.sizes), 2)
        out = lse = None
        for step in range(ranks):
            source = (index - step) % ranks
            pending = self.ring.start(kv) if step < ranks - 1 else None
            block = kv[:, :, :self.sizes[source]]
            part, part_lse = attend_with_lse(q, block[0], block[1], self.chunk)
            out, lse = merge_partial(out, lse, part, part_lse)
            if pending is not None:
                buffer, requests = pending
                for request in requests:
                    request.wait()
                kv = buffer
        return out.to(q.dtype)
