"""TF.js layers models in (converters/tfjs/importer.py): built, saved and run by real TF.js.

One Node process (tests/tfjs_fixtures.js, pure @tensorflow/tfjs 4.22 from the shipped runner)
builds every model with seeded weights, saves it with a custom save handler (model.json +
shards, quantized copies written like tensorflowjs_converter does) and predicts on fixed
inputs. Each model is imported, exported to ONNX and TFLite, run in onnxruntime and LiteRT
directly, and compared with TF.js's own predictions (max abs error <= 1e-5). Refusals are
checked to guard real differences (the same model rebuilt anyway differs from TF.js).
Tests that need Node skip without node / rnnedge/runtime/node/node_modules
(.ci/setup_node.sh); the file-format tests below them run anywhere.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("keras")

from conftest import NO_TFJS_NODE, tfjs_node_ok  # noqa: E402
from converters.registry import ExportOptions, get_exporter  # noqa: E402
from converters.tfjs import importer  # noqa: E402
from rnnedge.errors import ConversionError, MissingDependencyError, UsageError  # noqa: E402
from rnnedge.runtime.tfjs import check_node_runner  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TOL = 1e-5


needs_node = pytest.mark.skipif(not tfjs_node_ok(), reason=NO_TFJS_NODE)

# the brief's list (ONNX + TFLite vs TF.js), plus a few more shapes of model
PARITY = ["stacked_lstm", "gru_default", "simplernn_relu_td", "lstm_no_forget_bias", "bidi_concat",
          "bidi_sum", "bidi_mul", "bidi_ave", "bidi_none", "embedding_mask", "go_backwards",
          "functional_two_inputs", "quantized_uint8", "embedding_mask_bidi", "seq2seq_states",
          "free_length", "masking_lstm", "zoo"]


@pytest.fixture(scope="module")
def tfjs_models(tmp_path_factory):
    if not tfjs_node_ok():
        pytest.skip(NO_TFJS_NODE)
    node, nd = check_node_runner()
    root = tmp_path_factory.mktemp("tfjs_models")
    p = subprocess.run([node, str(REPO / "tests" / "tfjs_fixtures.js"), str(nd / "node_modules"), str(root)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert json.loads((root / "index.json").read_text())["tfjs_version"].startswith("4.22")
    return root


def _expected(root: Path, case: str):
    e = json.loads((root / case / "expected.json").read_text())
    xs = [np.asarray(i["data"], dtype=np.float32).reshape(i["shape"]) for i in e["inputs"]]
    ys = [np.asarray(o["data"], dtype=np.float32).reshape(o["shape"]) for o in e["outputs"]]
    ws = {w["name"]: np.asarray(w["data"], dtype=np.float32).reshape(w["shape"]) for w in e.get("weights", [])}
    return xs, ys, ws


@pytest.fixture(scope="module")
def exports(tfjs_models, tmp_path_factory):
    """case -> (TfjsImport, {format: manifest entry}, folder); exported on first use."""
    cache: dict = {}
    root = tmp_path_factory.mktemp("tfjs_import_exports")

    def get(case):
        if case not in cache:
            imp = importer.import_model(tfjs_models / case / "model.json")
            out = root / case
            entries = {}
            for fmt in ("onnx", "tflite"):
                entries.update(get_exporter(fmt)(imp.model, out, ExportOptions()))
            cache[case] = (imp, entries, out)
        return cache[case]

    return get


def _run_onnx(path: Path, xs: dict) -> list:
    import onnxruntime as ort

    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in s.get_inputs()] == list(xs)
    return s.run(None, {i.name: xs[i.name].astype(np.int32 if "int" in i.type else np.float32)
                        for i in s.get_inputs()})


def _run_litert(path: Path, entry: dict, xs_by_name: dict) -> list:
    """LiteRT's own Interpreter, one row at a time (the file has batch 1), a fresh interpreter per
    row (a fused LSTM keeps its state in variable tensors between invokes: RUNTIME_FACTS.md)."""
    from ai_edge_litert import interpreter as litert

    rows = len(next(iter(xs_by_name.values())))
    got: dict = {}
    for r in range(rows):
        it = litert.Interpreter(model_path=str(path), num_threads=1)
        ins, outs = it.get_input_details(), it.get_output_details()
        for d, e in zip(ins, entry["inputs"]):
            x = xs_by_name[e["keras_name"]][r:r + 1]
            it.resize_tensor_input(d["index"], list(x.shape), strict=False)
        it.allocate_tensors()
        for d, e in zip(ins, entry["inputs"]):
            it.set_tensor(d["index"], xs_by_name[e["keras_name"]][r:r + 1].astype(d["dtype"]))
        it.invoke()
        for d, e in zip(outs, entry["outputs"]):
            got.setdefault(e["keras_index"], []).append(it.get_tensor(d["index"]))
    return [np.concatenate(got[k]) for k in sorted(got)]


def _onnx_ops(path: Path) -> list:
    import onnx

    return list(onnx.load(str(path)).graph.node)


@needs_node
@pytest.mark.parametrize("case", PARITY)
def test_onnx_and_tflite_match_tfjs(case, tfjs_models, exports):
    imp, entries, out = exports(case)
    xs, ys, _ = _expected(tfjs_models, case)
    xs = {t.name: x.astype(str(t.dtype)) for x, t in zip(xs, imp.model.inputs)}
    onnx_ys = _run_onnx(out / "model.onnx", xs)
    tfl_ys = _run_litert(out / "model.tflite", entries["model.tflite"], xs)
    assert len(onnx_ys) == len(tfl_ys) == len(ys)
    for fmt, got in (("onnx", onnx_ys), ("tflite", tfl_ys)):
        for i, (g, want) in enumerate(zip(got, ys)):
            assert g.shape == want.shape, (fmt, i)
            err = float(np.max(np.abs(g - want)))
            assert err <= TOL, f"{case} {fmt} output {i}: max abs error {err:.3g} vs TF.js"
    kinds = {n.op_type for n in _onnx_ops(out / "model.onnx")}
    assert "Loop" not in kinds  # rnnedge's own recurrent lowerings (native op, or MatMul + Scan / If)
    assert entries["model.onnx"]["recurrent_lowering"]
    assert kinds & {"LSTM", "GRU", "RNN", "Scan", "If"}


@needs_node
def test_tfjs_hard_sigmoid_becomes_onnx_hardsigmoid_0_2(tfjs_models, exports):
    """TF.js's default recurrentActivation inside the native ops: HardSigmoid(0.2, 0.5), not 1/6."""
    _, _, out = exports("gru_default")
    nodes = _onnx_ops(out / "model.onnx")
    gru = next(n for n in nodes if n.op_type == "GRU")
    attrs = {a.name: a for a in gru.attribute}
    assert list(attrs["activations"].strings) == [b"HardSigmoid", b"Tanh"]
    assert list(attrs["activation_alpha"].floats) == pytest.approx([0.2])
    assert list(attrs["activation_beta"].floats) == pytest.approx([0.5])
    assert attrs["linear_before_reset"].i == 0   # TF.js GRU = Keras reset_after=False
    hs = [n for n in nodes if n.op_type == "HardSigmoid"]   # Dense(activation: 'hardSigmoid')
    assert hs and {a.name: a.f for a in hs[0].attribute} == pytest.approx({"alpha": 0.2, "beta": 0.5})


