"""Native Keras -> ONNX export (converters.onnx): parity with Keras in onnxruntime, native
recurrent ops (no Loop/Scan), masks (post/pre-padding, holes), opsets, ORT format, errors."""
from __future__ import annotations

import json

import numpy as np
import pytest

keras = pytest.importorskip("keras")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from keras import layers  # noqa: E402

from converters.onnx.graph import convert_model  # noqa: E402
from converters.registry import ExportOptions, get_exporter  # noqa: E402
from rnnedge.errors import ConversionError  # noqa: E402

TOL = 1e-5
F, V = 3, 12          # float features, vocabulary
T_EXPORT = 6          # static time axis of the Keras inputs that have one
SHAPES = [(1, T_EXPORT), (3, T_EXPORT + 3)]   # (batch, time): batch 1 and 3, a longer sequence


# --------------------------------------------------------------------------- model factories
def seq_in(name="x", t=None, f=F):
    return keras.Input((t, f), name=name)


def tok_in(name="tokens"):
    return keras.Input((None,), dtype="int32", name=name)


def _m(inputs, outputs, name):
    return keras.Model(inputs, outputs, name=name)


def rnn_cls(kind):
    return {"lstm": layers.LSTM, "gru": layers.GRU, "rnn": layers.SimpleRNN}[kind]


def unidirectional(kind, rs, gb, **kw):
    def f():
        x = seq_in()
        return _m(x, rnn_cls(kind)(4, return_sequences=rs, go_backwards=gb, **kw)(x), "uni")
    return f


def masked_tokens(kind, rs, gb=False):
    def f():
        t = tok_in()
        e = layers.Embedding(V, 3, mask_zero=True)(t)
        return _m(t, rnn_cls(kind)(4, return_sequences=rs, go_backwards=gb)(e), "masked")
    return f


def bidir(kind, merge, rs, masked, state=False):
    def f():
        if masked:
            inp = tok_in()
            x = layers.Embedding(V, 3, mask_zero=True)(inp)
        else:
            inp = x = seq_in()
        out = layers.Bidirectional(rnn_cls(kind)(3, return_sequences=rs, return_state=state),
                                   merge_mode=merge)(x)
        return _m(inp, list(out) if isinstance(out, (list, tuple)) else out, "bidir")
    return f


def sentiment_like():
    t = tok_in()
    e = layers.Embedding(V, 4, mask_zero=True)(t)
    b = layers.Bidirectional(layers.LSTM(3, return_sequences=True))(e)
    p = layers.GlobalMaxPooling1D()(b)
    return _m(t, layers.Dense(1, activation="sigmoid")(p), "sentiment_like")


def textgen_like():
    t = tok_in()
    e = layers.Embedding(V, 4, mask_zero=True)(t)
    h = layers.LSTM(5, return_sequences=True)(e)
    h = layers.LSTM(5, return_sequences=True)(h)
    return _m(t, layers.TimeDistributed(layers.Dense(V, activation="softmax"))(h), "textgen_like")


def seq2seq():
    enc_in, dec_in = tok_in("encoder_tokens"), tok_in("decoder_tokens")
    e = layers.Embedding(V, 4, mask_zero=True)(enc_in)
    _, h, c = layers.LSTM(5, return_state=True)(e)
    d = layers.Embedding(V, 4, mask_zero=True)(dec_in)
    y = layers.LSTM(5, return_sequences=True)(d, initial_state=[h, c])
    return _m([enc_in, dec_in], layers.TimeDistributed(layers.Dense(V, activation="softmax"))(y), "seq2seq")


def initial_state_inputs(kind):
    def f():
        x = seq_in()
        h0 = keras.Input((4,), name="h0")
        states = [h0]
        if kind == "lstm":
            c0 = keras.Input((4,), name="c0")
            states.append(c0)
        outs = rnn_cls(kind)(4, return_sequences=True, return_state=True)(x, initial_state=states)
        return _m([x] + states, list(outs), "init_state")
    return f


