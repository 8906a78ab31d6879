"""``toolchain plugin``: build and locate the FusedLRN kernel and TensorRT plugin libraries."""

from __future__ import annotations

from pathlib import Path

import click


@click.group("plugin")
def plugin():
    """Build and locate the LRN kernel and TensorRT plugin libraries."""


@plugin.command("build")
@click.option("--build-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("build/plugins"),
              show_default=True, help="CMake build folder.")
@click.option("--cuda-archs", default=None,
              help='CMake CUDA architectures, e.g. "80;90" or "native" (default: the project\'s "80-real;90").')
@click.option("--tensorrt-root", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="TensorRT prefix with include/ and lib/, or an include folder alone (headers only: just the "
                   "dynamic plugin, which TensorRT-RTX loads). Default: $TensorRT_ROOT, the pip tensorrt package, "
                   "system paths.")
@click.option("--library-kind", type=click.Choice(["auto", "full", "lean"]), default="auto", show_default=True,
              help="TensorRT library the static plugin links: libnvinfer (full), libnvinfer_lean (lean: for the "
                   "lean runtime and version-compatible deployments), or full when found, else lean (auto).")
@click.option("--with-asan", is_flag=True, help="Also build AddressSanitizer copies of the plugin and the conformance harness.")
@click.option("--force", is_flag=True, help="Reconfigure from scratch and rebuild everything.")
def build(build_dir: Path, cuda_archs: str | None, tensorrt_root: Path | None, library_kind: str, with_asan: bool,
          force: bool):
    """Compile the kernel library, and the TensorRT plugin where TensorRT is found."""
    from toolchain.plugin import HARNESS_NAMES, LIBRARY_NAMES, build_plugins

    result = build_plugins(build_dir, cuda_archs=cuda_archs, tensorrt_root=tensorrt_root, library_kind=library_kind,
                           conformance_asan=with_asan, force=force)
    for kind in (*LIBRARY_NAMES, *HARNESS_NAMES):
        if result.get(kind):
            click.echo(f"{kind:17s} {result[kind]}")
    if result["tensorrt_major"] and result["tensorrt_library"]:
        flavour = "lean runtime" if result["tensorrt_lean"] else "full runtime"
        click.echo(f"{'TensorRT':17s} {result['tensorrt_major']}.x {flavour}: {result['tensorrt_library']}")
    elif result["tensorrt_major"]:
        click.echo(f"{'TensorRT':17s} {result['tensorrt_major']}.x headers only: the dynamic-registration plugin "
                   "(what TensorRT-RTX and IPluginRegistry.loadLibrary load)")
    if result["tensorrt_skipped"]:
        click.echo(f"TensorRT plugin skipped: {result['tensorrt_skipped']}")
    click.echo(f"log               {result['log']}")


@plugin.command("check")
@click.option("--library", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Plugin library to check (default: the built libtoolchain_lrn_plugin.so). A *_dynamic.so is "
                   "loaded with IPluginRegistry.loadLibrary, any other with dlopen (static registration).")
@click.option("--onnx", "onnx_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also check that the plugin accepts every FusedLRN node of this model.")
@click.option("--tensorrt", type=click.Choice(["auto", "full", "rtx", "lean"]), default="auto", show_default=True,
              help="Whose registry to check in: a builder (the full TensorRT, TensorRT-RTX; with --onnx it also parses "
                   "the model and builds a batch-1 engine), or the lean runtime's; auto: a builder when installed.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with `passed` and the checks.")
@click.option("--numerics/--no-numerics", default=None,
              help="Run each node through the plugin's enqueue against PyTorch (default: when a GPU is present).")
def check(library: Path | None, onnx_path: Path | None, tensorrt: str, as_json: bool, numerics: bool | None):
    """Check a plugin library against the installed TensorRT (full or lean) and a model's FusedLRN nodes."""
    import json

    from toolchain.errors import ToolchainError
    from toolchain.plugin_check import run_plugin_check

    report = run_plugin_check(library, onnx_path, numerics=numerics, tensorrt=tensorrt)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        _print_check(report)
    if not report.passed:
        raise ToolchainError(f"plugin check failed: {report.failure()}")


def _print_check(report) -> None:
    def mark(ok):
        return "skip" if ok is None else ("ok  " if ok else "FAIL")

    trt = report.tensorrt
    click.echo(f"TensorRT  {trt.get('module')} {trt.get('version')}")
    lib = report.library
    click.echo(f"library   {lib.get('path')} ({lib.get('registration')} registration)\n          sha256 {lib.get('sha256')}")
    for c in report.checks:
        click.echo(f"{mark(c.passed)}  {c.name}" + (f": {c.detail}" if c.detail else ""))
    for n in report.nodes:
        attrs = ", ".join(f"{k}={v}" for k, v in n.attributes.items())
        line = f"{mark(n.accepted)}  node {n.name} ({attrs})"
        if not n.accepted:
            line += f": {n.reason or 'refused'}"
        if n.numerics:
            num = n.numerics
            line += (f"; numerics {mark(num['ok']).strip()} {num['dtype']} {tuple(num['shape'])}"
                     + (f" max|err| {num['max_abs_error']:.2g}" if "max_abs_error" in num else f" {num.get('detail')}"))
        click.echo(line)
    click.echo("passed" if report.passed else "FAILED")


@plugin.command("info")
def info():
    """Show the libraries found ($TOOLCHAIN_PLUGIN_DIR, ./build/plugins, <repo>/build/plugins) and their sha256."""
    from toolchain.plugin import PLUGIN_DIR_ENV, find_nvcc, library_info

    for row in library_info():
        if row["path"]:
            click.echo(f"{row['kind']:17s} {row['path']}\n{'':17s} sha256 {row['sha256']}")
        else:
            click.echo(f"{row['kind']:17s} not found ({row['name']})")
    nvcc = find_nvcc()
    click.echo(f"{'nvcc':17s} {nvcc if nvcc else 'not found'}")
    click.echo(f"search order: ${PLUGIN_DIR_ENV}, ./build/plugins, <repo>/build/plugins")
