"""``toolchain parity``: a backend's outputs against eager PyTorch on the same inputs."""

from __future__ import annotations

import click

from toolchain.bench.backends import BACKEND_NAMES
from toolchain.options import batch_sizes_callback
from toolchain.validate import IMAGE_SIZE, IN_CHANNELS, NUM_CLASSES, TOLERANCE, count




@click.command("parity")
@click.option("--backend", type=click.Choice(["onnxruntime", "tensorrt", *BACKEND_NAMES]), default="onnxruntime",
              show_default=True, help="The candidate: onnxruntime (CPU), tensorrt, or any benchmark backend "
                                      "(the same runners the benchmark times).")
@click.option("--onnx", "onnx_path", type=click.Path(dir_okay=False),
              help="ONNX file (the candidate for onnxruntime; its metadata describes the model).")
@click.option("--engine", type=click.Path(dir_okay=False), help="TensorRT engine (the candidate for tensorrt).")
@click.option("--plugin-library", type=click.Path(dir_okay=False), help="TensorRT: the LRN plugin library.")
@click.option("--checkpoint", type=click.Path(dir_okay=False), help="Reference checkpoint.")
@click.option("--variant", help="Reference variant (random/pretrained weights as recorded in the ONNX metadata).")
@click.option("--image-size", type=IMAGE_SIZE, help="Reference variant's input size (default: ONNX metadata).")
@click.option("--num-classes", type=NUM_CLASSES, help="Reference variant's classes (default: ONNX metadata).")
@click.option("--in-channels", type=IN_CHANNELS, help="Reference variant's channels (default: ONNX metadata).")
@click.option("--dataset", help="Compare on this dataset's validation split (default: the checkpoint's).")
@click.option("--data-dir", type=click.Path(file_okay=False))
@click.option("--limit", type=count(1), help="At most N validation images.")
@click.option("--random", "random_n", type=count(1),
              help="Compare on N seeded random inputs instead (default with no dataset: 16, or the largest batch size).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for --random.")
@click.option("--batch-sizes", default="1,32", show_default=True, callback=batch_sizes_callback,
              help="Comma-separated batch sizes; every input runs at each.")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]),
              help="Default tolerances (default: the ONNX's precision or dtype; the engine's for tensorrt).")
@click.option("--atol", type=TOLERANCE)
@click.option("--rtol", type=TOLERANCE)
@click.option("--min-cosine", type=TOLERANCE)
@click.option("--min-top1-agreement", type=TOLERANCE)
@click.option("--max-accuracy-drop", type=TOLERANCE)
@click.option("--range-atol", type=TOLERANCE, help="Extra allowed error, as a fraction of the reference's range.")
@click.option("--tolerances", "tolerances_file", type=click.Path(dir_okay=False),
              help="JSON with tolerance fields, optionally {'outputs': {'logits': {...}}}.")
@click.option("--device", default="cpu", show_default=True, help="Device of the eager reference.")
@click.option("--fused-lrn", is_flag=True, help="The eager reference runs LRN through the fused op.")
@click.option("--layerwise", is_flag=True,
              help="Compare every layer's output (paired by PyTorch module name) and name the first that diverges "
                   "(onnxruntime only).")
@click.option("--layerwise-samples", type=click.IntRange(min=1), default=4, show_default=True,
              help="Inputs for --layerwise.")
