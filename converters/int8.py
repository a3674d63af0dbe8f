"""Symmetric int8 weights with one scale per output channel: the arithmetic both weight-only
int8 rewrites share (:mod:`converters.onnx.quantize`, :mod:`converters.tflite.weights`).

``scale[c] = max|w[..., c, ...]| / 127`` over every axis but ``axis``, ``q = round(w / scale)``
clipped to [-127, 127], zero point 0, so ``w ~= q * scale`` with an error of at most
``scale / 2`` per weight (the symmetric scheme of ONNX ``DequantizeLinear`` / TFLite
``DEQUANTIZE`` with a zero zero-point). Needs numpy only.
"""
from __future__ import annotations

import numpy as np

QMAX = 127


def quantize_per_channel(w, axis: int | None) -> tuple[np.ndarray, np.ndarray]:
    """``(q int8 of w's shape, scale float32 [w.shape[axis]])``; ``axis=None``: one scale
    (shape [1]). A channel of zeros gets scale 1 (its q is 0)."""
    w = np.asarray(w, np.float32)
    shape = [1] * w.ndim
    if axis is None:
        amax = np.array([np.max(np.abs(w))], np.float32)
    else:
        axis %= w.ndim
        amax = np.max(np.abs(w), axis=tuple(i for i in range(w.ndim) if i != axis))
        shape[axis] = -1
    scale = np.where(amax > 0, amax / QMAX, 1.0).astype(np.float32)
    q = np.clip(np.rint(w / scale.reshape(shape)), -QMAX, QMAX).astype(np.int8)
    return q, scale


def dequantize(q: np.ndarray, scale: np.ndarray, axis: int | None) -> np.ndarray:
    """``q * scale`` broadcast along ``axis`` (float32): what the runtimes compute."""
    shape = [1] * q.ndim
    if axis is not None:
        shape[axis % q.ndim] = -1
    return q.astype(np.float32) * np.asarray(scale, np.float32).reshape(shape)
