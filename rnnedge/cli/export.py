import click


@click.command("export")
@click.argument("source")
@click.option("-f", "--format", "formats", multiple=True, default=("onnx",), show_default=True,
              help="onnx, ort, tflite, tfjs (repeat or comma-separate for several).")
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--opset", type=int, default=None, help="ONNX opset (default 17).")
@click.option("--batch-size", type=int, default=None, help="Fix the batch size (TFLite default 1).")
@click.option("--seq-len", type=int, default=None, help="Fix the sequence length (default: free).")
@click.option("--allow-flex", is_flag=True, help="TFLite: allow Flex (SELECT_TF_OPS); a Pi cannot run them.")
@click.option("--quantize", "quantize", multiple=True, help="Also write quantized variants, as `rnnedge quantize` does (ONNX: int8, uint8, fp16, int8-static; TFLite: dynamic, fp16, int8; TF.js: fp16, uint8 weights); comma-separated or repeated.")
@click.option("--streaming", is_flag=True, help="Also write a one-step model with explicit state.")
@click.option("--no-validate", is_flag=True, help="Skip the parity check after export.")
@click.option("--json", "as_json", is_flag=True)
def command(source, formats, out_dir, opset, batch_size, seq_len, allow_flex, quantize, streaming, no_validate,
            as_json):
    """Export SOURCE (spec, preset, .keras file or TF.js model.json) to OUT_DIR with a manifest.json."""
    from rnnedge.exporting import export

    fmts = [f.strip() for spec in formats for f in spec.split(",") if f.strip()]
    qs = [q.strip() for spec in quantize for q in spec.split(",") if q.strip()]
    import warnings

    said: list[str] = []
    try:
        with warnings.catch_warnings(record=True) as caught:  # artifacts' warnings: printed once, below
            res = export(source, fmts, out_dir, opset=opset, batch_size=batch_size, seq_len=seq_len,
                         allow_flex=allow_flex, quantize=qs, streaming=streaming, validate=not no_validate)
        said = [e["warning"] if e["warning"].startswith(name) else f"{name}: {e['warning']}"
                for name, e in res.artifacts.items() if e.get("warning")]
    finally:  # the others as Python shows them
        for w in caught:
            if not any(str(w.message).split(": ", 1)[-1][:80] in s for s in said):
                warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    if as_json:
        from rnnedge.cli import print_json

        print_json({"out_dir": str(res.out_dir), "artifacts": res.artifacts, "validation": res.validation})
        _print_warnings(said)
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"exported to {res.out_dir}")
    for c in ("artifact", "format", "size", "self-check max err"):
        t.add_column(c)
    for name, e in res.artifacts.items():
        sc = e.get("self_check")
        err = sc.get("max_abs_error") if isinstance(sc, dict) else sc
        t.add_row(name, str(e.get("format", "")), f"{e.get('size', 0):,}", "" if err is None else f"{err:.2e}"
                  if isinstance(err, float) else str(err))
    Console().print(t)
    _print_warnings(said)
    if res.validation is not None:
        _raise_for_validation(res.validation, out_dir)


def _raise_for_validation(report: dict, out_dir) -> None:
    """Exit 1 when parity failed; exit 3 (the runtime and its install command) when an artifact
    could not be checked because its runtime is missing."""
    from rnnedge.errors import MissingDependencyError, ParityError

    code = report.get("exit_code", 0)
    if code == 3:
        missing = {n: r.get("message", "") for n, r in report["artifacts"].items() if r.get("missing_dependency")}
        why = "; ".join(f"{n}: " + m.removeprefix("error: ").removeprefix("runtime not installed: ")
                        .removeprefix("skipped: ") for n, m in missing.items())
        raise MissingDependencyError(", ".join(missing), "", message=f"exported to {out_dir} but could not "
                                     f"check {why}; then run `rnnedge validate {out_dir}`")
    if code != 0:
        raise ParityError(f"parity check failed for {out_dir}: run `rnnedge validate {out_dir}` for details")


def _print_warnings(lines: list[str]) -> None:
    """One ``warning:`` line on stderr per artifact warning (e.g. a TFLite length fixed at export)."""
    if not lines:
        return
    from rich.markup import escape

    from rnnedge.cli import err_console

    for line in lines:
        err_console().print(f"[yellow]warning:[/] {escape(line)}")
