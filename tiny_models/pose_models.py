"""Tiny ONNX stand-ins for the pose models, built with ``onnx.helper``.

Each has the real model's input/output names and shapes (optionally a
dynamic batch) and computes something simple but real from the image, so a
test can predict its output:

* detectors (YOLOX ``[B, 8400, 85]``, YOLOv10 ``[B, 300, 6]``) report one
  person box: the bounding box of the bright (> 128) pixels;
* RTMPose (``simcc_x [B, 133, 576]``, ``simcc_y [B, 133, 768]``) puts every
  keypoint at the brightest column / row of its crop;
* ViTPose (``heatmaps [B, 133, 64, 48]``) puts every keypoint's heatmap peak
  on the brightest 4x4 cell of its crop.

With ``dense > 0`` each also runs a two-layer dense head (``dense`` units)
on a pooled copy of its input and adds a negligible multiple of it to its
outputs: the real models end in dense layers too, whose cost per image falls
when images come in batches (bench/pose_batching.py uses this).

Used by tests/pose (through its conftest's fixtures), tests/nodes and
bench/pose_batching.py (loaded by file path). ``write_demo_files`` rebuilds the two
prebuilt files in ``tiny_models/pose/`` that ``animate.py``'s tiny demo extracts poses with
(committed, so the demo needs no ``onnx`` package).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


class _Graph:
    def __init__(self):
        self.nodes, self.inits, self.n = [], [], 0

    def const(self, value, dtype=np.float32) -> str:
        self.n += 1
        name = f"c{self.n}"
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, op_type: str, inputs, **attrs) -> str:
        self.n += 1
        out = f"t{self.n}"
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], **attrs))
        return out

    def save(self, path, inputs, outputs, final) -> str:
        for name, value in final.items():
            self.nodes.append(helper.make_node("Identity", [value], [name]))
        graph = helper.make_graph(self.nodes, "tiny", inputs, outputs, self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
        model.ir_version = 8
        onnx.checker.check_model(model)
        onnx.save(model, str(path))
        return str(path)


def _batch(dynamic: bool):
    return "batch" if dynamic else 1


def _dense_term(g: _Graph, gray: str, pool: int, features: int, dense: int, rank: int) -> str:
    """A [B, 1, ...] tensor of rank ``rank``: a dense head's mean output times 1e-12."""
    rng = np.random.default_rng(0)
    pooled = g.op("Flatten", [g.op("AveragePool", [gray], kernel_shape=[pool, pool], strides=[pool, pool])], axis=1)
    hidden = g.op("Relu", [g.op("MatMul", [pooled, g.const(rng.normal(0, 0.01, (features, dense)))])])
    hidden = g.op("MatMul", [hidden, g.const(rng.normal(0, 0.01, (dense, dense)))])
    term = g.op("Mul", [g.op("ReduceMean", [hidden], axes=[1], keepdims=1), g.const(1e-12)])      # [B, 1]
    return g.op("Unsqueeze", [term, g.const(list(range(2, rank)), np.int64)])


def _bright_box(g: _Graph, gray: str, threshold: float = 128.0):
    """x1, y1, x2, y2 (float, [B, 1, 1]) of pixels above ``threshold``, and 1/0 whether any."""
    coords = []
    present = None
    for axis_reduce in (2, 3):  # reduce rows -> column profile (x); reduce columns -> row profile (y)
        profile = g.op("ReduceMax", [gray], axes=[axis_reduce], keepdims=0)           # [B, 1, N]
        mask = g.op("Cast", [g.op("Greater", [profile, g.const(threshold)])], to=TensorProto.FLOAT)
        first = g.op("ArgMax", [mask], axis=2, keepdims=1)
        last = g.op("ArgMax", [mask], axis=2, keepdims=1, select_last_index=1)
        coords.append((g.op("Cast", [first], to=TensorProto.FLOAT),
                       g.op("Add", [g.op("Cast", [last], to=TensorProto.FLOAT), g.const(1.0)])))
        present = g.op("ReduceMax", [mask], axes=[2], keepdims=1)                      # [B, 1, 1]
    (x1, x2), (y1, y2) = coords
    return x1, y1, x2, y2, present


