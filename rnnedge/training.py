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


def _progress_callback(epochs: int):
    from rnnedge._keras import keras as _k

    keras = _k()
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    class RichProgress(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.p = Progress(TextColumn("[bold]training[/]"), BarColumn(), TextColumn("{task.completed}/{task.total} epochs"),
                              TextColumn("{task.fields[logs]}"), TimeElapsedColumn(), transient=False)
            self.p.start()
            self.task = self.p.add_task("train", total=epochs, logs="")

        def on_epoch_end(self, epoch, logs=None):
            txt = " ".join(f"{k}={v:.4g}" for k, v in (logs or {}).items() if k != "learning_rate")
            self.p.update(self.task, advance=1, logs=txt)

        def on_train_end(self, logs=None):
            self.p.stop()

    return RichProgress()


def train(source, *, data: Any = None, out: Optional[str | Path] = None, column: Optional[str] = None,
          epochs: Optional[int] = None, batch_size: Optional[int] = None, samples: Optional[int] = None,
          validation_split: Optional[float] = None, seed: Optional[int] = None,
          early_stopping: Optional[int] = -1, steps_per_epoch: Optional[int] = None,
          progress: bool = False, preprocessing: Optional[dict] = None) -> TrainResult:
    """Build ``source`` (spec/preset), prepare its data, fit, and optionally save to ``out`` (.keras).

    ``data``: a file path (CSV for window/text, text for chars), a ``(x, y)`` tuple of arrays, or
    None for the spec's built-in dataset. ``preprocessing``: with ``(x, y)`` arrays, how raw inputs
    become those arrays (vocabulary, scaler...), recorded for export and deployment. Saves ``out`` plus a sidecar ``<name>.rnnedge.json`` with
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
    if patience and vs > 0:
        callbacks.append(keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience,
                                                       restore_best_weights=True))
    if progress:
        callbacks.append(_progress_callback(epochs))
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
    hist = model.fit(fit_x, fit_y, epochs=epochs, batch_size=batch_size or tr.batch_size,
                     validation_data=val, callbacks=callbacks, verbose=0, shuffle=True)
    history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    metrics = {k: vals[-1] for k, vals in history.items()}
    if val is not None:
        ev = model.evaluate(val[0], val[1], verbose=0, return_dict=True)
        metrics.update({f"val_{k}": float(v) for k, v in ev.items()})
    res = TrainResult(model, history, ds.preprocessing, metrics,
                      info={"samples": n, "train_samples": n - n_val, "val_samples": n_val,
                            "epochs_run": len(history.get("loss", [])), "data": ds.info, "seed": seed})
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
