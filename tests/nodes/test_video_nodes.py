"""Color Match: the node returns the core's corrected frames and its per-window report."""
import pytest
import torch

from poseanimate.errors import InputError
from poseanimate.nodes.video_nodes import PoseAnimateColorMatch
from poseanimate.video.drift import correct_video_drift


def test_color_match_equals_the_core_and_reports_each_window():
    g = torch.Generator().manual_seed(0)
    reference = torch.rand(1, 32, 48, 3, generator=g)
    frames = (reference.expand(25, -1, -1, -1) * 0.8 + 0.15).clamp(0, 1)  # a colour cast
    images, report = PoseAnimateColorMatch().match(frames, reference, 1.0, 4, 2)
    expected = correct_video_drift(frames, reference, 1.0, 4, 2)
    assert torch.equal(images, expected.frames)
    assert len(report.splitlines()) == len(expected.windows) > 1 and "dE" in report
    assert (images - reference).abs().mean() < (frames - reference).abs().mean()


def test_color_match_refuses_a_cut_video():
    with pytest.raises(InputError):
        PoseAnimateColorMatch().match(torch.rand(10, 16, 16, 3), torch.rand(1, 16, 16, 3), 0.5, 4, 2)


def test_color_match_over_animate_clips_uses_the_clip_spans():
    from poseanimate.methods.wan_animate.plan import plan_clips
    from poseanimate.video.drift import correct_drift
    g = torch.Generator().manual_seed(1)
    reference = torch.rand(1, 16, 16, 3, generator=g)
    frames = (reference.expand(12, -1, -1, -1) * 0.7 + 0.2).clamp(0, 1)
    images, report = PoseAnimateColorMatch().match(frames, reference, 1.0, 4, 2, "animate_clips", 5, "1")
    plan = plan_clips(12, 5, 1)
    spans = [(c.start, min(c.end, 12)) for c in plan if c.start < 12]
    assert torch.equal(images, correct_drift(frames, spans, reference, 1.0).frames)
    assert len(report.splitlines()) == len(spans) == 3
