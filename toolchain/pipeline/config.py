"""What a pipeline run was asked for, checked before the run folder is touched."""

from __future__ import annotations

from dataclasses import dataclass

from toolchain.errors import ToolchainError


@dataclass
class PipelineConfig:
    out_dir: str = "runs/pipeline"
    variant: str = "paper"
    dataset: str = "digits"
    image_size: int | None = 64
    epochs: int | None = None          # None: the dataset's default (12 for digits)
    batch_size: int | None = None
    target_top1: float | None = 0.95   # stop training once validation top-1 reaches it
    seed: int = 0
    device: str = "auto"               # training device
    data_dir: str | None = None
    parity_batch_sizes: tuple[int, ...] = (1, 32)
    parity_limit: int | None = None    # None: the whole validation split
    quant_samples: int = 256           # INT8 calibration images (training split)
    quant_method: str = "minmax"
    bench_batch_sizes: tuple[int, ...] = (1, 8, 64, 256)
    bench_max_seconds: float = 5.0
    bench_warmup: int = 10
    bench_window: int | None = None
    include_compile: bool = False
    plugin_build_dir: str | None = None  # None: RUN/plugins (a run folder holds everything it built)
    cuda_archs: str | None = None
    tensorrt_root: str | None = None   # TensorRT headers (and libraries) for the plugin build
    builder: str = "auto"              # engine builder: auto, full (needs a GPU) or rtx (builds on the CPU)
    skip: tuple[str, ...] = ()
    force: bool = False
    progress: bool = True


def check_config(config: PipelineConfig, step_names) -> None:
    """Everything the user chose, checked before the run folder is touched (no step runs on a bad value)."""
    from toolchain.quantize import METHODS, check_samples
    from toolchain.train import TrainConfig, check_train_config, resolve_device
    from toolchain.validate import MAX_BATCH, check_number

    unknown = [s for s in config.skip if s not in step_names]
    if unknown:
        raise ToolchainError(f"unknown step(s) to skip: {', '.join(unknown)}", hint=f"steps: {', '.join(step_names)}")
    check_train_config(TrainConfig(variant=config.variant, dataset=config.dataset, image_size=config.image_size,
                                   epochs=config.epochs, batch_size=config.batch_size,
                                   target_top1=config.target_top1, seed=config.seed, device=config.device))
    resolve_device(config.device)
    for name, sizes in (("--parity-batch-sizes", config.parity_batch_sizes),
                        ("--bench-batch-sizes", config.bench_batch_sizes)):
        if not sizes:
            raise ToolchainError(f"{name} is empty", hint="e.g. 1,32")
        for size in sizes:
            check_number(name, size, low=1, high=MAX_BATCH, integer=True)
    if config.parity_limit is not None:
        check_number("--parity-limit", config.parity_limit, low=1, integer=True)
        if config.parity_limit < max(config.parity_batch_sizes):
            raise ToolchainError(f"--parity-limit {config.parity_limit} gives fewer images than the parity batch size "
                                 f"{max(config.parity_batch_sizes)}",
                                 hint=f"pass --parity-limit {max(config.parity_batch_sizes)} or more, or smaller "
                                      "--parity-batch-sizes")
    check_samples(config.quant_samples)
    if config.quant_method not in METHODS:
        raise ToolchainError(f"unknown calibration method {config.quant_method!r}", hint=f"choose {', '.join(METHODS)}")
    check_number("--bench-max-seconds", config.bench_max_seconds, low=0.0, low_open=True)
    check_number("--bench-warmup", config.bench_warmup, low=0, integer=True)
    if config.bench_window is not None:
        check_number("--bench-window", config.bench_window, low=1, integer=True)
