"""Which ranks share one sequence and which guidance branch each group runs.

``world = cfg_degree x sequence degree``: with CFG parallelism ranks
``0 .. G-1`` run the positive branch and ``G .. 2G-1`` the negative one, each
group splitting its sequence G ways; rank ``i`` and ``i + G`` swap their
velocities once per step. Every rank creates every group in the same order
(torch.distributed requires it), so building a layout is collective.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch.distributed as dist

from ..errors import InputError

SEQUENCE_MODES = ("auto", "ulysses", "ring")


@dataclass(frozen=True)
class SequenceGroup:
    """The ranks that split one sequence: ``ranks`` (global), this process's ``index`` among them."""

    group: Any  # a torch.distributed ProcessGroup (None: the default group)
    ranks: tuple[int, ...]
    index: int
    mode: str = "auto"

    @property
    def size(self) -> int:
        return len(self.ranks)


@dataclass(frozen=True)
class ParallelLayout:
    """One process's place: its sequence group and, with CFG parallelism, its branch and partner."""

    rank: int
    world: int
    sequence: SequenceGroup
    cfg_degree: int = 1
    cfg_index: int = 0  # 0: this rank runs the positive branch, 1: the negative one
    cfg_group: Any = None  # the two ranks that swap velocities (None without CFG parallelism)

    @property
    def is_main(self) -> bool:
        """Rank 0 writes outputs, prints progress and saves files."""
        return self.rank == 0


def split_sizes(length: int, parts: int) -> list[int]:
    """``length`` tokens over ``parts`` ranks, the first ``length % parts`` ranks one more (all >= 1)."""
    base, extra = divmod(length, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def check_sequence_split(tokens: int, heads: int, ranks: int, mode: str) -> str:
    """The attention mode to use (``ulysses`` or ``ring``); InputError when the split cannot work."""
    if mode not in SEQUENCE_MODES:
        raise InputError("sequence parallel mode", f"'{mode}' is not known", f"one of {', '.join(SEQUENCE_MODES)}")
    if tokens < ranks:
        raise InputError("GPUs", f"{ranks} processes split the sequence but this video has only {tokens} tokens",
                         f"at most {tokens} processes per sequence (a longer or larger video for more)")
    if mode == "ulysses" and heads % ranks:
        raise InputError("GPUs", f"{ranks} processes cannot split {heads} attention heads evenly (Ulysses)",
                         f"a number of processes dividing {heads}, or the 'ring' (or 'auto') sequence mode")
    if mode == "auto":
        return "ulysses" if heads % ranks == 0 else "ring"
    return mode


def make_layout(cfg_degree: int = 1, mode: str = "auto") -> ParallelLayout:
    """The layout of this process in the initialised default process group (collective: call on every rank)."""
    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError("torch.distributed is not initialised: start with torchrun or init_process_group first")
    if mode not in SEQUENCE_MODES:
        raise InputError("sequence parallel mode", f"'{mode}' is not known", f"one of {', '.join(SEQUENCE_MODES)}")
    world, rank = dist.get_world_size(), dist.get_rank()
    if cfg_degree not in (1, 2):
        raise InputError("CFG parallel degree", f"{cfg_degree} is not 1 or 2", "1 (off) or 2 (one branch per group)")
    if world % cfg_degree:
        raise InputError("GPUs", f"CFG parallelism splits the processes into two groups, and {world} is odd",
                         "an even number of processes for CFG parallelism, or CFG parallelism off")
    size = world // cfg_degree
    if cfg_degree == 1:
        ranks = tuple(range(world))
        return ParallelLayout(rank, world, SequenceGroup(None, ranks, rank, mode))
    groups = [tuple(range(g * size, (g + 1) * size)) for g in range(cfg_degree)]
    sequence_groups = [dist.new_group(list(r)) if size > 1 else None for r in groups]
    pairs = [dist.new_group([i, i + size]) for i in range(size)]
    cfg_index, index = divmod(rank, size)
    sequence = SequenceGroup(sequence_groups[cfg_index], groups[cfg_index], index, mode)
    return ParallelLayout(rank, world, sequence, cfg_degree, cfg_index, pairs[index])
