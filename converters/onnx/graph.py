"""Keras 3 model -> ONNX graph: the graph builder and the functional-graph walker.

:class:`Graph` is a thin layer over ``onnx.helper``: it names tensors uniquely,
caches constants, merges identical nodes (common-subexpression elimination),
cancels back-to-back transposes, and prunes dead nodes when finished.

:func:`convert_model` walks a Keras model's functional graph (a ``Sequential``
uses its internal functional model), looks up one converter per layer class in
:data:`ONNX_LAYERS` and keeps, for every Keras tensor, a :class:`Value`: the ONNX
tensor name, its Keras shape and its Keras mask (an ONNX bool tensor or ``None``).

A converter has the signature ``fn(ctx, layer, args, kwargs) -> Value | list[Value]``
where ``args``/``kwargs`` are the node's call arguments with every Keras tensor
replaced by its :class:`Value`; the returned values line up with the node outputs.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from converters.registry import DEFAULT_OPSET, MAX_OPSET, MIN_OPSET  # noqa: F401 - one place for the range
from converters.registry import ExportOptions, LayerRegistry, functional_graph
from rnnedge.errors import ConversionError

ONNX_LAYERS = LayerRegistry("onnx")

INT64_MIN = -(2**63)


@dataclass
class Value:
    """One Keras tensor in the ONNX graph."""

    name: str
    shape: tuple = ()
    dtype: str = "float32"
    mask: str | None = None  # ONNX bool tensor (B, T) or None

    @property
    def rank(self) -> int:
        return len(self.shape)


def _np_to_onnx(dtype) -> int:
    from onnx import helper

    return helper.np_dtype_to_tensor_dtype(np.dtype(dtype))


class Graph:
    """Accumulates nodes/initializers; see the module docstring."""

    def __init__(self, opset: int):
        self.opset = opset
        self.nodes: list = []
        self.initializers: dict[str, Any] = {}
        self.inputs: list = []
        self.outputs: list = []
        self._names: set[str] = set()
        self._const_cache: dict = {}
        self._cse: dict = {}
        self._transpose_src: dict[str, tuple[str, tuple]] = {}

    # -- names and constants ---------------------------------------------
    def unique(self, hint: str) -> str:
        base = re.sub(r"[^A-Za-z0-9_./:-]", "_", hint) or "t"
        name, i = base, 1
        while name in self._names:
            name = f"{base}_{i}"
            i += 1
        self._names.add(name)
        return name

    def const(self, value, dtype=None, hint: str = "const") -> str:
        from onnx import numpy_helper

        arr = np.asarray(value, dtype=dtype if dtype is not None else None)
        if dtype is None and arr.dtype == np.float64:
            arr = arr.astype(np.float32)
        key = (arr.dtype.str, arr.shape, arr.tobytes())
        if key in self._const_cache:
            return self._const_cache[key]
        name = self.unique(hint)
        self.initializers[name] = numpy_helper.from_array(arr, name)
        self._const_cache[key] = name
        return name

    def i64(self, values, hint="i64") -> str:
        return self.const(np.asarray(values, dtype=np.int64), hint=hint)

    # -- nodes -------------------------------------------------------------
    def op(self, op_type: str, inputs: list[str], n_out: int = 1, hint: str | None = None,
           outputs: list[str] | None = None, domain: str = "", **attrs):
        """Add a node; returns its output name (or a list when ``n_out > 1``).

        Pass ``outputs`` to name outputs (an empty string leaves an optional output out).
        """
        from onnx import helper

        inputs = list(inputs)
        while inputs and inputs[-1] == "":
            inputs.pop()
        key = None
        if outputs is None:
            key = (op_type, domain, tuple(inputs), n_out, repr(sorted(attrs.items())))
            if key in self._cse:
                return self._cse[key]
            outs = [self.unique(f"{hint or op_type}" + (f":{i}" if n_out > 1 else "")) for i in range(n_out)]
        else:
            outs = list(outputs)  # the caller owns these names
            self._names.update(o for o in outs if o)
        attrs = {k: v for k, v in attrs.items() if v is not None}
        node = helper.make_node(op_type, inputs, outs, name=self.unique(f"{hint or op_type}/node"),
                                domain=domain or None, **attrs)
        self.nodes.append(node)
        res = outs[0] if n_out == 1 and outputs is None else outs
        if key is not None:
            self._cse[key] = res
        return res

    # -- opset-aware helpers -------------------------------------------
    def transpose(self, x: str, perm, hint=None) -> str:
        perm = tuple(int(p) for p in perm)
        if perm == tuple(range(len(perm))):
            return x
        if x in self._transpose_src:
            src, p1 = self._transpose_src[x]
            composed = tuple(p1[p] for p in perm)
            if composed == tuple(range(len(perm))):
                return src
        y = self.op("Transpose", [x], perm=list(perm), hint=hint)
        self._transpose_src.setdefault(y, (x, perm))
        return y

    def squeeze(self, x: str, axes, hint=None) -> str:
        return self.op("Squeeze", [x, self.i64(list(axes))], hint=hint)

    def unsqueeze(self, x: str, axes, hint=None) -> str:
        return self.op("Unsqueeze", [x, self.i64(list(axes))], hint=hint)

    def reduce(self, op_type: str, x: str, axes, keepdims: int = 1, hint=None) -> str:
        axes = [int(a) for a in axes]
        if op_type == "ReduceSum" or self.opset >= 18:
            return self.op(op_type, [x, self.i64(axes)], keepdims=keepdims, hint=hint)
        return self.op(op_type, [x], axes=axes, keepdims=keepdims, hint=hint)

    def shape(self, x: str, start: int = 0, end: int | None = None) -> str:
        """1-D int64 tensor of ``shape(x)[start:end]``."""
        if self.opset >= 15:
            return self.op("Shape", [x], start=start if start else None, end=end)
        s = self.op("Shape", [x])
        if start == 0 and end is None:
            return s
        return self.op("Slice", [s, self.i64([start]), self.i64([end if end is not None else 2**62])])

    def cast(self, x: str, to) -> str:
        return self.op("Cast", [x], to=_np_to_onnx(to))

    def not_equal(self, a: str, b: str, hint=None) -> str:
        return self.op("Not", [self.op("Equal", [a, b])], hint=hint)

    def reverse(self, x: str, axis: int) -> str:
        return self.op("Slice", [x, self.i64([-1]), self.i64([INT64_MIN]), self.i64([axis]), self.i64([-1])],
                       hint="reverse")

    # -- finishing ---------------------------------------------------------
    def prune(self) -> None:
        """Drop nodes whose outputs nothing uses (dead code) and unused initializers. A node with a
        body (Loop, If, Scan) also needs the outer tensors its body reads."""
        needed = {o.name for o in self.outputs}
        keep = []
        for node in reversed(self.nodes):
            if any(o and o in needed for o in node.output):
                keep.append(node)
                needed.update(i for i in node.input if i)
                needed.update(_body_inputs(node))
        self.nodes = list(reversed(keep))
        self.initializers = {k: v for k, v in self.initializers.items() if k in needed}


def _body_inputs(node) -> set[str]:
    """Every tensor name the bodies (graph attributes) of ``node`` read, recursively."""
    from onnx import AttributeProto

    names: set[str] = set()
    for a in node.attribute:
        graphs = [a.g] if a.type == AttributeProto.GRAPH else list(a.graphs) if a.type == AttributeProto.GRAPHS else []
        for sg in graphs:
            for n in sg.node:
                names.update(i for i in n.input if i)
                names |= _body_inputs(n)
    return names


@dataclass
class ConversionContext:
    graph: Graph
    options: ExportOptions
    model: Any
    fixed_time: int | None = None
    notes: list[str] = field(default_factory=list)
    # batch-major tensor -> (mask, time-major compacted tensor): lets a masked RNN reuse the
    # compacted output of the masked RNN before it (no gather back and forth)
    compact_alias: dict = field(default_factory=dict)
    current_layer: Any = None
    # how each layer (or Keras operation) was converted: name -> {"class", "path"}
    paths: dict = field(default_factory=dict)
    # Dense/Conv outputs with a linear activation: tensor -> how to rebuild them with folded
    # weights (BatchNormalization after them folds in, converters.onnx.layers)
    linear: dict = field(default_factory=dict)
    # one record per recurrent layer: which lowering it got and why (manifest: recurrent_lowering)
    recurrent: list = field(default_factory=list)

    @property
    def opset(self) -> int:
        return self.graph.opset

    def call_mask(self, args, kwargs):
        """The mask the layer's ``call`` receives at run time (Keras 3 layer.py, step 6).

        An explicit ``mask=`` wins; else Keras fills ``mask`` from the inputs' masks only when the
        call takes a ``mask`` argument and exactly ONE tensor argument: an RNN called with
        ``initial_state=`` gets no mask and runs over padded steps (so do we). Returns the mask
        name, or a list of them for a list argument (Attention), or None.
        """
        import inspect

        m = kwargs.get("mask") if kwargs else None
        if m is not None:
            if isinstance(m, (list, tuple)):
                return [self.as_bool(v.name, v.dtype) if isinstance(v, Value) else None for v in m]
            return self.as_bool(m.name, m.dtype) if isinstance(m, Value) else None
        layer = self.current_layer
        if layer is None or "mask" not in inspect.signature(layer.call).parameters:
            return None

        def is_tensor_arg(a):
            if isinstance(a, Value):
                return True
            return isinstance(a, (list, tuple)) and len(a) > 0 and all(
                isinstance(v, Value) or v is None for v in a) and any(isinstance(v, Value) for v in a)

        tensor_args = [a for a in list(args) + list((kwargs or {}).values()) if is_tensor_arg(a)]
        if len(tensor_args) != 1:
            return None
        a = tensor_args[0]
        if isinstance(a, Value):
            return a.mask
        masks = [v.mask if isinstance(v, Value) else None for v in a]
        return masks if any(x is not None for x in masks) else None

    def input_mask(self, args, kwargs) -> str | None:
        """Keras's ``previous_mask``: the call's mask, else the first input's (for compute_mask)."""
        m = kwargs.get("mask") if kwargs else None
        if isinstance(m, Value):
            return self.as_bool(m.name, m.dtype)
        first = args[0] if args else None
        if isinstance(first, (list, tuple)):
            first = first[0] if first else None
        return first.mask if isinstance(first, Value) else None

    def as_bool(self, name: str, dtype: str) -> str:
        if dtype == "bool":
            return name
        return self.graph.cast(name, np.bool_)

    def mask_float(self, mask: str) -> str:
        return self.graph.cast(mask, np.float32)

    def activation(self, x: str, fn, layer=None) -> str:
        from converters.onnx.activations import apply_activation

        return apply_activation(self, x, fn, layer)


