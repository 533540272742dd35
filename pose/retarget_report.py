"""How far a retargeted video is from the reference body, and which frames miss joints.

Measured after retargeting (any mode), so a user sees a result that will look wrong before sampling:
Retarget Poses logs :meth:`RetargetReport.line` and returns it as its ``report`` output.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .keypoints import BODY, VISIBLE, PoseFrame
from .people import select_people
from .retarget import BONES, bone_name, measure_bone
from .retarget_geometry import reference_person, with_neck

# ---------------------------------------------------------------- the report
@dataclass
class RetargetReport:
    """How far the retargeted bones are from the reference's, per video.

    ``worst_error`` is the largest ``|bone / reference bone - 1|`` over the
    bones of :data:`BONES` and the frames where both ends of the bone were
    seen in the driving video (confidence >= threshold), after dividing each
    frame by its median bone ratio (a driver walking toward the camera makes
    the whole figure grow, which is not an error). ``missing_frames`` are the
    frames with a person where a body joint that the reference has was not
    seen; ``empty_frames`` have no person at all."""
    worst_error: float = 0.0
    worst_bone: str = ""
    worst_frame: int = -1
    missing_frames: list[int] = field(default_factory=list)
    empty_frames: list[int] = field(default_factory=list)

    def line(self) -> str:
        def frames(idx: list[int]) -> str:
            return ", ".join(map(str, idx[:12])) + (f" (+{len(idx) - 12} more)" if len(idx) > 12 else "")
        text = (f"retarget: worst bone error {self.worst_error * 100:.1f}%"
                + (f" ({self.worst_bone}, frame {self.worst_frame})" if self.worst_frame >= 0 else ""))
        text += f"; frames with missing joints: {frames(self.missing_frames) if self.missing_frames else 'none'}"
        if self.empty_frames:
            text += f"; frames without a person: {frames(self.empty_frames)}"
        return text


def retarget_report(driving: Sequence[PoseFrame], retargeted: Sequence[PoseFrame], reference: PoseFrame,
                    threshold: float = VISIBLE) -> RetargetReport:
    """The :class:`RetargetReport` of ``retargeted`` (the output of a retargeting of ``driving``)."""
    ref = with_neck(reference_person(reference))
    ref_len = np.array([np.linalg.norm(measure_bone(ref, b)[0]) if measure_bone(ref, b)[1] >= threshold else np.nan
                        for b in BONES])
    report = RetargetReport()
    tracked = select_people(driving, "index", 0)
    needed = ref[BODY, 2] >= threshold
    for i, (src, out) in enumerate(zip(tracked, retargeted)):
        if not src.count or not out.count:
            report.empty_frames.append(i)
            continue
        person = with_neck(src.people[0])
        if ((person[BODY, 2] < threshold) & needed).any():
            report.missing_frames.append(i)
        ratios = np.full(len(BONES), np.nan)
        for b, bone in enumerate(BONES):
            if measure_bone(person, bone)[1] >= threshold and np.isfinite(ref_len[b]) and ref_len[b] > 1e-9:
                ratios[b] = np.linalg.norm(measure_bone(with_neck(out.people[0]), bone)[0]) / ref_len[b]
        if np.isfinite(ratios).any():
            errors = np.abs(ratios / np.nanmedian(ratios) - 1)
            b = int(np.nanargmax(errors))
            if errors[b] > report.worst_error or report.worst_frame < 0:
                report.worst_error, report.worst_bone, report.worst_frame = float(errors[b]), bone_name(BONES[b]), i
    return report
