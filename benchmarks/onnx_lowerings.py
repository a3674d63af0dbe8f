"""Benchmark (not a test): the ONNX lowerings of one recurrent layer, timed in onnxruntime.

For SimpleRNN, GRU, LSTM and their Bidirectional forms, at several sizes and batch sizes, the
same Keras layer (random weights, input (B, T=100, 32), return_sequences=False) is exported by
``converters.onnx`` with every lowering (``extra["onnx_rnn_lowering"]``):

* ``native``: one ONNX RNN/GRU/LSTM op (onnxruntime's CPU kernel);
* ``scan``: the input projection hoisted into one MatMul over all steps, then a ``Scan`` whose
  body holds only the recurrent Gemm and the gate arithmetic;
* ``auto``: what the exporter emits by default (for SimpleRNN at < 48 units: an ``If`` on the
  batch size choosing between the two); timed only where it differs from both.

Each lowering is timed under the session options given (``--threads``: intra-op threads, 0 =
onnxruntime's default; ``--opt-levels``: graph optimisation levels) with interleaved repeats
(benchmarks/_timing.py), and checked against Keras (max abs error). This is the evidence
behind :func:`converters.onnx.recurrent.choose_lowering`.

    TF_CPP_MIN_LOG_LEVEL=3 CUDA_VISIBLE_DEVICES=-1 python benchmarks/onnx_lowerings.py \
        [--kinds SimpleRNN,GRU,LSTM,BiLSTM] [--units 32,64,256] [--batches 1,8,32,128] \
        [--threads 0] [--opt-levels all] [--out benchmarks/results/onnx_lowerings.json]
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from benchmarks._timing import interleaved, loadavg  # noqa: E402

T, F = 100, 32
KINDS = {"SimpleRNN": ("SimpleRNN", False), "GRU": ("GRU", False), "LSTM": ("LSTM", False),
         "BiSimpleRNN": ("SimpleRNN", True), "BiGRU": ("GRU", True), "BiLSTM": ("LSTM", True)}
OPT_LEVELS = {"all": "ORT_ENABLE_ALL", "extended": "ORT_ENABLE_EXTENDED", "basic": "ORT_ENABLE_BASIC",
              "disabled": "ORT_DISABLE_ALL"}


def layer_model(kind: str, units: int, seed: int = 0):
    import keras

    cls_name, bidir = KINDS[kind]
    keras.utils.set_random_seed(seed)
    x = keras.Input((None, F), name="x")
    layer = getattr(keras.layers, cls_name)(units)
    y = (keras.layers.Bidirectional(layer) if bidir else layer)(x)
    return keras.Model(x, y, name=f"{kind.lower()}_{units}")


def session(data: bytes, threads: int, level: str):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = threads
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, OPT_LEVELS[level])
    return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kinds", default="SimpleRNN,GRU,LSTM,BiSimpleRNN,BiGRU,BiLSTM")
    ap.add_argument("--units", default="32,64,256")
    ap.add_argument("--batches", default="1,8,32,128")
    ap.add_argument("--threads", default="0", help="comma list of intra-op thread counts (0 = default)")
    ap.add_argument("--opt-levels", default="all", help=f"comma list of {', '.join(OPT_LEVELS)}")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "onnx_lowerings.json"))
    a = ap.parse_args(argv)

    from converters.onnx.graph import convert_model
    from converters.registry import ExportOptions
    from rnnedge.manifest import package_versions, write_json_atomic

    rows = []
    print(f"{'layer':18} {'B':>4} {'session':12} " + " ".join(f"{f:>9}" for f in ("native", "scan", "auto"))
          + "  best   auto form   noise")
    for kind in a.kinds.split(","):
        for units in [int(u) for u in a.units.split(",")]:
            model = layer_model(kind, units)
            forms = {}
            for low in ("native", "scan", "auto"):
                mp, info = convert_model(model, ExportOptions(extra={"onnx_rnn_lowering": low}))
                forms[low] = (mp.SerializeToString(), info)
            auto_form = forms["auto"][1]["recurrent_lowering"][0]["lowering"]
            timed = ["native", "scan"] + (["auto"] if auto_form == "if" else [])
            for threads in [int(t) for t in a.threads.split(",")]:
                for level in a.opt_levels.split(","):
                    sess = {f: session(forms[f][0], threads, level) for f in timed}
                    for b in [int(x) for x in a.batches.split(",")]:
                        x = np.random.default_rng(b).standard_normal((b, T, F)).astype(np.float32)
                        ref = np.asarray(model(x, training=False))
                        err = {f: float(np.abs(s.run(None, {"x": x})[0] - ref).max()) for f, s in sess.items()}
                        res = interleaved({f: (lambda s=s: s.run(None, {"x": x})) for f, s in sess.items()},
                                          rounds=a.rounds)
                        best = min(res, key=lambda f: res[f]["p50_ms"])
                        row = {"layer": kind, "units": units, "batch": b, "T": T, "features": F,
                               "threads": threads or "default", "opt_level": level, "auto_form": auto_form,
                               "timings": res, "max_abs_error": err, "best": best,
                               "op_types": {f: forms[f][1]["op_types"] for f in timed}, "loadavg": loadavg()}
                        rows.append(row)
                        cells = " ".join(f"{res[f]['p50_ms']:>9.3f}" if f in res else f"{'-':>9}"
                                         for f in ("native", "scan", "auto"))
                        noise = max(r["noise"] for r in res.values())
                        print(f"{kind + '(' + str(units) + ')':18} {b:>4} {f't{threads or 0}/{level}':12} {cells}"
                              f"  {best:6} {auto_form:10} {noise:5.2f}", flush=True)
    result = {"benchmark": "onnx_lowerings", "T": T, "features": F,
              "machine": {"platform": platform.platform(), "processor": platform.processor(),
                          "cpus": os.cpu_count()},
              "versions": package_versions("onnx", "onnxruntime", "keras", "tensorflow"), "rows": rows}
    write_json_atomic(Path(a.out), result)
    print(f"\nwrote {a.out}")
    return result


if __name__ == "__main__":
    main()
