"""Wan2.2-Animate clip by clip: each clip's inputs, and its image condition ``y``.

A long video is sampled as clips of 77 frames (``methods/wan_animate/plan.py``:
:func:`~.plan.plan_clips` pads the inputs by ping-pong to whole
clips; :func:`~.plan.assemble_clips` joins the outputs). Each
clip after the first starts on the last ``refert_num`` (1 or 5) frames the
previous clip *decoded*, so clips run one after another:

    plan = plan_clips(len(poses), 77, refert_num)
    clips = AnimateClips(plan, poses, faces, background, person_mask)
    outputs, refert = [], None
    for inputs in clips:
        y = build_clip_y(vae_encode, reference_latent, inputs, refert)
        ... sample the clip (AnimateConditioning over y, the pose latent of inputs.pose_frames,
            inputs.face_frames), decode drop_reference_frame(latent) -> frames ...
        outputs.append(frames); refert = frames[-plan.refert_num:]
    video = assemble_clips(outputs, plan)

``y`` (``wan/animate.py``): a reference latent frame (4 mask channels of
ones, the VAE latent of the reference image) followed by the clip's frames:
mask channels from :func:`condition_mask` and the VAE latent of
:func:`condition_video`:

* animation: the previous clip's last ``refert_num`` frames, then zeros
  (grey); the mask is 1 on those frames, 0 elsewhere;
* replacement: the previous frames, then the background video with the
  person blacked out; the mask is ``1 - person mask`` (nearest-resized to the
  latent size), and 1 on the previous frames.

The mask is per pixel frame: latent frame 0 takes pixel frame 0 four times,
latent frame ``t`` pixel frames ``4t - 3 .. 4t``, as the 4 mask channels.

Images are ComfyUI IMAGE floats in 0..1 (``[T, H, W, 3]``); the reference
works in ``[-1, 1]``, where its zeros are 0.5 here and its ``-1`` (the
blacked-out person, the unconditional "no face") is 0.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ...errors import InputError
from ...models.wan.latent_space import LATENT_CHANNELS, latent_frames
from ...pose.keypoints import FACE, FACE_LANDMARKS, PoseFrame
from .plan import ANIMATE_REFERT_NUMS, Clip, ClipPlan, pingpong_indices

log = logging.getLogger(__name__)

MASK_CHANNELS = 4
SPATIAL_STRIDE = 8  # pixels per latent pixel
GREY = 0.5  # the reference's zero in [-1, 1]
NO_FACE_POLICIES = ("nearest", "blank")


# ---------------------------------------------------------------- per-clip inputs
@dataclass(frozen=True)
class AnimateClipInputs:
    """One clip's slice of the (ping-pong padded) inputs; ``None`` parts were not given."""

    clip: Clip
    pose_frames: torch.Tensor                 # [clip_len, H, W, 3], the rendered poses
    face_frames: torch.Tensor | None = None   # [clip_len, S, S, 3], face crops
    background: torch.Tensor | None = None    # [clip_len, H, W, 3], replacement mode
    person_mask: torch.Tensor | None = None   # [clip_len, H, W], 1 on the person, replacement mode

    @property
    def mode(self) -> str:
        return "replacement" if self.background is not None else "animation"


