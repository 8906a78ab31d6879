"""The FusedLRN plugin inside TensorRT's real plugin registry, for TensorRT 10 and 11.

Each major's plugin is built by CMake against that major's headers and the lean
runtime's ``libnvinfer_lean`` (``toolchain plugin build --tensorrt-root``: exactly what
a lean deployment builds), then driven by the C++ conformance harness
(``plugins/lrn/lrnConformance.cpp``) the way TensorRT's builder and runtime drive it,
and by the Python bindings through ``toolchain plugin check``. No GPU is needed except
for ``enqueue``. Headers and lean runtimes come from ``tests/trtenv.py``; where they are
missing each test skips and says how to get them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import trtenv
from toolchain import lrn_op
from toolchain.errors import ToolchainError
from toolchain.plugin import build_plugins, build_tools_unavailable

MAJORS = [pytest.param(10, id="trt10"), pytest.param(11, id="trt11")]
HOW = ["static", "dynamic"]
#: What the lean runtimes of .ci/run are: the headers' own releases.
PREFERRED = {10: "10.16", 11: "11.1"}


@dataclass
class Built:
    major: int
    lean: trtenv.LeanRuntime
    result: dict

    def library(self, how: str, *, asan: bool = False) -> str:
        key = "tensorrt" if how == "static" else "tensorrt_dynamic"
        return self.result[f"{key}_asan" if asan else key]


def _cuda_archs() -> str:
    if os.environ.get("TOOLCHAIN_TEST_CUDA_ARCHS"):
        return os.environ["TOOLCHAIN_TEST_CUDA_ARCHS"]
    try:
        import torch

        if torch.cuda.is_available():
            return "native"
    except ImportError:
        pass
    return "80-real"  # compile-only here: one architecture keeps CI fast


def _root(tmp: Path, headers: Path, lean: trtenv.LeanRuntime) -> Path:
    """A TensorRT root holding the headers and only the lean runtime's library."""
    root = tmp / f"trt-{lean.version}"
    (root / "lib").mkdir(parents=True)
    (root / "include").symlink_to(headers)
    (root / "lib" / lean.library.name).symlink_to(lean.library)
    return root


def _requirements(major: int) -> tuple[Path, trtenv.LeanRuntime]:
    reason = build_tools_unavailable()
    if reason:
        pytest.skip(f"needs_nvcc: {reason}")
    headers = trtenv.header_dirs().get(major)
    if headers is None:
        pytest.skip(trtenv.header_skip_reason(major))
    lean = trtenv.lean_for(major, prefer=PREFERRED[major])
    if lean is None:
        pytest.skip(trtenv.lean_skip_reason(major))
    return headers, lean


@pytest.fixture(scope="module", params=MAJORS)
def built(request, tmp_path_factory) -> Built:
    major = request.param
    headers, lean = _requirements(major)
    tmp = tmp_path_factory.mktemp(f"conformance-trt{major}")
    result = build_plugins(tmp / "build", cuda_archs=_cuda_archs(), tensorrt_root=_root(tmp, headers, lean),
                           conformance_asan=True)
    assert result["tensorrt_major"] == major and result["tensorrt_lean"], result
    return Built(major, lean, result)


def _harness(built: Built, *args, asan: bool = False, libs: Path | None = None) -> tuple[int, list[dict], str]:
    exe = built.result["conformance_asan" if asan else "conformance"]
    env = {**os.environ, "LD_LIBRARY_PATH": str(libs or built.lean.libs)}
    if asan:
        env["ASAN_OPTIONS"] = "detect_leaks=1:abort_on_error=0:halt_on_error=1"
    proc = subprocess.run([exe, *map(str, args)], capture_output=True, text=True, env=env, timeout=300)
    records = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return proc.returncode, records, proc.stderr


def _checks(records: list[dict]) -> dict[str, dict]:
    return {r["check"]: r for r in records if "check" in r}


def _failed(records: list[dict]) -> list[dict]:
    return [r for r in records if "check" in r and not r["ok"]]


# --- registration ---------------------------------------------------------------------------

