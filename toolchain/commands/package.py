"""``toolchain package --triton DIR``: a Triton Inference Server model repository for an engine."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("package")
@click.option("--triton", "repo", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Model repository folder to write (replaced as a whole with --force).")
@click.option("--engine", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Engine from `toolchain build` (its .manifest.json must be beside it).")
@click.option("--plugin", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Plugin library (default: the one recorded in the manifest); its sha256 must match.")
@click.option("--model-name", default="alexnet", show_default=True, help="Triton model name.")
@click.option("--max-batch", type=click.IntRange(min=0), default=None,
              help="Triton max_batch_size (default: the profile's max; 0: no Triton batching, full dims).")
@click.option("--force", is_flag=True, help="Replace an existing repository folder.")
def package(repo, engine, plugin, model_name, max_batch, force):
    """Write DIR/<model>/1/model.plan, config.pbtxt, the plugin library and a README (no TensorRT needed)."""
    from toolchain.trt.triton import package_triton

    result = package_triton(repo, engine, plugin_library=plugin, model_name=model_name, max_batch=max_batch, force=force)
    click.echo(f"repository {result['repository']} (model {result['model']}, max_batch_size {result['max_batch_size']})")
    for name in result["files"]:
        click.echo(f"  {name}")
    click.echo(f"see {Path(result['repository']) / 'README.md'} to start tritonserver")
