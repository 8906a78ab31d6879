#!/usr/bin/env python3
"""Classify one image with a toolchain-built TensorRT engine: numpy + cuda-python + tensorrt, no PyTorch.

    python examples/python/classify_no_torch.py alexnet.engine cat.jpg [--plugin LIB] [--top 5]

Needs ``pip install numpy tensorrt cuda-python`` (and Pillow to read JPEG/PNG; without it,
binary PPM/PGM files are read directly). Instead of the full ``tensorrt`` (~1 GB) the lean
runtime ``tensorrt-lean-cu12``/``-cu13`` (~44 MB) runs engines built with
``toolchain build --version-compatible``, which carry the plugin library inside.
Nothing from the toolchain package is imported: this file is the whole deployment path.

Order, so that no executable code is loaded unchecked: read ENGINE.manifest.json, check the
TensorRT version, check the plugin library's sha256 (also of one given with --plugin) and only
then load it (its static initializer registers the FusedLRN creator), check the engine's
sha256, deserialize, run.
Preprocessing follows toolchain's evaluation transform: shorter side to round(size*256/224)
(antialiased bilinear), center crop, [0, 1], grey<->RGB, mean/std from the manifest.
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import sys
from pathlib import Path

import numpy as np


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cudart():
    try:
        from cuda.bindings import runtime  # cuda-python >= 12.6
    except ImportError:
        from cuda import cudart as runtime  # older cuda-python
    return runtime


def check(result, what):
    err, *rest = result
    if int(err) != 0:
        raise SystemExit(f"error: {what} failed: {err}")
    return rest[0] if len(rest) == 1 else rest


# ---------------------------------------------------------------------------------------- images


def read_image(path: Path) -> np.ndarray:
    """HWC float32 in [0, 1] (1 or 3 channels)."""
    try:
        from PIL import Image
    except ImportError:
        return read_netpbm(path)
    with Image.open(path) as image:
        image = image.convert("L" if image.mode in ("L", "I", "I;16", "1") else "RGB")
        array = np.asarray(image, dtype=np.float32) / 255.0
    return array[:, :, None] if array.ndim == 2 else array


def read_netpbm(path: Path) -> np.ndarray:
    data = path.read_bytes()
    fields, pos = [], 0
    while len(fields) < 4:  # magic, width, height, maxval (comments allowed)
        while data[pos:pos + 1].isspace():
            pos += 1
        if data[pos:pos + 1] == b"#":
            pos = data.index(b"\n", pos)
            continue
        end = pos
        while not data[end:end + 1].isspace():
            end += 1
        fields.append(data[pos:end].decode())
        pos = end
    magic, width, height, maxval = fields[0], int(fields[1]), int(fields[2]), int(fields[3])
    if magic not in ("P5", "P6") or maxval > 255:
        raise SystemExit(f"error: {path}: install Pillow, or give an 8-bit binary PPM/PGM")
    channels = 3 if magic == "P6" else 1
    pixels = np.frombuffer(data, np.uint8, width * height * channels, pos + 1)
    return pixels.reshape(height, width, channels).astype(np.float32) / maxval


def linear_weights(n_in: int, n_out: int) -> np.ndarray:
    """[n_out, n_in] antialiased linear (triangle) resampling matrix."""
    scale = n_in / n_out
    support = max(1.0, scale)
    centers = (np.arange(n_out) + 0.5) * scale
    taps = np.arange(n_in) + 0.5
    weights = np.clip(1.0 - np.abs(taps[None, :] - centers[:, None]) / support, 0.0, None)
    return weights / weights.sum(axis=1, keepdims=True)


def preprocess(image: np.ndarray, size: int, channels: int, mean, std) -> np.ndarray:
    h, w, _ = image.shape
    shorter = round(size * 256 / 224)
    new_h, new_w = (shorter, int(w * shorter / h)) if h <= w else (int(h * shorter / w), shorter)
    resized = np.einsum("oh,hwc,pw->opc", linear_weights(h, new_h), image, linear_weights(w, new_w))
    top, left = round((new_h - size) / 2), round((new_w - size) / 2)
    crop = resized[top:top + size, left:left + size]
    if crop.shape[2] != channels:
        crop = np.repeat(crop, channels, axis=2) if crop.shape[2] == 1 else \
            (crop @ np.array([0.299, 0.587, 0.114], np.float32))[:, :, None]
    chw = (crop - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(chw.transpose(2, 0, 1)[None], dtype=np.float32)


# ---------------------------------------------------------------------------------------- TensorRT


def import_tensorrt(manifest: dict):
    """TensorRT-RTX for an engine it built; else the full TensorRT, else the lean runtime (same runtime API)."""
    env = manifest.get("environment") or {}
    if env.get("flavour") == "tensorrt-rtx":
        try:
            import tensorrt_rtx
            return tensorrt_rtx
        except ImportError:
            raise SystemExit(f"error: the engine was built by TensorRT-RTX {env.get('tensorrt')}, which is not "
                             f"installed (pip install tensorrt-rtx=={env.get('tensorrt')}, on an RTX-class GPU)") from None
    try:
        import tensorrt
        return tensorrt
    except ImportError:
        pass
    try:
        import tensorrt_lean
        return tensorrt_lean
    except ImportError:
        raise SystemExit("error: neither tensorrt nor tensorrt_lean is installed "
                         "(pip install tensorrt-cu13, or tensorrt-lean-cu13 for version-compatible engines)") from None


def version_problem(manifest: dict, version: str) -> str | None:
    """Why this TensorRT cannot run the engine (None if it can): same major.minor.patch, or for a
    version-compatible engine the same major and not older."""
    built = manifest["environment"]["tensorrt"]
    if manifest["environment"].get("flavour") == "tensorrt-rtx":
        return None if built.split(".")[:3] == version.split(".")[:3] else \
            f"the engine was built with TensorRT-RTX {built}, this is {version}"
    b, h = [int(p) for p in built.split(".")[:3]], [int(p) for p in version.split(".")[:3]]
    if (manifest.get("build") or {}).get("version_compatible"):
        ok = b[0] == h[0] and h >= b
    else:
        ok = b == h
    return None if ok else f"the engine was built with TensorRT {built}, this is {version}"


def plugin_to_load(manifest: dict, explicit: Path | None, verify: bool) -> Path | None:
    """The plugin library to load (checked against the manifest's sha256 when verifying), or None."""
    recorded = manifest.get("plugin")
    if recorded and recorded.get("serialized_in_engine"):
        return None  # the engine carries it; loading another copy would register the creator twice
    plugin = explicit or (Path(recorded["file"]) if recorded else None)
    if plugin is None or not verify:
        return plugin
    if not recorded:
        raise SystemExit(f"error: the engine was built without a plugin; refusing to load {plugin}")
    if sha256(plugin) != recorded["sha256"]:
        raise SystemExit(f"error: {plugin} does not match the plugin sha256 in the manifest")
    return plugin


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("engine", type=Path)
    parser.add_argument("image", type=Path)
    parser.add_argument("--plugin", type=Path, help="plugin library (default: the one in the manifest)")
    parser.add_argument("--manifest", type=Path, help="default: ENGINE.manifest.json")
    parser.add_argument("--top", type=int, default=5)
    parser.add_argument("--no-verify", action="store_true", help="skip the sha256 and version checks")
    args = parser.parse_args(argv)

    manifest_path = args.manifest or Path(str(args.engine) + ".manifest.json")
    manifest = json.loads(manifest_path.read_text())
    verify = not args.no_verify

    trt = import_tensorrt(manifest)  # before the plugin, which binds to the libnvinfer loaded here

    problem = version_problem(manifest, trt.__version__) if verify else None
    if problem:  # refuse before any library code runs
        raise SystemExit(f"error: {problem}")
    plugin = plugin_to_load(manifest, args.plugin, verify)
    if plugin is not None and (manifest.get("plugin") or {}).get("registration") == "dynamic":
        if trt.get_plugin_registry().load_library(str(plugin)) is None:  # getCreators: TensorRT-RTX's way
            raise SystemExit(f"error: TensorRT's plugin registry refused {plugin}")
    elif plugin is not None:
        ctypes.CDLL(str(plugin), mode=ctypes.RTLD_GLOBAL)
    data = args.engine.read_bytes()
    if verify and hashlib.sha256(data).hexdigest() != manifest["engine"]["sha256"]:
        raise SystemExit(f"error: {args.engine} does not match the engine sha256 in {manifest_path}")

    # CUDA first: where it cannot start (a driver too old for this CUDA major), trt.Runtime logs
    # an error but returns an object whose use crashes the process.
    rt = cudart()
    check(rt.cudaSetDevice(0), "CUDA initialization (cudaSetDevice)")
    logger = trt.Logger(trt.Logger.WARNING)
    runtime = trt.Runtime(logger)
    if (manifest.get("build") or {}).get("version_compatible") or (manifest.get("plugin") or {}).get("serialized_in_engine"):
        runtime.engine_host_code_allowed = True  # runs the plugin library serialized into the engine
    engine = runtime.deserialize_cuda_engine(data)
    if engine is None:
        raise SystemExit("error: could not deserialize the engine (other TensorRT/GPU, or plugin missing)")
    context = engine.create_execution_context()
    if context is None:
        raise SystemExit("error: could not create an execution context (GPU out of memory?)")
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    input_name = next(n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
    output_name = next(n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT)
    dtypes = {"FLOAT": np.float32, "HALF": np.float16}
    in_dtype = dtypes[engine.get_tensor_dtype(input_name).name]
    out_dtype = dtypes[engine.get_tensor_dtype(output_name).name]

    model = manifest.get("model", {})
    _, channels, size, _ = manifest["io"]["inputs"][0]["profile"]["max"]
    x = preprocess(read_image(args.image), size, channels, model.get("mean", [0.0] * channels),
                   model.get("std", [1.0] * channels)).astype(in_dtype)
    if not context.set_input_shape(input_name, x.shape):
        raise SystemExit(f"error: the engine refused input shape {x.shape} (see its optimization profile)")
    logits = np.empty(tuple(context.get_tensor_shape(output_name)), dtype=out_dtype)

    stream = check(rt.cudaStreamCreate(), "cudaStreamCreate")
    d_in = check(rt.cudaMalloc(x.nbytes), "cudaMalloc")
    d_out = check(rt.cudaMalloc(logits.nbytes), "cudaMalloc")
    try:
        check(rt.cudaMemcpyAsync(d_in, x.ctypes.data, x.nbytes, rt.cudaMemcpyKind.cudaMemcpyHostToDevice, stream),
              "copy to device")
        context.set_tensor_address(input_name, int(d_in))
        context.set_tensor_address(output_name, int(d_out))
        if not context.execute_async_v3(int(stream)):
            raise SystemExit("error: inference failed")
        check(rt.cudaMemcpyAsync(logits.ctypes.data, d_out, logits.nbytes, rt.cudaMemcpyKind.cudaMemcpyDeviceToHost,
                                 stream), "copy to host")
        check(rt.cudaStreamSynchronize(stream), "cudaStreamSynchronize")
    finally:
        rt.cudaFree(d_in)
        rt.cudaFree(d_out)
        rt.cudaStreamDestroy(stream)

    scores = logits[0].astype(np.float64)
    probs = np.exp(scores - scores.max())
    probs /= probs.sum()
    classes = model.get("classes") or [f"class {i}" for i in range(len(scores))]
    print(f"engine {args.engine} (TensorRT {trt.__version__}), input {x.shape}")
    for rank, index in enumerate(np.argsort(-scores)[: args.top], start=1):
        print(f"{rank}. {classes[index]:24s} {100 * probs[index]:6.2f}%  (logit {scores[index]:.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
