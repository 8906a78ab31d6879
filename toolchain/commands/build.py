"""``toolchain build``: ONNX -> FP16 TensorRT engine (+ manifest and layer information)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("build")
@click.argument("onnx_path", metavar="MODEL.onnx", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", "engine", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Engine file to write (default: MODEL.engine beside the ONNX).")
@click.option("--plugin", "plugin", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="TensorRT plugin library (default: the one `toolchain plugin build` made).")
@click.option("--lrn", type=click.Choice(["plugin", "native"]), default="plugin", show_default=True,
              help="How the ONNX carries LRN: FusedLRN nodes for the plugin, or the standard ONNX LRN.")
@click.option("--min-batch", type=click.IntRange(min=1), default=None, help="Profile min batch [1].")
@click.option("--opt-batch", type=click.IntRange(min=1), default=None, help="Profile opt batch [max batch].")
@click.option("--max-batch", type=click.IntRange(min=1), default=None, help="Profile max batch [256].")
@click.option("--workspace-mib", type=click.IntRange(min=1), default=None,
              help="Builder workspace limit in MiB (default: TensorRT's, the GPU's memory).")
@click.option("--timing-cache", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Timing cache file: loaded if present, updated after the build.")
@click.option("--allow-fp32", is_flag=True,
              help="TensorRT 11: build an FP32 engine from an FP32 ONNX instead of refusing.")
@click.option("--version-compatible", is_flag=True,
              help="Build a version-compatible engine with the dynamic plugin library serialized into it "
                   "(runs on the lean runtime and later TensorRT releases of the same major).")
@click.option("--force", is_flag=True, help="Overwrite the engine, its manifest and layer file.")
@click.option("-v", "--verbose", is_flag=True, help="Show TensorRT's info messages.")
def build(onnx_path, engine, plugin, lrn, min_batch, opt_batch, max_batch, workspace_mib, timing_cache, allow_fp32,
          version_compatible, force, verbose):
    """Build an FP16 TensorRT engine from MODEL.onnx (from `toolchain export`) through the LRN plugin.

    A Q/DQ MODEL.onnx (from `toolchain quantize`) gives an INT8 engine (explicit quantization).
    """
    from toolchain.trt.builder import build_engine
    from toolchain.trt.manifest import layers_path, manifest_path, read_manifest

    from toolchain.io import guard_output

    engine = engine or onnx_path.with_suffix(".engine")
    inputs = {"MODEL.onnx": onnx_path, "--plugin": plugin, "--timing-cache": timing_cache}
    for output in (engine, manifest_path(engine), layers_path(engine)):  # the engine and its two records
        guard_output(output, force=force, inputs=inputs, what="--output")
    path = build_engine(onnx_path, engine, plugin_library=plugin, lrn=lrn, min_batch=min_batch, opt_batch=opt_batch,
                        max_batch=max_batch, workspace_mib=workspace_mib, timing_cache=timing_cache, force=force,
                        allow_fp32=allow_fp32, verbose=verbose, version_compatible=version_compatible)
    manifest = read_manifest(path)
    build_info = manifest["build"]
    profile = next(iter(build_info["profile"].values()))
    click.echo(f"engine    {path} ({manifest['engine']['bytes'] / 1e6:.1f} MB, {build_info['precision']}, "
               f"TensorRT {manifest['environment']['tensorrt']}, {build_info['seconds']:.1f} s"
               f"{', version-compatible' if build_info.get('version_compatible') else ''})")
    click.echo(f"profile   min {profile['min']} opt {profile['opt']} max {profile['max']}")
    click.echo(f"plugin    {len(manifest['layers']['network_plugin_layers'])} FusedLRN layer(s)"
               if lrn == "plugin" else f"lrn       native ({manifest['layers']['network_lrn_layers']} LRN layer(s))")
    click.echo(f"manifest  {manifest_path(path)}")
    click.echo(f"layers    {layers_path(path)}")
