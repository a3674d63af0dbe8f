"""The whole toolkit in one call: ``rnnedge demo`` and the examples.

:func:`deliver` takes a trained ``.keras`` model (with its ``.rnnedge.json`` sidecar) through
export (ONNX, ORT, TFLite, TF.js) -> quantize -> validate parity -> benchmark on CPU ->
Raspberry Pi bundle (+ verify). :func:`demo` trains a preset on its built-in data first.
:func:`summary_tables` renders the result as rich tables. Each step is one public API call
(:func:`rnnedge.export`, :func:`rnnedge.quantize`, ...); this module only chains them.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

DEFAULT_QUANT = ("int8", "fp16", "dynamic")


@dataclass
class DemoResult:
    out_dir: Path
    steps: list[dict] = field(default_factory=list)
    export_dir: Optional[Path] = None
    artifacts: dict = field(default_factory=dict)
    validation: Optional[dict] = None
    bench: Optional[dict] = None
    bundle: Optional[Path] = None
    ok: bool = True
    skipped_formats: dict = field(default_factory=dict)  # format -> why (missing runtime + install command)

    def to_dict(self) -> dict:
        return {"out_dir": str(self.out_dir), "ok": self.ok, "steps": self.steps,
                "export_dir": str(self.export_dir) if self.export_dir else None,
                "artifacts": sorted(self.artifacts), "skipped_formats": self.skipped_formats,
                "validation": self.validation, "bench": self.bench,
                "bundle": str(self.bundle) if self.bundle else None}

    def summary(self) -> dict:
        """:meth:`to_dict` made compact for a report: parity as one row per artifact
        (:func:`rnnedge.validation.parity_summary`) and the bench as p50 per case."""
        from rnnedge.validation import parity_summary

        return {**self.to_dict(), "validation": parity_summary(self.validation),
                "validation_exit_code": (self.validation or {}).get("exit_code"),
                "bench": [{"artifact": c.get("artifact"), "runtime": c.get("runtime"),
                           "p50_ms": (c.get("latency_ms") or {}).get("p50")}
                          for c in (self.bench or {}).get("cases", [])],
                "bench_skipped": (self.bench or {}).get("skipped", []),
                "skipped_formats": self.skipped_formats}


DEFAULT_FORMATS = ("onnx", "ort", "tflite", "tfjs")


def format_unavailable(fmt: str) -> Optional[str]:
    """Why ``fmt`` cannot be exported *and checked* on this machine -- the missing runtime and the
    command that installs it -- or None. TF.js needs Node.js and the shipped runner's npm packages."""
    from rnnedge.errors import MissingDependencyError

    if fmt == "tfjs":
        from rnnedge.runtime.tfjs import check_node_runner

        try:
            check_node_runner()
        except MissingDependencyError as e:
            return str(e)
    return None


class _Steps:
    """Runs named steps, recording ``{step, ok, seconds, detail}``; ``on_step(name, phase)``."""

    def __init__(self, res: DemoResult, on_step: Optional[Callable[[str, str], None]]):
        self.res, self.on_step = res, on_step

    def __call__(self, name: str, fn: Callable[[], object], detail: Callable[[object], str]):
        if self.on_step:
            self.on_step(name, "start")
        t0 = time.perf_counter()
        try:
            value = fn()
            self.res.steps.append({"step": name, "ok": True, "seconds": round(time.perf_counter() - t0, 1),
                                   "detail": detail(value)})
            return value
        finally:
            if self.on_step:
                self.on_step(name, "end")


