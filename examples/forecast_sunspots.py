"""Forecast next year's sunspot number with a small GRU, then ship it to the edge.

The task
    Yearly mean sunspot numbers, 1700-2008 (309 values, the ~11-year solar cycle). Given the
    previous 12 years, predict the next one. The last 30 years (1979-2008) are held out: they
    are never trained on, and the model is judged on them one step ahead, each forecast made
    from the true history (the years before the forecast year).

The data
    ``statsmodels.api.datasets.sunspots`` (ships with statsmodels: ``pip install rnnedge[examples]``).
    The training years are written to ``OUT/data/sunspots_train.csv`` and trained with the spec's
    ``data: {kind: window}``: scaled sliding windows of a CSV column. The scaler (mean/std of the
    training part) and the window length are recorded with the model and in every manifest, so
    this script's evaluation and the deployed bundle scale inputs the same way.

Run it
    python examples/forecast_sunspots.py                   # full run (about a minute of training)
    python examples/forecast_sunspots.py --quick -o /tmp/s # plumbing check in seconds (used by the test)
    python examples/forecast_sunspots.py --plot            # also OUT/forecast.png (needs matplotlib)

What it prints
    one line per step; the pipeline tables (export, quantize, parity, CPU latency, bundle);
    then the held-out evaluation: MAE / RMSE in sunspot units for the Keras model, every
    exported artifact (float and quantized) and the naive last-value baseline (year t is
    predicted as year t-1), with the improvement over the baseline (naive MAE / model MAE).
    ``OUT/summary.json`` holds all of it. Exit code 0 when parity and the bundle check pass.

Streaming
    The export also writes step models (``model.step.onnx`` / ``model.step.tflite``: one year
    in, the GRU state carried explicitly). Fed each 12-year window one year at a time from a
    reset state, a :class:`~rnnedge.runtime.streaming.StreamingSession` computes exactly what
    the window model computes, so its forecasts must match (the table shows both). A session
    that never resets (the whole history streamed) is a different computation: the model was
    trained on 12-year windows starting from a zero state, so that is not used here.

The same with the ``rnnedge`` CLI (after writing the CSV)
    rnnedge train examples/specs/forecast_sunspots.yaml --data OUT/data/sunspots_train.csv \\
        --column SUNACTIVITY -o OUT/model.keras
    rnnedge export OUT/model.keras -f onnx,ort,tflite --streaming -o OUT/export --no-validate
    rnnedge quantize OUT/export -m int8,fp16,dynamic
    rnnedge validate OUT/export
    rnnedge bench OUT/export/model.onnx OUT/export/model.tflite --seq-len 12
    rnnedge deploy OUT/export --runtime litert -o OUT/bundle && rnnedge verify OUT/bundle
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import click
import numpy as np
from rich.console import Console
from rich.table import Table

import rnnedge
from rnnedge.data import scale, unscale
from rnnedge.manifest import load_manifest, write_json_atomic
from rnnedge.runtime.streaming import StreamingSession, is_step_model
from rnnedge.showcase import deliver, summary_tables

NAME = "forecast_sunspots"
SPEC = Path(__file__).parent / "specs" / f"{NAME}.yaml"
COLUMN = "SUNACTIVITY"
RUNNABLE = ("keras", "onnx", "ort", "tflite", "tfjs")
console = Console()


# ----------------------------------------------------------------------------- data
def load_sunspots() -> tuple[np.ndarray, np.ndarray]:
    """(years, values) of the yearly sunspot numbers that ship with statsmodels."""
    try:
        import statsmodels.api as sm
    except ImportError:
        raise SystemExit("this example needs statsmodels: pip install 'rnnedge[examples]'") from None
    df = sm.datasets.sunspots.load_pandas().data
    return df["YEAR"].to_numpy().astype(int), df[COLUMN].to_numpy().astype(np.float32)


def write_csv(path: Path, years: np.ndarray, values: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["YEAR," + COLUMN] + [f"{y},{v:g}" for y, v in zip(years, values)]
    path.write_text("\n".join(lines) + "\n")
    return path


def windows(values: np.ndarray, targets: range, preprocessing: dict) -> np.ndarray:
    """Model-ready inputs: for each target index t, the scaled ``window`` values before t."""
    W = preprocessing["window"]
    z = scale(values, preprocessing["scaler"])
    return np.stack([z[t - W:t] for t in targets])[..., None].astype(np.float32)


# ----------------------------------------------------------------------------- evaluation
def predict(path: Path, x: np.ndarray) -> np.ndarray:
    """Scaled forecasts of ``path`` for inputs ``x`` (N, W, 1), in batches the model accepts."""
    with rnnedge.open_runner(path) as r:
        name = r.inputs[0].name
        b = r.inputs[0].shape[0]
        step = b if isinstance(b, int) and b > 0 else len(x)  # a .tflite takes a fixed batch (1)
        outs = [next(iter(r.run({name: x[i:i + step]}).values())) for i in range(0, len(x), step)]
    return np.concatenate(outs).reshape(len(x), -1)[:, 0]


def predict_streaming(path: Path, x: np.ndarray) -> np.ndarray:
    """The step model: for each window, reset the state and feed its years one at a time."""
    out = []
    with StreamingSession(path) as s:
        for window in x:
            s.reset()
            for year in window:           # year: (1,) one scaled value
                y = s.step(year)
            out.append(float(y[0]))       # the output after the window's last year
    return np.asarray(out, np.float32)


def bundle_forecasts(bundle: Path, history: np.ndarray) -> np.ndarray:
    """The deployed bundle's own forecasts: ``predict.py --stream`` reads one value per line and,
    once it holds a window of values, prints the next year's forecast (scaled with preprocess.json)."""
    run = subprocess.run([sys.executable, "predict.py", "--stream"], cwd=bundle, capture_output=True, text=True,
                         input="\n".join(repr(float(v)) for v in history) + "\n", check=True)
    return np.asarray([json.loads(line)["value"][0] for line in run.stdout.splitlines() if line.startswith("{")],
                      np.float32)


