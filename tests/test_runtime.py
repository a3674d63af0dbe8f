"""Runners (onnxruntime, LiteRT, Keras), input/output files and `rnnedge run`.

One tiny Keras LSTM (T=6, 3 features, 4 units, Dense 2) is built once; the same weights are
written as a native ONNX LSTM graph (onnx.helper), a fixed-batch TFLite file and a .keras
file, so every runner is checked against the Keras outputs.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from rnnedge.errors import MissingDependencyError, RnnedgeError, UsageError
from rnnedge.runtime import open_runner

T, F, H, OUT, TFL_BATCH = 6, 3, 4, 2, 2


def keras_lstm_to_onnx(model, path, *, ir_version=10, opset=17):
    """The Keras LSTM(H) -> Dense model as one native ONNX LSTM node (Keras gates i,f,c,o -> ONNX i,o,f,c)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    lstm = next(layer for layer in model.layers if type(layer).__name__ == "LSTM")
    dense = model.layers[-1]
    k, rk, b = [np.asarray(w) for w in lstm.get_weights()]
    h = rk.shape[0]

    def reorder(w):  # columns grouped i,f,c,o -> i,o,f,c
        i, f, c, o = np.split(w, 4, axis=-1)
        return np.concatenate([i, o, f, c], axis=-1)

    W = reorder(k).T[None].astype(np.float32)
    R = reorder(rk).T[None].astype(np.float32)
    B = np.concatenate([reorder(b), np.zeros(4 * h)])[None].astype(np.float32)
    Wd, bd = [np.asarray(w, np.float32) for w in dense.get_weights()]
    nodes = [
        helper.make_node("Transpose", ["feats"], ["xt"], perm=[1, 0, 2]),
        helper.make_node("LSTM", ["xt", "W", "R", "B"], ["Y", "Y_h"], hidden_size=h, name="lstm"),
        helper.make_node("Squeeze", ["Y_h", "ax0"], ["hlast"]),
        helper.make_node("MatMul", ["hlast", "Wd"], ["mm"]),
        helper.make_node("Add", ["mm", "bd"], ["head"]),
    ]
    inits = [numpy_helper.from_array(a, n) for a, n in
             [(W, "W"), (R, "R"), (B, "B"), (Wd, "Wd"), (bd, "bd"), (np.array([0], np.int64), "ax0")]]
    g = helper.make_graph(
        nodes, "lstm", [helper.make_tensor_value_info("feats", TensorProto.FLOAT, ["batch", "time", k.shape[0]])],
        [helper.make_tensor_value_info("head", TensorProto.FLOAT, ["batch", Wd.shape[1]])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = ir_version
    onnx.checker.check_model(m)
    onnx.save(m, str(path))
    return path


def build_artifacts(folder, *, tflite_batch=TFL_BATCH):
    """(keras model, {"keras": path, "onnx": path, "tflite": path, "tflite_dyn": path})."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    inp = keras.Input((T, F), name="feats")
    out = keras.layers.Dense(OUT, name="head")(keras.layers.LSTM(H)(inp))
    model = keras.Model(inp, out)
    paths = {"keras": folder / "reference.keras", "onnx": folder / "model.onnx",
             "tflite": folder / "model.tflite", "tflite_dyn": folder / "dense.tflite"}
    model.save(paths["keras"])
    keras_lstm_to_onnx(model, paths["onnx"])
    fixed_in = keras.Input((T, F), batch_size=tflite_batch, name="feats")
    fixed = keras.Model(fixed_in, model.layers[-1](model.layers[-2](fixed_in)))
    paths["tflite"].write_bytes(tf.lite.TFLiteConverter.from_keras_model(fixed).convert())
    d_in = keras.Input((None, F), name="feats")  # Dense only: free batch and time axes
    dense = keras.Model(d_in, keras.layers.Dense(OUT, name="proj")(d_in))
    paths["tflite_dyn"].write_bytes(tf.lite.TFLiteConverter.from_keras_model(dense).convert())
    return model, dense, paths


@pytest.fixture(scope="module")
def arts(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rt")
    model, dense, paths = build_artifacts(folder)
    x = np.random.default_rng(1).standard_normal((TFL_BATCH, T, F)).astype(np.float32)
    ref = np.asarray(model(x, training=False))
    return {"model": model, "dense": dense, "paths": paths, "x": x, "ref": ref, "folder": folder}


# ------------------------------------------------------------------ onnxruntime
def test_onnx_runner_matches_keras_and_reports_placement(arts):
    with open_runner(arts["paths"]["onnx"], threads=1) as r:
        assert [i.name for i in r.inputs] == ["feats"] and r.inputs[0].dtype == "float32"
        assert r.inputs[0].shape == ["batch", "time", F]
        out = r.run({"feats": arts["x"]})
        assert list(out) == ["head"]
        np.testing.assert_allclose(out["head"], arts["ref"], atol=1e-5)
        assert r.info["provider"] == "CPUExecutionProvider" and r.info["threads"] == 1
        pl = r.node_placement({"feats": arts["x"]})
        assert pl["node_placement"] == {"CPUExecutionProvider": sum(pl["node_placement"].values())}
        assert sum(pl["node_placement"].values()) >= 3
        assert pl["recurrent_placement"] == {"lstm": {"op": "LSTM", "provider": "CPUExecutionProvider"}}
        # a different batch and length through the same session
        x2 = np.random.default_rng(2).standard_normal((3, 9, F)).astype(np.float32)
        import keras

        free_in = keras.Input((None, F))  # the same layers on a free time axis
        free = keras.Model(free_in, arts["model"].layers[-1](arts["model"].layers[-2](free_in)))
        np.testing.assert_allclose(r.run([x2])["head"], np.asarray(free(x2)), atol=1e-5)


def test_onnx_io_binding_path(arts):
    """I/O binding on the CPU device: same outputs, the host copies timed apart."""
    with open_runner(arts["paths"]["onnx"], io_binding=True) as r:
        h2d = r.bind({"feats": arts["x"]})
        r.run_bound()
        out = r.fetch_bound()
        np.testing.assert_allclose(out["head"], arts["ref"], atol=1e-5)
        assert h2d >= 0 and r.info["device_to_host_ms"] >= 0 and r.info["device"] == "cpu"
        np.testing.assert_allclose(r.run({"feats": arts["x"]})["head"], arts["ref"], atol=1e-5)


@pytest.mark.parametrize("provider, package", [
    ("cuda", "onnxruntime-gpu"), ("tensorrt", "onnxruntime-gpu"), ("openvino", "onnxruntime-openvino"),
    ("dml", "onnxruntime-directml"), ("xnnpack", "XNNPACK"),
])
def test_missing_provider_names_the_package(arts, provider, package):
    import onnxruntime as ort

    from rnnedge.runtime.onnx import resolve_provider

    if resolve_provider(provider)[0] in ort.get_available_providers():
        pytest.skip(f"this onnxruntime has the {provider} EP")
    with pytest.raises(MissingDependencyError) as ei:
        open_runner(arts["paths"]["onnx"], provider=provider).load()
    msg = str(ei.value)
    assert package in msg and "CPUExecutionProvider" in msg and ei.value.exit_code == 3


def test_silent_fallback_is_refused(arts, monkeypatch):
    """onnxruntime only warns when an EP cannot be used: the runner must raise instead."""
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("CUDA EP really present")
    real = ort.get_available_providers
    monkeypatch.setattr(ort, "get_available_providers", lambda: real() + ["CUDAExecutionProvider"])
    with pytest.raises(MissingDependencyError, match="fell back to CPUExecutionProvider"):
        open_runner(arts["paths"]["onnx"], provider="cuda").load()


def test_unknown_provider_is_a_usage_error(arts):
    with pytest.raises(UsageError, match="unknown provider 'gpu'"):
        open_runner(arts["paths"]["onnx"], provider="gpu").load()


# ------------------------------------------------------------------ TFLite
def test_tflite_runner_names_and_parity(arts):
    with open_runner(arts["paths"]["tflite"]) as r:
        assert r.runtime == "litert" and r.info["xnnpack"] is True
        assert [i.name for i in r.inputs] == ["feats"]  # not serving_default_feats:0
        assert r.inputs[0].shape == [TFL_BATCH, T, F]
        out = r.run({"feats": arts["x"]})
        np.testing.assert_allclose(next(iter(out.values())), arts["ref"], atol=1e-5)
        with pytest.raises(UsageError, match=r"takes \[2, 6, 3\]: its batch size is fixed at 2, got 1 row: "
                                             r"feed 2 rows at a time, or re-export with `rnnedge export \.\.\. "
                                             r"--batch-size 1`"):
            r.run({"feats": arts["x"][:1]})


def test_tflite_resizes_free_axes_and_builtin_resolver(arts):
    x = np.random.default_rng(3).standard_normal((3, 11, F)).astype(np.float32)
    want = np.asarray(arts["dense"](x))
    for xnn in (True, False):
        with open_runner(arts["paths"]["tflite_dyn"], xnnpack=xnn, threads=1) as r:
            assert r.inputs[0].shape == [None, None, F]
            out = r.run({"feats": x})
            np.testing.assert_allclose(next(iter(out.values())), want, atol=1e-5)
            assert r.info["resized_to"] == {"feats": [3, 11, F]}
            assert r.info["provider"] == ("xnnpack" if xnn else "builtin")


@pytest.mark.parametrize("style", ["plain", "converters.tflite"])
def test_tflite_uses_manifest_names(arts, tmp_path, style):
    import shutil

    p = tmp_path / "model.tflite"
    shutil.copy(arts["paths"]["tflite"], p)
    if style == "plain":  # just the Keras names
        ins = [{"name": "series", "shape": [2, T, F], "dtype": "float32"}]
        outs = [{"name": "head", "shape": [2, OUT], "dtype": "float32"}]
    else:  # interpreter name + signature name + Keras name, as converters.tflite writes them
        ins = [{"name": "serving_default_feats:0", "signature_name": "feats", "keras_name": "series",
                "shape": [2, T, F], "dtype": "float32"}]
        outs = [{"name": "StatefulPartitionedCall:0", "signature_name": "output_0", "keras_name": "head",
                 "shape": [2, OUT], "dtype": "float32"}]
    (tmp_path / "manifest.json").write_text(json.dumps({"artifacts": {"model.tflite": {
        "format": "tflite", "inputs": ins, "outputs": outs}}}))
    with open_runner(p) as r:
        assert [i.name for i in r.inputs] == ["series"] and [o.name for o in r.outputs] == ["head"]
        np.testing.assert_allclose(r.run({"series": arts["x"]})["head"], arts["ref"], atol=1e-5)
        with pytest.raises(UsageError, match=r"missing input\(s\) \['series'\]"):
            r.run({"feats": arts["x"]})


def test_tflite_unknown_interpreter(arts):
    with pytest.raises(UsageError, match="unknown TFLite interpreter"):
        open_runner(arts["paths"]["tflite"], interpreter="coral").load()


# ------------------------------------------------------------------ Keras
def test_keras_runner_output_names_and_parity(arts):
    with open_runner(arts["paths"]["keras"]) as r:
        assert [o.name for o in r.outputs] == ["head"] and [i.name for i in r.inputs] == ["feats"]
        np.testing.assert_allclose(r.run({"feats": arts["x"]})["head"], arts["ref"], atol=1e-6)
    with open_runner(arts["paths"]["keras"], mode="call") as r:
        np.testing.assert_allclose(r.run({"feats": arts["x"]})["head"], arts["ref"], atol=1e-6)


def test_bad_files_give_clear_errors(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(RnnedgeError, match="could not create a session"):
        open_runner(bad).load()
    with pytest.raises(UsageError, match="not a known artifact"):
        open_runner(tmp_path / "model.pb")


# ------------------------------------------------------------------ edge path
def test_edge_path_never_imports_tensorflow(arts):
    code = f"""
import sys, numpy as np
import rnnedge.runtime, rnnedge.runtime.onnx, rnnedge.runtime.tflite, rnnedge.runtime.io, rnnedge.benchmarking
import rnnedge.cli.run, rnnedge.cli.bench
from rnnedge.runtime import open_runner
x = np.zeros(({TFL_BATCH}, {T}, {F}), np.float32)
for p in [{str(arts['paths']['onnx'])!r}, {str(arts['paths']['tflite'])!r}]:
    with open_runner(p) as r:
        r.run({{r.inputs[0].name: x}})
from rnnedge.benchmarking import bench
bench([{str(arts['paths']['onnx'])!r}], runs=2, warmup=1)
bad = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'tf_keras', 'tf2onnx'))
print('HEAVY', bad)
"""
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "HEAVY []" in p.stdout, p.stdout


# ------------------------------------------------------------------ input / output files and `rnnedge run`
def test_read_inputs_formats_and_errors(tmp_path):
    from rnnedge.runtime.base import TensorInfo
    from rnnedge.runtime.io import read_inputs, write_outputs

    one = [TensorInfo("feats", [None, T, F], "float32")]
    two = [TensorInfo("enc", [None, 4], "int32"), TensorInfo("dec", [None, 4], "int32")]
    a = np.arange(8, dtype=np.int64).reshape(2, 4)
    np.save(tmp_path / "a.npy", a.astype(np.float64))
    got = read_inputs(tmp_path / "a.npy", one)
    assert got["feats"].dtype == np.float32 and got["feats"].shape == (2, 4)
    with pytest.raises(UsageError, match="holds one array but the model takes 2 inputs"):
        read_inputs(tmp_path / "a.npy", two)
    np.savez(tmp_path / "two.npz", enc=a, dec=a + 1)
    got = read_inputs(tmp_path / "two.npz", two)
    assert got["dec"].dtype == np.int32 and got["dec"][0, 0] == 1
    np.savez(tmp_path / "wrong.npz", enc=a, decoder=a)
    with pytest.raises(UsageError, match=r"missing \['dec'\]; unknown \['decoder'\]"):
        read_inputs(tmp_path / "wrong.npz", two)
    (tmp_path / "in.json").write_text(json.dumps({"enc": a.tolist(), "dec": (a + 0.5).tolist()}))
    with pytest.raises(UsageError, match=r"'dec' takes int32 token ids, got 0.5 at \[0, 0\]: not a whole number"):
        read_inputs(tmp_path / "in.json", two)
    (tmp_path / "bare.json").write_text(json.dumps([[1, 2], [3, 4]]))
    assert read_inputs(tmp_path / "bare.json", one)["feats"].tolist() == [[1, 2], [3, 4]]
    with pytest.raises(UsageError, match="unknown input file type '.csv'"):
        (tmp_path / "x.csv").write_text("1")
        read_inputs(tmp_path / "x.csv", one)
    outs = {"y": np.ones((2, 3), np.float32), "z": np.zeros(2)}
    for ext in ("npz", "json"):
        write_outputs(tmp_path / f"o.{ext}", outs)
    assert np.load(tmp_path / "o.npz")["y"].shape == (2, 3)
    assert json.loads((tmp_path / "o.json").read_text())["z"] == [0.0, 0.0]
    with pytest.raises(UsageError, match="has 2 outputs"):
        write_outputs(tmp_path / "o.npy", outs)


@pytest.fixture(scope="module")
def input_files(arts):
    d = arts["folder"]
    np.save(d / "x.npy", arts["x"])
    np.savez(d / "x.npz", feats=arts["x"])
    (d / "x.json").write_text(json.dumps({"feats": arts["x"].tolist()}))
    np.savez(d / "wrong.npz", series=arts["x"])
    return d


@pytest.mark.parametrize("kind, ext", [("onnx", "npy"), ("onnx", "npz"), ("onnx", "json"),
                                       ("tflite", "json"), ("tflite", "npy"), ("keras", "npz")])
def test_cli_run_inputs_and_outputs(arts, input_files, kind, ext):
    from rnnedge.cli.run import command

    out = input_files / f"out_{kind}_{ext}.npz"
    res = CliRunner().invoke(command, [str(arts["paths"][kind]), "--input", str(input_files / f"x.{ext}"),
                                       "--output", str(out), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout.strip().splitlines()[-1])
    (name, o), = doc["outputs"].items()
    assert o["shape"] == [TFL_BATCH, OUT]
    np.testing.assert_allclose(np.asarray(o["data"]), arts["ref"], atol=1e-5)
    np.testing.assert_allclose(np.load(out)[name], arts["ref"], atol=1e-5)


def test_cli_run_summary_and_errors(arts, input_files):
    from rnnedge.cli.run import command

    res = CliRunner().invoke(command, [str(arts["paths"]["onnx"]), "-i", str(input_files / "x.npz"),
                                       "-o", str(input_files / "o.json")])
    assert res.exit_code == 0, res.output
    assert "head" in res.stdout and "[2, 2]" in res.stdout and "CPUExecutionProvider" in res.stdout
    assert json.loads((input_files / "o.json").read_text())["head"][0][0] == pytest.approx(arts["ref"][0, 0], abs=1e-5)
    res = CliRunner().invoke(command, [str(arts["paths"]["onnx"]), "-i", str(input_files / "wrong.npz")])
    assert res.exit_code == 2
    assert "input names do not match the model: missing ['feats']; unknown ['series']" in res.stderr
    res = CliRunner().invoke(command, [str(arts["paths"]["onnx"]), "-i", str(input_files / "x.npz"),
                                       "--provider", "cuda"])
    assert res.exit_code == 3 and "pip install onnxruntime-gpu" in res.stderr
    # the command in backticks, what else it needs outside them
    assert "install it with `pip install onnxruntime-gpu` (and a CUDA 12/13 + cuDNN 9 runtime)" in res.stderr


def _run_cli(*args):
    """`rnnedge run ...` through the command group, as the console script runs it (library errors ->
    exit code, Python warnings -> one `warning:` line)."""
    from rnnedge.cli import cli

    return CliRunner().invoke(cli, ["run", *map(str, args)])


@pytest.mark.parametrize("kind, shape, message", [
    # onnxruntime would say "INVALID_ARGUMENT : Got invalid dimensions for input: feats for the following indices"
    ("onnx", (2, T, F + 1), f"model.onnx: input 'feats' takes [None, None, {F}]: the model takes {F} features "
                            f"on axis 2, got {F + 1} (shape [2, {T}, {F + 1}])"),
    ("onnx", (T, F), f"model.onnx: input 'feats' takes [None, None, {F}], got [{T}, {F}]: one row without its "
                     f"batch axis; add it (shape [1, {T}, {F}])"),
    ("onnx", (16, 20), f"model.onnx: input 'feats' takes [None, None, {F}] (rank 3), got shape [16, 20] (rank 2)"),
    ("tflite", (TFL_BATCH, T - 1, F), f"model.tflite: input 'feats' takes [{TFL_BATCH}, {T}, {F}]: sequences of "
                                      f"exactly {T} steps (axis 1 is fixed), got {T - 1}: feed {T} steps, or "
                                      f"re-export with `--seq-len {T - 1}`"),
    ("tflite", (TFL_BATCH, T, 1), f"model.tflite: input 'feats' takes [{TFL_BATCH}, {T}, {F}]: the model takes "
                                  f"{F} features on axis 2, got 1"),
    ("tflite", (5, T, F), f"model.tflite: input 'feats' takes [{TFL_BATCH}, {T}, {F}]: its batch size is fixed at "
                          f"{TFL_BATCH}, got 5 rows: feed {TFL_BATCH} rows at a time, or re-export with "
                          f"`rnnedge export ... --batch-size 5`"),
])
def test_run_checks_feeds_against_the_model_before_running(arts, tmp_path, kind, shape, message):
    """One line naming the input, the axis, what the model takes and what was given (exit 2),
    before the runtime sees the feeds; the same shapes with the right sizes run (the twin)."""
    np.save(tmp_path / "x.npy", np.zeros(shape, np.float32))
    res = _run_cli(arts["paths"][kind], "-i", tmp_path / "x.npy")
    assert res.exit_code == 2, res.output
    assert res.stderr.startswith(f"error: {message}") and len(res.stderr.splitlines()) == 1, res.stderr
    assert "ONNXRuntimeError" not in res.stderr and "re-export with that axis free" not in res.stderr
    np.save(tmp_path / "ok.npy", np.zeros((TFL_BATCH, T, F), np.float32))
    assert _run_cli(arts["paths"][kind], "-i", tmp_path / "ok.npy").exit_code == 0


def test_run_bad_input_files_exit_2_and_say_what_they_are(arts, tmp_path):
    """A file named .npy that is not numpy data: exit 2 saying what it is (never 'pickled data'
    for a text file, never an internal error)."""
    onnx = arts["paths"]["onnx"]
    (tmp_path / "garbage.npy").write_text("hello, this is a text file\n")
    np.save(tmp_path / "objects.npy", np.array([[1, 2], [3]], dtype=object), allow_pickle=True)
    (tmp_path / "empty.npy").write_bytes(b"")
    whole = _npy_bytes(arts["x"])
    (tmp_path / "cut.npy").write_bytes(whole[:len(whole) // 2])
    want = {"garbage.npy": "garbage.npy: a text file (it starts 'hello, this is a text file'), not a numpy .npy/.npz file",
            "objects.npy": "objects.npy: holds Python objects (a pickled object array), not numbers",
            "empty.npy": "empty.npy: an empty file, not a numpy .npy/.npz file",
            "cut.npy": "cut.npy: a truncated or damaged numpy file"}
    for name, message in want.items():
        res = _run_cli(onnx, "-i", tmp_path / name)
        assert res.exit_code == 2 and res.stderr.startswith(f"error: {message}"), (name, res.stderr)
        assert "internal error" not in res.stderr and "pickled" not in res.stderr.replace("a pickled object", "")


def _npy_bytes(a) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def test_run_warns_about_nan_inputs(arts, tmp_path):
    x = arts["x"].copy()
    x[0, 2, 1] = np.nan
    x[1, 0, 0] = np.inf
    np.save(tmp_path / "nan.npy", x)
    res = _run_cli(arts["paths"]["onnx"], "-i", tmp_path / "nan.npy")
    assert res.exit_code == 0, res.output
    assert res.stderr == ("warning: nan.npy: input 'feats' holds 2 NaN/infinite value(s) of 36: runtimes give "
                          "different predictions for them (a model has no defined result)\n")
    np.save(tmp_path / "fine.npy", arts["x"])  # the twin: finite values, no warning
    assert _run_cli(arts["paths"]["onnx"], "-i", tmp_path / "fine.npy").stderr == ""


def test_run_refuses_what_it_cannot_do_before_running(arts, input_files, tmp_path):
    """An output file type that cannot hold the outputs, or an explicit runtime option the artifact
    does not run on: exit 2, nothing written, nothing run."""
    x = input_files / "x.npy"
    res = _run_cli(arts["paths"]["onnx"], "-i", x, "-o", tmp_path / "out.txt")
    assert res.exit_code == 2 and "--output out.txt: unknown output file type '.txt'" in res.stderr
    assert not list(tmp_path.iterdir())
    res = _run_cli(arts["paths"]["onnx"], "-i", x, "--interpreter", "litert")
    assert res.exit_code == 2 and "--interpreter litert: a TFLite interpreter cannot run" in res.stderr
    res = _run_cli(arts["paths"]["tflite"], "-i", x, "--provider", "cuda")
    assert res.exit_code == 2 and "--provider cuda: execution providers are onnxruntime's" in res.stderr
    res = _run_cli(arts["paths"]["tflite"], "-i", x, "--threads", "0")
    assert res.exit_code == 2 and "'--threads': 0 is not in the range x>=1" in res.stderr
