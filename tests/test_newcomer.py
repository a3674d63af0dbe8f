"""A newcomer's first hour (issue 19), run as a user runs it: the ``rnnedge`` command and the
bundle's ``predict.py`` in subprocesses, their output captured, their exit codes checked.

1. a missing runtime or package exits 3 with the one command that installs it (the README's);
2. the demo names the formats it skipped, and why, in its summary and manifest;
3. quiet by default: no known noise line (:data:`rnnedge.quiet.NOISE`) in a default command's
   output; ``--verbose`` shows them (the twin that proves the patterns match real output);
4. training prints one readable line per epoch in a log and a live bar on a terminal, and says
   which epoch early stopping restored (the saved line's figures are that epoch's);
5. a bundle offers only the modes that work for its model (README, service unit, predict.py);
6. predict.py runs a batch (row by row when the model's batch is fixed), uses rnnedge's exit codes
   and prints a one-line summary (JSON with --json).

One shared demo run (simple-rnn preset, tiny) provides the model, the export folder and the
bundle the other tests use.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rnnedge.quiet import NOISE, is_noise

pytest.importorskip("keras")

REPO = Path(__file__).resolve().parents[1]
NODE_RUNNER = REPO / "rnnedge" / "runtime" / "node"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _env(**extra) -> dict:
    """The user's environment: none of the variables the test set-up sets to quiet TensorFlow."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("TF_CPP_MIN_LOG_LEVEL", "RNNEDGE_VERBOSE", "RNNEDGE_DEBUG", "RNNEDGE_TFJS_NODE_DIR")}
    env.update({"COLUMNS": "200", "CUDA_VISIBLE_DEVICES": "-1", **extra})
    return env


def _rnnedge_cmd() -> list[str]:
    script = shutil.which("rnnedge", path=os.path.dirname(sys.executable))
    return [script] if script else [sys.executable, "-c", "from rnnedge.cli import main; main()"]


def rnnedge(*args, cwd, env=None, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run(_rnnedge_cmd() + [str(a) for a in args], cwd=cwd, env=env or _env(),
                          capture_output=True, text=True, timeout=timeout)


def predict(bundle: Path, *args, cwd, stdin=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(bundle / "predict.py"), *map(str, args)], cwd=cwd, env=_env(),
                          capture_output=True, text=True, input=stdin, timeout=300)


def noise_lines(text: str) -> list[str]:
    return [ln for ln in ANSI.sub("", text).replace("\r", "\n").splitlines() if is_noise(ln)]


@pytest.fixture(scope="module")
def bare_runner(tmp_path_factory) -> Path:
    """A copy of the TF.js runner folder without its npm packages (node_modules)."""
    d = tmp_path_factory.mktemp("runner-without-npm-packages")
    for name in ("package.json", "package-lock.json", "run.js", "rnnedge_layers.js"):
        shutil.copy(NODE_RUNNER / name, d / name)
    return d


@pytest.fixture(scope="module")
def demo(tmp_path_factory, bare_runner):
    """`rnnedge demo` as the README runs it (relative -o), on a machine where the TF.js runner's
    npm packages are missing."""
    root = tmp_path_factory.mktemp("demo")
    p = rnnedge("demo", "--preset", "simple-rnn", "--epochs", "1", "--samples", "96", "--runs", "2", "-o", "demo",
                cwd=root, env=_env(RNNEDGE_TFJS_NODE_DIR=str(bare_runner)))
    return p, root / "demo"


# --------------------------------------------------------------------------- 1. exit 3 + the command
def test_readme_and_message_give_the_same_node_setup_command(monkeypatch, tmp_path):
    """One command, in one form that works from any folder: the README's script, by the clone's
    absolute path (never `bash .ci/setup_node.sh` from one command and an absolute path from another)."""
    from rnnedge.runtime.tfjs import node_install_command

    monkeypatch.delenv("RNNEDGE_TFJS_NODE_DIR", raising=False)
    forms = set()
    for cwd in (REPO, REPO / "rnnedge", tmp_path):
        monkeypatch.chdir(cwd)
        forms.add(node_install_command())
    assert forms == {f"bash {REPO / '.ci' / 'setup_node.sh'}"}
    assert "bash .ci/setup_node.sh" in (REPO / "README.md").read_text()  # the same script, from the clone


