/*
 * Custom TF.js layers shipped with rnnedge exports (Node and browser).
 *
 *   Node:    require('./rnnedge_layers.js')(tf)
 *   Browser: <script src="rnnedge_layers.js"></script> then rnnedgeRegisterLayers(tf)
 *
 * RnnedgeGRUResetAfter    GRU with reset_after=True (Keras's default; tfjs-layers refuses it):
 *                         r is applied after the recurrent matmul, bias has shape [2, 3*units]
 *                         (row 0 input bias, row 1 recurrent bias), gates in z, r, h order.
 * RnnedgeZeroMaskedSteps  zeroes the masked time steps of a sequence (Keras 3 RNNs with
 *                         zero_output_for_mask, e.g. inside Bidirectional); passes the mask on.
 * RnnedgeMaskedGlobalAveragePooling1D  mean over the valid (unmasked) steps, like Keras.
 * RnnedgeRNNGuard         identity placed on the first input of an RNN. tfjs-layers 4.22's
 *                         executor (model.predict) shares one kwargs object between all layers
 *                         of a call: a mask or initialState set for one layer leaks into later
 *                         layers that have none (a decoder LSTM masked with the encoder's mask,
 *                         or "When inputs is an array, neither initialState or constants should
 *                         be provided"). The topological sort runs the first input's producer
 *                         right before the RNN, so this layer clears the stale initialState and
 *                         gives the RNN a fresh mask: the incoming one (maskMode "pass") or an
 *                         all-true one where Keras has no mask (maskMode "ones").
 */
