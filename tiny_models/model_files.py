"""A whole set of tiny random-weight model files under the real file names.

For the end-to-end tests (with and without ComfyUI) and for trying the
workflows on a machine without the real weights: the DiT, UniAnimate-DiT's
LoRA + pose encoders, RealisDance-DiT's transformer, Wan2.2-Animate with its
relighting LoRA, Wan2.2-Animate-2 (and its distilled variant), SteadyDancer (kijai's scaled-fp8 single
file), and the Wan 2.1 VAE, written in the formats users
download (Comfy-Org single-file safetensors, UniAnimate's flat torch .ckpt),
each under the name the README's model table gives. The videos they make
are noise; every code path they take is the real one.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch

from ..models.wan.vae import WanVAE, WanVAEConfig
from .wan_dit import save_comfy_single_file, tiny_wan_state_dict, wan_official_shapes

DIT_FILE = "wan2.1_i2v_480p_14B_fp16.safetensors"
UNIANIMATE_FILE = "UniAnimate-Wan2.1-14B-Lora-12000.ckpt"
VAE_FILE = "wan_2.1_vae.safetensors"
REALISDANCE_FILE = "realisdance_dit_14B_bf16.safetensors"  # a single-file repack of the released transformer
ANIMATE_FILE = "wan2.2_animate_14B_bf16.safetensors"
ANIMATE2_FILE = "wan_animate_2_bf16.safetensors"  # the official name (the distilled one adds _distillation)
ANIMATE2_DISTILLED_FILE = "wan_animate_2_bf16_distillation.safetensors"
ANIMATE2_COMFY_METADATA = {"config": '{"transformer": {"model_type": "animate2"}}'}  # what ComfyUI detects
RELIGHT_FILE = "WanAnimate_relight_lora_fp16.safetensors"
STEADYDANCER_FILE = "Wan21_SteadyDancer_fp8_e4m3fn_scaled_KJ.safetensors"  # kijai's single-file repack
LORA_RANK = 4


def unianimate_state_dict(dim: int = 64, num_layers: int = 2, ffn_dim: int = 128, seed: int = 0,
                          **widths) -> dict[str, torch.Tensor]:
    """UniAnimate-DiT's released layout (``pipe.dit.blocks...lora_{A,B}.default.weight`` and the two
    encoders at the top level) for a tiny I2V DiT; LoRA updates and encoder outputs kept small."""
    from ..methods.unianimate.encoders import expected_shapes

    g = torch.Generator().manual_seed(seed)
    shapes = wan_official_shapes("i2v", dim=dim, num_layers=num_layers, ffn_dim=ffn_dim, **widths)
    state: dict[str, torch.Tensor] = {}
    for i in range(num_layers):
        targets = [f"blocks.{i}.{a}.{p}" for a in ("self_attn", "cross_attn") for p in "qkvo"]
        for target in targets + [f"blocks.{i}.ffn.0", f"blocks.{i}.ffn.2"]:
            out_f, in_f = shapes[f"{target}.weight"]
            down = torch.randn(LORA_RANK, in_f, generator=g) / math.sqrt(in_f)
            state[f"pipe.dit.{target}.lora_A.default.weight"] = down
            state[f"pipe.dit.{target}.lora_B.default.weight"] = 0.05 * torch.randn(out_f, LORA_RANK, generator=g)
    for key, shape in expected_shapes(dim).items():
        fan_in = math.prod(shape[1:]) if len(shape) > 1 else 1
        scale = 1.0 / math.sqrt(fan_in) if len(shape) > 1 else 0.02
        state[key] = scale * torch.randn(shape, generator=g)
    return state


def steadydancer_modules_state_dict(dim: int = 64, seed: int = 0) -> dict[str, torch.Tensor]:
    """SteadyDancer's tensors beside the plain DiT (``patch_embedding_fuse``, ``patch_embedding_ref_c``, the
    ``condition_embedding_*`` modules) for a tiny I2V DiT of width ``dim``, at their released widths."""
    from ..methods.steadydancer.layers import EXTRA_PREFIXES, SteadyDancerLayers

    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, p in SteadyDancerLayers(dim, device="meta").state_dict().items():
        if not key.startswith(EXTRA_PREFIXES):
            continue
        if ".bn" in key or "norm" in key:
            value = (1.0 if key.endswith("weight") else 0.0) + 0.1 * torch.randn(p.shape, generator=g)
        elif p.dim() >= 2:
            value = torch.randn(p.shape, generator=g) / math.sqrt(p[0].numel())
        else:
            value = 0.02 * torch.randn(p.shape, generator=g)
        state[key] = value
    return state


def realisdance_layers_state_dict(dim: int = 64, seed: int = 0) -> dict[str, torch.Tensor]:
    """RealisDance-DiT's three extra layers (``add_conv_in``, ``add_proj``, ``attn_conv_in``) for a tiny DiT."""
    g = torch.Generator().manual_seed(seed)
    shapes = {"add_conv_in.weight": (dim, 32, 1, 2, 2), "add_conv_in.bias": (dim,),
              "add_proj.weight": (dim, dim), "add_proj.bias": (dim,),
              "attn_conv_in.weight": (dim, 16, 1, 2, 2), "attn_conv_in.bias": (dim,)}
    return {k: (torch.randn(s, generator=g) / math.sqrt(math.prod(s[1:])) if len(s) > 1 else
                0.02 * torch.randn(s, generator=g)) for k, s in shapes.items()}


