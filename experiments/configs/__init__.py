"""One module per experiment: `Config` (a dataclass) and `SMOKE` (overrides for a seconds-long run)."""
