"""Wan2.2-Animate-2 through the pack's nodes, outside the host, on tiny files under the real names: chained chunks
to the driving video's length, the pose cache exact (its no-room error: test_pose_cache.py), a reference of
another size fitted, bad inputs refused."""
import logging

import pytest
import torch

from poseanimate.errors import InputError
from poseanimate.nodes import animate2_nodes
from poseanimate.nodes.animate2_nodes import PoseAnimateAnimate2, PoseAnimateAnimate2Loader
from poseanimate.nodes.vae_nodes import PoseAnimateVAELoader
from poseanimate.tiny_models.model_files import (ANIMATE2_DISTILLED_FILE, ANIMATE2_FILE, ANIMATE_FILE, VAE_FILE,
                                                 write_tiny_model_files)

H, W = 16, 32
RUN = dict(chunk_frames=5, seed=5, steps=2, cfg=1.0, shift=5.0, scheduler="euler", pose_strength=0.8, pose_start=0.0,
           pose_end=0.5, reference_strength=1.1, pose_cache="float32", cache_device="cpu", frame1_log_scale=-1.3)


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    write_tiny_model_files(root)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("POSEANIMATE_MODELS", str(root))
        (dit,) = PoseAnimateAnimate2Loader().load(ANIMATE2_FILE, "fp32", "fp32", "sdpa")
        (vae,) = PoseAnimateVAELoader().load(VAE_FILE, "fp32", 0, 8)
        yield dit, vae, root


def _inputs(frames, ref_size=(H, W)):
    g = torch.Generator().manual_seed(1)
    text = torch.randn(1, 5, 32, generator=g)
    clip = torch.randn(1, 257, 32, generator=g)
    return text, clip, torch.rand(1, *ref_size, 3, generator=g), torch.rand(frames, H, W, 3, generator=g)


def test_chunks_chain_to_the_driving_length_and_the_cache_is_exact(loaded):
    dit, vae, _ = loaded
    text, clip, ref, video = _inputs(9)  # two chunks of 5
    node = PoseAnimateAnimate2()
    (cached,) = node.animate(dit, vae, text, text, clip, ref, video, **RUN)
    (uncached,) = node.animate(dit, vae, text, text, clip, ref, video, **dict(RUN, pose_cache="none"))
    assert cached.shape == (9, H, W, 3) and torch.isfinite(cached).all()
    assert torch.equal(cached, uncached)


def test_pose_prompt_clip_and_reference_reach_the_core(loaded, monkeypatch, caplog):
    dit, vae, _ = loaded
    text, clip, ref, video = _inputs(5, ref_size=(24, 24))
    seen = {}

    def recording(model, encode, decode, reference, frames, *args, **kwargs):
        seen.update(kwargs, reference=reference)
        return frames
    monkeypatch.setattr(animate2_nodes, "animate2_video", recording)
    with caplog.at_level(logging.INFO):
        PoseAnimateAnimate2().animate(dit, vae, text, text, clip, ref, video, positive_pose=text * 0.5,
                                      clip_vision_output_pose=clip * 2, **RUN)
    assert torch.equal(seen["pose_context"], text * 0.5) and torch.equal(seen["pose_clip_fea"], clip * 2)
    assert (seen["pose_strength"], seen["reference_strength"], seen["cache_storage"]) == (0.8, 1.1, "float32")
    assert seen["window"].end == 0.5 and seen["frame1_log_scale"] == -1.3
    assert seen["reference"].shape == (1, H, W, 3)
    assert "reference_image: 24x24 centre-cropped to 24x12 and resized to the driving video's 32x16" in caplog.text


def test_bad_inputs_are_refused_before_sampling(loaded):
    dit, vae, _ = loaded
    text, clip, ref, video = _inputs(5)
    node = PoseAnimateAnimate2()
    with pytest.raises(InputError, match="pose start: 0.8 is after the pose end 0.2"):
        node.animate(dit, vae, text, text, clip, ref, video, **dict(RUN, pose_start=0.8, pose_end=0.2))
    with pytest.raises(InputError, match="driving_video: width 24 is not a multiple of 16"):
        node.animate(dit, vae, text, text, clip, ref, video[:, :, :24], **RUN)


def test_loader_takes_the_distilled_file_and_refuses_the_first_animate(loaded, monkeypatch):
    _, _, root = loaded
    monkeypatch.setenv("POSEANIMATE_MODELS", str(root))
    (dit,) = PoseAnimateAnimate2Loader().load(ANIMATE2_DISTILLED_FILE, "default", "auto", "sdpa")
    assert dit.info.config.in_dim == 36
    with pytest.raises(InputError, match=r"is Wan2.2-Animate \(the first Animate"):
        PoseAnimateAnimate2Loader().load(ANIMATE_FILE, "default", "auto", "sdpa")
