"""TFLite files are right in a plain interpreter (issue 15 items 4-6, issue 17 item 2).

* every kind of export gives the same outputs on a second ``invoke()`` with no reset, in
  ``ai_edge_litert.interpreter.Interpreter`` used directly, as an app uses it;
* a file made without the rewrite (the converter's own output) fails that same check (the check
  can fail), and rnnedge's runner still runs it right (it resets such a file, before set_tensor);
* fed initial states survive, states fed from another layer work, inputs and outputs follow the
  Keras model's order; a free time axis through TimeDistributed stays free; batch N > 1 exports.
"""
from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")
pytest.importorskip("tensorflow")
litert = pytest.importorskip("ai_edge_litert.interpreter")

from converters.registry import ExportOptions, get_exporter  # noqa: E402
from rnnedge.tflite_compat import list_ops, persistent_variables  # noqa: E402

L = keras.layers
F, U = 3, 4


def _mixed():
    """One graph holding every recurrent kind: fused BiLSTM, WHILE GRU / SimpleRNN, masked LSTM
    (WHILE), an LSTM whose states are outputs (WHILE), a fused LSTM fed another layer's state."""
    x = keras.Input((None, F), name="x")
    bi = L.Dense(2, name="bi_head")(L.Bidirectional(L.LSTM(U, return_sequences=True))(x))
    gru = L.GRU(U, name="gru")(x)
    rnn = L.SimpleRNN(U, name="rnn")(x)
    masked = L.LSTM(U, name="masked")(L.Masking(0.0)(x))
    seq, h, c = L.LSTM(U, return_sequences=True, return_state=True, name="enc")(x)
    dec = L.LSTM(U, name="dec")(seq, initial_state=[h, c])
    return keras.Model(x, [bi, gru, rnn, masked, seq, h, c, dec])


def _fed():
    x = keras.Input((None, F), name="x")
    h0, c0 = keras.Input((U,), name="h0"), keras.Input((U,), name="c0")
    return keras.Model([x, h0, c0], L.LSTM(U, return_sequences=True)(x, initial_state=[h0, c0]))


def _bilstm(units):
    return keras.Sequential([keras.Input((None, F), name="x"), L.Bidirectional(L.LSTM(units, return_sequences=True)),
                             L.LSTM(units), L.Dense(2)])


def _feeds(model, T, seed=0, batch=1):
    rng = np.random.default_rng(seed)
    return [rng.uniform(-1, 1, size=[batch] + [T if d is None else d for d in t.shape[1:]]).astype("float32")
            for t in model.inputs]


def _keras(model, xs):
    y = model(xs if len(xs) > 1 else xs[0])
    return [np.asarray(t) for t in (y if isinstance(y, (list, tuple)) else [y])]


def _plain(path, xs):
    """First invoke, a second with the inputs left as set, a third after setting them again."""
    it = litert.Interpreter(model_path=str(path), num_threads=1)
    ins = it.get_input_details()
    for d, x in zip(ins, xs):
        it.resize_tensor_input(d["index"], list(x.shape), strict=False)
    it.allocate_tensors()
    runs = []
    for set_inputs in (True, False, True):
        if set_inputs:
            for d, x in zip(ins, xs):
                it.set_tensor(d["index"], x.astype(d["dtype"]))
        it.invoke()
        runs.append([it.get_tensor(d["index"]).copy() for d in it.get_output_details()])
    return runs


def _max_diff(a, b):
    return max(float(np.max(np.abs(np.asarray(p, np.float64) - np.asarray(q, np.float64)))) for p, q in zip(a, b))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    keras.utils.set_random_seed(0)
    out = tmp_path_factory.mktemp("state")
    exp = get_exporter("tflite")
    models = {"mixed": _mixed(), "fed": _fed(), "bilstm": _bilstm(32)}
    entries = {"mixed": exp(models["mixed"], out / "mixed", ExportOptions()),
               "fed": exp(models["fed"], out / "fed", ExportOptions()),
               # 32 units: each gate's 32x32 recurrent weights reach TF's 1024-element threshold,
               # so "dynamic" really quantizes the fused LSTM (hybrid kernel)
               "bilstm": exp(models["bilstm"], out / "bilstm",
                             ExportOptions(seq_len=6, quantize=["dynamic", "fp16", "int8"]))}
    return out, models, entries


