"""``rnnedge validate DIR``: every artifact against reference.keras (or, for an export of a TF.js
model, the original TF.js model run in Node), on the same inputs.

Exit codes: 0 every artifact passed (skips allowed), 1 one failed or errored, 2 bad input
(no manifest.json / reference.keras, nothing to validate, unknown artifact name, bad option) or
nothing compared (every artifact skipped).
"""
from __future__ import annotations

import json
import sys

import click

from rnnedge.cli import handle_errors



def _tol_option(values: tuple[str, ...], what: str):
    """``1e-3`` (every precision) or ``fp16=1e-3`` (repeatable) -> float | dict | None."""
    from rnnedge.errors import UsageError

    if not values:
        return None
    out: dict = {}
    for v in values:
        key, _, num = v.rpartition("=")
        try:
            x = float(num)
        except ValueError:
            raise UsageError(f"--{what} {v!r}: expected a number or PRECISION=NUMBER") from None
        if key:
            out[key] = x
        else:
            if len(values) == 1:
                return x
            out["*"] = x
    if "*" in out:
        from rnnedge.validation import TOLERANCES

        default = out.pop("*")
        out = {**{p: default for p in TOLERANCES}, **out}
    return out


def _fmt(x, spec=".2e"):
    return "-" if x is None else format(x, spec)


def lengths_text(row: dict) -> str:
    """The input lengths an artifact was checked at: ``8, 4`` or ``a=15 b=17`` (``-``: no time axis)."""
    from rnnedge.comparator import case_key

    lens = row.get("seq_lens") or []
    if not lens or all(x is None for x in lens):
        return "-"
    return ", ".join(case_key(x).replace(",", " ") for x in lens)


def inputs_text(report: dict) -> str:
    """Where the inputs came from, as the title of a parity table."""
    inp = report.get("inputs") or {}
    if inp.get("source") == "calibration":
        src = f"inputs from {inp.get('calibration') or 'calibration data'}"
    else:
        from rnnedge.inputs import describe_kinds

        kinds = inp.get("kinds") or report.get("input_kinds") or {}
        src = f"generated {describe_kinds(kinds) if kinds else 'inputs'}, seed {report['seed']}"
        if inp.get("masked"):
            src += ", masked steps in " + ", ".join(inp["masked"])
    if inp.get("seq_lens"):
        src += f", lengths asked {', '.join(str(x) for x in inp['seq_lens'])}"
    if report.get("reference_state") == "stateful":
        src += ", stateful reference reset per batch"
    return f"parity vs {report['reference']}: {src}"


def render(report: dict, console) -> None:
    """A table (one row per artifact output, by position) and one line per artifact that did not pass."""
    from rich.markup import escape

    from rnnedge.cli import Col, print_table

    colors = {"pass": "green", "fail": "red", "error": "red", "skipped": "yellow"}
    columns = [Col("artifact"), Col("precision", drop=2), Col("samples", right=True, drop=8),
               Col("seq len", wrap=True, drop=7), Col("output", wrap=True), Col("verdict", wrap=True),
               Col("max abs", right=True), Col("mean abs", right=True, drop=5), Col("max rel", right=True, drop=6),
               Col("cosine", right=True, drop=4), Col("top-1", right=True, drop=3), Col("tolerance", wrap=True, drop=1)]
    table = []
    for name, row in report["artifacts"].items():
        tol = row.get("tolerance") or {}
        tol_s = f"{tol.get('atol', 0):g}/{tol.get('rtol', 0):g}"
        top1_s = f"top-1>={tol['min_agreement']:g}" if "min_agreement" in tol else ""
        v = row["verdict"]
        outs = row.get("outputs") or {}
        n = str(row["samples"]) if row.get("samples") is not None else "-"
        lens = escape(lengths_text(row))
        if not outs:
            table.append([escape(name), str(row.get("precision")), n, lens, "-", f"[{colors.get(v, 'white')}]{v}[/]",
                          "-", "-", "-", "-", "-", " ".join(x for x in (tol_s, top1_s) if x)])
            continue
        for i, (oname, m) in enumerate(outs.items()):
            ov = m["verdict"]
            by = " (top-1)" if m["judged_by"] != "atol/rtol" else ""
            label = f"{m.get('index', i)}: {oname}"
            if m.get("artifact_output") not in (None, oname):
                label += f" ({m['artifact_output']})"
            first = i == 0
            table.append([escape(name) if first else "", str(row.get("precision")) if first else "",
                          n if first else "", lens if first else "",
                          escape(label), f"[{colors.get(ov, 'white')}]{ov}{by}[/]",
                          _fmt(m["max_abs"]), _fmt(m["mean_abs"]), _fmt(m["max_rel"]), _fmt(m["cosine"], ".6f"),
                          _fmt(m.get("top1_agreement"), ".3f"),
                          top1_s if m["judged_by"] == "top1_agreement" else tol_s])  # what judged this output
    print_table(console, escape(inputs_text(report)), columns, table)
    for name, row in report["artifacts"].items():
        v = row["verdict"]
        extra = "; ".join(row.get("notes") or [])
        if v != "pass":
            console.print(f"[{colors.get(v, 'white')}]{v.upper()}[/] {escape(name)}: "
                          f"{escape(row.get('message', ''))}" + (f" ({escape(extra)})" if extra else ""))
        elif extra:
            console.print(f"note {escape(name)}: {escape(extra)}")
    if report.get("reference_note"):
        console.print(f"note: {escape(report['reference_note'])}")
    s = report["summary"]
    if report.get("reason"):
        console.print(f"[red]{escape(report['reason'])}[/]")
    console.print(f"{s['pass']} passed, {s['fail']} failed, {s['error']} errors, {s['skipped']} skipped"
                  f" -> exit {report['exit_code']}")


