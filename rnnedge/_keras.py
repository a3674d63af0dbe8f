"""Importing Keras/TensorFlow once, quietly (not on the edge path).

TensorFlow's C++ start-up writes absl/cudart lines to stderr that no environment variable
silences; the CLI should not show them, so file descriptor 2 is pointed at /dev/null for
the duration of the import only.
"""
from __future__ import annotations

import os
import sys


def keras():
    if "keras" in sys.modules and "tensorflow" in sys.modules:
        return sys.modules["keras"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    saved = devnull = None
    try:
        sys.stderr.flush()
        saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
    except OSError:  # no real fd 2 (some embedded interpreters): import as is
        saved = None
    try:
        import tensorflow  # noqa: F401
        import keras as _k
    finally:
        if saved is not None:
            os.dup2(saved, 2)
            os.close(saved)
        if devnull is not None:
            os.close(devnull)
    return _k


def load_model(path):
    """``keras.saving.load_model(path, compile=False)`` with rnnedge's registered activations
    (:mod:`rnnedge.activations`), which models imported from TF.js use."""
    k = keras()
    from rnnedge.activations import register

    register()
    return k.saving.load_model(path, compile=False)
