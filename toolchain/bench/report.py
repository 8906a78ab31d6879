"""Benchmark reports: the terminal table (rich), Markdown and plots (matplotlib, Agg).

They read plain dicts (``BenchmarkResult.to_dict()``), so a report can be rebuilt from
``benchmark.json`` alone. Every timed row shows its parity verdict: a row that failed
parity is marked FAILED (and drawn as a red cross), never shown as a plain number;
unstable points are drawn hollow. Every reduced-precision row shows its speed-up over
its family's FP32 row (:mod:`toolchain.bench.speedup`: a column, labels on the
throughput plot, and a sentence per backend that says where it is slower). Files go
through :mod:`toolchain.io` (atomic, no overwrite without ``force``).
"""

from __future__ import annotations

import math
from pathlib import Path

from toolchain.io import atomic_output, atomic_outputs, json_text

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
    from toolchain.bench.timing import METRIC_TITLES

    return METRIC_TITLES


def _metrics_present(data: dict) -> list[str]:
    from toolchain.bench.timing import METRICS

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


def parity_cell(row: dict, *, markup: bool = False) -> str:
    """The verdict of a row in a few words: "pass", "FAILED (allclose)", "weights mismatch", "-"."""
    verdict = row.get("parity")
    status = row.get("status")
    if status == "weights-mismatch":
        text = "weights mismatch"
    elif verdict is None:
        return "not checked"
    elif verdict.get("status") == "error":
        text = "FAILED (error)"
    elif verdict.get("passed"):
        return "[green]pass[/]" if markup else "pass"
    else:
        names = sorted({f.split(": ", 1)[1].split(" (", 1)[0] for f in verdict.get("failures", []) if ": " in f})
        text = f"FAILED ({', '.join(names)})" if names else "FAILED"
    return f"[bold red]{text}[/]" if markup else text


def row_failed(row: dict) -> bool:
    return row.get("status") in ("parity-failed", "weights-mismatch")


def _speedups(data: dict) -> dict[tuple, dict]:
    """Recomputed from the rows, so a report rebuilt from an older benchmark.json has them too."""
    from toolchain.bench.speedup import speedup_index, speedups

    return speedup_index(speedups(data["measurements"]))


# ---------------------------------------------------------------------- benchmark: terminal


def benchmark_table(result):
    """A rich Table: one row per backend and batch size; p90/p99/CV/throughput of the primary metric."""
    from rich.table import Table

    data = _as_dict(result)
    table = Table(title="benchmark: latency per batch in ms (p50); p90/p99/CV of GPU time where measured, else "
                        "host time; images/s from back-to-back wall time; parity against eager FP32")
    for column in ("backend", "batch", "device"):
        table.add_column(column)
    for column in ("GPU p50", "host p50", "host+copy p50", "p90", "p99", "CV", "images/s", "vs FP32", "stable"):
        table.add_column(column, justify="right")
    table.add_column("parity")
    gains = _speedups(data)
    for backend, batch, rows in _grouped(data):
        primary = _primary(rows)
        cells = [fmt_ms(rows[m]["p50_ms"]) if m in rows else "-" for m in ("gpu", "host", "host_copy")]
        stable = all(r["stable"] for r in rows.values())
        if primary and row_failed(primary):  # a failed row is never shown as a plain number
            cells = [f"[red]{c}[/]" for c in cells]
        table.add_row(backend, str(batch), primary["device"] if primary else "-", *cells,
                      fmt_ms(primary["p90_ms"]) if primary else "-", fmt_ms(primary["p99_ms"]) if primary else "-",
                      f"{primary['cv']:.1%}" if primary else "-",
                      fmt_rate(primary["throughput_ips"]) if primary else "-",
                      _speedup_markup(gains.get((backend, batch, primary["metric"])) if primary else None),
                      "yes" if stable else "[yellow]no[/]", parity_cell(primary or {}, markup=True))
    return table


def _speedup_markup(entry: dict | None) -> str:
    from toolchain.bench.speedup import fmt_speedup

    text = fmt_speedup(entry)
    return f"[bold red]{text}[/]" if entry and entry.get("speedup") is not None and entry["speedup"] < 1 else text


def skipped_lines(data: dict) -> list[str]:
    """One line per distinct reason, naming every backend (and batch) it applies to."""
    groups: dict[str, list[str]] = {}
    for entry in data.get("skipped", []):
        where = f" at batch {entry['batch_size']}" if entry.get("batch_size") else ""
        groups.setdefault(entry["reason"], []).append(f"{entry['backend']}{where}")
    return [f"{', '.join(names)}: {reason}" for reason, names in groups.items()]


def error_lines(data: dict) -> list[str]:
    return [f"{e['backend']}{' at batch ' + str(e['batch_size']) if e.get('batch_size') else ''}"
            f"{' (' + e['metric'] + ')' if e.get('metric') else ''}: {e['error']}" for e in data.get("errors", [])]


