#!/usr/bin/env node
/*
 * TF.js layers models built, saved and run by real TF.js (pure @tensorflow/tfjs, the shipped
 * runner's packages) for tests/test_tfjs_import.py.
 *
 *   node tests/tfjs_fixtures.js NODE_MODULES_DIR OUT_DIR
 *
 * For every case: OUT_DIR/<case>/model.json + weight shards (written by a custom save handler,
 * like `model.save('file://...')` does: weightsManifest [{paths, weights}]), and
 * OUT_DIR/<case>/expected.json = {inputs: [{name, shape, dtype, data}], outputs: [{shape, data}],
 * weights: [{name, shape, data}] (quantized cases: the values TF.js decoded)}.
 * Weights are set from a seeded uniform(-0.6, 0.6) so biases are not zero. Quantized cases are
 * written the way tensorflowjs_converter --quantize_{uint8,uint16,float16} does
 * (tfjs-converter/python/tensorflowjs/quantization.py: min/max range nudged so 0 is exact),
 * then LOADED AGAIN by TF.js and predicted: the expected outputs are TF.js running the
 * quantized model.
 */
'use strict';
const fs = require('fs');
const path = require('path');

const [nodeModules, outDir] = process.argv.slice(2);
const warn = console.warn;
console.warn = () => {};
const tf = require(path.resolve(nodeModules, '@tensorflow', 'tfjs'));
console.warn = warn;

const T = 6;

function setSeededWeights(model, seed) {
  const ws = model.getWeights().map(
      (w, i) => tf.randomUniform(w.shape, -0.6, 0.6, 'float32', seed * 100 + i));
  model.setWeights(ws);
}

function floats(shape, seed) {
  return tf.randomNormal(shape, 0, 1, 'float32', seed);
}

// token ids in [1, vocab) with row 0 post-padded, row 1 pre-padded, row 2 full
function paddedIds(batch, t, vocab, seed, dtype = 'float32') {
  const ids = tf.randomUniform([batch, t], 1, vocab, 'int32', seed).arraySync();
  ids[0].fill(0, t - 2);
  for (let j = 0; j < 3; ++j) ids[1][j] = 0;
  return tf.tensor(ids, [batch, t], dtype);
}

const seq = layers => {
  const m = tf.sequential();
  layers.forEach(l => m.add(l));
  return m;
};
const L = tf.layers;

