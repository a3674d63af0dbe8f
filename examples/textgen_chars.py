"""Character-level text generation: train a next-character LSTM, deploy it, write text on the edge.

The task
    Read text one character at a time and predict the next character. The model (Embedding ->
    LSTM -> per-step softmax over the characters, ``examples/specs/textgen_chars.yaml``) outputs a
    probability for every character at every position. Sampling from it character by character,
    feeding each pick back in, writes new text.

The data
    Real English text that ships with every Python: the help texts of the interactive ``help()``
    (``pydoc_data.topics``: statements, operators, types... about 460 KB). The script joins the
    topics in name order, lower-cases them, drops rst underlines and rare symbols, keeps the first
    ``--chars`` characters, and holds out the LAST 10% as test text (other topics: never trained
    on). The training part is written to ``<out>/train.txt``: the spec's data kind ``chars`` cuts
    random windows from it and records the character vocabulary.

What it does and prints
    1. data: sizes, vocabulary; baselines on the held-out text: uniform (log2 of the vocabulary
       size) and unigram (character frequencies of the training text), in bits per character;
    2-3. spec + training (a few minutes on 2 CPU cores for the full run);
    4. ``rnnedge.showcase.deliver(..., streaming=True)``: export ONNX / ORT / TFLite (/ TF.js),
       plus the step models ``model.step.onnx`` / ``model.step.tflite`` (one character in, the LSTM
       state in and out), quantize (int8, dynamic), validate parity, bench, Raspberry Pi bundle +
       verify. Real training windows (``<out>/calibration.npy``) calibrate the int8 quantization
       and are the parity-check inputs: random character ids are not text;
    5. held-out evaluation in every artifact (``rnnedge.open_runner``; no TensorFlow except the
       Keras row): bits per character (bpc, lower is better), next-character accuracy and top-1
       agreement with Keras, over consecutive 32-character windows (the training window) of the
       test text, each from a fresh state; then text generated at temperatures 0.2, 0.5 and 1.0
       by the ONNX and the TFLite step models
       (``rnnedge.generation.generate``, same prime and seed), and the latency per generated
       character: streaming (one step per character, state carried) against re-running the full
       model over the last 32 characters for each new one (``generate_full``);
    6. ``<out>/summary.json``; exit code 0, or 1 when parity or the bundle check failed.

Run it
    python examples/textgen_chars.py                     # full run, -> runs/textgen_chars
    python examples/textgen_chars.py --quick -o /tmp/tg  # seconds: plumbing only (the test)
    python examples/textgen_chars.py --epochs 20 --chars 400000

The same with the CLI (train.txt and calibration.npy are written by this script)
    rnnedge train examples/specs/textgen_chars.yaml --data train.txt -o model.keras
    rnnedge export model.keras -f onnx,ort,tflite,tfjs --streaming -o export
    rnnedge quantize export -m int8 -m dynamic --calibration calibration.npy
    rnnedge validate export --calibration calibration.npy --min-agreement 0.93
    rnnedge bench export/model.onnx export/model.tflite
    rnnedge run export/model.step.onnx --streaming -i ids.npy    # a step model, state carried
    rnnedge deploy export --runtime litert -o bundle && rnnedge verify bundle
    (generation itself is Python: ``rnnedge.generation.generate``.)

Notes
    fp16 is not in the quantization list: onnxruntime 1.32 crashes (segfault, full graph
    optimization) loading the fp16 ONNX of this Embedding -> LSTM graph. The full TFLite model
    has a fixed window of 32 characters (its LSTM op is converted at a fixed length), hence the
    training window of 32. 8-bit artifacts are held to 93% top-1 agreement with Keras (not the
    default 98%): near-tied next-character choices flip under quantization while the held-out
    bits per character barely move; both figures are printed and recorded.
"""
from __future__ import annotations

import math
import re
import sys
import time
from pathlib import Path

import click
import numpy as np
from rich.console import Console
from rich.table import Table

import rnnedge
from rnnedge.generation import encode, generate, generate_full
from rnnedge.manifest import write_json_atomic
from rnnedge.runtime.streaming import StreamingSession
from rnnedge.showcase import deliver, summary_tables

SPEC = Path(__file__).parent / "specs" / "textgen_chars.yaml"
# the characters kept (lower-cased text); everything else is dropped. 60 characters + id 0.
ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789 \n.,;:'\"()[]{}-_=*+<>/!?"
TEMPERATURES = (0.2, 0.5, 1.0)
PRIME = "the "
QUANTIZE = ("int8", "dynamic")
MIN_AGREEMENT_8BIT = 0.93
console = Console()


