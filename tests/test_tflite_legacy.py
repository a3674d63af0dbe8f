"""Float32 TFLite exports run in tflite-runtime 2.14 (the last release; Raspberry Pi OS + pip),
and give the same result on a second invoke with no reset.

Needs the legacy venv made by ``.ci/tflite_runtime_legacy.sh`` (python3.11, numpy<2,
tflite-runtime==2.14.0); its python is ``$RNNEDGE_TFLITE214_PY`` or ``<repo>/.venv-tflite214/bin/python``.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
PY214 = Path(os.environ.get("RNNEDGE_TFLITE214_PY", REPO / ".venv-tflite214" / "bin" / "python"))

RUNNER = r"""
import json, sys
import numpy as np
from tflite_runtime.interpreter import Interpreter
import tflite_runtime
job = json.load(open(sys.argv[1]))
out = {"version": tflite_runtime.__version__}
for name, spec in job.items():
    if spec.get("load_only"):
        try:
            Interpreter(model_path=spec["path"], num_threads=1)
            out[name] = "loaded"
        except Exception as e:
            out[name] = str(e).splitlines()[0]
        continue
    it = Interpreter(model_path=spec["path"], num_threads=1)
    x = np.load(spec["x"])
    d = it.get_input_details()[0]
    it.resize_tensor_input(d["index"], list(x.shape), strict=False)
    it.allocate_tensors()
    it.set_tensor(d["index"], x.astype(d["dtype"]))
    it.invoke()
    y = it.get_tensor(it.get_output_details()[0]["index"]).copy()
    it.invoke()  # again, no reset: a stateless file gives the same
    np.save(spec["y"], np.stack([y, it.get_tensor(it.get_output_details()[0]["index"])]))
print(json.dumps(out))
"""


def test_float32_exports_match_keras_in_tflite_runtime_214(tmp_path):
    if not PY214.exists():
        pytest.skip(f"legacy tflite-runtime 2.14 venv not found at {PY214}: run .ci/tflite_runtime_legacy.sh "
                    f"(or set RNNEDGE_TFLITE214_PY)")
    keras = pytest.importorskip("keras")
    from converters.registry import ExportOptions, get_exporter

    L = keras.layers
    keras.utils.set_random_seed(0)
    models = {
        "lstm": keras.Sequential([keras.Input((None, 3)), L.LSTM(4), L.Dense(2)]),
        "gru": keras.Sequential([keras.Input((None, 3)), L.GRU(4), L.Dense(2)]),
        # fused LSTMs whose zero state is written by FILL on every invoke (converters.tflite.rewrite)
        "bilstm": keras.Sequential([keras.Input((None, 3)), L.Bidirectional(L.LSTM(4, return_sequences=True)),
                                    L.LSTM(4)]),
        "masked_bilstm": keras.Sequential([keras.Input((None,), dtype="int32"), L.Embedding(12, 3, mask_zero=True),
                                           L.Bidirectional(L.LSTM(4)), L.Dense(1, activation="sigmoid")]),
    }
    rng = np.random.default_rng(0)
    job, refs = {}, {}
    for name, m in models.items():
        d = tmp_path / name
        e = get_exporter("tflite")(m, d, ExportOptions())["model.tflite"]
        assert e["compat"]["tflite_runtime_2_14"] is True
        T = e["seq_len"] or 7
        if name == "masked_bilstm":
            x = rng.integers(1, 12, size=(1, T)).astype("int32")
            x[:, -2:] = 0
        else:
            x = rng.uniform(-1, 1, size=(1, T, 3)).astype("float32")
        np.save(d / "x.npy", x)
        refs[name] = np.asarray(m(x, training=False))
        job[name] = {"path": str(d / "model.tflite"), "x": str(d / "x.npy"), "y": str(d / "y.npy")}
    # dynamic-range from TF 2.21 (FULLY_CONNECTED v12): the compat check says 2.14 refuses it
    big = keras.Sequential([keras.Input((None, 3)), L.GRU(8), L.Dense(200)])
    q = get_exporter("tflite")(big, tmp_path / "dyn", ExportOptions(quantize=["dynamic"]))
    predicted = {n: e["compat"]["tflite_runtime_2_14"] for n, e in q.items()}
    for n in q:
        job[f"load:{n}"] = {"path": str(tmp_path / "dyn" / n), "load_only": True}
    (tmp_path / "job.json").write_text(json.dumps(job))
    (tmp_path / "run.py").write_text(RUNNER)
    p = subprocess.run([str(PY214), str(tmp_path / "run.py"), str(tmp_path / "job.json")],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    res = json.loads(p.stdout.strip().splitlines()[-1])
    assert res["version"] == "2.14.0"
    assert predicted == {"model.tflite": True, "model.dynamic.tflite": False}
    assert res["load:model.tflite"] == "loaded"
    assert "FULLY_CONNECTED" in res["load:model.dynamic.tflite"]  # the measured table was right
    for name in models:
        got, again = np.load(tmp_path / name / "y.npy")
        assert np.max(np.abs(got - refs[name])) <= 1e-5, name
        assert np.array_equal(got, again), name
