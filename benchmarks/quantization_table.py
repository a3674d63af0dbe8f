"""One quantization table: every preset plus GRU(128) / SimpleRNN(128) / LSTM(128) classifiers, per
format and mode: size ratio, max error, top-1 agreement on held-out data, latency ratio, op counts.

    python benchmarks/quantization_table.py                          # everything (~15-25 min on 2 cores)
    python benchmarks/quantization_table.py --models gru-classifier simple-rnn --epochs 2
    python benchmarks/quantization_table.py --folding-only           # onnxruntime/LiteRT load-time facts
    python benchmarks/quantization_table.py --out benchmarks/out/quantization --runs 50

Per model: train it (``rnnedge.training.train``: the preset's own epochs, or ``--epochs``), export
ONNX, ORT and TFLite (batch 1) with ``rnnedge.exporting.export``, quantize every mode
(``rnnedge.quantization.quantize``: ONNX int8/uint8/int8-static/fp16 and their ORT twins, TFLite
dynamic/fp16/int8) calibrated on 200 training inputs (``--calibration``: generated inputs gave a
full-integer forecast LSTM an error of 0.5, its training windows 0.03), then

* **size ratio**: quantized file / float file of the same format (bytes on disk),
* **max abs err / top-1 agree**: ``rnnedge.validation.validate`` against the Keras model on
  ``--samples`` *held-out* inputs (the model's own data generator with another seed; the built-in
  text corpora are fixed texts, so for ``textgen`` the windows are new but the words are not).
  Top-1 agreement is reported for softmax/sigmoid outputs only, "-" for regressions,
* **latency ratio**: ``rnnedge.benchmarking.bench`` p50 at batch 1, the held-out sequence length,
  one thread, quantized / float of the same format (< 1: faster). **Timings taken on a shared
  machine are noisy**: the JSON records the load average before and after; rerun on a quiet one,
* **ops**: the recurrent and quantization operators (all counts in the JSON; TFLite counts include
  the WHILE bodies), and whether tflite-runtime 2.14 loads the file (its op versions).

``--folding`` (on by default; ``--no-folding`` skips it) measures, on random-weight GRU(64) over 3
features and GRU(512) over 128 features at T=100, how the runtimes treat weight-only int8 at load
time, each case in a fresh
child process: onnxruntime default options vs ``session.disable_quant_qdq=1`` (whether the
``DequantizeLinear`` nodes are constant-folded, read from the optimized graph; session creation,
p50 latency, RSS after load and peak RSS = VmHWM), and LiteRT float vs weight-only int8 vs
dynamic-range. Writes ``quantization_table.json`` and ``quantization_table.md`` to ``--out``.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PRESETS = ["forecast", "gru-classifier", "sentiment", "seq2seq", "simple-rnn", "textgen"]
CLASSIFIERS_128 = {"gru128-classifier": "GRU", "simplernn128-classifier": "SimpleRNN",
                   "lstm128-classifier": "LSTM"}
MODELS = PRESETS + list(CLASSIFIERS_128)
ONNX_MODES = ["int8", "uint8", "int8-static", "fp16"]
TFLITE_MODES = ["dynamic", "int8", "fp16"]
KEY_OPS = ("LSTM", "GRU", "RNN", "Scan", "If", "DynamicQuantizeLSTM", "MatMulInteger", "DynamicQuantizeMatMul",
           "DequantizeLinear", "QuantizeLinear", "QLinearMatMul", "Loop", "WHILE", "UNIDIRECTIONAL_SEQUENCE_LSTM",
           "BIDIRECTIONAL_SEQUENCE_LSTM", "DEQUANTIZE", "QUANTIZE", "FULLY_CONNECTED")


def spec_of(name: str):
    """The spec of a preset, or of a 128-unit classifier (the gru-classifier preset's data and
    softmax head with another recurrent layer)."""
    from rnnedge.spec import load_spec

    if name not in CLASSIFIERS_128:
        return load_spec(name)
    d = copy.deepcopy(load_spec("gru-classifier").dump())
    d["name"] = name
    d["description"] = f"{CLASSIFIERS_128[name]}(128) over float features and a softmax head"
    d["layers"][0] = {"type": CLASSIFIERS_128[name], "units": 128}
    return load_spec(d)


def held_out(spec, samples: int) -> dict:
    """``samples`` inputs the model was not trained on: its data generator with another seed."""
    from rnnedge.data import make_dataset

    ds = make_dataset(spec, seed=spec.train.seed + 1000, samples=max(samples, 8))
    return {k: v[:samples] for k, v in ds.x.items()}


def training_inputs(spec, n: int) -> dict:
    """The first ``n`` inputs of the model's own training data (the calibration set)."""
    from rnnedge.data import make_dataset

    return {k: v[:n] for k, v in make_dataset(spec, seed=spec.train.seed).x.items()}


