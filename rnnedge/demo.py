"""``rnnedge demo``: the whole toolkit on one preset, in a few minutes on 2 cores.

train (built-in data) -> export ONNX, ORT, TFLite, TF.js -> quantize -> validate parity ->
benchmark on CPU -> Raspberry Pi bundle (+ verify). Returns a summary; the CLI prints it.
"""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

DEFAULT_QUANT = ("int8", "fp16", "dynamic")


@dataclass
class DemoResult:
    out_dir: Path
    steps: list[dict] = field(default_factory=list)
    validation: Optional[dict] = None
    bench: Optional[dict] = None
    bundle: Optional[Path] = None
    ok: bool = True


def _node_ready() -> bool:
    try:
        from rnnedge.runtime.tfjs import node_status  # type: ignore

        return bool(node_status()[0])
    except Exception:
        return shutil.which("node") is not None and (
            Path(__file__).parent / "runtime" / "node" / "node_modules" / "@tensorflow" / "tfjs").exists()


def demo(preset: str = "forecast", out_dir: str | Path = "rnnedge-demo", *, epochs: Optional[int] = None,
         samples: Optional[int] = None, quantize: tuple[str, ...] = DEFAULT_QUANT, bench_runs: int = 30,
         formats: Optional[tuple[str, ...]] = None, deploy_runtime: str = "litert",
         on_step: Optional[Callable[[str, str], None]] = None) -> DemoResult:
    from rnnedge.exporting import export
    from rnnedge.spec import load_spec
    from rnnedge.training import train

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    res = DemoResult(out)
    spec = load_spec(preset)

    def step(name, fn):
        if on_step:
            on_step(name, "start")
        t0 = time.perf_counter()
        try:
            value, detail = fn()
            res.steps.append({"step": name, "ok": True, "seconds": round(time.perf_counter() - t0, 1), "detail": detail})
            return value
        finally:
            if on_step:
                on_step(name, "end")

    model_path = out / f"{spec.name}.keras"
    tr = step("train", lambda: (lambda r: (r, f"{model_path} — " + ", ".join(
        f"{k}={v:.3g}" for k, v in r.metrics.items() if k.startswith("val_"))))(
        train(preset, out=model_path, epochs=epochs, samples=samples)))
    del tr
    fmts = list(formats or ("onnx", "ort", "tflite") + (("tfjs",) if _node_ready() else ()))
    exp_dir = out / "export"
    ex = step("export", lambda: (lambda r: (r, ", ".join(r.artifacts)))(
        export(model_path, fmts, exp_dir, validate=False)))
    if quantize:
        from rnnedge.quantization import quantize as _quantize

        step("quantize", lambda: (lambda q: (q, ", ".join(n for n, e in q.items() if "error" not in e)))(
            _quantize(exp_dir, list(quantize))))
    from rnnedge.validation import validate as _validate

    rep = step("validate", lambda: (lambda r: (r, f"exit code {r.get('exit_code')}"))(_validate(exp_dir)))
    res.validation = rep
    res.ok = rep.get("exit_code", 1) == 0
    from rnnedge.bench import bench as _bench

    seq = None
    if spec.data is not None:
        seq = spec.data.window or spec.data.max_len
    arts = [p for p in (exp_dir / "reference.keras", exp_dir / "model.onnx", exp_dir / "model.tflite") if p.exists()]
    b = step("bench", lambda: (lambda r: (r, f"{len(r.get('cases', []))} cases"))(
        _bench(arts, batch_sizes=(1,), seq_lens=(seq,) if seq else None, runs=bench_runs, warmup=3)))
    res.bench = b
    from rnnedge.deployment import deploy as _deploy, verify as _verify

    d = step("deploy", lambda: (lambda r: (r, str(getattr(r, "bundle", getattr(r, "out", "")))))(
        _deploy(exp_dir, target="rpi", runtime=deploy_runtime, out=out / "bundle")))
    res.bundle = Path(getattr(d, "bundle", getattr(d, "out", out / "bundle")))
    v = step("verify", lambda: (lambda r: (r, "ok" if r.ok else "; ".join(map(str, r.errors))))(_verify(res.bundle)))
    res.ok = res.ok and bool(v.ok)
    del ex
    return res