def errors(pred: np.ndarray, actual: np.ndarray) -> dict:
    e = pred - actual
    return {"mae": float(np.abs(e).mean()), "rmse": float(np.sqrt((e ** 2).mean()))}


def evaluate(export_dir: Path, values: np.ndarray, test_idx: range) -> tuple[dict, dict]:
    """MAE/RMSE on the held-out years for the Keras reference, each artifact and the naive baseline."""
    man = load_manifest(export_dir)
    pre = man["preprocessing"]               # the scaler and window the bundle uses too
    x = windows(values, test_idx, pre)
    actual = values[test_idx.start:test_idx.stop]
    rows, preds = {}, {}
    naive = values[test_idx.start - 1:test_idx.stop - 1]
    rows["naive (t-1)"] = errors(naive, actual)
    preds["naive"] = naive
    # the Keras reference, then float artifacts, quantized ones (model.<mode>.*), step models
    names = sorted(man["artifacts"], key=lambda n: (n != "reference.keras", is_step_model(man["artifacts"][n]),
                                                    n.count(".") > 1, n))
    for name in names:
        entry = man["artifacts"][name]
        if entry.get("format") not in RUNNABLE:  # e.g. ORT's required_operators.config
            continue
        if is_step_model(entry):
            z = predict_streaming(export_dir / name, x)
            label = f"{name} *"
        else:
            z = predict(export_dir / name, x)
            label = name
        p = unscale(z, pre["scaler"])
        preds[name] = p
        q = entry.get("quantization")          # {"mode": "int8", ...} for quantized artifacts
        rows[label] = dict(errors(p, actual), artifact=name, size_bytes=entry.get("size"),
                           quantization=q.get("mode") if isinstance(q, dict) else None)
    ref_mae = rows["reference.keras"]["mae"]
    for label, r in rows.items():
        r["improvement_over_naive"] = rows["naive (t-1)"]["mae"] / r["mae"]
        if not label.startswith("naive"):
            r["mae_minus_keras"] = r["mae"] - ref_mae
    return rows, preds


