"""Training a spec or preset on its data (a file, or its built-in dataset)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from rnnedge.errors import UsageError


@dataclass
class TrainResult:
    model: Any
    history: dict
    preprocessing: dict
    metrics: dict
    path: Optional[Path] = None
    info: dict = field(default_factory=dict)


def _fmt_logs(logs: dict) -> str:
    return " ".join(f"{k}={v:.4g}" for k, v in (logs or {}).items() if k != "learning_rate")


def epoch_line(epoch: int, epochs: int, logs: dict, seconds: float) -> str:
    """``epoch  3/20: loss=0.2803 mae=0.4556 val_loss=0.2335 val_mae=0.4167 (1.4 s)`` (1-based)."""
    w = len(str(epochs))
    return f"epoch {epoch:>{w}}/{epochs}: {_fmt_logs(logs)} ({seconds:.1f} s)"


def early_stopping_note(info: dict) -> Optional[str]:
    """One line saying that early stopping stopped training and/or restored an earlier epoch
    (``info["early_stopping"]`` of a :class:`TrainResult`), or None when the last epoch was kept."""
    es = (info or {}).get("early_stopping") or {}
    if not es:
        return None
    mon, best, run = es.get("monitor", "val_loss"), es.get("best_epoch"), info.get("epochs_run")
    figure = f"{mon}={es['best']:.4g}" if es.get("best") is not None else mon
    if es.get("stopped_epoch"):
        return (f"early stopping: {mon} did not improve for {es['patience']} epoch{'' if es['patience'] == 1 else 's'}, stopped after epoch "
                f"{es['stopped_epoch']}; restored the weights of epoch {best} ({figure})")
    if es.get("restored"):
        return f"restored the weights of epoch {best} of {run}, the best {mon} ({figure})"
    return None


def _early_stopping_info(es, epochs_run: int) -> dict:
    """What a Keras ``EarlyStopping(restore_best_weights=True)`` did, 1-based epochs. Keras 3
    restores the best epoch's weights at the end of training whether or not it stopped early."""
    best = None if es.best is None else float(es.best)
    return {"monitor": es.monitor, "patience": es.patience, "best": best,
            "best_epoch": es.best_epoch + 1 if best is not None else None,
            "stopped_epoch": es.stopped_epoch + 1 if es.stopped_epoch > 0 else None,
            "restored": best is not None and es.best_epoch + 1 != epochs_run}