@needs_node
@pytest.mark.parametrize("case", ["quantized_uint8", "quantized_uint16", "quantized_float16"])
def test_quantized_weights_decode_bit_exact_like_tfjs(case, tfjs_models):
    mj = json.loads((tfjs_models / case / "model.json").read_text())
    saved, dtypes, files = importer.read_weights(mj, tfjs_models / case)
    _, ys, tfjs_weights = _expected(tfjs_models, case)
    assert dtypes == {case.split("_")[1]: len(saved)}
    assert [n for n, _ in saved] == list(tfjs_weights)
    for name, w in saved:
        assert w.dtype == np.float32 and np.array_equal(w, tfjs_weights[name]), name
    imp = importer.import_model(tfjs_models / case)
    xs, _, _ = _expected(tfjs_models, case)
    got = imp.model([x.astype(str(t.dtype)) for x, t in zip(xs, imp.model.inputs)][0], training=False)
    assert float(np.max(np.abs(np.asarray(got) - ys[0]))) <= TOL
    if case == "quantized_uint8":
        assert len(files) == 4  # several shards, one weight split across two of them


REFUSALS = {
    "refuse_prelu": "(PReLU) cannot be rebuilt from TF.js: rnnedge rebuilds",
    "refuse_stale_mask": "TF.js's executor runs it with the mask of 'embedding_Embedding",
    "refuse_masked_average": "TF.js averages every time step of a masked sequence",
    "refuse_masked_bidi_sequences": "reads the masked steps: TF.js repeats the last output there",
}


