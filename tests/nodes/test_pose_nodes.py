"""The pose nodes outside the host, on the tiny ONNX stand-ins (tiny_models/pose_models.py) placed under
the real models' file names: each node returns what the core returns for the same input, every bad input is an
InputError naming the node input, and another pack's POSE_KEYPOINT is accepted."""
import copy
import dataclasses
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from poseanimate import NODE_CLASS_MAPPINGS, host
from poseanimate.errors import InputError
from poseanimate.nodes.pose_extract_nodes import (NO_DETECTOR, PoseAnimateExtractPoses, PoseAnimatePoseModelLoader,
                                                  PoseModelHandle)
from poseanimate.nodes.pose_render_nodes import (STYLES, PoseAnimateFaceCrops, PoseAnimateRenderPoses,
                                                 PoseAnimateRetargetPoses)
from poseanimate.pose import keypoints as kp
from poseanimate.pose.people import fill_empty_frames, select_people
from poseanimate.pose.retarget import retarget_unianimate, retarget_wan_animate
from poseanimate.pose.retarget_steadydancer import retarget_steadydancer
from poseanimate.pose.smoothing import one_euro

pytest.importorskip("cv2")
from poseanimate.pose import render  # noqa: E402  (needs OpenCV)
from poseanimate.pose.extract import load_pose_estimator  # noqa: E402
from poseanimate.pose.face_crops import crop_faces  # noqa: E402

POSE_TESTS = Path(__file__).resolve().parents[1] / "pose"
TINY_POSE_MODELS = Path(__file__).resolve().parents[2] / "tiny_models" / "pose_models.py"
REAL_NAMES = {"yolox": "yolox_l.onnx", "rtmpose": "dw-ll_ucoco_384.onnx",
              "yolov10": "yolov10m.onnx", "vitpose": "vitpose_h_wholebody.onnx"}
PAIRS = {"dwpose": ("yolox_l.onnx", "dw-ll_ucoco_384.onnx"), "wan": ("yolov10m.onnx", "vitpose_h_wholebody.onnx")}
EXTRACT = dict(people="largest", person_index=0, empty_frames="whole_frame", smoothing=False, min_cutoff=1.0,
               beta=1.0, fps=30.0, batch_size=4)
RENDER = dict(style="unianimate", width=0, height=0, fit="auto", body=True, hands=True, face="auto", feet="auto",
              color_order="auto")
RETARGET = dict(method="unianimate", unianimate_space="pixels", keep_bone_lengths=True, wan_min_confidence=0.0,
                wan_hand_threshold=0.4)


