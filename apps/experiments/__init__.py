"""Sweeps (``python -m sast.experiments``): the grid over training settings and its rho-sweep preset.

- :mod:`apps.experiments.plan`: axes, their product, one RunSpec per training run;
- :mod:`apps.experiments.evaluation`: what is measured on every finished run;
- :mod:`apps.experiments.stats`: means with 95% intervals, paired differences, rank correlations;
- :mod:`apps.experiments.tables`: text tables and result files;
- :mod:`apps.experiments.executors`: where the runs execute (the process pool, or submitit jobs: a SLURM array);
- :mod:`apps.experiments.cli`: the command line.
"""

from apps.experiments.cli import PRESETS, main
from apps.experiments.plan import RunSpec, parse_axes, plan_runs, train_config
from apps.experiments.stats import mean_interval, paired, rank_correlations, summarise

__all__ = ["PRESETS", "RunSpec", "main", "mean_interval", "paired", "parse_axes", "plan_runs", "rank_correlations",
           "summarise", "train_config"]
