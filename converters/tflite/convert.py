"""Keras 3 recurrent model -> .tflite with builtin ops only (runs on a Raspberry Pi, no Flex).

How (measured with TF 2.21 / Keras 3.15):

* ``TFLiteConverter.from_keras_model`` needs Flex for every Keras 3 RNN with a free batch size.
  We trace ``model(x)`` in a ``tf.function`` with a **fixed batch size** (sequence length free
  unless asked), so the recurrence becomes a builtin ``WHILE``.
* The weights are fed as **constants** inside the trace (``keras.StatelessScope``), so no
  resource variables reach the converter (with variables, the new converter left
  ``VAR_HANDLE``/``READ_VARIABLE`` inside the loop and LiteRT failed; freezing with
  ``convert_variables_to_constants_v2`` inlines every function, which loses the LSTM fusion).
* **Fused LSTM** (``lstm_mode`` "fused"/"auto"): while tracing, Keras's ``backend.lstm`` hook (the
  one it uses for cuDNN) is replaced by a ``tf.function`` carrying the Keras 2 attributes
  ``api_implements="lstm_<uuid>"``, ``time_major``, ``go_backwards``; the TFLite converter then
  emits ``UNIDIRECTIONAL_SEQUENCE_LSTM`` (time-major, see ``_make_fused_lstm``). The converter only
  fuses when the mask is absent, the activations are tanh/sigmoid and the layer's states are not
  used (``return_state``); otherwise the function body (a normal WHILE loop) is converted, so the
  result is always correct. "auto" fuses at batch 1 only (``_auto_lstm_mode``: WHILE or unrolled
  above).
* After conversion, ``converters.tflite.rewrite`` makes the fused LSTM's state stateless across
  ``invoke()`` and puts inputs/outputs in Keras order.
* **unroll**: the model is cloned with ``unroll=True`` (needs a static sequence length).
"""
from __future__ import annotations

import contextlib
import importlib
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from converters.tflite.rewrite import order_io, stateless_variables, unclip_fused_lstm
from rnnedge.errors import ConversionError, UsageError

LSTM_MODES = ("auto", "while", "fused", "unroll")

# How "auto" lowers LSTMs. Measured with benchmarks/tflite_while_vs_fused.py --lstm-modes
# (LiteRT, T=100, 32 features, median ms, 1 and 2 threads; on a shared 2-core machine, so noisy:
# rerun there before quoting). The fused kernel multiplies each weight matrix with one batch row
# at a time (tensor_utils MatrixBatchVectorMultiplyAccumulate): its time grows with the batch.
# A WHILE loop of a layer returning sequences carries the whole (T, B, units) output through the
# loop (a constant initialiser of that size in the file: 13 MB at B=128): slow at large batches.
FUSED_LSTM_REASON = ("auto at batch 1: fused UNIDIRECTIONAL_SEQUENCE_LSTM (one kernel per layer; "
                     "2xLSTM(256): 11-12 ms against 19-23 ms for WHILE)")
BATCHED_LSTM_REASON = (
    "auto at batch {batch}: WHILE. The fused LSTM kernel works one batch row at a time, so its time "
    "grows with the batch (LSTM(256), batch 8: fused 26-38 ms, WHILE 11 ms){why_not_unroll}")
UNROLL_LSTM_REASON = (
    "auto at batch {batch} with a fixed length {T}: unrolled. A WHILE loop of a layer returning "
    "sequences carries the whole (T, B, units) output through the loop, the fused kernel works one "
    "batch row at a time (2xLSTM(256), batch 32: unrolled 117-139 ms, WHILE 210-268 ms, fused "
    "241-356 ms; batch 128: 286 / 998 / 1052 ms)")
UNROLL_MIN_BATCH, UNROLL_MAX_T = 32, 128  # where unrolling was measured to win (T=100)


