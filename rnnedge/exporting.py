"""``export``: a spec, preset, ``.keras`` or TF.js model -> artifacts in a folder, with a manifest.

The folder always receives ``reference.keras`` (the model the artifacts are checked against),
the format's files, and ``manifest.json``; a TF.js model also leaves its original in
``source.tfjs/`` (the reference ``validate`` uses for it when Node is installed). Converters live in :mod:`converters` (one registry per
format); this module only orchestrates, so every format gets the same folder layout, manifest
fields and parity gate.

Nothing lost: the export is written into a staging folder beside ``out_dir``
(``.<name>.staging-*``, with a copy of the existing ``manifest.json``), converted, quantized and
checked there, and its files are moved into ``out_dir`` only when all of it succeeded. A failed
export (a refused layer, a crash, a failed parity check) leaves ``out_dir`` byte for byte as it
was. When the parity check fails, the checked files are kept in ``<out_dir>.rejected/`` for a
look (``rnnedge validate <out_dir>.rejected``) and :class:`~rnnedge.errors.ParityError` is raised.

A model with ``stateful=True`` layers is exported and checked at its fixed batch size; its
manifest says ``model.state: "stateful"`` (else ``"stateless"``): every artifact computes one
call from a zero state, as the reference does when its state is reset before each call.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Optional

from rnnedge.errors import ParityError, UsageError


@dataclass
class ExportResult:
    out_dir: Path
    artifacts: dict[str, dict]
    manifest: dict
    validation: Optional[dict] = None
    paths: list[Path] = field(default_factory=list)
    committed: bool = True          # False: the parity check failed; the files are in out_dir (.rejected)


def save_reference(model, out_dir: Path) -> Path:
    from rnnedge.manifest import atomic_path

    ref = out_dir / "reference.keras"
    with atomic_path(ref) as tmp:
        k = tmp.with_suffix(".keras")
        model.save(k)
        k.replace(tmp)
    return ref


def model_state(model) -> dict[str, Any]:
    """``{"state": "stateful"|"stateless", "batch_size": int|None}``: whether any layer keeps
    state between calls (``stateful=True``; such a model has a fixed batch size)."""
    from rnnedge.runtime.keras import all_layers

    stateful = any(getattr(layer, "stateful", False) for layer in all_layers(model))
    batch = None
    for t in getattr(model, "inputs", []) or []:
        d = t.shape[0] if len(t.shape) else None
        if isinstance(d, int) and d > 0:
            batch = int(d)
    return {"state": "stateful" if stateful else "stateless", "batch_size": batch if stateful else None}


def _commit(stage: Path, out: Path) -> None:
    """Move every file of ``stage`` into ``out`` (folders replace folders), the manifest last."""
    out.mkdir(parents=True, exist_ok=True)
    items = sorted(stage.iterdir(), key=lambda p: p.name == "manifest.json")
    for src in items:
        dst = out / src.name
        if src.is_dir():
            old = None
            if dst.exists():
                old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
                os.replace(dst, old)
            os.replace(src, dst)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        else:
            if dst.is_dir():
                shutil.rmtree(dst)
            os.replace(src, dst)


def _drop_stale_tfjs_original(out: Path) -> None:
    """An earlier export's TF.js original (``source.tfjs/``) goes once the new manifest no longer
    lists it (the new model is not that TF.js model)."""
    from converters.tfjs.importer import REFERENCE_DIR
    from rnnedge.manifest import load_manifest

    if (out / REFERENCE_DIR).exists() and REFERENCE_DIR not in (load_manifest(out).get("artifacts") or {}):
        shutil.rmtree(out / REFERENCE_DIR, ignore_errors=True)


def _keep_rejected(stage: Path, out: Path) -> Path:
    rejected = out.with_name(out.name + ".rejected")
    if rejected.exists():
        shutil.rmtree(rejected)
    os.replace(stage, rejected)
    return rejected


def export(source, fmt: str | Iterable[str] = "onnx", out_dir: str | Path = "export", *,
           opset: Optional[int] = None, batch_size: Optional[int] = None, seq_len: Optional[int] = None,
           allow_flex: bool = False, quantize: Iterable[str] = (), streaming: bool = False,
           validate: bool = True, extra: Optional[dict] = None, seed: Optional[int] = None) -> ExportResult:
    """Export ``source`` to one or several formats (``"onnx"``, ``"ort"``, ``"tflite"``, ``"tfjs"``).

    Returns an :class:`ExportResult`; files are recorded in ``out_dir/manifest.json`` (hashes,
    shapes, versions, and parity when ``validate``). Raises what the converters raise
    (:class:`~rnnedge.errors.ConversionError`...) and :class:`~rnnedge.errors.ParityError` when an
    artifact fails the parity check (its ``result`` attribute: the :class:`ExportResult` of the
    rejected files in ``<out_dir>.rejected``); in every such case ``out_dir`` is left as it was.
    """
    from converters.registry import ExportOptions, get_exporter

    fmts = [fmt] if isinstance(fmt, str) else list(fmt)
    if not fmts:
        raise UsageError("no format given")
    ExportOptions(opset=opset, batch_size=batch_size, seq_len=seq_len)  # a bad option value: exit 2, now
    quantize = list(quantize)
    if quantize and any(f in ("onnx", "tflite") for f in fmts):
        from rnnedge.quantization import MODES as Q_MODES

        bad = [m for m in quantize if m not in Q_MODES]
        if bad:
            raise UsageError(f"unknown quantization mode(s) {bad}; choose from: {', '.join(Q_MODES)}")
    exporters = [(f, get_exporter(f)) for f in fmts]  # fail on an unknown format before any work
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out}: exists and is not a folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=out.parent))
    try:
        if (out / "manifest.json").is_file():
            shutil.copy2(out / "manifest.json", stage / "manifest.json")
        res = _export_into(stage, source, exporters, fmts, opset=opset, batch_size=batch_size,
                           seq_len=seq_len, allow_flex=allow_flex, quantize=quantize, streaming=streaming,
                           validate=validate, extra=extra, seed=seed)
        failed = res.validation is not None and res.validation.get("exit_code", 0) == 1  # 2: nothing compared
        final = _keep_rejected(stage, out) if failed else out
        if not failed:
            _commit(stage, out)
            _drop_stale_tfjs_original(out)
        res = _relocate(res, final, committed=not failed)
        if failed:
            from rnnedge.validation import failures

            err = ParityError(f"parity check failed: {failures(res.validation)}; {out} was left as it was "
                              f"(the rejected export is in {final}: `rnnedge validate {final}` shows it)")
            err.result = res
            raise err
        return res
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)


def _relocate(res: ExportResult, folder: Path, committed: bool) -> ExportResult:
    from rnnedge.manifest import load_manifest

    man = load_manifest(folder)
    entries = {n: man.get("artifacts", {}).get(n, e) for n, e in res.artifacts.items()}
    report = res.validation
    if report is not None:
        report = dict(report, folder=str(folder))
    return ExportResult(folder, entries, man, report, [folder / n for n in entries], committed)


def _export_into(out: Path, source, exporters, fmts, *, opset, batch_size, seq_len, allow_flex, quantize,
                 streaming, validate, extra, seed) -> ExportResult:
    """The export itself, into the (staging) folder ``out``."""
    from converters.registry import ExportOptions
    from rnnedge.manifest import load_manifest, new_manifest, package_versions, save_manifest, update_manifest
    from rnnedge.models import resolve

    lm = resolve(source, seed=seed)
    state = model_state(lm.model)
    if state["state"] == "stateful":
        if batch_size is not None and batch_size != state["batch_size"]:
            raise UsageError(f"batch size {batch_size}: the model is stateful with a fixed batch size of "
                             f"{state['batch_size']} (export it at that batch size)")
        batch_size = state["batch_size"]
    man = load_manifest(out)
    if not man:
        man = new_manifest(lm.source, lm.preprocessing)
    man["source"] = lm.source
    man["preprocessing"] = lm.preprocessing
    if lm.spec is not None:
        man["spec"] = lm.spec
    man["model"] = {
        "name": lm.model.name,
        "inputs": [{"name": t.name, "shape": [None if d is None else int(d) for d in t.shape],
                    "dtype": str(t.dtype)} for t in lm.model.inputs],
        "outputs": [{"shape": [None if d is None else int(d) for d in t.shape], "dtype": str(t.dtype)}
                    for t in lm.model.outputs],
        **state,
    }
    if state["state"] == "stateful":
        man["model"]["state_note"] = (
            "the Keras model keeps its state between calls (stateful=True); every artifact computes one "
            "call from a zero state (feed whole sequences), which is what parity checks: the reference "
            "is reset before each batch")
    vocab = {}
    if lm.spec:
        vocab = {i["name"]: i.get("vocab_size") for i in lm.spec.get("inputs", []) if i.get("vocab_size")}
    if vocab:
        man["model"]["vocab_sizes"] = vocab
    if "tfjs" not in lm.extra:
        from converters.tfjs.importer import REFERENCE_DIR as TFJS_ORIGINAL

        (man.get("artifacts") or {}).pop(TFJS_ORIGINAL, None)  # an earlier export's (removed at commit)
    man["versions"] = package_versions("rnnedge", "keras", "tensorflow", "tensorflow-cpu", "tf2onnx", "onnx",
                                       "onnxruntime", "ai-edge-litert", "numpy")
    save_manifest(out, man)
    save_reference(lm.model, out)
    update_manifest(out, artifacts={"reference.keras": {"format": "keras", "role": "reference"}})
    if "tfjs" in lm.extra:  # the TF.js original, for `validate --reference tfjs`
        from converters.tfjs.importer import write_reference
        from rnnedge.matching import output_names

        update_manifest(out, artifacts=write_reference(lm.extra["tfjs"], out, output_names(lm.model)))
    # ONNX/TFLite quantized variants come from rnnedge.quantization (one place, after the float
    # export); TF.js stores quantized weights in its own writer, so its exporter gets the modes.
    q_modes = list(quantize)
    options = ExportOptions(opset=opset, batch_size=batch_size, seq_len=seq_len, allow_flex=allow_flex,
                            quantize=[], streaming=streaming, extra=dict(extra or {}))
    entries: dict[str, dict] = {}
    for f, exporter in exporters:
        opts = replace(options, quantize=q_modes) if f == "tfjs" else options
        got = exporter(lm.model, out, opts)
        update_manifest(out, artifacts=got)
        entries.update(got)
    q_fmts = [f for f in ("onnx", "tflite") if f in fmts]
    if q_modes and q_fmts:
        from rnnedge.quantization import quantize as _quantize

        got = _quantize(out, q_modes, formats=q_fmts)  # the modes: checked by export() before any work
        errors = {n: e["error"] for n, e in got.items() if "error" in e}
        if errors:
            from rnnedge.errors import ConversionError

            raise ConversionError("quantization failed: " + "; ".join(f"{n}: {m}" for n, m in errors.items()))
        entries.update(got)
    if streaming:
        from converters.streaming import FORMATS as STEP_FORMATS
        from converters.streaming import export_streaming

        step_fmts = [f for f in fmts if f in STEP_FORMATS] or list(STEP_FORMATS)
        got = export_streaming(lm.model, out, formats=tuple(step_fmts), options=options, write_manifest=False)
        update_manifest(out, artifacts=got)
        entries.update(got)
    report = None
    if validate:
        from rnnedge.validation import is_model_artifact, validate as _validate

        report = _validate(out, artifacts=[n for n, e in entries.items() if is_model_artifact(n, e)])
    man = load_manifest(out)
    entries = {n: man["artifacts"].get(n, e) for n, e in entries.items()}  # with sha256/size (and parity)
    return ExportResult(out, entries, man, report, [out / n for n in entries])
