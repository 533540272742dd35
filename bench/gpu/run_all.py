"""Every speed figure the pack needs from a GPU, in one go, most important first, each written as it comes.

    python3 bench/gpu/run_all.py                          # on a GPU: the 14B shapes (preset h200)
    python3 bench/gpu/run_all.py --comfyui comfyui.tar.gz # + ComfyUI's native WanModel for the ratio
    python3 bench/gpu/run_all.py --preset tiny            # on the CPU in seconds (what CI runs)

The 14B-shaped Wan DiT (dim 5120, 40 heads, 40 blocks, ffn 13824, I2V with the CLIP branch, random
weights) at 480p x 81 frames (latent 21x60x104, 32,760 tokens) and 720p x 81 (21x90x160, 75,600 tokens).
In this order, each figure appended to ``<out>/figures.jsonl`` and ``<out>/figures.md`` (flushed, synced)
the moment it is measured, so a run cut short still leaves everything before the cut:

1. ``forward_480p``: one bf16 forward (median of ``--runs`` after a warm-up), peak memory, and achieved
   TFLOP/s against the analytic FLOPs of the forward (1,686 TFLOP at 480p);
   ``native_480p``: ComfyUI's ``comfy.ldm.wan.model.WanModel`` with the same weights and inputs, when a
   ComfyUI checkout or tarball is given (``--comfyui`` / ``COMFYUI_ROOT``) and imports: its time, ours/its
   ratio and the output's max relative difference;
2. ``e2e_4step_480p``: a 4-step lightx2v_distill sample at cfg 1 (one forward per step) through the
   pack's sampler, then the real-size Wan VAE decode (random weights) to 81 x 480 x 832 frames: total,
   DiT, decode, and the sampler's overhead (total - DiT - decode) against the forward time;
3. ``fp8_480p``: the same model with scaled-fp8 block weights (per-tensor scales): upcast forward, and
   ``torch._scaled_mm`` forward where this device runs it (capability 8.9+), each with its error
   against bf16;
4. ``forward_720p``;
5. ``attention_480p``: each attention backend available here (sdpa, chunked sdpa, flash_attn,
   sageattention) on the 480p self-attention shape: time per call and error against float32 SDPA;
6. ``compiled_480p``: the blocks compiled (``models/wan/compile.py``): compile time, forward time, the
   ratio to uncompiled, and a second size (no recompile expected).

``--budget-s`` (default 440: eight minutes with the start-up) skips a section that would not finish in
time, saying so. Device, torch and date head both files. Figures go into bench/README.md by hand.
"""
from __future__ import annotations

import argparse
import copy
import gc
import importlib.util
import json
import math
import os
import platform
import statistics
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

REPO_ROOT = Path(__file__).resolve().parents[2]
FLOPS_480P_14B = 1686e12  # the figure for one 14B I2V forward at 480p x 81


@dataclass(frozen=True)
class Preset:
    dim: int
    heads: int
    layers: int
    ffn: int
    latent_480p: tuple[int, int, int]
    latent_720p: tuple[int, int, int]
    vae_dim: int
    dtype: str
    runs: int
    # rough seconds per section on the device the preset is for (skip a section that would not fit)
    estimates: dict


PRESETS = {
    "h200": Preset(5120, 40, 40, 13824, (21, 60, 104), (21, 90, 160), 96, "bf16", 2,
                   dict(forward=40, native=60, e2e=60, fp8=60, p720=70, attention=30, compile=120)),
    "tiny": Preset(64, 2, 2, 128, (2, 4, 6), (2, 6, 8), 8, "fp32", 1,
                   dict(forward=5, native=10, e2e=10, fp8=5, p720=5, attention=5, compile=60)),
}
SECTIONS = ("forward", "native", "e2e", "fp8", "p720", "attention", "compile")


