"""The comparator: error figures of one output against the reference, their aggregate over
several input cases, and the verdict by tolerance. numpy only; inputs come from
:mod:`rnnedge.inputs`, the pairing of outputs from :mod:`rnnedge.matching`.

Tolerances (by the artifact's precision; an element passes when
``|a - r| <= atol + rtol * |r|``, as ``numpy.allclose``)
==================================================================================

=========================  =======  =======  =========================================
precision                  atol     rtol     why
=========================  =======  =======  =========================================
float32 (onnx, ort,        1e-5     1e-5     same math in fp32, only the order of
tflite)                                      summation differs: errors seen here are
                                             1e-7..1e-6 for T <= 100 (Polygraphy's
                                             default is 1e-5 as well).
float32, TF.js             1e-4     1e-4     the JS CPU backend's exp/tanh differ a few
                                             ulps and accumulate over time steps.
fp16                       1e-2     1e-2     half-precision weights: 11-bit mantissa,
                                             ~5e-4 relative per weight, a few 1e-3 after
                                             a recurrence (measured ~3e-4 here).
int8, uint8, int8-static,  1e-1     1e-1     8-bit weights (and activations): ~1e-2
dynamic (TFLite)                             typical, 1e-1 leaves room for saturation-
                                             free but coarse scales. **Classifier
                                             outputs are judged by top-1 agreement
                                             >= 0.98 instead** (what a user sees).
=========================  =======  =======  =========================================

Override with ``atol``/``rtol`` (a number for every precision, or ``{precision: number}``)
and ``min_agreement``. A classifier output is one made by a softmax or sigmoid
activation in the reference model (the last Dense / TimeDistributed(Dense) /
Activation layer); agreement is always reported for those, and judged for the 8-bit
precisions only.

"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

EIGHT_BIT = ("int8", "uint8", "int8-static", "dynamic")
TOLERANCES: dict[str, dict] = {
    "float32": {"atol": 1e-5, "rtol": 1e-5},
    "float32-tfjs": {"atol": 1e-4, "rtol": 1e-4},
    "fp16": {"atol": 1e-2, "rtol": 1e-2},
    **{p: {"atol": 1e-1, "rtol": 1e-1, "min_agreement": 0.98} for p in EIGHT_BIT},
}
_REL_EPS = 1e-7


def precision_of(name: str, entry: dict) -> str:
    """``float32`` / ``float32-tfjs`` / ``fp16`` / ``int8`` ... for a manifest entry."""
    q = entry.get("quantization")
    p = entry.get("precision") or (q.get("mode") if isinstance(q, dict) else q)
    if not p:
        parts = Path(name).name.split(".")
        p = next((x for x in parts[1:-1] if x in TOLERANCES or x == "fp16"), "float32")
    if p in ("float32", "fp32", "float") and entry.get("format") == "tfjs":
        return "float32-tfjs"
    if p in ("fp32", "float"):
        return "float32"
    return p


def tolerance_for(precision: str, atol=None, rtol=None, min_agreement=None) -> dict:
    """``{atol, rtol[, min_agreement]}`` for a precision, with the caller's overrides (a number,
    or ``{precision: number}``)."""
    base = dict(TOLERANCES.get(precision) or TOLERANCES["int8" if "int" in precision else "float32"])

    def pick(v, key):
        if isinstance(v, dict):
            v = v.get(precision, v.get(precision.split("-")[0]))
        if v is not None:
            base[key] = float(v)

    pick(atol, "atol")
    pick(rtol, "rtol")
    if min_agreement is not None and "min_agreement" in base:
        base["min_agreement"] = float(min_agreement)
    return base


def compare(ref: np.ndarray, out: np.ndarray, *, atol: float, rtol: float,
            classifier: str | None = None) -> dict:
    """Error figures of ``out`` against ``ref`` (same shape): max/mean absolute error, max
    relative error, cosine similarity, ``worst_excess`` (max of ``|a-r| - (atol + rtol*|r|)``:
    > 0 fails), top-1 agreement for classifier outputs, and for ``(batch, time, ...)`` outputs the
    max error per time step."""
    r = np.asarray(ref, dtype=np.float64)
    a = np.asarray(out, dtype=np.float64)
    d = np.abs(a - r)
    finite = bool(np.isfinite(a).all())
    res: dict[str, Any] = {
        "max_abs": float(d.max()) if d.size else 0.0,
        "mean_abs": float(d.mean()) if d.size else 0.0,
        "max_rel": float((d / (np.abs(r) + _REL_EPS)).max()) if d.size else 0.0,
        "worst_excess": float((d - (atol + rtol * np.abs(r))).max()) if d.size else 0.0,
        "n": int(d.size),
        "finite": finite,
    }
    na, nr = np.linalg.norm(a.ravel()), np.linalg.norm(r.ravel())
    res["cosine"] = 1.0 if na == 0 and nr == 0 else float(np.dot(a.ravel(), r.ravel()) / max(na * nr, 1e-30))
    if classifier:
        if classifier == "softmax" and r.shape[-1] > 1:
            agree = np.argmax(a, axis=-1) == np.argmax(r, axis=-1)
        else:
            agree = (a > 0.5) == (r > 0.5)
        res["top1_agreement"] = float(agree.mean()) if agree.size else 1.0
        res["top1_n"] = int(agree.size)
    if r.ndim >= 3:  # (batch, time, ...): max error per step
        res["per_timestep_max_abs"] = [float(x) for x in d.reshape(d.shape[0], d.shape[1], -1).max(axis=(0, 2))]
    return res


def case_key(label) -> str:
    """A case label (an int, ``{input: T}`` or None) as a short string: ``8``, ``a=15,b=17``."""
    if isinstance(label, dict):
        return ",".join(f"{k}={v}" for k, v in label.items())
    return str(label)


def merge(cases: list[tuple[Any, dict]]) -> dict:
    """Aggregate one output's figures (:func:`compare`) over the input cases ``[(label, figures)]``
    (label: a sequence length, ``{input: T}`` or None)."""
    out: dict[str, Any] = {}
    ns = [c["n"] for _, c in cases]
    tot = max(1, sum(ns))
    out["max_abs"] = max(c["max_abs"] for _, c in cases)
    out["mean_abs"] = sum(c["mean_abs"] * c["n"] for _, c in cases) / tot
    out["max_rel"] = max(c["max_rel"] for _, c in cases)
    out["cosine"] = min(c["cosine"] for _, c in cases)
    out["worst_excess"] = max(c["worst_excess"] for _, c in cases)
    out["finite"] = all(c["finite"] for _, c in cases)
    if all("top1_agreement" in c for _, c in cases):
        tn = sum(c["top1_n"] for _, c in cases)
        out["top1_agreement"] = sum(c["top1_agreement"] * c["top1_n"] for _, c in cases) / max(1, tn)
    first = cases[0][1]
    if "per_timestep_max_abs" in first:
        out["per_timestep_max_abs"] = [float(f"{x:.3g}") for x in first["per_timestep_max_abs"]]
    if len(cases) > 1:
        out["by_seq_len"] = {case_key(L): {"max_abs": c["max_abs"], "mean_abs": c["mean_abs"]} for L, c in cases}
    return out


def judge(m: dict, classifier: str | None, tol: dict) -> dict:
    """Add ``classifier``, ``judged_by`` and ``verdict`` (pass/fail) to merged figures ``m``
    (:func:`merge`); a failed output also gets ``reason``, one line."""
    m["classifier"] = classifier
    by_top1 = bool(classifier) and "min_agreement" in tol and "top1_agreement" in m
    m["judged_by"] = "top1_agreement" if by_top1 else "atol/rtol"
    if not m["finite"]:
        ok, why = False, "non-finite values"
    elif by_top1:
        ok = m["top1_agreement"] >= tol["min_agreement"]
        why = f"top-1 agreement {m['top1_agreement']:.3f} < {tol['min_agreement']}"
    else:
        ok = m["worst_excess"] <= 0.0
        why = f"max abs error {m['max_abs']:.3g} > atol {tol['atol']:g} + rtol {tol['rtol']:g}*|ref|"
    m["verdict"] = "pass" if ok else "fail"
    if not ok:
        m["reason"] = why
    return m