def attention(score_mode="dot", use_scale=False, masked=False, causal=False):
    def f():
        if masked:
            inp = tok_in()
            x = layers.Embedding(V, 4, mask_zero=True)(inp)
        else:
            inp = x = seq_in()
        h = layers.GRU(4, return_sequences=True)(x)
        q = layers.Dense(4)(h)
        a = layers.Attention(score_mode=score_mode, use_scale=use_scale)([q, h], use_causal_mask=causal)
        return _m(inp, layers.GlobalAveragePooling1D()(a), "attention")
    return f


def mha(causal=False):
    def f():
        x = seq_in()
        h = layers.LSTM(4, return_sequences=True)(x)
        a = layers.MultiHeadAttention(num_heads=2, key_dim=3)(h, h, use_causal_mask=causal)
        a = layers.LayerNormalization()(layers.Add()([h, a]))
        return _m(x, a, "mha")
    return f


def mha_masked():
    t = tok_in()
    e = layers.Embedding(V, 4, mask_zero=True)(t)
    h = layers.LSTM(4, return_sequences=True)(e)
    a = layers.MultiHeadAttention(num_heads=2, key_dim=3)(h, h)
    return _m(t, layers.GlobalAveragePooling1D()(a), "mha_masked")


def conv(padding, dilation):
    def f():
        x = seq_in()
        c = layers.Conv1D(5, 3, padding=padding, dilation_rate=dilation, activation="relu")(x)
        h = layers.GRU(4)(c)
        return _m(x, h, "conv")
    return f


def misc_layers():
    x = seq_in(t=T_EXPORT)
    h = layers.LSTM(4, return_sequences=True)(x)
    d = layers.Dropout(0.5)(h)
    d2 = layers.SpatialDropout1D(0.3)(h)
    cat = layers.Concatenate()([d, d2])
    td = layers.TimeDistributed(layers.Dense(4, activation="tanh"))(cat)
    s = layers.Add()([td, h])
    mul = layers.Multiply()([s, h])
    avg = layers.Average()([mul, s, h])
    act = layers.Activation("softsign")(avg)
    ln = layers.LayerNormalization()(act)
    flat = layers.Flatten()(ln)
    rv = layers.RepeatVector(2)(layers.Dense(3, activation="elu")(flat))
    r = layers.Reshape((3, 2))(rv)
    g = layers.GlobalAveragePooling1D()(layers.GRU(3, return_sequences=True)(r))
    return _m(x, [g, layers.Dense(2, activation="softmax")(flat)], "misc")


def masking_layer(kind):
    def f():
        x = seq_in()
        m = layers.Masking(0.0)(x)
        h = rnn_cls(kind)(4, return_sequences=True)(m)
        return _m(x, layers.Dense(2)(h), "masking")
    return f


def slicing():
    x = seq_in()
    h = layers.LSTM(4, return_sequences=True)(x)
    last = h[:, -1, :]
    return _m(x, layers.Dense(2)(last), "slicing")


def nested():
    inner = keras.Sequential([keras.Input((None, 4)), layers.GRU(3, return_sequences=True),
                              layers.Dense(2)], name="inner")
    t = tok_in()
    e = layers.Embedding(V, 4, mask_zero=True)(t)
    return _m(t, layers.LSTM(3)(inner(e)), "nested")


