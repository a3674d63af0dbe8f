"""Streaming step models (converters.streaming + rnnedge.runtime.streaming): feeding a sequence one
step at a time through the ONNX / TFLite step model reproduces the full Keras model at every step;
state layout in the manifest; refusals (Bidirectional, go_backwards, sequence-level layers)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

keras = pytest.importorskip("keras")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
pytest.importorskip("ai_edge_litert")

from keras import layers  # noqa: E402

from converters.streaming import FILES, export_streaming  # noqa: E402
from rnnedge.errors import ConversionError, UsageError  # noqa: E402
from rnnedge.runtime.streaming import StreamingSession  # noqa: E402

TOL = 1e-5
T, F, V = 6, 3, 12


def _randomize(model, seed=0, scale=0.6):
    """Larger-than-default random weights, so gates leave their linear region (and hard_sigmoid clips)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        ws = layer.get_weights()
        if ws:
            layer.set_weights([rng.normal(0, scale, w.shape).astype(np.float32) for w in ws])
    return model


def _float_model(name, body):
    x = keras.Input((None, F), name="series")
    return _randomize(keras.Model(x, body(x), name=name))


def lstm2_dense():  # forecast-like: return_sequences=False top -> "prediction if the sequence ended now"
    return _float_model("lstm2_dense", lambda x: layers.Dense(2, name="head")(
        layers.LSTM(3, name="dec")(layers.LSTM(4, return_sequences=True, name="enc")(x))))


def gru_after(reset_after):
    return lambda: _float_model(f"gru_ra_{reset_after}", lambda x: layers.Dense(2, name="head")(
        layers.GRU(4, return_sequences=reset_after, reset_after=reset_after, name="gru")(x)))


def simple_rnn():
    return _float_model("simple_rnn", lambda x: layers.TimeDistributed(layers.Dense(2), name="td")(
        layers.Dropout(0.5)(layers.SimpleRNN(5, return_sequences=True, name="rnn")(x))))


def mixed_gru_lstm():
    return _float_model("mixed", lambda x: layers.Dense(1, name="head")(
        layers.LSTM(3, name="lstm")(layers.Dropout(0.3)(layers.GRU(4, return_sequences=True, name="gru")(x)))))


def hard_sigmoid():
    return _float_model("hard_sigmoid", lambda x: layers.Dense(1, name="head")(
        layers.GRU(3, recurrent_activation="hard_sigmoid", name="gru")(
            layers.LSTM(4, return_sequences=True, recurrent_activation="hard_sigmoid", name="lstm")(x))))


def textgen():  # Embedding -> LSTM -> TimeDistributed(Dense softmax)
    t = keras.Input((None,), dtype="int32", name="tokens")
    h = layers.Embedding(V, 4, mask_zero=True, name="emb")(t)
    h = layers.LSTM(5, return_sequences=True, name="lstm")(h)
    y = layers.TimeDistributed(layers.Dense(V, activation="softmax"), name="probs")(h)
    return _randomize(keras.Model(t, y, name="textgen"))


