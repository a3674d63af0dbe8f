"""The Keras reference runner (``.keras``): the only runner that imports TensorFlow/Keras.

Options: ``mode`` = ``predict_on_batch`` (default: Keras's compiled predict function, what a
Keras user would time) | ``call`` (eager ``model(x, training=False)``); ``threads`` sets
TensorFlow's intra-op threads (only before TensorFlow has started its thread pools).
Outputs are named like the model's outputs (``model.output_names``).
"""
from __future__ import annotations

import os

import numpy as np

from rnnedge.errors import MissingDependencyError, RnnedgeError, UsageError, install_command
from rnnedge.runtime.base import Runner, TensorInfo


def _dtype_name(dt) -> str:
    try:
        return np.dtype(getattr(dt, "name", dt) or "float32").name
    except TypeError:
        return str(dt)


def output_names(m) -> list[str]:
    """The names the Keras runner gives ``m``'s outputs: ``model.output_names``, else (Sequential)
    the layers making them, else ``output_<i>``."""
    out_names = list(getattr(m, "output_names", None) or [])
    if len(out_names) != len(m.outputs):  # Sequential: name outputs after their layers
        out_names = []
        for i, t in enumerate(m.outputs):
            hist = getattr(t, "_keras_history", None)
            op = getattr(hist, "operation", None) if hist is not None else None
            out_names.append(getattr(op, "name", None) or f"output_{i}")
        if len(set(out_names)) != len(out_names):
            out_names = [f"output_{i}" for i in range(len(m.outputs))]
    return out_names


class KerasRunner(Runner):
    def __init__(self, path: str, options: dict | None = None, **kw):
        super().__init__(path=str(path), runtime="keras", options=dict(options or {}, **kw))

    def _load(self) -> None:
        try:
            from rnnedge._keras import keras as _keras

            keras = _keras()
        except (ImportError, MissingDependencyError):
            raise MissingDependencyError("TensorFlow and Keras (the .keras reference runner)",
                                         install_command("keras")) from None
        threads = self.options.get("threads")
        if threads:
            try:
                import tensorflow as tf

                tf.config.threading.set_intra_op_parallelism_threads(int(threads))
                tf.config.threading.set_inter_op_parallelism_threads(1)
            except (ImportError, RuntimeError):  # already initialised: keep TF's pools
                pass
        if not os.path.exists(self.path):
            raise UsageError(f"{self.path}: no such file")
        try:
            from rnnedge._keras import load_model

            self.model = load_model(self.path)
        except Exception as e:  # noqa: BLE001 - custom objects, bad archive...
            raise RnnedgeError(f"{self.path}: Keras could not load the model: {e}") from None
        m = self.model
        self.inputs = [
            TensorInfo(t.name, [None if d is None else int(d) for d in t.shape], _dtype_name(t.dtype))
            for t in m.inputs
        ]
        out_names = output_names(m)
        self.outputs = [
            TensorInfo(n, [None if d is None else int(d) for d in t.shape], _dtype_name(t.dtype))
            for n, t in zip(out_names, m.outputs)
        ]
        self.mode = self.options.get("mode", "predict_on_batch")
        if self.mode not in ("predict_on_batch", "call"):
            raise UsageError(f"unknown Keras run mode {self.mode!r} (predict_on_batch | call)")
        self.info.update({
            "runtime": "keras",
            "keras_version": keras.__version__,
            "backend": keras.backend.backend(),
            "mode": self.mode,
            "provider": "cpu",
            "threads": threads,
        })

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        xs = []
        for info in self.inputs:
            v = np.asarray(feeds[info.name])
            if info.dtype and v.dtype != np.dtype(info.dtype):
                v = v.astype(info.dtype)
            xs.append(v)
        x = xs[0] if len(xs) == 1 else xs
        if self.mode == "call":
            y = self.model(x, training=False)
        else:
            shapes = [v.shape[1:] for v in xs]
            if shapes != getattr(self, "_traced_shapes", shapes):
                # a new sequence length: retrace. Keras reuses the traced predict function with
                # relaxed shapes, and TimeDistributed's vectorized map then indexes out of range.
                self.model.predict_function = None
            self._traced_shapes = shapes
            y = self.model.predict_on_batch(x)
        if isinstance(y, dict):
            ys = [y[n] for n in (o.name for o in self.outputs)]
        elif isinstance(y, (list, tuple)):
            ys = list(y)
        else:
            ys = [y]
        return {o.name: np.asarray(v) for o, v in zip(self.outputs, ys)}

    def vocab_sizes(self) -> dict[str, int]:
        """Input name -> ``input_dim`` of the Embedding it feeds (for token-id inputs)."""
        self.load()
        out = {}
        try:
            for layer in self.model.layers:
                if type(layer).__name__ == "Embedding":
                    for node in getattr(layer, "_inbound_nodes", []):
                        for t in node.input_tensors:
                            for i, mi in enumerate(self.model.inputs):
                                if mi is t or getattr(mi, "name", None) == getattr(t, "name", 0):
                                    out[self.inputs[i].name] = int(layer.input_dim)
            if not out and len(self.inputs) == 1:
                embs = [layer for layer in self.model.layers if type(layer).__name__ == "Embedding"]
                if embs:
                    out[self.inputs[0].name] = int(embs[0].input_dim)
        except Exception:  # noqa: BLE001 - a hint only
            pass
        return out

    def close(self) -> None:
        self.model = None
        super().close()
