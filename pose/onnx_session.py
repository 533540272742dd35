"""onnxruntime sessions for the pose models.

The session reads the model's own input name, shape and dtype, so nothing
about a model file is assumed: a detector exported at another resolution or
with a dynamic batch dimension just works, and a file that is not the model the
caller expects is an :class:`InputError` that says what was expected.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import InputError

log = logging.getLogger(__name__)

_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
           "tensor(uint8)": np.uint8}


def _onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise InputError("onnxruntime", "is not installed",
                         "the onnxruntime (or onnxruntime-gpu) package; run the pack's install.py") from None
    return onnxruntime


def _dim(value: Any) -> int | None:
    """A static dimension, or None for a symbolic/dynamic one."""
    return value if isinstance(value, int) and value > 0 else None


@dataclass
class OnnxModel:
    """An onnxruntime session and what it reads and writes."""

    session: Any
    path: str
    input_name: str
    input_shape: tuple[int | None, ...]
    input_dtype: Any
    output_names: tuple[str, ...]
    output_shapes: tuple[tuple[int | None, ...], ...]
    provider: str

    @property
    def name(self) -> str:
        return os.path.basename(self.path)

    @property
    def dynamic_batch(self) -> bool:
        return self.input_shape[0] is None

    @property
    def input_hw(self) -> tuple[int | None, int | None]:
        return self.input_shape[2], self.input_shape[3]

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        """Run on a ``[B, C, H, W]`` float batch (cast to the model's dtype)."""
        return self.session.run(None, {self.input_name: np.ascontiguousarray(batch, dtype=self.input_dtype)})

    def signature(self) -> str:
        outs = ", ".join(f"{n} {list(s)}" for n, s in zip(self.output_names, self.output_shapes))
        return f"input {self.input_name} {list(self.input_shape)} -> {outs}"


def _providers(ort, device: str) -> list:
    device = (device or "auto").lower()
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in ort.get_available_providers():
        index = device.split(":", 1)[1] if device.startswith("cuda:") else "0"
        return [("CUDAExecutionProvider", {"device_id": int(index)}), "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def load_onnx(path: str, device: str = "auto", role: str = "pose model", threads: int | None = None) -> OnnxModel:
    """Open ``path`` with the CUDA provider when onnxruntime has it (``device``
    ``"auto"``, ``"cuda"``, ``"cuda:N"``), else on CPU with a one-line notice.

    ``role`` names the model in error messages ("pose detector", ...).
    """
    name = os.path.basename(str(path))
    if not os.path.isfile(path):
        raise InputError(f"{role} '{name}'", f"was not found at {path}", "the ONNX file (see the README's model table)")
    ort = _onnxruntime()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = int(threads)
    providers = _providers(ort, device)
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own pybind exception types
        detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{role} '{name}'", f"could not be loaded by onnxruntime ({detail})",
                         "an intact ONNX model file; download it again") from None
    used = session.get_providers()[0]
    if used == "CPUExecutionProvider" and (device or "auto").lower() != "cpu":
        log.warning("PoseAnimate: %s '%s' runs on CPU (onnxruntime has no CUDA provider here; "
                    "install onnxruntime-gpu for speed)", role, name)
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or len(inputs[0].shape) != 4:
        got = ", ".join(f"{i.name} {i.shape}" for i in inputs)
        raise InputError(f"{role} '{name}'", f"has inputs {got}", "one image input [batch, 3, height, width]")
    inp = inputs[0]
    shape = tuple(_dim(d) for d in inp.shape)
    if shape[1] not in (None, 3):
        raise InputError(f"{role} '{name}'", f"takes {inp.shape} input", "an image input [batch, 3, height, width]")
    return OnnxModel(session=session, path=str(path), input_name=inp.name, input_shape=shape,
                     input_dtype=_DTYPES.get(inp.type, np.float32),
                     output_names=tuple(o.name for o in outputs),
                     output_shapes=tuple(tuple(_dim(d) for d in o.shape) for o in outputs),
                     provider=used)


def wrong_model(model: OnnxModel, role: str, expected: str) -> InputError:
    """The error for a valid ONNX file that is not the kind of model expected."""
    return InputError(f"{role} '{model.name}'", f"has signature {model.signature()}", expected)


def batch_step(model: OnnxModel, batch_size: int) -> int:
    """Inputs per model call: ``batch_size`` for a dynamic batch dimension, else the model's fixed one."""
    return max(1, int(batch_size)) if model.dynamic_batch else model.input_shape[0]


def run_batches(model: OnnxModel, inputs: Sequence[np.ndarray], batch_size: int,
                after_batch: Callable[[int], None] | None = None) -> list[list[np.ndarray]]:
    """Run ``inputs`` (each ``[C, H, W]``) through ``model``: in batches of
    ``batch_size`` when the model's batch dimension is dynamic, else in the
    model's fixed batch size. Returns, per output, the list of per-input
    results. ``after_batch(count)`` is called after each batch (progress and
    interruption checks)."""
    step = batch_step(model, batch_size)
    results: list[list[np.ndarray]] = [[] for _ in model.output_names]
    for start in range(0, len(inputs), step):
        chunk = list(inputs[start:start + step])
        real = len(chunk)
        if not model.dynamic_batch and real < step:        # a static batch > 1 is padded
            chunk += [np.zeros_like(chunk[0])] * (step - real)
        outputs = model.run(np.stack(chunk))
        for k, out in enumerate(outputs):
            results[k].extend(out[:real])
        if after_batch is not None:
            after_batch(real)
    return results
