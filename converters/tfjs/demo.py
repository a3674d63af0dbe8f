"""The demo page written next to a TF.js export (DIR/tfjs/index.html).

It loads the local ``tf.min.js`` and ``rnnedge_layers.js``, loads ``model.json`` over HTTP
(serve the folder: ``python -m http.server -d DIR/tfjs``), runs ``sample.json``'s input,
shows the prediction and the max abs difference to the Keras output, and sets
``document.title`` and ``#status`` to ``OK`` or ``MISMATCH`` (``ERROR: ...`` on failure).
"""
from __future__ import annotations

import html
import json

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>loading</title>
<style>
 body {{ font-family: system-ui, sans-serif; margin: 2em; max-width: 60em; color: #222; }}
 #status {{ font-size: 2em; font-weight: bold; }}
 .OK {{ color: #1a7f37; }} .MISMATCH, .ERROR {{ color: #c62828; }}
 table {{ border-collapse: collapse; margin: 1em 0; }}
 td, th {{ border: 1px solid #ccc; padding: .3em .6em; text-align: left; font-family: monospace; }}
 pre {{ background: #f6f8fa; padding: .8em; overflow-x: auto; }}
</style>
<script src="tf.min.js"></script>
<script src="rnnedge_layers.js"></script>
</head>
<body>
<h1>rnnedge TF.js export: {name}</h1>
<p>Inputs: {inputs}<br>Outputs: {outputs}<br>Layers: {layers}</p>
<div id="status" class="">running…</div>
<table id="report"><tr><th>output</th><th>shape</th><th>max abs diff vs Keras</th></tr></table>
<h3>Prediction (first values)</h3>
<pre id="prediction"></pre>
<p id="meta"></p>
<script>
async function main() {{
  const status = document.getElementById('status');
  try {{
    rnnedgeRegisterLayers(tf);
    const sample = await (await fetch('sample.json')).json();
    const t0 = performance.now();
    const model = await tf.loadLayersModel('model.json');
    const loadMs = performance.now() - t0;
    const meta = ((model.userDefinedMetadata || {{}}).rnnedge) || {metadata};
    const inNames = meta.inputs.map(i => i.name);
    const xs = inNames.map(n => {{
      const s = sample.inputs[n];
      return tf.tensor(s.data, s.shape, s.dtype === 'int32' ? 'int32' : 'float32');
    }});
    const t1 = performance.now();
    let ys = model.predict(xs.length === 1 ? xs[0] : xs);
    ys = Array.isArray(ys) ? ys : [ys];
    const vals = ys.map(y => y.dataSync());
    const runMs = performance.now() - t1;
    let worst = 0;
    const report = document.getElementById('report');
    const pred = [];
    meta.outputs.forEach((o, i) => {{
      const ref = sample.outputs[o.name].data;
      let d = 0;
      for (let k = 0; k < ref.length; ++k) d = Math.max(d, Math.abs(ref[k] - vals[i][k]));
      if (ref.length !== vals[i].length || !isFinite(d)) d = Infinity;
      worst = Math.max(worst, d);
      const tr = document.createElement('tr');
      tr.innerHTML = '<td>' + o.name + '</td><td>[' + ys[i].shape.join(', ') + ']</td><td>' +
                     d.toExponential(2) + '</td>';
      report.appendChild(tr);
      pred.push(o.name + ': ' + Array.from(vals[i].slice(0, 12)).map(v => v.toFixed(5)).join(' ') +
                (vals[i].length > 12 ? ' …' : ''));
    }});
    document.getElementById('prediction').textContent = pred.join('\\n');
    const ok = worst <= sample.tolerance;
    const verdict = ok ? 'OK' : 'MISMATCH';
    status.textContent = verdict + ' — max abs diff ' + worst.toExponential(2) +
                         ' (tolerance ' + sample.tolerance + ')';
    status.className = verdict;
    status.dataset.maxAbsDiff = String(worst);
    document.getElementById('meta').textContent = 'TF.js ' + tf.version.tfjs + ', backend ' +
        tf.getBackend() + ', load ' + loadMs.toFixed(1) + ' ms, predict ' + runMs.toFixed(1) + ' ms';
    document.title = verdict;
  }} catch (e) {{
    status.textContent = 'ERROR: ' + e.message;
    status.className = 'ERROR';
    document.title = 'ERROR';
  }}
}}
main();
</script>
</body>
</html>
"""


def index_html(tm) -> str:
    meta = {"inputs": tm.inputs, "outputs": tm.outputs}
    fmt = lambda ts: ", ".join(f"{t['name']} {t['shape']} {t['dtype']}" for t in ts)  # noqa: E731
    return _PAGE.format(
        name=html.escape(tm.model_json["modelTopology"]["config"]["name"]),
        inputs=html.escape(fmt(tm.inputs)), outputs=html.escape(fmt(tm.outputs)),
        layers=html.escape(", ".join(tm.layers)),
        metadata=json.dumps(meta).replace("</", "<\\/"),
    )