# ---------------------------------------------------------------------- benchmark: Markdown


def md_escape(text) -> str:
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
    lines += [f"| {key} | {md_escape(value)} |" for key, value in rows if value not in (None, "")]
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
               f"the last {cfg.get('stable_windows')} windows; latency is per batch; images/s from the wall time "
               f"of each window's back-to-back calls. Settings: {md_escape(cfg.get('settings'))}. "
               f"Total {data.get('seconds', 0):.1f} s.")
    parity = data.get("parity") or {}
    if parity:
        ref = parity.get("reference") or {}
        weights = parity.get("weights") or {}
        out += ["", f"Parity: every row is compared with {ref.get('name', 'the reference')} "
                    f"({md_escape(ref.get('settings'))}) on {parity.get('inputs')}, at its own batch size and "
                    f"with its precision's tolerances"
                + ("; top-1 agreement counts (real data)." if parity.get("real_data") else
                   "; top-1 agreement is not counted (no labelled data).")
                + (f" Weights checked for {', '.join(f'`{w}`' for w in weights.get('checked', []))}."
                   if weights.get("checked") else "")]
        for what, problem in (weights.get("mismatches") or {}).items():
            out.append(f"**Weights mismatch, timed with --allow-mismatch:** {md_escape(problem)}.")
    out += ["", f"{heading}# Environment", "", environment_markdown(data["environment"]), ""]
    if data.get("backends"):
        out += [f"{heading}# Backends", ""]
        out += [f"- `{b['name']}` ({b['device']}, {b['precision']}): {b['description']}" for b in data["backends"]]
        out.append("")
    from toolchain.bench.speedup import fmt_speedup, speedup_sentences

    gains = _speedups(data)
    for metric in _metrics_present(data):
        out += [f"{heading}# {titles[metric]}", "",
                "| backend | batch | p50 ms | p90 ms | p99 ms | mean ms | CV | images/s | vs FP32 | windows x calls "
                "| stable | parity |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"]
        for backend, rows in _by_backend(data, metric).items():
            for r in rows:
                gain = gains.get((backend, r["batch_size"], metric))
                cell = fmt_speedup(gain)
                if gain and gain["speedup"] is not None and gain["speedup"] < 1:
                    cell = f"**{cell}**"
                out.append(f"| {backend} | {r['batch_size']} | {fmt_ms(r['p50_ms'])} | {fmt_ms(r['p90_ms'])} | "
                           f"{fmt_ms(r['p99_ms'])} | {fmt_ms(r['mean_ms'])} | {r['cv']:.1%} | "
                           f"{fmt_rate(r['throughput_ips'])} | {cell} | {r['windows']} x {r['window_iters']} | "
                           f"{'yes' if r['stable'] else 'no'} | {parity_cell(r)} |")
        out.append("")
        staged = [r for rows in _by_backend(data, metric).values() for r in rows if r.get("stages")]
        if staged:
            out += ["Stages (p50 ms; CUDA events, enqueue on the host):", "",
                    "| backend | batch | H2D | compute | D2H | host enqueue |", "|---|---:|---:|---:|---:|---:|"]
            for r in staged:
                st = r["stages"]
                out.append(f"| {r['backend']} | {r['batch_size']} | "
                           + " | ".join(fmt_ms(st[k]["p50_ms"]) if k in st else "-"
                                        for k in ("h2d", "compute", "d2h", "enqueue")) + " |")
            out.append("")
    if gains:
        failed_rows = {(r["backend"], r["batch_size"]) for r in data["measurements"] if row_failed(r)}
        out += [f"{heading}# Reduced precision vs FP32", "",
                "images/s of each reduced-precision row over the FP32 row of the same backend family (same "
                "device, batch size and metric); below 1x it is slower than FP32.", ""]
        out += [f"- {md_escape(line)}" for line in speedup_sentences(list(gains.values()), failed=failed_rows)]
        out.append("")
    notes = sorted({(r["backend"], r["batch_size"], r["profile_note"]) for r in data["measurements"]
                    if r.get("profile_note")})
    if notes:
        out += [f"{heading}# TensorRT profiles", ""] + [f"- {b} at batch {n}: {t}" for b, n, t in notes] + [""]
    failed = sorted({(r["backend"], r["batch_size"]) for r in data["measurements"] if row_failed(r)})
    if failed:
        out += [f"{heading}# Failed parity", ""]
        for backend, batch in failed:
            row = next(r for r in data["measurements"] if (r["backend"], r["batch_size"]) == (backend, batch))
            detail = "; ".join((row.get("parity") or {}).get("failures") or []) or \
                (row.get("parity") or {}).get("error") or (row.get("parity") or {}).get("weights") or ""
            out.append(f"- {backend} at batch {batch}: {parity_cell(row)} {md_escape(detail)}")
        out.append("")
    skipped = skipped_lines(data)
    out += [f"{heading}# Skipped", ""]
    out += [f"- {md_escape(line)}" for line in skipped] if skipped else ["Nothing was skipped."]
    out.append("")
    errors = error_lines(data)
    if errors:
        out += [f"{heading}# Errors", ""] + [f"- {md_escape(line)}" for line in errors] + [""]
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
    gains = _speedups(data) if value == "throughput" else {}
    fig, axes = plt.subplots(1, max(1, len(metrics)), figsize=(6.0 * max(1, len(metrics)), 4.5), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for backend, rows in _by_backend(data, metric).items():
            batches = [r["batch_size"] for r in rows]
            values = [r["p50_ms"] if value == "latency" else (r["throughput_ips"] or math.nan) for r in rows]
            failed = any(row_failed(r) for r in rows)
            line, = ax.plot(batches, values, marker="o", label=backend + (" (parity FAILED)" if failed else ""),
                            linestyle=":" if failed else "-")
            if value == "latency":
                ax.fill_between(batches, [r["p90_ms"] for r in rows], values, color=line.get_color(), alpha=0.15,
                                linewidth=0)
            for r, y in zip(rows, values):
                if row_failed(r):  # failed parity: a red cross over the point
                    ax.plot([r["batch_size"]], [y], marker="x", color="red", markersize=10, linestyle="none")
                elif not r["stable"]:  # unstable: hollow marker
                    ax.plot([r["batch_size"]], [y], marker="o", markerfacecolor="white",
                            markeredgecolor=line.get_color(), markersize=8, linestyle="none")
                gain = gains.get((backend, r["batch_size"], metric))
                if gain and gain["speedup"] is not None and math.isfinite(y):  # x FP32 of its family
                    ax.annotate(f"{gain['speedup']:.2f}x", (r["batch_size"], y), textcoords="offset points",
                                xytext=(0, 7), ha="center", fontsize=7,
                                color="red" if gain["speedup"] < 1 else line.get_color())
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.margins(x=0.08, y=0.12)  # room for the speed-up labels
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
    fig.tight_layout(rect=(0, 0.07 if gains else 0.04, 1, 1))
    fig.text(0.01, 0.01, "hollow marker: unstable (windows did not agree); red x: failed parity (dotted line)"
             + ("\nlabels: images/s over the same backend family's FP32 row (red: slower than FP32)" if gains else ""),
             fontsize=7, color="dimgray")
    return fig


def plot_benchmark(result, out_dir, *, force: bool = False) -> dict[str, Path]:
    """latency.png (p50 per batch, p50-p90 shaded) and throughput.png (images/s), one panel per metric."""
    out_dir = Path(out_dir)
    paths = {}
    for name in ("latency", "throughput"):
        path = out_dir / BENCHMARK_FILES[name]
        with atomic_output(path, force=force) as tmp:
            _save_plot(_as_dict(result), name, tmp)
        paths[name] = path
    return paths


def _save_plot(data: dict, name: str, path: Path) -> None:
    """Draw the ``name`` plot ("latency" or "throughput") of ``data`` into the PNG file ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    device = _device_title(data)
    fig = _figure_for(data, value="latency", ylabel="latency per batch, ms (p50; shaded to p90)",
                      title=f"latency vs batch size — {device}") if name == "latency" else \
        _figure_for(data, value="throughput", ylabel="images/s (back-to-back wall time)",
                    title=f"throughput vs batch size — {device}")
    try:
        fig.savefig(path, format="png", dpi=110)
    finally:
        plt.close(fig)


def _device_title(data: dict) -> str:
    from toolchain.environment import describe_device

    return describe_device(data.get("environment") or {})


def write_benchmark_report(result, out_dir, *, force: bool = False) -> dict[str, Path]:
    """benchmark.json, benchmark.md and the two PNG plots in ``out_dir``; refuses to overwrite without ``force``."""
    data = _as_dict(result)
    out_dir = Path(out_dir)
    paths = {key: out_dir / name for key, name in BENCHMARK_FILES.items()}
    # One result set: an interrupted or failed write (Ctrl-C, a full disk) leaves the old set or none,
    # never a benchmark.json without its Markdown and plots.
    with atomic_outputs(paths, force=force) as tmp:
        tmp["json"].write_text(json_text(data), encoding="utf-8")
        for name in ("latency", "throughput"):
            _save_plot(data, name, tmp[name])
        plots = {name: paths[name].name for name in ("latency", "throughput")}
        tmp["markdown"].write_text(benchmark_markdown(data, plots=plots), encoding="utf-8")
    return paths


