"""The benchmark: runners (:mod:`toolchain.runners`) timed side by side, each row with a parity verdict.

Modules: :mod:`~toolchain.bench.timing` (statistics, timers, how long to time),
:mod:`~toolchain.bench.backends` (which runners, and the weights chain),
:mod:`~toolchain.bench.harness` (the sweep: parity then timing per batch size),
:mod:`~toolchain.bench.sources` (``toolchain benchmark`` as a function),
:mod:`~toolchain.bench.speedup` (reduced precision over its family's FP32 row),
:mod:`~toolchain.bench.report` (terminal table, Markdown, plots).
"""

from toolchain.bench.backends import (BACKEND_NAMES, Candidate, batches_for, check_int8_targets, check_weights,
                                      int8_target_problem, make_backends, parse_backend_names, weights_identity,
                                      weights_mismatch)
from toolchain.bench.harness import BenchmarkResult, ParityPlan, make_parity_plan, parity_verdict, run_benchmark
from toolchain.bench.sources import benchmark_from_sources, benchmark_model, parity_inputs
from toolchain.bench.speedup import backend_family, speedup_sentences, speedups
from toolchain.bench.timing import (METRIC_TITLES, METRICS, CopyStagesTimer, CudaEventTimer, HostTimer, Measurement,
                                    TimingConfig, auto_window_iters, coefficient_of_variation, is_stable,
                                    latency_stats, measure, percentile, relative_spread, runner_metrics, throughput)
from toolchain.options import parse_batch_sizes

DEFAULT_BATCH_SIZES = (1, 8, 64, 256)
