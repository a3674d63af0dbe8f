"""Raspberry Pi bundles (rnnedge.deployment): built here, run in a fresh venv without TensorFlow.

The bundle's predict.py runs in ``<repo>/.venv-edge`` (numpy + ai-edge-litert + onnxruntime
only; created once, reused; override with RNNEDGE_EDGE_PY=/path/to/python). Its outputs must
match the Keras reference; a tampered bundle must fail ``verify`` naming the file; a dynamic-range
quantized model must be refused for tflite-runtime 2.14.
The emulated-Pi run of the same bundles is tests/test_deploy_pi.py (slow).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
W = 8          # forecast window == TFLite fixed sequence length
L = 8          # sentiment max_len
VOCAB = {w: i + 2 for i, w in enumerate(
    "good great bad awful movie plot the was and boring fun".split())}
PREPROCESSING = {
    "forecast": {"kind": "window", "window": W, "horizon": 1, "column": "value",
                 "scaler": {"mean": 10.0, "std": 2.0}},
    "sentiment": {"kind": "text", "vocab": VOCAB, "max_len": L, "padding": "post", "lowercase": True,
                  "token_pattern": r"[a-z0-9']+", "pad_id": 0, "oov_id": 1},
    "three": {},  # raw tensors in, three outputs
}
TASK = {"forecast": "forecast", "sentiment": "binary_classification"}


# --------------------------------------------------------------------------- stand-in exports
def _keras_model(kind: str):
    import keras

    keras.utils.set_random_seed(0)
    if kind == "forecast":  # like the preset: LSTM x2 -> Dense on (T, 1) floats
        inp = keras.Input((None, 1), name="series")
        x = keras.layers.LSTM(6, return_sequences=True)(inp)
        x = keras.layers.LSTM(6)(x)
        return keras.Model(inp, keras.layers.Dense(1)(x), name="forecast_tiny")
    if kind == "sentiment":  # Embedding(mask_zero) -> BiLSTM -> GlobalMaxPool -> sigmoid
        inp = keras.Input((None,), dtype="int32", name="tokens")
        x = keras.layers.Embedding(len(VOCAB) + 2, 4, mask_zero=True)(inp)
        x = keras.layers.Bidirectional(keras.layers.LSTM(4, return_sequences=True))(x)
        x = keras.layers.GlobalMaxPooling1D()(x)
        return keras.Model(inp, keras.layers.Dense(1, activation="sigmoid")(x), name="sentiment_tiny")
    if kind == "wide":  # big Dense kernels so dynamic-range quantization writes FULLY_CONNECTED v12
        inp = keras.Input((None, 1), name="series")
        x = keras.layers.LSTM(4)(inp)
        x = keras.layers.Dense(128, activation="relu")(x)
        x = keras.layers.Dense(64, activation="relu")(x)
        return keras.Model(inp, keras.layers.Dense(1)(x), name="wide_tiny")
    if kind == "three":  # three outputs: the sequence and both LSTM states
        inp = keras.Input((None, 2), name="x")
        seq, h, c = keras.layers.LSTM(3, return_sequences=True, return_state=True)(inp)
        return keras.Model(inp, [seq, h, c], name="three_tiny")
    raise ValueError(kind)


def _export(model, formats, out_dir: Path, **kw):
    """The lead's orchestrator: reference.keras + converters + manifest.json."""
    try:
        from rnnedge.exporting import export
    except ImportError:  # pragma: no cover - the module's final name
        from rnnedge.export import export
    return export(model, list(formats), out_dir, **kw)


def make_export(kind: str, out_dir: Path, formats=("tflite", "onnx"), quantize: bool = False,
                validate: bool = True) -> Path:
    """An export folder of a tiny model through rnnedge's exporters (converters.tflite / .onnx),
    with the preprocessing the training data would record, and parity from rnnedge.validation."""
    from rnnedge.manifest import update_manifest

    out_dir = Path(out_dir)
    model = _keras_model(kind)
    _export(model, formats, out_dir, quantize=["dynamic"] if quantize else [], validate=False)
    update_manifest(out_dir, preprocessing=PREPROCESSING.get(kind, PREPROCESSING["forecast"]),
                    task=TASK.get(kind, "forecast"))
    if validate:
        from rnnedge.validation import validate as _validate

        _validate(out_dir)
    return out_dir


