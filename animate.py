"""The main job: load a Wan DiT (and LoRAs), sample a video latent, save it.

    python animate.py                      # tiny random-weight models, no downloads
    python animate.py --dit path/to/wan2.1_i2v_480p_14B_fp16.safetensors --embeddings emb.safetensors

Without ``--dit`` it writes tiny random-weight model files under the real file
names into a temporary models folder and runs the real loaders and sampler on
them, saying so plainly: the result has the right shape, not a picture.
``--embeddings`` is a .safetensors file with ``context`` [1, L, 4096] (umT5),
optional ``negative_context``, ``clip_fea`` [1, 257, 1280] and ``y`` (the I2V
condition latent), e.g. saved from ComfyUI's text and CLIP vision encoders.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import standalone  # noqa: E402

sys.path.pop(0)
standalone.load_pack()

from poseanimate.errors import InputError  # noqa: E402
from poseanimate.models.checkpoint import load_wan_dit  # noqa: E402
from poseanimate.models.lora import load_lora, merge_loras  # noqa: E402
from poseanimate.models.tiny import save_comfy_single_file, tiny_wan_state_dict  # noqa: E402
from poseanimate.sampling.guidance import Guidance  # noqa: E402
from poseanimate.sampling.loop import make_noise, sample  # noqa: E402
from poseanimate.sampling.schedulers import SCHEDULER_NAMES, make_scheduler  # noqa: E402
from poseanimate.sampling.wan_denoiser import WanCond, WanDenoiser  # noqa: E402

REAL_DIT_NAME = "wan2.1_i2v_480p_14B_fp16.safetensors"
TINY_LORA_NAME = "tiny_random_lora.safetensors"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dit", help="Wan DiT file or folder (official shards, Comfy-Org single file, diffusers)")
    p.add_argument("--lora", action="append", default=[], metavar="FILE[:STRENGTH]", help="LoRA to merge (repeatable)")
    p.add_argument("--embeddings", help=".safetensors with context / negative_context / clip_fea / y")
    p.add_argument("--frames", type=int, help="pixel frames, 4k+1 (default 81; tiny mode 9)")
    p.add_argument("--height", type=int, help="pixel height, multiple of 16 (default 480; tiny mode 64)")
    p.add_argument("--width", type=int, help="pixel width, multiple of 16 (default 832; tiny mode 96)")
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--cfg", type=float, default=1.5)
    p.add_argument("--shift", type=float, default=5.0)
    p.add_argument("--sampler", choices=SCHEDULER_NAMES, default="unipc")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="output/animate_latent.safetensors", help="where the latent is saved")
    return p.parse_args(argv)


def write_tiny_models(root: Path) -> tuple[Path, Path]:
    """A tiny random I2V DiT under the real file name, and a PEFT-style LoRA for it."""
    from safetensors.torch import save_file

    dit_path = root / "diffusion_models" / REAL_DIT_NAME
    dit_path.parent.mkdir(parents=True)
    state = tiny_wan_state_dict("i2v", seed=0)
    save_comfy_single_file(state, dit_path, prefix=True, dtype=torch.float16, num_heads=2)
    g = torch.Generator().manual_seed(1)
    lora = {}
    for i in range(2):
        for proj in ("q", "k", "v", "o"):
            w = state[f"blocks.{i}.self_attn.{proj}.weight"]
            lora[f"diffusion_model.blocks.{i}.self_attn.{proj}.lora_A.weight"] = torch.randn(4, w.shape[1], generator=g) * 0.05
            lora[f"diffusion_model.blocks.{i}.self_attn.{proj}.lora_B.weight"] = torch.randn(w.shape[0], 4, generator=g) * 0.05
    lora_path = root / "loras" / TINY_LORA_NAME
    lora_path.parent.mkdir(parents=True)
    save_file(lora, str(lora_path))
    return dit_path, lora_path


def latent_shape(frames: int, height: int, width: int) -> tuple[int, int, int]:
    if frames < 1 or (frames - 1) % 4:
        nearest = max(1, round((frames - 1) / 4) * 4 + 1)
        raise InputError("--frames", f"{frames} is not of the form 4k+1", f"a count like {nearest}")
    for name, size in (("--height", height), ("--width", width)):
        if size < 16 or size % 16:
            raise InputError(name, f"{size} is not a multiple of 16", f"{max(16, round(size / 16) * 16)}")
    return 1 + (frames - 1) // 4, height // 8, width // 8


def conditioning(config, shape: tuple[int, int, int], embeddings: str | None, seed: int) -> tuple[WanCond, WanCond]:
    """Positive and negative conditioning: from the file, or random stand-ins of the model's widths."""
    if embeddings:
        from safetensors.torch import load_file
        t = load_file(embeddings)
        if "context" not in t:
            raise InputError(f"--embeddings '{embeddings}'", "has no 'context' tensor", "umT5 embeddings under 'context'")
        negative = t.get("negative_context", torch.zeros_like(t["context"][:, :1]))
        y = t.get("y")
        clip = t.get("clip_fea")
    else:
        g = torch.Generator().manual_seed(seed + 1)
        t = {"context": torch.randn(1, 12, config.text_dim, generator=g)}
        negative = torch.zeros(1, 1, config.text_dim)
        clip = torch.randn(1, 257, config.image_embed_dim, generator=g) if config.has_image_branch else None
        y = None
        if config.in_dim > config.out_dim:
            f, h, w = shape
            mask = torch.zeros(1, 4, f, h, w)
            mask[:, :, 0] = 1.0
            y = torch.cat([mask, torch.randn(1, config.in_dim - config.out_dim - 4, f, h, w, generator=g)], dim=1)
    return WanCond(t["context"], clip, y), WanCond(negative, clip, y)


