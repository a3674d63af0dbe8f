"""Keras vs ONNX Runtime (CPU EP) vs LiteRT on three preset-like models, T=100, batch 1 and 32.

    TF_CPP_MIN_LOG_LEVEL=3 CUDA_VISIBLE_DEVICES=-1 python benchmarks/runtime_ratios.py \
        [--out out/runtime_ratios] [--repeats 3] [--runs 50] [--threads N]

Models (random weights, seed 0):
  forecast        LSTM(64, return_sequences) -> LSTM(64) -> Dense(1); input (T, 1) float
  sentiment       Embedding(2000, 32, mask_zero) -> Bidirectional(LSTM(32)) -> GlobalMaxPool1D
                  -> Dense(1, sigmoid); input (T,) int32 token ids in [1, 2000)
  gru-classifier  GRU(64) -> Dense(4, softmax); input (T, 8) float

Exports: ONNX with the native exporter (``converters.onnx``) when
``get_exporter("onnx")`` works, else tf2onnx (the report says which); TFLite with
``converters.tflite`` (``batch_size=1`` and ``32``) when it exists, else
``tf.lite.TFLiteConverter.from_keras_model`` on a fixed-batch copy of the model (Keras 3 RNNs
need a fixed batch for builtin WHILE ops). Each TFLite file runs only its batch size.

Everything is timed by ``rnnedge.benchmarking.bench`` (the same runners as ``rnnedge run``) in this
one process; the whole bench is repeated ``--repeats`` times and the median of the per-repeat
p50 latencies is reported (the "best" columns use the smallest per-repeat p50: less sensitive
to other jobs on a shared machine). Ratios are Keras p50 / runtime p50 (> 1: the runtime is faster).
Keras runs ``model.predict_on_batch`` (its compiled predict function). ``--threads`` sizes
every runtime's intra-op pool (TensorFlow's included); on a shared/loaded machine use
``--threads 1``: onnxruntime's spinning worker threads slow down badly when the cores are
oversubscribed (measured here: ORT forecast batch 32, 40 ms with 1 thread vs 80 ms with 2
while other jobs held the 2 cores).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

T = 100
BATCHES = (1, 32)


def build(name: str, batch_size: int | None = None):
    import keras
    from keras import layers

    if name == "forecast":
        inp = keras.Input((T, 1), batch_size=batch_size, name="series")
        x = layers.LSTM(64, return_sequences=True, name="lstm_1")(inp)
        x = layers.LSTM(64, name="lstm_2")(x)
        out = layers.Dense(1, name="forecast")(x)
    elif name == "sentiment":
        inp = keras.Input((T,), batch_size=batch_size, dtype="int32", name="tokens")
        x = layers.Embedding(2000, 32, mask_zero=True, name="embedding")(inp)
        x = layers.Bidirectional(layers.LSTM(32, return_sequences=True), name="bilstm")(x)
        x = layers.GlobalMaxPooling1D(name="pool")(x)
        out = layers.Dense(1, activation="sigmoid", name="sentiment")(x)
    elif name == "gru-classifier":
        inp = keras.Input((T, 8), batch_size=batch_size, name="features")
        x = layers.GRU(64, name="gru")(inp)
        out = layers.Dense(4, activation="softmax", name="label")(x)
    else:
        raise ValueError(name)
    return keras.Model(inp, out, name=name.replace("-", "_"))


VOCAB = {"sentiment": 2000}


def export_onnx(model, out: Path) -> tuple[Path, str]:
    from converters.registry import ExportOptions, get_exporter

    try:
        exporter = get_exporter("onnx")
    except Exception as e:  # noqa: BLE001
        exporter, why = None, f"{type(e).__name__}: {e}"
    if exporter is not None:
        try:
            entries = exporter(model, out, ExportOptions(seq_len=T))
            name = next(k for k, v in entries.items() if v.get("format") == "onnx")
            _merge_manifest(out, {name: entries[name]})
            return out / name, "converters.onnx (native)"
        except Exception as e:  # noqa: BLE001
            why = f"{type(e).__name__}: {str(e)[:200]}"
    import tf2onnx
    import tensorflow as tf

    if not getattr(model, "output_names", None):  # tf2onnx + Keras 3: avoids KeyError 'keras_tensor_N'
        model.output_names = [o.name.split("/")[0] for o in model.outputs]
    spec = [tf.TensorSpec((None,) + tuple(t.shape[1:]), t.dtype, name=t.name) for t in model.inputs]
    path = out / "model_tf2onnx.onnx"
    tf2onnx.convert.from_keras(model, input_signature=spec, opset=17, output_path=str(path))
    return path, f"tf2onnx {tf2onnx.__version__} (native exporter unavailable: {why})"


def export_tflite(name: str, model, out: Path, batch: int) -> tuple[Path, str]:
    from converters.registry import ExportOptions, get_exporter

    d = out / f"tflite_b{batch}"
    d.mkdir(parents=True, exist_ok=True)
    try:
        exporter = get_exporter("tflite")
        entries = exporter(model, d, ExportOptions(batch_size=batch, seq_len=T))
        fname = next(k for k, v in entries.items() if v.get("format") == "tflite")
        _merge_manifest(d, {fname: entries[fname]})
        return d / fname, "converters.tflite"
    except Exception as e:  # noqa: BLE001
        why = f"{type(e).__name__}: {str(e)[:200]}"
    import tensorflow as tf

    fixed = build(name, batch_size=batch)
    fixed.set_weights(model.get_weights())
    conv = tf.lite.TFLiteConverter.from_keras_model(fixed)
    path = d / "model.tflite"
    path.write_bytes(conv.convert())
    _merge_manifest(d, {"model.tflite": {"format": "tflite"}})
    return path, f"tf.lite.TFLiteConverter.from_keras_model, fixed batch (converters.tflite unavailable: {why})"


def _merge_manifest(folder: Path, entries: dict):
    from rnnedge.manifest import update_manifest

    update_manifest(folder, artifacts=entries)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="out/runtime_ratios")
    ap.add_argument("--models", default="forecast,sentiment,gru-classifier")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--reuse", action="store_true", help="reuse the artifacts already in --out (no export)")
    args = ap.parse_args(argv)

    if args.threads:  # TensorFlow's pools can only be sized before its first op (the exports run ops)
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras

    from rnnedge.benchmarking import bench, machine_info, versions
    from rnnedge.manifest import update_manifest, write_json_atomic

    out_root = Path(args.out)
    report_prev = {}
    if args.reuse and (out_root / "runtime_ratios.json").exists():
        import json

        report_prev = json.loads((out_root / "runtime_ratios.json").read_text())
    report = {"machine": machine_info(), "versions": versions(), "seq_len": T, "batch_sizes": list(BATCHES),
              "threads": args.threads, "repeats": args.repeats, "runs": args.runs, "warmup": args.warmup,
              "metric": "median over repeats of the p50 latency (ms)",
              "load_average_start": os.getloadavg()[0], "models": {}}
    for name in args.models.split(","):
        out = out_root / name
        ref = out / "reference.keras"
        prev = (report_prev.get("models") or {}).get(name) if args.reuse else None
        if prev and all(Path(a).exists() for a in prev["artifacts"]):
            onnx_path, onnx_how = Path(prev["artifacts"][1]), prev["onnx_export"]
            tfl = {b: (Path(a), prev["tflite_export"]) for b, a in zip(BATCHES, prev["artifacts"][2:])}
        else:
            keras.utils.set_random_seed(0)
            model = build(name)
            out.mkdir(parents=True, exist_ok=True)
            model.save(ref)
            t0 = time.perf_counter()
            onnx_path, onnx_how = export_onnx(model, out)
            tfl = {b: export_tflite(name, model, out, b) for b in BATCHES}
            prep = {"vocab_size": VOCAB[name]} if name in VOCAB else None
            for folder in [out] + [p.parent for p, _ in tfl.values()]:
                update_manifest(folder, preprocessing=prep)
            print(f"[{name}] exported in {time.perf_counter() - t0:.1f}s: onnx via {onnx_how}; "
                  f"tflite via {tfl[1][1]}", file=sys.stderr)
        arts = [str(ref), str(onnx_path)] + [str(p) for p, _ in tfl.values()]
        runs = []
        for r in range(args.repeats):
            res = bench(arts, batch_sizes=BATCHES, seq_lens=[T], warmup=args.warmup, runs=args.runs,
                        threads=args.threads, placement=(r == 0))
            runs.append(res)
        entry = {"onnx_export": onnx_how, "tflite_export": tfl[1][1], "artifacts": arts, "by_batch": {}}
        for b in BATCHES:
            def p50s(kind):
                vals = []
                for res in runs:
                    for c in res["cases"]:
                        if c["batch_size"] == b and c["format"] == kind:
                            vals.append(c["latency_ms"]["p50"])
                return vals
            med = {k: statistics.median(v) for k in ("keras", "onnx", "tflite") if (v := p50s(k))}
            row = {f"{k}_p50_ms": round(v, 4) for k, v in med.items()}
            row["per_repeat_p50_ms"] = {k: [round(x, 4) for x in p50s(k)] for k in med}
            best = {k: min(p50s(k)) for k in med}
            row.update({f"{k}_best_p50_ms": round(v, 4) for k, v in best.items()})
            if "keras" in med:
                for k in ("onnx", "tflite"):
                    if k in med:
                        row[f"keras/{k}"] = round(med["keras"] / med[k], 2)
                        row[f"keras/{k} (best)"] = round(best["keras"] / best[k], 2)
            entry["by_batch"][str(b)] = row
        onnx_case = next(c for c in runs[0]["cases"] if c["format"] == "onnx")
        entry["onnx_node_placement"] = onnx_case["info"].get("node_placement")
        entry["onnx_recurrent_ops"] = sorted({v["op"] for v in onnx_case["info"].get("recurrent_placement", {}).values()})
        entry["size_bytes"] = {c["format"]: c["model_size_bytes"] for c in runs[0]["cases"]}
        report["models"][name] = entry
        write_json_atomic(out / "bench_last.json", runs[-1])
    report["load_average_end"] = os.getloadavg()[0]
    write_json_atomic(out_root / "runtime_ratios.json", report)

    print(f"load average after the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"\nKeras vs runtimes, T={T}, threads={args.threads}, median of {args.repeats} x p50({args.runs} runs)"
          f" - {report['machine']['cpu']}")
    hdr = (f"{'model':16} {'batch':>5} {'keras ms':>9} {'onnx ms':>9} {'tflite ms':>9} {'keras/onnx':>10} "
           f"{'keras/tflite':>12} {'(best) k/onnx':>13} {'k/tflite':>9}")
    print(hdr)
    print("-" * len(hdr))
    for name, e in report["models"].items():
        for b, row in e["by_batch"].items():
            def f(k, w, fmt="{:.3f}"):
                return (fmt.format(row[k]) if k in row else "-").rjust(w)
            print(f"{name:16} {b:>5} {f('keras_p50_ms', 9)} {f('onnx_p50_ms', 9)} {f('tflite_p50_ms', 9)} "
                  f"{f('keras/onnx', 10, '{:.1f}x')} {f('keras/tflite', 12, '{:.1f}x')} "
                  f"{f('keras/onnx (best)', 13, '{:.1f}x')} {f('keras/tflite (best)', 9, '{:.1f}x')}")
    for name, e in report["models"].items():
        print(f"{name}: onnx = {e['onnx_export']} (recurrent ops {e['onnx_recurrent_ops']}); tflite = {e['tflite_export']}")
    print(f"report: {out_root / 'runtime_ratios.json'}")
    return report


if __name__ == "__main__":
    main()
