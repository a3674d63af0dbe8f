"""``rnnedge run ARTIFACT --input FILE``: run one artifact in its runtime on inputs from a file."""
from __future__ import annotations

import json
import time

import click

from rnnedge.cli import handle_errors



@click.command("run")
@click.argument("artifact", type=click.Path(exists=True))
@click.option("--input", "-i", "input_file", required=True, type=click.Path(exists=True, dir_okay=False),
              help="inputs: .npy (single input), .npz (by input name) or .json ({name: nested list})")
@click.option("--output", "-o", "output_file", type=click.Path(dir_okay=False),
              help="write the outputs: .npz, .npy (single output) or .json, by extension")
@click.option("--provider", default="cpu", show_default=True,
              help="onnxruntime execution provider (ONNX/ORT artifacts): cpu, cuda, tensorrt, openvino, ...")
@click.option("--threads", type=click.IntRange(min=1), help="runtime threads")
@click.option("--interpreter", default="auto", show_default=True,
              type=click.Choice(["auto", "litert", "tflite_runtime", "tf"]), help="TFLite interpreter")
@click.option("--streaming", is_flag=True,
              help="ARTIFACT is a step model (export --streaming): feed the input's sequence one timestep "
                   "at a time from a zero state, carrying the recurrent state; outputs every step's output")
@click.option("--json", "as_json", is_flag=True, help="print machine-readable JSON (with the outputs) to stdout")
@handle_errors
def command(artifact, input_file, output_file, provider, threads, interpreter, streaming, as_json):
    """Run ARTIFACT (.onnx, .ort, .tflite, .keras, TF.js folder) on the inputs in FILE."""
    import numpy as np

    from rnnedge.errors import UsageError
    from rnnedge.runtime import open_runner, runner_kind
    from rnnedge.runtime.io import check_output_path, read_inputs, write_outputs

    kind = runner_kind(artifact)
    if output_file:
        check_output_path(output_file)  # before anything loads or runs
    opts = {}
    if threads:
        opts["threads"] = threads
    if kind == "onnxruntime":
        opts["provider"] = provider
    elif provider != "cpu":  # an explicit choice is used or refused, never ignored
        raise UsageError(f"--provider {provider}: execution providers are onnxruntime's; {artifact} runs in "
                         f"{'a TFLite interpreter (--interpreter)' if kind == 'tflite' else kind}")
    if kind == "tflite":
        opts["interpreter"] = interpreter
    elif interpreter != "auto":
        raise UsageError(f"--interpreter {interpreter}: a TFLite interpreter cannot run {artifact} "
                         f"(it runs in {kind})")
    if streaming:
        feeds, outs, ms, info, load_s = _run_streaming(artifact, input_file, opts)
    else:
        with open_runner(artifact, **opts) as runner:
            if output_file:
                check_output_path(output_file, len(runner.outputs), [o.name for o in runner.outputs])
            feeds = read_inputs(input_file, runner.inputs)
            t0 = time.perf_counter()
            outs = runner.run(feeds)
            ms = (time.perf_counter() - t0) * 1e3
            info = dict(runner.info)
            load_s = runner.load_seconds or 0
            if info.get("run_ms"):  # the runtime times its own calls (TF.js in Node: start-up excluded)
                info["startup_ms"] = max(0.0, ms - float(info["run_ms"][-1]))
                ms = float(info["run_ms"][-1])
    if output_file:
        write_outputs(output_file, outs)
    if as_json:
        doc = {
            "artifact": artifact, "runtime": info.get("runtime"), "provider": info.get("provider"),
            "latency_ms": ms, "load_ms": load_s * 1e3,
            **({"startup_ms": info["startup_ms"], "timed_in": "node (process.hrtime around model.predict)"}
               if "startup_ms" in info else {}),
            "inputs": {k: {"shape": list(v.shape), "dtype": v.dtype.name} for k, v in feeds.items()},
            "outputs": {k: {"shape": list(np.shape(v)), "dtype": np.asarray(v).dtype.name,
                            "data": np.asarray(v).tolist()} for k, v in outs.items()},
            "output_file": output_file,
        }
        click.echo(json.dumps(doc))
        return
    from rich.table import Table

    from rnnedge.cli import console

    con = console()
    startup = (f", Node start-up and model load {info['startup_ms']:.0f} ms (not in the run time)"
               if "startup_ms" in info else "")
    con.print(f"[bold]{artifact}[/] - {info.get('runtime')} / {info.get('provider', '-')}: "
              f"load {load_s * 1e3:.1f} ms, run {ms:.2f} ms{startup} "
              f"(inputs {', '.join(f'{k} {list(v.shape)}' for k, v in feeds.items())})")
    t = Table(show_header=True)
    for col in ("output", "shape", "dtype", "min", "max", "mean", "first values"):
        t.add_column(col)
    for k, v in outs.items():
        a = np.asarray(v)
        num = a.size and a.dtype.kind in "iufb"
        first = ", ".join(f"{x:.4g}" if a.dtype.kind == "f" else str(x) for x in a.reshape(-1)[:4])
        t.add_row(k, str(list(a.shape)), a.dtype.name, f"{a.min():.4g}" if num else "-",
                  f"{a.max():.4g}" if num else "-", f"{a.mean():.4g}" if num else "-", first)
    con.print(t)
    if output_file:
        con.print(f"outputs written to {output_file}")


def _run_streaming(artifact, input_file, opts):
    """Step through the whole input sequence with :class:`StreamingSession` (zero initial state)."""

    from rnnedge.runtime.io import read_inputs
    from rnnedge.runtime.streaming import StreamingSession

    with StreamingSession(artifact, **opts) as s:
        lay = s.layout
        # the file holds the whole sequence, (batch, T[, F]) or (T[, F]); s.run checks the shape
        x_info = next(i for i in s.runner.inputs if i.name == lay["input"])
        x = read_inputs(input_file, [x_info])[lay["input"]]
        t0 = time.perf_counter()
        y = s.run(x)
        ms = (time.perf_counter() - t0) * 1e3
        info = dict(s.runner.info, streaming=True, steps=s.steps)
        load_s = s.runner.load_seconds or 0
    return {lay["input"]: x}, {lay["output"]: y}, ms, info, load_s
