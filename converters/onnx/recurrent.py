"""Keras LSTM / GRU / SimpleRNN / Bidirectional -> ONE native ONNX LSTM / GRU / RNN op each.

Weights: Keras LSTM gates (i, f, c, o) -> ONNX (i, o, f, c); GRU (z, r, h) keeps its order;
kernel (in, G*H) -> W (dirs, G*H, in); recurrent_kernel -> R; bias -> B = [Wb, Rb]
(GRU reset_after=True: bias (2, 3H) = (Wb, Rb) and linear_before_reset=1).

onnxruntime's CPU kernels only take layout=0, so the input goes (B,T,F) -> (T,B,F).

Masks (Keras semantics, keras/src/backend/tensorflow/rnn.py): a masked step leaves the state
alone and outputs the previous output (zeros when ``zero_output_for_mask``, which
Bidirectional sets for return_sequences). ONNX ``sequence_lens`` assumes post-padding, so a
masked layer first moves each row's valid steps to the front (TopK on (1-mask)*T + t,
GatherElements), runs with sequence_lens = sum(mask), and maps outputs back: output at step
t = Y[cumsum(mask)[t] - 1] (zero before the first valid step), times the mask when Keras
zeroes masked outputs. Final states are the ONNX Y_h / Y_c (state after the last valid
step). No mask -> none of this: Transpose -> LSTM -> Squeeze/Transpose.
"""
from __future__ import annotations

import numpy as np

from converters.onnx.activations import rnn_activation, rnn_activation_attrs
from converters.onnx.graph import ONNX_LAYERS, Value
from rnnedge.errors import ConversionError

_KIND = {"LSTMCell": "LSTM", "GRUCell": "GRU", "SimpleRNNCell": "RNN"}
_DEFAULT_ACTS = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"], "RNN": ["Tanh"]}
_N_STATES = {"LSTM": 2, "GRU": 1, "RNN": 1}


def _w(var) -> np.ndarray:
    return np.asarray(var.numpy() if hasattr(var, "numpy") else var, dtype=np.float32)


def _err(layer, why: str) -> ConversionError:
    return ConversionError(f"layer '{layer.name}' ({type(layer).__name__}): {why}", layer=layer.name,
                           fmt="onnx")


def _kind(layer) -> str:
    cls = type(layer.cell).__name__
    if cls not in _KIND:
        raise _err(layer, f"recurrent cell {cls} is not supported (LSTMCell, GRUCell, SimpleRNNCell)")
    return _KIND[cls]


def cell_weights(layer) -> dict:
    """ONNX W (G*H, F), R (G*H, H), B (2*G*H) or None, activations, extra attributes."""
    cell = layer.cell
    kind = _kind(layer)
    h = int(cell.units)
    kernel, rec = _w(cell.kernel), _w(cell.recurrent_kernel)
    bias = _w(cell.bias) if cell.use_bias else None
    attrs = {}
    if kind == "LSTM":
        order = [0, 3, 1, 2]  # keras i,f,c,o -> onnx i,o,f,c

        def reorder(a):  # a: (..., 4H) along the last axis
            return np.concatenate([a[..., j * h:(j + 1) * h] for j in order], axis=-1)

        W, R = reorder(kernel).T, reorder(rec).T
        B = None if bias is None else np.concatenate([reorder(bias), np.zeros(4 * h, np.float32)])
        acts = [rnn_activation(cell.recurrent_activation, layer), rnn_activation(cell.activation, layer),
                rnn_activation(cell.activation, layer)]
    elif kind == "GRU":
        W, R = kernel.T, rec.T
        if cell.reset_after:
            attrs["linear_before_reset"] = 1
            B = None if bias is None else bias.reshape(2, 3 * h).reshape(-1)
        else:
            attrs["linear_before_reset"] = 0
            B = None if bias is None else np.concatenate([bias.reshape(-1), np.zeros(3 * h, np.float32)])
        acts = [rnn_activation(cell.recurrent_activation, layer), rnn_activation(cell.activation, layer)]
    else:
        W, R = kernel.T, rec.T
        B = None if bias is None else np.concatenate([bias, np.zeros(h, np.float32)])
        acts = [rnn_activation(cell.activation, layer)]
    return {"kind": kind, "H": h, "W": np.ascontiguousarray(W), "R": np.ascontiguousarray(R), "B": B,
            "acts": acts, "attrs": attrs}


