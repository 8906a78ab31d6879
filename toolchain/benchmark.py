"""Compatibility: the benchmark lives in :mod:`toolchain.bench` (timing, backends, harness, report)."""

from toolchain.bench import *  # noqa: F401,F403
from toolchain.bench import DEFAULT_BATCH_SIZES, parse_batch_sizes  # noqa: F401
