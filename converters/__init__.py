"""Format converters: Keras model -> ONNX / ORT, TFLite, TF.js.

See :mod:`converters.registry` for how formats and per-layer converters register.
"""
from converters.registry import (  # noqa: F401
    ExportOptions,
    LayerRegistry,
    available_formats,
    get_exporter,
    register_format,
)