def task_table(rows: dict, title: str) -> Table:
    t = Table(title=title, caption="* step model: each window fed one year at a time from a reset state\n"
                                   "bytes: file size (tfjs: the folder, with tf.min.js for its demo page)")
    for c in ("artifact", "MAE", "RMSE", "vs naive", "MAE-Keras", "bytes"):
        t.add_column(c, justify="left" if c == "artifact" else "right", no_wrap=c == "artifact")
    for label, r in rows.items():
        d = r.get("mae_minus_keras")
        t.add_row(label, f"{r['mae']:.2f}", f"{r['rmse']:.2f}", f"{r['improvement_over_naive']:.2f}x",
                  "" if d is None else f"{d:+.3f}", str(r.get("size_bytes") or ""))
    return t


def plot(path: Path, years: np.ndarray, actual: np.ndarray, preds: dict) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        console.print("[yellow]--plot: matplotlib is not installed; no plot written[/]")
        return None
    fig, ax = plt.subplots(figsize=(9, 4))
    ax.plot(years, actual, "k-o", ms=3, label="actual")
    ax.plot(years, preds["model.onnx"] if "model.onnx" in preds else preds["reference.keras"], "-s", ms=3,
            label="GRU forecast (model.onnx)")
    ax.plot(years, preds["naive"], "--", color="grey", label="naive (last year)")
    ax.set_xlabel("year")
    ax.set_ylabel("sunspot number")
    ax.set_title("Held-out years: one-step-ahead forecasts")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------- main
@click.command()
@click.option("-o", "--out", type=click.Path(path_type=Path), default=Path("runs") / NAME, show_default=True,
              help="output folder")
@click.option("--quick", is_flag=True, help="tiny training and benchmark: checks the plumbing in seconds")
@click.option("--epochs", type=int, default=None, help="override the spec's epochs")
@click.option("--seed", type=int, default=None, help="override the spec's seed")
@click.option("--test-years", type=click.IntRange(5, 100), default=30, show_default=True,
              help="last years held out for evaluation (never trained on)")
