"""Spec validation: every bad spec names its field and reason; exit code 2 from the CLI; no TF needed."""
import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from rnnedge.errors import SpecError
from rnnedge.spec import load_spec, preset_names, spec_from_dict

SEQ = {"inputs": [{"shape": [None, 2]}]}
TOK = {"inputs": [{"name": "tokens", "shape": [None], "dtype": "int32", "vocab_size": 30}]}


def seq(*layers, base=SEQ):
    return {**base, "layers": list(layers)}


BAD = [
    # (spec, expected path, words in the reason)
    (seq({"type": "LSTMM", "units": 4}), "layers[0]", ["unknown layer type 'LSTMM'", "did you mean 'LSTM'"]),
    (seq({"type": "LSTM", "units": -3}), "layers[0].units", ["greater than 0"]),
    (seq({"type": "GRU", "units": "many"}), "layers[0].units", ["valid integer"]),
    (seq({"type": "LSTM", "units": 4, "unitz": 3}), "layers[0].unitz", ["unknown field 'unitz'", "did you mean 'units'"]),
    (seq({"type": "LSTM", "units": 4}, {"type": "LSTM", "units": 4}), "layers[1]",
     ["3-D input", "set return_sequences: true"]),
    (seq({"type": "LSTM", "units": 4, "dropout": 1.5}), "layers[0].dropout", ["less than 1"]),
    (seq({"type": "LSTM", "units": 4, "activation": "swishy"}), "layers[0].activation", ["invalid value 'swishy'"]),
    (seq({"units": 4}), "layers[0]", ["missing 'type'"]),
    (seq({"type": "Embedding", "output_dim": 4}), "layers[0]", ["token ids"]),
    (seq({"type": "LSTM", "units": 4}, {"type": "GlobalMaxPooling1D"}), "layers[1]", ["return_sequences"]),
    (seq({"type": "Bidirectional", "merge_mode": "max", "layer": {"type": "LSTM", "units": 2}}),
     "layers[0].merge_mode", ["invalid value 'max'"]),
    (seq({"type": "Bidirectional", "layer": {"type": "Dense", "units": 2}}), "layers[0].layer",
     ["unknown layer type 'Dense'"]),
    ({**SEQ, "layers": [{"type": "LSTM", "units": 2}], "compile": {"loss": "crossentropy"}}, "compile.loss",
     ["invalid value"]),
    ({**SEQ, "layers": []}, "", ["'layers' is empty"]),
    ({**SEQ, "layers": [{"type": "Dense", "units": 1}], "nodes": []}, "", ["exactly one of 'layers'"]),
    ({"inputs": [{"shape": [None, 1]}],
      "nodes": [{"name": "a", "type": "LSTM", "units": 2, "inputs": ["nope"]}], "outputs": ["a"]},
     "nodes[0].inputs[0]", ["unknown reference 'nope'"]),
    ({"inputs": [{"shape": [None, 1]}],
      "nodes": [{"name": "enc", "type": "LSTM", "units": 3, "return_state": True, "inputs": ["input"]},
                {"name": "dec", "type": "LSTM", "units": 4, "inputs": ["input"], "initial_state": ["enc:1", "enc:2"]}],
      "outputs": ["dec"]}, "nodes[1].initial_state[0]", ["does not match units"]),
    ({"inputs": [{"shape": [None, 1]}],
      "nodes": [{"name": "a", "type": "LSTM", "units": 2, "inputs": ["b"], "return_sequences": True},
                {"name": "b", "type": "LSTM", "units": 2, "inputs": ["a"], "return_sequences": True}],
      "outputs": ["a"]}, "nodes[", ["cycle"]),
    ({"inputs": [{"shape": [None, 4]}, {"name": "b", "shape": [None, 5]}],
      "nodes": [{"name": "s", "type": "Add", "inputs": ["input", "b"]}], "outputs": ["s"]},
     "nodes[0]", ["one shape"]),
    ({"inputs": [{"shape": [None, 1], "vocab_size": 3}], "layers": [{"type": "Dense", "units": 1}]},
     "inputs[0]", ["vocab_size is only for integer"]),
    (seq({"type": "LSTM", "units": 4, "stateful": True}), "layers[0].stateful", ["fixed batch size"]),
    (seq({"type": "Embedding", "output_dim": 4, "input_dim": 10}, base=TOK), "layers[0].input_dim",
     ["smaller than input 'tokens' vocab_size 30"]),
]


@pytest.mark.parametrize("spec,path,words", BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_bad_spec_names_field_and_reason(spec, path, words):
    with pytest.raises(SpecError) as ei:
        spec_from_dict(spec)
    e = ei.value
    assert e.path.startswith(path), (e.path, str(e))
    for w in words:
        assert w in str(e), str(e)


def test_bad_specs_have_distinct_messages():
    msgs = set()
    for spec, _, _ in BAD:
        with pytest.raises(SpecError) as ei:
            spec_from_dict(spec)
        msgs.add(str(ei.value))
    assert len(msgs) == len(BAD) >= 10


@pytest.mark.parametrize("i", [0, 1, 4, 8, 15])
def test_cli_bad_spec_exit_2_no_traceback(tmp_path, i):
    from rnnedge.cli import cli, main

    p = tmp_path / "bad.json"
    p.write_text(json.dumps(BAD[i][0]))
    r = subprocess.run([sys.executable, "-c", "from rnnedge.cli import main; main()", "inspect", str(p)],
                       capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    assert r.stderr.startswith("error:") and BAD[i][1].split("[")[0] in r.stderr


def test_yaml_errors_and_missing_file(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("inputs: [\n  - shape: [1\n")
    with pytest.raises(SpecError, match=r"invalid YAML at line \d+"):
        load_spec(str(p))
    from rnnedge.errors import UsageError

    with pytest.raises(UsageError, match="spec file not found"):
        load_spec(str(tmp_path / "nope.yaml"))
    with pytest.raises(UsageError, match="unknown preset 'forecst'; did you mean 'forecast'"):
        load_spec("forecst")


def test_yaml_is_data_not_code(tmp_path):
    p = tmp_path / "evil.yaml"
    p.write_text("inputs: !!python/object/apply:os.system ['echo pwned']\nlayers: []\n")
    with pytest.raises(SpecError, match="invalid YAML"):
        load_spec(str(p))


def test_presets_are_valid_specs():
    assert set(preset_names()) >= {"sentiment", "textgen", "forecast", "seq2seq", "gru-classifier", "simple-rnn"}
    for n in preset_names():
        s = load_spec(n)
        assert s.data is not None, n


def test_json_and_yaml_specs_equal(tmp_path):
    import yaml

    d = load_spec("sentiment").dump()
    (tmp_path / "a.json").write_text(json.dumps(d))
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(d))
    assert load_spec(str(tmp_path / "a.json")).dump() == load_spec(str(tmp_path / "a.yaml")).dump() == d