class AnimateClips:
    """The plan's clips over the inputs, cut on access (a padded copy of the whole video is never made).

    ``pose_frames`` ``[N, H, W, 3]`` with ``N = plan.total``; ``face_frames``
    ``[N, S, S, 3]``; for replacement both ``background`` ``[N, H, W, 3]`` and
    ``person_mask`` ``[N, H, W]`` (floats, 1 = the person to replace).
    """

    def __init__(self, plan: ClipPlan, pose_frames: torch.Tensor, face_frames: torch.Tensor | None = None,
                 background: torch.Tensor | None = None, person_mask: torch.Tensor | None = None):
        _check_image("pose frames", pose_frames)
        total, height, width = pose_frames.shape[:3]
        if total != plan.total:
            raise InputError("pose frames", f"are {total} frames for a plan over {plan.total}",
                             "one rendered pose per frame of the video")
        if face_frames is not None:
            _check_image("face frames", face_frames)
            if face_frames.shape[0] != total:
                raise InputError("face frames", f"are {face_frames.shape[0]} crops for {total} pose frames",
                                 "one face crop per pose frame")
        if (background is None) != (person_mask is None):
            missing = "person mask" if person_mask is None else "background video"
            raise InputError(missing, "is missing: replacement mode needs both the background video and the "
                             "person mask", "both inputs (replacement) or neither (animation)")
        if background is not None:
            _check_image("background video", background)
            check_person_mask(person_mask, total, height, width)
            if tuple(background.shape[:3]) != (total, height, width):
                raise InputError("background video", f"is {background.shape[0]} frames of "
                                 f"{background.shape[2]}x{background.shape[1]}",
                                 f"{total} frames of {width}x{height}, like the pose frames")
        self.plan = plan
        self.pose_frames, self.face_frames = pose_frames, face_frames
        self.background, self.person_mask = background, person_mask
        self._order = pingpong_indices(total, plan.padded)

    def __len__(self) -> int:
        return len(self.plan)

    def __iter__(self) -> Iterator[AnimateClipInputs]:
        return (self[i] for i in range(len(self)))

    def __getitem__(self, index: int) -> AnimateClipInputs:
        clip = self.plan[index]
        order = torch.tensor(self._order[clip.start:clip.end])

        def cut(frames: torch.Tensor | None) -> torch.Tensor | None:
            return None if frames is None else frames.index_select(0, order.to(frames.device))

        return AnimateClipInputs(clip, cut(self.pose_frames), cut(self.face_frames), cut(self.background),
                                 cut(self.person_mask))


def _check_image(name: str, frames: torch.Tensor) -> None:
    if not torch.is_tensor(frames) or frames.dim() != 4 or frames.shape[-1] != 3 or not frames.is_floating_point():
        raise InputError(name, f"have shape {list(getattr(frames, 'shape', []))}",
                         "an RGB IMAGE batch [frames, height, width, 3], floats in 0..1")


def check_person_mask(mask: torch.Tensor, frames: int, height: int, width: int) -> None:
    """Refuse a person mask that is not one ``height x width`` MASK per frame."""
    if not torch.is_tensor(mask) or mask.dim() != 3:
        raise InputError("person mask", f"has shape {list(getattr(mask, 'shape', []))}",
                         "a MASK [frames, height, width] (1 on the person to replace)")
    if mask.shape[0] != frames:
        raise InputError("person mask", f"has {mask.shape[0]} frames for {frames} video frames",
                         "one mask per frame of the video")
    if tuple(mask.shape[1:]) != (height, width):
        raise InputError("person mask", f"is {mask.shape[2]}x{mask.shape[1]} pixels",
                         f"the video's size {width}x{height}")


# ---------------------------------------------------------------- faces
def face_presence(frames: Sequence[PoseFrame], person: int = 0) -> list[bool]:
    """Whether each frame shows the ``person``-th person's face (two or more landmarks spanning an area)."""
    present = []
    for frame in frames:
        found = False
        if frame.count > person:
            landmarks = frame.people[person][FACE][:FACE_LANDMARKS]
            points = landmarks[landmarks[:, 2] > 0, :2]
            found = len(points) >= 2 and bool(np.all(points.max(axis=0) > points.min(axis=0)))
        present.append(found)
    return present


