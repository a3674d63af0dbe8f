"""Sweep (not a test): every model of the zoo (tests/model_zoo.py) through the public CLI as a
user would, then independent checks in plain runtimes (tests/zoo_checks.py). Each step runs in a
child process with a timeout: a crash, a segfault or a hang is a result, not the end of the run.

Per model, in OUT/models/ID/:
  1. prepare (child, TensorFlow): build the zoo model, save model.keras, sample inputs and the
     Keras outputs (inputs.npz / keras.npz; also checks a reload of the .keras gives the same).
  2. ``rnnedge export model.keras -f onnx,tflite -o export`` (exit code, first error line).
     A format the combined export did not write is exported alone (``-f FMT -o export-FMT``) so
     that each format has a result.
  3. ``rnnedge validate DIR --json validate-DIR.json`` for each export folder (exit code,
     verdict per artifact, how many outputs it compared).
  4. per written artifact (child, no TensorFlow): plain onnxruntime / plain LiteRT vs Keras, every
     output by position; TFLite invoked twice on the same input with no reset; op types.
Writes OUT/models/ID/result.json, then OUT/summary.json and OUT/summary.md (counts, failures
grouped by first error line with an example model, one row per model).

    source .venv/bin/activate && export PYTHONPATH=$PWD
    nice -n 10 python benchmarks/sweep.py --out runs/sweep [--filter REGEX] [--tags lstm,masking]
        [--jobs 1] [--timeout 300] [--resume] [--results sweep_before]
    python benchmarks/sweep.py --out runs/sweep --summarize-only --results sweep_before

``--results NAME`` also writes benchmarks/results/NAME.json and .md.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import model_zoo  # noqa: E402

FORMATS = (("onnx", "model.onnx"), ("tflite", "model.tflite"))
_NOISE = re.compile(r"^(WARNING: All log messages|[IWE]\d{4} |INFO: |WARNING:absl|W tensorflow|I tensorflow|"
                    r"To enable the following|.*oneDNN custom operations|.*cpu_feature_guard|\s*$)")


# ---------------------------------------------------------------- child processes


def _env() -> dict:
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="-1", TF_CPP_MIN_LOG_LEVEL="3", COLUMNS="400",
               KERAS_BACKEND="tensorflow", PYTHONUNBUFFERED="1")
    pp = env.get("PYTHONPATH", "")
    if str(ROOT) not in pp.split(os.pathsep):
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), pp) if p)
    return env


def _rnnedge() -> list[str]:
    exe = Path(sys.executable).with_name("rnnedge")
    return [str(exe)] if exe.exists() else [sys.executable, "-c", "import sys; from rnnedge.cli import main; sys.exit(main())"]


def error_line(stderr: str, rc: int | None) -> str | None:
    """The first error line of a child's stderr: rnnedge's ``error: ...`` line, else a traceback's
    last line, else the last line that is not TensorFlow/LiteRT start-up noise."""
    if rc == 0:
        return None
    lines = [ln.rstrip() for ln in stderr.splitlines() if not _NOISE.match(ln)]
    for ln in lines:
        if re.match(r"^(error|internal error)\b", ln.strip(), re.I):
            return ln.strip()
    if any(ln.startswith("Traceback") for ln in lines):
        for ln in reversed(lines):
            if ln and not ln.startswith(" "):
                return ln.strip()
    return lines[-1].strip() if lines else None


def run_child(cmd: list[str], timeout: float, cwd=None) -> dict:
    """Run ``cmd`` in its own process group; ``{"rc", "seconds", "status", "error_line",
    "stderr_tail", "stdout_tail"}``. status: ok / exit / crash (signal) / timeout."""
    t0 = time.time()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=cwd,
                         start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
        rc = p.returncode
        status = "ok" if rc == 0 else ("crash" if rc < 0 else "exit")
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        rc, status = None, "timeout"
    res = {"cmd": " ".join(str(c) for c in cmd), "rc": rc, "status": status, "seconds": round(time.time() - t0, 2),
           "stderr_tail": "\n".join(err.splitlines()[-15:]), "stdout_tail": "\n".join(out.splitlines()[-25:])}
    if status == "timeout":
        res["error_line"] = f"timeout after {timeout:g} s"
    elif status == "crash":
        try:
            name = signal.Signals(-rc).name
        except ValueError:
            name = str(-rc)
        res["error_line"] = f"crashed: {name}" + (f" ({error_line(err, 1)})" if error_line(err, 1) else "")
    else:
        res["error_line"] = error_line(err, rc)
    return res


# ---------------------------------------------------------------- child bodies


def child_prepare(model_id: str, d: Path) -> None:
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")
    import numpy as np

    m = model_zoo.get(model_id)
    t0 = time.time()
    model = m.build()
    build_s = time.time() - t0
    xs = m.sample_inputs(model)
    ys = m.reference(model, xs)
    model.save(d / "model.keras")
    import keras

    reloaded = keras.models.load_model(d / "model.keras")
    ys2 = m.reference(reloaded, xs)
    reload_err = max(float(np.max(np.abs(a - b))) if a.size else 0.0 for a, b in zip(ys, ys2))
    np.savez(d / "inputs.npz", **{f"in_{k}": x for k, x in enumerate(xs)})
    np.savez(d / "keras.npz", **{f"out_{k}": y for k, y in enumerate(ys)})
    meta = {"id": m.id, "input_names": [t.name for t in model.inputs], "output_names": list(model.output_names),
            "input_shapes": [list(x.shape) for x in xs], "input_dtypes": [str(x.dtype) for x in xs],
            "output_shapes": [list(y.shape) for y in ys], "batch": m.batch, "seq_len": m.seq_len,
            "build_s": round(build_s, 3), "reload_max_abs": reload_err, "params": int(model.count_params())}
    (d / "meta.json").write_text(json.dumps(meta, indent=1))


def _load(d: Path):
    import numpy as np

    meta = json.loads((d / "meta.json").read_text())
    with np.load(d / "inputs.npz") as f:
        xs = [f[f"in_{k}"] for k in range(len(f.files))]
    with np.load(d / "keras.npz") as f:
        ys = [f[f"out_{k}"] for k in range(len(f.files))]
    return meta, xs, ys


def child_check(fmt: str, artifact: Path, d: Path) -> None:
    import zoo_checks as zc

    meta, xs, ys = _load(d)
    res: dict = {"artifact": str(artifact.relative_to(d))}
    try:
        res["ops"] = zc.onnx_op_types(artifact) if fmt == "onnx" else zc.tflite_op_types(artifact)
    except Exception as e:  # noqa: BLE001 - a result
        res["ops_error"] = f"{type(e).__name__}: {e}".splitlines()[0]
    try:
        run = zc.run_onnx(artifact, xs, meta["input_names"]) if fmt == "onnx" else zc.run_tflite(artifact, xs, meta["input_names"])
    except Exception as e:  # noqa: BLE001 - a result
        res.update(ok=False, stage="run", error=f"{type(e).__name__}: {e}".splitlines()[0][:400])
        (d / f"check-{fmt}.json").write_text(json.dumps(res, indent=1))
        return
    cmp = zc.compare_by_position(ys, run.pop("outputs"))
    res.update({k: v for k, v in run.items()})
    res["compare"] = cmp
    problems = []
    if not cmp["ok"]:
        problems.append(zc.first_problem(cmp))
    if fmt == "tflite" and not run["repeat_identical"]:
        problems.append(f"second invoke differs from the first (max {run['repeat_max_abs']:.3g}) with no reset")
    res["parity_ok"] = cmp["ok"]
    res["ok"] = not problems
    res["error"] = "; ".join(problems) or None
    (d / f"check-{fmt}.json").write_text(json.dumps(res, indent=1))


# ---------------------------------------------------------------- one model


def _validate_summary(path: Path) -> dict:
    if not path.exists():
        return {}
    rep = json.loads(path.read_text())
    out = {}
    for name, row in (rep.get("artifacts") or {}).items():
        out[name] = {"verdict": row.get("verdict"), "message": row.get("message"),
                     "outputs_compared": len(row.get("outputs") or {})}
    return out


def run_model(m, root: Path, timeout: float, resume: bool) -> dict:
    d = root / "models" / m.id
    if resume and (d / "result.json").exists():
        return json.loads((d / "result.json").read_text())
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    t0 = time.time()
    rec: dict = {"id": m.id, "tags": sorted(m.tags), "note": m.note}
    py = [sys.executable, str(Path(__file__).resolve())]
    rec["prepare"] = run_child(py + ["--_prepare", m.id, str(d)], timeout)
    if rec["prepare"]["rc"] != 0:
        rec["seconds"] = round(time.time() - t0, 1)
        (d / "result.json").write_text(json.dumps(rec, indent=1))
        return rec
    rec["keras"] = json.loads((d / "meta.json").read_text())
    keras_file = str(d / "model.keras")
    rec["export"] = run_child(_rnnedge() + ["export", keras_file, "-f", "onnx,tflite", "-o", str(d / "export")], timeout)
    fmts: dict = {}
    for fmt, fname in FORMATS:
        if (d / "export" / fname).exists():
            fmts[fmt] = {"written_by": "combined", "dir": "export"}
            continue
        solo = run_child(_rnnedge() + ["export", keras_file, "-f", fmt, "-o", str(d / f"export-{fmt}")], timeout)
        written = (d / f"export-{fmt}" / fname).exists()
        fmts[fmt] = {"written_by": "solo" if written else "none", "dir": f"export-{fmt}", "solo_export": solo}
    rec["validate"] = {}
    for sub in sorted({f["dir"] for f in fmts.values()}):
        if (d / sub / "manifest.json").exists():
            v = run_child(_rnnedge() + ["validate", str(d / sub), "--json", str(d / f"validate-{sub}.json")], timeout)
            v["artifacts"] = _validate_summary(d / f"validate-{sub}.json")
            rec["validate"][sub] = v
    for fmt, fname in FORMATS:
        f = fmts[fmt]
        v = rec["validate"].get(f["dir"])
        f["validate_rc"] = v["rc"] if v else None
        f["validate"] = (v or {}).get("artifacts", {}).get(fname)
        if v and f["validate"] is None and (d / f["dir"] / fname).exists():
            listed = sorted(v.get("artifacts") or {})
            f["validate"] = {"verdict": "no report", "message": v.get("error_line") or
                             f"validate exit {v['rc']} without judging {fname} (its report lists {listed})"}
        if f["written_by"] == "none":
            continue
        art = d / f["dir"] / fname
        c = run_child(py + ["--_check", fmt, str(art), str(d)], timeout)
        cf = d / f"check-{fmt}.json"
        if cf.exists():
            f["check"] = json.loads(cf.read_text())
        else:
            f["check"] = {"ok": False, "stage": "child", "error": c["error_line"] or f"check child exit {c['rc']}"}
        f["check"]["child"] = {k: c[k] for k in ("rc", "status", "seconds")}
    rec["formats"] = fmts
    rec["seconds"] = round(time.time() - t0, 1)
    (d / "result.json").write_text(json.dumps(rec, indent=1))
    return rec


# ---------------------------------------------------------------- summary


def group_key(line: str | None) -> str:
    """An error line with paths, quoted names, bracketed lists and numbers blanked, to group alike
    failures."""
    if not line:
        return "(no message)"
    s = re.sub(r"(/[\w.+-]+)+", "<path>", line)
    s = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", s)
    s = re.sub(r"\[[^\]]*\]", "[…]", s)
    s = re.sub(r"\(\d[^)]*\)", "(…)", s)
    s = re.sub(r"-?\d+(\.\d+)?(e[-+]?\d+)?", "N", s)
    return s[:180]


def _steps(r: dict) -> list[dict]:
    """Every child-process record of a model's result."""
    out = [r["prepare"]] + ([r["export"]] if "export" in r else []) + list((r.get("validate") or {}).values())
    for f in (r.get("formats") or {}).values():
        if "solo_export" in f:
            out.append(f["solo_export"])
        if (f.get("check") or {}).get("child"):
            out.append(f["check"]["child"])
    return out


