"""formers' own CPU kernels for decoding (small-batch matrix-vector products), with torch fallbacks.

`small_batch_linear` and `linear_group` return None (or fall back to the modules) wherever the C++
kernels do not apply or could not be built, so callers never need to know whether they exist.
"""
from .linear import MAX_ROWS, kernels_available, linear_group, small_batch_int8_linear, small_batch_linear

__all__ = ["MAX_ROWS", "kernels_available", "linear_group", "small_batch_int8_linear", "small_batch_linear"]
