"""Animate-2's pose-branch cache: time per sampling step with the cache against without it, in one process.

    python3 bench/animate2_pose_cache.py [--dim 256] [--layers 8] [--latent 5x16x16] [--steps 6] [--cfg 1]
                                         [--device cpu|cuda] [--dtype fp32|bf16]

One random-weight Wan 2.1 I2V-shaped DiT (the Animate-2 layout), one chunk: ``--latent`` FxHxW generated latent
frames after the reference slot (the pose stream has as many). Each storage (none, float32, bfloat16, int8)
samples the same chunk with ``sample_video``; the first step of a cached run fills the cache, so the
per-step figure is the median of the steps after it. Runs are interleaved (none, float32, ..., none, ...)
over ``--repeats`` so load from other processes slows all alike. Prints the median step time of each, its
ratio to the uncached run, the pose-branch blocks run in full per run (the work the cache saves, a count that
load from other processes cannot blur), the cache's size, and the final latent's max relative error to the
uncached run.

The ideal ratio: the pose branch is a second block stack over ``F`` frames beside the generation's ``F + 1``,
so without the cache a step runs about ``(2F + 1) / (F + 1)`` stacks' worth of blocks (plus the per-frame
attention); with it about ``1 + 1/10`` of the pose stack (its K/V re-projected). The per-frame attention loop
is the same in both.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
STORAGES = ("none", "float32", "bfloat16", "int8")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--latent", default="5x16x16", help="FxHxW latent frames after the reference slot")
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--cfg", type=float, default=1.0)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="fp32", choices=("fp32", "bf16"))
    p.add_argument("--threads", type=int)
    args = p.parse_args()

    sys.path.insert(0, str(REPO_ROOT))
    import standalone
    standalone.load_pack()
    import torch
    from poseanimate.methods.animate2 import PoseBranchCache
    from poseanimate.methods.animate2.conditioning import build_animate2_conditioning
    from poseanimate.models.wan.config import WanDiTConfig
    from poseanimate.models.wan.dit import WanDiT
    from poseanimate.sampling.schedulers import make_scheduler
    from poseanimate.sampling.video import sample_video

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    config = WanDiTConfig(dim=args.dim, num_heads=args.heads, num_layers=args.layers, ffn_dim=3 * args.dim,
                          text_dim=64, image_embed_dim=64)
    torch.manual_seed(0)
    model = WanDiT(config).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0, 0.02)
    model = model.to(device, dtype)
    model.compute_dtype = dtype
    f, h, w = (int(v) for v in args.latent.split("x"))
    g = torch.Generator().manual_seed(1)
    inputs = dict(y=torch.randn(1, 20, f + 1, h, w, generator=g), pose_latents=torch.randn(1, 16, f, h, w, generator=g),
                  context=torch.randn(1, 16, 64, generator=g), negative_context=torch.randn(1, 8, 64, generator=g),
                  clip_fea=torch.randn(1, 257, 64, generator=g))
    scheduler = make_scheduler("euler", args.steps, 5.0)

    forwards = args.steps * (2 if args.cfg != 1.0 else 1)

    def run(storage: str) -> tuple[list[float], torch.Tensor, int]:
        cache = None if storage == "none" else PoseBranchCache(storage, "cpu")
        cond = build_animate2_conditioning(model, cache=cache, **inputs)
        stamps = [time.perf_counter()]

        def progress(done: int, total: int) -> None:
            if device.type == "cuda":
                torch.cuda.synchronize()
            stamps.append(time.perf_counter())
        out = sample_video(model, cond, scheduler, args.cfg, seed=3, progress=progress)
        size = 0 if cache is None else cache.memory_bytes()
        cond.clear_cache()
        return [b - a for a, b in zip(stamps, stamps[1:])], out, size

    times: dict[str, list[float]] = {s: [] for s in STORAGES}
    outs, sizes = {}, {}
    run("float32")  # warm-up
    for _ in range(args.repeats):
        for storage in STORAGES:
            steps, out, size = run(storage)
            times[storage] += steps[1:]  # the first step fills the cache
            outs[storage], sizes[storage] = out, size
    base = statistics.median(times["none"])
    tokens = f * (h // 2) * (w // 2)
    print(f"Animate-2 pose cache: dim {args.dim}, {args.layers} blocks, latent {f + 1}x{h}x{w} (+ pose {f}x{h}x{w}, "
          f"{tokens} pose tokens), {args.steps} steps, cfg {args.cfg}, {args.device} {args.dtype}")
    print(f"{'storage':>9} {'step ms':>9} {'ratio':>7} {'pose blocks':>11} {'cache MB':>9} {'max rel err':>12}")
    for storage in STORAGES:
        median = statistics.median(times[storage])
        ref = outs["none"]
        err = ((outs[storage] - ref).abs().max() / ref.abs().max()).item()
        full = forwards * args.layers if storage == "none" else args.layers  # cached: the first forward only
        print(f"{storage:>9} {1000 * median:9.1f} {median / base:7.3f} {full:11d} {sizes[storage] / 2 ** 20:9.2f} "
              f"{err:12.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