def _check_layer(ctx, layer):
    if getattr(layer, "stateful", False):
        ctx.notes.append(f"{layer.name}: stateful layer exported as stateless (states start at zero "
                         "or from the initial-state inputs on every call)")
    if getattr(layer, "unroll", False):
        pass  # same maths


# --------------------------------------------------------------------------- mask helpers
def _compact(ctx, x: str, mask: str):
    """Move each row's valid steps to the front. Returns (x_compacted (B,T,F), seq_lens int32, cumsum)."""
    g = ctx.graph
    mi = g.cast(mask, np.int64)                                   # (B, T)
    t_len = g.shape(x, 1, 2)                                      # [T]
    t_idx = g.op("Range", [g.const(np.int64(0)), g.squeeze(t_len, [0]), g.const(np.int64(1))])
    key = g.op("Add", [g.op("Mul", [g.op("Sub", [g.const(np.int64(1)), mi]), t_len]), t_idx])
    _, idx = g.op("TopK", [key, t_len], n_out=2, axis=1, largest=0, sorted=1, hint="mask_order")
    idx3 = g.op("Expand", [g.unsqueeze(idx, [2]), g.shape(x)])
    xc = g.op("GatherElements", [x, idx3], axis=1, hint="compact")
    lens = g.cast(g.reduce("ReduceSum", mi, [1], keepdims=0), np.int32)
    cs = g.op("CumSum", [mi, g.const(np.int64(1))])
    return xc, lens, cs


def _expand_back(ctx, y_bt: str, mask: str, cs: str, zero_output: bool) -> str:
    """(B,T,D) outputs of the compacted run -> Keras positions (carry / zero at masked steps)."""
    g = ctx.graph
    j = g.op("Max", [g.op("Sub", [cs, g.const(np.int64(1))]), g.const(np.int64(0))])
    idx = g.op("Expand", [g.unsqueeze(j, [2]), g.shape(y_bt)])
    y = g.op("GatherElements", [y_bt, idx], axis=1, hint="uncompact")
    if zero_output:
        w = ctx.mask_float(mask)
    else:  # zero only before the first valid step
        w = g.cast(g.op("Greater", [cs, g.const(np.int64(0))]), np.float32)
    return g.op("Mul", [y, g.unsqueeze(w, [2])])


