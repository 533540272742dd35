"""The block-run hook's cost: ``WanDiT.forward`` (blocks run by the default runner,
``plain_blocks``) against the same forward with the block loop written inline, as it was
before the hook, on one model with one set of inputs, in this process.

    python3 bench/block_runner_overhead.py [--layers 4] [--latent 4x16x16] [--runs 15]

Forwards alternate (new, old, new, ...) so load from other processes slows both alike; prints
the median of each, their ratio (new / old) and the max abs difference of the outputs (0: the
same arithmetic). Runs on the CPU in under a minute; ``--device cuda`` on a GPU.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def inline_forward(model, x, t, context, clip_fea=None, y=None, ext=None, on_block=None):
    """``WanDiT.forward`` before the block-run hook: the block loop inline (the reference for the ratio)."""
    import torch
    from poseanimate.models.wan.dit import AdapterContext, DiTExtensions

    ext = ext or DiTExtensions()
    cdt = model.compute_dtype
    t = model._check_inputs(x, t, context, clip_fea, y)
    if y is not None:
        x = torch.cat([x, y.to(x.dtype)], dim=1)
    tokens = model.patch_embedding(x.to(cdt)).float()
    grid = tuple(tokens.shape[2:])
    tokens = tokens.flatten(2).transpose(1, 2)
    batch, n_video = tokens.shape[:2]
    for i, added in enumerate(ext.added_tokens):
        tokens = tokens + model._check_added(i, added, batch, n_video).to(tokens.device)
    extras = [model._check_extra(i, extra, batch) for i, extra in enumerate(ext.extra_tokens)]
    rope = model._rope(grid, extras, tokens.device)
    if extras:
        tokens = torch.cat([tokens] + [e.tokens.to(tokens.device, torch.float32).expand(batch, -1, -1)
                                       for e in extras], dim=1)
    time_mod = model._time_modulation(t, extras, n_video, tokens.device)
    text = model._embed_text(context.to(tokens.device)).expand(batch, -1, -1)
    image = model.img_emb(clip_fea.to(tokens.device, cdt)) if clip_fea is not None else None
    for index, block in enumerate(model.blocks):
        if on_block is not None:
            on_block(index)
        tokens = block(tokens, time_mod, rope, text, image, model.attention, cdt)
        for adapter in ext.block_adapters.get(index, ()):
            tokens = adapter(tokens, AdapterContext(index, grid, n_video, cdt))
    out = model.head(tokens[:, :n_video], time_mod.select(n_video), cdt)
    return model.unpatchify(out, grid)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--latent", default="4x16x16", help="FxHxW")
    p.add_argument("--runs", type=int, default=15)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int)
    args = p.parse_args()

    sys.path.insert(0, str(REPO_ROOT))
    import standalone
    standalone.load_pack()
    import torch
    from poseanimate.models.wan.config import WanDiTConfig
    from poseanimate.models.wan.dit import WanDiT

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    config = WanDiTConfig(dim=args.dim, num_heads=args.heads, num_layers=args.layers, ffn_dim=3 * args.dim,
                          in_dim=36, out_dim=16, image_embed_dim=None)
    torch.manual_seed(0)
    model = WanDiT(config, device=device).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0, 0.02)
    f, h, w = (int(v) for v in args.latent.split("x"))
    g = torch.Generator().manual_seed(1)
    inputs = dict(x=torch.randn(1, 16, f, h, w, generator=g).to(device), t=torch.tensor([731.0], device=device),
                  context=torch.randn(1, 64, config.text_dim, generator=g).to(device),
                  y=torch.randn(1, 20, f, h, w, generator=g).to(device), on_block=lambda i: None)

    def timed(forward) -> tuple[float, torch.Tensor]:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        with torch.no_grad():
            out = forward(**inputs)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start, out

    new = lambda **kw: model(**kw)  # noqa: E731
    old = lambda **kw: inline_forward(model, **kw)  # noqa: E731
    for _ in range(args.warmup):
        timed(new), timed(old)
    times = {"hook": [], "inline": []}
    for _ in range(args.runs):
        dt, out_new = timed(new)
        times["hook"].append(dt)
        dt, out_old = timed(old)
        times["inline"].append(dt)
    hook, inline = statistics.median(times["hook"]), statistics.median(times["inline"])
    print(f"latent {args.latent}, {args.layers} blocks of {args.dim}, {device}: "
          f"hook {hook * 1e3:.1f} ms, inline {inline * 1e3:.1f} ms, ratio {hook / inline:.3f}, "
          f"max |diff| {(out_new - out_old).abs().max().item():.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
