"""Raspberry Pi deployment bundles: ``deploy(export_dir) -> bundle``, ``verify(bundle) -> report``.

A bundle is a self-contained folder (and ``BUNDLE.tar.gz``) that runs with numpy and ONE
runtime -- no rnnedge, no TensorFlow::

    model.tflite | model.onnx | model.ort   the artifact for the chosen runtime
    preprocess.json     vocabulary/tokenizer settings, scaler, window length, padding
    sample_input.npy    an input prepared by preprocess.json (batch 1; .npz for several inputs)
    sample_output.npy   the Keras reference's output on it, computed at deploy time
    predict.py          standalone predictor (--self-test/--input, and --text/--csv/--stream where the
                        model's preprocessing allows: manifest "modes")
    requirements.txt    numpy + the runtime, pinned for the chosen Pi OS
    README.md           install / run / service instructions
    rnnedge-predict@.service  a systemd unit example (only when --stream works for the model); a
                        template unit: ``systemctl enable --now rnnedge-predict@USER`` runs it as USER
    manifest.json       sha256 of every file above, parity copied from the export, the sample,
                        its tolerance, and what reproduced it on the deploying machine

``deploy`` refuses what cannot run where it is going (tflite-runtime 2.14 with operator
versions newer than it knows, tflite-runtime on Pi OS trixie) with a message naming the op,
and an artifact whose parity check failed at export (``force`` ships it, with a warning, and the
bundle's manifest says so).
``verify`` checks every hash, loads the model and reproduces the recorded sample.

Deploying needs the export folder's ``reference.keras`` (Keras, imported only then); verifying
needs numpy and one runtime.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import string
import subprocess
import tarfile
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from rnnedge.errors import ConversionError, MissingDependencyError, ParityError, RnnedgeError, UsageError

__all__ = ["deploy", "verify", "DeployResult", "VerifyReport", "RUNTIMES", "PI_OS", "requirements_for"]

TEMPLATES = Path(__file__).resolve().parent / "templates"
BUNDLE_FORMAT = 1
DEFAULT_ATOL = 1e-5
RUNTIMES = ("litert", "tflite-runtime", "onnxruntime")  # also the names of rnnedge's extras for them
#: The pip package of each runtime (predict.py keeps the same table: it cannot import rnnedge).
PACKAGES = {"litert": "ai-edge-litert", "tflite-runtime": "tflite-runtime", "onnxruntime": "onnxruntime"}
#: The model files each runtime runs (predict.py keeps the same table: it cannot import rnnedge).
RUNTIME_FILES = {"litert": (".tflite",), "tflite-runtime": (".tflite",), "onnxruntime": (".onnx", ".ort")}
_RUNTIME_ALIASES = {"ai-edge-litert": "litert", "ai_edge_litert": "litert", "tflite_runtime": "tflite-runtime",
                    "tflite": "litert", "ort": "onnxruntime", "onnx": "onnxruntime"}
TARGETS = ("rpi",)
# Raspberry Pi OS releases (64-bit): their Debian base and Python.
PI_OS = {
    "bookworm": {"debian": "12", "python": "3.11"},
    "trixie": {"debian": "13", "python": "3.13"},
}
SERVICE = "rnnedge-predict@.service"  # a template unit: the instance name is the user it runs as
#: What the README and the unit's install lines say for "the user who installs the bundle" (no --user):
#: the shell expands it on the Pi (the login user, also under sudo).
#: the commands that set a bundle up, run in its folder on the Pi: README.md's install steps and
#: the line `rnnedge deploy` ends with (Pi OS bookworm refuses system-wide pip installs, PEP 668)
PI_SETUP = ("python3 -m venv .venv", ".venv/bin/pip install -r requirements.txt",
            ".venv/bin/python predict.py --self-test")
INSTALLING_USER = '"${SUDO_USER:-$(id -un)}"'


# --------------------------------------------------------------------------- requirements
def requirements_for(runtime: str, pi_os: str = "bookworm") -> list[str]:
    """requirements.txt lines for ``runtime`` on Raspberry Pi OS ``pi_os`` (64-bit): the runtime's
    rnnedge extra as pyproject.toml pins it (:func:`rnnedge.errors.project_requirements`, the one
    source of versions, so bundles and install messages say the same), plus numpy's base pin
    when the extra has none."""
    from rnnedge.errors import project_requirements

    runtime, pi_os = _norm_runtime(runtime), _norm_os(pi_os)
    if runtime == "tflite-runtime" and pi_os != "bookworm":
        raise UsageError(
            f"tflite-runtime has no wheels for Python {PI_OS[pi_os]['python']} (Pi OS {pi_os}): its last "
            "release, 2.14.0, stops at Python 3.11. Use --runtime litert (ai-edge-litert) instead.")
    reqs = project_requirements(runtime, machine="aarch64") or [PACKAGES[runtime]]
    if not any(_req_name(r) == "numpy" for r in reqs):
        reqs += [r for r in project_requirements("") if _req_name(r) == "numpy"] or ["numpy"]
    return reqs


def _req_name(requirement: str) -> str:
    import re

    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].strip().lower()


def install_commands(model_file: str, pi_os: str = "bookworm") -> dict[str, str]:
    """``{runtime: "pip install ..."}`` for every runtime that can run ``model_file`` (by its
    extension), pinned as :func:`requirements_for` pins them (tflite-runtime: its bookworm pins,
    it has no wheel for a newer Python). Recorded in a bundle's manifest.json ("install") for
    predict.py's exit-3 message when a runtime asked for is missing."""
    from rnnedge.errors import pip_command

    fits = [r for r in RUNTIMES if Path(model_file).suffix in RUNTIME_FILES[r]]
    return {r: pip_command(requirements_for(r, "bookworm" if r == "tflite-runtime" else pi_os)) for r in fits}