MODELS = {
    "lstm2_dense": lstm2_dense, "gru_reset_after": gru_after(True), "gru_reset_before": gru_after(False),
    "simple_rnn": simple_rnn, "mixed_gru_lstm": mixed_gru_lstm, "hard_sigmoid": hard_sigmoid,
    "textgen": textgen,
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """name -> (keras model, out_dir, entries): every model built and exported once."""
    keras.utils.set_random_seed(0)
    out = {}
    for name, make in MODELS.items():
        model = make()
        d = tmp_path_factory.mktemp(name)
        out[name] = (model, d, export_streaming(model, d))
    return out


def _sequence(model, batch, seed):
    rng = np.random.default_rng(seed)
    if model.inputs[0].dtype == "int32":
        return rng.integers(1, V, size=(batch, T)).astype(np.int32)  # never the padding id 0
    return rng.normal(0, 1.5, size=(batch, T, F)).astype(np.float32)


def _keras_per_step(model, x):
    """The full model's output at every step: its sequence output, or the model run on each prefix."""
    last_rnn = [l for l in model.layers if isinstance(l, keras.layers.RNN)][-1]
    if last_rnn.return_sequences:
        return np.asarray(model(x, training=False))
    return np.stack([np.asarray(model(x[:, :t + 1], training=False)) for t in range(x.shape[1])], axis=1)


@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
@pytest.mark.parametrize("name", list(MODELS))
def test_step_by_step_matches_keras_at_every_step(exported, name, fmt):
    model, d, _ = exported[name]
    batch = 2 if fmt == "onnx" else 1  # ONNX: dynamic batch; TFLite: batch 1
    x = _sequence(model, batch, seed=1)
    ref = _keras_per_step(model, x)
    assert ref.std() > 1e-2  # a real signal, not near-constant outputs
    with StreamingSession(d / FILES[fmt]) as s:
        got = np.stack([s.step(x[:, t]) for t in range(T)], axis=1)
        assert got.shape == ref.shape
        err = np.abs(got - ref).max()
        assert err <= TOL, f"{name}/{fmt}: max abs error {err:.3g}"
        assert s.steps == T
        # continuing from the carried state is NOT the same as starting over: the state matters
        cont = s.run(x)
        assert np.abs(cont - ref).max() > 1e-3
        # after reset the state is zero again: same outputs as the first time
        s.reset()
        assert all(np.all(v == 0) for v in s.state.values())
        again = s.run(x)
        assert np.abs(again - ref).max() <= TOL


def test_manifest_state_layout(exported):
    _, d, entries = exported["lstm2_dense"]
    man = json.loads((d / "manifest.json").read_text())
    for fmt, batch_dim in (("onnx", "batch"), ("tflite", 1)):
        e = man["artifacts"][FILES[fmt]]
        assert e == {**entries[FILES[fmt]], "sha256": e["sha256"], "size": e["size"]}
        assert e["streaming"] is True and e["output_mode"] == "last"
        assert e["step_inputs"] == ["series", "enc__h", "enc__c", "dec__h", "dec__c"]
        assert e["step_outputs"] == ["head", "enc__h_out", "enc__c_out", "dec__h_out", "dec__c_out"]
        assert [(s["name"], s["layer"], s["kind"], s["shape"]) for s in e["states"]] == [
            ("enc__h", "enc", "h", [batch_dim, 4]), ("enc__c", "enc", "c", [batch_dim, 4]),
            ("dec__h", "dec", "h", [batch_dim, 3]), ("dec__c", "dec", "c", [batch_dim, 3])]
        assert e["self_check"]["ok"] and e["self_check"]["max_abs_error"] <= 1e-5
    assert exported["textgen"][2][FILES["onnx"]]["output_mode"] == "sequence"
    assert exported["textgen"][2][FILES["onnx"]]["vocab_size"] == V
    assert any("padding id 0" in n for n in exported["textgen"][2][FILES["onnx"]]["notes"])


def test_onnx_step_graph_is_native_ops(exported):
    import onnx

    for name, want_lbr in (("gru_reset_after", 1), ("gru_reset_before", 0)):
        mp = onnx.load(str(exported[name][1] / FILES["onnx"]))
        assert (mp.ir_version, mp.opset_import[0].version) == (8, 17)
        gru = [n for n in mp.graph.node if n.op_type == "GRU"]
        assert len(gru) == 1
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in gru[0].attribute}
        assert attrs["linear_before_reset"] == want_lbr
    mp = onnx.load(str(exported["hard_sigmoid"][1] / FILES["onnx"]))
    ops = [n.op_type for n in mp.graph.node]
    assert ops.count("LSTM") == 1 and ops.count("GRU") == 1 and not {"Loop", "Scan"} & set(ops)
    lstm = next(n for n in mp.graph.node if n.op_type == "LSTM")
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in lstm.attribute}
    assert [a.decode() for a in attrs["activations"]] == ["HardSigmoid", "Tanh", "Tanh"]
    assert attrs["activation_alpha"][0] == pytest.approx(1 / 6)
    assert attrs["activation_beta"][0] == pytest.approx(0.5)
    x = mp.graph.input[0].type.tensor_type.shape.dim
    assert x[0].dim_param == "batch" and x[1].dim_value == F
    # SimpleRNN: two Gemm and its activation, no RNN op (its kernel is slow: converters/onnx/recurrent.py)
    ops = [n.op_type for n in onnx.load(str(exported["simple_rnn"][1] / FILES["onnx"])).graph.node]
    assert "RNN" not in ops and ops.count("Gemm") == 3 and ops.count("Tanh") == 1, ops


