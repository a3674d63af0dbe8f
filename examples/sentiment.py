"""Sentiment classification: is a review positive or negative? From raw text to a Raspberry Pi.

The task
--------
A binary text classifier: a review goes in as words, a probability that it is positive comes
out. The model (``examples/specs/sentiment.yaml``) is Embedding(mask_zero) -> bidirectional LSTM
(the last unpadded state of each direction) -> Dense sigmoid. Words become ids through a
vocabulary built from the training texts (0 = padding, 1 = unknown word), padded at the end to
``max_len``; that recipe is saved with the model and travels into every export and the bundle.

The data
--------
**By default the data is SYNTHETIC**: ``rnnedge.data.synthetic_reviews`` writes short "reviews"
from a few neutral words plus one to three clearly positive or negative words ("a superb
film", "the plot was dull"). It is easy on purpose: it checks the whole pipeline, not the
state of the art. High accuracy on it says nothing about real reviews.

**Real data**: pass a CSV with columns ``text`` and ``label`` (0/1, or two class names such as
negative/positive), e.g. an export of the IMDB reviews::

    python examples/sentiment.py --data imdb.csv -o runs/sentiment-imdb

Either way the rows are shuffled once (``--seed``) and split: ``--test-fraction`` (20 %) is held
out and never trained on; the rest is written to ``<out>/data/train.csv`` and trained on
(``rnnedge.train`` with the spec's ``data: kind: text`` builds the vocabulary from it alone,
and keeps 15 % of it for early stopping). ``<out>/data/test.csv`` holds the held-out reviews.

Run it
------
::

    python examples/sentiment.py                      # full run, a few minutes on 2 CPU cores
    python examples/sentiment.py --quick -o /tmp/s    # plumbing only (seconds of training)
    python examples/sentiment.py --data reviews.csv --epochs 10 --seed 1

What it prints
--------------
1. data: source (synthetic or the file), sizes of the train / held-out test splits;
2. spec, 3. train: the spec file and the training curve;
4. the pipeline tables from ``rnnedge.showcase``: export (ONNX, ORT, TFLite, TF.js when Node
   is set up), quantize (int8/fp16 ONNX, dynamic/fp16/int8 TFLite), parity against Keras for
   every artifact, CPU latency, and the Raspberry Pi bundle (verified);
5. the task on the held-out test split, computed in each artifact's own runtime: accuracy,
   and agreement with the Keras model's labels, for Keras, every exported and quantized
   artifact, and the majority-class baseline;
6. padding: one review padded to several lengths gives the same probability in model.onnx;
7. the bundle: its own ``predict.py --text "..."`` run in a subprocess on three raw
   sentences gives the Keras model's probabilities (the preprocessing went with it).
Everything lands in ``<out>/summary.json``. Exit code 0 when parity, the bundle check and the
bundle's predictions all pass, 1 otherwise (the reason is printed).

The same with the command line
------------------------------
::

    rnnedge train examples/specs/sentiment.yaml --data <out>/data/train.csv -o <out>/model.keras
    rnnedge export <out>/model.keras --format onnx --format ort --format tflite -o <out>/export
    rnnedge quantize <out>/export --mode int8 --mode fp16 --mode dynamic
    rnnedge validate <out>/export
    rnnedge bench <out>/export/model.onnx <out>/export/model.tflite --seq-len 40
    rnnedge deploy <out>/export --runtime litert -o <out>/bundle && rnnedge verify <out>/bundle
    python <out>/bundle/predict.py --text "a wonderful film with a superb cast"
"""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")

import click  # noqa: E402
import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

SPEC = Path(__file__).parent / "specs" / "sentiment.yaml"
SENTENCES = (
    "a wonderful film with a superb cast and lovely music",
    "boring and awful, the plot was a waste of time",
    "the director tried, but the ending was dull and the script was weak",
)
PROB_ATOL = 1e-4          # float32 artifacts: bundle / padding agree with Keras to ~1e-6
console = Console()


