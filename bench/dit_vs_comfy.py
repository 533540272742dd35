"""Our Wan DiT against ComfyUI's native WanModel: same config, same weights.

Builds ``poseanimate.models.wan.dit.WanDiT`` and ComfyUI's
``comfy.ldm.wan.model.WanModel`` with one state dict in the official key
layout, checks that they predict the same flow, then times forward passes
(warm-up, median of N) and, on CUDA, peak memory. On CUDA one model is on the
device at a time (so the 14B shapes fit a single 80 GB GPU and each peak is
its own); on the CPU the two models' forwards alternate, so load from other
processes slows both alike.

    COMFYUI_ROOT=/path/to/ComfyUI /path/to/comfy-venv/bin/python bench/dit_vs_comfy.py
    ... --preset 14b --device cuda --dtype bf16 --kinds i2v --latents 21x60x104

Run it with the python of a venv that runs ComfyUI (tests/integration/
setup_host_venv.sh makes one). Without COMFYUI_ROOT it says so and exits 0.
Results and the machines they came from are in bench/README.md.
"""
from __future__ import annotations

import argparse
import gc
import math
import os
import platform
import statistics
import sys
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

PRESETS = {
    # Runs on 2 CPU cores in a few minutes; 128-wide heads like the real models.
    "cpu": dict(dim=512, num_heads=4, num_layers=4, ffn_dim=1536),
    # Wan 2.1/2.2 14B.
    "14b": dict(dim=5120, num_heads=40, num_layers=40, ffn_dim=13824),
}
DEFAULT_LATENTS = {"cpu": "4x16x16,8x30x52", "14b": "21x60x104"}  # 21x60x104: 81 frames at 480x832
KINDS = ("i2v", "i2v-noclip", "t2v")  # Wan 2.1 I2V (CLIP branch), Wan 2.2 I2V (no CLIP), T2V
TEXT_TOKENS = 64  # real prompt tokens; the rest of the 512 are zeros, as umT5 pads


@dataclass(frozen=True)
class Case:
    kind: str
    latent: tuple[int, int, int]  # F, H, W of the latent


# ---------------------------------------------------------------- set-up
def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    p.add_argument("--layers", type=int, help="override the preset's number of blocks")
    p.add_argument("--kinds", default="i2v,t2v", help=f"comma list of {', '.join(KINDS)}")
    p.add_argument("--latents", help="comma list of FxHxW latent sizes (default depends on the preset)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:n]")
    p.add_argument("--dtype", choices=("fp32", "bf16", "fp16"), default="fp32",
                   help="weight and compute dtype of both models")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--ours-ops", choices=("cast", "comfy"), default="cast",
                   help="layer classes for our model: the pack's CastOps (as outside ComfyUI) "
                        "or comfy.ops.disable_weight_init (as inside it)")
    p.add_argument("--comfy-attention", choices=("pytorch", "host-default"), default="pytorch",
                   help="ComfyUI's attention: torch SDPA (its default on NVIDIA GPUs), or whatever it picks "
                        "for the device (sub-quadratic chunked attention on CPU)")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    return p.parse_args()


def import_both(args: argparse.Namespace, comfy_root: Path):
    """Our pack as ``poseanimate`` and ComfyUI's modules, with ComfyUI's CLI flags set for this device."""
    sys.path.insert(0, str(REPO_ROOT))
    import standalone
    sys.path.remove(str(REPO_ROOT))
    standalone.load_pack()

    comfy_flags = []
    if args.device == "cpu":
        comfy_flags.append("--cpu")
    if args.comfy_attention == "pytorch":
        comfy_flags.append("--use-pytorch-cross-attention")
    saved_argv = sys.argv
    sys.argv = [saved_argv[0]] + comfy_flags
    sys.path.insert(0, str(comfy_root))
    import comfy.options
    comfy.options.enable_args_parsing()
    import comfy.ldm.modules.attention as comfy_attention
    import comfy.ldm.wan.model as comfy_wan
    import comfy.ops
    sys.argv = saved_argv
    return comfy_wan, comfy.ops, comfy_attention.optimized_attention.__name__


def make_config(args: argparse.Namespace, kind: str):
    from poseanimate.models.wan.config import WanDiTConfig
    preset = dict(PRESETS[args.preset])
    if args.layers:
        preset["num_layers"] = args.layers
    return WanDiTConfig(**preset, in_dim=16 if kind == "t2v" else 36, out_dim=16,
                        image_embed_dim=1280 if kind == "i2v" else None)