def _fixed_len(manifest: dict) -> int | None:
    """The longest fixed time axis of any artifact (a TFLite file can be traced at a fixed length)."""
    lens = [i["shape"][1] for e in manifest.get("artifacts", {}).values() for i in e.get("inputs") or []
            if isinstance(i.get("shape"), list) and len(i["shape"]) >= 2 and isinstance(i["shape"][1], int)]
    return max(lens, default=None)


def _pad_tokens(x: dict, T: int | None) -> dict:
    """Token-id inputs post-padded with 0 (the mask value) up to a fixed length ``T``: the same
    result for a masked model, and every artifact can take them (seq2seq's TFLite is fixed at 32)."""
    if not T:
        return x
    return {k: np.pad(v, [(0, 0), (0, T - v.shape[1])] + [(0, 0)] * (v.ndim - 2))
            if v.dtype.kind in "iu" and v.ndim >= 2 and v.shape[1] < T else v for k, v in x.items()}


def _seq_len(x: dict) -> int | None:
    return next((int(v.shape[1]) for v in x.values() if v.ndim >= 2), None)


def _op_counts(path: Path, fmt: str) -> dict[str, int]:
    if fmt == "tflite":
        from converters.tflite.weights import op_counts

        return op_counts(path.read_bytes())
    if fmt == "onnx":
        import onnx

        from rnnedge.quantization import _op_counts as onnx_ops

        return onnx_ops(onnx.load(str(path)))
    return {}


def _key_ops(counts: dict[str, int]) -> str:
    keep = [(k, v) for k, v in counts.items() if k in KEY_OPS]
    total = sum(counts.values())
    return ", ".join(f"{k}" + (f"×{v}" if v > 1 else "") for k, v in keep) + (f" ({total} ops)" if total else "")


