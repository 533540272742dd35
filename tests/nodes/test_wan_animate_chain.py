"""Wan2.2-Animate through the pack's nodes, outside the host, on tiny files under the real names: animation and
replacement (pose mask, relighting LoRA; the background kept and the person painted where the mask says), chained
clips, the frame count of the input, progress through the host seam."""
import pytest
import torch

from poseanimate import host
from poseanimate.errors import InputError
from poseanimate.methods.wan_animate import run as wan_animate_run
from poseanimate.methods.wan_animate.clips import build_clip_y
from poseanimate.tiny_models.model_files import ANIMATE_FILE, RELIGHT_FILE, VAE_FILE, write_tiny_model_files
from poseanimate.nodes.vae_nodes import PoseAnimateVAELoader
from poseanimate.nodes.wan_animate_nodes import (PoseAnimatePoseMask, PoseAnimateRelightLoRA, PoseAnimateWanAnimate,
                                                 PoseAnimateWanAnimateLoader)
from poseanimate.pose.demo_motion import dancer
from poseanimate.pose.keypoints import to_pose_keypoint
from poseanimate.sampling.schedulers import make_scheduler

H, W = 32, 48
RUN = dict(clip_frames=77, refert_num="1", seed=5, steps=2, cfg=1.0, shift=5.0, scheduler="unipc", pose_strength=1.0,
           face_strength=1.0, no_face_frames="nearest")


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    write_tiny_model_files(root)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("POSEANIMATE_MODELS", str(root))
        dit, animate = PoseAnimateWanAnimateLoader().load(ANIMATE_FILE, "fp32", "fp32", "sdpa")
        (vae,) = PoseAnimateVAELoader().load(VAE_FILE, "fp32", 0, 8)
        (relit,) = PoseAnimateRelightLoRA().apply(dit, animate, RELIGHT_FILE, 1.0, True)
        yield dit, relit, animate, vae


def _inputs(frames):
    g = torch.Generator().manual_seed(1)
    text = torch.randn(1, 5, 32, generator=g)
    clip = torch.randn(1, 257, 32, generator=g)
    return text, clip, torch.rand(1, H, W, 3, generator=g), torch.rand(frames, H, W, 3, generator=g), \
        torch.rand(frames, 64, 64, 3, generator=g)


def test_animation_mode_chains_clips_to_the_input_length(loaded):
    dit, _, animate, vae = loaded
    text, clip, ref, poses, faces = _inputs(11)
    node = PoseAnimateWanAnimate()
    short_clips = dict(RUN, clip_frames=5)  # clips of 5 frames, so three chain on 11 frames
    (images,) = node.animate(dit, animate, vae, text, text, clip, ref, poses, face_video=faces, **short_clips)
    (again,) = node.animate(dit, animate, vae, text, text, clip, ref, poses, face_video=faces, **short_clips)
    assert images.shape == (11, H, W, 3) and torch.isfinite(images).all()
    assert torch.equal(images, again)


def _replacement_inputs(frames):
    """Random inputs, a background video unlike the poses, and the pose mask of the demo dancer."""
    text, clip, ref, poses, faces = _inputs(frames)
    background = torch.rand(frames, H, W, 3, generator=torch.Generator().manual_seed(2))
    keypoints = to_pose_keypoint(dancer(frames, W, H))
    (mask,) = PoseAnimatePoseMask().mask(keypoints, 0, 0, 0, 3, 7, 1, 1)
    return text, clip, ref, poses, faces, background, keypoints, mask


def _record_clips(monkeypatch):
    """Record each clip's inputs and image condition ``y`` as the core builds them."""
    seen = []

    def recording(encode, reference_latent, inputs, refert_frames=None):
        y = build_clip_y(encode, reference_latent, inputs, refert_frames)
        seen.append((inputs, y))
        return y
    monkeypatch.setattr(wan_animate_run, "build_clip_y", recording)
    return seen