def comfy_kwargs(config) -> dict:
    """WanModel's constructor arguments for a WanDiTConfig (its 'i2v' type means: with the CLIP branch)."""
    return dict(model_type="i2v" if config.has_image_branch else "t2v", patch_size=config.patch_size,
                text_len=config.text_len, in_dim=config.in_dim, dim=config.dim, ffn_dim=config.ffn_dim,
                freq_dim=config.freq_dim, text_dim=config.text_dim, out_dim=config.out_dim,
                num_heads=config.num_heads, num_layers=config.num_layers, qk_norm=config.qk_norm,
                cross_attn_norm=config.cross_attn_norm, eps=config.eps)


# ---------------------------------------------------------------- weights and inputs
def _generator(seed: int, device):
    import torch
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g


def fill_weights(model, dtype, device) -> None:
    """Deterministic weights from each parameter's name: the same values in both models.

    Matrices ~ N(0, 1/fan_in), norm scales ~ 1 + N(0, 0.1), biases and
    modulation ~ N(0, 0.1): activations stay O(1) through every block. Values
    are rounded to ``dtype`` first, so a float32 parameter (ComfyUI keeps
    patch_embedding in float32) holds exactly what the other model holds.
    """
    import torch
    with torch.no_grad():
        for name, param in model.named_parameters():
            g = _generator(zlib.crc32(name.encode()), device)
            values = torch.randn(param.shape, generator=g, device=device, dtype=torch.float32)
            if param.dim() >= 2 and "modulation" not in name and "emb_pos" not in name:
                values /= math.sqrt(math.prod(param.shape[1:]))
            elif name.endswith("weight"):  # norm scales
                values = 1.0 + 0.1 * values
            else:
                values *= 0.1
            param.copy_(values.to(dtype))


def make_inputs(config, case: Case, dtype, device) -> dict:
    import torch
    g = _generator(1234, device)
    f, h, w = case.latent
    x = torch.randn(1, 16, f, h, w, generator=g, device=device)
    context = torch.zeros(1, config.text_len, config.text_dim, device=device)
    context[:, :TEXT_TOKENS] = torch.randn(1, TEXT_TOKENS, config.text_dim, generator=g, device=device)
    inputs = dict(x=x.to(dtype), t=torch.tensor([731.0], device=device), context=context.to(dtype))
    if config.in_dim > 16:
        inputs["y"] = torch.randn(1, config.in_dim - 16, f, h, w, generator=g, device=device).to(dtype)
    if config.has_image_branch:
        inputs["clip_fea"] = torch.randn(1, 257, 1280, generator=g, device=device).to(dtype)
    return inputs


# ---------------------------------------------------------------- running
@dataclass
class Measured:
    output: object  # float32 tensor on the CPU
    times_s: list
    weights_bytes: int
    peak_bytes: int | None = None  # CUDA only
    keys: set = field(default_factory=set)  # the model's state-dict keys

    @property
    def median_s(self) -> float:
        return statistics.median(self.times_s)


def _sync(device) -> None:
    import torch
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _free(device) -> None:
    import torch
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def build_ours(config, inputs, args, dtype, device, comfy_ops):
    """Our WanDiT with the bench weights, and a closure running one forward."""
    from poseanimate.models.ops import CastOps
    from poseanimate.models.wan.dit import WanDiT
    ops = CastOps if args.ours_ops == "cast" else comfy_ops.disable_weight_init
    model = WanDiT(config, operations=ops, device=device, dtype=dtype).eval()
    fill_weights(model, dtype, device)
    return model, lambda: model(inputs["x"], inputs["t"], inputs["context"],
                                clip_fea=inputs.get("clip_fea"), y=inputs.get("y"))


def build_comfy(config, inputs, args, dtype, device, comfy_wan, comfy_ops):
    """ComfyUI's WanModel with the same weights; y is concatenated to x on channels, as WAN21.concat_cond does."""
    import torch
    model = comfy_wan.WanModel(**comfy_kwargs(config), device=device, dtype=dtype,
                               operations=comfy_ops.disable_weight_init).eval()
    fill_weights(model, dtype, device)
    x = inputs["x"] if "y" not in inputs else torch.cat([inputs["x"], inputs["y"]], dim=1)
    return model, lambda: model(x, inputs["t"], inputs["context"], clip_fea=inputs.get("clip_fea"))


def _timed(forward, device):
    start = time.perf_counter()
    out = forward()
    _sync(device)
    return out, time.perf_counter() - start


def _measured(model, out, times, peak=None) -> Measured:
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    return Measured(out.float().cpu(), times, weights, peak, set(model.state_dict()))


