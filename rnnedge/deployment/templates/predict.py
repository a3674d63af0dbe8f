#!/usr/bin/env python3
"""Run the model of this bundle (made by `rnnedge deploy`) on a Raspberry Pi or any machine.

Needs numpy and ONE runtime (see requirements.txt): ai-edge-litert or tflite-runtime for a
.tflite model, onnxruntime for a .onnx/.ort model. No TensorFlow, no rnnedge.

    python predict.py --self-test                        # sample_input -> compare with sample_output
    python predict.py --input x.npy --output y.npy       # raw model input, one row or a batch; .npz for several inputs
    python predict.py --text "a wonderful film"          # text models: tokenized like at training
    python predict.py --csv series.csv [--column value]  # window models: scale, last W rows
    some_producer | python predict.py --stream           # text/window models: one text (or number) per line

Which of these work depends on the model (see README.md, or `modes()`): --text needs a text model,
--csv a window model, --stream either; --input and --self-test always work.

--input prints one summary line (--json: a JSON object with the outputs, by name when there are
several); --text, --csv and --stream print one JSON object per prediction. --output FILE: .npy for
one output, .npz or .json (by output name) for any number. --runtime picks the runtime: it is used,
or refused (exit 3 when it is not installed, with the command that installs it; exit 2 when it
cannot run this bundle's model). Exit codes: 0 ok, 1 failure (the self-test does not reproduce the
sample, the runtime fails), 2 bad input (a missing or malformed file, a wrong shape or input name,
a token id outside the vocabulary or not a whole number, a mode or option this model does not
take), 3 no runtime installed (`pip install -r requirements.txt`).
A NaN or infinity in an input is a warning: runtimes give different predictions for them.

Everything the model needs to prepare raw inputs is in preprocess.json; manifest.json names the
model file, its inputs/outputs and the runtime it was built for.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import re
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
TOKEN_PATTERN = r"[a-z0-9']+"
# which runtimes can run which model file; the pip package of each (manifest.json's "install"
# gives the pinned command, this is the fall-back for bundles without it)
RUNTIMES = {"litert": (".tflite",), "tflite-runtime": (".tflite",), "onnxruntime": (".onnx", ".ort")}
PACKAGES = {"litert": "ai-edge-litert", "tflite-runtime": "tflite-runtime", "onnxruntime": "onnxruntime"}
OUTPUT_TYPES = (".npy", ".npz", ".json")
# Start-up lines the TFLite runtimes write straight to stderr (a subset of rnnedge.quiet.NOISE);
# hidden unless --verbose / RNNEDGE_VERBOSE=1.
NOISE = (
    r"^INFO: Created TensorFlow Lite XNNPACK delegate for CPU\.$",
    r"^INFO: Initialized TensorFlow Lite runtime\.$",
)
VERBOSE = os.environ.get("RNNEDGE_VERBOSE", "").strip().lower() not in ("", "0", "false", "no")


class BundleError(Exception):
    """A problem with the bundle or a failed run (one line on stderr, exit code 1)."""

    exit_code = 1


class InputError(BundleError):
    """Bad input: a missing or malformed file, a wrong shape, a mode this model does not take (exit 2)."""

    exit_code = 2


class RuntimeMissing(BundleError):
    """No runtime for the model is installed (exit 3)."""

    exit_code = 3


def modes(kind: str | None) -> list[str]:
    """The command-line modes that work for a model whose preprocessing is ``kind``
    (preprocess.json's "kind"): --self-test and --input always; --text and --stream for text or
    character models; --csv and --stream for window (forecasting) models."""
    extra = {"text": ["text", "stream"], "chars": ["text", "stream"], "window": ["csv", "stream"]}
    return ["self-test", "input"] + extra.get(kind or "", [])


@contextlib.contextmanager
def quiet_stderr():
    """While open, what the runtime writes to file descriptor 2 goes to a temporary file; lines
    that are not NOISE are written back to stderr when it closes. Does nothing when verbose."""
    if VERBOSE:
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            for line in tmp.read().decode("utf-8", "replace").splitlines():
                if not any(re.search(p, line) for p in NOISE):
                    sys.stderr.write(line + "\n")


def _load_json(folder: Path, name: str) -> dict:
    p = folder / name
    if not p.exists():
        return {}
    with open(p) as f:
        return json.load(f)


# --------------------------------------------------------------------------- runtimes
def _tflite_interpreter(which: str):
    """(Interpreter class, runtime name, version) for 'litert' or 'tflite-runtime'."""
    if which == "litert":
        from ai_edge_litert.interpreter import Interpreter

        try:
            from importlib.metadata import version

            v = version("ai-edge-litert")
        except Exception:  # pragma: no cover - metadata missing
            v = "?"
        return Interpreter, "litert", v
    if which == "tflite-runtime":
        import tflite_runtime
        from tflite_runtime.interpreter import Interpreter

        return Interpreter, "tflite-runtime", getattr(tflite_runtime, "__version__", "?")
    raise BundleError(f"unknown TFLite runtime {which!r}")


class Model:
    """The bundle's model in its runtime. ``run(feeds) -> list of outputs``: one row or a batch of
    any number of rows. ``batch`` is the model's fixed batch size (None: any number of rows in one
    call); rows then run ``batch`` at a time, the last chunk padded (see ``run``)."""

    def __init__(self, bundle_dir=HERE, runtime: str | None = None, threads: int | None = None):
        self.dir = Path(bundle_dir)
        self.manifest = _load_json(self.dir, "manifest.json")
        if not self.manifest:
            raise BundleError(f"{self.dir}: no manifest.json")
        self.model_file = self.manifest["model"]["file"]
        self.inputs = self.manifest["model"]["inputs"]
        self.outputs = self.manifest["model"]["outputs"]
        path = self.dir / self.model_file
        if not path.exists():
            raise BundleError(f"{path}: model file missing")
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise InputError(f"threads must be a whole number >= 1, got {threads!r}")
        fits = [r for r, exts in RUNTIMES.items() if path.suffix in exts]
        if runtime is not None:  # an explicit runtime is used or refused, never replaced
            if runtime not in RUNTIMES:
                raise InputError(f"unknown runtime {runtime!r}; choose one of: {', '.join(RUNTIMES)}")
            if runtime not in fits:
                raise InputError(f"this bundle ships a {path.suffix} model; {runtime} cannot run it "
                                 f"(use {' or '.join(fits)})")
        if path.suffix in (".onnx", ".ort"):
            self._load_onnx(path, threads)
        elif runtime is not None:
            self._load_tflite(path, [runtime], threads)
        else:  # the bundle's runtime, else the other TFLite runtime
            wanted = self.manifest.get("runtime") if self.manifest.get("runtime") in fits else fits[0]
            self._load_tflite(path, [wanted] + [r for r in fits if r != wanted], threads)

    def install_command(self, runtime: str) -> str:
        """The command that installs ``runtime`` (manifest.json's pinned one when recorded)."""
        cmd = (self.manifest.get("install") or {}).get(runtime)
        if cmd:
            return cmd
        if runtime == self.manifest.get("runtime"):
            return "pip install -r requirements.txt"
        return f"pip install {PACKAGES.get(runtime, runtime)}"

    # -- onnxruntime
    def _load_onnx(self, path: Path, threads):
        try:
            import onnxruntime as ort
        except ImportError:
            raise RuntimeMissing(f"onnxruntime is not installed: install it with "
                                 f"`{self.install_command('onnxruntime')}`") from None
        so = ort.SessionOptions()
        if threads:
            so.intra_op_num_threads = threads
        if not VERBOSE:
            so.log_severity_level = 4  # fatal only: a failed run is one `error:` line, not also a log line
        try:
            self._sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - a corrupt or unsupported model
            raise BundleError(f"onnxruntime {ort.__version__} cannot load {path.name}: {e}") from None
        self.runtime, self.runtime_version = "onnxruntime", ort.__version__
        self._in_names = [i.name for i in self._sess.get_inputs()]
        self.batch = _fixed_batch([i.shape[0] if i.shape and isinstance(i.shape[0], int) else None
                                   for i in self._sess.get_inputs()])
        self._kind = "onnx"

    # -- LiteRT / tflite-runtime (the first of ``order`` that is installed)
    def _load_tflite(self, path: Path, order: list, threads):
        errors = []
        for which in order:
            try:
                Interpreter, name, version = _tflite_interpreter(which)
            except ImportError as e:
                if len(order) == 1:  # asked for by name: that one or nothing
                    raise RuntimeMissing(f"{which} is not installed ({e}): install it with "
                                         f"`{self.install_command(which)}`") from None
                errors.append(f"{which}: {e}")
                continue
            try:
                with quiet_stderr():
                    interp = Interpreter(model_path=str(path), num_threads=threads)
                    interp.allocate_tensors()
            except (ValueError, RuntimeError) as e:  # e.g. an op version this runtime lacks
                raise BundleError(f"{name} {version} cannot load {path.name}: {e}") from None
            self._interp = interp
            self.runtime, self.runtime_version = name, version
            self._kind = "tflite"
            self._bind_tflite()
            return
        raise RuntimeMissing("no TFLite runtime is installed (" + "; ".join(errors)
                             + f"): install it with `{self.install_command(order[0])}`")

    def _bind_tflite(self):
        """Map manifest input/output names to interpreter tensor indices."""
        it = self._interp
        details_in = it.get_input_details()
        details_out = it.get_output_details()
        sig = {}
        try:
            sigs = it._get_full_signature_list() if hasattr(it, "_get_full_signature_list") else {}
            if len(sigs) == 1:
                sig = next(iter(sigs.values()))
        except Exception:
            sig = {}
        by_index = {d["index"]: d for d in details_in}

        def strip(n):
            n = re.sub(r":\d+$", "", n)
            return n[len("serving_default_"):] if n.startswith("serving_default_") else n

        self._in_idx = []
        for pos, spec in enumerate(self.inputs):
            idx = None
            for key in (spec.get("signature_name"), spec["name"]):
                if idx is None and key and key in (sig.get("inputs") or {}):
                    idx = sig["inputs"][key]
            if idx is None:
                named = [d["index"] for d in details_in
                         if d["name"] == spec.get("tensor") or strip(d["name"]) == spec["name"]]
                idx = named[0] if named else details_in[pos]["index"]
            self._in_idx.append(by_index[idx])
        self._shapes = {d["index"]: [int(v) for v in d["shape"]] for d in self._in_idx}
        self.batch = _fixed_batch([None if len(d.get("shape_signature", [])) and int(d["shape_signature"][0]) == -1
                                   else int(d["shape"][0]) for d in self._in_idx])
        # outputs in the manifest's (the Keras model's) order: by signature name, else tensor name
        outs = {d["index"]: d for d in details_out}
        by_name = {d["name"]: d for d in details_out}
        self._out_idx = []
        for pos, spec in enumerate(self.outputs):
            idx = next(((sig.get("outputs") or {})[k] for k in (spec.get("signature_name"), spec["name"])
                        if k and k in (sig.get("outputs") or {})), None)
            d = outs.get(idx) or by_name.get(spec.get("tensor")) or by_name.get(spec["name"])
            self._out_idx.append(d or details_out[pos])

    def run(self, feeds) -> list:
        """Outputs (arrays, batch first) for ``feeds``: an array, a list in the model's input order
        or a dict by input name; one row (no batch axis, or batch 1) or a batch of rows, all
        inputs with the same number of rows. InputError for a wrong name, count or shape."""
        arrays = self._arrays(feeds)
        n, N = arrays[0].shape[0], self.batch
        if N is None or n == N:
            return self._invoke(arrays)
        # a fixed batch N: N rows per call; the last chunk is filled up by repeating its last row
        # and only its real rows are kept
        chunks = []
        for start in range(0, n, N):
            part = [a[start:start + N] for a in arrays]
            k = part[0].shape[0]
            if k < N:
                part = [np.concatenate([p, np.repeat(p[-1:], N - k, axis=0)]) for p in part]
            chunks.append([o[:k] for o in self._invoke(part)])
        return [np.concatenate(outs, axis=0) for outs in zip(*chunks)]

    def calls(self, rows: int) -> int:
        """How many runtime calls ``run`` makes for ``rows`` rows."""
        return 1 if self.batch is None else -(-rows // self.batch)

    def _arrays(self, feeds) -> list:
        if isinstance(feeds, np.ndarray):
            feeds = [feeds]
        if isinstance(feeds, dict):
            feeds = [feeds[n] for n in match_names(feeds, [i["name"] for i in self.inputs], "the inputs")]
        if len(feeds) != len(self.inputs):
            raise InputError(f"the model takes {len(self.inputs)} input(s), got {len(feeds)}")
        arrays = []
        for spec, x in zip(self.inputs, feeds):
            check_ids(spec, x)
            try:
                x = np.asarray(x, dtype=spec["dtype"])
            except (TypeError, ValueError) as e:
                raise InputError(f"input '{spec['name']}' is not {spec['dtype']} data: {e}") from None
            given = list(x.shape)
            per_row = list(spec["shape"][1:])
            if x.ndim == len(per_row):
                x = x[None]
            bad = [a for a, (w, d) in enumerate(zip(per_row, x.shape[1:]), 1) if w not in (None, -1) and w != d]
            if x.ndim != len(per_row) + 1 or bad:
                shown = ", ".join("None" if w in (None, -1) else str(w) for w in per_row)
                why = ""
                if x.ndim == len(per_row) + 1:  # the axis (of the file's array) that does not fit
                    a = bad[0] - (len(given) < x.ndim)
                    why = f": axis {a} has {given[a]}, the model takes {per_row[bad[0] - 1]}"
                raise InputError(f"input '{spec['name']}' must have shape [rows, {shown}] (or [{shown}] for one "
                                 f"row), got {given}{why}")
            if x.dtype.kind == "f" and not np.all(np.isfinite(x)):
                bad_n = int(x.size - np.count_nonzero(np.isfinite(x)))
                warnings.warn(f"input '{spec['name']}' holds {bad_n} NaN/infinite value(s) of {x.size}: runtimes "
                              "give different predictions for them (a model has no defined result)", stacklevel=3)
            arrays.append(x)
        if len({a.shape[0] for a in arrays}) > 1:
            raise InputError(f"the inputs have different numbers of rows: {[a.shape[0] for a in arrays]}")
        if arrays[0].shape[0] == 0:
            raise InputError("the input has no rows")
        return arrays

    def _invoke(self, arrays: list) -> list:
        try:
            return self._invoke_runtime(arrays)
        except Exception as e:  # noqa: BLE001 - onnxruntime's (InvalidArgument, Fail...) and LiteRT's: one line
            text = str(e).strip().splitlines()
            raise BundleError(f"{self.runtime} {self.runtime_version} failed to run: "
                              f"{text[0][:300] if text else type(e).__name__}") from None

    def _invoke_runtime(self, arrays: list) -> list:
        if self._kind == "onnx":
            return [np.asarray(o) for o in self._sess.run(None, dict(zip(self._in_names, arrays)))]
        it = self._interp
        resized = False
        for d, x in zip(self._in_idx, arrays):  # a free (time) axis: resize the tensor to this input
            if self._shapes.get(d["index"]) != list(x.shape):
                it.resize_tensor_input(d["index"], list(x.shape))
                self._shapes[d["index"]] = list(x.shape)
                resized = True
        if resized:
            with quiet_stderr():
                it.allocate_tensors()
        # rnnedge's .tflite files give the same result on every invoke(); a file that keeps state
        # in variable tensors across invokes (manifest: reset_variables) starts each call from
        # zero state. Reset before set_tensor, so an initial state fed as an input is kept.
        if self.manifest["model"].get("reset_variables"):
            it.reset_all_variables()
        for d, x in zip(self._in_idx, arrays):
            it.set_tensor(d["index"], x)
        it.invoke()
        return [np.array(it.get_tensor(d["index"])) for d in self._out_idx]


def check_ids(spec: dict, x) -> None:
    """Refuse (InputError, exit 2) what an integer input cannot take as it is: a value that is not
    a whole number (casting would truncate 1.5 to 1), and, for an input with a ``vocab_size`` (it
    feeds an Embedding), an id outside ``[0, vocab_size)`` (the runtime would fail on it, or wrap
    a negative one). The rule of rnnedge.runtime.base.check_token_ids, which this file cannot import."""
    if not np.issubdtype(np.dtype(spec["dtype"]), np.integer):
        return
    x = np.asarray(x)
    if x.size == 0 or x.dtype.kind not in "biuf":
        return
    v = spec.get("vocab_size")
    what = (f"input '{spec['name']}' takes token ids in [0, {v}) (its Embedding's vocabulary)" if v else
            f"input '{spec['name']}' takes whole numbers ({spec['dtype']})")
    if x.dtype.kind == "f":
        bad = ~np.isfinite(x) | (x != np.round(x))
        if bad.any():
            pos = tuple(int(i) for i in np.argwhere(bad)[0])
            raise InputError(f"{what}, got {float(x[pos]):g} at {list(pos)}: not a whole number")
    if v:
        bad = (x < 0) | (x >= v)
        if bad.any():
            pos = tuple(int(i) for i in np.argwhere(bad)[0])
            raise InputError(f"{what}, got {int(x[pos])} at {list(pos)}"
                             + (f" ({int(bad.sum())} ids out of range)" if bad.sum() > 1 else ""))


def _fixed_batch(sizes: list):
    """The model's fixed batch size from its inputs' first axes (None where any is free)."""
    return None if not sizes or any(v is None or v < 1 for v in sizes) else int(sizes[0])


# --------------------------------------------------------------------------- preprocessing
class Preprocess:
    """Raw input -> model input, exactly as at training (see preprocess.json)."""

    def __init__(self, cfg: dict):
        self.cfg = cfg or {}
        self.kind = self.cfg.get("kind")

    # text: lowercase, tokens by the training pattern, vocab ids (OOV id), pad/truncate to max_len
    def text(self, s: str) -> np.ndarray:
        c = self.cfg
        if self.kind == "chars":
            s = s.lower() if c.get("lowercase", True) else s
            ids = [c["vocab"].get(ch, c.get("unknown_id", 0)) for ch in s][-c["max_len"]:]
            out = np.zeros((1, c["max_len"]), np.int32)
            out[0, :len(ids)] = ids
            return out
        if self.kind != "text":
            raise InputError(f"this model's preprocessing is '{self.kind}': --text needs a text model")
        s = s.lower() if c.get("lowercase", True) else s
        tokens = re.findall(c.get("token_pattern", TOKEN_PATTERN), s)
        oov = c.get("oov_id", 1)
        ids = [c["vocab"].get(t, oov) for t in tokens][: c["max_len"]]
        out = np.full((1, c["max_len"]), c.get("pad_id", 0), np.int32)
        if ids:
            if c.get("padding", "post") == "post":
                out[0, :len(ids)] = ids
            else:
                out[0, -len(ids):] = ids
        return out

    # window: scale with the training scaler, take the last W values
    def window(self, values) -> np.ndarray:
        c = self.cfg
        if self.kind != "window":
            raise InputError(f"this model's preprocessing is '{self.kind}': --csv/numbers need a window model")
        W = int(c["window"])
        v = np.asarray(values, dtype=np.float32).reshape(-1)
        if v.size < W:
            raise InputError(f"need at least {W} values (the model's window), got {v.size}")
        sc = c.get("scaler") or {"mean": 0.0, "std": 1.0}
        z = (v[-W:] - np.float32(sc["mean"])) / np.float32(sc["std"])
        return z.reshape(1, W, 1).astype(np.float32)

    def unscale(self, y: np.ndarray) -> np.ndarray:
        sc = self.cfg.get("scaler") or {"mean": 0.0, "std": 1.0}
        return np.asarray(y, np.float32) * np.float32(sc["std"]) + np.float32(sc["mean"])


def read_csv_column(path: str, column: str | None, default: str | None) -> np.ndarray:
    try:
        with open(path, newline="") as f:
            rows = [r for r in csv.reader(f) if r]
    except OSError as e:
        raise InputError(f"{path}: {e.strerror or e}") from None
    if not rows:
        raise InputError(f"{path}: empty file")

    def is_num(s):
        try:
            float(s)
            return True
        except ValueError:
            return False

    header = rows[0]
    if all(is_num(h) for h in header):  # no header row
        ci = 0 if len(header) == 1 else len(header) - 1
        data = rows
    else:
        data = rows[1:]
        name = column or default
        if name and name in header:
            ci = header.index(name)
        elif column:
            raise InputError(f"{path}: no column '{column}' (columns: {', '.join(header)})")
        else:
            numeric = [i for i in range(len(header)) if data and is_num(data[0][i])]
            if not numeric:
                raise InputError(f"{path}: no numeric column; pass --column NAME")
            ci = numeric[-1]
    try:
        return np.asarray([float(r[ci]) for r in data if len(r) > ci and r[ci] != ""], np.float32)
    except ValueError as e:
        raise InputError(f"{path}: column {header[ci] if data is not rows else ci}: {e}") from None


# --------------------------------------------------------------------------- results
def describe(outputs: list, pre: Preprocess, manifest: dict) -> dict:
    """The outputs as JSON-ready lists (``output``: a list for one output, ``{name: list}`` for
    several), plus ``value`` (unscaled, window models) and ``label`` (classifiers). One row: flat
    lists and a single label; several rows: one entry per row."""
    rows = int(outputs[0].shape[0]) if outputs[0].ndim else 1
    flat = (lambda o: o.reshape(-1).tolist()) if rows == 1 else (lambda o: o.reshape(rows, -1).tolist())
    if len(outputs) > 1:
        names = [s["name"] for s in (manifest.get("model") or {}).get("outputs") or []]
        names = names if len(names) == len(outputs) else [f"output_{i}" for i in range(len(outputs))]
        res = {"output": {n: flat(o) for n, o in zip(names, outputs)}}
    else:
        res = {"output": flat(outputs[0])}
    if pre.kind == "window" and pre.cfg.get("scaler"):
        res["value"] = flat(pre.unscale(outputs[0]))
    task = manifest.get("task")
    o = outputs[0].reshape(rows, -1)
    labels = None
    if task == "binary_classification" and o.shape[1] == 1:
        labels = [int(v >= 0.5) for v in o[:, 0]]
    elif task in ("classification", "multiclass_classification") and o.shape[1] > 1:
        labels = [int(i) for i in np.argmax(o, axis=1)]
    if labels is not None:
        res["label"] = labels[0] if rows == 1 else labels
    return res


def _rounded(v):
    """Nested lists (and dicts by output name) of numbers with 4 significant digits (for a
    readable line)."""
    if isinstance(v, dict):
        return {k: _rounded(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_rounded(x) for x in v]
    return float(f"{v:.4g}") if isinstance(v, float) else v


def summary_line(res: dict) -> str:
    """One line for ``--input``: rows, outputs, where they went, the runtime and the time."""
    outs = ", ".join(f"{name} {shape}" for name, shape in res["outputs"].items())
    line = f"{res['rows']} row{'s' if res['rows'] != 1 else ''} of {res['input']} -> {outs}"
    if res.get("output_file"):
        line += f" written to {res['output_file']}"
    else:
        key = next(k for k in ("label", "value", "output") if k in res)
        text = json.dumps(_rounded(res[key]))
        line += f"; {key} {text}" if len(text) <= 80 else f"; {key} {text[:77]}... (--output FILE or --json for all)"
    b, calls = res.get("batch_size"), res.get("calls", 1)
    if b is None or b == res["rows"]:
        how = "in one batch"
    elif b == 1:
        how = "row by row (the model's batch size is fixed at 1)"
    else:
        pad = b * calls - res["rows"]
        how = (f"in {calls} call{'s' if calls != 1 else ''} of {b} rows (the model's batch size is fixed at {b}"
               + (f"; the last call padded with {pad} repeated row{'s' if pad != 1 else ''}, dropped)" if pad else ")"))
    return f"{line}; {res['runtime']} {res['runtime_version']}, {how}, {res['ms']:.1f} ms"


def self_test(bundle_dir=HERE, runtime: str | None = None, threads: int | None = None) -> dict:
    """Run the recorded sample input and compare with the recorded (Keras) output."""
    bundle_dir = Path(bundle_dir)
    man = _load_json(bundle_dir, "manifest.json")
    sample = man.get("sample") or {}
    if not sample:
        raise BundleError("manifest.json records no sample")
    model = Model(bundle_dir, runtime=runtime, threads=threads)
    x = load_array(bundle_dir / sample["input"], model.inputs, BundleError)
    expected = load_array(bundle_dir / sample["output"], model.outputs, BundleError)
    t0 = time.perf_counter()
    try:
        got = model.run(x)
    except InputError as e:  # the bundle's own sample does not fit its model: a broken bundle (exit 1)
        raise BundleError(f"{sample['input']}: {e}") from None
    seconds = time.perf_counter() - t0
    tol = sample.get("tolerance", {"atol": 1e-5, "rtol": 0.0})
    errs, ok = [], True
    for g, e in zip(got, expected):
        e = np.asarray(e, np.float64)
        g = np.asarray(g, np.float64).reshape(e.shape)
        err = float(np.max(np.abs(g - e))) if e.size else 0.0
        errs.append(err)
        ok &= bool(np.all(np.abs(g - e) <= tol["atol"] + tol.get("rtol", 0.0) * np.abs(e)))
    return {"ok": ok, "max_abs_err": max(errs) if errs else 0.0, "per_output": errs,
            "tolerance": tol, "runtime": model.runtime, "runtime_version": model.runtime_version,
            "bundle_runtime": man.get("runtime"), "model": model.model_file,
            "reference": sample.get("reference"), "seconds": seconds,
            "python": sys.version.split()[0], "numpy": np.__version__}


def load_array(path: Path, specs: list, error=InputError):
    """An .npy (one array) or .npz (one array per name) -> list in the model's order. A file that
    is no numpy file is said to be what it is (text, a pickle, empty, truncated; the messages of
    rnnedge.runtime.io.load_numpy, which this file cannot import)."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: no such file")
    with open(path, "rb") as f:
        head = f.read(64)
    what = numpy_file_problem(head)
    if what:
        raise error(f"{path.name}: {what}")
    try:
        if head.startswith(b"PK"):
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        else:
            arrays = np.load(path, allow_pickle=False)
    except ValueError as e:
        if "allow_pickle" in str(e) or "Object arrays" in str(e):
            raise error(f"{path.name}: {OBJECT_ARRAYS}") from None
        raise error(f"{path.name}: a truncated or damaged numpy file ({e})") from None
    except Exception as e:  # noqa: BLE001 - EOFError, zipfile.BadZipFile, OSError...
        raise error(f"{path.name}: a truncated or damaged numpy file ({type(e).__name__}: {e})") from None
    names = [s["name"] for s in specs]
    if isinstance(arrays, np.ndarray):
        if len(names) > 1:
            raise error(f"{path.name}: a .npy file holds one array but the model takes {len(names)} inputs "
                        f"{names}; use an .npz file keyed by input name")
        return [arrays]
    return [arrays[k] for k in match_names(arrays, names, path.name, error)]


OBJECT_ARRAYS = ("holds Python objects (a pickled object array), not numbers: save a numeric array "
                 "(numpy.save(path, numpy.asarray(x, dtype=numpy.float32)))")


def numpy_file_problem(head: bytes):
    """What a file that starts with ``head`` is, when it is not a numpy .npy/.npz file (None when
    it starts like one)."""
    if head.startswith((b"\x93NUMPY", b"PK\x03\x04", b"PK\x05\x06")):
        return None
    if not head:
        return "an empty file, not a numpy .npy/.npz file"
    if head[:1] == b"\x80":
        return "a Python pickle, not a numpy .npy/.npz file (save arrays with numpy.save / numpy.savez)"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as e:  # a character cut at the end of the 64 bytes read is still text
        text = head[:e.start].decode("utf-8") if e.start >= len(head) - 3 else None
    if text is not None and all(c.isprintable() or c in "\r\n\t" for c in text.rstrip("\x00")):
        start = text.strip().splitlines()[0][:40] if text.strip() else ""
        return (f"a text file (it starts {start!r}), not a numpy .npy/.npz file; save arrays with "
                "numpy.save / numpy.savez")
    return (f"not a numpy .npy/.npz file (it starts with bytes {head[:8].hex(' ')}); save arrays with "
            "numpy.save / numpy.savez")


def match_names(given, names: list, where: str, error=InputError) -> list:
    """The keys of ``given`` in the order of ``names``: the same names, or for one name a single
    unnamed array (``arr_0``: ``numpy.savez(f, x)``); else ``error`` naming what the model takes."""
    keys = list(given)
    if set(keys) == set(names):
        return list(names)
    if len(keys) == 1 and len(names) == 1 and keys[0] == "arr_0":  # numpy.savez(f, x): unnamed
        return keys
    missing = [n for n in names if n not in given]
    extra = [k for k in keys if k not in names]
    parts = ([f"missing {missing}"] if missing else []) + ([f"unknown {extra}"] if extra else [])
    raise error(f"{where}: names do not match the model's: {'; '.join(parts)} (the model takes {names})")


def check_output(path: str, n_outputs=None, names=None):
    """Refuse (exit 2), before anything runs, an --output the outputs cannot be written to: an
    extension other than .npy/.npz/.json, or .npy for a model of several outputs."""
    ext = Path(path).suffix.lower()
    if ext not in OUTPUT_TYPES:
        raise InputError(f"--output {path}: unknown output file type {ext or '(none)'!r}; use .npy (one output), "
                         ".npz or .json")
    if ext == ".npy" and n_outputs is not None and n_outputs != 1:
        raise InputError(f"--output {path}: the model has {n_outputs} outputs {list(names or [])}; a .npy file "
                         "holds one: use .npz or .json")


def save_outputs(path: str, outputs: list, specs: list):
    """Write the outputs to exactly ``path``: .npy (one output), .npz or .json (by output name)."""
    names = [s["name"] for s in specs]
    check_output(path, len(outputs), names)
    ext = Path(path).suffix.lower()
    try:
        with open(path, "w" if ext == ".json" else "wb") as f:
            if ext == ".json":
                json.dump({n: np.asarray(o).tolist() for n, o in zip(names, outputs)}, f)
            elif ext == ".npz":
                np.savez(f, **{n: o for n, o in zip(names, outputs)})
            else:
                np.save(f, outputs[0])
    except OSError as e:
        raise InputError(f"--output {path}: {e.strerror or e}") from None


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1 (else exit 2 with the option's name)."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"{v} is not >= 1")
    return v


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    print(f"warning: {message}", file=sys.stderr)


# --------------------------------------------------------------------------- command line
class _Parser(argparse.ArgumentParser):
    """A usage error is one ``error:`` line (exit 2), like every other bad input; --help has the rest."""

    def error(self, message):
        self.exit(2, f"error: {message} (python predict.py --help)\n")


def main(argv=None) -> int:
    global VERBOSE
    ap = _Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--input", help="raw model input, one row or a batch of rows: .npy (one input) or .npz "
                                     "(by input name)")
    src.add_argument("--text", help="a text to classify/encode (text models)")
    src.add_argument("--csv", help="a CSV with a numeric column; the last W values are used (window models)")
    src.add_argument("--stream", action="store_true",
                     help="read stdin: one text per line (text models) or one number per line (window "
                          "models: rolling window, one prediction per line once W values arrived)")
    src.add_argument("--self-test", action="store_true", help="check the recorded sample (exit 1 on mismatch)")
    ap.add_argument("--output", help="write the outputs here: .npy (one output), .npz or .json (by output name)")
    ap.add_argument("--column", help="CSV column (default: the one used at training, else the last numeric)")
    ap.add_argument("--runtime", choices=list(RUNTIMES),
                    help="run on this runtime (it must fit the model: litert/tflite-runtime for .tflite, "
                         "onnxruntime for .onnx/.ort); default: the bundle's, else another installed one")
    ap.add_argument("--threads", type=positive_int, default=None, help="runtime threads (>= 1)")
    ap.add_argument("--bundle", default=str(HERE), help=argparse.SUPPRESS)
    ap.add_argument("--json", action="store_true", help="print results as JSON")
    ap.add_argument("--verbose", action="store_true", help="show the runtime's own messages")
    a = ap.parse_args(argv)
    VERBOSE = VERBOSE or a.verbose
    with warnings.catch_warnings():
        if not VERBOSE:
            warnings.showwarning = _one_line_warning
        return _main(a)


def _main(a) -> int:
    bundle = Path(a.bundle)
    try:
        if a.output:
            check_output(a.output)  # before anything loads or runs
        if a.self_test:
            rep = self_test(bundle, a.runtime, threads=a.threads)
            if a.json:
                print(json.dumps(rep))
            else:
                print(f"self-test {'OK' if rep['ok'] else 'FAILED'}: {rep['model']} on {rep['runtime']} "
                      f"{rep['runtime_version']} (python {rep['python']}, numpy {rep['numpy']}): "
                      f"max abs error {rep['max_abs_err']:.3g} vs {rep['reference']} "
                      f"(atol {rep['tolerance']['atol']:g})")
            return 0 if rep["ok"] else 1
        pre = Preprocess(_load_json(bundle, "preprocess.json"))
        mode = next(m for m in ("input", "text", "csv", "stream") if getattr(a, m) not in (None, False))
        if mode not in modes(pre.kind):
            raise InputError(f"--{mode} does not work for this model (preprocessing: {pre.kind or 'none, raw input'}); "
                             "it takes " + ", ".join(f"--{m}" for m in modes(pre.kind)))
        if a.text is not None and not a.text.strip():  # before the model loads: nothing to classify
            raise InputError("--text is empty: give the text to run the model on (--stream reads one per line)")
        model = Model(bundle, runtime=a.runtime, threads=a.threads)
        man = model.manifest
        if a.output:
            check_output(a.output, len(model.outputs), [s["name"] for s in model.outputs])

        def emit(outputs, extra=None):
            res = describe(outputs, pre, man)
            if extra:
                res = {**extra, **res}
            print(json.dumps(res), flush=True)
            return res

        if a.input:
            xs = load_array(Path(a.input), model.inputs)
            t0 = time.perf_counter()
            outs = model.run(xs)
            ms = (time.perf_counter() - t0) * 1e3
            if a.output:
                save_outputs(a.output, outs, model.outputs)
            res = {"input": a.input, "rows": int(outs[0].shape[0]), "output_file": a.output,
                   "outputs": {s["name"]: list(o.shape) for s, o in zip(model.outputs, outs)},
                   "batch_size": model.batch, "calls": model.calls(int(outs[0].shape[0])),
                   "row_by_row": model.batch == 1 and outs[0].shape[0] > 1,
                   "runtime": model.runtime, "runtime_version": model.runtime_version, "ms": ms,
                   **describe(outs, pre, man)}
            print(json.dumps(res) if a.json else summary_line(res), flush=True)
            return 0
        if a.text is not None:
            outs = model.run(pre.text(a.text))
            if a.output:
                save_outputs(a.output, outs, model.outputs)
            emit(outs, {"text": a.text})
            return 0
        if a.csv:
            values = read_csv_column(a.csv, a.column, pre.cfg.get("column"))
            outs = model.run(pre.window(values))
            if a.output:
                save_outputs(a.output, outs, model.outputs)
            emit(outs, {"last": float(values[-1]), "n": int(values.size)})
            return 0
        # --stream (a text or window model: checked above)
        collected = []
        buf: list[float] = []
        W = int(pre.cfg.get("window", 0) or 0)
        for line in sys.stdin:
            line = line.strip()
            if not line:
                continue
            if pre.kind in ("text", "chars"):
                outs = model.run(pre.text(line))
                emit(outs, {"text": line})
            else:
                try:
                    buf.append(float(line.split(",")[-1]))
                except ValueError:
                    print(json.dumps({"error": f"not a number: {line!r}"}), flush=True)
                    continue
                buf = buf[-W:]
                if len(buf) < W:
                    continue
                outs = model.run(pre.window(buf))
                emit(outs, {"last": buf[-1]})
            collected.append(outs)
        if a.output and collected:
            save_outputs(a.output, [np.concatenate([c[i] for c in collected]) for i in range(len(collected[0]))],
                         model.outputs)
        return 0
    except BundleError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
