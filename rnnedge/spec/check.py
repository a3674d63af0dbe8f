"""Semantic checks of a spec, without TensorFlow: references, graph order, and shapes.

Shapes here exclude the batch axis; ``None`` is a free axis. Each layer type has one
shape rule in ``_RULES``; a violated rule raises :class:`SpecError` with the node's path.
"""
from __future__ import annotations

from typing import Callable, Optional

from rnnedge.errors import SpecError
from rnnedge.spec import schema as S

Shape = tuple


def _fmt(shape: Shape) -> str:
    return "(batch, " + ", ".join("None" if d is None else str(d) for d in shape) + ")" if shape else "(batch,)"


class _Ctx:
    def __init__(self, spec: S.Spec, source: Optional[str]):
        self.spec = spec
        self.source = source
        self.int_inputs: set[str] = {i.name for i in spec.inputs if i.dtype != "float32"}
        self.vocab: dict[str, Optional[int]] = {i.name: i.vocab_size for i in spec.inputs}
        self.producer: dict[int, tuple[str, object]] = {}  # id(shape entry) not used

    def fail(self, path: str, reason: str):
        raise SpecError(path, reason, source=self.source)


def _rnn_out(ctx, path, layer: S._Recurrent, x: Shape, src: str) -> list[Shape]:
    if len(x) != 2:
        hint = ""
        if len(x) == 1 and src:
            hint = (f"; it receives {_fmt(x)} from {src}: set return_sequences: true there"
                    if "(LSTM)" in src or "(GRU)" in src or "(SimpleRNN)" in src or "(Bidirectional)" in src
                    else f"; it receives {_fmt(x)} from {src}")
        ctx.fail(path, f"{layer.type} needs a 3-D input (batch, time, features), got {_fmt(x)}{hint}")
    if x[1] is None:
        ctx.fail(path, f"{layer.type} needs a known feature size, got {_fmt(x)}")
    if layer.stateful and not any(i.batch_size for i in ctx.spec.inputs):
        ctx.fail(path + ".stateful", "a stateful RNN needs a fixed batch size: set batch_size on the input")
    y = (x[0], layer.units) if layer.return_sequences else (layer.units,)
    outs = [y]
    if layer.return_state:
        outs += [(layer.units,)] * layer.n_states
    return outs


def _check_states(ctx, path, layer, states: list[Shape], units: int, n_states: int, n_dirs: int = 1):
    if not states:
        return
    want = n_states * n_dirs
    if len(states) != want:
        ctx.fail(path + ".initial_state",
                 f"{layer.type if hasattr(layer, 'type') else 'layer'} takes {want} initial state(s), got {len(states)}")
    for k, s in enumerate(states):
        if tuple(s) != (units,):
            ctx.fail(f"{path}.initial_state[{k}]", f"state shape {_fmt(s)} does not match units: expected {_fmt((units,))}")