def fill_missing_faces(face_frames: torch.Tensor | None, present: Sequence[bool] | None,
                       policy: str = "nearest") -> torch.Tensor | None:
    """Face crops with the frames that show no face replaced by ``policy``.

    ``nearest``: the crop of the nearest frame with a face (the earlier one
    on a tie). ``blank``: black (-1 in the model's range), the input the
    reference gives its unconditional branch, i.e. "no expression". When no
    frame shows a face, every frame is blank whatever the policy (with a
    warning). None (no face crops at all) stays None, which the conditioning
    reads as blank throughout.
    """
    if policy not in NO_FACE_POLICIES:
        raise InputError("no-face frames", f"'{policy}' is not a known policy", f"one of {', '.join(NO_FACE_POLICIES)}")
    if face_frames is None:
        return None
    if present is None:
        return face_frames
    if len(present) != face_frames.shape[0]:
        raise InputError("face presence", f"has {len(present)} entries for {face_frames.shape[0]} face crops",
                         "one entry per face crop")
    found = [i for i, p in enumerate(present) if p]
    if not found:
        log.warning("face frames: no frame shows a face; the face input is blank (no expression) throughout")
        return torch.zeros_like(face_frames)
    if len(found) == len(present):
        return face_frames
    out = face_frames.clone()
    for i, shown in enumerate(present):
        if not shown:
            out[i] = 0.0 if policy == "blank" else face_frames[min(found, key=lambda j: (abs(j - i), j))]
    return out


# ---------------------------------------------------------------- the image condition
def condition_video(clip_len: int, refert_frames: torch.Tensor | None = None,
                    background: torch.Tensor | None = None, height: int | None = None,
                    width: int | None = None) -> torch.Tensor:
    """The pixel video whose VAE latent follows the reference frame in ``y``, ``[clip_len, H, W, 3]`` in 0..1.

    Animation (``background`` None): ``refert_frames`` then grey; replacement:
    ``refert_frames`` then ``background`` (the clip's, ``[clip_len, H, W, 3]``)
    from there on. The first clip has no ``refert_frames``; ``height`` and
    ``width`` are needed only for its animation video.
    """
    count = 0 if refert_frames is None else int(refert_frames.shape[0])
    if refert_frames is not None:
        _check_image("temporal reference frames", refert_frames)
    if count >= clip_len:
        raise InputError("temporal reference frames", f"are {count} frames for a {clip_len}-frame clip",
                         f"1 or 5 frames, fewer than the clip's {clip_len}")
    if background is not None:
        _check_image("background video", background)
        if background.shape[0] != clip_len:
            raise InputError("background video", f"has {background.shape[0]} frames for a {clip_len}-frame clip",
                             "the clip's frames of the background video")
        rest = background[count:].float()
    else:
        like = refert_frames
        if like is None and (height is None or width is None):
            raise ValueError("the first clip's animation video needs its height and width")
        h, w = (like.shape[1], like.shape[2]) if like is not None else (height, width)
        device = like.device if like is not None else "cpu"
        rest = torch.full((clip_len - count, h, w, 3), GREY, device=device)
    if refert_frames is None:
        return rest
    if tuple(refert_frames.shape[1:3]) != tuple(rest.shape[1:3]):
        raise InputError("temporal reference frames", f"are {refert_frames.shape[2]}x{refert_frames.shape[1]} pixels",
                         f"the clip's size {rest.shape[2]}x{rest.shape[1]}")
    return torch.cat([refert_frames.float().to(rest.device), rest], dim=0)


def condition_mask(clip_len: int, latent_hw: tuple[int, int], refert_count: int = 0,
                   person_mask: torch.Tensor | None = None) -> torch.Tensor:
    """The 4 mask channels of the clip's frames in ``y``, ``[1, 4, latent frames, h, w]`` (float32).

    1 marks what is given: the ``refert_count`` temporal reference frames,
    and in replacement mode (``person_mask`` ``[clip_len, H, W]``, 1 on the
    person) everything but the person, nearest-resized to the latent size.
    """
    h, w = latent_hw
    if person_mask is None:
        pixel = torch.zeros(clip_len, h, w)
    else:
        if person_mask.dim() != 3 or person_mask.shape[0] != clip_len:
            raise InputError("person mask", f"has shape {list(person_mask.shape)}",
                             f"[{clip_len}, height, width], the clip's frames")
        keep = 1.0 - person_mask.float()[:, None]
        pixel = F.interpolate(keep, size=(h, w), mode="nearest")[:, 0].cpu()
    pixel[:refert_count] = 1.0
    pixel = torch.cat([pixel[:1].expand(MASK_CHANNELS, -1, -1), pixel[1:]], dim=0)
    frames = pixel.shape[0] // MASK_CHANNELS
    return pixel.reshape(frames, MASK_CHANNELS, h, w).transpose(0, 1).unsqueeze(0).contiguous()


