"""The parity gate (issue 15): every output compared by position, inputs for any model, stateful
models, TFLite state kept between invokes, nothing lost on a failed export, a true report.

Each small model of the issue is exported once per module through the CLI (`rnnedge export`, as a
user runs it); every gate test has a twin where a deliberately wrong artifact of the same kind fails.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import perturb_onnx
from rnnedge.errors import UsageError
from rnnedge.inputs import case_label, input_cases, sample_inputs, specs_from_tensors
from rnnedge.matching import match_inputs, match_outputs, unique_names


# --------------------------------------------------------------------------- no TensorFlow
def test_unique_names_and_matching_by_position():
    assert unique_names(["lstm", "lstm", "lstm", "dense"]) == ["lstm", "lstm_1", "lstm_2", "dense"]
    assert unique_names(["lstm", "lstm_1", "lstm"]) == ["lstm", "lstm_1", "lstm_2"]
    assert unique_names(["x"], taken=["x"]) == ["x_1"]
    # outputs pair by position whatever the names say
    assert match_outputs(["lstm", "lstm_1", "lstm_2"], ["c", "b", "a"]) == [("lstm", "c"), ("lstm_1", "b"),
                                                                            ("lstm_2", "a")]
    with pytest.raises(UsageError, match="1 output.*3.*by position"):
        match_outputs(["lstm", "lstm_1", "lstm_2"], ["lstm_0"])
    # inputs by name, or by the manifest's keras_name, else by position when no name matches
    assert match_inputs(["a", "b"], ["b", "a"]) == ({"a": "a", "b": "b"}, None)
    assert match_inputs(["a"], ["serving_a:0"], {"serving_a:0": "a"}) == ({"a": "serving_a:0"}, None)
    assert match_inputs(["a"], ["z"])[1] == "inputs matched by position"
    with pytest.raises(UsageError, match="mismatched input names"):
        match_inputs(["a", "b"], ["a", "z"])


def test_inputs_any_rank_per_input_lengths_and_dtypes():
    specs = specs_from_tensors([{"name": "x", "shape": [None, 6, 4, 3], "dtype": "float32"}])  # ConvLSTM1D
    assert specs[0].kind == "series" and input_cases(specs) == [{"x": 6}]
    x = sample_inputs(specs, 5, lengths={"x": 6})["x"]
    assert x.shape == (5, 6, 4, 3) and x.dtype == np.float32 and x.std() > 0.2
    specs = specs_from_tensors([{"name": "a", "shape": [None, 15, 3], "dtype": "float32"},
                                {"name": "b", "shape": [None, 17, 2], "dtype": "float32"},
                                {"name": "h0", "shape": [None, 4], "dtype": "float32"},
                                {"name": "ids", "shape": [None, None], "dtype": "int32"},
                                {"name": "flag", "shape": [None, 1], "dtype": "bool"}])
    cases = input_cases(specs)  # fixed lengths kept per input; the free one: the first fixed length, then half
    assert cases == [{"a": 15, "b": 17, "ids": 15}, {"a": 15, "b": 17, "ids": 8}]
    assert case_label(cases[0]) == {"a": 15, "b": 17, "ids": 15} and case_label({"x": 5}) == 5
    f = sample_inputs(specs, 7, lengths=cases[1])
    assert {k: v.shape for k, v in f.items()} == {"a": (7, 15, 3), "b": (7, 17, 2), "h0": (7, 4), "ids": (7, 8),
                                                  "flag": (7, 1)}
    assert f["flag"].dtype == np.bool_ and f["ids"].dtype == np.int32 and f["ids"].min() >= 0
    assert input_cases(specs, seq_lens=[100, 3]) == [{"a": 15, "b": 17, "ids": 100}, {"a": 15, "b": 17, "ids": 3}]


def test_masking_inputs_get_masked_steps_at_start_middle_and_end():
    specs = specs_from_tensors([{"name": "x", "shape": [None, None, 3], "dtype": "float32"}],
                               mask_values={"x": 0.0})
    x = sample_inputs(specs, 64, lengths={"x": 9}, seed=2)["x"]
    masked = (x == 0.0).all(axis=-1)  # a step Masking skips: every feature equals mask_value
    rows = masked.any(axis=1)
    start, end = masked[:, 0], masked[:, -1]
    middle = masked[:, 1:-1].any(axis=1) & ~start & ~end
    assert 32 <= rows.sum() < 64 and start.sum() >= 8 and end.sum() >= 8 and middle.sum() >= 8
    assert not masked.all(axis=1).any() and not rows[0]  # never a whole row; row 0 unmasked
    plain = specs_from_tensors([{"name": "x", "shape": [None, None, 3], "dtype": "float32"}])
    assert not (sample_inputs(plain, 64, lengths={"x": 9}, seed=2)["x"] == 0).all(axis=-1).any()


def test_calibration_inputs_keep_their_own_lengths():
    specs = specs_from_tensors([{"name": "a", "shape": [None, None, 3], "dtype": "float32"},
                                {"name": "b", "shape": [None, None, 2], "dtype": "float32"}])
    rng = np.random.default_rng(0)
    calib = {"a": rng.normal(size=(8, 15, 3)), "b": rng.normal(size=(9, 17, 2))}
    cases = input_cases(specs, calibration=calib)
    assert cases == [{"a": 15, "b": 17}]  # no length nobody asked for
    f = sample_inputs(specs, 64, lengths=cases[0], calibration=calib)
    assert f["a"].shape == (8, 15, 3) and f["b"].shape == (8, 17, 2)  # the file's 8 rows
    np.testing.assert_allclose(f["a"], calib["a"].astype(np.float32))
    with pytest.raises(UsageError, match="input 'b'.*shape"):
        sample_inputs(specs, 4, lengths=cases[0], calibration={"a": calib["a"], "b": np.zeros((8, 17))})


# --------------------------------------------------------------------------- the models of the issue
keras = pytest.importorskip("keras")
pytest.importorskip("onnxruntime")
L = keras.layers


def m_return_state():
    x = keras.Input((6, 3), name="x")
    o, h, c = L.LSTM(4, return_state=True, name="lstm")(x)  # named: Keras's counter depends on test order
    return keras.Model(x, [o, h, c], name="return_state")


def m_bidir_none():
    x = keras.Input((6, 3), name="x")
    return keras.Model(x, L.Bidirectional(L.LSTM(3, return_state=True), merge_mode=None)(x), name="bidir_none")


def m_rank4():  # (T, W, C) per sample: ONNX through Reshape; the ConvLSTM1D form is a TFLite case below
    x = keras.Input((6, 4, 3), name="x")
    y = L.LSTM(4)(L.Reshape((6, 12))(x))
    return keras.Model(x, L.Dense(2)(y), name="rank4")


def m_convlstm():
    x = keras.Input((6, 4, 3), name="x")
    return keras.Model(x, L.Flatten()(L.ConvLSTM1D(2, 3)(x)), name="convlstm")


def m_two_lengths():
    a, b = keras.Input((15, 3), name="a"), keras.Input((17, 2), name="b")
    y = L.Concatenate()([L.LSTM(4)(a), L.GRU(3)(b)])
    return keras.Model([a, b], L.Dense(2)(y), name="two_lengths")


def m_stateful():
    x = keras.Input(batch_shape=(1, 5, 3), name="x")
    return keras.Model(x, L.Dense(2)(L.LSTM(4, stateful=True)(x)), name="stateful")


def m_masking():
    x = keras.Input((None, 3), name="x")
    return keras.Model(x, L.LSTM(4)(L.Masking(0.0)(x)), name="masking")


def m_init_inputs():
    x, h0, c0 = keras.Input((5, 3), name="x"), keras.Input((4,), name="h0"), keras.Input((4,), name="c0")
    return keras.Model([x, h0, c0], L.LSTM(4)(x, initial_state=[h0, c0]), name="init_inputs")


def m_init_layer():
    x, y = keras.Input((5, 3), name="x"), keras.Input((6, 2), name="y")
    _, h, c = L.LSTM(4, return_state=True)(x)
    return keras.Model([x, y], L.LSTM(4, return_sequences=True)(y, initial_state=[h, c]), name="init_layer")


ONNX_MODELS = {"return_state": m_return_state, "bidir_none": m_bidir_none, "rank4": m_rank4,
               "two_lengths": m_two_lengths, "stateful": m_stateful, "masking": m_masking,
               "init_inputs": m_init_inputs, "init_layer": m_init_layer}


def cli(*args):
    from rnnedge.cli import cli as group

    return CliRunner().invoke(group, [str(a) for a in args])


def _save(fn, root: Path) -> Path:
    keras.utils.set_random_seed(0)
    p = root / f"{fn.__name__[2:]}.keras"
    fn().save(p)
    return p


@pytest.fixture(scope="module")
def onnx_exports(tmp_path_factory):
    """Each model exported to ONNX with `rnnedge export` (parity checked on the way)."""
    root = tmp_path_factory.mktemp("gate")
    out = {}
    for name, fn in ONNX_MODELS.items():
        src = _save(fn, root)
        res = cli("export", src, "-f", "onnx", "-o", root / name)
        out[name] = (src, root / name, res)
    return out


def _copy(folder: Path, tmp_path: Path) -> Path:
    dst = tmp_path / folder.name
    shutil.copytree(folder, dst)
    return dst


def _wrong_twin(name: str, d: Path) -> str:
    """Make d/model.onnx deliberately wrong, in the way that model's gate must catch."""
    import onnx

    from rnnedge.manifest import update_manifest

    if name in ("return_state", "bidir_none"):  # the last two outputs (h and c) swapped: names stay unique
        m = onnx.load(str(d / "model.onnx"))
        outs = list(m.graph.output)
        outs[-2], outs[-1] = outs[-1], outs[-2]
        del m.graph.output[:]
        m.graph.output.extend(outs)
        onnx.save(m, str(d / "model.onnx"))
        return "outputs swapped"
    if name == "masking":  # the same LSTM without the Masking layer: right wherever no step is masked
        from converters.registry import ExportOptions, get_exporter

        ref = keras.saving.load_model(d / "reference.keras")
        x = keras.Input((None, 3), name="x")
        lstm = L.LSTM(4)
        twin = keras.Model(x, lstm(x))
        lstm.set_weights(ref.get_layer(index=2).get_weights())
        tmp = d / "twin"
        tmp.mkdir()
        entry = get_exporter("onnx")(twin, tmp, ExportOptions())["model.onnx"]
        shutil.move(tmp / "model.onnx", d / "model.onnx")
        shutil.rmtree(tmp)
        update_manifest(d, artifacts={"model.onnx": entry})
        return "mask ignored"
    perturb_onnx(d / "model.onnx")
    return "weight perturbed"


