"""Numerical parity of every artifact in an export folder against ``reference.keras``.

``validate(dir)`` runs the Keras reference and each artifact of ``manifest.json`` (ONNX,
ORT, TFLite, TF.js in Node, quantized variants) on the *same* realistic inputs
(:mod:`rnnedge.inputs`: padded token ids inside the vocabulary, smooth series, several
sequence lengths when the time axis is free, the artifact's fixed batch respected) and
reports, per artifact and per output: max / mean absolute error, max relative error,
cosine similarity, top-1 agreement for classifier outputs (softmax: argmax; sigmoid:
> 0.5) and, for sequence outputs, the max error per time step. Figures go into
``manifest.json`` (``artifacts[name]["parity"]``), written atomically.

Tolerances (by the artifact's precision; an element passes when
``|a - r| <= atol + rtol * |r|``, as ``numpy.allclose``)
==================================================================================

=========================  =======  =======  =========================================
precision                  atol     rtol     why
=========================  =======  =======  =========================================
float32 (onnx, ort,        1e-5     1e-5     same math in fp32, only the order of
tflite)                                      summation differs: errors seen here are
                                             1e-7..1e-6 for T <= 100 (Polygraphy's
                                             default is 1e-5 as well).
float32, TF.js             1e-4     1e-4     the JS CPU backend's exp/tanh differ a few
                                             ulps and accumulate over time steps.
fp16                       1e-2     1e-2     half-precision weights: 11-bit mantissa,
                                             ~5e-4 relative per weight, a few 1e-3 after
                                             a recurrence (measured ~3e-4 here).
int8, uint8, int8-static,  1e-1     1e-1     8-bit weights (and activations): ~1e-2
dynamic (TFLite)                             typical, 1e-1 leaves room for saturation-
                                             free but coarse scales. **Classifier
                                             outputs are judged by top-1 agreement
                                             >= 0.98 instead** (what a user sees).
=========================  =======  =======  =========================================

Override with ``atol``/``rtol`` (a number for every precision, or ``{precision: number}``)
and ``min_agreement``. A classifier output is one made by a softmax or sigmoid
activation in the reference model (the last Dense / TimeDistributed(Dense) /
Activation layer); agreement is always reported for those, and judged for the 8-bit
precisions only.

Verdicts per artifact: ``pass``, ``fail`` (a tolerance is exceeded), ``skipped``
(e.g. TF.js without ``node``), ``error`` (missing/corrupt file, mismatched inputs,
runtime not installed: the message says which). ``report["exit_code"]`` is 1 when an
artifact failed or errored, else 3 when one could not be checked because its runtime is missing
(TF.js without Node or its runner's packages; the message gives the install command, the row
has ``missing_dependency``), else 0 (other skips allowed); a folder without ``manifest.json``
or ``reference.keras`` raises :class:`~rnnedge.errors.UsageError` (exit 2).
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from rnnedge.errors import RnnedgeError, UsageError
from rnnedge.manifest import load_manifest, now_iso, save_manifest, sha256_file

REFERENCE = "reference.keras"
DEFAULT_SAMPLES = 64
EIGHT_BIT = ("int8", "uint8", "int8-static", "dynamic")
TOLERANCES: dict[str, dict] = {
    "float32": {"atol": 1e-5, "rtol": 1e-5},
    "float32-tfjs": {"atol": 1e-4, "rtol": 1e-4},
    "fp16": {"atol": 1e-2, "rtol": 1e-2},
    **{p: {"atol": 1e-1, "rtol": 1e-1, "min_agreement": 0.98} for p in EIGHT_BIT},
}
_REL_EPS = 1e-7


# ---------------------------------------------------------------------------------------
# small pieces
# ---------------------------------------------------------------------------------------
def precision_of(name: str, entry: dict) -> str:
    """``float32`` / ``float32-tfjs`` / ``fp16`` / ``int8`` ... for a manifest entry."""
    q = entry.get("quantization")
    p = entry.get("precision") or (q.get("mode") if isinstance(q, dict) else q)
    if not p:
        parts = Path(name).name.split(".")
        p = next((x for x in parts[1:-1] if x in TOLERANCES or x == "fp16"), "float32")
    if p in ("float32", "fp32", "float") and entry.get("format") == "tfjs":
        return "float32-tfjs"
    if p in ("fp32", "float"):
        return "float32"
    return p


def tolerance_for(precision: str, atol=None, rtol=None, min_agreement=None) -> dict:
    base = dict(TOLERANCES.get(precision) or TOLERANCES["int8" if "int" in precision else "float32"])

    def pick(v, key):
        if isinstance(v, dict):
            v = v.get(precision, v.get(precision.split("-")[0]))
        if v is not None:
            base[key] = float(v)

    pick(atol, "atol")
    pick(rtol, "rtol")
    if min_agreement is not None and "min_agreement" in base:
        base["min_agreement"] = float(min_agreement)
    return base


def classifier_kinds(model) -> list[str | None]:
    """Per model output: ``softmax`` / ``sigmoid`` when that activation makes it, else None."""
    kinds = []
    for t in model.outputs:
        hist = getattr(t, "_keras_history", None)
        layer = getattr(hist, "operation", None) if hist is not None else None
        if layer is None and hist is not None:
            layer = hist[0]
        kinds.append(_activation_kind(layer))
    return kinds


def _activation_kind(layer) -> str | None:
    if layer is None:
        return None
    cls = type(layer).__name__
    if cls == "Softmax":
        return "softmax"
    if cls in ("TimeDistributed", "Bidirectional") and hasattr(layer, "layer"):
        return _activation_kind(layer.layer)
    act = getattr(layer, "activation", None)
    name = getattr(act, "__name__", None) or (act if isinstance(act, str) else None)
    if name in ("softmax", "sigmoid"):
        return name
    return None


def compare(ref: np.ndarray, out: np.ndarray, *, atol: float, rtol: float,
            classifier: str | None = None) -> dict:
    """Error figures of ``out`` against ``ref`` (same shape)."""
    r = np.asarray(ref, dtype=np.float64)
    a = np.asarray(out, dtype=np.float64)
    d = np.abs(a - r)
    finite = bool(np.isfinite(a).all())
    res: dict[str, Any] = {
        "max_abs": float(d.max()) if d.size else 0.0,
        "mean_abs": float(d.mean()) if d.size else 0.0,
        "max_rel": float((d / (np.abs(r) + _REL_EPS)).max()) if d.size else 0.0,
        "worst_excess": float((d - (atol + rtol * np.abs(r))).max()) if d.size else 0.0,
        "n": int(d.size),
        "finite": finite,
    }
    na, nr = np.linalg.norm(a.ravel()), np.linalg.norm(r.ravel())
    res["cosine"] = 1.0 if na == 0 and nr == 0 else float(np.dot(a.ravel(), r.ravel()) / max(na * nr, 1e-30))
    if classifier:
        if classifier == "softmax" and r.shape[-1] > 1:
            agree = np.argmax(a, axis=-1) == np.argmax(r, axis=-1)
        else:
            agree = (a > 0.5) == (r > 0.5)
        res["top1_agreement"] = float(agree.mean()) if agree.size else 1.0
        res["top1_n"] = int(agree.size)
    if r.ndim >= 3:  # (batch, time, ...): max error per step
        res["per_timestep_max_abs"] = [float(x) for x in d.reshape(d.shape[0], d.shape[1], -1).max(axis=(0, 2))]
    return res


def _merge(cases: list[tuple[int | None, dict]]) -> dict:
    """Aggregate one output's figures over the sequence-length cases."""
    out: dict[str, Any] = {}
    ns = [c["n"] for _, c in cases]
    tot = max(1, sum(ns))
    out["max_abs"] = max(c["max_abs"] for _, c in cases)
    out["mean_abs"] = sum(c["mean_abs"] * c["n"] for _, c in cases) / tot
    out["max_rel"] = max(c["max_rel"] for _, c in cases)
    out["cosine"] = min(c["cosine"] for _, c in cases)
    out["worst_excess"] = max(c["worst_excess"] for _, c in cases)
    out["finite"] = all(c["finite"] for _, c in cases)
    if all("top1_agreement" in c for _, c in cases):
        tn = sum(c["top1_n"] for _, c in cases)
        out["top1_agreement"] = sum(c["top1_agreement"] * c["top1_n"] for _, c in cases) / max(1, tn)
    first = cases[0][1]
    if "per_timestep_max_abs" in first:
        out["per_timestep_max_abs"] = [float(f"{x:.3g}") for x in first["per_timestep_max_abs"]]
    if len(cases) > 1:
        out["by_seq_len"] = {str(L): {"max_abs": c["max_abs"], "mean_abs": c["mean_abs"]} for L, c in cases}
    return out


