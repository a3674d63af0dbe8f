import click


@click.command("inspect")
@click.argument("source")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def command(source, as_json):
    """Layers, output shapes and parameter counts of SOURCE (spec, preset, .keras, TF.js model.json,
    or an export folder: then also how each layer was converted, native or tf2onnx fallback)."""
    from rnnedge.inspect import inspect_model

    info = inspect_model(source)
    if as_json:
        from rnnedge.cli import print_json

        print_json(info)
        return
    from rich.markup import escape

    from rnnedge.cli import Col, console, print_table

    fmt = lambda s: "(" + ", ".join("None" if d is None else str(d) for d in s) + ")"  # noqa: E731
    conv = info.get("conversion") or {}
    rows = []
    for r in info["layers"]:
        typ = r["type"] + (f"({r['wraps']})" if r.get("wraps") else "")
        rows.append([escape(v) for v in (r["name"], typ, " ".join(fmt(s) for s in r["output_shapes"]),
                                         f"{r['params']:,}", *(r.get("conversion", {}).get(a, "") for a in conv))])
    c = console()
    columns = [Col("layer"), Col("type", wrap=True), Col("output shape", wrap=True), Col("params", right=True),
               *(Col(a, wrap=True) for a in conv)]
    print_table(c, escape(f"{info['name']}  ({info['source'].get('kind')})"), columns, rows)
    p = info["params"]
    c.print(f"parameters: {p['total']:,} (trainable {p['trainable']:,})")
    rows = {r["name"] for r in info["layers"]}
    for art, layers in conv.items():  # what the table does not show: inner layers, Keras operations
        extra = [f"{l['name']} ({l['class']}{', in ' + l['inside'] if l.get('inside') else ''}): {l['path']}"
                 for l in layers if l["name"] not in rows]
        if extra:
            c.print(f"{art}, also converted: " + "; ".join(extra), markup=False)
    for art, notes in (info.get("notes") or {}).items():
        for n in notes:
            c.print(f"{art}: {n}", markup=False)
