"""TF.js export: model.json in the layers format TF.js 4.22 loads, checked in real TF.js (Node).

All exported models run in ONE Node process (``run_many``) and are compared with Keras
(max abs error <= 1e-4). Needs node + ``npm ci --prefix rnnedge/runtime/node`` (.ci/setup_node.sh);
without them the Node tests skip and the format/refusal tests still run.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")
from keras import layers  # noqa: E402

from conftest import NO_TFJS_NODE, tfjs_node_ok  # noqa: E402
from converters.registry import ExportOptions, get_exporter  # noqa: E402
from rnnedge.errors import ConversionError, MissingDependencyError  # noqa: E402
from rnnedge.runtime import open_runner  # noqa: E402
from rnnedge.runtime.tfjs import TFJSRunner, check_node_runner, run_many  # noqa: E402

TOL = 1e-4
T = 6


needs_node = pytest.mark.skipif(not tfjs_node_ok(), reason=NO_TFJS_NODE)


def _seq(*ls, shape=(T, 3), dtype="float32"):
    return keras.Sequential([keras.Input(shape, dtype=dtype)] + list(ls))


def _tokens(masked=True, pad="post", vocab=20, batch=3, t=T, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.integers(1, vocab, size=(batch, t)).astype(np.int32)
    if masked:
        for b, n in enumerate([t, t - 2, 2][:batch]):
            if pad == "post":
                x[b, n:] = 0
            else:
                x[b, : t - n] = 0
    return x


def _floats(shape, seed=2, zero_tail=False):
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    if zero_tail:  # for Masking(0.0): last two steps of row 1 are padding
        x[1, -2:, :] = 0.0
    return x


def _seq2seq(enc_mask=True, dec_mask=False):
    ei = keras.Input((5,), dtype="int32", name="enc_tokens")
    di = keras.Input((4,), dtype="int32", name="dec_tokens")
    e = layers.Embedding(15, 4, mask_zero=enc_mask)(ei)
    _, h, c = layers.LSTM(5, return_state=True, name="encoder")(e)
    d = layers.Embedding(15, 4, mask_zero=dec_mask)(di)
    o = layers.LSTM(5, return_sequences=True, name="decoder")(d, initial_state=[h, c])
    o = layers.TimeDistributed(layers.Dense(15, activation="softmax"))(o)
    return keras.Model([ei, di], o, name="seq2seq")


def _multi_io():
    a = keras.Input((T, 3), name="a")
    b = keras.Input((T, 2), name="b")
    x = layers.Concatenate()([layers.LSTM(3)(a), layers.GRU(3, reset_after=False)(b)])
    y = layers.Add()([layers.Dense(6)(x), x])
    r = layers.SimpleRNN(2, return_sequences=True)(layers.RepeatVector(4)(y))
    return keras.Model([a, b], [layers.Dense(1, name="score")(y),
                                layers.Activation("tanh", name="seq")(r)], name="multi_io")


def _stale_mask():
    # mask consumed by the first LSTM, none in Keras for the second: TF.js's executor would
    # hand the first mask to the second LSTM without RnnedgeRNNGuard
    i = keras.Input((T,), dtype="int32")
    x = layers.Embedding(20, 4, mask_zero=True)(i)
    x = layers.RepeatVector(T)(layers.LSTM(3)(x))
    return keras.Model(i, layers.LSTM(3, return_sequences=True)(x), name="stale_mask")


def _bidi(merge_mode, cell=layers.LSTM, return_sequences=True, **kw):
    return _seq(layers.Bidirectional(cell(3, return_sequences=return_sequences, **kw),
                                     merge_mode=merge_mode))


def _bidi_none():
    i = keras.Input((T, 3))
    return keras.Model(i, layers.Bidirectional(layers.LSTM(3), merge_mode=None)(i))


def _bidi_state():
    i = keras.Input((T, 3))
    return keras.Model(i, layers.Bidirectional(layers.GRU(3, return_state=True))(i))


# name -> (model factory, feeds factory); feeds are keyed by input position
CASES = {
    "lstm": (lambda: _seq(layers.LSTM(4)), lambda: [_floats((2, T, 3))]),
    "gru_reset_after_false": (lambda: _seq(layers.GRU(4, reset_after=False, return_sequences=True)),
                              lambda: [_floats((2, T, 3))]),
    "gru_reset_after_true": (lambda: _seq(layers.GRU(4, return_sequences=True)),
                             lambda: [_floats((2, T, 3))]),
    "simple_rnn": (lambda: _seq(layers.SimpleRNN(4, activation="relu")), lambda: [_floats((2, T, 3))]),
    "stacked_lstm_gru": (lambda: _seq(layers.LSTM(4, return_sequences=True), layers.GRU(3),
                                      layers.Dense(2, activation="softmax")),
                         lambda: [_floats((2, T, 3))]),
    "go_backwards": (lambda: _seq(layers.LSTM(3, return_sequences=True, go_backwards=True),
                                  layers.SimpleRNN(3, go_backwards=True)),
                     lambda: [_floats((2, T, 3))]),
    "bidi_concat": (lambda: _bidi("concat"), lambda: [_floats((2, T, 3))]),
    "bidi_sum_gru": (lambda: _bidi("sum", layers.GRU), lambda: [_floats((2, T, 3))]),
    "bidi_ave_simplernn": (lambda: _bidi("ave", layers.SimpleRNN), lambda: [_floats((2, T, 3))]),
    "bidi_mul": (lambda: _bidi("mul", return_sequences=False), lambda: [_floats((2, T, 3))]),
    "bidi_none": (_bidi_none, lambda: [_floats((2, T, 3))]),
    "bidi_return_state_gru": (_bidi_state, lambda: [_floats((2, T, 3))]),
    "masked_bilstm_maxpool": (
        lambda: _seq(layers.Embedding(20, 4, mask_zero=True),
                     layers.Bidirectional(layers.LSTM(3, return_sequences=True)),
                     layers.GlobalMaxPooling1D(), layers.Dense(1, activation="sigmoid"),
                     shape=(T,), dtype="int32"),
        lambda: [_tokens(pad="post")]),
    "masked_bilstm_maxpool_prepadded": (
        lambda: _seq(layers.Embedding(20, 4, mask_zero=True),
                     layers.Bidirectional(layers.LSTM(3, return_sequences=True)),
                     layers.GlobalMaxPooling1D(), layers.Dense(1, activation="sigmoid"),
                     shape=(T,), dtype="int32"),
        lambda: [_tokens(pad="pre")]),
    "masked_bigru_sequences_zeroed": (  # Keras writes zeros at masked steps (Bidirectional)
        lambda: _seq(layers.Embedding(20, 4, mask_zero=True),
                     layers.Bidirectional(layers.GRU(3, return_sequences=True)),
                     shape=(T,), dtype="int32"),
        lambda: [_tokens(pad="post")]),
    "masked_gru_reset_after_avgpool": (
        lambda: _seq(layers.Embedding(20, 4, mask_zero=True),
                     layers.Bidirectional(layers.GRU(3, return_sequences=True), merge_mode="sum"),
                     layers.GlobalAveragePooling1D(), shape=(T,), dtype="int32"),
        lambda: [_tokens(pad="post")]),
    "textgen_masked_td": (
        lambda: _seq(layers.Embedding(20, 4, mask_zero=True), layers.LSTM(4, return_sequences=True),
                     layers.LSTM(4, return_sequences=True),
                     layers.TimeDistributed(layers.Dense(20, activation="softmax")),
                     shape=(T,), dtype="int32"),
        lambda: [_tokens(pad="post")]),
    "masking_layer": (lambda: _seq(layers.Masking(0.0), layers.GRU(3, reset_after=False,
                                                                    return_sequences=True),
                                   layers.SimpleRNN(2)),
                      lambda: [_floats((2, T, 3), zero_tail=True)]),
    "conv1d_pooling": (lambda: _seq(layers.Conv1D(4, 3, padding="same", activation="relu"),
                                    layers.LSTM(3, return_sequences=True), layers.Dropout(0.3),
                                    layers.GlobalAveragePooling1D(), layers.Dense(2)),
                       lambda: [_floats((2, T, 3))]),
    "seq2seq_initial_state": (_seq2seq, lambda: [_tokens(vocab=15, t=5, batch=2),
                                                 _tokens(masked=False, vocab=15, t=4, batch=2)]),
    "seq2seq_both_masked": (lambda: _seq2seq(True, True),
                            lambda: [_tokens(vocab=15, t=5, batch=2), _tokens(vocab=15, t=4, batch=2)]),
    "multi_input_output": (_multi_io, lambda: [_floats((2, T, 3)), _floats((2, T, 2), seed=3)]),
    "stale_mask_guard": (_stale_mask, lambda: [_tokens(pad="post")]),
    "big_embedding_two_shards": (lambda: _seq(layers.Embedding(4200, 256), layers.LSTM(2),
                                              shape=(T,), dtype="int32"),
                                 lambda: [_tokens(masked=False, vocab=4200)]),
}

QUANT_CASES = {"fp16": 1e-3, "uint8": 5e-2}  # variant folder suffix -> max abs error allowed


def _feeds(model, arrays):
    return {t._keras_history.operation.name: a for t, a in zip(model.inputs, arrays)}


def _keras(model, arrays):
    ys = model(arrays if len(arrays) > 1 else arrays[0], training=False)
    return [np.asarray(y) for y in (ys if isinstance(ys, (list, tuple)) else [ys])]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Every case exported once (self-check off: one Node process runs them all below)."""
    keras.utils.set_random_seed(0)
    export = get_exporter("tfjs")
    root = tmp_path_factory.mktemp("tfjs")
    out = {}
    for name, (make_model, make_feeds) in CASES.items():
        model = make_model()
        arrays = make_feeds()
        entry = export(model, root / name, ExportOptions(extra={"tfjs_self_check": False}))["tfjs"]
        out[name] = dict(model=model, arrays=arrays, dir=root / name / "tfjs", entry=entry,
                         ref=_keras(model, arrays))
    # quantized variants: written beside the float32 folder (tfjs.fp16/, tfjs.uint8/)
    base = out["stacked_lstm_gru"]
    entries = export(base["model"], root / "quant", ExportOptions(
        quantize=["fp16", "uint8", "int8-static"], extra={"tfjs_self_check": False}))
    assert sorted(entries) == ["tfjs", "tfjs.fp16", "tfjs.uint8"]
    assert entries["tfjs"]["quantize_not_applicable"] == ["int8-static"]
    for q in QUANT_CASES:
        out[f"q_{q}"] = dict(base, dir=root / "quant" / f"tfjs.{q}", entry=entries[f"tfjs.{q}"])
    return out