# --------------------------------------------------------------------------- walker
def _map_structure(fn, obj):
    if isinstance(obj, (list, tuple)):
        return type(obj)(_map_structure(fn, o) for o in obj) if not hasattr(obj, "_fields") else obj
    if isinstance(obj, dict):
        return {k: _map_structure(fn, v) for k, v in obj.items()}
    return fn(obj)


def _is_seq_input(t) -> bool:
    shape = tuple(t.shape)
    return len(shape) >= 3 or (len(shape) == 2 and "int" in str(t.dtype))


def convert_call(ctx: ConversionContext, op, args, kwargs) -> tuple[list, str]:
    """Convert one call of a Keras layer or operation: its native converter, else tf2onnx alone
    (:mod:`converters.onnx.fallback`). A native converter that refuses the layer's configuration
    hands it to the fallback too, except for recurrent layers with a native form (they stay native
    or are refused). Returns ``(values, path)``: the flat outputs and ``"native"``/``"fallback"``."""
    import keras

    from converters.onnx.wrappers import native_recurrent_form

    is_layer = isinstance(op, keras.layers.Layer)
    cls = type(op).__name__
    key = cls if is_layer else f"ops.{cls}"
    native_error = None
    if key in ONNX_LAYERS:
        prev, ctx.current_layer = ctx.current_layer, (op if is_layer else None)
        try:
            res = ONNX_LAYERS.get(key)(ctx, op, args, kwargs)
            return (list(res) if isinstance(res, (list, tuple)) else [res]), "native"
        except ConversionError as e:
            if e.layer is None:
                e.layer = op.name
            if native_recurrent_form(op):
                raise
            native_error = e
        finally:
            ctx.current_layer = prev
    elif native_recurrent_form(op):  # a subclass of a recurrent layer: refuse rather than Loop
        raise ConversionError(f"layer '{op.name}' ({cls}): recurrent layer class {cls} has no ONNX converter "
                              "(LSTM, GRU, SimpleRNN, RNN, Bidirectional, TimeDistributed are native)",
                              layer=op.name, fmt="onnx")
    from converters.onnx.fallback import convert_fallback

    return convert_fallback(ctx, op, args, kwargs, native_error=native_error), "fallback"


