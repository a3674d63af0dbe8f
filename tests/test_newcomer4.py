"""A newcomer's third pass, items of issue 19 that are about running a model (the ``rnnedge run``
runners and a bundle's ``predict.py``), run as a user runs them where it matters (subprocesses,
output captured, exit codes checked):

 1. token ids outside the vocabulary, negative or fractional ids: ``predict.py`` exits 2 with one line
    naming the input, the value and ``[0, vocab)`` (LiteRT and onnxruntime bundles); a runtime failure
    is one line (exit 1), onnxruntime's logger silent;
 2. the same through ``rnnedge run`` / the runners (the vocabulary read from the ONNX/TFLite graph);
 3. a length fixed in the Keras model itself gets no "re-export with --seq-len" hint;
 9. ``rnnedge deploy`` ends with the README's install commands (a venv);
10. a bundle without a service unit says nothing about the service's user;
11. an ``.npz`` with another name than the single input's exits 2 (``arr_0`` is still taken);
13. ``predict.py`` usage errors are one ``error:`` line (exit 2); a multi-output summary is rounded.
"""
from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("keras")

VOCAB = 20


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RNNEDGE_VERBOSE", "RNNEDGE_DEBUG")}
    env.update({"COLUMNS": "80", "CUDA_VISIBLE_DEVICES": "-1"})
    return env


def predict(bundle: Path, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(bundle / "predict.py"), *map(str, args)], cwd=bundle, env=_env(),
                          capture_output=True, text=True, timeout=300)