@click.command("validate")
@click.argument("folder", type=click.Path())
@click.option("--artifact", "-a", "artifacts", multiple=True,
              help="validate only this artifact (a manifest name, e.g. model.onnx); repeatable")
@click.option("--samples", "-n", default=64, show_default=True, type=click.IntRange(min=1),
              help="inputs per sequence length (at most the calibration file's)")
@click.option("--atol", multiple=True, help="absolute tolerance: NUMBER for every precision, or PRECISION=NUMBER "
              "(float32, float32-tfjs, fp16, int8, uint8, int8-static, dynamic); repeatable")
@click.option("--rtol", multiple=True, help="relative tolerance, same form as --atol")
@click.option("--min-agreement", type=click.FloatRange(0, 1),
              help="top-1 agreement needed by 8-bit classifier outputs (default 0.98)")
@click.option("--seed", default=0, show_default=True, type=int, help="seed of the generated inputs")
@click.option("--seq-len", "seq_lens", multiple=True, type=click.IntRange(min=1),
              help="length of free time axes to check (repeatable; default: the model's length and about "
                   "half of it, or the calibration file's); a fixed axis keeps its length")
@click.option("--calibration", type=click.Path(exists=True, dir_okay=False),
              help="use these model-ready inputs (.npy / .npz by input name) instead of generated ones")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, allow_dash=True),
              help="write the report as JSON to FILE ('-' for stdout; the table then goes to stderr)")
@click.option("--no-manifest", is_flag=True, help="do not write the parity figures into manifest.json")
@click.option("--reference", type=click.Choice(["auto", "keras", "tfjs"]), default="auto", show_default=True,
              help="what the artifacts are compared with: reference.keras, or the TF.js model an export was "
              "made from (source.tfjs/, run in Node); auto = tfjs when the folder has it and node is installed")
@handle_errors
def command(folder, artifacts, samples, atol, rtol, min_agreement, seed, seq_lens, calibration, json_out,
            no_manifest, reference):
    """Run the reference and every artifact of FOLDER on the same inputs and compare."""
    from rnnedge.manifest import _json_default, write_bytes_atomic
    from rnnedge.validation import validate

    report = validate(folder, artifacts=list(artifacts) or None, samples=samples,
                      atol=_tol_option(atol, "atol"), rtol=_tol_option(rtol, "rtol"),
                      min_agreement=min_agreement, seed=seed, calibration=calibration,
                      seq_lens=list(seq_lens) or None,
                      write_manifest=not no_manifest, reference=reference)
    if json_out:
        text = json.dumps(report, indent=2, default=_json_default)
        if json_out == "-":
            click.echo(text)
        else:
            write_bytes_atomic(json_out, (text + "\n").encode())
    from rnnedge.cli import console

    render(report, console(stderr=json_out == "-"))
    sys.exit(report["exit_code"])