def clip_y(reference_latent: torch.Tensor, condition_latent: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``y`` ``[1, 20, 1 + T, h, w]``: (ones, reference latent) then (mask, condition latent), on time."""
    if reference_latent.dim() == 4:
        reference_latent = reference_latent.unsqueeze(2)
    if reference_latent.dim() != 5 or reference_latent.shape[:2] != (1, LATENT_CHANNELS) or \
            reference_latent.shape[2] != 1:
        raise InputError("reference latent", f"has shape {list(reference_latent.shape)}",
                         f"the VAE latent of the reference image alone, [1, {LATENT_CHANNELS}, 1, h, w]")
    if condition_latent.dim() != 5 or condition_latent.shape[:2] != (1, LATENT_CHANNELS):
        raise InputError("condition latent", f"has shape {list(condition_latent.shape)}",
                         f"[1, {LATENT_CHANNELS}, frames, h, w]")
    if reference_latent.shape[3:] != condition_latent.shape[3:]:
        raise InputError("reference latent", f"is {reference_latent.shape[4]}x{reference_latent.shape[3]} latent "
                         f"pixels, the clip {condition_latent.shape[4]}x{condition_latent.shape[3]}",
                         "the reference image at the video's size")
    if tuple(mask.shape) != (1, MASK_CHANNELS, *condition_latent.shape[2:]):
        raise ValueError(f"mask {list(mask.shape)} does not match the condition latent {list(condition_latent.shape)}")
    device = condition_latent.device
    ones = torch.ones(1, MASK_CHANNELS, 1, *reference_latent.shape[3:], device=device)
    first = torch.cat([ones, reference_latent.float().to(device)], dim=1)
    rest = torch.cat([mask.float().to(device), condition_latent.float()], dim=1)
    return torch.cat([first, rest], dim=2)


def build_clip_y(encode: Callable[[torch.Tensor], torch.Tensor], reference_latent: torch.Tensor,
                 inputs: AnimateClipInputs, refert_frames: torch.Tensor | None = None) -> torch.Tensor:
    """One clip's ``y``: ``encode`` (IMAGE ``[T, H, W, 3]`` -> model-space latent ``[1, 16, t, h, w]``)
    runs on :func:`condition_video`; ``refert_frames`` are the previous clip's last decoded frames
    (None for the first clip)."""
    expected = inputs.clip.reference
    got = 0 if refert_frames is None else int(refert_frames.shape[0])
    if got != expected:
        raise InputError("temporal reference frames", f"are {got} frames for clip {inputs.clip.index}",
                         f"the previous clip's last {expected} decoded frames" if expected else
                         "none for the first clip")
    if expected and expected not in ANIMATE_REFERT_NUMS:
        raise InputError("temporal reference frames", f"{expected} is not supported",
                         "1 or 5 (the values Wan2.2-Animate was trained with)")
    clip_len = inputs.pose_frames.shape[0]
    height, width = inputs.pose_frames.shape[1:3]
    if height % SPATIAL_STRIDE or width % SPATIAL_STRIDE:
        raise InputError("pose frames", f"are {width}x{height} pixels",
                         f"a size that is a multiple of {SPATIAL_STRIDE} (16 for the DiT's patches)")
    video = condition_video(clip_len, refert_frames, inputs.background, height, width)
    latent = encode(video)
    frames = latent_frames(clip_len)
    if latent.dim() != 5 or latent.shape[2] != frames:
        raise ValueError(f"encode returned {list(latent.shape)} for {clip_len} frames; expected "
                         f"[1, {LATENT_CHANNELS}, {frames}, h, w]")
    mask = condition_mask(clip_len, (height // SPATIAL_STRIDE, width // SPATIAL_STRIDE), got, inputs.person_mask)
    return clip_y(reference_latent, latent, mask)


def drop_reference_frame(latent: torch.Tensor) -> torch.Tensor:
    """The clip's own latent frames (``[B, C, F, h, w]`` -> ``F - 1`` frames): the first is the reference image."""
    return latent[:, :, 1:]
