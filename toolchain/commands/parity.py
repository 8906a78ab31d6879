"""``toolchain parity``: a backend's outputs against eager PyTorch on the same inputs."""

from __future__ import annotations

import click

from toolchain.options import batch_sizes_callback




@click.command("parity")
@click.option("--backend", type=click.Choice(["onnxruntime", "tensorrt"]), default="onnxruntime", show_default=True)
@click.option("--onnx", "onnx_path", type=click.Path(dir_okay=False),
              help="ONNX file (the candidate for onnxruntime; its metadata describes the model).")
@click.option("--engine", type=click.Path(dir_okay=False), help="TensorRT engine (the candidate for tensorrt).")
@click.option("--plugin-library", type=click.Path(dir_okay=False), help="TensorRT: the LRN plugin library.")
@click.option("--checkpoint", type=click.Path(dir_okay=False), help="Reference checkpoint.")
@click.option("--variant", help="Reference variant (random/pretrained weights as recorded in the ONNX metadata).")
@click.option("--image-size", type=int, help="Reference variant's input size (default: ONNX metadata).")
@click.option("--num-classes", type=int, help="Reference variant's classes (default: ONNX metadata).")
@click.option("--in-channels", type=int, help="Reference variant's channels (default: ONNX metadata).")
@click.option("--dataset", help="Compare on this dataset's validation split (default: the checkpoint's).")
@click.option("--data-dir", type=click.Path(file_okay=False))
@click.option("--limit", type=int, help="At most N validation images.")
@click.option("--random", "random_n", type=int, help="Compare on N seeded random inputs instead.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for --random.")
@click.option("--batch-sizes", default="1,32", show_default=True, callback=batch_sizes_callback,
              help="Comma-separated batch sizes; every input runs at each.")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]),
              help="Default tolerances (default: the ONNX's precision or dtype; the engine's for tensorrt).")
@click.option("--atol", type=float)
@click.option("--rtol", type=float)
@click.option("--min-cosine", type=float)
@click.option("--min-top1-agreement", type=float)
@click.option("--max-accuracy-drop", type=float)
@click.option("--range-atol", type=float, help="Extra allowed error, as a fraction of the reference's range.")
@click.option("--tolerances", "tolerances_file", type=click.Path(dir_okay=False),
              help="JSON with tolerance fields, optionally {'outputs': {'logits': {...}}}.")
@click.option("--device", default="cpu", show_default=True, help="Device of the eager reference.")
@click.option("--fused-lrn", is_flag=True, help="The eager reference runs LRN through the fused op.")
@click.option("--report", type=click.Path(dir_okay=False), help="Write the full JSON report here.")
@click.option("--force", is_flag=True, help="Overwrite --report if it exists.")
def parity(backend, onnx_path, engine, plugin_library, checkpoint, variant, image_size, num_classes, in_channels,
           dataset, data_dir, limit, random_n, seed, batch_sizes, precision, atol, rtol, min_cosine,
           min_top1_agreement, max_accuracy_drop, range_atol, tolerances_file, device, fused_lrn, report, force):
    """Run the candidate backend and eager PyTorch on the same inputs; fail on any check.

    Every check runs before the verdict; the exit code is 4 when any fails.
    """
    from rich.console import Console

    from toolchain.errors import ToolchainError
    from toolchain.export import read_metadata
    from toolchain.io import check_writable, write_json_atomic
    from toolchain.parity import (dataset_inputs, default_precision, load_reference, load_tolerances, random_inputs,
                                  run_parity)
    from toolchain.runners import TorchRunner, make_runner

    if report:
        check_writable(report, force=force)
    if dataset and random_n:
        raise ToolchainError("--dataset and --random exclude each other")
    if backend == "onnxruntime" and not onnx_path:
        raise ToolchainError("--backend onnxruntime needs --onnx PATH")
    if backend == "tensorrt" and not engine:
        raise ToolchainError("--backend tensorrt needs --engine PATH")
    onnx_meta = read_metadata(onnx_path) if onnx_path else {}
    ref = load_reference(checkpoint=checkpoint, variant=variant, onnx_meta=onnx_meta, image_size=image_size,
                         num_classes=num_classes, in_channels=in_channels)
    meta = {**onnx_meta, **ref.meta}  # the split and dataset come from the checkpoint when there is one
    if precision is None:
        manifest = None
        if backend == "tensorrt":
            from toolchain.trt.manifest import manifest_path, read_manifest

            manifest = read_manifest(engine) if manifest_path(engine).is_file() else None
        precision = default_precision(backend, onnx_meta, manifest)
    tolerances = load_tolerances(precision, file=tolerances_file, atol=atol, rtol=rtol, min_cosine=min_cosine,
                                 min_top1_agreement=min_top1_agreement, max_accuracy_drop=max_accuracy_drop,
                                 range_atol=range_atol)

    labels = None
    dataset = dataset or (None if random_n else meta.get("dataset"))
    if dataset:
        inputs, labels = dataset_inputs(dataset, meta, limit=limit, data_dir=data_dir)
        source = f"{dataset} validation split"
    else:
        inputs = random_inputs(random_n or 16, meta, seed=seed)
        source = f"seeded random inputs (seed {seed})"

    if backend == "onnxruntime":
        candidate = make_runner("onnxruntime", path=onnx_path)
    else:
        options = {"plugin_library": plugin_library} if plugin_library else {}
        candidate = make_runner("tensorrt", engine_path=engine, **options)
    reference = TorchRunner(ref.model, device=device, fused_lrn=fused_lrn)
    console = Console(stderr=False)
    with reference, candidate:
        result = run_parity(reference, candidate, inputs, batch_sizes=batch_sizes, labels=labels,
                            tolerances=tolerances, precision=precision)
    result.inputs["source"] = source
    if report:
        write_json_atomic(report, result.to_dict(), force=force)
    console.print(result.table())
    console.print(f"{len(inputs)} inputs from {source}; batch sizes {', '.join(map(str, batch_sizes))}: "
                  + ("[bold green]PASS[/]" if result.passed else "[bold red]FAIL[/]")
                  + (f"; report: {report}" if report else ""))
    result.raise_if_failed()
