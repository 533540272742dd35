"""What a caller asks of Wan2.2-Animate, and the mode logic that turns it into the clips' inputs.

An :class:`AnimateRequest` holds one run over a whole video in ComfyUI's
layouts (IMAGE ``[N, H, W, 3]`` floats in 0..1, MASK ``[N, H, W]``, keypoints
as :class:`~...pose.keypoints.PoseFrame`). Its field names are the node's input
names, so the errors raised here name what the user connected.

:func:`prepare_inputs` is the mode logic, the same for the node, a script or
a test:

* the reference image is fitted to the pose video's size
  (:func:`~..images.fit_image`: resized when only its size differs);
* face crops are cut to the pose frames, and frames whose ``face_poses`` show
  no face get the ``no_face_frames`` policy (:func:`~.clips.fill_missing_faces`);
* animation mode has neither ``background_video`` nor ``person_mask``;
  replacement mode has both: the mask (one frame is used for every frame) and
  the background are cut to the pose frames and must have the pose video's
  size, and the person is blacked out of the background (``background * (1 -
  mask)``, as the reference's preprocessing does). The mask then marks, in the
  clips' image condition, what the model must paint (see :mod:`.clips`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from ...errors import InputError
from ...pose.keypoints import PoseFrame
from ...sampling.schedulers import Scheduler, make_scheduler
from .plan import ANIMATE_CLIP_LEN, ClipPlan, plan_clips
from ..images import fit_image
from .clips import face_presence, fill_missing_faces
from .conditioning import DEFAULT_GUIDANCE, DEFAULT_SHIFT, DEFAULT_SOLVER, DEFAULT_STEPS

__all__ = ["AnimateInputs", "AnimateRequest", "prepare_inputs"]


@dataclass(frozen=True)
class AnimateRequest:
    """One Wan2.2-Animate run over a whole video.

    ``reference_image``: IMAGE (its first frame is the character), the pose
    video's aspect ratio; ``pose_video``: the retargeted poses rendered in the
    ``wan_animate`` style, IMAGE ``[N, H, W, 3]``; ``context`` /
    ``negative_context``: umT5 embeddings ``[1, Lt, 4096]``; ``clip_fea``: CLIP
    ViT-H tokens of the reference. Optional: ``face_video`` (face crops, one per
    pose frame or more), ``face_poses`` (the poses they were cut from, one per
    pose frame), ``background_video`` and ``person_mask`` (replacement mode: 1
    on the person to replace). The output has ``N`` frames, made as clips of
    ``clip_frames`` chained through their last ``refert_num`` decoded frames;
    clip ``i`` draws its noise from ``seed + i``.
    """

    reference_image: torch.Tensor
    pose_video: torch.Tensor
    context: torch.Tensor
    negative_context: torch.Tensor | None = None
    clip_fea: torch.Tensor | None = None
    face_video: torch.Tensor | None = None
    face_poses: Sequence[PoseFrame] | None = None
    no_face_frames: str = "nearest"
    background_video: torch.Tensor | None = None
    person_mask: torch.Tensor | None = None
    clip_frames: int = ANIMATE_CLIP_LEN
    refert_num: int = 1
    seed: int = 0
    steps: int = DEFAULT_STEPS
    cfg: float = DEFAULT_GUIDANCE
    shift: float = DEFAULT_SHIFT
    scheduler: str = DEFAULT_SOLVER
    step_list: str | Sequence[int] | None = None  # the timesteps of lightx2v_distill (see make_scheduler)
    pose_strength: float = 1.0
    face_strength: float = 1.0

    @property
    def mode(self) -> str:
        """``"replacement"`` with a background video, else ``"animation"``."""
        return "replacement" if self.background_video is not None else "animation"

    @property
    def frames(self) -> int:
        """The video's length: one frame per pose frame."""
        return int(self.pose_video.shape[0])

    def plan(self) -> ClipPlan:
        """The clips the video is made of (refuses a ``refert_num`` other than 1 or 5)."""
        return plan_clips(self.frames, self.clip_frames, self.refert_num)

    def make_scheduler(self) -> Scheduler:
        """``scheduler`` over ``steps`` (or ``step_list`` for ``lightx2v_distill``) with ``shift``."""
        return make_scheduler(self.scheduler, self.steps, self.shift, self.step_list)

    def total_steps(self) -> int:
        """Sampling steps over all clips: a progress bar's total."""
        return self.make_scheduler().steps * len(self.plan())

    def prepare(self) -> AnimateInputs:
        """The mode logic (:func:`prepare_inputs`): call it before loading models, so bad inputs stop early
        (the scheduler's settings among them)."""
        self.make_scheduler()
        return prepare_inputs(self)


