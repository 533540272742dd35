"""SteadyDancer through the pack's nodes, outside the host, on tiny files under the real names (kijai's scaled
fp8 single file): loader -> conditioning (reference as first frame, pose video, negative poses) -> sampler ->
decode; and the other loaders naming the file."""
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from poseanimate.errors import InputError
from poseanimate.nodes.dit_loaders import PoseAnimateDiTLoader
from poseanimate.nodes.realisdance_nodes import PoseAnimateRealisDanceLoader
from poseanimate.nodes.sampler_nodes import PoseAnimateSampler
from poseanimate.nodes.steadydancer_nodes import PoseAnimateSteadyDancerConditioning, PoseAnimateSteadyDancerLoader
from poseanimate.nodes.vae_nodes import PoseAnimateVAEDecode, PoseAnimateVAELoader
from poseanimate.tiny_models.model_files import DIT_FILE, STEADYDANCER_FILE, VAE_FILE, write_tiny_model_files

H, W = 32, 48
SAMPLE = dict(seed=1, steps=2, cfg=5.0, shift=5.0, scheduler="unipc", window_length=21, window_overlap=4,
              blending="linear")
COND = dict(pose_strength_spatial=1.0, pose_strength_temporal=1.0, pose_cfg=1.5, pose_cfg_start=0.1,
            pose_cfg_end=0.6)  # 2 steps: the pose guidance runs on step 1


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    write_tiny_model_files(root)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("POSEANIMATE_MODELS", str(root))
        dit, steadydancer = PoseAnimateSteadyDancerLoader().load(STEADYDANCER_FILE, "default", "fp32", "sdpa")
        (vae,) = PoseAnimateVAELoader().load(VAE_FILE, "fp32", 0, 8)
        yield dit, steadydancer, vae, mp


def _inputs(frames, seed=0):
    g = torch.Generator().manual_seed(seed)
    return dict(positive=torch.randn(1, 5, 32, generator=g), negative=torch.zeros(1, 1, 32),
                reference_image=torch.rand(1, 2 * H, 2 * W, 3, generator=g),
                pose_video=torch.rand(frames, H, W, 3, generator=g),
                clip_vision_output=torch.randn(1, 257, 32, generator=g))


def test_chain_samples_and_decodes_the_requested_video(loaded):
    dit, steadydancer, vae, _ = loaded
    assert dit.info.scaled_fp8 == torch.float8_e4m3fn and steadydancer.layers.dtype == torch.float32
    inputs = _inputs(9)
    negative_pose = torch.rand(9, H, W, 3, generator=torch.Generator().manual_seed(7))
    (cond,) = PoseAnimateSteadyDancerConditioning().build(steadydancer, vae, frames=9, **inputs, **COND,
                                                          negative_pose_video=negative_pose,
                                                          pose_clip_vision_output=torch.randn(1, 257, 32))
    assert cond.geometry.frames == 3 and cond.y[:, :4, 0].eq(1).all() and cond.y[:, :4, 1:].eq(0).all()
    (latent,) = PoseAnimateSampler().sample(dit, cond, **SAMPLE)
    (images,) = PoseAnimateVAEDecode().decode(latent, vae)
    assert latent["samples"].shape == (1, 16, 3, H // 8, W // 8)
    assert images.shape == (9, H, W, 3) and torch.isfinite(images).all()


EXAMPLE = Path(__file__).resolve().parents[1] / "fixtures" / "steadydancer_example"


def _example_image(name: str, frames: int = 1) -> torch.Tensor:
    """SteadyDancer's own example (make_steadydancer_example.py): frames tiled side by side -> IMAGE batch."""
    tiled = cv2.cvtColor(cv2.imread(str(EXAMPLE / name)), cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0
    return torch.from_numpy(np.stack(np.split(tiled, frames, axis=1)))


def test_the_references_own_example_end_to_end(loaded):
    """data/images/00001.png with its aligned and negative poses (downscaled to 176x240), through the nodes
    (the first 5 of the 9 stored frames: the tiny VAE is what takes the time at this size)."""
    dit, steadydancer, vae, _ = loaded
    reference, positive, negative = (_example_image("reference.png"), _example_image("positive.png", 9),
                                     _example_image("negative.png", 9))
    assert reference.shape == (1, 240, 176, 3) and positive.shape == negative.shape == (9, 240, 176, 3)
    inputs = dict(_inputs(5), reference_image=reference, pose_video=positive)
    (cond,) = PoseAnimateSteadyDancerConditioning().build(steadydancer, vae, frames=5, **inputs, **COND,
                                                          negative_pose_video=negative)
    assert torch.allclose(cond.image_latent[:, :, :1], vae.encode(reference), atol=1e-5)  # the first frame
    (latent,) = PoseAnimateSampler().sample(dit, cond, **dict(SAMPLE, steps=1, cfg=1.0))
    assert latent["samples"].shape == (1, 16, 2, 30, 22) and torch.isfinite(latent["samples"]).all()


def test_long_video_in_windows(loaded):
    dit, steadydancer, vae, _ = loaded
    (cond,) = PoseAnimateSteadyDancerConditioning().build(steadydancer, vae, frames=0, **_inputs(17), **COND)
    (latent,) = PoseAnimateSampler().sample(dit, cond, **dict(SAMPLE, steps=2, window_length=3, window_overlap=1))
    assert latent["samples"].shape == (1, 16, 5, H // 8, W // 8) and torch.isfinite(latent["samples"]).all()


def test_bad_inputs_are_named(loaded):
    dit, steadydancer, vae, _ = loaded
    node = PoseAnimateSteadyDancerConditioning()
    with pytest.raises(InputError, match="negative_pose_video: has 5 frames; expected at least the pose video's 9"):
        node.build(steadydancer, vae, frames=9, **_inputs(9), **COND, negative_pose_video=torch.rand(5, H, W, 3))
    with pytest.raises(InputError, match="reference_image: is 48x96 pixels, a different shape"):
        node.build(steadydancer, vae, frames=9, **dict(_inputs(9), reference_image=torch.rand(1, 96, 48, 3)),
                   **COND)
    with pytest.raises(InputError, match="clip_vision_output: is missing"):
        node.build(steadydancer, vae, frames=9, **dict(_inputs(9), clip_vision_output=None), **COND)


def test_other_loaders_name_the_steadydancer_file_and_the_reverse(loaded):
    with pytest.raises(InputError, match="is a SteadyDancer DiT"):
        PoseAnimateDiTLoader().load(STEADYDANCER_FILE, "fp32", "fp32", "sdpa")
    with pytest.raises(InputError, match="is a SteadyDancer DiT"):
        PoseAnimateRealisDanceLoader().load(STEADYDANCER_FILE, "fp32", "fp32", "sdpa")
    with pytest.raises(InputError, match="is a plain Wan DiT, without SteadyDancer's modules"):
        PoseAnimateSteadyDancerLoader().load(DIT_FILE, "fp32", "fp32", "sdpa")