# ---------------------------------------------------------------------------------------------- output
class Figures:
    """Appends each figure to ``figures.jsonl`` and a line to ``figures.md``, synced, and prints it."""

    def __init__(self, out: Path):
        out.mkdir(parents=True, exist_ok=True)
        self.jsonl = (out / "figures.jsonl").open("a")
        self.md = (out / "figures.md").open("a")

    def _write(self, handle, text: str) -> None:
        handle.write(text + "\n")
        handle.flush()
        os.fsync(handle.fileno())

    def header(self, text: str) -> None:
        self._write(self.md, text)
        print(text, flush=True)

    def add(self, name: str, **values) -> None:
        values = {k: (round(v, 5) if isinstance(v, float) else v) for k, v in values.items()}
        self._write(self.jsonl, json.dumps({"figure": name, **values}))
        line = f"- **{name}**: " + ", ".join(f"{k} {v}" for k, v in values.items())
        self._write(self.md, line)
        print(line, flush=True)


# ---------------------------------------------------------------------------------------------- helpers
def forward_flops(config, tokens: int, text_tokens: int = 512, image_tokens: int = 257) -> float:
    """Multiply-add FLOPs (2 per MAC) of one DiT forward over ``tokens`` video tokens."""
    d, f, L = config.dim, config.ffn_dim, tokens
    li = image_tokens if config.has_image_branch else 0
    block = (4 * 2 * L * d * d            # self-attention q, k, v, o
             + 2 * 2 * L * L * d          # QK^T and AV
             + 2 * 2 * L * d * d          # cross-attention q, o
             + 2 * 2 * (text_tokens + li) * d * d   # cross k, v (text, image)
             + 2 * 2 * L * (text_tokens + li) * d   # cross QK^T and AV
             + 2 * 2 * L * d * f)         # ffn
    patch = math.prod(config.patch_size)
    outer = (2 * L * config.in_dim * patch * d + 2 * L * d * config.out_dim * patch
             + 2 * text_tokens * (config.text_dim * d + d * d))
    if li:
        outer += 2 * li * (1280 * 1280 + 1280 * d)
    return config.num_layers * block + outer


