"""Block streaming: the DiT's blocks stay in CPU memory and each is copied to the GPU just before it runs.

The 14B DiT's 40 blocks hold 28 GB in bf16 (14 GB in fp8); everything else (embeddings, head) is under
1 GB. Streaming keeps the blocks' weights on their home device and, while block ``i`` runs, copies block
``i + 1`` on a side CUDA stream (pinned memory, non-blocking), so the copy overlaps the compute; block ``i - 1``'s
device copy is dropped when block ``i`` starts. At most two blocks are on the GPU at once, so the 14B model
runs at 480p in about 12 GB (two blocks ~1.4 GB in bf16, the rest activations), at the price of moving 28 GB
over PCIe per forward (about 1 s at 25 GB/s, hidden behind a 480p forward of a few seconds).

Inside ComfyUI the host does this with its own partial loading (lowvram); this is for the core outside it
(``animate.py --stream-blocks``). It composes with every block runner (step caches skip the blocks, so a
cached step moves nothing): the model's forward hands runners a :class:`StreamedBlocks` instead of its
block list. The home tensors are read at each copy, so LoRAs merged between forwards are streamed too.
"""
from __future__ import annotations

from contextlib import nullcontext

import torch
from torch import nn


def _slots(block: nn.Module) -> list[tuple[nn.Module, str, bool]]:
    """Every parameter and persistent buffer of ``block`` as ``(module, name, is_parameter)``."""
    slots = []
    for module in block.modules():
        slots += [(module, name, True) for name, p in module._parameters.items() if p is not None]
        slots += [(module, name, False) for name, b in module._buffers.items() if b is not None]
    return slots


def _get(module: nn.Module, name: str, is_parameter: bool) -> torch.Tensor:
    return module._parameters[name].data if is_parameter else module._buffers[name]


def _set(module: nn.Module, name: str, is_parameter: bool, value: torch.Tensor) -> None:
    if is_parameter:
        module._parameters[name].data = value
    else:
        module._buffers[name] = value


class BlockStreamer:
    """Moves the blocks of one block list to ``device`` one at a time, one block ahead (see the module doc).

    ``moves`` records ``("load", i)`` / ``("unload", i)`` in order (for tests and benchmarks).
    """

    def __init__(self, blocks: nn.ModuleList, device: torch.device | str, prefetch: bool = True):
        self.blocks = blocks
        self.device = torch.device(device)
        self.prefetch = prefetch
        self.cuda = self.device.type == "cuda"
        self.stream = torch.cuda.Stream(self.device) if self.cuda else None
        self.slots = [_slots(block) for block in blocks]
        self.copies: dict[int, tuple[list[torch.Tensor], object]] = {}  # loaded, not yet in use
        self.homes: dict[int, list[torch.Tensor]] = {}  # in use: the home tensors to put back
        self.moves: list[tuple[str, int]] = []
        if self.cuda:
            self._pin()

    def _pin(self) -> None:
        """Page-locked home memory: the host-to-device copies can run asynchronously on the side stream."""
        for slots in self.slots:
            for module, name, is_parameter in slots:
                tensor = _get(module, name, is_parameter)
                if tensor.device.type == "cpu" and not tensor.is_pinned():
                    _set(module, name, is_parameter, tensor.pin_memory())

    def __len__(self) -> int:
        return len(self.blocks)

    def _load(self, index: int) -> None:
        if index in self.copies or index in self.homes:
            return
        context = torch.cuda.stream(self.stream) if self.cuda else nullcontext()
        with context:
            copies = [_get(*slot).to(self.device, non_blocking=True, copy=True) for slot in self.slots[index]]
            event = None
            if self.cuda:
                event = torch.cuda.Event()
                event.record(self.stream)
        self.copies[index] = (copies, event)
        self.moves.append(("load", index))

    def _use(self, index: int) -> None:
        if index in self.homes:
            return
        copies, event = self.copies.pop(index)
        if event is not None:
            current = torch.cuda.current_stream(self.device)
            current.wait_event(event)
            for tensor in copies:
                tensor.record_stream(current)  # the allocator must not reuse it before the compute is done
        self.homes[index] = [_get(*slot) for slot in self.slots[index]]
        for slot, tensor in zip(self.slots[index], copies):
            _set(*slot, tensor)

    def _unload(self, index: int) -> None:
        homes = self.homes.pop(index, None)
        if homes is not None:
            for slot, tensor in zip(self.slots[index], homes):
                _set(*slot, tensor)
        self.copies.pop(index, None)
        self.moves.append(("unload", index))

    def block(self, index: int) -> nn.Module:
        """Block ``index`` with its weights on the device; drops the blocks before it, prefetches the next."""
        for other in [i for i in (*self.homes, *self.copies) if i < index]:
            self._unload(other)
        self._load(index)
        self._use(index)
        if self.prefetch and index + 1 < len(self.blocks):
            self._load(index + 1)
        return self.blocks[index]

    def finish(self) -> None:
        """Every block back home (after each forward)."""
        for index in sorted({*self.homes, *self.copies}):
            self._unload(index)

    def sequence(self) -> "StreamedBlocks":
        return StreamedBlocks(self)


class StreamedBlocks:
    """What a :class:`~.dit.BlockStack` indexes instead of the block list when streaming: ``blocks[i]``."""

    def __init__(self, streamer: BlockStreamer):
        self.streamer = streamer

    def __len__(self) -> int:
        return len(self.streamer)

    def __getitem__(self, index: int) -> nn.Module:
        return self.streamer.block(index)


def enable_block_streaming(model: nn.Module, device: torch.device | str, prefetch: bool = True) -> BlockStreamer:
    """Put everything of ``model`` but its blocks on ``device``, the blocks on the CPU, and stream them."""
    device = torch.device(device)
    for name, child in model.named_children():
        child.to("cpu" if name == "blocks" else device)
    for name, parameter in model._parameters.items():
        if parameter is not None:
            parameter.data = parameter.data.to(device)
    streamer = BlockStreamer(model.blocks, device, prefetch)
    model.set_block_streaming(streamer)
    return streamer
