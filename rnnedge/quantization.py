"""Alias of :mod:`rnnedge.quantize` (the lead's modules import ``rnnedge.quantization``; one module object)."""
import sys

import rnnedge.quantize as _impl

sys.modules[__name__] = _impl