@pytest.fixture(scope="module")
def tfjs_results(exported):
    if not tfjs_node_ok():
        pytest.skip(NO_TFJS_NODE)
    names = list(exported)
    res = run_many([(str(exported[n]["dir"]), _feeds(exported[n]["model"], exported[n]["arrays"]))
                    for n in names])
    return dict(zip(names, res))


def _max_err(case, result):
    assert "error" not in result, result.get("error")
    got = [result["outputs"][n] for n in result["output_order"]]
    assert len(got) == len(case["ref"])
    errs = []
    for g, r in zip(got, case["ref"]):
        assert g.shape == r.shape
        errs.append(float(np.max(np.abs(g.astype(np.float64) - r))))
    return max(errs)


@needs_node
@pytest.mark.node
@pytest.mark.parametrize("name", list(CASES))
def test_tfjs_matches_keras(name, exported, tfjs_results):
    err = _max_err(exported[name], tfjs_results[name])
    print(f"{name}: max abs err {err:.2e}")
    assert err <= TOL, f"{name}: TF.js differs from Keras by {err:.3e}"


@needs_node
@pytest.mark.node
@pytest.mark.parametrize("quant", list(QUANT_CASES))
def test_quantized_weights(quant, exported, tfjs_results):
    case, base = exported[f"q_{quant}"], exported["stacked_lstm_gru"]
    specs = json.loads((case["dir"] / "model.json").read_text())["weightsManifest"][0]["weights"]
    dtype = {"fp16": "float16", "uint8": "uint8"}[quant]
    assert all(s["quantization"]["dtype"] == dtype for s in specs)
    assert case["entry"]["weight_dtype"] == dtype and case["entry"]["precision"] == quant
    ratio = case["entry"]["weights_bytes"] / base["entry"]["weights_bytes"]
    assert ratio == pytest.approx(0.5 if quant == "fp16" else 0.25, abs=0.01)
    err = _max_err(case, tfjs_results[f"q_{quant}"])
    print(f"{quant}: max abs err {err:.2e}")
    assert err <= QUANT_CASES[quant]


