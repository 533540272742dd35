"""The main job: animate a reference image with the motion of a driving video (UniAnimate-DiT on Wan 2.1).

    python animate.py                                   # tiny random-weight models, a made-up dancer
    python animate.py --models ComfyUI/models --reference me.png --driving dance.mp4 \\
                      --embeddings prompt_embeddings.safetensors

The chain of the shipped UniAnimate workflow, without ComfyUI: driving poses
(extracted from ``--driving`` with the DWPose ONNX models, or the built-in
dancer) -> retargeted to the reference's body -> rendered in UniAnimate's
training style -> conditioning (reference through the Wan VAE, pose
encoders) -> Wan DiT + UniAnimate LoRA, windows for long videos -> streamed
VAE decode -> an .mp4 in ``output/``.

``--models`` is a ComfyUI models folder holding the files under their real
names (README, "Model files"). Without it, tiny random-weight files are
written under those names into a temporary folder and the real loaders run
on them; the output then has the right length and size, not a picture, and
the job says so. ``--embeddings``: a .safetensors with ``context`` (umT5
[1, L, 4096]), optional ``negative_context`` and ``clip_fea`` (CLIP ViT-H
penultimate tokens [1, 257, 1280] of the reference), e.g. saved from
ComfyUI's encoders; random stand-ins in tiny mode.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import standalone  # noqa: E402

sys.path.pop(0)
standalone.load_pack()

from poseanimate.errors import InputError  # noqa: E402
from poseanimate.methods.images import fit_image  # noqa: E402
from poseanimate.methods.unianimate import build_unianimate_conditioning, load_unianimate  # noqa: E402
from poseanimate.models.checkpoint import load_wan_dit  # noqa: E402
from poseanimate.models.checkpoint.wan_vae import load_wan_vae  # noqa: E402
from poseanimate.models.lora import merge_loras  # noqa: E402
from poseanimate.tiny_models.model_files import DIT_FILE, UNIANIMATE_FILE, VAE_FILE, write_tiny_model_files  # noqa: E402
from poseanimate.models.wan.latent_space import is_frame_count, nearest_frame_counts  # noqa: E402
from poseanimate.models.wan.vae_streaming import decode_to_images, encode_images  # noqa: E402
from poseanimate.parallel import cli as parallel  # noqa: E402
from poseanimate.sampling.schedulers import SCHEDULER_NAMES, make_scheduler  # noqa: E402
from poseanimate.sampling.step_cache import CACHE_NAMES, make_step_cache  # noqa: E402
from poseanimate.sampling.video import WindowSettings, sample_video  # noqa: E402

POSE_MODELS = ("yolox_l.onnx", "dw-ll_ucoco_384.onnx")
GRAY = 0.5  # the frames after the reference in the image condition: 0 in Wan's -1..1 pixels


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", help="a ComfyUI models folder with the real files (default: tiny random models)")
    p.add_argument("--dit", default=DIT_FILE, help="file in <models>/diffusion_models")
    p.add_argument("--unianimate", default=UNIANIMATE_FILE, help="file in <models>/loras")
    p.add_argument("--vae", default=VAE_FILE, help="file in <models>/vae")
    p.add_argument("--reference", help="the character image (default: a made-up figure)")
    p.add_argument("--driving", help="the driving video (default: a made-up dancer)")
    p.add_argument("--embeddings", help=".safetensors with context / negative_context / clip_fea")
    p.add_argument("--frames", type=int, help="video frames, 4k+1 (default 81; tiny mode 9)")
    p.add_argument("--width", type=int, help="multiple of 16 (default 480; tiny mode 48)")
    p.add_argument("--height", type=int, help="multiple of 16 (default 832; tiny mode 80)")
    p.add_argument("--steps", type=int, help="denoising steps (default 50; tiny mode 3)")
    p.add_argument("--cfg", type=float, default=1.5)
    p.add_argument("--shift", type=float, default=5.0)
    p.add_argument("--sampler", choices=SCHEDULER_NAMES, default="euler",
                   help="lightx2v_distill, lcm_simple, lcm_beta: few-step samplers for the lightx2v distilled "
                        "models and LoRAs (use --cfg 1.0)")
    p.add_argument("--step-list", default=None,
                   help="lightx2v_distill's timesteps, comma-separated (default 1000,750,500,250)")
    p.add_argument("--cache", choices=CACHE_NAMES, default="none",
                   help="step caching: teacache, magcache or easycache (default none: every step computed)")
    p.add_argument("--cache-threshold", type=float, default=0.2,
                   help="0..1, higher is faster and less exact; 0 never caches (teacache 0.2, magcache 0.12)")
    p.add_argument("--cache-start", type=int, default=None, help="first step that may be cached (policy default)")
    p.add_argument("--cache-end", type=int, default=None, help="steps from this one on are computed")
    p.add_argument("--window", type=int, default=21, help="latent frames per window (21 = 81 frames)")
    p.add_argument("--overlap", type=int, default=4, help="latent frames shared by neighbouring windows")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cfg-parallel", action="store_true",
                   help="under torchrun: the two guidance branches on two halves of the processes")
    p.add_argument("--fps", type=float, default=16.0)
    p.add_argument("--out", default="output/animation.mp4", help="the video to write (.mp4)")
    p.add_argument("--latent-out", help="also save the latent (.safetensors), e.g. to compare runs")
    return p.parse_args(argv)


def _cv2():
    try:
        import cv2
    except ImportError as err:
        raise InputError("opencv", "is not installed", "opencv-python: run python install.py") from err
    return cv2


def read_image(path: str) -> np.ndarray:
    image = _cv2().imread(path, 1)
    if image is None:
        raise InputError(f"--reference '{path}'", "could not be read as an image", "a PNG or JPEG file")
    return image[:, :, ::-1].astype(np.float32) / 255.0


def read_video(path: str, limit: int) -> tuple[np.ndarray, float]:
    cv2 = _cv2()
    capture = cv2.VideoCapture(path)
    frames = []
    while len(frames) < limit:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame[:, :, ::-1])
    fps = capture.get(cv2.CAP_PROP_FPS) or 16.0
    capture.release()
    if not frames:
        raise InputError(f"--driving '{path}'", "has no frames OpenCV can read", "an .mp4/.webm/.mov video")
    return np.stack(frames), fps


def demo_reference(width: int, height: int) -> np.ndarray:
    """A made-up character: a lit figure on a plain background."""
    from poseanimate.pose.demo_motion import dancer_pose
    from poseanimate.pose.render import render_pose
    figure = render_pose(dancer_pose(0.0, width, height), width, height, style="openpose").astype(np.float32) / 255
    return np.clip(0.25 + 0.75 * figure, 0.0, 1.0)


def driving_and_reference_poses(args, models: Path, reference: np.ndarray, frames: int, width: int, height: int):
    """Driving poses retargeted to the reference, and the reference's own pose, rendered UniAnimate's way."""
    from poseanimate.pose.demo_motion import dancer, dancer_pose
    from poseanimate.pose.render import render_poses
    from poseanimate.pose.retarget import retarget_unianimate

    if args.driving:
        from poseanimate.pose.extract import load_pose_estimator
        detector, keypoints = (models / "poseanimate_pose" / name for name in POSE_MODELS)
        for path in (detector, keypoints):
            if not path.is_file():
                raise InputError(f"pose model '{path.name}'", f"was not found in {path.parent}",
                                 "the DWPose files from Hugging Face yzd-v/DWPose (README, Model files)")
        estimator = load_pose_estimator(str(keypoints), str(detector))
        video, _fps = read_video(args.driving, frames)
        driving = estimator(video, max_people=1)
        ref_pose = estimator(reference[None], max_people=1)[0]
    else:
        driving, ref_pose = dancer(frames, width, height, cycles=1.5), dancer_pose(0.0, width, height)
    retargeted = retarget_unianimate(driving, ref_pose)
    poses = render_poses(retargeted, width, height, style="unianimate").astype(np.float32) / 255
    ref_render = render_poses([ref_pose], width, height, style="unianimate")[0].astype(np.float32) / 255
    return torch.from_numpy(poses), torch.from_numpy(ref_render)


def embeddings(path: str | None, config, tiny: bool, seed: int):
    """(context, negative_context, clip_fea): from the file, or random stand-ins of the model's widths."""
    if path:
        from safetensors.torch import load_file
        t = load_file(path)
        if "context" not in t:
            raise InputError(f"--embeddings '{path}'", "has no 'context' tensor", "umT5 embeddings under 'context'")
        return t["context"].float(), t.get("negative_context", torch.zeros(1, 1, config.text_dim)), t.get("clip_fea")
    if not tiny:
        raise InputError("--embeddings", "is missing", "the prompt's umT5 embeddings (and CLIP features) saved as "
                         "a .safetensors; only the tiny demo runs without them")
    g = torch.Generator().manual_seed(seed + 1)
    clip = torch.randn(1, 257, config.image_embed_dim, generator=g) if config.has_image_branch else None
    return torch.randn(1, 12, config.text_dim, generator=g), torch.zeros(1, 1, config.text_dim), clip