@needs_node
@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_refusals_name_the_layer_and_guard_a_real_difference(case, tfjs_models, monkeypatch):
    with pytest.raises(ConversionError) as ei:
        importer.import_model(tfjs_models / case)
    msg = str(ei.value)
    assert REFUSALS[case] in msg and ei.value.layer and f"'{ei.value.layer}'" in msg
    if case == "refuse_prelu":
        return
    # twin: rebuilt anyway, the model does differ from what TF.js computes
    monkeypatch.setattr(importer, "_refuse", lambda layer, why: None)
    imp = importer.import_model(tfjs_models / case)
    xs, ys, _ = _expected(tfjs_models, case)
    got = np.asarray(imp.model(xs[0].astype("int32"), training=False))
    assert float(np.max(np.abs(got - ys[0]))) > 1e-3


@needs_node
@pytest.mark.parametrize("case", ["stacked_lstm", "bidi_none"])
def test_runner_opens_a_tfjs_model_saved_by_tfjs(case, tfjs_models):
    """`rnnedge run/bench` on the user's own model.json: a Sequential (no inputNames once loaded),
    two outputs of one layer (distinct names)."""
    from rnnedge.runtime import open_runner

    xs, ys, _ = _expected(tfjs_models, case)
    with open_runner(tfjs_models / case) as r:
        out = r.run({i.name: x for i, x in zip(r.inputs, xs)})
        assert len(out) == len(ys) == len(r.outputs)
        for o, want in zip(r.outputs, ys):
            assert np.array_equal(out[o.name], want)


@pytest.fixture(scope="module")
def cli_export(tfjs_models, tmp_path_factory):
    """`rnnedge export model.json -f onnx,tflite,tfjs` of a TF.js model (validated at export)."""
    from click.testing import CliRunner

    from rnnedge.cli import cli

    src = tfjs_models / "embedding_mask_bidi" / "model.json"
    out = tmp_path_factory.mktemp("cli") / "exp"
    r = CliRunner().invoke(cli, ["export", str(src), "-f", "onnx,tflite,tfjs", "-o", str(out), "--json"])
    assert r.exit_code == 0, r.output[-3000:]
    return src, out