def _rc(x) -> str:
    if x is None:
        return "-"
    if x.get("status") == "timeout":
        return "timeout"
    if x.get("status") == "crash":
        return "crash"
    return str(x.get("rc"))


def _check_class(f: dict | None) -> str:
    if not f or f.get("written_by") == "none":
        return "no artifact"
    c = f.get("check") or {}
    if c.get("ok"):
        return "ok"
    if c.get("stage") in ("run", "child"):
        return "could not run"
    cls = []
    cmp = c.get("compare") or {}
    if cmp and not cmp.get("ok"):
        err = c.get("error") or ""
        cls.append("output count differs" if cmp["n_keras"] != cmp["n_artifact"] else
                   "outputs in another order" if "another order" in err else "numbers differ")
    if c.get("repeat_identical") is False:
        cls.append("repeat invoke differs")
    return " + ".join(cls) or "failed"


def summarize(results: list[dict], seconds: float | None, args_line: str) -> dict:
    C = collections.Counter
    n = len(results)
    s: dict = {"models": n, "command": args_line, "seconds": seconds, "zoo_size": len(model_zoo.ZOO),
               "model_seconds_sum": round(sum(r.get("seconds") or 0 for r in results), 1)}
    s["timeouts"] = sorted({r["id"] for r in results for st in _steps(r) if st.get("status") == "timeout"})
    s["crashes"] = sorted({r["id"] for r in results for st in _steps(r) if st.get("status") == "crash"})
    s["prepare_failed"] = [r["id"] for r in results if r["prepare"]["rc"] != 0]
    ok = [r for r in results if r["prepare"]["rc"] == 0]
    s["export_rc"] = dict(C(_rc(r["export"]) for r in ok))
    per: dict = {}
    for fmt, _ in FORMATS:
        fs = [r["formats"][fmt] for r in ok]
        per[fmt] = {
            "written_by": dict(C(f["written_by"] for f in fs)),
            "solo_export_rc": dict(C(_rc(f["solo_export"]) for f in fs if "solo_export" in f)),
            "validate_rc": dict(C("-" if f["validate_rc"] is None else str(f["validate_rc"]) for f in fs)),
            "validate_verdict": dict(C((f.get("validate") or {}).get("verdict", "no artifact") for f in fs)),
            "check": dict(C(_check_class(f) for f in fs)),
        }
        if fmt == "onnx":
            cf = [r for r in ok if ((r["formats"]["onnx"].get("check") or {}).get("ops") or {}).get("control_flow")]
            per[fmt]["control_flow_models"] = len(cf)
            per[fmt]["control_flow_not_convlstm"] = [r["id"] for r in cf if "convlstm" not in r["tags"]]
        else:
            ops = [((r["formats"]["tflite"].get("check") or {}).get("ops") or {}) for r in ok]
            per[fmt]["while_models"] = sum(1 for o in ops if o.get("while"))
            per[fmt]["fused_rnn_models"] = sum(1 for o in ops if o.get("fused_rnn"))
        per[fmt]["validate_passed_but_check_failed"] = [
            r["id"] for r in ok if (r["formats"][fmt].get("validate") or {}).get("verdict") == "pass"
            and not (r["formats"][fmt].get("check") or {}).get("ok", False)]
        per[fmt]["validate_compared_fewer_outputs"] = [
            r["id"] for r in ok if (r["formats"][fmt].get("validate") or {}).get("outputs_compared")
            and r["formats"][fmt]["validate"]["outputs_compared"] < len(r["keras"]["output_names"])]
    s["formats"] = per
    s["all_green"] = sum(1 for r in ok if _rc(r["export"]) == "0" and all(
        r["formats"][f]["validate_rc"] == 0 and (r["formats"][f].get("check") or {}).get("ok") for f, _ in FORMATS))

    groups: dict = collections.defaultdict(lambda: collections.defaultdict(list))

    def add(stage, line, mid):
        groups[stage][group_key(line)].append((mid, line))
    for r in results:
        if r["prepare"]["rc"] != 0:
            add("prepare", r["prepare"]["error_line"], r["id"])
            continue
        if r["export"]["rc"] != 0:
            add("export -f onnx,tflite", r["export"]["error_line"], r["id"])
        for fmt, fname in FORMATS:
            f = r["formats"][fmt]
            if "solo_export" in f and f["solo_export"]["rc"] != 0:
                add(f"export -f {fmt} (alone)", f["solo_export"]["error_line"], r["id"])
            v = f.get("validate")
            if v and v.get("verdict") not in ("pass", "skipped"):
                add(f"validate {fmt}", v.get("message"), r["id"])
            c = f.get("check")
            if c and not c.get("ok"):
                add(f"independent {fmt}", c.get("error"), r["id"])
    s["groups"] = {stage: sorted(({"key": k, "count": len(v), "example": v[0][0], "example_line": v[0][1],
                                   "models": [x[0] for x in v]} for k, v in g.items()), key=lambda x: -x["count"])
                   for stage, g in groups.items()}
    s["rows"] = [_row(r) for r in results]
    return s