# --------------------------------------------------------------------------- data
def load_text(max_chars: int) -> tuple[str, dict]:
    """The Python help topics as one cleaned, lower-cased text (at most ``max_chars``)."""
    from pydoc_data.topics import topics

    raw = "\n\n".join(topics[k] for k in sorted(topics))
    quotes = str.maketrans({"’": "'", "‘": "'", "“": '"', "”": '"', "—": "-", "–": "-"})
    text = raw.lower().translate(quotes)
    text = re.sub(r"(?m)^[ \t*=\-~^+|]*$", "", text)    # rst underlines, table borders
    text = "".join(c for c in text if c in ALPHABET)
    text = re.sub(r" {2,}", " ", text)                  # code indentation
    text = re.sub(r"\n{3,}", "\n\n", text)
    info = {"source": "pydoc_data.topics (Python's help() topic texts)", "topics": len(topics),
            "raw_chars": len(raw), "clean_chars": len(text)}
    return text[:max_chars], info


def baselines(train_text: str, test_ids: np.ndarray, vocab: dict) -> dict:
    """Bits per character of two models that ignore context: uniform and unigram (add-one)."""
    counts = np.ones(max(vocab.values()) + 1)
    counts[0] = 0
    for c in train_text:
        counts[vocab[c]] += 1
    p = counts / counts.sum()
    return {"uniform_bpc": math.log2(len(vocab)),
            "unigram_bpc": float(-np.log2(p[test_ids]).mean()),
            "unigram_accuracy": float((test_ids == int(np.argmax(p))).mean())}


# --------------------------------------------------------------------------- held-out metric
def evaluate(path: Path, test_ids: np.ndarray, window: int, batch: int = 64) -> dict:
    """bpc and next-character accuracy of the model at ``path`` on consecutive windows."""
    with rnnedge.open_runner(path) as r:
        info = r.inputs[0]
        b_fixed = info.shape[0] if isinstance(info.shape[0], int) else None
        t_fixed = info.shape[1] if isinstance(info.shape[1], int) else None
        T = t_fixed or window
        n = (len(test_ids) - 1) // T
        x = test_ids[: n * T].reshape(n, T).astype(info.dtype or np.int32)
        y = test_ids[1: n * T + 1].reshape(n, T)
        bs = b_fixed or batch
        bits, hits, preds = [], [], []
        for i in range(0, n, bs):
            xb, yb = x[i:i + bs], y[i:i + bs]
            k = len(xb)
            if b_fixed and k < b_fixed:               # fixed batch: pad the last one
                xb = np.concatenate([xb, np.repeat(xb[-1:], b_fixed - k, 0)])
            probs = next(iter(r.run({info.name: xb}).values()))[:k].astype(np.float64)
            p_true = np.take_along_axis(probs, yb[..., None], -1)[..., 0]
            bits.append(-np.log2(np.maximum(p_true, 1e-12)))
            hits.append(probs.argmax(-1) == yb)
            preds.append(probs.argmax(-1).reshape(-1))
        return {"bpc": float(np.concatenate(bits).mean()), "accuracy": float(np.concatenate(hits).mean()),
                "chars": int(n * T), "window": int(T), "runtime": r.info.get("runtime"),
                "_argmax": np.concatenate(preds)}


