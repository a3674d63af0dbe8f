"""rnnedge.quantization / `rnnedge quantize`: quantized artifacts, their manifest records, their parity."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

keras = pytest.importorskip("keras")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from rnnedge.manifest import load_manifest, update_manifest  # noqa: E402

T = 8


def _exporter(fmt):
    try:
        from converters.registry import get_exporter

        return get_exporter(fmt)
    except Exception:
        return None


def export_folder(model, folder: Path, formats=("onnx",), preprocessing=None) -> Path:
    from converters.registry import ExportOptions

    folder.mkdir(parents=True, exist_ok=True)
    model.save(folder / "reference.keras")
    update_manifest(folder, artifacts={}, source={"kind": "test", "name": model.name}, preprocessing=preprocessing)
    for fmt in formats:
        exp = _exporter(fmt)
        if exp is None:
            pytest.skip(f"no {fmt} exporter yet")
        update_manifest(folder, artifacts=exp(model, folder, ExportOptions(batch_size=1 if fmt == "tflite" else None)))
    return folder


def forecast_like(units=32):
    """The size test's model: LSTM(32, return_sequences) -> LSTM(32) -> Dense(1)."""
    inp = keras.Input((None, 1), name="series")
    x = keras.layers.LSTM(units, return_sequences=True)(inp)
    x = keras.layers.LSTM(units)(x)
    return keras.Model(inp, keras.layers.Dense(1)(x), name="forecast")


@pytest.fixture(scope="module")
def forecast_dir(tmp_path_factory):
    keras.utils.set_random_seed(0)
    d = tmp_path_factory.mktemp("q") / "forecast"
    return export_folder(forecast_like(), d, preprocessing={"kind": "window", "window": T,
                                                            "scaler": {"mean": 0.0, "std": 1.0}})


@pytest.fixture(scope="module")
def quantized_forecast(forecast_dir, tmp_path_factory):
    from rnnedge.quantization import quantize

    d = tmp_path_factory.mktemp("qf") / "forecast"
    shutil.copytree(forecast_dir, d)
    res = quantize(d, ["int8", "uint8", "fp16", "int8-static"], formats="onnx", calibration_samples=64)
    return d, res


def _ops(path):
    m = onnx.load(str(path))
    return {n.op_type for n in m.graph.node}


def test_onnx_modes_written_and_recorded(quantized_forecast):
    d, res = quantized_forecast
    assert set(res) == {"model.int8.onnx", "model.uint8.onnx", "model.fp16.onnx", "model.int8-static.onnx"}
    assert all("error" not in e for e in res.values()), res
    man = load_manifest(d)["artifacts"]
    float_size = (d / "model.onnx").stat().st_size
    for name in res:
        e = man[name]
        q = e["quantization"]
        assert (d / name).is_file() and e["format"] == "onnx" and e["precision"] == q["mode"]
        assert q["source"] == "model.onnx" and q["size_before"] == float_size
        assert q["size_after"] == (d / name).stat().st_size == e["size"]
        assert q["ratio"] == pytest.approx(q["size_after"] / float_size, abs=1e-4)
        assert e["inputs"][0]["name"] == "series"
    for name in ("model.int8.onnx", "model.uint8.onnx", "model.int8-static.onnx"):
        assert isinstance(man[name]["quantization"]["reduce_range"], bool)
        assert man[name]["quantization"]["reduce_range_reason"]


def test_int8_onnx_is_small_and_quantizes_the_lstms(quantized_forecast):
    d, res = quantized_forecast
    q = res["model.int8.onnx"]["quantization"]
    assert q["ratio"] <= 0.35, q
    assert q["quantized_ops"].get("DynamicQuantizeLSTM") == 2
    assert "DynamicQuantizeLSTM" in _ops(d / "model.int8.onnx") and "LSTM" not in _ops(d / "model.int8.onnx")
    assert q["weight_type"] == "QInt8" and res["model.uint8.onnx"]["quantization"]["weight_type"] == "QUInt8"