@pytest.mark.parametrize("name", list(ONNX_MODELS))
def test_onnx_export_validates_every_output_and_wrong_twin_fails(onnx_exports, tmp_path, name):
    src, d, res = onnx_exports[name]
    assert res.exit_code == 0, res.output
    assert "pass" in res.output and "parity vs reference.keras" in res.output  # the verdict is printed
    model = keras.saving.load_model(src)
    man = json.loads((d / "manifest.json").read_text())
    parity = man["artifacts"]["model.onnx"]["parity"]
    assert parity["verdict"] == "pass"
    outs = list(parity["outputs"].values())
    assert [o["index"] for o in outs] == list(range(len(model.outputs)))  # every output, by position
    assert all(o["max_abs"] < 1e-5 for o in outs)
    assert man["artifacts"]["model.onnx"]["self_check"]["max_abs_error"] < 1e-5
    assert man["model"]["state"] == ("stateful" if name == "stateful" else "stateless")
    got = cli("validate", d, "-n", "8", "--json", "-", "--no-manifest")
    assert got.exit_code == 0, got.output
    # the twin: a deliberately wrong artifact of the same kind fails (exit 1), naming the output
    bad = _copy(d, tmp_path)
    how = _wrong_twin(name, bad)
    got = cli("validate", bad, "-n", "8", "--no-manifest")
    assert got.exit_code == 1, (how, got.output)
    assert "FAIL model.onnx" in got.output and "max abs error" in got.output, got.output


