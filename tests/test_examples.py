"""Deployment examples: the C++ example compiles against TensorRT 10/11 headers and its host code
(JSON, SHA-256, preprocessing) agrees with Python; the Python example needs no torch.

C++ checks run against every TensorRT headers folder tests/trtenv.py finds ($TOOLCHAIN_TRT_HEADERS,
else ../shared/trt-headers beside the checkout).
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
CPP = ROOT / "examples" / "cpp" / "classify.cpp"
PY = ROOT / "examples" / "python" / "classify_no_torch.py"
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def _trt_header_dirs() -> list[Path]:
    import trtenv

    return list(trtenv.header_dirs().values())


def _cuda_include() -> Path | None:
    for root in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if root and (Path(root) / "include" / "cuda_runtime_api.h").is_file():
            return Path(root) / "include"
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidate = Path(nvcc).resolve().parents[1] / "include"
        if (candidate / "cuda_runtime_api.h").is_file():
            return candidate
    return None


def _require_cpp_toolchain() -> tuple[list[Path], Path, str]:
    headers = _trt_header_dirs()
    if not headers:
        import trtenv

        pytest.skip(trtenv.header_skip_reason())
    cuda = _cuda_include()
    if cuda is None:
        pytest.skip("CUDA headers (cuda_runtime_api.h) not found")
    compiler = shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        pytest.skip("no C++ compiler")
    return headers, cuda, compiler


def _write_image(path: Path, height=50, width=70, channels=3) -> Path:
    rng = np.random.default_rng(0)
    pixels = (rng.random((height, width, channels)) * 255).astype(np.uint8)
    header = f"{'P6' if channels == 3 else 'P5'}\n# a comment\n{width} {height}\n255\n".encode()
    path.write_bytes(header + pixels.tobytes())
    return path


def _reference(image: Path, size: int, channels: int, mean, std) -> np.ndarray:
    """toolchain's own evaluation transform (torchvision), the ground truth for both examples."""
    from PIL import Image

    from toolchain.data import eval_transform

    with Image.open(image) as im:
        return eval_transform(size, mean, std, channels=channels)(im).numpy()


def test_cpp_example_compiles_against_each_tensorrt(tmp_path):
    headers, cuda, compiler = _require_cpp_toolchain()
    for include in headers:
        proc = subprocess.run([compiler, "-std=c++17", "-fsyntax-only", "-Wall", "-Wextra", "-Werror",
                               "-isystem", str(include), "-isystem", str(cuda), str(CPP)],
                              capture_output=True, text=True)
        assert proc.returncode == 0, f"{include}:\n{proc.stderr}"