def _runtime_missing(entry: dict) -> str | None:
    if entry.get("format") == "tfjs" and shutil.which("node") is None:
        from rnnedge.runtime.tfjs import node_install_command

        return ("skipped: node not found (Node.js >= 18 runs the TF.js artifact): install it with "
                f"`{node_install_command()}`")
    return None


def _artifact_path(folder: Path, name: str, entry: dict) -> Path:
    return folder / name


def _is_model_artifact(name: str, entry: dict) -> bool:
    """A model file a runner opens (not a side file such as ORT's required_operators.config)."""
    if entry.get("format") in ("onnx", "ort", "tflite", "tfjs"):
        return True
    from rnnedge.runtime import runner_kind

    try:
        runner_kind(name)
        return True
    except RnnedgeError:
        return False


def _short(e: BaseException) -> str:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return msg[:500]


# ---------------------------------------------------------------------------------------
# the reference
# ---------------------------------------------------------------------------------------
REFERENCE_KINDS = ("auto", "keras", "tfjs")


def _tfjs_original(manifest: dict) -> tuple[str, dict] | None:
    """The TF.js model an export was imported from (``source.tfjs``), if any."""
    for name, e in (manifest.get("artifacts") or {}).items():
        if e.get("role") == "reference" and e.get("format") == "tfjs":
            return name, e
    return None


