"""UniAnimate-DiT end to end through the pack's nodes, outside the host, on tiny files under the real names.

The chain of the shipped workflow: pose models -> extract (driving video and
reference image) -> retarget -> render (UniAnimate style) -> DiT + UniAnimate
loaders -> conditioning (the pack's VAE) -> sampler -> decode. Text and CLIP
embeddings come as tensors here (the host's encoders are exercised by the
integration suite).
"""
import importlib.util
from pathlib import Path

import pytest
import torch

from poseanimate import host
from poseanimate.errors import InputError
from poseanimate.tiny_models.model_files import DIT_FILE, UNIANIMATE_FILE, VAE_FILE, write_tiny_model_files
from poseanimate.nodes.dit_loaders import PoseAnimateDiTLoader
from poseanimate.nodes.sampler_nodes import PoseAnimateSampler
from poseanimate.nodes.unianimate_nodes import PoseAnimateUniAnimateConditioning, PoseAnimateUniAnimateLoader
from poseanimate.nodes.vae_nodes import PoseAnimateVAEDecode, PoseAnimateVAELoader

pytest.importorskip("cv2")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from poseanimate.nodes.pose_extract_nodes import PoseAnimateExtractPoses, PoseAnimatePoseModelLoader  # noqa: E402
from poseanimate.nodes.pose_render_nodes import PoseAnimateRenderPoses, PoseAnimateRetargetPoses  # noqa: E402

POSE_TESTS = Path(__file__).resolve().parents[1] / "pose"
H, W, FRAMES = 32, 48, 9
EXTRACT = dict(people="largest", person_index=0, empty_frames="whole_frame", smoothing=False, min_cutoff=1.0,
               beta=1.0, fps=30.0, batch_size=4)
RENDER = dict(style="unianimate", width=W, height=H, fit="auto", body=True, hands=True, face="auto", feet="auto",
              color_order="auto")
RETARGET = dict(method="unianimate", unianimate_space="pixels", keep_bone_lengths=True, wan_min_confidence=0.0,
                wan_hand_threshold=0.4)
SAMPLE = dict(seed=3, steps=2, cfg=1.5, shift=5.0, scheduler="euler", window_length=21, window_overlap=4,
              blending="unianimate")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    write_tiny_model_files(root)
    spec = importlib.util.spec_from_file_location("tiny_pose_models",
                                                  POSE_TESTS.parents[1] / "tiny_models" / "pose_models.py")
    tiny_pose = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tiny_pose)
    tiny_pose.build_all(root / host.POSE_MODEL_FOLDER, names={"yolox": "yolox_l.onnx",
                                                              "rtmpose": "dw-ll_ucoco_384.onnx"})
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("POSEANIMATE_MODELS", str(root))
        yield root


def _video(frames: int) -> torch.Tensor:
    """A bright figure walking right over a dark background (what the tiny detector looks for)."""
    video = torch.full((frames, 96, 144, 3), 0.1)
    for i in range(frames):
        x = 20 + 6 * i
        video[i, 10:90, x:x + 30] = 0.8
        video[i, 30, x + 15] = 1.0
    return video


def _chain(models, frames=FRAMES, steps=2, cfg=1.5):
    (pose_model,) = PoseAnimatePoseModelLoader().load("yolox_l.onnx", "dw-ll_ucoco_384.onnx", "cpu")
    driving, _ = PoseAnimateExtractPoses().extract(_video(frames), pose_model, **EXTRACT)
    reference_image = _video(1)
    reference, _ = PoseAnimateExtractPoses().extract(reference_image, pose_model, **EXTRACT)
    retargeted, _ = PoseAnimateRetargetPoses().retarget(driving, reference, **RETARGET)
    (pose_video,) = PoseAnimateRenderPoses().render(retargeted, **RENDER)
    (reference_pose,) = PoseAnimateRenderPoses().render(reference, **RENDER)

    (dit,) = PoseAnimateDiTLoader().load(DIT_FILE, "fp32", "fp32", "sdpa")
    dit, unianimate = PoseAnimateUniAnimateLoader().load(dit, UNIANIMATE_FILE, 1.0)
    (vae,) = PoseAnimateVAELoader().load(VAE_FILE, "fp32", 0, 8)
    g = torch.Generator().manual_seed(0)
    positive, negative = torch.randn(1, 5, 32, generator=g), torch.randn(1, 3, 32, generator=g)
    clip = torch.randn(1, 257, 32, generator=g)
    (cond,) = PoseAnimateUniAnimateConditioning().build(unianimate, vae, positive, negative, reference_image,
                                                        pose_video, reference_pose, frames, 1.0, 0.0, 1.0, clip)
    (latent,) = PoseAnimateSampler().sample(dit, cond, **dict(SAMPLE, steps=steps, cfg=cfg))
    (images,) = PoseAnimateVAEDecode().decode(latent, vae)
    return pose_video, cond, latent, images


def test_chain_writes_a_video_of_the_requested_length_and_size(models):
    pose_video, cond, latent, images = _chain(models)
    # something was drawn (the tiny models put every point on one spot)
    assert pose_video.shape == (FRAMES, H, W, 3) and pose_video.max() > 0.05
    assert latent["samples"].shape == (1, 16, 3, H // 8, W // 8)
    assert images.shape == (FRAMES, H, W, 3) and images.dtype == torch.float32
    assert torch.isfinite(images).all() and 0.0 <= images.min() and images.max() <= 1.0
    assert images.std() > 0.01
    assert not cond._tokens  # the sampler released the per-run pose-token cache


def test_chain_is_deterministic(models):
    a = _chain(models)[2]["samples"]
    b = _chain(models)[2]["samples"]
    assert torch.equal(a, b)


def test_frame_count_that_is_not_4k_plus_1_names_the_nearest(models):
    with pytest.raises(InputError, match=r"frames.*4k\+1.*5 or 9"):
        _chain(models, frames=7)


def test_reference_video_is_encoded_exactly_as_the_full_tensor_without_one(models):
    """Conditioning flat in frames: the pack's VAE gets the gray frames as one expanded view; its latent is the
    one the whole [count, H, W, 3] tensor gives, bit for bit."""
    from poseanimate.nodes.unianimate_nodes import GRAY, encode_reference_video
    (vae,) = PoseAnimateVAELoader().load(VAE_FILE, "fp32", 0, 8)
    reference = torch.rand(H, W, 3, generator=torch.Generator().manual_seed(4))
    full = torch.full((13, H, W, 3), GRAY)
    full[0] = reference
    seen = []
    original = vae.encode

    class Recording:
        is_pack_vae = True

        def encode(self, frames):
            seen.append(frames)
            return original(frames)
    streamed = encode_reference_video(Recording(), reference, 13)
    assert torch.equal(streamed, vae.encode(full))
    gray = seen[0][1]
    assert gray.shape == (12, H, W, 3) and gray.stride(0) == 0  # one frame's memory for all twelve