def run_model(name: str, root: Path, *, epochs: int | None, samples: int, runs: int, formats: list[str]) -> dict:
    from rnnedge.benchmarking import bench
    from rnnedge.exporting import export
    from rnnedge.manifest import load_manifest
    from rnnedge.quantization import quantize
    from rnnedge.training import train
    from rnnedge.validation import validate

    spec = spec_of(name)
    t0 = time.time()
    tr = train(spec, epochs=epochs, out=root / f"{name}.keras", early_stopping=0)
    info: dict = {"model": name, "epochs": tr.info.get("epochs_run"), "train_metrics": tr.metrics,
                  "train_seconds": round(time.time() - t0, 1), "notes": []}
    out = root / name
    export(tr.path, formats, out, validate=False)
    fixed = _fixed_len(load_manifest(out))
    calib = root / f"{name}.calibration.npz"  # training inputs: what a user passes as --calibration
    np.savez(calib, **_pad_tokens(training_inputs(spec, 200), fixed))
    for fmt, modes in (("onnx", ONNX_MODES), ("tflite", TFLITE_MODES)):
        if fmt not in formats:
            continue
        for n, e in quantize(out, modes, formats=fmt, calibration=calib).items():
            if "error" in e:
                info["notes"].append(f"{n}: {e['error']}")
            w = (e.get("quantization") or {}).get("warning")
            if w:
                info["notes"].append(f"{n}: {w}")
    x = _pad_tokens(held_out(spec, samples), fixed)
    T = _seq_len(x)
    rep = validate(out, samples=samples, calibration=x)
    man = load_manifest(out)
    files = [n for n, e in man["artifacts"].items()
             if e.get("format") in ("onnx", "ort", "tflite") and (out / n).is_file() and "step" not in n]
    lat: dict[str, float] = {}
    if runs:
        b = bench([out / n for n in files], batch_sizes=(1,), seq_lens=(T,) if T else None, runs=runs, warmup=3,
                  threads=1, placement=False)
        lat = {Path(c["artifact"]).name: c["latency_ms"]["p50"] for c in b["cases"]}
        info["load_average"] = b["load_average"]
    float_of = {e.get("format"): n for n, e in man["artifacts"].items()
                if n in files and e.get("precision", "float32") in ("float32", None)
                and not isinstance(e.get("quantization"), dict)}
    rows = []
    for n in files:
        e, row = man["artifacts"][n], rep["artifacts"].get(n, {})
        fmt = e["format"]
        q = e.get("quantization") if isinstance(e.get("quantization"), dict) else {}
        outs = list((row.get("outputs") or {}).values())
        agree = [o["top1_agreement"] for o in outs if o.get("classifier") and o.get("top1_agreement") is not None]
        base = float_of.get(fmt)
        size = (out / n).stat().st_size
        counts = _op_counts(out / n.replace(".ort", ".onnx"), "onnx" if fmt == "ort" else fmt)  # ORT: its ONNX
        compat = e.get("compat") or {}
        rows.append({
            "model": name, "artifact": n, "format": fmt, "mode": row.get("precision") or e.get("precision"),
            "method": q.get("method") or e.get("quantization_method"),
            "size": size, "ratio": round(size / (out / base).stat().st_size, 4) if base else None,
            "max_abs": max((o["max_abs"] for o in outs), default=None),
            "top1_agreement": min(agree) if agree else None,
            "verdict": row.get("verdict"), "message": row.get("message", ""),
            "p50_ms": lat.get(n), "latency_ratio": (round(lat[n] / lat[base], 3)
                                                    if base and n in lat and lat.get(base) else None),
            "ops": counts, "key_ops": _key_ops(counts),
            "tflite_runtime_2_14": compat.get("tflite_runtime_2_14") if fmt == "tflite" else None,
            "warning": q.get("warning"), "notes": q.get("notes"),
        })
    info["seq_len"] = T
    info["held_out_samples"] = samples
    info["rows"] = rows
    return info


# ---------------------------------------------------------------------------------------
# load-time facts: DequantizeLinear folding in onnxruntime, DEQUANTIZE in LiteRT
# ---------------------------------------------------------------------------------------
CHILD = r"""
import json, sys, time
import numpy as np
path, kind, opt, T = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) / 1024
res = {}
if kind == "onnx":
    import onnxruntime as ort
    so = ort.SessionOptions(); so.intra_op_num_threads = 1
    if opt == "fold":
        so.add_session_config_entry("session.disable_quant_qdq", "1")
    so.optimized_model_filepath = sys.argv[5]
    base = status("VmRSS"); t0 = time.perf_counter()
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    i = s.get_inputs()[0]
    run = lambda x: s.run(None, {i.name: x})
    F = i.shape[2]
else:
    from ai_edge_litert.interpreter import Interpreter
    base = status("VmRSS"); t0 = time.perf_counter()
    it = Interpreter(model_path=path, num_threads=1)
    d = it.get_input_details()[0]; F = int(d["shape"][2])
    it.resize_tensor_input(d["index"], [1, T, F], strict=False); it.allocate_tensors()
    def run(x):
        it.set_tensor(d["index"], x); it.invoke()
res["session_ms"] = (time.perf_counter() - t0) * 1e3
res["rss_after_load_mb"] = status("VmRSS") - base
x = np.random.default_rng(0).standard_normal((1, T, F)).astype(np.float32)
ts = []
for k in range(33):
    t = time.perf_counter(); run(x); ts.append(time.perf_counter() - t)
res["first_run_ms"] = ts[0] * 1e3
res["p50_ms"] = float(np.median(ts[3:])) * 1e3
res["peak_rss_mb"] = status("VmHWM") - base
print(json.dumps(res))
"""


