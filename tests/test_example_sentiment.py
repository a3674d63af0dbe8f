"""examples/sentiment.py end to end (--quick), plus its CSV loading, checked independently."""
import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("keras")

from conftest import load_example, run_example  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "sentiment.py"
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "-1"}
SENTENCE = "an awful script, but the music was superb"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return run_example("sentiment", tmp_path_factory.mktemp("sentiment") / "run")


@pytest.fixture(scope="module")
def example():
    return load_example("sentiment")


def _labels(path: Path) -> np.ndarray:
    with open(path, newline="") as f:
        return np.asarray([int(r["label"]) for r in csv.DictReader(f)])


def _encode(text: str, pre: dict, length: int) -> np.ndarray:
    """Tokenize + look up + post-pad, written here from preprocess.json (not the library's code)."""
    s = text.lower() if pre["lowercase"] else text
    ids = [pre["vocab"].get(t, pre["oov_id"]) for t in re.findall(pre["token_pattern"], s)][:length]
    x = np.full((1, length), pre["pad_id"], np.int32)
    x[0, :len(ids)] = ids
    return x


def test_quick_run_passes_and_says_data_is_synthetic(run):
    r, out, summary = run
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert "SYNTHETIC" in r.stdout
    assert summary["example"] == "sentiment" and summary["ok"] is True, summary.get("reasons")
    assert summary["data"]["synthetic"] is True
    steps = [s["step"] for s in summary["pipeline"]["steps"]]
    assert steps == ["export", "quantize", "validate", "bench", "deploy", "verify"]
    assert all(s["ok"] for s in summary["pipeline"]["steps"])
    assert summary["pipeline"]["steps"][-1]["detail"] == "ok"  # bundle verified


def test_parity_verdicts_pass_for_every_artifact(run):
    _, out, summary = run
    val = summary["pipeline"]["validation"]
    for name in ("model.onnx", "model.ort", "model.tflite", "model.int8.onnx", "model.fp16.onnx",
                 "model.dynamic.tflite", "model.fp16.tflite", "model.int8.tflite"):
        assert val[name]["verdict"] == "pass", (name, val[name])
    assert all(v["verdict"] in ("pass", "skipped") for v in val.values()), val
    assert summary["pipeline"]["validation_exit_code"] == 0


def test_held_out_task_metrics(run):
    _, out, summary = run
    task = summary["task"]["held_out"]
    manifest = json.loads((out / "export" / "manifest.json").read_text())
    listed = {n for n in manifest["artifacts"] if n.endswith((".onnx", ".ort", ".tflite"))}
    assert listed >= {"model.onnx", "model.tflite", "model.int8.onnx", "model.fp16.onnx"}
    assert listed | {"reference.keras", "majority-class baseline"} <= set(task)
    for name, row in task.items():
        assert "error" not in row, (name, row)
        assert 0.0 <= row["accuracy"] <= 1.0
    assert task["reference.keras"]["agreement_with_keras"] == 1.0
    for name in ("model.onnx", "model.ort", "model.tflite"):  # float32: same labels, same numbers
        assert task[name]["agreement_with_keras"] == 1.0, name
        assert task[name]["accuracy"] == task["reference.keras"]["accuracy"]
        assert task[name]["max_abs_prob_diff_vs_keras"] < 1e-4, name
    for name in listed:
        assert task[name]["agreement_with_keras"] >= 0.9, (name, task[name])


def test_held_out_split_and_majority_baseline(run):
    _, out, summary = run
    y_train, y_test = _labels(out / "data" / "train.csv"), _labels(out / "data" / "test.csv")
    d = summary["data"]
    assert (len(y_train), len(y_test)) == (d["train"], d["test"])
    assert len(y_train) + len(y_test) == d["reviews"] and len(y_test) == round(d["reviews"] * d["test_fraction"])
    majority = np.bincount(y_train, minlength=2).argmax() if y_train.mean() != 0.5 else 1
    base = summary["task"]["held_out"]["majority-class baseline"]
    assert base["predicts"] == majority
    assert base["accuracy"] == pytest.approx(float(np.mean(y_test == majority)), abs=1e-12)
    # the model trained on train.csv only: its recorded sample count is the train split's
    side = json.loads((out / "model.rnnedge.json").read_text())
    assert side["info"]["samples"] == len(y_train)