class _Reference:
    """reference.keras + cached inputs/outputs per sequence length. The outputs come from
    reference.keras, or (``reference="tfjs"``, or ``"auto"`` when the export was imported from
    TF.js and Node is installed) from the original TF.js model run in Node."""

    def __init__(self, folder: Path, manifest: dict, samples: int, seed: int, calibration,
                 reference: str = "auto"):
        from rnnedge.inputs import specs_from_tensors
        from rnnedge.runtime import open_runner

        path = folder / REFERENCE
        if not path.is_file():
            raise UsageError(f"{folder}: no {REFERENCE} (validate compares against it; `rnnedge export` "
                             "writes it)")
        self.runner = open_runner(path)
        try:
            self.runner.load()
        except RnnedgeError as e:
            raise UsageError(f"{path}: cannot load the reference model: {_short(e)}") from None
        self.model = getattr(self.runner, "model", None)
        self.preprocessing = manifest.get("preprocessing") or {}
        vocab = {}
        if hasattr(self.runner, "vocab_sizes"):
            vocab = self.runner.vocab_sizes()
        if not vocab and self.model is not None:
            from rnnedge.inputs import keras_vocab_sizes

            vocab = keras_vocab_sizes(self.model)
        self.specs = specs_from_tensors(self.runner.inputs, self.preprocessing, vocab=vocab or None)
        self.kinds = classifier_kinds(self.model) if self.model is not None else [None] * len(self.runner.outputs)
        self.samples, self.seed, self.calibration = samples, seed, calibration
        self._cache: dict = {}
        self.name, self.note, self.tfjs = REFERENCE, None, None
        if reference not in REFERENCE_KINDS:
            raise UsageError(f"unknown reference {reference!r}; choose one of: {', '.join(REFERENCE_KINDS)}")
        original = _tfjs_original(manifest) if reference != "keras" else None
        if reference == "tfjs" and original is None:
            raise UsageError(f"{folder}: no TF.js original to compare with (only exports of a TF.js "
                             "model.json have one, in source.tfjs/)")
        if original is not None:
            from rnnedge.runtime.tfjs import TFJSRunner, find_node

            if reference == "auto" and find_node() is None:
                self.note = f"{original[0]} not run (node not found): compared with {REFERENCE}"
            else:
                self.tfjs = TFJSRunner(str(folder / original[1]["model"]))
                self.tfjs.load()  # MissingDependencyError (exit 3) without the Node runner
                self.name = f"{original[1]['model']} (TF.js in Node)"

    @property
    def input_names(self) -> list[str]:
        return [s.name for s in self.specs]

    @property
    def output_names(self) -> list[str]:
        return [o.name for o in self.runner.outputs]

    def lengths_for(self, art_inputs) -> list[int | None]:
        """Sequence lengths to test an artifact whose inputs are ``art_inputs`` (ref order)."""
        from rnnedge.inputs import sequence_lengths

        lengths = sequence_lengths(self.specs, self.preprocessing, self.calibration)
        fixed = set()
        for spec, info in zip(self.specs, art_inputs):
            ax = spec.time_axis
            if ax is not None and len(info.shape) > ax and isinstance(info.shape[ax], int):
                fixed.add(info.shape[ax])
        if len(fixed) > 1:
            raise UsageError(f"the artifact's inputs have different fixed time lengths {sorted(fixed)}")
        if fixed:
            return [fixed.pop()]
        return lengths

    def case(self, seq_len):
        if seq_len not in self._cache:
            from rnnedge.inputs import sample_inputs

            feeds = sample_inputs(self.specs, self.samples, seq_len=seq_len, seed=self.seed,
                                  calibration=self.calibration, preprocessing=self.preprocessing)
            outs = self._run(feeds)
            self._cache[seq_len] = (feeds, outs)
        return self._cache[seq_len]

    def _run(self, feeds: dict) -> dict:
        if self.tfjs is None:
            return self.runner.run(feeds)
        # the TF.js model takes the same inputs and gives the same outputs, by position
        got = self.tfjs.run({t.name: feeds[n] for t, n in zip(self.tfjs.inputs, self.input_names)})
        return {n: got[t.name] for n, t in zip(self.output_names, self.tfjs.outputs)}

    def close(self) -> None:
        self.runner.close()
        if self.tfjs is not None:
            self.tfjs.close()


