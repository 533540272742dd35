"""Every shipped canvas workflow in the real ComfyUI front end: it loads with no missing node type, the prompt
the front end makes from it (graphToPrompt) is the shipped API file, and re-saving it gives back the shipped
widget values and links. Screenshots go to docs/workflows/<name>.png. Then the pose workflow runs from the
front end with the tiny pose models, and Extract Poses plays its skeletons inside the node (docs/pose_preview.png;
docs/pose_preview_skeleton.png: the drawing of a whole-body skeleton). POSEANIMATE_SCREENSHOT_DIR sends the
screenshots elsewhere than docs/.
"""
from __future__ import annotations

import importlib.util
import json
import os
import sys
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO_ROOT / "workflows"
DOCS = Path(os.environ.get("POSEANIMATE_SCREENSHOT_DIR", REPO_ROOT / "docs"))   # where the screenshots go
UI_WORKFLOWS = sorted(p for p in WORKFLOWS.glob("*.json") if not p.name.endswith(".api.json"))


def _load_helper(name: str, path: Path):
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


pose_inputs = _load_helper("pose_inputs", REPO_ROOT / "tests" / "integration" / "pose_inputs.py")

LOAD = """async ([graph, name]) => {
  const missing = graph.nodes.map(n => n.type).filter(t => !(t in LiteGraph.registered_node_types));
  await app.loadGraphData(graph, true, true, name, {showMissingNodesDialog: false, showMissingModelsDialog: false});
  const prompt = await app.graphToPrompt();
  const saved = app.graph.serialize();
  return {missing, output: prompt.output, nodes: saved.nodes.map(n => ({id: n.id, type: n.type,
          widgets_values: n.widgets_values ?? []})), links: saved.links, count: app.graph.nodes.length};
}"""

# Fit the whole graph into the window (never above 100 %), as "fit view" does, and redraw.
FIT = """(margin) => {
  const nodes = app.graph.nodes, title = LiteGraph.NODE_TITLE_HEIGHT;
  const x0 = Math.min(...nodes.map(n => n.pos[0])), y0 = Math.min(...nodes.map(n => n.pos[1] - title));
  const x1 = Math.max(...nodes.map(n => n.pos[0] + n.size[0])), y1 = Math.max(...nodes.map(n => n.pos[1] + n.size[1]));
  const el = app.canvas.canvas, w = el.clientWidth, h = el.clientHeight;
  const scale = Math.min(1, (w - 2 * margin) / (x1 - x0), (h - 2 * margin) / (y1 - y0));
  app.canvas.ds.scale = scale;
  app.canvas.ds.offset = [(w / scale - (x1 - x0)) / 2 - x0, (h / scale - (y1 - y0)) / 2 - y0];
  app.canvas.setDirty(true, true);
  return scale;
}"""

# A node's rectangle on the page (title bar included), for clipped screenshots.
NODE_RECT = """(ids) => {
  const box = app.canvas.canvas.getBoundingClientRect(), ds = app.canvas.ds, title = LiteGraph.NODE_TITLE_HEIGHT;
  const rects = ids.map(id => app.graph.getNodeById(id)).map(n => [
    box.left + (n.pos[0] + ds.offset[0]) * ds.scale, box.top + (n.pos[1] - title + ds.offset[1]) * ds.scale,
    box.left + (n.pos[0] + n.size[0] + ds.offset[0]) * ds.scale,
    box.top + (n.pos[1] + n.size[1] + ds.offset[1]) * ds.scale]);
  const x = Math.min(...rects.map(r => r[0])), y = Math.min(...rects.map(r => r[1]));
  return {x, y, width: Math.max(...rects.map(r => r[2])) - x, height: Math.max(...rects.map(r => r[3])) - y};
}"""

# What the preview canvas shows: mean brightness, and how many pixels are strongly coloured (skeleton strokes:
# the test video itself is grey).
CANVAS_STATS = """(nodeId) => {
  const root = document.querySelector(`.poseanimate-pose-preview[data-node-id="${nodeId}"]`);
  const c = root.querySelector("canvas"), d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
  let sum = 0, coloured = 0;
  for (let i = 0; i < d.length; i += 4) {
    sum += d[i] + d[i + 1] + d[i + 2];
    if (Math.max(d[i], d[i + 1], d[i + 2]) - Math.min(d[i], d[i + 1], d[i + 2]) > 120) coloured++;
  }
  return {mean: sum / (d.length / 4) / 3, coloured, frame: root.dataset.frame, frames: root.dataset.frames,
          playing: root.dataset.playing, counter: root.querySelector(".poseanimate-counter").textContent,
          width: c.width, height: c.height};
}"""