CASES = {
    **{f"{k}-rs{int(rs)}-gb{int(gb)}": unidirectional(k, rs, gb)
       for k in ("lstm", "gru", "rnn") for rs in (False, True) for gb in (False, True)},
    "lstm-nobias": unidirectional("lstm", True, False, use_bias=False),
    "gru-nobias": unidirectional("gru", True, False, use_bias=False),
    "gru-reset_after0": unidirectional("gru", True, False, reset_after=False),
    "gru-reset_after0-gb": unidirectional("gru", False, True, reset_after=False),
    "lstm-hard_sigmoid": unidirectional("lstm", True, False, recurrent_activation="hard_sigmoid"),
    "gru-hard_sigmoid-relu": unidirectional("gru", True, False, recurrent_activation="hard_sigmoid",
                                            activation="relu"),
    "lstm-linear-elu": unidirectional("lstm", True, False, activation="linear", recurrent_activation="elu"),
    "lstm-softsign-softplus": unidirectional("lstm", True, False, activation="softsign",
                                             recurrent_activation="softplus"),
    "rnn-linear": unidirectional("rnn", True, False, activation="linear"),
    "lstm-stateful-dropout": unidirectional("lstm", True, False, dropout=0.3, recurrent_dropout=0.2),
    "lstm-stacked": lambda: (lambda x: _m(x, layers.LSTM(3)(layers.LSTM(4, return_sequences=True)(x)),
                                          "stacked"))(seq_in()),
    **{f"masked-{k}-rs{int(rs)}": masked_tokens(k, rs) for k in ("lstm", "gru", "rnn") for rs in (False, True)},
    "masked-lstm-gb-rs1": masked_tokens("lstm", True, True),
    "masked-gru-gb-rs0": masked_tokens("gru", False, True),
    **{f"bidir-{m}-rs{int(rs)}": bidir("lstm", m, rs, False) for m in ("concat", "sum", "ave", "mul", None)
       for rs in (False, True)},
    **{f"bidir-masked-{m}-rs{int(rs)}": bidir("lstm", m, rs, True) for m in ("concat", "mul", None)
       for rs in (False, True)},
    "bidir-gru-masked-state": bidir("gru", "concat", True, True, state=True),
    "bidir-lstm-state": bidir("lstm", "sum", False, False, state=True),
    "sentiment_like": sentiment_like,
    "textgen_like": textgen_like,
    "seq2seq": seq2seq,
    "init-state-lstm": initial_state_inputs("lstm"),
    "init-state-gru": initial_state_inputs("gru"),
    "attention-dot": attention(),
    "attention-scaled-masked": attention(use_scale=True, masked=True),
    "attention-concat-causal": attention(score_mode="concat", use_scale=True, causal=True),
    "mha": mha(),
    "mha-causal": mha(causal=True),
    "mha-masked": mha_masked,
    "conv-valid": conv("valid", 1),
    "conv-same-d2": conv("same", 2),
    "conv-causal-d2": conv("causal", 2),
    "misc-layers": misc_layers,
    "masking-lstm": masking_layer("lstm"),
    "masking-gru": masking_layer("gru"),
    "slicing": slicing,
    "nested-model": nested,
}

RECURRENT = {"LSTM", "GRU", "RNN"}


def _count_rnn_layers(model) -> int:
    n = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            n += _count_rnn_layers(layer)
        elif type(layer).__name__ in ("LSTM", "GRU", "SimpleRNN", "Bidirectional"):
            n += 1
    return n
_BUILT: dict = {}


def built(case: str):
    """(model, onnx session, info), built once per module run."""
    if case not in _BUILT:
        keras.utils.set_random_seed(1)
        model = CASES[case]()
        _randomize_biases(model)
        # the native-op form of every layer (tests/test_onnx_lowerings.py covers the other forms)
        mp, info = convert_model(model, ExportOptions(extra={"onnx_rnn_lowering": "native"}))
        sess = ort.InferenceSession(mp.SerializeToString(), providers=["CPUExecutionProvider"])
        _BUILT[case] = (model, sess, info, mp)
    return _BUILT[case]


def _randomize_biases(model):
    """Keras initialises biases to zeros/ones: give them random values so bias mapping is tested."""
    rng = np.random.default_rng(7)
    for w in model.weights:
        if "bias" in w.path or "gamma" in w.path or "beta" in w.path or "scale" in w.path:
            w.assign(rng.uniform(-0.5, 0.5, size=w.shape).astype("float32"))