def write_video(images: torch.Tensor, out: Path, fps: float) -> None:
    """Write an .mp4 atomically: a half-written file never takes the output's name."""
    cv2 = _cv2()
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, suffix=".partial.mp4")
    os.close(fd)
    try:
        height, width = images.shape[1:3]
        writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
        for frame in (images.clamp(0, 1) * 255).round().to(torch.uint8).numpy():
            writer.write(np.ascontiguousarray(frame[:, :, ::-1]))
        writer.release()
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_latent(latent: torch.Tensor, out: Path, metadata: dict[str, str]) -> None:
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


def check_numbers(args: argparse.Namespace) -> None:
    """The float options are finite numbers (argparse's float() takes 'nan' and 'inf')."""
    from poseanimate.nodes.input_checks import check_finite
    for option in ("cfg", "shift", "fps", "cache_threshold"):
        check_finite(f"--{option.replace('_', '-')}", getattr(args, option))
    make_step_cache(args.cache, args.cache_threshold, args.cache_start, args.cache_end)  # range and bounds
    if args.fps <= 0:
        raise InputError("--fps", f"{args.fps} is not positive", "frames per second above 0")


def check_sizes(frames: int, width: int, height: int) -> None:
    from poseanimate.memory_budget import check_frames
    check_frames(frames, "--frames")
    if not is_frame_count(frames):
        lower, upper = nearest_frame_counts(max(frames, 2))  # below 1: "1 or 5"
        raise InputError("--frames", f"{frames} is not of the form 4k+1", f"{lower} or {upper}")
    for name, size in (("--width", width), ("--height", height)):
        if size < 16 or size % 16:
            raise InputError(name, f"{size} is not a multiple of 16", f"{max(16, size - size % 16)} or "
                             f"{size - size % 16 + 16}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tiny = args.models is None
    workdir = tempfile.TemporaryDirectory(prefix="poseanimate-tiny-") if tiny else None
    try:
        check_numbers(args)
        parallel.start(args.cfg_parallel)  # torchrun --nproc-per-node N: split the work, rank 0 writes
        if tiny:
            print("NOTE: no --models given: using TINY RANDOM-WEIGHT models written under the real file names "
                  "(the real code runs end to end, but the video is noise, not an animation).")
            models = Path(workdir.name)
            write_tiny_model_files(models)
            frames, width, height, steps = args.frames or 9, args.width or 48, args.height or 80, args.steps or 3
        else:
            models = Path(args.models)
            frames, width, height, steps = args.frames or 81, args.width or 480, args.height or 832, args.steps or 50
        check_sizes(frames, width, height)
        started = time.perf_counter()
        reference = read_image(args.reference) if args.reference else demo_reference(width, height)
        reference = fit_image(torch.from_numpy(np.ascontiguousarray(reference)), height, width, "--reference")
        poses, ref_pose = driving_and_reference_poses(args, models, reference.numpy(), frames, width, height)

        model, info = load_wan_dit(models / "diffusion_models" / args.dit)
        weights = load_unianimate(models / "loras" / args.unianimate, model)
        vae = load_wan_vae(models / "vae" / args.vae)
        print(f"DiT {info.config.num_layers} blocks, dim {info.config.dim}; UniAnimate LoRA "
              f"{len(weights.lora.updates)} weights; VAE dim {vae.config.dim}")
        context, negative, clip = embeddings(args.embeddings, info.config, tiny, args.seed)
        vae_input = torch.full((frames, height, width, 3), GRAY)
        vae_input[0] = reference
        cond = build_unianimate_conditioning(weights.encoders, encode_images(vae, vae_input), ref_pose, poses,
                                             context, negative, clip, frames=frames)
        merged = merge_loras(model, [(weights.lora, 1.0)])
        try:
            scheduler = make_scheduler(args.sampler, steps, args.shift, args.step_list)
            cache = make_step_cache(args.cache, args.cache_threshold, args.cache_start, args.cache_end)
            latent = sample_video(model, cond, scheduler, args.cfg, args.seed,
                                  WindowSettings(args.window, args.overlap),
                                  progress=lambda done, total: print(f"  step {done}/{total}", flush=True),
                                  check_interrupt=lambda: None, cache=cache)
            if cache is not None:
                print(cache.report())
        finally:
            merged.restore()
        if not parallel.is_main():
            return 0
        images = decode_to_images(vae, latent)
        out = Path(args.out)
        write_video(images, out, args.fps)
        if args.latent_out:
            save_latent(latent, Path(args.latent_out), {"tiny_random_weights": str(tiny), "seed": str(args.seed)})
        print(f"{images.shape[0]} frames at {width}x{height} in {time.perf_counter() - started:.1f} s; "
              f"saved to {out}")
        if tiny:
            print("NOTE: these were tiny random-weight models; point --models at real files for a real animation.")
        return 0
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        parallel.stop()
        if workdir is not None:
            workdir.cleanup()


if __name__ == "__main__":
    sys.exit(main())