# The notice the front end floats over the canvas when model files are missing (the suite's server has no DiT
# files): hidden for the screenshots, which show the canvas a user with the files sees.
HIDE_MISSING_MODEL_NOTICE = """() => {
  const hidden = [];
  for (const el of document.querySelectorAll("body *")) {
    if (el.children.length || !/\\d+ errors? found/i.test(el.textContent)) continue;
    let card = el;                                       // the notice's card: the text up to its button
    while (card.parentElement && !/view details/i.test(card.textContent)) card = card.parentElement;
    if (card.getBoundingClientRect().width < 800) { card.style.visibility = "hidden"; hidden.push(card.tagName); }
  }
  return hidden;
}"""


def _load_workflow(frontend, path: Path) -> dict:
    return frontend.js(LOAD, [json.loads(path.read_text()), path.stem])


def test_the_pack_extension_loads_in_the_frontend(frontend):
    names = frontend.js("app.extensions.map(e => e.name)")
    assert "PoseAnimate.core" in names
    assert not [m for m in frontend.errors() if "PoseAnimate" in m or "extension" in m.lower()], frontend.errors()


FRONTEND_CONTRACT = """async ([exports, calls, members]) => {
  const missing = [];
  const modules = {};
  for (const [path, names] of Object.entries(exports)) {
    try { modules[path] = await import(path); } catch (e) { missing.push(`${path}: ${e}`); continue; }
    for (const name of names) if (!(name in modules[path])) missing.push(`${path} exports no '${name}'`);
  }
  const scope = {app: modules["/scripts/app.js"]?.app, api: modules["/scripts/api.js"]?.api};
  for (const call of calls) {
    const [obj, fn] = call.split(".");
    if (typeof scope[obj]?.[fn] !== "function") missing.push(`${call} is not a function`);
  }
  const node = LiteGraph.createNode("PoseAnimateRenderPoses");
  if (!node) missing.push("LiteGraph.createNode('PoseAnimateRenderPoses') made no node");
  else for (const m of members) if (!(m in node)) missing.push(`a canvas node has no '${m}'`);
  return {missing, version: window.__COMFYUI_FRONTEND_VERSION__ ?? null};
}"""


def test_the_front_end_offers_what_web_calls(frontend):
    """The front-end half of the host contract (host_contract.FRONTEND_*): every module export, call and
    node member the pack's web/ extension uses exists, and the front end is at least the oldest supported."""
    from poseanimate import host_contract as hc
    got = frontend.js(FRONTEND_CONTRACT, [hc.FRONTEND_MODULE_EXPORTS, list(hc.FRONTEND_CALLS),
                                          list(hc.FRONTEND_NODE_MEMBERS)])
    assert got["missing"] == [], "\n".join(got["missing"])
    assert got["version"] is not None, "the front end does not say its version (__COMFYUI_FRONTEND_VERSION__)"
    assert hc.version_tuple(got["version"]) >= hc.version_tuple(hc.MIN_FRONTEND), got["version"]


def test_there_are_workflows_to_check():
    assert UI_WORKFLOWS, "no canvas workflows in workflows/"
    for path in UI_WORKFLOWS:
        assert path.with_name(path.stem + ".api.json").is_file(), f"{path.name} ships without its API format"


def _declared(inputs: dict, info: dict) -> dict:
    """The inputs a node declares (``parent.child`` for a dynamic combo's sub-inputs). Some front ends also
    send their own widgets (1.49's video preview as ``video-preview``); the server ignores those."""
    names = {n for group in info.get("input", {}).values() for n in (group or {})}
    return {k: v for k, v in inputs.items() if k.split(".")[0] in names}


