"""RealisDance-DiT through the pack's nodes, outside the host, on tiny files under the real names:
loader -> reference tokens (own aspect, shifted RoPE) -> conditioning (two pose videos) -> sampler -> decode."""
import pytest
import torch

from poseanimate.errors import InputError
from poseanimate.methods.realisdance import RopeShifts
from poseanimate.tiny_models.model_files import REALISDANCE_FILE, VAE_FILE, write_tiny_model_files
from poseanimate.nodes.realisdance_nodes import (PoseAnimateRealisDanceConditioning, PoseAnimateRealisDanceLoader,
                                                 PoseAnimateRealisDanceReference)
from poseanimate.nodes.sampler_nodes import PoseAnimateSampler
from poseanimate.nodes.vae_nodes import PoseAnimateVAEDecode, PoseAnimateVAELoader

H, W = 32, 48
SAMPLE = dict(seed=1, steps=2, cfg=2.0, shift=1.0, scheduler="euler_diffusers", window_length=21, window_overlap=4,
              blending="linear")


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    write_tiny_model_files(root)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("POSEANIMATE_MODELS", str(root))
        dit, realisdance = PoseAnimateRealisDanceLoader().load(REALISDANCE_FILE, "fp32", "fp32", "sdpa")
        (vae,) = PoseAnimateVAELoader().load(VAE_FILE, "fp32", 0, 8)
        yield dit, realisdance, vae


def _videos(frames):
    g = torch.Generator().manual_seed(4)
    return torch.rand(frames, H, W, 3, generator=g), torch.rand(frames, H, W, 3, generator=g)


def _conditioning(loaded, frames=5, shifts=("model", "model", "model")):
    dit, realisdance, vae = loaded
    reference_image = torch.rand(1, 60, 30, 3, generator=torch.Generator().manual_seed(2))  # its own aspect
    (reference,) = PoseAnimateRealisDanceReference().encode(realisdance, vae, reference_image, W, H, *shifts)
    g = torch.Generator().manual_seed(0)
    text, empty = torch.randn(1, 5, 32, generator=g), torch.zeros(1, 1, 32)
    clip, grey_clip = torch.randn(1, 257, 32, generator=g), torch.randn(1, 257, 32, generator=g)
    smpl, hamer = _videos(frames)
    (cond,) = PoseAnimateRealisDanceConditioning().build(realisdance, reference, vae, text, empty, smpl, hamer,
                                                         frames, 1.0, clip, grey_clip)
    return reference, cond


def test_reference_keeps_its_aspect_at_the_videos_area_and_shifts_follow_the_switches(loaded):
    reference, cond = _conditioning(loaded, shifts=("off", "on", "model"))
    assert reference.size == (48, 32)  # a 2:1 portrait at the 48x32 video's area, multiples of 16
    assert reference.latent.shape == (1, 16, 1, 6, 4)
    assert reference.shifts == RopeShifts(False, True, True)
    positions = cond.positions()
    assert positions[:, 0].max() == 0 and positions[:, 1].min() == H // 16 and positions[:, 2].min() == W // 16


def test_chain_samples_and_decodes_the_requested_video(loaded):
    dit, realisdance, vae = loaded
    _, cond = _conditioning(loaded, frames=9)
    (latent,) = PoseAnimateSampler().sample(dit, cond, **SAMPLE)
    (images,) = PoseAnimateVAEDecode().decode(latent, vae)
    assert latent["samples"].shape == (1, 16, 3, H // 8, W // 8)
    assert images.shape == (9, H, W, 3) and torch.isfinite(images).all()
    again = PoseAnimateSampler().sample(dit, _conditioning(loaded, frames=9)[1], **SAMPLE)[0]
    assert torch.equal(latent["samples"], again["samples"])


def test_pose_videos_of_different_sizes_or_too_short_are_refused(loaded):
    dit, realisdance, vae = loaded
    reference, _ = _conditioning(loaded)
    text = torch.randn(1, 5, 32)
    clip = torch.randn(1, 257, 32)
    smpl, hamer = _videos(5)
    node = PoseAnimateRealisDanceConditioning()
    with pytest.raises(InputError, match="hamer_video.*smpl_video's size"):
        node.build(realisdance, reference, vae, text, text, smpl, hamer[:, :16], 5, 1.0, clip)
    with pytest.raises(InputError, match="smpl_video: has 5 frames"):
        node.build(realisdance, reference, vae, text, text, smpl, hamer, 9, 1.0, clip)
    with pytest.raises(InputError, match="clip_vision_output: is missing"):
        node.build(realisdance, reference, vae, text, text, smpl, hamer, 5, 1.0)


def test_conditioning_is_flat_in_frames_with_the_same_numbers(loaded, monkeypatch):
    """The pack's VAE gets the grey video as one frame's view (no memory per frame) and encodes it to the same
    latent as the whole grey video; the pose videos pass as views of the inputs."""
    from poseanimate.methods.realisdance import grey_video
    from poseanimate.nodes import vae_nodes
    storages = []
    real = vae_nodes.encode_images

    def spy(vae, frames, **kwargs):
        storages.append(frames.untyped_storage().nbytes())
        return real(vae, frames, **kwargs)
    monkeypatch.setattr(vae_nodes, "encode_images", spy)
    _, cond = _conditioning(loaded, frames=9)
    frame = H * W * 3 * 4
    assert storages[-3:] == [9 * frame, 9 * frame, frame]  # smpl, hamer (the inputs' own memory), grey: one frame
    _, _, vae = loaded
    assert torch.equal(cond.y[:, 4:], vae.encode(grey_video(9, H, W)))  # the whole grey video's latent


def test_2048_conditioning_stops_before_allocating(loaded, monkeypatch):
    from poseanimate import memory_budget as mb
    from poseanimate.nodes import realisdance_nodes
    dit, realisdance, vae = loaded
    reference, _ = _conditioning(loaded)

    def no_encoding(*args, **kwargs):
        raise AssertionError("the node encoded before refusing")
    monkeypatch.setattr(realisdance_nodes, "video_vae", no_encoding)
    big = torch.zeros(1, 1, 1, 3).expand(5, 2048, 2048, 3)  # no memory
    text = torch.randn(1, 5, 32)
    mb.set_budget(1 * mb.GB)
    try:
        with pytest.raises(InputError, match=r"^smpl_video: encoding 5 frames at 2048x2048 \(one VAE chunk\) needs "
                                             r"about [\d.]+ GB, more than the 1.0 GB .*; expected tiles"):
            PoseAnimateRealisDanceConditioning().build(realisdance, reference, vae, text, text, big, big, 5, 1.0,
                                                       torch.randn(1, 257, 32))
        # 10001 frames at 1024x1024: the latents alone (about 16 GB) do not fit
        with pytest.raises(InputError, match=r"^frames: 10001 frames at 1024x1024 \(latents\) needs about 15.9 GB"):
            realisdance_nodes._check_memory(vae, 10001, 1024, 1024, True)
    finally:
        mb.set_budget(None)
