"""Weight-only int8 for a .tflite flatbuffer: float32 weight constants -> int8 + ``DEQUANTIZE``.

TF 2.21's converter quantizes weights only for ops with hybrid kernels and only from 1024
elements up (smaller constants stay float: a small model's ``dynamic`` file can be the float file
again), and its full-integer calibrator crashes on ``WHILE`` loops (every GRU / SimpleRNN, masked
LSTMs), which is why int8 used to unroll them. :func:`quantize_weights` works on the converted
file instead, whatever subgraph a constant sits in (the ``WHILE`` body included):

* every float32 constant (a tensor with buffer data) of rank >= 2 read by one of
  :data:`WEIGHT_INPUTS` (``FULLY_CONNECTED`` weights, ``GATHER`` tables, conv filters,
  ``BATCH_MATMUL`` right-hand sides, fused-LSTM weights, and ``WHILE`` operands its body passes
  through unchanged, i.e. weights hoisted out of the loop) whose rewrite saves bytes (see
  :func:`worth_quantizing`) becomes an int8 tensor with one symmetric scale per output channel
  (:mod:`converters.int8`; zero point 0; the channel axis is the one the consumer reads as its
  output: :data:`WEIGHT_INPUTS`),
* a ``DEQUANTIZE`` op (version 5 for per-channel int8, version 2 per-tensor: tflite-runtime 2.14
  loads both) at the start of that subgraph turns it back into the float tensor the consumers
  read, so no consumer changes and the math stays float32.

LiteRT's ``DEQUANTIZE`` kernel computes a constant input once and keeps the float result
(tensorflow/lite/kernels/dequantize.cc: persistent read-only output for constant inputs), so a
loop body pays the dequantization at the first invoke only; memory holds the int8 file plus the
float weights. Needs TensorFlow's flatbuffer tools (build side only).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from converters.int8 import dequantize, quantize_per_channel

# Bytes a rewritten tensor costs besides its int8 data: a tensor table entry with its name, a
# DEQUANTIZE operator, a buffer entry (measured ~150-250 bytes with TF 2.21's names) ...
REWRITE_OVERHEAD = 256
# ... and per channel: a float32 scale and an int64 zero point.
PER_CHANNEL_BYTES = 12

# builtin op -> {input index: channel axis of that input} (negative = from the end).
WEIGHT_INPUTS: dict[str, dict[int, int]] = {
    "FULLY_CONNECTED": {1: 0},            # weights [out, in]
    "CONV_2D": {1: 0},                    # [out, kh, kw, in]
    "DEPTHWISE_CONV_2D": {1: -1},         # [1, kh, kw, out]
    "TRANSPOSE_CONV": {1: 0},
    "BATCH_MATMUL": {1: -1},              # y = x @ w: columns are outputs (adj_y unset)
    "GATHER": {0: 0},                     # embedding table [vocab, dim]: one scale per row
    "EMBEDDING_LOOKUP": {1: 0},
    "UNIDIRECTIONAL_SEQUENCE_LSTM": {i: 0 for i in range(1, 9)},
    "BIDIRECTIONAL_SEQUENCE_LSTM": {i: 0 for i in (*range(1, 9), *range(18, 26))},
    "UNIDIRECTIONAL_SEQUENCE_RNN": {1: 0, 2: 0},
}
# WHILE operands the body passes through unchanged (weights hoisted out of the loop) are
# rewritten too, with row-wise scales (axis 0); loop state (zeros, counters) never is.


def worth_quantizing(n_elements: int, n_channels: int) -> bool:
    """Does the rewrite of a float32 constant shrink the file? It saves 3 bytes per element and
    costs :data:`REWRITE_OVERHEAD` plus :data:`PER_CHANNEL_BYTES` per channel."""
    return 3 * n_elements > REWRITE_OVERHEAD + PER_CHANNEL_BYTES * n_channels


def weight_bytes(content: bytes) -> dict[str, int]:
    """Bytes of constant tensors of rank >= 2 (weights, tables) per type name (``float32``,
    ``int8``, ``float16`` ...) in a .tflite file; a buffer shared by several tensors counts once."""
    schema, fbu = _tools()
    model = fbu.read_model_from_bytearray(bytearray(content))
    types = {v: k.lower() for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    seen: set[int] = set()
    out: dict[str, int] = {}
    for sg in model.subgraphs:
        for t in sg.tensors:
            data = model.buffers[t.buffer].data if 0 < t.buffer < len(model.buffers) else None
            if data is None or len(data) == 0 or t.shape is None or len(t.shape) < 2 or t.buffer in seen:
                continue
            seen.add(t.buffer)
            k = types.get(t.type, str(t.type))
            out[k] = out.get(k, 0) + len(data)
    return out


def op_counts(content: bytes) -> dict[str, int]:
    """How many operators of each builtin (or custom code) a .tflite file runs, every subgraph
    (WHILE bodies and conditions) included: ``{"WHILE": 1, "FULLY_CONNECTED": 3, ...}``."""
    schema, fbu = _tools()
    model = fbu.read_model_from_bytearray(bytearray(content))
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    codes = []
    for c in model.operatorCodes:
        code = max(c.builtinCode, c.deprecatedBuiltinCode)
        custom = c.customCode.decode() if isinstance(c.customCode, bytes) else c.customCode
        codes.append(custom if code == schema.BuiltinOperator.CUSTOM and custom else names.get(code, str(code)))
    out: dict[str, int] = {}
    for sg in model.subgraphs:
        for op in sg.operators or []:
            out[codes[op.opcodeIndex]] = out.get(codes[op.opcodeIndex], 0) + 1
    return dict(sorted(out.items()))


def _ints(v) -> list[int]:
    """A flatbuffer object-API vector (None, list or numpy array) as a list of ints."""
    return [] if v is None else [int(x) for x in v]


def _loop_invariant(model, op) -> list[int]:
    """Positions of a WHILE op's operands that its body returns unchanged (output i is input i)."""
    body = getattr(op.builtinOptions, "bodySubgraphIndex", None)
    if body is None or body >= len(model.subgraphs):
        return []
    sg = model.subgraphs[body]
    ins, outs = _ints(sg.inputs), _ints(sg.outputs)
    return [i for i, (a, b) in enumerate(zip(ins, outs)) if a == b]