@needs_node
def test_cli_export_validate_inspect_tfjs_round_trip(tfjs_models, cli_export):
    from click.testing import CliRunner

    from rnnedge.cli import cli

    src, out = cli_export
    man = json.loads((out / "manifest.json").read_text())
    n_weights = len(json.loads(src.read_text())["weightsManifest"][0]["weights"])
    assert man["source"]["kind"] == "tfjs" and man["source"]["weights"] == {"float32": n_weights}
    assert man["artifacts"]["source.tfjs"]["role"] == "reference"
    assert (out / "source.tfjs" / "weights.bin").read_bytes() == (src.parent / "weights.bin").read_bytes()
    for name in ("model.onnx", "model.tflite", "tfjs"):
        parity = man["artifacts"][name]["parity"]
        assert parity["verdict"] == "pass" and parity["reference"].startswith("source.tfjs/model.json"), name
    # the rebuilt model written back as TF.js keeps TF.js's hard sigmoid
    topo = json.dumps(json.loads((out / "tfjs" / "model.json").read_text())["modelTopology"])
    assert '"recurrent_activation": "hardSigmoid"' in topo
    r = CliRunner().invoke(cli, ["validate", str(out), "--reference", "keras", "--samples", "8",
                                 "--no-manifest", "--json", "-"])
    assert r.exit_code == 0, r.output[-2000:]
    assert '"reference": "reference.keras"' in r.output
    r = CliRunner().invoke(cli, ["inspect", str(src), "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.output)
    assert info["source"]["kind"] == "tfjs"
    bidi = next(x for x in info["layers"] if x["type"] == "Bidirectional")
    assert bidi["config"]["layer.reset_after"] is False
    r = CliRunner().invoke(cli, ["inspect", str(tfjs_models / "refuse_prelu")])
    assert r.exit_code == 4 and "p_re_lu_PReLU1" in r.output and "PReLU" in r.output


@needs_node
def test_tfjs_reference_catches_what_reference_keras_cannot(tfjs_models, tmp_path, monkeypatch):
    """Twin of the gate: a rebuild with Keras 3's hard_sigmoid (the classic mistake) passes against
    its own reference.keras but fails against the TF.js original."""
    from rnnedge.exporting import export
    from rnnedge.validation import validate

    monkeypatch.setitem(importer._ACTIVATIONS, "hard_sigmoid", "hard_sigmoid")
    out = tmp_path / "wrong"
    export(tfjs_models / "gru_default", "onnx", out, validate=False)
    bad = validate(out, samples=8, write_manifest=False)
    assert bad["reference"].startswith("source.tfjs/model.json")
    assert bad["artifacts"]["model.onnx"]["verdict"] == "fail", bad["artifacts"]["model.onnx"]
    assert validate(out, samples=8, write_manifest=False, reference="keras")["ok"]


BLOCK_TF = """
import sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('tensorflow', 'keras', 'tf_keras', 'rnnedge', 'converters'):
            raise ImportError(name + ' is not available on the edge')
sys.meta_path.insert(0, _Block())
"""


@needs_node
def test_deploy_of_imported_model_self_tests_without_tensorflow(cli_export, tmp_path):
    from rnnedge.deployment import deploy

    _, out = cli_export
    blocker = tmp_path / "edge_site"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(BLOCK_TF)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PYTHONPATH"] = str(blocker)
    for rt in ("litert", "onnxruntime"):
        d = deploy(out, runtime=rt, out=tmp_path / f"pi-{rt}", tarball=False)
        assert d.manifest["source"]["kind"] == "tfjs"
        p = subprocess.run([sys.executable, str(d.bundle / "predict.py"), "--self-test", "--json"],
                           capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=300)
        assert p.returncode == 0, p.stderr[-2000:]
        assert json.loads(p.stdout)["ok"] is True
        probe = subprocess.run([sys.executable, "-c", "import tensorflow"], env=env, capture_output=True)
        assert probe.returncode != 0


# --------------------------------------------------------------------------- files (no Node)
def _write_model(folder: Path, topology: dict, weights: list[tuple[str, np.ndarray]], *, quant=None,
                 shard_bytes=None, camel=False) -> Path:
    """A model.json + shards the way tf.io.withSaveHandler -> file writing lays them out."""
    folder.mkdir(parents=True, exist_ok=True)
    specs, chunks = [], []
    for name, w in weights:
        specs.append({"name": name, "shape": list(w.shape), "dtype": "float32"})
        chunks.append(np.asarray(w, "<f4").tobytes())
    data = b"".join(chunks)
    size = shard_bytes or len(data)
    paths = []
    for i in range(0, len(data), size):
        p = f"group1-shard{i // size + 1}.bin"
        (folder / p).write_bytes(data[i:i + size])
        paths.append(p)
    if camel:
        topology = _camel(topology)
    mj = {"modelTopology": topology, "format": "layers-model", "generatedBy": "test",
          "convertedBy": None, "weightsManifest": [{"paths": paths, "weights": specs}]}
    (folder / "model.json").write_text(json.dumps(mj))
    return folder / "model.json"


def _camel(obj):
    if isinstance(obj, dict):
        return {"".join([k.split("_")[0]] + [p.capitalize() for p in k.split("_")[1:]]): _camel(v)
                for k, v in obj.items()}
    if isinstance(obj, list):
        return [_camel(v) for v in obj]
    return obj


def _lstm_topology(extra: dict | None = None, cls="LSTM") -> dict:
    cfg = {"name": "rnn", "units": 3, "return_sequences": True, "batch_input_shape": [None, 5, 2]}
    cfg.update(extra or {})
    return {"class_name": "Sequential", "config": {"name": "seq", "layers": [
        {"class_name": cls, "config": cfg},
        {"class_name": "Dense", "config": {"name": "out", "units": 1, "activation": "linear"}}]},
        "keras_version": "tfjs-layers 4.22.0", "backend": "tensor_flow.js"}


def _lstm_weights(rng, gates=4, prefix="rnn"):
    return [(f"{prefix}/kernel", rng.uniform(-1, 1, (2, gates * 3))),
            (f"{prefix}/recurrent_kernel", rng.uniform(-1, 1, (3, gates * 3))),
            (f"{prefix}/bias", rng.uniform(-1, 1, (gates * 3,))),
            ("out/kernel", rng.uniform(-1, 1, (3, 1))), ("out/bias", rng.uniform(-1, 1, (1,)))]


def _predict(model, x):
    return np.asarray(model(x, training=False))


def _np_lstm(x, w, act_rec):
    """TF.js LSTMCell.call in numpy (i, f, c, o gates; recurrent activation given)."""
    k, rk, b = (np.asarray(w[i][1], np.float64) for i in range(3))
    h = c = np.zeros((x.shape[0], 3))
    hs = []
    for t in range(x.shape[1]):
        z = x[:, t] @ k + h @ rk + b
        i, f, g, o = np.split(z, 4, axis=1)
        c = act_rec(f) * c + act_rec(i) * np.tanh(g)
        h = act_rec(o) * np.tanh(c)
        hs.append(h)
    return np.stack(hs, 1) @ np.asarray(w[3][1]) + np.asarray(w[4][1])


def test_defaults_are_tfjs_not_keras(tmp_path, rng):
    """No recurrent_activation key: TF.js's hardSigmoid clip(0.2x+0.5) (checked against numpy)."""
    w = _lstm_weights(rng)
    imp = importer.import_model(_write_model(tmp_path / "m", _lstm_topology(), w))
    cell = imp.model.get_layer("rnn").cell
    assert cell.recurrent_activation.__name__ == "tfjs_hard_sigmoid"
    x = rng.standard_normal((2, 5, 2)).astype(np.float32)
    ref = _np_lstm(x.astype(np.float64), w, lambda z: np.clip(0.2 * z + 0.5, 0, 1))
    assert np.max(np.abs(_predict(imp.model, x) - ref)) < 1e-5
    keras3 = _np_lstm(x.astype(np.float64), w, lambda z: np.clip(z / 6 + 0.5, 0, 1))
    assert np.max(np.abs(keras3 - ref)) > 1e-2   # the two hard sigmoids really differ here
    gru = importer.import_model(_write_model(tmp_path / "g", _lstm_topology(cls="GRU"), _lstm_weights(rng, 3)))
    assert gru.model.get_layer("rnn").cell.reset_after is False


def test_camelcase_keras2_layout_and_cell_token_names(tmp_path, rng):
    w = _lstm_weights(rng)
    snake = importer.import_model(_write_model(tmp_path / "s", _lstm_topology({"recurrent_activation":
                                                                              "hard_sigmoid"}), w))
    camel = importer.import_model(_write_model(tmp_path / "c", _lstm_topology({"recurrentActivation": "hardSigmoid"}),
                                               w, camel=True))
    sigmoid = importer.import_model(_write_model(tmp_path / "g", _lstm_topology({"recurrent_activation":
                                                                                "sigmoid"}), w))
    # tensorflowjs_converter from a Keras 2 .h5: {model_config: ...}, Functional, lstm/lstm_cell/kernel
    topo = {"model_config": {"class_name": "Functional", "config": {
        "name": "func", "layers": [
            {"name": "x", "class_name": "InputLayer", "config": {"batch_input_shape": [None, 5, 2],
                                                                 "dtype": "float32", "name": "x"},
             "inbound_nodes": []},
            {"name": "rnn", "class_name": "LSTM", "config": {"name": "rnn", "units": 3, "return_sequences": True,
                                                            "recurrent_activation": "sigmoid"},
             "inbound_nodes": [[["x", 0, 0, {}]]]},
            {"name": "out", "class_name": "Dense", "config": {"name": "out", "units": 1, "activation": "linear"},
             "inbound_nodes": [[["rnn", 0, 0, {}]]]}],
        "input_layers": [["x", 0, 0]], "output_layers": [["out", 0, 0]]}}, "keras_version": "2.15.0"}
    k2 = [(n.replace("rnn/", "rnn/lstm_cell/"), v) for n, v in w]
    func = importer.import_model(_write_model(tmp_path / "f", topo, k2, shard_bytes=40))
    x = rng.standard_normal((2, 5, 2)).astype(np.float32)
    a, b, c, d = (_predict(m.model, x) for m in (snake, camel, sigmoid, func))
    assert camel.model.get_layer("rnn").return_sequences and np.array_equal(a, b)
    assert np.array_equal(c, d) and not np.allclose(a, c)
    assert len(func.weight_files) > 1


@pytest.mark.parametrize("break_it, exc, words", [
    ("missing_shard", UsageError, "group1-shard1.bin listed in weightsManifest is missing"),
    ("truncated", UsageError, "holds 115 bytes"),
    ("extra_weight", UsageError, "weight 'rnn/peephole' in weightsManifest belongs to no layer weight"),
    ("missing_weight", UsageError, "1 of 5 layer weights are not in weightsManifest: out/bias"),
    ("wrong_shape", UsageError, "weight 'out/kernel' has shape [1, 3] in model.json, the layer needs [3, 1]"),
    ("graph_model", ConversionError, "TF.js graph model"),
    ("gru_reset_after", ConversionError, "reset_after=true"),
    ("stateful", ConversionError, "stateful=True is not supported"),
    ("unknown_activation", ConversionError, "activation='gelu_new' is not an activation rnnedge rebuilds"),
])
def test_bad_models_fail_clearly(tmp_path, rng, break_it, exc, words):
    w = _lstm_weights(rng)
    topo, cls, gates = _lstm_topology(), "LSTM", 4
    if break_it == "gru_reset_after":
        topo, w = _lstm_topology({"reset_after": True}, "GRU"), _lstm_weights(rng, 3)
    if break_it == "stateful":
        topo = _lstm_topology({"stateful": True})
    if break_it == "unknown_activation":
        topo = _lstm_topology({"activation": "gelu_new"})
    if break_it == "extra_weight":
        w = w + [("rnn/peephole", np.zeros(3))]
    if break_it == "missing_weight":
        w = w[:-1]
    if break_it == "wrong_shape":
        w = w[:3] + [("out/kernel", np.zeros((1, 3)))] + w[4:]
    path = _write_model(tmp_path / "m", topo, w)
    if break_it == "missing_shard":
        (tmp_path / "m" / "group1-shard1.bin").unlink()
    if break_it == "truncated":
        shard = tmp_path / "m" / "group1-shard1.bin"
        shard.write_bytes(shard.read_bytes()[:115])
    if break_it == "graph_model":
        mj = json.loads(path.read_text())
        mj.update(format="graph-model", modelTopology={"node": []})
        path.write_text(json.dumps(mj))
    with pytest.raises(exc) as ei:
        importer.import_model(path)
    assert words in str(ei.value)


def test_a_graph_reading_a_missing_call_is_refused(tmp_path, rng):
    topo = {"class_name": "Model", "config": {"name": "f", "layers": [
        {"name": "x", "class_name": "InputLayer", "config": {"batch_input_shape": [None, 5, 2], "name": "x"},
         "inbound_nodes": []},
        {"name": "out", "class_name": "Dense", "config": {"name": "out", "units": 1},
         "inbound_nodes": [[["x", 0, 0, {}]], [["out", 3, 0, {}]]]}],
        "input_layers": [["x", 0, 0]], "output_layers": [["out", 0, 0]]}}
    path = _write_model(tmp_path / "m", topo, [("out/kernel", np.ones((2, 1))), ("out/bias", np.ones(1))])
    with pytest.raises(UsageError, match=r"the graph reads \['out', 3, 0\] \(layer, call, output\)"):
        importer.import_model(path)


def test_dequantization_formulas(rng):
    """uint8/uint16: q * scale + min in float64, then float32; int32 rounds halves up; float16 exact."""
    q = np.array([0, 1, 128, 255], np.uint8)
    spec = {"name": "w", "shape": [4], "dtype": "float32",
            "quantization": {"dtype": "uint8", "min": -0.3, "scale": 0.1 / 3}}
    got = importer.decode_weight(spec, q.tobytes())
    assert np.array_equal(got, (q.astype(np.float64) * (0.1 / 3) - 0.3).astype(np.float32))
    ints = importer.decode_weight(dict(spec, shape=[2], dtype="int32", quantization={"dtype": "uint16", "min": 0.5,
                                                                          "scale": 1.0}),
                                  np.array([0, 1], "<u2").tobytes())
    assert ints.tolist() == [1, 2]   # Math.round(0.5) = 1, Math.round(1.5) = 2
    h = rng.standard_normal(6).astype(np.float16)
    f16 = importer.decode_weight({"name": "h", "shape": [2, 3], "dtype": "float32",
                                  "quantization": {"dtype": "float16"}}, h.astype("<f2").tobytes())
    assert f16.dtype == np.float32 and np.array_equal(f16, h.astype(np.float32).reshape(2, 3))
    with pytest.raises(UsageError, match="uint8 quantization without min and scale"):
        importer.decode_weight({"name": "w", "shape": [1], "dtype": "float32", "quantization": {"dtype": "uint8"}},
                               b"\x00")


def test_tfjs_json_is_told_apart_from_a_json_spec(tmp_path):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"name": "x", "inputs": [{"name": "a", "shape": [None, 1]}],
                                "layers": [{"type": "LSTM", "units": 2}]}))
    assert importer.find_model_json(spec) is None
    assert importer.find_model_json(tmp_path / "nothing.json") is None
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    (model_dir / "model.json").write_text(json.dumps({"modelTopology": {}, "weightsManifest": []}))
    assert importer.find_model_json(model_dir) == model_dir / "model.json"