# ---------------------------------------------------------------------------------------
# one artifact
# ---------------------------------------------------------------------------------------
def _aliases(listed) -> dict[str, str]:
    """Artifact tensor name -> the Keras name the manifest records for it (``keras_name``)."""
    out = {}
    for x in listed or []:
        if isinstance(x, dict) and x.get("name"):
            k = x.get("keras_name") or x.get("signature_name")
            if k:
                out[x["name"]] = k
    return out


def _map_names(ref_names: list[str], art_names: list[str], what: str,
               aliases: dict[str, str] | None = None) -> tuple[dict[str, str], str | None]:
    """``{ref_name: art_name}``; by name (or the manifest's keras_name), else by position when
    no name matches (noted)."""
    if set(ref_names) == set(art_names):
        return {n: n for n in ref_names}, None
    if aliases:
        keyed = {aliases.get(a, a): a for a in art_names}
        if set(keyed) == set(ref_names):
            return {n: keyed[n] for n in ref_names}, None
    if len(ref_names) != len(art_names):
        raise UsageError(f"the artifact has {len(art_names)} {what}(s) {art_names}, the reference "
                         f"{len(ref_names)} {ref_names}")
    if not set(ref_names) & set(art_names):
        return dict(zip(ref_names, art_names)), f"{what}s matched by position"
    raise UsageError(f"mismatched {what} names: the artifact has {art_names}, the reference {ref_names}")


def _check_manifest_io(entry: dict, runner) -> None:
    """The file's inputs/outputs are the ones manifest.json lists (by name or keras_name, and rank)."""
    for what, listed, actual in (("input", entry.get("inputs"), runner.inputs),
                                 ("output", entry.get("outputs"), runner.outputs)):
        listed = [x for x in (listed or []) if isinstance(x, dict) and x.get("name")]
        if not listed:
            continue
        by = {x.name: x for x in actual}
        unmatched = []
        for x in listed:
            names = [x["name"], x.get("keras_name"), x.get("signature_name")]
            hit = next((by[n] for n in names if n in by), None)
            if hit is None:
                unmatched.append(x["name"])
                continue
            s = x.get("shape")
            if s is not None and len(s) != len(hit.shape):
                raise UsageError(f"{what} '{x['name']}': manifest.json says shape {s}, the file has {hit.shape}")
        if unmatched or len(listed) != len(actual):
            raise UsageError(f"manifest.json lists {what}s {[x['name'] for x in listed]} but the file has "
                             f"{list(by)}")


