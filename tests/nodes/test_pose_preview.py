"""The pose nodes' canvas preview payload (nodes/pose_preview.py), outside the host: which frames are sent, how
small, the keypoints exactly as the nodes output them (rounded), and each node's host entry returning the same
result as its plain method plus the ``ui`` part that web/js/pose_preview.js plays."""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from poseanimate import host
from poseanimate.errors import InputError
from poseanimate.nodes import pose_preview
from poseanimate.nodes.pose_extract_nodes import PoseAnimateExtractPoses, PoseAnimatePoseModelLoader
from poseanimate.nodes.pose_preview import PREVIEW_KEY, downscale, frame_indices, person_payload, preview_ui
from poseanimate.nodes.pose_render_nodes import PoseAnimateRenderPoses, PoseAnimateRetargetPoses
from poseanimate.pose import keypoints as kp

POSE_TESTS = Path(__file__).resolve().parents[1] / "pose"
TINY_POSE_MODELS = Path(__file__).resolve().parents[2] / "tiny_models" / "pose_models.py"
EXTRACT = dict(people="largest", person_index=0, empty_frames="whole_frame", smoothing=False, min_cutoff=1.0,
               beta=1.0, fps=24.0, batch_size=4)
RENDER = dict(style="openpose", width=0, height=0, fit="auto", body=True, hands=True, face="auto", feet="auto",
              color_order="auto")
RETARGET = dict(method="unianimate", unianimate_space="pixels", keep_bone_lengths=True, wan_min_confidence=0.0,
                wan_hand_threshold=0.4)