@pytest.mark.parametrize("how", HOW)
def test_conformance_library_registers_creator(built, how):
    rc, records, err = _harness(built, "registry", f"--{how}", built.library(how))
    assert rc == 0 and not _failed(records), (records, err)
    header = next(r["tensorrt"] for r in records if "tensorrt" in r)
    assert header["headers_major"] == built.major
    assert header["library_version"] // 10000 == built.major  # the real lean library of that major
    load = next(r for r in records if "load" in r)
    assert load["loaded"] and load["creators"] == 1
    creator = next(r["creator"] for r in records if "creator" in r)
    assert creator == {"name": lrn_op.OP_TYPE, "version": lrn_op.PLUGIN_VERSION, "namespace": lrn_op.PLUGIN_NAMESPACE}


def test_conformance_static_library_links_lean_runtime(built):
    out = subprocess.run(["readelf", "-d", built.library("static")], capture_output=True, text=True).stdout
    assert f"libnvinfer_lean.so.{built.major}" in out
    # The dynamic-registration library depends on no TensorRT library at all.
    out = subprocess.run(["readelf", "-d", built.library("dynamic")], capture_output=True, text=True).stdout
    assert "libnvinfer" not in out


def test_conformance_both_libraries_in_one_process(built):
    # Static first: loadLibrary then refuses the dynamic copy (its creator is taken); one creator stays.
    rc, records, err = _harness(built, "registry", "--static", built.library("static"),
                                "--dynamic", built.library("dynamic"))
    loads = [r for r in records if "load" in r]
    assert rc == 0, (records, err)
    assert loads[0]["loaded"] and loads[0]["creators"] == 1
    assert not loads[1]["loaded"] and loads[1]["creators"] == 1
    # Dynamic first: the static registrar's registerCreator fails, says so, and nothing crashes.
    rc, records, err = _harness(built, "registry", "--dynamic", built.library("dynamic"),
                                "--static", built.library("static"))
    loads = [r for r in records if "load" in r]
    assert rc == 0, (records, err)
    assert loads[0]["loaded"] and loads[1]["creators"] == 1
    assert "not registered" in loads[1]["detail"]


# --- the interfaces TensorRT calls -------------------------------------------------------------

#: Checks the harness must report (a check that silently stopped running fails here).
#: getOutputShapes needs TensorRT's own IExprBuilder: its rule is tested in test_plugin_build.py
#: (test_plugin_shape_rule_on_public_types) and the real builder calls it in test_rtx_build.py.
REQUIRED_CHECKS = {
    "creator.interface", "creator.getFieldNames", "createPlugin.accepts.parser_odd", "createPlugin.accepts.parser_even",
    "createPlugin.accepts.wide_64bit", "createPlugin.wide_64bit.values", "createPlugin.refuses.size_zero",
    "createPlugin.refuses.size_past_int32", "createPlugin.refuses.bias_zero", "createPlugin.refuses.alpha_negative",
    "createPlugin.refuses.alpha_nan", "createPlugin.refuses.beta_inf", "createPlugin.refuses.missing_size",
    "createPlugin.refuses.missing_alpha", "createPlugin.refuses.missing_beta", "createPlugin.refuses.missing_bias",
    "capability.core", "capability.build", "capability.runtime", "build.getNbOutputs",
    "getOutputDataTypes.FLOAT", "getOutputDataTypes.HALF", "supportsFormatCombination.rejects_rank3",
    "configurePlugin.dynamic", "configurePlugin.concrete",
    "configurePlugin.rejects_type_mismatch", "getWorkspaceSize", "onShapeChange.concrete",
    "onShapeChange.rejects_shape_mismatch", "getFieldsToSerialize", "createPlugin.runtime_round_trip",
    "clone.independent_equal", "attachToContext.independent_equal", "enqueue.rejects_int8_into_error_recorder",
}


def test_no_test_double_of_tensorrt_internals():
    """The harness drives the plugin through public interfaces only: TensorRT's internal apiv
    classes change with any release, so nothing in the repository may name them."""
    from tests.helpers import REPO, repo_files

    internal = b"apiv" + b"::"  # spelled apart so this file does not match itself
    users = [str(p.relative_to(REPO)) for p in repo_files() if internal in p.read_bytes()]
    assert users == []