def rnnedge(*args, cwd) -> subprocess.CompletedProcess:
    script = shutil.which("rnnedge", path=os.path.dirname(sys.executable))
    cmd = [script] if script else [sys.executable, "-c", "from rnnedge.cli import main; main()"]
    return subprocess.run(cmd + [str(a) for a in args], cwd=cwd, env=_env(), capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    """A two-head token model (Embedding(20, mask_zero) -> GRU -> 'reg', 'cls'), exported to ONNX
    and TFLite, deployed for onnxruntime (with the CLI: its printed lines) and LiteRT; a few input
    files: (root, deploy's CLI result, {runtime: bundle})."""
    import keras
    from click.testing import CliRunner

    from rnnedge.cli.deploy import command
    from rnnedge.deployment import deploy
    from rnnedge.exporting import export

    root = tmp_path_factory.mktemp("tok")
    keras.utils.set_random_seed(0)
    inp = keras.Input((None,), dtype="int32", name="tokens")
    x = keras.layers.GRU(3)(keras.layers.Embedding(VOCAB, 4, mask_zero=True)(inp))
    keras.Model(inp, [keras.layers.Dense(1, name="reg")(x), keras.layers.Dense(2, activation="softmax", name="cls")(x)],
                name="twohead").save(root / "m.keras")
    export(str(root / "m.keras"), ["onnx", "tflite"], root / "ex", validate=False)
    cli = CliRunner().invoke(command, [str(root / "ex"), "--runtime", "onnxruntime", "--out", str(root / "b-ort"),
                                       "--no-tarball"])
    assert cli.exit_code == 0, cli.output
    bundles = {"onnxruntime": root / "b-ort",
               "litert": deploy(root / "ex", runtime="litert", out=root / "b-litert", tarball=False).bundle}
    ok = np.array([[3, 7, 1, 0, 0]], np.int32)
    np.save(root / "ok.npy", ok)
    np.save(root / "big.npy", np.array([[3, 7, VOCAB, 0, 0]], np.int32))
    np.save(root / "neg.npy", np.array([[3, -1, 2, 0, 0]], np.int32))
    np.save(root / "frac.npy", np.array([[3, 1.5, 2, 0, 0]], np.float32))
    np.savez(root / "wrongname.npz", x=ok)
    np.savez(root / "unnamed.npz", ok)
    return root, cli, bundles


def _one_error_line(r: subprocess.CompletedProcess, code: int) -> str:
    lines = r.stderr.strip().splitlines()
    assert r.returncode == code and len(lines) == 1 and lines[0].startswith("error: "), (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr and "[E:onnxruntime" not in r.stderr
    return lines[0]


@pytest.mark.parametrize("runtime", ["onnxruntime", "litert"])
def test_1_predict_refuses_ids_outside_the_vocabulary(tok, runtime):
    root, _, bundles = tok
    b = bundles[runtime]
    import json

    spec = json.loads((b / "manifest.json").read_text())["model"]["inputs"][0]
    assert spec["name"] == "tokens" and spec["vocab_size"] == VOCAB
    head = f"error: input 'tokens' takes token ids in [0, {VOCAB}) (its Embedding's vocabulary), got "
    assert _one_error_line(predict(b, "--input", root / "big.npy"), 2) == head + f"{VOCAB} at [0, 2]"
    assert _one_error_line(predict(b, "--input", root / "neg.npy"), 2) == head + "-1 at [0, 1]"
    assert _one_error_line(predict(b, "--input", root / "frac.npy"), 2) == head + "1.5 at [0, 1]: not a whole number"
    r = predict(b, "--input", root / "ok.npy")
    assert r.returncode == 0 and "1 row of" in r.stdout, r.stderr


def _predict_module(bundle: Path):
    spec = importlib.util.spec_from_file_location(f"predict_{bundle.name.replace('-', '_')}", bundle / "predict.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("runtime", ["onnxruntime", "litert"])
def test_1_a_runtime_failure_is_one_line_and_onnxruntime_logs_nothing(tok, runtime, capfd):
    """The twin: past the check, the same id fails in the runtime itself; that is a BundleError
    (one `error:` line, exit 1), and onnxruntime's logger prints nothing."""
    _, _, bundles = tok
    mod = _predict_module(bundles[runtime])
    model = mod.Model(bundles[runtime])
    capfd.readouterr()
    with pytest.raises(mod.BundleError) as e:
        model._invoke([np.array([[3, 7, 5000, 0, 0]], np.int32)])
    assert e.value.exit_code == 1 and f"{model.runtime} " in str(e.value) and "\n" not in str(e.value)
    assert "[E:onnxruntime" not in capfd.readouterr().err
    with pytest.raises(mod.InputError):  # and the check stops it first
        model.run(np.array([[3, 7, 5000, 0, 0]], np.int32))


@pytest.mark.parametrize("artifact", ["model.onnx", "model.tflite"])
def test_2_runners_know_the_vocabulary_and_refuse_ids_outside_it(tok, artifact, capfd):
    from rnnedge.errors import RnnedgeError, UsageError
    from rnnedge.runtime import open_runner

    root, _, _ = tok
    with open_runner(root / "ex" / artifact) as r:
        assert r.vocab_sizes() == {"tokens": VOCAB}  # from the graph: the export manifest has none
        assert "vocab_sizes" not in __import__("json").loads((root / "ex" / "manifest.json").read_text())["model"]
        head = f"{artifact}: input 'tokens' takes token ids in [0, {VOCAB}) (its Embedding's vocabulary), got "
        for ids, tail in (([[3, VOCAB, 2]], f"{VOCAB} at [0, 1]"), ([[-2, 1, 2]], "-2 at [0, 0]"),
                          ([[3, 1.5, 2]], "1.5 at [0, 1]: not a whole number")):
            dtype = np.float32 if tail.endswith("number") else np.int32
            with pytest.raises(UsageError) as e:
                r.run({"tokens": np.array(ids, dtype)})
            assert str(e.value) == head + tail
        assert set(r.run({"tokens": np.array([[3, 1, 2]], np.int32)})) == {"reg", "cls"}
        if artifact.endswith(".onnx"):  # the twin: unchecked, onnxruntime fails, and its logger is quiet
            r._vocab = {}
            capfd.readouterr()
            with pytest.raises(RnnedgeError):
                r.run({"tokens": np.array([[3, 5000, 2]], np.int32)})
            assert "[E:onnxruntime" not in capfd.readouterr().err


def test_2_rnnedge_run_exits_2_naming_the_id(tok):
    root, _, _ = tok
    for artifact in ("model.onnx", "model.tflite"):
        r = rnnedge("run", root / "ex" / artifact, "-i", root / "big.npy", cwd=root)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1, (artifact, r.returncode, r.stderr)
        assert f"takes token ids in [0, {VOCAB})" in lines[0] and f"got {VOCAB} at [0, 2]" in lines[0]
        assert "[E:onnxruntime" not in r.stderr
    r = rnnedge("run", root / "ex" / "model.onnx", "-i", root / "frac.npy", cwd=root)
    assert r.returncode == 2 and "got 1.5 at [0, 1]: not a whole number" in r.stderr, r.stderr


def test_2_embedding_vocab_follows_id_preserving_ops():
    from rnnedge.runtime.base import embedding_vocab

    ops = [("Cast", ["tokens"], ["t64"]), ("Gather", ["emb", "t64"], ["e"]),
           ("Gather", ["big", "other"], ["f"]), ("Gather", ["emb2", "tokens"], ["g"]),
           ("Mul", ["feat", "two"], ["h"]), ("Gather", ["emb", "h"], ["k"]),
           # Keras 3's Embedding as LiteRT runs it: where(ids < 0, ids + vocab, ids)
           ("LESS", ["words", "zero"], ["neg"]), ("ADD", ["words", "v"], ["wrapped"]),
           ("SELECT_V2", ["neg", "wrapped", "words"], ["idx"]), ("GATHER", ["emb3", "idx"], ["m"]),
           ("DEQUANTIZE", ["q8"], ["deq"]), ("GATHER", ["deq", "ids8"], ["n"])]  # an int8 table
    assert embedding_vocab(ops, {"tokens": "tokens", "feat": "feat", "other": "other", "words": "words",
                                 "ids8": "ids8"},
                           {"emb": 50, "emb2": 30, "emb3": 7, "q8": 9}) == {"tokens": 30, "words": 7, "ids8": 9}
    # the smallest table; "big" is no constant, a Mul is not followed


@pytest.fixture(scope="module")
def fixed64(tmp_path_factory):
    """A Keras model whose input is fixed at 6 steps, exported to ONNX."""
    import keras

    from rnnedge.exporting import export

    root = tmp_path_factory.mktemp("fixed")
    keras.utils.set_random_seed(0)
    inp = keras.Input((6, 3), name="sensors")
    keras.Model(inp, keras.layers.Dense(1)(keras.layers.LSTM(3)(inp))).save(root / "f.keras")
    export(str(root / "f.keras"), ["onnx"], root / "ex", validate=False)
    return root


def test_3_a_length_fixed_in_keras_gets_no_seq_len_hint(fixed64, tmp_path):
    import json

    from rnnedge.errors import UsageError
    from rnnedge.runtime import open_runner

    x = np.zeros((1, 4, 3), np.float32)
    with open_runner(fixed64 / "ex" / "model.onnx") as r, pytest.raises(UsageError) as e:
        r.run({"sensors": x})
    assert str(e.value) == ("model.onnx: input 'sensors' takes [None, 6, 3]: sequences of exactly 6 steps (axis 1 is "
                            "fixed), got 4: feed 6 steps (the source model's input is built for exactly 6)")
    # the twin: the same artifact of a source with a free length (fixed by --seq-len at export)
    shutil.copytree(fixed64 / "ex", tmp_path / "ex")
    man = json.loads((tmp_path / "ex" / "manifest.json").read_text())
    man["model"]["inputs"][0]["shape"] = [None, None, 3]
    (tmp_path / "ex" / "manifest.json").write_text(json.dumps(man))
    with open_runner(tmp_path / "ex" / "model.onnx") as r, pytest.raises(UsageError) as e:
        r.run({"sensors": x})
    assert "feed 6 steps, or re-export with `--seq-len 4`" in str(e.value)


def test_9_deploy_ends_with_the_readme_install_commands(tok):
    root, cli, bundles = tok
    line = next(ln for ln in cli.output.splitlines() if ln.startswith("on the Pi"))
    commands = line.split("): ", 1)[1].split(" && ")
    readme = (bundles["onnxruntime"] / "README.md").read_text()
    assert commands == ["python3 -m venv .venv", ".venv/bin/pip install -r requirements.txt",
                        ".venv/bin/python predict.py --self-test"]
    assert all(c in readme for c in commands)


def test_10_a_bundle_without_a_service_says_nothing_about_the_services_user(tok):
    from rnnedge.deployment import SERVICE, _user_note

    _, _, bundles = tok
    b = bundles["litert"]
    readme = (b / "README.md").read_text()
    assert not (b / SERVICE).exists() and "service runs as" not in readme
    assert "# you: the user who runs predict.py" in readme
    assert _user_note(None, True) == "you: the service runs as the user who installs it"
    assert _user_note("alice", False) == "the user who runs predict.py (deploy --user)"


def test_11_npz_names_are_checked_for_a_single_input(tok):
    from rnnedge.errors import UsageError
    from rnnedge.runtime.io import read_inputs

    root, _, bundles = tok
    line = _one_error_line(predict(bundles["litert"], "--input", root / "wrongname.npz"), 2)
    assert line == ("error: wrongname.npz: names do not match the model's: missing ['tokens']; unknown ['x'] "
                    "(the model takes ['tokens'])")
    assert predict(bundles["litert"], "--input", root / "unnamed.npz").returncode == 0
    with pytest.raises(UsageError, match=r"missing \['tokens'\]; unknown \['x'\]"):
        read_inputs(root / "wrongname.npz", ["tokens"])
    assert list(read_inputs(root / "unnamed.npz", ["tokens"])) == ["tokens"]


def test_13_predict_usage_errors_are_one_line_and_summaries_rounded(tok):
    root, _, bundles = tok
    b = bundles["onnxruntime"]
    assert _one_error_line(predict(b, "--input", root / "ok.npy", "--threads", "0"), 2) == \
        "error: argument --threads: 0 is not >= 1 (python predict.py --help)"
    assert _one_error_line(predict(b), 2).startswith("error: one of the arguments --input")
    r = predict(b, "--input", root / "ok.npy")
    assert r.returncode == 0 and '"reg": [' in r.stdout and '"cls": [' in r.stdout, r.stdout
    numbers = re.findall(r"-?\d+\.\d+(?:e-?\d+)?", r.stdout.split("; output ", 1)[1].split("; onnxruntime")[0])
    assert numbers and all(float(f"{float(n):.4g}") == float(n) for n in numbers), r.stdout  # 4 digits


def test_1_2_predict_and_the_runners_say_the_same():
    """predict.py cannot import rnnedge: its copy of the id rule gives the runners' message."""
    from rnnedge.errors import UsageError
    from rnnedge.runtime.base import check_token_ids

    mod = _predict_module(Path(__file__).resolve().parents[1] / "rnnedge" / "deployment" / "templates")
    spec = {"name": "ids", "dtype": "int64", "vocab_size": 9}
    for x in (np.array([[1, 9, 12]]), np.array([[-3, 2]]), np.array([[2.0, np.nan]]),
              np.array([[0.25, 1]], np.float32)):
        with pytest.raises(UsageError) as ours:
            check_token_ids("m.onnx", {"ids": 9}, {"ids": x})
        with pytest.raises(mod.InputError) as theirs:
            mod.check_ids(spec, x)
        assert str(ours.value) == "m.onnx: " + str(theirs.value)
    for x in (np.array([[0, 8]]), np.array([[3.0, 1.0]])):  # in range: both take it
        check_token_ids("m.onnx", {"ids": 9}, {"ids": x})
        mod.check_ids(spec, x)