@pytest.mark.parametrize("path", UI_WORKFLOWS, ids=lambda p: p.stem)
def test_workflow_loads_and_makes_the_shipped_prompt(frontend, frontend_server, path):
    shipped_ui = json.loads(path.read_text())
    shipped_api = json.loads(path.with_name(path.stem + ".api.json").read_text())
    got = _load_workflow(frontend, path)
    assert got["missing"] == [], f"node types the front end does not know: {got['missing']}"
    assert got["count"] == len(shipped_ui["nodes"])

    prompt = got["output"]
    assert sorted(prompt, key=int) == sorted(shipped_api, key=int)
    info = frontend_server.object_info()
    for node_id, node in shipped_api.items():
        ours = prompt[node_id]
        assert ours["class_type"] == node["class_type"], node_id
        assert _declared(ours["inputs"], info[node["class_type"]]) == node["inputs"], \
            f"node {node_id} ({node['class_type']})"
        assert ours["_meta"]["title"] == node["_meta"]["title"], node_id

    # Saving it again gives the shipped widget values (upload buttons, seed controls in their places) and links.
    resaved = {n["id"]: n for n in got["nodes"]}
    for node in shipped_ui["nodes"]:
        assert resaved[node["id"]]["type"] == node["type"]
        assert resaved[node["id"]]["widgets_values"] == node.get("widgets_values", []), f"node {node['id']}"
    assert sorted(map(tuple, got["links"])) == sorted(map(tuple, shipped_ui["links"]))
    assert not [m for m in frontend.errors() if "PoseAnimate" in m], frontend.errors()

    # The screenshot shows the view the workflow opens at (its saved fit, test_canvas_layout.py), where the
    # front end draws text; the toast about the suite's missing model files is left out of the picture.
    hidden = frontend.js(HIDE_MISSING_MODEL_NOTICE)
    assert len(hidden) <= 2, hidden                                   # the notice only, never the page
    frontend.page.wait_for_timeout(300)
    assert frontend.js("app.canvas.draw(true, true), app.canvas.low_quality") is False, \
        f"{path.name} opens at a zoom where the front end draws no text"
    (DOCS / "workflows").mkdir(parents=True, exist_ok=True)
    frontend.page.screenshot(path=str(DOCS / "workflows" / f"{path.stem}.png"))


