"""Every long loop of the pack stops at its next check when the user asks (outside the host:
host.request_interrupt -> host.Interrupted), and the node registry frees memory after a failed run."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent / "models"))
import tiny_wan_vae  # noqa: E402

sys.path.pop(0)

from poseanimate import host  # noqa: E402
from poseanimate.errors import InputError  # noqa: E402
from poseanimate.methods.realisdance import RealisDanceLayers  # noqa: E402
from poseanimate.methods.unianimate.encoders import UniAnimateEncoders  # noqa: E402
from poseanimate.methods.wan_animate import AnimateConfig, AnimateModules  # noqa: E402
from poseanimate.methods.wan_animate.conditioning import encode_faces  # noqa: E402
from poseanimate.methods.wan_animate.modules import MotionEncoderConfig  # noqa: E402
from poseanimate.models.wan.vae_streaming import decode_to_images, encode_images  # noqa: E402
from poseanimate.pose.demo_motion import dancer  # noqa: E402
from poseanimate.pose.render import render_poses  # noqa: E402
from poseanimate.video.drift import correct_drift  # noqa: E402


@pytest.fixture(autouse=True)
def no_interrupt_left():
    host.check_interrupt()  # clears nothing unless a test left one
    yield
    try:
        host.check_interrupt()
    except host.Interrupted:
        pytest.fail("an interrupt was left unconsumed")


def interrupted(run):
    host.request_interrupt()
    with pytest.raises(host.Interrupted):
        run()


def test_pose_rendering():
    poses = dancer(5, 64, 64)
    assert render_poses(poses).shape == (5, 64, 64, 3)
    interrupted(lambda: render_poses(poses))


def test_colour_match_both_passes():
    frames, reference = torch.rand(9, 16, 16, 3), torch.rand(1, 16, 16, 3)
    correct_drift(frames, [(0, 9)], reference, 1.0, chunk=4, log_figures=False)
    interrupted(lambda: correct_drift(frames, [(0, 9)], reference, 1.0, chunk=4, log_figures=False))
    calls = []

    def second_pass_check():  # the correction pass checks too: stop at the first chunk after pass 1
        calls.append(1)
        if len(calls) == 4:
            raise host.Interrupted("run interrupted")
    with pytest.raises(host.Interrupted):
        correct_drift(frames, [(0, 9)], reference, 1.0, chunk=4, log_figures=False, check_interrupt=second_pass_check)


def test_vae_encode_and_decode_chunks():
    vae = tiny_wan_vae.tiny_vae()
    images = torch.rand(5, 16, 16, 3)
    interrupted(lambda: encode_images(vae, images, progress=lambda d, t: None))
    latent = encode_images(vae, images, progress=lambda d, t: None)
    interrupted(lambda: decode_to_images(vae, latent, progress=lambda d, t: None))


def test_unianimate_pose_embedding():
    encoders = UniAnimateEncoders(32).eval()
    poses = torch.rand(5, 32, 32, 3)
    assert encoders.pose_tokens(poses).shape[-1] == 32
    interrupted(lambda: encoders.pose_tokens(poses))


def test_realisdance_pose_tokens():
    layers = RealisDanceLayers(64).eval().requires_grad_(False)
    pose = torch.zeros(1, layers.add_conv_in.in_channels, 3, 4, 4)
    interrupted(lambda: layers.pose_tokens(pose))


def test_wan_animate_face_encoding():
    config = AnimateConfig(dim=64, num_heads=1, adapters=1, face_in_dim=16, face_streams=2, face_width=8,
                           motion=MotionEncoderConfig(size=8, style_dim=16, motion_dim=4, widths=(8, 8)))
    modules = AnimateModules(config).eval().requires_grad_(False)
    interrupted(lambda: encode_faces(modules, torch.rand(9, 8, 8, 3), 9))


def test_pose_extraction_batches():
    from poseanimate.pose.extract import PoseEstimator

    estimator = PoseEstimator.__new__(PoseEstimator)
    estimator.detector = None

    def detect(frames, when, batch, step):
        for _ in frames:
            step(1)
        return []
    estimator.detect = detect
    interrupted(lambda: estimator(np.zeros((3, 8, 8, 3), np.uint8)))


def test_failed_node_frees_memory(monkeypatch):
    from poseanimate.nodes import NODE_CLASS_MAPPINGS
    freed = []
    monkeypatch.setattr(host, "free_memory", lambda: freed.append(1))
    node = NODE_CLASS_MAPPINGS["PoseAnimateRenderPoses"]
    with pytest.raises((InputError, TypeError)):
        getattr(node(), node.FUNCTION)(poses=object())
    assert freed


def test_vae_checks_between_the_blocks_of_one_chunk():
    """One chunk of a large frame can take seconds on a CPU: the check also runs between its blocks, so an
    interrupt inside the first latent frame stops it there (issue 19: within one second)."""
    vae = tiny_wan_vae.tiny_vae()
    latent = torch.zeros(1, 16, 1, 4, 4)
    calls = []

    def check():
        calls.append(1)
        if len(calls) == 3:
            raise host.Interrupted()
    with pytest.raises(host.Interrupted):
        decode_to_images(vae, latent, check_interrupt=check, progress=lambda d, t: None)
    images = torch.rand(1, 32, 32, 3)
    calls.clear()
    with pytest.raises(host.Interrupted):
        encode_images(vae, images, check_interrupt=check, progress=lambda d, t: None)
    assert len(calls) == 3  # the encoder's second block, not the next chunk, saw it
