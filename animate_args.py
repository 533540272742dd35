"""animate.py's command line: every option with its help and default, and every value checked before work.

A 14B DiT takes minutes to load, so a wrong number or a missing file must stop the job before any model is
read: :func:`check_args` checks every option (ranges, files, the embeddings file's header) and raises one
:class:`InputError` line naming the option, the value and what is valid. Options whose default depends on
the mode (tiny demo or real models) default to None here and are resolved by :func:`resolve_sizes`.
"""
from __future__ import annotations

import argparse

import torch
import math
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError
from .memory_budget import MAX_FRAMES
from .models.wan.latent_space import is_frame_count, nearest_frame_counts
from .sampling.schedulers import SCHEDULER_NAMES, STEP_LIST_SCHEDULERS, make_scheduler
from .sampling.step_cache import CACHE_NAMES, make_step_cache
from .models.wan.speed import COMPILE_MODES, FP8_MATMUL_MODES
from .tiny_models.model_files import DIT_FILE, UNIANIMATE_FILE, VAE_FILE

WAN_FPS = 16.0  # Wan 2.1's training frame rate: the output's rate when there is no driving video
MAX_SIZE = 4096
RANGES = {  # option -> (lowest, highest) valid value, both included
    "frames": (1, MAX_FRAMES), "width": (16, MAX_SIZE), "height": (16, MAX_SIZE), "steps": (1, 200),
    "cfg": (1.0, 20.0), "shift": (0.0, 20.0), "window": (2, 64), "overlap": (0, 32), "fps": (1.0, 240.0),
    "seed": (0, 2**64 - 1), "cache_threshold": (0.0, 1.0), "cache_start": (0, 200), "cache_end": (1, 200),
}
TINY_DEFAULTS = {"frames": 9, "width": 48, "height": 80, "steps": 3}
REAL_DEFAULTS = {"frames": 81, "width": 480, "height": 832, "steps": 50}
POSE_FOLDER = "poseanimate_pose"
POSE_MODELS = ("yolox_l.onnx", "dw-ll_ucoco_384.onnx")  # DWPose's detector and keypoint model
MODEL_FOLDERS = {"dit": "diffusion_models", "unianimate": "loras", "vae": "vae"}
MODEL_DEFAULTS = {"dit": DIT_FILE, "unianimate": UNIANIMATE_FILE, "vae": VAE_FILE}


class DefaultsHelp(argparse.ArgumentDefaultsHelpFormatter):
    """Each option's default after its help; options without one say in their help what "none" means."""

    def _get_help_string(self, action: argparse.Action) -> str:
        return action.help if action.default is None else super()._get_help_string(action)