def test_custom_layers_are_used_where_needed(exported):
    layers_of = {n: c["entry"]["layers"] for n, c in exported.items()}
    assert "RnnedgeGRUResetAfter" in layers_of["gru_reset_after_true"]
    assert "GRU" in layers_of["gru_reset_after_false"]
    assert exported["lstm"]["entry"]["custom_layers"] == []  # plain models stay plain TF.js
    assert "RnnedgeZeroMaskedSteps" in layers_of["masked_bilstm_maxpool"]
    assert "RnnedgeZeroMaskedSteps" in layers_of["masked_bigru_sequences_zeroed"]
    assert "RnnedgeZeroMaskedSteps" not in layers_of["textgen_masked_td"]  # LSTM keeps last output
    assert "RnnedgeMaskedGlobalAveragePooling1D" in layers_of["masked_gru_reset_after_avgpool"]
    assert "GlobalAveragePooling1D" in layers_of["conv1d_pooling"]  # no mask: the stock layer
    assert layers_of["stale_mask_guard"].count("RnnedgeRNNGuard") == 2
    bidi = json.loads((exported["masked_gru_reset_after_avgpool"]["dir"] / "model.json").read_text())
    inner = [l for l in bidi["modelTopology"]["config"]["layers"] if l["class_name"] == "Bidirectional"]
    assert inner[0]["config"]["layer"]["class_name"] == "RnnedgeGRUResetAfter"