def _shape_rule(ctx, path: str, layer, ins: list[Shape], srcs: list[str]) -> list[Shape]:
    t = layer.type
    x = ins[0] if ins else None
    src = srcs[0] if srcs else ""

    def need_inputs(lo, hi=None):
        hi = lo if hi is None else hi
        if not (lo <= len(ins) <= hi):
            n = f"{lo}" if lo == hi else f"{lo} to {hi}"
            ctx.fail(path + ".inputs", f"{t} takes {n} input(s), got {len(ins)}")

    if t in S.RECURRENT_TYPES:
        n_data = len(layer.inputs or []) if ctx.spec.is_graph else 1
        if ctx.spec.is_graph:
            need_inputs(1 + len(layer.initial_state or []))
        _check_states(ctx, path, layer, ins[n_data:], layer.units, layer.n_states)
        return _rnn_out(ctx, path, layer, x, src)
    if t == "Bidirectional":
        inner = layer.layer
        if inner.return_state and not ctx.spec.is_graph:
            ctx.fail(path + ".layer.return_state", "return_state needs a graph spec ('nodes') to use the states")
        _check_states(ctx, path, inner, ins[1:], inner.units, inner.n_states, n_dirs=2)
        outs = _rnn_out(ctx, path + ".layer", inner, x, src)
        y = outs[0]
        if layer.merge_mode == "concat":
            y = y[:-1] + (2 * inner.units,)
        head = [y] if layer.merge_mode else [y, y]
        return head + outs[1:] * 2
    if t == "Embedding":
        if len(x) != 1:
            ctx.fail(path, f"Embedding takes token ids of shape (batch, time), got {_fmt(x)}")
        if src in ctx.int_inputs or src.startswith("input '"):
            pass
        name = src.split("'")[1] if src.startswith("input '") else src
        if name in ctx.vocab and name not in ctx.int_inputs:
            ctx.fail(path, f"Embedding needs integer token ids, but input '{name}' has dtype float32 "
                           "(set dtype: int32 and vocab_size on the input)")
        if layer.input_dim is None and not ctx.vocab.get(name):
            ctx.fail(path + ".input_dim", "required: the vocabulary size (or set vocab_size on the token input)")
        if layer.input_dim and ctx.vocab.get(name) and layer.input_dim < ctx.vocab[name]:
            ctx.fail(path + ".input_dim",
                     f"{layer.input_dim} is smaller than input '{name}' vocab_size {ctx.vocab[name]}")
        return [(x[0], layer.output_dim)]
    if t in ("Masking", "Dropout", "Activation", "LayerNormalization"):
        return [x]
    if t == "Dense":
        if len(x) < 1:
            ctx.fail(path, f"Dense needs at least a 2-D input, got {_fmt(x)}")
        return [x[:-1] + (layer.units,)]
    if t == "TimeDistributed":
        if len(x) < 2:
            ctx.fail(path, f"TimeDistributed needs a (batch, time, ...) input, got {_fmt(x)}"
                     + (f" from {src}: set return_sequences: true there" if "(" in src else ""))
        inner = _shape_rule(ctx, path + ".layer", layer.layer, [x[1:]], srcs)
        return [(x[0],) + inner[0]]
    if t in ("GlobalMaxPooling1D", "GlobalAveragePooling1D"):
        if len(x) != 2:
            ctx.fail(path, f"{t} needs a (batch, time, features) input, got {_fmt(x)}"
                     + (f" from {src}: set return_sequences: true there" if "(" in src else ""))
        return [(1, x[1]) if layer.keepdims else (x[1],)]
    if t == "Conv1D":
        if len(x) != 2:
            ctx.fail(path, f"Conv1D needs a (batch, time, channels) input, got {_fmt(x)}")
        steps = x[0]
        if steps is not None:
            span = (layer.kernel_size - 1) * layer.dilation_rate + 1
            if layer.padding == "valid":
                if steps < span:
                    ctx.fail(path + ".kernel_size", f"kernel spans {span} steps but the input has {steps}")
                steps = (steps - span) // layer.strides + 1
            else:
                steps = -(-steps // layer.strides)
        return [(steps, layer.filters)]
    if t in ("Attention", "MultiHeadAttention"):
        if ctx.spec.is_graph:
            need_inputs(1 if t == "MultiHeadAttention" else 2, 3)
        q = ins[0]
        v = ins[1] if len(ins) > 1 else q
        k = ins[2] if len(ins) > 2 else v
        if len(q) != 2 or len(v) != 2:
            ctx.fail(path, f"{t} needs (batch, time, dim) query and value, got {_fmt(q)} and {_fmt(v)}")
        if t == "Attention":
            if layer.score_mode == "dot" and q[-1] is not None and k[-1] is not None and q[-1] != k[-1]:
                ctx.fail(path, f"Attention (dot) needs query and key of the same size, got {q[-1]} and {k[-1]}")
            return [(q[0], v[-1])]
        return [(q[0], layer.output_shape or q[-1])]
    if t in ("Add", "Multiply", "Average"):
        if ctx.spec.is_graph:
            need_inputs(2, 99)
        for s, name in zip(ins[1:], srcs[1:]):
            if len(s) != len(ins[0]) or any(a is not None and b is not None and a != b for a, b in zip(s, ins[0])):
                ctx.fail(path, f"{t} needs inputs of one shape, got {_fmt(ins[0])} and {_fmt(s)} (from {name})")
        return [ins[0]]
    if t == "Concatenate":
        if ctx.spec.is_graph:
            need_inputs(2, 99)
        rank = len(ins[0])
        ax = layer.axis if layer.axis < 0 else layer.axis - 1
        if not -rank <= ax < rank:
            ctx.fail(path + ".axis", f"axis {layer.axis} is out of range for inputs of shape {_fmt(ins[0])}")
        ax %= rank
        total = 0
        for s, name in zip(ins, srcs):
            if len(s) != rank:
                ctx.fail(path, f"Concatenate needs inputs of one rank, got {_fmt(ins[0])} and {_fmt(s)} (from {name})")
            for d in range(rank):
                if d != ax and s[d] is not None and ins[0][d] is not None and s[d] != ins[0][d]:
                    ctx.fail(path, f"Concatenate: shapes {_fmt(ins[0])} and {_fmt(s)} differ outside axis {layer.axis}")
            total = None if (total is None or s[ax] is None) else total + s[ax]
        return [ins[0][:ax] + (total,) + ins[0][ax + 1:]]
    if t == "RepeatVector":
        if len(x) != 1:
            ctx.fail(path, f"RepeatVector needs a (batch, features) input, got {_fmt(x)}")
        return [(layer.n, x[0])]
    if t == "Flatten":
        if any(d is None for d in x):
            ctx.fail(path, f"Flatten needs known dimensions, got {_fmt(x)}")
        n = 1
        for d in x:
            n *= d
        return [(n,)]
    if t == "Reshape":
        known = [d for d in x]
        if all(d is not None for d in known) and -1 not in layer.target_shape:
            a = 1
            for d in known:
                a *= d
            b = 1
            for d in layer.target_shape:
                b *= d
            if a != b:
                ctx.fail(path + ".target_shape", f"cannot reshape {_fmt(x)} ({a} values) to {layer.target_shape} ({b} values)")
        return [tuple(layer.target_shape)]
    ctx.fail(path, f"no shape rule for {t}")  # pragma: no cover


def _describe(i: int, layer, graph: bool) -> str:
    return f"{'nodes' if graph else 'layers'}[{i}] ({layer.type})" if not (graph and layer.name) else f"node '{layer.name}' ({layer.type})"


def _parse_ref(ref: str) -> tuple[str, int]:
    if ":" in ref:
        name, _, k = ref.rpartition(":")
        if k.isdigit():
            return name, int(k)
    return ref, 0


def check_spec(spec: S.Spec, source: Optional[str] = None) -> dict[str, list[Shape]]:
    """Check references and shapes. Returns ``{node_or_input_name: [output shapes]}``."""
    ctx = _Ctx(spec, source)
    shapes: dict[str, list[Shape]] = {i.name: [tuple(i.shape)] for i in spec.inputs}
    desc: dict[str, str] = {i.name: f"input '{i.name}'" for i in spec.inputs}
    for i in spec.inputs:
        if i.dtype != "float32" and len(i.shape) != 1:
            ctx.fail(f"inputs[{spec.inputs.index(i)}].shape",
                     f"a token input has shape [time] (one id per step), got {list(i.shape)}")
    if not spec.is_graph:
        cur, cur_name = shapes[spec.inputs[0].name][0], spec.inputs[0].name
        for i, layer in enumerate(spec.layers):
            path = f"layers[{i}]"
            if layer.inputs:
                ctx.fail(path + ".inputs", "'inputs' is for graph specs ('nodes'); a sequential layer takes the previous output")
            if getattr(layer, "initial_state", None):
                ctx.fail(path + ".initial_state", "initial_state needs a graph spec ('nodes')")
            if layer.type in S.RECURRENT_TYPES and layer.return_state:
                ctx.fail(path + ".return_state", "return_state needs a graph spec ('nodes') to use the states")
            if layer.type in ("Attention", "MultiHeadAttention", "Concatenate", "Add", "Multiply", "Average") \
                    and layer.type != "MultiHeadAttention":
                ctx.fail(path, f"{layer.type} combines several tensors: use a graph spec ('nodes')")
            outs = _shape_rule(ctx, path, layer, [cur], [cur_name])
            name = layer.name or f"layers[{i}]"
            shapes[name] = outs
            cur, cur_name = outs[0], _describe(i, layer, False)
        return shapes

    # graph: order by dependencies; references must exist; no cycles
    nodes = {}
    for i, node in enumerate(spec.nodes):
        if not node.name:
            ctx.fail(f"nodes[{i}].name", "every node of a graph spec needs a name")
        if node.name in nodes or node.name in shapes:
            ctx.fail(f"nodes[{i}].name", f"duplicate name '{node.name}'")
        if not node.inputs:
            ctx.fail(f"nodes[{i}].inputs", "a graph node needs 'inputs' (node or input names)")
        nodes[node.name] = (i, node)
    done: set[str] = set(shapes)
    visiting: set[str] = set()

    def visit(name: str, via: str):
        if name in done:
            return
        if name not in nodes:
            known = sorted(set(nodes) | set(shapes))
            import difflib

            hint = difflib.get_close_matches(name, known, n=1)
            ctx.fail(via, f"unknown reference '{name}'" + (f"; did you mean '{hint[0]}'?" if hint else "")
                     + f" (known: {', '.join(known)})")
        if name in visiting:
            ctx.fail(via, f"cycle through node '{name}'")
        visiting.add(name)
        i, node = nodes[name]
        path = f"nodes[{i}]"
        ins, srcs = [], []
        refs = node.call_inputs()
        for k, ref in enumerate(refs):
            base, idx = _parse_ref(ref)
            field = "inputs" if k < len(node.inputs or []) else "initial_state"
            kk = k if field == "inputs" else k - len(node.inputs or [])
            visit(base, f"{path}.{field}[{kk}]")
            outs = shapes[base]
            if idx >= len(outs):
                ctx.fail(f"{path}.{field}[{kk}]",
                         f"'{ref}': {desc[base]} has {len(outs)} output(s) (indices 0..{len(outs) - 1})")
            ins.append(outs[idx])
            srcs.append(desc[base] if base not in ctx.vocab else base)
        shapes[name] = _shape_rule(ctx, path, node, ins, srcs)
        desc[name] = _describe(i, node, True)
        visiting.discard(name)
        done.add(name)

    for name in nodes:
        visit(name, f"nodes[{nodes[name][0]}]")
    for k, ref in enumerate(spec.outputs):
        base, idx = _parse_ref(ref)
        if base not in shapes:
            visit(base, f"outputs[{k}]")
        if idx >= len(shapes[base]):
            ctx.fail(f"outputs[{k}]", f"'{ref}': {desc[base]} has {len(shapes[base])} output(s)")
    return shapes