# --------------------------------------------------------------------------- the op
def emit_rnn(ctx, layers: list, x: Value, *, mask: str | None, initial_state: list[str] | None,
             return_sequences: bool, return_state: bool, go_backwards: bool, zero_output_for_mask: bool,
             merge_mode: str | None = "concat", hint: str = "rnn"):
    """Emit one ONNX recurrent op for ``layers`` (1 = unidirectional, 2 = [forward, backward]).

    Returns ``(outputs, states)``: outputs is a list (one tensor, or two for merge_mode None),
    states a list of (B, H) tensors in Keras order (forward states, then backward).
    """
    g = ctx.graph
    cw = [cell_weights(l) for l in layers]
    kind, h = cw[0]["kind"], cw[0]["H"]
    ndir = len(layers)
    bidir = ndir == 2
    direction = "bidirectional" if bidir else "forward"
    xb = x.name
    if go_backwards and not bidir:
        if mask is not None:
            xb, mask = g.reverse(xb, 1), g.reverse(mask, 1)
        elif return_sequences:
            xb = g.reverse(xb, 1)
        else:
            direction = "reverse"
    lens = cs = None
    x_tm = None
    if mask is not None:
        alias = ctx.compact_alias.get(x.name)
        if alias is not None and alias[0] == mask and not go_backwards:
            x_tm = alias[1]
            _, lens, cs = _compact(ctx, x.name, mask)
        else:
            xb, lens, cs = _compact(ctx, xb, mask)
    if x_tm is None:
        x_tm = g.transpose(xb, [1, 0, 2], hint=f"{hint}/time_major")
    W = g.const(np.stack([c["W"] for c in cw]), hint=f"{hint}/W")
    R = g.const(np.stack([c["R"] for c in cw]), hint=f"{hint}/R")
    B = "" if cw[0]["B"] is None else g.const(np.stack([c["B"] for c in cw]), hint=f"{hint}/B")
    ns = _N_STATES[kind]
    init = [""] * ns
    if initial_state:
        if len(initial_state) != ns * ndir:
            raise _err(layers[0], f"expected {ns * ndir} initial states, got {len(initial_state)}")
        for s in range(ns):
            per_dir = [g.unsqueeze(initial_state[d * ns + s], [0]) for d in range(ndir)]
            init[s] = per_dir[0] if ndir == 1 else g.op("Concat", per_dir, axis=0)
    acts = [a for c in cw for a in c["acts"]]
    attrs = dict(hidden_size=h, direction=direction, **cw[0]["attrs"],
                 **rnn_activation_attrs(acts, _DEFAULT_ACTS[kind]))
    ins = [x_tm, W, R, B, lens or "", init[0]]
    if kind == "LSTM":
        ins += [init[1]]
    n_out = 3 if kind == "LSTM" else 2
    y_name = g.unique(f"{hint}/Y") if return_sequences else ""
    yh_name = g.unique(f"{hint}/Y_h")
    outs = [y_name, yh_name]
    if kind == "LSTM":
        outs.append(g.unique(f"{hint}/Y_c") if return_state else "")
    g.op(kind, ins, n_out=n_out, outputs=outs, hint=hint, **attrs)

    # states, Keras order: [h(, c)] per direction
    states = []
    for d in range(ndir):
        for s, name in enumerate(outs[1:1 + ns]):
            if not return_state:
                continue
            states.append(g.squeeze(name, [0]) if ndir == 1 else
                          g.op("Gather", [name, g.const(np.int64(d))], axis=0))

    def merge(a: str, b: str) -> list[str]:
        if merge_mode == "sum":
            return [g.op("Add", [a, b])]
        if merge_mode == "ave":
            return [g.op("Mul", [g.op("Add", [a, b]), g.const(np.float32(0.5))])]
        if merge_mode == "mul":
            return [g.op("Mul", [a, b])]
        if merge_mode is None:
            return [a, b]
        raise _err(layers[0], f"merge_mode={merge_mode!r} is not supported")

    if not return_sequences:
        if ndir == 1:
            return [g.squeeze(yh_name, [0])], states
        if merge_mode == "concat":
            return [g.op("Reshape", [g.transpose(yh_name, [1, 0, 2]), g.i64([0, -1])], hint=hint)], states
        fwd = g.op("Gather", [yh_name, g.const(np.int64(0))], axis=0)
        bwd = g.op("Gather", [yh_name, g.const(np.int64(1))], axis=0)
        return merge(fwd, bwd), states

    # sequences
    if ndir == 1:
        y_tm = g.squeeze(y_name, [1])                             # (T, B, H)
        y_bt = g.transpose(y_tm, [1, 0, 2], hint=hint)            # (B, T, H)
        if mask is not None:
            y_bt = _expand_back(ctx, y_bt, mask, cs, zero_output_for_mask)
            if not go_backwards:
                ctx.compact_alias[y_bt] = (mask, y_tm)
        return [y_bt], states
    if merge_mode == "concat":
        y_bt = g.op("Reshape", [g.transpose(y_name, [2, 0, 1, 3]), g.i64([0, 0, -1])])  # (B,T,2H)
        if mask is not None:
            y_tm = g.op("Reshape", [g.transpose(y_name, [0, 2, 1, 3]), g.i64([0, 0, -1])])  # (T,B,2H)
            y_bt = _expand_back(ctx, y_bt, mask, cs, zero_output_for_mask)
            ctx.compact_alias[y_bt] = (mask, y_tm)
        return [y_bt], states
    y4 = g.transpose(y_name, [2, 0, 1, 3])                          # (B, T, 2, H)
    if mask is not None:
        y_bt = g.op("Reshape", [y4, g.i64([0, 0, -1])])
        y_bt = _expand_back(ctx, y_bt, mask, cs, zero_output_for_mask)
        y4 = g.op("Reshape", [y_bt, g.i64([0, 0, 2, h])])
    fwd = g.op("Gather", [y4, g.const(np.int64(0))], axis=2)
    bwd = g.op("Gather", [y4, g.const(np.int64(1))], axis=2)
    return merge(fwd, bwd), states


