"""Every method's tiny model and conditioning from its committed parity fixture, rebuilt the same way in
the test process and in each spawned rank (plain module: spawned ranks import it by name)."""
from __future__ import annotations

import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

TESTS = Path(__file__).resolve().parents[1]
FIXTURES = TESTS / "fixtures"
ROOT = TESTS.parent


def load_pack() -> None:
    """Import the pack as ``poseanimate`` (what conftest.py does for the test process)."""
    if "poseanimate" in sys.modules:
        return
    sys.path.insert(0, str(ROOT))
    import standalone
    sys.path.remove(str(ROOT))
    standalone.load_pack()


@dataclass
class Case:
    name: str
    model: Any  # WanDiT
    conditioning: Any  # MethodConditioning
    x: torch.Tensor
    t: torch.Tensor
    cfg: float
    windows: Any = None  # WindowSettings: the video sampled window by window


def _prefixed(tensors: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def unianimate(workdir: Path) -> Case:
    from safetensors import safe_open
    from safetensors.torch import load_file
    from poseanimate.methods.unianimate import build_unianimate_conditioning, load_unianimate
    from poseanimate.models.lora import merge_loras
    from poseanimate.models.wan.config import infer_config
    from poseanimate.models.wan.dit import WanDiT
    path = FIXTURES / "unianimate_parity.safetensors"
    with safe_open(str(path), "pt") as f:
        metadata = f.metadata()
    t = load_file(str(path))
    sd = {k: v.float() for k, v in _prefixed(t, "dit/").items()}
    model = WanDiT(infer_config(sd, num_heads=int(metadata["num_heads"])), device="meta")
    model.load_state_dict(sd, strict=True, assign=True)
    ckpt = workdir / "UniAnimate-Wan2.1-14B-Lora-12000.ckpt"
    torch.save(_prefixed(t, "lora/"), str(ckpt))
    weights = load_unianimate(ckpt, model)
    merge_loras(model, [(weights.lora, 1.0)])
    cond = build_unianimate_conditioning(weights.encoders, t["ref_latent"], t["ref_pose"].float() / 255.0,
                                         t["short/pose"].float() / 255.0, t["context"], t["negative_context"],
                                         t["clip_fea"], frames=t["short/pose"].shape[0])
    long = build_unianimate_conditioning(weights.encoders, t["ref_latent"], t["ref_pose"].float() / 255.0,
                                         t["long/pose"].float() / 255.0, t["context"], t["negative_context"],
                                         t["clip_fea"], frames=t["long/pose"].shape[0])
    from poseanimate.sampling.video import WindowSettings
    windows = WindowSettings(int(metadata["window"]), int(metadata["overlap"]), "unianimate")
    return [Case("unianimate", model.eval(), cond, t["short/call_x"], t["short/call_t"], float(metadata["cfg"])),
            Case("unianimate_windows", model, long, t["short/call_x"], t["short/call_t"], float(metadata["cfg"]),
                 windows)]


def realisdance(workdir: Path) -> Case:
    sys.path.insert(0, str(TESTS / "methods" / "realisdance"))
    from realisdance_fixture import load_fixture, transformer_state, write_folder
    from poseanimate.methods.realisdance import RopeShifts, build_realisdance_conditioning, load_realisdance
    t, metadata = load_fixture()
    root = write_folder(transformer_state(t), json.loads(metadata["transformer_config"]), workdir / "realisdance")
    model = load_realisdance(root, storage_dtype="fp32")
    shifts = RopeShifts(*(c == "1" for c in metadata["sample_shifts"]))
    cond = build_realisdance_conditioning(model.layers, t["sample/pose_latents"], t["sample/ref_latent"],
                                          t["context"], t["negative_context"], t["clip_fea"], t["negative_clip_fea"],
                                          t["sample/zero_ref_latent"], t["sample/y"][:, 4:], shifts=shifts)
    return Case("realisdance", model.dit.eval(), cond, t["sample/positive_x"], t["sample/positive_t"],
                float(metadata["cfg"]))


def wan_animate(workdir: Path) -> Case:
    sys.path.insert(0, str(FIXTURES))
    import wan_animate_tiny as tiny
    from safetensors import safe_open
    from safetensors.torch import load_file
    from poseanimate.methods.wan_animate import AnimateModules, build_animate_conditioning
    from poseanimate.methods.wan_animate.modules import split_animate_tensors
    from poseanimate.models.wan.config import infer_config
    from poseanimate.models.wan.dit import WanDiT
    path = FIXTURES / "wan_animate_parity.safetensors"
    with safe_open(str(path), "pt") as f:
        shapes = json.loads(f.metadata()["dit_shapes"])
    fx = load_file(str(path))
    animate, dit_sd = split_animate_tensors(tiny.formula_state_dict(shapes))
    dit = WanDiT(infer_config(dit_sd, num_heads=tiny.HEADS), device="meta")
    dit.load_state_dict(dit_sd, strict=True, assign=True)
    modules = AnimateModules.from_state_dict(animate, tiny.HEADS)
    faces = (fx["dit/face_pixels"][0].permute(1, 2, 3, 0) + 1.0) / 2.0
    cond = build_animate_conditioning(modules, fx["dit/y"], fx["dit/pose_latents"], faces, fx["dit/context"],
                                      negative_context=fx["dit/context"] * 0.5, clip_fea=fx["dit/clip_fea"])
    return Case("wan_animate", dit.eval(), cond, fx["dit/x"], fx["dit/t"], 2.0)


class PerTokenTimesteps:
    """A stand-in method whose forwards take a timestep per video token and extra tokens with their own
    timestep (the per-token modulation rows follow each rank's slice)."""

    def __init__(self):
        from poseanimate.sampling.conditioning import VideoGeometry
        g = torch.Generator().manual_seed(11)
        self.geometry = VideoGeometry(frames=3, height=4, width=6)
        self.context = torch.randn(1, 5, 32, generator=g)
        self.extra = torch.randn(1, 5, 64, generator=g)
        self.extra_t = torch.tensor([[0.0, 100.0, 200.0, 300.0, 400.0]])

    def branch(self, positive: bool, step: int, steps: int, window=None):
        from poseanimate.models.wan.dit import DiTExtensions, ExtraTokens
        from poseanimate.sampling.wan_denoiser import WanCond
        positions = torch.tensor([[3, 0, i] for i in range(5)])
        ext = DiTExtensions(extra_tokens=[ExtraTokens(self.extra, positions, self.extra_t)])
        return WanCond(self.context * (1.0 if positive else 0.5), ext=ext)

    def clear_cache(self) -> None:
        pass


def per_token_timesteps(workdir: Path) -> Case:
    from poseanimate.models.wan.config import infer_config
    from poseanimate.models.wan.dit import WanDiT
    from poseanimate.tiny_models.wan_dit import tiny_wan_state_dict
    state = tiny_wan_state_dict("t2v", seed=4)
    model = WanDiT(infer_config(state, num_heads=2))
    model.load_state_dict(state)
    g = torch.Generator().manual_seed(12)
    x = torch.randn(1, 16, 3, 4, 6, generator=g)
    t = torch.linspace(100.0, 900.0, 18)[None]  # one timestep per video token
    return Case("per_token_t", model.eval(), PerTokenTimesteps(), x, t, 2.0)


BUILDERS = {"unianimate": unianimate, "realisdance": realisdance, "wan_animate": wan_animate,
            "per_token_t": per_token_timesteps}


def build_cases() -> list[Case]:
    load_pack()
    torch.set_num_threads(1)
    cases = []
    with tempfile.TemporaryDirectory() as tmp:
        for build in BUILDERS.values():
            built = build(Path(tmp))
            cases += built if isinstance(built, list) else [built]
    return cases


def velocities(case: Case, layout) -> dict[str, torch.Tensor]:
    """The positive and negative branch's velocity at the fixture's (x, t), split as ``layout`` says."""
    from poseanimate.parallel.launch import block_runner
    from poseanimate.sampling.wan_denoiser import WanDenoiser
    if case.windows is not None:
        return {}  # sampled only
    denoiser = WanDenoiser(case.model, on_block=lambda _i: None, runner=block_runner(layout))
    return {f"{case.name}/{'positive' if positive else 'negative'}":
            denoiser(case.x, case.t, case.conditioning.branch(positive, 0, 4)) for positive in (True, False)}


def sampled(case: Case, layout, steps: int = 4, cache: str = "none") -> torch.Tensor:
    """A 4-step guided run through sample_video (the entry point every sampler node calls), optionally
    with a step cache deciding per step (its decisions must agree on every rank)."""
    from poseanimate.sampling.schedulers import make_scheduler
    from poseanimate.sampling.step_cache import make_step_cache
    from poseanimate.sampling.video import sample_video
    case.conditioning.clear_cache()
    return sample_video(case.model, case.conditioning, make_scheduler("euler", steps, 5.0), case.cfg, 7,
                        case.windows, progress=lambda *_: None, check_interrupt=lambda: None, layout=layout,
                        cache=make_step_cache(cache, 0.5, start=1) if cache != "none" else None)