def _norm_runtime(runtime: str) -> str:
    r = _RUNTIME_ALIASES.get(str(runtime).lower(), str(runtime).lower())
    if r not in RUNTIMES:
        raise UsageError(f"unknown runtime {runtime!r}; choose one of: {', '.join(RUNTIMES)}")
    return r


def _norm_os(pi_os: str) -> str:
    o = str(pi_os).lower()
    if o not in PI_OS:
        raise UsageError(f"unknown Pi OS {pi_os!r}; choose one of: {', '.join(PI_OS)}")
    return o


# --------------------------------------------------------------------------- results
@dataclass
class DeployResult:
    bundle: Path
    tarball: Optional[Path]
    manifest: dict
    host_check: dict

    def to_dict(self) -> dict:
        return {"bundle": str(self.bundle), "tarball": str(self.tarball) if self.tarball else None,
                "runtime": self.manifest.get("runtime"), "pi_os": self.manifest.get("pi_os"),
                "model": self.manifest["model"]["file"], "host_check": self.host_check,
                "files": self.manifest.get("files")}


@dataclass
class VerifyReport:
    bundle: str
    ok: bool = True
    checks: list = field(default_factory=list)   # {"check", "file", "ok", "detail"}
    errors: list = field(default_factory=list)   # one line each; a tampered file is named
    warnings: list = field(default_factory=list)
    sample: Optional[dict] = None                # predict.self_test's result

    def add(self, check: str, ok: bool, detail: str = "", file: Optional[str] = None):
        self.checks.append({"check": check, "file": file, "ok": bool(ok), "detail": detail})
        if not ok:
            self.ok = False
            self.errors.append(f"{file}: {detail}" if file else f"{check}: {detail}")

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------- helpers
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _load_predict_module(folder: Path):
    """Import a bundle's predict.py (or the template) as a private module."""
    path = Path(folder) / "predict.py"
    name = f"_rnnedge_bundle_predict_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _is_quantized(name: str, entry: dict) -> bool:
    if any(k in entry for k in ("quantization", "quantize")) or entry.get("precision") not in (None, "fp32", "float32"):
        return True
    return bool(re.search(r"\.(dynamic|int8|uint8|fp16|float16|quant\w*)\.", name))


def _pick_artifact(src: Path, man: dict, runtime: str, model: Optional[str]) -> tuple[str, dict]:
    arts = man.get("artifacts") or {}
    want_ext = RUNTIME_FILES[runtime]
    if model:
        name = Path(model).name
        if name not in arts and not (src / name).is_file():
            raise UsageError(f"{src}: no artifact {name!r} (artifacts: {', '.join(arts) or 'none'})")
        if not name.endswith(want_ext):
            raise UsageError(f"{name} cannot run in {runtime}: it takes a {' or '.join(want_ext)} file")
        return name, dict(arts.get(name) or {})
    cands = [n for n in arts if n.endswith(want_ext) and (src / n).is_file()]
    if not cands:
        fmt = "tflite" if want_ext == (".tflite",) else "onnx"
        raise UsageError(f"{src}: no {' / '.join(want_ext)} artifact for runtime {runtime}; "
                         f"export one first (rnnedge export ... --format {fmt})")
    for pref in ("model.tflite", "model.onnx", "model.ort"):
        if pref in cands:
            return pref, dict(arts[pref])
    floats = [n for n in cands if not _is_quantized(n, arts[n])]
    name = sorted(floats or cands)[0]
    return name, dict(arts[name])


def _tensor_specs(entry_specs, fallback) -> list[dict]:
    out = []
    specs = list(entry_specs or fallback or [])
    if all(isinstance(s.get("keras_index"), int) for s in specs):  # the Keras model's order
        specs.sort(key=lambda s: s["keras_index"])
    for i, s in enumerate(specs):
        shape = [None if d in (None, -1, "None") or isinstance(d, str) else int(d) for d in s.get("shape", [])]
        if shape and shape[0] is None:
            shape[0] = 1  # bundles run batch 1
        spec = {"name": s.get("keras_name") or s.get("signature_name") or s.get("name") or f"tensor_{i}",
                "shape": shape, "dtype": s.get("dtype", "float32")}
        for k in ("signature_name", "name"):  # how the runtime calls it (TFLite signature / tensor name)
            if s.get(k) and s[k] != spec["name"]:
                spec["signature_name" if k == "signature_name" else "tensor"] = s[k]
        out.append(spec)
    taken = [o["name"] for o in out]  # unique names (.npz keys, JSON): a Keras name can repeat
    for i, o in enumerate(out):
        if taken.count(o["name"]) > 1 and taken.index(o["name"]) < i:
            k = 1
            while f"{o['name']}_{k}" in taken:
                k += 1
            o["name"] = taken[i] = f"{o['name']}_{k}"
    return out