class OneLineParser(argparse.ArgumentParser):
    """argparse's own errors (unknown option, 'abc' for a number) as one line, like ours."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see --help)\n")


def build_parser(description: str = "") -> argparse.ArgumentParser:
    p = OneLineParser(description=description, formatter_class=DefaultsHelp)
    mode = "default: %s; tiny mode: %s"
    p.add_argument("--models", help="a ComfyUI models folder holding the real files under their README names "
                   "(default: none, tiny random-weight models in a temporary folder, the video is noise)")
    for key, folder in MODEL_FOLDERS.items():
        p.add_argument(f"--{key}", default=MODEL_DEFAULTS[key], help=f"file (or folder) in <models>/{folder}")
    p.add_argument("--reference", help="the character image, PNG or JPEG (default: none, a made-up figure)")
    p.add_argument("--driving", help="the driving video; its poses come from the DWPose files in "
                   "<models>/poseanimate_pose, or the pack's tiny pose models in tiny mode "
                   "(default: none, a made-up dancer)")
    p.add_argument("--embeddings", help=".safetensors with 'context' (umT5 [1, L, 4096]), optional "
                   "'negative_context' and 'clip_fea' (CLIP ViT-H [1, 257, 1280]); needed with --models "
                   "(default: none; tiny mode: random stand-ins)")
    p.add_argument("--prompt", help="what the video shows, encoded with umT5 (text_encoders/ in --models; "
                   "default: none)")
    p.add_argument("--negative-prompt", help="what to avoid (default: Wan2.1's I2V negative prompt)")
    p.add_argument("--text-encoder", help="umT5 file in <models>/text_encoders (default: found by name/header)")
    p.add_argument("--clip-vision", help="CLIP ViT-H file in <models>/clip_vision (default: found by name/header)")
    p.add_argument("--frames", type=int, help="video frames, 4k+1, 1 to %d (%s)" % (MAX_FRAMES, mode % (
        REAL_DEFAULTS["frames"], TINY_DEFAULTS["frames"])))
    for side in ("width", "height"):
        p.add_argument(f"--{side}", type=int, help=f"pixels, a multiple of 16 from 16 to {MAX_SIZE} ("
                       + mode % (REAL_DEFAULTS[side], TINY_DEFAULTS[side]) + ")")
    p.add_argument("--steps", type=int, help="denoising steps, 1 to 200 (%s)" % (
        mode % (REAL_DEFAULTS["steps"], TINY_DEFAULTS["steps"])))
    p.add_argument("--cfg", type=float, default=1.5, help="classifier-free guidance scale, 1 to 20 (1 = no "
                   "negative pass, for distilled models)")
    p.add_argument("--shift", type=float, default=5.0, help="flow-matching timestep shift, above 0 up to 20 "
                   "(Wan uses 3 at 480p, 5 at 720p)")
    p.add_argument("--sampler", choices=SCHEDULER_NAMES, default="euler",
                   help="lightx2v_distill, lcm_simple, lcm_beta: few-step samplers for the lightx2v distilled "
                        "models and LoRAs (use --cfg 1.0)")
    p.add_argument("--step-list", default=None,
                   help="lightx2v_distill's timesteps, comma-separated (default: none, 1000,750,500,250)")
    p.add_argument("--cache", choices=CACHE_NAMES, default="none",
                   help="step caching: teacache, magcache or easycache (none: every step computed)")
    p.add_argument("--cache-threshold", type=float, default=0.2,
                   help="0 to 1, higher is faster and less exact; 0 never caches (teacache 0.2, magcache 0.12)")
    p.add_argument("--cache-start", type=int, default=None, help="first step that may be cached, 0 or more "
                   "(default: the policy's)")
    p.add_argument("--cache-end", type=int, default=None, help="steps from this one on are computed, after "
                   "--cache-start (default: the policy's)")
    p.add_argument("--compile", choices=COMPILE_MODES, default="off",
                   help="torch.compile the DiT block: auto when a compiler works, else uncompiled; on: or stop")
    p.add_argument("--fp8-matmul", choices=FP8_MATMUL_MODES, default="auto",
                   help="fp8-scaled DiT files: fp8 matrix multiplication on GPUs of compute capability 8.9+ "
                        "(auto), never (off), or forced (on)")
    p.add_argument("--device", default="auto", help="where the DiT runs: cpu, cuda, cuda:1 (auto: cuda when present)")
    p.add_argument("--stream-blocks", action="store_true",
                   help="keep the DiT's blocks in CPU memory and move each to the device just before it runs, "
                        "the next one copied meanwhile (the 14B model at 480p in about 12 GB of GPU memory)")
    p.add_argument("--window", type=int, default=21, help="latent frames per window, 2 to 64 (21 = 81 frames)")
    p.add_argument("--overlap", type=int, default=4, help="latent frames shared by neighbouring windows, 0 to 32 "
                   "and below --window")
    p.add_argument("--seed", type=int, default=0, help="noise seed, 0 to 2^64-1: same seed, same video")
    p.add_argument("--cfg-parallel", action="store_true",
                   help="under torchrun: the two guidance branches on two halves of the processes")
    p.add_argument("--fps", type=float, default=None, help="frames per second of the output, 1 to 240 (default: the "
                   f"driving video's, or {WAN_FPS:g} without one)")
    p.add_argument("--out", default="output/animation.mp4", help="the video to write (.mp4, H.264 with PyAV)")
    p.add_argument("--latent-out", help="also save the latent (.safetensors), e.g. to compare runs (default: none)")
    return p


@dataclass(frozen=True)
class Sizes:
    frames: int
    width: int
    height: int
    steps: int


def resolve_sizes(args: argparse.Namespace, tiny: bool) -> Sizes:
    """The mode's defaults for the options left out; given values are kept as they are (0 stays 0)."""
    defaults = TINY_DEFAULTS if tiny else REAL_DEFAULTS
    return Sizes(*(defaults[k] if getattr(args, k) is None else getattr(args, k) for k in defaults))


