"""Sequence parallelism as a DiT block runner: each rank runs every block on its slice of the tokens.

:class:`SequenceParallel` wraps another runner (the plain one, or a step
cache): it hands that runner a :class:`ShardedBlockStack`, whose ``run``
splits the whole sequence (video tokens with the methods' added tokens, then
the extra tokens, each appended once) into contiguous slices, one per rank,
runs the blocks there and gathers the result. Inside a block only
self-attention crosses ranks (:mod:`.attention`); the FFN, cross-attention,
modulation and norms are per token. Each slice carries its own rows of the
RoPE table and of the per-token timesteps, so positions follow the slice.

Block adapters (Wan2.2-Animate's face blocks) marked ``sequence_sharded``
get the slice with ``AdapterContext.start``; any other adapter gets the whole
gathered sequence and its slice is kept: slower, never wrong.

Decisions a wrapped step cache takes read the whole tokens, which are the
same on every rank, so every rank decides alike and no collective is skipped
by one rank alone.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from ..models.wan.dit import AdapterContext, BlockRunner, BlockStack, plain_blocks
from ..models.wan.layers import TimeModulation
from ..models.wan.rope import RopeRotation
from .attention import RingAttention, UlyssesAttention
from .exchange import gather_sequence
from .layout import SequenceGroup, check_sequence_split, split_sizes


@dataclass
class ShardedBlockStack(BlockStack):
    """A :class:`BlockStack` whose blocks run on this rank's slice; ``run``/``run_block`` take and
    return the whole sequence like the plain stack's, so any runner can drive it."""

    shard: SequenceGroup | None = None
    sizes: tuple[int, ...] = ()
    mode: str = "ulysses"

    @classmethod
    def of(cls, stack: BlockStack, shard: SequenceGroup, tokens: int) -> "ShardedBlockStack":
        heads = stack.blocks[0].self_attn.num_heads
        mode = check_sequence_split(tokens, heads, shard.size, shard.mode)
        values = {f.name: getattr(stack, f.name) for f in fields(BlockStack)}
        return cls(**values, shard=shard, sizes=tuple(split_sizes(tokens, shard.size)), mode=mode)

    @property
    def start(self) -> int:
        return sum(self.sizes[:self.shard.index])

    def split(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens[:, self.start:self.start + self.sizes[self.shard.index]]

    def gather(self, local: torch.Tensor) -> torch.Tensor:
        return gather_sequence(local, self.shard, self.sizes)

    def run(self, tokens: torch.Tensor, start: int = 0, stop: int | None = None) -> torch.Tensor:
        local = self.split(tokens)
        for index in range(start, len(self.blocks) if stop is None else stop):
            local = self._run_local(index, local)
        return self.gather(local)

    def run_block(self, index: int, tokens: torch.Tensor) -> torch.Tensor:
        return self.gather(self._run_local(index, self.split(tokens)))

    def _run_local(self, index: int, local: torch.Tensor) -> torch.Tensor:
        if self.on_block is not None:
            self.on_block(index)
        lo, hi = self.start, self.start + local.shape[1]
        rope = RopeRotation(self.rope.cos[lo:hi], self.rope.sin[lo:hi])
        time = self.time if self.time.index.shape[1] == 1 else TimeModulation(
            self.time.table, self.time.head_table, self.time.index[:, lo:hi])
        if self.mode == "ring":
            self_attend = RingAttention(self.shard, self.sizes, self.attention.chunk_size)
        else:
            self_attend = UlyssesAttention(self.shard, self.sizes, self.attention)
        local = self.blocks[index](local, time, rope, self.text, self.image, self.attention, self.compute_dtype,
                                   self_attend=self_attend)
        for adapter in self.adapters.get(index, ()):
            if getattr(adapter, "sequence_sharded", False):
                local = adapter(local, AdapterContext(index, self.grid, self.n_video, self.compute_dtype, lo))
            else:
                whole = adapter(self.gather(local), AdapterContext(index, self.grid, self.n_video,
                                                                   self.compute_dtype))
                local = self.split(whole)
        return local


class SequenceParallel:
    """A block runner splitting the sequence over ``group``; ``inner`` (default: every block in order)
    decides what runs, e.g. a step cache."""

    def __init__(self, group: SequenceGroup, inner: BlockRunner | None = None):
        self.group = group
        self.inner = inner if inner is not None else plain_blocks

    def __call__(self, stack: BlockStack, tokens: torch.Tensor) -> torch.Tensor:
        return self.inner(ShardedBlockStack.of(stack, self.group, tokens.shape[1]), tokens)

    def __getattr__(self, name: str):  # a wrapped step cache's begin/report/reset stay reachable
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)