def _check_shapes(ref, imap: dict, runner) -> None:
    by = {i.name: i for i in runner.inputs}
    for spec in ref.specs:
        info = by[imap[spec.name]]
        if len(info.shape) != len(spec.shape):
            raise UsageError(f"input '{info.name}' has rank {len(info.shape)} {info.shape}; the reference "
                             f"input '{spec.name}' is {spec.shape}")
        for ax, (a, r) in enumerate(zip(info.shape, spec.shape)):
            if ax == 0 or (ax == spec.time_axis and r is None):
                continue
            if isinstance(a, int) and isinstance(r, int) and a != r:
                raise UsageError(f"input '{info.name}' has shape {info.shape}; the reference input "
                                 f"'{spec.name}' is {spec.shape} (axis {ax} differs)")


def _run_batched(runner, feeds: dict, batch: int | None) -> dict:
    from rnnedge.inputs import batches_of

    n = len(next(iter(feeds.values())))
    if not batch or batch == n:
        return runner.run(feeds)
    parts: dict[str, list] = {}
    for chunk in batches_of(feeds, batch):
        for k, v in runner.run(chunk).items():
            parts.setdefault(k, []).append(np.asarray(v))
    return {k: np.concatenate(v, axis=0)[:n] for k, v in parts.items()}


def _validate_one(folder: Path, name: str, entry: dict, ref: _Reference, tol: dict,
                  runner_options: dict) -> dict:
    from rnnedge.runtime import open_runner

    row: dict[str, Any] = {"format": entry.get("format"), "precision": None, "tolerance": tol}
    path = _artifact_path(folder, name, entry)
    if not path.exists():
        raise UsageError(f"{name}: file not found")
    if path.is_file() and entry.get("sha256") and sha256_file(path) != entry["sha256"]:
        row.setdefault("notes", []).append("sha256 differs from manifest.json (file changed since export)")
    from rnnedge.runtime.streaming import SequenceRunner, is_step_model

    if is_step_model(entry):  # compared as the full model: stepped through each whole sequence
        runner = SequenceRunner(path, **runner_options)
        row.setdefault("notes", []).append(f"step model: run one timestep at a time (output_mode "
                                           f"{entry.get('output_mode')!r})")
    else:
        runner = open_runner(path, **runner_options)
    try:
        t0 = time.perf_counter()
        runner.load()
        _check_manifest_io(entry, runner.session.runner if isinstance(runner, SequenceRunner) else runner)
        imap, note = _map_names(ref.input_names, [i.name for i in runner.inputs], "input",
                                _aliases(entry.get("inputs")))
        if note:
            row.setdefault("notes", []).append(note)
        omap, note = _map_names(ref.output_names, [o.name for o in runner.outputs], "output",
                                _aliases(entry.get("outputs")))
        if note:
            row.setdefault("notes", []).append(note)
        _check_shapes(ref, imap, runner)
        by = {i.name: i for i in runner.inputs}
        art_inputs = [by[imap[n]] for n in ref.input_names]
        lengths = ref.lengths_for(art_inputs)
        batch = next((i.shape[0] for i in art_inputs if i.shape and isinstance(i.shape[0], int)), None)
        row["batch"] = batch
        row["seq_lens"] = lengths
        per_out: dict[str, list] = {o: [] for o in ref.output_names}
        for L in lengths:
            feeds, ref_outs = ref.case(L)
            outs = _run_batched(runner, {imap[k]: v for k, v in feeds.items()}, batch)
            for oname, kind in zip(ref.output_names, ref.kinds):
                r = np.asarray(ref_outs[oname])
                a = np.asarray(outs[omap[oname]])
                if a.shape != r.shape:
                    if a.size == r.size:
                        a = a.reshape(r.shape)
                    else:
                        raise UsageError(f"output '{omap[oname]}' has shape {list(a.shape)}, the reference "
                                         f"'{oname}' {list(r.shape)} (seq_len {L})")
                per_out[oname].append((L, compare(r, a, atol=tol["atol"], rtol=tol["rtol"], classifier=kind)))
        row["seconds"] = round(time.perf_counter() - t0, 3)
        row["runtime"] = {k: v for k, v in runner.info.items() if isinstance(v, (str, int, float, bool))}
    finally:
        runner.close()
    outputs = {}
    for oname, kind in zip(ref.output_names, ref.kinds):
        m = _merge(per_out[oname])
        m["classifier"] = kind
        judged_by_top1 = bool(kind) and "min_agreement" in tol
        m["judged_by"] = "top1_agreement" if judged_by_top1 else "atol/rtol"
        if not m["finite"]:
            ok = False
        elif judged_by_top1:
            ok = m["top1_agreement"] >= tol["min_agreement"]
        else:
            ok = m["worst_excess"] <= 0.0
        m["verdict"] = "pass" if ok else "fail"
        outputs[oname] = m
    row["outputs"] = outputs
    fails = [(o, m) for o, m in outputs.items() if m["verdict"] == "fail"]
    if fails:
        row["verdict"] = "fail"
        msgs = []
        for o, m in fails:
            if not m["finite"]:
                msgs.append(f"'{o}': non-finite values")
            elif m["judged_by"] == "top1_agreement":
                msgs.append(f"'{o}': top-1 agreement {m['top1_agreement']:.3f} < {tol['min_agreement']}")
            else:
                msgs.append(f"'{o}': max abs error {m['max_abs']:.3g} > atol {tol['atol']:g} + rtol "
                            f"{tol['rtol']:g}*|ref|")
        row["message"] = "; ".join(msgs)
    else:
        row["verdict"] = "pass"
    return row


