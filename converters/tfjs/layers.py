"""Keras 3 layer -> TF.js layers (tfjs-layers 4.22) config, one function per layer class.

Every converter has the signature ``fn(ctx, layer) -> TfjsLayer``: it reads the Keras 3
layer (its ``get_config()`` and attributes) and returns the class name, the Keras-2-style
config that ``tf.loadLayersModel`` accepts, the weights with the names TF.js looks up, and
how the layer treats a Keras mask (so the writer can keep TF.js's masking identical).

TF.js facts this module relies on (tfjs-layers 4.22 source, checked in Node by the tests):

* ``InputLayer`` needs ``batch_input_shape`` (Keras 3 writes ``batch_shape``; tfjs#8328).
* Weights are matched by name: ``<layer>/<weight>`` (a middle ``<cell>`` token such as
  ``lstm/lstm_cell/kernel`` is dropped by the loader); Bidirectional uses
  ``<bidi>/forward_<inner>/<weight>`` and ``<bidi>/backward_<inner>/<weight>``,
  TimeDistributed ``<td>/<weight>`` (the inner layer is built in the wrapper's scope).
* ``GRUCell`` refuses ``reset_after=True``; rnnedge ships a custom layer
  (``RnnedgeGRUResetAfter`` in ``rnnedge_layers.js``) implementing Keras's math exactly.
* TF.js RNNs keep the previous output at masked steps; Keras 3 writes zeros there when
  ``zero_output_for_mask`` is set (Bidirectional does it): the writer then adds a
  ``RnnedgeZeroMaskedSteps`` layer after the RNN.
* ``model.predict``'s executor shares one kwargs object between layers, so a mask or an
  ``initialState`` leaks into later layers; in graphs with masks or initial states every RNN
  gets a ``RnnedgeRNNGuard`` on its first input (see rnnedge_layers.js).
* ``GlobalAveragePooling1D`` in TF.js ignores the mask (Keras 3 averages valid steps only):
  a masked input uses ``RnnedgeMaskedGlobalAveragePooling1D``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from converters.registry import LayerRegistry
from rnnedge.activations import TFJS_HARD_SIGMOID_REGISTERED
from rnnedge.errors import ConversionError

TFJS_LAYERS = LayerRegistry("tfjs")

# Class names of the custom layers shipped in rnnedge/runtime/node/rnnedge_layers.js
GRU_RESET_AFTER = "RnnedgeGRUResetAfter"
ZERO_MASKED_STEPS = "RnnedgeZeroMaskedSteps"
MASKED_GAP1D = "RnnedgeMaskedGlobalAveragePooling1D"
RNN_GUARD = "RnnedgeRNNGuard"
CUSTOM_CLASSES = (GRU_RESET_AFTER, ZERO_MASKED_STEPS, MASKED_GAP1D, RNN_GUARD)
RNN_CLASSES = ("LSTM", "GRU", "SimpleRNN", "Bidirectional")
MASK_SOURCES = ("Embedding", "Masking")

# mask behaviours (what the layer does with an incoming mask, in Keras 3 *and* TF.js)
MASK_DROP = "drop"          # output carries no mask (pooling, conv, RNN without sequences...)
MASK_KEEP = "keep"          # output[0] carries the input mask (Dense, Dropout, RNN sequences...)
MASK_MAKE = "make"          # the layer creates a mask (Embedding mask_zero, Masking)


@dataclass
class TfjsLayer:
    class_name: str
    config: dict
    weights: list[tuple[str, np.ndarray]] = field(default_factory=list)
    mask: str = MASK_DROP
    custom: bool = False                 # a class from rnnedge_layers.js
    zero_masked_output: bool = False     # Keras zeroes masked steps of output 0 (see module doc)


@dataclass
class Ctx:
    """What converters may need beyond the layer: whether a mask reaches it."""

    input_masked: bool = False


# --------------------------------------------------------------------------- helpers
_ACTIVATIONS = {
    "linear": "linear", None: "linear", "relu": "relu", "relu6": "relu6", "sigmoid": "sigmoid",
    "tanh": "tanh", "softmax": "softmax", "elu": "elu", "selu": "selu", "softplus": "softplus",
    "softsign": "softsign", "swish": "swish", "silu": "swish", "mish": "mish", "gelu": "gelu",
    "log_softmax": "logSoftmax", TFJS_HARD_SIGMOID_REGISTERED: "hardSigmoid",
}
_ACT_WHY = {
    "hard_sigmoid": "Keras 3 hard_sigmoid is relu6(x+3)/6 while TF.js hardSigmoid is 0.2x+0.5",
    "hard_silu": "TF.js has no hard_silu", "hard_swish": "TF.js has no hard_swish",
    "exponential": "TF.js has no exponential activation",
    "leaky_relu": "TF.js has no leaky_relu activation string (use a LeakyReLU layer)",
}


def _act(layer, value: Any, key: str = "activation") -> str:
    if isinstance(value, dict):  # a serialised function
        value = value.get("config", value.get("class_name"))
    if value in _ACTIVATIONS:
        return _ACTIVATIONS[value]
    why = _ACT_WHY.get(value, "not one of " + ", ".join(sorted(k for k in _ACTIVATIONS if k)))
    raise ConversionError(
        f"layer '{layer.name}' ({type(layer).__name__}): {key}={value!r} cannot be exported to "
        f"TF.js: {why}",
        layer=layer.name, fmt="tfjs",
    )


_INITIALIZERS = {
    "Zeros", "Ones", "Constant", "RandomUniform", "RandomNormal", "TruncatedNormal", "Identity",
    "VarianceScaling", "GlorotUniform", "GlorotNormal", "HeNormal", "HeUniform", "LecunNormal",
    "LecunUniform", "Orthogonal",
}
_INIT_KEYS = {"seed", "minval", "maxval", "mean", "stddev", "value", "gain", "scale", "mode",
              "distribution"}


def _init(cfg: Any) -> Any:
    """A Keras 3 initializer config in the Keras 2 form TF.js reads (weights overwrite it)."""
    if cfg is None:
        return None
    if isinstance(cfg, str):
        cfg = {"class_name": "".join(p.capitalize() for p in cfg.split("_")), "config": {}}
    name = cfg.get("class_name", "Zeros")
    name = {"LecunNormal": "LeCunNormal", "LecunUniform": "LeCunUniform",
            "IdentityInitializer": "Identity", "OrthogonalInitializer": "Orthogonal"}.get(name, name)
    if name not in _INITIALIZERS | {"LeCunNormal", "LeCunUniform"}:
        # only used for training in TF.js; the loaded weights replace it
        return {"class_name": "Zeros", "config": {}}
    conf = {k: v for k, v in (cfg.get("config") or {}).items() if k in _INIT_KEYS}
    if name == "VarianceScaling" and conf.get("distribution") == "untruncated_normal":
        conf["distribution"] = "normal"
    return {"class_name": name, "config": conf}


def _reg(layer, cfg: Any, key: str) -> Any:
    if cfg is None:
        return None
    name = cfg.get("class_name")
    conf = cfg.get("config") or {}
    if name == "L1":
        return {"class_name": "L1L2", "config": {"l1": float(conf.get("l1", 0.0)), "l2": 0.0}}
    if name == "L2":
        return {"class_name": "L1L2", "config": {"l1": 0.0, "l2": float(conf.get("l2", 0.0))}}
    if name == "L1L2":
        return {"class_name": "L1L2", "config": {"l1": float(conf.get("l1", 0.0)),
                                                 "l2": float(conf.get("l2", 0.0))}}
    return None  # regularizers only matter for training; TF.js inference ignores them


def _constraint(cfg: Any) -> Any:
    if cfg is None:
        return None
    name = cfg.get("class_name")
    if name in ("NonNeg", "MaxNorm", "UnitNorm", "MinMaxNorm"):
        return {"class_name": name, "config": dict(cfg.get("config") or {})}
    return None


def _base(layer) -> dict:
    """name / trainable / dtype in the Keras 2 form."""
    policy = getattr(layer, "dtype_policy", None)
    dtype = getattr(policy, "variable_dtype", None) or "float32"
    compute = getattr(policy, "compute_dtype", None) or dtype
    if compute != "float32" or dtype != "float32":
        raise ConversionError(
            f"layer '{layer.name}' ({type(layer).__name__}) uses dtype policy "
            f"{getattr(policy, 'name', compute)!r}; the TF.js export needs float32 layers",
            layer=layer.name, fmt="tfjs",
        )
    return {"name": layer.name, "trainable": bool(layer.trainable), "dtype": "float32"}


def _weights(prefix: str, layer, names: list[str] | None = None) -> list[tuple[str, np.ndarray]]:
    """``prefix/<short weight name>`` for each variable of ``layer`` (Keras order)."""
    out = []
    for i, v in enumerate(layer.weights):
        short = names[i] if names else v.name.split("/")[-1]
        out.append((f"{prefix}/{short}", np.asarray(v.numpy())))
    return out


def _refuse(layer, why: str):
    raise ConversionError(
        f"layer '{layer.name}' ({type(layer).__name__}) cannot be exported to TF.js: {why}",
        layer=layer.name, fmt="tfjs",
    )


# --------------------------------------------------------------------------- layers
@TFJS_LAYERS.register("InputLayer")
def input_layer(ctx: Ctx, layer) -> TfjsLayer:
    cfg = layer.get_config()
    shape = cfg.get("batch_shape") or cfg.get("batch_input_shape")
    dtype = cfg.get("dtype", "float32")
    if isinstance(dtype, dict):
        dtype = dtype.get("config", {}).get("name", "float32")
    if cfg.get("sparse") or cfg.get("ragged"):
        _refuse(layer, "sparse/ragged inputs have no TF.js equivalent")
    tdtype = "int32" if "int" in str(dtype) else ("bool" if dtype == "bool" else "float32")
    return TfjsLayer("InputLayer", {"batch_input_shape": list(shape), "dtype": tdtype,
                                    "sparse": False, "name": layer.name})


@TFJS_LAYERS.register("Dense")
def dense(ctx: Ctx, layer) -> TfjsLayer:
    c = layer.get_config()
    if c.get("lora_rank"):
        _refuse(layer, "LoRA-enabled Dense layers are not supported (merge the LoRA weights first)")
    if getattr(layer, "quantization_mode", None):
        _refuse(layer, f"quantized Keras layers ({layer.quantization_mode}) are not supported")
    conf = _base(layer) | {
        "units": int(c["units"]), "activation": _act(layer, c.get("activation")),
        "use_bias": bool(c.get("use_bias", True)),
        "kernel_initializer": _init(c.get("kernel_initializer")),
        "bias_initializer": _init(c.get("bias_initializer")),
        "kernel_regularizer": _reg(layer, c.get("kernel_regularizer"), "kernel_regularizer"),
        "bias_regularizer": _reg(layer, c.get("bias_regularizer"), "bias_regularizer"),
        "activity_regularizer": None,
        "kernel_constraint": _constraint(c.get("kernel_constraint")),
        "bias_constraint": _constraint(c.get("bias_constraint")),
    }
    return TfjsLayer("Dense", conf, _weights(layer.name, layer), MASK_KEEP)


@TFJS_LAYERS.register("Embedding")
def embedding(ctx: Ctx, layer) -> TfjsLayer:
    c = layer.get_config()
    if getattr(layer, "quantization_mode", None):
        _refuse(layer, f"quantized Keras layers ({layer.quantization_mode}) are not supported")
    if c.get("sparse"):
        _refuse(layer, "sparse embeddings are not supported")
    conf = _base(layer) | {
        "input_dim": int(c["input_dim"]), "output_dim": int(c["output_dim"]),
        "embeddings_initializer": _init(c.get("embeddings_initializer")),
        "embeddings_regularizer": _reg(layer, c.get("embeddings_regularizer"), "embeddings"),
        "activity_regularizer": None,
        "embeddings_constraint": _constraint(c.get("embeddings_constraint")),
        "mask_zero": bool(c.get("mask_zero", False)), "input_length": None,
    }
    return TfjsLayer("Embedding", conf, _weights(layer.name, layer, ["embeddings"]),
                     MASK_MAKE if conf["mask_zero"] else MASK_DROP)


@TFJS_LAYERS.register("Masking")
def masking(ctx: Ctx, layer) -> TfjsLayer:
    c = layer.get_config()
    return TfjsLayer("Masking", _base(layer) | {"mask_value": float(c.get("mask_value", 0.0))},
                     [], MASK_MAKE)


@TFJS_LAYERS.register("Dropout", "SpatialDropout1D", "GaussianNoise", "GaussianDropout")
def dropout(ctx: Ctx, layer) -> TfjsLayer:
    # inference-only export: every dropout/noise layer is the identity at predict time
    c = layer.get_config()
    return TfjsLayer("Dropout", _base(layer) | {"rate": float(c.get("rate", 0.0)),
                                                "noise_shape": None, "seed": None},
                     [], MASK_KEEP)


@TFJS_LAYERS.register("Activation")
def activation(ctx: Ctx, layer) -> TfjsLayer:
    c = layer.get_config()
    return TfjsLayer("Activation", _base(layer) | {"activation": _act(layer, c.get("activation"))},
                     [], MASK_KEEP)


@TFJS_LAYERS.register("RepeatVector")
def repeat_vector(ctx: Ctx, layer) -> TfjsLayer:
    return TfjsLayer("RepeatVector", _base(layer) | {"n": int(layer.get_config()["n"])})


@TFJS_LAYERS.register("Flatten")
def flatten(ctx: Ctx, layer) -> TfjsLayer:
    c = layer.get_config()
    if c.get("data_format", "channels_last") != "channels_last":
        _refuse(layer, "only data_format='channels_last' is supported")
    return TfjsLayer("Flatten", _base(layer) | {"data_format": "channels_last"})


@TFJS_LAYERS.register("Reshape")
def reshape(ctx: Ctx, layer) -> TfjsLayer:
    return TfjsLayer("Reshape", _base(layer) | {"target_shape": list(layer.get_config()["target_shape"])})


def _pool_cfg(layer) -> dict:
    c = layer.get_config()
    if c.get("keepdims"):
        _refuse(layer, "keepdims=True is not supported by TF.js global pooling")
    if c.get("data_format", "channels_last") != "channels_last":
        _refuse(layer, "only data_format='channels_last' is supported")
    return _base(layer) | {"data_format": "channels_last"}


@TFJS_LAYERS.register("GlobalMaxPooling1D")
def global_max_pool(ctx: Ctx, layer) -> TfjsLayer:
    # Keras 3 ignores a mask here (supports_masking=False) and so does TF.js.
    return TfjsLayer("GlobalMaxPooling1D", _pool_cfg(layer))


@TFJS_LAYERS.register("GlobalAveragePooling1D")
def global_avg_pool(ctx: Ctx, layer) -> TfjsLayer:
    conf = _pool_cfg(layer)
    if ctx.input_masked:  # Keras averages over valid steps only; TF.js's layer ignores masks
        return TfjsLayer(MASKED_GAP1D, conf, custom=True)
    return TfjsLayer("GlobalAveragePooling1D", conf)


@TFJS_LAYERS.register("Conv1D")
def conv1d(ctx: Ctx, layer) -> TfjsLayer:
    c = layer.get_config()
    if int(c.get("groups", 1)) != 1:
        _refuse(layer, "grouped convolutions (groups > 1) are not supported by TF.js Conv1D")
    if c.get("data_format", "channels_last") != "channels_last":
        _refuse(layer, "only data_format='channels_last' is supported")
    if c.get("lora_rank"):
        _refuse(layer, "LoRA-enabled layers are not supported")
    if c.get("padding") == "causal":
        _refuse(layer, "padding='causal' is not implemented by TF.js Conv1D "
                       "(\"The support for CAUSAL padding mode in conv1dWithBias is not implemented\")")
    ks = c["kernel_size"]
    conf = _base(layer) | {
        "filters": int(c["filters"]), "kernel_size": list(ks) if isinstance(ks, (list, tuple)) else [ks],
        "strides": list(c.get("strides", [1])), "padding": c.get("padding", "valid"),
        "data_format": "channels_last", "dilation_rate": list(c.get("dilation_rate", [1])),
        "activation": _act(layer, c.get("activation")), "use_bias": bool(c.get("use_bias", True)),
        "kernel_initializer": _init(c.get("kernel_initializer")),
        "bias_initializer": _init(c.get("bias_initializer")),
        "kernel_regularizer": _reg(layer, c.get("kernel_regularizer"), "kernel"),
        "bias_regularizer": _reg(layer, c.get("bias_regularizer"), "bias"),
        "activity_regularizer": None,
        "kernel_constraint": _constraint(c.get("kernel_constraint")),
        "bias_constraint": _constraint(c.get("bias_constraint")),
    }
    return TfjsLayer("Conv1D", conf, _weights(layer.name, layer))


@TFJS_LAYERS.register("MaxPooling1D", "AveragePooling1D")
def pool1d(ctx: Ctx, layer) -> TfjsLayer:
    c = layer.get_config()
    if c.get("data_format", "channels_last") != "channels_last":
        _refuse(layer, "only data_format='channels_last' is supported")
    pool = c.get("pool_size")
    strides = c.get("strides") or pool
    conf = _base(layer) | {
        "pool_size": list(pool) if isinstance(pool, (list, tuple)) else [pool],
        "strides": list(strides) if isinstance(strides, (list, tuple)) else [strides],
        "padding": c.get("padding", "valid"), "data_format": "channels_last",
    }
    return TfjsLayer(type(layer).__name__, conf)


@TFJS_LAYERS.register("Concatenate")
def concatenate(ctx: Ctx, layer) -> TfjsLayer:
    return TfjsLayer("Concatenate", _base(layer) | {"axis": int(layer.get_config().get("axis", -1))},
                     [], MASK_KEEP)


@TFJS_LAYERS.register("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum")
def merge(ctx: Ctx, layer) -> TfjsLayer:
    return TfjsLayer(type(layer).__name__, _base(layer), [], MASK_KEEP)


# --------------------------------------------------------------------------- recurrent
_RNN_COMMON = ("return_sequences", "return_state", "go_backwards", "stateful")


def _rnn_conf(layer, c: dict, cls: str) -> dict:
    if c.get("stateful"):
        _refuse(layer, "stateful RNNs are not supported by the rnnedge TF.js export "
                       "(use the streaming step model of the ONNX/TFLite exports)")
    conf = _base(layer) | {k: bool(c.get(k, False)) for k in _RNN_COMMON} | {
        "unroll": False,
        "units": int(c["units"]),
        "activation": _act(layer, c.get("activation"), "activation"),
        "use_bias": bool(c.get("use_bias", True)),
        "kernel_initializer": _init(c.get("kernel_initializer")),
        "recurrent_initializer": _init(c.get("recurrent_initializer")),
        "bias_initializer": _init(c.get("bias_initializer")),
        "kernel_regularizer": _reg(layer, c.get("kernel_regularizer"), "kernel"),
        "recurrent_regularizer": _reg(layer, c.get("recurrent_regularizer"), "recurrent"),
        "bias_regularizer": _reg(layer, c.get("bias_regularizer"), "bias"),
        "activity_regularizer": None,
        "kernel_constraint": _constraint(c.get("kernel_constraint")),
        "recurrent_constraint": _constraint(c.get("recurrent_constraint")),
        "bias_constraint": _constraint(c.get("bias_constraint")),
        "dropout": float(c.get("dropout", 0.0)),
        "recurrent_dropout": float(c.get("recurrent_dropout", 0.0)),
    }
    if cls != "SimpleRNN":
        conf["recurrent_activation"] = _act(layer, c.get("recurrent_activation"),
                                            "recurrent_activation")
        conf["implementation"] = 2
    if cls == "LSTM":
        conf["unit_forget_bias"] = bool(c.get("unit_forget_bias", True))
    if cls == "GRU":
        conf["reset_after"] = bool(c.get("reset_after", True))
    return conf


def _rnn(layer, prefix: str | None = None) -> TfjsLayer:
    """An LSTM / GRU / SimpleRNN layer (also used for the layer inside Bidirectional)."""
    cls = type(layer).__name__
    c = layer.get_config()
    conf = _rnn_conf(layer, c, cls)
    class_name = cls
    custom = False
    if cls == "GRU" and conf["reset_after"]:
        class_name, custom = GRU_RESET_AFTER, True
    short = ["kernel", "recurrent_kernel", "bias"][: len(layer.weights)]
    return TfjsLayer(class_name, conf, _weights(prefix or layer.name, layer, short),
                     MASK_KEEP if conf["return_sequences"] else MASK_DROP, custom,
                     zero_masked_output=bool(c.get("zero_output_for_mask")) and conf["return_sequences"])


@TFJS_LAYERS.register("LSTM", "GRU", "SimpleRNN")
def recurrent(ctx: Ctx, layer) -> TfjsLayer:
    return _rnn(layer)


@TFJS_LAYERS.register("Bidirectional")
def bidirectional(ctx: Ctx, layer) -> TfjsLayer:
    fwd, bwd = layer.forward_layer, layer.backward_layer
    for sub in (fwd, bwd):
        if type(sub).__name__ not in ("LSTM", "GRU", "SimpleRNN"):
            _refuse(layer, f"wraps {type(sub).__name__}; only LSTM, GRU and SimpleRNN are supported")
    fc, bc = fwd.get_config(), bwd.get_config()
    same = {k: v for k, v in fc.items() if k not in ("name", "go_backwards")}
    other = {k: v for k, v in bc.items() if k not in ("name", "go_backwards")}
    if type(fwd) is not type(bwd) or same != other or bool(fc.get("go_backwards")) == bool(bc.get("go_backwards")):
        _refuse(layer, "a backward_layer that is not the mirror of the forward layer "
                       "(TF.js Bidirectional always derives it from the forward layer)")
    # TF.js names the wrapped layers forward_<name> / backward_<name>: give it the bare name
    inner_name = fwd.name[len("forward_"):] if fwd.name.startswith("forward_") else fwd.name
    f = _rnn(fwd, f"{layer.name}/forward_{inner_name}")
    b = _rnn(bwd, f"{layer.name}/backward_{inner_name}")
    inner_conf = dict(f.config, name=inner_name)
    merge_mode = layer.merge_mode
    conf = _base(layer) | {"layer": {"class_name": f.class_name, "config": inner_conf},
                           "merge_mode": merge_mode}
    rs = inner_conf["return_sequences"]
    return TfjsLayer("Bidirectional", conf, f.weights + b.weights,
                     MASK_KEEP if rs else MASK_DROP, f.custom,
                     zero_masked_output=rs and (f.zero_masked_output or b.zero_masked_output))


@TFJS_LAYERS.register("TimeDistributed")
def time_distributed(ctx: Ctx, layer) -> TfjsLayer:
    inner = layer.layer
    name = type(inner).__name__
    if name not in ("Dense", "Dropout", "Activation"):
        _refuse(layer, f"wraps {name}; TimeDistributed(Dense / Dropout / Activation) is supported")
    sub = TFJS_LAYERS.get(inner)(Ctx(), inner)
    # TF.js builds the wrapped layer inside the wrapper's name scope: weights are <td>/<w>
    weights = [(f"{layer.name}/{n.split('/')[-1]}", w) for n, w in sub.weights]
    conf = _base(layer) | {"layer": {"class_name": sub.class_name, "config": sub.config}}
    return TfjsLayer("TimeDistributed", conf, weights, MASK_KEEP)


# --------------------------------------------------------------------------- refusals
_REFUSED = {
    "Attention": "TF.js layers has no Attention layer",
    "AdditiveAttention": "TF.js layers has no AdditiveAttention layer",
    "MultiHeadAttention": "TF.js layers cannot load a MultiHeadAttention layer",
    "GroupQueryAttention": "TF.js layers has no attention layers",
    "ConvLSTM1D": "not supported by the rnnedge TF.js export",
    "RNN": "generic RNN(cell) layers are not supported (use LSTM / GRU / SimpleRNN)",
    "Lambda": "Lambda layers hold Python code that TF.js cannot run",
}


def _make_refusal(cls: str, why: str) -> Callable:
    def refuse(ctx: Ctx, layer) -> TfjsLayer:
        _refuse(layer, why)

    refuse.__name__ = f"refuse_{cls}"
    return refuse


for _cls, _why in _REFUSED.items():
    TFJS_LAYERS.register(_cls)(_make_refusal(_cls, _why))
