"""Wan2.2-Animate through the pack's nodes, outside the host, on tiny files under the real names: animation and
replacement (pose mask, relighting LoRA), chained clips, the frame count of the input."""
import pytest
import torch

from poseanimate.errors import InputError
from poseanimate.tiny_models.model_files import ANIMATE_FILE, RELIGHT_FILE, VAE_FILE, write_tiny_model_files
from poseanimate.nodes.vae_nodes import PoseAnimateVAELoader
from poseanimate.nodes.wan_animate_nodes import (PoseAnimatePoseMask, PoseAnimateRelightLoRA, PoseAnimateWanAnimate,
                                                 PoseAnimateWanAnimateLoader)
from poseanimate.pose.demo_motion import dancer
from poseanimate.pose.keypoints import to_pose_keypoint

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


def test_replacement_mode_with_pose_mask_and_relighting(loaded):
    _, relit, animate, vae = loaded
    text, clip, ref, poses, faces = _inputs(5)
    keypoints = to_pose_keypoint(dancer(5, W, H))
    (mask,) = PoseAnimatePoseMask().mask(keypoints, 0, 0, 0, 3, 7, 1, 1)
    assert mask.shape == (5, H, W) and 0 < mask.mean() < 1
    (images,) = PoseAnimateWanAnimate().animate(relit, animate, vae, text, text, clip, ref, poses, face_video=faces,
                                                face_poses=keypoints, background_video=poses, person_mask=mask,
                                                **RUN)
    assert images.shape == (5, H, W, 3) and torch.isfinite(images).all()


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
