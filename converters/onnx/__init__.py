"""Keras 3 -> ONNX with native recurrent ops (LSTM / GRU / RNN, one op per layer), and -> ORT format.

Modules: :mod:`.graph` (graph builder + Keras graph walker), :mod:`.layers`, :mod:`.recurrent`
and :mod:`.wrappers` (one converter per Keras layer class, registered in :data:`ONNX_LAYERS`),
:mod:`.fallback` (any other layer: tf2onnx on that layer alone, spliced in), :mod:`.activations`,
:mod:`.exporter` ("onnx"), :mod:`.ort` ("ort").

Importing this package is light (numpy only); onnx / onnxruntime / keras load when exporting.
"""
from __future__ import annotations

from converters.registry import register_format

from converters.onnx.graph import ONNX_LAYERS, convert_model  # noqa: F401
from converters.onnx import layers as _layers  # noqa: F401  (registers converters)
from converters.onnx import recurrent as _recurrent  # noqa: F401
from converters.onnx import wrappers as _wrappers  # noqa: F401  (after recurrent: it overrides RNN, Bidirectional)


@register_format("onnx")
def export_onnx(model, out_dir, options):
    from converters.onnx.exporter import export_onnx as _export

    return _export(model, out_dir, options)


@register_format("ort")
def export_ort(model, out_dir, options):
    from converters.onnx.ort import export_ort as _export

    return _export(model, out_dir, options)