def _row(r: dict) -> dict:
    row = {"id": r["id"], "tags": r["tags"], "seconds": r.get("seconds")}
    if r["prepare"]["rc"] != 0:
        row["prepare"] = r["prepare"]["error_line"]
        return row
    row["n_outputs"] = len(r["keras"]["output_names"])
    row["export_rc"] = _rc(r["export"])
    row["export_error"] = r["export"]["error_line"]
    for fmt, _ in FORMATS:
        f = r["formats"][fmt]
        c = f.get("check") or {}
        row[fmt] = {"written_by": f["written_by"], "solo_export_rc": _rc(f.get("solo_export")) if "solo_export" in f else None,
                    "solo_export_error": (f.get("solo_export") or {}).get("error_line"),
                    "validate_rc": f["validate_rc"], "validate": (f.get("validate") or {}).get("verdict"),
                    "validate_message": (f.get("validate") or {}).get("message"),
                    "validate_outputs_compared": (f.get("validate") or {}).get("outputs_compared"),
                    "check": _check_class(f), "check_error": c.get("error"),
                    "n_artifact_outputs": (c.get("compare") or {}).get("n_artifact"),
                    "max_abs": max([o.get("max_abs") or 0 for o in (c.get("compare") or {}).get("outputs", [])], default=None),
                    "ops": (c.get("ops") or {}).get("control_flow" if fmt == "onnx" else "fused_rnn"),
                    }
        if fmt == "tflite":
            row[fmt]["while"] = (c.get("ops") or {}).get("while")
            row[fmt]["repeat_identical"] = c.get("repeat_identical")
            row[fmt]["repeat_max_abs"] = c.get("repeat_max_abs")
    return row


