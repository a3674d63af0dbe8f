import click


@click.command("presets")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--show", metavar="NAME", help="Print one preset's spec (YAML) to copy and edit.")
def command(as_json, show):
    """List the built-in presets (each a spec file you can copy)."""
    from rnnedge.spec import load_spec, preset_names, preset_path

    if show:
        click.echo(preset_path(show).read_text(), nl=False)
        return
    rows = []
    for n in preset_names():
        s = load_spec(n)
        layers = s.layers if s.layers is not None else s.nodes
        rows.append({"name": n, "task": s.task, "inputs": [i.name for i in s.inputs],
                     "layers": " -> ".join(_label(l) for l in layers), "description": s.description,
                     "path": str(preset_path(n))})
    if as_json:
        from rnnedge.cli import print_json

        print_json(rows)
        return
    from rich.table import Table

    from rnnedge.cli import console

    t = Table(title="rnnedge presets")
    for c in ("name", "task", "layers"):
        t.add_column(c)
    for r in rows:
        t.add_row(r["name"], r["task"], r["layers"])
    console().print(t)


def _label(layer):
    if layer.type in ("Bidirectional", "TimeDistributed"):
        return f"{layer.type}({layer.layer.type})"
    return layer.type
