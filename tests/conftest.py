"""Test set-up: TensorFlow quiet and CPU-only, fixed seeds, shared fixtures."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")  # Keras 3 on a GPU uses CudnnRNNV3 (tf2onnx can't)
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

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