def make_feeds(info, batch, t, padding="post", seed=0):
    rng = np.random.default_rng(seed)
    feeds = {}
    for k, inp in enumerate(info["inputs"]):
        shape = []
        for i, d in enumerate(inp["shape"]):  # several sequence inputs get different lengths
            shape.append(batch if i == 0 else (t + 2 * k if isinstance(d, str) and d.endswith("time") else d))
        if "int" in inp["dtype"]:
            x = rng.integers(1, V, size=shape).astype(inp["dtype"])
            L = shape[1]
            if batch > 1:
                if padding == "post":
                    x[0, L - 2:] = 0
                    x[-1, L - 4:] = 0
                elif padding == "pre":
                    x[0, :2] = 0
                    x[-1, :L - 2] = 0
                elif padding == "hole":
                    x[0, 1] = 0
                    x[-1, 2:4] = 0
                    x[-1, -1] = 0
            feeds[inp["name"]] = x
        else:
            x = rng.standard_normal(shape).astype(inp["dtype"])
            if batch > 1 and padding != "none":
                x[-1, -2:] = 0.0  # trailing zero steps (Masking layer)
                x[0, 1] = 0.0
            feeds[inp["name"]] = x
    return feeds


_REF: dict = {}


def keras_ref(model, names, feeds):
    """Keras outputs, cached per (model, inputs): several tests compare the same pair."""
    key = (id(model), tuple((n, feeds[n].shape, feeds[n].tobytes()) for n in names))
    if key not in _REF:
        xs = [feeds[n] for n in names]
        ref = model(xs if len(xs) > 1 else xs[0], training=False)
        _REF[key] = [np.asarray(r) for r in (ref if isinstance(ref, (list, tuple)) else [ref])]
    return _REF[key]


def compare(model, sess, info, feeds):
    names = [i["name"] for i in info["inputs"]]
    ref = keras_ref(model, names, feeds)
    got = sess.run(None, feeds)
    assert len(ref) == len(got)
    errs = []
    for r, y in zip(ref, got):
        assert r.shape == y.shape
        errs.append(float(np.max(np.abs(r - y))))
    return max(errs)


# --------------------------------------------------------------------------- parity
@pytest.mark.parametrize("case", list(CASES))
def test_parity_and_native_ops(case):
    model, sess, info, mp = built(case)
    ops = info["op_types"]
    assert "Loop" not in ops and "Scan" not in ops and "If" not in ops
    n_rnn_layers = _count_rnn_layers(model)
    assert sum(ops.get(k, 0) for k in RECURRENT) == n_rnn_layers  # one native op per (Bi)RNN layer
    for batch, t in SHAPES:
        err = compare(model, sess, info, make_feeds(info, batch, t if "misc" not in case else T_EXPORT))
        assert err <= TOL, f"{case} batch={batch} T={t}: max abs error {err}"


@pytest.mark.parametrize("padding", ["post", "pre", "hole"])
@pytest.mark.parametrize("case", ["masked-lstm-rs1", "masked-gru-rs0", "masked-rnn-rs1", "masked-lstm-gb-rs1",
                                  "masked-gru-gb-rs0", "bidir-masked-concat-rs1", "bidir-masked-None-rs0",
                                  "bidir-gru-masked-state", "sentiment_like", "textgen_like", "seq2seq",
                                  "attention-scaled-masked", "nested-model",
                                  "mha-masked"])
def test_padding_sides(case, padding):
    model, sess, info, _ = built(case)
    feeds = make_feeds(info, 3, 8, padding=padding)
    assert any((v == 0).any() for v in feeds.values())
    err = compare(model, sess, info, feeds)
    assert err <= TOL, f"{case} {padding}-padded: max abs error {err}"


@pytest.mark.parametrize("case", ["masked-lstm-rs1", "masked-gru-rs0", "masked-rnn-rs1",
                                  "bidir-masked-concat-rs1", "bidir-masked-None-rs0", "sentiment_like"])
def test_fully_padded_row(case):
    """A row with no valid step: sequence_lens = 0; Keras gives zeros / the initial state."""
    model, sess, info, _ = built(case)
    feeds = make_feeds(info, 3, 6, padding="post")
    feeds["tokens"][1, :] = 0
    assert compare(model, sess, info, feeds) <= TOL


def test_expected_op_types():
    assert built("lstm-rs1-gb0")[2]["op_types"].get("LSTM") == 1
    assert built("gru-rs0-gb0")[2]["op_types"].get("GRU") == 1
    assert built("rnn-rs1-gb1")[2]["op_types"].get("RNN") == 1
    assert built("bidir-concat-rs1")[2]["op_types"].get("LSTM") == 1
    assert built("mha-masked")[2]["op_types"].get("Where") == 2  # the padding mask is applied
    assert "Where" not in built("mha")[2]["op_types"]


