"""Rewrites of a converted ``.tflite`` flatbuffer (run at export time, after ``TFLiteConverter``).

* :func:`unclip_fused_lstm`: no cell-state clipping in fused LSTMs (Keras never clips).
* :func:`stateless_variables`: every variable tensor that a stateful op reads is written by an op
  on each invoke, so the file gives the same result on every ``invoke()`` in a plain interpreter.
* :func:`order_io`: the subgraph's inputs and outputs in the Keras model's order.

Why the second one: ``UNIDIRECTIONAL_SEQUENCE_LSTM`` (and the other sequence ops) take their
initial h/c from **variable** tensors (the kernel's ``GetVariableInput`` returns null for any
tensor without ``is_variable``, so they must be variables) and write the final state back into
them. The converter turns Keras's zero initial state into a variable tensor that nothing writes:
it is zeroed when the interpreter allocates, then keeps the last call's final state, so a second
``invoke()`` starts where the first ended (measured: up to 0.65 off on small BiLSTMs) unless the
app calls ``reset_all_variables()``. A variable tensor that an op writes on every invoke is
fresh each time (the converter already does that when the state comes from another layer), so
we give each stateful operand its own variable tensor, written by an op placed just before it:

* a constant initial state (a variable nothing writes, i.e. Keras's zeros, or the ``DEQUANTIZE``
  of a zero constant in fp16 files, which the kernel evaluates only once) -> ``FILL(shape, 0)``
  (the zero point for a quantized state; ``FILL`` runs on every invoke, see LiteRT fill.cc);
* a state computed at run time (a graph input, ``initial_state=[h0, c0]`` fed by the caller, or
  another layer's output, an encoder's state) -> a copy (one-input ``CONCATENATION``) into a new
  variable, so the stateful op no longer overwrites the caller's input or a tensor other ops read.

Shapes stay fixed (the batch of the export): ``FILL`` gets constant dims, so the state tensors
stay arena-persistent and ``reset_all_variables()`` still works for apps that call it.
"""
from __future__ import annotations

import numpy as np

__all__ = ["unclip_fused_lstm", "stateless_variables", "order_io"]

_NUMPY_OF = {"FLOAT32": np.float32, "FLOAT16": np.float16, "INT8": np.int8, "INT16": np.int16,
             "INT32": np.int32, "INT64": np.int64, "UINT8": np.uint8}


def _read(content: bytes):
    from tensorflow.lite.tools import flatbuffer_utils as fbu

    return fbu.read_model_from_bytearray(bytearray(content))


def _write(model) -> bytes:
    from tensorflow.lite.tools import flatbuffer_utils as fbu

    return bytes(fbu.convert_object_to_bytearray(model))


def _schema():
    from tensorflow.lite.python import schema_py_generated as schema

    return schema


def _codes(model) -> list[int]:
    return [max(c.builtinCode, c.deprecatedBuiltinCode) for c in model.operatorCodes]


def unclip_fused_lstm(content: bytes) -> bytes:
    """Set ``cell_clip`` of every ``UNIDIRECTIONAL_SEQUENCE_LSTM`` to 0 (no clipping).

    TFLite's Keras-LSTM fusion writes ``cell_clip=10``; Keras never clips the cell state, so a
    trained LSTM whose cell grows past 10 (a position counter, say) diverges from Keras after
    that step. Left as is for full int8, where the clip bounds the int16 cell state's scale.
    """
    schema = _schema()
    model = _read(content)
    codes = _codes(model)
    changed = 0
    for sg in model.subgraphs:
        for op in sg.operators or []:
            if (codes[op.opcodeIndex] == schema.BuiltinOperator.UNIDIRECTIONAL_SEQUENCE_LSTM
                    and op.builtinOptions is not None and getattr(op.builtinOptions, "cellClip", 0)):
                op.builtinOptions.cellClip = 0.0
                changed += 1
    return _write(model) if changed else content


