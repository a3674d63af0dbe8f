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


def _weight_axis(node, idx: int, ndim: int) -> int | None:
    """The output-channel axis of ``node``'s input ``idx`` when it is a weight this pass rewrites,
    else None: W/R of LSTM/GRU/RNN (3-D, axis 1), the B of MatMul (2-D ``[K, N]``, axis 1) and of
    Gemm (axis 1, or 0 with ``transB``)."""
    if node.domain not in ("", "ai.onnx"):
        return None
    if node.op_type in RECURRENT_OPS and idx in WEIGHT_INPUTS and ndim == 3:
        return 1
    if node.op_type == "MatMul" and idx == 1 and ndim == 2:
        return 1
    if node.op_type == "Gemm" and idx == 1 and ndim == 2:
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return 0 if trans_b else 1
    return None


def _subgraphs(node):
    """The graphs held in ``node``'s attributes (a Scan/Loop body, If branches)."""
    from onnx import AttributeProto

    for a in node.attribute:
        if a.type == AttributeProto.GRAPH:
            yield a.g
        elif a.type == AttributeProto.GRAPHS:
            yield from a.graphs


def quantize_recurrent_weights(model, *, ops=RECURRENT_OPS, min_elements: int = MIN_ELEMENTS):
    """Rewrite ``model`` (an ``onnx.ModelProto``, changed in place and returned) so the float32
    weights onnxruntime's own quantizers leave float become int8 + ``DequantizeLinear``:

    * ``W``/``R`` of the ``ops`` nodes (``LSTM``/``GRU``/``RNN``) in the main graph;
    * inside the bodies of ``Scan``/``If``/``Loop`` nodes (the SimpleRNN lowerings of
      :mod:`converters.onnx.recurrent`: the recurrent Gemm/MatMul of a ``Scan`` step, a native op in
      an ``If`` branch), every weight initializer of those ops and of ``MatMul``/``Gemm``. The
      ``DequantizeLinear`` goes into the main graph (run once per call, not once per step) and the
      body reads its output as an outer-scope value (ONNX IR: subgraphs may read names of the
      enclosing graphs).

    Returns ``(model, facts)``; ``facts`` = ``{"weights": [{"node", "op", "input", "name", "shape",
    "max_abs_error", "subgraph", "container"}...]`` (``container``: the main-graph ``Scan``/``If``
    node whose body holds the weight, else None), "bytes_saved": int}``. Weights already produced by a node (e.g.
    by a ``DequantizeLinear``), shared with a graph input, or below ``min_elements`` are left alone.
    Raises ``ValueError`` when the model's default-domain opset is below 13 (no per-axis scales).
    """
    from onnx import TensorProto, helper, numpy_helper

    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < 13:
        raise ValueError(f"per-channel DequantizeLinear needs opset >= 13, the model has {opset}")
    g = model.graph
    graph_inputs = {i.name for i in g.input}
    done: dict[str, str] = {}  # float initializer -> dequantized tensor name
    facts: dict = {"weights": [], "bytes_saved": 0}
    new_nodes = []

    def rewrite(graph, subgraph: str | None, container: str | None):
        inits = {t.name: t for t in graph.initializer}
        for node in graph.node:
            for sub in _subgraphs(node):
                rewrite(sub, sub.name, container or node.op_type)
            if subgraph is None and node.op_type not in ops:
                continue  # main graph: onnxruntime's quantizers handled MatMul/Gemm (or chose not to)
            for idx in range(1, len(node.input)):
                name = node.input[idx]
                if name in done:
                    node.input[idx] = done[name]
                    continue
                t = inits.get(name)
                if t is None or name in graph_inputs or t.data_type != TensorProto.FLOAT:
                    continue
                axis = _weight_axis(node, idx, len(t.dims))
                if axis is None or (subgraph is None and node.op_type not in ops):
                    continue
                w = numpy_helper.to_array(t)
                if w.size < min_elements:
                    continue
                q, scale = quantize_per_channel(w, axis=axis)
                err = float(np.max(np.abs(dequantize(q, scale, axis) - w)))
                qname, sname, out = f"{name}_int8", f"{name}_scale", f"{name}_dequantized"
                graph.initializer.remove(t)
                del inits[name]
                g.initializer.extend([numpy_helper.from_array(q, qname), numpy_helper.from_array(scale, sname)])
                new_nodes.append(helper.make_node("DequantizeLinear", [qname, sname], [out],
                                                  name=f"{name}_DequantizeLinear", axis=axis))
                node.input[idx] = done[name] = out
                facts["weights"].append({"node": node.name, "op": node.op_type,
                                         "input": WEIGHT_INPUTS.get(idx, "B") if node.op_type in ops else "B",
                                         "name": name, "shape": list(w.shape), "max_abs_error": err,
                                         "subgraph": subgraph, "container": container})
                facts["bytes_saved"] += w.nbytes - q.nbytes - scale.nbytes

    rewrite(g, None, None)
    if new_nodes:  # DequantizeLinear reads only initializers: first in topological order
        nodes = new_nodes + list(g.node)
        del g.node[:]
        g.node.extend(nodes)
    return model, facts