def test_padding_does_not_change_the_onnx_probability(run):
    _, out, summary = run
    pads = {p["artifact"]: p for p in summary["task"]["padding"]}
    assert pads["model.onnx"]["ok"] and len(pads["model.onnx"]["probability_by_length"]) >= 3
    # independently: one sentence padded to 3 lengths in onnxruntime
    import onnxruntime as ort

    pre = json.loads((out / "bundle" / "preprocess.json").read_text())
    sess = ort.InferenceSession(str(out / "export" / "model.onnx"), providers=["CPUExecutionProvider"])
    probs = [float(sess.run(None, {sess.get_inputs()[0].name: _encode(SENTENCE, pre, L)})[0].ravel()[0])
             for L in (9, pre["max_len"], 2 * pre["max_len"])]
    assert max(probs) - min(probs) < 1e-5, probs
    import onnx

    ops = [n.op_type for n in onnx.load(str(out / "export" / "model.onnx")).graph.node]
    assert ops.count("LSTM") == 1 and "Loop" not in ops, ops  # one native bidirectional LSTM


def test_bundle_predict_matches_onnx_on_raw_text(run):
    _, out, summary = run
    bund = summary["task"]["bundle_predict"]
    assert bund["ok"] and len(bund["sentences"]) == 3
    assert all(abs(s["bundle"] - s["keras"]) < 1e-4 for s in bund["sentences"])
    # independently: the bundle's own predict.py on raw text vs model.onnx on the same text
    r = subprocess.run([sys.executable, str(out / "bundle" / "predict.py"), "--text", SENTENCE, "--json"],
                       capture_output=True, text=True, timeout=120, env=ENV)
    assert r.returncode == 0, r.stderr[-2000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    import onnxruntime as ort

    pre = json.loads((out / "bundle" / "preprocess.json").read_text())
    sess = ort.InferenceSession(str(out / "export" / "model.onnx"), providers=["CPUExecutionProvider"])
    want = float(sess.run(None, {sess.get_inputs()[0].name: _encode(SENTENCE, pre, pre["max_len"])})[0].ravel()[0])
    assert abs(float(np.ravel(got["output"])[0]) - want) < 1e-4, (got, want)
    assert got["label"] == int(want >= 0.5)


def test_csv_data_with_named_labels(tmp_path, example):
    p = tmp_path / "reviews.csv"
    rows = [("Great film, loved it", "positive"), ("dull, boring", "negative"), ("superb cast", "positive"),
            ('a "waste" of time', "negative"), ("lovely", "positive")]
    with open(p, "w", newline="") as f:
        csv.writer(f).writerows([("text", "label"), *rows])
    texts, y, info = example.load_reviews(str(p), 0, 0)
    assert texts[3] == 'a "waste" of time' and info["classes"] == ["negative", "positive"]
    assert y.tolist() == [1, 0, 1, 0, 1] and info["synthetic"] is False
    (tr, ytr), (te, yte) = example.split(texts, y, 0.4, seed=0)
    assert len(te) == 2 and sorted(tr + te) == sorted(texts)
    example.write_csv(tmp_path / "train.csv", tr, ytr)  # round trip through the file the trainer reads
    with open(tmp_path / "train.csv", newline="") as f:
        back = [(r["text"], int(r["label"])) for r in csv.DictReader(f)]
    assert back == list(zip(tr, ytr.tolist()))
    from rnnedge import load_spec
    from rnnedge.data import make_dataset  # what rnnedge.train reads the file with (numpy only)

    ds = make_dataset(load_spec(example.SPEC), str(tmp_path / "train.csv"))
    assert ds.y.tolist() == ytr.tolist() and len(ds.x["tokens"]) == len(tr)


def test_csv_with_three_labels_is_refused(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("text,label\ngood,pos\nbad,neg\nmeh,neutral\n")
    r = subprocess.run([sys.executable, str(SCRIPT), "--data", str(p), "-o", str(tmp_path / "o")], cwd=ROOT,
                       env=ENV, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "needs 2 label values, found 3" in r.stderr