# --------------------------------------------------------------------------- data
def load_reviews(data: str | None, samples: int, seed: int) -> tuple[list[str], np.ndarray, dict]:
    """Raw texts, 0/1 labels and where they came from (the built-in generator or a CSV)."""
    if data is None:
        from rnnedge.data import synthetic_reviews

        texts, y = synthetic_reviews(samples, seed)
        return texts, y.astype(np.int64), {"source": "synthetic:reviews (rnnedge.data.synthetic_reviews)",
                                           "synthetic": True, "classes": ["negative", "positive"]}
    with open(data, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"text", "label"} <= {k.lower() for k in rows[0]}:
        raise click.UsageError(f"{data}: needs a header with columns 'text' and 'label'")
    key = {k.lower(): k for k in rows[0]}
    texts = [r[key["text"]] for r in rows]
    raw = [r[key["label"]].strip() for r in rows]
    classes = sorted(set(raw))
    if len(classes) != 2:
        raise click.UsageError(f"{data}: a binary task needs 2 label values, found {len(classes)}: {classes[:10]}")
    try:  # numeric labels keep their meaning (1 = positive); names are sorted (negative < positive)
        classes = sorted(classes, key=float)
    except ValueError:
        pass
    y = np.asarray([classes.index(v) for v in raw], dtype=np.int64)
    return texts, y, {"source": str(data), "synthetic": False, "classes": classes}


def split(texts: list[str], y: np.ndarray, test_fraction: float, seed: int):
    order = np.random.default_rng(seed).permutation(len(texts))
    n_test = max(1, int(round(len(texts) * test_fraction)))
    test, train = order[:n_test], order[n_test:]
    return ([texts[i] for i in train], y[train]), ([texts[i] for i in test], y[test])


def write_csv(path: Path, texts: list[str], y: np.ndarray) -> None:
    from rnnedge.manifest import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, quoting=csv.QUOTE_ALL)
        w.writerow(["text", "label"])
        w.writerows(zip(texts, (int(v) for v in y)))


def encode(texts: list[str], pre: dict, max_len: int | None = None) -> np.ndarray:
    """Texts -> padded word ids with the recorded preprocessing (numpy only)."""
    from rnnedge.data import encode_texts

    return encode_texts(list(texts), pre["vocab"], max_len or pre["max_len"], pre["padding"], pre["lowercase"])


# --------------------------------------------------------------------------- evaluation
def probabilities(path: Path, x: np.ndarray) -> np.ndarray:
    """P(positive) for each row of ``x``, run by ``rnnedge.open_runner`` in the artifact's runtime."""
    from rnnedge import open_runner
    from rnnedge.inputs import batches_of

    with open_runner(path) as r:
        name = r.inputs[0].name
        fixed = r.inputs[0].shape[0]
        batch = fixed if isinstance(fixed, int) else 256
        outs = [next(iter(r.run(chunk).values())) for chunk in batches_of({name: x.astype(np.int32)}, batch)]
    return np.concatenate([np.asarray(o, np.float64).reshape(len(o), -1)[:, 0] for o in outs])[: len(x)]


def evaluate(export_dir: Path, names: list[str], x: np.ndarray, y: np.ndarray, y_train: np.ndarray,
             keras_prob: np.ndarray) -> dict:
    """Accuracy and agreement with Keras's labels on the held-out split, per artifact."""
    rows: dict[str, dict] = {}
    keras_label = keras_prob >= 0.5
    for name in ["reference.keras"] + names:
        try:
            p = keras_prob if name == "reference.keras" else probabilities(export_dir / name, x)
        except Exception as e:  # noqa: BLE001 - one runtime failing must not hide the others
            rows[name] = {"error": f"{type(e).__name__}: {e}"}
            continue
        label = p >= 0.5
        rows[name] = {"accuracy": float(np.mean(label == (y == 1))),
                      "agreement_with_keras": float(np.mean(label == keras_label)),
                      "max_abs_prob_diff_vs_keras": float(np.max(np.abs(p - keras_prob)))}
    majority = int(np.mean(y_train) >= 0.5)  # the most frequent training label (ties -> 1)
    rows["majority-class baseline"] = {"accuracy": float(np.mean(y == majority)), "predicts": majority}
    return rows


def padding_check(path: Path, text: str, pre: dict) -> dict:
    """The same review padded to several lengths must give one probability in ``path``."""
    row = encode([text], pre)[0]
    ids = row[row != pre["pad_id"]]  # the review's word ids (cut to max_len), without padding
    n_words = len(ids)

    def padded(length: int) -> np.ndarray:
        x = np.full((1, length), pre["pad_id"], np.int32)
        if pre["padding"] == "post":
            x[0, :n_words] = ids
        elif n_words:
            x[0, -n_words:] = ids
        return x

    lengths = sorted({max(n_words, 1), n_words + 3, pre["max_len"], 2 * pre["max_len"]})
    probs = {L: float(probabilities(path, padded(L))[0]) for L in lengths}
    spread = max(probs.values()) - min(probs.values())
    return {"artifact": path.name, "text": text, "words": n_words,
            "probability_by_length": {str(k): v for k, v in probs.items()},
            "max_spread": spread, "ok": spread <= PROB_ATOL}