def _cases(exported):
    out, models, entries = exported
    for name, ents in entries.items():
        for art, e in ents.items():
            yield name, art, out / name / art, models[name], e


def test_every_kind_gives_the_same_result_on_a_second_invoke(exported):
    seen_ops = set()
    for name, art, path, model, entry in _cases(exported):
        ops = {o["name"] for o in list_ops(path)}
        seen_ops |= ops
        T = entry["seq_len"] or 7
        xs = _feeds(model, T)
        first, kept, again = _plain(path, xs)
        assert _max_diff(first, kept) == 0.0, (art, name)
        assert _max_diff(first, again) == 0.0, (art, name)
        assert persistent_variables(path) == [] and entry["reset_variables"] is False
        assert entry["self_check"]["repeat_max_abs_diff"] == 0.0
        tol = 1e-5 if entry["quantization"] == "float32" else 0.3
        assert _max_diff(first, _keras(model, xs)) <= tol, (art, name)  # by position: Keras order
        if entry["seq_len"] is None:  # a free length: another one is right too
            xs5 = _feeds(model, 5, seed=1)
            assert _max_diff(_plain(path, xs5)[1], _keras(model, xs5)) <= tol, (art, name)
    assert {"UNIDIRECTIONAL_SEQUENCE_LSTM", "WHILE", "FILL"} <= seen_ops


def test_io_in_keras_order_and_fed_state_kept(exported):
    out, models, entries = exported
    for name in ("mixed", "fed"):
        e = entries[name]["model.tflite"]
        assert [i["keras_index"] for i in e["inputs"]] == list(range(len(e["inputs"])))
        assert [o["keras_index"] for o in e["outputs"]] == list(range(len(e["outputs"])))
    # the fed h0/c0 is a plain input again, copied into the LSTM's variable: it is not overwritten
    path = out / "fed" / "model.tflite"
    it = litert.Interpreter(model_path=str(path))
    assert [d["name"] for d in it.get_input_details()] == [i["name"] for i in entries["fed"]["model.tflite"]["inputs"]]
    xs = _feeds(models["fed"], 6, seed=4)
    first, kept, _ = _plain(path, xs)
    ref = _keras(models["fed"], xs)
    assert _max_diff(first, ref) <= 1e-5 and _max_diff(kept, ref) <= 1e-5
    assert _max_diff(ref, _keras(models["fed"], [xs[0], 0 * xs[1], 0 * xs[2]])) > 1e-2  # the state matters


def test_runner_keeps_fed_states_and_keras_output_order(exported):
    from rnnedge.runtime import open_runner

    out, models, _ = exported
    for name in ("fed", "mixed"):
        model = models[name]
        with open_runner(out / name / "model.tflite") as r:
            assert r.info["reset_variables"] is False
            assert [i.name for i in r.inputs] == [t.name for t in model.inputs]
            for seed in (1, 2):
                xs = _feeds(model, 6, seed=seed)
                got = list(r.run(dict(zip([i.name for i in r.inputs], xs))).values())
                assert _max_diff(got, _keras(model, xs)) <= 1e-5  # every output, by position


