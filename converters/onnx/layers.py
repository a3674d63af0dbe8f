"""One ONNX converter per (non-recurrent) Keras layer class, plus the Keras ops that
Keras 3 records as nodes in functional graphs (``NotEqual`` for masks, ``GetItem``...).

Signature of every converter: ``fn(ctx, layer, args, kwargs) -> Value | list[Value]``.
Mask propagation follows Keras: ``compute_mask`` of each layer (see keras/src/layers).
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from converters.onnx.activations import activation_name
from converters.onnx.graph import ONNX_LAYERS, Value
from rnnedge.errors import ConversionError


def _w(var) -> np.ndarray:
    return np.asarray(var.numpy() if hasattr(var, "numpy") else var, dtype=np.float32)


def _first(args):
    return args[0][0] if isinstance(args[0], (list, tuple)) else args[0]


def _err(layer, why: str) -> ConversionError:
    return ConversionError(f"layer '{layer.name}' ({type(layer).__name__}): {why}", layer=layer.name,
                           fmt="onnx")


# --------------------------------------------------------------------------- identity-like
@ONNX_LAYERS.register("Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise",
                      "GaussianDropout", "AlphaDropout", "ActivityRegularization", "Identity")
def convert_identity(ctx, layer, args, kwargs):
    x = _first(args)
    return Value(x.name, mask=ctx.input_mask(args, kwargs))


@ONNX_LAYERS.register("Rescaling")
def convert_rescaling(ctx, layer, args, kwargs):
    """``x * scale + offset`` (scale/offset scalars or broadcastable arrays)."""
    g = ctx.graph
    x = _first(args)
    xin = x.name if x.dtype == "float32" else g.cast(x.name, np.float32)
    y = g.op("Mul", [xin, g.const(np.asarray(layer.scale, np.float32), hint=f"{layer.name}/scale")])
    if np.any(np.asarray(layer.offset) != 0):
        y = g.op("Add", [y, g.const(np.asarray(layer.offset, np.float32), hint=f"{layer.name}/offset")])
    return Value(y, mask=ctx.input_mask(args, kwargs))


@ONNX_LAYERS.register("Discretization")
def convert_discretization(ctx, layer, args, kwargs):
    """output_mode "int": the bucket index = how many bin boundaries are <= x (tf bucketize)."""
    g = ctx.graph
    x = _first(args)
    if layer.output_mode != "int" or layer.bin_boundaries is None:
        raise _err(layer, f"output_mode={layer.output_mode!r} (or unadapted boundaries) is not converted natively")
    b = g.const(np.asarray(layer.bin_boundaries, np.float32), hint=f"{layer.name}/boundaries")
    xin = x.name if x.dtype == "float32" else g.cast(x.name, np.float32)
    ge = g.cast(g.op("Not", [g.op("Less", [g.unsqueeze(xin, [-1]), b])]), np.int64)
    y = g.reduce("ReduceSum", ge, [-1], keepdims=0, hint=layer.name)
    out_dt = np.dtype(str(layer.output_dtype))  # int32 for output_mode "int"
    return Value(g.cast(y, out_dt) if out_dt != np.int64 else y)


@ONNX_LAYERS.register("Activation")
def convert_activation(ctx, layer, args, kwargs):
    x = _first(args)
    return Value(ctx.activation(x.name, layer.activation, layer), mask=ctx.input_mask(args, kwargs))


@ONNX_LAYERS.register("Softmax")
def convert_softmax(ctx, layer, args, kwargs):
    x = _first(args)
    if kwargs.get("mask") is not None:
        raise _err(layer, "Softmax with a mask is not supported")
    axis = layer.axis if isinstance(layer.axis, int) else None
    if axis is None:
        raise _err(layer, "Softmax over several axes is not supported")
    return Value(ctx.graph.op("Softmax", [x.name], axis=axis), mask=ctx.input_mask(args, kwargs))


@ONNX_LAYERS.register("ReLU")
def convert_relu_layer(ctx, layer, args, kwargs):
    """keras.layers.ReLU with every argument, as keras/src/activations/activations.py ReLU.static_call:
    slope != 0 with no max_value and no threshold is a leaky ReLU; otherwise
    ``clip(x if x > threshold else 0, 0, max_value) - slope * relu(threshold - x)``."""
    x = _first(args)
    g = ctx.graph
    slope, thr, top = float(layer.negative_slope), float(layer.threshold), layer.max_value
    mask = ctx.input_mask(args, kwargs)
    if slope and top is None and not thr:
        return Value(g.op("LeakyRelu", [x.name], alpha=slope, hint=layer.name), mask=mask)
    if thr:
        pos = g.op("Where", [g.op("Greater", [x.name, g.const(np.float32(thr))]), x.name, g.const(np.float32(0))])
    else:
        pos = g.op("Relu", [x.name])
    if top is not None:
        pos = g.op("Clip", [pos, g.const(np.float32(0)), g.const(np.float32(top))])
    if slope:
        neg = g.op("Relu", [g.op("Sub", [g.const(np.float32(thr)), x.name]) if thr else g.op("Neg", [x.name])])
        pos = g.op("Sub", [pos, g.op("Mul", [neg, g.const(np.float32(slope))])])
    return Value(pos, mask=mask)


@ONNX_LAYERS.register("LeakyReLU")
def convert_leaky_relu(ctx, layer, args, kwargs):
    """tf.nn.leaky_relu: x if x > 0 else slope * x (ONNX LeakyRelu)."""
    x = _first(args)
    return Value(ctx.graph.op("LeakyRelu", [x.name], alpha=float(layer.negative_slope), hint=layer.name),
                 mask=ctx.input_mask(args, kwargs))


@ONNX_LAYERS.register("ELU")
def convert_elu(ctx, layer, args, kwargs):
    """keras ELU: x if x > 0 else alpha * (exp(x) - 1) (ONNX Elu)."""
    x = _first(args)
    return Value(ctx.graph.op("Elu", [x.name], alpha=float(layer.alpha), hint=layer.name),
                 mask=ctx.input_mask(args, kwargs))


@ONNX_LAYERS.register("PReLU")
def convert_prelu(ctx, layer, args, kwargs):
    """relu(x) - alpha * relu(-x), alpha of shape input_shape[1:] (1 on shared axes): ONNX PRelu."""
    x = _first(args)
    g = ctx.graph
    alpha = g.const(_w(layer.alpha), hint=f"{layer.name}/alpha")
    return Value(g.op("PRelu", [x.name, alpha], hint=layer.name), mask=ctx.input_mask(args, kwargs))


# --------------------------------------------------------------------------- embedding & masks
@ONNX_LAYERS.register("Embedding")
def convert_embedding(ctx, layer, args, kwargs):
    g = ctx.graph
    ids = _first(args)
    if getattr(layer, "quantization_mode", None):
        raise _err(layer, "quantized Embedding layers are not supported")
    idx = ids.name
    if "int" not in ids.dtype:
        idx = g.cast(idx, np.int64)
    table = g.const(_w(layer.embeddings), hint=f"{layer.name}/embeddings")
    y = g.op("Gather", [table, idx], axis=0, hint=layer.name)
    mask = None
    if layer.mask_zero:
        zero = g.const(np.zeros((), dtype=np.int64 if "int" not in ids.dtype else ids.dtype))
        mask = g.not_equal(idx, zero, hint=f"{layer.name}/mask")
    return Value(y, mask=mask)


@ONNX_LAYERS.register("Masking")
def convert_masking(ctx, layer, args, kwargs):
    g = ctx.graph
    x = _first(args)
    mv = g.const(np.float32(layer.mask_value))
    ne = g.not_equal(x.name, mv)
    keep = g.reduce("ReduceMax", g.cast(ne, np.float32), [-1], keepdims=1)  # any(x != v, -1)
    y = g.op("Mul", [x.name, keep], hint=layer.name)
    mask = g.op("Cast", [g.squeeze(keep, [-1])], to=9, hint=f"{layer.name}/mask")  # bool
    return Value(y, mask=mask)


def _binary_op(onnx_op):
    def convert(ctx, op, args, kwargs):
        g = ctx.graph
        a, b = args[0], args[1]

        def name_of(v, other):
            if isinstance(v, Value):
                return v.name
            dt = other.dtype if isinstance(other, Value) else "float32"
            return g.const(np.asarray(v, dtype=dt))

        if onnx_op == "NotEqual":
            return Value(g.not_equal(name_of(a, b), name_of(b, a)))
        return Value(g.op(onnx_op, [name_of(a, b), name_of(b, a)]))

    return convert


for _k, _o in {"NotEqual": "NotEqual", "Equal": "Equal", "Greater": "Greater", "Less": "Less",
               "LogicalAnd": "And", "LogicalOr": "Or"}.items():
    ONNX_LAYERS.register(f"ops.{_k}")(_binary_op(_o))


def _arith_op(onnx_op):
    """``x + y``, ``x * 2.0``... on float tensors of one dtype (other dtypes: the fallback)."""
    def convert(ctx, op, args, kwargs):
        g = ctx.graph
        a, b = args[0], args[1]
        dtypes = {v.dtype for v in (a, b) if isinstance(v, Value)}
        if len(dtypes) != 1 or not dtypes <= {"float32", "float64", "float16"}:
            raise ConversionError(f"{type(op).__name__} of {sorted(dtypes)} tensors is not converted natively",
                                  layer=op.name, fmt="onnx")
        dt = dtypes.pop()
        names = [v.name if isinstance(v, Value) else g.const(np.asarray(v, dtype=dt)) for v in (a, b)]
        return Value(g.op(onnx_op, names))

    return convert


for _k, _o in {"Add": "Add", "Subtract": "Sub", "Multiply": "Mul", "Divide": "Div", "TrueDivide": "Div"}.items():
    ONNX_LAYERS.register(f"ops.{_k}")(_arith_op(_o))


@ONNX_LAYERS.register("ops.Any", "ops.All")
def convert_any(ctx, op, args, kwargs):
    g = ctx.graph
    x = args[0]
    axis = kwargs.get("axis", args[1] if len(args) > 1 else getattr(op, "axis", None))
    keepdims = kwargs.get("keepdims", args[2] if len(args) > 2 else getattr(op, "keepdims", False))
    axes = [axis] if isinstance(axis, int) else (list(range(x.rank)) if axis is None else list(axis))
    red = "ReduceMax" if type(op).__name__ == "Any" else "ReduceMin"
    r = g.reduce(red, g.cast(x.name, np.float32), axes, keepdims=int(bool(keepdims)))
    return Value(g.cast(r, np.bool_))


# Keras records these when it computes a mask symbolically (Concatenate.compute_mask...); the
# layer after it receives that mask explicitly (mask=...), so they are converted like any op.
@ONNX_LAYERS.register("ops.ExpandDims")
def convert_expand_dims(ctx, op, args, kwargs):
    x = args[0]
    axes = op.axis if isinstance(op.axis, (list, tuple)) else [op.axis]
    rank = x.rank + len(axes)
    return Value(ctx.graph.unsqueeze(x.name, sorted(int(a) % rank for a in axes)))


@ONNX_LAYERS.register("ops.ZerosLike", "ops.OnesLike")
def convert_fill_like(ctx, op, args, kwargs):
    g = ctx.graph
    x = args[0]
    dtype = np.dtype(str(op.dtype) if op.dtype is not None else x.dtype)
    fill = np.zeros(1, dtype) if type(op).__name__ == "ZerosLike" else np.ones(1, dtype)
    return Value(g.op("ConstantOfShape", [g.shape(x.name)], value=_tensor_attr(fill)))


@ONNX_LAYERS.register("ops.Concatenate")
def convert_concat_op(ctx, op, args, kwargs):
    xs = list(args[0])
    axis = int(op.axis) % xs[0].rank if op.axis is not None else None
    if axis is None:
        raise ConversionError("concatenate with axis=None is not converted natively", layer=op.name, fmt="onnx")
    return Value(ctx.graph.op("Concat", [v.name for v in xs], axis=axis))


@ONNX_LAYERS.register("ops.LogicalNot")
def convert_logical_not(ctx, op, args, kwargs):
    return Value(ctx.graph.op("Not", [ctx.as_bool(args[0].name, args[0].dtype)]))


@ONNX_LAYERS.register("ops.Cast")
def convert_cast(ctx, op, args, kwargs):
    return Value(ctx.graph.cast(args[0].name, np.dtype(str(op.dtype))), mask=args[0].mask)


@ONNX_LAYERS.register("ops.GetItem")
def convert_getitem(ctx, op, args, kwargs):
    """``x[key]`` with ints, slices, None and Ellipsis (Keras 3 records it as a GetItem node)."""
    g = ctx.graph
    x, key = args[0], args[1]
    if not isinstance(key, tuple):
        key = (key,)
    rank = x.rank
    n_real = sum(1 for k in key if k is not None and k is not Ellipsis)
    if any(k is Ellipsis for k in key):
        i = key.index(Ellipsis)
        key = key[:i] + (slice(None),) * (rank - n_real) + key[i + 1:]
    key = key + (slice(None),) * (rank - sum(1 for k in key if k is not None))
    cur = x.name
    unsq = any(k is None for k in key)
    # rebuild slice/gather axes in input coordinates
    starts, ends, axes, steps, gathers = [], [], [], [], []
    ia = 0
    for k in key:
        if k is None:
            continue
        if isinstance(k, slice) and k != slice(None):
            st = 1 if k.step is None else int(k.step)
            starts.append(k.start if k.start is not None else (0 if st > 0 else -1))
            ends.append(k.stop if k.stop is not None else (2**62 if st > 0 else -(2**63)))
            axes.append(ia)
            steps.append(st)
        elif isinstance(k, (int, np.integer)):
            gathers.append((ia, int(k)))
        ia += 1
    if axes:
        cur = g.op("Slice", [cur, g.i64(starts), g.i64(ends), g.i64(axes), g.i64(steps)])
    for ax, idx in sorted(gathers, reverse=True):
        cur = g.op("Gather", [cur, g.const(np.asarray(idx, np.int64))], axis=ax)
    if unsq:
        # output position of each None, counting the axes that survive
        out_pos, pos = [], 0
        for k in key:
            if k is None:
                out_pos.append(pos)
                pos += 1
            elif isinstance(k, slice):
                pos += 1
        cur = g.unsqueeze(cur, out_pos)
    return Value(cur)


# --------------------------------------------------------------------------- dense-like
def _matmul(ctx, x: Value, kernel: np.ndarray, bias: np.ndarray | None, hint: str) -> str:
    g = ctx.graph
    k = g.const(kernel, hint=f"{hint}/kernel")
    if x.rank == 2 and bias is not None:
        return g.op("Gemm", [x.name, k, g.const(bias, hint=f"{hint}/bias")], hint=hint)
    y = g.op("MatMul", [x.name, k], hint=hint)
    if bias is not None:
        y = g.op("Add", [y, g.const(bias, hint=f"{hint}/bias")], hint=hint)
    return y


def _dense(ctx, layer, x: Value, hint=None) -> str:
    if getattr(layer, "quantization_mode", None):
        raise _err(layer, "quantized Dense layers are not supported")
    kernel = _w(layer.kernel)
    bias = _w(layer.bias) if layer.use_bias else None
    y = _matmul(ctx, x, kernel, bias, layer.name)
    if activation_name(layer.activation) == "linear":  # a BatchNormalization after it can fold in
        ctx.linear[y] = (_matmul, (x, kernel, bias, layer.name))
    return ctx.activation(y, layer.activation, layer)


@ONNX_LAYERS.register("Dense")
def convert_dense(ctx, layer, args, kwargs):
    x = _first(args)
    return Value(_dense(ctx, layer, x), mask=ctx.input_mask(args, kwargs))


# --------------------------------------------------------------------------- normalization
def _channel_shape(rank: int, axis: int) -> list[int]:
    shape = [1] * rank
    shape[axis] = -1
    return shape


@ONNX_LAYERS.register("BatchNormalization")
def convert_batch_norm(ctx, layer, args, kwargs):
    """Inference batch normalization (moving statistics), as tf.nn.batch_normalization:
    ``x * s + (beta - mean * s)`` with ``s = gamma / sqrt(var + epsilon)``. Folded into the Dense
    or Conv1D (linear activation) that feeds it when the normalised axis is their output axis:
    one MatMul/Conv with scaled weights; else one Mul and one Add. The mask passes on."""
    g = ctx.graph
    x = _first(args)
    axis = int(layer.axis) % x.rank
    f64 = np.float64
    var = _w(layer.moving_variance).astype(f64)
    mean = _w(layer.moving_mean).astype(f64)
    gamma = _w(layer.gamma).astype(f64) if layer.scale else np.ones_like(var)
    beta = _w(layer.beta).astype(f64) if layer.center else np.zeros_like(var)
    scale = gamma / np.sqrt(var + float(layer.epsilon))
    shift = beta - mean * scale
    mask = ctx.input_mask(args, kwargs)
    fold = ctx.linear.get(x.name)
    if fold is not None and axis == x.rank - 1:
        rebuild, (src, kernel, bias, hint) = fold
        k = (kernel.astype(f64) * scale).astype(np.float32)  # output channels on the last axis
        b = ((bias.astype(f64) if bias is not None else 0.0) * scale + shift).astype(np.float32)
        return Value(rebuild(ctx, src, k, b, f"{hint}+{layer.name}"), mask=mask)
    shape = _channel_shape(x.rank, axis)
    y = g.op("Mul", [x.name, g.const(scale.astype(np.float32).reshape(shape), hint=f"{layer.name}/scale")])
    y = g.op("Add", [y, g.const(shift.astype(np.float32).reshape(shape), hint=f"{layer.name}/shift")],
             hint=layer.name)
    return Value(y, mask=mask)


@ONNX_LAYERS.register("Normalization")
def convert_normalization(ctx, layer, args, kwargs):
    """keras.layers.Normalization (adapted or given mean/variance), as its ``call``:
    ``(x - mean) / max(sqrt(variance), epsilon)``, or ``mean + x * max(...)`` with ``invert=True``;
    mean and variance in the layer's broadcast shape."""
    g = ctx.graph
    x = _first(args)
    if layer.mean is None:
        raise _err(layer, "the layer was never built or adapted (no mean/variance)")
    from keras import backend as kb

    mean = _w(layer.mean)
    denom = np.maximum(np.sqrt(_w(layer.variance)), np.float32(kb.epsilon())).astype(np.float32)
    xin = x.name if x.dtype == "float32" else g.cast(x.name, np.float32)
    m = g.const(mean, hint=f"{layer.name}/mean")
    d = g.const(denom, hint=f"{layer.name}/std")
    if layer.invert:
        y = g.op("Add", [m, g.op("Mul", [xin, d])], hint=layer.name)
    else:
        y = g.op("Div", [g.op("Sub", [xin, m]), d], hint=layer.name)
    return Value(y, mask=ctx.input_mask(args, kwargs))