def test_model_json_is_keras2_layers_format(exported):
    case = exported["seq2seq_initial_state"]
    mj = json.loads((case["dir"] / "model.json").read_text())
    assert mj["format"] == "layers-model"
    topo = mj["modelTopology"]
    assert topo["class_name"] == "Functional"
    cfg = topo["config"]
    by_name = {l["name"]: l for l in cfg["layers"]}
    inp = by_name["enc_tokens"]["config"]
    assert inp["batch_input_shape"] == [None, 5] and "batch_shape" not in inp
    assert inp["dtype"] == "int32"
    # Keras 2 inbound node form; the decoder gets [x, h, c] as TF.js's RNN expects
    dec = by_name["decoder"]["inbound_nodes"]
    assert dec == [[["decoder_guard", 0, 0, {}], ["encoder", 0, 1, {}], ["encoder", 0, 2, {}]]]
    assert by_name["decoder_guard"]["inbound_nodes"][0][0][0].startswith("embedding")
    assert not any(l["class_name"] == "NotEqual" for l in cfg["layers"])  # mask ops dropped
    assert all(isinstance(l["config"]["dtype"], str) for l in cfg["layers"])
    assert cfg["input_layers"] == [["enc_tokens", 0, 0], ["dec_tokens", 0, 0]]
    names = [w["name"] for w in mj["weightsManifest"][0]["weights"]]
    td = [l["name"] for l in cfg["layers"] if l["class_name"] == "TimeDistributed"][0]
    assert "encoder/kernel" in names and f"{td}/kernel" in names and f"{td}/bias" in names
    # weights: little-endian float32, in manifest order
    data = b"".join((case["dir"] / p).read_bytes() for p in mj["weightsManifest"][0]["paths"])
    assert len(data) == sum(4 * int(np.prod(w["shape"])) for w in mj["weightsManifest"][0]["weights"])
    off = sum(4 * int(np.prod(w["shape"])) for w in mj["weightsManifest"][0]["weights"][
        : names.index("encoder/kernel")])
    enc_kernel = case["model"].get_layer("encoder").weights[0].numpy()
    got = np.frombuffer(data[off: off + enc_kernel.nbytes], "<f4").reshape(enc_kernel.shape)
    np.testing.assert_array_equal(got, enc_kernel)


def test_shards_are_4mb(exported):
    case = exported["big_embedding_two_shards"]
    mj = json.loads((case["dir"] / "model.json").read_text())
    paths = mj["weightsManifest"][0]["paths"]
    assert paths == ["group1-shard1of2.bin", "group1-shard2of2.bin"]
    assert (case["dir"] / paths[0]).stat().st_size == 4 * 1024 * 1024
    assert case["entry"]["shards"] == 2


def test_manifest_entry_and_demo_files(exported):
    case = exported["multi_input_output"]
    e = case["entry"]
    assert e["format"] == "tfjs" and e["kind"] == "directory"
    assert [i["name"] for i in e["inputs"]] == ["a", "b"]
    assert [o["name"] for o in e["outputs"]] == ["score", "seq"]
    assert e["inputs"][0] == {"name": "a", "shape": [None, T, 3], "dtype": "float32"}
    assert e["weight_dtype"] == "float32" and e["self_check"].startswith("skipped")
    for f in ("model.json", "index.html", "sample.json", "rnnedge_layers.js"):
        assert (case["dir"] / f).is_file(), f
    sample = json.loads((case["dir"] / "sample.json").read_text())
    assert set(sample["inputs"]) == {"a", "b"} and set(sample["outputs"]) == {"score", "seq"}