def _auto_lstm_mode(model, batch_size: int, T: int | None) -> tuple[str, str]:
    """"auto" for a model with an LSTM: (mode, reason). Batch 1 -> "auto" (fused where possible)."""
    if batch_size <= 1:
        return "auto", FUSED_LSTM_REASON
    sequences = _has_rnn(model, ("LSTM", "GRU", "SimpleRNN"), sequences=True)
    if sequences and T is not None and T <= UNROLL_MAX_T and batch_size >= UNROLL_MIN_BATCH:
        return "unroll", UNROLL_LSTM_REASON.format(batch=batch_size, T=T)
    why = ("" if not sequences else
           f"; not unrolled: that needs a fixed length <= {UNROLL_MAX_T} and a batch >= {UNROLL_MIN_BATCH}")
    return "while", BATCHED_LSTM_REASON.format(batch=batch_size, why_not_unroll=why)


def _sanitize(name: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_]", "_", name)
    return s if s and not s[0].isdigit() else f"t_{s}"


@dataclass
class Traced:
    concrete: Any
    input_names: list[str]          # Keras input names (order of model.inputs)
    sig_input_names: list[str]      # signature names (sanitized)
    output_names: list[str]         # Keras output names
    sig_output_names: list[str]
    input_dtypes: list[str]
    input_shapes: list[list]        # with batch fixed; None where free
    seq_len: int | None
    lstm_mode: str
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # also in notes; the CLI prints these
    lstm_reason: str = ""  # why this LSTM lowering (manifest ``lstm_mode_reason``)


# --------------------------------------------------------------------- fused LSTM hook
def _make_fused_lstm(go_backwards: bool):
    """A ``tf.function`` the converter fuses into one time-major UNIDIRECTIONAL_SEQUENCE_LSTM.

    Time-major because TFLite's kernel (unidirectional_sequence_lstm.cc) runs a batch-major
    input one batch row at a time (matrix-vector products, cost x batch), a time-major one all rows
    per step (matrix-matrix): measured 4x faster at batch 32 for LSTM(256), T=100
    (benchmarks/tflite_while_vs_fused.py --lstm-modes). ``inputs`` are (T, B, F).
    """
    import tensorflow as tf

    tfrnn = importlib.import_module("keras.src.backend.tensorflow.rnn")

    def standard_lstm(inputs, init_h, init_c, kernel, recurrent_kernel, bias):
        def step(x, states):
            h, c = states
            z = tf.matmul(x, kernel) + tf.matmul(h, recurrent_kernel) + bias
            z0, z1, z2, z3 = tf.split(z, 4, axis=1)
            i = tf.sigmoid(z0)
            f = tf.sigmoid(z1)
            c = f * c + i * tf.tanh(z2)
            o = tf.sigmoid(z3)
            h = o * tf.tanh(c)
            return h, [h, c]

        last, outs, st = tfrnn.rnn(step, inputs, [init_h, init_c], go_backwards=go_backwards, time_major=True)
        return last, outs, st[0], st[1], tf.constant(0.0)

    # The attribute names are the ones Keras 2 used; TFLite's prepare-composite-functions pass
    # turns a function with api_implements="lstm_*" into UNIDIRECTIONAL_SEQUENCE_LSTM.
    return tf.function(standard_lstm, autograph=False, experimental_attributes={
        "api_implements": "lstm_" + str(uuid.uuid4()),
        "api_preferred_device": "CPU",
        "time_major": True,
        "go_backwards": bool(go_backwards),
    })