def _initial_state(kwargs) -> list[str] | None:
    st = kwargs.get("initial_state")
    if st is None:
        return None
    if isinstance(st, Value):
        st = [st]
    return [s.name for s in st]


def _call_inputs(ctx, args, kwargs):
    """The sequence, its mask and the kwargs of a recurrent call; ``layer([x, h0, c0])`` becomes
    ``x`` with ``initial_state=[h0, c0]``."""
    x = args[0]
    if isinstance(x, (list, tuple)):
        x, rest = x[0], list(x[1:])
        if rest and kwargs.get("initial_state") is None:
            kwargs = dict(kwargs, initial_state=rest)
    mask = ctx.call_mask(args, kwargs)
    if isinstance(mask, list):  # the sequence's mask
        mask = mask[0]
    return x, mask, kwargs


@ONNX_LAYERS.register("LSTM", "GRU", "SimpleRNN", "RNN")
def convert_rnn(ctx, layer, args, kwargs):
    _check_layer(ctx, layer)
    x, mask, kwargs = _call_inputs(ctx, args, kwargs)
    outs, states = emit_rnn(
        ctx, [layer], x, mask=mask, initial_state=_initial_state(kwargs),
        return_sequences=bool(layer.return_sequences), return_state=bool(layer.return_state),
        go_backwards=bool(layer.go_backwards), zero_output_for_mask=bool(layer.zero_output_for_mask),
        hint=layer.name)
    out_mask = ctx.input_mask([x], kwargs) if layer.return_sequences else None
    res = [Value(outs[0], mask=out_mask)] + [Value(s) for s in states]
    return res if layer.return_state else res[0]


@ONNX_LAYERS.register("Bidirectional")
def convert_bidirectional(ctx, layer, args, kwargs):
    fwd, bwd = layer.forward_layer, layer.backward_layer
    if type(fwd) is not type(bwd) or type(fwd.cell) is not type(bwd.cell):
        raise _err(layer, "forward and backward layers of different kinds are not supported")
    if fwd.go_backwards or not bwd.go_backwards:
        raise _err(layer, "expected a forward layer and a go_backwards backward layer")
    if fwd.cell.units != bwd.cell.units:
        raise _err(layer, "forward and backward layers with different units are not supported")
    _check_layer(ctx, fwd)
    x, mask, kwargs = _call_inputs(ctx, args, kwargs)
    outs, states = emit_rnn(
        ctx, [fwd, bwd], x, mask=mask, initial_state=_initial_state(kwargs),
        return_sequences=bool(layer.return_sequences), return_state=bool(layer.return_state),
        go_backwards=False, zero_output_for_mask=bool(layer.return_sequences),
        merge_mode=layer.merge_mode, hint=layer.name)
    out_mask = ctx.input_mask([x], kwargs) if layer.return_sequences else None
    res = [Value(o, mask=out_mask) for o in outs] + [Value(s) for s in states]
    return res if len(res) > 1 else res[0]
