"""examples/textgen_chars.py --quick: the whole pipeline on a tiny character model (plumbing only).

Asserts what the script wrote: the held-out metrics per artifact (sane bits per character,
float artifacts equal to Keras), the baselines, generated text from both step models, the
latency figures, parity verdicts, the verified bundle and the ops of model.onnx.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("ai_edge_litert")

from conftest import run_example  # noqa: E402



@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return run_example("textgen_chars", tmp_path_factory.mktemp("textgen_chars"))


def test_script_succeeds_and_writes_summary(run):
    p, out, summary = run
    assert p.returncode == 0, (p.stdout + p.stderr)[-4000:]
    assert summary is not None
    assert summary["example"] == "textgen_chars" and summary["ok"] is True
    d = summary["data"]
    assert d["quick"] is True and d["train_chars"] > 8 * d["test_chars"] > 0
    assert 30 <= d["vocab_size"] <= 63
    # the training text on disk is exactly the training part (the held-out part is not in it)
    assert len((out / "train.txt").read_text()) == d["train_chars"]
    assert "held-out text" in p.stdout and "bits/char" in p.stdout


def test_held_out_metrics_per_artifact(run):
    _, _, summary = run
    task = summary["task"]
    base = task["baselines"]
    V = summary["data"]["vocab_size"]
    assert base["uniform_bpc"] == pytest.approx(math.log2(V))
    assert 2.0 < base["unigram_bpc"] < base["uniform_bpc"]     # letter frequencies beat uniform
    arts = task["artifacts"]
    for name in ("reference.keras", "model.onnx", "model.ort", "model.tflite", "model.int8.onnx",
                 "model.int8.tflite", "model.dynamic.tflite"):
        assert name in arts, sorted(arts)
        m = arts[name]
        assert "error" not in m, m
        assert 0 < m["bpc"] < 8 and 0 <= m["accuracy"] <= 1 and m["chars"] > 1000
    ref = arts["reference.keras"]
    assert ref["runtime"] == "keras" and arts["model.onnx"]["runtime"] == "onnxruntime"
    for name in ("model.onnx", "model.ort", "model.tflite"):           # float artifacts = Keras
        assert arts[name]["bpc"] == pytest.approx(ref["bpc"], abs=1e-3)
    assert task["beats_unigram"] == (ref["bpc"] < base["unigram_bpc"])


def test_samples_and_latency(run):
    _, _, summary = run
    task = summary["task"]
    assert set(task["samples"]) == {"onnx", "tflite"}
    for runtime, by_t in task["samples"].items():
        assert set(by_t) == {"0.2", "0.5", "1.0"}
        for text in by_t.values():
            assert len(text) == 60
    for k in ("onnx", "tflite"):
        lat = task["latency"][k]
        assert lat["streaming_ms_per_char"] > 0 and lat["full_window_ms_per_char"] > 0
        assert lat["window"] == summary["train"]["window"]


def test_pipeline_parity_bundle_and_onnx_ops(run):
    _, out, summary = run
    pipe = summary["pipeline"]
    assert [s["step"] for s in pipe["steps"]] == ["export", "quantize", "validate", "bench", "deploy", "verify"]
    val = pipe["validation"]
    for name in ("model.onnx", "model.tflite", "model.step.onnx", "model.step.tflite"):
        assert val[name]["verdict"] == "pass", val
    assert all(v["verdict"] == "pass" for v in val.values()), val
    assert pipe["validation_exit_code"] == 0
    assert {c["runtime"] for c in pipe["bench"]} >= {"onnxruntime", "litert"}
    bundle = Path(pipe["bundle"])
    assert bundle.is_dir() and (out / "bundle").exists()
    from rnnedge import verify

    assert verify(bundle).ok
    import onnx

    ops = {n.op_type for n in onnx.load(str(out / "export" / "model.onnx")).graph.node}
    assert {"Gather", "LSTM", "Softmax"} <= ops and "Loop" not in ops, ops
    step_ops = {n.op_type for n in onnx.load(str(out / "export" / "model.step.onnx")).graph.node}
    assert "LSTM" in step_ops and "Loop" not in step_ops, step_ops
    man = json.loads((out / "export" / "manifest.json").read_text())
    pre = man["preprocessing"]
    assert pre["kind"] == "chars" and len(pre["vocab"]) == summary["data"]["vocab_size"]
