#!/usr/bin/env node
/*
 * Run rnnedge TF.js layers models in Node with pure @tensorflow/tfjs (JS CPU backend).
 *
 *   node run.js MODEL_DIR_OR_JSON INPUTS.json OUTPUTS.json [--repeat N]
 *   node run.js --jobs JOBS.json          (several models in one Node process)
 *   node run.js --version
 *
 * INPUTS.json:  {"<input name>": {"shape": [..], "dtype": "float32"|"int32", "data": [flat]}}
 * OUTPUTS.json: {"outputs": {"<name>": {shape, dtype, data}}, "output_order": [..],
 *                "load_ms", "run_ms", "backend", "tfjs_version"}
 *               or {"error": "..."} (exit code 1)
 * JOBS.json:    [{"model": ..., "inputs": ..., "outputs": ..., "output_names": [..]}, ...]
 *               (each job writes its own OUTPUTS file; one failing job does not stop the
 *               others; output_names, when given, name the model's outputs in order)
 *
 * Models are read with fs and loaded via tf.io.fromMemory; the custom layers of
 * rnnedge_layers.js are registered first.
 */
'use strict';
const fs = require('fs');
const path = require('path');

function loadTf() {
  // Quiet the "you are using the JS backend, install tfjs-node" banner: stdout is ours.
  const warn = console.warn;
  console.warn = () => {};
  const tf = require('@tensorflow/tfjs');
  console.warn = warn;
  require('./rnnedge_layers.js')(tf);
  return tf;
}

function resolveModelJson(p) {
  const st = fs.statSync(p);
  if (st.isDirectory()) {
    for (const c of [path.join(p, 'model.json'), path.join(p, 'tfjs', 'model.json')]) {
      if (fs.existsSync(c)) return c;
    }
    throw new Error(`${p}: no model.json inside`);
  }
  return p;
}

async function loadModel(tf, modelPath) {
  const jsonPath = resolveModelJson(modelPath);
  const dir = path.dirname(jsonPath);
  const mj = JSON.parse(fs.readFileSync(jsonPath, 'utf8'));
  const weightSpecs = [];
  const buffers = [];
  for (const group of mj.weightsManifest || []) {
    weightSpecs.push(...group.weights);
    for (const p of group.paths) buffers.push(fs.readFileSync(path.join(dir, p)));
  }
  const all = Buffer.concat(buffers);
  const weightData = all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength);
  const model = await tf.loadLayersModel(tf.io.fromMemory({
    modelTopology: mj.modelTopology, weightSpecs, weightData,
    format: mj.format, generatedBy: mj.generatedBy, convertedBy: mj.convertedBy,
  }), {strict: true});
  const meta = (mj.userDefinedMetadata || {}).rnnedge || {};
  return {model, meta};
}

function toTensor(tf, spec, name) {
  const dtype = spec.dtype === 'int32' || spec.dtype === 'int64' ? 'int32' :
      (spec.dtype === 'bool' ? 'bool' : 'float32');
  if (!Array.isArray(spec.shape)) throw new Error(`input ${name}: missing shape`);
  return tf.tensor(spec.data, spec.shape, dtype);
}

async function runOne(tf, job) {
  const t0 = Date.now();
  const {model, meta} = await loadModel(tf, job.model);
  const loadMs = Date.now() - t0;
  const feeds = typeof job.inputs === 'string' ?
      JSON.parse(fs.readFileSync(job.inputs, 'utf8')) : job.inputs;
  // a loaded tf.Sequential has empty inputNames: use its input layer names then
  const inputNames = model.inputNames.length ? model.inputNames :
      model.inputs.map(t => t.sourceLayer.name);
  const metaIn = (meta.inputs || []).map(i => i.name);
  const tensors = inputNames.map((n, i) => {
    const key = n in feeds ? n : (metaIn[i] in feeds ? metaIn[i] : null);
    if (key == null) {
      throw new Error(`missing input ${n}; got ${Object.keys(feeds).join(', ')}`);
    }
    return toTensor(tf, feeds[key], n);
  });
  const repeat = Math.max(1, job.repeat || 1);
  let outs;
  const times = [];
  for (let r = 0; r < repeat; ++r) {
    if (outs) tf.dispose(outs);
    const t1 = process.hrtime.bigint();
    outs = model.predict(tensors.length === 1 ? tensors[0] : tensors);
    outs = Array.isArray(outs) ? outs : [outs];
    for (const o of outs) o.dataSync();
    times.push(Number(process.hrtime.bigint() - t1) / 1e6);
  }
  const names = job.output_names || (meta.outputs || []).map(o => o.name);
  const result = {outputs: {}, output_order: [], load_ms: loadMs, run_ms: times,
                  backend: tf.getBackend(), tfjs_version: tf.version.tfjs};
  outs.forEach((o, i) => {
    const name = names.length === outs.length ? names[i] : model.outputNames[i];
    result.output_order.push(name);
    result.outputs[name] = {shape: o.shape, dtype: o.dtype, data: Array.from(o.dataSync())};
  });
  tf.dispose(outs);
  tf.dispose(tensors);
  model.dispose();
  return result;
}

function write(file, obj) {
  const tmp = `${file}.tmp${process.pid}`;
  fs.writeFileSync(tmp, JSON.stringify(obj));
  fs.renameSync(tmp, file);
}

async function main(argv) {
  if (argv[0] === '--version') {
    const tf = loadTf();
    process.stdout.write(JSON.stringify({tfjs_version: tf.version.tfjs, node: process.version}) + '\n');
    return 0;
  }
  let jobs;
  if (argv[0] === '--jobs') {
    jobs = JSON.parse(fs.readFileSync(argv[1], 'utf8'));
  } else if (argv.length >= 3) {
    const r = argv.indexOf('--repeat');
    jobs = [{model: argv[0], inputs: argv[1], outputs: argv[2],
             repeat: r >= 0 ? parseInt(argv[r + 1], 10) : 1}];
  } else {
    process.stderr.write('usage: node run.js MODEL INPUTS.json OUTPUTS.json | --jobs JOBS.json\n');
    return 2;
  }
  const tf = loadTf();
  await tf.setBackend('cpu');
  let failed = 0;
  for (const job of jobs) {
    try {
      write(job.outputs, await runOne(tf, job));
    } catch (e) {
      failed += 1;
      write(job.outputs, {error: String(e && e.message ? e.message : e)});
    }
  }
  return failed ? 1 : 0;
}

main(process.argv.slice(2)).then(code => process.exit(code), e => {
  process.stderr.write(String(e && e.stack ? e.stack : e) + '\n');
  process.exit(1);
});
