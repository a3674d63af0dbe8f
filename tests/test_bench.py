"""`rnnedge bench` / rnnedge.benchmarking: ONNX + TFLite + Keras in one call, the result schema,
CSV/PNG/JSON files, generated inputs, and the refusal of an unavailable provider."""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from rnnedge import benchmarking as B
from rnnedge.errors import MissingDependencyError, UsageError

T, F, H, OUT, TFL_BATCH = 6, 3, 4, 2, 2


def _native_lstm_onnx(path, *, f=F, h=H, out=OUT, seed=0):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    W = rng.normal(0, 0.3, (1, 4 * h, f)).astype(np.float32)
    R = rng.normal(0, 0.3, (1, 4 * h, h)).astype(np.float32)
    Wd = rng.normal(0, 0.3, (h, out)).astype(np.float32)
    nodes = [helper.make_node("Transpose", ["feats"], ["xt"], perm=[1, 0, 2]),
             helper.make_node("LSTM", ["xt", "W", "R"], ["Y", "Y_h"], hidden_size=h, name="lstm"),
             helper.make_node("Squeeze", ["Y_h", "ax0"], ["hl"]),
             helper.make_node("MatMul", ["hl", "Wd"], ["head"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("feats", TensorProto.FLOAT, ["batch", "time", f])],
                          [helper.make_tensor_value_info("head", TensorProto.FLOAT, ["batch", out])],
                          [numpy_helper.from_array(a, n) for a, n in
                           [(W, "W"), (R, "R"), (Wd, "Wd"), (np.array([0], np.int64), "ax0")]])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 10
    onnx.save(m, str(path))


def _token_onnx(path, vocab):
    """tokens (int64 [batch, time]) -> Gather from a (vocab, 2) table -> mean over time.
    onnxruntime fails on an id >= vocab, so the bench must respect the manifest's vocab_size."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    table = np.arange(vocab * 2, dtype=np.float32).reshape(vocab, 2)
    nodes = [helper.make_node("Gather", ["table", "tokens"], ["emb"], axis=0),
             helper.make_node("ReduceMean", ["emb", "axes"], ["y"], keepdims=0)]
    g = helper.make_graph(nodes, "tok", [helper.make_tensor_value_info("tokens", TensorProto.INT64, ["batch", "time"])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])],
                          [numpy_helper.from_array(table, "table"), numpy_helper.from_array(np.array([1], np.int64), "axes")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    m.ir_version = 10
    onnx.save(m, str(path))


@pytest.fixture(scope="module")
def arts(tmp_path_factory):
    import keras
    import tensorflow as tf

    d = tmp_path_factory.mktemp("bench")
    keras.utils.set_random_seed(0)
    inp = keras.Input((T, F), name="feats")
    model = keras.Model(inp, keras.layers.Dense(OUT, name="head")(keras.layers.LSTM(H)(inp)))
    model.save(d / "reference.keras")
    fixed_in = keras.Input((T, F), batch_size=TFL_BATCH, name="feats")
    fixed = keras.Model(fixed_in, model.layers[-1](model.layers[-2](fixed_in)))
    (d / "model.tflite").write_bytes(tf.lite.TFLiteConverter.from_keras_model(fixed).convert())
    _native_lstm_onnx(d / "model.onnx")
    tok = d / "tok"
    tok.mkdir()
    _token_onnx(tok / "tokens.onnx", vocab=7)
    return d


@pytest.fixture(scope="module")
def result(arts):
    """ONE bench call over ONNX, TFLite and Keras."""
    return B.bench([arts / "model.onnx", arts / "model.tflite", arts / "reference.keras"],
                   batch_sizes=[1, TFL_BATCH], seq_lens=[T], warmup=2, runs=8)


def test_bench_all_three_runtimes(result, arts):
    assert B.validate_result(result) == []
    assert result["schema"] == "rnnedge.bench/1"
    got = {(Path(c["artifact"]).name, c["batch_size"]) for c in result["cases"]}
    assert got == {("model.onnx", 1), ("model.onnx", 2), ("model.tflite", 2),
                   ("reference.keras", 1), ("reference.keras", 2)}
    # the fixed-batch TFLite model is skipped at batch 1, with the reason
    (sk,) = result["skipped"]
    assert Path(sk["artifact"]).name == "model.tflite" and sk["batch_size"] == 1
    assert "fixed batch size 2" in sk["reason"]
    by = {Path(c["artifact"]).name: c for c in result["cases"]}
    assert by["model.onnx"]["runtime"] == "onnxruntime" and by["model.onnx"]["provider"] == "CPUExecutionProvider"
    assert by["model.tflite"]["runtime"] == "litert" and by["reference.keras"]["runtime"] == "keras"
    for c in result["cases"]:
        assert c["seq_len"] == T and c["format"] in ("onnx", "tflite", "keras")
        assert c["session_create_ms"] > 0 and c["first_inference_ms"] > 0
        lat = c["latency_ms"]
        assert 0 < lat["min"] <= lat["p50"] <= lat["p99"] <= lat["max"] and lat["std"] >= 0
        tp = c["throughput"]
        assert tp["sequences_per_s"] == pytest.approx(c["batch_size"] / lat["p50"] * 1e3)
        assert tp["timesteps_per_s"] == pytest.approx(tp["sequences_per_s"] * T)
        assert c["peak_rss_mb"] > 10 and c["model_size_bytes"] == os.path.getsize(c["artifact"])
        assert c["input_shapes"] == {"feats": [c["batch_size"], T, F]}
    info = by["model.onnx"]["info"]
    assert info["recurrent_placement"] == {"lstm": {"op": "LSTM", "provider": "CPUExecutionProvider"}}
    assert set(info["node_placement"]) == {"CPUExecutionProvider"}
    assert result["memory_method"].startswith(("VmHWM", "psutil"))
    m = result["machine"]
    assert m["cores"] == os.cpu_count() and m["python"] and m["platform"] and m["cpu"]
    assert "onnxruntime" in result["versions"] and "ai-edge-litert" in result["versions"]


def test_ratios_relative_to_keras(result):
    r = result["ratios"]
    assert Path(r["reference"]).name == "reference.keras" and r["metric"] == "latency_ms.p50"
    labels = {(x["label"], x["batch_size"]) for x in r["cases"]}
    assert labels == {("keras/onnx", 1), ("keras/onnx", 2), ("keras/tflite", 2)}
    cases = {(Path(c["artifact"]).name, c["batch_size"]): c for c in result["cases"]}
    for x in r["cases"]:
        ref = cases[("reference.keras", x["batch_size"])]["latency_ms"]["p50"]
        mine = cases[(Path(x["artifact"]).name, x["batch_size"])]["latency_ms"]["p50"]
        assert x["speedup"] == pytest.approx(ref / mine)


def test_reports_json_csv_png(result, tmp_path):
    j = B.write_json(result, tmp_path / "r.json")
    back = json.loads(j.read_text())
    assert back["schema"] == result["schema"] and len(back["cases"]) == len(result["cases"])
    assert B.validate_result(back) == []
    c = B.write_csv(result, tmp_path / "r.csv")
    rows = list(csv.DictReader(c.open()))
    assert len(rows) == len(result["cases"]) and list(rows[0]) == B.CSV_FIELDS
    assert {r["speedup_vs_reference"] for r in rows if r["format"] == "keras"} == {"1.0"}
    assert all(float(r["p50_ms"]) > 0 for r in rows)
    p = B.plot(result, tmp_path / "r.png")
    assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000
    from rich.console import Console

    con = Console(record=True, width=220)
    con.print(B.table(result))
    text = con.export_text()
    assert "model.tflite" in text and "ref" in text and "litert / xnnpack" in text


def test_validate_result_catches_problems(result):
    bad = json.loads(json.dumps(result))
    del bad["cases"][0]["latency_ms"]["p99"]
    bad["cases"][1]["latency_ms"]["p50"] = -1
    bad["schema"] = "rnnedge.bench/0"
    probs = B.validate_result(bad)
    assert any("schema" in p for p in probs) and any("latency_ms.p99" in p for p in probs)
    assert any("cases[1].latency_ms.p50" in p for p in probs)


def test_token_inputs_respect_manifest_vocab(arts):
    from rnnedge.errors import UsageError
    from rnnedge.runtime import open_runner

    tok = arts / "tok" / "tokens.onnx"
    # no manifest: the graph's Gather table (7 rows) gives the vocabulary
    res = B.bench([tok], seq_lens=[20], batch_sizes=[8], runs=2, warmup=0)
    (c,) = res["cases"]
    assert c["input_shapes"] == {"tokens": [8, 20]} and c["throughput"]["timesteps_per_s"] > 0
    with open_runner(tok) as r:
        assert r.vocab_sizes() == {"tokens": 7}
        with pytest.raises(UsageError, match=r"takes token ids in \[0, 7\) .*got 9 at \[0, 1\]"):
            r.run({"tokens": np.array([[1, 9]], np.int64)})  # the twin: what onnxruntime would fail on
        r._graph_vocab = lambda: {}  # a graph that shows none (an .ort file, no onnx package)
        r._vocab = None
        assert B.vocab_sizes(tok, r) == {}  # DEFAULT_VOCAB (16) then
        (tok.parent / "manifest.json").write_text(json.dumps(
            {"preprocessing": {"vocab_size": 7}, "artifacts": {"tokens.onnx": {"format": "onnx"}}}))
        feeds = B.make_inputs(r, {"tokens": [64, 20]}, B.vocab_sizes(tok, r))
    assert feeds["tokens"].dtype == np.int64 and feeds["tokens"].min() >= 1 and feeds["tokens"].max() == 6


def test_bench_io_binding_and_threads(arts):
    res = B.bench([arts / "model.onnx"], io_binding=True, threads=1, runs=3, warmup=1, placement=False)
    (c,) = res["cases"]
    assert c["seq_len"] == B.DEFAULT_SEQ_LEN  # free time axis -> default length
    assert c["info"]["latency_excludes_host_copies"] is True and c["info"]["host_to_device_ms"] >= 0
    assert c["info"]["threads"] == 1 and "node_placement" not in c["info"]


def test_bench_usage_errors(arts):
    with pytest.raises(UsageError, match="no such artifact"):
        B.bench([arts / "nope.onnx"])
    with pytest.raises(UsageError, match="runs"):
        B.bench([arts / "model.onnx"], runs=0)
    with pytest.raises(MissingDependencyError, match="pip install onnxruntime-gpu"):
        B.bench([arts / "model.onnx"], provider="cuda", runs=1)


# ------------------------------------------------------------------ CLI
def test_cli_bench_files(arts, tmp_path):
    from rnnedge.cli.bench import command

    res = CliRunner().invoke(command, [str(arts / "model.onnx"), str(arts / "model.tflite"), "--batch-size", "2",
                                       "--seq-len", str(T), "--runs", "3", "--warmup", "1", "--no-progress",
                                       "--json", str(tmp_path / "b.json"), "--csv", str(tmp_path / "b.csv"),
                                       "--plot", str(tmp_path / "b.png")])
    assert res.exit_code == 0, res.output
    assert "model.tflite" in res.stdout and "p50 ms" in res.stdout
    doc = json.loads((tmp_path / "b.json").read_text())
    assert B.validate_result(doc) == [] and len(doc["cases"]) == 2
    assert doc["ratios"]["cases"][0]["label"] == "onnx/tflite"
    assert len(list(csv.DictReader((tmp_path / "b.csv").open()))) == 2
    assert (tmp_path / "b.png").read_bytes()[:4] == b"\x89PNG"
    res = CliRunner().invoke(command, [str(arts / "model.onnx"), "--runs", "2", "--json", "-", "--no-progress"])
    assert res.exit_code == 0 and json.loads(res.stdout)["schema"] == "rnnedge.bench/1"


def test_cli_bench_cuda_refused(arts):
    from rnnedge.cli.bench import command

    res = CliRunner().invoke(command, [str(arts / "model.onnx"), "--provider", "cuda"])
    assert res.exit_code == 3
    assert "CUDAExecutionProvider" in res.stderr and "pip install onnxruntime-gpu" in res.stderr
    res = CliRunner().invoke(command, [str(arts / "model.onnx"), "--batch-size", "0"])
    assert res.exit_code == 2 and "positive integers" in res.output
    # a real process: the console script when the CLI group is installed, else the command module
    script = shutil.which("rnnedge", path=os.path.dirname(sys.executable))
    ok = script and subprocess.run([script, "--help"], capture_output=True, text=True).returncode == 0
    cmd = [script, "bench"] if ok else [sys.executable, "-c", "from rnnedge.cli.bench import command; command()"]
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}  # rich's default width: 80
    p = subprocess.run(cmd + [str(arts / "model.onnx"), "--provider", "cuda", "--no-progress"],
                       capture_output=True, text=True, timeout=120, env=env)
    assert p.returncode == 3, p.stderr
    assert "pip install onnxruntime-gpu" in p.stderr and "Traceback" not in p.stderr
    # one line, never wrapped in a log (~250 characters); the command in backticks, the note outside
    assert len(p.stderr.strip().splitlines()) == 1 and len(p.stderr) > 200, p.stderr
    assert "install it with `pip install onnxruntime-gpu` (and a CUDA 12/13 + cuDNN 9 runtime)" in p.stderr


@pytest.mark.node
def test_bench_tfjs_times_inside_node(arts, tmp_path):
    """A TF.js artifact (when Node and the shipped runner are here) is timed inside Node."""
    if shutil.which("node") is None:
        pytest.skip("Node.js is not installed")
    import keras

    from converters.registry import ExportOptions, get_exporter

    model = keras.saving.load_model(arts / "reference.keras")
    entries = get_exporter("tfjs")(model, tmp_path, ExportOptions())
    (entry,) = [e for e in entries.values() if e.get("format") == "tfjs"]
    folder = tmp_path / Path(entry["model"]).parent
    res = B.bench([arts / "model.onnx", folder], batch_sizes=[2], seq_lens=[T], runs=4, warmup=1)
    assert B.validate_result(res) == []
    (c,) = [c for c in res["cases"] if c["format"] == "tfjs"]
    assert c["runtime"] == "tfjs" and c["info"]["timed_in"].startswith("node")
    assert c["info"]["subprocess_wall_ms"] > c["latency_ms"]["max"]  # Node start-up is not in the latency
    assert c["model_size_bytes"] == sum(f.stat().st_size for f in [folder / "model.json", *folder.glob("*.bin")])
    assert res["ratios"]["cases"][0]["label"] == "onnx/tfjs"