FOLDING_MODELS = ((64, 3), (512, 128))  # (GRU units, input features): gru-classifier's size, a large one


def folding(root: Path, T: int = 100, models=FOLDING_MODELS, repeats: int = 3) -> dict:
    """Weight-only int8 at load time in onnxruntime and LiteRT (see the module docstring)."""
    import keras
    import onnx

    from rnnedge.exporting import export
    from rnnedge.quantization import quantize

    child = root / "folding_child.py"
    child.write_text(CHILD)
    rows = []
    for units, features in models:
        keras.utils.set_random_seed(0)
        m = keras.Sequential([keras.Input((None, features), name="x"), keras.layers.GRU(units),
                              keras.layers.Dense(4)], name=f"gru{units}")
        src = root / f"gru{units}.keras"
        m.save(src)
        out = root / f"folding-gru{units}"
        export(src, ["onnx", "tflite"], out, validate=False)
        quantize(out, ["int8"], formats="onnx")
        quantize(out, ["int8", "dynamic"], formats="tflite")
        cases = [("model.onnx", "onnx", "default"), ("model.int8.onnx", "onnx", "default"),
                 ("model.int8.onnx", "onnx", "fold"), ("model.tflite", "tflite", "-"),
                 ("model.int8.tflite", "tflite", "-"), ("model.dynamic.tflite", "tflite", "-")]
        for f, kind, opt in cases:
            runs = []
            opt_path = out / f"optimized.{opt}.{f}.onnx"
            for _ in range(repeats):
                p = subprocess.run([sys.executable, str(child), str(out / f), kind, opt, str(T), str(opt_path)],
                                   capture_output=True, text=True, timeout=600)
                if p.returncode != 0:
                    err = p.stderr.strip().splitlines()[-1][:300] if p.stderr.strip() else f"exit {p.returncode}"
                    runs.append({"error": err})
                    continue
                runs.append(json.loads(p.stdout.strip().splitlines()[-1]))
            ok = [r for r in runs if "error" not in r]
            row = {"model": f"GRU({units}), {features} features", "file": f,
                   "runtime": "onnxruntime" if kind == "onnx" else "LiteRT",
                   "option": {"fold": "session.disable_quant_qdq=1"}.get(opt, "default"),
                   "kib": round((out / f).stat().st_size / 1024, 1)}
            if ok:
                row.update({k: round(min(r[k] for r in ok), 2) for k in ok[0]})
            else:
                row["error"] = runs[0]["error"]
            if kind == "onnx" and opt_path.is_file():
                g = onnx.load(str(opt_path))
                row["dequantize_nodes_after_optimizer"] = sum(n.op_type == "DequantizeLinear" for n in g.graph.node)
            rows.append(row)
    return {"models": "GRU(units) -> Dense(4), random weights", "seq_len": T, "repeats": repeats,
            "statistic": "minimum over repeats, each a fresh process; memory relative to the process after "
                         "importing the runtime", "rows": rows}


# ---------------------------------------------------------------------------------------
# output
# ---------------------------------------------------------------------------------------
def _f(x, spec):
    return "-" if x is None else format(x, spec)


