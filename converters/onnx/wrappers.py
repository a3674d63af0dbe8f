"""Layers that wrap other layers: ``TimeDistributed`` over any layer, ``RNN`` over
``StackedRNNCells``, ``Bidirectional`` with a ``backward_layer`` unlike the forward one.

Each recurrent cell still becomes one native ONNX LSTM / GRU / RNN op
(:func:`converters.onnx.recurrent.emit_rnn`); nothing here runs as a Loop.

* ``RNN(StackedRNNCells([c1, c2, ...]))`` (keras/src/layers/rnn/stacked_rnn_cells.py): at every
  step cell k reads cell k-1's output, and a masked step keeps every cell's state. The same as a
  stack of one-cell layers that all see the mask, the inner ones returning sequences: one op per
  cell. States (``return_state``, ``initial_state``) are flat, in cell order: ``h1(, c1), h2(, c2)``.
  ``go_backwards`` reverses the input (and mask) once, before the first cell.
* ``Bidirectional`` (keras/src/layers/rnn/bidirectional.py): forward and backward layers run on the
  same input; with ``return_sequences`` the backward output is flipped back in time; both layers
  zero their outputs at masked steps when returning sequences. One bidirectional op when the two
  layers share kind, units, bias and GRU ``reset_after``; otherwise two ops (any two recurrent
  layers with a native form, stacked cells included).
* ``TimeDistributed(layer)`` (keras/src/layers/rnn/time_distributed.py): the layer runs on every
  step. Layers that act on the last axis only run on ``(batch, time, ...)`` as they are; any other
  layer (Conv1D, a recurrent layer on a 4-D input, Flatten...) runs once on ``(batch * time, ...)``
  and its output is reshaped back. The wrapper passes its input mask on (Keras's default
  ``compute_mask``); an inner layer's own mask is dropped, as in Keras.
"""
from __future__ import annotations

import numpy as np

from converters.onnx import recurrent
from converters.onnx.graph import ONNX_LAYERS, Value, convert_call
from rnnedge.errors import ConversionError

NATIVE_CELLS = ("LSTMCell", "GRUCell", "SimpleRNNCell")
_N_STATES = {"LSTMCell": 2, "GRUCell": 1, "SimpleRNNCell": 1}
# inner layers of TimeDistributed that act on the last axis (or element-wise): no reshape needed
PER_POSITION = ("Dense", "Activation", "Dropout", "SpatialDropout1D", "GaussianNoise", "GaussianDropout",
                "AlphaDropout", "ReLU", "LeakyReLU", "ELU", "Embedding")


def _err(layer, why: str) -> ConversionError:
    return ConversionError(f"layer '{layer.name}' ({type(layer).__name__}): {why}", layer=layer.name, fmt="onnx")


def _cells(cell) -> list:
    """The cells of a (possibly stacked) recurrent cell, in order."""
    if type(cell).__name__ == "StackedRNNCells":
        return list(cell.cells)
    return [cell]


def native_recurrent_form(layer) -> bool:
    """True for recurrent layers that become native LSTM/GRU/RNN ops: ``RNN`` subclasses whose cells
    are all LSTMCell/GRUCell/SimpleRNNCell (stacked or not), and ``Bidirectional`` /
    ``TimeDistributed`` over such layers. These never take the tf2onnx fallback (a Loop)."""
    import keras

    if isinstance(layer, keras.layers.Bidirectional):
        return native_recurrent_form(layer.forward_layer) and native_recurrent_form(layer.backward_layer)
    if isinstance(layer, keras.layers.TimeDistributed):
        return native_recurrent_form(layer.layer)
    if isinstance(layer, keras.layers.RNN):
        cells = _cells(layer.cell)
        return all(type(c).__name__ in NATIVE_CELLS for c in cells)
    return False


class StackedCell:
    """One cell of a StackedRNNCells seen as a one-cell recurrent layer (what emit_rnn reads)."""

    def __init__(self, layer, index: int, cell):
        self.name = f"{layer.name}/cell_{index}"
        self.cell = cell


