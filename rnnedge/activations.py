"""Activations rnnedge adds to Keras 3 (registered serializable, so ``reference.keras`` loads).

``tfjs_hard_sigmoid(x) = clip(0.2 * x + 0.5, 0, 1)`` is the hard sigmoid of TF.js and Keras 2
(tfjs-layers ``backend/tfjs_backend.ts`` ``hardSigmoid``: ``clipByValue(add(.5, mul(.2, x)), 0, 1)``),
TF.js's default ``recurrentActivation`` for LSTM and GRU. Keras 3's ``hard_sigmoid`` is another
function, ``relu6(x + 3) / 6 = clip(x / 6 + 0.5, 0, 1)`` (keras/src/activations/activations.py), so
a TF.js model rebuilt in Keras 3 uses this one. It is ONNX ``HardSigmoid(alpha=0.2, beta=0.5)``.

Importing this module is light; :func:`register` (called by :func:`rnnedge._keras.load_model`
and the TF.js importer) imports Keras and registers the function as ``rnnedge>tfjs_hard_sigmoid``.
"""
from __future__ import annotations

TFJS_HARD_SIGMOID = "tfjs_hard_sigmoid"                  # the Python function's __name__
TFJS_HARD_SIGMOID_REGISTERED = f"rnnedge>{TFJS_HARD_SIGMOID}"   # its name in Keras configs
TFJS_HARD_SIGMOID_ALPHA = 0.2
TFJS_HARD_SIGMOID_BETA = 0.5


def tfjs_hard_sigmoid(x):
    """``clip(0.2 x + 0.5, 0, 1)`` elementwise (TF.js / Keras 2 hard sigmoid); same shape as ``x``."""
    from keras import ops

    return ops.clip(ops.add(ops.multiply(x, TFJS_HARD_SIGMOID_ALPHA), TFJS_HARD_SIGMOID_BETA), 0.0, 1.0)


_REGISTERED = False


def register() -> None:
    """Register rnnedge's activations with Keras (idempotent; imports Keras)."""
    global _REGISTERED
    if _REGISTERED:
        return
    import keras

    keras.saving.register_keras_serializable(package="rnnedge", name=TFJS_HARD_SIGMOID)(tfjs_hard_sigmoid)
    _REGISTERED = True
