"""Deployment examples: the C++ example compiles against TensorRT 10/11 headers, its host-side
helpers (examples/cpp/json, sha256, image, half) agree with Python, and its CMake project builds
through the shared TensorRT lookup; the Python example needs no torch.

C++ checks run against every TensorRT headers folder tests/trtenv.py finds ($TOOLCHAIN_TRT_HEADERS,
else ../shared/trt-headers beside the checkout); the helpers need only a C++17 compiler.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
CPP_DIR = ROOT / "examples" / "cpp"
CPP = CPP_DIR / "classify.cpp"
#: The host-side helpers and the program that prints what they compute.
HELPER_SOURCES = ("json.cpp", "sha256.cpp", "image.cpp", "classify_selftest.cpp")
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


def _compiler() -> str:
    compiler = shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        pytest.skip("no C++ compiler")
    return compiler


@pytest.fixture(scope="module")
def selftest(tmp_path_factory) -> Path:
    """classify_selftest, built from the helpers alone: no TensorRT or CUDA."""
    binary = tmp_path_factory.mktemp("classify-selftest") / "classify_selftest"
    proc = subprocess.run([_compiler(), "-std=c++17", "-O1", "-Wall", "-Wextra", "-Werror",
                           *(str(CPP_DIR / name) for name in HELPER_SOURCES), "-o", str(binary)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return binary


def _run(binary: Path, *args) -> subprocess.CompletedProcess:
    return subprocess.run([str(binary), *map(str, args)], capture_output=True, text=True)


def test_cpp_example_compiles_against_each_tensorrt(tmp_path):
    headers, cuda, compiler = _require_cpp_toolchain()
    for include in headers:
        proc = subprocess.run([compiler, "-std=c++17", "-fsyntax-only", "-Wall", "-Wextra", "-Werror",
                               "-isystem", str(include), "-isystem", str(cuda), str(CPP)],
                              capture_output=True, text=True)
        assert proc.returncode == 0, f"{include}:\n{proc.stderr}"


def test_cpp_classify_keeps_only_the_tensorrt_flow():
    """The helpers live in their own files; classify.cpp includes them and defines none of them."""
    text = CPP.read_text()
    for header in ("json.h", "sha256.h", "image.h", "half.h"):
        assert f'#include "{header}"' in text, header
    for own in ("class JsonParser", "Sha256", "linearWeights", "uint16_t floatToHalf", "Image readNetpbm",
                "CLASSIFY_SELF_TEST"):
        assert own not in text, own
    for name in ("classify.cpp", *HELPER_SOURCES, "json.h", "sha256.h", "image.h", "half.h", "file.h"):
        assert len((CPP_DIR / name).read_text().splitlines()) <= 500, name


def test_cpp_host_code_matches_python(tmp_path, selftest):
    from tests.helpers import fake_build_outputs

    engine, _ = fake_build_outputs(tmp_path / "build", classes=("tabby \"cat\"", "dog", "é"))
    manifest = Path(str(engine) + ".manifest.json")
    for channels_in, channels, size in ((3, 3, 16), (1, 3, 20), (3, 1, 16)):
        image = _write_image(tmp_path / f"img{channels_in}.{'ppm' if channels_in == 3 else 'pgm'}", channels=channels_in)
        out = _run(selftest, manifest, image, size, channels)
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


def test_cpp_sha256_matches_hashlib(tmp_path, selftest):
    # FIPS 180-4 examples, then every length around the 55/56/64-byte padding boundaries, and 1 MB.
    known = {b"": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
             b"abc": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
             b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq":
                 "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"}
    rng = np.random.default_rng(0)
    contents = list(known) + [rng.bytes(n) for n in (*range(50, 140), 1000, 4095, 4096, 1 << 20)]
    files = []
    for i, data in enumerate(contents):
        files.append(tmp_path / f"{i}.bin")
        files[-1].write_bytes(data)
    out = _run(selftest, "sha256", *files)
    assert out.returncode == 0, out.stderr
    digests = out.stdout.split()
    assert digests[:3] == list(known.values())
    assert digests == [hashlib.sha256(data).hexdigest() for data in contents]


def _manifest_like(tmp_path: Path) -> dict:
    """A real manifest (as `toolchain build` writes it) with every JSON construct the reader must handle."""
    from tests.helpers import fake_build_outputs

    engine, _ = fake_build_outputs(tmp_path / "m", classes=("tabby \"cat\"", "back\\slash", "tab\tnew\nline", "é",
                                                           "日本", "emoji 🐈", "/slash"))
    document = json.loads(Path(str(engine) + ".manifest.json").read_text())
    document["extra"] = {"empty_object": {}, "empty_list": [], "nested": [[1, [2.5, -3e-7]], {"k": None}],
                         "flags": [True, False, None], "big": 2 ** 53, "negative": -17, "tiny": 5e-324,
                         "float": 0.1, "exponent": 1.5e300}
    return document


@pytest.mark.parametrize("ensure_ascii", [True, False], ids=["escaped", "utf8"])
def test_cpp_json_reads_a_manifest(tmp_path, selftest, ensure_ascii):
    document = _manifest_like(tmp_path)
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(document, indent=2, ensure_ascii=ensure_ascii), encoding="utf-8")
    out = subprocess.run([str(selftest), "json", str(path)], capture_output=True)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.decode("utf-8")) == document


@pytest.mark.parametrize("text,what", [('{"a": 1,}', "expected a string key"), ('{"a": 1} x', "trailing characters"),
                                       ('{"a": "b', "unterminated string"), ('[1, 2', "unexpected end"),
                                       ('{"a": nope}', "invalid value"), ('"\\u12g4"', "bad \\u escape"),
                                       ('"\\q"', "bad escape")])
def test_cpp_json_refuses_malformed_input_in_one_line(tmp_path, selftest, text, what):
    path = tmp_path / "bad.json"
    path.write_text(text)
    out = _run(selftest, "json", path)
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.startswith("error: manifest JSON: " + what + " at offset "), out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_cpp_half_matches_numpy(tmp_path, selftest):
    # Encode: every FP16 value, the midpoints between neighbours (ties to even), the FP16 overflow
    # and underflow edges, and random FP32 bit patterns (subnormals, NaNs and Infs included).
    every_half = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16)
    finite = np.sort(every_half[np.isfinite(every_half)].astype(np.float64))
    midpoints = (finite[:-1] + finite[1:]) / 2
    edges = np.array([65504, 65519.996, 65520, 2.0 ** -24, 2.0 ** -25, 2.0 ** -25 * 1.0000001, 2.0 ** -26, 1e-45])
    random_bits = np.random.default_rng(0).integers(0, 1 << 32, 200_000, dtype=np.uint64).astype(np.uint32)
    values = np.concatenate([finite.astype(np.float32), midpoints.astype(np.float32), edges.astype(np.float32),
                             -edges.astype(np.float32), random_bits.view(np.float32)])
    values.tofile(tmp_path / "in.f32")
    out = _run(selftest, "half-encode", tmp_path / "in.f32", tmp_path / "out.u16")
    assert out.returncode == 0, out.stderr
    got = np.fromfile(tmp_path / "out.u16", np.uint16)
    with np.errstate(over="ignore"):
        want = values.astype(np.float16)
    nan = np.isnan(want)
    np.testing.assert_array_equal(np.isnan(got.view(np.float16)), nan)
    np.testing.assert_array_equal(got[~nan], want.view(np.uint16)[~nan])
    # Decode: every FP16 bit pattern, exactly (NaN payloads included).
    halves = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    halves.tofile(tmp_path / "in.u16")
    out = _run(selftest, "half-decode", tmp_path / "in.u16", tmp_path / "out.f32")
    assert out.returncode == 0, out.stderr
    decoded = np.fromfile(tmp_path / "out.f32", np.float32)
    np.testing.assert_array_equal(decoded.view(np.uint32), halves.view(np.float16).astype(np.float32).view(np.uint32))


@pytest.mark.parametrize("height,width,channels_in,channels,size", [
    (50, 70, 3, 3, 16),    # landscape, shrinking
    (70, 50, 3, 3, 24),    # portrait
    (9, 7, 3, 3, 32),      # enlarging a tiny image
    (300, 200, 1, 3, 64),  # grey -> RGB
    (64, 64, 3, 1, 56),    # square, RGB -> grey
])
def test_cpp_preprocess_matches_python_example(tmp_path, selftest, height, width, channels_in, channels, size):
    module = _example()
    image = _write_image(tmp_path / ("i.ppm" if channels_in == 3 else "i.pgm"), height, width, channels_in)
    mean, std = (MEAN, STD) if channels == 3 else ([0.5], [0.25])
    out = _run(selftest, "preprocess", image, size, channels, ",".join(map(str, mean)), ",".join(map(str, std)),
               tmp_path / "out.f32")
    assert out.returncode == 0, out.stderr
    got = np.fromfile(tmp_path / "out.f32", np.float32).reshape(channels, size, size)
    want = module.preprocess(module.read_netpbm(image), size, channels, mean, std)[0]
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_cpp_image_reader_refuses_other_formats_in_one_line(tmp_path, selftest):
    (tmp_path / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 32)
    (tmp_path / "short.ppm").write_bytes(b"P6\n4 4\n255\n" + b"\0" * 10)
    for path, reason in ((tmp_path / "a.png", "is not a binary PPM (P6) or PGM (P5) image"),
                         (tmp_path / "short.ppm", "is truncated")):
        out = _run(selftest, "preprocess", path, 8, 3, "0,0,0", "1,1,1", tmp_path / "o.f32")
        assert out.returncode == 1 and reason in out.stderr and len(out.stderr.strip().splitlines()) == 1


# --- the CMake project, through the lookup it shares with the plugin ------------------------------

def _lean_root(tmp: Path, headers: Path, lean) -> Path:
    """A TensorRT root with the headers and only the lean runtime's library (what a lean deployment has)."""
    root = tmp / f"trt-{lean.version}"
    (root / "lib").mkdir(parents=True)
    (root / "include").symlink_to(headers)
    (root / "lib" / lean.library.name).symlink_to(lean.library)
    return root


