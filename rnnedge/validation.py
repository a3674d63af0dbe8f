"""Numerical parity of every artifact in an export folder against ``reference.keras``.

``validate(dir)`` runs the Keras reference and each artifact of ``manifest.json`` (ONNX,
ORT, TFLite, TF.js in Node, quantized variants) on the *same* realistic inputs and
reports, per artifact and per output: max / mean absolute error, max relative error,
cosine similarity, top-1 agreement for classifier outputs (softmax: argmax; sigmoid:
> 0.5) and, for sequence outputs, the max error per time step. Figures go into
``manifest.json`` (``artifacts[name]["parity"]``), written atomically.

Three parts, each its own module (as Polygraphy separates data loader, runner and comparator):

* the inputs, :mod:`rnnedge.inputs`: padded token ids inside the vocabulary, smooth series of
  any rank, masked steps where a ``Masking`` layer reads the input, per-input fixed lengths,
  or a calibration file; several lengths when the time axis is free, the ones asked
  (``seq_lens``), or the calibration file's own;
* the pairing, :mod:`rnnedge.matching`: **every** output compared, **by position** (never by
  Keras name: ``return_state`` / ``merge_mode=None`` give several outputs one name); inputs by name;
* the comparator, :mod:`rnnedge.comparator`: figures, tolerances by precision, verdicts.

The reference and each artifact run at their fixed batch (a ``stateful=True`` model: its batch,
from a zero state for every batch of samples, as the stateless artifacts compute). Each TFLite
artifact is also run **twice on the same input in a fresh plain interpreter** (LiteRT's
``Interpreter`` as an app uses it: no ``reset_all_variables()``, no rnnedge runner); any
difference fails it: the file keeps state between ``invoke()`` calls (e.g. a fused LSTM's h/c in
variable tensors), so an app gets wrong results from the second call on.

Verdicts per artifact: ``pass``, ``fail`` (a tolerance is exceeded, or TFLite state kept between
invokes), ``skipped`` (e.g. TF.js without ``node``), ``error`` (missing/corrupt file, mismatched
inputs or output count, runtime not installed: the message says which). ``report["exit_code"]``
is 1 when an artifact failed or errored, else 3 when one could not be checked because its runtime
is missing (TF.js without Node or its runner's packages; the message gives the install command,
the row has ``missing_dependency``), else 2 when nothing was compared (every artifact skipped;
``reason`` says why), else 0.
A folder without ``manifest.json``, ``reference.keras`` or any model artifact raises
:class:`~rnnedge.errors.UsageError` (exit 2).

The tolerances: :mod:`rnnedge.comparator` (re-exported here).
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from rnnedge.comparator import (  # noqa: F401 - re-exported: the public names of validation
    EIGHT_BIT, TOLERANCES, case_key, compare, judge, merge, precision_of, tolerance_for)
from rnnedge.errors import RnnedgeError, UsageError, raise_if_missing
from rnnedge.manifest import load_manifest, now_iso, save_manifest, sha256_file

REFERENCE = "reference.keras"
DEFAULT_SAMPLES = 64


# ---------------------------------------------------------------------------------------
# small pieces
# ---------------------------------------------------------------------------------------
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


def _runtime_missing(entry: dict) -> str | None:
    if entry.get("format") == "tfjs" and shutil.which("node") is None:
        from rnnedge.runtime.tfjs import node_install_command

        return ("skipped: node not found (Node.js >= 18 runs the TF.js artifact): install it with "
                f"`{node_install_command()}`")
    return None


def is_model_artifact(name: str, entry: dict) -> bool:
    """A model file a runner opens (not a side file such as ORT's required_operators.config, which
    is no artifact to validate)."""
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
def _fixed_batch(infos) -> int | None:
    return next((i.shape[0] for i in infos if i.shape and isinstance(i.shape[0], int) and i.shape[0] > 0),
                None)


REFERENCE_KINDS = ("auto", "keras", "tfjs")


def _tfjs_original(manifest: dict) -> tuple[str, dict] | None:
    """The TF.js model an export was imported from (``source.tfjs``), if any."""
    for name, e in (manifest.get("artifacts") or {}).items():
        if e.get("role") == "reference" and e.get("format") == "tfjs":
            return name, e
    return None


class _Reference:
    """reference.keras + cached inputs/outputs per input case (``{input: T}``). The outputs come
    from reference.keras, or (``reference="tfjs"``, or ``"auto"`` when the export was imported from
    TF.js and Node is installed) from the original TF.js model run in Node, matched by position."""

    def __init__(self, folder: Path, manifest: dict, samples: int, seed: int, calibration,
                 seq_lens: list[int] | None = None, reference: str = "auto"):
        from rnnedge.inputs import keras_mask_values, specs_from_tensors
        from rnnedge.runtime import open_runner

        path = folder / REFERENCE
        if not path.is_file():
            raise UsageError(f"{folder}: no {REFERENCE} (validate compares against it; `rnnedge export` "
                             "writes it)")
        self.runner = open_runner(path)
        try:
            self.runner.load()
        except RnnedgeError as e:
            raise_if_missing(e)  # a missing package is exit 3 with its install command, never bad input
            raise UsageError(f"{path}: cannot load the reference model: {_short(e)}") from None
        self.model = getattr(self.runner, "model", None)
        self.preprocessing = manifest.get("preprocessing") or {}
        vocab, masks = {}, {}
        if hasattr(self.runner, "vocab_sizes"):
            vocab = self.runner.vocab_sizes()
        if self.model is not None:
            from rnnedge.inputs import keras_vocab_sizes

            vocab = vocab or keras_vocab_sizes(self.model)
            masks = keras_mask_values(self.model)
        self.specs = specs_from_tensors(self.runner.inputs, self.preprocessing, vocab=vocab or None,
                                        mask_values=masks)
        self.kinds = classifier_kinds(self.model) if self.model is not None else [None] * len(self.runner.outputs)
        self.batch = _fixed_batch(self.runner.inputs)  # a stateful model's batch (state reset per run)
        self.stateful = bool(self.runner.info.get("stateful"))
        self.samples, self.seed, self.calibration, self.seq_lens = samples, seed, calibration, seq_lens
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
    def outputs(self) -> list:
        return list(self.runner.outputs)

    def cases_for(self, fixed: dict[str, int]) -> list[dict[str, int]]:
        """The input cases for an artifact whose inputs fix the lengths ``fixed`` ({ref name: T})."""
        from rnnedge.inputs import input_cases

        return input_cases(self.specs, preprocessing=self.preprocessing, calibration=self.calibration,
                           seq_lens=self.seq_lens, fixed=fixed)

    def case(self, lengths: dict[str, int]):
        key = tuple(sorted(lengths.items()))
        if key not in self._cache:
            from rnnedge.inputs import sample_inputs

            feeds = sample_inputs(self.specs, self.samples, lengths=lengths, seed=self.seed,
                                  calibration=self.calibration, preprocessing=self.preprocessing)
            outs = self._run(feeds)
            self._cache[key] = (feeds, outs)
        return self._cache[key]

    def _run(self, feeds: dict) -> dict:
        if self.tfjs is None:
            return _run_batched(self.runner, feeds, self.batch)
        # the TF.js model takes the same inputs and gives the same outputs, by position
        got = _run_batched(self.tfjs, {t.name: feeds[n] for t, n in zip(self.tfjs.inputs, self.input_names)},
                           self.batch)
        return {o.name: got[t.name] for o, t in zip(self.outputs, self.tfjs.outputs)}

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


def repeat_invoke_check(path: str | os.PathLike, feeds: dict[str, np.ndarray], entry: dict | None = None,
                        interpreter: str = "auto", seed: int = 0) -> dict:
    """Run a ``.tflite`` twice on the same input in a fresh plain interpreter (LiteRT's
    ``Interpreter``, as an app does: ``allocate_tensors``, ``set_tensor``, ``invoke``; no
    ``reset_all_variables()``, no rnnedge runner) and compare the two results exactly.

    ``feeds``: ``{input name: array}`` (Keras or interpreter names; the manifest ``entry``'s
    ``inputs`` aliases are used); the first rows are taken for a fixed batch, and an input no
    feed fits gets N(0, 0.5) values of the tensor's shape. Returns ``{identical, max_diff,
    outputs_differing, interpreter, input_shapes}``; ``identical`` False means the file keeps
    state between invokes (variable tensors nothing rewrites, e.g. a fused LSTM's h/c)."""
    from rnnedge.runtime.tflite import _import_interpreter, _strip

    mod, rt_name = _import_interpreter(interpreter)
    it = mod.Interpreter(model_path=str(path))
    it.allocate_tensors()
    names_of: dict[str, set] = {}
    for x in (entry or {}).get("inputs") or []:
        if isinstance(x, dict) and x.get("name"):
            names_of[x["name"]] = {str(x[k]) for k in ("name", "signature_name", "keras_name") if x.get(k)}
    rng = np.random.default_rng(seed)
    chosen: dict[int, np.ndarray] = {}
    resized = False
    for d in it.get_input_details():
        sig = [int(s) for s in (d.get("shape_signature") if d.get("shape_signature") is not None
                                and len(d.get("shape_signature")) else d["shape"])]
        cands = {d["name"], _strip(d["name"])} | names_of.get(d["name"], set())
        v = next((np.asarray(feeds[c]) for c in cands if c in feeds), None)
        if v is not None and v.ndim == len(sig):
            if sig[0] > 0 and v.shape[0] != sig[0]:
                v = v[: sig[0]] if v.shape[0] >= sig[0] else None
            if v is not None and any(s > 0 and s != n for s, n in zip(sig, v.shape)):
                v = None
        else:
            v = None
        if v is None:
            v = rng.normal(0, 0.5, size=[int(s) for s in d["shape"]])
        v = np.ascontiguousarray(v.astype(d["dtype"]))
        if list(v.shape) != [int(s) for s in d["shape"]]:
            it.resize_tensor_input(d["index"], list(v.shape), strict=False)
            resized = True
        chosen[d["index"]] = v
    if resized:
        it.allocate_tensors()
    runs = []
    for _ in range(2):
        for idx, v in chosen.items():
            it.set_tensor(idx, v)
        it.invoke()
        runs.append([it.get_tensor(o["index"]).copy() for o in it.get_output_details()])
    diffs, differing = [], []
    for o, a, b in zip(it.get_output_details(), *runs):
        same = np.array_equal(a, b, equal_nan=True)
        diffs.append(0.0 if same or not a.size else float(np.nanmax(np.abs(a.astype(np.float64) - b))))
        if not same:
            differing.append(_strip(o["name"]))
    return {"identical": not differing, "max_diff": max(diffs, default=0.0), "outputs_differing": differing,
            "interpreter": rt_name, "input_shapes": [list(v.shape) for v in chosen.values()]}


def _validate_one(folder: Path, name: str, entry: dict, ref: _Reference, tol: dict,
                  runner_options: dict) -> dict:
    from rnnedge.inputs import case_label
    from rnnedge.matching import match_inputs, match_outputs
    from rnnedge.runtime import open_runner

    row: dict[str, Any] = {"format": entry.get("format"), "precision": None, "tolerance": tol}
    path = folder / name
    if not path.exists():
        raise UsageError(f"{name}: file not found")
    if path.is_file() and entry.get("sha256") and sha256_file(path) != entry["sha256"]:
        row.setdefault("notes", []).append("sha256 differs from manifest.json (file changed since export)")
    from rnnedge.runtime.streaming import SequenceRunner, is_step_model

    step = is_step_model(entry)
    if step:  # compared as the full model: stepped through each whole sequence
        runner = SequenceRunner(path, **runner_options)
        row.setdefault("notes", []).append(f"step model: run one timestep at a time (output_mode "
                                           f"{entry.get('output_mode')!r})")
    else:
        runner = open_runner(path, **runner_options)
    try:
        t0 = time.perf_counter()
        runner.load()
        _check_manifest_io(entry, runner.session.runner if isinstance(runner, SequenceRunner) else runner)
        imap, note = match_inputs(ref.input_names, runner.inputs, _aliases(entry.get("inputs")))
        if note:
            row.setdefault("notes", []).append(note)
        pairs = match_outputs(ref.outputs, runner.outputs)  # by position, every output
        _check_shapes(ref, imap, runner)
        by = {i.name: i for i in runner.inputs}
        fixed = {}
        for spec in ref.specs:
            info, ax = by[imap[spec.name]], spec.time_axis
            if ax is not None and len(info.shape) > ax and isinstance(info.shape[ax], int):
                fixed[spec.name] = info.shape[ax]
        cases = ref.cases_for(fixed)
        batch = _fixed_batch([by[imap[n]] for n in ref.input_names])
        row["batch"] = batch
        row["seq_lens"] = [case_label(c) for c in cases]
        per_out: list[list] = [[] for _ in pairs]
        n_rows = []
        for case in cases:
            feeds, ref_outs = ref.case(case)
            n_rows.append(len(next(iter(feeds.values()))) if feeds else 0)
            outs = list(_run_batched(runner, {imap[k]: v for k, v in feeds.items()}, batch).values())
            refs = list(ref_outs.values())
            if len(outs) != len(pairs):
                raise UsageError(f"the artifact returned {len(outs)} output(s); it lists {len(pairs)}")
            for k, ((rname, aname), kind) in enumerate(zip(pairs, ref.kinds)):
                r, a = np.asarray(refs[k]), np.asarray(outs[k])
                if a.shape != r.shape:
                    if a.size == r.size:
                        a = a.reshape(r.shape)
                    else:
                        raise UsageError(f"output {k} '{aname}' has shape {list(a.shape)}, the reference "
                                         f"output {k} '{rname}' {list(r.shape)} (inputs {case_key(case)})")
                per_out[k].append((case_label(case), compare(r, a, atol=tol["atol"], rtol=tol["rtol"],
                                                             classifier=kind)))
        row["samples"] = min(n_rows) if n_rows else 0
        row["seconds"] = round(time.perf_counter() - t0, 3)
        row["runtime"] = {k: v for k, v in runner.info.items() if isinstance(v, (str, int, float, bool))}
    finally:
        runner.close()
    outputs = {}
    for k, ((rname, aname), kind) in enumerate(zip(pairs, ref.kinds)):
        m = judge(merge(per_out[k]), kind, tol)
        outputs[rname] = {"index": k, "artifact_output": aname, **m}
    row["outputs"] = outputs
    msgs = [f"output {m['index']} '{o}': {m['reason']}" for o, m in outputs.items() if m["verdict"] == "fail"]
    if path.suffix == ".tflite" and not step:
        feeds, _ = ref.case(cases[0])
        rep = repeat_invoke_check(path, feeds, entry, runner_options.get("interpreter", "auto"), ref.seed)
        row["repeat_invoke"] = rep
        if not rep["identical"]:
            msgs.append(f"a second invoke() on the same input in a fresh {rep['interpreter']} interpreter gives "
                        f"other outputs (max difference {rep['max_diff']:.3g} in {', '.join(rep['outputs_differing'])}): "
                        "the file keeps state between invokes (variable tensors, e.g. a fused LSTM's h/c), so an "
                        "app that does not call reset_all_variables() gets wrong results from its second call")
    row["verdict"] = "fail" if msgs else "pass"
    if msgs:
        row["message"] = "; ".join(msgs)
    return row


# ---------------------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------------------
def validate(folder: str | os.PathLike, artifacts: Iterable[str] | None = None, *,
             samples: int = DEFAULT_SAMPLES, atol: float | dict | None = None,
             rtol: float | dict | None = None, min_agreement: float | None = None, seed: int = 0,
             calibration: str | os.PathLike | dict | None = None, seq_lens: Iterable[int] | None = None,
             write_manifest: bool = True, runner_options: dict | None = None, reference: str = "auto") -> dict:
    """Validate the artifacts of ``folder`` (all in the manifest, or those named) against
    ``reference.keras``, or for an export of a TF.js model against that model run in Node
    (``reference``: ``auto`` = TF.js when the folder has one and Node is installed, ``keras``,
    ``tfjs``; the report's and the manifest's ``reference`` say which). Returns the report (see the module docstring); never raises for a
    bad artifact (its row says ``error``), raises :class:`UsageError` for a bad folder or a
    folder with nothing to validate.

    ``samples`` rows per input case (fewer when ``calibration`` holds fewer); ``seq_lens``: the
    lengths of free time axes (default: the primary length and about half of it, or the
    calibration file's own lengths); ``calibration``: a .npy/.npz path or ``{name|index: array}``."""
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
                 and is_model_artifact(n, e)]
        if not names:
            raise UsageError(f"{folder}: nothing to validate: manifest.json lists no model artifact "
                             f"({', '.join(arts) or 'no artifact at all'}); export one with "
                             f"`rnnedge export MODEL -f onnx -o {folder}`")
    else:
        names = list(artifacts)
    unknown = [n for n in names if n not in arts and n != REFERENCE]
    if unknown:
        raise UsageError(f"artifact(s) {unknown} not in {folder}/manifest.json (it lists: "
                         f"{', '.join(arts) or 'nothing'})")
    side = [n for n in names if n in arts and not is_model_artifact(n, arts[n])]
    if side:
        raise UsageError(f"{', '.join(side)}: not a model file (format "
                         f"{', '.join(repr(arts[n].get('format')) for n in side)}); nothing to validate in it")
    if samples < 1:
        raise UsageError("samples must be >= 1")
    lens = [int(t) for t in seq_lens] if seq_lens else None
    if lens and min(lens) < 1:
        raise UsageError(f"seq_lens must be >= 1, got {lens}")
    calib = calibration
    if calibration is not None and not isinstance(calibration, dict):
        from rnnedge.inputs import load_calibration

        calib = load_calibration(calibration)
    ref = _Reference(folder, manifest, samples, seed, calib, lens, reference)
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
    compared = counts["pass"] + counts["fail"] + counts["error"]
    exit_code = _exit_code(rows, compared)
    report = {
        "folder": str(folder),
        "reference": ref.name,
        "samples": samples,
        "seed": seed,
        "inputs": {"source": "calibration" if calib is not None else "generated",
                   "calibration": str(calibration) if calibration is not None and not isinstance(calibration, dict)
                   else None,
                   "seq_lens": lens, "kinds": {s.name: s.kind for s in ref.specs},
                   "masked": {s.name: s.mask_value for s in ref.specs if s.mask_value is not None}},
        "input_kinds": {s.name: s.kind for s in ref.specs},
        "reference_state": "stateful" if ref.stateful else "stateless",
        "validated": now_iso(),
        "artifacts": rows,
        "summary": counts,
        "ok": exit_code == 0,
        "exit_code": exit_code,
    }
    if ref.note:
        report["reference_note"] = ref.note
    if not compared:
        report["reason"] = "nothing was validated: " + "; ".join(
            f"{n}: {r['message']}" for n, r in rows.items()) if rows else "nothing was validated"
    if write_manifest and rows:
        _write_parity(folder, report)
    return report