def option(key: str) -> str:
    return "--" + key.replace("_", "-")


def check_range(key: str, value) -> None:
    """``value`` is a finite number within :data:`RANGES` (``shift`` must be above its lowest)."""
    low, high = RANGES[key]
    valid = f"{'above ' if key == 'shift' else ''}{low:g} to {high:g}" if isinstance(low, float) else \
        f"a whole number from {low} to {high}"
    if isinstance(value, float) and not math.isfinite(value):
        raise InputError(option(key), f"is {value} (not a finite number)", f"a finite number, {valid}")
    if not low <= value <= high or (key == "shift" and value <= low):
        raise InputError(option(key), f"{value:g} is out of range" if isinstance(value, float) else
                         f"{value} is out of range", valid)


def check_sizes(sizes: Sizes) -> None:
    for key in ("frames", "width", "height", "steps"):
        check_range(key, getattr(sizes, key))
    if not is_frame_count(sizes.frames):
        lower, upper = nearest_frame_counts(max(sizes.frames, 2))
        raise InputError("--frames", f"{sizes.frames} is not of the form 4k+1", f"{lower} or {upper}")
    for name in ("width", "height"):
        size = getattr(sizes, name)
        if size % 16:
            raise InputError(f"--{name}", f"{size} is not a multiple of 16",
                             f"{max(16, size - size % 16)} or {size - size % 16 + 16}")


def check_numbers(args: argparse.Namespace) -> None:
    """The mode-independent numbers: finite and in range, and the sampler and cache settings they make."""
    for key in ("cfg", "shift", "window", "overlap", "seed", "cache_threshold"):
        check_range(key, getattr(args, key))
    if args.fps is not None:
        check_range("fps", args.fps)
    for key in ("cache_start", "cache_end"):
        if getattr(args, key) is not None:
            check_range(key, getattr(args, key))
    if args.overlap >= args.window:
        raise InputError("--overlap", f"{args.overlap} is not below --window {args.window}",
                         f"0 to {args.window - 1}")
    if args.step_list is not None and args.sampler not in STEP_LIST_SCHEDULERS:
        raise InputError("--step-list", f"is given with --sampler {args.sampler}",
                         f"--sampler {' or '.join(STEP_LIST_SCHEDULERS)}, or no --step-list")
    try:
        make_step_cache(args.cache, args.cache_threshold, args.cache_start, args.cache_end)
        make_scheduler(args.sampler, 1, args.shift, args.step_list)
    except InputError as err:  # the core names its inputs the node way (cache_end): say the option
        raise InputError(option(err.input_name), err.problem, err.expected) from None


def _existing_file(name: str, path: str, expected: str, suffixes: tuple[str, ...] = ()) -> Path:
    p = Path(path)
    if not p.exists():
        raise InputError(name, f"'{path}' does not exist", expected)
    if not p.is_file():
        raise InputError(name, f"'{path}' is not a file", expected)
    if suffixes and p.suffix.lower() not in suffixes:
        raise InputError(name, f"'{path}' is not a {' or '.join(suffixes)} file", expected)
    return p


