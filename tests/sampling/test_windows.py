"""Window planning and blending, and condition slicing (Wan2.2-Animate's clips: tests/methods/wan_animate/test_plan.py).

Parity fixtures come from tests/fixtures/make_window_plan_parity.py, which runs
the references' own code (UniAnimate-DiT's long-video ``__call__``, ComfyUI's
context-window handler, Wan2.2-Animate's ``generate``) with stub models.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from poseanimate.errors import InputError
from poseanimate.models.wan.latent_space import is_frame_count, latent_frames, nearest_frame_counts, pixel_frames
from poseanimate.sampling import windows as W

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "window_plan_parity.safetensors"
BLENDINGS = ("uniform", "linear", "pyramid", "relative", "unianimate")
NO_INTERRUPT = lambda: None  # noqa: E731


@pytest.fixture(scope="module")
def fixture():
    with safe_open(str(FIXTURE), "pt") as f:
        tensors = {key: f.get_tensor(key) for key in f.keys()}
        meta = json.loads(f.metadata()["meta"])
    return tensors, meta


def spans(plan):
    return [(w.start, w.end) for w in plan]


# ---------------------------------------------------------------- frame counts
def test_frame_counts():
    assert [latent_frames(p) for p in (1, 2, 4, 5, 6, 81, 84, 85)] == [1, 1, 1, 2, 2, 21, 21, 22]
    assert [pixel_frames(t) for t in (1, 2, 21, 22)] == [1, 5, 81, 85]
    assert [is_frame_count(p) for p in (0, 1, 2, 5, 80, 81)] == [False, True, False, True, False, True]
    assert [nearest_frame_counts(p) for p in (0, 1, 2, 4, 5, 82, 84)] == [(0, 1), (1, 1), (1, 5), (1, 5), (5, 5),
                                                                           (81, 85), (81, 85)]
    with pytest.raises(InputError, match="pixel frames"):
        latent_frames(0)
    with pytest.raises(InputError, match="latent frames"):
        pixel_frames(0)
    assert W.Window(1, 17, 38).frames("pixel") == (68, 149) == (4 * 17, pixel_frames(38))


# ---------------------------------------------------------------- planning
def test_plan_unianimate_defaults():
    assert spans(W.plan_windows(81, 21, 4)) == [(0, 21), (17, 38), (34, 55), (51, 72), (60, 81)]
    assert spans(W.plan_windows(22, 21, 4)) == [(0, 21), (1, 22)]
    assert spans(W.plan_windows(21, 21, 4)) == [(0, 21)]
    assert W.plan_windows(21, 21, 4).notice is None
    assert spans(W.plan_windows(50, 21, 4, "batched")) == [(0, 21), (21, 42), (42, 50)]


@pytest.mark.parametrize("window,overlap", [(21, 4), (8, 3), (5, 0), (6, 5), (1, 0)])
def test_plan_static_properties(window, overlap):
    for total in range(1, 90):
        plan = W.plan_windows(total, window, overlap)
        assert [w.index for w in plan] == list(range(len(plan)))
        if total <= window:
            assert spans(plan) == [(0, total)]
            assert (plan.notice is None) == (total == window)
            continue
        assert plan.notice is None
        assert plan[0].start == 0 and plan[-1].end == total
        assert all(w.length == window for w in plan)
        for a, b in zip(plan, plan[1:]):
            assert a.start < b.start and b.start <= a.end - overlap  # shared frames >= overlap
            if b.index < len(plan) - 1:
                assert b.start - a.start == window - overlap
        assert set().union(*(range(w.start, w.end) for w in plan)) == set(range(total))


def test_short_video_is_one_window_with_notice():
    plan = W.plan_windows(7, 21, 4)
    assert spans(plan) == [(0, 7)]
    assert "7 latent frames" in plan.notice and "21" in plan.notice


# ---------------------------------------------------------------- weights
def test_weights_match_comfy_formulas():
    plan = W.plan_windows(30, 8, 3)
    assert W.window_weights(plan, plan[1], "pyramid").tolist() == [1, 2, 3, 4, 4, 3, 2, 1]
    plan7 = W.plan_windows(20, 7, 2)
    assert W.window_weights(plan7, plan7[0], "pyramid").tolist() == [1, 2, 3, 4, 3, 2, 1]
    first, middle, last = plan[0], plan[1], plan[-1]
    ramp = torch.linspace(1e-37, 1, 3)
    assert torch.equal(W.window_weights(plan, first, "linear"), torch.cat([torch.ones(5), ramp.flip(0)]))
    assert torch.equal(W.window_weights(plan, middle, "linear"), torch.cat([ramp, torch.ones(2), ramp.flip(0)]))
    assert torch.equal(W.window_weights(plan, last, "linear"), torch.cat([ramp, torch.ones(5)]))
    relative = W.window_weights(plan, middle, "relative")
    expected = [max(1e-2, 1 - abs(p - 3.5) / (7.01 / 2)) for p in range(8)]
    assert torch.allclose(relative, torch.tensor(expected), rtol=0, atol=1e-7)
    uni = W.window_weights(plan, middle, "unianimate")
    assert uni.tolist() == [0, 0, 1, 1, 1, 1, 1, 1]
    assert W.window_weights(plan, first, "unianimate").tolist() == [1] * 8


# ---------------------------------------------------------------- (a) exactness
def per_frame(x: torch.Tensor) -> torch.Tensor:
    """A denoiser that treats every frame alike: the windowed result must equal the whole one."""
    return torch.tanh(1.7 * x) + 0.3 * x * x - x.mean(dim=(1, 3, 4), keepdim=True)


@pytest.mark.parametrize("blending", BLENDINGS)
@pytest.mark.parametrize("total,window,overlap,mode", [(1, 21, 4, "static"), (5, 21, 4, "static"),
                                                       (21, 21, 4, "static"), (22, 21, 4, "static"),
                                                       (38, 21, 4, "static"), (81, 21, 4, "static"),
                                                       (47, 9, 3, "static"), (30, 6, 5, "static"),
                                                       (50, 21, 0, "batched")])
def test_windowed_per_frame_denoiser_is_exact(blending, total, window, overlap, mode):
    plan = W.plan_windows(total, window, overlap, mode)
    if blending == "unianimate" and len(plan) > 1 and overlap < 2:
        with pytest.raises(InputError, match="overlap"):
            W.check_blending(plan, blending)
        return
    g = torch.Generator().manual_seed(total * 31 + window)
    x = torch.randn(2, 3, total, 2, 3, generator=g)
    state = W.add_private_frames(x, plan, blending, generator=g)
    assert state.shape[2] == W.state_frames(plan, blending)
    seen = []
    prediction = W.denoise_windowed(lambda latent, w: seen.append(w) or per_frame(latent), state, plan, blending,
                                    check_interrupt=NO_INTERRUPT)
    assert seen == list(plan)
    torch.testing.assert_close(prediction, per_frame(state), rtol=1e-6, atol=1e-6)
    assert W.real_frames(prediction, plan).shape == x.shape
    torch.testing.assert_close(W.real_frames(prediction, plan), per_frame(x), rtol=1e-6, atol=1e-6)


def test_private_frames_layout():
    plan = W.plan_windows(38, 21, 4)
    assert W.private_frame_count(plan, "unianimate") == 2 and W.private_frame_count(plan, "uniform") == 0
    assert W.private_frame_count(W.plan_windows(21, 21, 4), "unianimate") == 0
    assert W.state_indices(plan, plan[1], "unianimate")[:4] == [38, 39, 19, 20]
    x = torch.arange(38.0).view(1, 1, 38, 1, 1)
    state = W.add_private_frames(x, plan, "unianimate", noise=torch.tensor([100.0, 101.0]).view(1, 1, 2, 1, 1))
    assert W.window_input(state, plan, plan[1], "unianimate").flatten()[:4].tolist() == [100, 101, 19, 20]
    assert W.window_input(state, plan, plan[0], "unianimate").flatten().tolist() == list(range(21))
    assert torch.equal(W.real_frames(state, plan), x)
    assert W.add_private_frames(x, plan, "uniform") is x


def test_denoise_windowed_with_conditions_cut_per_window_and_interrupt_checks():
    """Conditions cut per window with slice_frames (latent and pixel units), interrupt checked per window."""
    plan = W.plan_windows(40, 12, 4)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 2, 40, 2, 2, generator=g)
    pose = torch.randn(1, 2, 40, 2, 2, generator=g)  # latent-frame condition
    face = torch.randn(pixel_frames(40), 5, generator=g)  # pixel-frame condition
    face_per_latent = torch.stack([face[0]] + [face[4 * t - 3:4 * t + 1].sum(0) for t in range(1, 40)])

    def model(latent, timestep, cond):
        pose_part = cond["pose"]
        f = cond["face"]  # pixel frames of the window's own clip: 1 + 4 (n - 1)
        grouped = torch.stack([f[0]] + [f[4 * t - 3:4 * t + 1].sum(0) for t in range(1, latent.shape[2])])
        return latent * timestep + pose_part + grouped.sum(1).view(1, 1, -1, 1, 1)

    def cut(cond, window):
        return {"pose": W.slice_frames(cond["pose"], window, dim=2),
                "face": W.slice_frames(cond["face"], window, dim=0, unit="pixel")}

    checks = []
    cond = {"pose": pose, "face": face}
    out = W.denoise_windowed(lambda latent, window: model(latent, torch.tensor(0.5), cut(cond, window)), x, plan,
                             "pyramid", check_interrupt=lambda: checks.append(1))
    # Whole-video value, corrected where a window differs: each window is a clip of its own, so its
    # first latent frame is the one pixel frame 4 * start, not the four frames the video groups there.
    whole = x * 0.5 + pose + face_per_latent.sum(1).view(1, 1, -1, 1, 1)
    own_first = torch.zeros_like(whole)
    counts = torch.zeros(40)
    for w in plan:
        weights = W.window_weights(plan, w, "pyramid")
        first_frame = face[4 * w.start].sum() - face_per_latent[w.start].sum()
        own_first[:, :, w.start] += weights[0] * first_frame
        counts[w.start:w.end] += weights
    expected = whole + own_first / counts.view(1, 1, -1, 1, 1)
    assert len(checks) == len(plan)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- slicing
def test_slice_frames():
    window = W.plan_windows(38, 21, 4)[1]  # latent 17..37
    latents = torch.arange(38).view(1, 1, 38)
    assert W.slice_frames(latents, window, dim=2).flatten().tolist() == list(range(17, 38))
    pixels = torch.arange(pixel_frames(38))
    assert W.slice_frames(pixels, window, unit="pixel").tolist() == list(range(68, 149))
    assert W.slice_frames(list(range(149)), window, unit="pixel") == list(range(68, 149))
    tokens = torch.arange(38 * 6).view(1, 38 * 6, 1)  # [B, T * h * w, C], h * w = 6
    assert W.slice_frames(tokens, window, dim=1, per_frame=6).flatten().tolist() == list(range(17 * 6, 38 * 6))
    assert W.slice_frames(None, window) is None
    with pytest.raises(InputError, match="pose video: has 100 pixel frames.*needs 149"):
        W.slice_frames(torch.zeros(100), window, unit="pixel", name="pose video")
    with pytest.raises(InputError, match="masks"):
        W.slice_frames([0] * 30, window, name="masks")


# ---------------------------------------------------------------- (b) UniAnimate parity
class UniFakeDit:
    """The per-token fake DiT of the fixture script (head of tokens [latent, y] + pose)."""

    def __init__(self, head_matrix):
        self.head = head_matrix

    def __call__(self, tokens, t):
        return torch.tanh(tokens @ self.head) * (1 + t / 1000) + 0.5 * tokens[..., :16]


def uni_pose_embed(codes: torch.Tensor) -> torch.Tensor:
    """The fixture's pose embedding on a window's pixel slice: first frame repeated 3 more times,
    then each group of 4 frames summed -> one value per latent frame; [n, h, w]."""
    padded = torch.cat([codes[:1].repeat(3, 1, 1), codes], 0).float()
    return padded.view(-1, 4, *codes.shape[1:]).sum(1)


@pytest.mark.parametrize("length", (21, 22, 38, 81, 200))
def test_unianimate_long_video_parity(fixture, length):
    tensors, meta = fixture
    key = f"uni.{length}"
    plan = W.plan_windows(length, W.DEFAULT_WINDOW, W.DEFAULT_OVERLAP)
    recorded = tensors[f"{key}.windows"]
    assert [list(range(w.start, w.end)) for w in plan] == recorded.tolist()

    # Pose: sliced by pixel frames, embedded per window.
    codes = tensors[f"{key}.pose_codes"]
    embeds = [uni_pose_embed(W.slice_frames(codes, w, dim=0, unit="pixel")) for w in plan]
    for ours, theirs in zip(embeds, tensors[f"{key}.pose_embed"]):
        assert torch.equal(ours, theirs)
    scale = 2.0 ** (torch.arange(36) % 3 - 1).float()

    dit = UniFakeDit(tensors["uni.head_matrix"])
    y = tensors[f"{key}.y"]  # the same window-length conditioning for every window
    sigmas, timesteps = tensors["uni.sigmas"], tensors["uni.timesteps"]
    buffers = tensors[f"{key}.buffers"]  # [windows, 1, 16, 2, h, w]

    def denoise(latent, window, t):
        z = torch.cat([latent, y], dim=1)  # [1, 36, 21, h, w]
        pose = embeds[window.index].unsqueeze(0) * scale.view(-1, 1, 1, 1)  # [36, 21, h, w]
        tokens = z.flatten(2).transpose(1, 2) + pose.flatten(1).transpose(0, 1).unsqueeze(0)
        out = dit(tokens, t)
        return out.transpose(1, 2).reshape(latent.shape)

    # Window 0's buffer stands in for the seeded noise at frames 0-1 (only window 0 reads them).
    x = tensors[f"{key}.noise"].clone()
    x[:, :, :2] = buffers[0]
    private = torch.cat(list(buffers[1:]), dim=2) if len(plan) > 1 else None
    state = W.add_private_frames(x, plan, "unianimate", noise=private)
    for i in range(len(timesteps)):
        t = timesteps[i].view(1, 1)
        velocity = W.denoise_windowed(lambda latent, w: denoise(latent, w, t), state, plan, "unianimate",
                                      check_interrupt=NO_INTERRUPT)
        sigma_next = sigmas[i + 1] if i + 1 < len(sigmas) else torch.tensor(0.0)
        state = state + velocity * (sigma_next - sigmas[i])
    final = tensors[f"{key}.final"]
    ours = W.real_frames(state, plan)
    error = ((ours - final).abs().max() / final.abs().max()).item()
    assert error < 2e-6, error


# ---------------------------------------------------------------- ComfyUI parity
def test_comfy_context_windows_parity(fixture):
    tensors, meta = fixture
    modes = {"standard_static": "static", "batched": "batched"}
    blendings = {"flat": "uniform", "pyramid": "pyramid", "relative": "relative", "overlap-linear": "linear"}
    worst = 0.0
    for case in meta["comfy"]:
        plan = W.plan_windows(case["total"], case["window"], case["overlap"], modes[case["schedule"]])
        assert [list(range(w.start, w.end)) for w in plan] == case["windows"], case["name"]
        x = tensors[case["name"].rsplit(".", 2)[0] + ".x"]

        def fake(latent, window):
            position = torch.arange(latent.shape[2], dtype=torch.float32).view(1, 1, -1, 1, 1)
            return torch.sin(latent) + 0.05 * window.start + 0.01 * position

        out = W.denoise_windowed(fake, x, plan, blendings[case["fuse"]], check_interrupt=NO_INTERRUPT)
        expected = tensors[case["name"] + ".out"]
        worst = max(worst, (out - expected).abs().max().item())
    assert len(meta["comfy"]) >= 60
    assert worst < 1e-6, worst


# ---------------------------------------------------------------- (d) bad input
@pytest.mark.parametrize("call,pattern", [
    (lambda: W.plan_windows(30, 21, 21), r"window overlap.*21 is not smaller than the window length 21.*0 to 20"),
    (lambda: W.plan_windows(30, 21, 25), r"window overlap.*not smaller"),
    (lambda: W.plan_windows(30, 21, -1), r"window overlap.*-1"),
    (lambda: W.plan_windows(30, 0, 0), r"window length.*0 is not a whole number of 1 or more"),
    (lambda: W.plan_windows(0, 21, 4), r"video length.*0"),
    (lambda: W.plan_windows(30, 21.5, 4), r"window length"),
    (lambda: W.plan_windows(30, 21, 4, "looped"), r"window mode.*'looped'.*static, batched"),
    (lambda: W.window_weights(W.plan_windows(30, 21, 4), W.Window(0, 0, 21), "gauss"), r"window blending.*gauss"),
    (lambda: W.check_blending(W.plan_windows(50, 21, 1), "unianimate"), r"window overlap.*at least 2"),
])
def test_bad_input(call, pattern):
    with pytest.raises(InputError, match=pattern):
        call()


def test_wrong_state_length_is_a_clear_error():
    plan = W.plan_windows(38, 21, 4)
    with pytest.raises(ValueError, match="add_private_frames"):
        W.denoise_windowed(lambda latent, w: latent, torch.zeros(1, 1, 38, 1, 1), plan, "unianimate",
                           check_interrupt=NO_INTERRUPT)


def test_blendings_are_a_registry():
    assert W.WEIGHTINGS == tuple(W.BLENDINGS) == BLENDINGS
    assert W.BLENDINGS["unianimate"].private_frames == 2
    assert all(b.private_frames == 0 for name, b in W.BLENDINGS.items() if name != "unianimate")
    plan = W.plan_windows(10, 5, 2)
    for name in BLENDINGS:
        weights = W.window_weights(plan, plan[1], name)
        assert weights.shape == (5,) and weights.dtype == torch.float32
    assert W.window_weights(plan, plan[1], "unianimate").tolist() == [0, 0, 1, 1, 1]
    assert W.window_weights(plan, plan[1], "pyramid").tolist() == [1, 2, 3, 2, 1]
