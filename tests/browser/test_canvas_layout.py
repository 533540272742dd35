"""Every shipped canvas workflow is readable where it opens: in the real front end, at 1920x1080, the zoom that
fits the whole graph clear of the side and tab bars is at or above the front end's low-detail threshold (below
it the front end draws no text at all), the workflow opens at that view, every node's title fits its width,
and no two nodes overlap (title bars included), neither as loaded nor after a run, when the pose players, the
saved video and the sampler's latent preview have grown their nodes. The run's outputs are handed to the front
end the way the server's messages do (``executed``, ``b_preview_with_metadata``), with the largest previews the
shipped nodes send.
"""
from __future__ import annotations

import base64
import importlib
import inspect
import json
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
UI_WORKFLOWS = sorted(p for p in (REPO_ROOT / "workflows").glob("*.json") if not p.name.endswith(".api.json"))
VIEW_INSETS = (64, 96, 24, 24)          # left, top, right, bottom: the side bar, tab bar and run toolbar
PORTRAIT = (576, 1024)                  # the tallest shipped video size's aspect (9:16): the tallest pose player

LOAD = """async ([graph, name]) => {
  await app.loadGraphData(graph, true, true, name, {showMissingNodesDialog: false, showMissingModelsDialog: false});
  return {scale: app.canvas.ds.scale, nodes: app.graph.nodes.length};
}"""

# The whole graph (nodes with their title bars, groups) in the window less the insets, at most 100 %.
FIT = """([left, top, right, bottom]) => {
  const boxes = app.graph.nodes.map(n => n.boundingRect)
    .concat((app.graph.groups ?? []).map(g => g._bounding ?? g.bounding));
  const x0 = Math.min(...boxes.map(b => b[0])), y0 = Math.min(...boxes.map(b => b[1]));
  const x1 = Math.max(...boxes.map(b => b[0] + b[2])), y1 = Math.max(...boxes.map(b => b[1] + b[3]));
  const el = app.canvas.canvas, w = el.clientWidth - left - right, h = el.clientHeight - top - bottom;
  const scale = Math.min(1, w / (x1 - x0), h / (y1 - y0));
  app.canvas.ds.scale = scale;
  app.canvas.ds.offset = [(left + (w - (x1 - x0) * scale) / 2) / scale - x0,
                          (top + (h - (y1 - y0) * scale) / 2) / scale - y0];
  app.canvas.setDirty(true, true);
  app.canvas.draw(true, true);
  // the front end's own figure (0.33: min_font_size_for_lod / NODE_TEXT_SIZE / sqrt(devicePixelRatio) = 8 / 14;
  // front ends before 1.26: low_quality_zoom_threshold, 0.6)
  const threshold = app.canvas._lowQualityZoomThreshold ?? app.canvas.low_quality_zoom_threshold ?? 0.6;
  return {scale, threshold, lowQuality: app.canvas.low_quality};
}"""

# Pairs of nodes whose rectangles (title bar included) overlap by more than a pixel each way.
OVERLAPS = """() => {
  const nodes = app.graph.nodes.map(n => ({id: n.id, title: n.title, r: n.boundingRect.slice()}));
  const hits = [];
  for (let i = 0; i < nodes.length; i++) for (let j = i + 1; j < nodes.length; j++) {
    const a = nodes[i].r, b = nodes[j].r;
    const w = Math.min(a[0] + a[2], b[0] + b[2]) - Math.max(a[0], b[0]);
    const h = Math.min(a[1] + a[3], b[1] + b[3]) - Math.max(a[1], b[1]);
    const name = (n) => `${n.id} '${n.title}'`;
    if (w > 1 && h > 1) hits.push(`${name(nodes[i])} and ${name(nodes[j])} (${Math.round(w)}x${Math.round(h)})`);
  }
  return hits;
}"""

# Nodes whose title does not fit their width (the front end cuts it off with an ellipsis).
CUT_TITLES = """() => {
  const ctx = app.canvas.ctx, cut = [];
  for (const n of app.graph.nodes) {
    ctx.font = n.titleFontStyle ?? `${LiteGraph.NODE_TEXT_SIZE}px Arial`;
    const needed = ctx.measureText(n.getTitle()).width + LiteGraph.NODE_TITLE_HEIGHT;
    if (!n.collapsed && needed > n.size[0]) cut.push(`${n.id} '${n.getTitle()}' (${Math.round(needed)} px)`);
  }
  return cut;
}"""

