"""The benchmark: runners from the registry (:mod:`toolchain.backends`) timed side by side, each row
with a parity verdict.

Modules: :mod:`~toolchain.bench.timing` (statistics, timers, how long to time),
:mod:`~toolchain.bench.provenance` (the weights chain across the files),
:mod:`~toolchain.bench.harness` (the sweep: parity then timing per batch size),
:mod:`~toolchain.bench.sources` (``toolchain benchmark`` as a function),
:mod:`~toolchain.bench.speedup` (reduced precision over its family's FP32 row),
:mod:`~toolchain.bench.report` (terminal table, Markdown, plots).
"""