def test_unmasked_graph_is_lean():
    """No mask -> no compaction machinery, stacked layers share one layout change."""
    ops = built("lstm-stacked")[2]["op_types"]
    for op in ("TopK", "GatherElements", "CumSum"):
        assert op not in ops
    assert ops.get("Transpose", 0) == 1
    assert set(ops) <= {"Transpose", "LSTM", "Squeeze"}


def test_masked_stack_reuses_compacted_sequence():
    ops = built("textgen_like")[2]["op_types"]
    assert ops.get("TopK") == 1
    assert ops.get("GatherElements") == 2  # one compaction in, one expansion out for two LSTMs


def _node(mp, op_type):
    return [n for n in mp.graph.node if n.op_type == op_type]


def _attrs(node):
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


@pytest.mark.parametrize("case,lbr", [("gru-rs1-gb0", 1), ("gru-reset_after0", 0)])
def test_gru_linear_before_reset(case, lbr):
    (node,) = _node(built(case)[3], "GRU")
    assert _attrs(node)["linear_before_reset"] == lbr


def test_hard_sigmoid_attributes():
    (node,) = _node(built("lstm-hard_sigmoid")[3], "LSTM")
    a = _attrs(node)
    assert [s.decode() for s in a["activations"]] == ["HardSigmoid", "Tanh", "Tanh"]
    assert a["activation_alpha"] == pytest.approx([1 / 6])
    assert a["activation_beta"] == pytest.approx([0.5])


def test_bidirectional_is_one_op():
    (node,) = _node(built("bidir-masked-concat-rs1")[3], "LSTM")
    assert _attrs(node)["direction"] == b"bidirectional"
    assert len(node.input) >= 5 and node.input[4]  # sequence_lens wired


def test_dynamic_axes_and_names():
    model, sess, info, mp = built("seq2seq")
    assert [i["name"] for i in info["inputs"]] == ["encoder_tokens", "decoder_tokens"]
    # encoder and decoder lengths are free and independent
    assert info["inputs"][0]["shape"] == ["batch", "encoder_tokens_time"]
    assert info["inputs"][1]["shape"] == ["batch", "decoder_tokens_time"]
    assert info["outputs"][0]["shape"] == ["batch", "decoder_tokens_time", V]
    assert [o.name for o in mp.graph.output] == [o["name"] for o in info["outputs"]]
    assert info["dynamic_axes"]["encoder_tokens"] == {0: "batch", 1: "encoder_tokens_time"}
    single = built("gru-rs1-gb0")[2]
    assert single["inputs"][0]["shape"] == ["batch", "time", F]
    assert single["outputs"][0]["shape"] == ["batch", "time", 4]


def test_fixed_batch_and_seq_len():
    model = CASES["gru-rs1-gb0"]()
    mp, info = convert_model(model, ExportOptions(batch_size=2, seq_len=5))
    assert info["inputs"][0]["shape"] == [2, 5, F]
    assert info["outputs"][0]["shape"] == [2, 5, 4]
    sess = ort.InferenceSession(mp.SerializeToString(), providers=["CPUExecutionProvider"])
    assert compare(model, sess, info, make_feeds(info, 2, 5)) <= TOL


@pytest.mark.parametrize("case", ["sentiment_like", "misc-layers", "mha"])
@pytest.mark.parametrize("opset", [14, 15, 17, 18, 21])
def test_opsets_and_ir_version(opset, case):
    import onnx

    model = built(case)[0]
    mp, info = convert_model(model, ExportOptions(opset=opset))
    assert mp.opset_import[0].version == opset
    assert mp.ir_version == onnx.helper.find_min_ir_version_for([onnx.helper.make_opsetid("", opset)])
    assert mp.ir_version <= 10  # onnxruntime 1.30/1.31 refuse IR 12+
    if case == "mha":  # LayerNormalization: the op from opset 17, decomposed below
        assert ("LayerNormalization" in info["op_types"]) == (opset >= 17)
    sess = ort.InferenceSession(mp.SerializeToString(), providers=["CPUExecutionProvider"])
    assert compare(model, sess, info, make_feeds(info, 3, T_EXPORT, padding="pre")) <= TOL