(function (root, factory) {
  if (typeof module === 'object' && module.exports) {
    module.exports = factory;
  } else {
    root.rnnedgeRegisterLayers = factory;
  }
})(typeof self !== 'undefined' ? self : this, function register(tf) {
  if (tf.__rnnedgeLayers) return tf.__rnnedgeLayers;

  const GRU = tf.layers.gru({units: 1}).constructor;
  const GRUCell = tf.layers.gruCell({units: 1}).constructor;

  class RnnedgeGRUCellResetAfter extends GRUCell {
    constructor(args) {
      super(Object.assign({}, args, {resetAfter: false}));
      this.resetAfter = true;
    }
    build(inputShape) {
      if (Array.isArray(inputShape) && Array.isArray(inputShape[0])) inputShape = inputShape[0];
      const inputDim = inputShape[inputShape.length - 1];
      this.kernel = this.addWeight('kernel', [inputDim, this.units * 3], null,
          this.kernelInitializer, this.kernelRegularizer, true, this.kernelConstraint);
      this.recurrentKernel = this.addWeight('recurrent_kernel', [this.units, this.units * 3], null,
          this.recurrentInitializer, this.recurrentRegularizer, true, this.recurrentConstraint);
      this.bias = this.useBias ?
          this.addWeight('bias', [2, this.units * 3], null, this.biasInitializer,
                         this.biasRegularizer, true, this.biasConstraint) :
          null;
      this.built = true;
    }
    call(inputs, kwargs) {
      return tf.tidy(() => {
        const x = inputs[0];
        const hPrev = inputs[1];
        let mx = tf.matMul(x, this.kernel.read());
        let mh = tf.matMul(hPrev, this.recurrentKernel.read());
        if (this.useBias) {
          const [bIn, bRec] = tf.unstack(this.bias.read(), 0);
          mx = tf.add(mx, bIn);
          mh = tf.add(mh, bRec);
        }
        const [xz, xr, xh] = tf.split(mx, 3, -1);
        const [hz, hr, hh] = tf.split(mh, 3, -1);
        const z = this.recurrentActivation.apply(tf.add(xz, hz));
        const r = this.recurrentActivation.apply(tf.add(xr, hr));
        const cand = this.activation.apply(tf.add(xh, tf.mul(r, hh)));
        const h = tf.add(tf.mul(z, hPrev), tf.mul(tf.sub(1, z), cand));
        return [h, h];
      });
    }
    getConfig() {
      return Object.assign(super.getConfig(), {resetAfter: true});
    }
  }
  RnnedgeGRUCellResetAfter.className = 'RnnedgeGRUCellResetAfter';

  class RnnedgeGRUResetAfter extends GRU {
    constructor(args) {
      super(Object.assign({}, args, {resetAfter: false}));
      // replace the reset_after=false cell GRU made with the exact reset_after=true one
      this.cell = new RnnedgeGRUCellResetAfter(Object.assign({}, args));
    }
    getConfig() {
      return Object.assign(super.getConfig(), {resetAfter: true});
    }
  }
  RnnedgeGRUResetAfter.className = 'RnnedgeGRUResetAfter';

  function firstMask(mask) {
    return Array.isArray(mask) ? mask[0] : mask;
  }

  class RnnedgeZeroMaskedSteps extends tf.layers.Layer {
    constructor(args) {
      super(args || {});
      this.supportsMasking = true;
    }
    computeOutputShape(inputShape) {
      return inputShape;
    }
    computeMask(inputs, mask) {
      return firstMask(mask);
    }
    call(inputs, kwargs) {
      return tf.tidy(() => {
        const x = Array.isArray(inputs) ? inputs[0] : inputs;
        const mask = kwargs == null ? null : firstMask(kwargs['mask']);
        if (mask == null) return tf.mul(x, 1);
        return tf.mul(x, tf.expandDims(tf.cast(mask, x.dtype), -1));
      });
    }
  }
  RnnedgeZeroMaskedSteps.className = 'RnnedgeZeroMaskedSteps';

  class RnnedgeMaskedGlobalAveragePooling1D extends tf.layers.Layer {
    constructor(args) {
      super(args || {});
      this.supportsMasking = true;
    }
    computeOutputShape(inputShape) {
      return [inputShape[0], inputShape[2]];
    }
    computeMask(inputs, mask) {
      return null;
    }
    call(inputs, kwargs) {
      return tf.tidy(() => {
        const x = Array.isArray(inputs) ? inputs[0] : inputs;
        const mask = kwargs == null ? null : firstMask(kwargs['mask']);
        if (mask == null) return tf.mean(x, 1);
        const m = tf.expandDims(tf.cast(mask, x.dtype), -1);          // [b, t, 1]
        return tf.div(tf.sum(tf.mul(x, m), 1), tf.maximum(tf.sum(m, 1), 1e-7));
      });
    }
  }
  RnnedgeMaskedGlobalAveragePooling1D.className = 'RnnedgeMaskedGlobalAveragePooling1D';

  class RnnedgeRNNGuard extends tf.layers.Layer {
    constructor(args) {
      super(args || {});
      this.supportsMasking = true;
      this.maskMode = (args && args.maskMode) || 'pass';
    }
    apply(inputs, kwargs) {
      if (kwargs != null) delete kwargs['initialState'];
      return super.apply(inputs, kwargs);
    }
    computeOutputShape(inputShape) {
      return inputShape;
    }
    computeMask(inputs, mask) {
      const m = firstMask(mask);
      const x = Array.isArray(inputs) ? inputs[0] : inputs;
      if (this.maskMode !== 'ones' || !(x instanceof tf.Tensor)) return m;
      return tf.tidy(() => tf.cast(tf.ones(x.shape.slice(0, 2)), 'bool'));
    }
    call(inputs, kwargs) {
      const x = Array.isArray(inputs) ? inputs[0] : inputs;
      return tf.clone(x);
    }
    getConfig() {
      return Object.assign(super.getConfig(), {maskMode: this.maskMode});
    }
  }
  RnnedgeRNNGuard.className = 'RnnedgeRNNGuard';

  const classes = [RnnedgeRNNGuard, RnnedgeGRUCellResetAfter, RnnedgeGRUResetAfter, RnnedgeZeroMaskedSteps,
                   RnnedgeMaskedGlobalAveragePooling1D];
  classes.forEach(c => tf.serialization.registerClass(c));
  tf.__rnnedgeLayers = classes.map(c => c.className);
  return tf.__rnnedgeLayers;
});
