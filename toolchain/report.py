"""Reports: benchmark tables (rich and Markdown), plots (matplotlib, Agg), and the pipeline's REPORT.md.

Everything here reads plain dicts (``BenchmarkResult.to_dict()``, ``ParityReport.to_dict()``,
the pipeline's step records), so a report can be regenerated from the JSON files
alone. Every file goes through :mod:`toolchain.io` (atomic, no overwrite without
``force``).
"""

from __future__ import annotations

import math
from pathlib import Path

from toolchain.io import atomic_output, check_writable, write_json_atomic, write_text_atomic

BENCHMARK_FILES = {"json": "benchmark.json", "markdown": "benchmark.md", "latency": "latency.png",
                   "throughput": "throughput.png"}
METRIC_SHORT = {"gpu": "GPU", "host": "host", "host_copy": "host+copy"}


def _as_dict(result) -> dict:
    return result if isinstance(result, dict) else result.to_dict()


def fmt_ms(value) -> str:
    """Milliseconds with three significant digits (0.0421, 1.23, 123)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if value == 0:
        return "0"
    digits = max(0, 2 - int(math.floor(math.log10(abs(value)))))
    return f"{value:.{min(digits, 4)}f}"


def fmt_rate(value) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def _metric_titles() -> dict:
    from toolchain.benchmark import METRIC_TITLES

    return METRIC_TITLES


def _metrics_present(data: dict) -> list[str]:
    from toolchain.benchmark import METRICS

    return [m for m in METRICS if any(row["metric"] == m for row in data["measurements"])]


def _by_backend(data: dict, metric: str) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for row in data["measurements"]:
        if row["metric"] == metric:
            out.setdefault(row["backend"], []).append(row)
    for rows in out.values():
        rows.sort(key=lambda r: r["batch_size"])
    return out


def _primary(rows: dict) -> dict | None:
    return rows.get("gpu") or rows.get("host")


def _grouped(data: dict) -> list[tuple[str, int, dict]]:
    """(backend, batch, {metric: row}) in run order."""
    groups: dict[tuple[str, int], dict] = {}
    for row in data["measurements"]:
        groups.setdefault((row["backend"], row["batch_size"]), {})[row["metric"]] = row
    return [(backend, batch, rows) for (backend, batch), rows in groups.items()]


# ---------------------------------------------------------------------- benchmark: terminal


def benchmark_table(result):
    """A rich Table: one row per backend and batch size; p90/p99/CV/throughput of the primary metric."""
    from rich.table import Table

    data = _as_dict(result)
    table = Table(title="benchmark: latency per batch in ms (p50); p90/p99/CV/images/s of GPU time where "
                        "measured, else host time")
    for column in ("backend", "batch", "device"):
        table.add_column(column)
    for column in ("GPU p50", "host p50", "host+copy p50", "p90", "p99", "CV", "images/s", "stable"):
        table.add_column(column, justify="right")
    for backend, batch, rows in _grouped(data):
        primary = _primary(rows)
        cells = [fmt_ms(rows[m]["p50_ms"]) if m in rows else "-" for m in ("gpu", "host", "host_copy")]
        stable = all(r["stable"] for r in rows.values())
        table.add_row(backend, str(batch), primary["device"] if primary else "-", *cells,
                      fmt_ms(primary["p90_ms"]) if primary else "-", fmt_ms(primary["p99_ms"]) if primary else "-",
                      f"{primary['cv']:.1%}" if primary else "-",
                      fmt_rate(primary["throughput_ips"]) if primary else "-",
                      "yes" if stable else "[yellow]no[/]")
    return table


def skipped_lines(data: dict) -> list[str]:
    lines = []
    for entry in data.get("skipped", []):
        where = f" at batch {entry['batch_size']}" if entry.get("batch_size") else ""
        lines.append(f"{entry['backend']}{where}: {entry['reason']}")
    return lines


def error_lines(data: dict) -> list[str]:
    return [f"{e['backend']}{' at batch ' + str(e['batch_size']) if e.get('batch_size') else ''}"
            f"{' (' + e['metric'] + ')' if e.get('metric') else ''}: {e['error']}" for e in data.get("errors", [])]


# ---------------------------------------------------------------------- benchmark: Markdown


def _md_escape(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def environment_markdown(env: dict) -> str:
    from toolchain.environment import describe_device

    rows = [("device", describe_device(env)), ("CPU", f"{env.get('cpu')} ({env.get('affinity_cpus')} usable cores)"),
            ("python", env.get("python")), ("torch", f"{env.get('torch')} (CUDA {env.get('torch_cuda')}, "
                                                      f"cuDNN {env.get('cudnn')})"),
            ("onnxruntime", f"{env.get('onnxruntime')} ({', '.join(env.get('onnxruntime_providers') or [])})"),
            ("TensorRT", env.get("tensorrt") or env.get("tensorrt_status")),
            ("NVIDIA driver", env.get("nvidia_driver")), ("toolchain", f"{env.get('toolchain')} "
                                                                      f"(commit {str(env.get('git_commit'))[:12]})"),
            ("captured", env.get("captured_at"))]
    nvml = env.get("nvml")
    if nvml:
        rows.append(("GPU state", f"{nvml.get('temperature_c')} °C, SM {nvml.get('sm_clock_mhz')}/"
                                  f"{nvml.get('max_sm_clock_mhz')} MHz, memory {nvml.get('mem_clock_mhz')} MHz, "
                                  f"{nvml.get('power_w')} W of {nvml.get('power_limit_w')} W"))
    lines = ["| | |", "|---|---|"]
    lines += [f"| {key} | {_md_escape(value)} |" for key, value in rows if value not in (None, "")]
    return "\n".join(lines)


def benchmark_markdown(result, *, plots: dict[str, str] | None = None, heading: str = "#") -> str:
    """The whole benchmark as Markdown: setup, one table per metric, skipped backends, plots."""
    data = _as_dict(result)
    titles = _metric_titles()
    cfg = data.get("config", {})
    model = data.get("model") or {}
    out = [f"{heading} Benchmark", ""]
    if model:
        out.append(f"Model: {model.get('variant')} {model.get('in_channels')}x{model.get('image_size')}x"
                   f"{model.get('image_size')} -> {model.get('num_classes')} classes"
                   + (f", checkpoint `{model['checkpoint']}`" if model.get("checkpoint") else
                      f", weights {model.get('weights')}" if model.get("weights") else "") + ".")
        out.append("")
    out.append(f"Batch sizes {', '.join(map(str, data['batch_sizes']))}. Timing: one untimed first call, warm-up "
               f"({cfg.get('warmup_iters')} calls and >= {cfg.get('warmup_seconds')} s), then windows of "
               f"{cfg.get('window_iters') or 'auto-sized'} calls until the medians of the last "
               f"{cfg.get('stable_windows')} windows agree within {cfg.get('tolerance', 0) * 100:g}% "
               f"(at least {cfg.get('min_windows')} windows; at most {cfg.get('max_windows')} windows or "
               f"{cfg.get('max_seconds')} s per measurement, else marked unstable). Statistics over "
               f"the last {cfg.get('stable_windows')} windows; latency is per batch; images/s = batch / p50. "
               f"Total {data.get('seconds', 0):.1f} s.")
    out += ["", f"{heading}# Environment", "", environment_markdown(data["environment"]), ""]
    if data.get("backends"):
        out += [f"{heading}# Backends", ""]
        out += [f"- `{b['name']}` ({b['device']}, {b['precision']}): {b['description']}" for b in data["backends"]]
        out.append("")
    for metric in _metrics_present(data):
        out += [f"{heading}# {titles[metric]}", "",
                "| backend | batch | p50 ms | p90 ms | p99 ms | mean ms | CV | images/s | windows x calls | stable |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
        for backend, rows in _by_backend(data, metric).items():
            for r in rows:
                out.append(f"| {backend} | {r['batch_size']} | {fmt_ms(r['p50_ms'])} | {fmt_ms(r['p90_ms'])} | "
                           f"{fmt_ms(r['p99_ms'])} | {fmt_ms(r['mean_ms'])} | {r['cv']:.1%} | "
                           f"{fmt_rate(r['throughput_ips'])} | {r['windows']} x {r['window_iters']} | "
                           f"{'yes' if r['stable'] else 'no'} |")
        out.append("")
    skipped = skipped_lines(data)
    out += [f"{heading}# Skipped", ""]
    out += [f"- {_md_escape(line)}" for line in skipped] if skipped else ["Nothing was skipped."]
    out.append("")
    errors = error_lines(data)
    if errors:
        out += [f"{heading}# Errors", ""] + [f"- {_md_escape(line)}" for line in errors] + [""]
    if plots:
        out += [f"{heading}# Plots", ""]
        out += [f"![{name}]({path})" for name, path in plots.items()]
        out.append("")
    after = data.get("environment_after")
    if after:
        out += [f"GPU after the run: {after.get('temperature_c')} °C, SM {after.get('sm_clock_mhz')} MHz, "
                f"throttle reasons {after.get('clocks_throttle_reasons')}.", ""]
    return "\n".join(out)


# ---------------------------------------------------------------------- benchmark: plots


def _figure_for(data: dict, *, value: str, ylabel: str, title: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    titles = _metric_titles()
    metrics = _metrics_present(data)
    fig, axes = plt.subplots(1, max(1, len(metrics)), figsize=(6.0 * max(1, len(metrics)), 4.5), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for backend, rows in _by_backend(data, metric).items():
            batches = [r["batch_size"] for r in rows]
            if value == "latency":
                p50 = [r["p50_ms"] for r in rows]
                line, = ax.plot(batches, p50, marker="o", label=backend)
                ax.fill_between(batches, [r["p90_ms"] for r in rows], p50, color=line.get_color(), alpha=0.15,
                                linewidth=0)
            else:
                ax.plot(batches, [r["throughput_ips"] for r in rows], marker="o", label=backend)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        sizes = sorted({r["batch_size"] for r in data["measurements"] if r["metric"] == metric})
        ax.set_xticks(sizes, [str(s) for s in sizes])
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_xlabel("batch size")
        ax.set_ylabel(ylabel)
        ax.set_title(titles[metric], fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    if not metrics:
        axes[0][0].text(0.5, 0.5, "no measurements", ha="center", va="center")
        axes[0][0].set_axis_off()
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_benchmark(result, out_dir, *, force: bool = False) -> dict[str, Path]:
    """latency.png (p50 per batch, p50-p90 shaded) and throughput.png (images/s), one panel per metric."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = _as_dict(result)
    out_dir = Path(out_dir)
    device = _device_title(data)
    figures = {
        "latency": _figure_for(data, value="latency", ylabel="latency per batch, ms (p50; shaded to p90)",
                               title=f"latency vs batch size — {device}"),
        "throughput": _figure_for(data, value="throughput", ylabel="images/s (at p50)",
                                  title=f"throughput vs batch size — {device}"),
    }
    paths = {}
    for name, fig in figures.items():
        path = out_dir / BENCHMARK_FILES[name]
        try:
            with atomic_output(path, force=force) as tmp:
                fig.savefig(tmp, format="png", dpi=110)
        finally:
            plt.close(fig)
        paths[name] = path
    return paths