def _exit_code(rows: dict, compared: int) -> int:
    """1 when an artifact failed or errored, else 3 when one could not be checked because its
    runtime is missing (the message gives the install command), else 2 when nothing was compared,
    else 0."""
    if any(r["verdict"] in ("fail", "error") and not r.get("missing_dependency") for r in rows.values()):
        return 1
    if any(r.get("missing_dependency") for r in rows.values()):
        return 3
    return 0 if compared else 2


def _write_parity(folder: Path, report: dict) -> None:
    man = load_manifest(folder)
    for name, row in report["artifacts"].items():
        if name not in man.get("artifacts", {}) or row.get("not_a_model"):
            continue
        parity = {
            "verdict": row["verdict"],
            "reference": report["reference"],
            "validated": report["validated"],
            "samples": row.get("samples", report["samples"]),
            "seed": report["seed"],
            "input_source": report["inputs"]["source"],
            "precision": row.get("precision"),
            "tolerance": row.get("tolerance"),
        }
        for k in ("message", "seq_lens", "batch", "notes", "runtime", "repeat_invoke"):
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


def failures(report: dict) -> str:
    """``"name: verdict: message; ..."`` for the artifacts of a report that failed or errored
    (the report's ``reason`` when nothing was compared)."""
    bad = {n: r for n, r in report["artifacts"].items() if r["verdict"] in ("fail", "error")}
    if not bad and report.get("reason"):
        return report["reason"]
    return "; ".join(f"{n}: " + (r.get("message") if str(r.get("message", "")).startswith("error:")
                                 else f"{r['verdict']}: {r.get('message', '')}") for n, r in bad.items())


def raise_for_report(report: dict) -> None:
    """Raise :class:`~rnnedge.errors.ParityError` naming the artifacts that did not pass."""
    from rnnedge.errors import ParityError

    if report.get("exit_code", 0) != 0:
        raise ParityError(failures(report))
