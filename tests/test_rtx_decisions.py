"""TensorRT-RTX as a builder: the decisions, tested without it (flavours, targets, options,
precision, load decision, the plugin's build-call trace, the parser's unversioned library)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from toolchain.errors import ToolchainError
from toolchain.trt import RTX_UNVERSIONED_LIBRARY, compat, ensure_rtx_parser_library
from toolchain.trt.network import layer_counts
from toolchain.trt.plan import load_decision, summarize_plugin_trace
from toolchain.trt.compat import FULL, RTX, BuildOptions, Flavour
from toolchain.trt.plugins import plugin_refusals, split_plugin_output

RTX17 = Flavour(RTX, "1.7.1.116")
TRT10 = Flavour(FULL, "10.16.1.11")
TRT11 = Flavour(FULL, "11.1.0.106")


def test_flavour_of_tells_the_modules_apart():
    assert compat.flavour_of("tensorrt_rtx", "1.7.1.116") == RTX17
    assert compat.flavour_of("tensorrt", "10.16.1.11") == TRT10
    assert compat.flavour_of("tensorrt_lean", "11.4.0.106").name == FULL
    # "1.7" must not be read as a TensorRT major, nor an RTX 2.x accepted silently.
    with pytest.raises(ToolchainError, match="not supported"):
        compat.flavour_of("tensorrt", "1.7.1.116")
    with pytest.raises(ToolchainError, match="TensorRT-RTX 2.0.0 is not supported"):
        compat.flavour_of("tensorrt_rtx", "2.0.0")
    assert RTX17.label == "TensorRT-RTX 1.7.1.116" and RTX17.strongly_typed_only
    assert TRT11.strongly_typed_only and not TRT10.strongly_typed_only


def test_manifest_flavour_defaults_to_the_full_tensorrt():
    assert compat.manifest_flavour({"environment": {"tensorrt": "10.16.0"}}) == Flavour(FULL, "10.16.0")
    assert compat.manifest_flavour({"environment": {"flavour": RTX, "tensorrt": "1.7.1.116"}}) == RTX17


@pytest.mark.parametrize("given,expected", [("8.6", "SM86"), ("sm_86", "SM86"), ("86", "SM86"), ("SM120", "SM120"),
                                            ("12.1", "SM121"), ("sm75", "SM75")])
def test_targets_are_read_in_every_usual_spelling(given, expected):
    assert compat.resolve_targets([given], RTX17) == [expected]


def test_targets_keep_order_and_drop_repeats():
    assert compat.resolve_targets(["8.9", "sm_75", "89"], RTX17) == ["SM89", "SM75"]
    assert compat.resolve_targets([], RTX17) == [] and compat.resolve_targets(None, RTX17) == []


def test_sm90_is_refused_naming_the_full_tensorrt():
    with pytest.raises(ToolchainError) as info:
        compat.resolve_targets(["9.0"], RTX17)
    text = info.value.one_line()
    assert "has no target sm_90" in text and "H100" in text and "full TensorRT" in text and "SM86" in text


def test_targets_are_refused_for_the_full_tensorrt_and_for_nonsense():
    with pytest.raises(ToolchainError, match="--compute-capability picks TensorRT-RTX targets"):
        compat.resolve_targets(["8.6"], TRT10)
    with pytest.raises(ToolchainError, match="is not a compute capability"):
        compat.resolve_targets(["ampere"], RTX17)


def test_rtx_gpu_problem():
    assert compat.rtx_gpu_problem("8.6", []) is None  # portable default covers every target
    assert compat.rtx_gpu_problem((12, 0), ["SM120"]) is None
    assert "not among the engine's targets (SM89)" in compat.rtx_gpu_problem("8.6", ["SM89"])
    assert "need the full TensorRT" in compat.rtx_gpu_problem("9.0", [])


def test_flavour_options():
    with pytest.raises(ToolchainError, match="cannot build version-compatible engines"):
        compat.check_flavour_options(BuildOptions(version_compatible=True), RTX17)
    notes = compat.check_flavour_options(BuildOptions(timing_cache="t.cache"), RTX17)
    assert len(notes) == 1 and "no-op" in notes[0] and "t.cache" in notes[0]
    with pytest.raises(ToolchainError, match="only into version-compatible engines"):
        compat.check_flavour_options(BuildOptions(embed_plugin=True), TRT10)
    assert compat.check_flavour_options(BuildOptions(embed_plugin=True, version_compatible=True), TRT10) == []
    with pytest.raises(ToolchainError, match="--embed-plugin needs --lrn plugin"):
        BuildOptions(embed_plugin=True, lrn="native").validate()
    assert BuildOptions(embed_plugin=True).serializes_plugin and BuildOptions(version_compatible=True).serializes_plugin
    assert not BuildOptions(version_compatible=True, lrn="native").serializes_plugin


def test_rtx_precision_is_strongly_typed_like_tensorrt_11():
    fp16 = compat.plan_precision("fp16", "1.7.1.116", flavour=RTX)
    assert (fp16.precision, fp16.strongly_typed, fp16.fp16_flag) == ("fp16", True, False)
    with pytest.raises(ToolchainError, match="TensorRT-RTX 1.7.1.116 builds strongly typed networks only"):
        compat.plan_precision("fp32", "1.7.1.116", flavour=RTX)
    assert compat.plan_precision("fp32", "1.7.1.116", flavour=RTX, allow_fp32=True).precision == "fp32"
    int8 = compat.plan_precision("fp32", "1.7.1.116", flavour=RTX, quantized=True)
    assert (int8.precision, int8.strongly_typed, int8.int8_flag, int8.fp16_flag) == ("int8", True, False, False)


def test_load_decision():
    assert load_decision(TRT10, None, []) is None  # the full builder ran on a GPU: always loaded
    assert "no CUDA GPU here" in load_decision(RTX17, None, [])
    assert load_decision(RTX17, {"compute_capability": "8.6"}, []) is None
    assert "sm_90" in load_decision(RTX17, {"compute_capability": "9.0"}, [])
    assert "targets (SM120)" in load_decision(RTX17, {"compute_capability": "8.6"}, ["SM120"])


def test_layer_counts_most_common_first():
    assert list(layer_counts(["CONVOLUTION", "PLUGIN_V3", "CONVOLUTION", "ACTIVATION"]).items()) == [
        ("CONVOLUTION", 2), ("ACTIVATION", 1), ("PLUGIN_V3", 1)]


def test_summarize_plugin_trace():
    lines = ["FusedLRN 'lrn1' build call getOutputShapes: input rank 4",
             "noise FusedLRN 'lrn1' build call supportsFormatCombination: pos 0 type HALF LINEAR -> yes",
             "FusedLRN 'lrn1' build call configurePlugin: type HALF min [1,96,55,55] max [256,96,55,55]",
             "FusedLRN 'lrn2' build call configurePlugin: type FLOAT min [-1,3,4,4] max [8,3,4,4]",
             "something else entirely"]
    summary = summarize_plugin_trace(lines)
    assert summary["calls"] == {"getOutputShapes": 1, "supportsFormatCombination": 1, "configurePlugin": 2}
    assert summary["configure"]["lrn1"] == {"type": "HALF", "min": [1, 96, 55, 55], "max": [256, 96, 55, 55]}
    assert summary["configure"]["lrn2"]["min"] == [-1, 3, 4, 4]
    assert summarize_plugin_trace([]) == {"calls": {}, "configure": {}}


def test_plugin_refusals_from_stderr():
    text = ("[FusedLRN] FusedLRN::createPlugin('FusedLRN_features.6'): size must be an integer in [1, 2147483647]\n"
            "some TensorRT line\n[FusedLRN] FusedLRN 'n2': enqueue: bad\n")
    assert plugin_refusals(text) == [("FusedLRN_features.6", "size must be an integer in [1, 2147483647]"),
                                     ("n2", "enqueue: bad")]
    refusals, rest = split_plugin_output(text)
    assert len(refusals) == 2 and rest == "some TensorRT line"


# ------------------------------------------------------------ the parser's unversioned library


def _libs(tmp_path: Path) -> Path:
    libs = tmp_path / "tensorrt_rtx_libs"
    libs.mkdir()
    (libs / f"{RTX_UNVERSIONED_LIBRARY}.1").write_bytes(b"\x7fELF")
    return libs


def test_unversioned_library_link_is_created_atomically(tmp_path):
    libs = _libs(tmp_path)
    assert ensure_rtx_parser_library(libs, ld_library_path="") == "created"
    link = libs / RTX_UNVERSIONED_LIBRARY
    assert link.is_symlink() and os.readlink(link) == f"{RTX_UNVERSIONED_LIBRARY}.1" and link.exists()
    assert sorted(p.name for p in libs.iterdir()) == [RTX_UNVERSIONED_LIBRARY, f"{RTX_UNVERSIONED_LIBRARY}.1"]
    assert ensure_rtx_parser_library(libs, ld_library_path="") == "present"


def test_unversioned_library_on_ld_library_path_is_enough(tmp_path):
    libs = _libs(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    (other / RTX_UNVERSIONED_LIBRARY).write_bytes(b"")
    assert ensure_rtx_parser_library(libs, ld_library_path=f"/nonexistent{os.pathsep}{other}") == "LD_LIBRARY_PATH"
    assert not (libs / RTX_UNVERSIONED_LIBRARY).exists()


def test_unversioned_library_refused_in_one_line_when_it_cannot_be_created(tmp_path, monkeypatch):
    libs = _libs(tmp_path)

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "symlink", read_only)
    with pytest.raises(ToolchainError) as info:
        ensure_rtx_parser_library(libs, ld_library_path="")
    text = info.value.one_line()
    assert "aborts the process" in text and "Permission denied" in text
    assert f"ln -s {RTX_UNVERSIONED_LIBRARY}.1 {libs / RTX_UNVERSIONED_LIBRARY}" in text
    assert sorted(p.name for p in libs.iterdir()) == [f"{RTX_UNVERSIONED_LIBRARY}.1"]  # nothing left behind


def test_unversioned_library_missing_wheel_folder(tmp_path):
    with pytest.raises(ToolchainError, match="cannot find TensorRT-RTX's library folder"):
        ensure_rtx_parser_library(None, ld_library_path="")
    empty = tmp_path / "libs"
    empty.mkdir()
    with pytest.raises(ToolchainError, match="holds no libtensorrt_rtx.so.N"):
        ensure_rtx_parser_library(empty, ld_library_path="")


# ------------------------------------------------------------ engines at run time


def _rtx_manifest(targets=()):
    return {"environment": {"flavour": RTX, "tensorrt": "1.7.1.116", "gpu": {"compute_capability": None}},
            "build": {"compute_capabilities": list(targets)}}


def test_engine_compat_for_rtx_engines():
    ok = compat.check_engine_compat(_rtx_manifest(), tensorrt_version="1.7.1.116", compute_capability="8.9",
                                    flavour=RTX)
    assert ok.ok, ok.problems
    wrong_runtime = compat.check_engine_compat(_rtx_manifest(), tensorrt_version="10.16.1", compute_capability="8.9")
    assert "built by TensorRT-RTX 1.7.1.116" in wrong_runtime.problems[0]
    hopper = compat.check_engine_compat(_rtx_manifest(), tensorrt_version="1.7.1.116", compute_capability="9.0",
                                        gpu_name="NVIDIA H100", flavour=RTX)
    assert "sm_90" in hopper.problems[0] and "H100" in hopper.problems[0]
    other = compat.check_engine_compat(_rtx_manifest(["SM120"]), tensorrt_version="1.6.0.5", compute_capability="8.6",
                                       flavour=RTX)
    assert len(other.problems) == 2
    full = {"environment": {"tensorrt": "10.16.1", "gpu": {"compute_capability": "9.0"}}, "build": {}}
    assert "built by TensorRT 10.16.1" in compat.check_engine_compat(
        full, tensorrt_version="1.7.1.116", compute_capability="8.6", flavour=RTX).problems[0]


def test_triton_refuses_rtx_engines(tmp_path):
    from tests.helpers import fake_build_outputs
    from toolchain.trt.triton import package_triton

    engine, _ = fake_build_outputs(tmp_path / "e")
    manifest_path = Path(str(engine) + ".manifest.json")
    manifest = json.loads(manifest_path.read_text())
    manifest["environment"].update(flavour=RTX, tensorrt="1.7.1.116")
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(ToolchainError, match="Triton's TensorRT backend"):
        package_triton(tmp_path / "repo", engine)
    assert not (tmp_path / "repo").exists()
