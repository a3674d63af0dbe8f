"""A newcomer's first hour, third pass (issue 19's follow-up list): every item has a test here,
run as a user runs it where it matters (the ``rnnedge`` command and a bundle's ``predict.py`` in
subprocesses, output captured, exit codes checked).

 1. a TFLite export made with ``--batch-size 16`` deploys, and its bundle runs any number of rows;
 2. TensorFlow missing: validate/export/inspect/quantize exit 3 with the install command;
 3. ``--interpreter tf`` without TensorFlow names TensorFlow and its install command;
 4. a Python warning is one ``warning:`` line;
 5. export/quantize/validate/bench/inspect tables read at 80 columns (no cell broken mid-word);
 6. deploy refuses an artifact whose parity check failed (``--force`` ships it, loudly, recorded);
 7. artifact warnings are shown once, the artifact named once;
 8. the fp16 "not smaller" warning gives the fp16 conversion's reason;
 9. a skipped bench case reports its real sequence length;
10. Keras's mask warning is known noise, and only it;
11. ``predict.py --text ""`` exits 2 with one line;
12. every install command and a bundle's requirements.txt use pyproject.toml's versions;
13. the systemd unit runs as the installing user (a template unit), or ``deploy --user``;
14. ``rnnedge run`` on a TF.js model times the predict call inside Node, start-up apart.
"""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("keras")

REPO = Path(__file__).resolve().parents[1]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RNNEDGE_VERBOSE", "RNNEDGE_DEBUG")}
    env.update({"COLUMNS": "80", "CUDA_VISIBLE_DEVICES": "-1", **extra})
    return env


def rnnedge(*args, cwd, env=None, timeout=600) -> subprocess.CompletedProcess:
    script = shutil.which("rnnedge", path=os.path.dirname(sys.executable))
    cmd = [script] if script else [sys.executable, "-c", "from rnnedge.cli import main; main()"]
    return subprocess.run(cmd + [str(a) for a in args], cwd=cwd, env=env or _env(), capture_output=True,
                          text=True, timeout=timeout)


def predict(bundle: Path, *args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(bundle / "predict.py"), *map(str, args)], cwd=cwd, env=_env(),
                          capture_output=True, text=True, timeout=300)


def hide(tmp_path: Path, *modules: str) -> dict:
    """An environment where ``modules`` fail to import as a missing package does."""
    d = tmp_path / "hide"
    d.mkdir(exist_ok=True)
    for m in modules:
        (d / f"{m}.py").write_text(f"raise ModuleNotFoundError(\"No module named '{m}'\", name={m!r})\n")
    return _env(PYTHONPATH=os.pathsep.join([str(d), os.environ.get("PYTHONPATH", "")]))


def _tiny(path: Path, units: int = 5, features: int = 3, outputs: int = 2) -> Path:
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((None, features), name="series")
    x = keras.layers.LSTM(units)(inp)
    keras.Model(inp, keras.layers.Dense(outputs)(x), name="tiny").save(path)
    return path


@pytest.fixture(scope="module")
def cli_export(tmp_path_factory):
    """`rnnedge export` (ONNX + TFLite) then `rnnedge quantize` (int8, fp16) of a tiny LSTM, both at
    80 columns: (root, export's process, quantize's process)."""
    root = tmp_path_factory.mktemp("cli80")
    _tiny(root / "tiny.keras")
    ex = rnnedge("export", "tiny.keras", "-f", "onnx,tflite", "-o", "ex", cwd=root)
    q = rnnedge("quantize", "ex", "--mode", "int8,fp16", cwd=root)
    return root, ex, q


# --------------------------------------------------------------------------- 1. batch 16
@pytest.fixture(scope="module")
def batch16(tmp_path_factory):
    """A TFLite export with batch size 16 (validated) and its LiteRT bundle."""
    from rnnedge.deployment import deploy
    from rnnedge.exporting import export

    root = tmp_path_factory.mktemp("b16")
    export(str(_tiny(root / "tiny.keras", units=4, features=2, outputs=1)), ["tflite"], root / "ex", batch_size=16,
           seq_len=6)
    return root, deploy(root / "ex", runtime="litert", out=root / "bundle", tarball=False)


