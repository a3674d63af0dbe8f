"""Resolving what the user names (a spec file, a preset, a ``.keras`` file or a TF.js
``model.json``) to a Keras model plus what travels with it (spec, preprocessing) -- one place
for every command."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from rnnedge.errors import UsageError

SIDECAR_SUFFIX = ".rnnedge.json"


def sidecar_path(model_path: str | Path) -> Path:
    p = Path(model_path)
    return p.with_name(p.name[: -len(p.suffix)] + SIDECAR_SUFFIX) if p.suffix else p.with_name(p.name + SIDECAR_SUFFIX)


@dataclass
class LoadedModel:
    model: Any                       # keras.Model
    source: dict                     # {"kind": "preset"|"spec"|"keras"|"tfjs", "name"/"path": ...}
    spec: Optional[dict] = None      # the spec as data, when known
    preprocessing: Optional[dict] = None
    extra: dict = field(default_factory=dict)    # "tfjs": the TfjsImport of a TF.js model


def is_keras_file(source) -> bool:
    return isinstance(source, (str, Path)) and str(source).endswith((".keras", ".h5"))


def load_keras(path: str | Path):
    from rnnedge._keras import load_model

    p = Path(path)
    if not p.exists():
        raise UsageError(f"model file not found: {p}")
    try:
        return load_model(p)
    except Exception as e:  # corrupt archive, unknown custom layer, ...
        from rnnedge.errors import raise_if_missing

        raise_if_missing(e)  # TensorFlow/Keras not installed: exit 3, never "cannot load"
        raise UsageError(f"{p}: cannot load as a Keras model: {str(e).splitlines()[0][:300]}") from None


def resolve(source, *, seed: Optional[int] = None) -> LoadedModel:
    """A model from a Keras model object, a ``.keras`` path, a TF.js layers model (``model.json``
    or its folder: rebuilt by :mod:`converters.tfjs.importer`), a spec (path/dict/Spec) or a
    preset name."""
    if hasattr(source, "layers") and hasattr(source, "inputs"):
        return LoadedModel(source, {"kind": "keras-object", "name": getattr(source, "name", "model")})
    from converters.tfjs.importer import find_model_json

    if find_model_json(source) is not None:
        from converters.tfjs.importer import import_model

        imp = import_model(source)
        return LoadedModel(imp.model, imp.source, extra={"tfjs": imp})
    if is_keras_file(source):
        model = load_keras(source)
        side = sidecar_path(source)
        meta = json.loads(side.read_text()) if side.exists() else {}
        return LoadedModel(model, {"kind": "keras", "path": str(source), "name": Path(source).stem},
                           spec=meta.get("spec"), preprocessing=meta.get("preprocessing"),
                           extra={k: v for k, v in meta.items() if k not in ("spec", "preprocessing")})
    from rnnedge.builder import build_model
    from rnnedge.spec import load_spec
    from rnnedge.spec.loader import preset_names

    spec = load_spec(source)
    kind = "preset" if isinstance(source, str) and source in preset_names() else "spec"
    src = {"kind": kind, "name": spec.name}
    if kind == "spec" and isinstance(source, (str, Path)):
        src["path"] = str(source)
    model = build_model(spec, seed=seed)
    return LoadedModel(model, src, spec=spec.dump(), preprocessing=None,
                       extra={"trained": False})
