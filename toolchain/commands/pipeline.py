"""``toolchain pipeline``: train, export, check, build and benchmark in one run folder."""

from __future__ import annotations

import click

from toolchain.options import batch_sizes_callback
from toolchain.pipeline import STEP_NAMES, PipelineConfig, raise_if_failed, run_pipeline
from toolchain.validate import BATCH, IMAGE_SIZE, count, real

@click.command("pipeline")
@click.option("--out", "out_dir", default="runs/pipeline", show_default=True, type=click.Path(file_okay=False),
              help="Run folder (refused when it exists and is not empty, unless --force).")
@click.option("--force", is_flag=True, help="Reuse a non-empty run folder, overwriting its files.")
@click.option("--variant", default="paper", show_default=True, help="paper, torchvision, torchvision-lrn or d2l.")
@click.option("--dataset", default="digits", show_default=True,
              help="digits, synthetic, fashion-mnist, cifar10 or imagefolder:PATH.")
@click.option("--image-size", type=IMAGE_SIZE, default=64, show_default=True, help="Input side.")
@click.option("--epochs", type=count(1), default=None, help="Training epochs (default: the dataset's, 12 for digits).")
@click.option("--batch-size", type=BATCH, default=None, help="Training batch size (default: the dataset's).")
@click.option("--target-top1", type=real(max=1.0), default=0.95, show_default=True,
              help="Stop training once validation top-1 reaches this (0 or less: train all epochs).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True, help="Training device: auto, cpu or cuda[:N].")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="Where downloaded datasets live.")
@click.option("--parity-batch-sizes", default="1,32", show_default=True, callback=batch_sizes_callback)
@click.option("--parity-limit", type=click.IntRange(min=1), default=None,
              help="Compare at most N validation images (default: the whole split).")
@click.option("--quant-samples", type=count(16), default=256, show_default=True,
              help="INT8 calibration images (training split).")
@click.option("--quant-method", type=click.Choice(["minmax", "percentile", "entropy"]), default="minmax",
              show_default=True, help="INT8 calibration method.")
@click.option("--bench-batch-sizes", default="1,8,64,256", show_default=True, callback=batch_sizes_callback)
@click.option("--bench-max-seconds", type=click.FloatRange(min=0, min_open=True), default=5.0, show_default=True,
              help="Benchmark timing budget per backend, batch size and metric.")
@click.option("--bench-warmup", type=click.IntRange(min=0), default=10, show_default=True)
@click.option("--bench-window", type=click.IntRange(min=1), default=None, help="Calls per timing window.")
@click.option("--include-compile", is_flag=True, help="Also time torch.compile on the CPU.")
@click.option("--plugin-build-dir", default=None, type=click.Path(file_okay=False),
              help="CMake build folder of the plugin (default: RUN/plugins, inside --out).")
@click.option("--cuda-archs", default=None, help='CMake CUDA architectures for the plugin build, e.g. "native".')
@click.option("--tensorrt-root", type=click.Path(exists=True, file_okay=False), default=None,
              help="TensorRT headers for the plugin build: a prefix with include/ (and lib/), or an include folder "
                   "(default: $TensorRT_ROOT, the pip tensorrt package, system paths).")
@click.option("--tensorrt", "builder", type=click.Choice(["auto", "full", "rtx"]), default="auto", show_default=True,
              help="Engine builder: the full TensorRT (GPU), TensorRT-RTX (CPU), or the full one when installed.")
@click.option("--skip", multiple=True, metavar="STEP", help=f"Skip a step (repeatable): {', '.join(STEP_NAMES)}.")
@click.option("--quiet", is_flag=True, help="No progress output.")
def pipeline(out_dir, force, variant, dataset, image_size, epochs, batch_size, target_top1, seed, device, data_dir,
             parity_batch_sizes, parity_limit, quant_samples, quant_method, bench_batch_sizes, bench_max_seconds, bench_warmup, bench_window,
             include_compile, plugin_build_dir, cuda_archs, tensorrt_root, builder, skip, quiet):
    """Train -> export (FP32, FP16) -> ONNX Runtime parity -> plugin -> TensorRT engines -> TensorRT parity
    -> benchmark, writing REPORT.md and pipeline.json in the run folder.

    Steps needing a GPU, TensorRT or nvcc are skipped here when those are missing (the report gives the
    reason and the command that would run each); the exit code is non-zero only when a step failed.
    """
    from pathlib import Path

    from rich.console import Console

    config = PipelineConfig(
        out_dir=out_dir, variant=variant, dataset=dataset, image_size=image_size, epochs=epochs,
        batch_size=batch_size, target_top1=target_top1 if target_top1 and target_top1 > 0 else None, seed=seed,
        device=device, data_dir=data_dir, parity_batch_sizes=parity_batch_sizes, parity_limit=parity_limit,
        quant_samples=quant_samples, quant_method=quant_method,
        bench_batch_sizes=bench_batch_sizes, bench_max_seconds=bench_max_seconds, bench_warmup=bench_warmup,
        bench_window=bench_window, include_compile=include_compile, plugin_build_dir=plugin_build_dir,
        cuda_archs=cuda_archs, tensorrt_root=tensorrt_root, builder=builder, skip=tuple(skip), force=force,
        progress=not quiet)
    record = run_pipeline(config, console=Console(stderr=True, quiet=quiet))
    out = Console()
    for step in record["steps"]:
        status = {"ran": "[green]ran[/]", "skipped": "[yellow]skipped[/]", "failed": "[bold red]FAILED[/]"}[step["status"]]
        detail = step["summary"] if step["status"] == "ran" else (step["reason"] or step["error"] or "")
        out.print(f"{step['name']:24s} {status}  {detail}", highlight=False, soft_wrap=True)
    out.print(f"report: {Path(record['out_dir']) / 'REPORT.md'}", highlight=False)
    raise_if_failed(record)