def test_tflite_step_is_builtin_ops_without_loops(exported):
    for name in ("mixed_gru_lstm", "textgen"):
        ops = exported[name][2][FILES["tflite"]]["op_names"]
        assert ops and "WHILE" not in ops and not any(o.startswith("Flex") or o == "CUSTOM" for o in ops)
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(exported["mixed_gru_lstm"][1] / FILES["tflite"]))
    sig = it.get_signature_list()["serving_default"]
    assert sorted(sig["inputs"]) == sorted(["series", "gru__h", "lstm__h", "lstm__c"])


def test_layout_from_input_names_without_manifest(exported, tmp_path):
    model, d, _ = exported["mixed_gru_lstm"]
    shutil.copy(d / FILES["onnx"], tmp_path / "step.onnx")
    x = _sequence(model, 3, seed=2)
    with StreamingSession(tmp_path / "step.onnx") as s:
        assert s.layout["source"] == "input names"
        assert s.state_names == ["gru__h", "lstm__h", "lstm__c"]
        assert np.abs(s.run(x) - _keras_per_step(model, x)).max() <= TOL


def test_unbatched_steps_and_state_restore(exported):
    model, d, _ = exported["textgen"]
    x = _sequence(model, 1, seed=3)
    ref = _keras_per_step(model, x)[0]
    with StreamingSession(d / FILES["onnx"]) as s:
        ys = [s.step(int(tok)) for tok in x[0, :3]]           # scalar token ids -> (V,) outputs
        assert ys[0].shape == (V,)
        saved = s.state
        rest = s.run(x[0, 3:])                                  # (T-3,) tokens -> (T-3, V)
        s.state = saved                                         # rewind to after step 3
        np.testing.assert_allclose(s.run(x[0, 3:]), rest, atol=0)
        np.testing.assert_allclose(np.concatenate([np.stack(ys), rest]), ref, atol=TOL)


def test_onnx_steps_run_on_bound_buffers(exported):
    """On onnxruntime each batch size gets one FeedbackLoop (preallocated, bound buffers): the steps
    equal plain session.run calls fed the previous state, and a returned output is the caller's own."""
    from rnnedge.runtime import open_runner
    from rnnedge.runtime.onnx import FeedbackLoop

    model, d, _ = exported["mixed_gru_lstm"]
    x = _sequence(model, 2, seed=5)
    with open_runner(d / FILES["onnx"]) as plain, StreamingSession(d / FILES["onnx"]) as s:
        names = [i.name for i in plain.inputs]
        state = {n: np.zeros((2, i.shape[-1]), np.float32) for n, i in zip(names[1:], plain.inputs[1:])}
        ys = []
        for t in range(T):
            y = s.step(x[:, t])
            out = plain.run({names[0]: x[:, t], **state})
            state = {n: out[n + "_out"] for n in state}
            np.testing.assert_array_equal(y, out[plain.outputs[0].name])
            ys.append(y)
        loop = s._loops[2]
        assert isinstance(loop, FeedbackLoop) and set(s._loops) == {2}
        out_buf = loop.outputs[s.layout["output"]]
        assert not any(np.shares_memory(y, out_buf) for y in ys)  # copies, not the reused buffer
        assert len({y.tobytes() for y in ys}) == T
        s.reset()
        s.step(x[:1, 0])                                        # another batch size: another loop
        assert set(s._loops) == {1, 2}


def test_feedback_loop_errors(exported):
    from rnnedge.runtime import open_runner

    d = exported["lstm2_dense"][1]
    with open_runner(d / FILES["onnx"]) as r:
        with pytest.raises(UsageError, match="no tensor"):
            r.feedback_loop(1, {"nope_out": "nope"})
        loop = r.feedback_loop(3, {"enc__h_out": "enc__h", "enc__c_out": "enc__c",
                                   "dec__h_out": "dec__h", "dec__c_out": "dec__c"})
        assert loop.inputs["series"].shape == (3, F) and loop.state["enc__h"].shape == (3, 4)


