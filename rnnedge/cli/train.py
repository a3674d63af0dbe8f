import click


@click.command("train")
@click.argument("source")
@click.option("--data", type=click.Path(dir_okay=False), default=None,
              help="Training data (CSV for forecast/text, a text file for textgen). Default: built-in data.")
@click.option("--column", default=None, help="CSV column of the series (forecasting).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Output .keras file.")
@click.option("--epochs", type=click.IntRange(min=1), default=None)
@click.option("--batch-size", type=click.IntRange(min=1), default=None)
@click.option("--samples", type=click.IntRange(min=1), default=None, help="Size of the built-in dataset.")
@click.option("--validation-split", type=click.FloatRange(0, 1, max_open=True), default=None)
@click.option("--patience", type=click.IntRange(min=0), default=None,
              help="Early-stopping patience (0 disables; default: the spec's).")
@click.option("--seed", type=int, default=None)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def command(source, data, column, output, epochs, batch_size, samples, validation_split, patience, seed, as_json):
    """Train SOURCE (spec file or preset) and save it with its preprocessing.

    Progress goes to stderr: a live bar on a terminal, one line per epoch in a log. The saved
    line gives the figures of the saved weights (the epoch early stopping restored, if it did)."""
    from rnnedge.training import train

    res = train(source, data=data, out=output, column=column, epochs=epochs, batch_size=batch_size,
                samples=samples, validation_split=validation_split, seed=seed,
                early_stopping=-1 if patience is None else patience,
                progress=not as_json)
    if as_json:
        from rnnedge.cli import print_json

        print_json({"path": str(res.path), "metrics": res.metrics, "info": res.info})
        return
    m = ", ".join(f"{k}={v:.4g}" for k, v in res.metrics.items() if k != "learning_rate")
    run, kept = res.info["epochs_run"], res.info.get("epoch", res.info["epochs_run"])
    which = f"weights of epoch {kept} of {run}, restored by early stopping" if kept != run else f"{run} epochs"
    click.echo(f"saved {res.path} ({which}; {res.info['samples']} samples): {m}")