def test_cpp_host_code_matches_python(tmp_path):
    from tests.test_trt_manifest import fake_build_outputs

    headers, cuda, compiler = _require_cpp_toolchain()
    binary = tmp_path / "classify_selftest"
    proc = subprocess.run([compiler, "-std=c++17", "-O1", "-DCLASSIFY_SELF_TEST", "-isystem", str(headers[0]),
                           "-isystem", str(cuda), str(CPP), "-o", str(binary)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    engine, _ = fake_build_outputs(tmp_path / "build", classes=("tabby \"cat\"", "dog", "é"))
    manifest = Path(str(engine) + ".manifest.json")
    for channels_in, channels, size in ((3, 3, 16), (1, 3, 20), (3, 1, 16)):
        image = _write_image(tmp_path / f"img{channels_in}.{'ppm' if channels_in == 3 else 'pgm'}", channels=channels_in)
        out = subprocess.run([str(binary), str(manifest), str(image), str(size), str(channels)],
                             capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        result = json.loads(out.stdout)
        assert result["manifest_sha256"] == hashlib.sha256(manifest.read_bytes()).hexdigest()
        assert result["engine_sha256"] == hashlib.sha256(engine.read_bytes()).hexdigest()
        assert result["classes"] == ["tabby \"cat\"", "dog", "é"]
        probes = np.array([0.1, -2.5, 65504, 1e-6, 3.14159], np.float32)
        np.testing.assert_array_equal(np.array(result["half_round_trip"], np.float32),
                                      probes.astype(np.float16).astype(np.float32))
        # mean/std come from the manifest (3 values); a 1-channel engine uses the first
        mean, std = (MEAN, STD) if channels == 3 else (MEAN[:1], STD[:1])
        want = _reference(image, size, channels, mean, std).ravel()
        got = np.array(result["tensor"], np.float32)
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=2e-5)


def test_python_example_imports_no_torch():
    tree = ast.parse(PY.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert "torch" not in imported and "toolchain" not in imported, imported
    assert imported <= {"__future__", "argparse", "ctypes", "hashlib", "json", "sys", "pathlib", "numpy", "tensorrt",
                        "tensorrt_lean", "tensorrt_rtx", "cuda", "PIL"}, imported
    proc = subprocess.run([sys.executable, str(PY), "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "ENGINE" in proc.stdout.upper()


@pytest.mark.parametrize("channels_in,channels,size", [(3, 3, 16), (1, 3, 24), (3, 1, 16)])
def test_python_example_preprocessing_matches_toolchain(tmp_path, channels_in, channels, size):
    spec = importlib.util.spec_from_file_location("classify_no_torch", PY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    image = _write_image(tmp_path / ("i.ppm" if channels_in == 3 else "i.pgm"), channels=channels_in)
    mean, std = (MEAN, STD) if channels == 3 else ([0.5], [0.25])
    pixels = module.read_netpbm(image)
    assert pixels.shape == (50, 70, channels_in)
    np.testing.assert_array_equal(pixels, module.read_image(image))  # Pillow and the own reader agree
    got = module.preprocess(pixels, size, channels, mean, std)
    np.testing.assert_allclose(got[0], _reference(image, size, channels, mean, std), atol=2e-5)


def _example():
    spec = importlib.util.spec_from_file_location("classify_no_torch", PY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_python_example_hashes_an_explicit_plugin_too(tmp_path):
    from tests.test_trt_manifest import fake_build_outputs

    module = _example()
    engine, plugin = fake_build_outputs(tmp_path / "p")
    manifest = json.loads(Path(str(engine) + ".manifest.json").read_text())
    assert module.plugin_to_load(manifest, None, True) == plugin
    other = tmp_path / "other.so"
    other.write_bytes(b"not the recorded library")
    with pytest.raises(SystemExit, match="does not match the plugin sha256"):
        module.plugin_to_load(manifest, other, True)
    native, _ = fake_build_outputs(tmp_path / "n", plugin=False)
    native_manifest = json.loads(Path(str(native) + ".manifest.json").read_text())
    with pytest.raises(SystemExit, match="built without a plugin"):
        module.plugin_to_load(native_manifest, plugin, True)
    assert module.plugin_to_load(native_manifest, None, True) is None
    manifest["build"]["version_compatible"] = True
    manifest["plugin"]["serialized_in_engine"] = True
    assert module.plugin_to_load(manifest, other, True) is None  # the engine carries its plugin


def test_python_example_version_rules():
    module = _example()
    manifest = {"environment": {"tensorrt": "10.13.0.35"}, "build": {}}
    assert module.version_problem(manifest, "10.13.0.35") is None
    assert "built with TensorRT 10.13.0.35" in module.version_problem(manifest, "10.16.0.32")
    manifest["build"]["version_compatible"] = True
    assert module.version_problem(manifest, "10.16.0.32") is None
    assert module.version_problem(manifest, "11.4.0.106") and module.version_problem(manifest, "10.12.0.1")


def test_python_example_checks_set_input_shape():
    assert "if not context.set_input_shape(" in PY.read_text()


def test_python_example_fails_in_one_line_where_cuda_cannot_start(tmp_path):
    """trt.Runtime crashes the process where CUDA cannot start; the example checks CUDA first."""
    from tests.conftest import _cuda_reason
    from tests.test_trt_manifest import fake_build_outputs

    if importlib.util.find_spec("tensorrt") is None and importlib.util.find_spec("tensorrt_lean") is None:
        pytest.skip("needs tensorrt or tensorrt_lean")
    if importlib.util.find_spec("cuda") is None:
        pytest.skip("needs cuda-python")
    if _cuda_reason() is None:
        pytest.skip("CUDA works here")
    engine, _ = fake_build_outputs(tmp_path, plugin=False)
    image = _write_image(tmp_path / "i.ppm", channels=3)
    proc = subprocess.run([sys.executable, str(PY), str(engine), str(image), "--no-verify"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr[-500:]
    assert "error: CUDA initialization (cudaSetDevice) failed" in proc.stderr