@ONNX_LAYERS.register("LayerNormalization")
def convert_layer_norm(ctx, layer, args, kwargs):
    g = ctx.graph
    x = _first(args)
    if getattr(layer, "rms_scaling", False):
        raise _err(layer, "rms_scaling=True is not supported")
    axes = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
    axes = sorted(a % x.rank for a in axes)
    if axes != list(range(axes[0], x.rank)):
        raise _err(layer, f"normalising over axes {layer.axis} is not supported (trailing axes only)")
    nshape = [x.shape[a] for a in axes]
    gamma = _w(layer.gamma) if layer.scale else np.ones(nshape, np.float32)
    beta = _w(layer.beta) if layer.center else np.zeros(nshape, np.float32)
    if ctx.opset >= 17:
        y = g.op("LayerNormalization", [x.name, g.const(gamma, hint=f"{layer.name}/gamma"),
                                        g.const(beta, hint=f"{layer.name}/beta")],
                 axis=axes[0], epsilon=float(layer.epsilon), hint=layer.name)
    else:
        mean = g.reduce("ReduceMean", x.name, axes, keepdims=1)
        d = g.op("Sub", [x.name, mean])
        var = g.reduce("ReduceMean", g.op("Mul", [d, d]), axes, keepdims=1)
        inv = g.op("Reciprocal", [g.op("Sqrt", [g.op("Add", [var, g.const(np.float32(layer.epsilon))])])])
        y = g.op("Add", [g.op("Mul", [g.op("Mul", [d, inv]), g.const(gamma)]), g.const(beta)])
    return Value(y, mask=ctx.input_mask(args, kwargs))


