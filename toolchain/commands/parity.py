"""``toolchain parity``: a backend's outputs against eager PyTorch on the same inputs."""

from __future__ import annotations

import click

from toolchain.backends import ALL_NAMES
from toolchain.options import artifact_file_options, batch_sizes_callback, model_source_options
from toolchain.validate import TOLERANCE, count


@click.command("parity")
@click.option("--backend", type=click.Choice(ALL_NAMES), default="onnxruntime", show_default=True,
              help="The candidate: onnxruntime (CPU, any ONNX file), tensorrt (any engine), or any benchmark backend, "
                   "with the same file flag as in the benchmark.")
@artifact_file_options
@model_source_options
@click.option("--dataset", help="Compare on this dataset's validation split (default: the checkpoint's).")
@click.option("--data-dir", type=click.Path(file_okay=False))
@click.option("--limit", type=count(1), help="At most N validation images.")
@click.option("--random", "random_n", type=count(1),
              help="Compare on N seeded random inputs instead (default with no dataset: 16, or the largest batch size).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for --random.")
@click.option("--batch-sizes", default="1,32", show_default=True, callback=batch_sizes_callback,
              help="Comma-separated batch sizes; every input runs at each.")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]),
              help="Tolerances (default and only choice: what the file or runner computes in).")
@click.option("--allow-precision-mismatch", is_flag=True,
              help="Let --precision differ from what the file computes in (the report records it).")
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
              help="Compare every layer's output (paired by PyTorch module name) with the same tolerances and name "
                   "the first that diverges (ONNX Runtime backends).")
@click.option("--layerwise-samples", type=click.IntRange(min=1), default=4, show_default=True,
              help="Inputs for --layerwise.")
@click.option("--report", type=click.Path(dir_okay=False), help="Write the full JSON report here.")
@click.option("--force", is_flag=True, help="Overwrite --report if it exists.")
def parity(backend, onnx_path, onnx_int8, engine, native_engine, int8_engine, plugin_library, checkpoint, variant,
           image_size, num_classes, in_channels, dataset, data_dir, limit, random_n, seed, batch_sizes, precision,
           allow_precision_mismatch, atol, rtol, min_cosine, min_top1_agreement, max_accuracy_drop, range_atol,
           tolerances_file, device, fused_lrn, layerwise, layerwise_samples, report, force):
    """Run the candidate backend and eager PyTorch on the same inputs; fail on any check.

    Every check runs before the verdict; the exit code is 4 when any fails. With
    --layerwise, every layer is compared instead and the first divergent one is named
    (``first_divergent`` in the report; exit code 4 when there is one).
    """
    from rich.console import Console

    from toolchain.backends import Files
    from toolchain.data import dataset_inputs_paths
    from toolchain.io import guard_output, write_json_atomic
    from toolchain.options import check_model_source
    from toolchain.parity import ParityError
    from toolchain.parity_check import ParityRequest, prepare, run_check, run_layers

    files = Files(onnx=onnx_path, onnx_int8=onnx_int8, engine=engine, native_engine=native_engine,
                  int8_engine=int8_engine, plugin_library=plugin_library)
    if report:  # before any work: parity can take minutes, then fail on the write
        guard_output(report, force=force, what="--report",
                     inputs=[("--onnx", onnx_path), ("--onnx-int8", onnx_int8), ("--engine", engine),
                             ("--native-engine", native_engine), ("--int8-engine", int8_engine),
                             ("--checkpoint", checkpoint), ("--plugin-library", plugin_library),
                             ("--tolerances", tolerances_file), *dataset_inputs_paths(dataset, data_dir)])
    check_model_source(checkpoint, variant, image_size, num_classes, in_channels)
    request = ParityRequest(
        backend=backend, files=files, checkpoint=checkpoint, variant=variant, image_size=image_size,
        num_classes=num_classes, in_channels=in_channels, dataset=dataset, data_dir=data_dir, limit=limit,
        random_n=random_n, seed=seed, batch_sizes=tuple(batch_sizes), precision=precision,
        allow_precision_mismatch=allow_precision_mismatch, tolerances_file=tolerances_file,
        overrides=dict(atol=atol, rtol=rtol, min_cosine=min_cosine, min_top1_agreement=min_top1_agreement,
                       max_accuracy_drop=max_accuracy_drop, range_atol=range_atol),
        device=device, fused_lrn=fused_lrn, verify_weights=not layerwise,  # --layerwise locates weight differences
        layerwise_samples=layerwise_samples if layerwise else None)
    prepared = prepare(request)
    console = Console(stderr=False)
    if layerwise:
        result = run_layers(prepared, layerwise_samples)
        inputs = f"{min(len(prepared.inputs), layerwise_samples)} of {prepared.source}"
        data = {**result.to_dict(), "inputs": inputs}
        if report:
            write_json_atomic(report, data, force=force)
        console.print(result.table())
        if result.first_divergent is not None:
            layer = next(x for x in result.layers if x["module"] == result.first_divergent)
            raise ParityError(f"first divergent layer: {result.first_divergent} ({layer.get('detail')})",
                              hint="fix that module's export or weights" + (f"; report: {report}" if report else ""))
        console.print(f"{len(result.layers)} layers compared on {inputs}: [bold green]no divergent layer[/]"
                      + (f"; report: {report}" if report else ""))
        return
    result = run_check(prepared, request)
    if report:
        write_json_atomic(report, result.to_dict(), force=force)
    console.print(result.table())
    for note in result.notes:
        console.print(f"[yellow]note[/]: {note}", highlight=False)
    console.print(f"{len(prepared.inputs)} inputs from {prepared.source}; batch sizes "
                  f"{', '.join(map(str, batch_sizes))}: " + ("[bold green]PASS[/]" if result.passed else
                                                              "[bold red]FAIL[/]")
                  + (f"; report: {report}" if report else ""))
    result.raise_if_failed(report=report)