@needs_node
@pytest.mark.node
def test_export_self_check_and_runner(tmp_path, monkeypatch):
    keras.utils.set_random_seed(0)
    model = _seq(layers.Embedding(20, 4, mask_zero=True), layers.GRU(3), shape=(T,), dtype="int32")
    entry = get_exporter("tfjs")(model, tmp_path, ExportOptions())["tfjs"]
    sc = entry["self_check"]
    assert sc["ok"] is True and sc["max_abs_error"] <= TOL, sc
    assert "tfjs 4.22" in sc["runtime"]
    r = open_runner(tmp_path)  # a folder with tfjs/model.json
    assert isinstance(r, TFJSRunner)
    x = _tokens(pad="post")
    with r:
        assert [i.name for i in r.inputs] == [model.inputs[0]._keras_history.operation.name]
        outs = r.run({r.inputs[0].name: x})
    ref = np.asarray(model(x))
    assert list(outs) == [r.outputs[0].name]
    assert np.max(np.abs(outs[r.outputs[0].name] - ref)) <= TOL
    # a path relative to the caller's folder (Node runs in its own folder): same outputs
    monkeypatch.chdir(tmp_path.parent)
    with open_runner(Path(tmp_path.name) / "tfjs") as rel:
        assert np.array_equal(rel.run({rel.inputs[0].name: x})[rel.outputs[0].name], outs[r.outputs[0].name])


def test_missing_node_runner_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("RNNEDGE_TFJS_NODE_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(MissingDependencyError) as ei:
        check_node_runner()
    assert "npm ci --prefix" in str(ei.value) or "nodejs" in str(ei.value)
    # export still works and says why the self-check was skipped (rnnedge_layers.js is
    # copied from the package, so point the runner dir back for that file only)
    monkeypatch.delenv("RNNEDGE_TFJS_NODE_DIR")
    import rnnedge.runtime.tfjs as rt

    monkeypatch.setattr(rt, "find_node", lambda: None)
    entry = get_exporter("tfjs")(_seq(layers.LSTM(2)), tmp_path / "x", ExportOptions())["tfjs"]
    assert entry["self_check"] == "skipped: node not found"


def _refused(model_or_layer_fn):
    with pytest.raises(ConversionError) as ei:
        get_exporter("tfjs")(model_or_layer_fn(), Path("/nonexistent-never-written"),
                             ExportOptions(extra={"tfjs_self_check": False}))
    return ei.value


def test_refuses_attention_naming_the_layer():
    def attention_model():
        q = keras.Input((T, 4))
        x = layers.LSTM(4, return_sequences=True)(q)
        return keras.Model(q, layers.Attention(name="att")([x, x]))

    err = _refused(attention_model)
    assert err.layer == "att" and "Attention" in str(err) and "TF.js" in str(err)


def test_refuses_multi_head_attention():
    def mha_model():
        q = keras.Input((T, 4))
        return keras.Model(q, layers.MultiHeadAttention(2, 2, name="mha")(q, q))

    err = _refused(mha_model)
    assert err.layer == "mha" and "MultiHeadAttention" in str(err)


@pytest.mark.parametrize("layer, what", [
    (lambda: layers.Conv1D(2, 3, padding="causal", name="cc"), "causal"),
    (lambda: layers.LSTM(2, recurrent_activation="hard_sigmoid", name="hs"), "hard_sigmoid"),
    (lambda: layers.Dense(2, activation="exponential", name="ex"), "exponential"),
])
def test_refuses_options_tfjs_cannot_reproduce(layer, what):
    err = _refused(lambda: _seq(layer()))
    assert what in str(err) and err.layer in ("cc", "hs", "ex")


def test_refuses_unknown_layer_naming_it():
    err = _refused(lambda: _seq(layers.LayerNormalization(name="ln")))
    assert err.layer == "ln" and "LayerNormalization" in str(err)


def test_bad_quantization_option_is_refused():
    with pytest.raises(ConversionError, match="float16 or uint8"):
        from converters.tfjs.writer import build

        build(_seq(layers.LSTM(2)), quantize="int4")


@needs_node
def test_inspect_of_an_export_folder_with_tfjs(tmp_path):
    """`rnnedge inspect DIR` after `export -f onnx,tfjs` (as the README shows): the layer table with
    the ONNX conversion path; the TF.js entry's list of layer classes is not a per-layer record."""
    from click.testing import CliRunner

    from rnnedge.cli import cli

    m = _seq(layers.GRU(4, return_sequences=True), layers.TimeDistributed(layers.Dense(2)))
    src = tmp_path / "m.keras"
    m.save(src)
    r = CliRunner().invoke(cli, ["export", str(src), "-f", "onnx,tfjs", "-o", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, ["inspect", str(tmp_path / "out"), "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.output)
    assert set(info["conversion"]) == {"model.onnx"}
    gru = next(row for row in info["layers"] if row["type"] == "GRU")
    assert gru["conversion"] == {"model.onnx": "native"}