def test_1_a_batch_16_tflite_export_deploys_and_runs_any_number_of_rows(batch16):
    import keras

    root, res = batch16
    man = json.loads((root / "ex" / "manifest.json").read_text())
    assert man["artifacts"]["model.tflite"]["inputs"][0]["shape"][0] == 16
    assert man["artifacts"]["model.tflite"]["parity"]["verdict"] == "pass"
    assert res.host_check["max_abs_err"] <= 1e-5  # deploy's own check: 1 sample row padded to 16
    ref = keras.saving.load_model(root / "ex" / "reference.keras", compile=False)
    x = np.random.default_rng(1).standard_normal((21, 6, 2)).astype(np.float32)
    np.save(root / "x21.npy", x)
    p = predict(res.bundle, "--input", "x21.npy", "--output", "y.npy", cwd=root)
    assert p.returncode == 0, p.stderr
    assert "in 2 calls of 16 rows" in p.stdout and "padded with 11 repeated rows" in p.stdout, p.stdout
    y = np.load(root / "y.npy")
    assert y.shape == (21, 1) and np.max(np.abs(y - np.asarray(ref(x)))) <= 1e-5
    p = predict(res.bundle, "--input", "x21.npy", "--json", cwd=root)
    doc = json.loads(p.stdout)
    assert doc["batch_size"] == 16 and doc["calls"] == 2 and doc["rows"] == 21
    assert predict(res.bundle, "--self-test", cwd=root).returncode == 0


# --------------------------------------------------------------------------- 2./3. TensorFlow missing
def test_2_missing_tensorflow_exits_3_with_the_install_command(cli_export, tmp_path):
    from rnnedge.errors import install_command

    root, ex, _ = cli_export
    assert ex.returncode == 0, ex.stderr
    env = hide(tmp_path, "tensorflow")
    want = f"`{install_command('tensorflow')}`"
    for args in (("validate", root / "ex"), ("export", root / "tiny.keras", "-f", "onnx", "-o", tmp_path / "o"),
                 ("inspect", root / "tiny.keras"), ("quantize", root / "ex", "--mode", "dynamic", "-f", "tflite")):
        p = rnnedge(*args, cwd=tmp_path, env=env)
        assert p.returncode == 3, (args, p.returncode, p.stdout[-1500:], p.stderr)
        assert want in p.stderr and "Traceback" not in p.stderr, (args, p.stderr)
    assert install_command("tensorflow").startswith("pip install 'tensorflow-cpu==")


def test_3_interpreter_tf_without_tensorflow_names_tensorflow(monkeypatch):
    from rnnedge.errors import MissingDependencyError, install_command
    from rnnedge.runtime.tflite import _import_interpreter

    monkeypatch.setitem(sys.modules, "tensorflow", None)  # `import tensorflow` raises ImportError
    with pytest.raises(MissingDependencyError) as e:
        _import_interpreter("tf")
    assert "--interpreter tf" in str(e.value) and "TensorFlow" in str(e.value)
    assert e.value.install == install_command("tensorflow") and e.value.exit_code == 3
    with pytest.raises(MissingDependencyError) as e:  # the twin: auto names the LiteRT package
        monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
        monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
        monkeypatch.setitem(sys.modules, "tflite_runtime", None)
        monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", None)
        _import_interpreter("auto")
    assert e.value.install == install_command("ai_edge_litert")


# --------------------------------------------------------------------------- 4./7./10. warnings
def test_4_a_python_warning_is_one_line(capsys):
    from rnnedge.cli import _one_line_warning, one_line

    buf = io.StringIO()
    _one_line_warning("tf.lite.Interpreter is deprecated\n    and will be removed;\n  use ai_edge_litert",
                      DeprecationWarning, "x.py", 3, file=buf)
    assert buf.getvalue() == "warning: tf.lite.Interpreter is deprecated and will be removed; use ai_edge_litert\n"
    assert one_line("Warning: twice said\n") == "twice said"
    _one_line_warning("a\nb", UserWarning, "x.py", 3)  # no file: rnnedge.cli.warn, on stderr
    assert capsys.readouterr().err == "warning: a b\n"