def _load_file(path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _load(name):
    """A helper module from tests/pose, by path (tests are not packages)."""
    spec = importlib.util.spec_from_file_location(name, POSE_TESTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


syn = _load("synthetic_skeletons")


@pytest.fixture(scope="module")
def models_root(tmp_path_factory):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    root = tmp_path_factory.mktemp("models")
    files = _load_file(TINY_POSE_MODELS).build_all(root / host.POSE_MODEL_FOLDER, names=REAL_NAMES)
    return root, files


@pytest.fixture(scope="module")
def handles(models_root):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("POSEANIMATE_MODELS", str(models_root[0]))
        return {pair: PoseAnimatePoseModelLoader().load(det, kpm, "cpu")[0] for pair, (det, kpm) in PAIRS.items()}


@pytest.fixture
def in_models_root(models_root, monkeypatch):
    monkeypatch.setenv("POSEANIMATE_MODELS", str(models_root[0]))
    return models_root[1]


def _clip():
    frames = np.zeros((4, 240, 320, 3), np.float32)
    frames[0, 30:200, 40:120] = 0.8
    frames[0, 90, 80] = 1.0                 # the tiny keypoint models put every point on the brightest spot
    frames[2, 60:230, 200:300] = 0.9
    frames[2, 100, 250] = 1.0
    return torch.from_numpy(frames)         # frames 1 and 3: nobody


def _synthetic_frames(points, scores, w=512, h=640):
    people = kp.wholebody_to_people(points, scores, neck="dwpose")
    return [kp.PoseFrame(p[None], w, h) for p in people]


def _driving_and_reference():
    points, scores = syn.clip(frames=5)
    reference = syn.person(neck=(300.0, 180.0), size=1.2, proportions={"upper_arm": 100.0, "thigh": 130.0})
    return _synthetic_frames(points, scores), _synthetic_frames(reference[0][None], reference[1][None], 600, 800)[0]


def _controlnet_aux_frame(normalised=True):
    """A frame as comfyui_controlnet_aux's DWPose node writes it: coordinates normalised to the canvas,
    confidences 1.0, missing points [0, 0, 0], hands None when not found, a 70-point face."""
    w, h = 512, 640
    points, _ = syn.person(neck=(256.0, 200.0))
    body = kp.wholebody_to_people(points[None], np.ones((1, 133)))[0]
    scale = np.array([w, h]) if normalised else np.ones(2)

    def flat(part):
        return [float(v) for x, y, c in part for v in ((x / scale[0], y / scale[1], 1.0) if c > 0 else (0, 0, 0))]

    pose = flat(body[kp.BODY])
    pose[3 * 9:3 * 10] = [0.0, 0.0, 0.0]          # right knee not found
    return {"people": [{"pose_keypoints_2d": pose, "face_keypoints_2d": flat(body[kp.FACE]),
                        "hand_left_keypoints_2d": flat(body[kp.LEFT_HAND]), "hand_right_keypoints_2d": None}],
            "canvas_height": h, "canvas_width": w}


def _people(pose_keypoint):
    return [f.people for f in kp.from_pose_keypoint(pose_keypoint)]


# ---------------------------------------------------------------- registration, loader
def test_nodes_are_registered_with_tooltips():
    names = ("PoseAnimatePoseModelLoader", "PoseAnimateExtractPoses", "PoseAnimateRetargetPoses",
             "PoseAnimateRenderPoses", "PoseAnimateFaceCrops")
    for name in names:
        cls = NODE_CLASS_MAPPINGS[name]
        assert cls.CATEGORY == "PoseAnimate/pose" and cls.DESCRIPTION and len(cls.RETURN_TYPES) == len(cls.RETURN_NAMES)
        for spec in cls.INPUT_TYPES()["required"].values():
            assert spec[1].get("tooltip"), name
    assert STYLES == render.STYLES


def test_loader_lists_the_folder_and_loads_by_name(in_models_root):
    spec = PoseAnimatePoseModelLoader.INPUT_TYPES()["required"]
    assert set(REAL_NAMES.values()) <= set(spec["keypoint_model"][0])
    assert spec["detector"][0][-1] == NO_DETECTOR
    assert spec["detector"][1]["default"] == "yolov10m.onnx"                     # a detector, not the first file
    assert spec["keypoint_model"][1]["default"] == "dw-ll_ucoco_384.onnx"
    (handle,) = PoseAnimatePoseModelLoader().load("yolov10m.onnx", "vitpose_h_wholebody.onnx", "auto")
    assert isinstance(handle, PoseModelHandle)
    assert handle.estimator.detector.kind == "yolov10" and handle.estimator.keypoints.kind == "vitpose"
    with pytest.raises(dataclasses.FrozenInstanceError):
        handle.device = "cuda"                                      # cached outputs are never mutated
    (whole,) = PoseAnimatePoseModelLoader().load(NO_DETECTOR, "dw-ll_ucoco_384.onnx", "cpu")
    assert whole.estimator.detector is None and whole.detector_name is None


def test_loader_errors_name_the_input_and_where_to_get_the_file(in_models_root, tmp_path, monkeypatch):
    loader = PoseAnimatePoseModelLoader()
    with pytest.raises(InputError, match="pose detector 'dw-ll_ucoco_384.onnx'.*YOLOX"):
        loader.load("dw-ll_ucoco_384.onnx", "dw-ll_ucoco_384.onnx", "cpu")          # a keypoint model as detector
    with pytest.raises(InputError, match="detector '../yolox_l.onnx'"):
        loader.load("../yolox_l.onnx", "dw-ll_ucoco_384.onnx", "cpu")
    with pytest.raises(InputError, match="device"):
        loader.load("yolox_l.onnx", "dw-ll_ucoco_384.onnx", "tpu")
    monkeypatch.setenv("POSEANIMATE_MODELS", str(tmp_path))                           # an empty models folder
    with pytest.raises(InputError) as err:
        loader.load("yolox_l.onnx", "vitpose_h_wholebody.onnx", "cpu")
    message = str(err.value)
    assert message.startswith("keypoint_model 'vitpose_h_wholebody.onnx'") and "not found" in message
    assert host.POSE_MODEL_FOLDER in message and "Wan-AI/Wan2.2-Animate-14B, process_checkpoint/pose2d/" in message
    with pytest.raises(InputError, match="keypoint_model 'x.onnx'.*yzd-v/DWPose.*Wan-AI"):
        loader.load(NO_DETECTOR, "x.onnx", "cpu")                                   # unknown name: every source
    folder = tmp_path / host.POSE_MODEL_FOLDER
    folder.mkdir()
    (folder / "dw-ll_ucoco_384.onnx").write_bytes(Path(in_models_root["rtmpose"]).read_bytes())
    with pytest.raises(InputError, match="^detector 'yolox_l.onnx': was not found.*yzd-v/DWPose"):
        loader.load("yolox_l.onnx", "dw-ll_ucoco_384.onnx", "cpu")


# ---------------------------------------------------------------- extraction
@pytest.mark.parametrize("pair", ["dwpose", "wan"])
def test_extract_equals_the_core_and_previews_what_it_found(handles, models_root, pair):
    clip = _clip()
    poses, preview = PoseAnimateExtractPoses().extract(clip, handles[pair], **EXTRACT)
    files = models_root[1]
    det, kpm = ("yolox", "rtmpose") if pair == "dwpose" else ("yolov10", "vitpose")
    core = select_people(load_pose_estimator(files[kpm], files[det], "cpu")(clip.numpy(), batch_size=4), "largest")
    got = _people(poses)
    for ours, theirs in zip(got, core):
        np.testing.assert_array_equal(ours, theirs.people)
    assert [p["canvas_width"] for p in poses] == [320] * 4
    confidences = got[0][0, :, 2]
    assert confidences.max() > 0 and not np.isin(confidences, (0.0, 1.0)).all()      # real confidences, not 1/0
    # the preview: the openpose drawing over the frames dimmed to half
    frames = np.round(clip.numpy() * 255).astype(np.uint8)
    skeleton = render.render_poses(core, style="openpose")
    expected = np.where(skeleton.any(-1, keepdims=True), skeleton, frames // 2)
    assert preview.shape == (4, 240, 320, 3) and preview.dtype == torch.float32
    np.testing.assert_array_equal(np.round(preview.numpy() * 255).astype(np.uint8), expected)
    assert skeleton[0].any()


def test_extract_empty_frame_policies_index_and_smoothing(handles):
    clip, node = _clip(), PoseAnimateExtractPoses()
    empty, _ = node.extract(clip, handles["dwpose"], **dict(EXTRACT, empty_frames="empty"))
    assert [len(f["people"]) for f in empty] == [1, 0, 1, 0]
    held, _ = node.extract(clip, handles["dwpose"], **dict(EXTRACT, empty_frames="hold"))
    held = _people(held)
    np.testing.assert_array_equal(held[1], held[0])
    np.testing.assert_array_equal(held[3], held[2])
    blended, _ = node.extract(clip, handles["dwpose"], **dict(EXTRACT, empty_frames="interpolate"))
    frames = kp.from_pose_keypoint(empty)
    for ours, theirs in zip(_people(blended), fill_empty_frames(frames, "interpolate")):
        np.testing.assert_array_equal(ours, theirs.people)
    second, _ = node.extract(clip, handles["dwpose"], **dict(EXTRACT, people="index", person_index=1))
    assert [len(f["people"]) for f in second] == [0, 0, 0, 0]                      # one person per frame at most
    smooth, _ = node.extract(clip, handles["dwpose"], **dict(EXTRACT, empty_frames="hold", smoothing=True,
                                                             min_cutoff=0.5, beta=0.2, fps=24.0))
    expected = one_euro(fill_empty_frames(frames, "hold"), min_cutoff=0.5, beta=0.2, fps=24.0)
    for ours, theirs in zip(_people(smooth), expected):
        np.testing.assert_allclose(ours, theirs.people, atol=1e-9)


@pytest.mark.parametrize("change,name", [
    (dict(images=torch.zeros(0, 64, 64, 3)), "images: is an empty batch"),
    (dict(images=torch.zeros(64, 64, 3)), "images: has shape"),
    (dict(images=[1, 2]), "images: is a list"),
    (dict(pose_model="yolox_l.onnx"), "pose_model: is a str"),
    (dict(people="biggest"), "people: is 'biggest'"),
    (dict(empty_frames="skip"), "empty_frames"),
    (dict(person_index=-1), "person_index"),
    (dict(batch_size=0), "batch_size"),
    (dict(smoothing=True, fps=0.0), "fps"),
    (dict(smoothing=True, beta=-1.0), "beta"),
])
def test_extract_bad_inputs(handles, change, name):
    args = dict(EXTRACT, images=_clip()[:1], pose_model=handles["dwpose"])
    args.update(change)
    with pytest.raises(InputError, match=name):
        PoseAnimateExtractPoses().extract(**args)


# ---------------------------------------------------------------- retargeting
@pytest.mark.parametrize("method", ["unianimate", "wan_animate", "unianimate_reference", "wan_animate_reference",
                                    "steadydancer"])
def test_retarget_equals_the_core(method, caplog):
    driving, reference = _driving_and_reference()
    compat = method.endswith("_reference")
    space = "normalized" if compat else "pixels"
    with caplog.at_level("INFO"):
        out, report = PoseAnimateRetargetPoses().retarget(
            kp.to_pose_keypoint(driving), kp.to_pose_keypoint([reference]),
            **dict(RETARGET, method=method, keep_bone_lengths=False, unianimate_space=space, wan_min_confidence=0.1,
                   wan_hand_threshold=0.5))
    if method == "steadydancer":
        expected = retarget_steadydancer(driving, reference)
    elif method.startswith("unianimate"):
        expected = retarget_unianimate(driving, reference, space=space, keep_bone_lengths=False,
                                       reference_compat=compat)
    else:
        expected = retarget_wan_animate(driving, reference, min_confidence=0.1, hand_threshold=0.5,
                                        reference_compat=compat)
    assert report.startswith("retarget: worst bone error ") and report.endswith(f"[{method}]")
    assert report in caplog.text
    assert all((f["canvas_width"], f["canvas_height"]) == (600, 800) for f in out)
    for ours, theirs in zip(_people(out), expected):
        np.testing.assert_array_equal(ours, theirs.people)
    assert not np.array_equal(_people(out)[0], driving[0].people)


def test_retarget_none_passes_the_driving_poses_through():
    data = [_controlnet_aux_frame(), {"people": [], "canvas_width": 512, "canvas_height": 640}]
    original = copy.deepcopy(data)
    out, report = PoseAnimateRetargetPoses().retarget(data, [], **dict(RETARGET, method="none"))
    assert "none" in report
    assert out == original and data == original


@pytest.mark.parametrize("change,message", [
    (dict(driving_poses=[]), "driving_poses: has no frames"),
    (dict(driving_poses="poses.json"), "driving_poses: is a str"),
    (dict(reference_pose="two"), "reference_pose: has 2 frames"),
    (dict(reference_pose=[{"people": [], "canvas_width": 600, "canvas_height": 800}]), "reference_pose: has no person"),
    (dict(reference_pose=[{"people": [{"pose_keypoints_2d": [0.0] * 54}], "canvas_width": 600,
                           "canvas_height": 800}]), "reference_pose: has no person"),
    (dict(reference_pose=[{"people": [], "canvas_width": 0, "canvas_height": 800}]), "reference_pose frame 0"),
    (dict(method="copy"), "method: is 'copy'"),
    (dict(method="wan_animate", wan_hand_threshold=2.0), "wan_hand_threshold"),
    (dict(unianimate_space="normalized"), "unianimate_space: is 'normalized' with method 'unianimate'"),
])
def test_retarget_bad_inputs(change, message):
    driving, reference = _driving_and_reference()
    args = dict(RETARGET, driving_poses=kp.to_pose_keypoint(driving), reference_pose=kp.to_pose_keypoint([reference]))
    if change.get("reference_pose") == "two":
        change = dict(reference_pose=kp.to_pose_keypoint([reference, reference]))
    args.update(change)
    with pytest.raises(InputError, match=message):
        PoseAnimateRetargetPoses().retarget(**args)


# ---------------------------------------------------------------- rendering
def _rendered(poses, **change):
    (images,) = PoseAnimateRenderPoses().render(poses, **dict(RENDER, **change))
    assert images.dtype == torch.float32
    return np.round(images.numpy() * 255).astype(np.uint8)


def test_render_defaults_are_unianimates_training_frames():
    driving, _ = _driving_and_reference()
    ours = _rendered(kp.to_pose_keypoint(driving))
    expected = render.render_poses(driving, style="unianimate")
    np.testing.assert_array_equal(ours, expected)
    assert ours.shape == (5, 640, 512, 3)
    # BGR, as UniAnimate-DiT's model saw its pose frames; no face
    rgb = render.render_poses(driving, style="unianimate", color_order="rgb")
    np.testing.assert_array_equal(ours, rgb[..., ::-1])
    with_face = _rendered(kp.to_pose_keypoint(driving), face="on")
    assert (with_face != ours).any()
    np.testing.assert_array_equal(with_face, render.render_poses(driving, style="unianimate", face=True))


@pytest.mark.parametrize("style", ["openpose", "wan_animate"])
@pytest.mark.parametrize("fit", ["letterbox", "stretch", "crop"])
def test_render_sizes_and_fits_equal_the_core(style, fit):
    driving, _ = _driving_and_reference()
    driving = driving[:2]
    ours = _rendered(kp.to_pose_keypoint(driving), style=style, width=320, height=240, fit=fit, hands=False,
                     feet="on", color_order="bgr")
    frames = driving if fit == "stretch" else kp.scale_frames(driving, 320, 240, fit)
    expected = render.render_poses(frames, 320, 240, style=style, hands=False, feet=True, color_order="bgr")
    np.testing.assert_array_equal(ours, expected)
    assert ours.shape == (2, 240, 320, 3) and ours.any()


def test_render_auto_fit_and_one_zero_side_keeps_the_aspect_ratio():
    driving, _ = _driving_and_reference()                       # 512 x 640 canvas
    poses = kp.to_pose_keypoint(driving[:1])
    assert _rendered(poses, width=256).shape == (1, 320, 256, 3)
    assert _rendered(poses, height=320).shape == (1, 320, 256, 3)
    np.testing.assert_array_equal(_rendered(poses, style="wan_animate", width=400, height=300),
                                  _rendered(poses, style="wan_animate", width=400, height=300, fit="letterbox"))
    np.testing.assert_array_equal(_rendered(poses, width=400, height=300),
                                  _rendered(poses, width=400, height=300, fit="stretch"))


@pytest.mark.parametrize("change,message", [
    (dict(poses=[]), "poses: has no frames"),
    (dict(poses=[{"people": [{"pose_keypoints_2d": [1.0, 2.0]}], "canvas_width": 64, "canvas_height": 64}]),
     "poses frame 0 person 0 field 'pose_keypoints_2d': has 2 numbers"),
    (dict(width=-8), "width"),
    (dict(height=100000), "height"),
    (dict(style="dwpose"), "style: is 'dwpose'"),
    (dict(fit="zoom"), "fit"),
    (dict(face="yes"), "face"),
    (dict(color_order="grb"), "color_order"),
])
def test_render_bad_inputs(change, message):
    driving, _ = _driving_and_reference()
    args = dict(RENDER, poses=kp.to_pose_keypoint(driving[:1]))
    args.update(change)
    with pytest.raises(InputError, match=message):
        PoseAnimateRenderPoses().render(**args)


# ---------------------------------------------------------------- face crops
def _faces_and_images(count=3):
    driving, _ = _driving_and_reference()
    rng = np.random.default_rng(1)
    images = rng.uniform(0, 1, (count, 320, 256, 3)).astype(np.float32)    # half the poses' 512 x 640 canvas
    return driving[:count], images


def test_face_crops_equal_the_core():
    frames, images = _faces_and_images()
    (crops,) = PoseAnimateFaceCrops().crop(torch.from_numpy(images), kp.to_pose_keypoint(frames), 512, 0, 1.3)
    assert crops.shape == (3, 512, 512, 3) and crops.dtype == torch.float32
    np.testing.assert_array_equal(crops.numpy(), crop_faces(images, frames, size=512, scale=1.3))
    (small,) = PoseAnimateFaceCrops().crop(torch.from_numpy(images), kp.to_pose_keypoint(frames), 128, 0, 1.5)
    np.testing.assert_array_equal(small.numpy(), crop_faces(images, frames, size=128, scale=1.5))


@pytest.mark.parametrize("change,message", [
    (dict(images=torch.zeros(0, 320, 256, 3)), "images: is an empty batch"),
    (dict(poses="first two"), "poses: have 2 frames for 3 images"),
    (dict(poses="nobody"), "poses: found no face"),
    (dict(poses="retargeted"), "poses: frame 0 is on a 600x800 canvas"),
    (dict(person_index=1), "poses: found no face"),
    (dict(size=0), "size"),
    (dict(scale=0.5), "scale"),
])
def test_face_crop_bad_inputs(change, message):
    frames, images = _faces_and_images()
    poses = {"all": frames, "first two": frames[:2], "nobody": [kp.PoseFrame(kp.empty_people(), 512, 640)] * 3,
             "retargeted": retarget_unianimate(frames, _driving_and_reference()[1])}
    args = dict(images=torch.from_numpy(images), poses="all", size=512, person_index=0, scale=1.3)
    args.update(change)
    args["poses"] = kp.to_pose_keypoint(poses[args["poses"]])
    with pytest.raises(InputError, match=message):
        PoseAnimateFaceCrops().crop(**args)


# ---------------------------------------------------------------- another pack's POSE_KEYPOINT
@pytest.mark.parametrize("normalised", [True, False])
def test_controlnet_aux_pose_keypoint_is_accepted_everywhere(normalised):
    frame = _controlnet_aux_frame(normalised)
    as_read = kp.from_pose_keypoint([frame])
    person = as_read[0].people[0]
    assert person[9, 2] == 0 and (person[kp.RIGHT_HAND, 2] == 0).all() and person[0, 0] > 1   # pixels now
    # rendered as the core renders what it read; a single dict (not a list) is one frame
    for data in (frame, [frame]):
        np.testing.assert_array_equal(_rendered(data, style="openpose"),
                                      render.render_poses(as_read, style="openpose"))
    # as a reference and as driving poses
    driving, reference = _driving_and_reference()
    out, _ = PoseAnimateRetargetPoses().retarget(kp.to_pose_keypoint(driving), [frame], **RETARGET)
    for ours, theirs in zip(_people(out), retarget_unianimate(driving, as_read[0])):
        np.testing.assert_array_equal(ours, theirs.people)
    out, _ = PoseAnimateRetargetPoses().retarget([frame] * 3, kp.to_pose_keypoint([reference]),
                                                 **dict(RETARGET, method="wan_animate"))
    for ours, theirs in zip(_people(out), retarget_wan_animate(as_read * 3, reference)):
        np.testing.assert_array_equal(ours, theirs.people)
    # face crops from its 70-point face
    images = np.random.default_rng(0).uniform(0, 1, (1, 640, 512, 3)).astype(np.float32)
    (crops,) = PoseAnimateFaceCrops().crop(torch.from_numpy(images), [frame], 512, 0, 1.3)
    np.testing.assert_array_equal(crops.numpy(), crop_faces(images, as_read))


def test_without_opencv_the_nodes_load_and_say_what_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)                         # `import cv2` now fails
    monkeypatch.delitem(sys.modules, "poseanimate.pose.render")
    driving, _ = _driving_and_reference()
    with pytest.raises(InputError, match="opencv: is not installed.*install.py"):
        PoseAnimateRenderPoses().render(kp.to_pose_keypoint(driving[:1]), **RENDER)


def test_smooth_node_equals_the_core_on_another_packs_poses():
    from poseanimate.nodes.pose_data_nodes import PoseAnimateSmoothPoses
    data = [_controlnet_aux_frame(False), {"people": [], "canvas_width": 512, "canvas_height": 640},
            _controlnet_aux_frame(False)]
    (out,) = PoseAnimateSmoothPoses().smooth(data, "all", 0, "interpolate", 0.5, 0.3, 24.0)
    frames = kp.from_pose_keypoint(data)
    expected = one_euro(fill_empty_frames(select_people(frames, "all", 0), "interpolate"), min_cutoff=0.5, beta=0.3,
                        fps=24.0)
    for ours, theirs in zip(_people(out), expected):
        np.testing.assert_array_equal(ours, theirs.people)
    assert _people(out)[1].shape[0] == 1  # the empty middle frame was filled
    with pytest.raises(InputError, match="min_cutoff: is 0"):
        PoseAnimateSmoothPoses().smooth(data, "all", 0, "hold", 0.0, 0.3, 24.0)