# --------------------------------------------------------------------------- pooling
def _spatial_axes(layer, rank: int) -> list[int]:
    return list(range(1, rank - 1)) if layer.data_format == "channels_last" else list(range(2, rank))


@ONNX_LAYERS.register("GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalMaxPooling3D")
def convert_global_max_pool(ctx, layer, args, kwargs):
    x = _first(args)
    return Value(ctx.graph.reduce("ReduceMax", x.name, _spatial_axes(layer, x.rank), keepdims=int(layer.keepdims),
                                  hint=layer.name))


@ONNX_LAYERS.register("GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalAveragePooling3D")
def convert_global_avg_pool(ctx, layer, args, kwargs):
    """Mean over the spatial axes; GlobalAveragePooling1D with a mask averages the valid steps."""
    g = ctx.graph
    x = _first(args)
    axes = _spatial_axes(layer, x.rank)
    kd = int(layer.keepdims)
    mask = ctx.call_mask(args, kwargs) if type(layer).__name__ == "GlobalAveragePooling1D" else None
    if mask is None:
        return Value(g.reduce("ReduceMean", x.name, axes, keepdims=kd, hint=layer.name))
    axis = axes[0]
    m = g.unsqueeze(ctx.mask_float(mask), [2 if axis == 1 else 1])
    s = g.reduce("ReduceSum", g.op("Mul", [x.name, m]), [axis], keepdims=kd)
    n = g.reduce("ReduceSum", m, [axis], keepdims=kd)
    return Value(g.op("Div", [s, n], hint=layer.name))


