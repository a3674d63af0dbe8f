"""TFLite closing figures: size, max error vs Keras, LiteRT latency (1 thread, batch 1, median).

    TF_CPP_MIN_LOG_LEVEL=3 CUDA_VISIBLE_DEVICES=-1 .venv/bin/python benchmarks/tflite_while_vs_fused.py \
        [--models forecast,sentiment,gru] [--runs 50] [--out /tmp/tflite_bench]

Models (random weights, T=100): forecast LSTM(64)x2 -> Dense (1 feature); sentiment
Embedding(2000,32,mask_zero) -> BiLSTM(32) -> GlobalMaxPool -> Dense sigmoid; gru GRU(64) -> Dense
softmax (8 features). Variants: float32 WHILE, float32 fused (LSTM models), dynamic, fp16, int8.
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


def latency_ms(path, xs, runs):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), num_threads=1)
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="forecast,sentiment,gru")
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--out", default="/tmp/tflite_bench")
    a = ap.parse_args()
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
