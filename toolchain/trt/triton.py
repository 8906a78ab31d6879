"""A Triton Inference Server model repository for an engine, from its files and manifest alone.

Layout (``DIR`` is owned by the package: it is built in a temporary folder beside
it and renamed into place; ``force`` replaces an existing one)::

    DIR/README.md                      how to start tritonserver with the plugin
    DIR/plugins/libtoolchain_lrn_plugin.so
    DIR/<model>/config.pbtxt           platform "tensorrt_plan", I/O from the manifest
    DIR/<model>/labels.txt             class names (the classification extension)
    DIR/<model>/engine.manifest.json   the engine's manifest (provenance, hashes)
    DIR/<model>/1/model.plan           the engine

Triton loads custom TensorRT plugins either with ``LD_PRELOAD`` (Triton's "custom
operations" guide) or with ``--backend-config=tensorrt,plugins="a.so;b.so"``
(the TensorRT backend's README); the README written here shows both. Our plugin
registers itself when its library is loaded, which both ways do.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from toolchain.errors import ToolchainError
from toolchain.io import guard_output, require_file, sha256_file, staged_folder
from toolchain.trt import manifest as manifest_mod

#: numpy dtype name (manifest) -> Triton data type.
TRITON_DTYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "bfloat16": "TYPE_BF16", "int8": "TYPE_INT8",
                 "int32": "TYPE_INT32", "int64": "TYPE_INT64", "bool": "TYPE_BOOL", "uint8": "TYPE_UINT8"}
_MODEL_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def batching_mode(manifest: dict, max_batch: int | None) -> int:
    """Triton's max_batch_size for this engine: >0 uses Triton's batching, 0 gives full dims.

    Batching needs a dynamic first axis on every input and output and a profile
    that starts at batch 1; max_batch defaults to the profile's max and cannot exceed it.
    """
    inputs, outputs = manifest["io"]["inputs"], manifest["io"]["outputs"]
    batchable = all(spec["shape"] and spec["shape"][0] == -1 for spec in inputs + outputs) and all(
        spec.get("profile") and spec["profile"]["min"][0] == 1 for spec in inputs)
    profile_max = min((spec["profile"]["max"][0] for spec in inputs if spec.get("profile")), default=0)
    if max_batch is None:
        return profile_max if batchable else 0
    if max_batch < 0:
        raise ToolchainError(f"--max-batch must be >= 0, got {max_batch}")
    if max_batch == 0:
        return 0
    if not batchable:
        mins = [spec.get("profile", {}).get("min", ["?"])[0] for spec in inputs]
        raise ToolchainError(f"the engine cannot use Triton's batching (its profile's min batch is {mins[0]}, "
                             "or its batch axis is static)", hint="pass --max-batch 0, or rebuild with --min-batch 1")
    if max_batch > profile_max:
        raise ToolchainError(f"--max-batch {max_batch} exceeds the engine's profile max batch {profile_max}",
                             hint=f"use --max-batch <= {profile_max} or rebuild with a larger --max-batch")
    return max_batch


def _dims(shape: list[int], batched: bool) -> str:
    dims = shape[1:] if batched else shape
    return "[ " + ", ".join(str(int(d)) for d in dims) + " ]"


def triton_config(manifest: dict, *, model_name: str = "alexnet", max_batch: int | None = None,
                  labels: bool = False, instances: int = 1) -> str:
    """The config.pbtxt text for the engine described by ``manifest``."""
    if not _MODEL_NAME.match(model_name):
        raise ToolchainError(f"invalid Triton model name {model_name!r}", hint="use letters, digits, '_', '-', '.'")
    max_batch_size = batching_mode(manifest, max_batch)
    batched = max_batch_size > 0
    lines = [f'name: "{model_name}"', 'platform: "tensorrt_plan"', f"max_batch_size: {max_batch_size}"]
    for kind, specs in (("input", manifest["io"]["inputs"]), ("output", manifest["io"]["outputs"])):
        entries = []
        for spec in specs:
            dtype = TRITON_DTYPES.get(spec["dtype"])
            if dtype is None:
                raise ToolchainError(f"{kind} {spec['name']!r} has dtype {spec['dtype']}, which Triton's config cannot express")
            body = [f'    name: "{spec["name"]}"', f"    data_type: {dtype}", f"    dims: {_dims(spec['shape'], batched)}"]
            if kind == "output" and labels:
                body.append('    label_filename: "labels.txt"')
            entries.append("  {\n" + "\n".join(body) + "\n  }")
        lines.append(f"{kind} [\n" + ",\n".join(entries) + "\n]")
    if batched:
        lines.append("dynamic_batching { }")
    lines.append(f"instance_group [\n  {{\n    count: {int(instances)}\n    kind: KIND_GPU\n  }}\n]")
    return "\n".join(lines) + "\n"


def readme_text(manifest: dict, *, model_name: str, plugin_name: str | None, max_batch_size: int) -> str:
    env = manifest["environment"]
    gpu = env.get("gpu") or {}
    model = manifest.get("model") or {}
    inp = manifest["io"]["inputs"][0]
    out = manifest["io"]["outputs"][0]
    shape = ([1] + inp["shape"][1:]) if max_batch_size else [d if d != -1 else 1 for d in inp["shape"]]
    lines = [
        f"{README_TITLE}{model_name}",
        "",
        f"TensorRT engine built by toolchain {manifest.get('toolchain_version', '?')} with TensorRT {env['tensorrt']} "
        f"on {gpu.get('name', '?')} (compute capability {gpu.get('compute_capability', '?')}), "
        f"precision {manifest['build'].get('precision')}, LRN through {manifest['build'].get('lrn')}.",
        "",
        "Requirements: Triton's TensorRT must be the same version as the engine's "
        f"(**TensorRT {env['tensorrt']}**; the Triton release notes list each container's TensorRT), "
        f"and the GPU must have compute capability {gpu.get('compute_capability', '?')}.",
        "",
        "## Layout",
        "",
        "```",
        "README.md",
        *( [f"plugins/{plugin_name}            TensorRT plugin (FusedLRN), registers itself when loaded"] if plugin_name else []),
        f"{model_name}/config.pbtxt",
        f"{model_name}/labels.txt" if model.get("classes") else None,
        f"{model_name}/engine.manifest.json   build provenance and sha256 of every artifact",
        f"{model_name}/1/model.plan",
        "```",
        "",
    ]
    lines = [line for line in lines if line is not None]
    if plugin_name:
        lines += [
            "## Start the server",
            "",
            "The engine contains the FusedLRN plugin layer, so the plugin library must be loaded into",
            "tritonserver before the model is. Either preload it:",
            "",
            "```sh",
            "REPO=$(realpath .)   # this folder",
            f"LD_PRELOAD=$REPO/plugins/{plugin_name}${{LD_PRELOAD:+:$LD_PRELOAD}} \\",
            "  tritonserver --model-repository=$REPO",
            "```",
            "",
            "or let the TensorRT backend load it:",
            "",
            "```sh",
            "REPO=$(realpath .)   # this folder",
            f'tritonserver --model-repository=$REPO --backend-config=tensorrt,plugins="$REPO/plugins/{plugin_name}"',
            "```",
            "",
            "Inside a container, mount this folder (e.g. `-v $PWD:/models`) and use the paths inside the container.",
            "Without the plugin, loading fails with a message that no creator FusedLRN (namespace \"toolchain\") is registered.",
            "",
        ]
    else:
        lines += ["## Start the server", "", "```sh", "tritonserver --model-repository=$(realpath .)", "```", ""]
    lines += [
        "## Query it",
        "",
        f"Input `{inp['name']}`: {inp['dtype']} NCHW"
        + (f", resized to {model.get('image_size')}x{model.get('image_size')} and normalized with "
           f"mean {model.get('mean')} / std {model.get('std')} (per channel, on [0, 1] pixels)" if model.get("image_size") else "")
        + f". Output `{out['name']}`: {out['dtype']} scores per class.",
        "",
        "```sh",
        "curl -s localhost:8000/v2/health/ready && echo ready",
        f"curl -s localhost:8000/v2/models/{model_name}/config",
        "```",
        "",
        "A request (KServe v2 protocol) sends the input as `{\"inputs\": [{\"name\": \"" + inp["name"]
        + "\", \"shape\": " + str(shape) + ", \"datatype\": \"" + TRITON_DTYPES.get(inp["dtype"], "TYPE_FP32").removeprefix("TYPE_") + "\", \"data\": [...]}]}`"
        + " to `/v2/models/" + model_name + "/infer`; add `\"parameters\": {\"classification\": 5}` to an output"
        + " request to get the top-5 labels from labels.txt.",
        "",
        "## Integrity",
        "",
        f"- model.plan sha256 `{manifest['engine']['sha256']}`",
    ]
    if manifest.get("plugin"):
        lines.append(f"- {plugin_name} sha256 `{manifest['plugin']['sha256']}`")
    lines += ["", "Check with `sha256sum` before serving: both files are executable code.", ""]
    return "\n".join(lines)


def _resolve_plugin(manifest: dict, plugin_library) -> Path | None:
    recorded = manifest.get("plugin")
    if plugin_library is not None:
        return require_file(plugin_library, "plugin library")
    if not recorded:
        return None
    if Path(recorded["file"]).is_file():
        return Path(recorded["file"])
    from toolchain.trt.plugins import default_plugin_library

    return default_plugin_library()


README_TITLE = "# Triton model repository: "


def _is_repository(folder: Path) -> bool:
    """Whether ``folder`` is a repository this module wrote (its README starts with our title)."""
    try:
        return (folder / "README.md").read_text(encoding="utf-8", errors="replace").startswith(README_TITLE)
    except OSError:
        return False


def package_triton(repo_dir, engine_path, *, plugin_library=None, model_name: str = "alexnet",
                   max_batch: int | None = None, force: bool = False) -> dict:
    """Write the repository (see the module docstring); returns what was written."""
    repo_dir = Path(repo_dir)
    engine_path = require_file(engine_path, "TensorRT engine")
    manifest = manifest_mod.read_manifest(engine_path)
    from toolchain.trt.compat import manifest_flavour

    if manifest_flavour(manifest).rtx:
        raise ToolchainError(f"engine {engine_path} was built by {manifest_flavour(manifest).label}, whose engines "
                             "Triton's TensorRT backend (the full TensorRT) cannot load",
                             hint="build the engine for Triton with the full TensorRT (`toolchain build --tensorrt full` "
                                  "on the serving GPU)")
    plugin = _resolve_plugin(manifest, plugin_library)
    manifest_mod.verify_artifacts(manifest, engine_path, plugin)
    # --force replaces the folder as a whole: never one that holds an input, nor one we did not write.
    guard_output(repo_dir, folder=True, force=force, what="--triton folder",
                 inputs={"--engine": engine_path, "--plugin": plugin})
    if force and repo_dir.is_dir() and any(repo_dir.iterdir()) and not _is_repository(repo_dir):
        raise ToolchainError(f"--triton folder {repo_dir} is not a model repository written by toolchain package "
                             "(no README.md of ours), so --force will not replace it",
                             hint="choose an empty or new folder, or remove it yourself")
    classes = (manifest.get("model") or {}).get("classes") or []
    config = triton_config(manifest, model_name=model_name, max_batch=max_batch, labels=bool(classes))
    max_batch_size = batching_mode(manifest, max_batch)

    with staged_folder(repo_dir) as staging:  # OS errors (disk full) become one line naming the folder
        model_dir = staging / model_name
        (model_dir / "1").mkdir(parents=True)
        shutil.copyfile(engine_path, model_dir / "1" / "model.plan")
        (model_dir / "config.pbtxt").write_text(config, encoding="utf-8")
        shutil.copyfile(manifest_mod.manifest_path(engine_path), model_dir / "engine.manifest.json")
        if classes:
            (model_dir / "labels.txt").write_text("\n".join(str(c) for c in classes) + "\n", encoding="utf-8")
        plugin_name = None
        if plugin is not None:
            plugin_name = Path(plugin).name
            (staging / "plugins").mkdir()
            shutil.copy2(plugin, staging / "plugins" / plugin_name)
        (staging / "README.md").write_text(readme_text(manifest, model_name=model_name, plugin_name=plugin_name,
                                                       max_batch_size=max_batch_size), encoding="utf-8")
        # The copies must still be the verified files (they could change between check and copy).
        manifest_mod.verify_artifacts(manifest, model_dir / "1" / "model.plan",
                                      staging / "plugins" / plugin_name if plugin_name else None)
        old = None
        if repo_dir.exists():
            old = repo_dir.with_name(f".{repo_dir.name}.old.{os.getpid()}")
            os.replace(repo_dir, old)
        try:
            os.replace(staging, repo_dir)
        except BaseException:
            if old is not None:  # put the previous repository back
                os.replace(old, repo_dir)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    files = sorted(str(p.relative_to(repo_dir)) for p in repo_dir.rglob("*") if p.is_file())
    return {"repository": str(repo_dir), "model": model_name, "max_batch_size": max_batch_size, "files": files,
            "engine_sha256": sha256_file(repo_dir / model_name / "1" / "model.plan"),
            "plugin": str(repo_dir / "plugins" / plugin_name) if plugin_name else None}