def _keras_tensors(obj) -> list:
    import keras

    return [t for t in keras.tree.flatten(obj) if isinstance(t, keras.KerasTensor)]


def _live_tensors(fm) -> set[int]:
    """ids of the Keras tensors the model's outputs depend on."""
    live = {id(t) for t in fm.outputs}
    for depth in sorted(fm._nodes_by_depth):  # depth 0: the output nodes
        for node in fm._nodes_by_depth[depth]:
            if any(id(t) in live for t in node.outputs):
                live.update(id(t) for t in _keras_tensors((node.arguments.args, node.arguments.kwargs)))
    return live


def walk_nodes(ctx: ConversionContext, fm, values: dict) -> None:
    """Convert every node of functional model ``fm``; ``values`` maps id(KerasTensor) -> Value
    and must hold ``fm``'s inputs; it gains every tensor the nodes make."""
    import keras

    live = _live_tensors(fm)
    for depth in sorted(fm._nodes_by_depth, reverse=True):
        for node in fm._nodes_by_depth[depth]:
            op = node.operation
            if isinstance(op, keras.layers.InputLayer):
                continue
            if not any(id(t) in live for t in node.outputs):
                continue  # e.g. the ops Keras records while computing a mask symbolically
            cls = type(op).__name__
            is_layer = isinstance(op, keras.layers.Layer)

            def sub(o):
                if isinstance(o, keras.KerasTensor):
                    if id(o) not in values:
                        raise ConversionError(f"internal: tensor {o.name} used before it was made",
                                              layer=op.name, fmt="onnx")
                    return values[id(o)]
                return o

            args = _map_structure(sub, list(node.arguments.args))
            kwargs = _map_structure(sub, dict(node.arguments.kwargs))
            outs, path = convert_call(ctx, op, args, kwargs)
            ctx.paths.setdefault(op.name, {"class": cls if is_layer else f"ops.{cls}", "path": path})
            kouts = list(node.outputs)
            if len(outs) != len(kouts):
                raise ConversionError(
                    f"internal: converter for {cls} gave {len(outs)} outputs, Keras has {len(kouts)}",
                    layer=op.name, fmt="onnx")
            if is_layer and not op.supports_masking and not isinstance(op, keras.Model):
                # Keras drops the mask here (a nested model keeps the masks its own layers set)
                outs = [replace(v, mask=None) for v in outs]
            for v, kt in zip(outs, kouts):
                values[id(kt)] = replace(v, shape=tuple(kt.shape), dtype=np.dtype(str(kt.dtype)).name)


