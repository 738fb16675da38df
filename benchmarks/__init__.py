"""rnnjax's benchmark harness: `python -m benchmarks.run --help`."""
