"""``toolchain benchmark`` as a function: the model, the weights chain, the parity inputs, then the sweep."""

from __future__ import annotations

from typing import Callable

from toolchain.environment import cuda_unavailable
from toolchain.errors import ToolchainError
from toolchain.options import parse_batch_sizes


def benchmark_model(*, checkpoint=None, variant: str | None = None, image_size: int | None = None,
                    num_classes: int | None = None, onnx=None) -> tuple[Callable[[], object] | None, dict]:
    """(model factory, model description) from a checkpoint, a variant, or an ONNX file's metadata."""
    import copy

    from toolchain.parity import load_reference

    onnx_meta = {}
    if onnx is not None:
        from toolchain.export import read_metadata

        onnx_meta = read_metadata(onnx)
    if checkpoint is None and variant is None and not onnx_meta.get("variant"):
        return None, {}
    ref = load_reference(checkpoint=checkpoint, variant=variant, image_size=image_size, num_classes=num_classes,
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
    from toolchain.parity import dataset_inputs, random_inputs

    meta = {**(model_info.get("meta") or {}), **{k: model_info[k] for k in ("image_size", "in_channels",
                                                                            "num_classes")}}
    dataset = dataset or model_info.get("dataset")
    if dataset:
        inputs, labels = dataset_inputs(dataset, meta, limit=count, data_dir=data_dir)
        return inputs, labels, f"{dataset} validation split ({len(inputs)} images)"
    return random_inputs(count, meta, seed=seed), None, f"seeded random inputs (seed {seed}, {count} images)"


def benchmark_from_sources(*, checkpoint=None, variant=None, image_size=None, num_classes=None, onnx=None, engine=None,
                           native_engine=None, onnx_int8=None, int8_engine=None, plugin_library=None, batch_sizes="1,8,64,256", backend_names="all",
                           device="auto", include_compile=False, compile_mode="default", config=None, threads=None,
                           out_dir="runs/benchmark", force=False, console=None, allow_mismatch: bool = False,
                           dataset=None, data_dir=None, parity_samples: int = 32, tolerances_file=None, seed: int = 0):
    """Returns (result, written paths). Refuses existing result files and mismatched weights before timing."""
    from pathlib import Path

    from rich.console import Console

    from toolchain.bench.backends import (check_int8_targets, check_weights, engine_identity, make_backends,
                                          parse_backend_names, weights_identity)
    from toolchain.errors import ToolchainError
    from toolchain.bench.harness import make_parity_plan, run_benchmark
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
                                          num_classes=num_classes, onnx=onnx)
    sources = {}
    for flag, path in (("--onnx", onnx), ("--onnx-int8", onnx_int8)):
        if path is not None:
            from toolchain.export import read_metadata

            sources[f"{flag} {path}"] = weights_identity(read_metadata(path))
    for flag, path in (("--engine", engine), ("--native-engine", native_engine), ("--int8-engine", int8_engine)):
        if path is not None:
            sources[f"{flag} {path}"] = engine_identity(path)
    content = {}
    if factory is not None:  # by content too: a file edited with its metadata kept has the same identity
        from toolchain.weights import verify_onnx_weights

        reference_model = factory()
        reference = f"checkpoint {checkpoint}" if checkpoint else "the reference model"
        for flag, path in (("--onnx", onnx), ("--onnx-int8", onnx_int8)):
            if path is not None:
                try:
                    verify_onnx_weights(reference_model, path, onnx_label=f"{flag} {path}", reference_label=reference)
                except ToolchainError as exc:
                    content[f"{flag} {path}"] = exc.message
        del reference_model
    mismatches = check_weights(weights_identity(model_info) if model_info else None, sources,
                               allow_mismatch=allow_mismatch, found=content)
    targets = {}
    if onnx_int8 is not None:
        from toolchain.export import read_metadata

        targets["onnxruntime-cpu-int8"] = (onnx_int8, read_metadata(onnx_int8).get("quant_target"))
    if int8_engine is not None:
        from toolchain.trt import manifest as manifest_mod

        try:
            recorded = (manifest_mod.read_manifest(int8_engine).get("model") or {}).get("quant_target")
        except ToolchainError:  # no readable manifest: the runner says so when it loads
            recorded = None
        targets["tensorrt-int8"] = (int8_engine, recorded)
    check_int8_targets(targets, names)
    input_shape = (model_info["in_channels"], model_info["image_size"], model_info["image_size"]) \
        if model_info else None
    candidates = make_backends(model_factory=factory, input_shape=input_shape, onnx=onnx, engine=engine,
                               native_engine=native_engine, onnx_int8=onnx_int8, int8_engine=int8_engine,
                               plugin_library=plugin_library, names=names,
                               device=device, include_compile=include_compile, compile_mode=compile_mode,
                               ort_threads=threads)
    for candidate in candidates:
        path = onnx_int8 if candidate.name == "onnxruntime-cpu-int8" else \
            int8_engine if candidate.name == "tensorrt-int8" else \
            onnx if candidate.name.startswith("onnxruntime") else \
            engine if candidate.name.startswith("tensorrt-plugin") else \
            native_engine if candidate.name.startswith("tensorrt-native") else None
        for what, problem in mismatches.items():
            if path is not None and what.endswith(f" {path}"):
                candidate.mismatch = problem
    log = lambda message: console.print(f"[dim]{message}[/]", highlight=False)  # noqa: E731
    plan = None
    if factory is not None:
        from toolchain.runners import TorchRunner

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