def bundle_check(bundle: Path, export_dir: Path, pre: dict) -> dict:
    """Run the bundle's own predict.py on raw sentences; compare with Keras and model.onnx."""
    x = encode(list(SENTENCES), pre)
    keras_p = probabilities(export_dir / "reference.keras", x)
    onnx_p = probabilities(export_dir / "model.onnx", x)
    rows = []
    for text, kp, op in zip(SENTENCES, keras_p, onnx_p):
        r = subprocess.run([sys.executable, str(bundle / "predict.py"), "--text", text, "--json"],
                           capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            rows.append({"text": text, "error": (r.stderr or r.stdout).strip()[-500:], "ok": False})
            continue
        out = json.loads(r.stdout.strip().splitlines()[-1])
        bp = float(np.ravel(out["output"])[0])
        rows.append({"text": text, "bundle": bp, "bundle_label": out.get("label"), "keras": float(kp),
                     "onnx": float(op), "abs_diff_vs_keras": abs(bp - float(kp)),
                     "ok": abs(bp - float(kp)) <= PROB_ATOL})
    return {"runtime": json.loads((bundle / "manifest.json").read_text()).get("runtime"),
            "model": json.loads((bundle / "manifest.json").read_text())["model"]["file"],
            "sentences": rows, "ok": all(r["ok"] for r in rows)}


def _f(v, digits=4):
    return "" if v is None else f"{v:.{digits}f}"


# --------------------------------------------------------------------------- main
@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/sentiment"),
              show_default=True, help="output folder")
@click.option("--data", type=click.Path(exists=True, dir_okay=False), default=None,
              help="CSV with columns text,label (default: the built-in SYNTHETIC reviews)")
@click.option("--quick", is_flag=True, help="tiny data, model and bench: checks the plumbing in seconds")
@click.option("--epochs", type=int, default=None, help="training epochs (default: the spec's, 1 with --quick)")
@click.option("--samples", type=int, default=None, help="synthetic reviews to generate (default: the spec's)")
@click.option("--test-fraction", type=click.FloatRange(0.05, 0.5), default=0.2, show_default=True,
              help="share of the data held out for the final test (never trained on)")