def test_fp16_loads_runs_and_is_smaller(quantized_forecast):
    import onnxruntime as ort

    d, res = quantized_forecast
    q = res["model.fp16.onnx"]["quantization"]
    assert q["ratio"] < 0.75 and q["keep_io_types"] is True
    sess = ort.InferenceSession(str(d / "model.fp16.onnx"), providers=["CPUExecutionProvider"])
    assert sess.get_inputs()[0].type == "tensor(float)"  # keep_io_types
    y = sess.run(None, {"series": np.zeros((2, 5, 1), np.float32)})[0]
    assert y.shape == (2, 1) and np.isfinite(y).all()


def test_static_qdq_stores_lstm_weights_int8_and_says_so(quantized_forecast):
    """onnxruntime's static QDQ has no LSTM handler: the LSTMs get weight-only int8 instead."""
    d, res = quantized_forecast
    q = res["model.int8-static.onnx"]["quantization"]
    assert q["method"].startswith("static QDQ") and q["calibration_samples"] == 64
    assert {"QuantizeLinear", "LSTM"} <= _ops(d / "model.int8-static.onnx")
    assert q["recurrent_weights"]["ops"] == ["LSTM"] and q["recurrent_weights"]["tensors"] == 4
    assert any("2 LSTM" in n and "int8" in n for n in q["notes"])


def test_quantized_forecast_validates(quantized_forecast):
    from rnnedge.validation import validate

    d, _ = quantized_forecast
    rep = validate(d, samples=16)
    arts = rep["artifacts"]
    assert rep["exit_code"] == 0, {n: r.get("message") for n, r in arts.items()}
    err = {n: r["outputs"]["dense"]["max_abs"] if "dense" in r["outputs"] else
           next(iter(r["outputs"].values()))["max_abs"] for n, r in arts.items()}
    assert err["model.onnx"] < 1e-5
    assert err["model.fp16.onnx"] < 1e-2
    assert 0 < err["model.int8.onnx"] < 1e-1 and 0 < err["model.uint8.onnx"] < 1e-1
    assert arts["model.int8.onnx"]["tolerance"]["atol"] == 0.1
    assert load_manifest(d)["artifacts"]["model.int8.onnx"]["parity"]["verdict"] == "pass"


