"""``rnnedge verify BUNDLE``: hashes, model load, recorded sample. Exit 0 ok, 1 failed, 2 bad input
(a --runtime that cannot run the bundle's model), 3 the --runtime asked for is not installed."""
from __future__ import annotations

import sys

import click


@click.command("verify")
@click.argument("bundle", type=click.Path(exists=True))
@click.option("--runtime", type=click.Choice(["litert", "tflite-runtime", "onnxruntime"]), default=None,
              help="Run the sample on this runtime instead of the bundle's: exit 3 when it is not installed, "
                   "2 when it cannot run the bundle's model.")
@click.option("--python", "python", default=None,
              help="Run predict.py --self-test with this interpreter (e.g. a venv's python) instead of in-process.")
@click.option("--hashes-only", is_flag=True, help="Only check the files' sha256; do not load the model.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def command(bundle, runtime, python, hashes_only, as_json):
    """Verify a deployment BUNDLE (folder or .tar.gz): every file's sha256 matches manifest.json,
    the model loads, and the recorded sample reproduces its Keras output within tolerance."""
    from rnnedge.deployment import verify

    rep = verify(bundle, runtime=runtime, python=python, run_model=not hashes_only)
    if as_json:
        from rnnedge.cli import print_json

        print_json(rep.to_dict())
        sys.exit(0 if rep.ok else 1)
    from rich.table import Table

    from rnnedge.cli import console

    c = console()
    t = Table(title=f"verify {bundle}")
    for col in ("check", "file", "result", "detail"):
        t.add_column(col, overflow="fold")
    for ch in rep.checks:
        t.add_row(ch["check"], ch["file"] or "", "[green]ok[/]" if ch["ok"] else "[red]FAIL[/]", ch["detail"])
    c.print(t)
    from rnnedge.cli import warn

    for w in rep.warnings:
        warn(w)
    if rep.ok:
        c.print("[bold green]OK[/]: the bundle is intact and reproduces its sample")
    else:
        for e in rep.errors:
            c.print(f"[bold red]FAIL:[/] {e}")
    sys.exit(0 if rep.ok else 1)
