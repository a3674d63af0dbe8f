"""Bundles on an emulated Raspberry Pi 4: aarch64 Python 3.11 (Debian bookworm = Pi OS bookworm's
base) under qemu-user (-cpu cortex-a72), with the aarch64 wheels of

- legacy : tflite-runtime 2.14.0 + numpy 1.26.4 (what Pi OS bookworm users get from pip)
- current: ai-edge-litert + onnxruntime + numpy 2

The forecast and sentiment presets go through the real pipeline (rnnedge.train, briefly -> export
-> deploy). Every bundle's predict.py runs its --self-test and predictions (raw .npy, --text / --csv) whose
outputs are compared with Keras computed here. The dynamic-range model that deploy refuses for
tflite-runtime is shown to really fail to load there, and to run in LiteRT.

Needs `sudo .ci/setup_pi_emulation.sh` first (cached under $RNNEDGE_PI_ROOT, default <repo>/.pi-emu);
skipped with that instruction otherwise. Slow (minutes): marked `slow`.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_deploy import make_export  # noqa: E402

pytestmark = [pytest.mark.slow,
              pytest.mark.filterwarnings("ignore:model.dynamic.tflite cannot be loaded by tflite-runtime")]

REPO = Path(__file__).resolve().parents[1]
PI_ROOT = Path(os.environ.get("RNNEDGE_PI_ROOT", REPO / ".pi-emu"))
PI_PYTHON = PI_ROOT / "bin" / "pi-python"
TOL = 1e-5

if not (PI_ROOT / "READY").is_file() or not PI_PYTHON.is_file():
    pytest.skip(f"no emulated Raspberry Pi under {PI_ROOT}: run `sudo .ci/setup_pi_emulation.sh` "
                "(RNNEDGE_PI_ROOT sets the folder)", allow_module_level=True)

# One emulated interpreter per runtime set runs many predict.py command lines (each through the
# bundle's own main(argv)), so numpy and the runtime are imported once under qemu.
DRIVER = textwrap.dedent('''
    import contextlib, importlib.util, io, json, platform, sys, time
    jobs = json.load(open(sys.argv[1]))
    results = []
    mods = {}
    for job in jobs:
        path = job["bundle"] + "/predict.py"
        if path not in mods:
            spec = importlib.util.spec_from_file_location("predict_%d" % len(mods), path)
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
            mods[path] = mod
        out, err = io.StringIO(), io.StringIO()
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = mods[path].main(job["argv"])
            except SystemExit as e:
                rc = e.code
        results.append({**job, "rc": rc, "stdout": out.getvalue(), "stderr": err.getvalue(),
                        "seconds": time.perf_counter() - t0})
    print("RESULTS " + json.dumps({"machine": platform.machine(), "python": platform.python_version(),
                                   "results": results}))
''')


def pi_run(set_name: str, *args, timeout=900) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    return subprocess.run([str(PI_PYTHON), set_name, *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout)


def run_jobs(set_name: str, jobs: list[dict], tmp: Path) -> dict:
    (tmp / f"driver.py").write_text(DRIVER)
    jf = tmp / f"jobs-{set_name}.json"
    jf.write_text(json.dumps(jobs))
    t0 = time.perf_counter()
    r = pi_run(set_name, tmp / "driver.py", jf)
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULTS ")]
    assert r.returncode == 0 and line, r.stderr[-3000:]
    res = json.loads(line[-1][len("RESULTS "):])
    res["wall_seconds"] = time.perf_counter() - t0
    assert res["machine"] == "aarch64" and res["python"].startswith("3.11")
    return res


def _keras(export_dir: Path, x: np.ndarray) -> np.ndarray:
    import keras

    m = keras.saving.load_model(export_dir / "reference.keras", compile=False)
    return np.asarray(m(x, training=False))


def _preset_export(preset: str, root: Path) -> Path:
    """The real pipeline on a preset: rnnedge.train (briefly) -> .keras + sidecar -> export."""
    from rnnedge.training import train
    from test_deploy import _export

    keras_file = root / f"{preset}.keras"
    train(preset, out=keras_file, epochs=1, samples=32, steps_per_epoch=1, validation_split=0.0)
    _export(str(keras_file), ["tflite", "onnx"], root / preset, validate=False)
    return root / preset


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from rnnedge.data import encode_texts
    from rnnedge.deployment import deploy
    from rnnedge.manifest import load_manifest

    t0 = time.perf_counter()
    root = tmp_path_factory.mktemp("pi")
    exports = {k: _preset_export(k, root / "exp") for k in ("forecast", "sentiment")}
    exports["wide"] = make_export("wide", root / "exp" / "wide", formats=("tflite",), quantize=True,
                                  validate=False)
    bundles = {}
    for kind in ("forecast", "sentiment"):
        for rt in ("tflite-runtime", "litert", "onnxruntime"):
            bundles[kind, rt] = deploy(exports[kind], runtime=rt, out=root / "b" / f"{kind}-{rt}",
                                       tarball=False).bundle
    bundles["wide", "litert"] = deploy(exports["wide"], runtime="litert", model="model.dynamic.tflite",
                                       out=root / "b" / "wide-litert", tarball=False).bundle
    # new inputs (not the recorded sample) and their Keras outputs, computed here
    fpre = load_manifest(exports["forecast"])["preprocessing"]
    spre = load_manifest(exports["sentiment"])["preprocessing"]
    assert fpre["kind"] == "window" and spre["kind"] == "text"
    Wf, Ls = int(fpre["window"]), int(spre["max_len"])
    rng = np.random.default_rng(7)
    expected = {}
    x = rng.standard_normal((1, Wf, 1)).astype(np.float32)
    np.save(root / "forecast_x.npy", x)
    expected["forecast", "npy"] = _keras(exports["forecast"], x)
    sc = fpre["scaler"]
    series = (sc["mean"] + sc["std"] * np.cos(np.arange(Wf + 3) / 2.5)).astype(np.float32)
    (root / "series.csv").write_text("t,value\n" + "".join(f"{i},{v}\n" for i, v in enumerate(series)))
    expected["forecast", "csv"] = _keras(exports["forecast"],
                                         ((series[-Wf:] - np.float32(sc["mean"])) / np.float32(sc["std"]))
                                         .reshape(1, Wf, 1).astype(np.float32))
    x = rng.integers(0, len(spre["vocab"]) + 2, size=(1, Ls)).astype(np.int32)
    x[0, Ls // 2:] = 0  # post-padding
    np.save(root / "sentiment_x.npy", x)
    expected["sentiment", "npy"] = _keras(exports["sentiment"], x)
    text = "What a GREAT movie, the plot was fun and never boring!"
    expected["sentiment", "text"] = _keras(exports["sentiment"],
                                           encode_texts([text], spre["vocab"], Ls, spre["padding"], True))
    return {"root": root, "exports": exports, "bundles": bundles, "expected": expected, "text": text,
            "host_seconds": time.perf_counter() - t0}


def _jobs(setup, set_name: str) -> list[dict]:
    root, b = setup["root"], setup["bundles"]
    rts = ["tflite-runtime"] if set_name == "legacy" else ["litert", "onnxruntime"]
    jobs = []
    for rt in rts:
        for kind in ("forecast", "sentiment"):
            bd = str(b[kind, rt])
            tag = f"{kind}/{rt}"
            jobs.append({"id": f"{tag}/self-test", "bundle": bd, "argv": ["--self-test", "--json"]})
            jobs.append({"id": f"{tag}/npy", "bundle": bd, "out": str(root / f"y-{set_name}-{kind}-{rt}.npy"),
                         "argv": ["--input", str(root / f"{kind}_x.npy"),
                                  "--output", str(root / f"y-{set_name}-{kind}-{rt}.npy")]})
            if kind == "forecast":
                jobs.append({"id": f"{tag}/csv", "bundle": bd, "argv": ["--csv", str(root / "series.csv")]})
            else:
                jobs.append({"id": f"{tag}/text", "bundle": bd, "argv": ["--text", setup["text"]]})
    # a LiteRT bundle on a Pi that only has tflite-runtime falls back to it; the quantized one cannot
    if set_name == "legacy":
        jobs.append({"id": "forecast/litert->fallback/self-test", "bundle": str(b["forecast", "litert"]),
                     "argv": ["--self-test", "--json"]})
    jobs.append({"id": "wide-dynamic/litert/self-test", "bundle": str(b["wide", "litert"]),
                 "argv": ["--self-test", "--json"]})
    return jobs


def _check(setup, set_name: str, res: dict) -> dict:
    """Assert every job; return the measured max abs errors by job id."""
    errors = {}
    exp = setup["expected"]
    for r in res["results"]:
        jid = r["id"]
        if jid.startswith("wide-dynamic"):
            continue
        assert r["rc"] == 0, f"{set_name} {jid}: rc {r['rc']}\n{r['stderr']}\n{r['stdout']}"
        kind, rt, what = jid.split("/")
        if what == "self-test":
            rep = json.loads(r["stdout"].strip().splitlines()[-1])
            assert rep["ok"], (set_name, jid, rep)
            want_rt = {"legacy": "tflite-runtime"}.get(set_name, rt)
            assert rep["runtime"] == want_rt, (set_name, jid, rep["runtime"])
            errors[jid] = rep["max_abs_err"]
        elif what == "npy":
            y = np.load(r["out"])
            ref = exp[kind, "npy"]
            assert y.shape == ref.shape
            errors[jid] = float(np.max(np.abs(y - ref)))
        else:
            got = json.loads(r["stdout"])
            errors[jid] = float(abs(got["output"][0] - exp[kind, what][0, 0]))
        assert errors[jid] <= TOL, f"{set_name} {jid}: error {errors[jid]:.3g} > {TOL}"
    return errors


def test_bundles_on_emulated_pi_legacy_tflite_runtime_214(setup):
    res = run_jobs("legacy", _jobs(setup, "legacy"), setup["root"])
    errs = _check(setup, "legacy", res)
    assert {j.split("/")[1] for j in errs} == {"tflite-runtime", "litert->fallback"}
    assert len(errs) == 7
    # deploy refused this model for tflite-runtime: it really does not load there, and says why
    wide = [r for r in res["results"] if r["id"].startswith("wide-dynamic")][0]
    assert wide["rc"] == 1
    assert "FULLY_CONNECTED" in wide["stderr"] and "12" in wide["stderr"], wide["stderr"]
    print(f"\n[legacy tflite-runtime 2.14 / numpy 1.26, emulated cortex-a72] wall {res['wall_seconds']:.1f}s "
          f"(host deploy {setup['host_seconds']:.1f}s); max abs errors: "
          + ", ".join(f"{k}={v:.2g}" for k, v in errs.items()))


def test_bundles_on_emulated_pi_current_litert_onnxruntime(setup):
    res = run_jobs("current", _jobs(setup, "current"), setup["root"])
    errs = _check(setup, "current", res)
    assert len(errs) == 12
    wide = [r for r in res["results"] if r["id"].startswith("wide-dynamic")][0]
    assert wide["rc"] == 0, wide["stderr"]
    rep = json.loads(wide["stdout"].strip().splitlines()[-1])
    assert rep["ok"] and rep["runtime"] == "litert"
    print(f"\n[current ai-edge-litert + onnxruntime / numpy 2, emulated cortex-a72] wall {res['wall_seconds']:.1f}s; "
          f"max abs errors: " + ", ".join(f"{k}={v:.2g}" for k, v in errs.items())
          + f"; dynamic-range model (litert) {rep['max_abs_err']:.2g} (atol {rep['tolerance']['atol']:g})")


def test_verify_runs_predict_cli_under_emulation(setup):
    """rnnedge verify --python: the real `predict.py --self-test` command line on the emulated Pi."""
    from rnnedge.deployment import verify

    rep = verify(setup["bundles"]["sentiment", "tflite-runtime"], python=[str(PI_PYTHON), "legacy"])
    assert rep.ok, rep.errors
    assert rep.sample["python"].startswith("3.11") and rep.sample["runtime"] == "tflite-runtime"
    assert rep.sample["numpy"].startswith("1.26") and rep.sample["max_abs_err"] <= TOL