# ---------------------------------------------------------------------------------------
# a trained classifier keeps its decisions
# ---------------------------------------------------------------------------------------
def _easy_classes(n, seed):
    """3 classes of 3-channel signals: which channel carries a rising ramp (+ noise)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=n)
    x = rng.normal(0, 0.3, size=(n, T, 3))
    ramp = np.linspace(0, 2, T)
    x[np.arange(n), :, y] += ramp
    return x.astype(np.float32), y


@pytest.mark.parametrize("cell", ["GRU", "LSTM"])
def test_trained_classifier_keeps_top1_after_int8(tmp_path, cell):
    from rnnedge.quantization import quantize
    from rnnedge.validation import validate

    keras.utils.set_random_seed(0)
    inp = keras.Input((None, 3), name="signal")
    x = getattr(keras.layers, cell)(16)(inp)
    model = keras.Model(inp, keras.layers.Dense(3, activation="softmax")(x), name=f"{cell.lower()}_clf")
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    xt, yt = _easy_classes(400, 0)
    model.fit(xt, yt, epochs=6, batch_size=32, verbose=0)
    xv, yv = _easy_classes(200, 1)
    assert (model.predict(xv, verbose=0).argmax(-1) == yv).mean() > 0.9  # it learned
    d = export_folder(model, tmp_path / cell)
    res = quantize(d, ["int8", "uint8"], formats="onnx")
    assert "MatMulInteger" in res["model.int8.onnx"]["quantization"]["quantized_ops"]
    rep = validate(d, samples=200, calibration={"signal": xv})
    for name in ("model.int8.onnx", "model.uint8.onnx"):
        out = rep["artifacts"][name]["outputs"]["dense"] if "dense" in rep["artifacts"][name]["outputs"] else \
            next(iter(rep["artifacts"][name]["outputs"].values()))
        assert out["classifier"] == "softmax" and out["judged_by"] == "top1_agreement"
        assert out["top1_agreement"] >= 0.98, out
        assert rep["artifacts"][name]["verdict"] == "pass"


# ---------------------------------------------------------------------------------------
# TFLite modes (need converters.tflite.quantize_tflite)
# ---------------------------------------------------------------------------------------
def test_tflite_modes(forecast_dir, tmp_path):
    try:
        from rnnedge.quantization import _find_quantize_tflite

        _find_quantize_tflite()
    except Exception as e:
        pytest.skip(f"converters.tflite has no quantize function yet: {e}")
    if _exporter("tflite") is None:
        pytest.skip("no tflite exporter yet")
    from rnnedge.quantization import quantize
    from rnnedge.validation import validate

    d = tmp_path / "f"
    shutil.copytree(forecast_dir, d)
    keras_model = keras.models.load_model(d / "reference.keras")
    update_manifest(d, artifacts=_exporter("tflite")(keras_model, d, __import__(
        "converters.registry", fromlist=["ExportOptions"]).ExportOptions(batch_size=1)))
    res = quantize(d, ["dynamic", "fp16", "int8"], formats="tflite", calibration_samples=32)
    for name in ("model.dynamic.tflite", "model.fp16.tflite", "model.int8.tflite"):
        assert "error" not in res[name], res[name]
        q = res[name]["quantization"]
        assert q["source"] == "model.tflite" and q["size_after"] == (d / name).stat().st_size
        assert q["ratio"] <= 1.0 if name == "model.dynamic.tflite" else q["ratio"] < 0.8
    assert res["model.int8.tflite"]["quantization"]["calibration_samples"] == 32
    rep = validate(d, samples=8, artifacts=list(res))
    assert all(r["verdict"] == "pass" for r in rep["artifacts"].values()), rep["artifacts"]


# ---------------------------------------------------------------------------------------
# choices, bad input, CLI
# ---------------------------------------------------------------------------------------
def test_reduce_range_follows_the_cpu():
    from rnnedge.quantization import default_reduce_range

    assert default_reduce_range("x86_64", "flags\t: fpu sse avx2 fma\n")[0] is True
    assert default_reduce_range("x86_64", "flags\t: fpu avx2 avx512f avx512_vnni\n")[0] is False
    assert default_reduce_range("x86_64", "flags\t: fpu avx2 avx_vnni\n")[0] is False
    assert default_reduce_range("aarch64", "")[0] is False


def _cli(args):
    from rnnedge.cli.quantize import command

    return CliRunner().invoke(command, [str(a) for a in args])


def test_cli(forecast_dir, tmp_path):
    d = tmp_path / "f"
    shutil.copytree(forecast_dir, d)
    res = _cli([d, "--mode", "int8", "--format", "onnx", "--per-channel"])
    assert res.exit_code == 0, res.output
    assert "model.int8.onnx" in res.output
    assert load_manifest(d)["artifacts"]["model.int8.onnx"]["quantization"]["per_channel"] is True
    res = _cli([d, "--mode", "int4"])
    assert res.exit_code == 2 and "int4" in res.output
    res = _cli([d, "--mode", "dynamic", "--format", "onnx"])
    assert res.exit_code == 2 and "--mode int8" in res.output
    empty = tmp_path / "empty"
    empty.mkdir()
    res = _cli([empty, "--mode", "int8"])
    assert res.exit_code == 2 and "manifest.json" in res.output
    # only ONNX exported: an explicit tflite request is bad input
    res = _cli([d, "--mode", "fp16", "--format", "tflite"])
    assert res.exit_code == 2 and "tflite" in res.output


@pytest.mark.filterwarnings("ignore:model.int8.onnx is:RuntimeWarning")  # LSTM(4): not smaller, said loudly
def test_export_quantize_goes_through_rnnedge_quantize(tmp_path):
    """`export --quantize` writes the same variants `rnnedge quantize` does, ONNX included, and
    validates them; a mode that exists for no asked format is refused."""
    from rnnedge.cli import cli

    src = tmp_path / "m.keras"
    forecast_like(units=4).save(src)
    out = tmp_path / "exp"
    r = CliRunner().invoke(cli, ["export", str(src), "-f", "onnx", "--quantize", "int8,fp16", "-o", str(out)])
    assert r.exit_code == 0, r.output
    arts = load_manifest(out)["artifacts"]
    for name, mode in (("model.int8.onnx", "int8"), ("model.fp16.onnx", "fp16")):
        assert arts[name]["quantization"]["mode"] == mode
        assert arts[name]["parity"]["verdict"] == "pass", arts[name]["parity"]
    r = CliRunner().invoke(cli, ["export", str(src), "-f", "onnx", "--quantize", "dynamic", "-o", str(tmp_path / "x")])
    assert r.exit_code == 2 and "does not apply to onnx" in r.output, r.output


# ---------------------------------------------------------------------------------------
# GRU and SimpleRNN in int8: weight-only int8 in ONNX (DequantizeLinear) and TFLite (DEQUANTIZE
# inside the WHILE body), a third of the float file, parity at the int8 tolerance
# ---------------------------------------------------------------------------------------
RECURRENT_INT8 = {  # big enough for weights to dominate the file (a WHILE graph is ~7-10 KB)
    "gru": lambda: keras.Sequential([keras.Input((None, 8), name="signal"), keras.layers.GRU(128),
                                     keras.layers.Dense(2)], name="gru_reg"),
    "rnn": lambda: keras.Sequential([keras.Input((None, 1), name="values"), keras.layers.SimpleRNN(192),
                                     keras.layers.Dense(1)], name="rnn_reg"),
}
RECURRENT_OP = {"gru": "GRU", "rnn": "RNN"}


@pytest.fixture(scope="module")
def recurrent_int8(tmp_path_factory):
    """{kind: (folder, quantize results, validate report)} for a GRU and a SimpleRNN regressor
    exported to ONNX, ORT and TFLite and quantized to int8."""
    from rnnedge.quantization import quantize
    from rnnedge.validation import validate

    out = {}
    for kind, make in RECURRENT_INT8.items():
        keras.utils.set_random_seed(0)
        d = export_folder(make(), tmp_path_factory.mktemp("rq") / kind, formats=("onnx", "ort", "tflite"))
        res = quantize(d, ["int8"])
        out[kind] = (d, res, validate(d, samples=16))
    return out


def _onnx_producers(path):
    m = onnx.load(str(path))
    return m, {o: n for n in m.graph.node for o in n.output}, {t.name: t for t in m.graph.initializer}


@pytest.mark.parametrize("kind", list(RECURRENT_INT8))
def test_onnx_int8_gru_and_rnn_weights_are_int8_dequantized_per_output_channel(recurrent_int8, kind):
    from onnx import TensorProto, numpy_helper

    d, res, _ = recurrent_int8[kind]
    assert "error" not in res["model.int8.onnx"], res["model.int8.onnx"]
    ratio = (d / "model.int8.onnx").stat().st_size / (d / "model.onnx").stat().st_size
    assert ratio <= 0.35, ratio
    assert res["model.int8.onnx"]["quantization"]["ratio"] == pytest.approx(ratio, abs=1e-4)
    m, producer, inits = _onnx_producers(d / "model.int8.onnx")
    q = res["model.int8.onnx"]["quantization"]
    if kind == "rnn":  # SimpleRNN(192) is lowered to MatMul + Scan (converters.onnx.recurrent)
        scan = [n for n in m.graph.node if n.op_type == "Scan"]
        assert len(scan) == 1 and not any(n.op_type == "RNN" for n in m.graph.node)
        body = next(a.g for a in scan[0].attribute if a.name == "body")
        assert not any(t.data_type == TensorProto.FLOAT and np.prod(t.dims) >= 256 for t in body.initializer)
        # the step's recurrent weight R^T [H, H] is read from the main graph's DequantizeLinear
        dq = [producer[i] for n in body.node for i in n.input if i in producer]
        assert [x.op_type for x in dq] == ["DequantizeLinear"]
        qt = inits[dq[0].input[0]]
        assert qt.data_type == TensorProto.INT8 and list(qt.dims) == [192, 192]
        assert q["recurrent_weights"]["ops"] and all(o.startswith("Scan/") for o in q["recurrent_weights"]["ops"])
        assert any(n.op_type == "MatMulInteger" for n in m.graph.node)  # the hoisted input projection
        big_float = [t.name for t in m.graph.initializer
                     if t.data_type == TensorProto.FLOAT and len(t.dims) >= 2 and np.prod(t.dims) >= 256]
        assert big_float == []
        return
    rec = [n for n in m.graph.node if n.op_type == RECURRENT_OP[kind]]
    assert len(rec) == 1  # still the native op, computed in float32
    hidden = next(a.i for a in rec[0].attribute if a.name == "hidden_size")
    gates = 3
    for idx, k in ((1, 8), (2, hidden)):  # W [1, G*H, I], R [1, G*H, H]
        dq = producer[rec[0].input[idx]]
        assert dq.op_type == "DequantizeLinear" and next(a.i for a in dq.attribute if a.name == "axis") == 1
        qt, scale = inits[dq.input[0]], numpy_helper.to_array(inits[dq.input[1]])
        assert qt.data_type == TensorProto.INT8 and list(qt.dims) == [1, gates * hidden, k]
        assert scale.shape == (gates * hidden,) and (scale > 0).all() and np.unique(scale).size > 1
    big_float = [t.name for t in m.graph.initializer
                 if t.data_type == TensorProto.FLOAT and len(t.dims) >= 2 and np.prod(t.dims) >= 256]
    assert big_float == [rec[0].input[3]]  # only the bias B [1, 2*G*H] stays float32
    assert q["recurrent_weights"]["ops"] == [RECURRENT_OP[kind]] and q["recurrent_weights"]["tensors"] == 2
    assert any(RECURRENT_OP[kind] in n and "int8" in n for n in q["notes"])


@pytest.mark.parametrize("kind", list(RECURRENT_INT8))
def test_tflite_int8_gru_and_rnn_keep_the_while_loop_with_int8_weights(recurrent_int8, kind):
    from converters.tflite.weights import weight_bytes
    from rnnedge.tflite_compat import list_ops

    d, res, _ = recurrent_int8[kind]
    e = res["model.int8.tflite"]
    assert "error" not in e, e
    float_bytes = (d / "model.tflite").read_bytes()
    ratio = (d / "model.int8.tflite").stat().st_size / len(float_bytes)
    assert ratio <= 0.35, ratio
    ops = {(o["name"], o["version"]) for o in list_ops(d / "model.int8.tflite")}
    names = {n for n, _ in ops}
    assert "WHILE" in names and ("DEQUANTIZE", 5) in ops  # not unrolled; per-channel int8 weights
    assert sum(1 for o in list_ops(d / "model.int8.tflite") if o["name"] == "FULLY_CONNECTED") == \
        sum(1 for o in list_ops(float_bytes) if o["name"] == "FULLY_CONNECTED")
    wb, fb = weight_bytes((d / "model.int8.tflite").read_bytes()), weight_bytes(float_bytes)["float32"]
    assert wb["int8"] >= 0.24 * fb and wb.get("float32", 0) <= 0.02 * fb, (wb, fb)  # float: zero states
    q = e["quantization"]
    assert q["method"] == "weight-only int8" and q["weights_rewritten"]["int8_dequantize"] >= 2
    assert e["compat"]["tflite_runtime_2_14"] is True
    assert any("WHILE loop kept" in n for n in q["notes"])


@pytest.mark.parametrize("kind", list(RECURRENT_INT8))
def test_int8_gru_and_rnn_pass_validate_at_the_int8_tolerance(recurrent_int8, kind):
    from rich.console import Console

    from rnnedge.cli.validate import render

    d, res, rep = recurrent_int8[kind]
    for name in ("model.int8.onnx", "model.int8.ort", "model.int8.tflite"):
        row = rep["artifacts"][name]
        assert row["verdict"] == "pass", (name, row.get("message"))
        assert row["tolerance"] == {"atol": 0.1, "rtol": 0.1}  # a regression output: no top-1 here
        (out,) = row["outputs"].values()
        assert out["judged_by"] == "atol/rtol" and 1e-5 < out["max_abs"] < 0.1, out  # really quantized
    assert res["model.int8.ort"]["quantization"]["ratio"] <= 0.4
    console = Console(record=True, width=200)
    render(rep, console)
    text = console.export_text()
    assert "model.int8.tflite" in text and "0.1/0.1" in text and "top-1>=" not in text


def _scale_onnx_weight(path, factor):
    from onnx import numpy_helper

    m, _, inits = _onnx_producers(path)
    s = next(t for n, t in inits.items() if n.endswith(("/R_scale", "/R_T_scale")))
    s.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(s) * np.float32(factor), s.name))
    onnx.save(m, str(path))


def _scale_tflite_weight(path, factor):
    from tensorflow.lite.tools import flatbuffer_utils as fbu

    m = fbu.read_model(str(path))
    t = max((t for sg in m.subgraphs for t in sg.tensors if t.quantization is not None and t.quantization.scale
             is not None and len(t.quantization.scale) > 1), key=lambda t: int(np.prod(t.shape)))
    t.quantization.scale = [float(x) * factor for x in t.quantization.scale]
    fbu.write_model(m, str(path))


@pytest.mark.parametrize("kind", list(RECURRENT_INT8))
def test_wrongly_scaled_int8_weight_fails_validate(recurrent_int8, kind, tmp_path):
    """The gate's twin: the same files with the recurrent weights' scales 3x too large fail."""
    from rnnedge.validation import validate

    d = tmp_path / kind
    shutil.copytree(recurrent_int8[kind][0], d)
    _scale_onnx_weight(d / "model.int8.onnx", 3.0)
    _scale_tflite_weight(d / "model.int8.tflite", 3.0)
    rep = validate(d, artifacts=["model.int8.onnx", "model.int8.tflite"], samples=16)
    for name in ("model.int8.onnx", "model.int8.tflite"):
        assert rep["artifacts"][name]["verdict"] == "fail", (name, rep["artifacts"][name]["outputs"])
        assert "max abs error" in rep["artifacts"][name]["message"]


def test_weight_only_tflite_int8_runs_in_tflite_runtime_214(recurrent_int8, tmp_path):
    """tflite-runtime 2.14 (Raspberry Pi OS) loads the weight-only files (DEQUANTIZE v5,
    FULLY_CONNECTED v1) and gives LiteRT's result."""
    import os
    import subprocess

    from test_tflite_legacy import PY214, RUNNER

    from rnnedge.tflite_compat import make_interpreter, run_interpreter

    if not PY214.exists():
        pytest.skip(f"legacy tflite-runtime 2.14 venv not found at {PY214}")
    job, want = {}, {}
    for kind, (d, _, _) in recurrent_int8.items():
        x = np.random.default_rng(0).uniform(-1, 1, (1, 7, 8 if kind == "gru" else 1)).astype(np.float32)
        np.save(tmp_path / f"{kind}.x.npy", x)
        job[kind] = {"path": str(d / "model.int8.tflite"), "x": str(tmp_path / f"{kind}.x.npy"),
                     "y": str(tmp_path / f"{kind}.y.npy")}
        want[kind] = run_interpreter(make_interpreter(d / "model.int8.tflite")[0], [x])[0]
    (tmp_path / "job.json").write_text(__import__("json").dumps(job))
    (tmp_path / "run.py").write_text(RUNNER)
    p = subprocess.run([str(PY214), str(tmp_path / "run.py"), str(tmp_path / "job.json")], capture_output=True,
                       text=True, timeout=300, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert p.returncode == 0, p.stderr[-2000:]
    for kind in recurrent_int8:
        got, again = np.load(tmp_path / f"{kind}.y.npy")  # two invokes (the runner's repeat check)
        np.testing.assert_allclose(got, want[kind], atol=1e-5)
        assert np.array_equal(got, again)


# ---------------------------------------------------------------------------------------
# never a silent "quantized" file: nothing 8-bit -> not written; not smaller -> loud warning
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((None, 1), name="values"), keras.layers.SimpleRNN(3),
                          keras.layers.Dense(1)], name="tiny")
    return export_folder(m, tmp_path_factory.mktemp("tiny") / "t", formats=("onnx", "tflite"))


