// The pose preview player: plays a pose node's skeletons over its frames inside the node, with a frame scrubber.
// The node's UI output (nodes/pose_preview.py) carries the keypoints and small temp JPEGs of the frames; the
// skeletons are drawn here, in the OpenPose colours, so the payload stays small.
import { api } from "../../../scripts/api.js";

export const PREVIEW_KEY = "poseanimate_pose_preview"; // nodes/pose_preview.py PREVIEW_KEY
export const WIDGET_NAME = "poseanimate_pose_preview";

// OpenPose-18 limbs (0-based point pairs), then the ankle-to-toe limbs (points 18 and 19: toe midpoints).
const LIMBS = [[1, 2], [1, 5], [2, 3], [3, 4], [5, 6], [6, 7], [1, 8], [8, 9], [9, 10], [1, 11], [11, 12],
  [12, 13], [1, 0], [0, 14], [14, 16], [0, 15], [15, 17], [13, 18], [10, 19]];
const BODY_COLORS = [[255, 0, 0], [255, 85, 0], [255, 170, 0], [255, 255, 0], [170, 255, 0], [85, 255, 0],
  [0, 255, 0], [0, 255, 85], [0, 255, 170], [0, 255, 255], [0, 170, 255], [0, 85, 255], [0, 0, 255],
  [85, 0, 255], [170, 0, 255], [255, 0, 255], [255, 0, 170], [255, 0, 85], [170, 255, 255], [255, 255, 0]];
const HAND_EDGES = [[0, 1], [1, 2], [2, 3], [3, 4], [0, 5], [5, 6], [6, 7], [7, 8], [0, 9], [9, 10], [10, 11],
  [11, 12], [0, 13], [13, 14], [14, 15], [15, 16], [0, 17], [17, 18], [18, 19], [19, 20]];
const FACE_LANDMARKS = 68;
const MIN_HEIGHT = 200;
const CONTROLS_HEIGHT = 52;

const rgb = (c, k = 1) => `rgb(${Math.round(c[0] * k)},${Math.round(c[1] * k)},${Math.round(c[2] * k)})`;
const hue = (h) => `hsl(${Math.round(h * 360)},100%,50%)`;

/** Points of one part as [[x, y, c], ...] (absent parts: none). */
function points(flat) {
  const out = [];
  for (let i = 0; flat && i + 2 < flat.length; i += 3) out.push([flat[i], flat[i + 1], flat[i + 2]]);
  return out;
}

/** Body points plus the two toe midpoints (OpenPose draws ankle to toe), as the renderer does. */
function bodyWithToes(person, threshold) {
  const body = points(person.body);
  while (body.length < 18) body.push([0, 0, 0]);
  const feet = points(person.feet);
  for (const [a, b] of [[0, 1], [3, 4]]) {
    const ta = feet[a], tb = feet[b];
    const seen = ta && tb && ta[2] > threshold && tb[2] > threshold;
    body.push(seen ? [(ta[0] + tb[0]) / 2, (ta[1] + tb[1]) / 2, 1] : [0, 0, 0]);
  }
  return body;
}

/** Draw one frame's people; ``map`` turns pose pixels into canvas pixels, ``s`` is the drawing scale. */
export function drawSkeletons(ctx, people, threshold, map, s) {
  const stick = Math.max(2, 8 * s), dot = Math.max(1.5, 4 * s);
  ctx.lineCap = "round";
  for (const person of people) {
    const body = bodyWithToes(person, threshold);
    LIMBS.forEach(([a, b], i) => {
      if (body[a][2] <= threshold || body[b][2] <= threshold) return;
      const [x1, y1] = map(body[a]), [x2, y2] = map(body[b]);
      ctx.strokeStyle = rgb(BODY_COLORS[i], 0.6);
      ctx.lineWidth = stick;
      ctx.beginPath(); ctx.moveTo(x1, y1); ctx.lineTo(x2, y2); ctx.stroke();
    });
    body.forEach((p, i) => {
      if (p[2] <= threshold) return;
      const [x, y] = map(p);
      ctx.fillStyle = rgb(BODY_COLORS[i]);
      ctx.beginPath(); ctx.arc(x, y, dot, 0, 2 * Math.PI); ctx.fill();
    });
    for (const hand of [points(person.left_hand), points(person.right_hand)]) {
      if (!hand.length) continue;
      HAND_EDGES.forEach(([a, b], e) => {
        if (hand[a][2] < threshold || hand[b][2] < threshold) return;
        const [x1, y1] = map(hand[a]), [x2, y2] = map(hand[b]);
        ctx.strokeStyle = hue(e / HAND_EDGES.length);
        ctx.lineWidth = Math.max(1, 2 * s);
        ctx.beginPath(); ctx.moveTo(x1, y1); ctx.lineTo(x2, y2); ctx.stroke();
      });
      ctx.fillStyle = "rgb(0,0,255)";
      for (const p of hand) {
        if (p[2] < threshold) continue;
        const [x, y] = map(p);
        ctx.beginPath(); ctx.arc(x, y, Math.max(1, 2 * s), 0, 2 * Math.PI); ctx.fill();
      }
    }
    ctx.fillStyle = "rgb(255,255,255)";
    for (const p of points(person.face).slice(0, FACE_LANDMARKS)) {
      if (p[2] < threshold) continue;
      const [x, y] = map(p);
      ctx.beginPath(); ctx.arc(x, y, Math.max(1, 1.5 * s), 0, 2 * Math.PI); ctx.fill();
    }
  }
}