def test_7_artifact_warnings_once_with_the_name_once(capsys, monkeypatch):
    import warnings

    from rnnedge.cli import _one_line_warning, show_warnings

    monkeypatch.setattr(warnings, "showwarning", _one_line_warning)  # as the CLI sets it
    from rnnedge.manifest import artifact_warnings

    arts = {"model.int8.tflite": {"warning": "model.int8.tflite: sequence length fixed to 32",
                                  "quantization": {"warning": "model.int8.tflite is 1.26x the size"}},
            "model.onnx": {"warning": "a free batch"}, "model.tflite": {}}
    said = artifact_warnings(arts)
    assert said == [("model.int8.tflite", "model.int8.tflite: sequence length fixed to 32"),
                    ("model.int8.tflite", "model.int8.tflite is 1.26x the size"), ("model.onnx", "a free batch")]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.warn("model.int8.tflite: sequence length fixed to 32", UserWarning)  # the same, as a warning
        warnings.warn("something else", UserWarning)
    show_warnings(said, caught)
    err = capsys.readouterr().err.splitlines()
    assert err == ["warning: something else", "warning: model.int8.tflite: sequence length fixed to 32",
                   "warning: model.int8.tflite is 1.26x the size", "warning: model.onnx: a free batch"]


def test_7_8_quantize_warnings_name_the_artifact_once_and_fp16_gives_its_reason(cli_export):
    _, _, q = cli_export
    assert q.returncode == 0, q.stderr
    lines = [ln for ln in q.stderr.splitlines() if ln.startswith("warning:")]
    assert lines and all(len(ln.split()) > 3 for ln in lines), q.stderr
    assert not [ln for ln in lines if re.match(r"warning: (\S+?):? \1", ln)], lines  # never "x: x is ..."
    assert len(lines) == len(set(lines))
    fp16 = [ln for ln in lines if ln.startswith("warning: model.fp16.tflite is") and "not smaller" in ln]
    assert len(fp16) == 1 and "the fp16 conversion adds DEQUANTIZE ops" in fp16[0], lines
    assert "quantization adds" not in fp16[0]
    int8 = [ln for ln in lines if ln.startswith("warning: model.int8.onnx is") and "not smaller" in ln]
    assert len(int8) == 1 and "quantization adds" in int8[0], lines


def test_8_fp16_reason_names_what_the_conversion_adds():
    from rnnedge.quantization import ADDED_BY

    assert "Cast" in ADDED_BY["onnx", "fp16"] and "DEQUANTIZE" in ADDED_BY["tflite", "fp16"]


KERAS_MASK = ("Layer 'global_max_pooling1d' (of type GlobalMaxPooling1D) was passed an input with a mask attached "
              "to it. However, this layer does not support masking and will therefore destroy the mask "
              "information. Downstream layers will not see the mask.")


def test_10_keras_mask_warning_is_noise_and_only_it(capsys, monkeypatch):
    from rnnedge.cli import _one_line_warning, warn
    from rnnedge.quiet import is_noise

    monkeypatch.delenv("RNNEDGE_VERBOSE", raising=False)
    assert is_noise(KERAS_MASK)
    assert is_noise(f"/x/keras/src/layers/layer.py:965: UserWarning: {KERAS_MASK}")  # a child's stderr
    assert not is_noise("Layer 'dense' (of type Dense) was passed an input with the wrong shape")
    warn(KERAS_MASK)
    buf = io.StringIO()
    _one_line_warning(KERAS_MASK, UserWarning, "layer.py", 965, file=buf)
    assert capsys.readouterr().err == "" and buf.getvalue() == ""
    warn("Layer 'dense' (of type Dense) was passed an input with the wrong shape")  # the twin: shown
    assert capsys.readouterr().err.startswith("warning: Layer 'dense'")


