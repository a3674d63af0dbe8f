"""rnnedge.validation / `rnnedge validate`: parity of every artifact against reference.keras.

Tiny versions of the presets (a few units, T=8) are exported once per module with the real
exporters when they exist (converters.registry.get_exporter), else with small stand-ins.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

keras = pytest.importorskip("keras")
pytest.importorskip("onnxruntime")

from conftest import perturb_onnx  # noqa: E402
from rnnedge.manifest import load_manifest, update_manifest  # noqa: E402

T = 8


# ---------------------------------------------------------------------------------------
# tiny models and an export folder (real exporters when present)
# ---------------------------------------------------------------------------------------
def tiny_forecast(units=8):
    inp = keras.Input((None, 1), name="series")
    x = keras.layers.LSTM(units, return_sequences=True)(inp)
    x = keras.layers.LSTM(units)(x)
    return keras.Model(inp, keras.layers.Dense(1)(x), name="forecast")


def tiny_sentiment(vocab=30):
    inp = keras.Input((None,), name="tokens", dtype="int32")
    x = keras.layers.Embedding(vocab, 8, mask_zero=True)(inp)
    x = keras.layers.Bidirectional(keras.layers.LSTM(4, return_sequences=True))(x)
    x = keras.layers.GlobalMaxPooling1D()(x)
    return keras.Model(inp, keras.layers.Dense(1, activation="sigmoid")(x), name="sentiment")


def tiny_gru_classifier(features=3, classes=3):
    inp = keras.Input((None, features), name="signal")
    x = keras.layers.GRU(8)(inp)
    return keras.Model(inp, keras.layers.Dense(classes, activation="softmax")(x), name="gru_classifier")


def _real_exporter(fmt):
    try:
        from converters.registry import get_exporter

        return get_exporter(fmt)
    except Exception:  # not landed yet (ModuleNotFoundError / ConversionError)
        return None


def _standin_tflite(model, out_dir: Path) -> dict:
    """Fixed-batch (1), fixed-length (T) TFLite via tf.lite (used until converters.tflite lands)."""
    import tensorflow as tf

    ins = [keras.Input(batch_shape=(1, T) + tuple(t.shape[2:]), name=t.name, dtype=t.dtype) for t in model.inputs]
    fixed = keras.Model(ins, model(ins[0] if len(ins) == 1 else ins))
    data = tf.lite.TFLiteConverter.from_keras_model(fixed).convert()
    (out_dir / "model.tflite").write_bytes(data)
    return {"model.tflite": {
        "format": "tflite", "batch_size": 1,
        "inputs": [{"name": t.name, "shape": [1, T] + list(t.shape[2:]), "dtype": str(t.dtype)} for t in model.inputs],
        "outputs": [{"name": "output_0", "shape": [1] + list(model.outputs[0].shape[1:]), "dtype": "float32"}],
    }}


def export_folder(model, folder: Path, formats=("onnx", "tflite"), preprocessing=None) -> Path:
    """reference.keras + artifacts + manifest.json, like rnnedge.export does."""
    from converters.registry import ExportOptions

    folder.mkdir(parents=True, exist_ok=True)
    model.save(folder / "reference.keras")
    update_manifest(folder, artifacts={}, source={"kind": "test", "name": model.name},
                    preprocessing=preprocessing)
    for fmt in formats:
        exp = _real_exporter(fmt)
        if exp is not None:
            entries = exp(model, folder, ExportOptions(batch_size=1 if fmt == "tflite" else None))
        elif fmt == "tflite":
            entries = _standin_tflite(model, folder)
        else:
            pytest.skip(f"no {fmt} exporter yet")
        update_manifest(folder, artifacts=entries)
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    keras.utils.set_random_seed(0)
    root = tmp_path_factory.mktemp("validate")
    return {
        "forecast": export_folder(tiny_forecast(), root / "forecast",
                                  preprocessing={"kind": "window", "window": T, "scaler": {"mean": 3.0, "std": 2.0}}),
        "sentiment": export_folder(tiny_sentiment(), root / "sentiment",
                                   preprocessing={"kind": "text", "vocab_size": 30, "max_len": T, "padding": "post"}),
        "gru": export_folder(tiny_gru_classifier(), root / "gru", formats=("onnx",)),
    }


def _copy(folder: Path, tmp_path: Path) -> Path:
    dst = tmp_path / folder.name
    shutil.copytree(folder, dst)
    return dst


def _cli(args):
    from rnnedge.cli.validate import command

    return CliRunner().invoke(command, [str(a) for a in args])


# ---------------------------------------------------------------------------------------
# float artifacts pass, with real figures
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["forecast", "sentiment", "gru"])
def test_float_artifacts_pass(folders, tmp_path, name):
    from rnnedge.validation import validate

    d = _copy(folders[name], tmp_path)
    rep = validate(d, samples=12)
    arts = rep["artifacts"]
    assert "model.onnx" in arts and "reference.keras" not in arts
    assert rep["exit_code"] == 0, {n: r.get("message") for n, r in arts.items()}
    for n, row in arts.items():
        assert row["verdict"] == "pass", (n, row)
        assert len(row["outputs"]) == 1  # every output compared (one here)
        for out in row["outputs"].values():
            assert out["max_abs"] < 1e-5 and out["cosine"] > 0.99999
    onnx_row = arts["model.onnx"]
    assert onnx_row["seq_lens"] == [T, T // 2]  # free time axis: two lengths
    if "model.tflite" in arts:
        assert arts["model.tflite"]["batch"] == 1  # fixed batch: looped over samples
    if name != "forecast":
        out = next(iter(onnx_row["outputs"].values()))
        assert out["classifier"] in ("sigmoid", "softmax") and out["top1_agreement"] == 1.0
    # the figures are in the manifest
    man = load_manifest(d)
    assert man["artifacts"]["model.onnx"]["parity"]["verdict"] == "pass"
    assert "max_abs" in next(iter(man["artifacts"]["model.onnx"]["parity"]["outputs"].values()))


def test_inputs_are_realistic(folders):
    """Token ids inside the vocabulary, post-padded with random lengths; scaled smooth series."""
    from rnnedge.inputs import sample_inputs, specs_from_model

    m = keras.models.load_model(folders["sentiment"] / "reference.keras")
    specs = specs_from_model(m, {"kind": "text", "max_len": T})
    assert specs[0].kind == "tokens" and specs[0].vocab_size == 30  # from the Embedding
    x = sample_inputs(specs, 50, seed=1)["tokens"]
    assert x.shape == (50, T) and x.dtype == np.int32
    assert x.max() < 30 and (x[:, 0] > 0).all()
    lengths = (x > 0).sum(axis=1)
    assert len(set(lengths.tolist())) > 2 and lengths.max() == T
    for row, L in zip(x, lengths):  # post padding: zeros only after the tokens
        assert (row[:L] > 0).all() and (row[L:] == 0).all()
    m = keras.models.load_model(folders["forecast"] / "reference.keras")
    s = sample_inputs(specs_from_model(m, {"kind": "window", "window": T}), 20, seed=1)["series"]
    assert s.shape == (20, T, 1) and s.dtype == np.float32
    assert abs(float(s.mean())) < 1.0 and 0.2 < float(s.std()) < 3.0
    pre = sample_inputs(specs_from_model(keras.models.load_model(folders["sentiment"] / "reference.keras"),
                                         {"max_len": T, "padding": "pre"}), 20, seed=1)["tokens"]
    for row in pre:  # pre padding: zeros only before the tokens
        L = int((row > 0).sum())
        assert (row[T - L:] > 0).all() and (row[: T - L] == 0).all()
    # same seed, same inputs (every runtime sees the same data)
    again = sample_inputs(specs_from_model(m, {"kind": "window", "window": T}), 20, seed=1)["series"]
    np.testing.assert_array_equal(s, again)


def test_calibration_file_replaces_generated_inputs(folders, tmp_path):
    from rnnedge.validation import validate

    rng = np.random.default_rng(3)
    calib = tmp_path / "calib.npz"
    np.savez(calib, series=rng.normal(size=(10, 6, 1)).astype(np.float32))
    rep = validate(folders["forecast"], artifacts=["model.onnx"], samples=32, calibration=calib,
                   write_manifest=False)
    row = rep["artifacts"]["model.onnx"]
    assert row["verdict"] == "pass" and row["seq_lens"] == [6]  # the file's length only: nothing added
    assert row["samples"] == 10 and rep["inputs"]["source"] == "calibration"  # the file's 10 rows, not 32
    bad = tmp_path / "bad.npy"
    bad.write_bytes(b"not numpy")
    from rnnedge.errors import UsageError

    with pytest.raises(UsageError, match="bad.npy"):
        validate(folders["forecast"], calibration=bad)


# ---------------------------------------------------------------------------------------
# failures and errors
# ---------------------------------------------------------------------------------------
def test_perturbed_onnx_weight_fails(folders, tmp_path):
    d = _copy(folders["forecast"], tmp_path)
    perturb_onnx(d / "model.onnx")
    res = _cli([d, "--samples", "8"])
    assert res.exit_code == 1, res.output
    assert "model.onnx" in res.output and "fail" in res.output
    from rnnedge.validation import validate

    rep = validate(d, samples=8, write_manifest=False)
    row = rep["artifacts"]["model.onnx"]
    assert row["verdict"] == "fail" and "max abs error" in row["message"]
    assert any("sha256 differs" in n for n in row.get("notes", []))
    others = [r for n, r in rep["artifacts"].items() if n != "model.onnx"]
    assert others and all(r["verdict"] == "pass" for r in others)  # the rest validated


def test_corrupt_and_missing_files_are_error_rows(folders, tmp_path):
    from rnnedge.validation import validate

    d = _copy(folders["forecast"], tmp_path)
    tfl = d / "model.tflite"
    tfl.write_bytes(tfl.read_bytes()[: tfl.stat().st_size // 3])  # truncated
    man = load_manifest(d)
    man["artifacts"]["gone.onnx"] = dict(man["artifacts"]["model.onnx"])
    (d / "manifest.json").write_text(json.dumps(man))
    rep = validate(d, samples=8)
    arts = rep["artifacts"]
    assert arts["model.tflite"]["verdict"] == "error"
    assert arts["model.tflite"]["message"].startswith("error:") and "model.tflite" in arts["model.tflite"]["message"]
    assert arts["gone.onnx"]["verdict"] == "error" and "not found" in arts["gone.onnx"]["message"]
    assert arts["model.onnx"]["verdict"] == "pass"
    assert rep["exit_code"] == 1
    assert load_manifest(d)["artifacts"]["model.tflite"]["parity"]["verdict"] == "error"


def test_runtime_not_installed_is_an_error_row(folders, tmp_path, monkeypatch):
    import rnnedge.runtime.tflite as rt
    from rnnedge.errors import MissingDependencyError
    from rnnedge.validation import validate

    def missing(*a, **k):
        raise MissingDependencyError("LiteRT (ai_edge_litert)", "pip install ai-edge-litert")

    monkeypatch.setattr(rt, "_import_interpreter", missing)
    rep = validate(folders["forecast"], samples=4, write_manifest=False)
    row = rep["artifacts"]["model.tflite"]
    assert row["verdict"] == "error" and "not installed" in row["message"] and "ai-edge-litert" in row["message"]
    assert rep["artifacts"]["model.onnx"]["verdict"] == "pass" and rep["exit_code"] == 3  # missing runtime


def test_mismatched_input_name_is_an_error_row(folders, tmp_path):
    import onnx

    from rnnedge.validation import validate

    d = _copy(folders["forecast"], tmp_path)
    m = onnx.load(str(d / "model.onnx"))
    old = m.graph.input[0].name
    m.graph.input[0].name = "wrong_name"
    for node in m.graph.node:
        for i, x in enumerate(node.input):
            if x == old:
                node.input[i] = "wrong_name"
    onnx.save(m, str(d / "model.onnx"))
    rep = validate(d, artifacts=["model.onnx"], samples=8)
    row = rep["artifacts"]["model.onnx"]
    assert row["verdict"] == "error" and "wrong_name" in row["message"] and "series" in row["message"]
    assert rep["exit_code"] == 1


def test_tfjs_without_node_is_skipped(folders, tmp_path, monkeypatch):
    import rnnedge.validation as V

    d = _copy(folders["gru"], tmp_path)
    update_manifest(d, artifacts={"tfjs/model.json": {"format": "tfjs", "inputs": [], "outputs": []}})
    monkeypatch.setattr(V.shutil, "which", lambda name: None)
    rep = V.validate(d, samples=8)
    row = rep["artifacts"]["tfjs/model.json"]
    assert row["verdict"] == "skipped" and "node not found" in row["message"]
    assert rep["exit_code"] == 3 and rep["artifacts"]["model.onnx"]["verdict"] == "pass"  # missing runtime


@pytest.mark.node
def test_tfjs_artifact_validates_in_node(folders, tmp_path):
    if shutil.which("node") is None:
        pytest.skip("node not found")
    exp = _real_exporter("tfjs")
    if exp is None:
        pytest.skip("no tfjs exporter yet")
    from converters.registry import ExportOptions

    from rnnedge.validation import validate

    d = _copy(folders["forecast"], tmp_path)
    update_manifest(d, artifacts=exp(keras.models.load_model(d / "reference.keras"), d, ExportOptions()))
    names = [n for n, e in load_manifest(d)["artifacts"].items() if e.get("format") == "tfjs"]
    rep = validate(d, artifacts=names, samples=8)
    row = rep["artifacts"][names[0]]
    assert row["verdict"] == "pass", row
    assert row["precision"] == "float32-tfjs" and row["tolerance"]["atol"] == 1e-4
    assert next(iter(row["outputs"].values()))["max_abs"] < 1e-4


# ---------------------------------------------------------------------------------------
# CLI: exit codes and JSON
# ---------------------------------------------------------------------------------------
def test_cli_exit_codes_and_json(folders, tmp_path):
    d = _copy(folders["gru"], tmp_path)
    res = _cli([d, "--samples", "8", "--json", "-"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["artifacts"]["model.onnx"]["verdict"] == "pass" and doc["exit_code"] == 0
    out = tmp_path / "r.json"
    assert _cli([d, "-a", "model.onnx", "-n", "4", "--json", out]).exit_code == 0
    assert json.loads(out.read_text())["samples"] == 4
    # an impossible tolerance makes it fail (exit 1); a per-precision override is accepted
    assert _cli([d, "-n", "4", "--atol", "float32=0", "--rtol", "0"]).exit_code == 1
    # bad input: exit 2
    empty = tmp_path / "empty"
    empty.mkdir()
    res = _cli([empty])
    assert res.exit_code == 2 and "manifest.json" in res.output
    (d / "reference.keras").unlink()
    res = _cli([d])
    assert res.exit_code == 2 and "reference.keras" in res.output
    res = _cli([folders["gru"], "-a", "nope.onnx"])
    assert res.exit_code == 2 and "nope.onnx" in res.output


def test_tolerance_table_and_overrides():
    from rnnedge.validation import TOLERANCES, precision_of, tolerance_for

    assert TOLERANCES["float32"]["atol"] == 1e-5 and TOLERANCES["float32-tfjs"]["atol"] == 1e-4
    assert precision_of("model.int8.onnx", {"format": "onnx"}) == "int8"
    assert precision_of("tfjs/model.json", {"format": "tfjs"}) == "float32-tfjs"
    assert precision_of("model.fp16.tflite", {"format": "tflite", "precision": "fp16"}) == "fp16"
    assert tolerance_for("fp16", atol=0.5)["atol"] == 0.5
    assert tolerance_for("int8", atol={"fp16": 0.5})["atol"] == 0.1
    assert tolerance_for("int8", min_agreement=0.9)["min_agreement"] == 0.9
