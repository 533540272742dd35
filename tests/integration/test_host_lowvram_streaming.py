"""Inside ComfyUI the host streams the pack's DiT in low-VRAM mode (partial loading), it does not load it whole.

In ``--lowvram`` (or when the model does not fit) ComfyUI's ``load_models_gpu`` calls the model's
``ModelPatcher.load(device, lowvram_model_memory=<budget>)``: layers that fit the budget are moved to the GPU,
the others stay on the offload device with ``comfy_cast_weights`` on, so each weight is cast to the GPU at the
moment its layer runs. A CPU-only host never takes that path (its device state loads every model whole), so
the probe calls the same ``load`` with a budget of 90 % of the model, as ``load_models_gpu`` does in
low-VRAM mode on a GPU, and checks the host's own counters: the model is marked low-VRAM, the loaded size is
below the model size, the blocks' layers stream (cast at run time), and the forward gives the whole-load result.
"""

_PROBE = """
    import torch
    import comfy.model_management as mm
    from poseanimate.nodes.dit_loaders import PoseAnimateDiTLoader
    from poseanimate.tiny_models.model_files import DIT_FILE

    (dit,) = PoseAnimateDiTLoader().load(DIT_FILE, "fp32", "fp32", "sdpa")
    patcher = dit.managed
    model = patcher.model
    g = torch.Generator().manual_seed(0)
    cfg = model.config
    x = torch.randn(1, 16, 2, 4, 4, generator=g)
    t = torch.tensor([500.0])
    context = torch.randn(1, 6, cfg.text_dim, generator=g)
    extra = {}
    if cfg.in_dim > 16:
        extra["y"] = torch.randn(1, cfg.in_dim - 16, 2, 4, 4, generator=g)
    if cfg.has_image_branch:
        extra["clip_fea"] = torch.randn(1, 257, cfg.image_embed_dim, generator=g)

    mm.load_models_gpu([patcher])
    with torch.no_grad():
        whole = model(x, t, context, **extra)
    whole_state = {"lowvram": bool(getattr(model, "model_lowvram", False)), "loaded": patcher.loaded_size(),
                   "size": patcher.model_size()}
    mm.unload_all_models()
    patcher.detach()

    budget = patcher.model_size() * 9 // 10  # the tiny model is mostly its 1280x1280 CLIP projection
    patcher.load(torch.device("cpu"), lowvram_model_memory=budget)
    block_layers = [m for m in model.blocks.modules() if hasattr(m, "comfy_cast_weights")]
    streamed = [m for m in block_layers if m.comfy_cast_weights]
    with torch.no_grad():
        partial = model(x, t, context, **extra)
    print("PROBE" + json.dumps({
        "patcher": type(patcher).__name__, "whole": whole_state, "budget": budget,
        "lowvram": bool(model.model_lowvram), "loaded": patcher.loaded_size(), "size": patcher.model_size(),
        "block_layers": len(block_layers), "streamed_layers": len(streamed),
        "max_diff": float((partial - whole).abs().max()),
    }))
"""


def test_host_streams_the_pack_dit_in_lowvram_mode(host_probe, comfy_base):
    from poseanimate.tiny_models.model_files import write_tiny_model_files
    write_tiny_model_files(comfy_base / "models", text_dim=4096, clip_dim=1280)
    out = host_probe(_PROBE)
    print(out)
    assert out["patcher"] == "ModelPatcher"
    assert not out["whole"]["lowvram"] and out["whole"]["loaded"] == out["whole"]["size"]  # the CPU host: whole
    assert out["lowvram"] and 0 < out["loaded"] <= out["budget"] < out["size"]
    assert 0 < out["streamed_layers"] < out["block_layers"]  # some blocks' layers on the device, some streamed
    assert out["max_diff"] == 0.0