def _runtime_specs(model_path: Path) -> tuple[list[dict], list[dict]]:
    """Input/output specs read from the model itself (when the manifest entry has none)."""
    if model_path.suffix == ".tflite":
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:  # pragma: no cover
            try:
                from tflite_runtime.interpreter import Interpreter
            except ImportError:
                import tensorflow as tf

                Interpreter = tf.lite.Interpreter
        it = Interpreter(model_path=str(model_path))
        strip = lambda n: re.sub(r":\d+$", "", n).replace("serving_default_", "")  # noqa: E731
        ins = [{"name": strip(d["name"]), "shape": [int(v) for v in d["shape"]], "dtype": d["dtype"].__name__}
               for d in it.get_input_details()]
        outs = [{"name": strip(d["name"]), "shape": [int(v) for v in d["shape"]], "dtype": d["dtype"].__name__}
                for d in it.get_output_details()]
        return ins, outs
    import onnxruntime as ort

    s = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    conv = {"tensor(float)": "float32", "tensor(int32)": "int32", "tensor(int64)": "int64",
            "tensor(double)": "float64", "tensor(float16)": "float16"}
    f = lambda x: {"name": x.name, "shape": [d if isinstance(d, int) else None for d in x.shape],  # noqa: E731
                   "dtype": conv.get(x.type, "float32")}
    return [f(i) for i in s.get_inputs()], [f(o) for o in s.get_outputs()]


def _free_axis_length(pre: dict) -> int:
    return int(pre.get("window") or pre.get("max_len") or 8)