def _progress_callback(epochs: int, early_stopping=None):
    """Per-epoch progress on stderr. On a terminal: a live bar (the running epoch, 1-based as in
    the epoch lines, and its batches) with one line per finished epoch printed above it. Elsewhere (a log file, a pipe): one
    plain line per epoch, never cut. At the end, :func:`early_stopping_note` when it says something
    (``early_stopping``: the EarlyStopping callback, placed before this one)."""
    import sys
    import time

    from rnnedge._keras import keras as _k

    keras = _k()

    class EpochProgress(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            from rich.console import Console

            self.console = Console(stderr=True, highlight=False)
            self.p = None
            self.done = 0
            self.steps = (self.params or {}).get("steps")
            if self.console.is_terminal:
                from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

                self.p = Progress(TextColumn("[bold]training[/]"), BarColumn(),
                                  TextColumn("epoch {task.fields[epoch]}/{task.total}"),
                                  TextColumn("{task.fields[batch]}"), TimeElapsedColumn(),
                                  console=self.console, transient=True)
                self.p.start()
                self.task = self.p.add_task("train", total=epochs, batch="", epoch=1)

        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()
            if self.p is not None:  # the running epoch, 1-based like the epoch lines
                self.p.update(self.task, epoch=epoch + 1, batch="")

        def on_train_batch_end(self, batch, logs=None):
            if self.p is not None:
                self.p.update(self.task, batch=f"batch {batch + 1}/{self.steps}" if self.steps
                              else f"batch {batch + 1}")

        def on_epoch_end(self, epoch, logs=None):
            self.done = epoch + 1
            self._say(epoch_line(epoch + 1, epochs, logs or {}, time.perf_counter() - self.t0))
            if self.p is not None:
                self.p.update(self.task, advance=1)

        def on_train_end(self, logs=None):
            if self.p is not None:
                self.p.stop()
                self.p = None
            if early_stopping is not None:
                note = early_stopping_note({"early_stopping": _early_stopping_info(early_stopping, self.done),
                                            "epochs_run": self.done})
                if note:
                    self._say(note)

        def _say(self, line: str):
            if self.p is not None:  # above the live bar
                self.p.console.print(line, markup=False, soft_wrap=True)
            else:                   # a plain line: nothing cuts or wraps it
                sys.stderr.write(line + "\n")
                sys.stderr.flush()

    return EpochProgress()


def train(source, *, data: Any = None, out: Optional[str | Path] = None, column: Optional[str] = None,
          epochs: Optional[int] = None, batch_size: Optional[int] = None, samples: Optional[int] = None,
          validation_split: Optional[float] = None, seed: Optional[int] = None,
          early_stopping: Optional[int] = -1, steps_per_epoch: Optional[int] = None,
          progress: bool = False, preprocessing: Optional[dict] = None) -> TrainResult:
    """Build ``source`` (spec/preset), prepare its data, fit, and optionally save to ``out`` (.keras).

    ``data``: a file path (CSV for window/text, text for chars), a ``(x, y)`` tuple of arrays, or
    None for the spec's built-in dataset. ``preprocessing``: with ``(x, y)`` arrays, how raw inputs
    become those arrays (vocabulary, scaler...), recorded for export and deployment. ``progress``:
    one line per epoch on stderr (a live bar on a terminal) and the early-stopping note.
    ``metrics`` are those of the saved weights: with early stopping, Keras restores the best epoch's
    weights (``info["epoch"]``, ``info["early_stopping"]``) and its figures are reported. Saves ``out`` plus a sidecar ``<name>.rnnedge.json`` with
    the spec, the preprocessing (vocabulary, scaler, window...) and the training history.
    """
    from rnnedge.builder import build_model
    from rnnedge.data import Dataset, make_dataset
    from rnnedge.spec import load_spec

    spec = load_spec(source)
    seed = spec.train.seed if seed is None else seed
    if isinstance(data, tuple):
        x, y = data
        x = x if isinstance(x, dict) else {spec.inputs[0].name: np.asarray(x)}
        ds = Dataset(x, np.asarray(y), dict(preprocessing or {"kind": "arrays"}), {"source": "arrays"})
    else:
        ds = make_dataset(spec, data, column=column, seed=seed, samples=samples)
    from rnnedge._keras import keras as _k

    keras = _k()
    model = build_model(spec, seed=seed)
    tr = spec.train
    epochs = epochs or tr.epochs
    vs = tr.validation_split if validation_split is None else validation_split
    callbacks = []
    patience = tr.early_stopping if early_stopping == -1 else early_stopping
    es = None
    if patience and vs > 0:
        es = keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True)
        callbacks.append(es)
    if progress:
        callbacks.append(_progress_callback(epochs, es))  # after EarlyStopping: it sees the restore
    # shuffle once with the seed, then keep the last part for validation (no leakage for windows:
    # a window series is split in time order instead)
    n = len(ds)
    order = np.arange(n) if ds.preprocessing.get("kind") == "window" else np.random.default_rng(seed).permutation(n)
    xs = {k: v[order] for k, v in ds.x.items()}
    ys = ds.y[order]
    n_val = int(n * vs)
    fit_x = {k: v[: n - n_val] for k, v in xs.items()}
    fit_y = ys[: n - n_val]
    val = ({k: v[n - n_val:] for k, v in xs.items()}, ys[n - n_val:]) if n_val else None
    if steps_per_epoch:
        limit = steps_per_epoch * (batch_size or tr.batch_size)
        fit_x = {k: v[:limit] for k, v in fit_x.items()}
        fit_y = fit_y[:limit]
    if len(spec.inputs) == 1:
        fit_x = fit_x[spec.inputs[0].name]
        if val:
            val = (val[0][spec.inputs[0].name], val[1])
    bs = batch_size or tr.batch_size
    hist = model.fit(fit_x, fit_y, epochs=epochs, batch_size=bs,
                     validation_data=val, callbacks=callbacks, verbose=0, shuffle=True)
    history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    epochs_run = len(history.get("loss", []))
    stop = _early_stopping_info(es, epochs_run) if es is not None else None
    # the figures of the epoch whose weights are saved (the restored one, else the last)
    kept = stop["best_epoch"] if stop and stop["restored"] else epochs_run
    metrics = {k: vals[kept - 1] for k, vals in history.items() if len(vals) >= kept > 0}
    if val is not None:
        ev = model.evaluate(val[0], val[1], batch_size=bs, verbose=0, return_dict=True)
        metrics.update({f"val_{k}": float(v) for k, v in ev.items()})
    info = {"samples": n, "train_samples": n - n_val, "val_samples": n_val, "epochs_run": epochs_run,
            "epoch": kept, "data": ds.info, "seed": seed}
    if stop is not None:
        info["early_stopping"] = stop
    res = TrainResult(model, history, ds.preprocessing, metrics, info=info)
    if out is not None:
        res.path = save_trained(res, out, spec.dump())
    return res


def save_trained(res: TrainResult, out: str | Path, spec: dict) -> Path:
    from rnnedge.manifest import atomic_path, write_json_atomic
    from rnnedge.models import sidecar_path

    out = Path(out)
    if out.suffix != ".keras":
        raise UsageError(f"output must end in .keras, got {out}")
    with atomic_path(out) as tmp:
        keras_tmp = tmp.with_suffix(".keras")
        res.model.save(keras_tmp)
        keras_tmp.replace(tmp)
    write_json_atomic(sidecar_path(out), {"spec": spec, "preprocessing": res.preprocessing,
                                          "history": res.history, "metrics": res.metrics, "info": res.info})
    return out
