"""workflows/build_workflows.py's canvas layout: stages stacked into columns and bands, groups round them, the
saved view, and the rules that keep a canvas readable (every node placed once; nodes that grow after a run last
in their column of the last band)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BUILDER = Path(__file__).resolve().parents[2] / "workflows" / "build_workflows.py"


@pytest.fixture(scope="module")
def bw():
    spec = importlib.util.spec_from_file_location("build_workflows_under_test", BUILDER)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


# A fake /object_info: a source with two widgets, a sink with one socket, and a node that grows after a run.
INFO = {
    "Source": {"input": {"required": {"a": ["INT", {"default": 1}], "b": [["x", "y"], {}]}},
               "input_order": {"required": ["a", "b"]}, "output": ["IMAGE"], "output_name": ["IMAGE"]},
    "Sink": {"input": {"required": {"images": ["IMAGE", {}]}}, "input_order": {"required": ["images"]},
             "output": [], "output_name": []},
    "PoseAnimateRenderPoses": {"input": {"required": {"images": ["IMAGE", {}]}},
                               "input_order": {"required": ["images"]}, "output": ["IMAGE"],
                               "output_name": ["IMAGE"]},
}


def _workflow(bw, bands):
    nodes = [bw.Node(1, "Source"), bw.Node(2, "PoseAnimateRenderPoses", links={"images": (1, 0)}),
             bw.Node(3, "Sink", links={"images": (2, 0)}), bw.Note(4, None, "read me", size=(200.0, 100.0))]
    return bw.Workflow("t", nodes, bw.Layout(bands))


def test_sizes_follow_sockets_and_widgets(bw):
    assert bw.estimate_size(bw.Node(1, "Source"), INFO["Source"]) == (320.0, 6 + 20 + 2 * 24 + 8)
    assert bw.estimate_size(bw.Node(3, "Sink"), INFO["Sink"]) == (320.0, 6 + 20)
    assert bw.estimate_size(bw.Node(2, "PoseAnimateRenderPoses"), INFO["PoseAnimateRenderPoses"])[0] == 340.0


def test_stages_stack_columns_into_bands_with_groups_round_them(bw):
    wf = _workflow(bw, [[bw.Stage(None, [[4]]), bw.Stage("In", [[1]])],
                        [bw.Stage("Poses", [[2]]), bw.Stage("Out", [[3]])]])
    placed = bw.place(wf, INFO)
    assert placed.pos[4] == (0.0, bw.NODE_TITLE)                       # the note: top left, no group
    titles = [g["title"] for g in placed.groups]
    assert titles == ["In", "Poses", "Out"]
    boxes = {i: (x, y - bw.NODE_TITLE, x + placed.size[i][0], y + placed.size[i][1])
             for i, (x, y) in placed.pos.items()}
    for group, members in zip(placed.groups, ([1], [2], [3])):
        gx, gy, gw, gh = group["bounding"]
        for i in members:                                  # a stage's nodes inside its group, below its title
            x0, y0, x1, y1 = boxes[i]
            assert gx < x0 and gy + bw.GROUP_TITLE <= y0 and x1 < gx + gw and y1 < gy + gh
    ids = sorted(boxes)
    for a in ids:                                                      # nothing overlaps
        for b in ids:
            if a < b:
                A, B = boxes[a], boxes[b]
                assert min(A[2], B[2]) <= max(A[0], B[0]) or min(A[3], B[3]) <= max(A[1], B[1]), (a, b)
    assert boxes[2][1] > max(boxes[1][3], boxes[4][3])                 # the second band below the first
    view = bw.fit_view(placed)
    assert 0 < view["scale"] <= 1.0


def test_a_growing_node_must_end_a_column_of_the_last_band(bw):
    not_last = _workflow(bw, [[bw.Stage(None, [[4]]), bw.Stage("All", [[1, 2, 3]])]])
    with pytest.raises(ValueError, match="node 2 .* grows after a run"):
        bw.place(not_last, INFO)
    top_band = _workflow(bw, [[bw.Stage(None, [[4]]), bw.Stage("Poses", [[1, 2]])], [bw.Stage("Out", [[3]])]])
    with pytest.raises(ValueError, match="node 2 .* grows after a run"):
        bw.place(top_band, INFO)


def test_every_node_is_placed_exactly_once(bw):
    with pytest.raises(ValueError, match=r"repeated \[1\].*not placed \[3\]"):
        bw.place(_workflow(bw, [[bw.Stage(None, [[4, 1]]), bw.Stage("x", [[1, 2]])]]), INFO)


def test_every_shipped_workflow_has_a_layout(bw):
    assert all(w.layout is not None for w in bw.WORKFLOWS)