def _load_file(path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _load(name):
    spec = importlib.util.spec_from_file_location(name, POSE_TESTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def saved(monkeypatch):
    """What the nodes hand to the host's temp folder: a list of uint8 batches (as if in the host)."""
    batches = []

    def fake_temp_preview_images(images, prefix="poseanimate_preview"):
        batches.append(np.array(images))
        return [{"filename": f"{prefix}_{i}.jpg", "subfolder": "poseanimate", "type": "temp"}
                for i in range(len(images))]

    monkeypatch.setattr(host, "temp_preview_images", fake_temp_preview_images)
    return batches


def _person(seed=0, hands=True):
    rng = np.random.default_rng(seed)
    person = np.zeros((kp.POINT_COUNT, 3))
    person[kp.BODY, :2] = rng.uniform(0, 300, (18, 2))
    person[kp.BODY, 2] = rng.uniform(0.1, 1.0, 18)
    person[3, 2] = 0.0                                   # one body point not found
    if hands:
        person[kp.LEFT_HAND, :2] = rng.uniform(0, 300, (21, 2))
        person[kp.LEFT_HAND, 2] = 0.5
    return person


# ---------------------------------------------------------------- the pieces
def test_frame_indices_keep_at_most_max_frames_evenly():
    assert frame_indices(10, 64) == list(range(10))
    assert frame_indices(64, 64) == list(range(64))
    assert frame_indices(65, 64) == list(range(0, 65, 2))                  # 33 frames
    assert frame_indices(130, 64) == list(range(0, 130, 3))                # 44 frames, every 3rd
    assert frame_indices(1, 64) == [0]
    assert all(len(frame_indices(n, 64)) <= 64 for n in range(1, 1000, 37))


def test_downscale_averages_areas_and_leaves_small_frames_alone():
    images = np.zeros((2, 512, 384, 3), np.uint8)
    images[0, ::2] = 200                                   # every other row: the 2x2 means are 100
    images[1, :, :, 1] = 40
    small = downscale(images, 256)
    assert small.shape == (2, 256, 192, 3) and small.dtype == np.uint8
    assert (small[0] == 100).all() and (small[1, ..., 1] == 40).all() and (small[1, ..., 0] == 0).all()
    tiny = np.arange(2 * 100 * 80 * 3, dtype=np.uint8).reshape(2, 100, 80, 3)
    np.testing.assert_array_equal(downscale(tiny, 256), tiny)
    assert downscale(np.zeros((1, 90, 1000, 3), np.uint8), 256).shape == (1, 23, 256, 3)


def test_person_payload_rounds_and_leaves_out_parts_without_points():
    person = _person(hands=True)
    person[0] = (12.345, 67.891, 0.87654)
    out = person_payload(person)
    assert set(out) == {"body", "left_hand"}                 # no feet, right hand, face
    assert out["body"][:3] == [12.3, 67.9, 0.877]
    assert out["body"][9:12] == [0, 0, 0]                    # the missing point: zeros, whatever its x, y
    assert len(out["body"]) == 54 and len(out["left_hand"]) == 63
    body = np.array(out["body"]).reshape(18, 3)
    found = person[kp.BODY, 2] > 0
    np.testing.assert_allclose(body[found], person[kp.BODY][found], atol=0.051)
    assert person_payload(np.zeros((kp.POINT_COUNT, 3))) == {}


def test_preview_outside_the_host_writes_nothing_and_is_json(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert not host.in_host()
    assert host.temp_preview_images(np.zeros((2, 8, 8, 3), np.uint8)) == []
    frames = [kp.PoseFrame(_person(i)[None], 320, 240) for i in range(3)]
    ui = preview_ui("extract", frames, np.zeros((3, 240, 320, 3), np.uint8), fps=25.0)
    payload = ui[PREVIEW_KEY][0]
    assert payload["images"] == [] and list(tmp_path.iterdir()) == []
    assert payload["image_size"] == [256, 192] and payload["note"] == "preview: frames shrunk to 256x192"
    assert json.loads(json.dumps(ui)) == ui


def test_long_videos_are_sampled_and_stay_small(saved):
    frames = [kp.PoseFrame(np.stack([_person(i), _person(i + 1000)]), 1280, 720) for i in range(300)]
    video = np.zeros((300, 180, 320, 3), np.uint8)
    video[:, :, :, 0] = (np.arange(300) % 256).astype(np.uint8)[:, None, None]    # frame number in red
    payload = preview_ui("extract", frames, video, fps=30.0)[PREVIEW_KEY][0]
    shown = list(range(0, 300, 5))
    assert payload["frame_indices"] == shown and payload["total_frames"] == 300
    assert len(payload["frames"]) == len(payload["images"]) == 60
    assert payload["note"] == "preview: every 5th of 300 frames, frames shrunk to 256x144"
    (batch,) = saved
    assert batch.shape == (60, 144, 256, 3)
    np.testing.assert_array_equal(batch[:, 0, 0, 0], np.array(shown) % 256)
    first = np.array(payload["frames"][1]["people"][0]["body"]).reshape(18, 3)
    np.testing.assert_allclose(first[:, :2], np.where(frames[5].people[0, kp.BODY, 2:] > 0,
                                                      frames[5].people[0, kp.BODY, :2], 0), atol=0.051)
    assert len(json.dumps(payload)) < 100_000                            # two people with hands, 60 frames


# ---------------------------------------------------------------- the nodes' host entries
@pytest.fixture(scope="module")
def pose_model(tmp_path_factory):
    pytest.importorskip("cv2")
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    root = tmp_path_factory.mktemp("models")
    _load_file(TINY_POSE_MODELS).build_all(root / host.POSE_MODEL_FOLDER,
                                        names={"yolox": "yolox_l.onnx", "rtmpose": "dw-ll_ucoco_384.onnx"})
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("POSEANIMATE_MODELS", str(root))
        return PoseAnimatePoseModelLoader().load("yolox_l.onnx", "dw-ll_ucoco_384.onnx", "cpu")[0]


def _clip(frames=5):
    video = np.full((frames, 300, 400, 3), 0.1, np.float32)
    for t in range(frames):
        x = 40 + 60 * t
        video[t, 40:260, x:x + 80] = 0.8
        video[t, 100, x + 40] = 1.0                         # every tiny keypoint lands here
    return torch.from_numpy(video)


def test_extract_entry_returns_the_plain_outputs_and_plays_them(pose_model, saved):
    clip = _clip()
    node = PoseAnimateExtractPoses()
    out = node.extract_with_canvas_preview(images=clip, pose_model=pose_model, **EXTRACT)
    assert PoseAnimateExtractPoses.FUNCTION == "extract_with_canvas_preview"
    poses, preview = node.extract(clip, pose_model, **EXTRACT)
    assert out["result"][0] == poses
    torch.testing.assert_close(out["result"][1], preview, rtol=0, atol=0)
    payload = out["ui"][PREVIEW_KEY][0]
    assert (payload["kind"], payload["total_frames"], payload["fps"]) == ("extract", 5, 24.0)
    assert payload["frame_indices"] == [0, 1, 2, 3, 4] and payload["image_size"] == [256, 192]
    (batch,) = saved
    np.testing.assert_array_equal(batch, downscale(np.round(clip.numpy() * 255).astype(np.uint8), 256))
    for t, (frame, sent) in enumerate(zip(poses, payload["frames"])):
        assert (sent["w"], sent["h"]) == (400, 300) and len(sent["people"]) == 1
        body = np.array(sent["people"][0]["body"]).reshape(18, 3)
        expected = np.array(frame["people"][0]["pose_keypoints_2d"]).reshape(18, 3)
        np.testing.assert_allclose(body, expected, atol=0.051)
        assert body[0, 0] == pytest.approx(40 + 60 * t + 40, abs=1.0) and body[0, 1] == pytest.approx(100, abs=1.0)


def test_render_entry_plays_the_drawn_frames(saved):
    frames = [kp.PoseFrame(_person(i)[None], 320, 240) for i in range(3)]
    poses = kp.to_pose_keypoint(frames)
    node = PoseAnimateRenderPoses()
    out = node.render_with_canvas_preview(poses=poses, **RENDER)
    (images,) = node.render(poses, **RENDER)
    torch.testing.assert_close(out["result"][0], images, rtol=0, atol=0)
    payload = out["ui"][PREVIEW_KEY][0]
    assert payload["kind"] == "render" and payload["frames"] == [] and payload["image_size"] == [256, 192]
    (batch,) = saved
    np.testing.assert_array_equal(batch, downscale(np.round(images.numpy() * 255).astype(np.uint8), 256))
    assert batch.any()
    assert payload["fps"] == 30.0                           # no video fps linked


def test_render_preview_plays_at_the_linked_fps(saved):
    poses = kp.to_pose_keypoint([kp.PoseFrame(_person(i)[None], 320, 240) for i in range(2)])
    out = PoseAnimateRenderPoses().render_with_canvas_preview(poses=poses, fps=12.5, **RENDER)
    assert out["ui"][PREVIEW_KEY][0]["fps"] == 12.5
    with pytest.raises(InputError, match="fps"):
        PoseAnimateRenderPoses().render_with_canvas_preview(poses=poses, fps=0.5, **RENDER)


def test_retarget_entry_plays_the_retargeted_skeletons(saved):
    syn = _load("synthetic_skeletons")
    points, scores = syn.clip(frames=4)
    driving = [kp.PoseFrame(p[None], 512, 640) for p in kp.wholebody_to_people(points, scores, neck="dwpose")]
    ref_points, ref_scores = syn.person(neck=(300.0, 180.0), size=1.2)
    reference = kp.PoseFrame(kp.wholebody_to_people(ref_points[None], ref_scores[None])[0][None], 600, 800)
    node = PoseAnimateRetargetPoses()
    args = dict(RETARGET, driving_poses=kp.to_pose_keypoint(driving), reference_pose=kp.to_pose_keypoint([reference]))
    out = node.retarget_with_canvas_preview(**args)
    poses, report = node.retarget(**args)
    assert out["result"] == (poses, report) and report.startswith("retarget: worst bone error")
    payload = out["ui"][PREVIEW_KEY][0]
    assert payload["kind"] == "retarget" and payload["images"] == [] and saved == []
    assert [(f["w"], f["h"]) for f in payload["frames"]] == [(600, 800)] * 4
    for frame, sent in zip(poses, payload["frames"]):
        body = np.array(sent["people"][0]["body"]).reshape(18, 3)
        np.testing.assert_allclose(body, np.array(frame["people"][0]["pose_keypoints_2d"]).reshape(18, 3),
                                   atol=0.051)
        assert set(sent["people"][0]) >= {"body", "left_hand", "right_hand"}


def test_payload_limits_are_the_documented_ones():
    assert (pose_preview.MAX_FRAMES, pose_preview.MAX_SIDE) == (64, 256)
    frames = [kp.PoseFrame(np.stack([_person(0)] * 20), 320, 240)]
    assert len(preview_ui("retarget", frames)[PREVIEW_KEY][0]["frames"][0]["people"]) == pose_preview.MAX_PEOPLE
