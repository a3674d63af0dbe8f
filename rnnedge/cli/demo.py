import click


@click.command("demo")
@click.option("--preset", default="forecast", show_default=True, help="Which preset to take through the pipeline.")
@click.option("-o", "--output", "out_dir", default="rnnedge-demo", show_default=True, type=click.Path(file_okay=False))
@click.option("--epochs", type=int, default=None, help="Training epochs (default: the preset's).")
@click.option("--samples", type=int, default=None, help="Size of the built-in dataset.")
@click.option("--runs", type=int, default=30, show_default=True, help="Benchmark runs per case.")
@click.option("--json", "as_json", is_flag=True)
def command(preset, out_dir, epochs, samples, runs, as_json):
    """Train a preset, export it everywhere, quantize, validate, benchmark and bundle it for a Pi."""
    from rich.console import Console
    from rich.table import Table

    from rnnedge.demo import demo

    console = Console(stderr=True)
    status = console.status("")

    def on_step(name, phase):
        if phase == "start":
            status.update(f"[bold]{name}[/] …")
            status.start()
        else:
            status.stop()

    res = demo(preset, out_dir, epochs=epochs, samples=samples, bench_runs=runs, on_step=None if as_json else on_step)
    if as_json:
        from rnnedge.cli import print_json

        print_json({"out_dir": str(res.out_dir), "ok": res.ok, "steps": res.steps,
                    "validation": res.validation, "bench": res.bench, "bundle": str(res.bundle)})
    else:
        out = Console()
        t = Table(title=f"rnnedge demo: {preset} -> {res.out_dir}")
        for c in ("step", "ok", "seconds", "result"):
            t.add_column(c)
        for s in res.steps:
            t.add_row(s["step"], "✔" if s["ok"] else "✘", f"{s['seconds']}", str(s["detail"]))
        out.print(t)
        if res.validation:
            v = Table(title="parity against Keras")
            for c in ("artifact", "verdict", "max abs error", "top-1 agreement"):
                v.add_column(c)
            for name, row in (res.validation.get("artifacts") or {}).items():
                outs = (row.get("outputs") or {}).values()
                errs = [o.get("max_abs") for o in outs if o.get("max_abs") is not None]
                agree = [o.get("top1_agreement") for o in outs if o.get("top1_agreement") is not None]
                v.add_row(name, str(row.get("verdict", "")), _fmt(max(errs) if errs else None),
                          _fmt(min(agree) if agree else None))
            out.print(v)
        if res.bench:
            b = Table(title="CPU latency (batch 1)")
            for c in ("artifact", "runtime", "p50 ms", "p90 ms"):
                b.add_column(c)
            for case in res.bench.get("cases", []):
                lat = case.get("latency_ms") or {}
                b.add_row(str(case.get("artifact")), str(case.get("runtime")), _fmt(lat.get("p50")), _fmt(lat.get("p90")))
            out.print(b)
        out.print(f"bundle: {res.bundle}")
    if not res.ok:
        from rnnedge.errors import ParityError

        raise ParityError("the demo finished, but a parity check or the bundle verification failed (see above)")


def _fmt(v):
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)
