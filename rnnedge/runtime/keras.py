"""The Keras reference runner (``.keras``): the only runner that imports TensorFlow/Keras.

Options: ``mode`` = ``predict_on_batch`` (default: Keras's compiled predict function, what a
Keras user would time) | ``call`` (eager ``model(x, training=False)``); ``threads`` sets
TensorFlow's intra-op threads (only before TensorFlow has started its thread pools);
``keep_state`` (default False): a model with ``stateful=True`` layers starts every run from a
zero state (what an exported artifact computes) unless this is set.
Outputs are named like the model's outputs, made unique (:func:`rnnedge.matching.output_names`).
"""
from __future__ import annotations

import os

import numpy as np

from rnnedge.errors import MissingDependencyError, RnnedgeError, UsageError, install_command, raise_if_missing
from rnnedge.runtime.base import Runner, TensorInfo


def _dtype_name(dt) -> str:
    try:
        return np.dtype(getattr(dt, "name", dt) or "float32").name
    except TypeError:
        return str(dt)


def all_layers(model) -> list:
    """Every layer, nested models and wrappers (Bidirectional, TimeDistributed) included."""
    out, todo = [], list(getattr(model, "layers", []))
    while todo:
        layer = todo.pop()
        out.append(layer)
        todo.extend(getattr(layer, "layers", None) or [])
        for attr in ("layer", "forward_layer", "backward_layer"):
            sub = getattr(layer, attr, None)
            if sub is not None and sub is not layer:
                todo.append(sub)
    return out


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
            raise_if_missing(e)
            raise RnnedgeError(f"{self.path}: Keras could not load the model: {e}") from None
        m = self.model
        self.inputs = [
            TensorInfo(t.name, [None if d is None else int(d) for d in t.shape], _dtype_name(t.dtype))
            for t in m.inputs
        ]
        from rnnedge.matching import output_names

        out_names = output_names(m)  # unique, in the model's order (return_state: lstm, lstm_1, ...)
        self._stateful = [layer for layer in all_layers(m) if getattr(layer, "stateful", False)
                          and hasattr(layer, "reset_state")]
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
            "stateful": bool(self._stateful),
        })

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        xs = []
        for info in self.inputs:
            v = np.asarray(feeds[info.name])
            if info.dtype and v.dtype != np.dtype(info.dtype):
                v = v.astype(info.dtype)
            xs.append(v)
        x = xs[0] if len(xs) == 1 else xs
        if not self.options.get("keep_state"):  # each run starts from a zero state, as artifacts do
            self.reset_states()
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

    def reset_states(self) -> None:
        """Zero the state of every ``stateful=True`` layer (a no-op for stateless models)."""
        for layer in getattr(self, "_stateful", []):
            layer.reset_state()

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
