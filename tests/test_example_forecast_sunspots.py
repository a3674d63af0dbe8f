"""examples/forecast_sunspots.py --quick: the whole pipeline on the statsmodels sunspot series."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("keras")
sm = pytest.importorskip("statsmodels.api")

from conftest import run_example  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FLOAT = ("model.onnx", "model.ort", "model.tflite")
QUANTIZED = ("model.int8.onnx", "model.fp16.onnx", "model.dynamic.tflite", "model.fp16.tflite", "model.int8.tflite")
STEP = ("model.step.onnx", "model.step.tflite")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    p, out, summary = run_example("forecast_sunspots", tmp_path_factory.mktemp("sunspots"))
    assert p.returncode == 0, (p.stdout + p.stderr)[-4000:]
    return out, summary, p.stdout


@pytest.fixture(scope="module")
def sunspots():
    return sm.datasets.sunspots.load_pandas().data


def row(summary, artifact):
    rows = summary["task"]["rows"]
    return rows[next(k for k in rows if k.split(" ")[0] == artifact)]


def test_split_holds_out_the_last_30_years(run, sunspots):
    out, s, _ = run
    assert s["example"] == "forecast_sunspots" and s["ok"] is True
    d = s["data"]
    assert d["n"] == len(sunspots) == 309
    assert d["test_years"] == [1979, 2008] and d["n_test"] == 30
    # the training CSV stops before the first held-out year
    lines = Path(d["train_csv"]).read_text().splitlines()
    assert lines[0] == "YEAR,SUNACTIVITY" and len(lines) - 1 == 309 - 30
    assert int(lines[-1].split(",")[0]) == 1978
    # the scaler recorded for deployment comes from the training years (their fit part) only
    vs = yaml.safe_load((ROOT / "examples/specs/forecast_sunspots.yaml").read_text())["train"]["validation_split"]
    fit = sunspots.SUNACTIVITY.to_numpy()[:int(279 * (1 - vs))]
    assert d["scaler"]["mean"] == pytest.approx(fit.mean(), rel=1e-5)
    assert d["scaler"]["std"] == pytest.approx(fit.std(), rel=1e-5)


def test_naive_baseline_matches_the_data(run, sunspots):
    _, s, _ = run
    v = sunspots.SUNACTIVITY.to_numpy()
    err = v[-30:] - v[-31:-1]
    naive = s["task"]["rows"]["naive (t-1)"]
    assert naive["mae"] == pytest.approx(np.abs(err).mean(), abs=1e-4)
    assert naive["rmse"] == pytest.approx(np.sqrt((err ** 2).mean()), abs=1e-4)
    assert s["task"]["naive_mae"] == pytest.approx(np.abs(err).mean(), abs=1e-4)
    assert s["task"]["actual"] == pytest.approx(v[-30:].tolist())


def test_every_artifact_is_evaluated_and_agrees_with_keras(run):
    _, s, _ = run
    keras_mae = row(s, "reference.keras")["mae"]
    assert math.isfinite(keras_mae) and 0 < keras_mae < 200
    for name in FLOAT + STEP + ("tfjs",) * ("tfjs" in s["pipeline"]["artifacts"]):
        r = row(s, name)
        assert r["mae"] == pytest.approx(keras_mae, abs=1e-3), name
        assert r["mae"] <= r["rmse"]
    for name in QUANTIZED:
        assert row(s, name)["mae"] == pytest.approx(keras_mae, abs=1.0), name  # within one sunspot
    assert s["task"]["improvement_over_naive"] == pytest.approx(s["task"]["naive_mae"] / keras_mae)
    # the step model fed each window from a reset state computes the window model
    assert s["task"]["streaming_max_abs_diff_vs_keras"] < 1e-2
    # the shipped bundle (predict.py --stream) forecasts what model.tflite forecasts here
    assert s["task"]["bundle_max_abs_diff_vs_tflite"] < 1e-3


def test_parity_and_bundle(run):
    out, s, stdout = run
    p = s["pipeline"]
    assert [x["step"] for x in p["steps"]] == ["export", "quantize", "validate", "bench", "deploy", "verify"]
    verdicts = {n: a["verdict"] for n, a in p["validation"]["artifacts"].items()}
    assert set(FLOAT + QUANTIZED + STEP) <= set(verdicts)
    assert set(verdicts.values()) == {"pass"}, verdicts
    assert next(x for x in p["steps"] if x["step"] == "verify")["detail"] == "ok"
    # the bundle scales inputs with the same scaler the evaluation used
    pre = json.loads((Path(p["bundle"]) / "preprocess.json").read_text())
    assert pre["kind"] == "window" and pre["window"] == s["data"]["window"]
    assert pre["scaler"] == pytest.approx(s["data"]["scaler"])
    assert "held-out 1979-2008" in stdout


def test_onnx_model_independently(run, sunspots):
    """Recompute model.onnx's held-out MAE with onnxruntime directly, from the manifest's preprocessing."""
    import onnx
    import onnxruntime as ort

    out, s, _ = run
    exp = out / "export"
    assert "GRU" in [n.op_type for n in onnx.load(exp / "model.onnx").graph.node]
    pre = json.loads((exp / "manifest.json").read_text())["preprocessing"]
    v = sunspots.SUNACTIVITY.to_numpy().astype(np.float32)
    z = (v - pre["scaler"]["mean"]) / pre["scaler"]["std"]
    W = pre["window"]
    x = np.stack([z[t - W:t] for t in range(len(v) - 30, len(v))])[..., None].astype(np.float32)
    sess = ort.InferenceSession(str(exp / "model.onnx"), providers=["CPUExecutionProvider"])
    y = sess.run(None, {sess.get_inputs()[0].name: x})[0][:, 0] * pre["scaler"]["std"] + pre["scaler"]["mean"]
    assert row(s, "model.onnx")["mae"] == pytest.approx(np.abs(y - v[-30:]).mean(), abs=1e-3)
