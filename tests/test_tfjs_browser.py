"""The exported TF.js demo page (DIR/tfjs/index.html) in headless Chromium.

Serves the export folder over http://127.0.0.1 from a thread, loads the page with
``chromium --headless --dump-dom`` and reads the verdict the page writes (``#status`` /
``document.title``: OK / MISMATCH). Needs Debian ``chromium`` (.ci/setup_node.sh installs it)
and the Node runner's node_modules (for tf.min.js); skips otherwise.
"""
from __future__ import annotations

import functools
import http.server
import json
import re
import shutil
import subprocess
import threading

import pytest

keras = pytest.importorskip("keras")
from keras import layers  # noqa: E402

from converters.registry import ExportOptions, get_exporter  # noqa: E402

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _serve(folder):
    handler = functools.partial(_QuietHandler, directory=str(folder))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def _page(folder, tmp_path, extra=()):
    httpd = _serve(folder)
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/index.html"
        proc = subprocess.run(
            [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
             "--virtual-time-budget=30000", *extra, url],
            capture_output=True, text=True, timeout=120)
        return proc
    finally:
        httpd.shutdown()
        httpd.server_close()


def _seq2seq():
    ei = keras.Input((5,), dtype="int32", name="enc_tokens")
    di = keras.Input((4,), dtype="int32", name="dec_tokens")
    e = layers.Embedding(15, 4, mask_zero=True)(ei)
    _, h = layers.GRU(5, return_state=True)(e)  # reset_after=True: the shipped custom layer
    d = layers.Embedding(15, 4, mask_zero=True)(di)
    o = layers.GRU(5, return_sequences=True)(d, initial_state=[h])
    return keras.Model([ei, di], layers.TimeDistributed(layers.Dense(15, activation="softmax"))(o))


def _sentiment():
    return keras.Sequential([keras.Input((8,), dtype="int32"),
                             layers.Embedding(30, 4, mask_zero=True),
                             layers.Bidirectional(layers.LSTM(4, return_sequences=True)),
                             layers.GlobalMaxPooling1D(), layers.Dense(1, activation="sigmoid")])


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    from converters.tfjs import node_dir

    if CHROMIUM is None:
        pytest.skip("chromium not installed (apt-get install -y chromium)")
    if not (node_dir() / "node_modules/@tensorflow/tfjs/dist/tf.min.js").exists():
        pytest.skip("tf.min.js missing: npm ci --prefix rnnedge/runtime/node")
    keras.utils.set_random_seed(0)
    root = tmp_path_factory.mktemp("tfjs_browser")
    out = {}
    for name, make in (("seq2seq_gru", _seq2seq), ("sentiment", _sentiment)):
        get_exporter("tfjs")(make(), root / name, ExportOptions(extra={"tfjs_self_check": False}))
        out[name] = root / name / "tfjs"
    return out


def _verdict(dom: str) -> tuple[str, str]:
    title = re.search(r"<title>([^<]*)</title>", dom)
    status = re.search(r'<div id="status"[^>]*>([^<]*)</div>', dom)
    assert title and status, dom[-2000:]
    return title.group(1), status.group(1)


@pytest.mark.parametrize("name", ["seq2seq_gru", "sentiment"])
def test_demo_page_runs_model_in_browser(name, exports, tmp_path):
    proc = _page(exports[name], tmp_path, ["--dump-dom"])
    title, status = _verdict(proc.stdout)
    print(f"{name}: {status}")
    assert title == "OK", status
    diff = float(re.search(r'data-max-abs-diff="([^"]+)"', proc.stdout).group(1))
    assert diff <= 1e-4
    assert "TF.js 4.22" in proc.stdout


def test_demo_page_reports_mismatch(exports, tmp_path):
    folder = tmp_path / "tampered"
    shutil.copytree(exports["sentiment"], folder)
    sample = json.loads((folder / "sample.json").read_text())
    for out in sample["outputs"].values():
        out["data"] = [v + 0.01 for v in out["data"]]
    (folder / "sample.json").write_text(json.dumps(sample))
    proc = _page(folder, tmp_path, ["--dump-dom"])
    title, status = _verdict(proc.stdout)
    assert title == "MISMATCH" and status.startswith("MISMATCH"), status


def test_demo_page_screenshot(exports, tmp_path):
    png = tmp_path / "page.png"
    _page(exports["sentiment"], tmp_path, ["--window-size=1000,600", f"--screenshot={png}"])
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000  # a rendered page, not blank