TIME_DEPENDENT = {"Flatten", "Reshape"}


def convert_model(model, options: ExportOptions | None = None):
    """Convert ``model`` to an ``onnx.ModelProto``. Returns ``(model_proto, info)``."""
    import onnx
    from onnx import helper

    import converters.onnx.layers  # noqa: F401  (registers converters)
    import converters.onnx.recurrent  # noqa: F401
    import converters.onnx.wrappers  # noqa: F401

    options = options or ExportOptions()
    opset = int(options.opset or DEFAULT_OPSET)  # its range: checked by ExportOptions
    fm = functional_graph(model, "onnx")
    g = Graph(opset)
    ctx = ConversionContext(graph=g, options=options, model=model)

    # a fixed time axis when asked, or when a layer's output size depends on it
    layer_classes = {type(l).__name__ for l in fm.layers}
    keras_times = {t.shape[1] for t in fm.inputs if _is_seq_input(t) and t.shape[1] is not None}
    if options.seq_len:
        ctx.fixed_time = int(options.seq_len)
    elif layer_classes & TIME_DEPENDENT and keras_times:
        ctx.fixed_time = int(max(keras_times))
    batch_dim = _batch_dim(model, fm, options)
    time_dim = ctx.fixed_time if ctx.fixed_time else "time"
    n_seq = sum(1 for t in fm.inputs if _is_seq_input(t))

    # output names: the Keras output names made unique (rnnedge.matching, the rule every format
    # uses), reserved before anything else is named
    from rnnedge.matching import output_names

    out_names = output_names(model)
    in_names = [t._keras_history.operation.name for t in fm.inputs]
    out_names = [n + "_out" if n in in_names else n for n in out_names]
    g._names.update(out_names)

    values: dict[int, Value] = {}
    inputs_info, dynamic_axes = [], {}
    for t in fm.inputs:
        layer = t._keras_history.operation
        name = layer.name
        shape = tuple(t.shape)
        dims, dyn = [], {}
        for i, d in enumerate(shape):
            if i == 0:
                dims.append(batch_dim)
            elif i == 1 and _is_seq_input(t) and d is not None and not options.seq_len:
                dims.append(int(d))  # the Keras model fixes this input's length: keep it
            elif i == 1 and _is_seq_input(t):  # several sequence inputs: one free length each
                dims.append(time_dim if ctx.fixed_time or n_seq == 1 else f"{name}_time")
            elif d is None:
                dims.append(f"{name}_dim{i}")
            else:
                dims.append(int(d))
            if isinstance(dims[-1], str):
                dyn[i] = dims[-1]
        dtype = np.dtype(str(t.dtype)).name
        g._names.add(name)
        g.inputs.append(helper.make_tensor_value_info(name, _np_to_onnx(dtype), dims))
        values[id(t)] = Value(name, shape, dtype)
        inputs_info.append({"name": name, "shape": dims, "dtype": dtype})
        if dyn:
            dynamic_axes[name] = dyn

    walk_nodes(ctx, fm, values)

    out_values = []
    used, renamed = set(), {}
    for name, t in zip(out_names, fm.outputs):
        v = values[id(t)]
        src = renamed.get(v.name, v.name)
        producers = [n for n in g.nodes if src in n.output]
        if not producers or src in used:
            g.op("Identity", [src], outputs=[name])
        else:
            for node in g.nodes:
                for i, o in enumerate(node.output):
                    if o == src:
                        node.output[i] = name
                for i, o in enumerate(node.input):
                    if o == src:
                        node.input[i] = name
            renamed[v.name] = name
        used.add(name)
        out_values.append((name, v, t))
        g.outputs.append(helper.make_tensor_value_info(name, _np_to_onnx(v.dtype), None))
    g.prune()

    graph = helper.make_graph(g.nodes, _safe_name(model.name), g.inputs, g.outputs,
                              initializer=list(g.initializers.values()))
    opsets = [helper.make_opsetid("", opset)]
    mp = helper.make_model(graph, opset_imports=opsets, producer_name="rnnedge",
                           producer_version=_rnnedge_version())
    mp.ir_version = helper.find_min_ir_version_for(opsets)
    # shapes of the outputs: ONNX inference where it knows, Keras / dim names elsewhere
    try:
        inferred = onnx.shape_inference.infer_shapes(mp, strict_mode=True)
    except Exception as e:  # noqa: BLE001
        raise ConversionError(f"ONNX shape inference failed on the converted graph: {e}", fmt="onnx") from e
    input_dim_names = {d for i in inputs_info for d in i["shape"] if isinstance(d, str)}
    inf_shapes = {o.name: o.type.tensor_type.shape for o in inferred.graph.output}
    outputs_info = []
    del mp.graph.output[:]
    for name, v, t in out_values:
        dims = []
        shp = inf_shapes.get(name)
        for i, d in enumerate(t.shape):
            idim = shp.dim[i] if shp is not None and len(shp.dim) == len(t.shape) else None
            if i == 0:
                dims.append(batch_dim)
            elif idim is not None and idim.HasField("dim_value"):
                dims.append(int(idim.dim_value))
            elif idim is not None and idim.HasField("dim_param") and idim.dim_param in input_dim_names:
                dims.append(idim.dim_param)
            elif d is not None and not (i == 1 and len(t.shape) >= 3 and not ctx.fixed_time and keras_times):
                dims.append(int(d))
            elif i == 1 and len(t.shape) >= 3 and (ctx.fixed_time or n_seq == 1):
                dims.append(time_dim)
            else:
                dims.append(f"{name}_dim{i}")
        mp.graph.output.append(helper.make_tensor_value_info(name, _np_to_onnx(v.dtype), dims))
        outputs_info.append({"name": name, "shape": dims, "dtype": v.dtype})
        dyn = {i: d for i, d in enumerate(dims) if isinstance(d, str)}
        if dyn:
            dynamic_axes[name] = dyn
    try:
        onnx.checker.check_model(mp, full_check=True)
    except Exception as e:  # noqa: BLE001
        raise ConversionError(f"the converted ONNX graph fails onnx.checker: {e}", fmt="onnx") from e
    info = {
        "inputs": inputs_info,
        "outputs": outputs_info,
        "dynamic_axes": dynamic_axes,
        "op_types": dict(sorted(Counter(n.op_type for n in mp.graph.node).items())),
        "notes": ctx.notes,
        "layers": [{"name": n, **p} for n, p in ctx.paths.items()],
        "stateful_layers": _stateful_layers(fm),
        "recurrent_lowering": ctx.recurrent,
        "opset": opset,
        "ir_version": int(mp.ir_version),
    }
    return mp, info


def _stateful_layers(fm) -> list[str]:
    out = []
    for layer in fm.layers:
        if getattr(layer, "stateful", False):
            out.append(layer.name)
        elif hasattr(layer, "_nodes_by_depth"):  # a nested model
            out += _stateful_layers(layer)
    return out


def _batch_dim(model, fm, options: ExportOptions):
    """The ONNX batch axis: ``options.batch_size``, else the batch the Keras inputs fix (a stateful
    model must), else the free axis ``"batch"``. A stateful model asked for another batch is refused."""
    fixed = {int(t.shape[0]) for t in fm.inputs if t.shape[0] is not None}
    stateful = _stateful_layers(fm)
    if options.batch_size:
        if stateful and fixed and int(options.batch_size) not in fixed:
            raise ConversionError(
                f"stateful layer(s) {', '.join(stateful)} run at the model's fixed batch size "
                f"{sorted(fixed)[0]}: batch size {options.batch_size} cannot be exported", fmt="onnx")
        return int(options.batch_size)
    if len(fixed) == 1:
        return fixed.pop()
    return "batch"


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name or "model")


def _rnnedge_version() -> str:
    try:
        from rnnedge import __version__

        return __version__
    except Exception:  # noqa: BLE001
        return "0"