def per_char_ms(fn, length: int, repeats: int = 3) -> float:
    """Best of ``repeats``: milliseconds per generated character (priming included)."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(length)
        best = min(best, time.perf_counter() - t0)
    return best * 1e3 / length


# --------------------------------------------------------------------------- main
@click.command()
@click.option("-o", "--out", "out_dir", type=click.Path(path_type=Path), default=Path("runs/textgen_chars"),
              show_default=True, help="Output folder.")
@click.option("--quick", is_flag=True, help="Tiny data, model and training: checks the plumbing in seconds.")
@click.option("--epochs", type=int, default=None, help="Training epochs (default: the spec's; 1 with --quick).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--chars", "max_chars", type=int, default=None,
              help="Characters of text used (default 300000; 40000 with --quick).")
def main(out_dir: Path, quick: bool, epochs: int | None, seed: int, max_chars: int | None) -> None:
    out = out_dir
    out.mkdir(parents=True, exist_ok=True)
    # 1. data ---------------------------------------------------------------
    text, data_info = load_text(max_chars or (40_000 if quick else 300_000))
    split = int(len(text) * 0.9)
    train_text, test_text = text[:split], text[split:]
    train_file = out / "train.txt"
    train_file.write_text(train_text)
    console.print(f"[bold]1. data[/] {data_info['source']}: {len(text):,} characters "
                  f"-> train {len(train_text):,} ({train_file}), held-out test {len(test_text):,}")

    # 2. spec -----------------------------------------------------------------
    spec = rnnedge.load_spec(SPEC)
    if quick:
        d = spec.dump()
        d["layers"][1]["units"] = 32
        d["data"]["samples"] = 512
        spec = rnnedge.load_spec(d)
    window = spec.data.max_len
    console.print(f"[bold]2. spec[/] {SPEC.name}: {spec.description} (window {window})")

    # 3. train ------------------------------------------------------------------
    t0 = time.perf_counter()
    tr = rnnedge.train(spec, data=train_file, out=out / "model.keras", epochs=epochs or (1 if quick else None),
                       seed=seed, progress=not quick)
    train_s = time.perf_counter() - t0
    vocab = tr.preprocessing["vocab"]
    unseen = sorted(set(test_text) - set(vocab))   # characters the training text never showed
    test_text = "".join(c for c in test_text if c in vocab)
    test_ids = encode(test_text, vocab)
    base = baselines(train_text, test_ids, vocab)
    console.print(f"[bold]3. train[/] {tr.info['epochs_run']} epochs in {train_s:.0f} s; vocabulary "
                  f"{len(vocab)} characters; " + ", ".join(f"{k}={v:.3g}" for k, v in tr.metrics.items()
                                                           if k.startswith("val_")))

    # 4. deliver ------------------------------------------------------------------
    # real training windows calibrate the 8-bit quantization and are the parity-check inputs
    # (random character ids are not text: they drive the LSTM where it never goes in use)
    calib = out / "calibration.npy"
    train_ids = encode("".join(c for c in train_text if c in vocab), vocab)
    starts = np.random.default_rng(seed).integers(0, len(train_ids) - window, size=128)
    np.save(calib, np.stack([train_ids[i:i + window] for i in starts]))
    # no fp16: see Notes in the docstring (onnxruntime crashes loading that ONNX file)
    # 8-bit artifacts: a next-character distribution is often near-tied between two or three
    # characters, so quantization flips some argmaxes without hurting the text (bpc below tells);
    # they are held to 93% top-1 agreement with Keras instead of the default 98%, stated here
    # and recorded in the parity report
    res = deliver(out / "model.keras", out, streaming=True, bench_seq_len=window, quantize=QUANTIZE, calibration=calib,
                  validate_options={"min_agreement": MIN_AGREEMENT_8BIT},
                  bench_runs=5 if quick else 30, deploy_runtime="litert",
                  on_step=lambda name, phase: phase == "start" and console.print(f"   {name}..."))
    for t in summary_tables(res, title="textgen_chars"):
        console.print(t)
    exp = res.export_dir

    # 5. held-out evaluation in every artifact ---------------------------------------
    names = ["reference.keras"] + sorted(n for n, e in res.artifacts.items()
                                         if n.endswith((".onnx", ".ort", ".tflite")) and ".step." not in n)
    task = {"held_out_chars": len(test_text), "baselines": base, "artifacts": {}}
    table = Table(title=f"held-out text ({len(test_text):,} characters): next-character prediction")
    for c in ("artifact", "bits/char", "accuracy", "top-1 = Keras", "runtime"):
        table.add_column(c)
    table.add_row("uniform baseline", f"{base['uniform_bpc']:.3f}", "", "", "")
    table.add_row("unigram baseline", f"{base['unigram_bpc']:.3f}", f"{base['unigram_accuracy']:.3f}", "", "")
    ref_pred = None
    for n in names:
        try:
            m = evaluate(exp / n, test_ids, window)
        except Exception as e:  # noqa: BLE001 - an artifact the runtime here cannot run: say so
            m = {"error": f"{type(e).__name__}: {e}"}
        pred = m.pop("_argmax", None)
        if n == "reference.keras":
            ref_pred = pred
        if pred is not None and ref_pred is not None and len(pred) == len(ref_pred):
            m["top1_agreement_with_keras"] = float((pred == ref_pred).mean())
        task["artifacts"][n] = m
        table.add_row(n, f"{m['bpc']:.3f}" if "bpc" in m else m["error"][:60],
                      f"{m['accuracy']:.3f}" if "accuracy" in m else "",
                      f"{m['top1_agreement_with_keras']:.4f}" if "top1_agreement_with_keras" in m else "",
                      str(m.get("runtime", "")))
    console.print(table)
    ref_bpc = task["artifacts"]["reference.keras"]["bpc"]
    task["beats_unigram"] = bool(ref_bpc < base["unigram_bpc"])

    # generation: the step models, same prime and seed
    steps = {k: exp / f"model.step.{k}" for k in ("onnx", "tflite") if (exp / f"model.step.{k}").exists()}
    gen_len = 60 if quick else 200
    task["samples"] = {k: {str(t): generate(p, vocab, PRIME, gen_len, t, seed=seed) for t in TEMPERATURES}
                       for k, p in steps.items()}
    for k, by_t in task["samples"].items():
        for t, s in by_t.items():
            console.print(f"[bold]{k} step model, temperature {t}:[/] {PRIME!r} + {s!r}")

    # latency per generated character: streaming vs re-running the full model per character
    lat_len = 20 if quick else 200
    latency = {}
    for k, full in (("onnx", exp / "model.onnx"), ("tflite", exp / "model.tflite")):
        if k not in steps or not full.exists():
            continue
        # open each model once (loading is not per-character cost), warm it up, then time
        with StreamingSession(steps[k]) as sess, rnnedge.open_runner(full) as runner:
            gen_stream = lambda L: generate(sess, vocab, PRIME, L, 1.0, seed=seed)  # noqa: E731
            gen_full = lambda L: generate_full(runner, vocab, PRIME * 16, L, 1.0, seed=seed,  # noqa: E731
                                               window=window)
            gen_stream(5), gen_full(5)
            stream, rerun = per_char_ms(gen_stream, lat_len), per_char_ms(gen_full, lat_len)
        latency[k] = {"streaming_ms_per_char": stream, "full_window_ms_per_char": rerun,
                      "speedup": rerun / stream, "window": window, "chars": lat_len}
        console.print(f"[bold]latency {k}:[/] streaming {stream:.3f} ms/char, re-running the "
                      f"{window}-char window {rerun:.3f} ms/char ({rerun / stream:.1f}x)")
    task["latency"] = latency

    # 6. summary -----------------------------------------------------------------------
    pipe = res.to_dict()
    val = res.validation or {}
    pipe["validation"] = {n: {"verdict": a.get("verdict"),
                              "max_abs": max((o.get("max_abs") or 0.0 for o in (a.get("outputs") or {}).values()),
                                             default=None)}
                          for n, a in (val.get("artifacts") or {}).items()}
    pipe["validation_exit_code"] = val.get("exit_code")
    pipe["bench"] = [{"artifact": c.get("artifact"), "runtime": c.get("runtime"),
                      "p50_ms": (c.get("latency_ms") or {}).get("p50")} for c in (res.bench or {}).get("cases", [])]
    summary = {"example": "textgen_chars", "ok": res.ok,
               "data": {**data_info, "used_chars": len(text), "train_chars": len(train_text),
                        "test_chars": len(test_text), "test_chars_dropped_unseen": unseen,
                        "vocab_size": len(vocab), "train_file": str(train_file),
                        "quick": quick},
               "train": {"seconds": round(train_s, 1), "epochs_run": tr.info["epochs_run"],
                         "metrics": tr.metrics, "window": window, "samples": spec.data.samples},
               "task": task, "pipeline": pipe}
    write_json_atomic(out / "summary.json", summary)
    verdict = "beats" if task["beats_unigram"] else "does NOT beat"
    console.print(f"[bold]6. summary[/] {out / 'summary.json'}: Keras {ref_bpc:.3f} bpc {verdict} the unigram "
                  f"baseline {base['unigram_bpc']:.3f} (uniform {base['uniform_bpc']:.3f})")
    if not res.ok:
        bad = [n for n, a in pipe["validation"].items() if a["verdict"] not in ("pass", "ok")]
        console.print(f"[red]FAILED[/]: parity or bundle verification (validate exit code "
                      f"{pipe['validation_exit_code']}; verdicts not passing: {bad}; bundle: "
                      f"{[s['detail'] for s in res.steps if s['step'] == 'verify']})")
        sys.exit(1)


if __name__ == "__main__":
    main()