@click.option("--plot", "want_plot", is_flag=True, help="write OUT/forecast.png (matplotlib)")
def main(out: Path, quick: bool, epochs: int | None, seed: int | None, test_years: int, want_plot: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)

    # 1. data: train on everything before the held-out years
    years, values = load_sunspots()
    n_train = len(values) - test_years
    csv = write_csv(out / "data" / "sunspots_train.csv", years[:n_train], values[:n_train])
    test_idx = range(n_train, len(values))
    console.print(f"[bold]1 data[/]   statsmodels sunspots {years[0]}-{years[-1]} ({len(values)} years): "
                  f"train {years[0]}-{years[n_train - 1]} -> {csv}, held out {years[n_train]}-{years[-1]}")

    # 2. spec
    spec = rnnedge.load_spec(SPEC)
    if quick:
        epochs = epochs or 2
    W = spec.data.window
    console.print(f"[bold]2 spec[/]   {SPEC.name}: {spec.layers[0].type}({spec.layers[0].units}) over {W} years")

    # 3. train (the window data kind scales the column and makes the windows; validation = last years, in order)
    console.print("[bold]3 train[/]")
    tr = rnnedge.train(spec, data=csv, column=COLUMN, out=out / "model.keras", epochs=epochs, seed=seed,
                       progress=not quick)
    console.print(f"         {tr.info['epochs_run']} epochs, {tr.info['train_samples']} windows "
                  f"(+{tr.info['val_samples']} validation), scaler {tr.preprocessing['scaler']}")

    # 4. export (+ step models), quantize, validate parity, bench, Raspberry Pi bundle
    console.print("[bold]4 deliver[/]")
    res = deliver(
        out / "model.keras", out, streaming=True, bench_runs=3 if quick else 30, bench_seq_len=W,
        deploy_runtime="litert", on_step=lambda name, phase: phase == "start" and console.print(f"         {name} ..."))
    for t in summary_tables(res, title=NAME):
        console.print(t)

    # 5. the task, on the held-out years, in every artifact
    console.print("[bold]5 evaluate[/] held-out years, one step ahead from the true history")
    rows, preds = evaluate(res.export_dir, values, test_idx)
    actual, keras_p = values[n_train:], preds["reference.keras"]
    model_mae, naive_mae = rows["reference.keras"]["mae"], rows["naive (t-1)"]["mae"]
    # the Raspberry Pi bundle as shipped (predict.py + model.tflite + preprocess.json), each test year's
    # window streamed in order
    bundle_p = bundle_forecasts(res.bundle, values[n_train - W:-1])
    b = rows["bundle predict.py --stream"] = dict(errors(bundle_p, actual), artifact="bundle/model.tflite")
    b.update(improvement_over_naive=naive_mae / b["mae"], mae_minus_keras=b["mae"] - model_mae)
    console.print(task_table(rows, f"held-out {years[n_train]}-{years[-1]}: error in sunspot units"))
    stream_diff = float(np.abs(preds["model.step.onnx"] - keras_p).max())
    bundle_diff = float(np.abs(bundle_p - preds["model.tflite"]).max())
    console.print(f"step model (reset per window) vs Keras: max |diff| {stream_diff:.2g}; "
                  f"bundle predict.py vs model.tflite: max |diff| {bundle_diff:.2g} (sunspot units)")
    console.print(f"GRU MAE {model_mae:.2f} vs naive {naive_mae:.2f}: "
                  f"{'beats' if model_mae < naive_mae else 'does NOT beat'} the baseline "
                  f"({naive_mae / model_mae:.2f}x)")
    png = plot(out / "forecast.png", years[n_train:], actual, preds) if want_plot else None

    # 6. summary
    failed = [n for n, a in (res.validation or {}).get("artifacts", {}).items() if a.get("verdict") != "pass"]
    summary = {
        "example": NAME,
        "ok": bool(res.ok),
        "quick": quick,
        "data": {"source": "statsmodels.api.datasets.sunspots (yearly mean sunspot numbers)", "column": COLUMN,
                 "years": [int(years[0]), int(years[-1])], "n": int(len(values)),
                 "train_years": [int(years[0]), int(years[n_train - 1])], "n_train": n_train,
                 "test_years": [int(years[n_train]), int(years[-1])], "n_test": test_years,
                 "train_csv": str(csv), "window": W, "scaler": tr.preprocessing["scaler"]},
        "train": {"epochs_run": tr.info["epochs_run"], "metrics": tr.metrics},
        "task": {"metric": "MAE / RMSE in sunspot units on the held-out years (one step ahead)",
                 "rows": rows, "model_mae": model_mae, "naive_mae": naive_mae,
                 "improvement_over_naive": naive_mae / model_mae, "beats_naive": model_mae < naive_mae,
                 "streaming_max_abs_diff_vs_keras": stream_diff,
                 "bundle_max_abs_diff_vs_tflite": bundle_diff,
                 "predictions": {k: [float(v) for v in p] for k, p in preds.items()},
                 "actual": [float(v) for v in actual], "plot": str(png) if png else None},
        "pipeline": res.to_dict(),
    }
    write_json_atomic(out / "summary.json", summary)
    console.print(f"[bold]6 summary[/] {out / 'summary.json'}")
    if not res.ok:
        console.print(f"[red]FAILED[/]: parity failed for {failed or 'none'}; "
                      f"verify: {[s['detail'] for s in res.steps if s['step'] == 'verify']}")
        sys.exit(1)


if __name__ == "__main__":
    main()
