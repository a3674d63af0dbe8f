"""The general fallback: one Keras layer (or operation) with no native converter, converted by
tf2onnx on its own and spliced into the native graph.

How (:func:`convert_fallback`):

1. The call of that one layer is traced as a ``tf.function`` of its tensor inputs (the Keras shapes,
   so the batch and free time axes stay dynamic) and of their Keras masks. The masks are attached to
   the traced inputs exactly as a functional model attaches them, so the layer's own ``__call__``
   decides what it receives (Keras 3 layer.py, step 6), and its output masks are read back from the
   traced outputs: a fallback layer keeps Keras's mask semantics because it *is* Keras's code.
2. tf2onnx (``tf2onnx.convert.from_function``) converts that function at the graph's opset (at most
   18, tf2onnx's newest; ops from opsets 19-21 only widened types).
3. Every name of the result (nodes, tensors, initializers, and the local names of Loop/If bodies) gets
   a unique prefix ``tf2onnx/<layer name>/``; its inputs are wired to the native graph's tensors.

Refused (ConversionError, exit 4, naming the layer and the reason): a layer TF cannot trace (e.g. a
custom layer that calls numpy in ``call``), TF ops tf2onnx cannot convert, ops outside the standard
ONNX domain, a mask that is not a boolean tensor. Recurrent layers with a native form never come
here (see :func:`converters.onnx.wrappers.native_recurrent_form`).

GPUs are hidden from the trace (Keras 3 picks ``CudnnRNNV3`` for LSTM/GRU when a GPU is visible,
which tf2onnx cannot convert): TF's visible devices when TF has not started yet, and
``use_cudnn=False`` on the traced layer's sublayers in any case.
"""
from __future__ import annotations

import contextlib
import logging
from converters.onnx.graph import Value
from rnnedge.errors import ConversionError

TF2ONNX_MAX_OPSET = 18
# why a layer runs as a Loop after the fallback, by class
_LOOP_REASONS = {
    "ConvLSTM1D": "ONNX has no convolutional LSTM op",
    "ConvLSTM2D": "ONNX has no convolutional LSTM op",
    "ConvLSTM3D": "ONNX has no convolutional LSTM op",
}


class MaskError(Exception):
    """A traced layer's output mask cannot be carried in the ONNX graph."""


def _refuse(op, why: str, native_error: Exception | None = None) -> ConversionError:
    cls = type(op).__name__
    what = f"layer '{op.name}' ({cls})" if _is_layer(op) else f"Keras operation '{op.name}' ({cls})"
    native = f"{native_error}; " if native_error is not None else "no native converter; "
    return ConversionError(f"{what} cannot be converted to ONNX: {native}the tf2onnx fallback {why}",
                           layer=op.name, fmt="onnx")


def _is_layer(op) -> bool:
    import keras

    return isinstance(op, keras.layers.Layer)


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:300]


# --------------------------------------------------------------------------- GPUs
def hide_gpus() -> None:
    """Keep TF off GPUs when it has not started yet (afterwards TF refuses: see :func:`_no_cudnn`)."""
    import tensorflow as tf

    with contextlib.suppress(RuntimeError, ValueError):
        if tf.config.list_physical_devices("GPU"):
            tf.config.set_visible_devices([], "GPU")


@contextlib.contextmanager
def _no_cudnn(op):
    """``use_cudnn=False`` on every sublayer that has it, for the duration of a trace."""
    touched = []
    layers = op._flatten_layers(include_self=True) if hasattr(op, "_flatten_layers") else [op]
    for layer in layers:
        if hasattr(layer, "use_cudnn"):
            touched.append((layer, layer.use_cudnn))
            layer.use_cudnn = False
    try:
        yield
    finally:
        for layer, old in touched:
            layer.use_cudnn = old


@contextlib.contextmanager
def _quiet_tf2onnx():
    loggers = [logging.getLogger(n) for n in ("tf2onnx", "tensorflow")]
    old = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, lvl in zip(loggers, old):
            lg.setLevel(lvl)


# --------------------------------------------------------------------------- trace + convert
def _values_in(obj, out: list) -> None:
    if isinstance(obj, Value):
        if not any(v.name == obj.name for v in out):
            out.append(obj)
    elif isinstance(obj, (list, tuple)):
        for o in obj:
            _values_in(o, out)
    elif isinstance(obj, dict):
        for o in obj.values():
            _values_in(o, out)