def _flat_states(kwargs) -> list[str] | None:
    st = kwargs.get("initial_state")
    if st is None:
        return None
    flat: list[str] = []

    def add(o):
        if isinstance(o, Value):
            flat.append(o.name)
        elif isinstance(o, (list, tuple)):
            for v in o:
                add(v)

    add(st)
    return flat


def run_recurrent(ctx, layer, x: Value, *, mask, initial_state, zero_output_for_mask: bool):
    """One recurrent layer (one cell or stacked cells) as native ops. Returns ``(output, states)``:
    the output tensor (in processing order when it goes backwards, as Keras) and its final states
    in Keras order."""
    g = ctx.graph
    recurrent._check_layer(ctx, layer)
    cells = _cells(layer.cell)
    if any(type(c).__name__ not in NATIVE_CELLS for c in cells):
        raise _err(layer, f"cells {[type(c).__name__ for c in cells]} have no native ONNX op "
                          f"(supported: {', '.join(NATIVE_CELLS)})")
    rs, want_states = bool(layer.return_sequences), bool(layer.return_state)
    if len(cells) == 1:
        outs, states = recurrent.emit_rnn(
            ctx, [layer], x, mask=mask, initial_state=initial_state, return_sequences=rs,
            return_state=want_states, go_backwards=bool(layer.go_backwards),
            zero_output_for_mask=zero_output_for_mask, hint=layer.name)
        return outs[0], states
    n_states = sum(_N_STATES[type(c).__name__] for c in cells)
    if initial_state is not None and len(initial_state) != n_states:
        raise _err(layer, f"expected {n_states} initial states for its {len(cells)} cells, got {len(initial_state)}")
    cur = x
    if layer.go_backwards:
        cur = Value(g.reverse(x.name, 1), x.shape, x.dtype)
        mask = g.reverse(mask, 1) if mask is not None else None
    states, pos = [], 0
    for i, cell in enumerate(cells):
        ns = _N_STATES[type(cell).__name__]
        last = i == len(cells) - 1
        outs, st = recurrent.emit_rnn(
            ctx, [StackedCell(layer, i, cell)], cur, mask=mask,
            initial_state=initial_state[pos:pos + ns] if initial_state else None,
            return_sequences=rs or not last, return_state=want_states, go_backwards=False,
            zero_output_for_mask=zero_output_for_mask and last, hint=f"{layer.name}/cell_{i}")
        pos += ns
        states += st
        cur = Value(outs[0], dtype=x.dtype)
    return cur.name, states


@ONNX_LAYERS.register("RNN", overwrite=True)
def convert_rnn_any(ctx, layer, args, kwargs):
    """``keras.layers.RNN`` over one native cell (as LSTM/GRU/SimpleRNN) or StackedRNNCells."""
    if type(layer.cell).__name__ != "StackedRNNCells":
        return recurrent.convert_rnn(ctx, layer, args, kwargs)
    x, mask, kwargs = recurrent._call_inputs(ctx, args, kwargs)
    out, states = run_recurrent(ctx, layer, x, mask=mask, initial_state=_flat_states(kwargs),
                                zero_output_for_mask=bool(layer.zero_output_for_mask))
    out_mask = ctx.input_mask([x], kwargs) if layer.return_sequences else None
    res = [Value(out, mask=out_mask)] + [Value(s) for s in states]
    return res if layer.return_state else res[0]


def _one_op(fwd, bwd) -> bool:
    """Can one bidirectional ONNX op hold both layers (same weights layout and attributes)?"""
    if type(fwd) is not type(bwd) or fwd.go_backwards or not bwd.go_backwards:
        return False
    a, b = fwd.cell, bwd.cell
    if type(a) is not type(b) or type(a).__name__ not in NATIVE_CELLS:
        return False
    return (a.units == b.units and bool(a.use_bias) == bool(b.use_bias)
            and getattr(a, "reset_after", None) == getattr(b, "reset_after", None))


