"""Benchmark (not a test): rnnedge's exports against their peers, in one run, on this CPU.

    TF_CPP_MIN_LOG_LEVEL=3 CUDA_VISIBLE_DEVICES=-1 python benchmarks/peers.py \
        [--all-batches] [--models gru,lstm2,rnn,bilstm,bigru] [--out benchmarks/results/peers]

Models (random weights, seed 0; input (B, T=100, 32); Dense(1) head):
``gru`` GRU(256) -> Dense, ``lstm2`` LSTM(256) x2 -> Dense, ``rnn`` SimpleRNN(256) -> Dense,
``bilstm`` Bidirectional(LSTM(256)) -> Dense, ``bigru`` Bidirectional(GRU(256)) -> Dense.

Per model and batch size (1 and 32; with ``--all-batches`` also 8 and 128), p50 ms of:

* **Keras**: the best of a ``tf.function`` call and ``predict_on_batch`` (TensorFlow backend);
* **tf2onnx**: ``tf2onnx.convert.from_keras`` (opset 17) in onnxruntime;
* **rnnedge ONNX**: ``converters.onnx`` with its default lowering (``recurrent_lowering`` in the
  manifest says which form each layer got) in onnxruntime;
* **bare op**: an ONNX graph holding only the native recurrent op(s) on a time-major input:
  onnxruntime's floor for the native op (for single-layer models the target is rnnedge <= 1.1x it);
* **rnnedge TFLite**: ``rnnedge.export(model, "tflite", batch_size=B, seq_len=100)`` in LiteRT,
  or ``n/a: <reason>`` when that export fails.

onnxruntime sessions use the default session options (what a user gets); ``--threads N`` sets
onnxruntime's intra-op threads, LiteRT's ``num_threads`` and TensorFlow's intra-op threads alike.
All variants of one case are timed interleaved (benchmarks/_timing.py): ``noise`` is how much the
per-round medians moved ((p90 - p10) / p50); the load average is recorded before and after.
Every output is compared with Keras (max abs error).

Streaming (unidirectional models): the step model (``converters.streaming``) driven by
:class:`rnnedge.runtime.streaming.StreamingSession` on onnxruntime and LiteRT, per step, against
re-running the whole 100-step window at batch 1 (rnnedge ONNX / TFLite): ``window / step``.

Writes ``OUT/peers.json`` and ``OUT/peers.png``, and prints the tables and the issue-17 targets.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")  # Keras 3 on a GPU uses CudnnRNNV3 (tf2onnx can't)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from benchmarks._timing import interleaved, loadavg  # noqa: E402

T, F, UNITS = 100, 32, 256
MODELS = {
    "gru": "GRU(256) -> Dense",
    "lstm2": "LSTM(256) x2 -> Dense",
    "rnn": "SimpleRNN(256) -> Dense",
    "bilstm": "Bidirectional(LSTM(256)) -> Dense",
    "bigru": "Bidirectional(GRU(256)) -> Dense",
}
COLUMNS = ("keras", "tf2onnx", "rnnedge_onnx", "bare_op", "rnnedge_tflite")


def build(name: str, seed: int = 0):
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)
    x = keras.Input((None, F), name="x")
    if name == "gru":
        h = layers.GRU(UNITS)(x)
    elif name == "lstm2":
        h = layers.LSTM(UNITS)(layers.LSTM(UNITS, return_sequences=True)(x))
    elif name == "rnn":
        h = layers.SimpleRNN(UNITS)(x)
    elif name == "bilstm":
        h = layers.Bidirectional(layers.LSTM(UNITS))(x)
    elif name == "bigru":
        h = layers.Bidirectional(layers.GRU(UNITS))(x)
    else:
        raise SystemExit(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
    return keras.Model(x, layers.Dense(1, name="head")(h), name=name)


def recurrent_layers(model) -> list[list]:
    """The recurrent layers in order, each as [layer] or [forward, backward]."""
    out = []
    for layer in model.layers:
        if type(layer).__name__ == "Bidirectional":
            out.append([layer.forward_layer, layer.backward_layer])
        elif type(layer).__name__ in ("LSTM", "GRU", "SimpleRNN"):
            out.append([layer])
    return out


def bare_op_model(model):
    """ONNX graph of only the native op(s): time-major x (T, B, F) -> ... -> Y_h of the last."""
    from onnx import TensorProto, helper, numpy_helper

    from converters.onnx.activations import rnn_activation_attrs
    from converters.onnx.recurrent import _DEFAULT_ACTS, cell_weights

    nodes, inits = [], []
    cur = "x_tm"
    stack = recurrent_layers(model)
    for i, layers in enumerate(stack):
        cw = [cell_weights(l) for l in layers]
        kind, h = cw[0]["kind"], cw[0]["H"]
        names = [f"W{i}", f"R{i}", f"B{i}"]
        for n, key in zip(names, ("W", "R", "B")):
            inits.append(numpy_helper.from_array(np.stack([c[key] for c in cw]), n))
        last = i == len(stack) - 1
        outs = ["" if last else f"Y{i}", f"Yh{i}"]
        acts = [a for c in cw for a in c["acts"]]
        nodes.append(helper.make_node(kind, [cur] + names, outs, hidden_size=h,
                                      direction="bidirectional" if len(cw) == 2 else "forward",
                                      **cw[0]["attrs"], **rnn_activation_attrs(acts, _DEFAULT_ACTS[kind])))
        if not last:  # (T, D, B, H) -> (T, B, D*H) for the next op
            nodes.append(helper.make_node("Squeeze", [f"Y{i}", "axis1"], [f"x{i}"]))
            inits.append(numpy_helper.from_array(np.array([1], np.int64), "axis1"))
            cur = f"x{i}"
    graph = helper.make_graph(nodes, "bare_op", [helper.make_tensor_value_info("x_tm", TensorProto.FLOAT,
                                                                               ["T", "B", F])],
                              [helper.make_tensor_value_info(f"Yh{len(stack) - 1}", TensorProto.FLOAT, None)],
                              inits)
    mp = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    mp.ir_version = 8
    return mp


def tf2onnx_model(model):
    import tensorflow as tf
    import tf2onnx

    model.output_names = ["y"]  # avoids KeyError 'keras_tensor_N' (RUNTIME_FACTS.md)
    spec = [tf.TensorSpec((None, None, F), tf.float32, name="x")]
    mp, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=17)
    return mp


def ort_session(data: bytes, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = threads
    return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])


def first_line(e: Exception) -> str:
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:200]


def tflite_export(model, batch: int, out: Path, threads: int):
    """(run callable, runner, entry) of ``rnnedge.export(..., "tflite", batch_size=batch)``, or a reason."""
    import rnnedge
    from rnnedge.runtime import open_runner

    d = out / f"tflite_{model.name}_b{batch}"
    try:
        res = rnnedge.export(model, "tflite", d, batch_size=batch, seq_len=T, validate=False)
        name = next(n for n, e in res.artifacts.items() if e.get("format") == "tflite"
                    and e.get("quantization") in (None, "float32"))
        runner = open_runner(d / name, **({"threads": threads} if threads else {}))
        runner.load()
    except Exception as e:  # noqa: BLE001 - the reason is the result
        return f"n/a: {type(e).__name__}: {first_line(e)}"
    it = runner.interpreter
    (inp,), (outp,) = it.get_input_details(), it.get_output_details()
    return it, inp["index"], outp["index"], runner, res.artifacts[name]


def run_case(model, batch: int, sess: dict, tfl, keras_fns, threads: int) -> dict:
    rng = np.random.default_rng(batch)
    x = rng.standard_normal((batch, T, F)).astype(np.float32)
    x_tm = np.ascontiguousarray(x.transpose(1, 0, 2))
    graph_fn, tf_const = keras_fns
    xt = tf_const(x)
    ref = np.asarray(graph_fn(xt))
    fns = {
        "keras_tf_function": lambda: graph_fn(xt),
        "keras_predict_on_batch": lambda: model.predict_on_batch(x),
        "tf2onnx": lambda: sess["tf2onnx"].run(None, {"x": x}),
        "rnnedge_onnx": lambda: sess["rnnedge_onnx"].run(None, {"x": x}),
        "bare_op": lambda: sess["bare_op"].run(None, {"x_tm": x_tm}),
    }
    errors = {k: float(np.abs(sess[k].run(None, {"x": x})[0] - ref).max()) for k in ("tf2onnx", "rnnedge_onnx")}
    row = {"batch": batch, "T": T, "features": F, "na": {}}
    if isinstance(tfl, str):
        row["na"]["rnnedge_tflite"] = tfl
    else:
        it, i_in, i_out, runner, _ = tfl
        got = runner.run({runner.inputs[0].name: x})
        errors["rnnedge_tflite"] = float(np.abs(next(iter(got.values())) - ref).max())
        set_tensor, invoke, get_tensor = it.set_tensor, it.invoke, it.get_tensor

        def tflite():
            set_tensor(i_in, x)
            invoke()
            return get_tensor(i_out)

        fns["rnnedge_tflite"] = tflite
    row["loadavg_before"] = loadavg()
    t = interleaved(fns, rounds=9)
    row["loadavg_after"] = loadavg()
    k = min(("keras_tf_function", "keras_predict_on_batch"), key=lambda n: t[n]["p50_ms"])
    t["keras"] = dict(t[k], variant=k)
    row["timings"] = t
    row["p50_ms"] = {c: t[c]["p50_ms"] for c in COLUMNS if c in t}
    row["max_abs_error_vs_keras"] = errors
    p = row["p50_ms"]
    row["ratios"] = {"rnnedge_vs_keras": p["keras"] / p["rnnedge_onnx"],
                     "rnnedge_vs_tf2onnx": p["tf2onnx"] / p["rnnedge_onnx"],
                     "rnnedge_over_bare_op": p["rnnedge_onnx"] / p["bare_op"]}
    if "rnnedge_tflite" in p:
        row["ratios"]["tflite_vs_keras"] = p["keras"] / p["rnnedge_tflite"]
    row["noise"] = max(v["noise"] for v in t.values())
    return row


def streaming_rows(model, out: Path, full_onnx: bytes, threads: int) -> dict:
    """Per-step cost of the step models vs re-running the 100-step window, batch 1."""
    from converters.streaming import export_streaming
    from rnnedge.runtime.streaming import StreamingSession

    d = out / f"stream_{model.name}"
    opts = {"threads": threads} if threads else {}
    res = {}
    try:
        export_streaming(model, d, formats=("onnx", "tflite"))
    except Exception as e:  # noqa: BLE001
        return {"na": f"n/a: {type(e).__name__}: {first_line(e)}"}
    x1 = np.random.default_rng(0).standard_normal((1, F)).astype(np.float32)
    xw = np.random.default_rng(0).standard_normal((1, T, F)).astype(np.float32)
    window = ort_session(full_onnx, threads)
    fns = {"window_onnx": lambda: window.run(None, {"x": xw})}
    sessions = []
    for fmt, fname in (("onnx", "model.step.onnx"), ("tflite", "model.step.tflite")):
        try:
            s = StreamingSession(d / fname, **opts)
            s.step(x1)
        except Exception as e:  # noqa: BLE001
            res[f"step_{fmt}_na"] = f"n/a: {type(e).__name__}: {first_line(e)}"
            continue
        sessions.append(s)
        fns[f"step_{fmt}"] = (lambda s=s: s.step(x1))
    try:
        tfl = tflite_export(model, 1, out, threads)
        if not isinstance(tfl, str):
            it, i_in, i_out = tfl[:3]

            def window_tflite():
                it.set_tensor(i_in, xw)
                it.invoke()
                return it.get_tensor(i_out)

            fns["window_tflite"] = window_tflite
    except Exception:  # noqa: BLE001
        pass
    t = interleaved(fns, rounds=9)
    res["timings"] = t
    res["p50_ms"] = {k: v["p50_ms"] for k, v in t.items()}
    if "step_onnx" in t:
        res["onnx_window_over_step"] = t["window_onnx"]["p50_ms"] / t["step_onnx"]["p50_ms"]
    if "step_tflite" in t:
        res["tflite_step_vs_onnx_step"] = t["step_onnx"]["p50_ms"] / t["step_tflite"]["p50_ms"] \
            if "step_onnx" in t else None
        if "window_tflite" in t:
            res["tflite_window_over_step"] = t["window_tflite"]["p50_ms"] / t["step_tflite"]["p50_ms"]
    res["noise"] = max(v["noise"] for v in t.values())
    for s in sessions:
        s.close()
    return res


def plot(result: dict, path: Path) -> Path:
    """One panel per batch size (p50 per model and runtime) and one for streaming."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    batches = sorted({r["batch"] for r in result["rows"]})
    stream = {m: s for m, s in result["streaming"].items() if "p50_ms" in s}
    n = len(batches) + bool(stream)
    fig, axes = plt.subplots(1, n, figsize=(5.5 * n, 5), squeeze=False)
    colors = {"keras": "#999999", "tf2onnx": "#e69f00", "rnnedge_onnx": "#0072b2", "bare_op": "#56b4e9",
              "rnnedge_tflite": "#009e73"}

    def bars(ax, labels, series, title):
        ys = np.arange(len(labels))
        h = 0.8 / len(series)
        for j, (name, vals, color) in enumerate(series):
            ax.barh(ys + j * h, vals, height=h, color=color, label=name)
        ax.set_yticks(ys + 0.4 - h / 2)
        ax.set_yticklabels(labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlabel("p50 latency, ms (log)")
        ax.set_title(title, fontsize=10)
        ax.grid(axis="x", alpha=0.3)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2)

    for ax, b in zip(axes[0], batches):
        rows = [r for r in result["rows"] if r["batch"] == b]
        bars(ax, [MODELS[r["model"]] for r in rows],
             [(c.replace("_", " "), [r["p50_ms"].get(c, np.nan) for r in rows], colors[c]) for c in COLUMNS],
             f"batch {b}, T={T}, {F} features")
    if stream:
        keys = [("step_onnx", "ORT step", "#0072b2"), ("window_onnx", f"ORT {T}-step window", "#56b4e9"),
                ("step_tflite", "LiteRT step", "#009e73"), ("window_tflite", f"LiteRT {T}-step window", "#8fd9b6")]
        bars(axes[0][-1], [MODELS[m] for m in stream],
             [(label, [s["p50_ms"].get(k, np.nan) for s in stream.values()], c) for k, label, c in keys],
             "streaming, batch 1: one step vs the window")
    fig.suptitle(f"rnnedge vs peers on {platform.processor() or platform.machine()} "
                 f"({os.cpu_count()} CPUs; onnxruntime {result['versions'].get('onnxruntime')}; "
                 f"threads {result['threads']})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def targets(result: dict) -> list[tuple[str, bool, str]]:
    """The issue-17 'done when' checks on this run's figures."""
    out = []
    for r in result["rows"]:
        if r["batch"] not in (1, 32):
            continue
        q = r["ratios"]
        tag = f"{r['model']} B={r['batch']}"
        out.append((f"{tag}: rnnedge ONNX >= 1.0x Keras", q["rnnedge_vs_keras"] >= 1.0, f"{q['rnnedge_vs_keras']:.2f}x"))
        out.append((f"{tag}: rnnedge ONNX >= 1.0x tf2onnx", q["rnnedge_vs_tf2onnx"] >= 1.0,
                    f"{q['rnnedge_vs_tf2onnx']:.2f}x"))
        if r["single_layer"]:
            out.append((f"{tag}: rnnedge ONNX <= 1.1x bare op", q["rnnedge_over_bare_op"] <= 1.1,
                        f"{q['rnnedge_over_bare_op']:.2f}x"))
        out.append((f"{tag}: a batched TFLite row", "rnnedge_tflite" in r["p50_ms"],
                    r["na"].get("rnnedge_tflite", "ok")))
    for m, s in result["streaming"].items():
        if "onnx_window_over_step" in s:
            out.append((f"{m}: onnxruntime streaming >= 10x cheaper than a 100-step window",
                        s["onnx_window_over_step"] >= 10, f"{s['onnx_window_over_step']:.1f}x"))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--all-batches", action="store_true", help="also batch 8 and 128")
    ap.add_argument("--threads", type=int, default=0, help="threads for every runtime (0 = each one's default)")
    ap.add_argument("--no-streaming", action="store_true")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "peers"))
    a = ap.parse_args(argv)

    import tensorflow as tf

    if a.threads:
        tf.config.threading.set_intra_op_parallelism_threads(a.threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    from converters.onnx.graph import convert_model
    from converters.registry import ExportOptions
    from rnnedge.manifest import package_versions, write_json_atomic

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    batches = [1, 8, 32, 128] if a.all_batches else [1, 32]
    result = {"benchmark": "peers", "T": T, "features": F, "units": UNITS, "threads": a.threads or "default",
              "machine": {"platform": platform.platform(), "processor": platform.processor(),
                          "cpus": os.cpu_count()},
              "versions": package_versions("onnx", "onnxruntime", "keras", "tensorflow", "tf2onnx",
                                           "ai-edge-litert"),
              "rows": [], "streaming": {}}
    hdr = (f"{'model':34} {'B':>4} " + " ".join(f"{c:>14}" for c in COLUMNS)
           + f" {'x Keras':>8} {'x tf2onnx':>9} {'/bare':>6} {'noise':>6}")
    print(hdr)
    print("-" * len(hdr))
    with tempfile.TemporaryDirectory(prefix="rnnedge-peers-") as tmp:
        tmp = Path(tmp)
        for name in a.models.split(","):
            model = build(name)
            mp, info = convert_model(model, ExportOptions())
            full = mp.SerializeToString()
            sess = {"rnnedge_onnx": ort_session(full, a.threads),
                    "bare_op": ort_session(bare_op_model(model).SerializeToString(), a.threads)}
            try:
                sess["tf2onnx"] = ort_session(tf2onnx_model(model).SerializeToString(), a.threads)
            except Exception as e:  # noqa: BLE001
                raise SystemExit(f"tf2onnx failed on {name}: {first_line(e)}") from None
            graph_fn = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
            for b in batches:
                tfl = tflite_export(model, b, tmp, a.threads)
                row = run_case(model, b, sess, tfl, (graph_fn, tf.constant), a.threads)
                row.update(model=name, description=MODELS[name], single_layer=len(recurrent_layers(model)) == 1,
                           recurrent_lowering=info["recurrent_lowering"], rnnedge_op_types=info["op_types"])
                if not isinstance(tfl, str):
                    e = tfl[4]
                    row["tflite_entry"] = {k: e.get(k) for k in ("batch_size", "ops", "op_names", "lstm_mode",
                                                                  "recurrent_lowering", "notes") if k in e}
                result["rows"].append(row)
                p, q = row["p50_ms"], row["ratios"]
                cells = " ".join(f"{p[c]:>14.3f}" if c in p else f"{'n/a':>14}" for c in COLUMNS)
                print(f"{MODELS[name]:34} {b:>4} {cells} {q['rnnedge_vs_keras']:>8.2f} "
                      f"{q['rnnedge_vs_tf2onnx']:>9.2f} {q['rnnedge_over_bare_op']:>6.2f} {row['noise']:>6.2f}",
                      flush=True)
                for c, why in row["na"].items():
                    print(f"{'':34} {'':>4} {c}: {why}")
            if not a.no_streaming and len(recurrent_layers(model)) and name in ("gru", "lstm2", "rnn"):
                result["streaming"][name] = streaming_rows(model, tmp, full, a.threads)
    if result["streaming"]:
        print(f"\nstreaming, batch 1 (per step vs re-running the {T}-step window), p50 ms")
        print(f"{'model':34} {'ORT step':>9} {'ORT window':>11} {'ORT x':>7} {'LiteRT step':>12} "
              f"{'LiteRT window':>14} {'LiteRT x':>9} {'noise':>6}")
        for m, s in result["streaming"].items():
            if "na" in s:
                print(f"{MODELS[m]:34} {s['na']}")
                continue
            p = s["p50_ms"]

            def f(k, w):
                return f"{p[k]:>{w}.4f}" if k in p else f"{'n/a':>{w}}"

            print(f"{MODELS[m]:34} {f('step_onnx', 9)} {f('window_onnx', 11)} "
                  f"{s.get('onnx_window_over_step', float('nan')):>7.1f} {f('step_tflite', 12)} "
                  f"{f('window_tflite', 14)} {s.get('tflite_window_over_step', float('nan')):>9.1f} "
                  f"{s['noise']:>6.2f}")
    checks = targets(result)
    result["targets"] = [{"check": c, "ok": ok, "value": v} for c, ok, v in checks]
    print("\nissue-17 targets (this run):")
    for c, ok, v in checks:
        print(f"  [{'ok' if ok else 'FAIL'}] {c}: {v}")
    write_json_atomic(out / "peers.json", result)
    png = plot(result, out / "peers.png")
    print(f"\nwrote {out / 'peers.json'} and {png}")
    return result


if __name__ == "__main__":
    main()
