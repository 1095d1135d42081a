"""Shared test set-up: hypothesis profiles and small helpers."""

from __future__ import annotations

import os

# One thread: tiny float64 models run far faster without thread hand-offs on a shared 2-core
# machine, and subprocesses started by tests inherit the same setting (bit-for-bit comparisons
# between a process and a subprocess need equal thread counts).
os.environ["OMP_NUM_THREADS"] = "1"

import torch  # noqa: E402
from hypothesis import HealthCheck, settings

# dev: quick local runs; ci: the default suite (bounded time on 2 cores); slow: more examples.
settings.register_profile("dev", max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", max_examples=25, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("slow", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

torch.set_num_threads(1)