def _wait(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def test_pose_preview_plays_after_the_pose_workflow_runs(frontend, frontend_server):
    got = _load_workflow(frontend, WORKFLOWS / "pose_extraction.json")
    assert got["missing"] == []
    frontend.js(FIT, 40)
    frontend.js("app.queuePrompt(0, 1)")
    preview = frontend.page.locator('.poseanimate-pose-preview[data-node-id="4"]')
    preview.wait_for(state="visible", timeout=240_000)
    _wait(lambda: frontend_server.queue_state() == {"queue_running": [], "queue_pending": []}, 240, "the run")
    frames = str(pose_inputs.VIDEO_FRAMES)
    _wait(lambda: preview.get_attribute("data-frames") == frames, 30, "the preview's frames")
    assert frontend.page.locator('.poseanimate-pose-preview[data-node-id="5"]').is_visible()   # Render Poses too
    frontend.js(FIT, 40)                                             # the players grew the nodes: all in view
    frontend.page.wait_for_timeout(300)

    # It plays on its own ...
    first = preview.get_attribute("data-frame")
    _wait(lambda: preview.get_attribute("data-frame") != first, 10, "the preview to play")
    assert preview.get_attribute("data-playing") == "true"
    # ... pauses on the button, and the slider picks frames.
    preview.locator(".poseanimate-play").click()
    assert preview.get_attribute("data-playing") == "false"
    slider = preview.locator("input.poseanimate-slider")
    stats = {}
    for index in (0, int(frames) - 1):
        slider.fill(str(index))
        _wait(lambda: preview.get_attribute("data-frame") == str(index), 5, f"frame {index}")
        frontend.page.wait_for_timeout(300)                          # the frame's JPEG, fetched from /view
        stats[index] = frontend.js(CANVAS_STATS, 4)
    first, last = stats[0], stats[int(frames) - 1]
    assert first["counter"] == f"frame 1 / {frames} · 1 person"
    assert last["counter"] == f"frame {frames} / {frames} · 1 person"
    assert first["width"] > 100 and first["height"] > 80
    assert first["mean"] > 20 and last["mean"] > 20                  # the video frames are drawn (not black) ...
    assert first["coloured"] > 10 and last["coloured"] > 10           # ... with the skeleton over them
    assert first["mean"] != last["mean"]                              # and the frames differ
    assert last["playing"] == "false"

    slider.fill("5")                                                  # mid-walk, for the picture
    frontend.page.wait_for_timeout(300)
    rect = frontend.js(NODE_RECT, [4, 5])
    DOCS.mkdir(parents=True, exist_ok=True)
    frontend.page.screenshot(path=str(DOCS / "pose_preview.png"),
                             clip={"x": max(0, rect["x"] - 12), "y": max(0, rect["y"] - 28),
                                   "width": rect["width"] + 24, "height": rect["height"] + 40})
    assert not [m for m in frontend.errors() if "PoseAnimate" in m or "pose_preview" in m], frontend.errors()



# The 17 OpenPose limb colours as the preview strokes them (dimmed to 0.6, as the renderer does): how many of
# them appear on the canvas, and how many white face-landmark pixels.
SKELETON_COLOURS = """([nodeId, colours]) => {
  const root = document.querySelector(`.poseanimate-pose-preview[data-node-id="${nodeId}"]`);
  const c = root.querySelector("canvas"), d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
  const seen = new Set();
  let white = 0;
  for (let i = 0; i < d.length; i += 4) {
    if (d[i] > 240 && d[i + 1] > 240 && d[i + 2] > 240) white++;
    colours.forEach((k, j) => {
      if (Math.abs(d[i] - k[0]) <= 6 && Math.abs(d[i + 1] - k[1]) <= 6 && Math.abs(d[i + 2] - k[2]) <= 6) seen.add(j);
    });
  }
  return {limbColours: seen.size, white, counter: root.querySelector(".poseanimate-counter").textContent,
          note: root.querySelector(".poseanimate-note").textContent};
}"""


def test_pose_preview_draws_whole_body_skeletons_in_openpose_colours(frontend):
    """A retarget preview (skeletons only, no frames) of a synthetic walking person with hands and face."""
    from poseanimate.nodes.pose_preview import PREVIEW_KEY, preview_ui
    from poseanimate.pose import keypoints as kp
    syn = _load_helper("synthetic_skeletons", REPO_ROOT / "tests" / "pose" / "synthetic_skeletons.py")
    points, scores = syn.clip(frames=80)
    people = kp.wholebody_to_people(points, scores, neck="dwpose")
    payload = preview_ui("retarget", [kp.PoseFrame(p[None], 512, 640) for p in people], fps=24.0)[PREVIEW_KEY][0]
    assert payload["note"] == "preview: every 2nd of 80 frames"

    node_id = frontend.js("""(payload) => {
      app.graph.clear();
      const node = LiteGraph.createNode("PoseAnimateRetargetPoses");
      node.pos = [100, 100];
      node.size = [480, node.size[1]];
      app.graph.add(node);
      node.onExecuted({poseanimate_pose_preview: [payload]});
      return node.id;
    }""", payload)
    frontend.js(FIT, 200)
    preview = frontend.page.locator(f'.poseanimate-pose-preview[data-node-id="{node_id}"]')
    preview.wait_for(state="visible", timeout=10_000)
    assert preview.get_attribute("data-frames") == "40"
    preview.locator(".poseanimate-play").click()
    preview.locator("input.poseanimate-slider").fill("3")
    frontend.page.wait_for_timeout(200)
    limb_colours = [[round(c * 0.6) for c in colour] for colour in (
        (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0), (0, 255, 0),
        (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255), (0, 0, 255), (85, 0, 255),
        (170, 0, 255), (255, 0, 255), (255, 0, 170))]
    got = frontend.js(SKELETON_COLOURS, [node_id, limb_colours])
    assert got["counter"] == "frame 7 / 80 · 1 person"
    assert got["note"] == "preview: every 2nd of 80 frames"
    assert got["limbColours"] >= 15, got                 # nearly every limb in its own colour (some overlap)
    assert got["white"] > 30, got                        # the face landmarks
    rect = frontend.js(NODE_RECT, [node_id])
    DOCS.mkdir(parents=True, exist_ok=True)
    frontend.page.screenshot(path=str(DOCS / "pose_preview_skeleton.png"),
                             clip={"x": rect["x"] - 12, "y": rect["y"] - 28, "width": rect["width"] + 24,
                                   "height": rect["height"] + 40})