def test_return_state_outputs_are_unique_and_in_order(onnx_exports, tmp_path):
    """`rnnedge run` writes every output, Keras's order, unique names, for ONNX and the reference."""
    src, d, _ = onnx_exports["return_state"]
    model = keras.saving.load_model(src)
    x = np.random.default_rng(0).normal(size=(2, 6, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    ref = [np.asarray(t) for t in model(x)]
    for art in ("model.onnx", "reference.keras"):
        res = cli("run", d / art, "-i", tmp_path / "x.npy", "-o", tmp_path / f"{art}.npz")
        assert res.exit_code == 0, res.output
        with np.load(tmp_path / f"{art}.npz") as z:
            assert list(z.files) == ["lstm", "lstm_1", "lstm_2"], z.files
            for k, r in zip(z.files, ref):
                np.testing.assert_allclose(z[k], r, atol=1e-5)
    rows = json.loads((d / "manifest.json").read_text())["artifacts"]["model.onnx"]["outputs"]
    assert [o["name"] for o in rows] == ["lstm", "lstm_1", "lstm_2"]  # the export's one naming rule


def test_stateful_model_runs_at_its_batch_from_a_reset_state(onnx_exports):
    from rnnedge.runtime import open_runner

    _, d, _ = onnx_exports["stateful"]
    rep = json.loads((d / "manifest.json").read_text())
    assert rep["model"]["batch_size"] == 1 and "zero state" in rep["model"]["state_note"]
    assert rep["artifacts"]["model.onnx"]["parity"]["batch"] == 1
    x = np.random.default_rng(1).normal(size=(1, 5, 3)).astype(np.float32)
    with open_runner(d / "reference.keras") as r:  # each run starts from a zero state
        a, b = (next(iter(r.run({"x": x}).values())) for _ in range(2))
        np.testing.assert_array_equal(a, b)
    with open_runner(d / "reference.keras", keep_state=True) as r:  # unless asked to keep it
        a, b = (next(iter(r.run({"x": x}).values())) for _ in range(2))
        assert np.abs(a - b).max() > 1e-4


def test_validate_reports_the_inputs_it_used(onnx_exports, tmp_path):
    _, d, _ = onnx_exports["masking"]
    x = np.random.default_rng(0).normal(size=(8, 200, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    res = cli("validate", d, "--calibration", tmp_path / "x.npy", "--json", tmp_path / "r.json", "--no-manifest")
    assert res.exit_code == 0, res.output
    rep = json.loads((tmp_path / "r.json").read_text())
    row = rep["artifacts"]["model.onnx"]
    assert row["samples"] == 8 and row["seq_lens"] == [200] and rep["inputs"]["source"] == "calibration"
    assert "x.npy" in res.output and "64 samples" not in res.output and "100" not in res.output
    res = cli("validate", d, "--seq-len", "3", "--seq-len", "11", "-n", "5", "--json", tmp_path / "s.json",
              "--no-manifest")
    assert res.exit_code == 0, res.output
    row = json.loads((tmp_path / "s.json").read_text())["artifacts"]["model.onnx"]
    assert row["seq_lens"] == [3, 11] and row["samples"] == 5
    assert "masked steps in x" in res.output  # the Masking layer's input gets masked steps
    _, d2, _ = onnx_exports["two_lengths"]  # fixed axes keep their lengths whatever is asked
    res = cli("validate", d2, "--seq-len", "4", "-n", "4", "--json", "-", "--no-manifest")
    assert json.loads(res.stdout)["artifacts"]["model.onnx"]["seq_lens"] == [{"a": 15, "b": 17}]


def test_validate_with_nothing_to_validate_exits_2(onnx_exports, tmp_path, monkeypatch):
    d = _copy(onnx_exports["init_inputs"][1], tmp_path)
    man = json.loads((d / "manifest.json").read_text())
    man["artifacts"] = {"reference.keras": man["artifacts"]["reference.keras"]}
    (d / "manifest.json").write_text(json.dumps(man))
    res = cli("validate", d)
    assert res.exit_code == 2 and "nothing to validate" in res.output, res.output
    # every artifact skipped because a runtime is missing (a TF.js one without node): nothing was
    # compared, and the missing dependency is what the user must fix: exit 3 with the reason
    import rnnedge.validation as V

    man["artifacts"]["tfjs/model.json"] = {"format": "tfjs", "inputs": [], "outputs": []}
    (d / "manifest.json").write_text(json.dumps(man))
    monkeypatch.setattr(V.shutil, "which", lambda name: None)
    res = cli("validate", d)
    assert res.exit_code == 3 and "nothing was validated" in res.output and "node not found" in res.output


# --------------------------------------------------------------------------- nothing lost
@keras.saving.register_keras_serializable(package="rnnedge_test_gate")
class PySin(L.Layer):
    """A layer no converter can take (a Python function inside the graph)."""

    def call(self, x):
        import tensorflow as tf

        y = tf.py_function(lambda v: np.sin(v.numpy()), [x], tf.float32)
        y.set_shape(x.shape)
        return y

    def compute_output_shape(self, shape):
        return shape


def _snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_failed_export_leaves_the_folder_as_it_was(onnx_exports, tmp_path, monkeypatch):
    out = _copy(onnx_exports["init_inputs"][1], tmp_path)  # model A, exported and passing
    before = _snapshot(out)
    x = keras.Input((5, 3), name="x")
    b_path = tmp_path / "b.keras"
    keras.Model(x, PySin()(L.LSTM(3)(x)), name="model_b").save(b_path)
    res = cli("export", b_path, "-f", "onnx", "-o", out)  # a refused layer: exit 4, named
    assert res.exit_code == 4 and "py_sin" in res.output, res.output
    assert _snapshot(out) == before
    res = cli("export", onnx_exports["masking"][0], "-f", "onnx", "--quantize", "bogus", "-o", out)  # fails late
    assert res.exit_code == 2 and "bogus" in res.output, res.output
    assert _snapshot(out) == before
    assert not [p for p in tmp_path.iterdir() if ".staging-" in p.name]  # no staging folder left behind
    assert cli("validate", out, "-n", "8", "--no-manifest").exit_code == 0  # A still validates
    # a parity failure is a failed export too: DIR untouched, the checked files kept in DIR.rejected
    import converters.onnx.exporter as E

    real = E.export_onnx

    def wrong(model, out_dir, options=None):
        got = real(model, out_dir, options)
        perturb_onnx(Path(out_dir) / "model.onnx")
        return got

    from converters import registry

    monkeypatch.setitem(registry._FORMATS, "onnx", wrong)
    res = cli("export", onnx_exports["masking"][0], "-f", "onnx", "-o", out)
    assert res.exit_code == 1 and "FAIL model.onnx" in res.output and "left as it was" in res.output, res.output
    assert _snapshot(out) == before
    rejected = out.with_name(out.name + ".rejected")
    assert (rejected / "model.onnx").is_file() and "masking" in (rejected / "manifest.json").read_text()


# --------------------------------------------------------------------------- TFLite in a plain interpreter
def _fused_stateful_tflite(model) -> bytes:
    """The converter's raw fused-LSTM file (no rewrite): h/c kept in variable tensors between invokes."""
    import tensorflow as tf

    from converters.tflite.convert import trace

    traced = trace(model, batch_size=1, seq_len=None, lstm_mode="fused")
    assert traced.lstm_mode == "fused"
    conv = tf.lite.TFLiteConverter.from_concrete_functions([traced.concrete], tf.Module())
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return conv.convert()


def test_tflite_kept_state_fails_in_a_plain_interpreter(tmp_path):
    """Right twin: a WHILE-loop file passes, invoked twice. Wrong twin: the fused file that keeps
    h/c between invokes passes the runner's parity (it resets) but fails the plain-interpreter run."""
    pytest.importorskip("ai_edge_litert")
    from rnnedge.manifest import update_manifest

    keras.utils.set_random_seed(0)
    x = keras.Input((6, 3), name="x")
    model = keras.Model(x, L.Dense(2)(L.LSTM(4)(x)), name="lstm_dense")
    src = tmp_path / "m.keras"
    model.save(src)
    d = tmp_path / "out"
    import rnnedge

    res = rnnedge.export(src, "tflite", d, extra={"tflite_lstm": "while"})
    row = res.validation["artifacts"]["model.tflite"]
    assert row["verdict"] == "pass" and row["repeat_invoke"]["identical"] is True, row
    assert res.artifacts["model.tflite"]["self_check"]["max_abs_error"] < 1e-5
    (d / "model.tflite").write_bytes(_fused_stateful_tflite(model))
    update_manifest(d, artifacts={"model.tflite": {}})
    got = cli("validate", d, "-n", "8", "--json", tmp_path / "r.json")
    assert got.exit_code == 1, got.output
    assert "keeps state between invokes" in got.output and "reset_all_variables" in got.output
    row = json.loads((tmp_path / "r.json").read_text())["artifacts"]["model.tflite"]
    assert all(o["verdict"] == "pass" for o in row["outputs"].values())  # the runner alone passes it
    assert row["repeat_invoke"]["identical"] is False and row["repeat_invoke"]["max_diff"] > 1e-3


# The issue's models exported to TFLite (stateless files, runner in Keras order, fed states kept).
TFLITE_MODELS = {**{k: v for k, v in ONNX_MODELS.items() if k != "rank4"}, "convlstm": m_convlstm}


@pytest.mark.parametrize("name", list(TFLITE_MODELS))
def test_tflite_export_of_the_issue_models(tmp_path, name):
    pytest.importorskip("ai_edge_litert")
    src = _save(TFLITE_MODELS[name], tmp_path)
    res = cli("export", src, "-f", "tflite", "-o", tmp_path / "out")
    assert res.exit_code == 0, res.output
    man = json.loads((tmp_path / "out" / "manifest.json").read_text())
    row = man["artifacts"]["model.tflite"]
    assert row["self_check"]["max_abs_error"] < 1e-5 and row["parity"]["repeat_invoke"]["identical"]
    assert len(row["parity"]["outputs"]) == len(man["model"]["outputs"])
