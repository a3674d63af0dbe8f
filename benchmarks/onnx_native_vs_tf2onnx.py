"""Benchmark (not a test): Keras vs tf2onnx's default ONNX vs rnnedge's native ONNX, on CPU.

Models: forecast (LSTM(64, return_sequences) -> LSTM(64) -> Dense(1), input (T=100, 1)) and
gru-classifier (GRU(64) -> Dense(4, softmax)), from ``rnnedge.build`` when the builder is there,
else built here as described. Batch 1 and 32. Median of many runs after a warm-up.

    TF_CPP_MIN_LOG_LEVEL=3 CUDA_VISIBLE_DEVICES=-1 .venv/bin/python benchmarks/onnx_native_vs_tf2onnx.py \
        [--runs 300] [--threads 0] [--out benchmarks/results/onnx_native_vs_tf2onnx.json]

Prints a table and writes JSON (latencies in ms, ratios, op types, parity errors, versions).
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")  # Keras 3 on a GPU uses CudnnRNNV3 (tf2onnx can't)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

T = 100


def build_models():
    import keras
    from keras import layers

    out = {}
    try:
        import rnnedge

        out["forecast"] = (rnnedge.build("forecast", compile=False), 1)
        out["gru-classifier"] = (rnnedge.build("gru-classifier", compile=False), None)
        src = "rnnedge.build(preset)"
    except Exception as e:  # noqa: BLE001  (builder not there yet)
        print(f"rnnedge.build unavailable ({type(e).__name__}: {e}); building the models here")
        keras.utils.set_random_seed(0)
        x = keras.Input((None, 1), name="series")
        h = layers.LSTM(64, return_sequences=True)(x)
        h = layers.LSTM(64)(h)
        out["forecast"] = (keras.Model(x, layers.Dense(1)(h), name="forecast"), 1)
        x = keras.Input((None, 8), name="signal")
        out["gru-classifier"] = (keras.Model(x, layers.Dense(4, activation="softmax")(layers.GRU(64)(x)),
                                             name="gru_classifier"), 8)
        src = "built in the benchmark"
    res = {}
    for name, (m, _) in out.items():
        res[name] = m
    return res, src


def time_interleaved(fns: dict, runs: int, warmup: int = 10, chunk: int = 10) -> dict:
    """Median latency (ms) of each callable, measured in interleaved chunks so that load changes
    on a shared machine hit every variant alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    ts = {k: [] for k in fns}
    done = 0
    while done < runs:
        n = min(chunk, runs - done)
        for k, fn in fns.items():
            for _ in range(n):
                t0 = time.perf_counter()
                fn()
                ts[k].append((time.perf_counter() - t0) * 1e3)
        done += n
    out = {}
    for k, v in ts.items():
        v.sort()
        out[k] = {"median_ms": statistics.median(v), "p10_ms": v[len(v) // 10], "p90_ms": v[(9 * len(v)) // 10],
                  "runs": len(v)}
    return out


def tf2onnx_model(model, feat: int, opset: int):
    import tensorflow as tf
    import tf2onnx

    model.output_names = [f"output_{i}" for i in range(len(model.outputs))]  # avoids KeyError 'keras_tensor_N'
    spec = [tf.TensorSpec((None, None, feat), tf.float32, name=model.inputs[0].name)]
    mp, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=opset)
    return mp


def session(mp, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = threads
    return ort.InferenceSession(mp.SerializeToString(), so, providers=["CPUExecutionProvider"])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=300, help="timed runs at batch 1 (batch 32: a third)")
    ap.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0 = its default)")
    ap.add_argument("--opset", type=int, default=17)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "onnx_native_vs_tf2onnx.json"))
    a = ap.parse_args(argv)

    import tensorflow as tf
    from collections import Counter

    from converters.onnx.graph import convert_model
    from converters.registry import ExportOptions
    from rnnedge.manifest import package_versions, write_json_atomic

    models, src = build_models()
    rows = []
    for name, model in models.items():
        feat = int(model.inputs[0].shape[-1])
        native, info = convert_model(model, ExportOptions(opset=a.opset))
        conv_err = None
        try:
            t2o = tf2onnx_model(model, feat, a.opset)
        except Exception as e:  # noqa: BLE001
            t2o, conv_err = None, f"{type(e).__name__}: {e}"
        s_nat = session(native, a.threads)
        s_t2o = session(t2o, a.threads) if t2o is not None else None
        in_nat = s_nat.get_inputs()[0].name
        in_t2o = s_t2o.get_inputs()[0].name if s_t2o else None
        graph_fn = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
        for batch in (1, 32):
            runs = a.runs if batch == 1 else max(30, a.runs // 3)
            x = np.random.default_rng(batch).standard_normal((batch, T, feat)).astype("float32")
            xt = tf.constant(x)
            ref = np.asarray(graph_fn(xt))
            row = {"model": name, "batch": batch, "T": T, "features": feat}
            fns = {"keras_tf_function": lambda: graph_fn(xt),
                   "keras_predict_on_batch": lambda: model.predict_on_batch(x),
                   "native": lambda: s_nat.run(None, {in_nat: x})}
            if s_t2o is not None:
                fns["tf2onnx"] = lambda: s_t2o.run(None, {in_t2o: x})
            row.update(time_interleaved(fns, runs))
            row["native_max_abs_err"] = float(np.abs(s_nat.run(None, {in_nat: x})[0] - ref).max())
            if s_t2o is not None:
                row["tf2onnx_max_abs_err"] = float(np.abs(s_t2o.run(None, {in_t2o: x})[0] - ref).max())
            keras_best = min(row["keras_tf_function"]["median_ms"], row["keras_predict_on_batch"]["median_ms"])
            row["keras_best_ms"] = keras_best
            row["speedup_vs_keras"] = keras_best / row["native"]["median_ms"]
            if s_t2o is not None:
                row["speedup_vs_tf2onnx"] = row["tf2onnx"]["median_ms"] / row["native"]["median_ms"]
            row["native_ops"] = info["op_types"]
            row["tf2onnx_ops"] = (dict(sorted(Counter(n.op_type for n in t2o.graph.node).items()))
                                  if t2o is not None else conv_err)
            rows.append(row)

    hdr = f"{'model':16} {'batch':>5} {'keras ms':>9} {'tf2onnx ms':>11} {'native ms':>10} " \
          f"{'x keras':>8} {'x tf2onnx':>10}  tf2onnx recurrent ops"
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        t2 = r.get("tf2onnx", {}).get("median_ms", float("nan"))
        ops = r["tf2onnx_ops"]
        rec = {k: v for k, v in ops.items() if k in ("Loop", "Scan", "LSTM", "GRU", "RNN")} \
            if isinstance(ops, dict) else ops
        print(f"{r['model']:16} {r['batch']:>5} {r['keras_best_ms']:>9.3f} {t2:>11.3f} "
              f"{r['native']['median_ms']:>10.3f} {r['speedup_vs_keras']:>8.1f} "
              f"{r.get('speedup_vs_tf2onnx', float('nan')):>10.1f}  {rec}")
    result = {
        "benchmark": "onnx_native_vs_tf2onnx",
        "models_from": src,
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "cpus": os.cpu_count()},
        "onnxruntime_threads": a.threads or "default",
        "opset": a.opset,
        "versions": package_versions("onnx", "onnxruntime", "keras", "tensorflow", "tensorflow-cpu", "tf2onnx"),
        "rows": rows,
    }
    out = Path(a.out)
    write_json_atomic(out, result)
    print(f"\nwrote {out}")
    return result


if __name__ == "__main__":
    main()
