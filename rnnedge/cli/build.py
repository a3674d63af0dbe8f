import click


@click.command("build")
@click.argument("source")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Output .keras file.")
@click.option("--seed", type=int, default=None, help="Weight-initialisation seed (default: the spec's).")
def command(source, output, seed):
    """Build the Keras model described by SOURCE (a spec file or a preset name), untrained."""
    from pathlib import Path

    from rnnedge.builder import build_model
    from rnnedge.errors import UsageError
    from rnnedge.spec import load_spec
    from rnnedge.training import TrainResult, save_trained

    if not output.endswith(".keras"):
        raise UsageError(f"output must end in .keras, got {output}")
    spec = load_spec(source)
    model = build_model(spec, seed=seed)
    save_trained(TrainResult(model, {}, None, {}, info={"trained": False}), output, spec.dump())
    click.echo(f"built {spec.name}: {model.count_params():,} parameters -> {Path(output)}")
