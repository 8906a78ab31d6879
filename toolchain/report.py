"""Reports: parity tables and the pipeline's REPORT.md; benchmark reports live in :mod:`toolchain.bench.report`.

Everything here reads plain dicts (``ParityReport.to_dict()``, the pipeline's step
records), so a report can be regenerated from the JSON files alone. Every file goes
through :mod:`toolchain.io` (atomic, no overwrite without ``force``).
"""

from __future__ import annotations

from toolchain.bench.report import BENCHMARK_FILES, benchmark_markdown, environment_markdown, md_escape

# ---------------------------------------------------------------------- parity and pipeline


def parity_markdown(reports: dict[str, dict]) -> str:
    """One table over several parity reports (``ParityReport.to_dict()``), one row per batch size."""
    lines = ["| check | precision | batch | samples | max abs err | min cosine | top-1 agreement | "
             "reference top-1 | candidate top-1 | result |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for name, report in reports.items():
        for comp in report.get("comparisons", []):
            m = comp.get("metrics", {})

            def num(key, fmt):
                return format(m[key], fmt) if key in m else "-"
            lines.append(f"| {name} | {report.get('precision')} | {comp['batch_size']} | {comp['samples']} | "
                         f"{num('max_abs_error', '.3g')} | {num('cosine_min', '.6f')} | "
                         f"{num('top1_agreement', '.4f')} | {num('reference_top1', '.4f')} | "
                         f"{num('candidate_top1', '.4f')} | {'pass' if comp.get('passed') else 'FAIL'} |")
    return "\n".join(lines)


def skip_causes(steps: list[dict]) -> dict[str, list[str]]:
    """{first cause: [skipped steps it applies to]}, in step order (a dependent's cause is its root's)."""
    causes: dict[str, list[str]] = {}
    for step in steps:
        if step["status"] == "skipped":
            details = step.get("details") or {}
            cause = details.get("root_reason") or details.get("skip_cause") or step.get("reason") or "skipped"
            causes.setdefault(cause, []).append(step["name"])
    return causes


STATUS_MARK = {"ran": "ran", "skipped": "skipped", "failed": "**FAILED**"}


def engines_markdown(steps: list[dict]) -> list[str]:
    """The "Engines" section: every engine a step built, from its manifest (file, size, precision, LRN,
    builder and targets, layer counts by type, build time, and whether it was loaded here)."""
    built = [s for s in steps if s["name"].startswith("engine-build") and s["status"] == "ran"
             and isinstance((s.get("details") or {}).get("manifest"), dict)]
    out = ["## Engines", ""]
    if not built:
        return out + ["No engine was built.", ""]
    out += ["| engine | MB | precision | LRN | builder | targets | layers | build s | loaded here |",
            "|---|---:|---|---|---|---|---|---:|---|"]
    notes, unloaded = [], {}
    for step in built:
        m = step["details"]["manifest"]
        env, build, layers = m.get("environment", {}), m.get("build", {}), m.get("layers", {})
        flavour = "TensorRT-RTX" if env.get("flavour") == "tensorrt-rtx" else "TensorRT"
        targets = build.get("targets")
        targets = ", ".join(targets) if isinstance(targets, list) else (targets or "")
        by_type = ", ".join(f"{n} {t}" for t, n in (layers.get("by_type") or {}).items())
        lrn = build.get("lrn", "")
        if lrn == "plugin":
            lrn = f"plugin ({len(layers.get('network_plugin_layers') or [])} layers)"
        loaded = m.get("loaded") or {"loaded": True}
        out.append(f"| `{m['engine']['file']}` | {m['engine']['bytes'] / 1e6:.1f} | {build.get('precision')} | {lrn} | "
                   f"{flavour} {env.get('tensorrt')} | {md_escape(targets)} | {layers.get('network_layers')}: "
                   f"{md_escape(by_type)} | {build.get('seconds', 0):.1f} | {'yes' if loaded.get('loaded') else 'no'} |")
        if step["details"].get("lrn_fallback"):
            notes.append(f"- `{m['engine']['file']}`: {md_escape(step['details']['lrn_fallback'])}")
        if not loaded.get("loaded") and loaded.get("reason"):
            unloaded.setdefault(loaded["reason"], []).append(f"`{m['engine']['file']}`")
    notes += [f"- {', '.join(files)} not loaded here: {md_escape(reason)}" for reason, files in unloaded.items()]
    return out + [""] + notes + ([""] if notes else [])


def pipeline_markdown(pipeline: dict, *, benchmark: dict | None = None, benchmark_dir: str | None = None) -> str:
    """REPORT.md of a pipeline run: steps (status, reason, command), training, parity, benchmark."""
    steps = pipeline["steps"]
    config = pipeline.get("config", {})
    failed = [s for s in steps if s["status"] == "failed"]
    out = [f"# Pipeline report: {config.get('variant')} on {config.get('dataset')}", "",
           f"Run folder `{pipeline.get('out_dir')}`, started {pipeline.get('started_at')}, "
           f"{pipeline.get('seconds', 0):.0f} s. "
           + (f"**{len(failed)} step(s) failed.**" if failed else "No step failed.")
           + f" {sum(s['status'] == 'ran' for s in steps)} ran, {sum(s['status'] == 'skipped' for s in steps)} "
             "skipped.", ""]
    env = pipeline.get("environment")
    if env:
        out += ["## Environment", "", environment_markdown(env), ""]
    causes = skip_causes(steps)
    label = {name: f"S{i}" for i, (_, names) in enumerate(causes.items(), 1) for name in names}
    out += ["## Steps", "", "| # | step | status | seconds | details |", "|---:|---|---|---:|---|"]
    for i, step in enumerate(steps, 1):
        detail = step.get("summary") or ""
        if step["status"] == "skipped":
            via = step["reason"].split(", which", 1)[0] if (step.get("details") or {}).get("root_reason") else ""
            detail = f"skipped ({label[step['name']]}{': ' + via if via else ''})"
        elif step["status"] == "failed":
            detail = f"error: {step.get('error')}"
        out.append(f"| {i} | {step['name']} | {STATUS_MARK.get(step['status'], step['status'])} | "
                   f"{step.get('seconds', 0):.1f} | {md_escape(detail)} |")
    if causes:  # each reason once, with the steps it applies to
        out += ["", "Skip reasons:", ""]
        out += [f"- **S{i}** ({', '.join(names)}): {md_escape(cause)}" for i, (cause, names)
                in enumerate(causes.items(), 1)]
    out += ["", "Each step's equivalent command (run from the repository root):", "", "```sh"]
    for step in steps:
        if step.get("command"):
            if step["status"] == "skipped":
                out.append(f"# skipped ({label[step['name']]}): {step['name']}")
            elif step["status"] == "failed":
                out.append(f"# failed: {step['name']} ({step.get('error')})")
            out.append(step["command"])
    out += ["```", ""]

    quantize = next((s for s in steps if s["name"] == "quantize-int8" and s["status"] == "ran"), None)
    feeds = ((quantize or {}).get("details") or {}).get("feeds") or []
    if feeds:  # two INT8 files from one calibration: say which fed which step
        out += ["## INT8 files", "", "One calibration, one Q/DQ placement per runtime; each file feeds only the "
                "steps of the runtime it was made for:", "", "| file | quantized for | feeds |", "|---|---|---|"]
        out += [f"| `{md_escape(f['file'])}` | {f['target']} | {md_escape(', '.join(f['steps']))} |" for f in feeds]
        out.append("")

    train = next((s for s in steps if s["name"] == "train" and s["status"] == "ran"), None)
    if train:
        metrics = train.get("details", {}).get("metrics", {})
        out += ["## Training", ""]
        keys = [("val_top1", "validation top-1", ".4f"), ("val_top5", "validation top-5", ".4f"),
                ("val_loss", "validation loss", ".4f"), ("train_top1", "training top-1", ".4f"),
                ("epoch", "best epoch", "d"), ("train_seconds", "training seconds", ".1f")]
        out += ["| metric | value |", "|---|---:|"]
        out += [f"| {label} | {format(metrics[key], fmt)} |" for key, label, fmt in keys if key in metrics]
        history = train.get("details", {}).get("history") or []
        if history:
            out += ["", "| epoch | train loss | train top-1 | val loss | val top-1 | lr | s |",
                    "|---:|---:|---:|---:|---:|---:|---:|"]
            for row in history:
                out.append(f"| {row['epoch']} | {row['train']['loss']:.4f} | {row['train']['top1']:.4f} | "
                           f"{row['val']['loss']:.4f} | {row['val']['top1']:.4f} | {row['lr']:.0e} | "
                           f"{row['seconds']:.1f} |")
        out.append("")

    out += engines_markdown(steps)

    parity = {s["name"]: s["details"]["report"] for s in steps
              if s["name"].startswith("parity") and s["status"] in ("ran", "failed")
              and isinstance(s.get("details", {}).get("report"), dict)}
    out += ["## Parity", ""]
    if parity:
        sources = {s["name"]: s["details"].get("inputs") for s in steps if s["name"] in parity}
        out.append("Inputs: " + "; ".join(f"{name}: {src}" for name, src in sources.items() if src) + ".")
        out += ["", parity_markdown(parity), ""]
        failures = [f for report in parity.values() for f in report.get("failures", [])]
        if failures:
            out += ["Failed checks:", ""] + [f"- {md_escape(f)}" for f in failures] + [""]
    else:
        out += ["No parity check ran.", ""]

    out += ["## Benchmark", ""]
    if benchmark:
        prefix = f"{benchmark_dir.rstrip('/')}/" if benchmark_dir else ""
        plots = {name: prefix + BENCHMARK_FILES[name] for name in ("latency", "throughput")}
        body = benchmark_markdown(benchmark, plots=plots, heading="##")
        # Drop the benchmark's own title and environment (already above).
        lines = body.splitlines()
        keep, skip = [], False
        for line in lines[2:]:
            if line.startswith("### Environment"):
                skip = True
                continue
            if skip and line.startswith("### "):
                skip = False
            if not skip:
                keep.append(line)
        out += keep
        out += ["", f"Full results: `{prefix}{BENCHMARK_FILES['json']}`.", ""]
    else:
        out += ["The benchmark did not run.", ""]
    return "\n".join(out) + "\n"
