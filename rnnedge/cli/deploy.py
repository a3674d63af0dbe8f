"""``rnnedge deploy DIR``: a Raspberry Pi bundle (folder + .tar.gz) from an export folder.

Exit codes: 0 bundle written, 1 the artifact failed its parity check at export, or the sample
does not reproduce here (ParityError; --force ships it anyway, with a warning), 2 bad input,
3 missing dependency, 4 the model cannot run in the chosen runtime (e.g. tflite-runtime 2.14).
"""
from __future__ import annotations

import click


@click.command("deploy")
@click.argument("export_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--target", default="rpi", show_default=True, type=click.Choice(["rpi"]), help="Device family.")
@click.option("--runtime", "runtime", default="litert", show_default=True,
              type=click.Choice(["litert", "tflite-runtime", "onnxruntime"]),
              help="Runtime on the device: ai-edge-litert, tflite-runtime 2.14 (Pi OS bookworm) or onnxruntime.")
@click.option("--pi-os", default="bookworm", show_default=True, type=click.Choice(["bookworm", "trixie"]),
              help="Raspberry Pi OS release (64-bit): bookworm = Python 3.11, trixie = Python 3.13.")
@click.option("--out", "-o", type=click.Path(file_okay=False), default=None,
              help="Bundle folder [default: <EXPORT_DIR>-rpi-<runtime>]; BUNDLE.tar.gz is written beside it.")
@click.option("--model", default=None, help="Artifact file to ship (default model.tflite / model.onnx).")
@click.option("--tolerance", type=click.FloatRange(min=0), default=None,
              help="Absolute tolerance for the recorded sample [default 1e-5; quantized: 3x the error measured here].")
@click.option("--user", default=None,
              help="User the systemd service runs as [default: the user who installs the bundle on the Pi].")
@click.option("--force", is_flag=True,
              help="Ship an artifact whose parity check failed (with a warning; the bundle's manifest records it).")
@click.option("--no-tarball", is_flag=True, help="Do not write BUNDLE.tar.gz.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def command(export_dir, target, runtime, pi_os, out, model, tolerance, user, force, no_tarball, as_json):
    """Make a Raspberry Pi bundle from EXPORT_DIR (manifest.json + reference.keras + artifacts).

    The bundle runs with numpy and one runtime (no TensorFlow): predict.py, the model,
    preprocess.json, a sample input/output from the Keras reference, requirements.txt,
    README.md, a systemd unit and a manifest with every file's sha256.
    """
    import warnings

    from rnnedge.cli import show_warnings
    from rnnedge.deployment import PI_SETUP, deploy

    with warnings.catch_warnings(record=True) as caught:  # printed last, one line each: not to be missed
        res = deploy(export_dir, target=target, runtime=runtime, out=out, pi_os=pi_os, tarball=not no_tarball,
                     model=model, tolerance=tolerance, user=user, force=force)
    if as_json:
        from rnnedge.cli import print_json

        print_json(res.to_dict())
        show_warnings(caught=caught)
        return
    from rich.table import Table

    from rnnedge.cli import console

    c = console()
    m = res.manifest
    t = Table(title=f"bundle {res.bundle}", show_header=True)
    t.add_column("file")
    t.add_column("size", justify="right")
    t.add_column("sha256")
    for name, meta in m["files"].items():
        t.add_row(name, f"{meta['size']:,}", meta["sha256"][:16] + "...")
    c.print(t)
    h = res.host_check
    c.print(f"runtime [bold]{m['runtime']}[/] for Raspberry Pi OS {m['pi_os']} (Python {m['python']}); "
            f"requirements: {', '.join(m['requirements'])}")
    if h:
        c.print(f"sample reproduced here with {h['runtime']} {h['runtime_version']}: max abs error "
                f"{h['max_abs_err']:.3g} vs Keras (tolerance {m['sample']['tolerance']['atol']:g})")
    if res.tarball:
        c.print(f"tarball: {res.tarball}")
    c.print(f"on the Pi, in the bundle's folder (README.md: install, run): {' && '.join(PI_SETUP)}")
    show_warnings(caught=caught)
