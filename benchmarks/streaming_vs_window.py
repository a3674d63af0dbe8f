"""Streaming (one step + state) vs re-running the whole window at every new sample.

    TF_CPP_MIN_LOG_LEVEL=3 CUDA_VISIBLE_DEVICES=-1 python benchmarks/streaming_vs_window.py \
        [--out benchmarks/out/streaming_vs_window] [--steps 2000] [--windows 48 100] [--runs 300]

Model (forecast-like, random weights, seed 0): LSTM(64, return_sequences) -> LSTM(64) -> Dense(1),
input (T, 1) float.

* step models: ``converters.streaming.export_streaming`` -> ``model.step.onnx`` / ``model.step.tflite``.
* full-window models: ONNX via the native exporter (``converters.onnx``, dynamic T) or tf2onnx
  when that is unavailable; TFLite via ``converters.tflite`` (batch 1, ``seq_len`` = the window)
  or, when unavailable, ``tf.lite`` on a fixed-shape ``tf.function`` (builtin ops).

All at batch 1 with 1 thread (onnxruntime ``intra_op_num_threads=1``; LiteRT ``num_threads=1``,
default XNNPACK delegate). Latency per call: ``perf_counter`` around each call, p50/p99/mean.
"step raw" calls the runtime directly (session.run / set_tensor+invoke+get_tensor) like the window
figures; "step session" is :meth:`StreamingSession.step` (state bookkeeping included).

Sanity check printed with the figures: the step model after exactly W steps from a zero state
equals the full model on that W-step window (same maths). Note that a *sliding* window restarts
from a zero state every time, so its prediction is not the same as the streamed one (which keeps
all history in its state); streaming is the cheaper *and* the unbounded-context option.
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

UNITS = 64


def build_model(seed: int = 0):
    import keras

    keras.utils.set_random_seed(seed)
    x = keras.Input((None, 1), name="series")
    h = keras.layers.LSTM(UNITS, return_sequences=True, name="lstm1")(x)
    h = keras.layers.LSTM(UNITS, name="lstm2")(h)
    return keras.Model(x, keras.layers.Dense(1, name="forecast")(h), name="forecast")


def export_full_onnx(model, out: Path) -> tuple[Path, str]:
    d = out / "full_onnx"
    try:
        from converters.registry import ExportOptions, get_exporter

        entries = get_exporter("onnx")(model, d, ExportOptions())
        return d / next(iter(entries)), "converters.onnx (native LSTM ops, dynamic T)"
    except Exception as e:  # noqa: BLE001 - fall back to tf2onnx
        why = f"{type(e).__name__}: {str(e)[:120]}"
    import tensorflow as tf
    import tf2onnx

    model.output_names = ["forecast"]
    spec = (tf.TensorSpec((None, None, 1), tf.float32, name="series"),)
    d.mkdir(parents=True, exist_ok=True)
    tf2onnx.convert.from_keras(model, input_signature=spec, opset=17, output_path=str(d / "model.onnx"))
    return d / "model.onnx", f"tf2onnx (converters.onnx unavailable: {why})"


def export_full_tflite(model, out: Path, window: int) -> tuple[Path, str]:
    d = out / f"full_tflite_T{window}"
    try:
        from converters.registry import ExportOptions, get_exporter

        entries = get_exporter("tflite")(model, d, ExportOptions(batch_size=1, seq_len=window))
        name = next(k for k, v in entries.items()
                    if v.get("format") == "tflite" and v.get("quantization") in (None, "float32"))
        ops = [o.get("name") if isinstance(o, dict) else o for o in entries[name].get("ops") or []]
        return d / name, f"converters.tflite (batch 1, T={window}{'; ops ' + ', '.join(ops) if ops else ''})"
    except Exception as e:  # noqa: BLE001 - fall back to tf.lite on a fixed-shape tf.function
        why = f"{type(e).__name__}: {str(e)[:160]}"
        print(f"converters.tflite failed ({why}); falling back to tf.lite", file=sys.stderr)
    import tempfile

    import tensorflow as tf

    fn = tf.function(lambda x: model(x, training=False),
                     input_signature=[tf.TensorSpec((1, window, 1), tf.float32, name="series")])
    mod = tf.Module()
    mod.fn = fn
    mod.weights = [getattr(w, "value", w) for w in model.weights]
    with tempfile.TemporaryDirectory() as sm:  # a SavedModel freezes the variables (no READ_VARIABLE)
        tf.saved_model.save(mod, sm, signatures={"serving_default": fn.get_concrete_function()})
        conv = tf.lite.TFLiteConverter.from_saved_model(sm)
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        data = conv.convert()
    d.mkdir(parents=True, exist_ok=True)
    (d / "model.tflite").write_bytes(data)
    return d / "model.tflite", f"tf.lite from a fixed-shape tf.function (converters.tflite unavailable: {why})"


# ----------------------------------------------------------------------------- timing
def timed(fn, n: int, warmup: int) -> dict:
    for _ in range(warmup):
        fn()
    ts = np.empty(n)
    for i in range(n):
        t0 = time.perf_counter()
        fn()
        ts[i] = time.perf_counter() - t0
    ms = ts * 1e3
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "mean_ms": float(ms.mean()), "n": n}


def ort_call(path: Path, feeds: dict):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    ins = [i.name for i in sess.get_inputs()]
    feeds = {n: feeds[n] for n in ins} if set(ins) <= set(feeds) else dict(zip(ins, feeds.values()))
    return lambda: sess.run(names, feeds), sess


def litert_call(path: Path, arrays: list[np.ndarray], reset: bool = False):
    """set_tensor + invoke + get_tensor; through the signature runner when the model has
    resource variables (READ_VARIABLE needs the signature's initialisation).

    ``reset``: ``reset_all_variables()`` before each invoke: only for a .tflite that keeps its
    fused-LSTM state across invokes (files made before rnnedge's stateless rewrite); rnnedge's
    files give the same result without it.
    """
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), num_threads=1)
    it.allocate_tensors()
    ins = it.get_input_details()
    outs = [d["index"] for d in it.get_output_details()]
    if len(ins) != len(arrays):
        raise RuntimeError(f"{path}: {len(ins)} inputs, fed {len(arrays)}")
    by_shape = {}
    for a in arrays:
        by_shape.setdefault(tuple(a.shape), []).append(a)
    ops = set()
    try:
        ops = {d["op_name"] for d in it._get_ops_details()}
    except Exception:  # noqa: BLE001 - private API
        pass
    sigs = it.get_signature_list()
    if "READ_VARIABLE" in ops or "VAR_HANDLE" in ops:
        key = sorted(sigs)[0]
        sr = it.get_signature_runner(key)
        feeds = {}
        for n, d in sr.get_input_details().items():
            feeds[n] = by_shape[tuple(d["shape"])].pop(0)
        return lambda: list(sr(**feeds).values())
    pairs = [(d["index"], by_shape[tuple(d["shape"])].pop(0)) for d in ins]  # zero states: any order

    def call():
        if reset:
            it.reset_all_variables()
        for idx, a in pairs:
            it.set_tensor(idx, a)
        it.invoke()
        return [it.get_tensor(i) for i in outs]

    return call


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/out/streaming_vs_window")
    ap.add_argument("--steps", type=int, default=2000, help="timed step calls per runtime")
    ap.add_argument("--runs", type=int, default=300, help="timed full-window calls per window and runtime")
    ap.add_argument("--windows", type=int, nargs="+", default=[48, 100])
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    from converters.streaming import FILES, export_streaming
    from rnnedge.runtime.streaming import StreamingSession

    model = build_model()
    t0 = time.perf_counter()
    entries = export_streaming(model, out / "step")
    print(f"step models exported in {time.perf_counter() - t0:.1f} s; self-check max abs error "
          + ", ".join(f"{k}: {v['self_check']['max_abs_error']:.2g}" for k, v in entries.items()), file=sys.stderr)
    full_onnx, onnx_how = export_full_onnx(model, out)
    full_tfl = {w: export_full_tflite(model, out, w) for w in args.windows}

    rng = np.random.default_rng(1)
    x_step = rng.standard_normal((1, 1)).astype(np.float32)
    zeros = np.zeros((1, UNITS), np.float32)
    step_feeds = {"series": x_step, **{s["name"]: zeros for s in entries[FILES["onnx"]]["states"]}}
    res: dict = {"model": "LSTM(64, rs) -> LSTM(64) -> Dense(1), input (T, 1)", "batch": 1, "threads": 1,
                 "onnx_full_export": onnx_how, "tflite_full_export": {w: h for w, (_, h) in full_tfl.items()},
                 "load_average": list(os.getloadavg()), "cpu_count": os.cpu_count(), "results": {}}
    warm = 50
    # --- step models
    call, _ = ort_call(out / "step" / FILES["onnx"], step_feeds)
    res["results"]["onnxruntime step raw"] = timed(call, args.steps, warm)
    s = StreamingSession(out / "step" / FILES["onnx"], threads=1)
    res["results"]["onnxruntime step session"] = timed(lambda: s.step(x_step), args.steps, warm)
    call = litert_call(out / "step" / FILES["tflite"], [x_step] + [zeros] * 4)
    res["results"]["litert step raw"] = timed(call, args.steps, warm)
    s = StreamingSession(out / "step" / FILES["tflite"], threads=1)
    res["results"]["litert step session"] = timed(lambda: s.step(x_step), args.steps, warm)
    # --- full windows
    parity = {}
    for w in args.windows:
        xw = rng.standard_normal((1, w, 1)).astype(np.float32)
        call, sess = ort_call(full_onnx, {"series": xw})
        res["results"][f"onnxruntime window T={w}"] = timed(call, args.runs, 10)
        y_full_onnx = float(np.asarray(call()[0]).ravel()[0])
        tfl_path, _ = full_tfl[w]
        call = litert_call(tfl_path, [xw])
        res["results"][f"litert window T={w}"] = timed(call, args.runs, 10)
        y_full_tfl = float(np.asarray(call()[0]).ravel()[0])
        y_keras = float(np.asarray(model(xw, training=False)).ravel()[0])
        ys = {}
        for fmt in ("onnx", "tflite"):
            with StreamingSession(out / "step" / FILES[fmt]) as ss:
                ys[fmt] = float(ss.run(xw)[0, -1, 0])
        parity[f"T={w}"] = {"keras": y_keras, "onnx full": y_full_onnx, "tflite full": y_full_tfl,
                            "onnx stream": ys["onnx"], "tflite stream": ys["tflite"],
                            "max_abs_diff": max(abs(v - y_keras) for v in
                                                (y_full_onnx, y_full_tfl, ys["onnx"], ys["tflite"]))}
    res["parity_after_W_steps"] = parity
    r = res["results"]
    res["speedup_p50"] = {
        f"{rt} T={w}": r[f"{rt} window T={w}"]["p50_ms"] / r[f"{rt} step raw"]["p50_ms"]
        for rt in ("onnxruntime", "litert") for w in args.windows}
    res["load_average_end"] = list(os.getloadavg())
    (out / "results.json").write_text(json.dumps(res, indent=2) + "\n")

    print(f"\n{'what':34} {'p50 ms':>9} {'p99 ms':>9} {'mean ms':>9}")
    for k, v in r.items():
        print(f"{k:34} {v['p50_ms']:9.4f} {v['p99_ms']:9.4f} {v['mean_ms']:9.4f}")
    print("\nwindow p50 / step p50 (raw):", ", ".join(f"{k}: {v:.1f}x" for k, v in res["speedup_p50"].items()))
    print("after W steps, step model vs full model on the same window (max abs diff to Keras):",
          ", ".join(f"{k}: {v['max_abs_diff']:.2g}" for k, v in parity.items()))
    print(f"ONNX full: {onnx_how}")
    for w, (_, how) in full_tfl.items():
        print(f"TFLite full T={w}: {how}")
    print(f"load average start {res['load_average']}, end {res['load_average_end']} ({os.cpu_count()} cores)")
    print(f"written {out / 'results.json'}")


if __name__ == "__main__":
    main()