@pytest.mark.parametrize("how", HOW)
def test_conformance_interfaces(built, how):
    rc, records, err = _harness(built, "interface", f"--{how}", built.library(how))
    checks = _checks(records)
    assert not _failed(records), _failed(records)
    assert rc == 0, err
    assert REQUIRED_CHECKS <= set(checks), REQUIRED_CHECKS - set(checks)
    # Every refusal logged the attribute it refused.
    assert "size" in checks["createPlugin.refuses.size_past_int32"]["detail"]
    assert "'bias'" in checks["createPlugin.refuses.missing_bias"]["detail"]
    assert "size_zero" in checks["createPlugin.refuses.size_zero"]["detail"]  # names the node


def test_conformance_fields_equal_lrn_op(built):
    _, records, _ = _harness(built, "interface", "--static", built.library("static"))
    fields = {r["field"]: r["type"] for r in records if "field" in r}
    parser_types = {"INT": "INT32", "FLOAT": "FLOAT32"}  # what the ONNX parser passes
    assert fields == {name: parser_types[kind] for name, kind in lrn_op.FIELDS.items()}


def test_conformance_format_combinations(built):
    _, records, _ = _harness(built, "interface", "--dynamic", built.library("dynamic"))
    tried = next(r for r in records if "format_combinations_tried" in r)
    # Every (type x format) at the input, and every pair with the output.
    n = tried["types"] * tried["formats"]
    assert tried["format_combinations_tried"] == n + n * n and tried["types"] >= 8 and tried["formats"] >= 8
    inputs = {tuple(r["in"]) for r in records if r.get("accepts") == 0}
    pairs = {(tuple(r["in"]), tuple(r["out"])) for r in records if r.get("accepts") == 1}
    assert inputs == {("FLOAT", "LINEAR"), ("HALF", "LINEAR")}
    assert pairs == {(("FLOAT", "LINEAR"), ("FLOAT", "LINEAR")), (("HALF", "LINEAR"), ("HALF", "LINEAR"))}


@pytest.mark.parametrize("how", HOW)
def test_conformance_create_destroy_loops_clean_under_asan(built, how):
    lib = built.library(how, asan=True)
    assert lib, "the AddressSanitizer copies were not built"
    for command in (("loops", f"--{how}", lib, 300), ("interface", f"--{how}", lib)):
        rc, records, err = _harness(built, *command, asan=True)
        assert "AddressSanitizer" not in err and "LeakSanitizer" not in err, err[-4000:]
        assert rc == 0 and not _failed(records), (_failed(records), err[-2000:])
    assert _checks(records)["getFieldsToSerialize"]["ok"]


def test_conformance_plugin_runs_on_the_newest_lean_runtime(built):
    """Built against the headers' release, loaded by the newest runtime of the same major."""
    newest = [r for r in trtenv.lean_runtimes() if r.major == built.major and r.version != built.lean.version]
    if not newest:
        pytest.skip(f"no second TensorRT {built.major} lean runtime (the test extra installs the newest 11.x)")
    lean = newest[-1]
    for how in HOW:
        rc, records, err = _harness(built, "interface", f"--{how}", built.library(how), libs=lean.libs)
        header = next(r["tensorrt"] for r in records if "tensorrt" in r)
        assert header["library_version"] == _version_number(lean.version), header
        assert rc == 0 and not _failed(records), (_failed(records), err)


def _version_number(version: str) -> int:
    major, minor, patch = (int(x) for x in version.split(".")[:3])
    return major * 10000 + minor * 100 + patch


# --- the Python bindings: `toolchain plugin check` -------------------------------------------------

def _plugin_check(lean: trtenv.LeanRuntime, *args) -> tuple[int, dict | None, str]:
    env = dict(os.environ)
    if lean.python_path is not None:  # a --target install of another release than this environment's
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(lean.python_path), env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, "-m", "toolchain", "plugin", "check", "--json", "--no-numerics",
                           "--tensorrt", "lean", *args],
                          capture_output=True, text=True, env=env, timeout=300)
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        report = None
    return proc.returncode, report, proc.stderr


