"""ONNX step model: one timestep in, one step out, the recurrent state as explicit inputs/outputs.

Every LSTM / GRU layer becomes one native ONNX ``LSTM`` / ``GRU`` node run on a sequence of
length 1 (layout 0: ``(1, batch, features)``), its state fed through ``initial_h`` /
``initial_c`` and read back from ``Y_h`` / ``Y_c``. A SimpleRNN layer is ``act(x W^T + b +
h R^T)`` as two Gemm and one activation node: onnxruntime's RNN kernel applies its activation
one element at a time (converters/onnx/recurrent.py), which made the one-step RNN op 1.6x
slower per step than these plain nodes here. Weights are converted by
the full-sequence exporter's :func:`converters.onnx.recurrent.cell_weights` (Keras LSTM gates
i,f,c,o -> ONNX i,o,f,c; GRU z,r,h with ``linear_before_reset = reset_after``;
``hard_sigmoid`` -> ``HardSigmoid(alpha=1/6, beta=0.5)``), so both exports share one
definition of that maths. Dynamic batch; opset 17, IR version 8 (onnxruntime >= 1.14 loads it).
"""
from __future__ import annotations

import numpy as np

from converters.streaming.plan import StepPlan, dense_activation
from rnnedge.errors import ConversionError, MissingDependencyError, install_command

OPSET = 17
IR_VERSION = 8
_DEFAULT_ACTS = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"], "RNN": ["Tanh"]}
_SIMPLE = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "softplus": "Softplus",
           "softsign": "Softsign", "elu": "Elu", "selu": "Selu", "exponential": "Exp"}


def _w(var) -> np.ndarray:
    return np.asarray(var.numpy() if hasattr(var, "numpy") else var, dtype=np.float32)


class _G:
    """A tiny graph builder: nodes, initializers, unique names."""

    def __init__(self):
        from onnx import helper, numpy_helper

        self.helper, self.numpy_helper = helper, numpy_helper
        self.nodes, self.inits, self._n = [], [], 0

    def name(self, hint: str) -> str:
        self._n += 1
        return f"{hint}_{self._n}"

    def const(self, arr, hint: str) -> str:
        n = self.name(hint)
        self.inits.append(self.numpy_helper.from_array(np.asarray(arr), n))
        return n

    def op(self, op_type: str, inputs: list[str], hint: str, outputs: list[str] | None = None,
           n_out: int = 1, **attrs):
        outs = outputs or [self.name(f"{hint}/{op_type}") for _ in range(n_out)]
        self.nodes.append(self.helper.make_node(op_type, inputs, outs, name=self.name(f"{hint}/{op_type}/node"),
                                                **attrs))
        return outs[0] if len(outs) == 1 else outs


class _View:
    """:class:`_G` seen through the ``op``/``const`` calls of converters.onnx.graph.Graph, so the
    full-sequence exporter's helpers (the recurrent activations) build into a step graph."""

    def __init__(self, g: _G, hint: str):
        self.g, self.hint = g, hint

    def op(self, op_type: str, inputs: list[str], n_out: int = 1, **attrs):
        return self.g.op(op_type, inputs, self.hint, n_out=n_out, **attrs)

    def const(self, value, hint: str = "const"):
        return self.g.const(np.asarray(value), f"{self.hint}/{hint}")


def _activation(g: _G, x: str, layer, hint: str, out: str | None = None) -> str:
    name = dense_activation(layer)
    outs = [out] if out else None
    if name == "linear":
        return g.op("Identity", [x], hint, outputs=outs) if out else x
    if name in _SIMPLE:
        return g.op(_SIMPLE[name], [x], hint, outputs=outs)
    if name == "softmax":
        return g.op("Softmax", [x], hint, outputs=outs, axis=-1)
    if name == "log_softmax":
        return g.op("LogSoftmax", [x], hint, outputs=outs, axis=-1)
    if name == "hard_sigmoid":
        return g.op("HardSigmoid", [x], hint, outputs=outs, alpha=1.0 / 6.0, beta=0.5)
    if name in ("silu", "swish"):
        return g.op("Mul", [x, g.op("Sigmoid", [x], hint)], hint, outputs=outs)
    if name == "relu6":
        return g.op("Clip", [x, g.const(np.float32(0), "zero"), g.const(np.float32(6), "six")], hint,
                    outputs=outs)
    raise ConversionError(
        f"layer '{layer.name}' ({type(layer).__name__}): activation '{name}' is not supported by the ONNX step "
        "exporter", layer=layer.name, fmt="onnx")


