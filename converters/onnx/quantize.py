"""Weight-only int8 for ONNX recurrent ops: int8 W/R initializers + ``DequantizeLinear``.

onnxruntime's ``quantize_dynamic`` turns LSTM into com.microsoft ``DynamicQuantizeLSTM`` but has
no quantized GRU or RNN (its ``IntegerOpsRegistry``: Conv, MatMul, Attention, LSTM, Gather,
Transpose, EmbedLayerNormalization), and ``quantize_static`` has no handler for any of the three.
:func:`quantize_recurrent_weights` stores the input weights ``W`` (``[D, G*H, I]``) and recurrent
weights ``R`` (``[D, G*H, H]``) of every remaining ``LSTM`` / ``GRU`` / ``RNN`` node as int8 with one
scale per output channel (axis 1: the ``G*H`` gate rows; the ``D`` directions of a bidirectional op
share a row's scale) and feeds them to the node through ``DequantizeLinear`` (ONNX opset >= 13 for
per-axis scales). Biases stay float32 (``[D, 2*G*H]``, small next to ``R``).

Scales are symmetric (:mod:`converters.int8`): ``scale[c] = max|w[:, c, :]| / 127``, ``q`` in
[-127, 127], no zero point (ONNX DequantizeLinear: ``y = (x - zero_point) * scale``, zero point 0
when omitted). The error per weight is at most ``scale / 2``.

The recurrence itself still runs in float32: onnxruntime dequantizes the weights (once at load
when it constant-folds the ``DequantizeLinear``, otherwise on every run; see :func:`folding_facts`).
So this buys file size, not speed. Needs only ``onnx`` and ``numpy``.
"""
from __future__ import annotations

import numpy as np

from converters.int8 import dequantize, quantize_per_channel

RECURRENT_OPS = ("LSTM", "GRU", "RNN")
WEIGHT_INPUTS = {1: "W", 2: "R"}  # input index -> ONNX name, same for LSTM / GRU / RNN
MIN_ELEMENTS = 16  # smaller weights are not worth a DequantizeLinear node


def quantize_recurrent_weights(model, *, ops=RECURRENT_OPS, min_elements: int = MIN_ELEMENTS):
    """Rewrite ``model`` (an ``onnx.ModelProto``, changed in place and returned) so the float32
    ``W``/``R`` initializers of its ``ops`` nodes in the main graph are int8 + ``DequantizeLinear``.

    Returns ``(model, facts)``; ``facts`` = ``{"weights": [{"node", "op", "input", "name", "shape",
    "max_abs_error"}...], "bytes_saved": int}``. Weights already produced by a node (e.g. by a
    ``DequantizeLinear``), shared with a graph input, or below ``min_elements`` are left alone.
    Raises ``ValueError`` when the model's default-domain opset is below 13 (no per-axis scales).
    """
    from onnx import TensorProto, helper, numpy_helper

    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < 13:
        raise ValueError(f"per-channel DequantizeLinear needs opset >= 13, the model has {opset}")
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    graph_inputs = {i.name for i in g.input}
    done: dict[str, str] = {}  # float initializer -> dequantized tensor name
    facts: dict = {"weights": [], "bytes_saved": 0}
    new_nodes = []
    for node in g.node:
        if node.op_type not in ops or node.domain not in ("", "ai.onnx"):
            continue
        for idx, label in WEIGHT_INPUTS.items():
            if idx >= len(node.input):
                continue
            name = node.input[idx]
            if name in done:
                node.input[idx] = done[name]
                continue
            t = inits.get(name)
            if t is None or name in graph_inputs or t.data_type != TensorProto.FLOAT:
                continue
            w = numpy_helper.to_array(t)
            if w.size < min_elements or w.ndim != 3:
                continue
            q, scale = quantize_per_channel(w, axis=1)
            err = float(np.max(np.abs(dequantize(q, scale, 1) - w)))
            qname, sname, out = f"{name}_int8", f"{name}_scale", f"{name}_dequantized"
            g.initializer.remove(t)
            g.initializer.extend([numpy_helper.from_array(q, qname), numpy_helper.from_array(scale, sname)])
            new_nodes.append(helper.make_node("DequantizeLinear", [qname, sname], [out],
                                              name=f"{name}_DequantizeLinear", axis=1))
            node.input[idx] = done[name] = out
            facts["weights"].append({"node": node.name, "op": node.op_type, "input": label, "name": name,
                                     "shape": list(w.shape), "max_abs_error": err})
            facts["bytes_saved"] += w.nbytes - q.nbytes - scale.nbytes
    if new_nodes:  # DequantizeLinear reads only initializers: first in topological order
        nodes = new_nodes + list(g.node)
        del g.node[:]
        g.node.extend(nodes)
    return model, facts
