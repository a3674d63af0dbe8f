"""Importing Keras/TensorFlow once, quietly (not on the edge path).

TensorFlow's C++ start-up writes absl/oneDNN lines to stderr that no environment variable
silences; they are filtered off descriptor 2 for the duration of the import only
(:func:`rnnedge.quiet.filtered_stderr`: known noise dropped, any other line shown).
"""
from __future__ import annotations

import os
import sys


def keras():
    """The ``keras`` module (TensorFlow backend). :class:`MissingDependencyError` (exit 3, with the
    pip command) when TensorFlow or Keras is not installed."""
    if "keras" in sys.modules and "tensorflow" in sys.modules:
        return sys.modules["keras"]
    from rnnedge.quiet import filtered_stderr, quiet_environment

    quiet_environment()
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    try:
        with filtered_stderr():
            import tensorflow  # noqa: F401
            import keras as _k
    except ModuleNotFoundError as e:
        from rnnedge.errors import missing_module

        err = missing_module(e)
        if err is None:
            raise
        raise err from None
    return _k


def load_model(path):
    """``keras.saving.load_model(path, compile=False)`` with rnnedge's registered activations
    (:mod:`rnnedge.activations`), which models imported from TF.js use."""
    k = keras()
    from rnnedge.activations import register

    register()
    return k.saving.load_model(path, compile=False)
