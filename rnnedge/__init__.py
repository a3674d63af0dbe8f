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
    "quantize",
    "validate",
    "bench",
    "deploy",
    "verify",
    "demo",
    "open_runner",
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


def quantize(folder, modes, **kw):
    """Quantize the float artifacts of an export folder. See :func:`rnnedge.quantization.quantize`."""
    from rnnedge.quantization import quantize as _quantize

    return _quantize(folder, modes, **kw)


def validate(folder, artifacts=None, **kw):
    """Check every artifact of an export folder against its Keras reference, in its own runtime.
    See :func:`rnnedge.validation.validate`."""
    from rnnedge.validation import validate as _validate

    return _validate(folder, artifacts, **kw)


def bench(artifacts, **kw):
    """Time artifacts in their runtimes. See :func:`rnnedge.benchmarking.bench`."""
    from rnnedge.benchmarking import bench as _bench

    return _bench(artifacts, **kw)


def deploy(folder, **kw):
    """Make a Raspberry Pi bundle from an export folder. See :func:`rnnedge.deployment.deploy`."""
    from rnnedge.deployment import deploy as _deploy

    return _deploy(folder, **kw)


def verify(bundle, **kw):
    """Check a bundle's hashes and run its self-test. See :func:`rnnedge.deployment.verify`."""
    from rnnedge.deployment import verify as _verify

    return _verify(bundle, **kw)


def demo(preset="forecast", out_dir="rnnedge-demo", **kw):
    """The whole pipeline on one preset. See :func:`rnnedge.showcase.demo`."""
    from rnnedge.showcase import demo as _demo

    return _demo(preset, out_dir, **kw)


def open_runner(path, **options):
    """Open an artifact in its runtime (no TensorFlow for ONNX/TFLite/TF.js). See :mod:`rnnedge.runtime`."""
    from rnnedge.runtime import open_runner as _open

    return _open(path, **options)