def _counts(d: dict) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(d.items(), key=lambda kv: (-kv[1], kv[0]))) or "-"


def to_markdown(s: dict) -> str:
    L = [f"# rnnedge sweep over the model zoo ({s['models']} models)", "",
         f"`{s['command']}`" + (f" — {s['seconds'] / 60:.1f} min wall" if s.get("seconds") else "")
         + f" ({s['model_seconds_sum'] / 60:.1f} min summed over models)", "",
         f"Steps that timed out: {', '.join(s['timeouts']) or 'none'}; crashed (signal): {', '.join(s['crashes']) or 'none'}", "",
         f"Models green end to end (export 0, validate 0 and both independent checks ok for ONNX and TFLite): "
         f"**{s['all_green']} of {s['models'] - len(s['prepare_failed'])}**", ""]
    L += [f"Note: {n}" for n in s.get("notes") or []] + ([""] if s.get("notes") else [])
    if s["prepare_failed"]:
        L += [f"Zoo models that failed to build: {', '.join(s['prepare_failed'])}", ""]
    L += [f"`rnnedge export MODEL.keras -f onnx,tflite` exit codes: {_counts(s['export_rc'])}", "",
          "| | ONNX | TFLite |", "|---|---|---|"]
    F = s["formats"]
    for key, title in (("written_by", "artifact written by (combined export / solo export / none)"),
                       ("solo_export_rc", "solo `export -f FMT` exit codes (when the combined one did not write it)"),
                       ("validate_rc", "`rnnedge validate` exit code of the folder holding it"),
                       ("validate_verdict", "`validate` verdict for the artifact"),
                       ("check", "independent check (plain runtime vs Keras, by position)")):
        L.append(f"| {title} | {_counts(F['onnx'][key])} | {_counts(F['tflite'][key])} |")
    L.append(f"| ONNX with Loop/Scan/If (any model / not ConvLSTM) · TFLite with WHILE / fused RNN op | "
             f"{F['onnx']['control_flow_models']} / {len(F['onnx']['control_flow_not_convlstm'])} | "
             f"{F['tflite']['while_models']} / {F['tflite']['fused_rnn_models']} |")
    L.append(f"| validate passed but the independent check failed | {len(F['onnx']['validate_passed_but_check_failed'])} | "
             f"{len(F['tflite']['validate_passed_but_check_failed'])} |")
    L.append(f"| validate compared fewer outputs than Keras has | {len(F['onnx']['validate_compared_fewer_outputs'])} | "
             f"{len(F['tflite']['validate_compared_fewer_outputs'])} |")
    L += ["", "## Failures grouped by first error line", ""]
    for stage, gs in s["groups"].items():
        L += [f"### {stage} ({sum(g['count'] for g in gs)})", "", "| count | first error line (example) | example model |", "|---|---|---|"]
        for g in gs:
            line = (g["example_line"] or "(no message)").replace("|", "\\|")
            L.append(f"| {g['count']} | {line[:300]} | `{g['example']}` |")
        L.append("")
    L += ["## Per model", "", "| model | export | ONNX: written · validate · check | TFLite: written · validate · check · repeat |",
          "|---|---|---|---|"]
    for r in s["rows"]:
        if "prepare" in r:
            L.append(f"| `{r['id']}` | build failed: {r['prepare']} | | |")
            continue
        o, t = r["onnx"], r["tflite"]
        rep = "-" if t["repeat_identical"] is None else ("same" if t["repeat_identical"] else f"differs {t['repeat_max_abs']:.2g}")
        L.append(f"| `{r['id']}` | {r['export_rc']} | {o['written_by']} · {o['validate'] or '-'} · {o['check']} | "
                 f"{t['written_by']} · {t['validate'] or '-'} · {t['check']} · {rep} |")
    return "\n".join(L) + "\n"


