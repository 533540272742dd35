"""The main job: animate a reference image with the motion of a driving video (UniAnimate-DiT on Wan 2.1).

    python animate.py                                   # tiny random-weight models, a made-up dancer
    python animate.py --models ComfyUI/models --reference me.png --driving dance.mp4 --prompt "a woman dancing"

The chain of the shipped UniAnimate workflow, without ComfyUI: driving poses
(extracted from ``--driving`` with the DWPose ONNX models, in tiny mode the
pack's tiny stand-ins; or the built-in dancer) -> retargeted to the reference's body -> rendered in UniAnimate's
training style -> conditioning (reference through the Wan VAE, pose
encoders) -> Wan DiT + UniAnimate LoRA, windows for long videos -> streamed
VAE decode -> an H.264 .mp4 in ``output/`` at the driving video's frame rate.

``--models`` is a ComfyUI models folder holding the files under their real
names (README, "Model files"). Without it, tiny random-weight files are
written under those names into a temporary folder and the real loaders run
on them; the output then has the right length and size, not a picture, and
the job says so. ``--prompt`` is encoded with the umT5 file in
``text_encoders/`` and the reference with ``clip_vision_h`` (both as ComfyUI
keeps them); ``--embeddings`` instead: a .safetensors with ``context`` (umT5
[1, L, 4096]), optional ``negative_context`` and ``clip_fea`` (CLIP ViT-H
penultimate tokens [1, 257, 1280] of the reference; encoded from the
reference when missing); random stand-ins in tiny mode without either.
Every option is checked (animate_args.py) before anything is loaded.
"""
from __future__ import annotations

import argparse
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

from poseanimate import animate_args  # noqa: E402
from poseanimate.errors import InputError  # noqa: E402
from poseanimate.methods.images import fit_image  # noqa: E402
from poseanimate.methods.unianimate import build_unianimate_conditioning, load_unianimate  # noqa: E402
from poseanimate.models.checkpoint import load_wan_dit  # noqa: E402
from poseanimate.models.checkpoint.wan_vae import load_wan_vae  # noqa: E402
from poseanimate.models.prompt_encoding import encode_prompts, encode_reference  # noqa: E402
from poseanimate.tiny_models.encoders import write_tiny_encoder_files  # noqa: E402
from poseanimate.models.lora import merge_loras  # noqa: E402
from poseanimate.tiny_models.model_files import copy_tiny_pose_models, write_tiny_model_files  # noqa: E402
from poseanimate.models.wan.vae_streaming import decode_to_images, encode_images  # noqa: E402
from poseanimate.parallel import cli as parallel  # noqa: E402
from poseanimate.sampling.schedulers import make_scheduler  # noqa: E402
from poseanimate.sampling.step_cache import check_cache_fits, make_step_cache  # noqa: E402
from poseanimate.models.wan.block_streaming import enable_block_streaming  # noqa: E402
from poseanimate.models.wan.speed import apply_speed_options  # noqa: E402
from poseanimate.sampling.video import WindowSettings, sample_video  # noqa: E402
from poseanimate.video.files import H264, atomic_output, write_mp4  # noqa: E402

POSE_MODELS = animate_args.POSE_MODELS
GRAY = 0.5  # the frames after the reference in the image condition: 0 in Wan's -1..1 pixels


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return animate_args.parse_args(argv, __doc__.split("\n")[0])


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
    """Up to ``limit`` RGB frames and the video's frame rate (0 where the file does not say)."""
    cv2 = _cv2()
    capture = cv2.VideoCapture(path)
    frames = []
    while len(frames) < limit:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame[:, :, ::-1])
    fps = capture.get(cv2.CAP_PROP_FPS)
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


def driving_and_reference_poses(driving_video: np.ndarray | None, models: Path, reference: np.ndarray,
                                frames: int, width: int, height: int):
    """Driving poses retargeted to the reference, and the reference's own pose, rendered UniAnimate's way."""
    from poseanimate.pose.demo_motion import dancer, dancer_pose
    from poseanimate.pose.render import render_poses
    from poseanimate.pose.retarget import retarget_unianimate

    if driving_video is not None:
        from poseanimate.pose.extract import load_pose_estimator
        detector, keypoints = (models / "poseanimate_pose" / name for name in POSE_MODELS)
        for path in (detector, keypoints):
            if not path.is_file():
                raise InputError(f"pose model '{path.name}'", "was not found in poseanimate_pose/ of --models",
                                 "the DWPose files from Hugging Face yzd-v/DWPose (README, Model files)")
        estimator = load_pose_estimator(str(keypoints), str(detector))
        driving = estimator(driving_video, max_people=1)
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
        raise InputError("--prompt", "is missing", "a prompt (encoded with the umT5 file in text_encoders/), or "
                         "--embeddings with saved umT5 embeddings; only the tiny demo runs without either")
    g = torch.Generator().manual_seed(seed + 1)
    clip = torch.randn(1, 257, config.image_embed_dim, generator=g) if config.has_image_branch else None
    return torch.randn(1, 12, config.text_dim, generator=g), torch.zeros(1, 1, config.text_dim), clip


