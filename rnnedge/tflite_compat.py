"""What a ``.tflite`` file needs from a runtime, read from its flatbuffer (no TensorFlow).

* :func:`list_ops` parses the model's operator codes: builtin name + version, custom ops
  (Flex ops are custom ops whose code starts with ``Flex``).
* :func:`persistent_variables` lists state kept across ``invoke()`` (needs ``reset_all_variables``).
* :func:`check_compat` compares them with what tflite-runtime 2.14 (the last release, what
  Raspberry Pi OS users get from pip) can load, and with the installed LiteRT.
* :func:`make_interpreter` picks an interpreter: ai_edge_litert, then tflite_runtime, then tf.lite.

The 2.14 table (:data:`TFLITE_RUNTIME_2_14_MAX_VERSION`) was *measured*: every entry is the
highest version of that builtin that ``tflite_runtime==2.14.0`` resolved when handed a model whose
operator-code table lists it (see :mod:`converters.tflite.probe`). Ops not in the table are reported as "unknown", never as OK.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

# Highest builtin op version tflite-runtime 2.14.0 resolves, for every builtin of the schema it
# knows (measured with converters/tflite/probe.py on x86_64, tflite-runtime 2.14.0 cp311 wheel,
# versions 1..14 probed; e.g. FULLY_CONNECTED 10, so TF 2.21's dynamic-range v12 fails).
TFLITE_RUNTIME_2_14_MAX_VERSION: dict[str, int] = {}  # filled below by _TABLE_214

_TABLE_214 = """
ABS 5
ADD 5
ADD_N 1
ARG_MAX 3
ARG_MIN 3
ASSIGN_VARIABLE 1
ATAN2 1
AVERAGE_POOL_2D 3
BATCH_MATMUL 4
BATCH_TO_SPACE_ND 4
BIDIRECTIONAL_SEQUENCE_LSTM 3
BIDIRECTIONAL_SEQUENCE_RNN 3
BITCAST 1
BITWISE_XOR 1
BROADCAST_ARGS 1
BROADCAST_TO 3
BUCKETIZE 1
CALL_ONCE 1
CAST 5
CEIL 1
COMPLEX_ABS 1
CONCATENATION 4
CONV_2D 7
CONV_3D 1
CONV_3D_TRANSPOSE 1
COS 1
CUMSUM 1
DENSIFY 1
DEPTHWISE_CONV_2D 7
DEPTH_TO_SPACE 2
DEQUANTIZE 5
DIV 2
DYNAMIC_UPDATE_SLICE 1
ELU 1
EMBEDDING_LOOKUP 3
EMBEDDING_LOOKUP_SPARSE 1
EQUAL 4
EXP 2
EXPAND_DIMS 1
FAKE_QUANT 2
FILL 4
FLOOR 1
FLOOR_DIV 3
FLOOR_MOD 2
FULLY_CONNECTED 10
GATHER 6
GATHER_ND 4
GELU 2
GREATER 2
GREATER_EQUAL 3
HARD_SWISH 1
HASHTABLE 1
HASHTABLE_FIND 1
HASHTABLE_IMPORT 1
HASHTABLE_LOOKUP 1
HASHTABLE_SIZE 1
IF 1
IMAG 1
L2_NORMALIZATION 2
L2_POOL_2D 1
LEAKY_RELU 2
LESS 3
LESS_EQUAL 2
LOCAL_RESPONSE_NORMALIZATION 1
LOG 1
LOGICAL_AND 1
LOGICAL_NOT 1
LOGICAL_OR 1
LOGISTIC 3
LOG_SOFTMAX 2
LSH_PROJECTION 1
LSTM 4
MATRIX_DIAG 1
MATRIX_SET_DIAG 1
MAXIMUM 4
MAX_POOL_2D 3
MEAN 3
MINIMUM 4
MIRROR_PAD 3
MUL 7
MULTINOMIAL 1
NEG 1
NON_MAX_SUPPRESSION_V4 1
NON_MAX_SUPPRESSION_V5 1
NOT_EQUAL 3
ONE_HOT 1
PACK 4
PAD 4
PADV2 4
POW 1
PRELU 1
QUANTIZE 3
RANDOM_STANDARD_NORMAL 1
RANDOM_UNIFORM 1
RANGE 2
RANK 1
READ_VARIABLE 1
REAL 1
REDUCE_ALL 1
REDUCE_ANY 1
REDUCE_MAX 3
REDUCE_MIN 3
REDUCE_PROD 2
RELU 3
RELU6 3
RELU_0_TO_1 1
RELU_N1_TO_1 1
RESHAPE 1
RESIZE_BILINEAR 4
RESIZE_NEAREST_NEIGHBOR 4
REVERSE_SEQUENCE 1
REVERSE_V2 3
RFFT2D 1
RIGHT_SHIFT 1
RNN 3
ROUND 1
RSQRT 2
SCATTER_ND 1
SEGMENT_SUM 1
SELECT 4
SELECT_V2 2
SHAPE 1
SIGN 2
SIN 1
SKIP_GRAM 1
SLICE 6
SOFTMAX 3
SPACE_TO_BATCH_ND 4
SPACE_TO_DEPTH 2
SPARSE_TO_DENSE 3
SPLIT 4
SPLIT_V 2
SQRT 1
SQUARE 1
SQUARED_DIFFERENCE 2
SQUEEZE 2
STRIDED_SLICE 8
SUB 5
SUM 2
SVDF 4
TANH 3
TILE 3
TOPK_V2 3
TRANSPOSE 6
TRANSPOSE_CONV 4
UNIDIRECTIONAL_SEQUENCE_LSTM 4
UNIDIRECTIONAL_SEQUENCE_RNN 3
UNIQUE 1
UNPACK 4
UNSORTED_SEGMENT_MAX 1
UNSORTED_SEGMENT_MIN 1
UNSORTED_SEGMENT_PROD 1
UNSORTED_SEGMENT_SUM 1
VAR_HANDLE 1
WHERE 2
WHILE 1
ZEROS_LIKE 1
"""
for _line in _TABLE_214.strip().splitlines():
    _n, _v = _line.split()
    TFLITE_RUNTIME_2_14_MAX_VERSION[_n] = int(_v)


def _schema():
    try:
        from ai_edge_litert import schema_py_generated as s  # type: ignore
    except ImportError:
        try:
            from tflite_runtime import schema_py_generated as s  # type: ignore  # pragma: no cover
        except ImportError:
            try:
                from tensorflow.lite.python import schema_py_generated as s  # type: ignore
            except ImportError:
                from rnnedge.errors import MissingDependencyError, install_command

                raise MissingDependencyError(
                    "a TFLite flatbuffer schema (ai-edge-litert or tensorflow)", install_command("ai_edge_litert")
                ) from None
    return s


def _read(model: bytes | str | Path) -> bytes:
    if isinstance(model, (bytes, bytearray, memoryview)):
        return bytes(model)
    return Path(model).read_bytes()


def list_ops(model: bytes | str | Path) -> list[dict[str, Any]]:
    """Operator codes of a .tflite model: ``[{"name": "WHILE", "version": 1, "custom": False}]``.

    Custom ops (including ``Flex*`` ops, i.e. TensorFlow ops that need the Flex delegate) have
    ``custom: True`` and their custom code as name.
    """
    s = _schema()
    buf = _read(model)
    m = s.Model.GetRootAsModel(buf, 0)
    names = {v: k for k, v in vars(s.BuiltinOperator).items() if not k.startswith("_")}
    custom_code = s.BuiltinOperator.CUSTOM
    out = []
    for i in range(m.OperatorCodesLength()):
        oc = m.OperatorCodes(i)
        code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
        if code == custom_code:
            cc = oc.CustomCode()
            cc = cc.decode() if isinstance(cc, bytes) else str(cc)
            out.append({"name": cc, "version": oc.Version(), "custom": True, "flex": cc.startswith("Flex")})
        else:
            out.append({"name": names.get(code, f"BUILTIN_{code}"), "version": oc.Version(), "custom": False,
                        "flex": False})
    return out


def persistent_variables(model: bytes | str | Path) -> list[str]:
    """Names of the variable tensors that no op writes: state kept from one ``invoke()`` to the next.

    A fused ``UNIDIRECTIONAL_SEQUENCE_LSTM`` reads its initial h/c from variable tensors and writes
    its final state back; when nothing else writes them (TF's converter output for a zero initial
    state), a second ``invoke()`` starts from the first one's final state unless the app calls
    ``reset_all_variables()``. A ``DEQUANTIZE`` of a constant does not count as a writer: the
    kernel dequantizes a constant once and keeps the result (fp16 files). rnnedge's exports have
    none (``converters.tflite.rewrite``).
    """
    s = _schema()
    m = s.Model.GetRootAsModel(_read(model), 0)
    codes = [max(m.OperatorCodes(i).BuiltinCode(), m.OperatorCodes(i).DeprecatedBuiltinCode())
             for i in range(m.OperatorCodesLength())]

    def constant(g, ti: int) -> bool:
        b = m.Buffers(g.Tensors(ti).Buffer()) if ti >= 0 else None
        return b is not None and (b.DataLength() > 0 or getattr(b, "Size", lambda: 0)() > 0)

    names = []
    for gi in range(m.SubgraphsLength()):
        g = m.Subgraphs(gi)
        written = {g.Inputs(i) for i in range(g.InputsLength())}
        for i in range(g.OperatorsLength()):
            op = g.Operators(i)
            once = (codes[op.OpcodeIndex()] == s.BuiltinOperator.DEQUANTIZE and op.InputsLength()
                    and constant(g, op.Inputs(0)))
            if not once:
                written |= {op.Outputs(j) for j in range(op.OutputsLength())}
        for ti in range(g.TensorsLength()):
            t = g.Tensors(ti)
            if t.IsVariable() and ti not in written:
                n = t.Name()
                names.append(n.decode() if isinstance(n, bytes) else str(n))
    return names


def check_compat(model: bytes | str | Path, *, try_litert: bool = True) -> dict[str, Any]:
    """Can tflite-runtime 2.14 and the installed LiteRT load this model?

    Returns ``{"tflite_runtime_2_14": bool | None, "litert": bool | None, "reasons": [...]}``;
    ``None`` means "not known" (an op missing from the measured table, LiteRT not installed).
    """
    ops = list_ops(model)
    reasons: list[str] = []
    ok214: bool | None = True
    for op in ops:
        if op["custom"]:
            ok214 = False
            reasons.append(f"tflite-runtime 2.14: custom op {op['name']} "
                           f"({'needs the Flex delegate, absent on a Pi' if op['flex'] else 'needs a custom kernel'})")
            continue
        mx = TFLITE_RUNTIME_2_14_MAX_VERSION.get(op["name"])
        if mx is None:
            if ok214 is True:
                ok214 = None
            reasons.append(f"tflite-runtime 2.14: {op['name']} v{op['version']} not in the measured table (unknown)")
        elif op["version"] > mx:
            ok214 = False
            reasons.append(f"tflite-runtime 2.14 supports {op['name']} up to v{mx}, the model has v{op['version']}")
    litert: bool | None = None
    if try_litert:
        try:
            from ai_edge_litert.interpreter import Interpreter  # type: ignore
        except ImportError:
            reasons.append("litert: ai-edge-litert not installed")
        else:
            try:
                it = Interpreter(model_content=_read(model), num_threads=1)
                it.allocate_tensors()
                litert = True
            except Exception as e:  # noqa: BLE001 - report, don't fail
                litert = False
                reasons.append(f"litert: {str(e).splitlines()[0][:200]}")
    return {"tflite_runtime_2_14": ok214, "litert": litert, "reasons": reasons}


def warn_if_legacy_incompatible(compat: dict, what: str) -> str | None:
    """Emit (and return) a warning when a model cannot load in tflite-runtime 2.14."""
    if compat.get("tflite_runtime_2_14") is False:
        msg = (f"{what} cannot be loaded by tflite-runtime 2.14 (the last tflite-runtime release, "
               f"used on Raspberry Pi OS): " + "; ".join(r for r in compat["reasons"] if "2.14" in r)
               + (". Flex ops need a runtime built with the Flex delegate; change the layer instead."
                  if any("custom op" in r for r in compat["reasons"])
                  else ". Use ai-edge-litert on the device, or another quantization mode."))
        warnings.warn(msg, RuntimeWarning, stacklevel=3)
        return msg
    return None


def make_interpreter(model: bytes | str | Path, num_threads: int = 1):
    """An interpreter from the first available of ai_edge_litert, tflite_runtime, tf.lite.

    Returns ``(interpreter, runtime_name)``.
    """
    content = _read(model)
    try:
        from ai_edge_litert.interpreter import Interpreter  # type: ignore

        return Interpreter(model_content=content, num_threads=num_threads), "ai_edge_litert"
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter  # type: ignore

        return Interpreter(model_content=content, num_threads=num_threads), "tflite_runtime"
    except ImportError:
        pass
    try:
        import tensorflow as tf  # type: ignore

        return tf.lite.Interpreter(model_content=content, num_threads=num_threads), "tf.lite"
    except ImportError:
        from rnnedge.errors import MissingDependencyError, install_command

        raise MissingDependencyError("a TFLite interpreter", install_command("ai_edge_litert")) from None


def run_interpreter(interp, feeds: list, resize: bool = True) -> list:
    """Run ``feeds`` (arrays in the interpreter's input order), resizing inputs to their shapes."""
    import numpy as np

    ins = interp.get_input_details()
    if resize:
        for d, x in zip(ins, feeds):
            if list(d["shape"]) != list(np.shape(x)):
                interp.resize_tensor_input(d["index"], list(np.shape(x)), strict=False)
    interp.allocate_tensors()
    for d, x in zip(ins, feeds):
        interp.set_tensor(d["index"], np.asarray(x, dtype=d["dtype"]))
    interp.invoke()
    return [interp.get_tensor(d["index"]).copy() for d in interp.get_output_details()]