def test_file_without_8bit_weights_is_not_written(tiny_dir, tmp_path):
    d = tmp_path / "t"
    shutil.copytree(tiny_dir, d)
    r = _cli([d, "--mode", "dynamic", "--format", "tflite"])
    assert r.exit_code == 1, r.output
    assert "model.dynamic.tflite not written" in " ".join(r.output.split()) and "8 bits" in r.output
    assert not (d / "model.dynamic.tflite").exists()
    assert "model.dynamic.tflite" not in load_manifest(d)["artifacts"]
    # ONNX: a bare SimpleRNN(2) (6 + 4 weights, no MatMul): nothing 8-bit, nothing written
    keras.utils.set_random_seed(0)
    bare = export_folder(keras.Sequential([keras.Input((None, 3)), keras.layers.SimpleRNN(2)], name="bare"),
                         tmp_path / "bare")
    r = _cli([bare, "--mode", "int8", "--format", "onnx"])
    assert r.exit_code == 1 and "model.int8.onnx not written" in " ".join(r.output.split()), r.output
    assert not (bare / "model.int8.onnx").exists()


def test_bigger_file_warns_loudly_with_the_reason(tiny_dir, tmp_path):
    d = tmp_path / "t"
    shutil.copytree(tiny_dir, d)
    r = _cli([d, "--mode", "int8", "--format", "onnx"])
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())
    assert "warning: model.int8.onnx is" in text and "not smaller" in text and "KiB" in text, text
    q = load_manifest(d)["artifacts"]["model.int8.onnx"]["quantization"]
    assert q["ratio"] >= 1.0 and "still float32" in q["warning"] and "RNN" in q["warning"]
    with pytest.warns(RuntimeWarning, match="not smaller"):  # the Python API says it too
        from rnnedge.quantization import quantize

        quantize(d, ["int8"], formats="onnx")