def _make_sample(pre: dict, inputs: list[dict], predict_mod, seed: int = 0):
    """(list of arrays, raw sample or None): a realistic input through the bundle's own preprocessing."""
    import numpy as np

    rng = np.random.default_rng(seed)
    kind = (pre or {}).get("kind")
    P = predict_mod.Preprocess(pre)
    if kind == "text" and len(inputs) == 1:
        vocab = pre.get("vocab") or {}
        words = [w for w, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
        picked = [words[i] for i in sorted(rng.choice(len(words), size=min(6, max(1, int(pre.get("max_len", 8)) // 2 - 2), len(words)),
                                                    replace=False))] \
            if words else []
        text = "The " + " ".join(picked) + ", qwxzyv!"  # qwxzyv: an out-of-vocabulary word
        return [P.text(text)], {"text": text}
    if kind == "window" and len(inputs) == 1:
        W = int(pre["window"])
        sc = pre.get("scaler") or {"mean": 0.0, "std": 1.0}
        t = np.arange(W + 5, dtype=np.float64)
        values = sc["mean"] + sc["std"] * (np.sin(t / 3.0) + 0.1 * rng.standard_normal(t.size))
        values = [round(float(v), 6) for v in values]
        return [P.window(values)], {"values": values}
    xs = []
    for s in inputs:
        shape = [d if d is not None else _free_axis_length(pre) for d in s["shape"]]
        if "int" in s["dtype"]:
            hi = max(2, min(int(s.get("vocab_size") or pre.get("vocab_size", 0) or len(pre.get("vocab") or {})
                                or 10), 50))
            xs.append(rng.integers(1, hi, size=shape).astype(s["dtype"]))
        else:
            xs.append(rng.standard_normal(shape).astype(s["dtype"]))
    return xs, None


def _load_reference(src: Path):
    """The export folder's reference.keras (the bundle's sample output comes from it)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")
    from rnnedge._keras import load_model

    return load_model(src / "reference.keras")


def _add_vocab_sizes(inputs: list[dict], model, man: dict) -> None:
    """``vocab_size`` on each integer input that feeds an Embedding (its ``input_dim``; else the
    manifest's ``model.vocab_sizes``): predict.py refuses ids outside ``[0, vocab_size)`` (exit 2)
    before the runtime sees them."""
    from rnnedge.inputs import keras_vocab_sizes

    vocab = {**((man.get("model") or {}).get("vocab_sizes") or {}), **keras_vocab_sizes(model)}
    if len(inputs) == 1 and len(vocab) == 1 and inputs[0]["name"] not in vocab:  # one input, named apart
        vocab = {inputs[0]["name"]: next(iter(vocab.values()))}
    for s in inputs:
        if "int" in s["dtype"] and isinstance(vocab.get(s["name"]), int):
            s["vocab_size"] = int(vocab[s["name"]])


def _reference_outputs(model, xs: list, inputs: list[dict]) -> list:
    import numpy as np

    names = [t.name.split(":")[0] for t in model.inputs]
    feeds = xs[0] if len(xs) == 1 else (
        {n: x for n, x in zip([s["name"] for s in inputs], xs)} if set(names) == {s["name"] for s in inputs}
        else list(xs))
    y = model(feeds, training=False)
    ys = y if isinstance(y, (list, tuple)) else (list(y.values()) if isinstance(y, dict) else [y])
    return [np.asarray(v) for v in ys]


def _check_tflite_runtime(model_path: Path, entry: dict) -> list[str]:
    """Refuse a model tflite-runtime 2.14 cannot load, naming the op and version.

    Uses the export's ``compat`` entry (written by converters.tflite) when it says no, else
    checks the file against the measured 2.14 table (:mod:`rnnedge.tflite_compat`). Returns
    warnings for ops the table does not know.
    """
    from rnnedge.tflite_compat import check_compat

    compat = entry.get("compat") if isinstance(entry.get("compat"), dict) else None
    if compat is None or compat.get("tflite_runtime_2_14") is not False:
        compat = check_compat(model_path, try_litert=False)
    reasons = [r for r in compat.get("reasons", []) if r.startswith("tflite-runtime")]
    if compat.get("tflite_runtime_2_14") is False:
        raise ConversionError(
            f"{model_path.name} cannot run in tflite-runtime 2.14.0 (its last release, what Pi OS bookworm "
            f"users get from pip): {'; '.join(r for r in reasons if 'unknown' not in r)}. Deploy it with "
            "--runtime litert (ai-edge-litert), or deploy the float32 model.", fmt="tflite")
    return reasons


def _vtuple(v: str) -> tuple:
    return tuple(int(x) for x in re.findall(r"\d+", v)[:3])


def _render(template: str, **values) -> str:
    return string.Template((TEMPLATES / template).read_text()).substitute(**values)


def _usage_examples(pre: dict, n_inputs: int, modes: list[str], n_outputs: int = 1) -> str:
    """README command lines: only the predict.py modes that work for this model (``modes``, from
    the bundle's own ``predict.modes``); the output file type that holds its outputs."""
    ex = ["python predict.py --self-test",
          f"python predict.py --input sample_input.{'npz' if n_inputs > 1 else 'npy'} "
          f"--output out.{'npz' if n_outputs > 1 else 'npy'}   # one row or a batch of rows"]
    if "text" in modes:
        ex.append('python predict.py --text "a wonderful film with a great cast"' if pre.get("kind") == "text"
                  else 'python predict.py --text "to be or not to"')
    if "csv" in modes:
        ex.append(f"python predict.py --csv series.csv --column {pre.get('column') or 'value'}   "
                  f"# uses the last {pre['window']} values")
    if "stream" in modes:
        ex.append('printf "great movie\\nboring plot\\n" | python predict.py --stream' if pre.get("kind") != "window"
                  else f"tail -F readings.txt | python predict.py --stream     # one number per line; "
                       f"a prediction per line once {pre['window']} values arrived")
    return "\n".join(ex)


def _json_modes_note(modes: list[str]) -> str:
    """`` `--text` and `--stream` print one JSON object per prediction.`` (the modes offered)."""
    ms = [f"`--{m}`" for m in modes if m in ("text", "csv", "stream")]
    if not ms:
        return ""
    return " " + (" and ".join(ms) if len(ms) < 3 else ", ".join(ms[:-1]) + " and " + ms[-1]) + \
        " print one JSON object per prediction."


def _rows_shape(shape: list) -> str:
    """``[rows, None, 4]``: predict.py takes any number of rows (the first axis)."""
    return "[" + ", ".join(["rows"] + ["None" if d is None else str(d) for d in shape[1:]]) + "]"


def _service_section(modes: list[str], install_dir: str, kind: Optional[str]) -> str:
    """README's "As a service" section: the systemd unit when ``--stream`` works for this model,
    else why there is none."""
    if "stream" in modes:
        return (f"`{SERVICE}` is a systemd unit example: it feeds each line appended to\n"
                f"`{install_dir}/input.txt` to `predict.py --stream` and logs one JSON prediction per line\n"
                "(`journalctl -u 'rnnedge-predict@*' -f`). It is a template unit: `systemctl enable --now\n"
                "rnnedge-predict@USER` runs it as USER. Install instructions are at its top.")
    return ("No service unit: this model takes raw tensors (preprocessing: "
            f"{kind or 'none'}), so there is no line of text or number to stream to `predict.py --stream`.\n"
            "Run `predict.py --input FILE` from your own program, or import `predict.Model` in Python\n"
            "(`Model().run(array)` returns the outputs).")


def _user_note(user: Optional[str], service: bool) -> str:
    """The README's comment on who owns the install folder: the service's user when the bundle has
    a service unit, else whoever runs predict.py."""
    if service:
        return "the user the service runs as (deploy --user)" if user else \
            "you: the service runs as the user who installs it"
    return "the user who runs predict.py (deploy --user)" if user else "you: the user who runs predict.py"


def _preprocess_summary(pre: dict) -> str:
    kind = (pre or {}).get("kind")
    if kind == "text":
        return (f"text: lowercase={pre.get('lowercase', True)}, tokens `{pre.get('token_pattern', r'[a-z0-9' + chr(39) + ']+')}`, "
                f"{len(pre.get('vocab') or {})} words (unknown -> id {pre.get('oov_id', 1)}), "
                f"padded/truncated to {pre.get('max_len')} ({pre.get('padding', 'post')})")
    if kind == "window":
        sc = pre.get("scaler") or {}
        return (f"window: the last {pre.get('window')} values of `{pre.get('column')}`, scaled with "
                f"mean {sc.get('mean')} / std {sc.get('std')}; outputs are scaled values (`value` is unscaled)")
    if kind:
        return f"{kind} (see preprocess.json)"
    return "none: feed the model's raw input with --input"


# --------------------------------------------------------------------------- deploy
def deploy(dir, target: str = "rpi", runtime: str = "litert", out=None, pi_os: str = "bookworm",
           tarball: bool = True, *, model: Optional[str] = None, tolerance: Optional[float] = None,
           seed: int = 0, user: Optional[str] = None, install_dir: Optional[str] = None,
           check: bool = True, force: bool = False) -> DeployResult:
    """Make a Raspberry Pi bundle from an export folder ``dir`` (manifest.json + reference.keras).

    ``runtime``: ``litert`` (ai-edge-litert, default), ``tflite-runtime`` (2.14, Pi OS bookworm) or
    ``onnxruntime``. ``model`` picks an artifact by file name (default: model.tflite / model.onnx).
    ``out``: the bundle folder (default ``<dir>-rpi-<runtime>`` beside ``dir``); an older bundle
    there is replaced. ``tolerance``: absolute tolerance recorded for the sample (default 1e-5 for
    float models; quantized ones get 3x the error measured here). With ``check`` the bundle's own
    predict.py reproduces the sample on this machine before anything is written (ParityError if not).
    ``user``: the user the service runs as, written into the README's and the unit's install
    lines (default: the user who installs the bundle on the Pi, ``$SUDO_USER`` or ``id -un``
    there; the unit is a template, ``rnnedge-predict@USER``). An artifact whose recorded parity
    (``rnnedge validate``, the export's manifest) failed is refused with :class:`ParityError`
    naming its max abs error and tolerance; with ``force`` it is shipped, with a
    :class:`UserWarning`, and the bundle's manifest records it (``"forced"``), as it records a
    sample that did not reproduce within tolerance here.
    """
    import numpy as np

    from rnnedge import __version__
    from rnnedge.manifest import atomic_path, load_manifest, now_iso

    if target not in TARGETS:
        raise UsageError(f"unknown target {target!r}; choose one of: {', '.join(TARGETS)}")
    runtime, pi_os = _norm_runtime(runtime), _norm_os(pi_os)
    reqs = requirements_for(runtime, pi_os)
    src = Path(dir)
    man = load_manifest(src)
    if not man:
        raise UsageError(f"{src}: no manifest.json (make one with `rnnedge export`)")
    if user is not None and not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", user):
        raise UsageError(f"--user {user!r}: not a Linux user name (lowercase letters, digits, '_' and '-')")
    name, entry = _pick_artifact(src, man, runtime, model)
    forced = _refuse_failed_parity(name, entry.get("parity"), force)
    model_path = src / name
    if entry.get("sha256") and _sha256(model_path) != entry["sha256"]:
        raise UsageError(f"{model_path}: its sha256 differs from the export's manifest.json (changed after export?)")
    compat_warnings = _check_tflite_runtime(model_path, entry) if runtime == "tflite-runtime" else []
    if not (src / "reference.keras").is_file():
        raise UsageError(f"{src}: no reference.keras to compute the sample output (export writes it)")
    pre = man.get("preprocessing") or {}
    task = man.get("task") or (man.get("source") or {}).get("task") or (man.get("spec") or {}).get("task")
    out = Path(out) if out else src.parent / f"{src.name}-{target}-{runtime}"
    if out.resolve() == src.resolve():
        raise UsageError("the bundle folder cannot be the export folder")
    if out.exists() and not (out / "manifest.json").is_file() and any(out.iterdir()):
        raise UsageError(f"{out} exists and is not a bundle: choose another --out")
    if out.exists() and (out / "manifest.json").is_file():
        try:
            old = json.loads((out / "manifest.json").read_text())
        except ValueError:
            old = {}
        if "bundle_format" not in old:
            raise UsageError(f"{out} holds a manifest.json that is not a bundle's: choose another --out")

    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        shutil.copy2(TEMPLATES / "predict.py", stage / "predict.py")
        shutil.copy2(model_path, stage / name)
        pmod = _load_predict_module(stage)
        fallback_in, fallback_out = (None, None)
        if not entry.get("inputs") or not entry.get("outputs"):
            fallback_in, fallback_out = _runtime_specs(model_path)
        inputs = _tensor_specs(entry.get("inputs"), fallback_in)
        outputs = _tensor_specs(entry.get("outputs"), fallback_out)
        # preprocessing must produce what the model takes (fixed-shape TFLite graphs)
        kind = pre.get("kind")
        if kind in ("text", "chars", "window") and len(inputs) == 1:
            L = int(pre.get("window") or pre.get("max_len"))
            T = inputs[0]["shape"][1] if len(inputs[0]["shape"]) > 1 else None
            if T is not None and T != L:
                raise UsageError(f"{name} takes sequences of length {T} but the preprocessing makes {L} "
                                 f"({'window' if kind == 'window' else 'max_len'}); export with --seq-len {L}")
        reference = _load_reference(src)
        _add_vocab_sizes(inputs, reference, man)
        xs, raw = _make_sample(pre, inputs, pmod, seed)
        ys = _reference_outputs(reference, xs, inputs)
        for s, y in zip(outputs, ys):
            s["shape"] = [int(d) for d in y.shape]
        multi_in, multi_out = len(xs) > 1, len(ys) > 1
        sample_in = "sample_input.npz" if multi_in else "sample_input.npy"
        sample_out = "sample_output.npz" if multi_out else "sample_output.npy"
        if multi_in:
            np.savez(stage / sample_in, **{s["name"]: x for s, x in zip(inputs, xs)})
        else:
            np.save(stage / sample_in, xs[0])
        if multi_out:
            np.savez(stage / sample_out, **{s["name"]: y for s, y in zip(outputs, ys)})
        else:
            np.save(stage / sample_out, ys[0])
        (stage / "preprocess.json").write_text(json.dumps(pre, indent=2, ensure_ascii=False) + "\n")
        info = PI_OS[pi_os]
        (stage / "requirements.txt").write_text(
            f"# rnnedge bundle for Raspberry Pi OS {pi_os} (64-bit, Python {info['python']}), runtime {runtime}\n"
            + "\n".join(reqs) + "\n")
        bundle_name = out.name
        install = install_dir or f"/opt/rnnedge/{bundle_name}"
        modes = pmod.modes(kind)
        if "stream" in modes:  # the unit streams lines to predict.py --stream
            (stage / SERVICE).write_text(_render("rnnedge-predict.service.in", install_dir=install,
                                                 user=user or INSTALLING_USER,
                                                 service=SERVICE, name=bundle_name))

        bman: dict[str, Any] = {
            "bundle_format": BUNDLE_FORMAT,
            "rnnedge_version": __version__,
            "created": now_iso(),
            "target": target,
            "runtime": runtime,
            "pi_os": pi_os,
            "python": info["python"],
            "requirements": reqs,
            "install": install_commands(name, pi_os),
            "task": task,
            "model": {"file": name, "format": entry.get("format") or Path(name).suffix.lstrip("."),
                      "inputs": inputs, "outputs": outputs, "quantized": _is_quantized(name, entry),
                      "export_sha256": entry.get("sha256")},
            "source": man.get("source"),
            "export": {"folder": str(src.resolve()), "created": man.get("created")},
            "preprocessing": {"file": "preprocess.json", "kind": kind},
            "modes": modes,
            "parity": entry.get("parity"),
            "compat": entry.get("compat"),
            "sample": {"input": sample_in, "output": sample_out, "reference": "keras (reference.keras)",
                       "raw": raw, "tolerance": {"atol": float(tolerance or DEFAULT_ATOL), "rtol": 0.0}},
        }
        if runtime in ("litert", "tflite-runtime"):
            from rnnedge.tflite_compat import list_ops, persistent_variables

            bman["model"]["operators"] = sorted({f"{o['name']} v{o['version']}" for o in list_ops(model_path)})
            # state kept across invoke() (a .tflite not made by this rnnedge): predict.py resets it
            bman["model"]["reset_variables"] = bool(persistent_variables(model_path))
        if compat_warnings:
            bman["compat_warnings"] = compat_warnings
        if "stream" in modes:
            bman["service"] = {"unit": SERVICE, "user": user}  # None: the user who installs it
        if forced:
            bman["forced"] = forced
        (stage / "manifest.json").write_text(json.dumps(bman, indent=2) + "\n")

        host = {}
        if check:
            host = _host_check(stage, pmod, xs, ys)
            err = host["max_abs_err"]
            if tolerance is None and err > DEFAULT_ATOL:
                if not bman["model"]["quantized"] and not force:
                    raise ParityError(f"{name} on {host['runtime']} {host['runtime_version']} differs from Keras by "
                                      f"{err:.3g} on the sample (> {DEFAULT_ATOL:g}); not deploying it")
                bman["sample"]["tolerance"]["atol"] = float(f"{3 * err:.1g}") if err > 0 else DEFAULT_ATOL
                if bman["sample"]["tolerance"]["atol"] < 3 * err:
                    bman["sample"]["tolerance"]["atol"] = float(f"{6 * err:.1g}")
            elif tolerance is not None and err > tolerance:
                if not force:
                    raise ParityError(f"{name} on {host['runtime']} differs from Keras by {err:.3g} on the sample "
                                      f"(> tolerance {tolerance:g}); not deploying it (--force ships it anyway)")
                bman["sample"]["tolerance"]["atol"] = float(f"{3 * err:.1g}")
            if force and err > (tolerance if tolerance is not None else DEFAULT_ATOL) \
                    and not bman["model"]["quantized"]:
                msg = (f"{name} differs from Keras by {err:.3g} on the bundle's sample here (> "
                       f"{tolerance if tolerance is not None else DEFAULT_ATOL:g}); shipped because of --force, "
                       f"its self-test accepts {bman['sample']['tolerance']['atol']:g}")
                bman.setdefault("forced", {})["sample"] = msg
                import warnings

                warnings.warn(msg, UserWarning, stacklevel=2)
            bman["deploy_check"] = host
        (stage / "README.md").write_text(_render(
            "README.md.in", name=bundle_name, runtime=runtime, pi_os=pi_os, python=info["python"],
            model=name, requirements="\n".join(reqs), usage=_usage_examples(pre, len(inputs), modes, len(outputs)),
            service_section=_service_section(modes, install, kind),
            json_modes=_json_modes_note(modes),
            preprocessing=_preprocess_summary(pre), install_dir=install, user=user or INSTALLING_USER,
            user_note=_user_note(user, "stream" in modes),
            setup_venv=PI_SETUP[0], setup_pip=PI_SETUP[1], setup_test=PI_SETUP[2],
            atol=f"{bman['sample']['tolerance']['atol']:g}",
            inputs=", ".join(f"{s['name']} {_rows_shape(s['shape'])} {s['dtype']}" for s in inputs),
            outputs=", ".join(f"{s['name']} {_rows_shape(s['shape'])} {s['dtype']}" for s in outputs),
            state=_state_line(bman["model"].get("reset_variables")),
            parity=_parity_line(entry.get("parity")), host=_host_line(host)))
        bman["files"] = {p.name: {"sha256": _sha256(p), "size": p.stat().st_size}
                         for p in sorted(stage.iterdir()) if p.is_file() and p.name != "manifest.json"}
        (stage / "manifest.json").write_text(json.dumps(bman, indent=2) + "\n")
        for p in stage.rglob("__pycache__"):
            shutil.rmtree(p, ignore_errors=True)

        # publish: replace an older bundle, then the tarball
        if out.exists():
            trash = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
            os.replace(out, trash / "b")
            os.replace(stage, out)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(stage, out)
        os.chmod(out, 0o755)
        tar_path = None
        if tarball:
            tar_path = out.parent / f"{out.name}.tar.gz"
            with atomic_path(tar_path) as tmp:
                with tarfile.open(tmp, "w:gz") as tf:
                    tf.add(out, arcname=out.name)
        return DeployResult(out, tar_path, bman, host)
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)


def _refuse_failed_parity(name: str, parity, force: bool) -> dict | None:
    """ParityError (exit 1) when the export's manifest records a failed parity check for the
    artifact ``name`` (verdict ``fail``/``error``): one line with its max abs error and tolerance.
    With ``force``: a UserWarning, and the facts for the bundle's manifest (``forced``)."""
    if not isinstance(parity, dict) or parity.get("verdict") not in ("fail", "error"):
        return None
    errs = [o.get("max_abs") for o in (parity.get("outputs") or {}).values()
            if isinstance(o, dict) and o.get("max_abs") is not None]
    tol = parity.get("tolerance") or {}
    what = (f"max abs error {max(errs):.3g} vs tolerance atol {tol.get('atol', 0):g} + rtol {tol.get('rtol', 0):g}"
            if errs else str(parity.get("message") or parity["verdict"])[:200])
    msg = f"{name} failed its parity check (rnnedge validate: {what})"
    if not force:
        raise ParityError(f"{msg}; not deploying it (fix or re-export it; --force ships it anyway)")
    import warnings

    warnings.warn(f"{msg}; deploying it anyway (--force), the bundle's manifest records it", UserWarning,
                  stacklevel=3)
    return {"parity": {"verdict": parity["verdict"], "max_abs": max(errs) if errs else None,
                       "tolerance": tol or None, "message": msg}}


def _host_check(stage: Path, pmod, xs, ys) -> dict:
    import numpy as np

    try:
        m = pmod.Model(stage)
        got = m.run(xs)
        again = m.run(xs)  # a service calls it many times: the second call must give the same
    except pmod.BundleError as e:
        raise RnnedgeError(f"the bundle's model does not run here: {e}") from None
    drift = max(float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))
                for a, b in zip(got, again))
    if drift > 0:
        raise RnnedgeError(f"the bundle's model gives another result on a second call with the same input "
                           f"(max abs difference {drift:.3g}): it keeps state between calls")
    errs = [float(np.max(np.abs(np.asarray(g, np.float64).reshape(np.shape(y)) - np.asarray(y, np.float64))))
            for g, y in zip(got, ys)]
    import platform

    return {"runtime": m.runtime, "runtime_version": m.runtime_version, "max_abs_err": max(errs),
            "machine": platform.machine(), "python": platform.python_version()}


def _state_line(reset: bool | None) -> str:
    if reset:
        return ("kept in variable tensors across `invoke()`: predict.py calls `reset_all_variables()` "
                "before each call; an app of your own must do the same")
    return "none: every call starts from zero state, no reset needed"


def _parity_line(parity) -> str:
    if not parity:
        return "not recorded in the export (run `rnnedge validate` before deploying)"
    if isinstance(parity, dict):
        rt = parity.get("runtime")
        rt = rt.get("runtime") if isinstance(rt, dict) else rt
        outs = parity.get("outputs") or {}
        errs = [o.get("max_abs") for o in outs.values() if isinstance(o, dict) and o.get("max_abs") is not None]
        parts = [str(parity.get("verdict", "?"))]
        if rt:
            parts.append(f"on {rt}")
        if parity.get("samples"):
            parts.append(f"{parity['samples']} samples")
        if errs:
            parts.append(f"max abs error {max(errs):.3g}")
        return ", ".join(parts)
    return json.dumps(parity)[:300]


def _host_line(host: dict) -> str:
    if not host:
        return "not checked"
    return (f"{host['runtime']} {host['runtime_version']} on {host['machine']} (Python {host['python']}): "
            f"max abs error {host['max_abs_err']:.3g} vs Keras")


# --------------------------------------------------------------------------- verify
def _raise_for_runtime_choice(code: int, message: str, runtime: Optional[str]) -> None:
    """predict.py refused the runtime asked for (``--runtime``): exit 2 when it cannot run the
    bundle's model, exit 3 when it (or, without a choice, any runtime for the model) is missing,
    with predict.py's message (it names the install command). The bundle itself is not at fault."""
    if code == 3:
        raise MissingDependencyError(runtime or "a runtime for the bundle's model", "", message=message)
    if code == 2 and runtime:
        raise UsageError(f"--runtime {runtime}: {message}")


def verify(bundle, *, runtime: Optional[str] = None, python=None, run_model: bool = True) -> VerifyReport:
    """Check a bundle folder (or its .tar.gz): every hash, the model loads, the sample reproduces.

    Never raises for a bad bundle: the report says what failed (``report.ok``, ``report.errors``
    naming each tampered/missing file). The hashes catch changed, corrupted or missing files;
    they are no signature (whoever can rewrite manifest.json can rewrite them too). predict.py
    is only executed when its hash matches. ``runtime`` overrides the bundle's runtime: it is used
    or refused (UsageError, exit 2: it cannot run the bundle's model; MissingDependencyError, exit 3:
    it is not installed, the message gives the install command); ``python`` (a path or a command
    list) runs ``predict.py --self-test`` in that interpreter instead of here.
    """
    path = Path(bundle)
    if not path.exists():
        raise UsageError(f"{path}: no such bundle")
    if path.is_file():
        if not path.name.endswith((".tar.gz", ".tgz", ".tar")):
            raise UsageError(f"{path}: a bundle is a folder or a .tar.gz")
        with tempfile.TemporaryDirectory(prefix="rnnedge-verify-") as tmp:
            with tarfile.open(path) as tf:
                for m in tf.getmembers():
                    if m.name.startswith("/") or ".." in Path(m.name).parts or not (m.isfile() or m.isdir()):
                        raise UsageError(f"{path}: unsafe member {m.name!r} in the archive")
                tf.extractall(tmp)
            roots = [p for p in Path(tmp).iterdir() if p.is_dir()]
            if len(roots) != 1:
                raise UsageError(f"{path}: expected one bundle folder in the archive")
            rep = verify(roots[0], runtime=runtime, python=python, run_model=run_model)
            rep.bundle = str(path)
            return rep
    rep = VerifyReport(bundle=str(path))
    mpath = path / "manifest.json"
    if not mpath.is_file():
        rep.add("manifest", False, "missing", file="manifest.json")
        return rep
    try:
        man = json.loads(mpath.read_text())
    except ValueError as e:
        rep.add("manifest", False, f"not valid JSON ({e})", file="manifest.json")
        return rep
    files = man.get("files")
    if not isinstance(files, dict) or "bundle_format" not in man:
        rep.add("manifest", False, "not a bundle manifest (no files/bundle_format)", file="manifest.json")
        return rep
    rep.add("manifest", True, f"bundle format {man['bundle_format']}, runtime {man.get('runtime')}, "
                              f"model {man.get('model', {}).get('file')}", file="manifest.json")
    for name, meta in files.items():
        f = path / name
        if not f.is_file():
            rep.add("hash", False, "missing from the bundle", file=name)
            continue
        digest = _sha256(f)
        if digest != meta.get("sha256"):
            rep.add("hash", False, f"sha256 mismatch: modified after deploy (manifest {meta.get('sha256', '')[:12]}..., "
                                   f"file {digest[:12]}...)", file=name)
        else:
            rep.add("hash", True, f"sha256 {digest[:12]}...", file=name)
    for p in sorted(path.iterdir()):
        if p.name not in files and p.name != "manifest.json" and p.name != "__pycache__":
            rep.warnings.append(f"{p.name}: not listed in manifest.json")
    needed = {"predict.py", man.get("model", {}).get("file"), (man.get("sample") or {}).get("input"),
              (man.get("sample") or {}).get("output")}
    missing = [n for n in needed if n and n not in files]
    for n in missing:
        rep.add("hash", False, "not listed in manifest.json files", file=n)
    if not run_model:
        return rep
    bad_code = [c["file"] for c in rep.checks if not c["ok"] and c["file"] == "predict.py"]
    if bad_code:
        rep.add("self-test", False, "skipped: predict.py failed its hash check, not running it")
        return rep
    if python:
        cmd = ([python] if isinstance(python, (str, os.PathLike)) else list(python)) + \
              [str(path / "predict.py"), "--self-test", "--json"] + (["--runtime", runtime] if runtime else [])
        proc = subprocess.run(cmd, capture_output=True, text=True)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if not lines:
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1][:400]
            _raise_for_runtime_choice(proc.returncode, last.removeprefix("error: "), runtime)
            rep.add("load", False, last)
            return rep
        res = json.loads(lines[-1])
    else:
        try:
            pmod = _load_predict_module(path)
            res = pmod.self_test(path, runtime=runtime)
        except Exception as e:  # BundleError, runtime errors on a corrupt model
            _raise_for_runtime_choice(getattr(e, "exit_code", 1), str(e), runtime)
            rep.add("load", False, f"{type(e).__name__}: {e}")
            return rep
    rep.sample = res
    rep.add("load", True, f"{man['model']['file']} loads in {res['runtime']} {res['runtime_version']}")
    rep.add("sample", bool(res["ok"]),
            f"max abs error {res['max_abs_err']:.3g} vs {res.get('reference')} (atol {res['tolerance']['atol']:g})",
            file=None)
    if runtime is None and res["runtime"] != man.get("runtime"):
        rep.warnings.append(f"ran on {res['runtime']} (the bundle targets {man.get('runtime')}, not installed here)")
    return rep