@pytest.mark.parametrize("how", HOW)
def test_conformance_python_registry_plugin_check(built, how):
    rc, report, err = _plugin_check(built.lean, "--library", built.library(how))
    assert rc == 0 and report and report["passed"], (report, err)
    assert report["tensorrt"]["module"] == "tensorrt_lean" and report["tensorrt"]["version"] == built.lean.version
    assert report["library"]["registration"] == how and len(report["library"]["sha256"]) == 64


@pytest.fixture(scope="module")
def exported_models(tmp_path_factory) -> dict[str, Path]:
    """The paper AlexNet exported at 64 px, and copies with one LRN changed."""
    import onnx

    from toolchain.export import export_from_source

    folder = tmp_path_factory.mktemp("check-models")
    path = folder / "paper.onnx"
    export_from_source(path, variant="paper", image_size=64, num_classes=10)
    model = onnx.load(str(path))
    out = {"clean": path}
    for label, size in (("even", 4), ("zero", 0), ("wide", 2**32 + 5)):
        changed = onnx.load(str(path))
        node = [n for n in changed.graph.node if n.op_type == lrn_op.OP_TYPE][1]
        next(a for a in node.attribute if a.name == "size").i = size
        out[label] = folder / f"paper-{label}.onnx"
        onnx.save(changed, str(out[label]))
    out["node"] = [n for n in model.graph.node if n.op_type == lrn_op.OP_TYPE][1].name
    return out


def test_conformance_plugin_check_onnx_nodes(built, exported_models):
    lib = built.library("static")
    rc, report, err = _plugin_check(built.lean, "--library", lib, "--onnx", exported_models["clean"])
    assert rc == 0 and report["passed"], (report, err)
    assert [n["attributes"]["size"] for n in report["nodes"]] == [5, 5] and all(n["accepted"] for n in report["nodes"])
    rc, report, err = _plugin_check(built.lean, "--library", lib, "--onnx", exported_models["even"])
    assert rc == 0 and report["passed"], (report, err)
    for label in ("zero", "wide"):
        rc, report, err = _plugin_check(built.lean, "--library", lib, "--onnx", exported_models[label])
        assert rc != 0 and report["passed"] is False
        refused = [n for n in report["nodes"] if not n["accepted"]]
        assert [n["name"] for n in refused] == [exported_models["node"]]
        # One line naming the node, no traceback.
        assert exported_models["node"] in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "would pass 5" in refused[0]["reason"]  # the parser's int32 narrowing is caught, not run as 5


# --- CMake: lean library, mismatched majors, reconfigure -------------------------------------------

def test_conformance_cli_build_with_lean_root_only(built, tmp_path):
    """`toolchain plugin build --tensorrt-root R` with only libnvinfer_lean under R/lib builds both plugins."""
    from click.testing import CliRunner

    from toolchain.cli import cli

    headers, lean = _requirements(built.major)
    root = _root(tmp_path, headers, lean)
    build_dir = Path(built.result["build_dir"])  # reconfigure the fixture's build: nothing to recompile
    result = CliRunner().invoke(cli, ["plugin", "build", "--build-dir", str(build_dir), "--tensorrt-root", str(root),
                                       "--cuda-archs", _cuda_archs(), "--with-asan"])
    assert result.exit_code == 0, result.output
    assert "lean runtime" in result.output and f"libnvinfer_lean.so.{built.major}" in result.output
    for how in HOW:
        rc, records, err = _harness(built, "registry", f"--{how}", built.library(how))
        assert rc == 0 and next(r for r in records if "load" in r)["creators"] == 1


def test_cmake_refuses_headers_and_library_of_different_majors(tmp_path):
    headers11, lean10 = trtenv.header_dirs().get(11), trtenv.lean_for(10)
    if build_tools_unavailable() or headers11 is None or lean10 is None:
        pytest.skip("needs nvcc, TensorRT 11 headers and a TensorRT 10 lean runtime")
    root = _root(tmp_path, headers11, lean10)
    with pytest.raises(ToolchainError, match="TensorRT version mismatch.*TensorRT 11.*TensorRT 10"):
        build_plugins(tmp_path / "build", cuda_archs="80-real", tensorrt_root=root)


