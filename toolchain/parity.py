"""Accuracy parity: a candidate backend against eager PyTorch on the same inputs.

Tolerances are data (:class:`Tolerances`, one default per precision, per-output
overrides). :func:`compare_outputs` measures everything about one output and runs
every check; :func:`run_parity` feeds the same batches to both runners at each
batch size and collects the comparisons into a :class:`ParityReport`, whose
:meth:`~ParityReport.raise_if_failed` raises :class:`ParityError` naming every
failed check, after all of them ran.

Checks per (batch size, output):
  ``finite``          the candidate has no NaN/Inf (where the reference has none)
  ``allclose``        every element satisfies |cand - ref| <= atol + rtol * |ref| + range_atol * range(ref)
  ``cosine``          per-sample cosine similarity, minimum >= min_cosine
  ``top1_agreement``  fraction of samples with the same argmax >= min_top1_agreement
  ``accuracy_drop``   reference top-1 accuracy - candidate's <= max_accuracy_drop (labels only)
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from toolchain.checks import Check
from toolchain.errors import ToolchainError


class ParityError(ToolchainError):
    """A candidate backend's outputs differ from the reference beyond tolerance."""

    exit_code = 4


@dataclass(frozen=True)
class Tolerances:
    atol: float
    rtol: float
    min_cosine: float
    min_top1_agreement: float
    max_accuracy_drop: float
    # allclose also allows range_atol * (max - min of the reference output): an INT8 error scales
    # with the quantization step, i.e. with the range of the values, not with each value.
    range_atol: float = 0.0

    def replace(self, **changes) -> "Tolerances":
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ToolchainError(f"unknown tolerance field(s) {', '.join(sorted(unknown))}",
                                 hint=f"known: {', '.join(f.name for f in dataclasses.fields(self))}")
        for key, value in changes.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) \
                    or value < 0:
                raise ToolchainError(f"tolerance {key} must be a non-negative number, got {value!r}")
        return dataclasses.replace(self, **{k: float(v) for k, v in changes.items()})


#: Defaults per candidate precision. FP32: the issue's acceptance (max abs logit error
#: < 1e-4, >= 99.9 % top-1 agreement). FP16: FP16 weights/activations (~1e-3
#: relative rounding per layer) against the FP32 reference; its absolute error grows with the
#: logits' scale, so it is 0.5 % of their range (a fixed 2e-2 is ~8 % of a random-weight
#: model's largest logit, 0.1 % of a trained one's). INT8: the issue's acceptance
#: (>= 99 % top-1 agreement, <= 1 point accuracy drop); logits within 5 % of their range
#: (8-bit steps are ~0.8 % of a tensor's range per layer; measured ~0.5-1 % on digits).
DEFAULT_TOLERANCES = {
    "fp32": Tolerances(atol=1e-4, rtol=0.0, min_cosine=0.99999, min_top1_agreement=0.999, max_accuracy_drop=0.001),
    "fp16": Tolerances(atol=0.0, rtol=2e-2, min_cosine=0.999, min_top1_agreement=0.99, max_accuracy_drop=0.01,
                       range_atol=5e-3),
    "int8": Tolerances(atol=0.0, rtol=0.0, min_cosine=0.99, min_top1_agreement=0.99, max_accuracy_drop=0.01,
                       range_atol=0.05),
}