def build_onnx_step(plan: StepPlan):
    """Return (onnx.ModelProto, info) for the step model of ``plan``."""
    try:
        import onnx
        from onnx import TensorProto, helper
    except ImportError:
        raise MissingDependencyError("onnx", install_command("onnx")) from None
    from converters.onnx.activations import rnn_activation_attrs
    from converters.onnx.recurrent import _act, cell_weights

    g = _G()
    in_dt = np.dtype(plan.input_dtype)
    x_elem = helper.np_dtype_to_tensor_dtype(in_dt)
    x_shape = ["batch"] if plan.tokens else ["batch", plan.features]
    graph_inputs = [helper.make_tensor_value_info(plan.input_name, x_elem, x_shape)]
    inputs_info = [{"name": plan.input_name, "shape": x_shape, "dtype": in_dt.name}]
    for s in plan.states:
        graph_inputs.append(helper.make_tensor_value_info(s["name"], TensorProto.FLOAT, ["batch", s["units"]]))
        inputs_info.append({"name": s["name"], "shape": ["batch", s["units"]], "dtype": "float32"})
    axis0 = g.const(np.array([0], np.int64), "axis0")
    state_out = {}  # state output name -> shape
    cur = plan.input_name
    for st in plan.stages:
        layer = st.layer
        if st.kind == "embedding":
            cur = g.op("Gather", [g.const(_w(layer.embeddings), f"{st.name}/table"), cur], st.name, axis=0)
        elif st.kind == "dense":
            W = _w(layer.kernel)
            b = _w(layer.bias) if layer.use_bias else np.zeros(W.shape[1], np.float32)
            y = g.op("Gemm", [cur, g.const(W, f"{st.name}/W"), g.const(b, f"{st.name}/b")], st.name)
            cur = _activation(g, y, layer, st.name)
        elif st.cell == "RNN":  # plain ops: onnxruntime's RNN kernel applies tanh element by element
            cw = cell_weights(layer)
            hs = next(x for x in plan.states if x["layer"] == st.name)
            bias = np.zeros(cw["H"], np.float32) if cw["B"] is None else cw["B"][:cw["H"]] + cw["B"][cw["H"]:]
            xw = g.op("Gemm", [cur, g.const(np.ascontiguousarray(cw["W"].T), f"{st.name}/W_T"),
                               g.const(bias, f"{st.name}/b")], st.name)
            pre = g.op("Gemm", [hs["name"], g.const(np.ascontiguousarray(cw["R"].T), f"{st.name}/R_T"), xw],
                       st.name)
            g.op("Identity", [_act(_View(g, st.name), cw["acts"][0], pre)], st.name, outputs=[hs["output"]])
            state_out[hs["output"]] = cw["H"]
            cur = hs["output"]
        else:
            cw = cell_weights(layer)
            kind, h = cw["kind"], cw["H"]
            x3 = g.op("Unsqueeze", [cur, axis0], st.name)
            ins = [x3, g.const(cw["W"][None], f"{st.name}/W"), g.const(cw["R"][None], f"{st.name}/R"),
                   "" if cw["B"] is None else g.const(cw["B"][None], f"{st.name}/B"), ""]
            mine = [s for s in plan.states if s["layer"] == st.name]
            for s in mine:
                ins.append(g.op("Unsqueeze", [s["name"], axis0], st.name))
            outs = ["", g.name(f"{st.name}/Y_h")] + ([g.name(f"{st.name}/Y_c")] if kind == "LSTM" else [])
            attrs = dict(hidden_size=h, direction="forward", layout=0, **cw["attrs"],
                         **rnn_activation_attrs(cw["acts"], _DEFAULT_ACTS[kind]))
            g.op(kind, ins, st.name, outputs=outs, **attrs)
            for s, o in zip(mine, outs[1:]):
                g.op("Squeeze", [o, axis0], st.name, outputs=[s["output"]])
                state_out[s["output"]] = h
            cur = mine[0]["output"]  # h
    y = plan.output_name
    if cur in state_out or cur == plan.input_name:
        g.op("Identity", [cur], "output", outputs=[y])
    else:  # rename the last node's output
        for node in g.nodes:
            for i, o in enumerate(node.output):
                if o == cur:
                    node.output[i] = y
    outputs_info = [{"name": y, "shape": ["batch", plan.output_dim], "dtype": "float32"}]
    graph_outputs = [helper.make_tensor_value_info(y, TensorProto.FLOAT, ["batch", plan.output_dim])]
    for s in plan.states:
        graph_outputs.append(helper.make_tensor_value_info(s["output"], TensorProto.FLOAT, ["batch", s["units"]]))
        outputs_info.append({"name": s["output"], "shape": ["batch", s["units"]], "dtype": "float32"})
    graph = helper.make_graph(g.nodes, f"{plan.model_name}_step", graph_inputs, graph_outputs, g.inits)
    mp = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                           producer_name="rnnedge.streaming")
    mp.ir_version = IR_VERSION
    onnx.checker.check_model(mp, full_check=True)
    info = {"inputs": inputs_info, "outputs": outputs_info, "opset": OPSET, "ir_version": IR_VERSION,
            "op_types": sorted({n.op_type for n in g.nodes})}
    return mp, info


def onnx_step_runner(data: bytes):
    """A ``feeds -> {name: array}`` function over an onnxruntime session of ``data`` (CPU)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise MissingDependencyError("onnxruntime", install_command("onnxruntime")) from None
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]

    def run(feeds):
        return dict(zip(names, sess.run(names, feeds)))

    return run
