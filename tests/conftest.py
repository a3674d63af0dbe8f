"""Test set-up: TensorFlow quiet and CPU-only, fixed seeds, shared fixtures."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")  # Keras 3 on a GPU uses CudnnRNNV3 (tf2onnx can't)
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _seed():
    np.random.seed(0)
    import sys

    if "keras" in sys.modules:  # seed Keras only where a test already uses it
        sys.modules["keras"].utils.set_random_seed(0)


EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(name: str, out, *args: str):
    """Run ``examples/<name>.py --quick -o OUT [args]`` in a subprocess (repo root, no GPU, quiet
    TensorFlow, wide console). Returns (completed process, out, summary.json as a dict or None)."""
    import json
    import subprocess
    import sys

    out = Path(out)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="-1", COLUMNS="160")
    p = subprocess.run([sys.executable, str(EXAMPLES / f"{name}.py"), "--quick", "-o", str(out), *args],
                       cwd=EXAMPLES.parent, env=env, capture_output=True, text=True, timeout=900)
    summary = json.loads((out / "summary.json").read_text()) if (out / "summary.json").exists() else None
    return p, out, summary


def load_example(name: str):
    """``examples/<name>.py`` imported as a module (its functions, without running main)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"{name}_example", EXAMPLES / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def perturb_onnx(path) -> str:
    """A deliberately wrong ONNX artifact: its largest float weight shifted and scaled (in place).
    Returns the initializer's name."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(path))
    big = max((t for t in m.graph.initializer if t.data_type == onnx.TensorProto.FLOAT),
              key=lambda t: int(np.prod(t.dims)))
    arr = numpy_helper.to_array(big).copy()
    arr.flat[0] += 0.5
    arr *= 1.05
    big.CopyFrom(numpy_helper.from_array(arr, big.name))
    onnx.save(m, str(path))
    return big.name


NO_TFJS_NODE = "node or rnnedge/runtime/node/node_modules missing (run .ci/setup_node.sh)"


def tfjs_node_ok() -> bool:
    """Whether node and the shipped TF.js runner's node_modules are installed (tests skip without)."""
    from rnnedge.errors import MissingDependencyError
    from rnnedge.runtime.tfjs import check_node_runner

    try:
        check_node_runner()
        return True
    except MissingDependencyError:
        return False