def test_session_usage_errors(exported):
    model, d, _ = exported["lstm2_dense"]
    with StreamingSession(d / FILES["tflite"]) as s:
        with pytest.raises(UsageError, match="batch 1"):
            s.step(np.zeros((2, F), np.float32))
        with pytest.raises(UsageError, match=r"\(batch, 3\)"):
            s.step(np.zeros((1, F + 1), np.float32))
    with StreamingSession(d / FILES["onnx"]) as s:
        s.step(np.zeros((2, F), np.float32))
        with pytest.raises(UsageError, match="reset"):
            s.step(np.zeros((3, F), np.float32))
        s.reset()
        assert s.step(np.zeros((3, F), np.float32)).shape == (3, 2)
    with StreamingSession(exported["textgen"][1] / FILES["onnx"]) as s:
        with pytest.raises(UsageError, match="token ids"):
            s.step(np.zeros((1,), np.float32))


def test_cli_hooks(exported):
    from rnnedge.runtime.streaming import bench_streaming, run_streaming

    model, d, _ = exported["gru_reset_after"]
    x = _sequence(model, 1, seed=4)[0]                          # (T, F), unbatched
    got = run_streaming(d / FILES["tflite"], x)
    assert got.shape == (T, 2)
    assert np.abs(got - _keras_per_step(model, x[None])[0]).max() <= TOL
    b = bench_streaming(d / FILES["onnx"], steps=5, warmup=2, runs=2)
    assert {"p50_ms", "p99_ms", "mean_ms"} <= set(b) and b["n"] == 10 and b["runtime"] == "onnxruntime"
    assert 0 < b["min_ms"] <= b["p50_ms"] <= b["p99_ms"] <= b["max_ms"]