def _tools():
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils as fbu

    return schema, fbu


def quantize_weights(content: bytes, *, per_channel: bool = True) -> tuple[bytes, dict[str, Any]]:
    """Rewrite the float32 weight constants of a .tflite model as int8 + ``DEQUANTIZE``.

    ``content``: the flatbuffer bytes (float, or already dynamic-range quantized: int8 weights
    are left as they are). Returns ``(new_bytes, facts)`` with ``facts`` =
    ``{"weights": [{"subgraph", "name", "shape", "consumer", "axis", "max_abs_error"}...],
    "kept_float": [{"name", "shape", "why"}...], "dequantize_ops": int}``; ``new_bytes`` is
    ``content`` itself when nothing was rewritten.
    """
    schema, fbu = _tools()
    model = fbu.read_model_from_bytearray(bytearray(content))
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    codes = [names.get(max(c.builtinCode, c.deprecatedBuiltinCode), "?") for c in model.operatorCodes]
    facts: dict[str, Any] = {"weights": [], "kept_float": [], "dequantize_ops": 0}
    deq_code: dict[int, int] = {}  # DEQUANTIZE version -> operator code index
    cache: dict[tuple[int, int | None], tuple[int, Any]] = {}  # (float buffer, axis) -> (int8 buffer, quant)
    old_buffers: set[int] = set()

    def buffer_data(t):
        d = model.buffers[t.buffer].data if 0 < t.buffer < len(model.buffers) else None
        return None if d is None or len(d) == 0 else d

    for si, sg in enumerate(model.subgraphs):
        boundary = set(_ints(sg.inputs)) | set(_ints(sg.outputs))
        chosen: dict[int, tuple[str, int]] = {}  # tensor -> (consumer op, axis)
        for op in sg.operators or []:
            table = WEIGHT_INPUTS.get(codes[op.opcodeIndex])
            inputs = _ints(op.inputs)
            if codes[op.opcodeIndex] == "WHILE":
                table = {i: 0 for i in _loop_invariant(model, op)}
            for idx, axis in (table or {}).items():
                if idx >= len(inputs) or inputs[idx] < 0:
                    continue
                ti = inputs[idx]
                t = sg.tensors[ti]
                if (ti in chosen or ti in boundary or t.type != schema.TensorType.FLOAT32
                        or buffer_data(t) is None or t.shape is None or len(t.shape) < 2):
                    continue
                chosen[ti] = (codes[op.opcodeIndex], axis)
        prologue = []
        for ti, (consumer, axis) in chosen.items():
            t = sg.tensors[ti]
            shape = [int(d) for d in t.shape]
            name = t.name.decode() if isinstance(t.name, bytes) else str(t.name)
            n = int(np.prod(shape))
            ax = (axis % len(shape)) if per_channel else None
            channels = shape[ax] if ax is not None else 1
            if not worth_quantizing(n, channels):
                facts["kept_float"].append({"name": name, "shape": shape,
                                            "why": f"{n} elements: the int8 copy and its DEQUANTIZE "
                                                   "would not make the file smaller"})
                continue
            key = (t.buffer, ax)
            w = np.frombuffer(bytes(buffer_data(t)), dtype="<f4").reshape(shape)
            if key not in cache:
                q, scale = quantize_per_channel(w, ax)
                buf = schema.BufferT()
                buf.data = np.frombuffer(q.tobytes(), np.uint8)
                model.buffers.append(buf)
                qp = schema.QuantizationParametersT()
                qp.scale = [float(s) for s in scale]
                qp.zeroPoint = [0] * len(scale)
                qp.quantizedDimension = ax or 0
                err = float(np.max(np.abs(dequantize(q, scale, ax) - w)))
                cache[key] = (len(model.buffers) - 1, qp, err)
            qbuf, qp, err = cache[key]
            old_buffers.add(t.buffer)
            qt = schema.TensorT()
            qt.shape = list(shape)
            qt.type = schema.TensorType.INT8
            qt.buffer = qbuf
            qt.name = f"{name}_int8".encode()
            qt.quantization = qp
            if t.shapeSignature is not None:
                qt.shapeSignature = list(t.shapeSignature)
            sg.tensors.append(qt)
            t.buffer = 0  # the float tensor is now DEQUANTIZE's output
            version = 5 if ax is not None and channels > 1 else 2
            if version not in deq_code:
                oc = schema.OperatorCodeT()
                oc.builtinCode = schema.BuiltinOperator.DEQUANTIZE
                oc.deprecatedBuiltinCode = schema.BuiltinOperator.DEQUANTIZE
                oc.version = version
                model.operatorCodes.append(oc)
                deq_code[version] = len(model.operatorCodes) - 1
            op = schema.OperatorT()
            op.opcodeIndex = deq_code[version]
            op.inputs = [len(sg.tensors) - 1]
            op.outputs = [ti]
            prologue.append(op)
            facts["weights"].append({"subgraph": si, "name": name, "shape": shape, "consumer": consumer,
                                     "axis": ax, "max_abs_error": err})
        if prologue:
            sg.operators = prologue + list(sg.operators or [])
            facts["dequantize_ops"] += len(prologue)
    if not facts["weights"]:
        return content, facts
    used = {t.buffer for sg in model.subgraphs for t in sg.tensors}
    for b in old_buffers - used:
        model.buffers[b].data = None  # unreferenced float copies: emptied (indices stay valid)
    return bytes(fbu.convert_object_to_bytearray(model)), facts
