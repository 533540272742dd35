"""RealisDance-DiT's conditioning without the DiT: reference positions, sizes, windows and input checks."""
from __future__ import annotations

import pytest
import torch

from poseanimate.errors import InputError
from poseanimate.methods.realisdance import (RealisDanceLayers, RopeShifts, build_realisdance_conditioning,
                                             grey_video, reference_grid)
from poseanimate.methods.realisdance.conditioning import reference_positions
from poseanimate.models.wan.rope import axis_pairs, grid_positions
from poseanimate.sampling.windows import plan_windows

DIM = 64
T, H, W = 5, 4, 6  # latent frames and size of the test video (tokens 5 x 2 x 3)


@pytest.fixture(scope="module")
def layers() -> RealisDanceLayers:
    torch.manual_seed(0)
    return RealisDanceLayers(DIM).eval().requires_grad_(False)


def latents(seed: int = 0, frames: int = T, h: int = H, w: int = W, ref_hw: tuple[int, int] = (6, 4)):
    g = torch.Generator().manual_seed(seed)
    smpl = torch.randn(1, 16, frames, h, w, generator=g)
    hamer = torch.randn(1, 16, frames, h, w, generator=g)
    ref = torch.randn(1, 16, 1, *ref_hw, generator=g)
    zero_ref = torch.randn(1, 16, 1, *ref_hw, generator=g)
    empty = torch.randn(1, 16, frames, h, w, generator=g)
    text = torch.randn(1, 5, 32, generator=g)
    return smpl, hamer, ref, zero_ref, empty, text


def build(layers, **changes):
    smpl, hamer, ref, zero_ref, empty, text = latents()
    args = dict(layers=layers, pose_latents=(smpl, hamer), ref_latent=ref, context=text, negative_context=-text,
                clip_fea=None, negative_clip_fea=None, zero_ref_latent=zero_ref, empty_latent=empty,
                shifts=RopeShifts(False, True, True))
    args.update(changes)
    return build_realisdance_conditioning(**args)


# ---------------------------------------------------------------- positions and sizes
def test_positions_of_a_14b_sized_reference_beside_the_video():
    """768x1344 px video (21 x 24 x 42 tokens), a 832x1216 reference (26 x 38 tokens), h and w shifted."""
    positions = reference_positions((21, 24, 42), (1, 26, 38), False, True, True)
    assert positions.dtype == torch.long and positions.shape == (26 * 38, 3)
    assert positions[:, 0].eq(0).all()
    assert positions[:, 1].min() == 24 and positions[:, 1].max() == 24 + 25
    assert positions[:, 2].min() == 42 and positions[:, 2].max() == 42 + 37
    # frame-major like attn_conv_in's flattened output: token k = (f * Hr + i) * Wr + j
    k = 3 * 38 + 5
    assert positions[k].tolist() == [0, 24 + 3, 42 + 5]
    assert axis_pairs(128) == (22, 21, 21)  # the 14B head split of the complex channels over (frame, h, w)


def test_frame_shift_starts_at_81_whatever_the_video_length():
    for frames in (3, 21, 40):
        positions = reference_positions((frames, 2, 3), (2, 2, 2), True, False, False)
        assert sorted(set(positions[:, 0].tolist())) == [81, 82]
        assert positions[:, 1:].tolist() == grid_positions(2, 2, 2)[:, 1:].tolist()


def test_all_shifts_off_is_plain_concatenation_from_zero():
    assert torch.equal(reference_positions((21, 30, 52), (1, 36, 44), False, False, False),
                       grid_positions(1, 36, 44))


@pytest.mark.parametrize("video,ref,expected", [
    ((480, 832), (480, 832), (480, 832)),      # same shape: unchanged
    ((480, 832), (1024, 1024), (624, 624)),    # square reference at the video's area
    ((768, 768), (1920, 1080), (1024, 576)),   # portrait reference for a square video
])
def test_reference_grid_keeps_the_area_and_the_reference_aspect(video, ref, expected):
    height, width = reference_grid(*video, *ref)
    assert (height, width) == expected and height % 16 == 0 and width % 16 == 0
    assert abs(height * width / (video[0] * video[1]) - 1) < 0.08


def test_reference_grid_refuses_a_sliver():
    with pytest.raises(InputError, match="too elongated"):
        reference_grid(64, 64, 10, 4000)


def test_grey_video_is_the_vae_zero():
    video = grey_video(9, 32, 48)
    assert video.shape == (9, 32, 48, 3) and torch.all(video * 2 - 1 == 0)


# ---------------------------------------------------------------- branches and windows
def test_pose_tokens_are_the_two_renders_concatenated_smpl_first(layers):
    smpl, hamer, *_ = latents()
    cond = build(layers)
    assert torch.equal(cond.pose_latents, torch.cat([smpl, hamer], dim=1))
    expected = layers.add_proj(layers.add_conv_in(torch.cat([smpl, hamer], 1)).flatten(2).transpose(1, 2))
    assert torch.allclose(cond.pose_tokens(), expected, atol=1e-6)
    pose = torch.cat([smpl, hamer], 1)  # computed a few frames at a time: the layers are frame-local
    assert torch.allclose(layers.pose_tokens(pose, frames_per_chunk=1), layers.pose_tokens(pose, frames_per_chunk=9),
                          atol=1e-6)
    half = build(layers, token_dtype=torch.bfloat16).pose_tokens()
    assert half.dtype == torch.bfloat16 and torch.allclose(half.float(), cond.pose_tokens(), rtol=1e-2, atol=1e-2)
    doubled = build(layers, pose_strength=2.0)
    assert torch.allclose(doubled.pose_tokens(), 2 * cond.pose_tokens(), atol=1e-6)