def test_export_keeps_the_original_and_validate_picks_its_reference(tmp_path, rng, monkeypatch):
    """Without Node `auto` falls back to reference.keras and says so; `tfjs` needs an original;
    exporting another model into the folder drops the stale original."""
    import keras

    import rnnedge.runtime.tfjs as rt_tfjs
    from rnnedge.exporting import export
    from rnnedge.validation import validate

    path = _write_model(tmp_path / "m", _lstm_topology(), _lstm_weights(rng), shard_bytes=100)
    out = tmp_path / "exp"
    export(path, "onnx", out, validate=False)
    man = json.loads((out / "manifest.json").read_text())
    assert man["artifacts"]["source.tfjs"]["role"] == "reference"
    assert sorted(p.name for p in (out / "source.tfjs").iterdir()) == sorted(p.name for p in path.parent.iterdir())
    monkeypatch.setattr(rt_tfjs, "find_node", lambda: None)
    rep = validate(out, samples=4, write_manifest=False)
    assert rep["ok"] and rep["reference"] == "reference.keras"
    assert rep["reference_note"] == "source.tfjs not run (node not found): compared with reference.keras"
    with pytest.raises(MissingDependencyError):
        validate(out, samples=4, write_manifest=False, reference="tfjs")
    other = keras.Sequential([keras.Input((5, 2)), keras.layers.GRU(2)])
    export(other, "onnx", out, validate=False)
    assert "source.tfjs" not in json.loads((out / "manifest.json").read_text())["artifacts"]
    assert not (out / "source.tfjs").exists()
    with pytest.raises(UsageError, match="no TF.js original to compare with"):
        validate(out, samples=4, write_manifest=False, reference="tfjs")


