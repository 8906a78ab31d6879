"""``toolchain benchmark``: every backend in one harness, each row with a parity verdict (:mod:`toolchain.bench`)."""

from __future__ import annotations

import click

from toolchain.backends import BACKEND_NAMES
from toolchain.options import artifact_file_options, model_source_options


@click.command("benchmark")
@model_source_options
@artifact_file_options
@click.option("--batch-sizes", default="1,8,64,256", show_default=True, help="Comma-separated batch sizes.")
@click.option("--backends", "backend_names", default="all", show_default=True,
              help="Comma-separated subset of: " + ", ".join(BACKEND_NAMES) + ".")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="Where eager FP32 runs (auto: the GPU when there is one).")
@click.option("--include-compile", is_flag=True, help="Also time torch.compile on the CPU (slow to compile).")
@click.option("--compile-mode", default="default", show_default=True, help="torch.compile mode.")
@click.option("--warmup", "warmup_iters", type=click.IntRange(min=0), default=10, show_default=True,
              help="Warm-up calls (after one untimed first call).")
@click.option("--warmup-seconds", type=click.FloatRange(min=0), default=0.5, show_default=True,
              help="Warm up for at least this long.")
@click.option("--window", "window_iters", type=click.IntRange(min=1), default=None,
              help="Calls per timing window (default: sized to ~0.1 s from the warm-up).")
@click.option("--min-windows", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--stable-windows", type=click.IntRange(min=1), default=3, show_default=True,
              help="Stop when this many (>= 3) last windows' medians agree within --tolerance.")
@click.option("--min-window-iters", type=click.IntRange(min=1), default=5, show_default=True,
              help="At least this many calls per window.")
@click.option("--tolerance", type=click.FloatRange(min=0, min_open=True), default=0.05, show_default=True,
              help="Relative spread (max-min)/median of the window medians counted as stable.")
@click.option("--max-windows", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--max-seconds", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True,
              help="Timing budget per backend, batch size and metric.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="CPU threads for torch and ONNX Runtime (default: their own choice).")
@click.option("--dataset", help="Parity inputs: this dataset's validation split (default: the checkpoint's).")
@click.option("--data-dir", type=click.Path(file_okay=False), help="Where the dataset lives.")
@click.option("--parity-samples", type=click.IntRange(min=1), default=32, show_default=True,
              help="Inputs compared per batch size (at least one full batch).")
@click.option("--tolerances", "tolerances_file", type=click.Path(dir_okay=False),
              help="JSON with tolerance fields (see toolchain parity).")
@click.option("--allow-mismatch", is_flag=True,
              help="Time ONNX/engines built from other weights anyway; their rows are marked.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="runs/benchmark", show_default=True,
              help="Folder for benchmark.json, benchmark.md, latency.png and throughput.png.")
@click.option("--force", is_flag=True, help="Overwrite existing result files in --out.")
@click.option("--quiet", is_flag=True, help="No progress output.")
def benchmark(checkpoint, variant, image_size, num_classes, in_channels, onnx_path, engine, native_engine, onnx_int8,
              int8_engine, plugin_library,
              batch_sizes, backend_names, device, include_compile, compile_mode, warmup_iters, warmup_seconds,
              window_iters, min_windows, stable_windows, min_window_iters, tolerance, max_windows, max_seconds, threads,
              dataset, data_dir, parity_samples, tolerances_file, allow_mismatch, out_dir, force, quiet):
    """Time eager PyTorch (FP32, FP16, fused LRN, CUDA graph), torch.compile, ONNX Runtime and TensorRT.

    Every timed row first compares the backend's outputs with eager FP32 on the same
    inputs (same weights, checked through the sha256 chain) and carries the verdict.
    Backends that cannot run here are skipped and listed with the reason. GPU backends
    report CUDA-event time and host time with and without host<->device copies.
    Exit code 4 when a row fails parity.
    """
    from rich.console import Console

    from toolchain.bench.sources import benchmark_from_sources
    from toolchain.bench.timing import TimingConfig
    from toolchain.bench.report import benchmark_table, error_lines, parity_cell, skipped_lines
    from toolchain.errors import ToolchainError
    from toolchain.options import check_model_source
    from toolchain.parity import ParityError

    check_model_source(checkpoint, variant, image_size, num_classes, in_channels)
    if not any((checkpoint, variant, onnx_path, engine, native_engine)):
        raise ToolchainError("nothing to benchmark",
                             hint="pass --checkpoint PATH or --variant NAME (and --onnx/--engine/--native-engine)")
    config = TimingConfig(warmup_iters=warmup_iters, warmup_seconds=warmup_seconds, window_iters=window_iters,
                          min_window_iters=min_window_iters,
                          min_windows=max(min_windows, stable_windows), stable_windows=stable_windows,
                          tolerance=tolerance, max_windows=max_windows, max_seconds=max_seconds).validate()
    console = Console(stderr=True, quiet=quiet)
    result, paths = benchmark_from_sources(
        checkpoint=checkpoint, variant=variant, image_size=image_size, num_classes=num_classes,
        in_channels=in_channels, onnx=onnx_path,
        engine=engine, native_engine=native_engine, onnx_int8=onnx_int8, int8_engine=int8_engine,
        plugin_library=plugin_library, batch_sizes=batch_sizes,
        backend_names=backend_names, device=device, include_compile=include_compile, compile_mode=compile_mode,
        config=config, threads=threads, out_dir=out_dir, force=force, console=console, allow_mismatch=allow_mismatch,
        dataset=dataset, data_dir=data_dir, parity_samples=parity_samples, tolerances_file=tolerances_file)
    import sys

    out = Console(width=None if sys.stdout.isatty() else 150)  # a wide table also in logs and pipes
    out.print(benchmark_table(result))
    for line in skipped_lines(result.to_dict()):
        out.print(f"[yellow]skipped[/] {line}", highlight=False)
    for line in error_lines(result.to_dict()):
        out.print(f"[red]error[/] {line}", highlight=False)
    if not result.measurements:
        raise ToolchainError("no backend could be timed here, so no result files were written",
                             hint="see the skipped backends above")
    out.print(f"results: {paths['json']}, {paths['markdown']}, {paths['latency']}, {paths['throughput']}",
              highlight=False)
    if result.errors:
        raise ToolchainError(f"{len(result.errors)} backend error(s): " + "; ".join(error_lines(result.to_dict())),
                             hint=f"the other results are in {paths['markdown']}")
    failed = result.parity_failures()
    if failed:
        raise ParityError(f"{len(failed)} timed row(s) failed parity: "
                          + "; ".join(f"{r['backend']} at batch {r['batch_size']}: {parity_cell(r)}" for r in failed),
                          hint=f"details in {paths['markdown']}")

