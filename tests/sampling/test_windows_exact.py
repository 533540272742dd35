"""Windows through the whole sampler (sampling/video.sample_video): exactness, the reference plan,
progress per window and step, interruption inside a window, and the fallbacks for bad settings.

tests/sampling/test_windows.py checks the window functions on their own (plans, weights,
``denoise_windowed`` against the references); here the same properties hold end to end, through
guidance, the solvers and the conditioning's per-window slicing.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from poseanimate import host
from poseanimate.errors import InputError
from poseanimate.sampling.conditioning import VideoGeometry
from poseanimate.sampling.schedulers import make_scheduler
from poseanimate.sampling.video import WindowSettings, progress_text, sample_video, window_count, window_plan
from poseanimate.sampling.wan_denoiser import WanCond
from poseanimate.sampling.windows import slice_frames

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "window_plan_parity.safetensors"


class FrameWiseModel(torch.nn.Module):
    """A stand-in DiT that treats every frame alike and on its own: it mixes channels and space
    within a frame, reads the frame's own condition ``y`` and the text context, never another frame."""

    def __init__(self):
        super().__init__()
        self.gain = torch.nn.Parameter(torch.tensor(1.3))

    def forward(self, x, timestep, context, clip_fea=None, y=None, ext=None, on_block=None):
        if on_block is not None:
            on_block(0)
        t = timestep.float().view(-1, 1, 1, 1, 1) / 1000
        frame_mean = x.mean(dim=(1, 3, 4), keepdim=True)
        return torch.tanh(self.gain * x + y) * (0.5 + t) - 0.3 * frame_mean + context.mean() + 0.1 * x * x


@dataclass
class SlicedConditioning:
    """A method whose time-indexed condition ``y`` is cut to each window (like pose latents)."""

    geometry: VideoGeometry
    seed: int = 0
    calls: list = field(default_factory=list)

    def __post_init__(self):
        g = torch.Generator().manual_seed(self.seed)
        self.y = torch.randn(self.geometry.latent_shape, generator=g)

    def branch(self, positive, step, steps, window=None):
        self.calls.append((positive, step, None if window is None else (window.start, window.end)))
        y = self.y if window is None else slice_frames(self.y, window, dim=2)
        return WanCond(context=torch.full((1, 2, 8), 0.2 if positive else -0.1), y=y)

    def clear_cache(self):
        pass


def quiet(**kw):
    return dict(progress=lambda done, total: None, check_interrupt=lambda: None, **kw)


# ---------------------------------------------------------------- exactness
@pytest.mark.parametrize("weighting", ("uniform", "linear", "pyramid"))
@pytest.mark.parametrize("scheduler", ("euler", "unipc", "dpm++"))
def test_windowed_sampling_of_a_frame_wise_model_equals_one_pass(weighting, scheduler):
    """With a model that never looks across frames, blending windows changes nothing: every
    window's prediction of a frame is the whole-video prediction, so any weighted mean of them is too."""
    model = FrameWiseModel()
    geometry = VideoGeometry(frames=13, height=2, width=3)
    whole = sample_video(model, SlicedConditioning(geometry), make_scheduler(scheduler, 4, 5.0), 2.5, seed=7,
                         **quiet())
    cond = SlicedConditioning(geometry)
    windowed = sample_video(model, cond, make_scheduler(scheduler, 4, 5.0), 2.5, seed=7,
                            windows=WindowSettings(5, 2, weighting), **quiet())
    assert sorted({w for _, _, w in cond.calls}) == [(0, 5), (3, 8), (6, 11), (8, 13)]
    torch.testing.assert_close(windowed, whole, rtol=1e-6, atol=1e-6)
    assert whole.abs().max() > 0.1  # not trivially zero


@pytest.fixture(scope="module")
def reference_windows():
    with safe_open(str(FIXTURE), "pt") as f:
        return {n: f.get_tensor(f"uni.{n}.windows").tolist() for n in (21, 22, 38, 81, 200)}


@pytest.mark.parametrize("length", (21, 22, 38, 81, 200))
def test_sampler_runs_the_reference_window_plan(reference_windows, length):
    """The windows sample_video denoises (UniAnimate defaults: 21 latent frames, overlap 4, its
    private-frame rule) are those UniAnimate-DiT's long-video pipeline ran (recorded from its
    ``context_scheduler`` by tests/fixtures/make_window_plan_parity.py)."""
    cond = SlicedConditioning(VideoGeometry(frames=length, height=1, width=1))
    out = sample_video(FrameWiseModel(), cond, make_scheduler("euler", 1, 5.0), 1.0, seed=0,
                       windows=WindowSettings(), **quiet())
    ours = [list(range(*span)) for span in (w for _, _, w in cond.calls)] if length > 21 else None
    if length == 21:
        assert cond.calls == [(True, 0, None)]  # one window: one pass over the whole video
        assert reference_windows[21] == [list(range(21))]
    else:
        assert ours == reference_windows[length]
    assert out.shape == (1, 16, length, 1, 1) and torch.isfinite(out).all()