def yolox(path, dynamic: bool = True, size: int = 640, classes: int = 80, dense: int = 0) -> str:
    g = _Graph()
    b = _batch(dynamic)
    cells = sum((size // s) ** 2 for s in (8, 16, 32))
    gray = g.op("ReduceMean", ["images"], axes=[1], keepdims=1)
    x1, y1, x2, y2, present = _bright_box(g, gray)
    eight = g.const(8.0)
    cx = g.op("Div", [g.op("Div", [g.op("Add", [x1, x2]), g.const(2.0)]), eight])
    cy = g.op("Div", [g.op("Div", [g.op("Add", [y1, y2]), g.const(2.0)]), eight])
    lw = g.op("Log", [g.op("Div", [g.op("Sub", [x2, x1]), eight])])
    lh = g.op("Log", [g.op("Div", [g.op("Sub", [y2, y1]), eight])])
    zero = g.op("Mul", [present, g.const(0.0)])
    one = g.op("Add", [zero, g.const(1.0)])
    rest = g.op("Tile", [zero, g.const([1, 1, classes - 1], np.int64)])
    row = g.op("Concat", [cx, cy, lw, lh, present, one, rest], axis=2)                 # [B, 1, 85]
    if dense:
        row = g.op("Add", [row, _dense_term(g, gray, 16, (size // 16) ** 2, dense, 3)])
    out = g.op("Pad", [row, g.const([0, 0, 0, 0, cells - 1, 0], np.int64)])
    return g.save(path, [helper.make_tensor_value_info("images", TensorProto.FLOAT, [b, 3, size, size])],
                  [helper.make_tensor_value_info("output", TensorProto.FLOAT, [b, cells, 5 + classes])],
                  {"output": out})


def yolov10(path, dynamic: bool = True, size: int = 640, dense: int = 0) -> str:
    g = _Graph()
    b = _batch(dynamic)
    gray = g.op("Mul", [g.op("ReduceMean", ["images"], axes=[1], keepdims=1), g.const(255.0)])
    x1, y1, x2, y2, present = _bright_box(g, gray)
    score = g.op("Mul", [present, g.const(0.9)])
    cls = g.op("Mul", [present, g.const(0.0)])
    row = g.op("Concat", [x1, y1, x2, y2, score, cls], axis=2)                         # [B, 1, 6]
    if dense:
        row = g.op("Add", [row, _dense_term(g, gray, 16, (size // 16) ** 2, dense, 3)])
    out = g.op("Pad", [row, g.const([0, 0, 0, 0, 299, 0], np.int64)])
    return g.save(path, [helper.make_tensor_value_info("images", TensorProto.FLOAT, [b, 3, size, size])],
                  [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [b, 300, 6])],
                  {"output0": out})


def rtmpose(path, dynamic: bool = True, input_hw=(384, 288), keypoints: int = 133, dense: int = 0) -> str:
    g = _Graph()
    b = _batch(dynamic)
    h, w = input_hw
    gray = g.op("ReduceMax", ["input"], axes=[1], keepdims=1)                          # [B, 1, H, W]
    outs = {}
    for name, axis, n in (("simcc_x", 2, w), ("simcc_y", 3, h)):
        profile = g.op("ReduceMax", [gray], axes=[axis], keepdims=0)                   # [B, 1, n]
        pair = g.op("Unsqueeze", [profile, g.const([3], np.int64)])                     # [B, 1, n, 1]
        doubled = g.op("Reshape", [g.op("Concat", [pair, pair], axis=3), g.const([0, 1, 2 * n], np.int64)])
        outs[name] = g.op("Mul", [doubled, g.const(np.ones((1, keypoints, 1)))])     # [B, K, 2n]
    if dense:
        term = _dense_term(g, gray, 8, (h // 8) * (w // 8), dense, 3)
        outs = {k: g.op("Add", [v, term]) for k, v in outs.items()}
    return g.save(path, [helper.make_tensor_value_info("input", TensorProto.FLOAT, [b, 3, h, w])],
                  [helper.make_tensor_value_info("simcc_x", TensorProto.FLOAT, [b, keypoints, 2 * w]),
                   helper.make_tensor_value_info("simcc_y", TensorProto.FLOAT, [b, keypoints, 2 * h])], outs)


def vitpose(path, dynamic: bool = True, input_hw=(256, 192), keypoints: int = 133, dense: int = 0) -> str:
    g = _Graph()
    b = _batch(dynamic)
    h, w = input_hw
    gray = g.op("ReduceMean", ["input"], axes=[1], keepdims=1)
    pooled = g.op("Relu", [g.op("AveragePool", [gray], kernel_shape=[4, 4], strides=[4, 4])])
    out = g.op("Mul", [pooled, g.const(np.ones((1, keypoints, 1, 1)))])
    if dense:
        out = g.op("Add", [out, _dense_term(g, gray, 8, (h // 8) * (w // 8), dense, 4)])
    return g.save(path, [helper.make_tensor_value_info("input", TensorProto.FLOAT, [b, 3, h, w])],
                  [helper.make_tensor_value_info("heatmaps", TensorProto.FLOAT, [b, keypoints, h // 4, w // 4])],
                  {"heatmaps": out})


KINDS = ("yolox", "yolov10", "rtmpose", "vitpose")


def build_all(folder, dynamic: bool = True, names: dict | None = None) -> dict:
    """One model of each kind in ``folder``: ``{kind: path}``. ``names`` maps a
    kind to its file name (default ``<kind>.onnx``), e.g. the real models' names."""
    names = names or {}
    Path(folder).mkdir(parents=True, exist_ok=True)
    return {kind: globals()[kind](Path(folder) / names.get(kind, f"{kind}.onnx"), dynamic=dynamic) for kind in KINDS}


DEMO_FOLDER = Path(__file__).with_name("pose")
DEMO_KINDS = ("yolox", "rtmpose")  # the DWPose pair animate.py extracts with


def write_demo_files(folder=DEMO_FOLDER) -> dict:
    """Build the tiny demo's DWPose stand-ins into ``folder``: ``{kind: path}``. Rerun
    (``python tiny_models/pose_models.py``) after changing a builder above, and commit the files."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    return {kind: globals()[kind](Path(folder) / f"{kind}.onnx") for kind in DEMO_KINDS}


if __name__ == "__main__":
    print(write_demo_files())