def test_edge_path_does_not_import_tensorflow(exported):
    d = exported["lstm2_dense"][1]
    code = ("import sys, numpy as np\nfrom rnnedge.runtime.streaming import StreamingSession\n"
            f"for f in ({str(d / FILES['onnx'])!r}, {str(d / FILES['tflite'])!r}):\n"
            "    y = StreamingSession(f).step(np.ones(3, np.float32))\n"
            "print(y.shape, [m for m in ('tensorflow', 'keras', 'onnx') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "(2,) []"


# --------------------------------------------------------------------------- refusals
def _refused(model, tmp_path):
    with pytest.raises(ConversionError) as ei:
        export_streaming(model, tmp_path)
    assert not list(tmp_path.iterdir())  # nothing written
    return ei.value


def test_bidirectional_is_refused_with_its_reason(tmp_path):
    x = keras.Input((None, F))
    m = keras.Model(x, layers.Dense(1)(layers.Bidirectional(layers.LSTM(3), name="bi")(x)))
    e = _refused(m, tmp_path)
    assert e.layer == "bi"
    assert "'bi' (Bidirectional)" in str(e) and "not streamable" in str(e) and "whole sequence" in str(e)


def test_go_backwards_is_refused(tmp_path):
    x = keras.Input((None, F))
    m = keras.Model(x, layers.GRU(3, go_backwards=True, name="back")(x))
    e = _refused(m, tmp_path)
    assert e.layer == "back" and "go_backwards" in str(e) and "whole sequence" in str(e)


@pytest.mark.parametrize("make, layer", [
    (lambda x: layers.GlobalMaxPooling1D(name="pool")(layers.LSTM(3, return_sequences=True)(x)), "pool"),
    (lambda x: layers.LSTM(3, name="l")(layers.Conv1D(4, 2, name="conv")(x)), "conv"),
])
def test_other_layers_are_refused_by_name(tmp_path, make, layer):
    x = keras.Input((None, F))
    e = _refused(keras.Model(x, make(x)), tmp_path)
    assert e.layer == layer and f"'{layer}'" in str(e) and "streaming supports" in str(e)


# --------------------------------------------------------------------------- validate + CLI
@pytest.fixture(scope="module")
def export_folders(tmp_path_factory, exported):
    """rnnedge.export(..., streaming=True) folders (reference.keras, manifest, full + step models);
    export validates every artifact, step models included."""
    import rnnedge

    out = {}
    for name in ("lstm2_dense", "textgen"):
        model = exported[name][0]
        src = tmp_path_factory.mktemp(f"src_{name}") / f"{name}.keras"
        model.save(src)
        d = tmp_path_factory.mktemp(f"export_{name}")
        res = rnnedge.export(src, ["onnx", "tflite"], d, streaming=True)
        out[name] = (model, res.out_dir, res)
    return out


@pytest.mark.parametrize("name", ["lstm2_dense", "textgen"])
def test_validate_runs_step_models_as_the_full_model(export_folders, name):
    _, d, res = export_folders[name]
    rows = res.validation["artifacts"]
    for f in ("model.step.onnx", "model.step.tflite"):
        row = rows[f]
        assert row["verdict"] == "pass", (f, row)
        assert any("step model" in n for n in row.get("notes", [])), row
        assert max(o["max_abs"] for o in row["outputs"].values()) <= TOL
    man = json.loads((d / "manifest.json").read_text())
    assert man["artifacts"]["model.step.onnx"]["parity"]["verdict"] == "pass"


def test_validate_step_model_skips_padding_like_the_mask(export_folders):
    """Token rows with padding ids: the step model skips them as Embedding(mask_zero) does."""
    from rnnedge.runtime import open_runner
    from rnnedge.runtime.streaming import SequenceRunner

    model, d, _ = export_folders["textgen"]
    x = np.array([[3, 5, 0, 0, 7, 2], [4, 0, 9, 1, 0, 0]], np.int32)
    with SequenceRunner(d / "model.step.onnx") as r:
        got = r.run({"tokens": x})["probs"]
    ref = np.asarray(model(x, training=False))
    keep = x != 0
    assert np.abs(got[keep] - ref[keep]).max() <= TOL
    # a padded step repeats the output of the last real token (what the mask carries forward)
    assert np.allclose(got[0, 2], got[0, 1]) and np.allclose(got[1, 4], got[1, 3])
    with open_runner(d / "model.onnx") as full:  # and the full ONNX model agrees on real tokens
        assert np.abs(full.run({"tokens": x})["probs"][keep] - got[keep]).max() <= TOL


def test_cli_run_and_bench_streaming(export_folders, tmp_path):
    from click.testing import CliRunner

    from rnnedge.cli import cli
    from rnnedge.runtime.streaming import run_streaming

    _, d, _ = export_folders["lstm2_dense"]
    x = np.random.default_rng(3).normal(size=(2, T, F)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    r = CliRunner().invoke(cli, ["run", str(d / "model.step.tflite"), "-i", str(tmp_path / "x.npy"),
                                 "--streaming", "--json"])
    # the TFLite step model has a fixed batch of 1
    assert r.exit_code == 2 and "batch 1" in r.output, r.output
    r = CliRunner().invoke(cli, ["run", str(d / "model.step.onnx"), "-i", str(tmp_path / "x.npy"),
                                 "--streaming", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    got = np.asarray(doc["outputs"]["head"]["data"], np.float32)
    assert got.shape == (2, T, 2) and doc["runtime"] == "onnxruntime"
    assert np.abs(got - run_streaming(d / "model.step.onnx", x)).max() <= 1e-6
    assert np.abs(got[:, -1] - np.asarray(export_folders["lstm2_dense"][0](x))).max() <= TOL

    r = CliRunner().invoke(cli, ["bench", str(d / "model.step.onnx"), str(d / "model.step.tflite"),
                                 "--streaming", "--steps", "4", "--runs", "2", "--warmup", "1", "--json", "-"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output[r.output.index('{"schema"'):])
    assert doc["schema"] == "rnnedge.bench-streaming/1"
    assert [c["runtime"] for c in doc["cases"]] == ["onnxruntime", "litert"]
    assert all(c["n"] == 8 and 0 < c["p50_ms"] <= c["max_ms"] for c in doc["cases"])

    r = CliRunner().invoke(cli, ["run", str(d / "model.onnx"), "-i", str(tmp_path / "x.npy"), "--streaming"])
    assert r.exit_code == 2 and "not a step model" in r.output