# --------------------------------------------------------------------------- the edge venv
def edge_python() -> Path:
    """A venv with numpy + ai-edge-litert + onnxruntime and no TensorFlow (created once)."""
    env = os.environ.get("RNNEDGE_EDGE_PY")
    if env:
        return Path(env)
    venv = REPO / ".venv-edge"
    py = venv / "bin" / "python"
    ok = venv / ".rnnedge-ready"
    if not ok.exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        "numpy", "ai-edge-litert", "onnxruntime"], check=True)
        ok.write_text("numpy ai-edge-litert onnxruntime\n")
    return py


def run_edge(py: Path, bundle: Path, *args, input_text: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run([str(py), str(bundle / "predict.py"), *args], capture_output=True, text=True,
                          cwd=str(bundle.parent), env=env, input=input_text, timeout=300)


@pytest.fixture(scope="session")
def edge_py():
    return edge_python()


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    root = tmp_path_factory.mktemp("exports")
    return {k: make_export(k, root / k) for k in ("forecast", "sentiment")}


@pytest.fixture(scope="module")
def bundles(exports, tmp_path_factory):
    from rnnedge.deployment import deploy

    root = tmp_path_factory.mktemp("bundles")
    out = {}
    for kind, d in exports.items():
        for rt in ("litert", "onnxruntime"):
            out[kind, rt] = deploy(d, runtime=rt, out=root / f"{kind}-{rt}")
    return out


def _keras_predict(export_dir: Path, x: np.ndarray) -> np.ndarray:
    import keras

    m = keras.saving.load_model(export_dir / "reference.keras", compile=False)
    return np.asarray(m(x, training=False))


# --------------------------------------------------------------------------- tests
def test_edge_venv_has_no_tensorflow(edge_py, tmp_path):
    r = subprocess.run([str(edge_py), "-c", "import importlib.util as u; import numpy, ai_edge_litert, onnxruntime;"
                        "print(u.find_spec('tensorflow') is None, u.find_spec('rnnedge') is None, "
                        "u.find_spec('keras') is None)"], capture_output=True, text=True, cwd=tmp_path,
                       env={k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")})
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["True", "True", "True"]


@pytest.mark.parametrize("kind", ["forecast", "sentiment"])
@pytest.mark.parametrize("rt", ["litert", "onnxruntime"])
def test_bundle_layout_and_manifest(bundles, kind, rt):
    res = bundles[kind, rt]
    b = res.bundle
    model = "model.tflite" if rt == "litert" else "model.onnx"
    expected = {model, "preprocess.json", "manifest.json", "sample_input.npy", "sample_output.npy",
                "requirements.txt", "README.md", "predict.py", "rnnedge-predict@.service"}
    assert {p.name for p in b.iterdir()} == expected
    man = json.loads((b / "manifest.json").read_text())
    assert set(man["files"]) == expected - {"manifest.json"}
    assert man["runtime"] == rt and man["pi_os"] == "bookworm" and man["model"]["file"] == model
    reqs = (b / "requirements.txt").read_text()
    assert ("ai-edge-litert" in reqs) if rt == "litert" else ("onnxruntime" in reqs)
    assert "tensorflow" not in reqs
    src = (b / "predict.py").read_text()
    assert not re.search(r"^\s*(import|from)\s+(tensorflow|rnnedge|keras)\b", src, re.M)
    pre = json.loads((b / "preprocess.json").read_text())
    assert pre == PREPROCESSING[kind]
    # parity measured at export (rnnedge.validation) travels with the bundle
    export_man = json.loads(Path(man["export"]["folder"], "manifest.json").read_text())
    assert man["parity"] and man["parity"] == export_man["artifacts"][model]["parity"]
    # the deploying machine reproduced the sample
    assert man["deploy_check"]["max_abs_err"] <= 1e-5
    # the tarball holds the same folder
    with tarfile.open(res.tarball) as tf:
        names = {Path(n).name for n in tf.getnames() if "/" in n}
    assert names == expected
    unit = (b / "rnnedge-predict@.service").read_text()
    assert "predict.py --stream" in unit and "[Install]" in unit and "User=%i" in unit
    body = [ln for ln in unit.splitlines() if not ln.startswith("#")]  # the comments hold shell words
    assert not any("$" in ln for ln in body), body


@pytest.mark.parametrize("kind", ["forecast", "sentiment"])
@pytest.mark.parametrize("rt", ["litert", "onnxruntime"])
def test_predict_in_fresh_venv_matches_keras(bundles, exports, edge_py, tmp_path, kind, rt):
    b = bundles[kind, rt].bundle
    r = run_edge(edge_py, b, "--self-test", "--json")
    assert r.returncode == 0, r.stderr + r.stdout
    rep = json.loads(r.stdout.strip().splitlines()[-1])
    assert rep["ok"] and rep["runtime"] == rt and rep["max_abs_err"] <= 1e-5

    # raw input -> output file; compare with Keras computed here on a new input
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((1, W, 1)).astype(np.float32) if kind == "forecast"
         else rng.integers(0, len(VOCAB) + 2, size=(1, L)).astype(np.int32))
    np.save(tmp_path / "x.npy", x)
    r = run_edge(edge_py, b, "--input", str(tmp_path / "x.npy"), "--output", str(tmp_path / "y.npy"))
    assert r.returncode == 0, r.stderr
    y = np.load(tmp_path / "y.npy")
    ref = _keras_predict(exports[kind], x)
    assert y.shape == ref.shape
    assert np.max(np.abs(y - ref)) <= 1e-5


def test_text_and_stream_preprocessing_match_training_tokenizer(bundles, exports, edge_py):
    from rnnedge.data import encode_texts

    b = bundles["sentiment", "litert"].bundle
    texts = ["The movie was GREAT, fun!", "boring plot... and an unknownword", "good " * 12]
    x = encode_texts(texts, VOCAB, L, "post", True)  # the exporter's tokenizer
    ref = _keras_predict(exports["sentiment"], x)
    r = run_edge(edge_py, b, "--text", texts[0])
    assert r.returncode == 0, r.stderr
    got0 = json.loads(r.stdout)
    r = run_edge(edge_py, b, "--stream", input_text="\n".join(texts) + "\n")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(ln) for ln in r.stdout.splitlines()]
    assert [row["text"] for row in rows] == [t.strip() for t in texts]
    got = np.array([row["output"] for row in rows], np.float32)
    assert np.max(np.abs(got - ref)) <= 1e-5
    assert abs(got0["output"][0] - ref[0, 0]) <= 1e-5
    assert got0["label"] == int(ref[0, 0] >= 0.5)


def test_csv_and_stream_window_match_keras(bundles, exports, edge_py, tmp_path):
    b = bundles["forecast", "onnxruntime"].bundle
    sc = PREPROCESSING["forecast"]["scaler"]
    series = (10 + 2 * np.sin(np.arange(12) / 2.0)).astype(np.float32)
    (tmp_path / "s.csv").write_text("time,value\n" + "".join(f"{i},{v}\n" for i, v in enumerate(series)))
    windows = np.stack([(series[i:i + W] - sc["mean"]) / sc["std"] for i in range(len(series) - W + 1)])[..., None]
    ref = _keras_predict(exports["forecast"], windows.astype(np.float32))
    r = run_edge(edge_py, b, "--csv", str(tmp_path / "s.csv"))
    assert r.returncode == 0, r.stderr
    last = json.loads(r.stdout)
    assert abs(last["output"][0] - ref[-1, 0]) <= 1e-5
    assert abs(last["value"][0] - (ref[-1, 0] * sc["std"] + sc["mean"])) <= 1e-4
    r = run_edge(edge_py, b, "--stream", input_text="\n".join(str(v) for v in series) + "\n")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(ln) for ln in r.stdout.splitlines()]
    assert len(rows) == len(series) - W + 1  # one per line once W values arrived
    got = np.array([row["output"][0] for row in rows])
    assert np.max(np.abs(got - ref[:, 0])) <= 1e-5