@ONNX_LAYERS.register("MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "AveragePooling1D", "AveragePooling2D",
                      "AveragePooling3D")
def convert_pool(ctx, layer, args, kwargs):
    """tf.nn.max_pool / avg_pool: windows pool_size, strides; "valid" drops the tail, "same" pads
    the end (ONNX SAME_UPPER), padded cells never count (max: -inf, average: count_include_pad=0)."""
    g = ctx.graph
    x = _first(args)
    nd = len(layer.pool_size)
    cl = layer.data_format == "channels_last"
    to_first = [0, nd + 1] + list(range(1, nd + 1))
    xin = g.transpose(x.name, to_first) if cl else x.name
    attrs = dict(kernel_shape=[int(k) for k in layer.pool_size], strides=[int(s) for s in layer.strides])
    if layer.padding == "valid":
        attrs["pads"] = [0] * (2 * nd)
    elif layer.padding == "same":
        attrs["auto_pad"] = "SAME_UPPER"
    else:
        raise _err(layer, f"padding={layer.padding!r} is not supported")
    if layer.pool_mode == "max":
        y = g.op("MaxPool", [xin], hint=layer.name, **attrs)
    else:
        y = g.op("AveragePool", [xin], count_include_pad=0, hint=layer.name, **attrs)
    return Value(g.transpose(y, [0] + list(range(2, nd + 2)) + [1]) if cl else y)


