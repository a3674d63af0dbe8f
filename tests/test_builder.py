"""Spec -> Keras: every option reaches the model; shapes and parameter counts; presets train."""
import json

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from rnnedge.builder import build_model  # noqa: E402
from rnnedge.inspect import inspect_model  # noqa: E402
from rnnedge.spec import preset_names  # noqa: E402

F = {"inputs": [{"name": "x", "shape": [None, 3]}]}


def one(layer, base=F, extra=()):
    return build_model({**base, "layers": [layer, *extra]}, compile=False)


RNN_OPTIONS = [
    ("LSTM", {"units": 3, "activation": "relu", "recurrent_activation": "hard_sigmoid", "use_bias": False,
              "return_sequences": True, "go_backwards": True, "dropout": 0.2, "recurrent_dropout": 0.1,
              "unit_forget_bias": False, "unroll": False}),
    ("GRU", {"units": 2, "reset_after": False, "recurrent_activation": "sigmoid", "return_sequences": True,
             "activation": "softsign"}),
    ("GRU", {"units": 2, "reset_after": True, "go_backwards": True}),
    ("SimpleRNN", {"units": 4, "activation": "relu", "use_bias": False, "dropout": 0.3}),
]


@pytest.mark.parametrize("typ,opts", RNN_OPTIONS)
def test_recurrent_options_reach_keras(typ, opts):
    m = one({"type": typ, **opts})
    layer = m.layers[-1]
    assert type(layer).__name__ == typ
    cfg = layer.get_config()
    for k, v in opts.items():
        assert cfg[k] == v, (k, cfg[k], v)


def test_initializers_and_regularizers_reach_keras():
    m = one({"type": "LSTM", "units": 2, "kernel_initializer": {"type": "random_uniform", "minval": -0.2, "maxval": 0.2, "seed": 3},
             "recurrent_initializer": "glorot_normal", "bias_initializer": "ones",
             "kernel_regularizer": {"l2": 0.01}, "recurrent_regularizer": {"l1": 0.001},
             "activity_regularizer": {"l1": 0.5, "l2": 0.5}})
    cfg = m.layers[-1].get_config()
    assert cfg["kernel_initializer"]["class_name"] == "RandomUniform"
    assert cfg["kernel_initializer"]["config"]["maxval"] == 0.2
    assert cfg["recurrent_initializer"]["class_name"] == "GlorotNormal"
    assert cfg["bias_initializer"]["class_name"] == "Ones"
    assert cfg["kernel_regularizer"]["config"]["l2"] == pytest.approx(0.01)
    assert cfg["recurrent_regularizer"]["config"]["l1"] == pytest.approx(0.001)
    assert np.all(m.layers[-1].cell.bias.numpy() == 1.0)


@pytest.mark.parametrize("mode", ["concat", "sum", "ave", "mul", None])
def test_bidirectional_merge_modes(mode):
    m = one({"type": "Bidirectional", "merge_mode": mode, "layer": {"type": "GRU", "units": 2, "return_sequences": True}})
    b = m.layers[-1]
    assert b.merge_mode == mode
    outs = m.outputs
    if mode is None:
        assert len(outs) == 2 and outs[0].shape[-1] == 2
    else:
        assert outs[0].shape[-1] == (4 if mode == "concat" else 2)