def test_10_a_masked_sentiment_like_model_exports_without_the_mask_warning(tmp_path):
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((None,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(12, 3, mask_zero=True)(inp)
    x = keras.layers.LSTM(3, return_sequences=True)(x)
    x = keras.layers.GlobalMaxPooling1D()(x)
    keras.Model(inp, keras.layers.Dense(1, activation="sigmoid")(x)).save(tmp_path / "s.keras")
    p = rnnedge("export", "s.keras", "-f", "onnx", "-o", "ex", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "does not support masking" not in p.stderr + p.stdout
    v = rnnedge("--verbose", "inspect", "s.keras", cwd=tmp_path)  # the twin: --verbose shows what was hidden
    assert v.returncode == 0 and "does not support masking" in v.stderr, v.stderr[-2000:]


# --------------------------------------------------------------------------- 5. 80 columns
def _table_lines(out: str) -> list[str]:
    return [ln for ln in ANSI.sub("", out).splitlines() if ln[:1] in "┃│┏┡└"]


def _check_80(out: str, whole: list[str]):
    text = ANSI.sub("", out)
    table = _table_lines(out)
    assert table, out
    assert all(len(ln) <= 80 for ln in table), "\n".join(ln for ln in table if len(ln) > 80)
    assert "…" not in text, text
    cells = [c.strip() for ln in table for c in re.split(r"[┃│]", ln)]
    for w in whole:  # each artifact name (a word without spaces) in one cell, whole
        assert w in cells, (w, "\n".join(table))


def test_5_tables_read_at_80_columns(cli_export, tmp_path):
    root, ex, q = cli_export
    assert ex.returncode == 0 and q.returncode == 0, ex.stderr + q.stderr
    _check_80(ex.stdout, ["model.onnx", "model.tflite", "self-check", "pass", "2.38e-07"
                          if "2.38e-07" in ex.stdout else "pass"])
    names = ["model.int8.onnx", "model.fp16.onnx", "model.int8.tflite", "model.fp16.tflite"]
    _check_80(q.stdout, names)
    notes = [ln for ln in q.stdout.splitlines() if ln.startswith("model.fp16.onnx: ")]
    assert len(notes) == 1 and "LSTM op(s)" in notes[0]  # the notes below the table, one line each
    v = rnnedge("validate", root / "ex", cwd=tmp_path)
    assert v.returncode == 0, v.stdout + v.stderr
    _check_80(v.stdout, ["model.onnx", "model.tflite", *names])
    assert re.search(r"^\(not shown at 80 columns: .*\)$", v.stdout, re.M)  # folded columns are named
    b = rnnedge("bench", root / "ex" / "model.onnx", root / "ex" / "model.tflite", "--runs", "3", "--warmup", "1",
                cwd=tmp_path)
    assert b.returncode == 0, b.stderr
    _check_80(b.stdout, ["model.onnx", "model.tflite", "ref"])
    i = rnnedge("inspect", root / "ex", cwd=tmp_path)
    assert i.returncode == 0, i.stderr
    _check_80(i.stdout, ["LSTM", "Dense", "native"])
    wide = rnnedge("validate", root / "ex", cwd=tmp_path, env=_env(COLUMNS="200"))  # the twin: all columns
    assert "not shown" not in wide.stdout and "cosine" in wide.stdout


def test_5_print_table_never_breaks_a_word():
    from rich.console import Console

    from rnnedge.cli import Col, print_table

    rng = np.random.default_rng(0)
    words = ["model.int8-static.onnx", "required_operators.config", "onnxruntime", "CPUExecutionProvider",
             "1.23e-05", "pass", "not", "checked", "top-1>=0.98", "(None,", "5)"]
    for trial in range(20):
        n = int(rng.integers(3, 9))
        cols = [Col(f"col {k}", wrap=bool(k % 2), right=bool(k % 3 == 0), drop=k if k > 1 else None)
                for k in range(n)]
        rows = [[" ".join(rng.choice(words, int(rng.integers(1, 3)))) if c.wrap else str(rng.choice(words))
                 for c in cols] for _ in range(4)]
        con = Console(width=80, file=io.StringIO(), soft_wrap=True, color_system=None)
        left = print_table(con, "t", cols, rows)
        out = con.file.getvalue()
        lines = _table_lines(out)
        if sum(len(c.name) for c in cols if c.drop is None) + 40 < 80:
            assert all(len(ln) <= 80 for ln in lines), out
        shown = [k for k, c in enumerate(cols) if c.name not in left]
        body = "\n".join(lines)
        for r in rows:
            for k in shown:
                for w in r[k].split():
                    assert re.search(rf"[\s┃│]{re.escape(w)}[\s┃│]", body), (w, out)
        assert ("not shown at 80 columns" in out) == bool(left)


# --------------------------------------------------------------------------- 6. a failed parity verdict
def test_6_deploy_refuses_an_artifact_that_failed_parity_unless_forced(cli_export, tmp_path):
    from rnnedge.deployment import deploy
    from rnnedge.errors import ParityError

    root, ex, _ = cli_export
    assert ex.returncode == 0
    bad = tmp_path / "ex"
    shutil.copytree(root / "ex", bad)
    man = json.loads((bad / "manifest.json").read_text())
    par = man["artifacts"]["model.onnx"]["parity"]
    assert par["verdict"] == "pass"
    par["verdict"] = "fail"
    for o in par["outputs"].values():
        o["max_abs"], o["verdict"] = 0.25, "fail"
    (bad / "manifest.json").write_text(json.dumps(man))
    p = rnnedge("deploy", "ex", "--runtime", "onnxruntime", "-o", "b", cwd=tmp_path)
    assert p.returncode == 1, p.stdout + p.stderr
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert re.search(r"model\.onnx failed its parity check .*max abs error 0\.25 vs tolerance atol 1e-05", p.stderr)
    assert "--force" in p.stderr and not (tmp_path / "b").exists() and not (tmp_path / "b.tar.gz").exists()
    with pytest.warns(UserWarning, match=r"model\.onnx failed its parity check.*deploying it anyway"):
        res = deploy(bad, runtime="onnxruntime", out=tmp_path / "forced", tarball=False, force=True)
    rec = json.loads((res.bundle / "manifest.json").read_text())["forced"]["parity"]
    assert rec["verdict"] == "fail" and rec["max_abs"] == 0.25
    # the twin: the same export with its true (passing) verdict deploys without a word
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ok = deploy(root / "ex", runtime="onnxruntime", out=tmp_path / "ok", tarball=False)
    assert "forced" not in ok.manifest


# --------------------------------------------------------------------------- 9. bench skip length
def test_9_a_skipped_bench_case_reports_its_real_length():
    from rnnedge.benchmarking import plan_shapes
    from rnnedge.runtime.base import TensorInfo

    class Fixed:  # a runner's inputs as a TFLite file with batch and length fixed: [1, 8, 2]
        inputs = [TensorInfo("series", [1, 8, 2], "float32")]

    shapes, seq, why = plan_shapes(Fixed, 4, None)
    assert shapes is None and seq == 8 and "fixed batch size 1" in why
    shapes, seq, why = plan_shapes(Fixed, 1, 16)
    assert shapes is None and seq == 16 and "fixed sequence length 8" in why
    shapes, seq, why = plan_shapes(Fixed, 1, None)  # the twin: it fits
    assert shapes == {"series": [1, 8, 2]} and seq == 8 and why is None


def test_9_bench_skip_line_names_the_length(batch16, tmp_path):
    root, _ = batch16
    p = rnnedge("bench", root / "ex" / "model.tflite", "--batch-size", "1,16", "--runs", "2",
                "--warmup", "1", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    skip = [ln for ln in p.stdout.splitlines() if ln.startswith("skipped")]
    assert skip and all("seq None" not in ln for ln in skip), p.stdout
    assert any(re.search(r"model\.tflite batch 1 seq 6: input 'series' has a fixed batch size 16", ln)
               for ln in skip), skip


# --------------------------------------------------------------------------- 11./13. a text bundle
@pytest.fixture(scope="module")
def text_bundles(tmp_path_factory):
    """A tiny text model (Embedding -> LSTM), ONNX, deployed twice: as is and with --user alice."""
    import keras

    from rnnedge.deployment import deploy
    from rnnedge.exporting import export
    from rnnedge.manifest import update_manifest

    root = tmp_path_factory.mktemp("text")
    keras.utils.set_random_seed(0)
    inp = keras.Input((None,), dtype="int32", name="tokens")
    x = keras.layers.LSTM(3)(keras.layers.Embedding(8, 3)(inp))
    keras.Model(inp, keras.layers.Dense(1, activation="sigmoid")(x)).save(root / "t.keras")
    export(str(root / "t.keras"), ["onnx"], root / "ex", validate=False)
    update_manifest(root / "ex", task="binary_classification",
                    preprocessing={"kind": "text", "vocab": {"good": 2, "bad": 3, "film": 4}, "max_len": 6,
                                   "padding": "post", "lowercase": True, "pad_id": 0, "oov_id": 1})
    return (root, deploy(root / "ex", runtime="onnxruntime", out=root / "b", tarball=False),
            deploy(root / "ex", runtime="onnxruntime", out=root / "b-alice", tarball=False, user="alice"))


def test_11_predict_refuses_an_empty_text(text_bundles):
    root, res, _ = text_bundles
    for text in ("", "   "):
        p = predict(res.bundle, "--text", text, cwd=root)
        assert p.returncode == 2 and p.stdout == "", p.stdout + p.stderr
        assert p.stderr.startswith("error: --text is empty") and len(p.stderr.splitlines()) == 1, p.stderr
    p = predict(res.bundle, "--text", "a good film", cwd=root)  # the twin
    assert p.returncode == 0 and json.loads(p.stdout)["text"] == "a good film", p.stderr


def test_13_the_service_runs_as_the_installing_user(text_bundles, tmp_path):
    from rnnedge.deployment import SERVICE, deploy
    from rnnedge.errors import UsageError

    root, res, alice = text_bundles
    assert SERVICE == "rnnedge-predict@.service"
    for b, who in ((res, None), (alice, "alice")):
        unit = (b.bundle / SERVICE).read_text()
        readme = (b.bundle / "README.md").read_text()
        assert "User=%i" in unit and "User=pi" not in unit and "chown pi" not in readme
        assert b.manifest["service"] == {"unit": SERVICE, "user": who}
        name = who or '"${SUDO_USER:-$(id -un)}"'
        assert f"enable --now rnnedge-predict@{name}" in unit
        assert f"sudo chown {name} " in readme
    # the default's shell words name the installing user: the login user, also under sudo
    import getpass

    expand = 'printf %s "${SUDO_USER:-$(id -un)}"'
    env = {k: v for k, v in os.environ.items() if k != "SUDO_USER"}
    assert subprocess.run(["bash", "-c", expand], env=env, capture_output=True, text=True).stdout == getpass.getuser()
    assert subprocess.run(["bash", "-c", expand], env={**env, "SUDO_USER": "bob"}, capture_output=True,
                          text=True).stdout == "bob"
    if shutil.which("systemd-analyze"):
        inst = tmp_path / "rnnedge-predict@alice.service"
        shutil.copy(alice.bundle / SERVICE, inst)
        r = subprocess.run(["systemd-analyze", "verify", str(inst)], capture_output=True, text=True)
        assert r.returncode == 0 and "Unknown" not in r.stderr, r.stderr
    with pytest.raises(UsageError, match="not a Linux user name"):
        deploy(root / "ex", runtime="onnxruntime", out=tmp_path / "x", user="Bad User")


# --------------------------------------------------------------------------- 12. one source of versions
def test_12_install_commands_and_bundle_requirements_use_pyproject_versions(text_bundles, batch16):
    import tomllib

    from rnnedge.deployment import install_commands, requirements_for
    from rnnedge.errors import install_command, pip_command
    from rnnedge.runtime.onnx import missing_provider  # noqa: F401 - its cpu command is install_command's

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for module, extra in (("onnxruntime", "onnxruntime"), ("ai_edge_litert", "litert"),
                          ("tflite_runtime", "tflite-runtime")):
        assert install_command(module) == pip_command(extras[extra]), module
        reqs = requirements_for(extra, "bookworm")
        assert all(r in reqs for r in extras[extra]), (extra, reqs)
    assert install_commands("model.onnx")["onnxruntime"].startswith(pip_command(extras["onnxruntime"]))
    _, res, _ = text_bundles
    _, b16 = batch16
    for bundle, extra in ((res.bundle, "onnxruntime"), (b16.bundle, "litert")):
        lines = [ln for ln in (bundle / "requirements.txt").read_text().splitlines() if not ln.startswith("#")]
        assert lines[:len(extras[extra])] == extras[extra], (extra, lines)
    # the spellings the issue found differing: one each now
    assert "tflite-runtime==2.14.0" in extras["tflite-runtime"] and "ai-edge-litert>=2.0" in extras["litert"]
    guide = (REPO / "docs" / "GUIDE.md").read_text()
    assert "tflite-runtime==2.14.0" in guide and "2.14.*" not in guide


# --------------------------------------------------------------------------- 14. TF.js timing
FAKE_RUN_JS = r"""
const fs = require('fs');
const jobs = JSON.parse(fs.readFileSync(process.argv[3], 'utf8'));
const t = Date.now(); while (Date.now() - t < 300) {}   // a slow start-up, before any predict
for (const j of jobs) {
  const x = JSON.parse(fs.readFileSync(j.inputs, 'utf8'));
  const v = Object.values(x)[0];
  fs.writeFileSync(j.outputs, JSON.stringify({outputs: {y: {shape: [v.shape[0], 1], dtype: 'float32',
    data: Array(v.shape[0]).fill(0.5)}}, output_order: ['y'], load_ms: 12,
    run_ms: Array(j.repeat || 1).fill(1.25), backend: 'cpu', tfjs_version: 'fake'}));
}
"""


def test_14_run_times_the_tfjs_predict_inside_node(tmp_path):
    """A stand-in runner whose start-up takes 300 ms and whose predict call reports 1.25 ms: the
    run time is Node's own figure for the call; start-up and load are reported apart."""
    if shutil.which("node") is None:
        pytest.skip("node not installed")
    runner = tmp_path / "runner"
    (runner / "node_modules" / "@tensorflow" / "tfjs").mkdir(parents=True)
    (runner / "node_modules" / "@tensorflow" / "tfjs" / "package.json").write_text('{"version": "fake"}')
    (runner / "run.js").write_text(FAKE_RUN_JS)
    model = tmp_path / "tfjs"
    model.mkdir()
    (model / "model.json").write_text(json.dumps({"modelTopology": {}, "userDefinedMetadata": {"rnnedge": {
        "inputs": [{"name": "x", "shape": [None, 4, 1], "dtype": "float32"}],
        "outputs": [{"name": "y", "shape": [None, 1], "dtype": "float32"}]}}}))
    np.save(tmp_path / "x.npy", np.zeros((2, 4, 1), np.float32))
    env = _env(RNNEDGE_TFJS_NODE_DIR=str(runner))
    p = rnnedge("run", "tfjs", "--input", "x.npy", "--json", cwd=tmp_path, env=env)
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["latency_ms"] == 1.25 and doc["timed_in"].startswith("node")
    assert doc["startup_ms"] >= 300 and doc["outputs"]["y"]["data"] == [[0.5], [0.5]]
    p = rnnedge("run", "tfjs", "--input", "x.npy", cwd=tmp_path, env=env)
    assert re.search(r"run 1\.25 ms, Node start-up and model load \d+ ms \(not in the run time\)", p.stdout), p.stdout