def test_cmake_reconfigure_follows_a_changed_tensorrt_root(tmp_path):
    h10, h11 = trtenv.header_dirs().get(10), trtenv.header_dirs().get(11)
    l10, l11 = trtenv.lean_for(10), trtenv.lean_for(11)
    if build_tools_unavailable() or None in (h10, h11, l10, l11):
        pytest.skip("needs nvcc and TensorRT 10 and 11 headers and lean runtimes")
    build = tmp_path / "build"
    first = build_plugins(build, cuda_archs="80-real", tensorrt_root=_root(tmp_path / "a", h10, l10))
    assert first["tensorrt_major"] == 10
    second = build_plugins(build, cuda_archs="80-real", tensorrt_root=_root(tmp_path / "b", h11, l11))
    assert second["tensorrt_major"] == 11 and second["tensorrt_include"].startswith(str(tmp_path / "b"))
    out = subprocess.run(["readelf", "-d", second["tensorrt"]], capture_output=True, text=True).stdout
    assert "libnvinfer_lean.so.11" in out and "libnvinfer_lean.so.10" not in out


# --- enqueue on a GPU -------------------------------------------------------------------------

#: AlexNet's LRN inputs (paper variant at 224 px, torchvision-lrn) and a sweep of edge cases.
ENQUEUE_CASES = [
    ((1, 96, 55, 55), 5, 5e-4, 0.75, 2.0, "fp32", 3.0),
    ((8, 96, 55, 55), 5, 5e-4, 0.75, 2.0, "fp16", 3.0),
    ((8, 256, 27, 27), 5, 5e-4, 0.75, 2.0, "fp16", 3.0),
    ((4, 64, 27, 27), 5, 1e-4, 0.75, 1.0, "fp32", 3.0),
    ((3, 13, 7, 9), 4, 1e-2, 0.75, 1.0, "fp32", 3.0),     # even size
    ((3, 13, 7, 9), 3, 1e-2, 0.75, 1.0, "fp16", 3.0),     # odd size
    ((2, 5, 3, 3), 9, 0.5, 0.75, 1.0, "fp32", 3.0),       # size > C
    ((2, 40, 3, 3), 5, 5e-4, 0.75, 2.0, "fp16", 1000.0),  # squares overflow FP16
]


@pytest.mark.needs_cuda
@pytest.mark.parametrize("case", ENQUEUE_CASES, ids=lambda c: f"{'x'.join(map(str, c[0]))}-n{c[1]}-{c[5]}")
def test_conformance_enqueue_matches_torch(built, case):
    from toolchain.plugin_check import enqueue_against_torch

    shape, size, alpha, beta, bias, dtype, scale = case
    for how in HOW:
        result = enqueue_against_torch(Path(built.result["conformance"]), Path(built.library(how)),
                                       {"size": size, "alpha": alpha, "beta": beta, "bias": bias}, shape, dtype,
                                       libs_dir=built.lean.libs, scale=scale)
        assert result["ok"], result


@pytest.mark.needs_cuda
def test_conformance_enqueue_non_finite_stays_in_its_window(built, tmp_path):
    import torch
    import torch.nn.functional as F

    x = np.random.default_rng(0).standard_normal((1, 40, 2, 2)).astype(np.float32)
    x[0, 10, 0, 0], x[0, 25, 1, 1] = np.nan, np.inf
    src, dst = tmp_path / "in.bin", tmp_path / "out.bin"
    x.tofile(src)
    rc, records, err = _harness(built, "enqueue", "--static", built.library("static"), 5, 0.5, 0.75, 1.0, "fp32",
                                1, 40, 2, 2, src, dst)
    assert rc == 0, (records, err)
    y = np.fromfile(dst, dtype=np.float32).reshape(x.shape)
    ref = F.local_response_norm(torch.from_numpy(x.astype(np.float64)), 5, 0.5, 0.75, 1.0).numpy()
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ref))
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-6)