def test_bad_opset_is_refused():
    """A bad option value (exit 2), refused when the options are made, before any conversion."""
    from rnnedge.errors import UsageError

    with pytest.raises(UsageError, match="opset 9 is not supported; choose 14..21") as e:
        convert_model(built("gru-rs0-gb0")[0], ExportOptions(opset=9))
    assert e.value.exit_code == 2


# --------------------------------------------------------------------------- errors
def test_unsupported_layer_names_it():
    """A layer with no native converter, the tf2onnx fallback turned off: refused, named."""
    x = seq_in()
    y = layers.LSTM(3, return_sequences=True)(x)
    y = layers.Conv1DTranspose(3, 2, name="my_upsampler")(y)
    model = _m(x, y, "bad")
    with pytest.raises(ConversionError) as ei:
        convert_model(model, ExportOptions(extra={"onnx_fallback": False}))
    assert "my_upsampler" in str(ei.value) and "Conv1DTranspose" in str(ei.value)
    assert ei.value.layer == "my_upsampler" and ei.value.fmt == "onnx"


def test_unsupported_activation_is_clear():
    x = seq_in()
    model = _m(x, layers.LSTM(3, activation="selu", name="odd_lstm")(x), "bad_act")
    with pytest.raises(ConversionError, match=r"odd_lstm.*selu"):
        convert_model(model)


# --------------------------------------------------------------------------- formats
def test_onnx_format_writes_model_and_entry(tmp_path):
    model = built("seq2seq")[0]
    entries = get_exporter("onnx")(model, tmp_path, ExportOptions())
    e = entries["model.onnx"]
    assert (tmp_path / "model.onnx").is_file()
    assert e["format"] == "onnx" and e["opset"] == 17 and e["ir_version"] == 8
    assert e["self_check"]["ok"] and e["self_check"]["max_abs_error"] <= TOL
    assert e["op_types"]["LSTM"] == 2
    assert {"onnx", "onnxruntime", "keras"} <= set(e["versions"])
    json.dumps(e)  # manifest-ready
    sess = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["encoder_tokens", "decoder_tokens"]


def test_stateful_layer_is_noted(tmp_path):
    x = keras.Input(batch_shape=(2, None, F), name="x")
    model = _m(x, layers.GRU(3, stateful=True, name="sgru")(x), "stateful")
    e = get_exporter("onnx")(model, tmp_path, ExportOptions())["model.onnx"]
    assert any("sgru" in n and "stateless" in n for n in e["notes"])
    assert e["self_check"]["ok"]


def test_ort_format_loads_and_matches(tmp_path):
    model, _, info, _ = built("bidir-masked-concat-rs1")
    entries = get_exporter("ort")(model, tmp_path, ExportOptions())
    assert (tmp_path / "model.ort").is_file() and (tmp_path / "required_operators.config").is_file()
    assert entries["model.ort"]["self_check"]["ok"]
    assert any("LSTM" in line for line in entries["required_operators.config"]["operators"])
    sess = ort.InferenceSession(str(tmp_path / "model.ort"), providers=["CPUExecutionProvider"])
    for padding in ("post", "pre", "hole"):
        assert compare(model, sess, info, make_feeds(info, 3, 8, padding=padding)) <= TOL


def test_fixed_length_float_input_keeps_its_length(tmp_path):
    """A Keras input with a fixed time length (shape (12, 1)) exports with that length and
    passes its self-check (it used to be fed a free length Keras refuses)."""
    x = keras.Input((12, 1), name="series")
    m = keras.Model(x, layers.Dense(1)(layers.GRU(3, name="gru")(x)), name="fixed_len")
    entries = get_exporter("onnx")(m, tmp_path, ExportOptions())
    e = entries["model.onnx"]
    assert e["inputs"][0]["shape"] == ["batch", 12, 1]
    assert e["op_types"].get("GRU") == 1 and "Loop" not in e["op_types"]
    assert e["self_check"]["max_abs_error"] <= 1e-5
