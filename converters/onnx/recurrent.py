"""Keras LSTM / GRU / SimpleRNN / Bidirectional -> ONNX, in the fastest measured form per layer.

Forms (:func:`choose_lowering`; ``extra["onnx_rnn_lowering"]`` forces one; the choice goes into
the manifest as ``recurrent_lowering``):

* ``native``: ONE ONNX LSTM / GRU / RNN op (both directions of a Bidirectional in it).
* ``scan``: the input projection of every step as one MatMul (x @ W^T + biases, biases that do
  not meet GRU's reset gate folded in), then one ``Scan`` whose body holds only the recurrent
  Gemm and the gate maths, with ``sequence_lens`` semantics (state frozen past a row's length).
  It produces what the native op does (Y, Y_h, Y_c), so everything around it is shared.
* ``if``: ``If(batch <= N)`` with the native op in one branch and the Scan in the other.

Why (benchmarks/onnx_lowerings.py, onnxruntime 1.32 CPU): the deep_cpu LSTM/GRU kernels apply
MLAS-vectorised activations per row and were the fastest form at every batch (1-128) and size
(32-256 units). The RNN kernel (onnxruntime/core/providers/cpu/rnn/rnn.cc) calls its activation
through a ``std::function`` once per element (ApplyActivationToBatches: clip + scalar tanh, one
thread), and calls ``math::Gemm`` with the transposed, unpacked R at every step; the Scan's Tanh
is one vectorised MLAS call and its Gemm takes R^T as a constant initializer. The per-element cost (~25 ns
here) only loses to the Scan's per-step overhead (~1.5 us) while batch x units <= ~48.

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

from dataclasses import dataclass

import numpy as np

from converters.onnx.activations import rnn_activation, rnn_activation_attrs
from converters.onnx.graph import ONNX_LAYERS, Graph, Value
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


# --------------------------------------------------------------------------- lowering choice
LOWERINGS = ("auto", "native", "scan")
# SimpleRNN: onnxruntime's RNN kernel beats the Scan form only while batch * units <= this
# (measured: benchmarks/onnx_lowerings.py; see the module docstring)
NATIVE_RNN_MAX_BATCH_UNITS = 48


@dataclass
class Lowering:
    """How one recurrent layer is lowered: ``form`` is "native", "scan" or "if" (an ``If`` on the
    batch size: native op up to ``native_max_batch`` rows, Scan above)."""

    form: str
    reason: str
    native_max_batch: int | None = None


def choose_lowering(kind: str, units: int, batch: int | None, option: str = "auto",
                    native_max_batch: int | None = None) -> Lowering:
    """The lowering of one ``kind`` ("LSTM"/"GRU"/"RNN") layer of ``units`` at ``batch`` (None =
    dynamic). ``option``: "auto", "native" or "scan" (``extra["onnx_rnn_lowering"]``);
    ``native_max_batch`` overrides the SimpleRNN batch threshold (``extra["onnx_rnn_native_max_batch"]``).
    """
    if option not in LOWERINGS:
        raise ConversionError(f"extra.onnx_rnn_lowering={option!r}: choose one of {', '.join(LOWERINGS)}",
                              fmt="onnx")
    if option != "auto":
        return Lowering(option, f"asked for (extra.onnx_rnn_lowering={option})")
    if kind != "RNN":
        return Lowering("native", f"onnxruntime's {kind} kernel was the fastest form at every batch measured "
                                  "(1-128; 32-256 units)")
    limit = (max(NATIVE_RNN_MAX_BATCH_UNITS // max(units, 1), 0) if native_max_batch is None
             else int(native_max_batch))
    why = (f"onnxruntime's RNN kernel applies the activation one element at a time, so it only wins "
           f"while batch x units is small (batch <= {limit} at {units} units)")
    if batch is not None:
        return Lowering("native" if batch <= limit else "scan", f"batch fixed at {batch}: {why}")
    if limit < 1:
        return Lowering("scan", why)
    return Lowering("if", f"dynamic batch: {why}", native_max_batch=limit)


# --------------------------------------------------------------------------- the recurrence
@dataclass
class _Rec:
    """Outputs of a recurrence in the native op's layout (Y (T,D,B,H), Y_h/Y_c (D,B,H)); the Scan
    form also gives them per direction (``y_dirs``: (T,B,H), ``h_dirs``/``c_dirs``: (B,H))."""

    y: str | None
    yh: str
    yc: str | None
    y_dirs: list | None = None
    h_dirs: list | None = None
    c_dirs: list | None = None


def _native_core(g, kind, cw, x_tm, lens, init, direction, need_y, need_c, hint, xb=None) -> _Rec:
    h = cw[0]["H"]
    W = g.const(np.stack([c["W"] for c in cw]), hint=f"{hint}/W")
    R = g.const(np.stack([c["R"] for c in cw]), hint=f"{hint}/R")
    B = "" if cw[0]["B"] is None else g.const(np.stack([c["B"] for c in cw]), hint=f"{hint}/B")
    acts = [a for c in cw for a in c["acts"]]
    attrs = dict(hidden_size=h, direction=direction, **cw[0]["attrs"],
                 **rnn_activation_attrs(acts, _DEFAULT_ACTS[kind]))
    ins = [x_tm, W, R, B, lens or "", init[0]]
    if kind == "LSTM":
        ins += [init[1]]
    outs = [g.unique(f"{hint}/Y") if need_y else "", g.unique(f"{hint}/Y_h")]
    if kind == "LSTM":
        outs.append(g.unique(f"{hint}/Y_c") if need_c else "")
    g.op(kind, ins, n_out=len(outs), outputs=outs, hint=hint, **attrs)
    return _Rec(outs[0] or None, outs[1], outs[2] if kind == "LSTM" and need_c else None)


def _act(g, act, x: str) -> str:
    """One recurrent-op activation ((ONNX name, alpha, beta) from cell_weights) as a plain node."""
    name, alpha, beta = act
    if name == "Affine":
        y = x if alpha == 1.0 else g.op("Mul", [x, g.const(np.float32(alpha))])
        return y if not beta else g.op("Add", [y, g.const(np.float32(beta))])
    if name == "HardSigmoid":
        return g.op("HardSigmoid", [x], alpha=float(alpha), beta=float(beta))
    if name == "Elu":
        return g.op("Elu", [x], alpha=float(alpha))
    return g.op(name, [x])


def _scan_projection(g, kind, c, x, hint) -> list[str]:
    """The input projection of one direction over all steps: x (B,T,F) or (T,B,F) @ W^T + biases
    -> the Scan's inputs ((.., .., G*H); GRU: zr (.., .., 2H) and n (.., .., H)). Recurrent biases
    that do not meet the reset gate are folded in here."""
    h = c["H"]
    W, B = c["W"], c["B"]
    gh = W.shape[0]
    bias = np.zeros(gh, np.float32) if B is None else B[:gh] + B[gh:]
    if kind == "GRU" and B is not None and c["attrs"].get("linear_before_reset"):
        bias[2 * h:] = B[2 * h:3 * h]  # Wb_n only: Rb_n sits inside r * (h R_n^T + Rb_n)
    parts = [(0, 2 * h), (2 * h, 3 * h)] if kind == "GRU" else [(0, gh)]
    outs = []
    for a, b in parts:
        y = g.op("MatMul", [x, g.const(np.ascontiguousarray(W[a:b].T), hint=f"{hint}/W_T")],
                 hint=f"{hint}/x_proj")
        if B is not None:
            y = g.op("Add", [y, g.const(np.ascontiguousarray(bias[a:b]), hint=f"{hint}/b")])
        outs.append(y)
    return outs


def _scan_cell(b, kind, c, h_prev, c_prev, xs, hint: str = "rnn") -> tuple[str, str | None]:
    """One step of one direction inside the Scan body ``b``: returns (h, c). The recurrent weights
    are named ``<hint>/R_T`` (weight-only int8 finds them by name in tests)."""
    H = c["H"]
    R, B, acts = c["R"], c["B"], c["acts"]
    if kind == "RNN":
        return _act(b, acts[0], b.op("Gemm", [h_prev, b.const(np.ascontiguousarray(R.T), hint=f"{hint}/R_T"), xs[0]])), None
    if kind == "LSTM":  # ONNX gate order i, o, f, c
        z = b.op("Gemm", [h_prev, b.const(np.ascontiguousarray(R.T), hint=f"{hint}/R_T"), xs[0]])
        ifo, cc = b.op("Split", [z, b.i64([3 * H, H])], n_out=2, axis=1)
        i, o, f = b.op("Split", [_act(b, acts[0], ifo), b.i64([H, H, H])], n_out=3, axis=1)
        c_new = b.op("Add", [b.op("Mul", [f, c_prev]), b.op("Mul", [i, _act(b, acts[1], cc)])])
        return b.op("Mul", [o, _act(b, acts[2], c_new)]), c_new
    # GRU: z, r, n
    lbr = bool(c["attrs"].get("linear_before_reset"))
    rb_n = np.zeros(H, np.float32) if B is None else np.ascontiguousarray(B[5 * H:6 * H])
    if lbr:
        hr = b.op("Gemm", [h_prev, b.const(np.ascontiguousarray(R.T), hint=f"{hint}/R_T"),
                           b.const(np.concatenate([np.zeros(2 * H, np.float32), rb_n]))])
        hzr, hn = b.op("Split", [hr, b.i64([2 * H, H])], n_out=2, axis=1)
    else:
        hzr = b.op("MatMul", [h_prev, b.const(np.ascontiguousarray(R[:2 * H].T), hint=f"{hint}/R_T")])
    zr = _act(b, acts[0], b.op("Add", [xs[0], hzr]))
    zg, rg = b.op("Split", [zr, b.i64([H, H])], n_out=2, axis=1)
    if lbr:
        pre = b.op("Add", [xs[1], b.op("Mul", [rg, hn])])
    else:
        pre = b.op("Gemm", [b.op("Mul", [rg, h_prev]), b.const(np.ascontiguousarray(R[2 * H:].T), hint=f"{hint}/R_T"), xs[1]])
    n = _act(b, acts[1], pre)
    return b.op("Add", [n, b.op("Mul", [zg, b.op("Sub", [h_prev, n])])]), None


def _child(g: Graph) -> Graph:
    """A graph for a subgraph attribute: its own nodes and initializers, names unique model-wide."""
    sub = Graph(g.opset)
    sub._names = g._names
    return sub


def _vi(name: str, shape=None, elem=None):
    from onnx import TensorProto, helper

    return helper.make_tensor_value_info(name, elem or TensorProto.FLOAT, shape)


def _scan_core(g, kind, cw, x_tm, lens, init, direction, need_y, need_c, hint, xb=None) -> _Rec:
    """Input projection hoisted into one MatMul over all steps, then one ``Scan`` whose body holds
    only the recurrent MatMul and the gate arithmetic (both directions in one body).

    The projection reads the batch-major input ``xb`` when there is one (the Scan then walks its
    axis 1): no Transpose feeds the MatMul, which onnxruntime 1.32 cannot take once the graph is
    converted to fp16 (a Cast -> Transpose -> MatMul chain crashes its optimiser at load)."""
    from onnx import TensorProto, helper

    ndir, h = len(cw), cw[0]["H"]
    ns = _N_STATES[kind]
    dirs = [0, 1] if ndir == 2 else [1 if direction == "reverse" else 0]
    zeros = None
    states0 = []
    for d in range(ndir):
        for s in range(ns):
            if init[s]:
                states0.append(g.op("Gather", [init[s], g.const(np.int64(d))], axis=0) if ndir == 2
                               else g.squeeze(init[s], [0]))
            else:
                if zeros is None:
                    batch = g.shape(xb, 0, 1) if xb else g.shape(x_tm, 1, 2)
                    bh = g.op("Concat", [batch, g.i64([h])], axis=0)
                    zeros = g.op("ConstantOfShape", [bh], value=helper.make_tensor("zero", TensorProto.FLOAT,
                                                                                   [1], [0.0]))
                states0.append(zeros)
    axis = 1 if xb else 0  # the time axis of the Scan's inputs
    xs = [_scan_projection(g, kind, c, xb or x_tm, hint) for c in cw]
    step_mask = None
    if lens:  # (B, T, 1) / (T, B, 1): step t is valid for row b while t < sequence_lens[b]
        t_len = g.shape(xb, 1, 2) if xb else g.shape(x_tm, 0, 1)
        t_idx = g.op("Range", [g.const(np.int64(0)), g.squeeze(t_len, [0]), g.const(np.int64(1))])
        lens64 = g.cast(lens, np.int64)
        pair = [g.unsqueeze(t_idx, [0]), g.unsqueeze(lens64, [1])] if xb else \
            [g.unsqueeze(t_idx, [1]), g.unsqueeze(lens64, [0])]
        step_mask = g.unsqueeze(g.op("Less", pair), [2])

    b = _child(g)
    b_states = [[b.unique(f"{hint}/scan/{'hc'[s]}{d}") for s in range(ns)] for d in range(ndir)]
    b_xs = [[b.unique(f"{hint}/scan/x{d}_{k}") for k in range(len(xs[d]))] for d in range(ndir)]
    b_mask = [b.unique(f"{hint}/scan/valid{d}") for d in range(ndir)] if step_mask else []
    st_out, y_out = [], []
    for d in range(ndir):
        hn, cn = _scan_cell(b, kind, cw[d], b_states[d][0], b_states[d][1] if ns == 2 else None, b_xs[d],
                            hint=f"{hint}/{'fb'[d]}" if ndir == 2 else hint)
        new = [hn] + ([cn] if ns == 2 else [])
        if step_mask:  # past a row's length the state stays (ONNX sequence_lens semantics)
            new = [b.op("Where", [b_mask[d], v, old]) for v, old in zip(new, b_states[d])]
        st_out += new
        if need_y:
            y_out += b.op("Identity", [new[0]], outputs=[b.unique(f"{hint}/scan/y{d}")])
    body_inputs = ([_vi(n, [None, h]) for d in range(ndir) for n in b_states[d]]
                   + [_vi(n) for d in range(ndir) for n in b_xs[d]]
                   + [_vi(n, None, TensorProto.BOOL) for n in b_mask])
    body = helper.make_graph(b.nodes, g.unique(f"{hint}/scan_body").replace("/", "_"), body_inputs,
                             [_vi(n, [None, h]) for n in st_out + y_out],
                             initializer=list(b.initializers.values()))
    scan_in = [v for d in range(ndir) for v in xs[d]] + ([step_mask] * ndir if step_mask else [])
    in_dirs = [dirs[d] for d in range(ndir) for _ in xs[d]] + (dirs if step_mask else [])
    outs = g.op("Scan", states0 + scan_in, n_out=len(st_out) + len(y_out), hint=f"{hint}/scan", body=body,
                num_scan_inputs=len(scan_in), scan_input_directions=in_dirs,
                scan_input_axes=[axis] * len(scan_in) if axis else None,
                scan_output_directions=dirs if need_y else None)
    outs = outs if isinstance(outs, list) else [outs]
    h_dirs = [outs[d * ns] for d in range(ndir)]
    c_dirs = [outs[d * ns + 1] for d in range(ndir)] if ns == 2 else None
    y_dirs = outs[len(st_out):] if need_y else None

    def stack(parts, axis):
        us = [g.unsqueeze(p, [axis]) for p in parts]
        return us[0] if len(us) == 1 else g.op("Concat", us, axis=axis)

    return _Rec(stack(y_dirs, 1) if need_y else None, stack(h_dirs, 0),
                stack(c_dirs, 0) if c_dirs and need_c else None, y_dirs, h_dirs, c_dirs)


def _if_core(g, kind, cw, x_tm, lens, init, direction, need_y, need_c, hint, max_batch: int, xb=None) -> _Rec:
    """``If(batch <= max_batch)``: the native op, else the Scan form; both give the native layout."""
    from onnx import helper

    branches = []
    for form, core in (("native", _native_core), ("scan", _scan_core)):
        sub = _child(g)
        rec = core(sub, kind, cw, x_tm, lens, init, direction, need_y, need_c, f"{hint}/{form}", xb=xb)
        names = [n for n in (rec.y, rec.yh, rec.yc) if n]
        outs = [sub.op("Identity", [n], outputs=[sub.unique(f"{hint}/{form}/out")])[0] for n in names]
        branches.append(helper.make_graph(sub.nodes, g.unique(f"{hint}/{form}_branch").replace("/", "_"), [],
                                          [_vi(n) for n in outs], initializer=list(sub.initializers.values())))
    batch = g.shape(x_tm, 1, 2)
    cond = g.squeeze(g.op("LessOrEqual", [batch, g.i64([max_batch])]), [0])
    n_out = 1 + int(need_y) + int(kind == "LSTM" and need_c)
    outs = g.op("If", [cond], n_out=n_out, hint=f"{hint}/if_batch", then_branch=branches[0],
                else_branch=branches[1])
    outs = outs if isinstance(outs, list) else [outs]
    y = outs.pop(0) if need_y else None
    return _Rec(y, outs[0], outs[1] if len(outs) > 1 else None)


# --------------------------------------------------------------------------- the layer
def emit_rnn(ctx, layers: list, x: Value, *, mask: str | None, initial_state: list[str] | None,
             return_sequences: bool, return_state: bool, go_backwards: bool, zero_output_for_mask: bool,
             merge_mode: str | None = "concat", hint: str = "rnn", lowering: str | None = None):
    """Emit the recurrence of ``layers`` (1 = unidirectional, 2 = [forward, backward]).

    ``lowering``: "auto" (default: ``extra["onnx_rnn_lowering"]``, else the fastest measured form,
    see :func:`choose_lowering`), "native" (one ONNX LSTM/GRU/RNN op) or "scan". The choice is
    appended to ``ctx.recurrent`` (the manifest's ``recurrent_lowering``).

    Returns ``(outputs, states)``: outputs is a list (one tensor, or two for merge_mode None),
    states a list of (B, H) tensors in Keras order (forward states, then backward).
    """
    g = ctx.graph
    cw = [cell_weights(l) for l in layers]
    kind, h = cw[0]["kind"], cw[0]["H"]
    ndir = len(layers)
    bidir = ndir == 2
    extra = ctx.options.extra or {}
    low = choose_lowering(kind, h, ctx.options.batch_size, lowering or extra.get("onnx_rnn_lowering", "auto"),
                          extra.get("onnx_rnn_native_max_batch"))
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
            x_tm, xb = alias[1], None  # the compacted sequence exists only time-major
            _, lens, cs = _compact(ctx, x.name, mask)
        else:
            xb, lens, cs = _compact(ctx, xb, mask)
    if x_tm is None:
        x_tm = g.transpose(xb, [1, 0, 2], hint=f"{hint}/time_major")
    ns = _N_STATES[kind]
    init = [""] * ns
    if initial_state:
        if len(initial_state) != ns * ndir:
            raise _err(layers[0], f"expected {ns * ndir} initial states, got {len(initial_state)}")
        for s in range(ns):
            per_dir = [g.unsqueeze(initial_state[d * ns + s], [0]) for d in range(ndir)]
            init[s] = per_dir[0] if ndir == 1 else g.op("Concat", per_dir, axis=0)
    args = (g, kind, cw, x_tm, lens, init, direction, return_sequences, return_state, hint)
    if low.form == "if":
        rec = _if_core(*args, max_batch=low.native_max_batch, xb=xb)
    else:  # (the Transpose to time-major is pruned when only the Scan reads the input)
        rec = (_scan_core if low.form == "scan" else _native_core)(*args, xb=xb)
    record = {"layer": hint, "kind": kind, "units": h, "directions": ndir, "lowering": low.form,
              "reason": low.reason}
    if low.native_max_batch is not None:
        record["native_max_batch"] = low.native_max_batch
    ctx.recurrent.append(record)

    # states, Keras order: [h(, c)] per direction
    states = []
    if return_state:
        for d in range(ndir):
            for s, name in enumerate([rec.yh, rec.yc][:ns]):
                direct = (rec.h_dirs if s == 0 else rec.c_dirs)
                states.append(direct[d] if direct else g.squeeze(name, [0]) if ndir == 1 else
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
            return [rec.h_dirs[0] if rec.h_dirs else g.squeeze(rec.yh, [0])], states
        if merge_mode == "concat":
            if rec.h_dirs:
                return [g.op("Concat", rec.h_dirs, axis=1, hint=hint)], states
            return [g.op("Reshape", [g.transpose(rec.yh, [1, 0, 2]), g.i64([0, -1])], hint=hint)], states
        if rec.h_dirs:
            return merge(*rec.h_dirs), states
        fwd = g.op("Gather", [rec.yh, g.const(np.int64(0))], axis=0)
        bwd = g.op("Gather", [rec.yh, g.const(np.int64(1))], axis=0)
        return merge(fwd, bwd), states

    # sequences
    y_name = rec.y
    if ndir == 1:
        y_tm = rec.y_dirs[0] if rec.y_dirs else g.squeeze(y_name, [1])   # (T, B, H)
        y_bt = g.transpose(y_tm, [1, 0, 2], hint=hint)                    # (B, T, H)
        if mask is not None:
            y_bt = _expand_back(ctx, y_bt, mask, cs, zero_output_for_mask)
            if not go_backwards:
                ctx.compact_alias[y_bt] = (mask, y_tm)
        return [y_bt], states
    if merge_mode == "concat":
        if rec.y_dirs:
            y_tm = g.op("Concat", rec.y_dirs, axis=2)                          # (T,B,2H)
            y_bt = g.transpose(y_tm, [1, 0, 2], hint=hint)
        else:
            y_bt = g.op("Reshape", [g.transpose(y_name, [2, 0, 1, 3]), g.i64([0, 0, -1])])  # (B,T,2H)
            y_tm = None
        if mask is not None:
            if y_tm is None:
                y_tm = g.op("Reshape", [g.transpose(y_name, [0, 2, 1, 3]), g.i64([0, 0, -1])])  # (T,B,2H)
            y_bt = _expand_back(ctx, y_bt, mask, cs, zero_output_for_mask)
            ctx.compact_alias[y_bt] = (mask, y_tm)
        return [y_bt], states
    if rec.y_dirs and mask is None:
        return merge(*[g.transpose(y, [1, 0, 2], hint=hint) for y in rec.y_dirs]), states
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