/** The player: a canvas, play/pause, a frame slider and a counter. ``element`` goes into a DOM widget. */
export class PosePlayer {
  constructor() {
    this.payload = null;
    this.images = [];
    this.index = 0;
    this.timer = null;
    const el = (tag, cls, parent) => {
      const e = document.createElement(tag);
      if (cls) e.className = cls;
      if (parent) parent.appendChild(e);
      return e;
    };
    this.element = el("div", "poseanimate-pose-preview");
    Object.assign(this.element.style, { display: "flex", flexDirection: "column", gap: "4px", width: "100%",
      height: "100%", boxSizing: "border-box", padding: "2px 4px", color: "var(--input-text, #ddd)",
      font: "12px sans-serif" });
    this.canvas = el("canvas", "poseanimate-canvas", this.element);
    Object.assign(this.canvas.style, { flex: "1 1 auto", minHeight: "0", width: "100%", background: "#000",
      borderRadius: "4px" });
    const bar = el("div", "poseanimate-controls", this.element);
    Object.assign(bar.style, { display: "flex", alignItems: "center", gap: "6px" });
    this.button = el("button", "poseanimate-play", bar);
    this.button.type = "button";
    Object.assign(this.button.style, { width: "28px", cursor: "pointer" });
    this.slider = el("input", "poseanimate-slider", bar);
    this.slider.type = "range";
    this.slider.min = "0";
    this.slider.step = "1";
    Object.assign(this.slider.style, { flex: "1 1 auto", minWidth: "40px" });
    this.counter = el("span", "poseanimate-counter", bar);
    Object.assign(this.counter.style, { whiteSpace: "nowrap", fontVariantNumeric: "tabular-nums" });
    this.note = el("div", "poseanimate-note", this.element);
    Object.assign(this.note.style, { opacity: "0.7", fontSize: "11px", whiteSpace: "nowrap", overflow: "hidden",
      textOverflow: "ellipsis" });

    this.button.addEventListener("click", () => (this.timer ? this.pause() : this.play()));
    this.slider.addEventListener("input", () => { this.pause(); this.show(Number(this.slider.value)); });
    for (const type of ["pointerdown", "mousedown", "wheel"]) {   // keep the canvas from panning under the slider
      this.slider.addEventListener(type, (e) => e.stopPropagation());
    }
    this.resize = new ResizeObserver(() => this.draw());
    this.resize.observe(this.canvas);
    this.setButton();
  }

  get length() {
    const p = this.payload;
    return p ? Math.max(p.frames.length, p.images.length) : 0;
  }

  /** Show a node's new UI output; starts playing when there is more than one frame. */
  setPayload(payload) {
    this.pause();
    this.payload = payload;
    this.images = (payload.images || []).map((ref) => {
      const img = new Image();
      const query = new URLSearchParams({ filename: ref.filename, subfolder: ref.subfolder || "", type: ref.type });
      img.onload = () => { if (this.images[this.index] === img) this.draw(); };
      img.src = api.apiURL(`/view?${query}`);
      return img;
    });
    this.slider.max = String(Math.max(0, this.length - 1));
    this.note.textContent = payload.note || "";
    this.note.style.display = payload.note ? "" : "none";
    this.element.dataset.frames = String(this.length);
    this.show(0);
    if (this.length > 1) this.play();
  }

