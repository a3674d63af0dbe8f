"""docs/GUIDE.md stays true to the code: generated tables up to date, every spec field, layer
type, command and option documented, every YAML spec loads, every `rnnedge ...` example parses
against the real CLI, every Python snippet names real API. No TensorFlow needed."""
from __future__ import annotations

import ast
import importlib
import re
import shlex
import subprocess
import sys
from pathlib import Path

import click
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
GUIDE_PATH = ROOT / "docs" / "GUIDE.md"
sys.path.insert(0, str(ROOT / "docs"))
import gen_reference as G  # noqa: E402

sys.path.remove(str(ROOT / "docs"))

import rnnedge  # noqa: E402
from rnnedge.spec import schema as S  # noqa: E402

GUIDE = GUIDE_PATH.read_text()
COMMANDS = G.cli_commands()


def code_blocks(lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", GUIDE, re.S | re.M)


def section(title_start: str) -> str:
    """The text of the ``## N. Title`` section whose title starts with ``title_start``."""
    m = re.search(rf"^## \d+\. {re.escape(title_start)}.*?$(.*?)(?=^## |\Z)", GUIDE, re.S | re.M)
    assert m, f"no section '{title_start}' in GUIDE.md"
    return m.group(1)


# ------------------------------------------------------------------------------ generated parts
def test_generated_parts_are_up_to_date():
    parts = G.generated_parts()
    assert set(parts) == {"spec"} | {f"cli:{n}" for n in COMMANDS}
    fresh = G.render_guide(GUIDE, parts)
    assert fresh == GUIDE, "docs/GUIDE.md is stale: run `python docs/gen_reference.py`"


def test_generator_refuses_an_undocumented_spec_field():
    class Extra(S.Dense):
        brand_new_setting: int = 3

    with pytest.raises(KeyError, match="brand_new_setting"):
        G.field_table(Extra, ["units", "brand_new_setting"])


def test_generator_refuses_an_option_without_help(monkeypatch):
    cmd = click.Command("export", params=[click.Option(["--brand-new"], is_flag=True)])
    monkeypatch.setitem(COMMANDS, "export", cmd)
    monkeypatch.setattr(G, "cli_commands", lambda: COMMANDS)
    with pytest.raises(KeyError, match="--brand-new"):
        G.cli_reference("export")


def test_generator_check_mode_passes_without_tensorflow():
    code = ("import sys; sys.path.insert(0, 'docs'); import gen_reference as g; rc = g.main(['--check']); "
            "heavy = [m for m in ('tensorflow', 'keras', 'onnxruntime', 'tf2onnx') if m in sys.modules]; "
            "assert not heavy, heavy; sys.exit(rc)")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


# ------------------------------------------------------------------------------ spec reference
def test_every_layer_type_has_a_place_in_the_spec_reference():
    spec_ref = section("Spec reference")
    for t in S.LAYER_TYPES:
        assert f"`{t}`" in spec_ref, t
    for c in S.LAYER_CLASSES:  # a heading (or the recurrent / no-settings group) per layer type
        t = G.layer_type(c)
        assert re.search(rf"^### .*`{t}`", spec_ref, re.M) or re.search(
            rf"^### Layers without settings\n\n[^\n]*`{t}`", spec_ref, re.M) or (
            t in S.RECURRENT_TYPES and "### Recurrent layers" in spec_ref), t


@pytest.mark.parametrize("model", G.schema_models(), ids=lambda m: m.__name__)
def test_every_field_of_every_schema_model_is_documented(model):
    spec_ref = section("Spec reference")
    for name in model.model_fields:
        assert re.search(rf"^\| `{re.escape(name)}` \|", spec_ref, re.M), f"{model.__name__}.{name}"


def test_spec_reference_states_real_defaults():
    spec_ref = section("Spec reference")
    # a few defaults read from the schema, checked in the rendered rows
    rows = {
        "early_stopping": S.TrainSpec.model_fields["early_stopping"].default,
        "validation_split": S.TrainSpec.model_fields["validation_split"].default,
        "recurrent_initializer": S.LSTM.model_fields["recurrent_initializer"].default,
        "embeddings_initializer": S.Embedding.model_fields["embeddings_initializer"].default,
    }
    for field, default in rows.items():
        assert re.search(rf"^\| `{field}` \| [^|]+ \| `{default:g}`" if isinstance(default, float)
                         else rf"^\| `{field}` \| [^|]+ \| `{default}`", spec_ref, re.M), field


def test_yaml_specs_load():
    blocks = code_blocks("yaml")
    full = []
    for text in blocks:
        data = yaml.safe_load(text)
        if isinstance(data, dict) and "inputs" in data:
            spec = rnnedge.load_spec(data)  # schema + semantic checks (no TensorFlow)
            full.append(spec)
    assert any(not s.is_graph for s in full), "no sequential spec example"
    assert any(s.is_graph and any(getattr(n, "initial_state", None) for n in s.nodes) for s in full), \
        "no graph spec example with initial_state"


def test_presets_named_in_the_guide_exist():
    from rnnedge.spec import preset_names

    for p in preset_names():
        assert f"`{p}`" in GUIDE, p


# ------------------------------------------------------------------------------ commands
def _long_opts(cmd) -> list[str]:
    out = []
    for p in cmd.params:
        if isinstance(p, click.Option):
            out += [o for o in list(p.opts) + list(p.secondary_opts) if o.startswith("--")]
    return out


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_and_long_option_is_documented(name):
    cmd = COMMANDS[name]
    assert re.search(rf"^### {name}$", section("Commands"), re.M), f"no '### {name}' in section 3"
    for opt in _long_opts(cmd):
        assert f"`{opt}`" in GUIDE, f"rnnedge {name} {opt}"


def bash_invocations() -> list[list[str]]:
    """Every `rnnedge ...` command in ```bash blocks, split on && ; | and tokenized."""
    out = []
    for block in code_blocks("bash"):
        for line in block.splitlines():
            line = line.strip()
            if line.startswith("$ "):
                line = line[2:]
            for seg in re.split(r"&&|\|\||;|\|(?!\|)", line):
                seg = seg.split(">")[0].strip()
                if seg.startswith("rnnedge "):
                    out.append(shlex.split(seg)[1:])
    return out


def check_invocation(argv: list[str]) -> None:
    """Raise AssertionError unless ``rnnedge argv`` uses a real command, real options, option
    values where needed, and the command's number of arguments."""
    assert argv, "bare `rnnedge`"
    name, rest = argv[0], argv[1:]
    assert name in COMMANDS, f"unknown command {name!r}"
    cmd = COMMANDS[name]
    by_opt = {}
    for p in cmd.params:
        if isinstance(p, click.Option):
            for o in list(p.opts) + list(p.secondary_opts):
                by_opt[o] = p
    positional = []
    i = 0
    while i < len(rest):
        tok = rest[i]
        if tok.startswith("-") and tok != "-":
            opt, eq, _ = tok.partition("=")
            assert opt in by_opt or opt in ("-h", "--help"), f"rnnedge {name}: unknown option {opt}"
            p = by_opt.get(opt)
            takes_value = p is not None and not p.is_flag and p.nargs == 1 and not p.count
            if takes_value and not eq:
                assert i + 1 < len(rest) and not (rest[i + 1].startswith("-") and rest[i + 1] != "-"), \
                    f"rnnedge {name}: {opt} needs a value"
                i += 1
            elif eq:
                assert takes_value, f"rnnedge {name}: {opt} takes no value"
        else:
            positional.append(tok)
        i += 1
    args = [p for p in cmd.params if isinstance(p, click.Argument)]
    if any(a.nargs == -1 for a in args):
        assert len(positional) >= sum(1 for a in args if a.nargs != -1) + 1
    else:
        assert len(positional) == len(args), f"rnnedge {name}: {len(positional)} arguments {positional}, " \
                                             f"expected {[a.name for a in args]}"
    # and click itself parses it (values are not checked: files need not exist here)
    cmd.make_context(name, list(rest), resilient_parsing=True)


def test_bash_examples_use_real_commands_and_options():
    invocations = bash_invocations()
    assert len(invocations) >= 20
    problems = []
    for argv in invocations:
        try:
            check_invocation(argv)
        except AssertionError as e:
            problems.append(f"rnnedge {shlex.join(argv)}: {e}")
    assert not problems, "\n".join(problems)
    named = {a[0] for a in invocations}
    assert named >= set(COMMANDS), f"commands without an example: {set(COMMANDS) - named}"
    joined = [" ".join(a) for a in invocations]
    for must in (r"^run .*--streaming", r"^bench .*--streaming.*--steps|^bench .*--steps.*--streaming",
                 r"^export .*--streaming", r"^bench .*--provider cuda"):
        assert any(re.search(must, j) for j in joined), f"no example matching {must!r}"


def test_the_example_checker_catches_mistakes():
    for bad in (["exprot", "x"], ["export", "model.keras", "--formatt", "onnx", "-o", "d"],
                ["export", "model.keras", "-o"], ["validate"], ["validate", "a", "b"],
                ["bench", "m.onnx", "--streaming=yes"]):
        with pytest.raises(AssertionError):
            check_invocation(bad)
    check_invocation(["bench", "a.onnx", "b.tflite", "--batch-size", "1,8", "--no-progress"])


# ------------------------------------------------------------------------------ other references
def test_python_snippets_name_real_api():
    blocks = code_blocks("python")
    assert blocks
    for text in blocks:
        tree = ast.parse(text)
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "rnnedge":
                assert hasattr(rnnedge, node.attr), f"rnnedge.{node.attr}"
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rnnedge"):
                mod = importlib.import_module(node.module)
                for a in node.names:
                    assert hasattr(mod, a.name), f"{node.module}.{a.name}"
    for fn in ("load_spec", "build", "train", "export", "quantize", "validate", "bench", "deploy", "verify",
               "open_runner", "demo"):
        assert f"rnnedge.{fn}(" in GUIDE, fn
    assert "StreamingSession(" in GUIDE


def test_quantization_modes_and_tolerances_match_the_code():
    from rnnedge.quantization import MODES, ONNX_MODES, TFLITE_MODES
    from rnnedge.validation import TOLERANCES

    q = section("Quantization")
    rows = re.findall(r"^\| `([\w-]+)` \| (ONNX|TFLite) \|", q, re.M)
    assert {m for m, f in rows if f == "ONNX"} == set(ONNX_MODES)
    assert {m for m, f in rows if f == "TFLite"} == set(TFLITE_MODES)
    assert {m for m, _ in rows} == set(MODES)

    parity = section("Reading parity")
    table = {}
    for line in re.findall(r"^\| (`.*?) \| ([\d.e-]+) \| ([\d.e-]+) \|", parity, re.M):
        for p in re.findall(r"`([\w-]+)`", line[0]):
            table[p] = (float(line[1]), float(line[2]))
    assert set(table) == set(TOLERANCES)
    for p, tol in TOLERANCES.items():
        assert table[p] == (tol["atol"], tol["rtol"]), p
        if "min_agreement" in tol:
            assert f"≥ {tol['min_agreement']:g}" in parity


def test_deploy_runtimes_pi_os_and_predict_options_are_documented():
    from rnnedge.deployment import PI_OS, RUNTIMES, requirements_for

    pi = section("Raspberry Pi")
    for r in RUNTIMES:
        assert re.search(rf"^\| `{r}`", pi, re.M), r
        for os_name in PI_OS:
            try:
                reqs = requirements_for(r, os_name)
            except rnnedge.UsageError:
                continue
            for req in reqs:
                assert f"`{req}`" in pi, (r, req)
    for os_name, facts in PI_OS.items():
        assert f"`{os_name}` (Python {facts['python']})" in pi
    src = (ROOT / "rnnedge" / "deployment" / "templates" / "predict.py").read_text()
    opts = [m.group(1) for line in src.splitlines() if "SUPPRESS" not in line
            for m in [re.search(r"add_argument\(\s*\"(--[\w-]+)\"", line)] if m]
    assert len(opts) >= 8
    for o in opts:
        assert re.search(rf"^\| `{o}[` ]", pi, re.M), f"predict.py {o}"


def test_exit_codes_match_the_exceptions():
    errs = section("Exit codes")
    for cls in (rnnedge.RnnedgeError, rnnedge.ParityError, rnnedge.SpecError, rnnedge.UsageError,
                rnnedge.MissingDependencyError, rnnedge.ConversionError):
        assert re.search(rf"^\| {cls.exit_code} \| `{cls.__name__}` \|", errs, re.M), cls.__name__


def test_benchmark_figures_are_explained():
    from rnnedge.benchmarking import CASE_KEYS, LATENCY_KEYS

    bench = section("Reading benchmark")
    for k in CASE_KEYS:
        if k not in ("artifact", "format", "runtime", "provider", "batch_size", "seq_len", "info"):
            assert f"`{k}`" in bench or f"{k}" in bench, k
    for k in ("p50", "p90", "p99"):
        assert k in bench
    assert "load average" in bench and "speed-up" in bench
