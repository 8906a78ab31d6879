"""Speed-up of each reduced-precision row over its backend family's FP32 row (pure: measurement dicts in).

A *family* is one runtime on one device: ONNX Runtime CPU, ONNX Runtime CUDA, TensorRT,
PyTorch (eager, compiled, CUDA graphs). A row whose precision is not FP32 is compared
with the FP32 row of its family on the same device, metric and batch size, by measured
images/s (``throughput_ips``): ``speedup`` > 1 means faster than FP32. Rows with no
such FP32 row (TensorRT engines are built FP16/INT8 only) get ``speedup`` None and the
reason.
"""

from __future__ import annotations

#: backend name prefix -> family (first match wins; the name itself otherwise).
FAMILY_PREFIXES = (("onnxruntime-cpu", "onnxruntime-cpu"), ("onnxruntime-cuda", "onnxruntime-cuda"),
                   ("tensorrt", "tensorrt"), ("eager", "pytorch"), ("compile", "pytorch"))
FP32 = "fp32"


def backend_family(name: str) -> str:
    return next((family for prefix, family in FAMILY_PREFIXES if name.startswith(prefix)), name)


def speedups(measurements: list[dict]) -> list[dict]:
    """One entry per reduced-precision row (backend, batch, metric), in row order."""
    baselines: dict[tuple, dict] = {}
    for row in measurements:
        if row.get("precision") == FP32:
            key = (backend_family(row["backend"]), row.get("device"), row["metric"], row["batch_size"])
            baselines.setdefault(key, row)  # the first FP32 row of a family (eager before compile)
    out = []
    for row in measurements:
        if row.get("precision") in (FP32, None):
            continue
        family = backend_family(row["backend"])
        base = baselines.get((family, row.get("device"), row["metric"], row["batch_size"]))
        entry = {"backend": row["backend"], "precision": row["precision"], "device": row.get("device"),
                 "metric": row["metric"], "batch_size": row["batch_size"], "family": family,
                 "throughput_ips": row.get("throughput_ips"), "baseline": None, "baseline_throughput_ips": None,
                 "speedup": None, "reason": None}
        rate, base_rate = row.get("throughput_ips"), (base or {}).get("throughput_ips")
        if base is None:
            entry["reason"] = f"no FP32 {family} row on {row.get('device')} at batch {row['batch_size']}"
        elif not rate or not base_rate:
            entry.update(baseline=base["backend"], reason="no throughput measured")
        else:
            entry.update(baseline=base["backend"], baseline_throughput_ips=base_rate, speedup=rate / base_rate)
        out.append(entry)
    return out


def speedup_index(entries: list[dict]) -> dict[tuple, dict]:
    """{(backend, batch, metric): entry}."""
    return {(e["backend"], e["batch_size"], e["metric"]): e for e in entries}


def fmt_speedup(entry: dict | None) -> str:
    if not entry or entry.get("speedup") is None:
        return "-"
    return f"{entry['speedup']:.2f}x"


def primary_metric(entries: list[dict], backend: str) -> str | None:
    """The metric a backend's sentence uses: GPU time where measured, else host time."""
    metrics = {e["metric"] for e in entries if e["backend"] == backend}
    return next((m for m in ("gpu", "host", "host_copy") if m in metrics), None)


def speedup_sentences(entries: list[dict], *, failed: set[tuple] = frozenset()) -> list[str]:
    """One sentence per reduced-precision backend; a row slower than its FP32 row is said in words.

    ``failed``: (backend, batch) pairs whose parity failed, named in the sentence.
    """
    lines = []
    for backend in dict.fromkeys(e["backend"] for e in entries):
        metric = primary_metric(entries, backend)
        rows = sorted((e for e in entries if e["backend"] == backend and e["metric"] == metric),
                      key=lambda e: e["batch_size"])
        compared = [e for e in rows if e["speedup"] is not None]
        precision = rows[0]["precision"].upper()
        if not compared:
            lines.append(f"{backend} ({precision}): no speed-up shown, {rows[0]['reason']}.")
            continue
        base = compared[0]["baseline"]
        at = ", ".join(f"{e['speedup']:.2f}x at batch {e['batch_size']}"
                       + (" (parity FAILED)" if (backend, e["batch_size"]) in failed else "") for e in compared)
        slower = [e for e in compared if e["speedup"] < 1.0]
        head = f"{backend} ({precision}) vs {base} (FP32), images/s, {metric} time: "
        if not slower:
            verdict = "faster at every batch size compared" if len(compared) > 1 else "faster"
            lines.append(f"{head}{verdict} ({at}).")
        else:
            where = ", ".join(str(e["batch_size"]) for e in slower)
            lines.append(f"{head}**slower than FP32 at batch {where}**: reduced precision does not pay there "
                         f"({at}).")
        missing = [e for e in rows if e["speedup"] is None]
        if missing:
            lines[-1] += f" Not compared at batch {', '.join(str(e['batch_size']) for e in missing)}: " \
                         f"{missing[0]['reason']}."
    return lines