def deliver(model_path: str | Path, out_dir: str | Path, *, formats: Optional[Sequence[str]] = None,
            quantize: Sequence[str] = DEFAULT_QUANT, streaming: bool = False, bench_runs: int = 30,
            bench_seq_len: Optional[int] = None, deploy_runtime: str = "litert",
            on_step: Optional[Callable[[str, str], None]] = None, res: Optional[DemoResult] = None,
            calibration: Optional[str | Path] = None, validate_options: Optional[dict] = None) -> DemoResult:
    """Export a trained model everywhere, quantize, validate, benchmark and bundle it.

    Writes ``out_dir/export`` (artifacts + manifest.json) and ``out_dir/bundle`` (+ .tar.gz).
    ``formats`` defaults to onnx, ort, tflite and tfjs; a default format whose runtime is missing
    here (TF.js without Node's runner) is left out and named with the reason in
    ``res.skipped_formats`` and in the export's manifest.json (``skipped_formats``). ``res.ok`` is
    False when an artifact fails parity or the bundle does not verify; nothing raises for that.
    ``calibration``: a .npy/.npz of real model inputs, used to calibrate quantization and as the
    validation inputs (instead of generated ones). ``validate_options``: tolerances passed to
    :func:`rnnedge.validate` (``atol``, ``rtol``, ``min_agreement``), recorded in its report.
    """
    from rnnedge import bench, deploy, export, validate, verify
    from rnnedge import quantize as _quantize

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    res = res or DemoResult(out)
    step = _Steps(res, on_step)
    fmts = list(formats or DEFAULT_FORMATS)
    if not formats:  # the default set: leave out (and say so) what this machine cannot check
        res.skipped_formats = {f: why for f in fmts if (why := format_unavailable(f))}
        fmts = [f for f in fmts if f not in res.skipped_formats]
    exp_dir = res.export_dir = out / "export"

    def _export():
        r = export(model_path, fmts, exp_dir, validate=False, streaming=streaming)
        if res.skipped_formats:
            from rnnedge.manifest import update_manifest

            update_manifest(exp_dir, skipped_formats=res.skipped_formats)
        return r

    ex = step("export", _export, lambda r: ", ".join(r.artifacts) + "".join(
        f"; skipped {f}: {why}" for f, why in res.skipped_formats.items()))
    res.artifacts = dict(ex.artifacts)
    if quantize:
        q = step("quantize", lambda: _quantize(exp_dir, list(quantize), calibration=calibration),
                 lambda q: ", ".join(n for n, e in q.items() if "error" not in e))
        res.artifacts.update({n: e for n, e in q.items() if "error" not in e})
    rep = res.validation = step("validate", lambda: validate(exp_dir, calibration=calibration, **(validate_options or {})),
                                lambda r: f"exit code {r.get('exit_code')}")
    res.ok = rep.get("exit_code", 1) == 0
    arts = [p for p in (exp_dir / "reference.keras", exp_dir / "model.onnx", exp_dir / "model.tflite") if p.exists()]
    res.bench = step("bench", lambda: bench(arts, batch_sizes=(1,), seq_lens=(bench_seq_len,) if bench_seq_len else None,
                                            runs=bench_runs, warmup=3),
                     lambda r: f"{len(r.get('cases', []))} cases")
    d = step("deploy", lambda: deploy(exp_dir, target="rpi", runtime=deploy_runtime, out=out / "bundle"),
             lambda r: str(r.bundle))
    res.bundle = Path(d.bundle)
    v = step("verify", lambda: verify(res.bundle), lambda r: "ok" if r.ok else "; ".join(map(str, r.errors)))
    res.ok = res.ok and bool(v.ok)
    return res


def demo(preset: str = "forecast", out_dir: str | Path = "rnnedge-demo", *, epochs: Optional[int] = None,
         samples: Optional[int] = None, quantize: Sequence[str] = DEFAULT_QUANT, bench_runs: int = 30,
         formats: Optional[Sequence[str]] = None, deploy_runtime: str = "litert",
         on_step: Optional[Callable[[str, str], None]] = None) -> DemoResult:
    """Train ``preset`` on its built-in data, then :func:`deliver` it."""
    from rnnedge import load_spec, train

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    res = DemoResult(out)
    spec = load_spec(preset)
    model_path = out / f"{spec.name}.keras"
    _Steps(res, on_step)("train", lambda: train(preset, out=model_path, epochs=epochs, samples=samples),
                         lambda r: f"{model_path} — " + ", ".join(f"{k}={v:.3g}" for k, v in r.metrics.items()
                                                                   if k.startswith("val_")))
    seq = (spec.data.window or spec.data.max_len) if spec.data is not None else None
    return deliver(model_path, out, formats=formats, quantize=quantize, bench_runs=bench_runs, bench_seq_len=seq,
                   deploy_runtime=deploy_runtime, on_step=on_step, res=res)


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def summary_tables(res: DemoResult, title: str = "rnnedge") -> list:
    """Rich tables: the steps, parity per artifact (and the formats left out), CPU latency.
    The caller prints :meth:`DemoResult.skipped_formats` reasons and the bundle path."""
    from rich.table import Table

    tables = []
    t = Table(title=f"{title} -> {res.out_dir}")
    for c in ("step", "ok", "seconds", "result"):
        t.add_column(c)
    for s in res.steps:
        t.add_row(s["step"], "✔" if s["ok"] else "✘", f"{s['seconds']}", str(s["detail"]))
    tables.append(t)
    if res.validation:
        v = Table(title="parity against Keras (validate)")
        for c in ("artifact", "verdict", "max abs error", "top-1 agreement"):
            v.add_column(c)
        from rnnedge.validation import parity_summary

        for name, row in parity_summary(res.validation).items():
            v.add_row(name, str(row["verdict"]), _fmt(row["max_abs"]), _fmt(row["top1_agreement"]))
        for fmt in res.skipped_formats:
            v.add_row(fmt, "not exported (see below)", "", "")
        tables.append(v)
    if res.bench:
        b = Table(title="CPU latency, batch 1 (bench)")
        for c in ("artifact", "runtime", "p50 ms", "p90 ms"):
            b.add_column(c)
        for case in res.bench.get("cases", []):
            lat = case.get("latency_ms") or {}
            b.add_row(str(case.get("artifact")), str(case.get("runtime")), _fmt(lat.get("p50")), _fmt(lat.get("p90")))
        tables.append(b)
    return tables


def finish(summary: dict, out_dir: str | Path, console=None) -> int:
    """Write ``out_dir/summary.json`` atomically and say whether everything passed
    (``summary["ok"]``, with ``summary["reasons"]`` when not). Returns the exit code: 0 or 1."""
    from rich.console import Console

    from rnnedge.manifest import write_json_atomic

    path = write_json_atomic(Path(out_dir) / "summary.json", summary)
    con = console or Console()
    if summary.get("ok"):
        con.print(f"[bold green]ok[/]: everything passed -> {path}")
        return 0
    con.print(f"[bold red]FAILED[/]: {'; '.join(summary.get('reasons') or ['see above'])} -> {path}")
    return 1
