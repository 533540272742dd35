"""The sampler node: any method's conditioning + the Wan DiT -> a video LATENT.

Thin: it prepares the model the host's way (ModelPatcher loaded through the
host's model management, LoRAs as its weight patches; merged and restored
outside the host), calls ``sampling.video.sample_video`` and returns a
ComfyUI LATENT in the host's convention (the raw VAE latent), so the host's
own VAE Decode works on it as well as the pack's.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Any, Iterator

from .. import host, memory_budget as mb
from ..errors import InputError
from ..sampling.conditioning import MethodConditioning
from ..models.lora import merge_loras
from ..models.wan.latent_space import to_vae_space
from ..sampling.schedulers import DEFAULT_STEP_LIST, SCHEDULER_NAMES, make_scheduler
from ..models.wan.speed import COMPILE_MODES, FP8_MATMUL_MODES, apply_speed_options
from ..sampling.step_cache import CACHE_NAMES, check_cache_fits, make_step_cache
from ..sampling.video import WindowSettings, progress_text, sample_video, window_count
from ..sampling.windows import WEIGHTINGS
from .dit_loaders import DIT_TYPE, DiTHandle

log = logging.getLogger(__name__)

CONDITIONING_TYPE = "POSEANIMATE_CONDITIONING"
SCHEDULER_TOOLTIP = ("euler: DiffSynth's (UniAnimate-DiT's); unipc and dpm++: Wan's own; euler_diffusers: "
                     "RealisDance-DiT's. For the lightx2v step/CFG-distilled models and LoRAs (cfg 1.0): "
                     "lightx2v_distill (LightX2V's own, steps from step_list, shift 5), lcm_simple / lcm_beta "
                     "(ComfyUI's lcm sampler with its simple / beta scheduler over steps, 4-8).")
STEP_LIST_INPUT = ("STRING", {"default": DEFAULT_STEP_LIST,
                              "tooltip": "lightx2v_distill only: the timesteps to run, comma-separated, from 1000 "
                                         "(pure noise) down, strictly decreasing, each 1..1000 (LightX2V's "
                                         "denoising_step_list; 4 steps: 1000, 750, 500, 250). Its length is the "
                                         "step count; other schedulers ignore it."})
CACHE_INPUTS = {
    "cache": (list(CACHE_NAMES), {"default": "none",
              "tooltip": "Step caching: reuse the DiT blocks' residual on steps where it barely changes (each "
                         "guidance branch and window on its own). teacache: the timestep modulation's change "
                         "with TeaCache's Wan2.1 polynomials; magcache: MagCache's published magnitude ratios; "
                         "easycache: adaptive, measured during the run. none: every step computed."}),
    "cache_threshold": ("FLOAT", {"default": 0.2, "min": 0.0, "max": 1.0, "step": 0.01,
                        "tooltip": "How much change may accumulate before the blocks run again: higher is "
                                   "faster and less exact, 0 never caches. Published: teacache 0.2 (14B "
                                   "I2V 480p, up to 0.3), magcache 0.12 (0.24 fast), easycache 0.2."}),
    "cache_start": ("INT", {"default": -1, "min": -1, "max": 200,
                    "tooltip": "First step that may be cached; -1: the policy's default (teacache 5, magcache "
                               "after 20% of the steps, easycache after 15%)."}),
    "cache_end": ("INT", {"default": -1, "min": -1, "max": 200,
                  "tooltip": "Steps from this one on are always computed; -1: the policy's default (teacache "
                             "and magcache none, easycache the last 5%)."}),
}
SPEED_INPUTS = {
    "compile": (list(COMPILE_MODES), {"default": "off",
                "tooltip": "torch.compile the DiT block (one graph shared by all 40 blocks, dynamic shapes): "
                           "faster forwards after a first compile; other steps, sizes, window lengths and LoRA "
                           "strengths do not compile again. auto: compile when this torch can (triton on the "
                           "GPU, a C compiler on the CPU), else run uncompiled; on: stop when it cannot."}),
    "fp8_matmul": (list(FP8_MATMUL_MODES), {"default": "auto",
                   "tooltip": "fp8-scaled DiT files: auto multiplies in fp8 (torch._scaled_mm) on GPUs with fp8 "
                              "tensor cores (RTX 40xx, H100/H200, compute capability 8.9+) and upcasts to bf16 "
                              "elsewhere; off always upcasts (exact to the file); on forces fp8 matmul. Inside "
                              "ComfyUI 0.8+ the host's fp8 layers decide this themselves."}),
}
CATEGORY = "PoseAnimate/sampling"


def prepare_speed(model: Any, compile: str, fp8_matmul: str) -> None:
    """Compiled blocks and fp8 matmul on the model about to run (see models/wan/speed.py), logged."""
    log.info("PoseAnimate DiT: %s", apply_speed_options(model, compile, fp8_matmul, host.compute_device()))


@contextmanager
def running_dit(dit: DiTHandle) -> Iterator[Any]:
    """The DiT on the compute device with its LoRAs, for the length of one run."""
    if host.in_host():
        yield host.load_to_device(dit.managed)
        return
    model = host.load_to_device(dit.model)
    merged = merge_loras(model, list(dit.loras)) if dit.loras else None
    try:
        yield model
    finally:
        if merged is not None:
            merged.restore()


class PoseAnimateSampler:
    DESCRIPTION = ("Samples the animation: the Wan DiT (with its LoRAs) guided by a method's conditioning "
                   "(UniAnimate-DiT, ...). Videos longer than one window are made in overlapping windows "
                   "blended at every step, so any length fits in the memory of one window.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)
    FUNCTION = "sample"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "dit": (DIT_TYPE, {"tooltip": "The Wan DiT with the method's LoRA (from the method's loader node)."}),
            "conditioning": (CONDITIONING_TYPE, {"tooltip": "A method's conditioning node output."}),
            "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF, "control_after_generate": True,
                             "tooltip": "Noise seed; the same seed gives the same video on any device."}),
            "steps": ("INT", {"default": 50, "min": 1, "max": 200,
                              "tooltip": "Denoising steps (UniAnimate-DiT was shown with 50; 20-30 often suffice)."}),
            "cfg": ("FLOAT", {"default": 1.5, "min": 1.0, "max": 20.0, "step": 0.1,
                              "tooltip": "Classifier-free guidance scale; 1.0 runs one pass per step (twice as "
                                         "fast). UniAnimate-DiT uses 1.5."}),
            "shift": ("FLOAT", {"default": 5.0, "min": 0.0, "max": 20.0, "step": 0.1,
                                "tooltip": "Flow-matching sigma shift; 5.0 for 480p/720p Wan I2V."}),
            "scheduler": (list(SCHEDULER_NAMES), {"default": "euler", "tooltip": SCHEDULER_TOOLTIP}),
            "window_length": ("INT", {"default": 21, "min": 2, "max": 64,
                                      "tooltip": "Latent frames per window (21 = 81 video frames). Longer videos "
                                                 "are made in overlapping windows of this length."}),
            "window_overlap": ("INT", {"default": 4, "min": 0, "max": 32,
                                       "tooltip": "Latent frames shared by neighbouring windows."}),
            "blending": (list(WEIGHTINGS), {"default": "unianimate",
                         "tooltip": "How overlapping windows are mixed: unianimate (its own rule: uniform, "
                                    "first 2 frames private to each window), uniform, linear, pyramid, relative."}),
        }, "optional": {"step_list": STEP_LIST_INPUT, **CACHE_INPUTS, **SPEED_INPUTS}}

    def sample(self, dit: DiTHandle, conditioning: MethodConditioning, seed: int, steps: int, cfg: float,
               shift: float, scheduler: str, window_length: int, window_overlap: int,
               blending: str, step_list: str = DEFAULT_STEP_LIST, cache: str = "none",
               cache_threshold: float = 0.2, cache_start: int = -1, cache_end: int = -1, compile: str = "off",
               fp8_matmul: str = "auto") -> tuple[dict]:
        if not isinstance(dit, DiTHandle):
            raise InputError("dit", f"is a {type(dit).__name__}", "the output of a PoseAnimate DiT loader")
        if not isinstance(conditioning, MethodConditioning):
            raise InputError("conditioning", f"is a {type(conditioning).__name__}",
                             "the output of a PoseAnimate method conditioning node")
        sampler = make_scheduler(scheduler, steps, shift, step_list)  # bad settings fail before loading
        step_cache = make_step_cache(cache, cache_threshold, None if cache_start < 0 else cache_start,
                                     None if cache_end < 0 else cache_end)
        check_cache_fits(step_cache, sampler.steps, scheduler)
        windows = WindowSettings(window_length, window_overlap, blending)
        count = window_count(conditioning.geometry.frames, windows)  # bad window settings fail before loading
        check_sampling_memory(dit, conditioning.geometry, window_length,
                              int(getattr(conditioning, "extra_token_count", 0)))  # appended reference tokens
        progress = host.Progress(sampler.steps * count, latent_format="wan21")
        try:
            with running_dit(dit) as model:
                prepare_speed(model, compile, fp8_matmul)
                latent = sample_video(model, conditioning, sampler, cfg, seed,
                                      windows, window_progress=lambda *at: _report(progress, *at),
                                      callback=lambda i, x, x0: progress.update(0, preview=x0),
                                      cache=step_cache, make_guidance=getattr(conditioning, "guidance", None))
                if step_cache is not None:
                    log.info("PoseAnimate %s", step_cache.report())
        finally:
            conditioning.clear_cache()  # per-run caches (pose tokens) are not kept in the host's node-output cache
            host.free_memory()
        return ({"samples": to_vae_space(latent).cpu()},)


def check_sampling_memory(dit: DiTHandle, geometry: Any, window_length: int, extra_tokens: int = 0,
                          input_name: str = "window_length") -> None:
    """Stop before loading the DiT when one window's block activations would not fit the compute device."""
    config = dit.info.config
    frames = min(int(window_length), int(geometry.frames))
    per_frame = mb.dit_window(mb.dit_tokens(1, geometry.height, geometry.width), config.dim, config.ffn_dim,
                              dit.model.compute_dtype)
    needed = mb.dit_window(mb.dit_tokens(frames, geometry.height, geometry.width), config.dim, config.ffn_dim,
                           dit.model.compute_dtype, extra_tokens)
    size = f"{geometry.width * 8}x{geometry.height * 8}"
    mb.check_fits(input_name, f"sampling windows of {frames} latent frames at {size}", needed,
                  host.compute_device(), lambda budget: mb.window_frames_fitting(per_frame, budget, input_name))


def _report(progress: host.Progress, step: int, steps: int, window: int, windows: int) -> None:
    progress.update(1)
    host.progress_text(progress_text(step, steps, window, windows))


NODES = {"PoseAnimateSampler": (PoseAnimateSampler, "Sample Animation (PoseAnimate)")}
