"""Block streaming on the CPU: the same output as the resident model, blocks moved one at a time, one ahead,
every block back home after each forward; with a step cache a cached forward moves nothing."""
from __future__ import annotations

import torch

from poseanimate.models.wan.block_streaming import BlockStreamer, enable_block_streaming
from poseanimate.models.wan.config import infer_config
from poseanimate.models.wan.dit import WanDiT
from poseanimate.tiny_models.wan_dit import tiny_wan_state_dict


def _model(layers: int = 4) -> WanDiT:
    state = tiny_wan_state_dict("i2v", num_layers=layers)
    model = WanDiT(infer_config(state)).eval()
    model.load_state_dict(state)
    return model


def _inputs(model):
    g = torch.Generator().manual_seed(0)
    cfg = model.config
    return (torch.randn(1, 16, 2, 4, 4, generator=g), torch.tensor([600.0]),
            torch.randn(1, 6, cfg.text_dim, generator=g)), dict(
        clip_fea=torch.randn(1, 257, cfg.image_embed_dim, generator=g),
        y=torch.randn(1, cfg.in_dim - 16, 2, 4, 4, generator=g))


def _home_pointers(model):
    return [[p.data_ptr() for p in block.parameters()] for block in model.blocks]


def test_streamed_forward_equals_resident_and_moves_one_block_at_a_time():
    model = _model()
    args, kwargs = _inputs(model)
    with torch.no_grad():
        resident = model(*args, **kwargs)
    home = _home_pointers(model)
    streamer = enable_block_streaming(model, "cpu")  # "cpu" to "cpu": real copies, as to a GPU
    on_device_during = []

    def record(index):
        def hook(_module, _inputs):
            now = _home_pointers(model)
            on_device_during.append([i for i, (a, b) in enumerate(zip(now, home)) if a != b])
        return hook
    handles = [block.register_forward_pre_hook(record(i)) for i, block in enumerate(model.blocks)]
    with torch.no_grad():
        streamed = model(*args, **kwargs)
    for handle in handles:
        handle.remove()
    assert torch.equal(streamed, resident)
    # while block i runs only block i holds device copies (block i + 1's copy is loaded, not yet swapped in)
    assert on_device_during == [[0], [1], [2], [3]]
    assert streamer.moves == [("load", 0), ("load", 1), ("unload", 0), ("load", 2), ("unload", 1), ("load", 3),
                              ("unload", 2), ("unload", 3)]
    assert _home_pointers(model) == home and not streamer.homes and not streamer.copies


def test_cached_forwards_move_no_block_and_lora_style_edits_between_forwards_are_streamed():
    model = _model(layers=2)
    args, kwargs = _inputs(model)
    streamer = enable_block_streaming(model, "cpu")
    residual = {}

    def first_call_only(stack, tokens):  # a step cache that computes once, then reuses the residual
        if "r" in residual:
            return tokens + residual["r"]
        out = stack.run(tokens)
        residual["r"] = out - tokens
        return out
    with torch.no_grad():
        for _ in range(3):
            model(*args, runner=first_call_only, **kwargs)
    assert len(streamer.moves) == 4  # two blocks in and out once: the two cached forwards moved nothing
    with torch.no_grad():
        model.blocks[1].ffn[2].weight.mul_(2.0)  # a merged LoRA changes the home weights in place
        streamed = model(*args, **kwargs)
        model.set_block_streaming(None)
        resident = model(*args, **kwargs)
    assert torch.equal(streamed, resident)


def test_no_prefetch_loads_each_block_when_asked():
    model = _model(layers=2)
    streamer = BlockStreamer(model.blocks, "cpu", prefetch=False)
    model.set_block_streaming(streamer)
    args, kwargs = _inputs(model)
    with torch.no_grad():
        model(*args, **kwargs)
    assert streamer.moves == [("load", 0), ("unload", 0), ("load", 1), ("unload", 1)]