@dataclass(frozen=True)
class AnimateInputs:
    """A request's frames made ready for the clips, on the CPU in float32 (the pose frames as given).

    ``request``: what they were made from; ``reference`` ``[1, H, W, 3]`` at the pose video's size; ``face_frames``
    ``[N, S, S, 3]`` or None; in replacement mode ``background`` ``[N, H, W, 3]``
    with the person blacked out and ``person_mask`` ``[N, H, W]``, else None.
    """

    request: AnimateRequest
    reference: torch.Tensor
    pose_frames: torch.Tensor
    face_frames: torch.Tensor | None = None
    background: torch.Tensor | None = None
    person_mask: torch.Tensor | None = None

    @property
    def mode(self) -> str:
        return "replacement" if self.background is not None else "animation"


def prepare_inputs(request: AnimateRequest) -> AnimateInputs:
    """The mode logic: the request's frames checked, cut to the pose frames and prepared (see the module)."""
    poses = request.pose_video
    total, height, width = (int(n) for n in poses.shape[:3])
    image = request.reference_image
    image = image[:1] if torch.is_tensor(image) and image.dim() == 4 else image  # the first frame of a batch
    reference = fit_image(image, height, width, "reference_image")[None]
    faces = None
    if request.face_video is not None:
        faces = _frames_like(request.face_video, total, "face_video")
        present = None
        if request.face_poses is not None:
            if len(request.face_poses) != total:
                raise InputError("face_poses", f"have {len(request.face_poses)} frames for {total} pose frames",
                                 "the poses the face crops were cut from")
            present = face_presence(request.face_poses)
        faces = fill_missing_faces(faces, present, request.no_face_frames)
    background_video, person_mask = request.background_video, request.person_mask
    if (background_video is None) != (person_mask is None):
        missing = "person_mask" if person_mask is None else "background_video"
        raise InputError(missing, "is missing: replacement mode needs both background_video and person_mask",
                         "both (replacement) or neither (animation)")
    background = mask = None
    if background_video is not None:
        background = _frames_like(background_video, total, "background_video")
        mask = _mask_like(person_mask, total, height, width)
        if tuple(background.shape[1:3]) != (height, width):
            raise InputError("background_video", f"is {background.shape[2]}x{background.shape[1]}",
                             f"the pose video's size {width}x{height}")
        background = background * (1.0 - mask[..., None])  # the person blacked out, as the reference does
    return AnimateInputs(request, reference, poses, faces, background, mask)


def _frames_like(frames: torch.Tensor, total: int, input_name: str) -> torch.Tensor:
    if frames.shape[0] < total:
        raise InputError(input_name, f"has {frames.shape[0]} frames", f"one per pose frame ({total})")
    return frames[:total].float().cpu()


def _mask_like(mask: torch.Tensor, total: int, height: int, width: int) -> torch.Tensor:
    if not torch.is_tensor(mask) or mask.dim() not in (2, 3):
        raise InputError("person_mask", f"has shape {list(getattr(mask, 'shape', []))}", "a MASK [frames, H, W]")
    mask = mask if mask.dim() == 3 else mask[None]
    if mask.shape[0] == 1 and total > 1:
        mask = mask.expand(total, -1, -1)
    if mask.shape[0] < total or tuple(mask.shape[1:]) != (height, width):
        raise InputError("person_mask", f"is {mask.shape[0]} frames of {mask.shape[2]}x{mask.shape[1]}",
                         f"{total} frames of {width}x{height}, like the pose video")
    return mask[:total].float().cpu()