def test_other_layers_reach_keras():
    tok = {"inputs": [{"name": "t", "shape": [None], "dtype": "int32", "vocab_size": 20}]}
    m = build_model({**tok, "layers": [
        {"type": "Embedding", "output_dim": 4, "mask_zero": True},
        {"type": "Conv1D", "filters": 3, "kernel_size": 2, "padding": "causal", "dilation_rate": 2, "activation": "relu"},
        {"type": "Dropout", "rate": 0.25},
        {"type": "MultiHeadAttention", "num_heads": 2, "key_dim": 3},
        {"type": "LayerNormalization", "epsilon": 1e-5},
        {"type": "TimeDistributed", "layer": {"type": "Dense", "units": 2, "activation": "tanh"}},
        {"type": "GlobalAveragePooling1D"},
        {"type": "RepeatVector", "n": 3},
        {"type": "Masking", "mask_value": 0.5},
        {"type": "SimpleRNN", "units": 2},
        {"type": "Activation", "activation": "sigmoid"},
    ]}, compile=False)
    kinds = [type(layer).__name__ for layer in m.layers]
    assert kinds[1:] == ["Embedding", "Conv1D", "Dropout", "MultiHeadAttention", "LayerNormalization",
                         "TimeDistributed", "GlobalAveragePooling1D", "RepeatVector", "Masking", "SimpleRNN",
                         "Activation"]
    c = {type(layer).__name__: layer.get_config() for layer in m.layers}
    assert c["Embedding"]["mask_zero"] is True and c["Embedding"]["input_dim"] == 20
    assert c["Conv1D"]["padding"] == "causal" and c["Conv1D"]["dilation_rate"] == (2,)
    assert c["Dropout"]["rate"] == 0.25 and c["Masking"]["mask_value"] == 0.5
    assert c["MultiHeadAttention"]["num_heads"] == 2 and c["MultiHeadAttention"]["key_dim"] == 3
    assert c["LayerNormalization"]["epsilon"] == 1e-5 and c["RepeatVector"]["n"] == 3
    assert m.output.shape == (None, 2)


def test_compile_settings_reach_keras():
    m = build_model({**F, "layers": [{"type": "GRU", "units": 2}, {"type": "Dense", "units": 1}],
                     "compile": {"optimizer": {"name": "sgd", "learning_rate": 0.05, "momentum": 0.9, "clipnorm": 2.0},
                                 "loss": "huber", "metrics": ["mae", "rmse"]}})
    opt = m.optimizer
    assert type(opt).__name__ == "SGD"
    assert float(opt.learning_rate.numpy()) == pytest.approx(0.05)
    assert opt.momentum == pytest.approx(0.9) and opt.clipnorm == 2.0
    assert m.loss == "huber"


def test_graph_seq2seq_attention_wiring():
    spec = {"inputs": [{"name": "enc", "shape": [None], "dtype": "int32", "vocab_size": 12},
                       {"name": "dec", "shape": [None], "dtype": "int32", "vocab_size": 12}],
            "nodes": [
                {"name": "ee", "type": "Embedding", "inputs": ["enc"], "output_dim": 4, "mask_zero": True},
                {"name": "encoder", "type": "LSTM", "inputs": ["ee"], "units": 5, "return_sequences": True, "return_state": True},
                {"name": "de", "type": "Embedding", "inputs": ["dec"], "output_dim": 4},
                {"name": "decoder", "type": "LSTM", "inputs": ["de"], "units": 5, "return_sequences": True,
                 "initial_state": ["encoder:1", "encoder:2"]},
                {"name": "att", "type": "Attention", "inputs": ["decoder", "encoder:0"], "use_scale": True},
                {"name": "cat", "type": "Concatenate", "inputs": ["decoder", "att"]},
                {"name": "out", "type": "TimeDistributed", "inputs": ["cat"], "layer": {"type": "Dense", "units": 12, "activation": "softmax"}}],
            "outputs": ["out", "encoder:1"]}
    m = build_model(spec, compile=False)
    assert [t.name for t in m.inputs] == ["enc", "dec"]
    assert m.outputs[0].shape == (None, None, 12) and m.outputs[1].shape == (None, 5)
    dec = m.get_layer("decoder")
    node = dec._inbound_nodes[0]
    states = node.arguments.kwargs["initial_state"]
    assert [s._keras_history.operation.name for s in states] == ["encoder", "encoder"]
    assert [s._keras_history.tensor_index for s in states] == [1, 2]
    assert m.get_layer("att").use_scale is True
    x = {"enc": np.array([[3, 4, 0]]), "dec": np.array([[1, 5]])}
    assert m(x)[0].shape == (1, 2, 12)