const CASES = {
  stacked_lstm: () => [seq([
    L.lstm({units: 5, returnSequences: true, inputShape: [T, 3]}),
    L.lstm({units: 4, recurrentActivation: 'sigmoid'}),
    L.dense({units: 2, activation: 'softmax'})]), [floats([2, T, 3], 1)]],
  gru_default: () => [seq([
    L.gru({units: 4, inputShape: [T, 3]}),
    L.dense({units: 2, activation: 'hardSigmoid'})]), [floats([2, T, 3], 2)]],
  simplernn_relu_td: () => [seq([
    L.simpleRNN({units: 4, activation: 'relu', returnSequences: true, inputShape: [T, 3]}),
    L.timeDistributed({layer: L.dense({units: 2, activation: 'tanh'})})]), [floats([2, T, 3], 3)]],
  lstm_no_forget_bias: () => [seq([
    L.lstm({units: 4, unitForgetBias: false, returnSequences: true, inputShape: [T, 3]})]),
  [floats([2, T, 3], 4)]],
  bidi_concat: () => [seq([
    L.bidirectional({layer: L.lstm({units: 3, returnSequences: true}), mergeMode: 'concat',
                     inputShape: [T, 3]})]), [floats([2, T, 3], 5)]],
  bidi_sum: () => [seq([
    L.bidirectional({layer: L.gru({units: 3, returnSequences: true}), mergeMode: 'sum',
                     inputShape: [T, 3]})]), [floats([2, T, 3], 6)]],
  bidi_mul: () => [seq([
    L.bidirectional({layer: L.simpleRNN({units: 3}), mergeMode: 'mul', inputShape: [T, 3]})]),
  [floats([2, T, 3], 7)]],
  bidi_ave: () => [seq([
    L.bidirectional({layer: L.lstm({units: 3, returnSequences: true, recurrentActivation: 'sigmoid'}),
                     mergeMode: 'ave', inputShape: [T, 3]})]), [floats([2, T, 3], 8)]],
  bidi_none: () => {
    const x = tf.input({shape: [T, 3], name: 'series'});
    const [f, b] = L.bidirectional({layer: L.gru({units: 3}), mergeMode: null}).apply(x);
    return [tf.model({inputs: x, outputs: [f, b]}), [floats([2, T, 3], 9)]];
  },
  embedding_mask: () => [seq([
    L.embedding({inputDim: 12, outputDim: 4, maskZero: true, inputLength: 7}),
    L.lstm({units: 4}),
    L.dense({units: 1, activation: 'sigmoid'})]), [paddedIds(3, 7, 12, 10)]],
  embedding_mask_bidi: () => [seq([
    L.embedding({inputDim: 12, outputDim: 4, maskZero: true, inputLength: 7}),
    L.bidirectional({layer: L.gru({units: 3, returnSequences: true})}),
    L.dropout({rate: 0.2}),
    L.lstm({units: 3}),
    L.dense({units: 2, activation: 'softmax'})]), [paddedIds(3, 7, 12, 11)]],
  go_backwards: () => [seq([
    L.lstm({units: 3, goBackwards: true, returnSequences: true, inputShape: [T, 3]}),
    L.simpleRNN({units: 3, goBackwards: true})]), [floats([2, T, 3], 12)]],
  functional_two_inputs: () => {
    const a = tf.input({shape: [T, 3], name: 'a'});
    const b = tf.input({shape: [5, 2], name: 'b'});
    const ya = L.lstm({units: 4}).apply(a);
    const yb = L.gru({units: 4, recurrentActivation: 'sigmoid'}).apply(b);
    const z = L.dense({units: 2, activation: 'softmax', name: 'probs'}).apply(
        L.concatenate().apply([ya, yb]));
    const s = L.dense({units: 1, name: 'score'}).apply(ya);
    return [tf.model({inputs: [a, b], outputs: [z, s]}), [floats([2, T, 3], 13), floats([2, 5, 2], 14)]];
  },
  // encoder states as the decoder's initial state (TF.js's predict fails when the encoder's
  // output is used as well: tfjs-layers executor applies the layer once per output and disposes)
  seq2seq_states: () => {
    const e = tf.input({shape: [T, 3], name: 'encoder_in'});
    const d = tf.input({shape: [4, 2], name: 'decoder_in'});
    const [, h, c] = L.lstm({units: 4, returnState: true}).apply(e);
    const y = L.lstm({units: 4, returnSequences: true}).apply(d, {initialState: [h, c]});
    const o = L.timeDistributed({layer: L.dense({units: 3, activation: 'softmax'})}).apply(y);
    return [tf.model({inputs: [e, d], outputs: o}), [floats([2, T, 3], 18), floats([2, 4, 2], 19)]];
  },
  free_length: () => [seq([
    L.lstm({units: 3, returnSequences: true, inputShape: [null, 2]}),
    L.globalMaxPooling1d(),
    L.dense({units: 1})]), [floats([2, T, 2], 15)]],
  masking_lstm: () => {
    const x = floats([3, T, 3], 16).arraySync();
    x[0][T - 1].fill(0); x[0][T - 2].fill(0); x[1][0].fill(0);
    return [seq([
      L.masking({maskValue: 0, inputShape: [T, 3]}),
      L.lstm({units: 4, returnSequences: true}),
      L.timeDistributed({layer: L.dense({units: 2})})]), [tf.tensor(x)]];
  },
  zoo: () => {
    const x = tf.input({shape: [T, 4], name: 'x'});
    let h = L.conv1d({filters: 4, kernelSize: 3, padding: 'same', activation: 'relu'}).apply(x);
    h = L.layerNormalization().apply(h);
    h = L.spatialDropout1d({rate: 0.1}).apply(h);
    const s = L.lstm({units: 4, returnSequences: true}).apply(h);
    const m = L.globalMaxPooling1d().apply(s);
    const v = L.globalAveragePooling1d().apply(s);
    const k = L.activation({activation: 'elu'}).apply(L.gaussianNoise({stddev: 0.1}).apply(
        L.add().apply([m, v])));
    let y = L.maximum().apply([L.multiply().apply([m, k]), L.average().apply([v, k])]);
    y = L.repeatVector({n: 2}).apply(y);
    y = L.flatten().apply(L.simpleRNN({units: 2, returnSequences: true}).apply(y));
    y = L.reshape({targetShape: [2, 2]}).apply(y);
    return [tf.model({inputs: x, outputs: y}), [floats([2, T, 4], 17)]];
  },
  // refusals: TF.js runs them, rnnedge must say why it cannot rebuild them exactly
  refuse_prelu: () => [seq([L.lstm({units: 3, inputShape: [T, 3]}), L.prelu()]), [floats([2, T, 3], 20)]],
  refuse_stale_mask: () => [seq([
    L.embedding({inputDim: 12, outputDim: 3, maskZero: true, inputLength: T}),
    L.lstm({units: 3}), L.repeatVector({n: T}), L.lstm({units: 3, returnSequences: true})]),
  [paddedIds(3, T, 12, 21)]],
  refuse_masked_average: () => [seq([
    L.embedding({inputDim: 12, outputDim: 3, maskZero: true, inputLength: T}),
    L.lstm({units: 3, returnSequences: true}), L.globalAveragePooling1d()]), [paddedIds(3, T, 12, 22)]],
  refuse_masked_bidi_sequences: () => [seq([
    L.embedding({inputDim: 12, outputDim: 3, maskZero: true, inputLength: T}),
    L.bidirectional({layer: L.lstm({units: 3, returnSequences: true})}),
    L.globalMaxPooling1d()]), [paddedIds(3, T, 12, 23)]],
};

