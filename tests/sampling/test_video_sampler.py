"""sample_video: any MethodConditioning through guidance, windows and the loop, on the tiny DiT."""
from dataclasses import dataclass, field

import pytest
import torch

from poseanimate import host
from poseanimate.sampling.conditioning import MethodConditioning, VideoGeometry
from poseanimate.models.wan.config import infer_config
from poseanimate.models.wan.dit import DiTExtensions, WanDiT
from poseanimate.tiny_models.wan_dit import tiny_wan_state_dict
from poseanimate.sampling.guidance import Guidance, cfg
from poseanimate.sampling.loop import make_noise, sample
from poseanimate.sampling.schedulers import make_scheduler
from poseanimate.sampling.video import WindowSettings, sample_video
from poseanimate.sampling.wan_denoiser import WanCond, WanDenoiser
from poseanimate.sampling.windows import Window


@pytest.fixture(scope="module")
def dit():
    state = tiny_wan_state_dict("t2v", seed=3)
    model = WanDiT(infer_config(state, num_heads=2))
    model.load_state_dict(state)
    return model.eval()


@dataclass
class ToyConditioning:
    """A method that adds a per-frame token offset on the positive branch for a fraction of the steps."""

    geometry: VideoGeometry
    start: float = 0.0
    calls: list = field(default_factory=list)

    def branch(self, positive, step, steps, window=None):
        self.calls.append((positive, step, None if window is None else (window.start, window.end)))
        frames = self.geometry.frames if window is None else window.length
        context = torch.full((1, 3, 32), 0.1 if positive else -0.1)
        ext = None
        if positive and step / steps >= self.start:
            first = 0 if window is None else window.start
            per_frame = torch.arange(first, first + frames, dtype=torch.float32).repeat_interleave(
                self.geometry.height * self.geometry.width // 4)
            ext = DiTExtensions(added_tokens=[0.01 * per_frame[None, :, None].expand(1, -1, 64)])
        return WanCond(context=context, ext=ext)

    def clear_cache(self):
        pass


def quiet(**kw):
    return dict(progress=lambda d, t: None, check_interrupt=lambda: None, **kw)


def test_protocol_and_whole_video_equals_the_plain_loop(dit):
    cond = ToyConditioning(VideoGeometry(3, 4, 4))
    assert isinstance(cond, MethodConditioning)
    scheduler = make_scheduler("euler", 3, 5.0)
    got = sample_video(dit, cond, scheduler, 2.0, seed=11, **quiet())
    # the same run written out by hand: per-step branches through Guidance and the loop
    positives = [cond.branch(True, i, 3) for i in range(3)]
    negative = cond.branch(False, 0, 3)

    class PerStep:
        def __init__(self, items):
            self.items = items

        def at_step(self, step):
            return self.items[step]

    guidance = Guidance(PerStep(positives), negative, 2.0)
    want = sample(guidance.bind(WanDenoiser(dit, on_block=lambda i: None)), make_noise((1, 16, 3, 4, 4), 11),
                  scheduler, progress=lambda d, t: None,
                  check_interrupt=lambda: None)
    assert torch.equal(got, want)
    assert got.shape == (1, 16, 3, 4, 4) and torch.isfinite(got).all()


def test_step_fraction_reaches_the_method(dit):
    cond = ToyConditioning(VideoGeometry(2, 4, 4), start=0.5)
    sample_video(dit, cond, make_scheduler("euler", 4, 5.0), 1.0, seed=0, **quiet())
    assert [step for positive, step, _ in cond.calls] == [0, 1, 2, 3]  # cfg 1: positive only, once per step
    assert all(positive for positive, _, _ in cond.calls)


def test_long_video_is_made_in_windows_and_is_deterministic(dit):
    cond = ToyConditioning(VideoGeometry(7, 4, 4))
    windows = WindowSettings(length=4, overlap=2, weighting="uniform")
    a = sample_video(dit, cond, make_scheduler("euler", 2, 5.0), 1.5, seed=5, windows=windows, **quiet())
    spans = sorted({w for _, _, w in cond.calls})
    assert spans == [(0, 4), (2, 6), (3, 7)]
    b = sample_video(dit, ToyConditioning(VideoGeometry(7, 4, 4)), make_scheduler("euler", 2, 5.0), 1.5, seed=5,
                     windows=windows, **quiet())
    assert torch.equal(a, b) and a.shape == (1, 16, 7, 4, 4)
    whole = sample_video(dit, ToyConditioning(VideoGeometry(7, 4, 4)), make_scheduler("euler", 2, 5.0), 1.5,
                         seed=5, **quiet())
    assert not torch.allclose(a, whole)  # windows see less context than one pass over all 7 frames
    # the value, written out by hand: at each Euler step every window is guided on its own slice,
    # and each frame takes the mean of the windows' velocities that cover it (uniform blending)
    ref, scheduler = ToyConditioning(VideoGeometry(7, 4, 4)), make_scheduler("euler", 2, 5.0)
    denoiser, sigmas = WanDenoiser(dit, on_block=lambda i: None), scheduler.schedule.sigmas
    x = make_noise((1, 16, 7, 4, 4), 5)
    for step in range(2):
        t = scheduler.schedule.timesteps[step:step + 1]
        total, count = torch.zeros_like(x), torch.zeros(7)
        for index, (start, end) in enumerate(spans):
            window = Window(index, start, end)
            latent = x[:, :, start:end]
            velocity = cfg(denoiser(latent, t, ref.branch(True, step, 2, window)),
                           denoiser(latent, t, ref.branch(False, step, 2, window)), 1.5)
            total[:, :, start:end] += velocity
            count[start:end] += 1
        x = x + (float(sigmas[step + 1]) - float(sigmas[step])) * total / count.view(1, 1, -1, 1, 1)
    torch.testing.assert_close(a, x, rtol=1e-5, atol=1e-5)


def test_unianimate_private_frames_are_dropped_from_the_result(dit):
    cond = ToyConditioning(VideoGeometry(6, 4, 4))
    out = sample_video(dit, cond, make_scheduler("euler", 2, 5.0), 1.0, seed=1,
                       windows=WindowSettings(4, 2, "unianimate"), **quiet())
    assert out.shape == (1, 16, 6, 4, 4) and torch.isfinite(out).all()


def test_short_video_with_windows_is_one_pass(dit):
    args = (make_scheduler("euler", 2, 5.0), 1.5)
    one = sample_video(dit, ToyConditioning(VideoGeometry(3, 4, 4)), *args, seed=2,
                       windows=WindowSettings(4, 1), **quiet())
    two = sample_video(dit, ToyConditioning(VideoGeometry(3, 4, 4)), *args, seed=2, **quiet())
    assert torch.equal(one, two)


def test_interrupt_stops_within_a_block(dit):
    blocks = []

    def stop_on_second_check():
        blocks.append(1)
        if len(blocks) == 3:  # step check, block 0, then block 1
            raise host.Interrupted("stop")

    with pytest.raises(host.Interrupted):
        sample_video(dit, ToyConditioning(VideoGeometry(2, 4, 4)), make_scheduler("euler", 3, 5.0), 1.0, seed=0,
                     progress=lambda d, t: None, check_interrupt=stop_on_second_check)
    assert len(blocks) == 3


@pytest.mark.parametrize("scheduler,steps", [("lightx2v_distill", 4), ("lcm_simple", 4), ("euler", 3)])
@pytest.mark.parametrize("windows", [None, WindowSettings(2, 1, "uniform")])
def test_guidance_one_runs_one_forward_per_step_and_never_builds_the_negative(dit, scheduler, steps, windows):
    """cfg 1.0: one DiT forward per step (per window), no negative branch built (UniAnimate-DiT and
    RealisDance-DiT resolve their negative only in ``branch(positive=False)``)."""
    forwards = []
    hook = dit.register_forward_hook(lambda *a: forwards.append(1))
    try:
        cond = ToyConditioning(VideoGeometry(3, 4, 4))
        sched = make_scheduler(scheduler, steps, 5.0)
        sample_video(dit, cond, sched, 1.0, seed=1, windows=windows, **quiet())
        count = 1 if windows is None else 2  # 3 frames in windows of 2 overlapping by 1
        assert sched.steps == steps and len(forwards) == steps * count
        assert all(positive for positive, _, _ in cond.calls) and len(cond.calls) == steps * count
        forwards.clear()
        cond = ToyConditioning(VideoGeometry(3, 4, 4))
        sample_video(dit, cond, sched, 2.0, seed=1, windows=windows, **quiet())
        assert len(forwards) == 2 * steps * count and sum(not p for p, _, _ in cond.calls) == steps * count
    finally:
        hook.remove()
