"""`rnnedge demo`: the whole pipeline on a preset (shortened)."""
import json

import pytest
from click.testing import CliRunner

pytest.importorskip("keras")


def test_demo_forecast_end_to_end(tmp_path, monkeypatch):
    """As the README runs it: a relative output folder (every runtime, Node included, must
    find the files from wherever it runs)."""
    from rnnedge.cli import cli

    monkeypatch.chdir(tmp_path)
    out = tmp_path / "demo"
    r = CliRunner().invoke(cli, ["demo", "--preset", "forecast", "--epochs", "1", "--samples", "96", "--runs", "3",
                                 "-o", "demo", "--json"])
    assert r.exit_code == 0, r.output[-2000:]
    res = json.loads(r.stdout)  # JSON alone on stdout; warnings (one line each) go to stderr
    assert res["ok"] is True
    assert [s["step"] for s in res["steps"]] == ["train", "export", "quantize", "validate", "bench", "deploy", "verify"]
    arts = res["validation"]["artifacts"]
    for name in ("model.onnx", "model.tflite", "model.int8.onnx"):
        assert arts[name]["verdict"] == "pass", (name, arts[name])
    man = json.loads((out / "export" / "manifest.json").read_text())
    assert man["artifacts"]["model.onnx"]["parity"]
    assert (out / "bundle" / "predict.py").exists()
    assert {c["runtime"] for c in res["bench"]["cases"]} >= {"keras", "onnxruntime"}