def animate_modules_state_dict(dim: int = 64, num_heads: int = 2, num_layers: int = 2,
                               seed: int = 0) -> dict[str, torch.Tensor]:
    """Wan2.2-Animate's modules (pose embedding, motion encoder on 16-px faces, face encoder, face blocks)
    under the official names, random and small, for a tiny DiT of ``num_layers`` blocks."""
    from ..methods.wan_animate.face import ADAPTER_EVERY
    from ..methods.wan_animate.modules import AnimateConfig, AnimateModules
    from ..methods.wan_animate.motion import MotionEncoderConfig

    config = AnimateConfig(dim=dim, num_heads=num_heads, adapters=(num_layers - 1) // ADAPTER_EVERY + 1,
                           face_width=16, motion=MotionEncoderConfig(size=16, widths=(16, 16, 16)))
    modules = AnimateModules(config, device="meta")
    g = torch.Generator().manual_seed(seed)
    state = {}
    for name, p in modules.state_dict().items():
        if name.endswith("kernel"):
            continue  # the fixed blur kernels: the loader fills them in
        elif p.dim() >= 2:
            state[name] = 0.5 * torch.randn(p.shape, generator=g) / math.sqrt(p[0].numel())
        elif "norm" in name:
            state[name] = 1.0 + 0.1 * torch.randn(p.shape, generator=g)
        else:  # biases (some modules leave them uninitialised)
            state[name] = 0.02 * torch.randn(p.shape, generator=g)
    return state


