"""Adapters that put rnnjax cells inside other frameworks. Imported on demand, so the
core never imports a framework: `from rnnjax.adapters.flax import RNN`."""
