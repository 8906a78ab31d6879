"""``toolchain benchmark`` as a function: the model, the weights chain, the parity inputs, then the sweep."""

from __future__ import annotations

from typing import Callable

from toolchain.environment import cuda_unavailable
from toolchain.errors import ToolchainError
from toolchain.options import parse_batch_sizes


def benchmark_model(*, checkpoint=None, variant: str | None = None, image_size: int | None = None,
                    num_classes: int | None = None, in_channels: int | None = None,
                    onnx=None) -> tuple[Callable[[], object] | None, dict]:
    """(model factory, model description) from a checkpoint, a variant, or an ONNX file's metadata."""
    import copy

    from toolchain.inputs import load_reference

    onnx_meta = {}
    if onnx is not None:
        from toolchain.artifacts import read_onnx

        onnx_meta = read_onnx(onnx).metadata
    if checkpoint is None and variant is None and not onnx_meta.get("variant"):
        return None, {}
    ref = load_reference(checkpoint=checkpoint, variant=variant, image_size=image_size, num_classes=num_classes,
                         in_channels=in_channels,
                         onnx_meta=onnx_meta if checkpoint is None and variant is None else {})
    meta = ref.meta
    base = ref.model.eval()
    seed = meta.get("seed", onnx_meta.get("seed") if checkpoint is None and variant is None else None)
    info = {"variant": meta.get("variant"), "image_size": int(meta["image_size"]),
            "in_channels": int(meta["in_channels"]), "num_classes": int(meta["num_classes"]),
            "checkpoint": str(ref.path) if ref.path else None, "checkpoint_sha256": ref.sha256,
            "weights": meta.get("weights"), "seed": 0 if seed is None and not ref.sha256 else seed,
            "dataset": meta.get("dataset"), "meta": {k: meta.get(k) for k in ("split", "mean", "std")}}
    return (lambda: copy.deepcopy(base)), info


def parity_inputs(model_info: dict, count: int, *, dataset=None, data_dir=None, seed: int = 0):
    """(inputs, labels or None, source): the validation split of the model's dataset where known, else seeded."""
    from toolchain.inputs import choose_inputs

    meta = {**(model_info.get("meta") or {}), "dataset": model_info.get("dataset"),
            **{k: model_info[k] for k in ("image_size", "in_channels", "num_classes")}}
    inputs, labels, source = choose_inputs(meta, dataset=dataset, limit=count, data_dir=data_dir, seed=seed,
                                           minimum=count)
    return inputs, labels, f"{source} ({len(inputs)} images)"


