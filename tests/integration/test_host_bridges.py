"""The host's VAE, CONDITIONING and CLIP_VISION_OUTPUT objects into the pack's nodes, inside ComfyUI's python.

One probe process imports the real host, loads a real-size (random-weight)
Wan 2.1 VAE with the host's own VAELoader, makes CONDITIONING and
CLIP_VISION_OUTPUT objects of the host's types, feeds them to the UniAnimate
conditioning node, and compares every tensor with the core path (tensors in,
the pack's own VAE).
"""

from safetensors.torch import save_file


_PROBE = """
    import torch
    import comfy.clip_vision
    import nodes as host_nodes
    from poseanimate.host_types import HostVAE
    from poseanimate.methods.unianimate import build_unianimate_conditioning
    from poseanimate.tiny_models.model_files import DIT_FILE, UNIANIMATE_FILE, VAE_FILE
    from poseanimate.nodes.dit_loaders import PoseAnimateDiTLoader
    from poseanimate.nodes.unianimate_nodes import GRAY, PoseAnimateUniAnimateConditioning, PoseAnimateUniAnimateLoader
    from poseanimate.nodes.vae_nodes import PoseAnimateVAEDecode, PoseAnimateVAELoader

    (host_vae,) = host_nodes.VAELoader().load_vae(VAE_FILE)
    (pack_vae,) = PoseAnimateVAELoader().load(VAE_FILE, "fp32", 0, 8)
    (dit,) = PoseAnimateDiTLoader().load(DIT_FILE, "fp32", "fp32", "sdpa")
    dit, unianimate = PoseAnimateUniAnimateLoader().load(dit, UNIANIMATE_FILE, 1.0)

    g = torch.Generator().manual_seed(0)
    frames, h, w = 5, 32, 48
    reference = torch.rand(1, h, w, 3, generator=g)
    poses = torch.rand(frames, h, w, 3, generator=g)
    ref_pose = torch.rand(1, h, w, 3, generator=g)
    emb = torch.zeros(1, 512, 4096); emb[:, :6] = torch.randn(1, 6, 4096, generator=g)
    neg = torch.zeros(1, 512, 4096); neg[:, :3] = torch.randn(1, 3, 4096, generator=g)
    clip_out = comfy.clip_vision.Output()
    clip_out["penultimate_hidden_states"] = torch.randn(1, 257, 1280, generator=g)

    node = PoseAnimateUniAnimateConditioning()
    args = (reference, poses, ref_pose, frames, 1.0, 0.0, 1.0)
    (via_host,) = node.build(unianimate, host_vae, [[emb, {"pooled_output": None}]], [[neg, {}]], *args, clip_out)
    (via_pack,) = node.build(unianimate, pack_vae, [[emb, {"pooled_output": None}]], [[neg, {}]], *args, clip_out)
    vae_input = torch.full((frames, h, w, 3), GRAY); vae_input[0] = reference[0]
    core = build_unianimate_conditioning(unianimate.encoders, pack_vae.encode(vae_input), ref_pose, poses, emb, neg,
                                         clip_out["penultimate_hidden_states"], frames=frames)

    def rel(a, b):
        return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))

    latent = torch.randn(1, 16, 2, h // 8, w // 8, generator=g)
    (img_host,) = PoseAnimateVAEDecode().decode({"samples": latent}, host_vae)
    (img_pack,) = PoseAnimateVAEDecode().decode({"samples": latent}, pack_vae)
    out = {
        "host_vae_type": type(host_vae).__module__ + "." + type(host_vae).__name__,
        "context_equal": bool(torch.equal(via_host.context, core.context)),
        "negative_equal": bool(torch.equal(via_host.negative_context, core.negative_context)),
        "clip_equal": bool(torch.equal(via_host.clip_fea, core.clip_fea)),
        "y_pack_equal": bool(torch.equal(via_pack.y, core.y)),
        "y_host_rel": rel(via_host.y, core.y),
        "decode_shape": list(img_host.shape),
        "decode_rel": rel(img_host, img_pack),
    }
    try:
        node.build(unianimate, host_vae, [[torch.randn(1, 77, 768), {}]], [[neg, {}]], *args, clip_out)
    except Exception as err:
        out["wrong_family"] = type(err).__name__ + ": " + str(err)
    print("PROBE" + json.dumps(out))
"""


def test_host_objects_give_the_core_tensors(host_probe, comfy_base):
    from poseanimate.tiny_models.model_files import VAE_FILE, vae_state_dict, write_tiny_model_files
    models = comfy_base / "models"
    write_tiny_model_files(models, text_dim=4096, clip_dim=1280)
    # the host's VAELoader builds the real-size Wan 2.1 VAE whatever the file holds: write one of that size
    save_file({k: v.contiguous() for k, v in vae_state_dict(dim=96, seed=4).items()}, str(models / "vae" / VAE_FILE))
    out = host_probe(_PROBE)
    print(out)
    assert out["host_vae_type"] == "comfy.sd.VAE"
    assert out["context_equal"] and out["negative_equal"] and out["clip_equal"]
    assert out["y_pack_equal"]
    # the host's VAE computes the same network in its own code: float32 on the CPU, rounding differences only
    assert out["y_host_rel"] < 1e-5, out  # measured 1.4e-7
    assert out["decode_shape"] == [5, 32, 48, 3]
    assert out["decode_rel"] < 1e-5, out  # measured 1.2e-6
    assert "positive" in out["wrong_family"] and "768" in out["wrong_family"], out
