"""``toolchain quantize``: a checkpoint -> calibrated INT8 Q/DQ ONNX (ONNX Runtime's quantize_static)."""

from __future__ import annotations

import click

from toolchain.quantize import DEFAULT_METHOD, DEFAULT_SAMPLES, DEFAULT_TARGET, METHODS, TARGETS


@click.command("quantize")
@click.option("--checkpoint", type=click.Path(dir_okay=False), required=True, help="Checkpoint to quantize.")
@click.option("--onnx", "onnx_path", type=click.Path(dir_okay=False),
              help="Its FP32 export (default: exported here into a temporary folder).")
@click.option("-o", "--output", "outputs", type=click.Path(dir_okay=False), required=True, multiple=True,
              help="Q/DQ ONNX file to write; repeat with one --target each for several files from one calibration.")
@click.option("--calibration", help="Dataset whose training split calibrates (default: the checkpoint's).")
@click.option("--data-dir", type=click.Path(file_okay=False))
@click.option("--samples", type=int, default=DEFAULT_SAMPLES, show_default=True, help="Calibration images.")
@click.option("--method", type=click.Choice(METHODS), default=DEFAULT_METHOD, show_default=True,
              help="How activation ranges are chosen from the calibration data.")
@click.option("--target", "targets", type=click.Choice(TARGETS), multiple=True,
              help=f"[default: {DEFAULT_TARGET}] tensorrt: Q/DQ on Conv/Gemm inputs, float biases (TensorRT builds "
                   "it); onnxruntime: also on their outputs with INT32 biases, fused by ONNX Runtime's CPU kernels "
                   "(TensorRT cannot parse it). Repeat, paired in order with -o.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the choice of calibration images.")
@click.option("--force", is_flag=True, help="Overwrite the output files if they exist.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary only.")
def quantize(checkpoint, onnx_path, outputs, calibration, data_dir, samples, method, targets, seed, force, as_json):
    """Post-training static INT8 quantization into a Q/DQ ONNX for ONNX Runtime and TensorRT.

    Symmetric INT8 (zero point 0), per-channel weights, Q/DQ on the inputs of every
    Conv and Gemm (and, with --target onnxruntime, on their outputs); the FusedLRN
    nodes and their local function are kept. Calibrates once, on training-split
    images (never the validation split), for every --target/-o pair:

        toolchain quantize --checkpoint m.safetensors --target tensorrt -o trt.onnx --target onnxruntime -o ort.onnx
    """
    from toolchain.quantize import pair_outputs, quantize_checkpoint_targets, summary_json

    results = quantize_checkpoint_targets(checkpoint, pair_outputs(outputs, targets), onnx_path=onnx_path,
                                          calibration=calibration, samples=samples, method=method,
                                          data_dir=data_dir, seed=seed, force=force)
    if as_json:
        click.echo(summary_json(results if len(results) > 1 else next(iter(results.values()))))
        return
    for target, result in results.items():
        s = result.summary
        meta = result.metadata
        click.echo(f"wrote {result.path} ({result.path.stat().st_size / 1e6:.1f} MB) in {result.seconds:.1f} s: "
                   f"{len(s.quantized_ops)} Conv/Gemm on INT8 Q/DQ ({s.quantize_nodes} Q, {s.dequantize_nodes} DQ, "
                   f"zero point 0, per-channel weights), {len(s.fused_lrn)} FusedLRN kept, for {target}; "
                   f"{meta['toolchain.quant_method']} calibration on {meta['toolchain.quant_calibration']}"
                   + (" (the same ranges for every file)" if len(results) > 1 else "")
                   + "; checker passed, ONNX Runtime CPU ran it")