def test_verify_passes_and_names_a_tampered_file(bundles, tmp_path):
    import shutil

    from click.testing import CliRunner

    from rnnedge.cli.verify import command
    from rnnedge.deployment import verify

    res = bundles["forecast", "litert"]
    rep = verify(res.bundle)
    assert rep.ok, rep.errors
    assert rep.sample["max_abs_err"] <= 1e-5
    assert verify(res.tarball).ok
    r = CliRunner().invoke(command, [str(res.bundle), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["ok"] is True

    for victim in ("model.tflite", "preprocess.json", "predict.py"):
        b = tmp_path / f"t-{victim}"
        shutil.copytree(res.bundle, b)
        with open(b / victim, "ab") as f:
            f.write(b"\n ")
        rep = verify(b)
        assert not rep.ok
        assert any(e.startswith(f"{victim}:") and "sha256" in e for e in rep.errors), rep.errors
        r = CliRunner().invoke(command, [str(b)])
        assert r.exit_code == 1
        assert victim in r.output
    # a missing file is named too
    b = tmp_path / "missing"
    shutil.copytree(res.bundle, b)
    (b / "sample_output.npy").unlink()
    rep = verify(b)
    assert not rep.ok and any(e.startswith("sample_output.npy:") for e in rep.errors)


def test_wrong_sample_output_fails_the_self_test(bundles, tmp_path, edge_py):
    """Change the recorded output *and* its hash: hashes pass, the sample check must fail."""
    import hashlib
    import shutil

    from rnnedge.deployment import verify

    b = tmp_path / "b"
    shutil.copytree(bundles["sentiment", "onnxruntime"].bundle, b)
    y = np.load(b / "sample_output.npy")
    np.save(b / "sample_output.npy", y + 1e-3)
    man = json.loads((b / "manifest.json").read_text())
    man["files"]["sample_output.npy"]["sha256"] = hashlib.sha256((b / "sample_output.npy").read_bytes()).hexdigest()
    (b / "manifest.json").write_text(json.dumps(man))
    rep = verify(b)
    assert not rep.ok
    assert all(c["ok"] for c in rep.checks if c["check"] == "hash")
    assert rep.sample["max_abs_err"] == pytest.approx(1e-3, rel=1e-2)
    r = run_edge(edge_py, b, "--self-test")
    assert r.returncode == 1 and "FAILED" in r.stdout


@pytest.mark.filterwarnings("ignore:model.dynamic.tflite cannot be loaded by tflite-runtime")
def test_tflite_runtime_refuses_dynamic_range_model(tmp_path):
    from rnnedge.deployment import deploy
    from rnnedge.errors import ConversionError
    from rnnedge.tflite_compat import list_ops

    d = make_export("wide", tmp_path / "wide", formats=("tflite",), quantize=True, validate=False)
    fc = [o for o in list_ops(d / "model.dynamic.tflite") if o["name"] == "FULLY_CONNECTED"]
    assert [o["version"] for o in fc] == [12]  # what TF 2.21's dynamic-range quantization writes
    with pytest.raises(ConversionError) as e:
        deploy(d, runtime="tflite-runtime", model="model.dynamic.tflite", out=tmp_path / "b214")
    msg = str(e.value)
    assert re.search(r"FULLY_CONNECTED\b.*\bv12\b", msg), msg
    assert "tflite-runtime 2.14" in msg and "--runtime litert" in msg
    assert not (tmp_path / "b214").exists() and not (tmp_path / "b214.tar.gz").exists()
    # the same model with LiteRT: deployed, quantized tolerance recorded from the measured error
    res = deploy(d, runtime="litert", model="model.dynamic.tflite", out=tmp_path / "blitert", tarball=False)
    assert res.manifest["model"]["quantized"] is True
    assert res.manifest["sample"]["tolerance"]["atol"] >= res.host_check["max_abs_err"]
    from rnnedge.deployment import verify

    assert verify(res.bundle).ok
    # the float32 model of the same export is fine for tflite-runtime
    res = deploy(d, runtime="tflite-runtime", out=tmp_path / "bfloat", tarball=False)
    assert res.manifest["model"]["file"] == "model.tflite"


def test_tflite_runtime_bundle_for_float_model_and_os_rules(exports, tmp_path):
    from rnnedge.deployment import deploy, requirements_for
    from rnnedge.errors import UsageError

    res = deploy(exports["forecast"], runtime="tflite-runtime", out=tmp_path / "b", tarball=False)
    assert (res.bundle / "requirements.txt").read_text().splitlines()[1:] == ["tflite-runtime==2.14.0", "numpy<2"]
    assert res.manifest["python"] == "3.11"
    with pytest.raises(UsageError, match="trixie"):
        deploy(exports["forecast"], runtime="tflite-runtime", pi_os="trixie", out=tmp_path / "c")
    assert requirements_for("litert", "trixie")[0].startswith("ai-edge-litert")
    with pytest.raises(UsageError, match="unknown runtime"):
        deploy(exports["forecast"], runtime="tensorrt", out=tmp_path / "d")


def test_systemd_unit_is_valid(bundles, tmp_path):
    import shutil

    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze not installed")
    unit = tmp_path / "rnnedge-predict@pi.service"  # an instance of the template unit
    shutil.copy(bundles["forecast", "litert"].bundle / "rnnedge-predict@.service", unit)
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    assert r.returncode == 0 and "Unknown" not in r.stderr, r.stderr


def test_cli_deploy(exports, tmp_path):
    from click.testing import CliRunner

    from rnnedge.cli.deploy import command

    out = tmp_path / "cli-bundle"
    r = CliRunner().invoke(command, [str(exports["sentiment"]), "--runtime", "onnxruntime", "--out", str(out),
                                     "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.output)
    assert info["bundle"] == str(out) and Path(info["tarball"]).is_file()
    assert (out / "model.onnx").is_file()


# --------------------------------------------------------------------------- the runtime asked for, files, bad input
def predict_here(bundle: Path, *args, env=None) -> subprocess.CompletedProcess:
    """predict.py in this interpreter (numpy, ai-edge-litert, onnxruntime), as a user runs it."""
    return subprocess.run([sys.executable, str(bundle / "predict.py"), *map(str, args)], capture_output=True,
                          text=True, cwd=str(bundle.parent), env=env or dict(os.environ), timeout=300)


def hiding(tmp_path: Path, *modules: str) -> str:
    """A folder of modules that fail to import like a missing package (for PYTHONPATH)."""
    d = tmp_path / "hide"
    d.mkdir(exist_ok=True)
    for m in modules:
        (d / f"{m}.py").write_text(f"raise ModuleNotFoundError(\"No module named '{m}'\", name={m!r})\n")
    return str(d)


@pytest.fixture(scope="module")
def three_out(tmp_path_factory):
    """(export folder, bundle) of a model with three outputs, ONNX on onnxruntime."""
    from rnnedge.deployment import deploy

    root = tmp_path_factory.mktemp("three")
    d = make_export("three", root / "export", formats=("onnx",), validate=False)
    return d, deploy(d, runtime="onnxruntime", out=root / "bundle", tarball=False).bundle


def test_an_explicit_runtime_is_used_or_refused(bundles, tmp_path, monkeypatch):
    """predict.py --runtime and `rnnedge verify --runtime`: the runtime asked for runs the sample, or
    the command exits 3 (not installed: the command that installs it) or 2 (it cannot run the
    bundle's model); never another runtime in its place."""
    from click.testing import CliRunner

    from rnnedge.cli import cli

    tfl, onx = bundles["forecast", "litert"].bundle, bundles["forecast", "onnxruntime"].bundle
    for b, rt in ((tfl, "litert"), (onx, "onnxruntime")):  # used
        p = predict_here(b, "--self-test", "--json", "--runtime", rt)
        assert p.returncode == 0 and json.loads(p.stdout)["runtime"] == rt, p.stderr
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([hiding(tmp_path, "tflite_runtime"),
                                                       os.environ.get("PYTHONPATH", "")]))
    pinned = json.loads((tfl / "manifest.json").read_text())["install"]["tflite-runtime"]
    assert pinned == "pip install 'tflite-runtime==2.14.0' 'numpy<2'"  # pyproject's pins, as every message says
    install = f"install it with `{pinned}`"  # the bundle's pinned command
    p = predict_here(tfl, "--self-test", "--runtime", "tflite-runtime", env=env)
    assert p.returncode == 3 and install in p.stderr and p.stdout == "", p.stderr  # not litert in its place
    for b, rt, ext, fits in ((tfl, "onnxruntime", ".tflite", "litert or tflite-runtime"),
                             (onx, "litert", ".onnx", "onnxruntime")):
        msg = f"this bundle ships a {ext} model; {rt} cannot run it (use {fits})"
        p = predict_here(b, "--input", b / "sample_input.npy", "--runtime", rt)
        assert p.returncode == 2 and p.stderr == f"error: {msg}\n", p.stderr
        r = CliRunner().invoke(cli, ["verify", str(b), "--runtime", rt])
        assert r.exit_code == 2 and msg in r.stderr and "FAIL" not in r.output, r.output
    monkeypatch.setitem(sys.modules, "tflite_runtime", None)  # in-process: import fails
    r = CliRunner().invoke(cli, ["verify", str(tfl), "--runtime", "tflite-runtime"])
    assert r.exit_code == 3 and install in r.stderr and "OK" not in r.stdout, r.output
    monkeypatch.setenv("PYTHONPATH", env["PYTHONPATH"])  # --python: predict.py in a subprocess
    r = CliRunner().invoke(cli, ["verify", str(tfl), "--runtime", "tflite-runtime", "--python", sys.executable])
    assert r.exit_code == 3 and install in r.stderr, r.output
    py214 = REPO / ".venv-tflite214" / "bin" / "python"
    if py214.exists():  # where tflite-runtime is installed, it is what runs
        monkeypatch.delenv("PYTHONPATH")
        r = CliRunner().invoke(cli, ["verify", str(tfl), "--runtime", "tflite-runtime", "--python", str(py214),
                                     "--json"])
        assert r.exit_code == 0 and json.loads(r.stdout)["sample"]["runtime"] == "tflite-runtime", r.output


def test_predict_writes_the_output_file_it_names(bundles, three_out, tmp_path):
    """--output: .npy holds one output, .npz/.json any number (by name), another type exits 2 before
    anything runs; the summary names the file written. --json names several outputs."""
    import keras

    b = bundles["forecast", "litert"].bundle
    x = np.random.default_rng(2).standard_normal((3, W, 1)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    p = predict_here(b, "--input", tmp_path / "x.npy", "--output", tmp_path / "out.txt")
    assert p.returncode == 2 and "--output" in p.stderr and "unknown output file type '.txt'" in p.stderr
    assert sorted(f.name for f in tmp_path.iterdir()) == ["x.npy"]  # no out.txt, no out.txt.npy
    p = predict_here(b, "--input", tmp_path / "x.npy", "--output", tmp_path / "out.json")
    assert p.returncode == 0 and f"written to {tmp_path / 'out.json'};" in p.stdout, p.stderr
    (name, got), = json.loads((tmp_path / "out.json").read_text()).items()
    assert [name] == [o["name"] for o in json.loads((b / "manifest.json").read_text())["model"]["outputs"]]
    assert np.max(np.abs(np.asarray(got) - _keras_predict(_export_of(b), x))) <= 1e-5

    d, b3 = three_out
    x3 = np.random.default_rng(3).standard_normal((2, 5, 2)).astype(np.float32)
    np.save(tmp_path / "x3.npy", x3)
    ref = keras.saving.load_model(d / "reference.keras", compile=False)(x3)
    names = [o["name"] for o in json.loads((b3 / "manifest.json").read_text())["model"]["outputs"]]
    assert len(set(names)) == 3
    p = predict_here(b3, "--input", tmp_path / "x3.npy", "--output", tmp_path / "y.npy")
    assert p.returncode == 2 and f"the model has 3 outputs {names}; a .npy file holds one: use .npz or .json" \
        in p.stderr, p.stderr
    assert not (tmp_path / "y.npy").exists() and not (tmp_path / "y.npy.npz").exists()
    p = predict_here(b3, "--input", tmp_path / "x3.npy", "--output", tmp_path / "y.npz")
    assert p.returncode == 0 and f"written to {tmp_path / 'y.npz'};" in p.stdout, p.stderr
    with np.load(tmp_path / "y.npz") as z:
        assert z.files == names
        for n, r in zip(names, ref):
            assert np.max(np.abs(z[n] - np.asarray(r))) <= 1e-5
    p = predict_here(b3, "--input", tmp_path / "x3.npy", "--json")
    out = json.loads(p.stdout)["output"]
    assert p.returncode == 0 and list(out) == names, p.stdout[:300]
    for n, r in zip(names, ref):
        assert np.max(np.abs(np.asarray(out[n]) - np.asarray(r).reshape(2, -1))) <= 1e-5


def _export_of(bundle: Path) -> Path:
    return Path(json.loads((bundle / "manifest.json").read_text())["export"]["folder"])


def test_predict_bad_inputs_exit_2_with_true_messages(bundles, tmp_path):
    b = bundles["forecast", "litert"].bundle
    (tmp_path / "garbage.npy").write_text("hello, this is a text file\n")
    np.save(tmp_path / "flat.npy", np.zeros((16, 20), np.float32))
    np.savez(tmp_path / "wrong_name.npz", foo=np.zeros((1, W, 1), np.float32))
    cases = {
        "garbage.npy": "garbage.npy: a text file (it starts 'hello, this is a text file'), not a numpy .npy/.npz file",
        "flat.npy": "input 'series' must have shape [rows, None, 1] (or [None, 1] for one row), got [16, 20]: "
                    "axis 1 has 20, the model takes 1",
        "wrong_name.npz": "wrong_name.npz: names do not match the model's: missing ['series']; unknown ['foo'] "
                          "(the model takes ['series'])",
    }
    for f, msg in cases.items():
        p = predict_here(b, "--input", tmp_path / f)
        assert p.returncode == 2 and p.stderr.startswith(f"error: {msg}"), (f, p.stderr)
        assert len(p.stderr.splitlines()) == 1 and "pickled" not in p.stderr and "[1, 16, 20]" not in p.stderr
    p = predict_here(b, "--input", b / "sample_input.npy", "--threads", "0")
    assert p.returncode == 2 and "argument --threads: 0 is not >= 1" in p.stderr
    x = np.random.default_rng(4).standard_normal((2, W, 1)).astype(np.float32)
    x[1, 3, 0] = np.nan
    np.save(tmp_path / "nan.npy", x)
    p = predict_here(b, "--input", tmp_path / "nan.npy", "--json")
    assert p.returncode == 0 and p.stderr == ("warning: input 'series' holds 1 NaN/infinite value(s) of 16: runtimes "
                                              "give different predictions for them (a model has no defined result)\n")
    assert predict_here(b, "--input", b / "sample_input.npy").stderr == ""  # the twin: no warning


def test_predict_and_rnnedge_say_the_same_about_a_file(tmp_path):
    """predict.py cannot import rnnedge: its copy of load_numpy's messages must say the same."""
    import importlib.util

    from rnnedge.deployment import TEMPLATES
    from rnnedge.errors import UsageError
    from rnnedge.runtime.io import load_numpy

    spec = importlib.util.spec_from_file_location("tmpl_predict_io", TEMPLATES / "predict.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    files = {"text.npy": "3,4,5\n6,7,8\n".encode(), "empty.npy": b"", "pickle.npy": b"\x80\x04\x95 pickled",
             "binary.npz": bytes(range(200, 256)) * 2}
    np.save(tmp_path / "objects.npy", np.array([[1], [2, 3]], dtype=object), allow_pickle=True)
    np.save(tmp_path / "ok.npy", np.zeros((2, 3), np.float32))
    files["cut.npy"] = (tmp_path / "ok.npy").read_bytes()[:100]
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    for name in [*files, "objects.npy"]:
        with pytest.raises(UsageError) as ours:
            load_numpy(tmp_path / name)
        with pytest.raises(mod.InputError) as theirs:
            mod.load_array(tmp_path / name, [{"name": "x"}])
        assert str(ours.value) == str(theirs.value), name
    assert load_numpy(tmp_path / "ok.npy").shape == (2, 3)
    from rnnedge.deployment import RUNTIME_FILES

    assert mod.RUNTIMES == RUNTIME_FILES  # which runtime runs which model file: the same table