@click.option("--seed", type=int, default=0, show_default=True)
def main(out: Path, data, quick, epochs, samples, test_fraction, seed):
    import rnnedge
    from rnnedge.showcase import deliver, finish, summary_tables

    out.mkdir(parents=True, exist_ok=True)
    # 1. data ---------------------------------------------------------------------------
    spec = rnnedge.load_spec(SPEC)
    n = samples or (240 if quick else spec.data.samples)
    texts, y, info = load_reviews(data, n, seed)
    (tr_texts, y_train), (te_texts, y_test) = split(texts, y, test_fraction, seed)
    write_csv(out / "data" / "train.csv", tr_texts, y_train)
    write_csv(out / "data" / "test.csv", te_texts, y_test)
    info.update({"reviews": len(texts), "train": len(tr_texts), "test": len(te_texts),
                 "test_fraction": test_fraction, "seed": seed, "positive_share_test": float(np.mean(y_test)),
                 "train_csv": str(out / "data" / "train.csv"), "test_csv": str(out / "data" / "test.csv")})
    if info["synthetic"]:
        console.print("[bold yellow]data:[/] SYNTHETIC reviews from rnnedge.data.synthetic_reviews "
                      "(easy on purpose; use --data reviews.csv with columns text,label for real data)")
    else:
        console.print(f"[bold]data:[/] {data} (labels {info['classes'][0]!r}=0, {info['classes'][1]!r}=1)")
    console.print(f"      {len(tr_texts)} train / {len(te_texts)} held-out test reviews -> {out / 'data'}")

    # 2. spec ---------------------------------------------------------------------------
    if quick:  # smaller, so the test trains in seconds
        d = spec.dump()
        d["layers"][0]["output_dim"], d["layers"][1]["layer"]["units"] = 8, 4
        spec = rnnedge.load_spec(d)
    console.print(f"[bold]spec:[/] {SPEC.name}: {spec.description}")

    # 3. train (the spec's data kind 'text' builds the vocabulary from train.csv alone) --
    res_train = rnnedge.train(spec, data=str(out / "data" / "train.csv"), out=out / "model.keras",
                              epochs=epochs or (1 if quick else None), seed=seed, progress=not quick)
    pre = res_train.preprocessing
    console.print(f"[bold]train:[/] {res_train.info['epochs_run']} epochs, vocabulary {len(pre['vocab']) + 2} ids, "
                  f"max_len {pre['max_len']}; " + ", ".join(f"{k}={v:.3g}" for k, v in res_train.metrics.items()
                                                          if k.startswith("val_")))

    # 4. export, quantize, validate, bench, deploy, verify ------------------------------
    res = deliver(out / "model.keras", out, bench_seq_len=pre["max_len"], bench_runs=5 if quick else 30,
                  deploy_runtime="litert",
                  on_step=lambda s, phase: phase == "start" and console.print(f"[bold]{s}[/] ..."))
    for t in summary_tables(res, title="sentiment"):
        console.print(t)
    console.print(f"bundle: {res.bundle} (verified: {'yes' if res.ok else 'NO'})")

    # 5. the task on the held-out split, in each artifact's runtime ----------------------
    export_dir = Path(res.export_dir)
    manifest = json.loads((export_dir / "manifest.json").read_text())
    # every model artifact the export manifest lists: float ones first, then the quantized variants
    names = sorted((n for n, e in manifest["artifacts"].items()
                    if n.endswith((".onnx", ".ort", ".tflite")) or e.get("format") == "tfjs"),
                   key=lambda n: (n.count(".") > 1, n))
    x_test = encode(te_texts, pre)
    keras_prob = probabilities(export_dir / "reference.keras", x_test)
    task = evaluate(export_dir, names, x_test, y_test, y_train, keras_prob)
    t = Table(title=f"held-out test: {len(te_texts)} reviews ({'synthetic' if info['synthetic'] else data})")
    for c in ("model", "accuracy", "agreement with Keras", "max |p - p_keras|"):
        t.add_column(c)
    for name, row in task.items():
        if "error" in row:
            t.add_row(name, "[red]error[/]", row["error"][:80], "")
        else:
            t.add_row(name, _f(row["accuracy"]), _f(row.get("agreement_with_keras")),
                      _f(row.get("max_abs_prob_diff_vs_keras"), 6) if "max_abs_prob_diff_vs_keras" in row else "")
    console.print(t)

    # 6. padding / masking in model.onnx -------------------------------------------------
    # the held-out review the model is least sure about: a saturated 0.99999 would hide differences
    unsure = te_texts[int(np.argmin(np.abs(keras_prob - 0.5)))]
    pads = [padding_check(export_dir / n, unsure, pre) for n in ("model.onnx", "model.tflite")
            if (export_dir / n).exists()]
    for pad in pads:
        console.print(f"[bold]padding:[/] the least confident held-out review ({pad['words']} words) padded to lengths "
                      f"{', '.join(pad['probability_by_length'])} in {pad['artifact']}: probabilities "
                      f"{', '.join(_f(v, 6) for v in pad['probability_by_length'].values())} "
                      f"(spread {pad['max_spread']:.2g}) {'✔' if pad['ok'] else '✘'}")

    # 7. the deployed bundle's own predict.py on raw text ---------------------------------
    bund = bundle_check(Path(res.bundle), export_dir, pre)
    b = Table(title=f"bundle predict.py --text (runtime {bund['runtime']}, {bund['model']}) vs Keras")
    for c in ("text", "bundle", "Keras", "model.onnx", "|diff|", "ok"):
        b.add_column(c)
    for r in bund["sentences"]:
        b.add_row(r["text"], _f(r.get("bundle"), 6), _f(r.get("keras"), 6), _f(r.get("onnx"), 6),
                  f"{r['abs_diff_vs_keras']:.2g}" if "abs_diff_vs_keras" in r else r.get("error", ""),
                  "✔" if r["ok"] else "✘")
    console.print(b)

    # summary --------------------------------------------------------------------------
    validation = res.summary()["validation"]
    failed = [n for n, a in validation.items() if a["verdict"] in ("fail", "error")]
    reasons = ([f"parity failed: {', '.join(failed)}"] if failed else []) \
        + ([] if res.ok or failed else ["bundle verification failed"]) \
        + [f"task evaluation errored in {n}" for n, r in task.items() if "error" in r] \
        + [f"padding changes the probability in {p['artifact']}" for p in pads if not p["ok"]] \
        + ([] if bund["ok"] else ["bundle predict.py disagrees with Keras"])
    ok = not reasons
    pipeline = res.summary()
    summary = {"example": "sentiment", "ok": ok, "reasons": reasons, "quick": quick, "data": info,
               "train": {"epochs_run": res_train.info["epochs_run"], "metrics": res_train.metrics,
                         "vocab_ids": len(pre["vocab"]) + 2, "max_len": pre["max_len"]},
               "task": {"metric": "accuracy", "held_out": task, "padding": pads, "bundle_predict": bund},
               "pipeline": pipeline}
    sys.exit(finish(summary, out, console))


if __name__ == "__main__":
    main()
