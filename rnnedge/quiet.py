"""Quiet output: TensorFlow / absl / oneDNN / LiteRT / converter chatter kept off the console.

The one place for this concern:

* :data:`NOISE` -- the known noise lines (regular expressions), what the tests look for; also
  the Python warnings that are known noise (the CLI's one-line warning printer,
  ``rnnedge.cli.warn``, drops a warning that :func:`is_noise` matches);
* :func:`quiet_environment` -- variables set before TensorFlow loads (``TF_CPP_MIN_LOG_LEVEL``);
* :func:`filtered_stderr` -- a context manager: while it is open, what C/C++ code writes to file
  descriptor 2 goes through a line filter that drops :data:`NOISE` and passes every other line on.

Why a filter on descriptor 2: TensorFlow 2.21 writes its absl "WARNING: All log messages before
absl::InitializeLog() is called ..." and oneDNN notices while it loads whatever
``TF_CPP_MIN_LOG_LEVEL`` says; LiteRT writes "INFO: Created TensorFlow Lite XNNPACK delegate for
CPU." when an interpreter allocates; the TFLite converter prints "fully_quantize: 0,
inference_type: 6 ..." from C++. None of them has a switch (measured, see
tests/test_newcomer.py). ``TF_ENABLE_ONEDNN_OPTS=0`` would silence oneDNN but changes the numbers
of the Keras reference, so it is not set.

Python-level writes (``sys.stderr``: rich progress bars and spinners, click, tracebacks) keep
going to the real stderr, so a terminal stays a terminal; a C++ line that is not known noise is
written through ``sys.stderr`` too, which rich redirects above a live progress line, so nothing
lands inside one.

Usage (the CLI does this around every command; library code may do it around a noisy call)::

    from rnnedge.quiet import filtered_stderr
    with filtered_stderr():
        tflite_bytes = converter.convert()

``RNNEDGE_VERBOSE=1`` (the CLI's ``--verbose``) turns every filter off. The bundle's standalone
``predict.py`` cannot import rnnedge and keeps its own copy of the LiteRT patterns
(``predict.NOISE``; a test checks they are a subset of :data:`NOISE`).
"""
from __future__ import annotations

import contextlib
import io
import os
import re
import sys
import threading
from typing import Iterator

#: Known noise lines (one regular expression per kind). Keep each pattern tight: a line that is
#: not matched is shown, never dropped.
NOISE: tuple[str, ...] = (
    # absl, before TensorFlow initialises its logging (once per TF shared library)
    r"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$",
    # absl INFO lines: I<mmdd> <time> <thread> <file>.cc:<line>] ... (oneDNN, cpu_feature_guard...)
    # (the time field is "00:00:<epoch seconds>" before absl is initialised)
    r"^I\d{4} [\d:.]+\s+\d+ [\w./-]+\.cc:\d+\] ",
    # the second line of cpu_feature_guard's message
    r"^To enable the following instructions: .*rebuild TensorFlow with the appropriate compiler flags\.$",
    # LiteRT / TFLite interpreters
    r"^INFO: Created TensorFlow Lite XNNPACK delegate for CPU\.$",
    r"^INFO: Initialized TensorFlow Lite runtime\.$",
    # the TFLite converter (quantizing)
    r"^fully_quantize: \d+, inference_type: \d+, input_inference_type: \w+, output_inference_type: \w+$",
    # the TFLite converter's MLIR passes, when TF_CPP_MIN_LOG_LEVEL is lower than 2
    r"^W\d{4} [\d:.]+\s+\d+ tf_tfl_flatbuffer_helpers\.cc:\d+\] Ignored (output_format|drop_control_dependency)\.$",
    # Keras's UserWarning when a masked sequence reaches a layer without mask support: the intended
    # design of the sentiment preset (Embedding(mask_zero) -> BiLSTM -> GlobalMaxPooling1D) and of
    # many user models; the converters keep Keras's semantics either way. As a Python warning
    # (the CLI's one-line form, or Python's "file:line: UserWarning: ..." from a child process)
    r"^(?:.*UserWarning: )?Layer '[^']+' \(of type \w+\) was passed an input with a mask attached to it\. "
    r"However, this layer does not support masking and will therefore destroy the mask information\.",
)
_NOISE_RE = re.compile("|".join(f"(?:{p})" for p in NOISE))
_DEPTH = 0                     # nesting of filtered_stderr (only the outermost one redirects)
_LOCK = threading.Lock()