# ---------------------------------------------------------------- progress
def test_progress_reports_every_window_of_every_step():
    reports, steps_done = [], []
    sample_video(FrameWiseModel(), SlicedConditioning(VideoGeometry(9, 1, 1)), make_scheduler("euler", 3, 5.0), 2.0,
                 seed=1, windows=WindowSettings(4, 1, "uniform"), check_interrupt=lambda: None,
                 progress=lambda done, total: steps_done.append((done, total)),
                 window_progress=lambda *report: reports.append(report))
    assert window_count(9, WindowSettings(4, 1, "uniform")) == 3
    assert reports == [(s, 3, w, 3) for s in (1, 2, 3) for w in (1, 2, 3)]  # steps * windows calls
    assert steps_done == [(1, 3), (2, 3), (3, 3)]
    assert progress_text(*reports[4]) == "window 2/3, step 2/3"
    assert progress_text(12, 30, 1, 1) == "step 12/30"


def test_progress_of_a_one_pass_run_counts_steps():
    reports = []
    sample_video(FrameWiseModel(), SlicedConditioning(VideoGeometry(3, 1, 1)), make_scheduler("euler", 2, 5.0), 1.0,
                 seed=1, windows=WindowSettings(4, 1, "uniform"), check_interrupt=lambda: None,
                 window_progress=lambda *report: reports.append(report))  # no step progress: no host bar either
    assert reports == [(1, 2, 1, 1), (2, 2, 1, 1)]
    assert window_count(3, WindowSettings(4, 1)) == 1 and window_count(30, None) == 1


def test_interrupt_inside_window_k_of_step_s_stops_there():
    """Interrupt while window 2 (of 3) of step 2 (of 3) runs: nothing after it is denoised or reported."""
    cond = SlicedConditioning(VideoGeometry(9, 1, 1))
    plan = window_plan(9, WindowSettings(4, 1, "uniform"))
    target = (True, 1, (plan[1].start, plan[1].end))  # positive branch, step index 1, window index 1
    reports = []

    def check():
        if cond.calls and cond.calls[-1] == target:
            raise host.Interrupted("stop")  # the model's first block check inside that window

    with pytest.raises(host.Interrupted):
        sample_video(FrameWiseModel(), cond, make_scheduler("euler", 3, 5.0), 2.0, seed=1,
                     windows=WindowSettings(4, 1, "uniform"), progress=lambda d, t: None, check_interrupt=check,
                     window_progress=lambda *report: reports.append(report))
    assert cond.calls[-1] == target and cond.calls.count(target) == 1
    assert reports == [(1, 3, 1, 3), (1, 3, 2, 3), (1, 3, 3, 3), (2, 3, 1, 3)]
    # each finished window ran both branches (cfg 2); the interrupted one only got to its positive one
    assert len(cond.calls) == 2 * 4 + 1


# ---------------------------------------------------------------- bad settings
def test_window_longer_than_the_video_is_one_pass_and_says_so(caplog):
    cond = SlicedConditioning(VideoGeometry(5, 1, 1))
    with caplog.at_level(logging.INFO, logger="poseanimate.sampling.video"):
        out = sample_video(FrameWiseModel(), cond, make_scheduler("euler", 1, 5.0), 1.0, seed=3,
                           windows=WindowSettings(21, 4), **quiet())
    assert cond.calls == [(True, 0, None)]
    assert "5 latent frames, fewer than the 21-frame window" in caplog.text
    whole = sample_video(FrameWiseModel(), SlicedConditioning(VideoGeometry(5, 1, 1)), make_scheduler("euler", 1, 5.0),
                         1.0, seed=3, **quiet())
    assert torch.equal(out, whole)


@pytest.mark.parametrize("settings,frames,pattern", [
    (WindowSettings(4, 4, "uniform"), 3, r"window overlap.*4 is not smaller than the window length 4.*0 to 3"),
    (WindowSettings(4, 6, "uniform"), 30, r"window overlap.*not smaller"),
    (WindowSettings(6, 1, "unianimate"), 20, r"window overlap.*at least 2 with 'unianimate'"),
    (WindowSettings(2, 1, "unianimate"), 20, r"window length.*2.*at least 3 latent frames.*overlap of at least 2"),
    (WindowSettings(6, 2, "gauss"), 20, r"window blending.*'gauss'"),
])
def test_bad_window_settings_are_refused_with_the_nearest_valid(settings, frames, pattern):
    """Refused before any step runs, also when the video would fit one window."""
    cond = SlicedConditioning(VideoGeometry(frames, 1, 1))
    with pytest.raises(InputError, match=pattern):
        sample_video(FrameWiseModel(), cond, make_scheduler("euler", 1, 5.0), 1.0, seed=0, windows=settings, **quiet())
    assert cond.calls == []
