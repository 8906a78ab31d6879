"""The sweep: every candidate runner x batch size, each timed row with a parity verdict from the same run.

For each candidate that can run here: build its runner, activate it, and at each batch
size first compare its outputs (host arrays, :func:`toolchain.parity.run_parity`)
with the FP32 eager reference's on the same inputs (the validation split of the
checkpoint's dataset where known, else seeded inputs; reference computed once, on the
GPU with TF32 off where there is one), then time it (:mod:`toolchain.bench.timing`).
Every measurement row carries that ``parity`` verdict and a ``status``: ``ok``,
``parity-failed`` or ``weights-mismatch`` (built from other weights, timed only with
``--allow-mismatch``). Skips and errors are recorded with their reasons, never raised.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

from toolchain.backends import Candidate

from toolchain.bench.speedup import speedups
from toolchain.bench.timing import METRICS, TimingConfig, measure, runner_metrics
from toolchain.errors import ToolchainError


def batches_for(requested: Sequence[int], static_batch: int | None) -> tuple[list[int], str | None]:
    """The batch sizes a runner is timed at: a static-batch model only at its batch (and the note saying so)."""
    requested = [int(b) for b in requested]
    if static_batch is None or requested == [static_batch]:
        return requested, None
    return [static_batch], f"static batch {static_batch}: timed only at it (asked for {', '.join(map(str, requested))})"


@dataclass
class ParityPlan:
    """The inputs every candidate is compared on, and the reference's outputs for them."""

    inputs: object                 # float32 array (N, C, H, W)
    labels: object | None          # int array (N,) for real data, else None
    source: str
    reference_outputs: dict        # {"logits": array (N, classes)}
    reference: dict                # describe() of the reference runner
    min_samples: int = 32
    tolerances_file: object = None

    def samples_for(self, batch_size: int) -> int:
        """Inputs compared at ``batch_size``: at least one full batch and ``min_samples``."""
        return min(len(self.inputs), max(int(batch_size), self.min_samples))


def make_parity_plan(reference, inputs, *, labels=None, source: str, batch_size: int, min_samples: int = 32,
                     tolerances_file=None) -> ParityPlan:
    """Run the (active) reference runner once over ``inputs``."""
    from toolchain.runners.base import collect_outputs

    outputs = collect_outputs(reference, inputs, max(1, int(batch_size)))
    return ParityPlan(inputs=inputs, labels=labels, source=source, reference_outputs=outputs,
                      reference=reference.describe(), min_samples=min_samples, tolerances_file=tolerances_file)


def parity_verdict(plan: ParityPlan, runner, batch_size: int, precision: str) -> dict:
    """Compare ``runner`` (active) with the reference at ``batch_size``; a JSON-able verdict."""
    from toolchain.parity import load_tolerances, run_parity

    n = plan.samples_for(batch_size)
    ref = {name: value[:n] for name, value in plan.reference_outputs.items()}
    labels = None if plan.labels is None else plan.labels[:n]
    tolerances = load_tolerances(precision, file=plan.tolerances_file, outputs=tuple(ref))
    verdict = {"precision": precision, "batch_size": int(batch_size), "samples": n, "inputs": plan.source,
               "real_data": labels is not None}
    try:
        report = run_parity(None, runner, plan.inputs[:n], batch_sizes=[int(batch_size)], labels=labels,
                            tolerances=tolerances, precision=precision, reference_outputs=ref)
    except Exception as exc:
        return {**verdict, "passed": False, "status": "error", "error": _error_text(exc), "failures": []}
    comparison = report.comparisons[0] if report.comparisons else None
    metrics = comparison.metrics if comparison else {}
    keep = ("max_abs_error", "max_rel_error", "cosine_min", "top1_agreement", "reference_top1", "candidate_top1",
            "accuracy_drop")
    return {**verdict, "passed": report.passed, "status": "pass" if report.passed else "fail",
            "metrics": {k: metrics[k] for k in keep if k in metrics},
            "tolerances": {k: asdict(v) for k, v in tolerances.items()}, "failures": report.failures()}


@dataclass
class BenchmarkResult:
    environment: dict
    config: dict
    batch_sizes: list[int]
    backends: list[dict] = field(default_factory=list)   # describe() of every runner that ran
    measurements: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)    # {"backend", "batch_size" or None, "reason"}
    errors: list[dict] = field(default_factory=list)     # {"backend", "batch_size", "error"}
    model: dict = field(default_factory=dict)
    parity: dict = field(default_factory=dict)           # inputs, reference, weights checks
    environment_after: dict | None = None
    seconds: float = 0.0
    speedups: list[dict] = field(default_factory=list)   # reduced precision vs its family's FP32 row

    def to_dict(self) -> dict:
        return asdict(self)

    def rows(self, metric: str | None = None) -> list[dict]:
        return [m for m in self.measurements if metric is None or m["metric"] == metric]

    def metrics_present(self) -> list[str]:
        return [metric for metric in METRICS if any(m["metric"] == metric for m in self.measurements)]

    def parity_failures(self) -> list[dict]:
        """One row per (backend, batch) whose parity failed, mismatched weights excepted."""
        seen, out = set(), []
        for row in self.measurements:
            key = (row["backend"], row["batch_size"])
            if row.get("status") == "parity-failed" and key not in seen:
                seen.add(key)
                out.append(row)
        return out


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, ToolchainError):
        return exc.one_line()
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first}"[:500]