def test_a_stateful_file_fails_the_check_and_the_runner_resets_it(tmp_path, monkeypatch):
    """The twin: the converter's own output (no rewrite) keeps the fused LSTM state."""
    import converters.tflite.convert as cv
    from converters.tflite import self_check
    from converters.tflite.convert import convert, trace
    from rnnedge.runtime import open_runner

    keras.utils.set_random_seed(1)
    model = _bilstm(U)
    monkeypatch.setattr(cv, "stateless_variables", lambda content: (content, 0))
    traced = trace(model, seq_len=None)
    raw = convert(traced, model)
    path = tmp_path / "model.tflite"
    path.write_bytes(raw)
    assert persistent_variables(raw)
    xs = _feeds(model, 7)
    first, kept, again = _plain(path, xs)
    assert _max_diff(first, kept) > 1e-3 and _max_diff(first, again) > 1e-3
    check = self_check(model, raw, traced, [6])
    assert check["repeat_max_abs_diff"] > 1e-3 and check["max_abs_error"] > 1e-3
    ref = _keras(model, xs)
    with open_runner(path) as r:  # auto: a file with persistent state is reset before each run
        assert r.info["reset_variables"] is True and r.info["persistent_state"]
        for _ in range(2):
            assert _max_diff(list(r.run({r.inputs[0].name: xs[0]}).values()), ref) <= 1e-5
    with open_runner(path, reset_variables=False) as r:
        r.run({r.inputs[0].name: xs[0]})
        assert _max_diff(list(r.run({r.inputs[0].name: xs[0]}).values()), ref) > 1e-3
    # fp16: the state is the DEQUANTIZE of a zero constant, evaluated once: persistent too
    fp16 = tmp_path / "model.fp16.tflite"
    fp16.write_bytes(convert(traced, model, quantize="fp16"))
    assert persistent_variables(fp16)
    first, kept, _ = _plain(fp16, xs)
    assert _max_diff(first, kept) > 1e-3


def test_step_model_gives_the_same_result_twice(tmp_path):
    from converters.streaming import export_streaming

    keras.utils.set_random_seed(2)
    model = keras.Sequential([keras.Input((None, F)), L.LSTM(U, return_sequences=True), L.GRU(U), L.Dense(2)])
    export_streaming(model, tmp_path, formats=("tflite",))
    path = tmp_path / "model.step.tflite"
    it = litert.Interpreter(model_path=str(path))
    xs = [np.random.default_rng(i).uniform(-1, 1, d["shape"]).astype(d["dtype"])
          for i, d in enumerate(it.get_input_details())]
    first, kept, again = _plain(path, xs)
    assert _max_diff(first, kept) == 0.0 and _max_diff(first, again) == 0.0
    assert persistent_variables(path) == []


def test_time_distributed_keeps_a_free_time_axis(tmp_path):
    """Keras 3's TimeDistributed maps over the batch axis when the time axis is free in a graph
    (every step got step 0's result): the export fixed T=32. Now the length stays free."""
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((None, F)), L.Bidirectional(L.LSTM(U, return_sequences=True)),
                              L.TimeDistributed(L.Dense(5))])
    e = get_exporter("tflite")(model, tmp_path, ExportOptions())["model.tflite"]
    assert e["seq_len"] is None and e["inputs"][0]["shape"][1] is None and "warning" not in e
    for T in (5, 9):
        xs = _feeds(model, T, seed=T)
        first, kept, _ = _plain(tmp_path / "model.tflite", xs)
        ref = _keras(model, xs)
        assert _max_diff(first, ref) <= 1e-5 and _max_diff(kept, first) == 0.0


def test_a_fixed_length_is_a_warning_on_the_terminal(tmp_path, monkeypatch):
    """When no free-length file matches Keras, the export fixes T and the CLI says so on stderr."""
    from click.testing import CliRunner

    import converters.tflite as ct
    from rnnedge.cli.export import command

    real = ct.self_check

    def free_length_off(model, content, traced, seq_lens):  # as BiLSTM -> TimeDistributed once was
        res = real(model, content, traced, seq_lens)
        return dict(res, max_abs_error=0.3) if traced.seq_len is None else res

    monkeypatch.setattr(ct, "self_check", free_length_off)
    keras.utils.set_random_seed(4)
    src = tmp_path / "m.keras"
    keras.Sequential([keras.Input((None, F)), L.GRU(U), L.Dense(2)]).save(src)
    res = CliRunner().invoke(command, [str(src), "-f", "tflite", "-o", str(tmp_path / "out"), "--no-validate"])
    assert res.exit_code == 0, res.output
    assert "warning: model.tflite: sequence length fixed to 32" in res.stderr
    assert "inputs must have exactly 32 steps" in res.stderr
    import json

    e = json.loads((tmp_path / "out" / "manifest.json").read_text())["artifacts"]["model.tflite"]
    assert e["seq_len"] == 32 and "sequence length fixed to 32" in e["warning"]


