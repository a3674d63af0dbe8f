"""Alias of :mod:`rnnedge.validate` (the lead's modules import ``rnnedge.validation``; one module object)."""
import sys

import rnnedge.validate as _impl

sys.modules[__name__] = _impl