def _device_title(data: dict) -> str:
    from toolchain.environment import describe_device

    return describe_device(data.get("environment") or {})


def write_benchmark_report(result, out_dir, *, force: bool = False) -> dict[str, Path]:
    """benchmark.json, benchmark.md and the two PNG plots in ``out_dir``; refuses to overwrite without ``force``."""
    data = _as_dict(result)
    out_dir = Path(out_dir)
    for name in BENCHMARK_FILES.values():  # refuse before writing anything
        check_writable(out_dir / name, force=force)
    paths = {"json": write_json_atomic(out_dir / BENCHMARK_FILES["json"], data, force=force)}
    paths.update(plot_benchmark(data, out_dir, force=force))
    plots = {name: paths[name].name for name in ("latency", "throughput")}
    paths["markdown"] = write_text_atomic(out_dir / BENCHMARK_FILES["markdown"],
                                          benchmark_markdown(data, plots=plots), force=force)
    return paths


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


STATUS_MARK = {"ran": "ran", "skipped": "skipped", "failed": "**FAILED**"}


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
    out += ["## Steps", "", "| # | step | status | seconds | details |", "|---:|---|---|---:|---|"]
    for i, step in enumerate(steps, 1):
        detail = step.get("summary") or ""
        if step["status"] == "skipped":
            detail = f"skipped: {step.get('reason')}"
        elif step["status"] == "failed":
            detail = f"error: {step.get('error')}"
        out.append(f"| {i} | {step['name']} | {STATUS_MARK.get(step['status'], step['status'])} | "
                   f"{step.get('seconds', 0):.1f} | {_md_escape(detail)} |")
    out += ["", "Each step's equivalent command (run from the repository root):", "", "```sh"]
    for step in steps:
        if step.get("command"):
            prefix = "# skipped: " if step["status"] == "skipped" else "# failed: " if step["status"] == "failed" \
                else ""
            if prefix:
                out.append(f"{prefix}{step['name']} ({step.get('reason') or step.get('error')})")
            out.append(step["command"])
    out += ["```", ""]

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
            out += ["Failed checks:", ""] + [f"- {_md_escape(f)}" for f in failures] + [""]
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