def test_each_window_is_a_clip_of_its_own_with_the_reference_in_every_window(layers):
    """Window [s, e): pose tokens of its frames, y of its length, the same reference tokens and positions."""
    smpl, hamer, ref, zero_ref, empty, text = latents()
    cond = build(layers)
    full_negative = cond.branch(False, 0, 4)
    for window in plan_windows(T, 3, 1):
        s, e = window.start, window.end
        own = build(layers, pose_latents=(smpl[:, :, s:e], hamer[:, :, s:e]), empty_latent=empty[:, :, :e - s])
        for positive in (True, False):
            got, clip = cond.branch(positive, 1, 4, window), own.branch(positive, 1, 4)
            assert torch.equal(got.y, clip.y) and got.y.shape[2] == window.length
            assert torch.allclose(got.ext.added_tokens[0], clip.ext.added_tokens[0], atol=1e-6)
            assert torch.equal(got.ext.extra_tokens[0].tokens, clip.ext.extra_tokens[0].tokens)
            assert torch.equal(got.ext.extra_tokens[0].positions, clip.ext.extra_tokens[0].positions)
        assert torch.equal(cond.branch(False, 0, 4, window).ext.extra_tokens[0].tokens,
                           full_negative.ext.extra_tokens[0].tokens)
    assert torch.equal(cond.branch(True, 0, 4).context, text)
    assert torch.equal(full_negative.context, -text)
    assert not torch.equal(cond.reference_tokens(True), cond.reference_tokens(False))


def test_a_window_holds_only_its_own_pose_tokens_shared_by_both_branches(layers):
    """Memory flat in frames at sampling: a window's pose tokens are made from its frames (not sliced from the
    whole video's), once for both branches of a step."""
    cond = build(layers)
    whole = build(layers).pose_tokens()
    per_frame = (H // 2) * (W // 2)
    for window in plan_windows(T, 3, 1):
        tokens = cond.branch(True, 0, 4, window).ext.added_tokens[0]
        assert cond.branch(False, 0, 4, window).ext.added_tokens[0] is tokens
        assert tokens.untyped_storage().nbytes() == window.length * per_frame * DIM * 4  # this window's alone
        assert torch.allclose(tokens, whole[:, window.start * per_frame:window.end * per_frame], atol=1e-6)


def test_y_is_an_empty_mask_and_the_zero_video_latent(layers):
    *_, empty, _ = latents()
    cond = build(layers, empty_latent=torch.cat([empty, empty], dim=2))  # a longer zero-video latent is cut
    assert cond.y.shape == (1, 20, T, H, W)
    assert torch.all(cond.y[:, :4] == 0) and torch.equal(cond.y[:, 4:], empty)


# ---------------------------------------------------------------- refusals
def test_pose_renders_of_different_lengths_or_sizes_are_refused(layers):
    smpl, hamer, *_ = latents()
    with pytest.raises(InputError, match="HaMeR latent.*4 latent frames"):
        build(layers, pose_latents=(smpl, hamer[:, :, :4]))
    with pytest.raises(InputError, match="HaMeR latent: is 32x32 pixels, the SMPL-CS latent 48x32"):
        build(layers, pose_latents=(smpl, hamer[:, :, :, :, :4]))
    with pytest.raises(InputError, match="16 channels"):
        build(layers, pose_latents=(smpl,))


def test_sizes_that_are_not_multiples_of_16_are_refused(layers):
    smpl, hamer, ref, *_ = latents(h=5)
    with pytest.raises(InputError, match="multiples of 16"):
        build(layers, pose_latents=(smpl, hamer))
    with pytest.raises(InputError, match="reference latent.*multiples of 16"):
        build(layers, ref_latent=ref[:, :, :, :5])


def test_a_reference_over_the_token_budget_says_what_size_fits(layers):
    """The video is 48x32 px (6 tokens a frame, budget 12): a 320x320 reference is 400 tokens."""
    big = torch.randn(1, 16, 1, 40, 40)
    with pytest.raises(InputError, match=r"reference latent: is 320x320 pixels \(400 tokens\).*budget of 12.*"
                                         r"resized to 32x32 pixels"):
        build(layers, ref_latent=big, zero_ref_latent=big)
    cond = build(layers, ref_latent=big, zero_ref_latent=big, max_reference_tokens=400)
    assert cond.ref_grid == (1, 20, 20)


def test_mismatched_unconditional_inputs_are_refused(layers):
    *_, ref, zero_ref, empty, _ = latents()
    with pytest.raises(InputError, match="zero reference latent"):
        build(layers, zero_ref_latent=zero_ref[:, :, :, :4])
    with pytest.raises(InputError, match="empty video latent"):
        build(layers, empty_latent=empty[:, :, :2])
    with pytest.raises(InputError, match="pose strength"):
        build(layers, pose_strength=-1.0)
    cond = build(layers, negative_context=None)
    cond.branch(True, 0, 2)
    with pytest.raises(InputError, match="negative prompt"):
        cond.branch(False, 0, 2)
    with pytest.raises(InputError, match="zero reference latent"):
        build(layers, zero_ref_latent=None).branch(False, 0, 2)