def load_tolerances(precision: str, *, file=None, outputs=("logits",), **overrides) -> dict[str, Tolerances]:
    """Tolerances per output: the precision's default, then ``file``, then explicit overrides.

    The JSON file holds tolerance fields at the top level (all outputs) and/or
    ``{"outputs": {"logits": {...}}}`` per output.
    """
    if precision not in DEFAULT_TOLERANCES:
        raise ToolchainError(f"unknown precision {precision!r}", hint=f"choose {', '.join(DEFAULT_TOLERANCES)}")
    base = DEFAULT_TOLERANCES[precision]
    per_output: dict = {}
    if file is not None:
        from toolchain.io import require_file

        path = require_file(file, "tolerances file")
        try:
            data = json.loads(Path(path).read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ToolchainError(f"tolerances file {path} is not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise ToolchainError(f"tolerances file {path} must hold a JSON object")
        per_output = data.pop("outputs", {}) or {}
        base = base.replace(**data)
    explicit = {key: value for key, value in overrides.items() if value is not None}
    result = {}
    for name in outputs:
        tol = base.replace(**per_output.get(name, {}))
        result[name] = tol.replace(**explicit)
    unknown = set(per_output) - set(outputs)
    if unknown:
        raise ToolchainError(f"tolerances given for unknown output(s) {', '.join(sorted(unknown))}",
                             hint=f"outputs: {', '.join(outputs)}")
    return result


@dataclass
class OutputComparison:
    output: str
    batch_size: int
    samples: int
    metrics: dict
    checks: list[Check]

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    @property
    def failed(self) -> list[Check]:
        return [check for check in self.checks if not check.passed]

    def to_dict(self) -> dict:
        return {"output": self.output, "batch_size": self.batch_size, "samples": self.samples,
                "passed": self.passed, "metrics": self.metrics, "checks": [c.to_dict() for c in self.checks]}


def _quantiles(values, qs=(0.5, 0.9, 0.99)) -> dict:
    import numpy as np

    if values.size == 0:
        return {f"p{int(q * 100)}": 0.0 for q in qs}
    return {f"p{int(q * 100)}": float(np.quantile(values, q)) for q in qs}


def _topk_hits(logits, labels, k: int):
    import numpy as np

    k = min(k, logits.shape[1])
    top = np.argpartition(-logits, k - 1, axis=1)[:, :k]
    return (top == labels[:, None]).any(axis=1)


def compare_outputs(reference, candidate, tolerances: Tolerances, *, name: str = "logits", batch_size: int = 0,
                    labels=None, count_top1: bool | None = None) -> OutputComparison:
    """Measure ``candidate`` against ``reference`` (same shape) and run every check.

    Top-1 agreement is measured always but checked only on real data (``count_top1``,
    default: when labels are given): on seeded random inputs a random-weight model's
    top-2 logits are often within rounding of each other, so a flip says nothing.
    """
    import numpy as np

    ref = np.asarray(reference, dtype=np.float64)
    cand = np.asarray(candidate, dtype=np.float64)
    if ref.shape != cand.shape:
        check = Check("shape", False, None, None, f"reference {ref.shape} vs candidate {cand.shape}")
        return OutputComparison(name, batch_size, int(ref.shape[0]) if ref.ndim else 1,
                                {"reference_shape": list(ref.shape), "candidate_shape": list(cand.shape)}, [check])
    samples = int(ref.shape[0]) if ref.ndim else 1
    checks = []
    ref_finite = np.isfinite(ref)
    cand_finite = np.isfinite(cand)
    bad = int((~cand_finite & ref_finite).sum())
    metrics = {"candidate_nan": int(np.isnan(cand).sum()), "candidate_inf": int(np.isinf(cand).sum()),
               "reference_nonfinite": int((~ref_finite).sum())}
    checks.append(Check("finite", bad == 0, float(bad), 0.0,
                        f"{metrics['candidate_nan']} NaN, {metrics['candidate_inf']} Inf in the candidate"))

    both = ref_finite & cand_finite
    diff = np.abs(cand - ref)[both]
    mag = np.abs(ref)[both]
    rel = diff / np.maximum(mag, np.finfo(np.float32).tiny)
    metrics.update({
        "max_abs_error": float(diff.max(initial=0.0)), "mean_abs_error": float(diff.mean()) if diff.size else 0.0,
        "max_rel_error": float(rel.max(initial=0.0)), "mean_rel_error": float(rel.mean()) if rel.size else 0.0,
        "abs_error_quantiles": _quantiles(diff), "rel_error_quantiles": _quantiles(rel),
        "reference_max_abs": float(mag.max(initial=0.0)),
    })
    span = float(ref[both].max() - ref[both].min()) if diff.size else 0.0
    metrics["reference_range"] = span
    allowed = tolerances.atol + tolerances.rtol * mag + tolerances.range_atol * span
    over = diff > allowed
    worst = float((diff - allowed).max(initial=-math.inf)) if diff.size else 0.0
    checks.append(Check("allclose", not over.any() and bad == 0, float(over.sum()), 0.0,
                        f"{int(over.sum())} of {diff.size} elements exceed atol={tolerances.atol:g} + "
                        f"rtol={tolerances.rtol:g}*|ref|"
                        + (f" + range_atol={tolerances.range_atol:g}*range ({span:.3g})"
                           if tolerances.range_atol else "")
                        + f" (max abs error {metrics['max_abs_error']:.3g}"
                        + (f", worst excess {worst:.3g})" if over.any() else ")")))

    flat_ref = np.where(both, ref, 0.0).reshape(samples, -1)
    flat_cand = np.where(both, cand, 0.0).reshape(samples, -1)
    norms = np.linalg.norm(flat_ref, axis=1) * np.linalg.norm(flat_cand, axis=1)
    dots = (flat_ref * flat_cand).sum(axis=1)
    # Two all-zero rows are identical; one zero row against a non-zero one is not.
    same_zero = (np.linalg.norm(flat_ref, axis=1) == 0) & (np.linalg.norm(flat_cand, axis=1) == 0)
    cosine = np.where(norms > 0, dots / np.where(norms > 0, norms, 1.0), np.where(same_zero, 1.0, 0.0))
    metrics["cosine_min"] = float(cosine.min()) if samples else 1.0
    metrics["cosine_mean"] = float(cosine.mean()) if samples else 1.0
    checks.append(Check("cosine", metrics["cosine_min"] >= tolerances.min_cosine, metrics["cosine_min"],
                        tolerances.min_cosine, "minimum per-sample cosine similarity"))

    if ref.ndim == 2 and ref.shape[1] > 1:
        ref_top1 = ref.argmax(axis=1)
        cand_logits = np.where(np.isfinite(cand), cand, -np.inf)
        cand_top1 = cand_logits.argmax(axis=1)
        top1 = float((ref_top1 == cand_top1).mean()) if samples else 1.0
        ref_top5 = np.argsort(-ref, axis=1)[:, :5]
        cand_top5 = np.argsort(-cand_logits, axis=1)[:, :5]
        top5 = float(np.mean([set(a) == set(b) for a, b in zip(ref_top5, cand_top5)])) if samples else 1.0
        metrics.update({"top1_agreement": top1, "top5_agreement": top5,
                        "top1_disagreements": int((ref_top1 != cand_top1).sum())})
        if count_top1 if count_top1 is not None else labels is not None:
            checks.append(Check("top1_agreement", top1 >= tolerances.min_top1_agreement, top1,
                                tolerances.min_top1_agreement,
                                f"{metrics['top1_disagreements']} of {samples} samples change their top-1 class"))
        if labels is not None:
            labels = np.asarray(labels).reshape(-1)
            ref_acc = float((ref_top1 == labels).mean())
            cand_acc = float((cand_top1 == labels).mean())
            metrics.update({"reference_top1": ref_acc, "candidate_top1": cand_acc,
                            "reference_top5": float(_topk_hits(ref, labels, 5).mean()),
                            "candidate_top5": float(_topk_hits(cand_logits, labels, 5).mean()),
                            "accuracy_drop": ref_acc - cand_acc})
            checks.append(Check("accuracy_drop", ref_acc - cand_acc <= tolerances.max_accuracy_drop + 1e-12,
                                ref_acc - cand_acc, tolerances.max_accuracy_drop,
                                f"top-1 accuracy {ref_acc:.4f} (reference) vs {cand_acc:.4f} (candidate)"))
    return OutputComparison(name, batch_size, samples, metrics, checks)


@dataclass
class ParityReport:
    reference: str
    candidate: str
    precision: str
    tolerances: dict[str, Tolerances]
    comparisons: list[OutputComparison] = field(default_factory=list)
    inputs: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # e.g. tolerances that differ from the file's precision

    @property
    def passed(self) -> bool:
        return bool(self.comparisons) and all(c.passed for c in self.comparisons)

    def failures(self) -> list[str]:
        return [f"{c.output}@batch{c.batch_size}: {check.name} ({check.detail})"
                for c in self.comparisons for check in c.failed]

    def to_dict(self) -> dict:
        return {"passed": self.passed, "reference": self.reference, "candidate": self.candidate,
                "precision": self.precision, "inputs": self.inputs, "notes": self.notes,
                "tolerances": {name: dataclasses.asdict(tol) for name, tol in self.tolerances.items()},
                "comparisons": [c.to_dict() for c in self.comparisons], "failures": self.failures()}

    def raise_if_failed(self, *, report=None) -> None:
        """``report``: where the full report was written (None: it was not; say how to get one)."""
        if not self.comparisons:
            raise ParityError("no outputs were compared", hint="give some inputs (--dataset or --random)")
        failures = self.failures()
        if failures:
            raise ParityError(f"{self.candidate} differs from {self.reference}: {len(failures)} failed check(s): "
                              + "; ".join(failures),
                              hint=f"every metric is in {report}" if report else
                              "rerun with --report FILE to keep every metric")

    def table(self):
        """Metrics and checks as rows, one column per (output, batch size): fits narrow terminals."""
        from rich.table import Table

        table = Table(title=f"parity: {self.candidate} vs {self.reference} ({self.precision})")
        table.add_column("metric")
        for comp in self.comparisons:
            table.add_column(f"{comp.output} @ batch {comp.batch_size}", justify="right")
        rows = [("max abs error", "max_abs_error", ".3g"), ("mean abs error", "mean_abs_error", ".3g"),
                ("abs error p50/p90/p99", "abs_error_quantiles", None), ("max rel error", "max_rel_error", ".3g"),
                ("min cosine", "cosine_min", ".7f"), ("top-1 agreement", "top1_agreement", ".4f"),
                ("top-5 agreement", "top5_agreement", ".4f"), ("reference top-1", "reference_top1", ".4f"),
                ("candidate top-1", "candidate_top1", ".4f"), ("NaN / Inf", None, None)]
        for label, key, fmt in rows:
            cells = []
            for comp in self.comparisons:
                m = comp.metrics
                if key is None:
                    cells.append(f"{m.get('candidate_nan', '-')} / {m.get('candidate_inf', '-')}")
                elif key == "abs_error_quantiles":
                    q = m.get(key)
                    cells.append("/".join(format(v, ".2g") for v in q.values()) if q else "-")
                else:
                    cells.append(format(m[key], fmt) if key in m else "-")
            if any(cell != "-" for cell in cells):
                table.add_row(label, *cells)
        names = list(dict.fromkeys(check.name for comp in self.comparisons for check in comp.checks))
        for name in names:
            cells = []
            for comp in self.comparisons:
                check = next((c for c in comp.checks if c.name == name), None)
                cells.append("-" if check is None else "[green]pass[/]" if check.passed else "[bold red]FAIL[/]")
            table.add_row(f"check {name}", *cells)
        return table


def compare_runs(reference_outputs: dict, candidate_runs: dict[int, dict], *, tolerances: dict[str, Tolerances],
                 precision: str, reference: str, candidate: str, inputs_info: dict, labels=None,
                 count_top1: bool | None = None) -> ParityReport:
    """The compare step: ``candidate_runs`` ({batch size: {output: array over all inputs}}) against
    ``reference_outputs`` ({output: array}), every output at every batch size, every check."""
    report = ParityReport(reference=reference, candidate=candidate, precision=precision, tolerances=dict(tolerances),
                          inputs=inputs_info)
    for batch_size, outputs in candidate_runs.items():
        for name in sorted(reference_outputs):
            if name not in outputs:
                report.comparisons.append(OutputComparison(name, batch_size, inputs_info.get("samples", 0), {}, [
                    Check("present", False, None, None, f"{candidate} has no output {name!r}")]))
                continue
            tol = tolerances.get(name) or next(iter(tolerances.values()))
            report.comparisons.append(compare_outputs(reference_outputs[name], outputs[name], tol, name=name,
                                                      batch_size=batch_size, labels=labels, count_top1=count_top1))
    return report


def check_batches(candidate, batch_sizes) -> None:
    """The batch sizes ``candidate`` (an active runner) can run: inside its profile, its static batch."""
    if not batch_sizes:
        raise ToolchainError("no batch sizes to compare at", hint="pass --batch-sizes, e.g. 1,32")
    max_batch = candidate.max_batch  # e.g. a TensorRT profile's largest batch
    too_big = [b for b in batch_sizes if max_batch is not None and b > max_batch]
    if too_big:
        raise ToolchainError(f"{candidate.name} takes at most batch {max_batch}, not {too_big[0]}",
                             hint=f"pass --batch-sizes with sizes <= {max_batch} or rebuild with a larger profile")
    static = candidate.static_batch
    wrong = [b for b in batch_sizes if static is not None and b != static]
    if wrong:
        raise ToolchainError(f"{candidate.name} takes only batch {static}, not {wrong[0]}",
                             hint=f"pass --batch-sizes {static} or export with a dynamic batch")


def run_parity(reference, candidate, inputs, *, batch_sizes=(1, 32), labels=None,
               tolerances: dict[str, Tolerances] | None = None, precision: str = "fp32",
               reference_outputs: dict | None = None, count_top1: bool | None = None) -> ParityReport:
    """Run (both active runners) then compare: the reference once, at the largest batch size, the
    candidate at each batch size (:func:`toolchain.runners.base.collect_outputs`), then
    :func:`compare_runs`. ``reference_outputs`` ({output: array over all inputs}) stands in for
    running the reference (the benchmark computes them once for every backend it times).

    The reference runs once because it is what the candidate must match at every batch size
    (eager PyTorch is batch-independent up to FP32 rounding, far below any tolerance), and
    running it per batch size would double the cost of a CPU parity run.
    """
    from toolchain.runners.base import collect_outputs

    tolerances = dict(tolerances or {"logits": DEFAULT_TOLERANCES[precision]})
    check_batches(candidate, batch_sizes)
    if reference_outputs is None:
        reference_outputs = collect_outputs(reference, inputs, max(batch_sizes))
    runs = {int(b): collect_outputs(candidate, inputs, b) for b in batch_sizes}
    info = {"samples": int(len(inputs)), "shape": list(inputs.shape[1:]), "batch_sizes": list(batch_sizes),
            "labels": labels is not None}
    return compare_runs(reference_outputs, runs, tolerances=tolerances, precision=precision,
                        reference=getattr(reference, "name", "reference"), candidate=candidate.name,
                        inputs_info=info, labels=labels, count_top1=count_top1)
