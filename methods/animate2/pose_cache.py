"""The Animate-2 pose branch's block inputs, computed once per run (and per window) and reused every step.

The pose branch reads the driving video's latents at a fixed timestep with a fixed context, so its residual
stream entering each block is the same at every step and in both guidance branches. Keeping the *block
input* (``[1, L, dim]`` per block) rather than its K/V halves the memory; re-projecting K/V from it is a
norm, a modulation and two linear layers, about a tenth of the block.

Storage precisions and their error, per stored value ``x`` (then K/V are re-projected from the stored input):

* ``float32``: exact; a cached step equals an uncached one bit for bit (tested);
* ``bfloat16``: round to nearest with an 8-bit significand: ``|x' - x| <= 2**-8 |x|`` (0.4 %);
* ``int8``: symmetric per token: ``s = max|x_token| / 127``, ``x' = s * round(x / s)``, so
  ``|x' - x| <= s / 2 = max|x_token| / 254`` (0.4 % of the token's largest value).

Slots are keyed by the caller (one per window); what does not fit in the memory budget is refused before
anything is stored, with the size asked and the room there is.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch

from ... import memory_budget
from ...errors import InputError

STORAGES = ("float32", "bfloat16", "int8")
_INT8_MAX = 127.0


@dataclass
class _Stored:
    data: torch.Tensor
    scale: torch.Tensor | None = None  # int8: per-token scale [..., L, 1]

    @property
    def nbytes(self) -> int:
        extra = 0 if self.scale is None else self.scale.numel() * self.scale.element_size()
        return self.data.numel() * self.data.element_size() + extra


def storage_bytes(tokens: int, dim: int, blocks: int, storage: str, batch: int = 1) -> int:
    """Bytes one slot (every block's input for ``tokens`` pose tokens) takes in ``storage``."""
    per = {"float32": 4, "bfloat16": 2, "int8": 1}[check_storage(storage)]
    scales = 4 * tokens if storage == "int8" else 0
    return batch * blocks * (tokens * dim * per + scales)


def check_storage(storage: str) -> str:
    if storage not in STORAGES:
        raise InputError("pose cache storage", f"'{storage}' is not known", f"one of {', '.join(STORAGES)}")
    return storage


class PoseBranchCache:
    """Per-key, per-block pose-branch inputs in ``storage`` on ``device`` (the CPU by default)."""

    def __init__(self, storage: str = "float32", device: torch.device | str = "cpu"):
        self.storage = check_storage(storage)
        self.device = torch.device(device)
        self.slots: OrderedDict[object, dict[int, _Stored]] = OrderedDict()
        self.hits = 0  # blocks served from the cache (for the benchmark and tests)

    def filled(self, key: object, blocks: int) -> bool:
        slot = self.slots.get(key)
        return slot is not None and len(slot) == blocks

    def reserve(self, key: object, tokens: int, dim: int, blocks: int, batch: int = 1) -> None:
        """Check that a new slot fits the memory budget of the store device, before the first block is put.

        Raises InputError naming the cache, the size and the room; nothing is stored then.
        """
        if key in self.slots:
            return
        need = storage_bytes(tokens, dim, blocks, self.storage, batch)
        room = memory_budget.available(self.device)
        if need > room:
            raise InputError("pose cache", f"needs {need / memory_budget.GB:.2f} GB on {self.device} for "
                             f"{blocks} blocks x {tokens} pose tokens in {self.storage} "
                             f"({len(self.slots)} slot(s) already kept), and {room / memory_budget.GB:.2f} GB "
                             "is available",
                             "int8 or bfloat16 storage, fewer frames per window, or the cache turned off")
        self.slots[key] = {}

    def put(self, key: object, index: int, x: torch.Tensor) -> None:
        slot = self.slots.setdefault(key, {})
        x = x.detach()
        if self.storage == "int8":
            scale = x.float().abs().amax(dim=-1, keepdim=True).clamp_min(torch.finfo(torch.float32).tiny) / _INT8_MAX
            q = torch.round(x.float() / scale).clamp_(-_INT8_MAX, _INT8_MAX).to(torch.int8)
            slot[index] = _Stored(q.to(self.device), scale.to(self.device))
        else:
            dtype = torch.float32 if self.storage == "float32" else torch.bfloat16
            slot[index] = _Stored(x.to(self.device, dtype, copy=True))

    def take(self, key: object, index: int, device: torch.device | str) -> torch.Tensor:
        """The stored input of block ``index``, float32 on ``device``."""
        stored = self.slots[key][index]
        self.hits += 1
        data = stored.data.to(device, non_blocking=True).float()
        if stored.scale is not None:
            data = data * stored.scale.to(device)
        return data

    def memory_bytes(self) -> int:
        return sum(s.nbytes for slot in self.slots.values() for s in slot.values())

    def free(self) -> None:
        self.slots.clear()
