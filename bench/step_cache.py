"""Step caching: block passes saved and the final latent's error against uncached sampling, per policy.

    python3 bench/step_cache.py [--dim 256] [--layers 8] [--latent 2x8x8] [--steps 20] [--cfg 5]

One small random-weight T2V DiT on the CPU (weights N(0, 0.02)), one prompt embedding, ``sample_video``
with Euler (shift 5) and CFG: first uncached, then each policy at a few thresholds with its default bounds,
in this process. Prints, per run: forwards and block passes skipped (and the saved ratio), wall time against
the same policy at threshold 0 run just before it (the same work as uncached, so load from other processes
affects both alike), and the final latent's relative error ``||x - x_ref|| / ||x_ref||``. A random model's
time embedding and residuals do not move like a trained one's, so the skip *pattern* here says little about
a real model's; the figures show the mechanics (saving = the skipped ratio, no overhead) and the error scale.
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

RUNS = [("teacache", (0.1, 0.2, 0.3)), ("magcache", (0.06, 0.12, 0.24)), ("easycache", (0.05, 0.1, 0.2))]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--latent", default="2x8x8", help="FxHxW")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--cfg", type=float, default=5.0)
    p.add_argument("--threads", type=int)
    args = p.parse_args()

    sys.path.insert(0, str(REPO_ROOT))
    import standalone
    standalone.load_pack()
    import torch
    from poseanimate.models.wan.config import WanDiTConfig
    from poseanimate.models.wan.dit import WanDiT
    from poseanimate.sampling.conditioning import VideoGeometry
    from poseanimate.sampling.schedulers import make_scheduler
    from poseanimate.sampling.step_cache import make_step_cache
    from poseanimate.sampling.video import sample_video
    from poseanimate.sampling.wan_denoiser import WanCond

    if args.threads:
        torch.set_num_threads(args.threads)
    config = WanDiTConfig(dim=args.dim, num_heads=args.heads, num_layers=args.layers, ffn_dim=3 * args.dim,
                          in_dim=16, out_dim=16, image_embed_dim=None)
    torch.manual_seed(0)
    model = WanDiT(config).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0, 0.02)
    f, h, w = (int(v) for v in args.latent.split("x"))
    g = torch.Generator().manual_seed(1)
    prompt, negative = torch.randn(1, 32, config.text_dim, generator=g), torch.zeros(1, 1, config.text_dim)

    @dataclass
    class Prompt:
        geometry: VideoGeometry

        def branch(self, positive, step, steps, window=None):
            return WanCond(context=prompt if positive else negative)

        def clear_cache(self):
            pass

    scheduler = make_scheduler("euler", args.steps, 5.0)
    quiet = dict(progress=lambda d, t: None, check_interrupt=lambda: None)

    def run(cache):
        start = time.perf_counter()
        out = sample_video(model, Prompt(VideoGeometry(f, h, w)), scheduler, args.cfg, 42, cache=cache, **quiet)
        return out, time.perf_counter() - start

    reference, ref_time = run(None)
    forwards = args.steps * (2 if args.cfg != 1.0 else 1)
    print(f"{platform.machine()} {platform.processor() or ''} torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; DiT dim {args.dim}, {args.layers} blocks, latent {f}x{h}x{w}, "
          f"{args.steps} euler steps, cfg {args.cfg}: {forwards} forwards, {forwards * args.layers} block passes")
    print(f"uncached: {ref_time:.2f} s")
    print("| policy | threshold | forwards skipped | block passes saved | time ratio | final latent rel. error |")
    print("|---|---|---|---|---|---|")
    for name, thresholds in RUNS:
        _, base_time = run(make_step_cache(name, 0.0))
        for threshold in (0.0, *thresholds):
            cache = make_step_cache(name, threshold)
            out, took = run(cache)
            if threshold == 0.0:
                base_time = took
            error = ((out - reference).norm() / reference.norm()).item()
            saved = cache.skipped_blocks / cache.total_blocks
            print(f"| {name} | {threshold} | {cache.skipped} / {cache.computed + cache.skipped} | "
                  f"{saved:.3f} | {took / base_time:.3f} | {error:.2e} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
