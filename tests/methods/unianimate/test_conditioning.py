"""UniAnimateConditioning: what each branch gets per step and window, and the builder's input checks."""
from __future__ import annotations

import logging

import pytest
import torch

from poseanimate.errors import InputError
from poseanimate.methods.unianimate import UniAnimateEncoders, build_unianimate_conditioning
from poseanimate.methods.unianimate.conditioning import image_condition
from poseanimate.sampling.windows import Window

DIM, H, W = 32, 32, 48  # pixels; latent 4x6


@pytest.fixture(scope="module")
def encoders() -> UniAnimateEncoders:
    torch.manual_seed(0)
    enc = UniAnimateEncoders(DIM).eval()
    with torch.no_grad():
        for p in enc.parameters():
            p.normal_(0.0, 0.3)
    return enc


def inputs(frames: int = 9, latent_frames: int = 3, seed: int = 0, **sizes):
    g = torch.Generator().manual_seed(seed)
    pose_h, pose_w = sizes.get("pose", (H, W))
    ref_h, ref_w = sizes.get("ref", (H, W))
    return dict(
        ref_latent_y=torch.randn(1, 16, latent_frames, H // 8, W // 8, generator=g),
        ref_pose_image=torch.rand(ref_h, ref_w, 3, generator=g),
        pose_frames=torch.rand(frames, pose_h, pose_w, 3, generator=g),
        context=torch.randn(1, 5, 8, generator=g),
        negative_context=torch.randn(1, 3, 8, generator=g),
        clip_fea=torch.randn(1, 257, 8, generator=g),
    )


def build(encoders, **overrides):
    kwargs = inputs()
    kwargs.update(overrides)
    return build_unianimate_conditioning(encoders, **kwargs)


def test_positive_gets_pose_tokens_negative_gets_none_and_both_share_y(encoders):
    args = inputs()
    cond = build_unianimate_conditioning(encoders, **args)
    pos, neg = cond.branch(True, 0, 4), cond.branch(False, 0, 4)
    assert pos.context is args["context"] and neg.context is args["negative_context"]
    assert pos.clip_fea is neg.clip_fea is args["clip_fea"]
    assert torch.equal(pos.y, neg.y)
    assert neg.ext is None
    (tokens,) = pos.ext.added_tokens
    assert torch.equal(tokens, encoders.pose_tokens(args["pose_frames"]))
    assert tokens.shape == (1, 3 * 2 * 3, DIM)
    # y = cat(mask, latent) + the reference pose map on every frame and all 20 channels
    ref_map = encoders.reference_pose(args["ref_pose_image"])
    expected = image_condition(args["ref_latent_y"]) + ref_map.unsqueeze(2)
    assert torch.equal(pos.y, expected)
    assert torch.equal(image_condition(args["ref_latent_y"])[:, :4, 0], torch.ones(1, 4, 4, 6))
    assert not image_condition(args["ref_latent_y"])[:, :4, 1:].any()


def test_pose_schedule_and_strength(encoders):
    cond = build(encoders, pose_start=0.2, pose_end=0.6, pose_strength=0.5)
    active = [cond.branch(True, i, 10).ext is not None for i in range(10)]
    assert active == [False, False, True, True, True, True, False, False, False, False]
    full = build(encoders)
    assert torch.equal(cond.branch(True, 3, 10).ext.added_tokens[0], 0.5 * full.branch(True, 3, 10).ext.added_tokens[0])
    assert build(encoders, pose_strength=0.0).branch(True, 0, 4).ext is None
    assert all(full.branch(True, i, 4).ext is not None for i in range(4))  # default: every step


def test_window_gets_its_own_pose_frames_and_a_y_of_its_length(encoders):
    args = inputs(frames=25, latent_frames=7)
    cond = build_unianimate_conditioning(encoders, **args)
    window = Window(1, 2, 6)
    pos = cond.branch(True, 0, 4, window)
    assert torch.equal(pos.y, cond.y[:, :, :4])  # the reference image as the window's first frame
    assert torch.equal(pos.y[:, :4, 0], cond.y[:, :4, 0])
    expected = encoders.pose_tokens(args["pose_frames"][8:21])
    assert torch.equal(pos.ext.added_tokens[0], expected)
    assert cond.branch(True, 1, 4, window).ext.added_tokens[0] is pos.ext.added_tokens[0]  # cached per window
    assert cond.branch(False, 0, 4, window).y.shape[2] == 4
    with pytest.raises(ValueError, match="outside"):
        cond.branch(True, 0, 4, Window(2, 5, 9))
    cond.clear_cache()
    assert not cond._tokens


def test_shorter_latent_prefix_equals_a_shorter_build(encoders):
    """A 7-frame reference latent cut to 9 pixel frames is exactly a 3-frame one (the VAE is causal)."""
    args = inputs(frames=9, latent_frames=7)
    long = build_unianimate_conditioning(encoders, frames=9, **args)
    short = build_unianimate_conditioning(encoders, **dict(args, ref_latent_y=args["ref_latent_y"][:, :, :3]))
    assert long.geometry == short.geometry and torch.equal(long.y, short.y)


def test_fewer_pose_frames_are_padded_with_the_last_and_warned(encoders, caplog):
    args = inputs(frames=6)
    with caplog.at_level(logging.WARNING):
        cond = build_unianimate_conditioning(encoders, **args)
    assert "6 frames for a 9-frame video" in caplog.text
    assert cond.pose_frames.shape[0] == 9
    assert torch.equal(cond.pose_frames[5:], args["pose_frames"][5:6].expand(4, -1, -1, -1))
    more = build_unianimate_conditioning(encoders, **inputs(frames=12))
    assert more.pose_frames.shape[0] == 9


def test_frame_count_errors_name_the_nearest_valid_counts(encoders):
    with pytest.raises(InputError, match="77 or 81"):
        build(encoders, ref_latent_y=torch.zeros(1, 16, 21, 4, 6), frames=80)
    with pytest.raises(InputError, match="covers 9 frames"):
        build(encoders, frames=13)
    with pytest.raises(InputError, match="5 or 9"):
        encoders.pose_tokens(torch.rand(7, H, W, 3))


def test_size_errors_say_what_is_expected(encoders):
    with pytest.raises(InputError, match="pose frames: are 64x32 pixels; expected the video's pixel size 48x32"):
        build_unianimate_conditioning(encoders, **inputs(pose=(32, 64)))
    with pytest.raises(InputError, match="reference pose: is 64x32 pixels, a different shape from the 48x32 video"):
        build_unianimate_conditioning(encoders, **inputs(ref=(32, 64)))
    with pytest.raises(InputError, match="20 channels .*mask is added here"):
        build(encoders, ref_latent_y=torch.zeros(1, 20, 3, 4, 6))
    with pytest.raises(InputError, match="multiples of 16"):
        encoders.pose_tokens(torch.rand(5, 24, 48, 3))


def test_reference_pose_of_the_same_shape_is_resized(encoders):
    cond = build_unianimate_conditioning(encoders, **inputs(ref=(64, 96)))
    assert cond.y.shape == (1, 20, 3, 4, 6)


def test_schedule_and_negative_errors(encoders):
    with pytest.raises(InputError, match="pose end"):
        build(encoders, pose_start=0.5, pose_end=0.5)
    with pytest.raises(InputError, match="pose strength"):
        build(encoders, pose_strength=-1.0)
    cond = build(encoders, negative_context=None)
    with pytest.raises(InputError, match="negative prompt"):
        cond.branch(False, 0, 4)
