"""rnnjax experiments: one trainer (train.py), configs as code (configs/), tasks, sweeps and studies."""