def write_video(images: torch.Tensor, out: Path, fps: float) -> None:
    """H.264 with PyAV; without it OpenCV's MPEG-4 Part 2, said plainly (video/files.py says why)."""
    frames = (images.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    if write_mp4(frames, out, fps) != H264:
        print("NOTE: PyAV is not installed, so the video is MPEG-4 Part 2 (plays in VLC and ffmpeg, not in "
              "browsers); pip install av for H.264.")


def save_latent(latent: torch.Tensor, out: Path, metadata: dict[str, str]) -> None:
    from safetensors.torch import save_file
    with atomic_output(out, ".safetensors") as tmp:
        save_file({"latent": latent.contiguous()}, tmp, metadata=metadata)


def output_fps(args: argparse.Namespace, driving_fps: float | None) -> float:
    """--fps, else the driving video's rate (where it is one the output can have), else Wan's 16."""
    if args.fps is not None:
        return args.fps
    low, high = animate_args.RANGES["fps"]
    if driving_fps and low <= driving_fps <= high:
        return driving_fps
    return animate_args.WAN_FPS


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tiny = args.models is None
    workdir = None
    try:
        sizes = animate_args.check_args(args)  # every option, before anything is loaded
        device = animate_args.compute_device(args.device)
        frames, width, height, steps = sizes.frames, sizes.width, sizes.height, sizes.steps
        parallel.start(args.cfg_parallel)  # torchrun --nproc-per-node N: split the work, rank 0 writes
        if tiny:
            print("NOTE: no --models given: using TINY RANDOM-WEIGHT models written under the real file names "
                  "(the real code runs end to end, but the video is noise, not an animation).")
            workdir = tempfile.TemporaryDirectory(prefix="poseanimate-tiny-")
            models = Path(workdir.name)
            write_tiny_model_files(models)
            write_tiny_encoder_files(models)
            if args.driving:
                copy_tiny_pose_models(models)
        else:
            models = Path(args.models)
        started = time.perf_counter()
        reference = read_image(args.reference) if args.reference else demo_reference(width, height)
        reference = fit_image(torch.from_numpy(np.ascontiguousarray(reference)), height, width, "--reference")
        driving_video, driving_fps = read_video(args.driving, frames) if args.driving else (None, None)
        fps = output_fps(args, driving_fps)
        poses, ref_pose = driving_and_reference_poses(driving_video, models, reference.numpy(), frames, width,
                                                      height)

        encoded = None  # the encoders run (and are freed) before the DiT loads: the two never share the memory
        if args.prompt is not None and not args.embeddings:
            encoded = encode_prompts(models, args.prompt, args.negative_prompt, reference[None],
                                     text_encoder=args.text_encoder, clip_vision=args.clip_vision)
        model, info = load_wan_dit(models / "diffusion_models" / args.dit)
        weights = load_unianimate(models / "loras" / args.unianimate, model)
        vae = load_wan_vae(models / "vae" / args.vae)
        print(f"DiT {info.config.num_layers} blocks, dim {info.config.dim}; UniAnimate LoRA "
              f"{len(weights.lora.updates)} weights; VAE dim {vae.config.dim}")
        if encoded is not None:
            context, negative, clip = encoded.as_tuple()
        else:
            context, negative, clip = embeddings(args.embeddings, info.config, tiny, args.seed)
            if clip is None and info.config.has_image_branch and args.embeddings:  # the I2V DiT needs clip_fea
                clip = encode_reference(models, reference[None], clip_vision=args.clip_vision)
        vae_input = torch.full((frames, height, width, 3), GRAY)
        vae_input[0] = reference
        cond = build_unianimate_conditioning(weights.encoders, encode_images(vae, vae_input), ref_pose, poses,
                                             context, negative, clip, frames=frames)
        merged = merge_loras(model, [(weights.lora, 1.0)])
        try:
            scheduler = make_scheduler(args.sampler, steps, args.shift, args.step_list)
            cache = make_step_cache(args.cache, args.cache_threshold, args.cache_start, args.cache_end)
            check_cache_fits(cache, scheduler.steps, args.sampler)
            if args.stream_blocks:
                enable_block_streaming(model, device)
            else:
                model.to(device)
            speed = apply_speed_options(model, args.compile, args.fp8_matmul, device)
            print(f"DiT on {device}{', blocks streamed' if args.stream_blocks else ''}: {speed}")
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
        write_video(images, out, fps)
        if args.latent_out:
            save_latent(latent, Path(args.latent_out), {"tiny_random_weights": str(tiny), "seed": str(args.seed)})
        print(f"{images.shape[0]} frames at {width}x{height}, {fps:g} fps, in {time.perf_counter() - started:.1f} s; "
              f"saved to {out}")
        if tiny:
            print("NOTE: these were tiny random-weight models; point --models at real files for a real animation.")
        return 0
    except InputError as err:
        message = str(err)
        if workdir is not None:  # the tiny models' folder is deleted on exit: never point into it
            message = message.replace(workdir.name, "<tiny models>")
        print(f"error: {message}", file=sys.stderr)
        return 2
    finally:
        parallel.stop()
        if workdir is not None:
            workdir.cleanup()


if __name__ == "__main__":
    sys.exit(main())