def check_model_files(args: argparse.Namespace) -> None:
    """Tiny mode uses its own files; with --models each named file exists inside its folder."""
    if args.models is None:
        for key, default in MODEL_DEFAULTS.items():
            if getattr(args, key) != default:
                raise InputError(option(key), "is given without --models", "--models DIR with the real files, "
                                 "or no --" + key + " for the tiny demo")
        return
    models = Path(args.models)
    if not models.is_dir():
        raise InputError("--models", f"'{args.models}' is not a folder", "a ComfyUI models folder "
                         "(with diffusion_models/, loras/, vae/ ...)")
    for key, folder in MODEL_FOLDERS.items():
        name = getattr(args, key)
        root = (models / folder).resolve()
        path = (root / name).resolve()
        if root not in path.parents:
            raise InputError(option(key), f"'{name}' is outside {folder}/", f"a file name inside {folder}/")
        if not path.exists():
            raise InputError(option(key), f"'{name}' was not found in {folder}/ of --models",
                             f"the file in {folder}/ (README, Model files)")
    if args.driving is not None:
        for name in POSE_MODELS:
            if not (models / POSE_FOLDER / name).is_file():
                raise InputError("--driving", f"needs pose model '{name}', not found in {POSE_FOLDER}/ of --models",
                                 "the DWPose files from Hugging Face yzd-v/DWPose (README, Model files)")


def check_embeddings(args: argparse.Namespace) -> None:
    """--embeddings, where given, is a readable .safetensors with a 'context' tensor (header only); with
    --models, it or --prompt is required."""
    if args.embeddings is None:
        if args.models is not None and args.prompt is None:
            raise InputError("--prompt", "is missing", "a --prompt (encoded with the umT5 file in "
                             "text_encoders/) or --embeddings (a .safetensors of umT5 embeddings); only the tiny "
                             "demo runs without either")
        return
    path = _existing_file("--embeddings", args.embeddings, "a .safetensors file with a 'context' tensor",
                          (".safetensors",))
    from safetensors import safe_open
    try:
        with safe_open(str(path), framework="pt") as f:
            keys = set(f.keys())
    except Exception as err:  # noqa: BLE001 - any unreadable header is the same user mistake
        from .errors import first_line
        raise InputError("--embeddings", f"'{args.embeddings}' is not a readable safetensors file "
                         f"({first_line(err, 120)})", "a .safetensors file with a 'context' tensor") from None
    if "context" not in keys:
        raise InputError("--embeddings", f"'{args.embeddings}' has no 'context' tensor",
                         "umT5 embeddings under 'context'")


def check_inputs(args: argparse.Namespace) -> None:
    if args.reference is not None:
        _existing_file("--reference", args.reference, "a PNG or JPEG image")
    if args.driving is not None:
        _existing_file("--driving", args.driving, "a video file (.mp4, .webm, .mov)")
    if Path(args.out).suffix.lower() != ".mp4":
        raise InputError("--out", f"'{args.out}' does not end in .mp4", "a file name ending in .mp4")
    if args.latent_out is not None and Path(args.latent_out).suffix.lower() != ".safetensors":
        raise InputError("--latent-out", f"'{args.latent_out}' does not end in .safetensors",
                         "a file name ending in .safetensors")


def compute_device(name: str) -> torch.device:
    """``--device``: auto is CUDA when present; a device this torch cannot use is refused."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InputError("--device", f"'{name}' is not a device", "cpu, cuda, cuda:N or auto") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError("--device", f"is {name} but this torch sees no CUDA device", "cpu or auto")
    return device


def check_args(args: argparse.Namespace) -> Sizes:
    """Every option, before anything is loaded; returns the resolved sizes."""
    check_numbers(args)
    compute_device(args.device)
    sizes = resolve_sizes(args, tiny=args.models is None)
    check_sizes(sizes)
    check_model_files(args)
    check_inputs(args)
    check_embeddings(args)
    return sizes


def parse_args(argv: list[str] | None = None, description: str = "") -> argparse.Namespace:
    return build_parser(description).parse_args(argv)