def _substitute(obj, tensors: dict):
    if isinstance(obj, Value):
        return tensors[obj.name]
    if isinstance(obj, (list, tuple)) and not hasattr(obj, "_fields"):
        return type(obj)(_substitute(o, tensors) for o in obj)
    if isinstance(obj, dict):
        return {k: _substitute(v, tensors) for k, v in obj.items()}
    return obj


def _spec_shape(shape: tuple) -> list:
    return [None if d is None else int(d) for d in shape]


def trace_to_onnx(op, args, kwargs, values: list[Value], opset: int):
    """Trace ``op(*args, **kwargs)`` (Values replaced by traced tensors carrying their masks) and
    convert it with tf2onnx. Returns ``(model_proto, layout)`` where ``layout`` lists, per flat
    output of the call, ``(onnx output name, mask)``; mask is None, ``("onnx", name)`` for a traced
    mask output, or ``("input", value name)`` when the layer passes an input's mask on unchanged."""
    import tensorflow as tf
    from keras import tree
    from keras.src.backend.common.masking import get_keras_mask, set_keras_mask

    hide_gpus()
    specs, mask_of = [], {}  # inputs "x<i>", their masks "m<i>"
    for i, v in enumerate(values):
        specs.append(tf.TensorSpec(_spec_shape(v.shape), tf.dtypes.as_dtype(v.dtype), name=f"x{i}"))
    for i, v in enumerate(values):
        if v.mask is not None:
            mask_of[v.name] = len(specs)  # a Keras mask has the tensor's shape less its last axis
            specs.append(tf.TensorSpec(_spec_shape(v.shape[:-1]), tf.bool, name=f"m{i}"))
    layout: list = []

    @tf.function(input_signature=specs, autograph=False)
    def fn(*tensors):
        by_name = {v.name: tf.identity(tensors[i]) for i, v in enumerate(values)}
        in_masks = {}
        for v in values:
            if v.name in mask_of:
                m = tensors[mask_of[v.name]]
                set_keras_mask(by_name[v.name], m)
                in_masks[id(m)] = v.name
        kw = _substitute(dict(kwargs), by_name)
        if getattr(op, "_call_has_training_arg", False):
            kw["training"] = False  # inference: augmentation/dropout layers default to training=True
        res = op(*_substitute(list(args), by_name), **kw)
        out, layout[:] = {}, []
        for j, y in enumerate(tree.flatten(res)):
            out[f"y{j}"] = y
            m = get_keras_mask(y)
            if m is None:
                layout.append((f"y{j}", None))
            elif id(m) in in_masks:
                layout.append((f"y{j}", ("input", in_masks[id(m)])))
            else:
                if not tf.is_tensor(m) or m.dtype != tf.bool:
                    raise MaskError(f"its output mask {j} is not a boolean tensor ({m!r:.80})")
                out[f"mask{j}"] = m
                layout.append((f"y{j}", ("onnx", f"mask{j}")))
        return out

    import tf2onnx

    with _no_cudnn(op), _quiet_tf2onnx():
        fn.get_concrete_function(*specs)  # the trace: TF errors surface here, apart from tf2onnx's
        mp, _ = tf2onnx.convert.from_function(fn, input_signature=specs, opset=min(opset, TF2ONNX_MAX_OPSET))
    return mp, layout


# --------------------------------------------------------------------------- splice
def _subgraphs(node):
    from onnx import AttributeProto

    for a in node.attribute:
        if a.type == AttributeProto.GRAPH:
            yield a.g
        elif a.type == AttributeProto.GRAPHS:
            yield from a.graphs


def _walk_nodes(graph):
    for n in graph.node:
        yield n
        for sg in _subgraphs(n):
            yield from _walk_nodes(sg)


def unknown_ops(graph) -> list[str]:
    """Node types (recursively) with no ONNX schema in their domain (tf2onnx leaves a TF op it cannot
    convert in the graph under its TF name)."""
    import onnx.defs

    bad = []
    for n in _walk_nodes(graph):
        if n.domain not in ("", "ai.onnx") or not onnx.defs.has(n.op_type, n.domain or ""):
            bad.append(f"{n.domain + '.' if n.domain else ''}{n.op_type}")
    return sorted(set(bad))