def measure_alone(build, device, warmup: int, runs: int) -> Measured:
    """Build, time and drop one model: its peak CUDA memory is its own (weights + activations)."""
    import torch
    cuda = device.type == "cuda"
    model, forward = build()
    if cuda:  # after the build: the peak is the resident weights plus the forward's activations
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)
    with torch.inference_mode():
        for _ in range(warmup):
            forward()
        times, out = [], None
        for _ in range(max(1, runs)):
            out, seconds = _timed(forward, device)
            times.append(seconds)
    peak = torch.cuda.max_memory_allocated(device) if cuda else None
    result = _measured(model, out, times, peak)
    del model, forward, out
    _free(device)
    return result


def measure_interleaved(builds, device, warmup: int, runs: int) -> list[Measured]:
    """Both models at once, their forwards alternated: a busy shared CPU slows both alike."""
    import torch
    built = [build() for build in builds]
    times = [[] for _ in built]
    outs = [None for _ in built]
    with torch.inference_mode():
        for _ in range(warmup):
            for _model, forward in built:
                forward()
        for _ in range(max(1, runs)):
            for i, (_model, forward) in enumerate(built):
                outs[i], seconds = _timed(forward, device)
                times[i].append(seconds)
    results = [_measured(model, out, t) for (model, _f), out, t in zip(built, outs, times)]
    del built, outs
    _free(device)
    return results


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _gib(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**30:.2f}"


def main() -> int:
    args = parse_args()
    comfy_root = os.environ.get("COMFYUI_ROOT")
    if not comfy_root:
        print("dit_vs_comfy: COMFYUI_ROOT is not set; nothing to compare against. Set it to a ComfyUI "
              "checkout and run this with that checkout's venv python (see bench/README.md).")
        return 0
    comfy_root = Path(comfy_root).resolve()
    if not (comfy_root / "comfy" / "ldm" / "wan" / "model.py").is_file():
        print(f"dit_vs_comfy: COMFYUI_ROOT={comfy_root} has no comfy/ldm/wan/model.py", file=sys.stderr)
        return 2

    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    comfy_wan, comfy_ops, comfy_attn = import_both(args, comfy_root)

    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        raise SystemExit(f"unknown kind(s) {bad}; choose from {KINDS}")
    latent_list = (args.latents or DEFAULT_LATENTS[args.preset]).split(",")
    latents = [tuple(int(n) for n in s.lower().split("x")) for s in latent_list]

    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name()
    print(f"# {time.strftime('%Y-%m-%d')} | {device_name} | torch {torch.__version__} | "
          f"threads {torch.get_num_threads()} | dtype {args.dtype} | ours: {args.ours_ops} ops, sdpa | "
          f"comfy attention: {comfy_attn}")
    print(f"# preset {args.preset} {PRESETS[args.preset]}"
          + (f" layers={args.layers}" if args.layers else "") + f" | warmup {args.warmup}, median of {args.runs}")
    header = ("kind", "latent FxHxW", "tokens", "max rel err", "ours s", "comfy s", "ours/comfy",
              "ours peak GiB", "comfy peak GiB", "weights GiB")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))

    for kind in kinds:
        config = make_config(args, kind)
        for latent in latents:
            case = Case(kind, latent)
            inputs = make_inputs(config, case, dtype, device)
            builds = (lambda config=config, inputs=inputs: build_ours(config, inputs, args, dtype, device, comfy_ops),
                      lambda config=config, inputs=inputs: build_comfy(config, inputs, args, dtype, device, comfy_wan,
                                                                       comfy_ops))
            if device.type == "cuda":  # one model on the GPU at a time, each with its own peak memory
                ours, theirs = (measure_alone(b, device, args.warmup, args.runs) for b in builds)
            else:
                ours, theirs = measure_interleaved(builds, device, args.warmup, args.runs)
            if ours.keys != theirs.keys:
                print(f"key mismatch: only ours {sorted(ours.keys - theirs.keys)[:8]}, "
                      f"only comfy {sorted(theirs.keys - ours.keys)[:8]}", file=sys.stderr)
                return 1
            rel = ((ours.output - theirs.output).abs().max() / theirs.output.abs().max()).item()
            pt, ph, pw = config.patch_size
            tokens = (latent[0] // pt) * (latent[1] // ph) * (latent[2] // pw)
            print(f"| {kind} | {'x'.join(map(str, latent))} | {tokens} | {rel:.2e} | {ours.median_s:.3f} | "
                  f"{theirs.median_s:.3f} | {ours.median_s / theirs.median_s:.2f} | {_gib(ours.peak_bytes)} | "
                  f"{_gib(theirs.peak_bytes)} | {_gib(ours.weights_bytes)} |", flush=True)
            del ours, theirs, inputs
            _free(device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