  /** The frame's size in pose pixels and the image's, for fitting both onto the canvas. */
  contentSize() {
    const p = this.payload;
    if (p.image_size) return p.image_size;
    const f = p.frames[this.index] || p.frames[0];
    return f ? [f.w, f.h] : [1, 1];
  }

  show(index) {
    if (!this.payload || !this.length) return;
    this.index = Math.min(Math.max(0, index), this.length - 1);
    this.slider.value = String(this.index);
    const p = this.payload;
    const source = (p.frame_indices?.[this.index] ?? this.index) + 1;
    let text = `frame ${source} / ${p.total_frames ?? this.length}`;
    const frame = p.frames[this.index];
    if (frame) text += ` · ${frame.people.length} ${frame.people.length === 1 ? "person" : "people"}`;
    this.counter.textContent = text;
    this.element.dataset.frame = String(this.index);
    this.draw();
  }

  draw() {
    const canvas = this.canvas;
    const dpr = window.devicePixelRatio || 1;
    const cw = Math.max(1, Math.round(canvas.clientWidth * dpr)), ch = Math.max(1, Math.round(canvas.clientHeight * dpr));
    if (canvas.width !== cw || canvas.height !== ch) { canvas.width = cw; canvas.height = ch; }
    const ctx = canvas.getContext("2d");
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, cw, ch);
    if (!this.payload || !this.length) return;
    const [w, h] = this.contentSize();
    const scale = Math.min(cw / w, ch / h);
    const rw = w * scale, rh = h * scale, rx = (cw - rw) / 2, ry = (ch - rh) / 2;
    const img = this.images[this.index];
    if (img && img.complete && img.naturalWidth) ctx.drawImage(img, rx, ry, rw, rh);
    const frame = this.payload.frames[this.index];
    if (!frame) return;
    const map = (p) => [rx + (p[0] / frame.w) * rw, ry + (p[1] / frame.h) * rh];
    // strokes in the frame's own pixels, as the renderer draws them, but never thinner than the screen allows
    drawSkeletons(ctx, frame.people, this.payload.threshold ?? 0.3, map, rw / frame.w);
  }

  play() {
    if (this.timer || this.length < 2) return;
    const p = this.payload;
    const stride = p.frame_indices?.length > 1 ? p.frame_indices[1] - p.frame_indices[0] : 1;
    const period = Math.max(30, (1000 * stride) / (p.fps || 30));
    this.timer = setInterval(() => this.show((this.index + 1) % this.length), period);
    this.setButton();
  }

  pause() {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.setButton();
  }

  setButton() {
    this.button.textContent = this.timer ? "❚❚" : "▶";
    this.button.title = this.timer ? "Pause" : "Play";
    this.element.dataset.playing = this.timer ? "true" : "false";
  }

  destroy() {
    this.pause();
    this.resize.disconnect();
  }
}

/** The node's player widget, made on first use; the node grows to show it. */
export function showPosePreview(node, payload) {
  let widget = node.widgets?.find((w) => w.name === WIDGET_NAME);
  if (!widget) {
    const player = new PosePlayer();
    widget = node.addDOMWidget(WIDGET_NAME, "poseanimate_preview", player.element, {
      serialize: false,        // a view of the last run, never part of the workflow or the prompt
      hideOnZoom: false,
      getMinHeight: () => MIN_HEIGHT,
    });
    widget.serialize = false;
    widget.player = player;
    player.element.dataset.nodeId = String(node.id);
    const onRemoved = node.onRemoved;
    node.onRemoved = function () {
      player.destroy();
      return onRemoved?.apply(this, arguments);
    };
  }
  widget.player.setPayload(payload);
  const [w, h] = payload.image_size || (payload.frames[0] ? [payload.frames[0].w, payload.frames[0].h] : [4, 3]);
  const width = Math.max(node.size[0], 340);
  const wanted = node.computeSize([width, 0])[1] - MIN_HEIGHT + (width - 8) * (h / w) + CONTROLS_HEIGHT;
  node.setSize([width, Math.max(node.size[1], wanted)]);
  node.setDirtyCanvas?.(true, true);
  return widget;
}