@pytest.mark.slow
def test_cpp_example_cmake_builds_and_checks_the_manifest(tmp_path):
    """examples/cpp configures through plugins/cmake/toolchain_find_tensorrt.cmake, links the real
    libnvinfer_lean, and its TensorRT flow refuses a wrong version or hash before deserializing."""
    import trtenv
    from tests.helpers import fake_build_outputs

    cmake = shutil.which("cmake")
    headers = trtenv.header_dirs().get(10)
    lean = trtenv.lean_for(10)
    if cmake is None or _cuda_include() is None or headers is None or lean is None:
        pytest.skip("needs cmake, the CUDA toolkit, TensorRT 10 headers and a TensorRT 10 lean runtime")
    build = tmp_path / "build"
    configure = subprocess.run([cmake, "-S", str(CPP_DIR), "-B", str(build),
                                f"-DTensorRT_ROOT={_lean_root(tmp_path, headers, lean)}"],
                               capture_output=True, text=True)
    assert configure.returncode == 0, configure.stdout + configure.stderr
    assert re.search(r"classify: TensorRT 10 headers .*, library .*libnvinfer_lean\.so\.10 \(lean: ON\)",
                     configure.stdout), configure.stdout
    compiled = subprocess.run([cmake, "--build", str(build), "--parallel", "2"], capture_output=True, text=True)
    assert compiled.returncode == 0, compiled.stdout[-3000:] + compiled.stderr[-3000:]
    classify = build / "classify"
    assert "libnvinfer_lean.so.10" in subprocess.run(["readelf", "-d", str(classify)], capture_output=True,
                                                     text=True).stdout
    help_out = _run(classify, "--help")
    assert help_out.returncode == 0 and "--no-verify" in help_out.stdout
    image = _write_image(tmp_path / "i.ppm")
    # The engine's TensorRT release is not this library's: refused, naming both.
    engine, _ = fake_build_outputs(tmp_path / "old", plugin=False, tensorrt="10.0.0.1")
    out = _run(classify, engine, image)
    assert out.returncode == 1 and "built with TensorRT 10.0.0.1, this is TensorRT 10." in out.stderr, out.stderr
    # The same release, a changed engine file: refused before TensorRT reads it.
    engine, _ = fake_build_outputs(tmp_path / "tampered", plugin=False, tensorrt=lean.version)
    engine.write_bytes(engine.read_bytes() + b"x")
    out = _run(classify, engine, image)
    assert out.returncode == 1 and "does not match the sha256" in out.stderr, out.stderr
    # A changed plugin library: refused before it is loaded.
    engine, plugin = fake_build_outputs(tmp_path / "plugin", tensorrt=lean.version)
    plugin.write_bytes(b"changed")
    out = _run(classify, engine, image)
    assert out.returncode == 1 and f"plugin library {plugin} does not match the sha256" in out.stderr, out.stderr
    assert _run(build / "classify_selftest", "sha256", image).stdout.strip() == hashlib.sha256(
        image.read_bytes()).hexdigest()


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
    from tests.helpers import fake_build_outputs

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
    from toolchain.environment import cuda_unavailable
    from tests.helpers import fake_build_outputs

    if importlib.util.find_spec("tensorrt") is None and importlib.util.find_spec("tensorrt_lean") is None:
        pytest.skip("needs tensorrt or tensorrt_lean")
    if importlib.util.find_spec("cuda") is None:
        pytest.skip("needs cuda-python")
    if cuda_unavailable() is None:
        pytest.skip("CUDA works here")
    engine, _ = fake_build_outputs(tmp_path, plugin=False)
    image = _write_image(tmp_path / "i.ppm", channels=3)
    proc = subprocess.run([sys.executable, str(PY), str(engine), str(image), "--no-verify"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr[-500:]
    assert "error: CUDA initialization (cudaSetDevice) failed" in proc.stderr