def test_embedding_input_length_gives_the_sequential_input(tmp_path, rng):
    topo = {"class_name": "Sequential", "config": {"name": "tok", "layers": [
        {"class_name": "Embedding", "config": {"name": "emb", "input_dim": 5, "output_dim": 2, "input_length": 4,
                                               "mask_zero": True}},
        {"class_name": "GRU", "config": {"name": "g", "units": 2}}]}}
    w = [("emb/embeddings", rng.uniform(-1, 1, (5, 2))), ("g/kernel", rng.uniform(-1, 1, (2, 6))),
         ("g/recurrent_kernel", rng.uniform(-1, 1, (2, 6))), ("g/bias", rng.uniform(-1, 1, (6,)))]
    imp = importer.import_model(_write_model(tmp_path / "m", topo, w))
    (inp,) = imp.model.inputs
    assert tuple(inp.shape) == (None, 4) and str(inp.dtype) == "int32"
    assert imp.tfjs_inputs == [{"name": "emb_input", "shape": [None, 4], "dtype": "float32"}]
    assert "feeds only Embedding layers" in imp.source["notes"][0]
    ids = np.array([[1, 2, 0, 0], [3, 4, 1, 2]], np.int32)
    y = _predict(imp.model, ids)
    same_prefix = _predict(imp.model, np.array([[1, 2, 0, 0], [1, 2, 3, 3]], np.int32))
    assert np.array_equal(y[0], same_prefix[0]) and not np.allclose(same_prefix[0], same_prefix[1])