# ---------------------------------------------------------------- main


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--filter", help="regex on model ids")
    ap.add_argument("--tags", help="comma-separated tags a model must all carry")
    ap.add_argument("--jobs", type=int, default=1, help="models in parallel (default 1)")
    ap.add_argument("--timeout", type=float, default=300, help="seconds per child command (default 300)")
    ap.add_argument("--out", default="runs/sweep", help="output folder (default runs/sweep)")
    ap.add_argument("--resume", action="store_true", help="keep models that already have result.json")
    ap.add_argument("--summarize-only", action="store_true", help="rebuild the summary from OUT/models/*/result.json")
    ap.add_argument("--results", help="also write benchmarks/results/NAME.json and NAME.md")
    ap.add_argument("--note", action="append", default=[], help="a line for the summary's notes (repeatable)")
    ap.add_argument("--list", action="store_true", help="list the selected models and exit")
    ap.add_argument("--_prepare", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--_check", nargs=3, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a._prepare:
        child_prepare(a._prepare[0], Path(a._prepare[1]))
        return 0
    if a._check:
        child_check(a._check[0], Path(a._check[1]), Path(a._check[2]))
        return 0
    models = model_zoo.select(a.filter, a.tags)
    if a.list:
        for m in models:
            print(f"{m.id:40s} {','.join(sorted(m.tags))}")
        return 0
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    cmdline = "python benchmarks/sweep.py " + " ".join(argv if argv is not None else sys.argv[1:])
    seconds = None
    if a.summarize_only:
        ids = {m.id for m in models}
        results = [json.loads(p.read_text()) for p in sorted((out / "models").glob("*/result.json"))]
        results = [r for r in results if r["id"] in ids]
        order = {m.id: k for k, m in enumerate(model_zoo.ZOO)}
        results.sort(key=lambda r: order.get(r["id"], 1 << 30))
        prev = out / "summary.json"
        if prev.exists():  # keep the run's own wall time and command
            p = json.loads(prev.read_text())
            seconds, cmdline = p.get("seconds"), p.get("command", cmdline)
    else:
        t0 = time.time()
        done = 0

        def one(m):
            nonlocal done
            r = run_model(m, out, a.timeout, a.resume)
            done += 1
            if r["prepare"]["rc"] != 0:
                line = f"build failed: {r['prepare']['error_line']}"
            else:
                line = f"export {_rc(r['export'])} | " + " | ".join(
                    f"{f}: {r['formats'][f]['written_by']}, validate {(r['formats'][f].get('validate') or {}).get('verdict', '-')}, "
                    f"check {_check_class(r['formats'][f])}" for f, _ in FORMATS)
            print(f"[{done}/{len(models)}] {m.id}: {line} ({r.get('seconds')} s)", flush=True)
            return r
        with ThreadPoolExecutor(max(1, a.jobs)) as ex:
            results = list(ex.map(one, models))
        seconds = round(time.time() - t0, 1)
    s = summarize(results, seconds, cmdline)
    s["notes"] = list(a.note)
    (out / "summary.json").write_text(json.dumps(s, indent=1))
    md = to_markdown(s)
    (out / "summary.md").write_text(md)
    if a.results:
        res = ROOT / "benchmarks" / "results"
        (res / f"{a.results}.json").write_text(json.dumps(s, indent=1))
        (res / f"{a.results}.md").write_text(md)
    print(md.split("## Failures")[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