@contextlib.contextmanager
def _fused_lstm_hook(stats: dict):
    import keras
    import keras.src.backend as kb
    import tensorflow as tf

    original = getattr(kb, "lstm", None)
    if original is None:  # a Keras without the backend LSTM hook: nothing to fuse
        yield
        return

    def hooked(inputs, initial_state_h, initial_state_c, mask, kernel, recurrent_kernel, bias,
               activation, recurrent_activation, return_sequences=False, go_backwards=False,
               unroll=False, time_major=False):
        ok_act = (activation in (keras.activations.tanh, tf.tanh, tf.nn.tanh)
                  and recurrent_activation in (keras.activations.sigmoid, tf.sigmoid, tf.nn.sigmoid))
        if mask is not None or unroll or time_major or not ok_act:
            stats["not_fusable"] = stats.get("not_fusable", 0) + 1
            raise NotImplementedError  # Keras falls back to its generic loop

        def val(t):
            return tf.convert_to_tensor(t.value if hasattr(t, "value") else t)

        k = val(kernel)
        b = val(bias) if bias is not None else tf.zeros([k.shape[1]], k.dtype)
        fn = _make_fused_lstm(bool(go_backwards))
        last, outs, h, c, _ = fn(tf.transpose(inputs, [1, 0, 2]), initial_state_h, initial_state_c, k,
                                 val(recurrent_kernel), b)
        outs = tf.transpose(outs, [1, 0, 2]) if return_sequences else tf.expand_dims(last, 1)
        stats["hooked"] = stats.get("hooked", 0) + 1
        return last, outs, [h, c]

    kb.lstm = hooked
    try:
        yield
    finally:
        kb.lstm = original


@contextlib.contextmanager
def _time_distributed_over_time():
    """While tracing, ``TimeDistributed`` with a free time axis maps its layer over the time steps.

    Keras 3.15's ``TimeDistributed.call`` takes ``ops.shape(inputs)`` *before* moving time to the
    front, then maps over ``arange(shape[0])``: the batch size, not the number of steps. In a graph
    with a free time axis (our trace) every step then gets step 0's result (BiLSTM -> TimeDistributed
    (Dense) was 0.27..0.55 off at T=6); eager Keras has a static time axis and loops correctly.
    Here the layer runs on ``gather(x, t)`` for t in ``range(steps)`` under ``tf.vectorized_map``
    (gather vectorizes to builtin ops; ``x[t]`` would need TensorList ops, i.e. Flex). A static
    time axis keeps Keras's own path.
    """
    import tensorflow as tf
    from keras.layers import TimeDistributed

    original = TimeDistributed.call

    def call(self, inputs, training=None, mask=None):
        if inputs.shape[1] is not None:
            return original(self, inputs, training=training, mask=mask)

        def time_first(t):
            return tf.transpose(t, [1, 0] + list(range(2, t.shape.rank)))

        x = time_first(inputs)
        m = None if mask is None else time_first(mask)

        def step(t):
            kwargs = {}
            if self.layer._call_has_mask_arg and m is not None:
                kwargs["mask"] = tf.gather(m, t)
            if self.layer._call_has_training_arg:
                kwargs["training"] = training
            return self.layer.call(tf.gather(x, t), **kwargs)

        return time_first(tf.vectorized_map(step, tf.range(tf.shape(x)[0])))

    TimeDistributed.call = call
    try:
        yield
    finally:
        TimeDistributed.call = original


# --------------------------------------------------------------------- unroll
def _unrolled_clone(model):
    import keras

    def set_unroll(cfg):
        if isinstance(cfg, dict):
            if "unroll" in cfg:
                cfg["unroll"] = True
            for v in cfg.values():
                set_unroll(v)
        elif isinstance(cfg, list):
            for v in cfg:
                set_unroll(v)

    def clone_fn(layer):
        cfg = layer.get_config()
        if type(layer).__name__ in ("LSTM", "GRU", "SimpleRNN", "RNN", "Bidirectional"):
            set_unroll(cfg)
        return layer.__class__.from_config(cfg)

    new = keras.models.clone_model(model, clone_function=clone_fn)
    new.set_weights(model.get_weights())
    return new