def load_dit_vs_comfy():
    if "dit_vs_comfy" in sys.modules:
        return sys.modules["dit_vs_comfy"]
    spec = importlib.util.spec_from_file_location("dit_vs_comfy", REPO_ROOT / "bench" / "dit_vs_comfy.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["dit_vs_comfy"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def comfy_root(given: str | None) -> tuple[Path | None, str]:
    """A ComfyUI source folder from a folder or a ``git archive`` tarball (unpacked to a temp dir)."""
    given = given or os.environ.get("COMFYUI_ROOT")
    if not given:
        return None, "no --comfyui / COMFYUI_ROOT given"
    path = Path(given)
    if path.is_file():
        target = Path(tempfile.mkdtemp(prefix="comfyui-"))
        with tarfile.open(path) as archive:
            archive.extractall(target, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
        path = target
    if not (path / "comfy" / "ldm" / "wan" / "model.py").is_file():
        return None, f"{given} holds no comfy/ldm/wan/model.py"
    return path, ""


class Timer:
    def __init__(self, device):
        self.device = device

    def sync(self) -> None:
        import torch
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def median(self, fn: Callable[[], object], runs: int, warmup: int = 1) -> tuple[float, object]:
        out = None
        for _ in range(warmup):
            out = fn()
        self.sync()
        times = []
        for _ in range(max(1, runs)):
            start = time.perf_counter()
            out = fn()
            self.sync()
            times.append(time.perf_counter() - start)
        return statistics.median(times), out


def reset_peak(device) -> None:
    import torch
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device) -> float | None:
    import torch
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def free(device) -> None:
    import torch
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def rel_err(a, b) -> float:
    a, b = a.float().cpu(), b.float().cpu()
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()


def quantize_blocks_fp8(model) -> int:
    """Blocks' Linear weights -> e4m3 with a per-tensor scale (as Comfy-Org's scaled-fp8 repacks)."""
    import torch
    count = 0
    with torch.no_grad():
        for module in model.blocks.modules():
            if hasattr(type(module), "fp8_matmul") and module.weight.dim() == 2:
                weight = module.weight.float()
                scale = (weight.abs().max() / torch.finfo(torch.float8_e4m3fn).max).clamp_min(1e-12)
                module.weight = torch.nn.Parameter((weight / scale).to(torch.float8_e4m3fn), requires_grad=False)
                module.scale_weight = scale
                count += 1
    return count


# ---------------------------------------------------------------------------------------------- the run
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", choices=sorted(PRESETS), help="default: h200 on CUDA, tiny elsewhere")
    p.add_argument("--device", help="default: cuda when available, else cpu")
    p.add_argument("--out", default=str(REPO_ROOT / "bench" / "gpu" / "results"), help="folder for the figures")
    p.add_argument("--comfyui", help="a ComfyUI folder or git-archive tarball (default: $COMFYUI_ROOT)")
    p.add_argument("--budget-s", type=float, default=440.0)
    p.add_argument("--skip", default="", help=f"comma list of sections to leave out: {', '.join(SECTIONS)}")
    p.add_argument("--runs", type=int, help="timed forwards per figure (default: the preset's)")
    p.add_argument("--threads", type=int)
    args = p.parse_args(argv)
    started = time.perf_counter()

    sys.path.insert(0, str(REPO_ROOT))
    import standalone
    standalone.load_pack()
    import torch
    from poseanimate.models.wan.config import WanDiTConfig
    from poseanimate.models.wan.dit import WanDiT

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    preset = PRESETS[args.preset or ("h200" if device.type == "cuda" else "tiny")]
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[preset.dtype]
    runs = args.runs or preset.runs
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    unknown = skip - set(SECTIONS)
    if unknown:
        raise SystemExit(f"--skip: unknown sections {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
    figures = Figures(Path(args.out))
    timer = Timer(device)
    bench = load_dit_vs_comfy()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else bench._cpu_name()
    figures.header(f"\n## {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} | {name} | torch "
                   f"{torch.__version__} | python {platform.python_version()} | preset "
                   f"{args.preset or ('h200' if device.type == 'cuda' else 'tiny')} {preset}")

    def should_run(section: str) -> bool:
        if section in skip:
            return False
        left = args.budget_s - (time.perf_counter() - started)
        if preset.estimates[section] > left:
            figures.add(section, skipped=f"budget: {left:.0f} s left, about {preset.estimates[section]} s needed")
            return False
        return True

    config = WanDiTConfig(dim=preset.dim, num_heads=preset.heads, num_layers=preset.layers, ffn_dim=preset.ffn,
                          in_dim=36, out_dim=16, image_embed_dim=1280)
    tokens_480 = math.prod(preset.latent_480p) // 4
    flops_480 = forward_flops(config, tokens_480)
    case_480 = bench.Case("i2v", preset.latent_480p)
    inputs = bench.make_inputs(config, case_480, dtype, device)
    model = WanDiT(config, device=device, dtype=dtype).eval()
    bench.fill_weights(model, dtype, device)

    def forward(m, inp):
        return lambda: m(inp["x"], inp["t"], inp["context"], clip_fea=inp.get("clip_fea"), y=inp.get("y"))

    weights_gib = sum(t.numel() * t.element_size() for t in model.parameters()) / 2**30
    ours_480 = None
    with torch.inference_mode():
        # 1. the bf16 forward at 480p, and ComfyUI's native WanModel
        forward_s = None
        if should_run("forward"):
            reset_peak(device)
            forward_s, ours_480 = timer.median(forward(model, inputs), runs)
            figures.add("forward_480p", latent="x".join(map(str, preset.latent_480p)), tokens=tokens_480,
                        dtype=preset.dtype, seconds=forward_s, tflop=flops_480 / 1e12,
                        tflops_per_s=flops_480 / forward_s / 1e12, peak_gib=peak_gib(device),
                        weights_gib=weights_gib, flops_vs_1686=flops_480 / FLOPS_480P_14B)
        if should_run("native"):
            run_native(args, bench, config, inputs, dtype, device, timer, runs, figures, ours_480, forward_s)

        # 2. four distilled steps end to end, with the real-size VAE decode
        if should_run("e2e"):
            run_e2e(config, preset, model, inputs, dtype, device, timer, figures, forward_s)

        # 3. scaled fp8
        if should_run("fp8"):
            run_fp8(model, inputs, forward, device, timer, runs, figures, ours_480)

        # 4. 720p
        if should_run("p720"):
            inputs_720 = bench.make_inputs(config, bench.Case("i2v", preset.latent_720p), dtype, device)
            tokens_720 = math.prod(preset.latent_720p) // 4
            reset_peak(device)
            seconds, _ = timer.median(forward(model, inputs_720), max(1, runs - 1))
            flops = forward_flops(config, tokens_720)
            figures.add("forward_720p", latent="x".join(map(str, preset.latent_720p)), tokens=tokens_720,
                        seconds=seconds, tflop=flops / 1e12, tflops_per_s=flops / seconds / 1e12,
                        peak_gib=peak_gib(device))
            del inputs_720
            free(device)

        # 5. attention backends on the 480p self-attention shape
        if should_run("attention"):
            run_attention(config, tokens_480, dtype, device, timer, figures)

    # 6. compiled blocks (outside inference_mode: dynamo traces it either way, the forward runs in no_grad)
    if should_run("compile"):
        with torch.no_grad():
            run_compiled(model, config, bench, inputs, preset, forward, dtype, device, timer, runs, figures,
                         forward_s, ours_480)
    figures.add("done", seconds=time.perf_counter() - started)
    return 0


def run_native(args, bench, config, inputs, dtype, device, timer, runs, figures, ours_out, ours_s) -> None:
    root, why = comfy_root(args.comfyui)
    if root is None:
        figures.add("native_480p", unavailable=why)
        return
    try:
        comfy_wan, comfy_ops, attention = bench.import_both(
            argparse.Namespace(device=device.type, comfy_attention="pytorch"), root)
        theirs = comfy_wan.WanModel(**bench.comfy_kwargs(config), device=device, dtype=dtype,
                                    operations=comfy_ops.disable_weight_init).eval()
    except Exception as error:  # a host that does not import here (missing optional packages, ...)
        figures.add("native_480p", unavailable=f"ComfyUI does not import: {type(error).__name__}: {error}"[:300])
        return
    bench.fill_weights(theirs, dtype, device)
    import torch
    x = inputs["x"] if "y" not in inputs else torch.cat([inputs["x"], inputs["y"]], dim=1)
    reset_peak(device)
    seconds, out = timer.median(lambda: theirs(x, inputs["t"], inputs["context"], clip_fea=inputs.get("clip_fea")),
                                runs)
    figures.add("native_480p", comfy_attention=attention, seconds=seconds, peak_gib=peak_gib(device),
                ours_over_native=None if ours_s is None else ours_s / seconds,
                max_rel_diff=None if ours_out is None else rel_err(ours_out, out))
    theirs = out = None  # freed before the next section
    free(device)


def run_e2e(config, preset, model, inputs, dtype, device, timer, figures, forward_s) -> None:
    from poseanimate.models.wan.vae import WanVAE, WanVAEConfig
    from poseanimate.sampling.conditioning import VideoGeometry
    from poseanimate.sampling.schedulers import make_scheduler
    from poseanimate.sampling.video import sample_video
    from poseanimate.sampling.wan_denoiser import WanCond

    f, h, w = preset.latent_480p
    cond = WanCond(context=inputs["context"][:, :64], clip_fea=inputs["clip_fea"], y=inputs["y"])

    class Conditioning:
        geometry = VideoGeometry(f, h, w)

        def branch(self, positive, step, steps, window=None):
            return cond

        def clear_cache(self):
            pass

    scheduler = make_scheduler("lightx2v_distill", 4, 5.0, "1000,750,500,250")
    vae = WanVAE(WanVAEConfig(dim=preset.vae_dim), device=device, dtype=dtype).eval()
    load = load_dit_vs_comfy()
    load.fill_weights(vae, dtype, device)
    reset_peak(device)
    start = time.perf_counter()
    latent = sample_video(model, Conditioning(), scheduler, 1.0, 7, progress=lambda d, t: None,
                          check_interrupt=lambda: None)
    timer.sync()
    sampled = time.perf_counter()
    video = vae.decode(latent.to(device))
    timer.sync()
    end = time.perf_counter()
    dit_s = 4 * forward_s if forward_s else None
    figures.add("e2e_4step_480p", steps=4, forwards=4, total_s=end - start, sampling_s=sampled - start,
                vae_decode_s=end - sampled, frames=f"{video.shape[2]}x{video.shape[3]}x{video.shape[4]}",
                sampler_overhead_vs_forward=None if dit_s is None else (sampled - start - dit_s) / dit_s,
                peak_gib=peak_gib(device))
    del vae, video, latent
    free(device)


def run_fp8(model, inputs, forward, device, timer, runs, figures, reference) -> None:
    from poseanimate.models.fp8_matmul import has_fp8_tensor_cores, set_fp8_matmul, _scaled_mm_runs
    fp8 = copy.deepcopy(model)
    layers = quantize_blocks_fp8(fp8)
    free(device)
    weights = sum(t.numel() * t.element_size() for t in fp8.parameters()) / 2**30
    reset_peak(device)
    upcast_s, upcast_out = timer.median(forward(fp8, inputs), runs)
    figures.add("fp8_upcast_480p", layers=layers, weights_gib=weights, seconds=upcast_s, peak_gib=peak_gib(device),
                rel_err_vs_unquantized=None if reference is None else rel_err(upcast_out, reference))
    why_not = _scaled_mm_runs(str(device))
    if why_not is None:
        set_fp8_matmul(fp8, "on", device)
        reset_peak(device)
        mm_s, mm_out = timer.median(forward(fp8, inputs), runs)
        figures.add("fp8_scaled_mm_480p", fp8_tensor_cores=has_fp8_tensor_cores(device), seconds=mm_s,
                    speedup_vs_upcast=upcast_s / mm_s, peak_gib=peak_gib(device),
                    rel_err_vs_unquantized=None if reference is None else rel_err(mm_out, reference),
                    rel_err_vs_upcast=rel_err(mm_out, upcast_out))
    else:
        figures.add("fp8_scaled_mm_480p", unavailable=why_not)
    del fp8
    free(device)


def run_attention(config, tokens, dtype, device, timer, figures) -> None:
    import torch
    from poseanimate.models.wan.attention import Attention
    g = torch.Generator(device=device).manual_seed(3)
    shape = (1, tokens, config.num_heads, config.head_dim)
    q, k, v = (torch.randn(shape, generator=g, device=device, dtype=torch.float32) for _ in range(3))
    reference = Attention("sdpa")(q, k, v)
    low = [t.to(dtype) for t in (q, k, v)]
    for backend, chunk in (("sdpa", None), ("sdpa", max(1, tokens // 8)), ("flash_attn", None),
                           ("sageattention", None)):
        label = backend + (f" chunk {chunk}" if chunk else "")
        try:
            attend = Attention(backend, chunk)
            seconds, out = timer.median(lambda: attend(*low), 3)
        except Exception as error:  # not installed, or CUDA-only on this device
            figures.add("attention_480p", backend=label, unavailable=str(error)[:200])
            continue
        err = (out.float() - reference).abs()
        figures.add("attention_480p", backend=label, dtype=str(dtype).replace("torch.", ""), seconds=seconds,
                    max_abs_err_vs_fp32=err.max().item(), mean_abs_err_vs_fp32=err.mean().item())
    q = k = v = reference = low = None  # freed before the next section
    free(device)


def run_compiled(model, config, bench, inputs, preset, forward, dtype, device, timer, runs, figures, plain_s,
                 reference) -> None:
    from poseanimate.models.wan.compile import compiler_problem, set_compiled_blocks
    problem = compiler_problem(device)
    if problem is not None:
        figures.add("compiled_480p", unavailable=problem)
        return
    start = time.perf_counter()
    set_compiled_blocks(model, "on", device)
    first = forward(model, inputs)()
    timer.sync()
    compile_s = time.perf_counter() - start
    seconds, out = timer.median(forward(model, inputs), runs, warmup=0)
    figures.add("compiled_480p", compile_and_first_forward_s=compile_s, seconds=seconds,
                compiled_over_plain=None if plain_s is None else seconds / plain_s,
                rel_err_vs_plain=None if reference is None else rel_err(out, reference))
    f, h, w = preset.latent_480p
    other = bench.make_inputs(config, bench.Case("i2v", (f, h // 2, w // 2)), dtype, device)
    start = time.perf_counter()
    forward(model, other)()
    timer.sync()
    figures.add("compiled_other_size", latent=f"{f}x{h // 2}x{w // 2}", first_forward_s=time.perf_counter() - start)
    set_compiled_blocks(model, "off", device)
    del first, other


if __name__ == "__main__":
    sys.exit(main())
