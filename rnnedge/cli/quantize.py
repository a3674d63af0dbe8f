"""``rnnedge quantize DIR --mode int8 ...``: quantized artifacts next to the float ones."""
from __future__ import annotations

import json
import sys

import click

from rnnedge.cli import handle_errors

from rnnedge.quantization import MODES



def _size(n) -> str:
    if n is None:
        return "-"
    return f"{n / 1024:.1f} KiB" if n < 1 << 20 else f"{n / (1 << 20):.2f} MiB"


@click.command("quantize")
@click.argument("folder", type=click.Path(file_okay=False))
@click.option("--mode", "-m", "modes", multiple=True, required=True,
              help=f"quantization mode, repeatable or comma-separated: {', '.join(MODES)}")
@click.option("--format", "-f", "fmt", default="all", show_default=True,
              type=click.Choice(["onnx", "tflite", "all"]), help="which float artifacts to quantize")
@click.option("--calibration", type=click.Path(exists=True, dir_okay=False),
              help="model-ready inputs for calibration (.npy single input, .npz by input name)")
@click.option("--calibration-samples", default=200, show_default=True, type=click.IntRange(min=1),
              help="how many generated samples calibrate static/int8 modes without --calibration")
@click.option("--per-channel", is_flag=True, help="per-channel weight scales (ONNX)")
@click.option("--reduce-range/--no-reduce-range", default=None,
              help="7-bit weights (default: on for x86 without VNNI, as detected in /proc/cpuinfo)")
@click.option("--fp16-keep-recurrent-float", is_flag=True, default=None,
              help="fp16: keep LSTM/GRU/RNN weights float32 in the file (default: fp16, cast by onnxruntime)")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, allow_dash=True),
              help="write the results as JSON to FILE ('-' for stdout)")
@handle_errors
def command(folder, modes, fmt, calibration, calibration_samples, per_channel, reduce_range,
            fp16_keep_recurrent_float, json_out):
    """Quantize the float artifacts in FOLDER (an export folder with manifest.json).

    Writes model.<mode>.onnx / model.<mode>.tflite next to the float files and records
    mode, source, sizes and ratio in manifest.json. Exit 1 when a mode failed, else 3 when one
    could not run because a package is not installed (the message gives the install command).
    """
    from rnnedge.quantization import quantize

    mode_list = [m.strip() for s in modes for m in s.split(",") if m.strip()]
    import warnings

    with warnings.catch_warnings():  # their text is in the results: printed below, once
        warnings.simplefilter("ignore", RuntimeWarning)
        res = quantize(folder, mode_list, formats=fmt, calibration=calibration, per_channel=per_channel,
                       reduce_range=reduce_range, calibration_samples=calibration_samples,
                       keep_recurrent_float=fp16_keep_recurrent_float)
    failed = [n for n, e in res.items() if "error" in e and not e.get("missing_dependency")]
    missing: dict[str, list[str]] = {}  # install command -> what it installs
    for e in res.values():
        if e.get("missing_dependency") and e["missing_dependency"] not in missing.get(e["install"], []):
            missing.setdefault(e["install"], []).append(e["missing_dependency"])
    if json_out:
        from rnnedge.manifest import _json_default

        text = json.dumps(res, indent=2, default=_json_default)
        if json_out == "-":
            click.echo(text)
        else:
            from rnnedge.manifest import write_bytes_atomic

            write_bytes_atomic(json_out, (text + "\n").encode())
    from rnnedge.cli import console as _console

    console = _console(stderr=json_out == "-")
    if json_out != "-":
        from rich.markup import escape

        from rnnedge.cli import Col, print_table

        columns = [Col("artifact"), Col("mode"), Col("source", drop=1), Col("before", right=True),
                   Col("after", right=True), Col("ratio", right=True), Col("result", wrap=True)]
        rows, below = [], []  # the notes go below the table: one line each, never a tall cell
        for name, e in res.items():
            q = e.get("quantization", {})
            if e.get("missing_dependency"):
                rows.append([escape(name), q.get("mode", "-"), escape(q.get("source", "-")), "-", "-", "-",
                             "[yellow]not made[/]"])
                below.append(f"[yellow]{escape(name)}[/]: not made: {escape(e['missing_dependency'])} is not installed")
                continue
            if "error" in e:
                rows.append([escape(name), q.get("mode", "-"), escape(q.get("source", "-")), "-", "-", "-",
                             "[red]error[/]"])
                below.append(f"[red]{escape(name)}[/]: error: {escape(e['error'])}")
                continue
            notes = list(q.get("notes") or [])
            if q.get("method"):
                notes.insert(0, str(q["method"]))
            if "reduce_range" in q:
                notes.insert(0, f"reduce_range={q['reduce_range']} ({q.get('reduce_range_reason', '')})")
            rows.append([escape(name), q.get("mode", "-"), escape(q.get("source", "-")), _size(q.get("size_before")),
                         _size(q.get("size_after")), f"{q.get('ratio', 0):.2f}", "[green]written[/]"])
            if notes:
                below.append(f"{escape(name)}: {escape('; '.join(notes))}")
        print_table(console, f"quantize {escape(str(folder))}", columns, rows, after=below)
    from rnnedge.cli import show_warnings
    from rnnedge.manifest import artifact_warnings

    show_warnings(artifact_warnings(res))  # loud, also with --json -: a bigger file, a fixed length
    if failed:
        sys.exit(1)
    if missing:  # nothing failed, something could not run: exit 3 with the install command(s)
        from rnnedge.errors import MissingDependencyError

        raise MissingDependencyError(
            "; ".join(" and ".join(w) for w in missing.values()), " && ".join(missing),
            message="; ".join(f"{' and '.join(w)} {'is' if len(w) == 1 else 'are'} not available: install "
                              f"{'it' if len(w) == 1 else 'them'} with `{cmd}`" for cmd, w in missing.items()))