# --------------------------------------------------------------------------- conv
def _conv1d(ctx, x: Value, kernel: np.ndarray, bias: np.ndarray | None, hint: str, conv: dict) -> str:
    """TF Conv1D (channels_last) as ONNX Conv on (B, C, T); kernel (k, in/groups, out)."""
    g = ctx.graph
    w = g.const(np.ascontiguousarray(kernel.transpose(2, 1, 0)), hint=f"{hint}/kernel")
    ins = [g.transpose(x.name, [0, 2, 1]), w] + ([g.const(bias, hint=f"{hint}/bias")] if bias is not None else [])
    return g.transpose(g.op("Conv", ins, hint=hint, **conv), [0, 2, 1])


@ONNX_LAYERS.register("Conv1D")
def convert_conv1d(ctx, layer, args, kwargs):
    x = _first(args)
    if layer.data_format != "channels_last":
        raise _err(layer, "data_format='channels_first' is not supported")
    k = _w(layer.kernel)  # (k, in/groups, out)
    ksz, (d,), (s,) = k.shape[0], layer.dilation_rate, layer.strides
    attrs = dict(kernel_shape=[ksz], dilations=[d], strides=[s], group=int(layer.groups))
    if layer.padding == "valid":
        attrs["pads"] = [0, 0]
    elif layer.padding == "same" and s == 1:  # TF: total (k-1)*d, the extra one at the end
        total = (ksz - 1) * d
        attrs["pads"] = [total // 2, total - total // 2]
    elif layer.padding == "same":
        attrs["auto_pad"] = "SAME_UPPER"  # onnxruntime: no dilation with auto_pad
    elif layer.padding == "causal":
        attrs["pads"] = [(ksz - 1) * d, 0]
    else:
        raise _err(layer, f"padding={layer.padding!r} is not supported")
    bias = _w(layer.bias) if layer.use_bias else None
    y = _conv1d(ctx, x, k, bias, layer.name, attrs)
    if activation_name(layer.activation) == "linear":
        ctx.linear[y] = (lambda c, x_, k_, b_, h_: _conv1d(c, x_, k_, b_, h_, attrs), (x, k, bias, layer.name))
    return Value(ctx.activation(y, layer.activation, layer))


# --------------------------------------------------------------------------- shape layers
@ONNX_LAYERS.register("Flatten")
def convert_flatten(ctx, layer, args, kwargs):
    x = _first(args)
    if x.rank <= 2:
        return Value(x.name)
    return Value(ctx.graph.op("Flatten", [x.name], axis=1, hint=layer.name))


@ONNX_LAYERS.register("Reshape")
def convert_reshape(ctx, layer, args, kwargs):
    g = ctx.graph
    x = _first(args)
    target = [0] + [int(d) for d in layer.target_shape]
    return Value(g.op("Reshape", [x.name, g.i64(target)], hint=layer.name))


@ONNX_LAYERS.register("RepeatVector")
def convert_repeat_vector(ctx, layer, args, kwargs):
    g = ctx.graph
    x = _first(args)
    y = g.op("Tile", [g.unsqueeze(x.name, [1]), g.i64([1, int(layer.n), 1])], hint=layer.name)
    return Value(y)


@ONNX_LAYERS.register("Permute")
def convert_permute(ctx, layer, args, kwargs):
    x = _first(args)
    return Value(ctx.graph.transpose(x.name, [0] + [int(d) for d in layer.dims]))


@ONNX_LAYERS.register("ZeroPadding1D")
def convert_zero_padding1d(ctx, layer, args, kwargs):
    """Zeros before and after the steps axis (axis 2 with channels_first)."""
    g = ctx.graph
    x = _first(args)
    axis = 2 if layer.data_format == "channels_first" else 1
    pads = [0] * 6
    pads[axis], pads[3 + axis] = int(layer.padding[0]), int(layer.padding[1])
    return Value(g.op("Pad", [x.name, g.i64(pads)], mode="constant", hint=layer.name))


@ONNX_LAYERS.register("Cropping1D")
def convert_cropping1d(ctx, layer, args, kwargs):
    """``x[:, start:-end]`` along the steps axis."""
    g = ctx.graph
    x = _first(args)
    a, b = int(layer.cropping[0]), int(layer.cropping[1])
    end = -b if b else 2**62
    return Value(g.op("Slice", [x.name, g.i64([a]), g.i64([end]), g.i64([1])], hint=layer.name))


@ONNX_LAYERS.register("UpSampling1D")
def convert_upsampling1d(ctx, layer, args, kwargs):
    """Every step repeated ``size`` times (ops.repeat along axis 1): (B, T, F) -> (B, T * size, F)."""
    g = ctx.graph
    x = _first(args)
    size = int(layer.size)
    tiled = g.op("Tile", [g.unsqueeze(x.name, [2]), g.i64([1, 1, size, 1])])
    f = x.shape[-1]
    shape = g.i64([0, -1, int(f)]) if f is not None else g.op(
        "Concat", [g.i64([0, -1]), g.shape(x.name, 2, 3)], axis=0)
    return Value(g.op("Reshape", [tiled, shape], hint=layer.name))


# --------------------------------------------------------------------------- merging
# Keras 3 merge layers (keras/src/layers/merging): masks are (batch, steps) for (batch, steps, ...)
# inputs and broadcast over the trailing axes (expand_dims(mask, -1)).
def _merge_mask(ctx, values: list[Value]):
    """Merge.compute_mask: OR of the masks, None when any input has none."""
    masks = [v.mask for v in values]
    if any(m is None for m in masks):
        return None
    out = masks[0]
    for m in masks[1:]:
        out = ctx.graph.op("Or", [out, m])
    return out


def _merge_inputs(ctx, args) -> list[Value]:
    """The inputs, lower-rank ones given unit axes at 1 (Merge.call's expand_dims(x, axis=1))."""
    xs = list(args[0]) if isinstance(args[0], (list, tuple)) else list(args)
    top = max(v.rank for v in xs)
    out = []
    for v in xs:
        if v.rank < top:
            v = replace(v, name=ctx.graph.unsqueeze(v.name, list(range(1, 1 + top - v.rank))),
                        shape=(v.shape[0],) + (1,) * (top - v.rank) + tuple(v.shape[1:]))
        out.append(v)
    return out


def _inputs_list(args) -> list[Value]:
    return list(args[0]) if isinstance(args[0], (list, tuple)) else list(args)


def _bcast(ctx, mask: str) -> str:
    return ctx.graph.unsqueeze(mask, [-1])


@ONNX_LAYERS.register("Add", "Subtract", "Average")
def convert_add_sub_avg(ctx, layer, args, kwargs):
    """Plain sums/differences/means (masks do not change the values); mask: OR of all masks."""
    g = ctx.graph
    xs = _merge_inputs(ctx, args)
    cls = type(layer).__name__
    y = xs[0].name
    for v in xs[1:]:
        y = g.op("Sub" if cls == "Subtract" else "Add", [y, v.name])
    if cls == "Average":
        y = g.op("Div", [y, g.const(np.float32(len(xs)))], hint=layer.name)
    return Value(y, mask=_merge_mask(ctx, xs))


@ONNX_LAYERS.register("Multiply")
def convert_multiply(ctx, layer, args, kwargs):
    """Multiply._merge_function: a masked input counts as 1 at its masked steps; when every input
    is masked, steps masked in all of them are 0 and the mask is the OR of the masks."""
    g = ctx.graph
    xs = _merge_inputs(ctx, args)
    one = g.const(np.float32(1))
    y = None
    for v in xs:
        t = v.name if v.mask is None else g.op("Where", [_bcast(ctx, v.mask), v.name, one])
        y = t if y is None else g.op("Mul", [y, t])
    mask = _merge_mask(ctx, xs)
    if mask is not None:
        y = g.op("Where", [_bcast(ctx, mask), y, g.const(np.float32(0))])
    return Value(g.op("Identity", [y], hint=layer.name) if y == xs[0].name else y, mask=mask)


@ONNX_LAYERS.register("Maximum", "Minimum")
def convert_maxmin(ctx, layer, args, kwargs):
    """Merge._apply_merge_op_and_or_mask: folding left, a masked input takes the running result at
    its masked steps, the running result takes the input where it is itself masked, and the mask
    is the OR while every input so far has one."""
    g = ctx.graph
    xs = _merge_inputs(ctx, args)
    op = "Max" if type(layer).__name__ == "Maximum" else "Min"
    if all(v.mask is None for v in xs):
        return Value(g.op(op, [v.name for v in xs], hint=layer.name))
    out, out_mask = xs[0].name, xs[0].mask
    for v in xs[1:]:
        x = v.name
        if v.mask is not None:
            x = g.op("Where", [_bcast(ctx, v.mask), x, out])
        if out_mask is not None:
            out = g.op("Where", [_bcast(ctx, out_mask), out, x])
        out_mask = g.op("Or", [out_mask, v.mask]) if v.mask is not None and out_mask is not None else None
        out = g.op(op, [out, x])
    return Value(out, mask=out_mask)


@ONNX_LAYERS.register("Concatenate")
def convert_concatenate(ctx, layer, args, kwargs):
    """Concat; Concatenate.compute_mask: each input's mask broadcast to its shape (all True when it
    has none), concatenated along the axis, then any() over the last axis."""
    g = ctx.graph
    xs = _inputs_list(args)
    rank = xs[0].rank
    axis = int(layer.axis) % rank
    y = g.op("Concat", [v.name for v in xs], axis=axis, hint=layer.name)
    if all(v.mask is None for v in xs):
        return Value(y)
    if axis == rank - 1:  # along features: the OR of the masks, all True if one has none
        if any(v.mask is None for v in xs):
            return Value(y, mask=_ones_mask(ctx, y, rank))
        return Value(y, mask=_merge_mask(ctx, xs))
    full = []
    for v in xs:  # (B, ..., F_i) booleans
        ones = g.op("ConstantOfShape", [g.shape(v.name)], value=_tensor_attr(np.ones(1, np.bool_)))
        full.append(ones if v.mask is None else g.op("And", [ones, _bcast(ctx, v.mask)]))
    cat = g.op("Concat", full, axis=axis)
    mask = g.cast(g.reduce("ReduceMax", g.cast(cat, np.float32), [rank - 1], keepdims=0), np.bool_)
    return Value(y, mask=mask)


def _ones_mask(ctx, y: str, rank: int) -> str:
    g = ctx.graph
    return g.op("ConstantOfShape", [g.shape(y, 0, rank - 1)], value=_tensor_attr(np.ones(1, np.bool_)))


@ONNX_LAYERS.register("Dot")
def convert_dot(ctx, layer, args, kwargs):
    """keras batch_dot of two rank-2/3 inputs as one Einsum (``normalize``: x * min(rsqrt(sum x^2),
    1/epsilon) first); a result of rank 1 becomes (batch, 1). No mask (Dot.compute_mask)."""
    g = ctx.graph
    a, b = _inputs_list(args)
    if a.rank not in (2, 3) or b.rank not in (2, 3):
        raise _err(layer, "Dot of inputs of rank other than 2 or 3 is not supported natively")
    axes = [layer.axes] * 2 if isinstance(layer.axes, int) else list(layer.axes)
    axes = [axes[0] % a.rank, axes[1] % b.rank]
    if 0 in axes:
        raise _err(layer, "Dot over the batch axis")
    xa, xb = a.name, b.name
    if layer.normalize:
        from keras import backend as kb

        def l2(x, axis):
            ss = g.reduce("ReduceSum", g.op("Mul", [x, x]), [axis], keepdims=1)
            inv = g.op("Min", [g.op("Reciprocal", [g.op("Sqrt", [ss])]), g.const(np.float32(1.0 / kb.epsilon()))])
            return g.op("Mul", [x, inv])

        xa, xb = l2(xa, axes[0]), l2(xb, axes[1])
    la = ["b"] + ["i", "j"][:a.rank - 1]
    lb = ["b"] + ["k", "l"][:b.rank - 1]
    la[axes[0]] = lb[axes[1]] = "z"
    out = ["b"] + [c for c in la[1:] if c != "z"] + [c for c in lb[1:] if c != "z"]
    y = g.op("Einsum", [xa, xb], equation=f"{''.join(la)},{''.join(lb)}->{''.join(out)}", hint=layer.name)
    if len(out) == 1:
        y = g.unsqueeze(y, [1])
    return Value(y)


# --------------------------------------------------------------------------- attention
@ONNX_LAYERS.register("Attention", "AdditiveAttention")
def convert_attention(ctx, layer, args, kwargs):
    """keras.layers.Attention (Luong: score_mode dot/concat, use_scale) and AdditiveAttention
    (Bahdanau: ``sum(scale * tanh(q + k), -1)``), with query/value masks and the causal mask."""
    g = ctx.graph
    ins = _inputs_list(args)
    q, v = ins[0], ins[1]
    k = ins[2] if len(ins) > 2 else v
    mask = ctx.call_mask(args, kwargs)
    q_mask, v_mask = (list(mask) + [None, None])[:2] if isinstance(mask, list) else (None, None)
    if type(layer).__name__ == "AdditiveAttention":
        s = g.op("Tanh", [g.op("Add", [g.unsqueeze(q.name, [2]), g.unsqueeze(k.name, [1])])])  # (B,Tq,Tv,D)
        if layer.use_scale:
            s = g.op("Mul", [s, g.const(_w(layer.scale), hint=f"{layer.name}/scale")])
        scores = g.reduce("ReduceSum", s, [-1], keepdims=0)
    elif getattr(layer, "score_mode", "dot") == "dot":
        scores = g.op("MatMul", [q.name, g.transpose(k.name, [0, 2, 1])])
        if layer.scale is not None:
            scores = g.op("Mul", [scores, g.const(_w(layer.scale).reshape(()))])
    elif layer.score_mode == "concat":
        s = g.op("Add", [g.unsqueeze(q.name, [2]), g.unsqueeze(k.name, [1])])  # (B,Tq,Tv,D)
        if layer.scale is not None:
            s = g.op("Mul", [s, g.const(_w(layer.scale).reshape(()))])
        scores = g.reduce("ReduceSum", g.op("Tanh", [s]), [-1], keepdims=0)
        scores = g.op("Mul", [scores, g.const(_w(layer.concat_score_weight).reshape(()))])
    else:
        raise _err(layer, f"score_mode={layer.score_mode!r} is not supported")
    score_mask = None
    if v_mask is not None:
        score_mask = g.unsqueeze(v_mask, [1])  # (B,1,Tv)
    if kwargs.get("use_causal_mask"):
        tq = g.shape(scores, 1, 2)
        tv = g.shape(scores, 2, 3)
        ones = g.op("ConstantOfShape", [g.op("Concat", [tq, tv], axis=0)],
                    value=_tensor_attr(np.ones(1, np.float32)))
        causal = g.cast(g.op("Trilu", [ones], upper=0), np.bool_)  # row >= col
        score_mask = causal if score_mask is None else g.op("And", [score_mask, causal])
    if score_mask is not None:
        pad = g.cast(g.op("Not", [score_mask]), np.float32)
        scores = g.op("Sub", [scores, g.op("Mul", [pad, g.const(np.float32(1e9))])])
    weights = g.op("Softmax", [scores], axis=-1)
    out = g.op("MatMul", [weights, v.name], hint=layer.name)
    if q_mask is not None:
        out = g.op("Mul", [out, g.unsqueeze(ctx.mask_float(q_mask), [2])])
    res = [Value(out, mask=q_mask)]
    if kwargs.get("return_attention_scores"):
        res.append(Value(weights))
        return res
    return res[0]


def _tensor_attr(arr):
    from onnx import numpy_helper

    return numpy_helper.from_array(arr)


@ONNX_LAYERS.register("MultiHeadAttention")
def convert_mha(ctx, layer, args, kwargs):
    g = ctx.graph
    q = args[0]
    v = args[1] if len(args) > 1 else kwargs.get("value")
    k = args[2] if len(args) > 2 else (kwargs.get("key") or v)
    key_given = len(args) > 2 or isinstance(kwargs.get("key"), Value)

    def mask_of(kw, v: Value | None):  # Keras 3 fills `<arg>_mask` from the tensor's mask
        m = kwargs.get(kw)
        if isinstance(m, Value):
            return ctx.as_bool(m.name, m.dtype)
        return v.mask if v is not None else None

    q_mask, v_mask = mask_of("query_mask", q), mask_of("value_mask", v)
    k_mask = mask_of("key_mask", k if key_given else None)
    am = kwargs.get("attention_mask")
    if getattr(layer, "_sliding_window", None) is not None:
        raise _err(layer, "sliding-window attention is not supported by the ONNX exporter")
    if q.rank != 3 or v.rank != 3:
        raise _err(layer, "MultiHeadAttention is supported for (batch, time, features) inputs only")
    nh, kd, vd = layer.num_heads, layer.key_dim, layer.value_dim

    def proj(x: Value, dense, depth):
        kern = _w(dense.kernel)  # (dim, heads, depth)
        y = g.op("MatMul", [x.name, g.const(kern.reshape(kern.shape[0], -1), hint=f"{dense.name}/kernel")])
        if dense.bias is not None:
            y = g.op("Add", [y, g.const(_w(dense.bias).reshape(-1), hint=f"{dense.name}/bias")])
        y = g.op("Reshape", [y, g.i64([0, 0, nh, depth])])
        return g.transpose(y, [0, 2, 1, 3])  # (B, heads, T, depth)

    qh = proj(q, layer._query_dense, kd)
    kh = proj(k, layer._key_dense, kd)
    vh = proj(v, layer._value_dense, vd)
    qh = g.op("Mul", [qh, g.const(np.float32(1.0 / np.sqrt(float(kd))))])
    scores = g.op("MatMul", [qh, g.transpose(kh, [0, 1, 3, 2])])  # (B, h, Tq, Tk)
    # attention mask (B, T, S), as MultiHeadAttention._compute_attention_mask
    parts = []
    if q_mask is not None:
        parts.append(g.unsqueeze(q_mask, [2]))
    for m in (v_mask, k_mask):
        if m is not None:
            parts.append(g.unsqueeze(m, [1]))
    if kwargs.get("use_causal_mask"):
        tq = g.shape(scores, 2, 3)
        tv = g.shape(scores, 3, 4)
        ones = g.op("ConstantOfShape", [g.op("Concat", [tq, tv], axis=0)],
                    value=_tensor_attr(np.ones(1, np.float32)))
        parts.append(g.unsqueeze(g.cast(g.op("Trilu", [ones], upper=0), np.bool_), [0]))
    if isinstance(am, Value):
        parts.append(ctx.as_bool(am.name, am.dtype) if am.dtype == "bool" else
                     g.op("Greater", [am.name, g.const(np.asarray(0.5, am.dtype))]))
    mask4 = None
    if parts:
        m = parts[0]
        for p_ in parts[1:]:
            m = g.op("And", [m, p_])
        mask4 = g.unsqueeze(m, [1])  # (B, 1, T, S)
        scores = g.op("Where", [mask4, scores, g.const(np.float32(-1e9))])
    weights = g.op("Softmax", [scores], axis=-1)
    if mask4 is not None:  # Keras zeroes masked positions after the softmax
        weights = g.op("Where", [mask4, weights, g.const(np.float32(0))])
    att = g.op("MatMul", [weights, vh])  # (B, h, Tq, vd)
    att = g.op("Reshape", [g.transpose(att, [0, 2, 1, 3]), g.i64([0, 0, nh * vd])])
    od = layer._output_dense
    ok = _w(od.kernel)  # (heads, vd, out)
    y = g.op("MatMul", [att, g.const(ok.reshape(nh * vd, -1), hint=f"{od.name}/kernel")])
    if od.bias is not None:
        y = g.op("Add", [y, g.const(_w(od.bias).reshape(-1), hint=f"{od.name}/bias")], hint=layer.name)
    if kwargs.get("return_attention_scores"):
        return [Value(y, mask=q.mask), Value(weights)]
    return Value(y, mask=q.mask)


@ONNX_LAYERS.register("ops.ConvertToTensor")
def convert_convert_to_tensor(ctx, op, args, kwargs):
    x = args[0]
    dtype = kwargs.get("dtype", getattr(op, "dtype", None))
    if dtype is not None and np.dtype(str(dtype)).name != x.dtype:
        return Value(ctx.graph.cast(x.name, np.dtype(str(dtype))), mask=x.mask)
    return Value(x.name, mask=x.mask)


@ONNX_LAYERS.register("Functional", "Sequential", "Model")
def convert_nested_model(ctx, layer, args, kwargs):
    """A model used as a layer: its nodes are inlined."""
    from dataclasses import replace

    from converters.onnx.graph import walk_nodes
    from converters.registry import functional_graph

    sub = functional_graph(layer, "onnx")
    x = args[0]
    if isinstance(x, dict):
        ins = [x[t._keras_history.operation.name] for t in sub.inputs]
    else:
        ins = list(x) if isinstance(x, (list, tuple)) else [x]
    if len(ins) != len(sub.inputs):
        raise _err(layer, f"called with {len(ins)} inputs, the model has {len(sub.inputs)}")
    values = {id(t): replace(v, shape=tuple(t.shape)) for t, v in zip(sub.inputs, ins)}
    walk_nodes(ctx, sub, values)
    outs = [values[id(t)] for t in sub.outputs]
    return outs if len(outs) > 1 else outs[0]
