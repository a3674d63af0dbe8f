"""``rnnedge bench ARTIFACT...``: time artifacts in their runtimes (a thin CLI over rnnedge.benchmarking)."""
from __future__ import annotations

import json
import sys

import click

from rnnedge.cli import handle_errors



def _int_list(ctx, param, value):
    if value is None:
        return None
    try:
        out = [int(x) for x in str(value).replace(" ", "").split(",") if x]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {value!r}") from None
    if not out or any(x < 1 for x in out):
        raise click.BadParameter(f"expected positive integers, got {value!r}")
    return out


@click.command("bench")
@click.argument("artifacts", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--provider", multiple=True, default=["cpu"], show_default=True,
              help="onnxruntime execution provider(s) for ONNX/ORT artifacts (repeat or comma-separate): "
                   "cpu, cuda, tensorrt, openvino, xnnpack, nnapi, coreml, dml")
@click.option("--batch-size", "batch_sizes", default="1", show_default=True, callback=_int_list,
              help="batch sizes, e.g. 1,8,32")
@click.option("--seq-len", "seq_lens", default=None, callback=_int_list,
              help="sequence lengths, e.g. 50,100 (default: the model's fixed length, else 100)")
@click.option("--warmup", default=5, show_default=True, type=click.IntRange(min=0))
@click.option("--runs", default=50, show_default=True, type=click.IntRange(min=1))
@click.option("--threads", type=click.IntRange(min=1), help="runtime threads (all runtimes)")
@click.option("--io-binding", is_flag=True, help="ONNX: device-resident inputs; time the run apart from host copies")
@click.option("--interpreter", default="auto", show_default=True,
              type=click.Choice(["auto", "litert", "tflite_runtime", "tf"]), help="TFLite interpreter")
@click.option("--json", "json_file", type=click.Path(dir_okay=False, allow_dash=True),
              help="write the result JSON here ('-' = stdout; the table then goes to stderr)")
@click.option("--csv", "csv_file", type=click.Path(dir_okay=False), help="write one CSV row per case")
@click.option("--plot", "plot_file", type=click.Path(dir_okay=False), help="write a PNG plot (p50 by batch size)")
@click.option("--no-progress", is_flag=True, help="no progress bar on stderr (there is none when stderr is not a terminal)")
@click.option("--streaming", is_flag=True,
              help="ARTIFACTS are step models (export --streaming): time one timestep with the state carried "
                   "(--runs sequences of --steps steps each, batch 1)")
@click.option("--steps", default=100, show_default=True, type=click.IntRange(min=1),
              help="--streaming: timesteps per timed sequence")
@handle_errors
def command(artifacts, provider, batch_sizes, seq_lens, warmup, runs, threads, io_binding, interpreter,
            json_file, csv_file, plot_file, no_progress, streaming, steps):
    """Benchmark ARTIFACTS (.onnx, .ort, .tflite, .keras, TF.js) on generated inputs.

    Reports session creation, first inference, latency p50/p90/p99, throughput, peak RSS and
    size per artifact x provider x batch size x sequence length, and the speed-up over the
    .keras reference (or the first artifact).
    """
    from rnnedge import benchmarking as B
    from rnnedge.cli import console

    if streaming:
        return _bench_streaming(artifacts, provider, steps, warmup, runs, threads, interpreter, json_file)
    result = B.bench(list(artifacts), provider=list(provider), batch_sizes=batch_sizes, seq_lens=seq_lens,
                     warmup=warmup, runs=runs, threads=threads, io_binding=io_binding,
                     interpreter=interpreter, progress=not no_progress and sys.stderr.isatty())
    to_stdout = json_file == "-"
    con = console(stderr=to_stdout)
    from rich.markup import escape

    from rnnedge.cli import Col, print_table

    title, rows = B.table_rows(result)
    print_table(con, escape(title), [Col(n, right=r, wrap=True, drop=d) for n, r, d in B.TABLE_COLUMNS],
                [[escape(v) for v in r] for r in rows])
    for s in result["skipped"]:
        con.print(f"[yellow]skipped[/] {s['artifact']} batch {s['batch_size']} seq {s['seq_len']}: {s['reason']}")
    for n in result["notes"]:
        con.print(f"[yellow]note[/] {n}")
    for c in result["cases"]:
        w = c["info"].get("placement_warning")
        if w:
            con.print(f"[yellow]placement[/] {c['artifact']}: {w}")
    con.print(f"peak memory: {result['memory_method']}")
    la, cores = (result.get("load_average") or {}).get("end"), result["machine"].get("cores") or 1
    if la is not None and la > cores:
        con.print(f"[yellow]note[/] load average {la:.1f} on {cores} cores: other jobs were running, "
                  "latencies are inflated and noisy")
    if to_stdout:
        click.echo(json.dumps(result, default=float))
    elif json_file:
        B.write_json(result, json_file)
        con.print(f"JSON written to {json_file}")
    if csv_file:
        B.write_csv(result, csv_file)
        con.print(f"CSV written to {csv_file}")
    if plot_file:
        B.plot(result, plot_file)
        con.print(f"plot written to {plot_file}")
    if not result["cases"]:
        from rnnedge.errors import RnnedgeError

        raise RnnedgeError("no benchmark case could run (see the skipped lines above)")


def _bench_streaming(artifacts, providers, steps, warmup, runs, threads, interpreter, json_file):
    """Per-step latency of step models (one row per artifact x provider)."""
    from rich.table import Table

    from rnnedge.benchmarking import parse_providers
    from rnnedge.cli import console
    from rnnedge.runtime import runner_kind
    from rnnedge.runtime.streaming import bench_streaming

    rows = []
    for art in artifacts:
        kind = runner_kind(art)
        for prov in (parse_providers(providers) if kind == "onnxruntime" else [None]):
            opts = {"threads": threads} if threads else {}
            if prov:
                opts["provider"] = prov
            if kind == "tflite":
                opts["interpreter"] = interpreter
            r = bench_streaming(art, steps=steps, warmup=warmup, runs=runs, **opts)
            rows.append({"artifact": art, "provider": prov or "-", **{k: v for k, v in r.items()
                                                                     if k != "runtime_info"}})
    doc = {"schema": "rnnedge.bench-streaming/1", "cases": rows}
    con = console(stderr=json_file == "-")
    t = Table(title=f"per-step latency (state carried; {runs} x {steps} steps, batch 1)")
    for c in ("artifact", "runtime", "provider", "p50 ms", "p99 ms", "mean ms", "steps/s (p50)"):
        t.add_column(c, justify="right" if c.endswith(("ms", ")")) else "left")
    for r in rows:
        t.add_row(str(r["artifact"]), str(r["runtime"]), r["provider"], f"{r['p50_ms']:.4f}",
                  f"{r['p99_ms']:.4f}", f"{r['mean_ms']:.4f}", f"{1e3 / r['p50_ms']:.0f}" if r["p50_ms"] else "-")
    con.print(t)
    if json_file == "-":
        click.echo(json.dumps(doc, default=float))
    elif json_file:
        from rnnedge.manifest import write_json_atomic

        write_json_atomic(json_file, doc)
