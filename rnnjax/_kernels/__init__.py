"""Sequence kernels: whole-sequence implementations that a cell may attach as `Cell.sequence`.

A kernel computes exactly what `lax.scan` over the cell's `step` computes, laid out for
speed on a backend (see `rnnjax.Scan(kernel=...)`). Kernels are not cells and do not
register; the cell file that uses one imports it.
"""
