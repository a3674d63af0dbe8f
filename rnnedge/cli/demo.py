import click


@click.command("demo")
@click.option("--preset", default="forecast", show_default=True, help="Which preset to take through the pipeline.")
@click.option("-o", "--output", "out_dir", default="rnnedge-demo", show_default=True, type=click.Path(file_okay=False))
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Training epochs (default: the preset's).")
@click.option("--samples", type=click.IntRange(min=1), default=None, help="Size of the built-in dataset.")
@click.option("--runs", type=click.IntRange(min=1), default=30, show_default=True, help="Benchmark runs per case.")
@click.option("--json", "as_json", is_flag=True)
def command(preset, out_dir, epochs, samples, runs, as_json):
    """Train a preset, export it everywhere, quantize, validate, benchmark and bundle it for a Pi."""
    from rnnedge.cli import console
    from rnnedge.showcase import demo

    status = console(stderr=True).status("")

    def on_step(name, phase):
        if phase == "start":
            status.update(f"[bold]{name}[/] …")
            status.start()
        else:
            status.stop()

    import warnings

    from rnnedge.cli import show_warnings
    from rnnedge.manifest import artifact_warnings, load_manifest

    with warnings.catch_warnings(record=True) as caught:  # printed below the summary (not into the spinner)
        res = demo(preset, out_dir, epochs=epochs, samples=samples, bench_runs=runs,
                   on_step=None if as_json else on_step)
    if as_json:
        from rnnedge.cli import print_json

        print_json(res.to_dict())
    else:
        from rnnedge.showcase import summary_tables

        from rich.markup import escape

        out = console()
        for t in summary_tables(res, title=f"rnnedge demo: {preset}"):
            out.print(t)
        for fmt, why in res.skipped_formats.items():
            out.print(f"[yellow]skipped {fmt}:[/] {escape(why)}")
        out.print(f"bundle: {res.bundle}")
    # every artifact's warning from the export's manifest (e.g. a TFLite length fixed), once each
    show_warnings(artifact_warnings(load_manifest(res.export_dir).get("artifacts") if res.export_dir else {}), caught)
    if not res.ok:
        from rnnedge.errors import ParityError

        raise ParityError("the demo finished, but a parity check or the bundle verification failed (see above)")