def _settings() -> dict:
    import torch

    out = {"torch_threads": torch.get_num_threads(), "torch_interop_threads": torch.get_num_interop_threads()}
    if torch.cuda.is_available():
        out.update({"cudnn_benchmark": torch.backends.cudnn.benchmark,
                    "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
                    "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32})
    return out


def run_benchmark(candidates: Sequence[Candidate], batch_sizes: Sequence[int], config: TimingConfig, *,
                  parity: ParityPlan | None = None, environment: dict | None = None, model_info: dict | None = None,
                  log: Callable[[str], None] | None = None) -> BenchmarkResult:
    """Check and time every available candidate at every batch size (see the module docstring)."""
    from toolchain.environment import capture_environment, gpu_state

    config.validate()
    if not batch_sizes or any(int(b) < 1 for b in batch_sizes):
        raise ToolchainError("batch sizes must be positive integers")
    log = log or (lambda message: None)
    started = time.perf_counter()
    result = BenchmarkResult(environment=environment or capture_environment(),
                             config={**asdict(config), "settings": _settings()},
                             batch_sizes=[int(b) for b in batch_sizes], model=model_info or {})
    if parity is not None:
        result.parity = {"inputs": parity.source, "samples": int(len(parity.inputs)),
                         "real_data": parity.labels is not None, "min_samples_per_batch": parity.min_samples,
                         "reference": parity.reference}
    for candidate in candidates:
        if candidate.unavailable:
            result.skipped.append({"backend": candidate.name, "batch_size": None, "reason": candidate.unavailable})
            log(f"skip {candidate.name}: {candidate.unavailable}")
            continue
        _run_candidate(candidate, result, config, parity, log)
    result.environment_after = gpu_state() if result.environment.get("cuda_available") else None
    result.speedups = speedups(result.measurements)
    result.seconds = time.perf_counter() - started
    return result


def _run_candidate(candidate: Candidate, result: BenchmarkResult, config: TimingConfig, parity, log) -> None:
    """Activate, check and time one candidate into ``result``; always deactivates.

    A missing dependency found while loading (MissingDependencyError) means it cannot run here:
    skipped, with the reason. Any other failure to load is an error (the command then fails),
    and so is anything later, per batch size, recorded while the sweep goes on.
    """
    from toolchain.errors import MissingDependencyError

    try:
        runner = candidate.make()
        runner.activate()
    except MissingDependencyError as exc:
        result.skipped.append({"backend": candidate.name, "batch_size": None, "reason": _error_text(exc)})
        log(f"skip {candidate.name}: {_error_text(exc)}")
        return
    except Exception as exc:
        result.errors.append({"backend": candidate.name, "batch_size": None, "error": f"load: {_error_text(exc)}"})
        log(f"error {candidate.name}: {_error_text(exc)}")
        return
    ran = False
    try:
        batches, note = batches_for(result.batch_sizes, runner.static_batch)
        if note:
            result.skipped.append({"backend": candidate.name, "batch_size": None, "reason": note})
        for batch in batches:
            limit = runner.max_batch
            if limit is not None and batch > limit:
                result.skipped.append({"backend": candidate.name, "batch_size": batch,
                                       "reason": f"batch {batch} exceeds the engine's profile maximum {limit}"})
                continue
            verdict = None
            if parity is not None:
                log(f"parity {candidate.name} batch {batch}")
                verdict = parity_verdict(parity, runner, batch, candidate.precision)
                if candidate.mismatch:
                    verdict["weights"] = candidate.mismatch
            status = "weights-mismatch" if candidate.mismatch else \
                "parity-failed" if verdict is not None and not verdict["passed"] else "ok"
            try:
                runner.prepare(batch)
            except Exception as exc:
                result.errors.append({"backend": candidate.name, "batch_size": batch, "error": _error_text(exc)})
                log(f"error {candidate.name} batch {batch}: {_error_text(exc)}")
                continue
            extra = {}
            from toolchain.trt.runtime import profile_note

            profile = profile_note(batch, getattr(runner, "profile", None))
            if profile:
                extra["profile_note"] = profile
            for metric, step, timer in runner_metrics(runner):
                log(f"time {candidate.name} batch {batch} {metric}")
                try:
                    measured = measure(step, timer, config)
                except Exception as exc:
                    result.errors.append({"backend": candidate.name, "batch_size": batch, "metric": metric,
                                          "error": _error_text(exc)})
                    log(f"error {candidate.name} batch {batch} {metric}: {_error_text(exc)}")
                    break
                ran = True
                result.measurements.append({"backend": candidate.name, "device": runner.timing_device,
                                            "precision": candidate.precision, "batch_size": batch, "metric": metric,
                                            "status": status, "parity": verdict, **extra,
                                            "input_bytes": runner.io.nbytes, **measured.stats(batch)})
        if ran:
            result.backends.append(runner.describe())
    finally:
        try:
            runner.deactivate()
        except Exception as exc:  # freeing failed: say so, keep the results
            result.errors.append({"backend": candidate.name, "batch_size": None, "error": f"close: {_error_text(exc)}"})