def benchmark_from_sources(*, checkpoint=None, variant=None, image_size=None, num_classes=None, in_channels=None,
                           onnx=None, engine=None,
                           native_engine=None, onnx_int8=None, int8_engine=None, plugin_library=None, batch_sizes="1,8,64,256", backend_names="all",
                           device="auto", include_compile=False, compile_mode="default", config=None, threads=None,
                           out_dir="runs/benchmark", force=False, console=None, allow_mismatch: bool = False,
                           dataset=None, data_dir=None, parity_samples: int = 32, tolerances_file=None, seed: int = 0):
    """Returns (result, written paths). Refuses existing result files and mismatched weights before timing."""
    from pathlib import Path

    from rich.console import Console

    from toolchain.backends import Context, Files, parse_backend_names, select
    from toolchain.bench.harness import make_parity_plan, run_benchmark
    from toolchain.bench.provenance import check_weights, weights_identity
    from toolchain.bench.report import BENCHMARK_FILES, write_benchmark_report
    from toolchain.bench.timing import TimingConfig
    from toolchain.data import dataset_inputs_paths
    from toolchain.io import guard_output

    console = console or Console(stderr=True)
    sizes = parse_batch_sizes(batch_sizes) if isinstance(batch_sizes, str) else [int(b) for b in batch_sizes]
    names = parse_backend_names(backend_names) if isinstance(backend_names, str) or backend_names is None \
        else list(backend_names)
    inputs = [("--checkpoint", checkpoint), ("--onnx", onnx), ("--engine", engine), ("--native-engine", native_engine),
              ("--onnx-int8", onnx_int8), ("--int8-engine", int8_engine), ("--plugin-library", plugin_library),
              ("--tolerances", tolerances_file), *dataset_inputs_paths(dataset, data_dir)]
    # Refuse before spending minutes timing: --out may hold other files, but no input, and the
    # result files are replaced only with --force.
    guard_output(out_dir, folder=True, force=True, inputs=inputs, what="--out")
    for name in BENCHMARK_FILES.values():
        guard_output(Path(out_dir) / name, force=force, inputs=inputs, what="result file")
    if threads:
        import torch

        torch.set_num_threads(threads)
    factory, model_info = benchmark_model(checkpoint=checkpoint, variant=variant, image_size=image_size,
                                          num_classes=num_classes, in_channels=in_channels, onnx=onnx)
    input_shape = (model_info["in_channels"], model_info["image_size"], model_info["image_size"]) \
        if model_info else None
    files = Files(onnx=onnx, onnx_int8=onnx_int8, engine=engine, native_engine=native_engine, int8_engine=int8_engine,
                  plugin_library=plugin_library)
    ctx = Context(model_factory=factory, input_shape=input_shape, files=files, device=device,
                  include_compile=include_compile, compile_mode=compile_mode, ort_threads=threads)
    # The registry reads each file once and refuses one no row of that name may run (an FP32 file
    # as the INT8 row, an INT8 file quantized for the other runtime, ...).
    candidates = select(names, ctx)
    # The weights: the identity each file records, and by content for ONNX files (a file edited with
    # its metadata kept has the same identity).
    sources, content = {}, {}
    for candidate in candidates:
        if candidate.artifact is not None:
            sources[f"{candidate.backend.flag} {candidate.artifact.path}"] = weights_identity(candidate.artifact.metadata)
    if factory is not None:
        from toolchain.artifacts import OnnxArtifact
        from toolchain.weights import verify_onnx_weights

        reference_model = factory()
        reference = f"checkpoint {checkpoint}" if checkpoint else "the reference model"
        for candidate in candidates:
            what = f"{candidate.backend.flag} {getattr(candidate.artifact, 'path', '')}"
            if isinstance(candidate.artifact, OnnxArtifact) and what not in content:
                try:
                    verify_onnx_weights(reference_model, candidate.artifact.path, onnx_label=what,
                                        reference_label=reference)
                    content[what] = None
                except ToolchainError as exc:
                    content[what] = exc.message
        del reference_model
    mismatches = check_weights(weights_identity(model_info) if model_info else None, sources,
                               allow_mismatch=allow_mismatch, found={k: v for k, v in content.items() if v})
    for candidate in candidates:
        if candidate.artifact is not None:
            candidate.mismatch = mismatches.get(f"{candidate.backend.flag} {candidate.artifact.path}")
    log = lambda message: console.print(f"[dim]{message}[/]", highlight=False)  # noqa: E731
    plan = None
    if factory is not None:
        from toolchain.runners.torch import TorchRunner

        inputs, labels, source = parity_inputs(model_info, max(max(sizes), parity_samples), dataset=dataset,
                                               data_dir=data_dir, seed=seed)
        # The FP32 reference: on the GPU where there is one, with TF32 off (recorded in its settings).
        ref_device = "cuda" if cuda_unavailable() is None else "cpu"
        log(f"reference: eager FP32 on {ref_device} over {source}")
        with TorchRunner(model_factory=factory, device=ref_device, dtype="fp32", tf32=False,
                         input_shape=input_shape, name=f"reference-eager-fp32-{ref_device}") as reference:
            plan = make_parity_plan(reference, inputs, labels=labels, source=source, batch_size=max(sizes),
                                    min_samples=parity_samples, tolerances_file=tolerances_file)
        model_info = {k: v for k, v in model_info.items() if k != "meta"}
    result = run_benchmark(candidates, sizes, config or TimingConfig(), parity=plan, model_info=model_info, log=log)
    result.parity["weights"] = {"reference": weights_identity(model_info) if model_info else None,
                                "checked": list(sources), "mismatches": mismatches}
    if not result.measurements:  # nothing timed: no result files that look like results
        return result, {}
    paths = write_benchmark_report(result, out_dir, force=force)
    return result, paths
