"""What users need, on a representative subset of the model zoo (tests/model_zoo.py,
``model_zoo.representative()``: 28 tiny models covering every zoo tag, the cases users reported
first). Per model and per format (ONNX, TFLite), each exported alone as a user would:

- ``rnnedge export MODEL.keras -f FMT -o DIR --no-validate`` exits 0 (the conversion);
- ``rnnedge validate DIR`` exits 0, with every Keras output compared (together: a plain
  ``rnnedge export`` would exit 0);
- the artifact in a plain runtime (onnxruntime / LiteRT, tests/zoo_checks.py, nothing from
  rnnedge) matches Keras on the zoo's inputs, every output by position;
- the .tflite gives identical outputs when invoked twice on the same input with no reset.

The full zoo runs in benchmarks/sweep.py. The checks' own twins (a deliberately wrong ONNX file, a
swapped output order, a stateful .tflite) are at the end: the gate must be able to fail.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

import model_zoo
import zoo_checks as zc

CASES = model_zoo.representative()
FORMATS = {"onnx": "model.onnx", "tflite": "model.tflite"}


def _cli(args):
    from click.testing import CliRunner

    from rnnedge.cli import cli

    return CliRunner().invoke(cli, [str(a) for a in args])


def _last_line(result) -> str:
    """The CLI's last output line, or the exception it let through (``rnnedge`` prints those as
    "internal error: ...")."""
    lines = [ln for ln in result.output.strip().splitlines() if ln.strip()]
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        e = result.exception
        return f"internal error: {type(e).__name__}: " + next((ln for ln in str(e).splitlines() if ln.strip()), "")
    return lines[-1] if lines else "(no output)"


@pytest.fixture(scope="module", params=CASES, ids=[m.id for m in CASES])
def zoo_case(request, tmp_path_factory):
    """One zoo model: built, saved, its sample inputs and Keras outputs, and per format the export
    and validate results (exit code, output, the validate report)."""
    pytest.importorskip("keras")
    m = request.param
    d = tmp_path_factory.mktemp(m.id)
    model = m.build()
    xs = m.sample_inputs(model)
    ys = m.reference(model, xs)
    src = d / "model.keras"
    model.save(src)
    case = {"model": m, "inputs": xs, "keras": ys, "input_names": [t.name for t in model.inputs], "formats": {}}
    for fmt, fname in FORMATS.items():
        out = d / fmt
        exp = _cli(["export", src, "-f", fmt, "-o", out, "--no-validate"])
        res = {"export_rc": exp.exit_code, "export_msg": _last_line(exp), "artifact": out / fname}
        if (out / "manifest.json").exists():
            val = _cli(["validate", out, "--json", d / f"validate-{fmt}.json"])
            res["validate_rc"] = val.exit_code
            res["validate_msg"] = _last_line(val)
            rep = d / f"validate-{fmt}.json"
            res["report"] = json.loads(rep.read_text()) if rep.exists() else None
        case["formats"][fmt] = res
    return case


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_export_exits_0(zoo_case, fmt):
    r = zoo_case["formats"][fmt]
    assert r["export_rc"] == 0, f"export -f {fmt} exit {r['export_rc']}: {r['export_msg']}"
    assert r["artifact"].exists()


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_validate_passes_on_every_output(zoo_case, fmt):
    r = zoo_case["formats"][fmt]
    assert "validate_rc" in r, f"no export folder to validate (export exit {r['export_rc']}: {r['export_msg']})"
    row = ((r["report"] or {}).get("artifacts") or {}).get(FORMATS[fmt], {})
    assert r["validate_rc"] == 0, f"validate exit {r['validate_rc']}: {row.get('message') or r['validate_msg']}"
    listed = sorted(((r["report"] or {}).get("artifacts") or {}))
    assert row, f"validate exit 0 without judging {FORMATS[fmt]} (its report lists {listed}; export exit {r['export_rc']})"
    assert row.get("verdict") == "pass", row
    n = len(zoo_case["keras"])
    assert len(row.get("outputs") or {}) == n, f"validate compared {len(row.get('outputs') or {})} of {n} outputs"


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_plain_runtime_matches_keras_by_position(zoo_case, fmt):
    r = zoo_case["formats"][fmt]
    assert r["artifact"].exists(), f"no {r['artifact'].name} (export exit {r['export_rc']}: {r['export_msg']})"
    run = (zc.run_onnx if fmt == "onnx" else zc.run_tflite)(r["artifact"], zoo_case["inputs"], zoo_case["input_names"])
    cmp = zc.compare_by_position(zoo_case["keras"], run["outputs"])
    assert cmp["ok"], f"{zc.first_problem(cmp)} (artifact outputs {run['output_names']})"


def test_tflite_repeat_invoke_identical(zoo_case):
    r = zoo_case["formats"]["tflite"]
    assert r["artifact"].exists(), f"no model.tflite (export exit {r['export_rc']}: {r['export_msg']})"
    run = zc.run_tflite(r["artifact"], zoo_case["inputs"], zoo_case["input_names"])
    assert run["repeat_identical"], f"second invoke differs from the first by {run['repeat_max_abs']:.3g} with no reset"


# ------------------------------------------------------------------ the zoo itself (no TensorFlow)


def test_zoo_is_broad_and_the_subset_covers_every_tag():
    assert len(model_zoo.ZOO) >= 120
    assert len({m.id for m in model_zoo.ZOO}) == len(model_zoo.ZOO)
    assert set().union(*(m.tags for m in CASES)) == model_zoo.all_tags()
    assert 25 <= len(CASES) <= 30
    assert [m.id for m in model_zoo.representative()] == [m.id for m in CASES]  # deterministic


def test_sample_inputs_hold_padding_and_masked_steps():
    """Token rows are padded on the asked side; Masking inputs hold whole masked steps at the
    end, start and middle (validate's generated floats never do: issue 15)."""
    pytest.importorskip("keras")
    for mid, side in (("mask-emb-lstm-post", "post"), ("mask-emb-lstm-pre", "pre")):
        m = model_zoo.get(mid)
        x = m.sample_inputs(m.build())[0]
        assert (x[0] != 0).all()  # row 0 full
        for row in x[1:]:
            nz = np.flatnonzero(row)
            assert len(nz) < len(row)
            assert (nz == (np.arange(len(nz)) if side == "post" else np.arange(len(row) - len(nz), len(row)))).all()
    m = model_zoo.get("mask-float-lstm")
    x = m.sample_inputs(m.build())[0]
    masked = (x == 0.0).all(axis=-1)
    assert not masked[0].any()
    assert masked[1, -1] and masked[2, 0] and masked[3, x.shape[1] // 2] and not masked[3, 0] and not masked[3, -1]


# ------------------------------------------------------------------ twins: the checks can fail


def _onnx_two_outputs(path, scale=2.0, swap=False):
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", 3])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, ["N", 3])
    k = helper.make_tensor("k", TensorProto.FLOAT, [1], [scale])
    g = helper.make_graph([helper.make_node("Mul", ["x", "k"], ["a"]), helper.make_node("Neg", ["x"], ["b"])],
                          "g", [x], [b, a] if swap else [a, b], [k])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return path


def test_onnx_check_passes_a_right_file_and_fails_wrong_ones(tmp_path):
    pytest.importorskip("onnxruntime")
    x = np.random.default_rng(0).standard_normal((4, 3)).astype("float32")
    ref = [x * 2, -x]
    good = zc.run_onnx(_onnx_two_outputs(tmp_path / "good.onnx"), [x], ["x"])
    assert zc.compare_by_position(ref, good["outputs"])["ok"]
    off = zc.run_onnx(_onnx_two_outputs(tmp_path / "off.onnx", scale=2.001), [x], ["x"])
    cmp = zc.compare_by_position(ref, off["outputs"])
    assert not cmp["ok"] and zc.first_problem(cmp).startswith("output 0: max abs error")
    swapped = zc.run_onnx(_onnx_two_outputs(tmp_path / "swap.onnx", swap=True), [x], ["x"])
    cmp = zc.compare_by_position(ref, swapped["outputs"])
    assert not cmp["ok"] and "another order" in zc.first_problem(cmp) and cmp["permutation"] == [1, 0]
    cmp = zc.compare_by_position(ref + [x], good["outputs"])  # Keras has one more output
    assert not cmp["ok"] and zc.first_problem(cmp) == "2 outputs in the artifact, Keras has 3"
    assert zc.onnx_op_types(tmp_path / "good.onnx")["control_flow"] == []


def test_tflite_repeat_check_catches_state_kept_across_invokes(tmp_path):
    """A .tflite holding a variable that each invoke adds to: the second invoke differs and the
    check says so; the same graph without the variable passes."""
    tf = pytest.importorskip("tensorflow")
    pytest.importorskip("ai_edge_litert")

    class Acc(tf.Module):
        def __init__(self, stateful):
            self.stateful = stateful
            self.v = tf.Variable(tf.zeros((1, 3)))

        @tf.function(input_signature=[tf.TensorSpec((1, 3), tf.float32, name="x")])
        def __call__(self, x):
            if self.stateful:
                self.v.assign_add(x)
                return {"y": self.v + 0.0}
            return {"y": x * 2.0}

    x = np.ones((1, 3), "float32")
    for stateful in (True, False):
        mod = Acc(stateful)
        conv = tf.lite.TFLiteConverter.from_concrete_functions([mod.__call__.get_concrete_function()], mod)
        path = tmp_path / f"acc{int(stateful)}.tflite"
        path.write_bytes(conv.convert())
        run = zc.run_tflite(path, [x], ["x"])
        assert run["repeat_identical"] is (not stateful), run
        if stateful:
            assert run["repeat_max_abs"] == pytest.approx(1.0)
