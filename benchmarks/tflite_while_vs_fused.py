"""TFLite closing figures: size, max error vs Keras, LiteRT latency (median ms).

    TF_CPP_MIN_LOG_LEVEL=3 CUDA_VISIBLE_DEVICES=-1 .venv/bin/python benchmarks/tflite_while_vs_fused.py \
        [--models forecast,sentiment,gru] [--runs 50] [--out /tmp/tflite_bench]

Models (random weights, T=100): forecast LSTM(64)x2 -> Dense (1 feature); sentiment
Embedding(2000,32,mask_zero) -> BiLSTM(32) -> GlobalMaxPool -> Dense sigmoid; gru GRU(64) -> Dense
softmax (8 features). Variants: float32 WHILE, float32 fused (LSTM models), dynamic, fp16, int8.

``--lstm-modes`` (issue 17): how to lower an LSTM at each batch size. Models lstm256
(LSTM(256) -> Dense) and 2xlstm256 (LSTM(256) x2 -> Dense), input (B, 100, 32), each exported at
batch B in {1, 8, 32, 128} (``--batches``) as fused UNIDIRECTIONAL_SEQUENCE_LSTM, WHILE loop and
unrolled ops, timed in a fresh LiteRT interpreter (``--threads``, default XNNPACK on), JSON rows
to ``--json``. Timings on a shared machine are noisy: rerun on a quiet one before quoting them.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

T = 100


def build(name):
    import keras

    L = keras.layers
    keras.utils.set_random_seed(0)
    if name == "forecast":
        return keras.Sequential([keras.Input((T, 1)), L.LSTM(64, return_sequences=True), L.LSTM(64), L.Dense(1)])
    if name == "sentiment":
        return keras.Sequential([keras.Input((T,), dtype="int32"), L.Embedding(2000, 32, mask_zero=True),
                                 L.Bidirectional(L.LSTM(32, return_sequences=True)), L.GlobalMaxPooling1D(),
                                 L.Dense(1, activation="sigmoid")])
    if name == "gru":
        return keras.Sequential([keras.Input((T, 8)), L.GRU(64), L.Dense(5, activation="softmax")])
    raise SystemExit(f"unknown model {name}")


def latency_ms(path, xs, runs, threads=1):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), num_threads=threads)
    it.allocate_tensors()
    ins = it.get_input_details()
    for d, x in zip(ins, xs):
        it.set_tensor(d["index"], x.astype(d["dtype"]))
    for _ in range(5):
        it.invoke()
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        it.invoke()
        ts.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(ts))


LSTM_MODELS = {"lstm256": 1, "2xlstm256": 2}
FEATURES = 32


def build_lstm(name):
    import keras

    L = keras.layers
    keras.utils.set_random_seed(0)
    layers = [L.LSTM(256, return_sequences=i < LSTM_MODELS[name] - 1) for i in range(LSTM_MODELS[name])]
    return keras.Sequential([keras.Input((T, FEATURES))] + layers + [L.Dense(8)])


def lstm_modes(a):
    """fused vs WHILE vs unrolled, per model and batch size: rows of median latency (ms)."""
    from converters.registry import ExportOptions, get_exporter

    rows = []
    for name in a.lstm_models.split(","):
        m = build_lstm(name)
        for B in [int(b) for b in a.batches.split(",")]:
            x = np.random.default_rng(B).uniform(-1, 1, (B, T, FEATURES)).astype(np.float32)
            for mode in ("fused", "while", "unroll"):
                d = Path(a.out) / "lstm_modes" / f"{name}-b{B}-{mode}"
                t0 = time.perf_counter()
                e = get_exporter("tflite")(m, d, ExportOptions(batch_size=B, seq_len=T,
                                                                extra={"tflite_lstm": mode}))["model.tflite"]
                convert_s = time.perf_counter() - t0
                rows.append({"model": name, "batch": B, "mode": e["lstm_mode"], "threads": a.threads,
                             "p50_ms": round(latency_ms(d / "model.tflite", [x], a.runs, a.threads), 3),
                             "max_err": e["self_check"].get("max_abs_error"),
                             "size_kb": round((d / "model.tflite").stat().st_size / 1024, 1),
                             "convert_s": round(convert_s, 1)})
                print(json.dumps(rows[-1]), flush=True)
    print("\n| model | batch | fused ms | WHILE ms | unrolled ms | fastest |")
    print("|---|---|---|---|---|---|")
    for name in a.lstm_models.split(","):
        for B in [int(b) for b in a.batches.split(",")]:
            ms = {r["mode"]: r["p50_ms"] for r in rows if r["model"] == name and r["batch"] == B}
            best = min(ms, key=ms.get)
            print(f"| {name} | {B} | {ms.get('fused')} | {ms.get('while')} | {ms.get('unroll')} | {best} |")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="forecast,sentiment,gru")
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--out", default="/tmp/tflite_bench")
    ap.add_argument("--lstm-modes", action="store_true", help="fused vs WHILE vs unrolled LSTM per batch size")
    ap.add_argument("--lstm-models", default=",".join(LSTM_MODELS))
    ap.add_argument("--batches", default="1,8,32,128")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None, help="write the --lstm-modes rows here")
    a = ap.parse_args()
    if a.lstm_modes:
        return lstm_modes(a)
    from converters.registry import ExportOptions, get_exporter
    from rnnedge.errors import ConversionError
    from converters.tflite import sample_inputs

    rows = []
    for name in a.models.split(","):
        m = build(name)
        modes = ["while", "fused"] if name != "gru" else ["while"]
        for lm in modes:
            d = Path(a.out) / name / lm
            quant = ["dynamic", "fp16", "int8"] if lm == modes[-1] else []
            try:
                entries = get_exporter("tflite")(m, d, ExportOptions(seq_len=T, quantize=quant,
                                                                      extra={"tflite_lstm": lm}))
            except ConversionError as e:  # e.g. a masked LSTM cannot be fused
                print(f"{name} {lm}: {e}", flush=True)
                if lm == modes[-1]:
                    entries = get_exporter("tflite")(m, d, ExportOptions(seq_len=T, quantize=quant,
                                                                          extra={"tflite_lstm": "while"}))
                    entries.pop("model.tflite")
                else:
                    continue
            for fname, e in entries.items():
                xs = sample_inputs(m, [[1] + list(t.shape[1:]) for t in m.inputs],
                                   [str(t.dtype) for t in m.inputs], seq_len=T, rng=np.random.default_rng(7))
                rows.append({
                    "model": name, "file": fname, "lstm_mode": e["lstm_mode"],
                    "size_kb": round((d / fname).stat().st_size / 1024, 1),
                    "max_err": e["self_check"].get("max_abs_error"),
                    "latency_ms": round(latency_ms(d / fname, xs, a.runs), 3),
                    "tflite_runtime_2_14": e["compat"]["tflite_runtime_2_14"],
                    "ops": sorted({o["name"] for o in e["ops"]} & {"WHILE", "UNIDIRECTIONAL_SEQUENCE_LSTM"}),
                })
                print(json.dumps(rows[-1]), flush=True)
    print("\n| model | file | lstm | size KB | max err | latency ms | 2.14 | loop ops |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        err = f"{r['max_err']:.2e}" if r["max_err"] is not None else "-"
        print(f"| {r['model']} | {r['file']} | {r['lstm_mode']} | {r['size_kb']} | {err} | {r['latency_ms']} | "
              f"{r['tflite_runtime_2_14']} | {','.join(r['ops'])} |")


if __name__ == "__main__":
    main()