def _rename_graph(graph, rename, prefix: str) -> None:
    """Rename in place: defined names get the prefix, known names are mapped by ``rename``."""

    def new(name: str) -> str:
        if not name:
            return name
        if name not in rename:
            rename[name] = prefix + name
        return rename[name]

    for init in graph.initializer:
        init.name = new(init.name)
    for vi in list(graph.input) + list(graph.output) + list(graph.value_info):
        vi.name = new(vi.name)
    for n in graph.node:
        n.name = prefix + (n.name or n.op_type)
        for sg in _subgraphs(n):
            _rename_graph(sg, rename, prefix)
        for i, x in enumerate(n.input):
            n.input[i] = new(x)
        for i, x in enumerate(n.output):
            n.output[i] = new(x)


def splice(ctx, mp, feeds: dict[str, str], hint: str) -> dict[str, str]:
    """Add tf2onnx's graph ``mp`` to the context's graph. ``feeds`` maps its input names to tensors of
    the native graph. Returns its output names -> their names in the native graph."""
    g = ctx.graph
    graph = mp.graph
    prefix = g.unique(f"tf2onnx/{hint}") + "/"
    rename = dict(feeds)
    outs = [o.name for o in graph.output]
    del graph.input[:]  # the feeds are native tensors now
    del graph.value_info[:]
    _rename_graph(graph, rename, prefix)
    for init in graph.initializer:
        g.initializers[init.name] = init
    for n in graph.node:
        g.nodes.append(n)
        g._names.update(o for o in n.output if o)
    g._names.update(rename.values())
    return {o: rename.get(o, o) for o in outs}


# --------------------------------------------------------------------------- the converter
def convert_fallback(ctx, op, args, kwargs, native_error: Exception | None = None) -> list[Value]:
    """Convert one call of ``op`` with tf2onnx alone; returns its flat outputs as Values (masks
    included). Raises ConversionError (exit 4) naming the layer when the fallback is off or fails."""
    if not ctx.options.extra.get("onnx_fallback", True):
        raise _refuse(op, "is off (extra onnx_fallback=False)", native_error)
    try:
        import tensorflow  # noqa: F401
        import tf2onnx  # noqa: F401
    except ImportError as e:
        from rnnedge.errors import MissingDependencyError, install_command

        raise MissingDependencyError(f"{e.name} (ONNX fallback for layer '{op.name}')",
                                     install_command(e.name or "build")) from e
    values: list[Value] = []
    _values_in(list(args), values)
    _values_in(dict(kwargs), values)
    try:
        mp, layout = trace_to_onnx(op, args, kwargs, values, ctx.opset)
    except ConversionError:
        raise
    except MaskError as e:
        raise _refuse(op, f"cannot keep Keras's mask semantics: {e}", native_error) from e
    except Exception as e:  # noqa: BLE001  (TF tracing or tf2onnx: anything is a refusal here)
        from rnnedge.errors import raise_if_missing

        raise_if_missing(e)  # a missing package is exit 3, not a refusal
        raise _refuse(op, f"cannot trace or convert it: {type(e).__name__}: {_first_line(e)}",
                      native_error) from e
    bad = unknown_ops(mp.graph)
    if bad:
        raise _refuse(op, f"leaves ops with no standard ONNX form: {', '.join(bad)}", native_error)
    ours = {f"x{i}": v.name for i, v in enumerate(values)}
    ours.update({f"m{i}": v.mask for i, v in enumerate(values) if v.mask is not None})
    feeds = {i.name: ours[i.name.split(":")[0]] for i in mp.graph.input}
    names = splice(ctx, mp, feeds, getattr(op, "name", type(op).__name__))
    by_value = {v.name: v for v in values}
    res = []
    for out_name, mask in layout:
        m = None
        if mask is not None:
            kind, ref = mask
            m = by_value[ref].mask if kind == "input" else names[ref]
        res.append(Value(names[out_name], mask=m))
    loops = sorted({n.op_type for n in mp.graph.node if n.op_type in ("Loop", "Scan")})
    if loops:
        cls = type(op).__name__
        why = _LOOP_REASONS.get(cls) or _loop_reason(op)
        ctx.notes.append(f"{op.name} ({cls}) runs as an ONNX {'/'.join(loops)} (converted by tf2onnx): {why}")
    return res


def _loop_reason(op) -> str:
    cell = getattr(op, "cell", None)
    if cell is not None:
        return f"ONNX has no op for the recurrent cell {type(cell).__name__}"
    return "TensorFlow computes it with a while-loop and ONNX has no single op for it"