def _opcode(model, code: int, version: int) -> int:
    schema = _schema()
    for i, c in enumerate(model.operatorCodes):
        if max(c.builtinCode, c.deprecatedBuiltinCode) == code and c.version == version:
            return i
    oc = schema.OperatorCodeT()
    oc.builtinCode = code
    oc.deprecatedBuiltinCode = min(code, 127)  # PLACEHOLDER_FOR_GREATER_OP_CODES above 127
    oc.version = version
    model.operatorCodes.append(oc)
    return len(model.operatorCodes) - 1


def _const(model, sg, name: str, array: np.ndarray, tensor_type: int, quantization=None) -> int:
    schema = _schema()
    buf = schema.BufferT()
    buf.data = np.frombuffer(np.ascontiguousarray(array).tobytes(), np.uint8)
    model.buffers.append(buf)
    t = schema.TensorT()
    t.shape = np.asarray(array.shape, np.int32)
    t.type = tensor_type
    t.buffer = len(model.buffers) - 1
    t.name = name.encode()
    t.quantization = quantization
    sg.tensors.append(t)
    return len(sg.tensors) - 1


def _variable_like(sg, src: int, name: str) -> int:
    import copy

    t = copy.deepcopy(sg.tensors[src])
    t.name = name.encode()
    t.buffer = 0  # buffer 0 is the empty sentinel: no data
    t.isVariable = True
    sg.tensors.append(t)
    return len(sg.tensors) - 1


def _zero_point(t) -> int:
    q = t.quantization
    zp = getattr(q, "zeroPoint", None) if q is not None else None
    return int(zp[0]) if zp is not None and len(zp) else 0


def _is_zero_constant(model, sg, ti: int, writer_of: dict) -> bool | None:
    """Is tensor ``ti`` a constant (known when the file is made), and then is it all zeros?

    None: computed at run time (a graph input, another layer's output). Constant: a tensor with
    data, a variable nothing writes (zero-initialised), or the ``DEQUANTIZE`` of a constant (fp16
    weights: the kernel dequantizes a constant once and keeps the result, so the state written
    there would persist). Zero means value 0 after dequantization (stored value = zero point).
    """
    t = sg.tensors[ti]
    op = writer_of.get(ti)
    if op is not None:
        src = int(op.inputs[0]) if op.inputs is not None and len(op.inputs) else -1
        dequantize = _codes(model)[op.opcodeIndex] == _schema().BuiltinOperator.DEQUANTIZE
        if not dequantize or src < 0 or src in writer_of:
            return None
        return _is_zero_constant(model, sg, src, writer_of)
    data = model.buffers[t.buffer].data if t.buffer else None
    if data is None or not len(data):  # a graph input, else a zero-initialised variable
        return None if ti in {int(i) for i in (sg.inputs if sg.inputs is not None else [])} else True
    np_type = _NUMPY_OF.get(_type_names().get(t.type, ""))
    if np_type is None:
        return False
    values = np.frombuffer(np.asarray(data, np.uint8).tobytes(), np_type)
    return bool(np.all(values == _zero_point(t)))


def _type_names() -> dict:
    return {v: k for k, v in vars(_schema().TensorType).items() if not k.startswith("_")}


def _fill_zeros(model, sg, like: int, name: str):
    """``FILL(dims, 0)`` with ``like``'s shape and type (0 = the zero point when quantized)."""
    schema = _schema()
    t = sg.tensors[like]
    np_type = _NUMPY_OF.get(_type_names().get(t.type, ""))
    if np_type is None:
        raise ValueError(f"state tensor {name!r} has type {_type_names().get(t.type)}: no FILL for it")
    dims = _const(model, sg, f"{name}/dims", np.asarray(t.shape, np.int32), schema.TensorType.INT32)
    value = _const(model, sg, f"{name}/zero", np.asarray(_zero_point(t), np_type), t.type,
                   quantization=t.quantization)
    op = schema.OperatorT()
    # FILL versions (TFLite op_version.cc): 1 float32/int32/int64, 3 int8/int16, 4 float16
    version = 3 if np_type in (np.int8, np.int16) else 4 if np_type is np.float16 else 1
    op.opcodeIndex = _opcode(model, schema.BuiltinOperator.FILL, version)
    op.inputs = np.asarray([dims, value], np.int32)
    op.builtinOptionsType = schema.BuiltinOptions.FillOptions
    op.builtinOptions = schema.FillOptionsT()
    return op