@click.option("--report", type=click.Path(dir_okay=False), help="Write the full JSON report here.")
@click.option("--force", is_flag=True, help="Overwrite --report if it exists.")
def parity(backend, onnx_path, engine, plugin_library, checkpoint, variant, image_size, num_classes, in_channels,
           dataset, data_dir, limit, random_n, seed, batch_sizes, precision, atol, rtol, min_cosine,
           min_top1_agreement, max_accuracy_drop, range_atol, tolerances_file, device, fused_lrn, layerwise,
           layerwise_samples, report, force):
    """Run the candidate backend and eager PyTorch on the same inputs; fail on any check.

    Every check runs before the verdict; the exit code is 4 when any fails. With
    --layerwise, every layer is compared instead and the first divergent one is named
    (``first_divergent`` in the report; exit code 4 when there is one).
    """
    from rich.console import Console

    from toolchain.errors import ToolchainError
    from toolchain.export import read_metadata
    from toolchain.data import dataset_inputs_paths
    from toolchain.io import guard_output, write_json_atomic
    from toolchain.parity import (dataset_inputs, default_precision, load_reference, load_tolerances, random_inputs,
                                  run_parity)
    from toolchain.runners import TorchRunner, make_runner

    if report:  # before any work: parity can take minutes, then fail on the write
        guard_output(report, force=force, what="--report",
                     inputs=[("--onnx", onnx_path), ("--engine", engine), ("--checkpoint", checkpoint),
                             ("--plugin-library", plugin_library), ("--tolerances", tolerances_file),
                             *dataset_inputs_paths(dataset, data_dir)])
    if dataset and random_n:
        raise ToolchainError("--dataset and --random exclude each other")
    if fused_lrn and not device.startswith("cuda"):  # on the CPU it would silently run PyTorch's own LRN
        raise ToolchainError("--fused-lrn runs LRN through the CUDA kernel, and --device is the CPU",
                             hint="pass --device cuda on a machine with a GPU, or leave --fused-lrn out")
    if layerwise and not backend.startswith("onnxruntime"):
        raise ToolchainError("--layerwise covers --backend onnxruntime only",
                             hint="TensorRT engines expose their layers only when built with marked outputs")
    if backend.startswith("onnxruntime") and not onnx_path:
        raise ToolchainError(f"--backend {backend} needs --onnx PATH")
    if backend.startswith("tensorrt") and not engine:
        raise ToolchainError(f"--backend {backend} needs --engine PATH")
    onnx_meta = read_metadata(onnx_path) if onnx_path else {}
    ref = load_reference(checkpoint=checkpoint, variant=variant, onnx_meta=onnx_meta, image_size=image_size,
                         num_classes=num_classes, in_channels=in_channels)
    meta = {**onnx_meta, **ref.meta}  # the split and dataset come from the checkpoint when there is one
    if onnx_path and not layerwise:  # --layerwise is the tool that locates where the weights differ
        from toolchain.weights import verify_onnx_weights

        verify_onnx_weights(ref.model, onnx_path, onnx_label=f"--onnx {onnx_path}",
                            reference_label=f"checkpoint {checkpoint}" if checkpoint else
                            f"the reference (variant {meta.get('variant')}, weights {meta.get('weights')})")
    named = None
    if backend in BACKEND_NAMES:  # one of the benchmark's runners, built by the benchmark's loader
        import copy

        from toolchain.bench.backends import make_backends
        from toolchain.errors import MissingDependencyError

        shape = (int(meta["in_channels"]), int(meta["image_size"]), int(meta["image_size"]))
        (named,) = make_backends(model_factory=lambda: copy.deepcopy(ref.model), input_shape=shape, onnx=onnx_path,
                                 engine=engine, native_engine=engine, plugin_library=plugin_library, names=[backend],
                                 device="cuda" if device.startswith("cuda") else "cpu", include_compile=True)
        if named.unavailable:
            raise MissingDependencyError(f"{named.name} cannot run here: {named.unavailable}")
    if precision is None:
        if named and not backend.startswith(("onnxruntime", "tensorrt")):
            precision = named.precision  # eager FP16, fused LRN, ...: what the runner computes in
        else:  # what the file says: a quantized ONNX, the engine's manifest, the ONNX dtype
            manifest = None
            if backend.startswith("tensorrt") and engine is not None:
                from toolchain.trt.manifest import manifest_path, read_manifest

                manifest = read_manifest(engine) if manifest_path(engine).is_file() else None
            precision = default_precision("tensorrt" if backend.startswith("tensorrt") else backend, onnx_meta,
                                          manifest)
    tolerances = load_tolerances(precision, file=tolerances_file, atol=atol, rtol=rtol, min_cosine=min_cosine,
                                 min_top1_agreement=min_top1_agreement, max_accuracy_drop=max_accuracy_drop,
                                 range_atol=range_atol)

    labels = None
    dataset = dataset or (None if random_n else meta.get("dataset"))
    if dataset:
        inputs, labels = dataset_inputs(dataset, meta, limit=limit, data_dir=data_dir)
        source = f"{dataset} validation split"
    else:
        inputs = random_inputs(random_n or max([16, *([] if layerwise else batch_sizes)]), meta, seed=seed)
        source = f"seeded random inputs (seed {seed})"
    if not layerwise:
        from toolchain.parity import check_batch_sizes

        check_batch_sizes(batch_sizes, len(inputs),
                          more="a larger --random N" if labels is None else
                          ("a larger --limit" if limit else "--random N inputs"))

    console = Console(stderr=False)
    if layerwise:
        from toolchain.layerwise import run_layerwise
        from toolchain.parity import ParityError

        result = run_layerwise(ref.model, onnx_path, inputs[:layerwise_samples], precision=precision)
        data = {**result.to_dict(), "inputs": f"{min(len(inputs), layerwise_samples)} of {source}"}
        if report:
            write_json_atomic(report, data, force=force)
        console.print(result.table())
        if result.first_divergent is not None:
            layer = next(x for x in result.layers if x["module"] == result.first_divergent)
            raise ParityError(f"first divergent layer: {result.first_divergent} (error/range "
                              f"{layer.get('error_over_range', float('nan')):.3g} > {layer.get('limit')})",
                              hint="fix that module's export or weights" + (f"; report: {report}" if report else ""))
        console.print(f"{len(result.layers)} layers compared on {data['inputs']}: [bold green]no divergent layer[/]"
                      + (f"; report: {report}" if report else ""))
        return
    if named is not None:
        candidate = named.make()
    elif backend == "onnxruntime":
        candidate = make_runner("onnxruntime", path=onnx_path)
    else:
        options = {"plugin_library": plugin_library} if plugin_library else {}
        candidate = make_runner("tensorrt", engine_path=engine, **options)
    reference = TorchRunner(ref.model, device=device, fused_lrn=fused_lrn)
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
    result.raise_if_failed(report=report)
