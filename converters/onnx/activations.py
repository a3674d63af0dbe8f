"""Keras activations -> ONNX: as standalone nodes, and as recurrent-op activation attributes.

Keras 3 definitions (keras/src/activations, backend/tensorflow/nn.py):
hard_sigmoid(x) = relu6(x + 3) / 6 = clip(x / 6 + 0.5, 0, 1)  -> HardSigmoid(alpha=1/6, beta=0.5);
elu(x, alpha=1); linear(x) = x -> Affine(alpha=1, beta=0) inside LSTM/GRU/RNN.
rnnedge.activations.tfjs_hard_sigmoid (TF.js / Keras 2) = clip(0.2x + 0.5, 0, 1) -> HardSigmoid(0.2, 0.5).
"""
from __future__ import annotations

import math

import numpy as np

from rnnedge.activations import TFJS_HARD_SIGMOID, TFJS_HARD_SIGMOID_ALPHA, TFJS_HARD_SIGMOID_BETA
from rnnedge.errors import ConversionError

# Keras name -> (ONNX activation name, alpha, beta) usable inside LSTM/GRU/RNN ops
RNN_ACTIVATIONS = {
    "tanh": ("Tanh", None, None),
    "sigmoid": ("Sigmoid", None, None),
    "relu": ("Relu", None, None),
    "linear": ("Affine", 1.0, 0.0),
    "hard_sigmoid": ("HardSigmoid", 1.0 / 6.0, 0.5),
    TFJS_HARD_SIGMOID: ("HardSigmoid", TFJS_HARD_SIGMOID_ALPHA, TFJS_HARD_SIGMOID_BETA),
    "elu": ("Elu", 1.0, None),
    "softsign": ("Softsign", None, None),
    "softplus": ("Softplus", None, None),
}


def activation_name(fn) -> str:
    if fn is None:
        return "linear"
    if isinstance(fn, str):
        return fn
    name = getattr(fn, "__name__", None) or type(fn).__name__
    return {"hard_sigmoid": "hard_sigmoid", "silu": "silu", "swish": "silu"}.get(name, name)


def rnn_activation(fn, layer=None) -> tuple[str, float | None, float | None]:
    name = activation_name(fn)
    if name not in RNN_ACTIVATIONS:
        lname = getattr(layer, "name", "?")
        raise ConversionError(
            f"layer '{lname}' ({type(layer).__name__}): activation '{name}' has no ONNX recurrent-op "
            f"equivalent; supported inside LSTM/GRU/SimpleRNN: {', '.join(sorted(RNN_ACTIVATIONS))}",
            layer=lname, fmt="onnx")
    return RNN_ACTIVATIONS[name]


def rnn_activation_attrs(acts: list[tuple], defaults: list[str]) -> dict:
    """Attributes for the recurrent op; empty when the activations are ONNX's defaults.

    ``activation_alpha``/``beta`` are consumed in order by the activations that take them
    (onnxruntime: rnn_helpers.cc NormalizeActivationArgumentAndGetAlphaBetaCount).
    """
    names = [a[0] for a in acts]
    if names == defaults * (len(names) // len(defaults)):
        return {}
    alphas = [a[1] for a in acts if a[1] is not None]
    betas = [a[2] for a in acts if a[2] is not None]
    attrs = {"activations": names}
    if alphas:
        attrs["activation_alpha"] = [float(a) for a in alphas]
    if betas:
        attrs["activation_beta"] = [float(b) for b in betas]
    return attrs


def apply_activation(ctx, x: str, fn, layer=None, axis: int = -1) -> str:
    g = ctx.graph
    name = activation_name(fn)
    if name == "linear":
        return x
    simple = {"tanh": "Tanh", "sigmoid": "Sigmoid", "relu": "Relu", "softsign": "Softsign",
              "softplus": "Softplus", "exponential": "Exp", "elu": "Elu", "selu": "Selu"}
    if name in simple:
        return g.op(simple[name], [x])
    if name == "softmax":
        return g.op("Softmax", [x], axis=axis)
    if name == "log_softmax":
        return g.op("LogSoftmax", [x], axis=axis)
    if name in ("hard_sigmoid", TFJS_HARD_SIGMOID):
        _, alpha, beta = RNN_ACTIVATIONS[name]
        return g.op("HardSigmoid", [x], alpha=alpha, beta=beta)
    if name == "relu6":
        return g.op("Clip", [x, g.const(np.float32(0)), g.const(np.float32(6))])
    if name == "silu":
        return g.op("Mul", [x, g.op("Sigmoid", [x])])
    if name == "hard_silu":
        return g.op("Mul", [x, g.op("HardSigmoid", [x], alpha=1.0 / 6.0, beta=0.5)])
    if name == "leaky_relu":
        return g.op("LeakyRelu", [x], alpha=0.2)
    if name == "gelu":  # keras.activations.gelu: approximate=False
        erf = g.op("Erf", [g.op("Mul", [x, g.const(np.float32(1 / math.sqrt(2)))])])
        return g.op("Mul", [g.op("Mul", [x, g.const(np.float32(0.5))]),
                            g.op("Add", [erf, g.const(np.float32(1))])])
    lname = getattr(layer, "name", "?")
    raise ConversionError(
        f"layer '{lname}' ({type(layer).__name__}): activation '{name}' is not supported by the ONNX "
        "exporter", layer=lname, fmt="onnx")