def test_batch_n_exports_run_and_match_keras(tmp_path):
    """--batch-size 4: auto picks WHILE (the fused kernel's cost grows with the batch) and says
    why; a fused file at batch 4 (time-major) is right too; both stateless; batch 1 is refused.
    At batch 32 with a fixed length, auto unrolls."""
    from rnnedge.errors import UsageError
    from rnnedge.runtime import open_runner

    keras.utils.set_random_seed(5)
    model = _bilstm(U)
    xs = _feeds(model, 6, seed=5, batch=4)
    ref = _keras(model, xs)
    for mode, want in (("auto", "while"), ("fused", "fused")):
        e = get_exporter("tflite")(model, tmp_path / mode, ExportOptions(batch_size=4, extra={"tflite_lstm": mode}))
        e = e["model.tflite"]
        assert e["batch_size"] == 4 and e["inputs"][0]["shape"][:2] == [4, None]
        assert e["lstm_mode"] == want
        assert ("auto at batch 4" if mode == "auto" else "asked") in e["lstm_mode_reason"]
        first, kept, _ = _plain(tmp_path / mode / "model.tflite", xs)
        assert _max_diff(first, ref) <= 1e-5 and _max_diff(kept, first) == 0.0
    with open_runner(tmp_path / "auto" / "model.tflite") as r:
        with pytest.raises(UsageError, match="its batch size is fixed at 4, got 1 row: feed 4 rows at a time, or "
                                             "re-export with `rnnedge export ... --batch-size 1`"):
            r.run({r.inputs[0].name: xs[0][:1]})
    # batch >= 32, a fixed length and a layer returning sequences: unrolled ops
    e = get_exporter("tflite")(model, tmp_path / "b32", ExportOptions(batch_size=32, seq_len=6))["model.tflite"]
    assert e["lstm_mode"] == "unroll" and "unrolled" in e["lstm_mode_reason"]
    assert not {"WHILE", "UNIDIRECTIONAL_SEQUENCE_LSTM"} & {o["name"] for o in e["ops"]}
    xs = _feeds(model, 6, seed=6, batch=32)
    first, kept, _ = _plain(tmp_path / "b32" / "model.tflite", xs)
    assert _max_diff(first, _keras(model, xs)) <= 1e-5 and _max_diff(kept, first) == 0.0


def test_bundle_resets_only_a_stateful_file_and_deploy_catches_drift(tmp_path, monkeypatch):
    """A Pi bundle of a .tflite that keeps state (made elsewhere): its manifest says
    reset_variables and predict.py resets before each call; deploy runs the sample twice, so a
    bundle whose model drifts between calls is refused (the twin: the reset switched off)."""
    import converters.tflite.convert as cv
    import rnnedge.tflite_compat as tc
    from converters.tflite.convert import convert, trace
    from rnnedge.deployment import deploy
    from rnnedge.errors import RnnedgeError
    from rnnedge.exporting import export
    from rnnedge.manifest import load_manifest, update_manifest

    keras.utils.set_random_seed(6)
    model = _bilstm(U)
    src = tmp_path / "m.keras"
    model.save(src)
    d = tmp_path / "export"
    export(src, ["tflite"], d, seq_len=6, validate=False)
    ok = deploy(d, out=tmp_path / "b_ok", tarball=False)
    assert ok.manifest["model"]["reset_variables"] is False
    assert "no reset needed" in (tmp_path / "b_ok" / "README.md").read_text()
    with monkeypatch.context() as mp:  # the converter's own output: state kept across invokes
        mp.setattr(cv, "stateless_variables", lambda content: (content, 0))
        (d / "model.tflite").write_bytes(convert(trace(model, seq_len=6), model))
    entry = load_manifest(d)["artifacts"]["model.tflite"]
    update_manifest(d, artifacts={"model.tflite": entry})  # new sha256 for the replaced file
    res = deploy(d, out=tmp_path / "b_reset", tarball=False)
    assert res.manifest["model"]["reset_variables"] is True and res.host_check["max_abs_err"] <= 1e-5
    assert "reset_all_variables()" in (tmp_path / "b_reset" / "README.md").read_text()
    monkeypatch.setattr(tc, "persistent_variables", lambda path: [])  # predict.py would not reset
    with pytest.raises(RnnedgeError, match="second call"):
        deploy(d, out=tmp_path / "b_drift", tarball=False)
    assert not (tmp_path / "b_drift").exists()
