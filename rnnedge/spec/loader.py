"""Loading specs from YAML/JSON/dicts/preset names, with errors that name the field."""
from __future__ import annotations

import difflib
import json
import os
from pathlib import Path
from typing import Any

from rnnedge.errors import SpecError, UsageError
from rnnedge.spec import schema as S

PRESET_DIR = Path(__file__).resolve().parent.parent / "presets"


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def preset_path(name: str) -> Path:
    p = PRESET_DIR / f"{name}.yaml"
    if not p.exists():
        hint = difflib.get_close_matches(name, preset_names(), n=1)
        extra = f"; did you mean '{hint[0]}'?" if hint else ""
        raise UsageError(f"unknown preset '{name}'{extra} (presets: {', '.join(preset_names())})")
    return p


def _fmt_loc(loc: tuple) -> str:
    out = ""
    parts = list(loc)
    i = 0
    while i < len(parts):
        p = parts[i]
        if isinstance(p, int):
            out += f"[{p}]"
        elif isinstance(p, str):
            # discriminated-union tags ('LSTM') and union member descriptions ("literal[...]") are
            # pydantic's bookkeeping, not fields the user wrote
            prev = parts[i - 1] if i else None
            is_tag = (p in S.LAYER_TYPES and (isinstance(prev, int) or prev in ("layer",)))
            is_member = ("[" in p and "]" in p) or p.startswith(("function-", "union["))
            if not (is_tag or is_member):
                out += ("." if out else "") + p
        i += 1
    return out


def _allowed_fields(loc: tuple) -> list[str]:
    """Field names of the model at ``loc`` (for 'did you mean')."""
    for p in reversed(loc[:-1]):
        if isinstance(p, str) and p in S.LAYER_TYPES:
            cls = next(c for c in S.LAYER_CLASSES if c.model_fields["type"].annotation.__args__[0] == p)
            return list(cls.model_fields)
    top = {"inputs": S.InputSpec, "compile": S.CompileSpec, "data": S.DataSpec, "train": S.TrainSpec}
    for p in reversed(loc[:-1]):
        if p in top:
            return list(top[p].model_fields)
    return list(S.Spec.model_fields) if len(loc) == 1 else []


def _message(err: dict) -> str:
    typ, loc, ctx = err["type"], err["loc"], err.get("ctx") or {}
    if typ == "extra_forbidden":
        field = loc[-1]
        allowed = _allowed_fields(loc)
        hint = difflib.get_close_matches(str(field), allowed, n=1)
        return f"unknown field '{field}'" + (f"; did you mean '{hint[0]}'?" if hint else "") + (
            f" (allowed: {', '.join(a for a in allowed if a != 'type')})" if allowed and not hint else "")
    if typ == "union_tag_invalid":
        tag = ctx.get("tag")
        expected = [t.strip(" '") for t in str(ctx.get("expected_tags", "")).split(",")]
        hint = difflib.get_close_matches(str(tag), expected, n=1)
        return (f"unknown layer type '{tag}'" + (f"; did you mean '{hint[0]}'?" if hint else "")
                + f" (allowed here: {', '.join(expected)})")
    if typ == "union_tag_not_found":
        return "missing 'type': every layer needs one (e.g. type: LSTM)"
    if typ == "missing":
        return "required field is missing"
    if typ == "literal_error":
        return f"invalid value {err.get('input')!r}: {err['msg'].replace('Input should be', 'expected')}"
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    return f"{msg} (got {err.get('input')!r})" if typ not in ("value_error", "model_type") and "input" in err and not isinstance(err.get("input"), (dict, list)) else msg


def spec_from_dict(data: Any, *, source: str | None = None) -> S.Spec:
    from pydantic import ValidationError

    if not isinstance(data, dict):
        raise SpecError("", f"a spec must be a mapping (YAML/JSON object), got {type(data).__name__}", source=source)
    try:
        spec = S.Spec.model_validate(data)
    except ValidationError as e:
        seen: dict[str, str] = {}
        for err in e.errors():
            path = _fmt_loc(err["loc"])
            if path not in seen:  # unions report one error per member: keep the first
                seen[path] = _message(err)
        (path, reason), *rest = seen.items()
        err = SpecError(path, reason, source=source)
        err.all_errors = list(seen.items())
        if rest:
            more = "; ".join(f"{p}: {r}" for p, r in rest[:4])
            err.args = (f"{err.args[0]}  (+{len(rest)} more: {more})",)
        raise err from None
    from rnnedge.spec.check import check_spec

    check_spec(spec, source=source)
    return spec


def read_spec_file(path: str | os.PathLike) -> dict:
    p = Path(path)
    if not p.exists():
        raise UsageError(f"spec file not found: {p}")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:  # e.g. model.onnx / model.tflite given where a model or spec is expected
        raise UsageError(f"{p}: a binary file, not a spec (YAML/JSON); a model is a preset, a spec, a "
                         ".keras/.h5 file, a TF.js model.json or an export folder") from None
    except IsADirectoryError:
        raise UsageError(f"{p}: a folder, not a spec file (an export folder has a manifest.json)") from None
    if p.suffix.lower() == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise SpecError("", f"invalid JSON at line {e.lineno} column {e.colno}: {e.msg}", source=str(p)) from None
    import yaml

    try:
        return yaml.safe_load(text)  # safe_load: a spec is data, never code
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise SpecError("", f"invalid YAML{where}: {getattr(e, 'problem', e)}", source=str(p)) from None


def load_spec(source: Any) -> S.Spec:
    """A :class:`Spec` from a Spec, a dict, a YAML/JSON path, or a preset name."""
    if isinstance(source, S.Spec):
        return source
    if isinstance(source, dict):
        return spec_from_dict(source)
    s = str(source)
    if s.endswith((".yaml", ".yml", ".json")) or os.sep in s or Path(s).exists():
        return spec_from_dict(read_spec_file(s), source=s)
    return spec_from_dict(read_spec_file(preset_path(s)), source=f"preset {s}")