def markdown(results: list[dict]) -> str:
    lines = ["| model | artifact | mode | method | KiB | size ratio | max abs err | top-1 agree | verdict | "
             "latency ratio | ops | loads in tflite-runtime 2.14 |",
             "|---|---|---|---|---:|---:|---:|---:|---|---:|---|---|"]
    for r in results:
        for row in r["rows"]:
            v = row["verdict"] or "-"
            if v != "pass" and row["message"]:
                v += f": {row['message'][:60]}"
            lines.append(
                f"| {row['model']} | {row['artifact']} | {row['mode'] or '-'} | {row['method'] or '-'} | "
                f"{row['size'] / 1024:.1f} | {_f(row['ratio'], '.2f')} | {_f(row['max_abs'], '.1e')} | "
                f"{_f(row['top1_agreement'], '.3f')} | {v} | {_f(row['latency_ratio'], '.2f')} | {row['key_ops']} | "
                + {True: "yes", False: "no", None: "-"}[row["tflite_runtime_2_14"]] + " |")
    return "\n".join(lines)


def markdown_folding(f: dict) -> str:
    lines = [f"{f['models']}, T={f['seq_len']}, batch 1, 1 thread ({f['statistic']}):", "",
             "| model | file | runtime | option | KiB | DequantizeLinear after optimizer | session ms | "
             "p50 ms | RSS after load MiB | peak RSS MiB |",
             "|---|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in f["rows"]:
        lines.append(f"| {r['model']} | {r['file']} | {r['runtime']} | {r['option']} | {r['kib']} | "
                     f"{r.get('dequantize_nodes_after_optimizer', '-')} | {_f(r.get('session_ms'), '.1f')} | "
                     f"{_f(r.get('p50_ms'), '.3f')} | {_f(r.get('rss_after_load_mb'), '.1f')} | "
                     f"{_f(r.get('peak_rss_mb'), '.1f')} |" + (f" error: {r['error']}" if "error" in r else ""))
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=MODELS, help=f"from: {' '.join(MODELS)}")
    ap.add_argument("--formats", nargs="+", default=["onnx", "ort", "tflite"])
    ap.add_argument("--epochs", type=int, default=None, help="training epochs (default: each spec's own)")
    ap.add_argument("--samples", type=int, default=200, help="held-out inputs for parity and top-1 agreement")
    ap.add_argument("--runs", type=int, default=30, help="timed runs per artifact (0: no latency)")
    ap.add_argument("--folding", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--folding-only", action="store_true")
    ap.add_argument("--out", default="benchmarks/out/quantization")
    a = ap.parse_args(argv)
    bad = [m for m in a.models if m not in MODELS]
    if bad:
        ap.error(f"unknown model(s) {bad}; choose from {MODELS}")
    root = Path(a.out)
    root.mkdir(parents=True, exist_ok=True)
    from rnnedge.benchmarking import machine_info
    from rnnedge.manifest import write_json_atomic
    from rnnedge.quantization import default_reduce_range

    results = []
    for name in ([] if a.folding_only else a.models):
        print(f"== {name}", file=sys.stderr, flush=True)
        try:
            r = run_model(name, root, epochs=a.epochs, samples=a.samples, runs=a.runs, formats=a.formats)
        except Exception as e:  # noqa: BLE001 - one model failing is a note, not the end of the table
            print(f"   failed: {type(e).__name__}: {e}", file=sys.stderr)
            results.append({"model": name, "error": f"{type(e).__name__}: {e}", "rows": []})
            continue
        results.append(r)
        for n in r["notes"]:
            print(f"   note: {n}", file=sys.stderr)
    fold = folding(root) if (a.folding or a.folding_only) else None
    rr, why = default_reduce_range()
    write_json_atomic(root / "quantization_table.json", {
        "machine": machine_info(), "reduce_range": rr, "reduce_range_reason": why, "args": vars(a),
        "timings": "noisy unless the machine was otherwise idle: see each model's load_average",
        "results": results, "folding": fold})
    md = markdown(results) if results else ""
    if fold:
        md += ("\n\n" if md else "") + markdown_folding(fold)
    (root / "quantization_table.md").write_text(md + "\n")
    print(md)
    print(f"\nreduce_range={rr} ({why}); JSON: {root / 'quantization_table.json'}", file=sys.stderr)


if __name__ == "__main__":
    main()