def is_noise(line: str) -> bool:
    """True for a line of :data:`NOISE` (trailing newline and carriage returns ignored)."""
    return bool(_NOISE_RE.search(line.rstrip("\r\n")))


def verbose() -> bool:
    """The user asked for everything (``--verbose`` / ``RNNEDGE_VERBOSE=1``)."""
    return os.environ.get("RNNEDGE_VERBOSE", "").strip().lower() not in ("", "0", "false", "no")


def quiet_environment() -> None:
    """Set, before TensorFlow loads, the variables that silence what can be silenced that way
    (TensorFlow's C++ logging below FATAL). Values the user set are kept; nothing when verbose."""
    if verbose():
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@contextlib.contextmanager
def filtered_stderr(enabled: bool = True) -> Iterator[None]:
    """While open, lines written to file descriptor 2 (by C/C++ code, child processes) pass a
    filter: :data:`NOISE` is dropped, anything else is written to ``sys.stderr`` as it arrives.

    ``sys.stderr`` itself (when it is descriptor 2) is pointed at a copy of the real stderr, so
    Python writes, terminal detection and rich live displays work as before. Nested uses and
    ``enabled=False`` / verbose mode do nothing. Without a usable descriptor 2 (some embedded
    interpreters) it does nothing either.
    """
    global _DEPTH
    if not enabled or verbose():
        yield
        return
    with _LOCK:
        outer = _DEPTH == 0
        _DEPTH += 1
    if not outer:
        try:
            yield
        finally:
            with _LOCK:
                _DEPTH -= 1
        return
    try:
        _flush(sys.stderr)
        saved = os.dup(2)
    except (OSError, ValueError):
        with _LOCK:
            _DEPTH -= 1
        yield
        return
    r, w = os.pipe()
    _grow_pipe(w)
    os.dup2(w, 2)
    os.close(w)
    swapped = None
    if _fileno(sys.stderr) == 2:
        swapped = sys.stderr
        sys.stderr = open(os.dup(saved), "w", buffering=1, encoding=getattr(swapped, "encoding", None) or "utf-8",
                          errors="backslashreplace")
    pump = threading.Thread(target=_pump, args=(r,), name="rnnedge-stderr-filter", daemon=True)
    pump.start()
    try:
        yield
    finally:
        _flush(sys.stderr)
        os.dup2(saved, 2)          # drops the pipe's write end held as descriptor 2
        pump.join(timeout=5)       # EOF unless a child process still holds the pipe
        if swapped is not None:
            own, sys.stderr = sys.stderr, swapped
            with contextlib.suppress(Exception):
                own.close()
        os.close(saved)
        with _LOCK:
            _DEPTH -= 1


def _pump(fd: int) -> None:
    """Read descriptor ``fd`` (the pipe) line by line; pass on what is not noise."""
    pending = b""
    try:
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for ln in lines:
                _emit(ln)
        if pending:
            _emit(pending)
    finally:
        os.close(fd)


def _emit(raw: bytes) -> None:
    line = raw.decode("utf-8", "replace")
    if is_noise(line):
        return
    try:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except Exception:  # noqa: BLE001 - stderr closed at exit: nothing else can be done
        pass


def _fileno(stream) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, ValueError, io.UnsupportedOperation, OSError):
        return None


def _flush(stream) -> None:
    with contextlib.suppress(Exception):
        stream.flush()


def _grow_pipe(fd: int) -> None:
    """A larger pipe buffer (Linux): C++ code that writes while holding the GIL must not block."""
    try:
        import fcntl

        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
    except (ImportError, OSError):
        pass
