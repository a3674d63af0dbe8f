"""TFLite export: builtin ops only, runs in ai-edge-litert, matches Keras (issue 4)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

keras = pytest.importorskip("keras")
pytest.importorskip("tensorflow")
litert = pytest.importorskip("ai_edge_litert.interpreter")

from converters.registry import ExportOptions, get_exporter  # noqa: E402
from rnnedge.errors import ConversionError  # noqa: E402
from rnnedge.tflite_compat import check_compat, list_ops  # noqa: E402

L = keras.layers
F = 3      # features
U = 4      # units
V = 12     # vocabulary


def _seq(*layers, dtype="float32", shape=(None, F)):
    return keras.Sequential([keras.Input(shape, dtype=dtype)] + list(layers))


def _seq2seq():
    a = keras.Input((None,), dtype="int32", name="enc_tokens")
    b = keras.Input((None,), dtype="int32", name="dec_tokens")
    _, h, c = L.LSTM(U, return_state=True)(L.Embedding(V, 3, mask_zero=True)(a))
    y = L.LSTM(U, return_sequences=True)(L.Embedding(V, 3, mask_zero=True)(b), initial_state=[h, c])
    return keras.Model([a, b], L.TimeDistributed(L.Dense(V, activation="softmax"))(y))


def _return_state():
    a = keras.Input((None, F), name="x")
    y, h, c = L.LSTM(U, return_state=True)(a)
    return keras.Model(a, [L.Dense(2)(y), h, c])


def _attention():
    a = keras.Input((None, F), name="x")
    s = L.LSTM(U, return_sequences=True)(a)
    att = L.Attention()([s, s])
    return keras.Model(a, L.Dense(2)(L.GlobalAveragePooling1D()(att)))


def _bidi(mode):
    return lambda: _seq(L.Bidirectional(L.LSTM(U, return_sequences=True), merge_mode=mode),
                        L.GlobalAveragePooling1D())


def _bidi_none():
    a = keras.Input((None, F), name="x")
    f, b = L.Bidirectional(L.GRU(U), merge_mode=None)(a)
    return keras.Model(a, [f, b])


CONFIGS = {
    "lstm": lambda: _seq(L.LSTM(U), L.Dense(2)),
    "gru": lambda: _seq(L.GRU(U), L.Dense(2)),
    "simplernn": lambda: _seq(L.SimpleRNN(U), L.Dense(2)),
    "stacked": lambda: _seq(L.LSTM(U, return_sequences=True), L.GRU(U, return_sequences=True), L.LSTM(U)),
    "bidi_concat": _bidi("concat"),
    "bidi_sum": _bidi("sum"),
    "bidi_mul": _bidi("mul"),
    "bidi_ave": _bidi("ave"),
    "bidi_none": _bidi_none,
    "embedding_mask_zero": lambda: _seq(L.Embedding(V, 3, mask_zero=True), L.Bidirectional(L.LSTM(U)),
                                        L.Dense(1, activation="sigmoid"), dtype="int32", shape=(None,)),
    "masking": lambda: _seq(L.Masking(0.0), L.GRU(U), L.Dense(2)),
    "seq2seq_initial_state": _seq2seq,
    "go_backwards": lambda: _seq(L.LSTM(U, go_backwards=True, return_sequences=True), L.GRU(U, go_backwards=True)),
    "return_state": _return_state,
    "time_distributed": lambda: _seq(L.LSTM(U, return_sequences=True), L.TimeDistributed(L.Dense(2))),
    "attention": _attention,
    "pooling": lambda: _seq(L.LSTM(U, return_sequences=True), L.GlobalMaxPooling1D(), L.Dense(2)),
}


def _inputs(model, T, rng, pad=2):
    """Real-looking inputs: token ids in [1, V) with trailing 0 padding; floats with a zero tail."""
    xs = []
    for t in model.inputs:
        if "int" in str(t.dtype):
            x = rng.integers(1, V, size=(1, T)).astype("int32")
            x[:, T - pad:] = 0
        else:
            x = rng.uniform(-1, 1, size=(1, T, F)).astype("float32")
            x[:, T - pad:] = 0.0  # Masking(0.0) pads with zeros; others just see zeros
        xs.append(x)
    return xs


def _run_litert(path, entry, xs_by_keras_name):
    it = litert.Interpreter(model_path=str(path), num_threads=1)
    ins = it.get_input_details()
    assert [i["name"] for i in entry["inputs"]] == [d["name"] for d in ins]
    for d, e in zip(ins, entry["inputs"]):
        x = xs_by_keras_name[e["keras_name"]]
        it.resize_tensor_input(d["index"], list(x.shape), strict=False)
    it.allocate_tensors()
    for d, e in zip(ins, entry["inputs"]):
        it.set_tensor(d["index"], xs_by_keras_name[e["keras_name"]])
    it.invoke()
    outs = {e["keras_index"]: it.get_tensor(d["index"]) for d, e in zip(it.get_output_details(), entry["outputs"])}
    return [outs[k] for k in sorted(outs)]


def _max_err(model, path, entry, T, rng):
    xs = _inputs(model, T, rng)
    # eager call, not predict(): Keras's traced predict maps TimeDistributed over the batch axis
    # when the time axis is free (wrong from step 1 on; see convert._time_distributed_over_time)
    ref = model(xs if len(xs) > 1 else xs[0], training=False)
    ref = [np.asarray(r) for r in (ref if isinstance(ref, (list, tuple)) else [ref])]
    got = _run_litert(path, entry, {t.name: x for t, x in zip(model.inputs, xs)})
    assert len(got) == len(ref) == len(model.outputs)
    return max(float(np.max(np.abs(g - r))) for g, r in zip(got, ref))


def _assert_builtin_only(entry, path):
    ops = list_ops(path)
    assert ops, "no operators parsed"
    assert not any(o["custom"] for o in ops), ops
    assert not any(o["name"].startswith("Flex") for o in ops), ops
    assert entry["flex"] is False and entry["custom_ops"] == []
    assert entry["ops"] == [{"name": o["name"], "version": o["version"]} for o in ops]


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_config_converts_builtin_only_and_matches_keras(name, tmp_path):
    keras.utils.set_random_seed(0)
    model = CONFIGS[name]()
    entries = get_exporter("tflite")(model, tmp_path, ExportOptions())
    entry = entries["model.tflite"]
    path = tmp_path / "model.tflite"
    assert path.is_file()
    _assert_builtin_only(entry, path)
    assert entry["batch_size"] == 1
    assert entry["compat"]["litert"] is True
    assert entry["compat"]["tflite_runtime_2_14"] is True, entry["compat"]["reasons"]
    assert entry["self_check"]["max_abs_error"] <= 1e-5
    rng = np.random.default_rng(3)
    if entry["seq_len"] is None:  # dynamic: two different lengths through one interpreter file
        for T in (5, 8):
            assert _max_err(model, path, entry, T, rng) <= 1e-5
        assert all(i["shape"][1] is None for i in entry["inputs"])
    else:
        assert "fixed" in " ".join(entry["notes"])  # a fixed length is always explained
        assert _max_err(model, path, entry, entry["seq_len"], rng) <= 1e-5


def test_lstm_modes_ops(tmp_path):
    keras.utils.set_random_seed(0)
    model = _seq(L.LSTM(U, return_sequences=True), L.LSTM(U, go_backwards=True), L.Dense(2))
    exp = get_exporter("tflite")
    rng = np.random.default_rng(0)
    seen = {}
    for mode, seq_len in (("fused", None), ("while", None), ("unroll", 6)):
        d = tmp_path / mode
        e = exp(model, d, ExportOptions(seq_len=seq_len, extra={"tflite_lstm": mode}))["model.tflite"]
        names = {o["name"] for o in e["ops"]}
        seen[mode] = names
        assert e["lstm_mode"] == mode
        _assert_builtin_only(e, d / "model.tflite")
        assert _max_err(model, d / "model.tflite", e, seq_len or 7, rng) <= 1e-5
    assert "UNIDIRECTIONAL_SEQUENCE_LSTM" in seen["fused"] and "WHILE" not in seen["fused"]
    assert "WHILE" in seen["while"] and "UNIDIRECTIONAL_SEQUENCE_LSTM" not in seen["while"]
    assert "WHILE" not in seen["unroll"] and "UNIDIRECTIONAL_SEQUENCE_LSTM" not in seen["unroll"]


def test_fused_refused_when_no_lstm_can_fuse(tmp_path):
    model = _seq(L.Masking(0.0), L.LSTM(U))  # masked LSTM: the fused op has no mask input
    with pytest.raises(ConversionError, match="fused"):
        get_exporter("tflite")(model, tmp_path, ExportOptions(extra={"tflite_lstm": "fused"}))


@pytest.fixture(scope="module")
def quantized(tmp_path_factory):
    keras.utils.set_random_seed(0)
    # big enough for dynamic-range quantization (TF skips weights under 1024 elements)
    model = _seq(L.GRU(8, return_sequences=True), L.LSTM(32), L.Dense(40))
    out = tmp_path_factory.mktemp("q")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        entries = get_exporter("tflite")(model, out, ExportOptions(quantize=["dynamic", "fp16", "int8"]))
    return model, out, entries, w


@pytest.mark.parametrize("mode", ["dynamic", "fp16", "int8"])
def test_quantized_variants_run_and_error_reported(quantized, mode):
    model, out, entries, _ = quantized
    name = f"model.{mode}.tflite"
    entry = entries[name]
    assert (out / name).is_file()
    _assert_builtin_only(entry, out / name)
    err = entry["self_check"]["max_abs_error"]
    assert np.isfinite(err) and err < 0.1, err
    T = entry["seq_len"] or 7
    measured = _max_err(model, out / name, entry, T, np.random.default_rng(5))
    assert np.isfinite(measured) and measured < 0.1
    assert (out / name).stat().st_size > 0
    if mode == "int8":
        assert entry["inputs"][0]["dtype"] == "float32"  # float I/O
        ops = {o["name"] for o in entry["ops"]}  # full integer, or weight-only int8 when a WHILE loop stays
        assert "QUANTIZE" in ops if "WHILE" not in ops else "DEQUANTIZE" in ops


def test_dynamic_range_flagged_for_tflite_runtime_214(quantized):
    _, out, entries, w = quantized
    dyn = entries["model.dynamic.tflite"]
    assert dyn["compat"]["tflite_runtime_2_14"] is False
    assert any("FULLY_CONNECTED" in r for r in dyn["compat"]["reasons"])
    assert "tflite-runtime 2.14" in dyn["warning"]
    assert any("model.dynamic.tflite" in str(x.message) for x in w)
    assert entries["model.tflite"]["compat"]["tflite_runtime_2_14"] is True
    assert entries["model.fp16.tflite"]["compat"]["tflite_runtime_2_14"] is True
    assert check_compat(out / "model.dynamic.tflite")["tflite_runtime_2_14"] is False


def _flex_model():
    import tensorflow as tf

    a = keras.Input((None, F))
    y = L.LSTM(U, return_sequences=True)(a)
    y = L.Lambda(lambda t: tf.math.cumprod(t, axis=1), name="cumprod_layer")(y)
    return keras.Model(a, L.Dense(2)(y))


def test_flex_needed_fails_clearly_unless_allowed(tmp_path):
    model = _flex_model()
    with pytest.raises(ConversionError) as ei:
        get_exporter("tflite")(model, tmp_path / "a", ExportOptions())
    msg = str(ei.value)
    assert "Cumprod" in msg and "cumprod_layer" in msg and "allow_flex" in msg
    assert ei.value.layer == "cumprod_layer"
    assert not (tmp_path / "a" / "model.tflite").exists()
    e = get_exporter("tflite")(model, tmp_path / "b", ExportOptions(allow_flex=True))["model.tflite"]
    assert e["flex"] is True and "FlexCumprod" in e["custom_ops"]
    assert e["compat"]["tflite_runtime_2_14"] is False


def test_fused_lstm_does_not_clip_the_cell_state(tmp_path):
    """TFLite's LSTM fusion writes cell_clip=10; Keras never clips. An LSTM whose cell counts up
    to 15 and back down to 0 must end at h=0 as in Keras (clipped at 10 it ends near -1)."""
    from rnnedge.runtime import open_runner

    x = keras.Input((None, 1), name="x")
    lstm = keras.layers.LSTM(2, return_sequences=True)
    m = keras.Model(x, lstm(x))
    k, rk, b = lstm.get_weights()
    k[:] = 0
    rk[:] = 0
    b[:] = 20                      # input, forget and output gates at 1
    k[0, 4:6], b[4:6] = 20, 0      # candidate tanh(20 x) = +-1: the cell counts with x
    lstm.set_weights([k, rk, b])
    xx = np.concatenate([np.ones((1, 15, 1)), -np.ones((1, 15, 1))], 1).astype(np.float32)
    entries = get_exporter("tflite")(m, tmp_path, ExportOptions(seq_len=30))
    assert "UNIDIRECTIONAL_SEQUENCE_LSTM" in {o["name"] for o in list_ops((tmp_path / "model.tflite").read_bytes())}
    with open_runner(tmp_path / "model.tflite") as r:
        y = next(iter(r.run({r.inputs[0].name: xx}).values()))
    ref = np.asarray(m(xx))
    assert abs(ref[0, 14, 0] - 1) < 1e-6 and abs(ref[0, -1, 0]) < 1e-6
    assert np.abs(y - ref).max() <= 1e-5, (y[0, -1], ref[0, -1])
    assert entries["model.tflite"]