def test_tfjs_export_without_the_runner_packages_exits_3_with_the_install_command(demo, bare_runner, tmp_path):
    from rnnedge.runtime.tfjs import node_install_command

    _, d = demo
    env = _env(RNNEDGE_TFJS_NODE_DIR=str(bare_runner))
    p = rnnedge("export", d / "simple-rnn.keras", "-f", "tfjs", "-o", "ex", cwd=tmp_path, env=env)
    install = node_install_command(bare_runner)
    assert p.returncode == 3, p.stdout + p.stderr
    assert "parity check failed" not in p.stderr
    assert f"`{install}`" in p.stderr and "rnnedge validate ex" in p.stderr
    assert (tmp_path / "ex" / "tfjs" / "model.json").is_file()  # the artifact is written, only unchecked
    # the same for a command that runs it (`validate`: tests/test_validate.py, exit_code 3)
    np.save(tmp_path / "x.npy", np.zeros((1, 5, 1), np.float32))
    q = rnnedge("run", "ex/tfjs", "--input", "x.npy", cwd=tmp_path, env=env)
    assert q.returncode == 3 and f"`{install}`" in q.stderr, q.stderr


def test_missing_python_packages_exit_3_with_the_pip_command(demo, tmp_path):
    """A package hidden from Python (a shadowing module that fails to import) -> exit 3 and the pip
    command of its rnnedge extra, never a traceback or an internal error."""
    from rnnedge.errors import install_command

    _, d = demo
    hide = tmp_path / "hide"
    hide.mkdir()
    for mod in ("onnxruntime", "tensorflow"):
        (hide / f"{mod}.py").write_text(f"raise ModuleNotFoundError(\"No module named '{mod}'\", name={mod!r})\n")
    env = _env(PYTHONPATH=os.pathsep.join([str(hide), os.environ.get("PYTHONPATH", "")]))
    np.save(tmp_path / "x.npy", np.zeros((1, 5, 1), np.float32))
    cases = {("run", d / "export" / "model.onnx", "--input", "x.npy"): "onnxruntime",
             ("train", "simple-rnn", "-o", "m.keras"): "tensorflow"}
    for args, mod in cases.items():
        p = rnnedge(*args, cwd=tmp_path, env=env)
        assert p.returncode == 3, (args, p.stderr)
        assert f"`{install_command(mod)}`" in p.stderr and "Traceback" not in p.stderr, p.stderr
    assert install_command("onnxruntime").startswith("pip install 'onnxruntime>=")


# --------------------------------------------------------------------------- 2. the demo's skips
def test_demo_names_the_formats_it_skipped_and_why(demo, bare_runner):
    from rnnedge.runtime.tfjs import node_install_command

    p, d = demo
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    install = node_install_command(bare_runner)
    out = " ".join(p.stdout.split())  # the summary, table cells unwrapped
    assert "skipped tfjs:" in out and install in out
    assert re.search(r"tfjs\s*│\s*not exported", p.stdout)  # a row in the parity table
    man = json.loads((d / "export" / "manifest.json").read_text())
    assert set(man["skipped_formats"]) == {"tfjs"} and install in man["skipped_formats"]["tfjs"]
    assert not any(n.startswith("tfjs") for n in man["artifacts"])


# --------------------------------------------------------------------------- 3. quiet
def test_default_commands_print_no_known_noise(demo):
    """The demo runs train, export, quantize, validate, bench, deploy and verify: every source
    of noise seen (TensorFlow's absl/oneDNN lines, LiteRT's XNNPACK line, the converter's
    fully_quantize line) must stay off its output."""
    p, _ = demo
    assert p.returncode == 0, p.stderr[-3000:]
    assert noise_lines(p.stdout + p.stderr) == []
    for word in ("absl::InitializeLog", "oneDNN", "XNNPACK", "fully_quantize", "cpu_feature_guard"):
        assert word not in p.stderr + p.stdout


