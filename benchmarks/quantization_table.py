"""Size, max error and top-1 agreement of every preset x format x quantization mode.

For each preset: train it briefly on its built-in data (``rnnedge.training.train``), export it
(``reference.keras`` + ONNX / TFLite / TF.js with the real converters), quantize
(``rnnedge.quantization``) and validate everything against the Keras reference
(``rnnedge.validation``), then print one Markdown table and write JSON.

    .venv/bin/python benchmarks/quantization_table.py                       # sentiment forecast gru-classifier
    .venv/bin/python benchmarks/quantization_table.py --presets forecast --epochs 1 --formats onnx
    .venv/bin/python benchmarks/quantization_table.py --out benchmarks/out/quantization

Nothing here is timed: sizes are bytes on disk, errors are against the Keras reference on
``--samples`` realistic inputs per sequence length (``rnnedge.inputs``).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ONNX_MODES = ["int8", "uint8", "fp16", "int8-static"]
TFLITE_MODES = ["dynamic", "fp16", "int8"]


def _export(model_path: Path, out: Path, formats: list[str], tfjs_quant: list[str]) -> list[str]:
    """Export with the lead's orchestrator when present, else the format registry directly."""
    notes = []
    try:
        from rnnedge.exporting import export
    except ImportError:
        export = None
    for fmt in formats:
        try:
            if export is not None:
                export(str(model_path), fmt=fmt, out_dir=out, validate=False,
                       batch_size=1 if fmt == "tflite" else None,
                       quantize=tfjs_quant if fmt == "tfjs" else ())
            else:  # pragma: no cover - before rnnedge.exporting landed
                import keras

                from converters.registry import ExportOptions, get_exporter
                from rnnedge.manifest import update_manifest
                from rnnedge.models import resolve

                lm = resolve(str(model_path))
                lm.model.save(out / "reference.keras")
                update_manifest(out, artifacts={}, preprocessing=lm.preprocessing, source=lm.source)
                ent = get_exporter(fmt)(lm.model, out, ExportOptions(
                    batch_size=1 if fmt == "tflite" else None, quantize=tfjs_quant if fmt == "tfjs" else []))
                update_manifest(out, artifacts=ent)
                del keras
        except Exception as e:  # noqa: BLE001 - a format that cannot export is a row, not a crash
            notes.append(f"{fmt}: export failed: {type(e).__name__}: {str(e).splitlines()[0][:160]}")
    return notes


def run_preset(preset: str, root: Path, *, epochs: int, samples: int, formats: list[str]) -> dict:
    from rnnedge.manifest import load_manifest
    from rnnedge.quantization import quantize
    from rnnedge.training import train
    from rnnedge.validation import validate

    out = root / preset
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    res = train(preset, epochs=epochs, out=root / f"{preset}.keras", early_stopping=0)
    info = {"preset": preset, "epochs": epochs, "train_metrics": res.metrics,
            "train_seconds": round(time.time() - t0, 1)}
    info["notes"] = _export(Path(res.path), out, formats, ["fp16", "uint8"])
    qres = {}
    if "onnx" in formats:
        try:
            qres.update(quantize(out, ONNX_MODES, formats="onnx"))
        except Exception as e:  # noqa: BLE001
            info["notes"].append(f"onnx quantize: {e}")
    if "tflite" in formats:
        try:
            qres.update(quantize(out, TFLITE_MODES, formats="tflite", calibration_samples=64))
        except Exception as e:  # noqa: BLE001
            info["notes"].append(f"tflite quantize: {e}")
    for name, e in qres.items():
        if "error" in e:
            info["notes"].append(f"{name}: {e['error'][:200]}")
    rep = validate(out, samples=samples)
    man = load_manifest(out)
    tfjs_float = _model_bytes(out, "tfjs", man["artifacts"].get("tfjs", {}))
    rows = []
    for name, row in rep["artifacts"].items():
        entry = man["artifacts"].get(name, {})
        q = entry.get("quantization") if isinstance(entry.get("quantization"), dict) else {}
        outs = row.get("outputs") or {}
        max_abs = max((o["max_abs"] for o in outs.values()), default=None)
        agree = [o["top1_agreement"] for o in outs.values() if "top1_agreement" in o]
        size = _model_bytes(out, name, entry)
        ratio = q.get("ratio")
        if row.get("format") == "tfjs" and name != "tfjs" and tfjs_float:
            ratio = round(size / tfjs_float, 4)
        rows.append({
            "preset": preset, "artifact": name, "format": row.get("format"), "mode": row.get("precision"),
            "size": size, "ratio": ratio, "max_abs": max_abs,
            "top1_agreement": min(agree) if agree else None, "verdict": row["verdict"],
            "message": row.get("message", ""),
            "quantized_ops": q.get("quantized_ops"), "notes": q.get("notes") or entry.get("notes"),
        })
    info["rows"] = rows
    return info


def _model_bytes(folder: Path, name: str, entry: dict) -> int | None:
    """Bytes of the model itself: a file's size; for a TF.js folder model.json + weight shards
    (not the demo page / tf.min.js that travel with it)."""
    p = folder / name
    if p.is_dir():
        return sum(f.stat().st_size for f in p.iterdir() if f.name == "model.json" or f.suffix == ".bin")
    return p.stat().st_size if p.is_file() else entry.get("size")


def _fmt(x, spec):
    return "-" if x is None else format(x, spec)


def markdown(results: list[dict]) -> str:
    lines = ["| preset | artifact | format | mode | size KiB | ratio | max abs err | top-1 agree | verdict |",
             "|---|---|---|---|---:|---:|---:|---:|---|"]
    for r in results:
        for row in r["rows"]:
            lines.append(
                f"| {row['preset']} | {row['artifact']} | {row['format']} | {row['mode']} | "
                f"{_fmt(row['size'] / 1024 if row['size'] else None, '.1f')} | {_fmt(row['ratio'], '.2f')} | "
                f"{_fmt(row['max_abs'], '.2e')} | {_fmt(row['top1_agreement'], '.3f')} | {row['verdict']}"
                + (f": {row['message'][:80]}" if row["verdict"] != "pass" and row["message"] else "") + " |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", nargs="+", default=["sentiment", "forecast", "gru-classifier"])
    ap.add_argument("--formats", nargs="+", default=["onnx", "tflite", "tfjs"])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--samples", type=int, default=64, help="validation inputs per sequence length")
    ap.add_argument("--out", default="benchmarks/out/quantization")
    a = ap.parse_args(argv)
    root = Path(a.out)
    root.mkdir(parents=True, exist_ok=True)
    results = []
    for p in a.presets:
        print(f"== {p}", file=sys.stderr, flush=True)
        r = run_preset(p, root, epochs=a.epochs, samples=a.samples, formats=a.formats)
        results.append(r)
        for n in r["notes"]:
            print(f"   note: {n}", file=sys.stderr)
    from rnnedge.manifest import write_json_atomic
    from rnnedge.quantization import default_reduce_range

    rr, why = default_reduce_range()
    write_json_atomic(root / "quantization_table.json", {"reduce_range": rr, "reduce_range_reason": why,
                                                         "args": vars(a), "results": results})
    md = markdown(results)
    (root / "quantization_table.md").write_text(md + "\n")
    print(md)
    print(f"\nreduce_range={rr} ({why}); JSON: {root / 'quantization_table.json'}", file=sys.stderr)


if __name__ == "__main__":
    main()