def _merge(ctx, layer, a: str, b: str) -> list[str]:
    g = ctx.graph
    mode = layer.merge_mode
    if mode == "concat":
        return [g.op("Concat", [a, b], axis=-1, hint=layer.name)]
    if mode == "sum":
        return [g.op("Add", [a, b], hint=layer.name)]
    if mode == "ave":
        return [g.op("Div", [g.op("Add", [a, b]), g.const(np.float32(2))], hint=layer.name)]
    if mode == "mul":
        return [g.op("Mul", [a, b], hint=layer.name)]
    if mode is None:
        return [a, b]
    raise _err(layer, f"merge_mode={mode!r} is not supported")


@ONNX_LAYERS.register("Bidirectional", overwrite=True)
def convert_bidirectional_any(ctx, layer, args, kwargs):
    """One bidirectional op when the two layers fit one (recurrent.convert_bidirectional), else
    forward and backward layers as ops of their own, merged as Keras merges them."""
    fwd, bwd = layer.forward_layer, layer.backward_layer
    if _one_op(fwd, bwd):
        return recurrent.convert_bidirectional(ctx, layer, args, kwargs)
    x, mask, kwargs = recurrent._call_inputs(ctx, args, kwargs)
    init = _flat_states(kwargs)
    half = len(init) // 2 if init else 0
    rs = bool(layer.return_sequences)
    y, s_f = run_recurrent(ctx, fwd, x, mask=mask, initial_state=init[:half] if init else None,
                           zero_output_for_mask=bool(fwd.zero_output_for_mask))
    y_rev, s_b = run_recurrent(ctx, bwd, x, mask=mask, initial_state=init[half:] if init else None,
                               zero_output_for_mask=bool(bwd.zero_output_for_mask))
    if rs:
        y_rev = ctx.graph.reverse(y_rev, 1)
    out_mask = ctx.input_mask([x], kwargs) if rs else None
    res = [Value(o, mask=out_mask) for o in _merge(ctx, layer, y, y_rev)] + [Value(s) for s in s_f + s_b]
    return res if len(res) > 1 else res[0]


@ONNX_LAYERS.register("TimeDistributed")
def convert_time_distributed(ctx, layer, args, kwargs):
    """``TimeDistributed(layer)``: see the module docstring."""
    g = ctx.graph
    inner = layer.layer
    cls = type(inner).__name__
    x = args[0][0] if isinstance(args[0], (list, tuple)) else args[0]
    mask = ctx.input_mask(args, kwargs)
    if mask is not None and getattr(inner, "_call_has_mask_arg", False):
        raise _err(layer, f"a masked input: Keras hands {cls} each step's (batch,) slice of the mask, "
                          "which has no meaning for it")
    if cls in PER_POSITION or (cls == "LayerNormalization" and _last_axis_only(inner, x.rank - 1)):
        outs, path = convert_call(ctx, inner, [x], {})
    else:
        flat = g.op("Reshape", [x.name, g.op("Concat", [g.i64([-1]), g.shape(x.name, 2)], axis=0)],
                    hint=f"{layer.name}/fold_time")
        outs, path = convert_call(ctx, inner, [Value(flat, (None,) + tuple(x.shape[2:]), x.dtype)], {})
        y = outs[0].name
        back = g.op("Concat", [g.shape(x.name, 0, 2), g.shape(y, 1)], axis=0)
        outs = [Value(g.op("Reshape", [y, back], hint=f"{layer.name}/unfold_time"))]
    ctx.paths.setdefault(inner.name, {"class": cls, "path": path, "inside": layer.name})
    return Value(outs[0].name, mask=mask)


def _last_axis_only(layer, inner_rank: int) -> bool:
    axes = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
    return all(a in (-1, inner_rank - 1) for a in axes)