def _copy(model, src: int):
    """A one-input ``CONCATENATION``: a plain copy, evaluated on every invoke for a non-constant
    input (the kernel computes it once, at prepare time, only when every input is constant)."""
    schema = _schema()
    op = schema.OperatorT()
    op.opcodeIndex = _opcode(model, schema.BuiltinOperator.CONCATENATION, 1)
    op.inputs = np.asarray([src], np.int32)
    op.builtinOptionsType = schema.BuiltinOptions.ConcatenationOptions
    op.builtinOptions = schema.ConcatenationOptionsT()
    return op


def stateless_variables(content: bytes) -> tuple[bytes, int]:
    """Give every stateful operand a variable tensor written by an op just before its reader.

    Returns ``(content, n)``: ``n`` operands rewritten (0: unchanged bytes). See the module
    docstring for why and how. Raises ValueError for a constant initial state that is not zero
    (no Keras layer gives one).
    """
    model = _read(content)
    n = 0
    for sg in model.subgraphs:
        writer_of = {int(o): op for op in sg.operators or [] for o in (op.outputs if op.outputs is not None else [])
                     if o >= 0}
        out_ops, replaced = [], set()
        for op in list(sg.operators or []):
            for pos, ti in enumerate(op.inputs if op.inputs is not None else []):
                if ti < 0 or not sg.tensors[ti].isVariable:
                    continue
                name = f"{(sg.tensors[ti].name or b'state').decode()}/rnnedge_state_{n}"
                zero = _is_zero_constant(model, sg, int(ti), writer_of)
                if zero is False:
                    raise ValueError(f"{name}: a constant, non-zero initial state is not supported")
                writer = _fill_zeros(model, sg, int(ti), name) if zero else _copy(model, int(ti))
                writer.outputs = np.asarray([_variable_like(sg, int(ti), name)], np.int32)
                out_ops.append(writer)
                op.inputs = np.asarray(op.inputs, np.int32).copy()
                op.inputs[pos] = writer.outputs[0]
                replaced.add(int(ti))
                n += 1
            out_ops.append(op)
        sg.operators = out_ops
        # the replaced tensors feed no stateful operand any more: plain tensors (a variable
        # written by a dynamic-shaped op made reset_all_variables() fail, "allocation_type !=
        # kTfLiteCustom (4 != 6)")
        for ti in replaced:
            sg.tensors[ti].isVariable = False
    return (_write(model), n) if n else (content, 0)


def order_io(content: bytes, input_names: list[str], output_names: list[str],
             signature: str = "serving_default") -> bytes:
    """Put the signature subgraph's inputs and outputs in the given order (the Keras model's).

    ``input_names``/``output_names`` are the signature's names in Keras order. The converter
    lists a subgraph's tensors in its own order (``[h, c, seq]`` for a Keras ``[seq, h, c]``;
    inputs such as ``[h0, c0, x]``); ``get_input_details()``/``get_output_details()`` of any
    interpreter follow the subgraph's lists, so after this they follow the Keras model. The
    signature maps names to tensor indices and is left as is. Unknown names: unchanged bytes.
    """
    model = _read(content)
    sd = next((s for s in model.signatureDefs or [] if (s.signatureKey or b"").decode() == signature), None)
    if sd is None:
        return content
    sg = model.subgraphs[sd.subgraphIndex]
    changed = False
    for maps, names, attr in ((sd.inputs, input_names, "inputs"), (sd.outputs, output_names, "outputs")):
        index = {(t.name or b"").decode(): int(t.tensorIndex) for t in maps or []}
        current = [int(i) for i in getattr(sg, attr)]
        if sorted(index) != sorted(names) or sorted(index.values()) != sorted(current):
            return content
        wanted = [index[n] for n in names]
        if wanted != current:
            setattr(sg, attr, np.asarray(wanted, np.int32))
            changed = True
    return _write(model) if changed else content