def relight_lora_state_dict(num_layers: int = 2, dim: int = 64, ffn_dim: int = 128, rank: int = 4,
                            seed: int = 0) -> dict[str, torch.Tensor]:
    """A relighting LoRA in the fp16 single-file layout: every attention and FFN Linear of every block."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for i in range(num_layers):
        targets = [(f"self_attn.{p}", dim, dim) for p in "qkvo"]
        targets += [(f"cross_attn.{p}", dim, dim) for p in ("q", "k", "v", "o", "k_img", "v_img")]
        targets += [("ffn.0", dim, ffn_dim), ("ffn.2", ffn_dim, dim)]
        for module, fan_in, fan_out in targets:
            key = f"diffusion_model.blocks.{i}.{module}"
            state[f"{key}.lora_down.weight"] = torch.randn(rank, fan_in, generator=g) / math.sqrt(fan_in)
            state[f"{key}.lora_up.weight"] = 0.05 * torch.randn(fan_out, rank, generator=g)
    return state


def vae_state_dict(dim: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    """A Wan 2.1 VAE with random weights that keep activations in range (``dim`` 96 is the real size)."""
    g = torch.Generator().manual_seed(seed)
    model = WanVAE(WanVAEConfig(dim=dim))
    state = {}
    for name, p in model.state_dict().items():
        if name.endswith("gamma"):
            value = 1 + 0.1 * torch.randn(p.shape, generator=g)
        elif p.dim() >= 2:
            value = torch.randn(p.shape, generator=g) / math.sqrt(p[0].numel())
        else:
            value = 0.05 * torch.randn(p.shape, generator=g)
        if ".residual.6." in name or name.endswith("proj.weight"):
            value = value * 0.1
        state[name] = value
    return state


def write_tiny_model_files(models_dir: str | Path, text_dim: int = 32, clip_dim: int = 32, vae_dim: int = 4,
                           seed: int = 0) -> dict[str, Path]:
    """Write the DiT, UniAnimate, RealisDance, Wan2.2-Animate (+ relighting LoRA), SteadyDancer and VAE files into
    ``models_dir``'s ComfyUI sub-folders; their paths.

    ``text_dim``/``clip_dim``: the DiT's text and CLIP widths (4096 and 1280
    take the host's real encoder outputs); ``vae_dim`` 96 writes a VAE of the
    real size, which the host's own VAE loader requires.
    """
    from safetensors.torch import save_file

    root = Path(models_dir)
    paths = {"dit": root / "diffusion_models" / DIT_FILE, "unianimate": root / "loras" / UNIANIMATE_FILE,
             "vae": root / "vae" / VAE_FILE, "realisdance": root / "diffusion_models" / REALISDANCE_FILE,
             "animate": root / "diffusion_models" / ANIMATE_FILE, "relight": root / "loras" / RELIGHT_FILE,
             "animate2": root / "diffusion_models" / ANIMATE2_FILE,
             "animate2_distilled": root / "diffusion_models" / ANIMATE2_DISTILLED_FILE,
             "steadydancer": root / "diffusion_models" / STEADYDANCER_FILE}
    for path in paths.values():
        path.parent.mkdir(parents=True, exist_ok=True)
    widths = {"text_dim": text_dim, "clip_dim": clip_dim}
    dit_state = tiny_wan_state_dict("i2v", seed=seed, **widths)
    save_comfy_single_file(dit_state, paths["dit"], dtype=torch.float16, num_heads=2)
    save_comfy_single_file({**dit_state, **realisdance_layers_state_dict(seed=seed + 3)}, paths["realisdance"],
                           prefix=False, dtype=torch.bfloat16, num_heads=2)
    save_comfy_single_file({**dit_state, **animate_modules_state_dict(seed=seed + 4)}, paths["animate"],
                           dtype=torch.bfloat16, num_heads=2)
    for key in ("animate2", "animate2_distilled"):  # Animate-2 is the plain I2V layout: its own weights, same shapes
        save_comfy_single_file(tiny_wan_state_dict("i2v", seed=seed + 6, **widths), paths[key], prefix=False,
                               dtype=torch.bfloat16, num_heads=2)
    save_comfy_single_file({**dit_state, **steadydancer_modules_state_dict(seed=seed + 6)}, paths["steadydancer"],
                           prefix=False, scaled_fp8=torch.float8_e4m3fn, num_heads=2)
    save_file({k: v.to(torch.float16).contiguous() for k, v in relight_lora_state_dict(seed=seed + 5).items()},
              str(paths["relight"]))
    torch.save(unianimate_state_dict(seed=seed + 1, **widths), paths["unianimate"])
    save_file({k: v.to(torch.float16).contiguous() for k, v in vae_state_dict(vae_dim, seed + 2).items()},
              str(paths["vae"]))
    return paths


POSE_FOLDER = "poseanimate_pose"
TINY_POSE_FILES = {"yolox.onnx": "yolox_l.onnx", "rtmpose.onnx": "dw-ll_ucoco_384.onnx"}
"""The prebuilt tiny DWPose stand-ins in ``tiny_models/pose/`` (built by ``pose_models.py``) -> the real names."""


def copy_tiny_pose_models(models_dir: str | Path) -> dict[str, Path]:
    """Put the tiny DWPose stand-ins under the real file names into ``models_dir``/poseanimate_pose (no
    ``onnx`` package needed: the files are prebuilt); their paths by real name."""
    import shutil

    folder = Path(models_dir) / POSE_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    source = Path(__file__).with_name("pose")
    return {real: Path(shutil.copyfile(source / tiny, folder / real)) for tiny, real in TINY_POSE_FILES.items()}
