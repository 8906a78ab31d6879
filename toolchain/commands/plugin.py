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
              help="TensorRT prefix with include/ and lib/ (default: $TensorRT_ROOT, the pip tensorrt package, system paths).")
@click.option("--force", is_flag=True, help="Reconfigure from scratch and rebuild everything.")
def build(build_dir: Path, cuda_archs: str | None, tensorrt_root: Path | None, force: bool):
    """Compile the kernel library, and the TensorRT plugin where TensorRT is found."""
    from toolchain.plugin import LIBRARY_NAMES, build_plugins

    result = build_plugins(build_dir, cuda_archs=cuda_archs, tensorrt_root=tensorrt_root, force=force)
    for kind in LIBRARY_NAMES:
        if result[kind]:
            click.echo(f"{kind:17s} {result[kind]}")
    if result["tensorrt_skipped"]:
        click.echo(f"TensorRT plugin skipped: {result['tensorrt_skipped']}")
    click.echo(f"log               {result['log']}")


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
