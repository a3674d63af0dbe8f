"""examples/seq2seq_numbers.py end to end (--quick), plus its data functions, checked independently."""
import json

import numpy as np
import pytest

pytest.importorskip("keras")

from conftest import load_example, run_example  # noqa: E402



@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return run_example("seq2seq_numbers", tmp_path_factory.mktemp("seq2seq_numbers") / "run")


@pytest.fixture(scope="module")
def example():
    return load_example("seq2seq_numbers")


@pytest.mark.parametrize("n, words", [
    (0, "zero"), (7, "seven"), (13, "thirteen"), (20, "twenty"), (71, "seventy one"), (100, "one hundred"),
    (950, "nine hundred fifty"), (1010, "one thousand ten"), (4071, "four thousand seventy one"),
    (9999, "nine thousand nine hundred ninety nine"),
])
def test_number_to_words(example, n, words):
    assert " ".join(example.number_to_words(n)) == words


def test_teacher_forcing_arrays(example):
    x = example.encode_numbers([4071, 5])
    np.testing.assert_array_equal(x, [[5, 1, 8, 2], [6, 0, 0, 0]])  # digit d -> id d + 1, 0 = padding
    dec, tgt = example.teacher_forcing([4071])
    words = [example.TARGET_VOCAB[i] for i in dec[0]]
    assert words == ["<start>", "four", "thousand", "seventy", "one", "<pad>", "<pad>"]
    assert [example.TARGET_VOCAB[i] for i in tgt[0]] == ["four", "thousand", "seventy", "one", "<end>",
                                                          "<pad>", "<pad>"]
    lengths = [len(example.number_to_words(n)) for n in range(10000)]
    assert max(lengths) == example.MAX_WORDS and example.DECODE_LEN == max(lengths) + 1


def test_quick_run_passes(run):
    r, out, summary = run
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert summary["example"] == "seq2seq_numbers" and summary["ok"] is True, summary.get("reasons")
    steps = [s["step"] for s in summary["pipeline"]["steps"]]
    assert steps == ["export", "quantize", "validate", "bench", "deploy", "verify"]
    assert all(s["ok"] for s in summary["pipeline"]["steps"])
    assert summary["pipeline"]["steps"][-1]["detail"] == "ok"  # bundle verified
    assert (out / "bundle").is_dir() and (out / "model.keras").is_file()


def test_held_out_numbers_are_disjoint_from_training(run):
    _, _, summary = run
    d = summary["data"]
    test, train = set(d["test_numbers"]), set(d["train_numbers"])
    assert len(test) == d["test"] and len(train) == d["train"] and not test & train


def test_two_input_model_exports_and_passes_parity(run):
    _, out, summary = run
    val = summary["pipeline"]["validation"]
    # model.int8.tflite: the calibration data of a two-input model must be fed by name
    for name in ("model.onnx", "model.ort", "model.tflite", "model.int8.onnx", "model.int8.tflite",
                 "model.dynamic.tflite", "model.fp16.tflite"):
        assert val[name]["verdict"] == "pass", (name, val[name])
    assert all(v["verdict"] in ("pass", "skipped") for v in val.values()), val
    manifest = json.loads((out / "export" / "manifest.json").read_text())
    onnx_entry = manifest["artifacts"]["model.onnx"]
    assert [i["name"] for i in onnx_entry["inputs"]] == ["encoder_tokens", "decoder_tokens"]
    assert onnx_entry["op_types"].get("LSTM") == 2 and "Loop" not in onnx_entry["op_types"]
    # TFLite sorts its inputs by name (decoder first); keras_index says the model's order and
    # the runner exposes the inputs in that order
    from rnnedge import open_runner

    for name in ("model.tflite", "model.int8.tflite"):
        ins = manifest["artifacts"][name]["inputs"]
        assert {i["keras_name"]: i["keras_index"] for i in ins} == {"encoder_tokens": 0, "decoder_tokens": 1}
        with open_runner(out / "export" / name) as r:
            assert [i.name for i in r.inputs] == ["encoder_tokens", "decoder_tokens"]


def test_greedy_decoding_metrics_on_held_out(run, example):
    _, out, summary = run
    task = summary["task"]["held_out"]
    for name in ("reference.keras", "model.onnx", "model.ort", "model.tflite", "model.int8.onnx",
                 "model.int8.tflite"):
        row = task[name]
        assert "error" not in row, (name, row)
        assert 0.0 <= row["exact_match"] <= 1.0 and 0.0 <= row["token_accuracy"] <= 1.0, (name, row)
    for name in ("model.onnx", "model.ort", "model.tflite"):  # float32: the same decoded sequences
        assert task[name]["same_sequences_as_keras"] == 1.0, (name, task[name])
    # the baselines, recomputed here from the split
    test = np.asarray(summary["data"]["test_numbers"])
    train = np.asarray(summary["data"]["train_numbers"])
    _, y_test = example.teacher_forcing(test)
    _, y_train = example.teacher_forcing(train)
    per_pos = np.asarray([np.bincount(y_train[:, t], minlength=33).argmax() for t in range(y_train.shape[1])])
    real = y_test != 0
    want_tok = float((np.tile(per_pos, (len(test), 1)) == y_test)[real].mean())
    assert task["per-position majority word"]["token_accuracy"] == pytest.approx(want_tok)


def test_examples_from_int8_onnx(run, example):
    _, _, summary = run
    assert summary["task"]["examples_from"] == "model.int8.onnx"
    ex = summary["task"]["examples"]
    assert len(ex) == 5
    test = set(summary["data"]["test_numbers"])
    for e in ex:
        assert e["number"] in test
        assert e["expected"] == " ".join(example.number_to_words(e["number"]))
        assert e["ok"] == (e["decoded"] == e["expected"])


def test_calibration_uses_training_numbers_only(run, example):
    _, out, summary = run
    with np.load(out / "calibration.npz") as z:
        enc, dec = z["encoder_tokens"], z["decoder_tokens"]
    assert enc.shape == dec.shape and enc.shape[1] == example.CALIB_LEN
    numbers = {int("".join(example.SOURCE_VOCAB[i] for i in row if i)) for row in enc}
    assert numbers <= set(summary["data"]["train_numbers"])
    assert not numbers & set(summary["data"]["test_numbers"])
    assert (dec[:, 0] == example.START).all()


def test_missing_quantized_artifacts_are_reported(run, example):
    _, out, summary = run
    manifest = json.loads((out / "export" / "manifest.json").read_text())
    missing = set(example.EXPECTED_QUANTIZED) - set(manifest["artifacts"])
    assert set(summary["pipeline"]["quantize_not_produced"]) == missing
