"""The "ort" format: ONNX Runtime's mobile/minimal-build format, via onnxruntime.tools.

Exports the native ONNX graph to a temporary folder, converts it with
``onnxruntime.tools.convert_onnx_models_to_ort`` (Fixed optimisation style), then moves
``model.ort`` and ``required_operators.config`` (for a reduced onnxruntime build) into the
output folder and checks model.ort against Keras in onnxruntime.
"""
from __future__ import annotations

import contextlib
import io
import logging
import shutil
import tempfile
from pathlib import Path

from converters.registry import ExportOptions
from rnnedge.errors import ConversionError, MissingDependencyError, install_command


def convert_file(onnx_path: Path, ort_path: Path, config_path: Path | None = None, *,
                 fmt: str = "ort") -> list[str]:
    """``onnx_path`` -> ``ort_path`` with ``onnxruntime.tools.convert_onnx_models_to_ort`` (Fixed
    optimisation style), both files written atomically; also ``required_operators.config`` at
    ``config_path`` when given. Returns the config's operator lines (``domain;opset;Op,Op``).
    Raises MissingDependencyError without onnxruntime, ConversionError when it fails."""
    from rnnedge.manifest import atomic_path

    try:
        from onnxruntime.tools.convert_onnx_models_to_ort import (
            OptimizationStyle,
            convert_onnx_models_to_ort,
        )
    except ImportError as e:
        raise MissingDependencyError("onnxruntime (tools)", install_command("onnxruntime")) from e
    with tempfile.TemporaryDirectory(prefix="rnnedge-ort-") as tmp:
        tmp = Path(tmp)
        src = tmp / "src" / "model.onnx"
        src.parent.mkdir()
        shutil.copyfile(onnx_path, src)
        log = io.StringIO()
        tool_log = logging.getLogger("ort_format_model.utils")  # logs an INFO line per config file
        old_level = tool_log.level
        tool_log.setLevel(logging.WARNING)
        try:
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                convert_onnx_models_to_ort(src, output_dir=tmp / "out",
                                           optimization_styles=[OptimizationStyle.Fixed])
        except Exception as e:  # noqa: BLE001
            raise ConversionError(f"onnxruntime could not convert the model to ORT format: {e}\n"
                                  f"{log.getvalue()[-2000:]}", fmt=fmt) from e
        finally:
            tool_log.setLevel(old_level)
        ort_files = sorted((tmp / "out").rglob("*.ort"))
        configs = sorted((tmp / "out").rglob("*.config"))
        if len(ort_files) != 1 or len(configs) != 1:
            raise ConversionError(f"unexpected ORT conversion output: {[p.name for p in (tmp / 'out').rglob('*')]}",
                                  fmt=fmt)
        with atomic_path(ort_path) as p:
            shutil.copyfile(ort_files[0], p)
        if config_path is not None:
            with atomic_path(config_path) as p:
                shutil.copyfile(configs[0], p)
        return [l for l in configs[0].read_text().splitlines() if l and not l.startswith("#")]


def export_ort(model, out_dir: Path, options: ExportOptions | None = None) -> dict[str, dict]:
    from converters.onnx.exporter import build_onnx, conversion_facts, ort_session, self_check

    options = options or ExportOptions()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    mp, info = build_onnx(model, options)
    with tempfile.TemporaryDirectory(prefix="rnnedge-ort-") as tmp:
        src = Path(tmp) / "model.onnx"
        src.write_bytes(mp.SerializeToString())
        operators = convert_file(src, out_dir / "model.ort", out_dir / "required_operators.config")
    sess = ort_session(str(out_dir / "model.ort"))
    check = self_check(model, sess, info, batch=options.batch_size or 2, seq_len=options.seq_len)
    entry = {
        "format": "ort",
        "opset": info["opset"],
        "source_ir_version": info["ir_version"],
        "optimization_style": "Fixed",
        **conversion_facts(info, "rnnedge native ONNX + onnxruntime.tools.convert_onnx_models_to_ort"),
        "self_check": check,
    }
    return {
        "model.ort": entry,
        "required_operators.config": {
            "format": "ort-required-operators",
            "for": "model.ort",
            "operators": operators,
        },
    }
