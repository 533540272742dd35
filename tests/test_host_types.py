"""host_types: the host's CONDITIONING, CLIP_VISION_OUTPUT and VAE objects as core tensors (fakes of their layout)."""
import logging
from types import SimpleNamespace

import pytest
import torch

from poseanimate.errors import InputError
from poseanimate.host_types import HostVAE, check_host_vae, clip_features, text_context, video_vae
from poseanimate.models.wan.latent_space import to_model_space, to_vae_space


def test_conditioning_list_gives_its_tensor():
    emb = torch.randn(1, 512, 4096, dtype=torch.float16)
    got = text_context([[emb, {"pooled_output": None}]])
    assert got.dtype == torch.float32 and torch.equal(got, emb.float())


def test_combined_conditioning_uses_the_first_and_says_so(caplog):
    a, b = torch.randn(1, 7, 4096), torch.randn(1, 7, 4096)
    with caplog.at_level(logging.WARNING):
        assert torch.equal(text_context([[a, {}], [b, {}]], "negative"), a)
    assert "negative" in caplog.text and "first" in caplog.text


def test_conditioning_of_another_family_is_refused():
    with pytest.raises(InputError) as err:
        text_context([[torch.randn(1, 77, 768), {}]], "positive")
    msg = str(err.value)
    assert "positive" in msg and "768" in msg and "umT5" in msg and "wan" in msg
    with pytest.raises(InputError, match="CONDITIONING"):
        text_context("a prompt")
    with pytest.raises(InputError, match="at most 512"):
        text_context([[torch.randn(1, 600, 4096), {}]])


def test_text_width_follows_the_model():
    assert text_context(torch.randn(1, 4, 32), width=32).shape == (1, 4, 32)


def test_clip_vision_output_penultimate_tokens():
    feats = torch.randn(1, 257, 1280)
    out = SimpleNamespace(penultimate_hidden_states=feats, image_embeds=torch.randn(1, 1024))
    assert torch.equal(clip_features(out), feats)
    with pytest.raises(InputError, match="clip_vision_output.*257, 1280"):
        clip_features(SimpleNamespace(penultimate_hidden_states=torch.randn(1, 577, 1024)))
    with pytest.raises(InputError, match="CLIP Vision Encode"):
        clip_features(SimpleNamespace(image_embeds=feats))


class FakeHostVAE:
    """The host VAE's public surface: raw latents in, frames out."""

    latent_channels, latent_dim = 16, 3

    def __init__(self):
        self.seen = []

    def encode(self, frames):
        self.seen.append(frames)
        t = 1 + (frames.shape[0] - 1) // 4
        return torch.full((1, 16, t, frames.shape[1] // 8, frames.shape[2] // 8), 0.5)

    def decode(self, latent):
        self.seen.append(latent)
        t = 4 * (latent.shape[2] - 1) + 1
        return torch.zeros(1, t, latent.shape[3] * 8, latent.shape[4] * 8, 3)


def test_host_vae_converts_latent_spaces_at_its_edges():
    fake = FakeHostVAE()
    vae = video_vae(fake)
    assert isinstance(vae, HostVAE)
    frames = torch.rand(5, 16, 24, 4)  # an RGBA IMAGE: alpha dropped
    latent = vae.encode(frames)
    assert fake.seen[0].shape == (5, 16, 24, 3)
    assert torch.allclose(latent, to_model_space(torch.full((1, 16, 2, 2, 3), 0.5)))
    images = vae.decode(latent)
    assert torch.allclose(fake.seen[1], to_vae_space(latent)) and torch.allclose(fake.seen[1], torch.tensor(0.5))
    assert images.shape == (5, 16, 24, 3)


def test_wrong_host_vae_is_refused():
    with pytest.raises(InputError, match="48 latent channels.*Wan 2.2"):
        check_host_vae(SimpleNamespace(latent_channels=48, latent_dim=3, first_stage_model=None))
    with pytest.raises(InputError, match="4 latent channels for images"):
        check_host_vae(SimpleNamespace(latent_channels=4, latent_dim=2, first_stage_model=None))
    with pytest.raises(InputError, match="vae"):
        video_vae(object())


def test_latent_spaces_round_trip():
    raw = torch.randn(1, 16, 3, 2, 2)
    assert torch.allclose(to_vae_space(to_model_space(raw)), raw, atol=1e-6)
