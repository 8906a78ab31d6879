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
@click.option("--lrn", type=click.Choice(["plugin", "native", "function"]), default="plugin", show_default=True,
              help="How LRN reaches the engine: the FusedLRN nodes through the plugin; the standard ONNX LRN of a "
                   "--lrn native export; or the FusedLRN nodes' standard-op local function (no plugin).")
@click.option("--tensorrt", "builder", type=click.Choice(["auto", "full", "rtx"]), default="auto", show_default=True,
              help="Builder: the full TensorRT (needs a GPU), TensorRT-RTX (builds on the CPU, for RTX-class GPUs), "
                   "or the full one when installed, else TensorRT-RTX.")
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
@click.option("--embed-plugin", is_flag=True,
              help="Serialize the dynamic plugin library into the engine (a self-contained file; TensorRT-RTX, or "
                   "with --version-compatible).")
@click.option("--compute-capability", "compute_capabilities", multiple=True, metavar="CC",
              help="TensorRT-RTX target, e.g. 8.6 or sm_89; repeat for several (default: RTX's portable set).")
@click.option("--force", is_flag=True, help="Overwrite the engine, its manifest and layer file.")
@click.option("-v", "--verbose", is_flag=True, help="Show TensorRT's info messages.")
def build(onnx_path, engine, plugin, lrn, builder, min_batch, opt_batch, max_batch, workspace_mib, timing_cache,
          allow_fp32, version_compatible, embed_plugin, compute_capabilities, force, verbose):
    """Build an FP16 TensorRT engine from MODEL.onnx (from `toolchain export`) through the LRN plugin.

    A Q/DQ MODEL.onnx (from `toolchain quantize`) gives an INT8 engine (explicit quantization).
    TensorRT-RTX builds without a GPU; its engine is compiled for the GPU that loads it.
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
                        allow_fp32=allow_fp32, verbose=verbose, version_compatible=version_compatible,
                        embed_plugin=embed_plugin, compute_capabilities=compute_capabilities, tensorrt=builder)
    for line in describe_engine(read_manifest(path), path):
        click.echo(line)
    click.echo(f"manifest  {manifest_path(path)}")
    click.echo(f"layers    {layers_path(path)}")


def describe_engine(manifest: dict, path) -> list[str]:
    """The lines `toolchain build` prints about a built engine, from its manifest."""
    from toolchain.trt.compat import manifest_flavour

    build_info, layers = manifest["build"], manifest["layers"]
    profile = next(iter(build_info["profile"].values()))
    flavour = manifest_flavour(manifest)
    lines = [f"engine    {path} ({manifest['engine']['bytes'] / 1e6:.1f} MB, {build_info['precision']}, "
             f"{flavour.label}, {build_info['seconds']:.1f} s"
             f"{', version-compatible' if build_info.get('version_compatible') else ''})",
             f"profile   min {profile['min']} opt {profile['opt']} max {profile['max']}"]
    if flavour.rtx:
        targets = build_info.get("targets")
        lines.append(f"targets   {', '.join(targets) if isinstance(targets, list) else 'portable (every RTX target)'}")
    if build_info["lrn"] == "plugin":
        embedded = " (library serialized into the engine)" if (manifest.get("plugin") or {}).get("serialized_in_engine") else ""
        lines.append(f"plugin    {len(layers['network_plugin_layers'])} FusedLRN layer(s){embedded}")
    elif build_info["lrn"] == "native":
        lines.append(f"lrn       native ({layers['network_lrn_layers']} LRN layer(s))")
    else:
        lines.append("lrn       FusedLRN local function as standard layers")
    by_type = layers.get("by_type") or {}
    if by_type:
        lines.append(f"layers    {layers['network_layers']} in the network: "
                     + ", ".join(f"{count} {name}" for name, count in by_type.items()))
    loaded = manifest.get("loaded") or {}
    if loaded.get("loaded") is False:
        lines.append(f"not loaded here: {loaded.get('reason')}")
    return lines
