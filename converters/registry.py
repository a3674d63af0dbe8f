"""Registries of converters: one per target format, and per format one per layer class.

Formats register an exporter function::

    @register_format("onnx")
    def export_onnx(model, out_dir, options) -> dict[str, dict]:
        ...  # writes files into out_dir, returns {file_name: manifest_entry}

Each format keeps a :class:`LayerRegistry` of small functions, one per Keras layer
class, all with the same signature (chosen by the format)::

    ONNX_LAYERS = LayerRegistry("onnx")

    @ONNX_LAYERS.register("LSTM")
    def convert_lstm(ctx, layer, inputs, **kw): ...

Adding support for a layer means adding one function. Asking for a layer nothing
converts raises a :class:`~rnnedge.errors.ConversionError` that names the layer.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable

from rnnedge.errors import ConversionError, UsageError

# format name -> module that registers it (imported lazily: heavy deps live there)
_FORMAT_MODULES = {
    "onnx": "converters.onnx",
    "ort": "converters.onnx",
    "tflite": "converters.tflite",
    "tfjs": "converters.tfjs",
}
_FORMATS: dict[str, Callable] = {}


#: The ONNX opsets the ONNX converter writes (converters.onnx.graph), and its default.
MIN_OPSET, MAX_OPSET, DEFAULT_OPSET = 14, 21, 17


@dataclass
class ExportOptions:
    """Options common to every format; formats read what applies to them. A bad value (an opset
    outside MIN_OPSET..MAX_OPSET, a batch size or sequence length below 1) raises
    :class:`~rnnedge.errors.UsageError` (exit 2) when the options are made, before any work."""

    opset: int | None = None
    batch_size: int | None = None      # None = dynamic batch (ONNX); TFLite defaults to 1
    seq_len: int | None = None         # None = dynamic sequence length
    allow_flex: bool = False           # TFLite: allow SELECT_TF_OPS
    quantize: list[str] = field(default_factory=list)
    streaming: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.opset is not None and not MIN_OPSET <= int(self.opset) <= MAX_OPSET:
            raise UsageError(f"--opset {self.opset}: ONNX opset {self.opset} is not supported; "
                             f"choose {MIN_OPSET}..{MAX_OPSET} (default {DEFAULT_OPSET})")
        for name in ("batch_size", "seq_len"):
            v = getattr(self, name)
            if v is not None and int(v) < 1:
                raise UsageError(f"--{name.replace('_', '-')} {v}: must be >= 1")


def register_format(name: str, *, overwrite: bool = False):
    def deco(fn: Callable) -> Callable:
        if name in _FORMATS and not overwrite and _FORMATS[name] is not fn:
            raise ValueError(f"format {name!r} is already registered")
        _FORMATS[name] = fn
        return fn

    return deco


def available_formats() -> list[str]:
    return sorted(_FORMAT_MODULES)


def get_exporter(name: str) -> Callable:
    if name not in _FORMAT_MODULES:
        raise UsageError(f"unknown format {name!r}; choose one of: {', '.join(available_formats())}")
    if name not in _FORMATS:
        importlib.import_module(_FORMAT_MODULES[name])
    if name not in _FORMATS:
        raise ConversionError(f"format {name!r} is not implemented yet", fmt=name)
    return _FORMATS[name]


class LayerRegistry:
    """Layer class name -> converter function, for one target format."""

    def __init__(self, fmt: str):
        self.fmt = fmt
        self._pool: dict[str, Callable] = {}

    def register(self, *class_names: str, overwrite: bool = False):
        def deco(fn: Callable) -> Callable:
            for n in class_names:
                if n in self._pool and not overwrite:
                    raise ValueError(f"{self.fmt}: a converter for {n!r} is already registered")
                self._pool[n] = fn
            return fn

        return deco

    def __contains__(self, class_name: str) -> bool:
        return class_name in self._pool

    def names(self) -> list[str]:
        return sorted(self._pool)

    def get(self, layer: Any) -> Callable:
        cls = type(layer).__name__ if not isinstance(layer, str) else layer
        try:
            return self._pool[cls]
        except KeyError:
            name = getattr(layer, "name", cls)
            raise ConversionError(
                f"layer '{name}' ({cls}) cannot be converted to {self.fmt}: no converter for {cls} "
                f"({len(self._pool)} registered: {', '.join(self.names())})",
                layer=name,
                fmt=self.fmt,
            ) from None


FORMAT_NAMES = {"onnx": "ONNX", "tfjs": "TF.js", "tflite": "TFLite"}


def functional_graph(model, fmt: str):
    """The functional graph a converter walks: a Sequential's inner functional model, or the
    functional model itself. A never-built Sequential or a subclassed model is refused."""
    import keras

    if isinstance(model, keras.Sequential):
        fm = getattr(model, "_functional", None)
        if fm is None:
            raise ConversionError(
                f"Sequential model '{model.name}' has no known input shape: start it with keras.Input(...) "
                "or build it before exporting", fmt=fmt)
        return fm
    if not hasattr(model, "_nodes_by_depth") or not hasattr(model, "operations"):
        raise ConversionError(
            f"model '{model.name}' ({type(model).__name__}) is a subclassed model: only Sequential and "
            f"Functional models can be exported to {FORMAT_NAMES.get(fmt, fmt)}", fmt=fmt)
    return model