def save_latent(latent: torch.Tensor, out: Path, metadata: dict[str, str]) -> None:
    """Write atomically: a half-written file never takes the output's name."""
    from safetensors.torch import save_file
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, suffix=".partial")
    os.close(fd)
    try:
        save_file({"latent": latent.contiguous()}, tmp, metadata=metadata)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tiny = args.dit is None
    workdir = tempfile.TemporaryDirectory(prefix="poseanimate-tiny-") if tiny else None
    try:
        if tiny:
            print("NOTE: no --dit given: using TINY RANDOM-WEIGHT models written under the real file names "
                  "(the output has the right shape and runs the real code, but it is not an animation).")
            dit_path, lora_path = write_tiny_models(Path(workdir.name))
            loras = [f"{lora_path}:1.0"] + args.lora
            frames, height, width = args.frames or 9, args.height or 64, args.width or 96
        else:
            dit_path, loras = Path(args.dit), args.lora
            frames, height, width = args.frames or 81, args.height or 480, args.width or 832
        shape = latent_shape(frames, height, width)
        model, info = load_wan_dit(dit_path)
        print(f"DiT: {info.config.kind}, {info.config.num_layers} blocks, dim {info.config.dim}, "
              f"layout {info.layout}, compute {str(info.compute_dtype).replace('torch.', '')} ({dit_path.name})")
        resolved = []
        for spec in loras:
            path, _, strength = spec.partition(":") if not os.path.exists(spec) else (spec, "", "")
            lora = load_lora(path, model)
            resolved.append((lora, float(strength or 1.0)))
            print(f"LoRA: {Path(path).name} strength {float(strength or 1.0)}: {len(lora.updates)} weights")
        merged = merge_loras(model, resolved) if resolved else None
        positive, negative = conditioning(info.config, shape, args.embeddings, args.seed)
        scheduler = make_scheduler(args.sampler, args.steps, args.shift)
        noise = make_noise((1, info.config.out_dim, *shape), args.seed)
        started = time.perf_counter()
        latent = sample(WanDenoiser(model), noise, scheduler, Guidance(positive, negative, args.cfg),
                        progress=lambda done, total: print(f"  step {done}/{total}", flush=True))
        elapsed = time.perf_counter() - started
        if merged is not None:
            merged.restore()
        out = Path(args.out)
        save_latent(latent, out, {"tiny_random_weights": str(tiny), "frames": str(frames), "seed": str(args.seed)})
        print(f"latent {tuple(latent.shape)} for {frames} frames at {width}x{height}: mean {latent.mean():.4f}, "
              f"std {latent.std():.4f}, finite {bool(torch.isfinite(latent).all())}; {elapsed:.1f} s; saved to {out}")
        if tiny:
            print("NOTE: these were tiny random-weight models; point --dit at real files for a real animation.")
        return 0
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        if workdir is not None:
            workdir.cleanup()


if __name__ == "__main__":
    sys.exit(main())