# ---------------------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------------------
def validate(folder: str | os.PathLike, artifacts: Iterable[str] | None = None, *,
             samples: int = DEFAULT_SAMPLES, atol: float | dict | None = None,
             rtol: float | dict | None = None, min_agreement: float | None = None, seed: int = 0,
             calibration: str | os.PathLike | dict | None = None, write_manifest: bool = True,
             runner_options: dict | None = None, reference: str = "auto") -> dict:
    """Validate the artifacts of ``folder`` (all in the manifest, or those named) against
    ``reference.keras``, or for an export of a TF.js model against that model run in Node
    (``reference``: ``auto`` = TF.js when the folder has one and Node is installed, ``keras``,
    ``tfjs``; the report's and the manifest's ``reference`` say which). Returns the report (see
    the module docstring); never raises for a bad artifact (its row says ``error``), raises
    :class:`UsageError` for a bad folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"{folder}: no such folder")
    if not (folder / "manifest.json").is_file():
        raise UsageError(f"{folder}: no manifest.json (not an export folder; run `rnnedge export` first)")
    try:
        manifest = load_manifest(folder)
    except ValueError as e:
        raise UsageError(f"{folder}/manifest.json: not valid JSON ({e})") from None
    arts: dict = manifest.get("artifacts") or {}
    if artifacts is None:  # every runnable artifact but the reference itself
        names = [n for n, e in arts.items()
                 if n != REFERENCE and e.get("role") != "reference" and e.get("format") != "keras"
                 and _is_model_artifact(n, e)]
    else:
        names = list(artifacts)
    unknown = [n for n in names if n not in arts and n != REFERENCE]
    if unknown:
        raise UsageError(f"artifact(s) {unknown} not in {folder}/manifest.json (it lists: "
                         f"{', '.join(arts) or 'nothing'})")
    if samples < 1:
        raise UsageError("samples must be >= 1")
    calib = calibration
    if calibration is not None and not isinstance(calibration, dict):
        from rnnedge.inputs import load_calibration

        calib = load_calibration(calibration)
    ref = _Reference(folder, manifest, samples, seed, calib, reference)
    rows: dict[str, dict] = {}
    try:
        for name in names:
            entry = arts.get(name) or {"format": "keras", "role": "reference"}
            prec = precision_of(name, entry)
            tol = tolerance_for(prec, atol, rtol, min_agreement)
            if not any(ref.kinds):  # no classifier output: top-1 agreement judges nothing here
                tol.pop("min_agreement", None)
            skip = _runtime_missing(entry)
            if name == REFERENCE or entry.get("role") == "reference" or entry.get("format") == "keras":
                skip = "skipped: the reference itself"
            elif not _is_model_artifact(name, entry):
                skip = f"skipped: not a model file (format {entry.get('format')!r})"
            if skip:
                rows[name] = {"format": entry.get("format"), "precision": prec, "tolerance": tol,
                              "verdict": "skipped", "message": skip}
                if not skip.startswith("skipped: node"):
                    rows[name]["not_a_model"] = True  # no parity record written for it
                else:
                    rows[name]["missing_dependency"] = True
                continue
            try:
                row = _validate_one(folder, name, entry, ref, tol, dict(runner_options or {}))
            except Exception as e:  # noqa: BLE001 - one bad artifact must not hide the others
                kind = type(e).__name__
                prefix = "" if isinstance(e, RnnedgeError) else f"{kind}: "
                row = {"format": entry.get("format"), "tolerance": tol, "verdict": "error",
                       "message": f"error: {prefix}{_short(e)}"}
                if getattr(e, "exit_code", None) == 3:  # MissingDependencyError
                    row["message"] = f"error: runtime not installed: {_short(e)}"
                    row["missing_dependency"] = True
            row["precision"] = prec
            rows[name] = row
    finally:
        ref.close()
    counts = {v: sum(1 for r in rows.values() if r["verdict"] == v) for v in ("pass", "fail", "skipped", "error")}
    report = {
        "folder": str(folder),
        "reference": ref.name,
        "samples": samples,
        "seed": seed,
        "input_kinds": {s.name: s.kind for s in ref.specs},
        "validated": now_iso(),
        "artifacts": rows,
        "summary": counts,
        "ok": counts["fail"] == 0 and counts["error"] == 0,
        "exit_code": _exit_code(rows),
    }
    if ref.note:
        report["reference_note"] = ref.note
    if write_manifest and rows:
        _write_parity(folder, report)
    return report


def _exit_code(rows: dict) -> int:
    """1 when an artifact failed or errored, else 3 when one could not be checked because its
    runtime is missing (the message gives the install command), else 0."""
    if any(r["verdict"] in ("fail", "error") and not r.get("missing_dependency") for r in rows.values()):
        return 1
    return 3 if any(r.get("missing_dependency") for r in rows.values()) else 0


def _write_parity(folder: Path, report: dict) -> None:
    man = load_manifest(folder)
    for name, row in report["artifacts"].items():
        if name not in man.get("artifacts", {}) or row.get("not_a_model"):
            continue
        parity = {
            "verdict": row["verdict"],
            "reference": report["reference"],
            "validated": report["validated"],
            "samples": report["samples"],
            "seed": report["seed"],
            "precision": row.get("precision"),
            "tolerance": row.get("tolerance"),
        }
        for k in ("message", "seq_lens", "batch", "notes", "runtime"):
            if k in row:
                parity[k] = row[k]
        if "outputs" in row:
            parity["outputs"] = row["outputs"]
        man["artifacts"][name]["parity"] = parity
    save_manifest(folder, man)


def parity_summary(report: dict | None) -> dict[str, dict]:
    """One row per artifact of a :func:`validate` report: ``{verdict, max_abs (worst output),
    top1_agreement (lowest), message}`` (None where not measured)."""
    rows = {}
    for name, a in (report or {}).get("artifacts", {}).items():
        outs = list((a.get("outputs") or {}).values())
        errs = [o["max_abs"] for o in outs if o.get("max_abs") is not None]
        agree = [o["top1_agreement"] for o in outs if o.get("top1_agreement") is not None]
        rows[name] = {"verdict": a.get("verdict"), "max_abs": max(errs, default=None),
                      "top1_agreement": min(agree, default=None), "message": a.get("message")}
    return rows


def raise_for_report(report: dict) -> None:
    """Raise :class:`~rnnedge.errors.ParityError` naming the artifacts that did not pass."""
    from rnnedge.errors import ParityError

    bad = {n: r for n, r in report["artifacts"].items() if r["verdict"] in ("fail", "error")}
    if bad:
        raise ParityError("; ".join(f"{n}: {r['verdict']}: {r.get('message', '')}" for n, r in bad.items()))
