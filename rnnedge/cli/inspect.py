import click


@click.command("inspect")
@click.argument("source")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def command(source, as_json):
    """Layers, output shapes and parameter counts of SOURCE (spec, preset, .keras or TF.js model.json)."""
    from rnnedge.inspect import inspect_model

    info = inspect_model(source)
    if as_json:
        from rnnedge.cli import print_json

        print_json(info)
        return
    from rich.console import Console
    from rich.table import Table

    fmt = lambda s: "(" + ", ".join("None" if d is None else str(d) for d in s) + ")"  # noqa: E731
    t = Table(title=f"{info['name']}  ({info['source'].get('kind')})")
    for c in ("layer", "type", "output shape", "params"):
        t.add_column(c, justify="right" if c == "params" else "left")
    for r in info["layers"]:
        typ = r["type"] + (f"({r['wraps']})" if r.get("wraps") else "")
        t.add_row(r["name"], typ, " ".join(fmt(s) for s in r["output_shapes"]), f"{r['params']:,}")
    c = Console()
    c.print(t)
    p = info["params"]
    c.print(f"parameters: {p['total']:,} (trainable {p['trainable']:,})")