def test_replacement_mode_with_pose_mask_and_relighting(loaded, monkeypatch):
    _, relit, animate, vae = loaded
    text, clip, ref, poses, faces, background, keypoints, mask = _replacement_inputs(9)
    assert mask.shape == (9, H, W) and 0 < mask.mean() < 1
    assert set(mask.unique().tolist()) == {0.0, 1.0}
    seen = _record_clips(monkeypatch)
    node = PoseAnimateWanAnimate()
    run = dict(RUN, clip_frames=5)  # two clips of 5 on 9 frames: the second starts on the first's last frame
    (images,) = node.animate(relit, animate, vae, text, text, clip, ref, poses, face_video=faces,
                             face_poses=keypoints, background_video=background, person_mask=mask, **run)
    assert images.shape == (9, H, W, 3) and torch.isfinite(images).all()

    assert [inputs.clip.start for inputs, _ in seen] == [0, 4]
    for inputs, y in seen:
        frames = slice(inputs.clip.start, inputs.clip.end)
        # the background is kept where the mask is 0 and blacked out on the person (mask 1)
        person = mask[frames].bool()
        assert torch.equal(inputs.background[~person], background[frames][~person])
        assert not inputs.background[person].any()
        assert torch.equal(inputs.person_mask, mask[frames])
        # y's mask channels after the reference frame: 1 where the model keeps the background (1 - mask at the
        # latent pixels, nearest), 1 on the temporal reference frame, per pixel frame in groups of four
        keep = 1.0 - mask[frames][:, ::8, ::8]
        keep[:inputs.clip.reference] = 1.0
        expected = torch.cat([keep[:1].expand(4, -1, -1), keep[1:]]).reshape(-1, 4, H // 8, W // 8).transpose(0, 1)
        assert torch.equal(y[0, :4, 1:], expected)
        assert torch.equal(y[0, :4, 0], torch.ones(4, H // 8, W // 8))  # the reference frame is given
        assert 0 < y[0, :4, 2:].mean() < 1  # both kept and painted pixels in the clip's own frames

    # the result depends on the background where the mask keeps it, and not at all under the person
    under_person = torch.where(mask[..., None].bool(), torch.rand_like(background), background)
    (same,) = node.animate(relit, animate, vae, text, text, clip, ref, poses, face_video=faces,
                           face_poses=keypoints, background_video=under_person, person_mask=mask, **run)
    assert torch.equal(same, images)
    outside = torch.where(mask[..., None].bool(), background, 1.0 - background)
    (other,) = node.animate(relit, animate, vae, text, text, clip, ref, poses, face_video=faces,
                            face_poses=keypoints, background_video=outside, person_mask=mask, **run)
    assert not torch.allclose(other, images, atol=1e-3)
    # and on the mask: a person mask covering everything keeps no background, so the background no longer matters
    full = torch.ones_like(mask)
    (all_person,) = node.animate(relit, animate, vae, text, text, clip, ref, poses, face_video=faces,
                                 face_poses=keypoints, background_video=background, person_mask=full, **run)
    (all_person_again,) = node.animate(relit, animate, vae, text, text, clip, ref, poses, face_video=faces,
                                       face_poses=keypoints, background_video=outside, person_mask=full, **run)
    assert torch.equal(all_person, all_person_again) and not torch.allclose(all_person, images, atol=1e-3)


def test_progress_goes_through_the_host_seam(loaded, monkeypatch):
    dit, _, animate, vae = loaded
    text, clip, ref, poses, faces = _inputs(9)
    texts, bars = [], []

    class Bar(host.Progress):
        def __init__(self, total, *args, **kwargs):
            super().__init__(total, *args, **kwargs)
            bars.append(self)
    monkeypatch.setattr(host, "Progress", Bar)
    monkeypatch.setattr(host, "progress_text", texts.append)
    PoseAnimateWanAnimate().animate(dit, animate, vae, text, text, clip, ref, poses, **dict(RUN, clip_frames=5))
    assert (bars[0].total, bars[0].current) == (4, 4)  # the node's bar over 2 clips x 2 steps (the VAE has its own)
    assert texts == ["clip 1/2, step 1/2", "clip 1/2, step 2/2", "clip 2/2, step 1/2", "clip 2/2, step 2/2"]


def test_bad_inputs_are_named(loaded):
    dit, _, animate, vae = loaded
    text, clip, ref, poses, faces = _inputs(5)
    node = PoseAnimateWanAnimate()
    with pytest.raises(InputError, match="person_mask: is missing"):
        node.animate(dit, animate, vae, text, text, clip, ref, poses, background_video=poses, **RUN)
    with pytest.raises(InputError, match="person_mask: is 5 frames of 24x32"):
        node.animate(dit, animate, vae, text, text, clip, ref, poses, background_video=poses,
                     person_mask=torch.ones(5, 32, 24), **RUN)
    with pytest.raises(InputError, match="temporal reference frames.*1 or 5"):
        node.animate(dit, animate, vae, text, text, clip, ref, poses, **dict(RUN, refert_num="3"))


def test_pose_mask_follows_the_tracked_person():
    """person_index is a track: when the detector order flips, the mask stays on the same person."""
    import numpy as np
    from poseanimate.pose.keypoints import PoseFrame
    left, right = dancer(4, 320, 240), dancer(4, 320, 240)
    for f in right:
        f.people[..., 0] = np.where(f.people[..., 2] > 0, f.people[..., 0] / 2 + 160, 0.0)
    for f in left:
        f.people[..., 0] = f.people[..., 0] / 2
    frames = [PoseFrame(np.concatenate([a.people, b.people] if t % 2 == 0 else [b.people, a.people]), 320, 240)
              for t, (a, b) in enumerate(zip(left, right))]
    (mask,) = PoseAnimatePoseMask().mask(to_pose_keypoint(frames), 0, 0, 1, 0, 1, 1, 1)
    (alone,) = PoseAnimatePoseMask().mask(to_pose_keypoint(right), 0, 0, 0, 0, 1, 1, 1)
    assert torch.equal(mask, alone) and mask[:, :, 200:].sum() > 0 and mask[:, :, :150].sum() == 0


class _CountingConditioning:
    """A clip's conditioning that records which branches the sampler builds."""

    def __init__(self, cond, calls):
        self._cond, self._calls = cond, calls

    def __getattr__(self, name):
        return getattr(self._cond, name)

    def branch(self, positive, step, steps, window=None):
        self._calls.append(positive)
        return self._cond.branch(positive, step, steps, window)


@pytest.mark.parametrize("scheduler", ["lightx2v_distill", "lcm_beta"])
def test_guidance_one_runs_one_forward_per_step_in_every_clip(loaded, monkeypatch, scheduler):
    """Wan2.2-Animate's clip loop at cfg 1.0 with a distilled sampler: one DiT forward per step and clip, and no
    negative branch built; the step list sets the step count."""
    dit, _, animate, vae = loaded
    text, clip, ref, poses, faces = _inputs(11)
    calls, forwards = [], []
    build = wan_animate_run.build_animate_conditioning
    monkeypatch.setattr(wan_animate_run, "build_animate_conditioning",
                        lambda *a, **k: _CountingConditioning(build(*a, **k), calls))
    hook = dit.model.register_forward_hook(lambda *a: forwards.append(1))
    try:
        run = dict(RUN, clip_frames=5, cfg=1.0, scheduler=scheduler, steps=4, step_list="1000, 500, 250")
        (images,) = PoseAnimateWanAnimate().animate(dit, animate, vae, text, text, clip, ref, poses,
                                                    face_video=faces, **run)
    finally:
        hook.remove()
    steps = 3 if scheduler == "lightx2v_distill" else len(make_scheduler("lcm_beta", 4, 5.0).schedule.timesteps)
    assert images.shape == (11, H, W, 3) and torch.isfinite(images).all()
    assert len(forwards) == 3 * steps and calls == [True] * (3 * steps)  # three chained clips


def test_bad_step_list_stops_before_sampling(loaded):
    dit, _, animate, vae = loaded
    text, clip, ref, poses, faces = _inputs(5)
    with pytest.raises(InputError, match="step_list"):
        PoseAnimateWanAnimate().animate(dit, animate, vae, text, text, clip, ref, poses,
                                        **dict(RUN, scheduler="lightx2v_distill", step_list="500, 750"))