def _lstm(i, u):
    return 4 * (u * (i + u) + u)


PARAMS = {  # independent formulas, not Keras's count
    "forecast": _lstm(1, 64) + _lstm(64, 64) + 65,
    "sentiment": 2000 * 32 + 2 * _lstm(32, 32) + 64 + 1,
    "textgen": 64 * 32 + _lstm(32, 64) + _lstm(64, 64) + 64 * 64 + 64,
    "seq2seq": 16 * 32 * 2 + 2 * _lstm(32, 64) + 64 * 16 + 16,
    "gru-classifier": 3 * (64 * (3 + 64) + 2 * 64) + 64 * 4 + 4,
    "simple-rnn": 32 * (1 + 32) + 32 + 33,
}


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_preset_roundtrip_shapes_and_params(name):
    info = inspect_model(name)
    assert info["params"]["total"] == PARAMS[name]
    m = build_model(name, compile=False)
    assert info["params"]["total"] == m.count_params()
    assert [i["shape"] for i in info["inputs"]] == [[None] + list(t.shape[1:]) for t in m.inputs]
    # the spec's static shape check agrees with Keras's output shapes
    from rnnedge.spec import load_spec
    from rnnedge.spec.check import check_spec

    spec = load_spec(name)
    shapes = check_spec(spec)
    last = spec.outputs[0] if spec.is_graph else (spec.layers[-1].name or f"layers[{len(spec.layers) - 1}]")
    assert list(shapes[last.split(":")[0]][0]) == list(m.outputs[0].shape[1:])


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_trains_and_saves(tmp_path, name):
    from rnnedge.training import train

    out = tmp_path / f"{name}.keras"
    res = train(name, out=out, epochs=1, samples=64, steps_per_epoch=2)
    assert out.exists() and res.info["epochs_run"] == 1
    assert np.isfinite(res.metrics["loss"])
    side = json.loads((tmp_path / f"{name}.rnnedge.json").read_text())
    assert side["spec"]["name"] == name and side["preprocessing"]["kind"]
    reloaded = keras.saving.load_model(out, compile=False)
    assert reloaded.count_params() == PARAMS[name]


def test_cli_build_train_inspect(tmp_path):
    from click.testing import CliRunner

    from rnnedge.cli import cli

    r = CliRunner()
    res = r.invoke(cli, ["build", "simple-rnn", "-o", str(tmp_path / "m.keras")])
    assert res.exit_code == 0, res.output
    res = r.invoke(cli, ["inspect", str(tmp_path / "m.keras"), "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.output)
    assert info["params"]["total"] == PARAMS["simple-rnn"]
    csv = tmp_path / "s.csv"
    csv.write_text("t,value\n" + "\n".join(f"{i},{np.sin(i / 5):.4f}" for i in range(300)))
    res = r.invoke(cli, ["train", "forecast", "--data", str(csv), "--column", "value", "--epochs", "1",
                         "-o", str(tmp_path / "f.keras"), "--json"])
    assert res.exit_code == 0, res.output
    side = json.loads((tmp_path / "f.rnnedge.json").read_text())
    assert side["preprocessing"]["column"] == "value" and side["preprocessing"]["window"] == 48
    assert side["preprocessing"]["scaler"]["std"] > 0
    res = r.invoke(cli, ["train", "forecast", "--data", str(csv), "--column", "nope", "-o", str(tmp_path / "g.keras")])
    assert res.exit_code == 2 and "no column 'nope'" in res.output


def test_stateful_needs_and_gets_fixed_batch():
    m = build_model({"inputs": [{"name": "x", "shape": [4, 2], "batch_size": 2}],
                     "layers": [{"type": "LSTM", "units": 3, "stateful": True}]}, compile=False)
    layer = m.layers[-1]
    assert layer.stateful is True and m.inputs[0].shape == (2, 4, 2)
