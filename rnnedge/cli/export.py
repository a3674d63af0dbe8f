"""``rnnedge export SOURCE -o DIR``: artifacts + manifest.json, each checked against the reference.

Exit codes: 0 exported and every artifact passed its parity check (or --no-validate), 1 a parity
check failed (DIR left as it was; the rejected files are in DIR.rejected), 2 bad input, 3 missing
dependency, 4 a layer or model that cannot be converted (DIR left as it was).
"""
import click

from converters.registry import DEFAULT_OPSET, MAX_OPSET, MIN_OPSET


@click.command("export")
@click.argument("source")
@click.option("-f", "--format", "formats", multiple=True, default=("onnx",), show_default=True,
              help="onnx, ort, tflite, tfjs (repeat or comma-separate for several).")
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--opset", type=click.IntRange(MIN_OPSET, MAX_OPSET), default=None,
              help=f"ONNX opset, {MIN_OPSET}..{MAX_OPSET} (default {DEFAULT_OPSET}).")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Fix the batch size (TFLite default 1).")
@click.option("--seq-len", type=click.IntRange(min=1), default=None, help="Fix the sequence length (default: free).")
@click.option("--allow-flex", is_flag=True, help="TFLite: allow Flex (SELECT_TF_OPS); a Pi cannot run them.")
@click.option("--quantize", "quantize", multiple=True, help="Also write quantized variants, as `rnnedge quantize` does (ONNX: int8, uint8, fp16, int8-static; TFLite: dynamic, fp16, int8; TF.js: fp16, uint8 weights); comma-separated or repeated.")
@click.option("--streaming", is_flag=True, help="Also write a one-step model with explicit state.")
@click.option("--no-validate", is_flag=True, help="Skip the parity check after export.")
@click.option("--json", "as_json", is_flag=True)
def command(source, formats, out_dir, opset, batch_size, seq_len, allow_flex, quantize, streaming, no_validate,
            as_json):
    """Export SOURCE (spec, preset, .keras file or TF.js model.json) to OUT_DIR with a manifest.json."""
    from rnnedge.errors import ParityError
    from rnnedge.exporting import export

    fmts = [f.strip() for spec in formats for f in spec.split(",") if f.strip()]
    qs = [q.strip() for spec in quantize for q in spec.split(",") if q.strip()]
    import warnings

    from rnnedge.cli import show_warnings
    from rnnedge.manifest import artifact_warnings

    failed = None
    said: list = []
    caught: list = []
    try:
        with warnings.catch_warnings(record=True) as caught:  # artifacts' warnings: printed once, below
            try:
                res = export(source, fmts, out_dir, opset=opset, batch_size=batch_size, seq_len=seq_len,
                             allow_flex=allow_flex, quantize=qs, streaming=streaming, validate=not no_validate)
            except ParityError as e:  # out_dir left as it was; the rejected files are reported, then exit 1
                if getattr(e, "result", None) is None:
                    raise
                res, failed = e.result, e
        said = artifact_warnings(res.artifacts)
    finally:  # the others as Python shows them
        show_warnings(caught=caught, besides=said)
    if as_json:
        from rnnedge.cli import print_json

        print_json({"out_dir": str(res.out_dir), "committed": res.committed, "artifacts": res.artifacts,
                    "validation": res.validation})
    else:
        _print(res)
    show_warnings(said)
    if failed is not None:
        raise failed
    if res.validation is not None:
        _raise_for_missing_runtime(res.validation, res.out_dir)


def _raise_for_missing_runtime(report: dict, out_dir) -> None:
    """Exit 3 (the runtime and its install command) when an artifact could not be checked because
    its runtime is missing; the export itself is in place."""
    from rnnedge.errors import MissingDependencyError

    if report.get("exit_code", 0) != 3:
        return
    missing = {n: r.get("message", "") for n, r in report["artifacts"].items() if r.get("missing_dependency")}
    why = "; ".join(f"{n}: " + m.removeprefix("error: ").removeprefix("runtime not installed: ")
                    .removeprefix("skipped: ") for n, m in missing.items())
    raise MissingDependencyError(", ".join(missing), "", message=f"exported to {out_dir} but could not "
                                 f"check {why}; then run `rnnedge validate {out_dir}`")



def _print(res) -> None:
    """The artifacts with their own self-check and the parity verdict of each (by output)."""
    from rich.markup import escape

    from rnnedge.cli import Col, console, print_table
    from rnnedge.cli.validate import inputs_text, lengths_text
    from rnnedge.validation import is_model_artifact

    rows = (res.validation or {}).get("artifacts") or {}
    colors = {"pass": "green", "fail": "red", "error": "red", "skipped": "yellow"}
    columns = [Col("artifact"), Col("format", drop=2), Col("size", right=True), Col("self-check max err", right=True,
               wrap=True, drop=1), Col("parity", wrap=True), Col("max abs err", right=True), Col("samples", right=True, drop=3),
               Col("seq len", wrap=True, drop=4)]
    table = []
    for name, e in res.artifacts.items():
        sc = e.get("self_check")
        err = sc.get("max_abs_error") if isinstance(sc, dict) else sc
        row = rows.get(name) or {}
        v = row.get("verdict")
        errs = [o.get("max_abs") for o in (row.get("outputs") or {}).values() if o.get("max_abs") is not None]
        table.append([escape(name), str(e.get("format", "")), f"{e.get('size', 0):,}",
                      "-" if err is None else f"{err:.2e}" if isinstance(err, float) else escape(str(err)),
                      f"[{colors.get(v, 'white')}]{v}[/]" if v else
                      "not checked" if is_model_artifact(name, e) else "-",  # a side file: no model to check
                      f"{max(errs):.2e}" if errs else "-",
                      str(row["samples"]) if row.get("samples") is not None else "-",
                      escape(lengths_text(row)) if row else "-"])
    con = console()
    print_table(con, escape(f"exported to {res.out_dir}" if res.committed else f"rejected (kept in {res.out_dir})"),
                columns, table)
    if res.validation is None:
        con.print("parity not checked (--no-validate)")
        return
    con.print(escape(inputs_text(res.validation)))
    for name, row in rows.items():
        if row.get("verdict") != "pass":
            con.print(f"[{colors.get(row.get('verdict'), 'white')}]{str(row.get('verdict')).upper()}[/] "
                      f"{escape(name)}: {escape(row.get('message', ''))}")
    if res.validation.get("reason"):
        con.print(escape(res.validation["reason"]))