# A run's outputs as the server sends them: pose players, saved videos/images, latent previews.
RUN = """async ([players, videoNodes, imageNodes, latentNodes, payload, pngB64, fileName]) => {
  const {api} = await import("/scripts/api.js");
  const done = (node, output) => api.dispatchCustomEvent("executed",
      {node: String(node.id), display_node: String(node.id), output, prompt_id: "layout-test"});
  const file = {filename: fileName, subfolder: "", type: "input"};
  const grown = [];
  for (const node of app.graph.nodes) {
    const before = node.size[1];
    if (players.includes(node.type)) done(node, {poseanimate_pose_preview: [payload]});
    if (videoNodes.includes(node.type)) done(node, {images: [file], animated: [true]});
    if (imageNodes.includes(node.type)) done(node, {images: [{...file, filename: "layout_test.png"}]});
    if (latentNodes.includes(node.type)) {
      const bytes = Uint8Array.from(atob(pngB64), c => c.charCodeAt(0));
      api.dispatchCustomEvent("b_preview_with_metadata", {blob: new Blob([bytes], {type: "image/png"}),
          nodeId: String(node.id), displayNodeId: String(node.id), jobId: "layout-test"});
    }
    grown.push([node.id, node.type, before]);
  }
  await new Promise(r => setTimeout(r, 1500));
  app.canvas.draw(true, true);
  return grown.filter(([id, , before]) => app.graph.getNodeById(id).size[1] > before + 1).map(([id, type]) => type);
}"""


def _pack_nodes():
    from poseanimate.nodes import NODE_CLASS_MAPPINGS
    return NODE_CLASS_MAPPINGS


def _pose_players() -> list[str]:
    """The pack's nodes that play poses inside the node after a run (their entry adds the canvas preview)."""
    return sorted(k for k, cls in _pack_nodes().items() if cls.FUNCTION.endswith("_with_canvas_preview"))


def _latent_previewers() -> list[str]:
    """The pack's nodes that send latent previews while they run (a host.Progress with a latent format)."""
    names = []
    for name, cls in _pack_nodes().items():
        if "latent_format=" in inspect.getsource(importlib.import_module(cls.__module__)):
            names.append(name)
    return sorted(names)


def _output_nodes(info: dict, socket: str) -> list[str]:
    """Output nodes (the host's Save/Preview nodes) that take ``socket`` and show what they saved."""
    return sorted(k for k, v in info.items() if v.get("output_node") and any(
        spec[0] == socket for group in v.get("input", {}).values() for spec in (group or {}).values()))


@pytest.fixture(scope="module")
def run_outputs(frontend_server):
    """What a run shows: a 9:16 pose player of three frames, the driving video as the saved video, a small
    image as the saved image and as the latent preview."""
    import cv2
    from poseanimate.nodes.pose_preview import PREVIEW_KEY, preview_ui
    from poseanimate.pose import keypoints as kp
    width, height = PORTRAIT
    frames = [kp.PoseFrame(np.zeros((1, 136, 3), np.float32), width, height)] * 3
    payload = preview_ui("render", frames, fps=16.0)[PREVIEW_KEY][0]
    png = cv2.imencode(".png", np.full((height // 8, width // 8, 3), 160, np.uint8))[1].tobytes()
    (frontend_server.input_dir / "layout_test.png").write_bytes(png)
    info = frontend_server.object_info()
    return [_pose_players(), _output_nodes(info, "VIDEO"), _output_nodes(info, "IMAGE"), _latent_previewers(),
            payload, base64.b64encode(png).decode(), "driving_video.mp4"]


def test_the_run_outputs_cover_the_growing_nodes(run_outputs):
    players, videos, images, latents = run_outputs[:4]
    assert {"PoseAnimateExtractPoses", "PoseAnimateRenderPoses", "PoseAnimateRetargetPoses"} <= set(players)
    assert "SaveVideo" in videos and "PreviewImage" in images and latents == ["PoseAnimateSampler"]


@pytest.mark.parametrize("path", UI_WORKFLOWS, ids=lambda p: p.stem)
def test_workflow_is_readable_and_nothing_overlaps_before_or_after_a_run(frontend, run_outputs, path):
    shipped = json.loads(path.read_text())
    opened = frontend.js(LOAD, [shipped, path.stem])
    assert opened["nodes"] == len(shipped["nodes"])
    frontend.page.wait_for_timeout(800)                     # DOM widgets (video player, prompts) settle

    fit = frontend.js(FIT, list(VIEW_INSETS))
    assert fit["scale"] >= fit["threshold"], (
        f"{path.name}: fits 1920x1080 at {fit['scale']:.3f}, below the front end's text threshold "
        f"{fit['threshold']:.3f}: lay it out more compactly (workflows/build_workflows.py Layout)")
    assert fit["lowQuality"] is False
    saved = shipped["extra"]["ds"]["scale"]
    assert saved == pytest.approx(fit["scale"], abs=0.02), "the workflow does not open at its fitted view"
    assert opened["scale"] == pytest.approx(saved, abs=1e-3), "the front end did not restore the saved view"

    assert frontend.js(OVERLAPS) == [], f"{path.name}: nodes overlap as loaded"
    assert frontend.js(CUT_TITLES) == [], f"{path.name}: titles cut off"
    grown = frontend.js(RUN, run_outputs)
    frontend.page.wait_for_timeout(300)
    assert frontend.js(OVERLAPS) == [], f"{path.name}: nodes overlap after a run (grown: {grown})"
    players = [t for t in grown if t in run_outputs[0]]
    assert players or not any(n["type"] in run_outputs[0] for n in shipped["nodes"]), "no pose player showed"
