"""TF.js layers models run in Node.js (pure ``@tensorflow/tfjs``, JS CPU backend).

No TensorFlow here: the runner writes the feeds to a JSON file, calls the shipped
``rnnedge/runtime/node/run.js`` in a ``node`` subprocess and reads the outputs back.
``run_many`` runs several (model, feeds) pairs in one Node process (Node + TF.js start-up
is ~0.5 s, so tests and ``validate`` batch their models).

Needs ``node`` (>= 18) on PATH and the runner's npm packages, installed once by
:func:`node_install_command` (in a clone: the README's ``bash .ci/setup_node.sh``, with the clone's
absolute path).
``RNNEDGE_TFJS_NODE_DIR`` points to another runner folder; ``RNNEDGE_NODE`` to another node.
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from rnnedge.errors import MissingDependencyError, RnnedgeError, UsageError
from rnnedge.runtime.base import Runner, TensorInfo


def node_runner_dir() -> Path:
    env = os.environ.get("RNNEDGE_TFJS_NODE_DIR")
    return Path(env) if env else Path(__file__).parent / "node"


def find_node() -> str | None:
    return os.environ.get("RNNEDGE_NODE") or shutil.which("node") or shutil.which("nodejs")


def node_install_command(node_dir: Path | None = None) -> str:
    """The one command that sets up the TF.js runner in ``node_dir`` (default: the shipped one),
    in a form that works from any folder.

    In a clone (the README's Quick start) that is the README's ``bash .ci/setup_node.sh`` with the
    clone's absolute path (``bash /path/to/clone/.ci/setup_node.sh``): it installs Node.js when
    missing, then the runner's npm packages. Installed from a wheel, or for another runner folder:
    ``npm ci`` there, after installing Node.js and npm when ``node`` is missing."""
    nd = Path(node_dir or node_runner_dir()).resolve()
    here = Path(__file__).resolve().parent
    script = here.parents[1] / ".ci" / "setup_node.sh"
    if script.is_file() and nd == here / "node":
        return f"bash {shlex.quote(str(script))}"
    npm = f"npm ci --prefix {shlex.quote(str(nd))} --no-audit --no-fund --ignore-scripts"
    return npm if find_node() else f"apt-get install -y nodejs npm && {npm}"


def check_node_runner(node_dir: Path | None = None) -> tuple[str, Path]:
    """(node executable, runner dir), else :class:`MissingDependencyError` (exit 3) with
    :func:`node_install_command`."""
    node_dir = Path(node_dir or node_runner_dir())
    node = find_node()
    if node is None:
        raise MissingDependencyError("node (Node.js >= 18, to run TF.js models)", node_install_command(node_dir))
    if not (node_dir / "node_modules" / "@tensorflow" / "tfjs" / "package.json").exists():
        raise MissingDependencyError(f"the TF.js runner's npm package @tensorflow/tfjs (in {node_dir})",
                                     node_install_command(node_dir))
    return node, node_dir


def resolve_model_json(path) -> Path:
    """The model.json of a TF.js folder (or file), as an absolute path: Node runs elsewhere."""
    p = Path(path).resolve()
    if p.is_dir():
        for c in (p / "model.json", p / "tfjs" / "model.json"):
            if c.exists():
                return c
        raise UsageError(f"{path}: no model.json (nor tfjs/model.json) in this folder")
    if not p.exists():
        raise UsageError(f"{path}: no such file")
    return p


def _tensor_json(a: np.ndarray, dtype: str) -> dict:
    a = np.asarray(a)
    if dtype == "int32":
        if a.dtype.kind == "f":
            raise UsageError(f"an int32 (token) input was given {a.dtype} values")
        a = a.astype(np.int32)
    elif dtype == "bool":
        a = a.astype(bool)
    else:
        a = a.astype(np.float32)
    return {"shape": list(a.shape), "dtype": dtype, "data": a.ravel().tolist()}


def run_many(jobs: list[tuple[str, dict]], *, repeat: int = 1, timeout: float = 600,
             node_dir: Path | None = None) -> list[dict]:
    """Run ``[(model_path, feeds)]`` in one Node process. Returns, per job, the run.js reply:
    ``{"outputs": {name: ndarray}, "output_order", "load_ms", "run_ms", ...}`` or
    ``{"error": message}``."""
    node, nd = check_node_runner(node_dir)
    with tempfile.TemporaryDirectory(prefix="rnnedge-tfjs-") as tmp:
        spec = []
        for i, (model, feeds) in enumerate(jobs):
            mj = resolve_model_json(model)
            meta = _metadata(mj)
            dtypes = {t["name"]: t["dtype"] for t in meta["inputs"]}
            inp = Path(tmp) / f"in{i}.json"
            inp.write_text(json.dumps({k: _tensor_json(v, dtypes.get(k, "float32"))
                                       for k, v in feeds.items()}))
            spec.append({"model": str(mj), "inputs": str(inp), "output_names": [o["name"] for o in meta["outputs"]],
                         "outputs": str(Path(tmp) / f"out{i}.json"), "repeat": repeat})
        jobs_file = Path(tmp) / "jobs.json"
        jobs_file.write_text(json.dumps(spec))
        try:
            proc = subprocess.run([node, str(nd / "run.js"), "--jobs", str(jobs_file)],
                                  capture_output=True, text=True, timeout=timeout, cwd=str(nd))
        except subprocess.TimeoutExpired:
            raise RnnedgeError(f"TF.js runner timed out after {timeout:.0f} s") from None
        results = []
        for s in spec:
            out = Path(s["outputs"])
            if not out.exists():
                tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-5:]
                raise RnnedgeError("TF.js runner (node run.js) failed: " + " | ".join(tail))
            r = json.loads(out.read_text())
            if "outputs" in r:
                r["outputs"] = {k: np.asarray(v["data"], dtype=v["dtype"] if v["dtype"] != "bool"
                                              else bool).reshape(v["shape"])
                                for k, v in r["outputs"].items()}
            results.append(r)
        return results


def _metadata(model_json: Path) -> dict:
    mj = json.loads(Path(model_json).read_text())
    meta = (mj.get("userDefinedMetadata") or {}).get("rnnedge")
    if meta:
        return meta
    # a model.json from elsewhere (e.g. tf.LayersModel.save): derive names/shapes from the topology
    topo = mj.get("modelTopology", {})
    topo = topo.get("model_config", topo)
    cfg = topo.get("config", {})
    if topo.get("class_name") == "Sequential":  # TF.js names its input "<first layer>_input"
        seq = cfg.get("layers", []) if isinstance(cfg, dict) else cfg
        first = (seq[0] if seq else {}).get("config", {})
        name = first.get("name", "input") if seq and seq[0].get("class_name") == "InputLayer" else \
            f"{first.get('name', 'layer')}_input"
        shape = first.get("batch_input_shape") or first.get("batchInputShape")
        return {"inputs": [{"name": name, "shape": shape, "dtype": first.get("dtype") or "float32"}],
                "outputs": [{"name": (seq[-1] if seq else {}).get("config", {}).get("name", "output"),
                             "shape": None, "dtype": "float32"}]}
    layers = {l.get("name", l.get("config", {}).get("name")): l for l in cfg.get("layers", [])}
    inputs = []
    for ref in cfg.get("input_layers", []):
        c = layers.get(ref[0], {}).get("config", {})
        inputs.append({"name": ref[0], "shape": c.get("batch_input_shape"),
                       "dtype": c.get("dtype", "float32")})
    outputs, seen = [], set()
    for ref in cfg.get("output_layers", []):  # several outputs of one layer: <layer>_<tensor index>
        name = ref[0] if ref[0] not in seen else f"{ref[0]}_{ref[2]}"
        seen.add(name)
        outputs.append({"name": name, "shape": None, "dtype": "float32"})
    return {"inputs": inputs, "outputs": outputs}


class TFJSRunner(Runner):
    """A TF.js layers model (a folder with model.json, or model.json) run in Node."""

    def __init__(self, path: str, runtime: str = "tfjs", options: dict | None = None):
        super().__init__(path, runtime, options or {})

    def check_available(self) -> None:
        node, nd = check_node_runner(self.options.get("node_dir"))
        self.info.update({"runtime": "tfjs", "node_path": node, "node_dir": str(nd)})

    def _load(self) -> None:
        self.check_available()
        self.model_json = resolve_model_json(self.path)
        meta = _metadata(self.model_json)
        self.inputs = [TensorInfo(t["name"], t.get("shape"), t.get("dtype", "float32"))
                       for t in meta["inputs"]]
        self.outputs = [TensorInfo(t["name"], t.get("shape"), t.get("dtype", "float32"))
                        for t in meta["outputs"]]
        self.info["custom_layers"] = meta.get("custom_layers", [])

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        (res,) = run_many([(str(self.model_json), feeds)], node_dir=self.options.get("node_dir"),
                          repeat=int(self.options.get("repeat", 1)))
        if "error" in res:
            raise RnnedgeError(f"{self.path}: TF.js failed: {res['error']}")
        self.info.update({"tfjs_version": res.get("tfjs_version"), "backend": res.get("backend"),
                          "load_ms": res.get("load_ms"), "run_ms": res.get("run_ms")})
        node = self.info.get("node_version")
        if node is None:
            try:
                node = subprocess.run([self.info["node_path"], "--version"], capture_output=True,
                                      text=True, timeout=30).stdout.strip()
            except (OSError, subprocess.SubprocessError):
                node = "?"
            self.info["node_version"] = node
        self.info["node"] = node
        outs = res["outputs"]
        return {o.name: outs[o.name] for o in self.outputs} if all(
            o.name in outs for o in self.outputs) else dict(outs)
