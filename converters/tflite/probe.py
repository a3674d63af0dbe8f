"""Measure which builtin op versions a TFLite runtime can resolve (used to build the table in
:mod:`rnnedge.tflite_compat`).

A runtime resolves every entry of a model's operator-code table when it builds the interpreter,
used or not. So a tiny valid model with one extra ``(builtin, version)`` entry loads iff the runtime
has a kernel registered for that version. ``make_probes`` writes such models (main env, needs a
flatbuffer schema); ``probe`` loads them in whatever interpreter the running Python has (run it with
the legacy venv's python: ``python -m converters.tflite.probe DIR``; it needs only numpy and an
interpreter).

    .venv/bin/python -m converters.tflite.probe --make /tmp/probes
    .venv-tflite214/bin/python converters/tflite/probe.py /tmp/probes   # prints the table
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

MAX_VERSION = 14


def make_probes(base_tflite: bytes, out_dir: str | os.PathLike, op_names: list[str]) -> int:
    import flatbuffers

    from rnnedge.tflite_compat import _schema

    s = _schema()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n = 0
    for name in op_names:
        code = getattr(s.BuiltinOperator, name)
        for v in range(1, MAX_VERSION + 1):
            m = s.ModelT.InitFromObj(s.Model.GetRootAsModel(base_tflite, 0))
            oc = s.OperatorCodeT()
            oc.builtinCode = code
            oc.deprecatedBuiltinCode = min(code, 127)
            oc.version = v
            m.operatorCodes.append(oc)
            b = flatbuffers.Builder(1024)
            b.Finish(m.Pack(b), file_identifier=b"TFL3")
            (out / f"{name}.{v}.tflite").write_bytes(bytes(b.Output()))
            n += 1
    return n


def probe(probe_dir: str | os.PathLike) -> dict[str, int]:
    try:
        from tflite_runtime.interpreter import Interpreter  # type: ignore
    except ImportError:
        from ai_edge_litert.interpreter import Interpreter  # type: ignore
    ok: dict[str, list[int]] = {}
    for f in sorted(Path(probe_dir).glob("*.tflite")):
        name, v, _ = f.name.rsplit(".", 2)
        try:
            Interpreter(model_content=f.read_bytes())
        except Exception:  # noqa: BLE001 - unresolved op -> not supported
            continue
        ok.setdefault(name, []).append(int(v))
    table = {}
    for name, vs in ok.items():
        table[name] = max(vs)
    return table


if __name__ == "__main__":
    if sys.argv[1] == "--make":
        sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
        from rnnedge.tflite_compat import _schema

        base = Path(sys.argv[3]).read_bytes()
        names = [k for k in vars(_schema().BuiltinOperator) if not k.startswith("_") and k != "CUSTOM"]
        print(make_probes(base, sys.argv[2], names))
    else:
        print(json.dumps(probe(sys.argv[1]), indent=0, sort_keys=True))