def test_trained_gru_classifier_keeps_top1_in_every_8bit_artifact(tmp_path):
    """The gru-classifier preset, trained briefly: every 8-bit ONNX / ORT / TFLite file agrees
    with Keras on >= 98% of held-out inputs (another seed of the preset's own data)."""
    from rnnedge.data import make_dataset
    from rnnedge.exporting import export
    from rnnedge.spec import load_spec
    from rnnedge.training import train

    res = train("gru-classifier", epochs=4, out=tmp_path / "gc.keras", early_stopping=0)
    held = make_dataset(load_spec("gru-classifier"), seed=12345, samples=200)
    xv, yv = held.x["signal"], held.y
    assert (res.model.predict(xv, verbose=0).argmax(-1) == yv).mean() > 0.6  # it learned (4 classes; ~0.78)
    with pytest.warns(RuntimeWarning, match="tflite-runtime 2.14"):  # dynamic-range: FULLY_CONNECTED v12
        ex = export(res.path, ["onnx", "ort", "tflite"], tmp_path / "exp", validate=False,
                    quantize=["int8", "uint8", "dynamic"])
    from rnnedge.validation import validate

    rep = validate(ex.out_dir, samples=200, calibration={"signal": xv})
    eight_bit = {n: r for n, r in rep["artifacts"].items() if r.get("precision") in ("int8", "uint8", "dynamic")}
    assert set(eight_bit) == {"model.int8.onnx", "model.uint8.onnx", "model.int8.ort", "model.uint8.ort",
                              "model.int8.tflite", "model.dynamic.tflite"}
    for name, row in eight_bit.items():
        (out,) = row["outputs"].values()
        assert out["judged_by"] == "top1_agreement" and out["top1_agreement"] >= 0.98, (name, out)
        assert row["verdict"] == "pass" and row["tolerance"]["min_agreement"] == 0.98
        assert out["max_abs"] > 0  # not the float file again


def test_full_int8_of_a_free_length_says_the_length_it_fixed(tmp_path):
    """Full-integer TFLite needs a fixed length: a free-length model gets 32 (not the short length
    generated inputs default to), and `rnnedge quantize` says so at the terminal (a user feeding
    another length would otherwise only learn it from a refused input)."""
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((None, 4), name="x"), keras.layers.Conv1D(4, 3, padding="causal"),
                          keras.layers.LSTM(6), keras.layers.Dense(1)], name="conv_lstm")
    d = export_folder(m, tmp_path / "c", formats=("tflite",))
    r = _cli([d, "--mode", "int8", "--format", "tflite"])
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())
    assert "model.int8.tflite: sequence length fixed to 32" in text, text
    e = load_manifest(d)["artifacts"]["model.int8.tflite"]
    assert e["seq_len"] == 32 and [i["shape"][1] for i in e["inputs"]] == [32]
    assert "sequence length fixed to 32" in e["warning"]
    assert load_manifest(d)["artifacts"]["model.tflite"]["inputs"][0]["shape"][1] is None  # float stays free