def _has_rnn(model, names=("LSTM",), sequences: bool = False) -> bool:
    """Does the model hold a layer of one of ``names`` (with ``return_sequences`` if ``sequences``)?"""
    def walk(layer):
        if type(layer).__name__ in names and (not sequences or getattr(layer, "return_sequences", False)):
            return True
        for attr in ("layer", "forward_layer", "backward_layer"):
            sub = getattr(layer, attr, None)
            if sub is not None and sub is not layer and walk(sub):
                return True
        return any(walk(sub) for sub in getattr(layer, "layers", []) or [])

    return walk(model)


# --------------------------------------------------------------------- tracing
def model_io(model):
    """Keras input names/shapes/dtypes (functional or Sequential)."""
    ins = list(model.inputs)
    names = [getattr(t, "name", f"input_{i}") for i, t in enumerate(ins)]
    shapes = [list(t.shape) for t in ins]
    dtypes = [str(getattr(t, "dtype", "float32")) for t in ins]
    from rnnedge.matching import output_names

    # return_state / merge_mode=None: several outputs per layer; one naming rule for every format
    return names, shapes, dtypes, output_names(model)


def trace(model, *, batch_size: int = 1, seq_len: int | None = None, lstm_mode: str = "auto") -> Traced:
    import keras
    import tensorflow as tf

    if lstm_mode not in LSTM_MODES:
        raise UsageError(f"tflite_lstm must be one of {', '.join(LSTM_MODES)}, got {lstm_mode!r}")
    names, shapes, dtypes, out_names = model_io(model)
    static_T = None
    for s in shapes:
        if len(s) >= 3 and s[1] is not None:
            static_T = s[1]
    notes = []
    has_lstm = _has_rnn(model, ("LSTM",))
    reason = f"asked (tflite_lstm={lstm_mode!r})" if has_lstm and lstm_mode != "auto" else ""
    if lstm_mode == "auto" and has_lstm:
        lstm_mode, reason = _auto_lstm_mode(model, batch_size, seq_len or static_T)
    if lstm_mode == "unroll":
        seq_len = seq_len or static_T
        if seq_len is None:
            raise UsageError("tflite_lstm='unroll' needs a fixed sequence length: pass seq_len")
        model = _unrolled_clone(model)
    specs = []
    fixed_shapes = []
    for n, s, d in zip(names, shapes, dtypes):
        shp = [batch_size] + list(s[1:])
        if len(shp) >= 2:
            if seq_len is not None:
                shp[1] = seq_len
        specs.append(tf.TensorSpec(shp, tf.as_dtype(d), name=_sanitize(n)))
        fixed_shapes.append(shp)
    sig_out = [_sanitize(n) for n in out_names]
    values = [(v, v.numpy()) for v in model.variables]
    multi = len(specs) > 1

    def call(*xs):
        # Weights as in-graph constants: no resource variables reach the converter.
        with keras.StatelessScope(state_mapping=[(v, tf.constant(a)) for v, a in values]):
            y = model(list(xs) if multi else xs[0], training=False)
        ys = y if isinstance(y, (list, tuple)) else [y]
        return {n: t for n, t in zip(sig_out, ys)}

    fn = tf.function(call, input_signature=specs, autograph=False)
    stats: dict = {}
    used_mode = lstm_mode
    fuse = lstm_mode in ("auto", "fused") and has_lstm
    with _time_distributed_over_time(), (_fused_lstm_hook(stats) if fuse else contextlib.nullcontext()):
        cf = fn.get_concrete_function()
    if fuse:
        if lstm_mode == "fused" and not stats.get("hooked"):
            raise ConversionError(
                "tflite_lstm='fused': no LSTM layer of this model can use the fused "
                "UNIDIRECTIONAL_SEQUENCE_LSTM (that needs an LSTM without mask, with tanh/sigmoid "
                "activations and unroll=False); use 'auto' or 'while'", fmt="tflite")
        if stats.get("not_fusable"):
            notes.append(f"{stats['not_fusable']} LSTM(s) not fusable (mask / activations): WHILE loop")
        used_mode = "fused" if stats.get("hooked") else "while"
        if lstm_mode == "auto" and not stats.get("hooked"):
            reason = "auto: no LSTM can be fused (mask / activations / unroll): WHILE"
    elif lstm_mode == "auto":
        used_mode = "while"
    return Traced(cf, names, [s.name for s in specs], out_names, sig_out, dtypes, fixed_shapes,
                  seq_len, used_mode, notes, lstm_reason=reason)