// which case each quantized variant copies (its model and inputs)
const QUANTIZED = {quantized_uint8: ['embedding_mask', 'uint8'],
                   quantized_uint16: ['stacked_lstm', 'uint16'],
                   quantized_float16: ['bidi_concat', 'float16']};
// weights cut into several shards (bytes per shard), like the converter's --weight_shard_size_bytes
const SHARD_BYTES = {functional_two_inputs: 200, quantized_uint8: 64};

function tensorJson(t, name) {
  const o = {shape: t.shape, dtype: t.dtype, data: Array.from(t.dataSync())};
  if (name) o.name = name;
  return o;
}

function writeArtifacts(dir, artifacts, shardBytes) {
  fs.mkdirSync(dir, {recursive: true});
  const data = Buffer.from(artifacts.weightData);
  const n = shardBytes ? Math.max(1, Math.ceil(data.length / shardBytes)) : 1;
  const size = shardBytes || data.length;
  const paths = [];
  for (let i = 0; i < n; ++i) {
    const p = n === 1 ? 'weights.bin' : `group1-shard${i + 1}of${n}.bin`;
    fs.writeFileSync(path.join(dir, p), data.subarray(i * size, (i + 1) * size));
    paths.push(p);
  }
  const modelJson = {
    modelTopology: artifacts.modelTopology, format: artifacts.format,
    generatedBy: artifacts.generatedBy, convertedBy: artifacts.convertedBy,
    weightsManifest: [{paths, weights: artifacts.weightSpecs}],
  };
  fs.writeFileSync(path.join(dir, 'model.json'), JSON.stringify(modelJson));
}

