"""Wan2.2-Animate's long videos: whole clips sampled one after another.

Each clip is a whole sampling run of ``clip_len`` pixel frames, guided by the
last decoded frames of the previous one (Wan2.2-Animate's ``generate``):
:func:`plan_clips` pads the input by ping-pong to whole clips
(:func:`padded_length`, :func:`pingpong_indices`), :func:`assemble_clips`
joins the clips' outputs. The method's own plan, so it lives with the method
(it was in ``sampling/windows.py``, which keeps only the generic windows).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import torch

from ...errors import InputError
from ...models.wan.latent_space import is_frame_count

ANIMATE_CLIP_LEN = 77  # pixel frames per Wan2.2-Animate clip
ANIMATE_REFERT_NUMS: tuple[int, ...] = (1, 5)  # temporal-reference frame counts it was trained with


@dataclass(frozen=True)
class Clip:
    """Frames ``[start, end)`` of the padded input, sampled as one run.

    Its first ``reference`` frames repeat the previous clip's last output
    frames, which guide it (0 for the first clip); its output keeps frames
    ``[start + reference, end)``.
    """

    index: int
    start: int
    end: int
    reference: int


@dataclass(frozen=True)
class ClipPlan:
    """Clips over ``padded`` input frames, the video's ``total`` frames padded by ping-pong."""

    clips: tuple[Clip, ...]
    total: int
    padded: int
    clip_len: int
    refert_num: int
    notice: str | None = None

    def __len__(self) -> int:
        return len(self.clips)

    def __iter__(self) -> Iterator[Clip]:
        return iter(self.clips)

    def __getitem__(self, index: int) -> Clip:
        return self.clips[index]


def _check_clip_args(clip_len: int, refert_num: int) -> None:
    _check_count("clip length (frames)", clip_len, 2)
    if not is_frame_count(clip_len):
        raise InputError("clip length (frames)", f"{clip_len} is not of the form 4k+1",
                         f"4k+1 frames such as {ANIMATE_CLIP_LEN} or 81")
    if refert_num not in ANIMATE_REFERT_NUMS:
        raise InputError("temporal reference frames", f"{refert_num!r} is not supported",
                         "1 or 5 (the values Wan2.2-Animate was trained with)")
    if refert_num >= clip_len:
        raise InputError("clip length (frames)", f"{clip_len} is not longer than the {refert_num} "
                         "temporal reference frames", f"more than {refert_num} frames")


def padded_length(total: int, clip_len: int = ANIMATE_CLIP_LEN, refert_num: int = 1) -> int:
    """Frames the input is padded to so that whole clips cover it (Wan2.2-Animate's ``get_valid_len``).

    Clips advance by ``clip_len - refert_num``; a video of at most
    ``refert_num`` frames (which the reference cannot run) fills one clip.
    """
    _check_count("video length (frames)", total, 1)
    _check_clip_args(clip_len, refert_num)
    if total <= refert_num:
        return clip_len
    advance = clip_len - refert_num
    rest = (total - refert_num) % advance
    return total if rest == 0 else total + advance - rest


def plan_clips(total: int, clip_len: int = ANIMATE_CLIP_LEN, refert_num: int = 1) -> ClipPlan:
    """Wan2.2-Animate's clips over ``total`` pixel frames.

    Clip ``i`` covers padded frames ``[i * (clip_len - refert_num), ... + clip_len)``;
    each clip after the first starts on the previous clip's last ``refert_num``
    frames, takes those decoded frames as its temporal reference and drops them
    from its output. The joined output is cut back to ``total`` frames.
    """
    padded = padded_length(total, clip_len, refert_num)
    advance = clip_len - refert_num
    count = (padded - refert_num) // advance
    clips = tuple(Clip(i, i * advance, i * advance + clip_len, refert_num if i > 0 else 0) for i in range(count))
    notice = None
    if padded != total:
        notice = (f"{total} frames padded to {padded} by playing the input back and forth, to fill "
                  f"{count} clip(s) of {clip_len}; the result is cut back to {total} frames")
    return ClipPlan(clips, total, padded, clip_len, refert_num, notice)


def pingpong_indices(length: int, target: int) -> list[int]:
    """Source frame for each of ``target`` frames: ``0, 1, ..., n-1, n-2, ..., 1, 0, 1, ...``.

    Wan2.2-Animate's ``inputs_padding`` order (a one-frame input repeats, where
    the reference fails).
    """
    _check_count("input frames", length, 1)
    if length == 1:
        return [0] * target
    period = 2 * (length - 1)
    return [k % period if k % period < length else period - k % period for k in range(target)]


def assemble_clips(outputs: Sequence[torch.Tensor], plan: ClipPlan, dim: int = 0) -> torch.Tensor:
    """The video from each clip's decoded output: reference frames dropped, cut to ``plan.total``."""
    if len(outputs) != len(plan):
        raise ValueError(f"{len(outputs)} clip outputs for {len(plan)} clips")
    parts = []
    for output, clip in zip(outputs, plan):
        if output.shape[dim] != clip.end - clip.start:
            raise ValueError(f"clip {clip.index} output has {output.shape[dim]} frames along dim {dim}, "
                             f"expected {clip.end - clip.start}")
        parts.append(output.narrow(dim, clip.reference, output.shape[dim] - clip.reference))
    return torch.cat(parts, dim=dim).narrow(dim, 0, plan.total)


def _check_count(name: str, value: int, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InputError(name, f"{value!r} is not a whole number of {minimum} or more",
                         f"an integer of {minimum} or more")