# --------------------------------------------------------------------- converting
_FLEX_RE = re.compile(r"\btf\.([A-Z][A-Za-z0-9_]*)")


def _layer_of_op(msg: str, model, ops: list[str], graph=None) -> str | None:
    """The Keras layer whose scope holds the op, from the converter's op locations
    (``"functional_1/cumprod_layer_1/Cumprod@__inference..."``)."""
    names = {l.name for l in getattr(model, "layers", [])}
    graph_ops = []
    if graph is not None:  # op names carry the Keras scopes: functional_1/cumprod_layer_1/Cumprod
        graph_ops = [f"{o.name}@" for o in graph.get_operations() if o.type in ops]
    for op in ops:
        for scope in re.findall(rf"([A-Za-z0-9_./]+)/{re.escape(op)}(?:_\d+)?@", msg + " " + " ".join(graph_ops)):
            for part in reversed(scope.split("/")):
                for cand in (part, re.sub(r"_\d+$", "", part)):
                    if cand in names:
                        return cand
    return None


def convert(traced: Traced, model=None, *, allow_flex: bool = False, quantize: str | None = None,
            representative_data=None) -> bytes:
    """Convert a traced function; ``quantize`` in None|"dynamic"|"fp16"|"int8"."""
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_concrete_functions([traced.concrete], tf.Module())
    ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if allow_flex:
        ops.append(tf.lite.OpsSet.SELECT_TF_OPS)
    conv.target_spec.supported_ops = ops
    if quantize == "dynamic":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    elif quantize == "fp16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif quantize == "int8":
        if representative_data is None:
            raise UsageError("int8 quantization needs representative data")
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        samples = list(representative_data)

        def gen():
            for s in samples:
                if len(traced.sig_input_names) > 1:
                    # by name: a list is fed in the interpreter's input order, which is not
                    # model.inputs' order (e.g. decoder_tokens before encoder_tokens)
                    yield {n: np.asarray(x) for n, x in zip(traced.sig_input_names, s)}
                else:
                    yield [np.asarray(x) for x in s]

        conv.representative_dataset = gen
        # float I/O: integer kernels where they exist, float where they don't (WHILE bodies,
        # embedding lookups); inference_input_type stays float32.
    elif quantize is not None:
        raise UsageError(f"unknown quantization mode {quantize!r}; choose dynamic, fp16 or int8")
    try:
        content = conv.convert()
    except Exception as e:  # noqa: BLE001 - ConverterError and friends
        msg = str(e)
        flex_ops = sorted(set(_FLEX_RE.findall(msg)) - {"TensorSpec"})
        if "not supported" in msg or "Flex" in msg or "Select TF" in msg or flex_ops:
            layer = _layer_of_op(msg, model, flex_ops, traced.concrete.graph) if model is not None else None
            where = f" in layer '{layer}'" if layer else ""
            raise ConversionError(
                f"TFLite conversion needs TensorFlow (Flex) ops {', '.join(flex_ops) or '(see log)'}"
                f"{where}; Flex does not exist on a Raspberry Pi's TFLite runtime. Change the layer, "
                f"or pass allow_flex=True (--allow-flex) to build a model that needs the Flex "
                f"delegate.", layer=layer, fmt="tflite") from None
        raise ConversionError(f"TFLite conversion failed: {msg.strip().splitlines()[-1][:400]}",
                              fmt="tflite") from None
    if quantize != "int8":
        content = unclip_fused_lstm(content)
    content = stateless_variables(content)[0]  # same result on every invoke(), no reset needed
    return order_io(content, traced.sig_input_names, traced.sig_output_names)  # Keras order