// tfjs-converter quantization.py: quantize_weights / _get_affine_quantization_range
function quantize(artifacts, qdtype) {
  const src = new Float32Array(artifacts.weightData);
  let off = 0;
  const chunks = [];
  const specs = artifacts.weightSpecs.map(spec => {
    const size = spec.shape.reduce((a, b) => a * b, 1);
    const w = src.subarray(off, off + size);
    off += size;
    const out = Object.assign({}, spec);
    if (qdtype === 'float16') {
      const h = new Uint16Array(size);
      for (let i = 0; i < size; ++i) h[i] = toHalf(w[i]);
      chunks.push(Buffer.from(h.buffer));
      out.quantization = {dtype: 'float16'};
      return out;
    }
    const qmax = qdtype === 'uint8' ? 255 : 65535;
    let lo = Infinity, hi = -Infinity;
    for (const v of w) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    let scale, min, max;
    if (lo === hi) {
      scale = 1.0; min = lo; max = hi;
    } else {
      scale = (hi - lo) / qmax;
      if (lo <= 0 && 0 <= hi) {
        const zp = Math.round((0 - lo) / scale);
        min = -zp * scale;
        max = qmax * scale + min;
      } else {
        min = lo; max = hi;
      }
    }
    const q = qdtype === 'uint8' ? new Uint8Array(size) : new Uint16Array(size);
    for (let i = 0; i < size; ++i) {
      const v = Math.min(Math.max(w[i], min), max);
      q[i] = lo === hi ? 0 : Math.round((v - min) / scale);
    }
    chunks.push(Buffer.from(q.buffer));
    out.quantization = {dtype: qdtype, min, scale};
    return out;
  });
  const all = Buffer.concat(chunks);
  return Object.assign({}, artifacts, {
    weightSpecs: specs, weightData: all.buffer.slice(all.byteOffset, all.byteOffset + all.length)});
}

// float32 -> IEEE half bits, round to nearest even (what numpy's astype(float16) does)
function toHalf(f) {
  const fv = new Float32Array([f]);
  const x = new Uint32Array(fv.buffer)[0];
  const sign = (x >>> 16) & 0x8000;
  let exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let h = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && (h & 1))) h += 1;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1))) h += 1;
  return sign | h;
}

async function save(model) {
  let art;
  await model.save(tf.io.withSaveHandler(async a => {
    art = a;
    return {modelArtifactsInfo: {dateSaved: new Date(), modelTopologyType: 'JSON'}};
  }));
  return art;
}

async function main() {
  const built = {};
  const index = [];
  for (const [name, make] of Object.entries(CASES)) {
    const [model, xs] = make();
    setSeededWeights(model, index.length + 1);
    const art = await save(model);
    writeArtifacts(path.join(outDir, name), art, SHARD_BYTES[name]);
    built[name] = {art, xs};
    index.push(name);
  }
  for (const [name, [base, qdtype]] of Object.entries(QUANTIZED)) {
    const art = quantize(built[base].art, qdtype);
    writeArtifacts(path.join(outDir, name), art, SHARD_BYTES[name]);
    built[name] = {art, xs: built[base].xs};
    index.push(name);
  }
  for (const name of index) {
    // predictions come from the model as LOADED from the written artifacts (what a user runs)
    const {art, xs} = built[name];
    const model = await tf.loadLayersModel(tf.io.fromMemory({
      modelTopology: art.modelTopology, weightSpecs: art.weightSpecs, weightData: art.weightData}));
    let ys = model.predict(xs.length === 1 ? xs[0] : xs);
    ys = Array.isArray(ys) ? ys : [ys];
    const expected = {
      inputs: xs.map((x, i) => tensorJson(x, model.inputNames[i])),
      outputs: ys.map(y => tensorJson(y)),
    };
    if (name in QUANTIZED) {
      expected.weights = model.weights.map(w => tensorJson(w.read(), w.originalName));
    }
    fs.writeFileSync(path.join(outDir, name, 'expected.json'), JSON.stringify(expected));
  }
  fs.writeFileSync(path.join(outDir, 'index.json'),
                   JSON.stringify({cases: index, tfjs_version: tf.version.tfjs}));
}

main().then(() => process.exit(0), e => {
  process.stderr.write(String(e && e.stack ? e.stack : e) + '\n');
  process.exit(1);
});
