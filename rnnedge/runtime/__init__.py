"""Runtimes on the edge path: numpy plus one runtime, never TensorFlow.

``open_runner(path)`` picks the runner from the artifact's kind:
``.onnx``/``.ort`` -> onnxruntime, ``.tflite`` -> LiteRT / tflite-runtime / tf.lite,
a TF.js folder or ``model.json`` -> TF.js in Node, ``.keras`` -> the Keras reference
(the only runner that imports TensorFlow, and only when used).
"""
from __future__ import annotations

from rnnedge.runtime.base import Runner, TensorInfo

__all__ = ["Runner", "TensorInfo", "open_runner", "runner_kind"]


def runner_kind(path) -> str:
    from pathlib import Path

    p = Path(path)
    name = p.name.lower()
    if name.endswith((".onnx", ".ort")):
        return "onnxruntime"
    if name.endswith(".tflite"):
        return "tflite"
    if name.endswith(".keras") or name.endswith(".h5"):
        return "keras"
    if name == "model.json" or (p.is_dir() and ((p / "model.json").exists() or (p / "tfjs" / "model.json").exists())):
        return "tfjs"
    from rnnedge.errors import UsageError

    raise UsageError(f"{path}: not a known artifact (.onnx, .ort, .tflite, .keras, or a TF.js folder)")


def open_runner(path, **options) -> Runner:
    """Make (not yet load) the runner for ``path``. Options go to the runner (provider, threads...)."""
    kind = runner_kind(path)
    if kind == "onnxruntime":
        from rnnedge.runtime.onnx import OnnxRunner as cls
    elif kind == "tflite":
        from rnnedge.runtime.tflite import TFLiteRunner as cls
    elif kind == "keras":
        from rnnedge.runtime.keras import KerasRunner as cls
    else:
        from rnnedge.runtime.tfjs import TFJSRunner as cls
    return cls(str(path), options=options)