def test_verbose_shows_what_the_default_hides(demo, tmp_path):
    """The twin: the same commands with --verbose print the noise, matched by NOISE."""
    _, d = demo
    np.save(tmp_path / "x.npy", np.zeros((1, 5, 1), np.float32))
    tfl = d / "export" / "model.tflite"
    quiet = rnnedge("run", tfl, "--input", "x.npy", cwd=tmp_path)
    loud = rnnedge("--verbose", "run", tfl, "--input", "x.npy", cwd=tmp_path)
    assert quiet.returncode == loud.returncode == 0, loud.stderr
    assert noise_lines(quiet.stderr) == [] and quiet.stderr.strip() == ""
    assert any("XNNPACK" in ln for ln in noise_lines(loud.stderr)), loud.stderr
    loud = rnnedge("--verbose", "inspect", d / "export" / "reference.keras", cwd=tmp_path)
    assert loud.returncode == 0 and any("absl::InitializeLog" in ln for ln in noise_lines(loud.stderr)), loud.stderr


def test_bundle_predict_prints_no_runtime_noise(demo, tmp_path):
    import importlib.util

    _, d = demo
    p = predict(d / "bundle", "--self-test", cwd=tmp_path)
    assert p.returncode == 0 and p.stderr == "", p.stderr
    loud = predict(d / "bundle", "--self-test", "--verbose", cwd=tmp_path)
    assert any("XNNPACK" in ln for ln in noise_lines(loud.stderr)), loud.stderr
    # predict.py cannot import rnnedge: its own patterns are a subset of the one list
    spec = importlib.util.spec_from_file_location("bundle_predict", d / "bundle" / "predict.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert set(mod.NOISE) <= set(NOISE)


# --------------------------------------------------------------------------- 4. training progress
ES_SPEC = """\
name: es-tiny
task: regression
inputs:
  - {name: values, shape: [null, 1], dtype: float32}
layers:
  - {type: SimpleRNN, units: 4}
  - {type: Dense, units: 1}
compile:
  optimizer: {name: adam, learning_rate: 0.3}   # large: val_loss turns up after a few epochs
  loss: mse
data: {kind: sequence, synthetic: mean, max_len: 6, samples: 128}
train: {epochs: 6, batch_size: 16, validation_split: 0.25, early_stopping: 1, seed: 0}
"""
EPOCH = re.compile(r"^epoch +(\d+)/6: loss=\S+ val_loss=(\S+) \(\d+\.\d s\)$")


def test_training_log_has_one_line_per_epoch_and_names_the_restored_epoch(tmp_path):
    (tmp_path / "es.yaml").write_text(ES_SPEC)
    p = rnnedge("train", "es.yaml", "-o", "es.keras", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "\r" not in p.stderr and "\x1b" not in p.stderr  # a log: plain lines, nothing overwritten
    lines = p.stderr.splitlines()
    epochs = [EPOCH.match(ln) for ln in lines if ln.startswith("epoch")]
    assert epochs and all(epochs), lines
    val = {int(m.group(1)): m.group(2) for m in epochs}
    assert list(val) == list(range(1, len(val) + 1))
    note = [ln for ln in lines if ln.startswith("early stopping:")]
    assert len(note) == 1, lines
    restored = int(re.search(r"restored the weights of epoch (\d+) \(val_loss=(\S+)\)", note[0]).group(1))
    assert restored < len(val) and float(val[restored]) == min(float(v) for v in val.values())
    saved = re.search(r"^saved es\.keras \(weights of epoch (\d+) of (\d+), restored by early stopping; .*"
                      r"val_loss=(\S+)$", p.stdout, re.M)
    assert saved, p.stdout
    assert int(saved.group(1)) == restored and int(saved.group(2)) == len(val)
    assert float(saved.group(3)) == pytest.approx(float(val[restored]), rel=2e-3)
    sidecar = json.loads((tmp_path / "es.rnnedge.json").read_text())
    assert sidecar["info"]["epoch"] == restored and sidecar["info"]["early_stopping"]["restored"]


def test_training_on_a_terminal_shows_a_live_bar_and_epoch_lines(tmp_path):
    import pty  # noqa: F401 - POSIX only

    (tmp_path / "es.yaml").write_text(ES_SPEC)
    master, slave = os.openpty()
    proc = subprocess.Popen(_rnnedge_cmd() + ["train", "es.yaml", "-o", "es.keras"], cwd=tmp_path,
                            env=_env(COLUMNS="120"), stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.wait(timeout=300) == 0
    raw = b"".join(chunks).decode("utf-8", "replace")
    assert re.search(r"training.*epoch \d/6.*batch \d+/\d+", ANSI.sub("", raw))  # the live bar moved per batch
    # the bar counts epochs as the epoch lines do: 1-based, the running one (never "epoch 0/6")
    bars = re.findall(r"epoch (\d)/6 +batch \d+/\d+", ANSI.sub("", raw))
    assert bars and bars[0] == "1" and "0" not in bars and set(bars) <= {str(i) for i in range(1, 7)}, bars
    screen = [seg.split("\r")[-1] for seg in ANSI.sub("", raw).replace("\r\n", "\n").split("\n")]
    assert sum(bool(EPOCH.match(s.strip())) for s in screen) >= 2, screen  # whole lines above the bar
    assert any(s.startswith("early stopping:") for s in screen)
    assert noise_lines(raw) == []


# --------------------------------------------------------------------------- 5./6. the bundle
def test_raw_input_bundle_offers_only_what_works(demo, tmp_path):
    """simple-rnn's data has no text/window preprocessing: the bundle takes raw tensors."""
    _, d = demo
    b = d / "bundle"
    man = json.loads((b / "manifest.json").read_text())
    assert man["modes"] == ["self-test", "input"]
    assert not list(b.glob("*.service")) and not [f for f in man["files"] if f.endswith(".service")]
    readme = (b / "README.md").read_text()
    run = readme[readme.index("## Run"):readme.index("## As a service")]
    assert "--stream" not in run and "--text" not in run and "--csv" not in run and "--input" in run
    assert "No service unit" in readme
    for args, stdin in ((("--stream",), "0.1\n"), (("--text", "hello"), None), (("--csv", "s.csv"), None)):
        p = predict(b, *args, cwd=tmp_path, stdin=stdin)
        assert p.returncode == 2 and "takes --self-test, --input" in p.stderr, (args, p.stderr)


def test_window_and_text_bundles_offer_stream_and_a_service():
    from rnnedge.deployment import _service_section, _usage_examples
    from rnnedge.deployment import TEMPLATES
    import importlib.util

    spec = importlib.util.spec_from_file_location("tmpl_predict", TEMPLATES / "predict.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    for kind, extra in (("window", "--csv"), ("text", "--text"), ("chars", "--text")):
        modes = mod.modes(kind)
        assert "stream" in modes
        usage = _usage_examples({"kind": kind, "window": 8, "column": "value"}, 1, modes)
        assert "--stream" in usage and extra in usage
        assert "systemd unit" in _service_section(modes, "/opt/x", kind)


def test_predict_takes_a_batch_row_by_row_with_exit_codes_and_a_summary(demo, tmp_path):
    import keras

    _, d = demo
    b = d / "bundle"
    man = json.loads((b / "manifest.json").read_text())
    assert man["model"]["file"] == "model.tflite"  # TFLite: batch fixed at 1
    x = np.random.default_rng(0).standard_normal((16, 7, 1)).astype(np.float32)
    np.save(tmp_path / "x16.npy", x)
    p = predict(b, "--input", "x16.npy", "--output", "y.npy", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert len(p.stdout.strip().splitlines()) == 1 and p.stderr == ""
    assert p.stdout.startswith("16 rows of x16.npy -> ") and "row by row" in p.stdout and "y.npy" in p.stdout
    ref = np.asarray(keras.saving.load_model(d / "export" / "reference.keras", compile=False)(x))
    y = np.load(tmp_path / "y.npy")
    assert y.shape == ref.shape == (16, 1) and np.max(np.abs(y - ref)) <= 1e-5
    # --json: the outputs by row
    p = predict(b, "--input", "x16.npy", "--json", cwd=tmp_path)
    res = json.loads(p.stdout)
    assert p.returncode == 0 and res["rows"] == 16 and res["row_by_row"] is True
    assert np.max(np.abs(np.asarray(res["output"]) - ref)) <= 1e-5
    # one row without a batch axis
    np.save(tmp_path / "x1.npy", x[0])
    p = predict(b, "--input", "x1.npy", "--json", cwd=tmp_path)
    assert p.returncode == 0 and abs(json.loads(p.stdout)["output"][0] - ref[0, 0]) <= 1e-5
    # bad input: exit 2, one line naming the input and the shape it takes
    np.save(tmp_path / "bad.npy", np.zeros((16, 7, 3), np.float32))
    (tmp_path / "junk.npy").write_text("not numpy")
    for f in ("bad.npy", "missing.npy", "junk.npy"):
        p = predict(b, "--input", f, cwd=tmp_path)
        assert p.returncode == 2 and p.stderr.startswith("error: ") and len(p.stderr.splitlines()) == 1, (f, p.stderr)
    assert "must have shape [rows, None, 1]" in predict(b, "--input", "bad.npy", cwd=tmp_path).stderr


# --------------------------------------------------------------------------- reports a user reads
def test_reports_list_models_only_and_say_what_the_inputs_were(demo, tmp_path):
    """ORT's required_operators.config is a file of the export, not a model: no "SKIPPED" row in
    any report; the parity title says what the generated inputs are in words, not kind codes."""
    from rnnedge.inputs import KIND_WORDS, specs_from_tensors

    p, d = demo
    exp = d / "export"
    man = json.loads((exp / "manifest.json").read_text())
    assert "required_operators.config" in man["artifacts"]  # the side file is there
    assert "SKIPPED" not in p.stdout and "not a model file" not in p.stdout + p.stderr
    q = rnnedge("validate", exp, cwd=tmp_path)
    assert q.returncode == 0, q.stdout[-2000:] + q.stderr
    assert "required_operators.config" not in q.stdout and re.search(r"\b0 skipped -> exit 0$", q.stdout, re.M)
    title = next(ln for ln in q.stdout.splitlines() if "parity vs" in ln)
    kinds = {s.kind for s in specs_from_tensors(man["artifacts"]["model.onnx"]["inputs"])}
    assert all(f"generated {KIND_WORDS[k]} (" in title for k in kinds), title
    assert not re.search(r"\((series|tokens|float), seed", title), title
    q = rnnedge("validate", exp, "-a", "required_operators.config", cwd=tmp_path)
    assert q.returncode == 2 and "required_operators.config: not a model file" in q.stderr, q.stderr


def test_redirected_output_is_never_wrapped(demo, tmp_path):
    """In a log (stdout not a terminal, no COLUMNS) a message line stays one line, whatever its
    length; every console of the CLI comes from one helper (rnnedge.cli.console)."""
    _, d = demo
    deep = tmp_path / ("a-rather-long-folder-name-" * 3) / "with-the-model"
    deep.mkdir(parents=True)
    shutil.copy(d / "export" / "model.onnx", deep / "model.onnx")
    np.save(tmp_path / "x.npy", np.zeros((1, 5, 1), np.float32))
    env = {k: v for k, v in _env().items() if k != "COLUMNS"}
    p = rnnedge("run", deep / "model.onnx", "--input", "x.npy", cwd=tmp_path, env=env)
    assert p.returncode == 0, p.stderr
    head = p.stdout.splitlines()[0]
    assert len(head) > 100 and head.startswith(str(deep / "model.onnx")) and head.endswith("(inputs values [1, 5, 1])"), \
        p.stdout
    for f in (REPO / "rnnedge" / "cli").glob("*.py"):
        if f.name != "__init__.py":
            assert "Console(" not in f.read_text(), f"{f.name} makes its own console: use rnnedge.cli.console()"


def test_bad_option_values_exit_2_before_any_work(tmp_path):
    from rnnedge.errors import UsageError
    from rnnedge.exporting import export

    cases = {("export", "no-such-model.keras", "-f", "onnx", "-o", "out", "--opset", "5"):
             "'--opset': 5 is not in the range 14<=x<=21",
             ("export", "no-such-model.keras", "-f", "onnx", "-o", "out", "--quantize", "bogus"):
             "unknown quantization mode(s) ['bogus']",  # before the model is looked for
             ("train", "simple-rnn", "-o", "m.keras", "--epochs", "0"): "'--epochs': 0 is not in the range x>=1"}
    for args, msg in cases.items():
        p = rnnedge(*args, cwd=tmp_path)
        assert p.returncode == 2 and msg in p.stderr, (args, p.stderr)
    assert not list(tmp_path.iterdir())
    with pytest.raises(UsageError, match=r"ONNX opset 5 is not supported; choose 14\.\.21") as e:
        export("no-such-model.keras", "onnx", tmp_path / "out", opset=5)  # before the model is looked for
    assert e.value.exit_code == 2
