"""rnnedge: recurrent models from a declarative spec to every edge runtime, with parity proof.

Importing this package is light: no TensorFlow, Keras, ONNX or tf2onnx. The public
functions import what they need when called.
"""
from __future__ import annotations

__version__ = "0.1.0"

from rnnedge.errors import (  # noqa: E402
    ConversionError,
    MissingDependencyError,
    ParityError,
    RnnedgeError,
    SpecError,
    UsageError,
)

__all__ = [
    "__version__",
    "RnnedgeError",
    "SpecError",
    "UsageError",
    "MissingDependencyError",
    "ConversionError",
    "ParityError",
    "load_spec",
    "build",
    "train",
    "inspect_model",
    "export",
]


def load_spec(source, **kw):
    """Load and validate a spec (path, preset name, or dict). See :mod:`rnnedge.spec`."""
    from rnnedge.spec import load_spec as _load

    return _load(source, **kw)


def build(source, **kw):
    """Build a Keras model from a spec/preset/path. Imports Keras."""
    from rnnedge.builder import build_model

    return build_model(source, **kw)


def train(source, **kw):
    """Train a spec/preset on its data. See :func:`rnnedge.training.train`."""
    from rnnedge.training import train as _train

    return _train(source, **kw)


def inspect_model(source, **kw):
    from rnnedge.inspect import inspect_model as _inspect

    return _inspect(source, **kw)


def export(source, fmt="onnx", out_dir="export", **kw):
    """Export a spec/preset/.keras model to ``fmt`` in ``out_dir``. See :mod:`rnnedge.exporting`."""
    from rnnedge.exporting import export as _export

    return _export(source, fmt=fmt, out_dir=out_dir, **kw)
