"""Nothing lost, nothing silently wrong (issue 19): the write rule, weights by content, numbers up front.

Each case of the issue is run as a user would (the CLI, mostly in this process so the OS
underneath can be made read-only or full by monkeypatching :mod:`toolchain.io`; root
ignores file permissions, so chmod cannot simulate them). Every refused case must give
one line, a non-zero exit, no traceback, and leave every pre-existing file byte-identical.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import pytest

from tests.helpers import assert_one_line_error, run_main, snapshot
from toolchain import io as tio
from toolchain.errors import ToolchainError

SIZE, CLASSES = 64, 10
META = {"variant": "paper", "num_classes": CLASSES, "in_channels": 3, "image_size": SIZE,
        "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "classes": [str(i) for i in range(CLASSES)],
        "dataset": "synthetic", "split": {"seed": 0, "val_fraction": 0.2}}


def _model(seed: int):
    import torch

    from toolchain.models import build_model

    torch.manual_seed(seed)
    model = build_model("paper", num_classes=CLASSES, image_size=SIZE).eval()
    with torch.no_grad():  # as after training: non-zero biases (the exporter drops all-zero ones)
        for name, param in model.named_parameters():
            if name.endswith("bias"):
                param.normal_(0.0, 0.01)
    return model


def _write_checkpoint(path: Path, model, meta: dict) -> Path:
    from toolchain.checkpoint import save_checkpoint

    return save_checkpoint(path, model, meta)


def _edit_initializer(source: Path, target: Path, name: str, delta: float) -> Path:
    """A copy of an ONNX file with one tensor changed and its metadata (sha256 included) kept."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(source))
    tensor = next(t for t in model.graph.initializer if t.name == name)
    array = numpy_helper.to_array(tensor).copy()
    array.reshape(-1)[0] += delta
    tensor.CopyFrom(numpy_helper.from_array(array, name))
    onnx.save(model, str(target))
    return target


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A checkpoint C, its export M, a random-weights export, and M with one bias edited (metadata kept)."""
    from toolchain.checkpoint import load_checkpoint
    from toolchain.export import export_from_source, export_model

    root = tmp_path_factory.mktemp("safety")
    ckpt_path = _write_checkpoint(root / "model.safetensors", _model(0), META)
    ckpt = load_checkpoint(ckpt_path)
    onnx_path = export_model(ckpt.model, ckpt.meta, checkpoint_sha256=ckpt.sha256, output=root / "model.onnx").path
    other = export_from_source(root / "random.onnx", variant="paper", image_size=SIZE, num_classes=CLASSES,
                               seed=1).path
    edited = _edit_initializer(onnx_path, root / "edited.onnx", "classifier.7.bias", 0.5)
    return {"root": root, "checkpoint": ckpt_path, "ckpt": ckpt, "onnx": onnx_path, "random": other,
            "edited": edited}


def _refused(result, *fragments):
    assert_one_line_error(result, *fragments)


# ============================================================== 1. the write rule


def test_input_conflict_covers_the_file_its_links_its_companions_and_folders_holding_it(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    ckpt = data / "model.safetensors"
    ckpt.write_bytes(b"weights")
    (data / "model.json").write_text("{}")
    (tmp_path / "link.safetensors").symlink_to(ckpt)
    os.link(ckpt, tmp_path / "hard.safetensors")
    engine = data / "model.engine"
    engine.write_bytes(b"plan")
    Path(str(engine) + ".manifest.json").write_text("{}")
    inputs = {"--checkpoint": ckpt, "--engine": engine, "--data-dir": tmp_path / "images"}
    (tmp_path / "images").mkdir()
    conflict = lambda out, folder=False: tio.input_conflict(Path(out), inputs, folder=folder)  # noqa: E731
    assert "is the input --checkpoint" in conflict(ckpt)
    assert "is the input --checkpoint" in conflict(tmp_path / "link.safetensors")
    assert "is the input --checkpoint" in conflict(tmp_path / "hard.safetensors")
    assert "belongs to --checkpoint" in conflict(data / "model.json")  # the sidecar
    assert "belongs to --engine" in conflict(str(engine) + ".manifest.json")
    assert "holds the input" in conflict(data, folder=True)
    assert "holds the input" in conflict(tmp_path, folder=True)
    assert "is the input --data-dir" in conflict(tmp_path / "images", folder=True)
    assert conflict(data / "other.onnx") is None
    assert conflict(tmp_path / "images" / "out.json") is None  # writing into an input folder replaces nothing
    assert conflict(tmp_path / "elsewhere", folder=True) is None


def test_guard_output_refuses_existing_files_unless_force_and_never_an_input(tmp_path):
    existing = tmp_path / "out.json"
    existing.write_text("old")
    with pytest.raises(ToolchainError, match="already exists"):
        tio.guard_output(existing, force=False)
    tio.guard_output(existing, force=True)
    with pytest.raises(ToolchainError, match="--force never overwrites"):
        tio.guard_output(existing, force=True, inputs=[("--onnx", existing)])
    with pytest.raises(ToolchainError, match="is a file, not a folder"):
        tio.guard_output(existing / "x.json", force=False)
    assert existing.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


@pytest.mark.parametrize("case", ["export-checkpoint", "export-sidecar", "quantize", "parity", "evaluate", "build"])
def test_force_never_lets_an_output_overwrite_an_input(files, case):
    c, m = files["checkpoint"], files["onnx"]
    args = {
        "export-checkpoint": ("export", "--checkpoint", c, "-o", c),
        "export-sidecar": ("export", "--checkpoint", c, "-o", c.with_suffix(".json")),
        "quantize": ("quantize", "--checkpoint", c, "--onnx", m, "-o", m),
        "parity": ("parity", "--onnx", m, "--checkpoint", c, "--report", m),
        "evaluate": ("evaluate", c, "-o", c),
        "build": ("build", m, "-o", m),
    }[case]
    before = snapshot(files["root"])
    _refused(run_main(*args, "--force"), "refusing to write", "--force never overwrites")
    assert snapshot(files["root"]) == before


def test_package_force_never_deletes_the_folder_holding_the_engine_or_a_foreign_folder(tmp_path):
    from tests.helpers import fake_build_outputs

    engine, _ = fake_build_outputs(tmp_path / "e")
    (tmp_path / "e" / "notes.txt").write_text("mine")
    before = snapshot(tmp_path / "e")
    _refused(run_main("package", "--triton", tmp_path / "e", "--engine", engine, "--force"),
             "holds the input --engine")
    assert snapshot(tmp_path / "e") == before
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("years of work")
    _refused(run_main("package", "--triton", foreign, "--engine", engine, "--force"),
             "not a model repository written by toolchain package")
    assert (foreign / "thesis.tex").read_text() == "years of work"
    repo = tmp_path / "repo"
    assert run_main("package", "--triton", repo, "--engine", engine, "--max-batch", "8").code == 0
    again = run_main("package", "--triton", repo, "--engine", engine, "--max-batch", "4", "--force")
    assert again.code == 0, again.stderr  # our own repository is replaced as a whole
    assert "max_batch_size: 4" in next(repo.rglob("config.pbtxt")).read_text()


def test_benchmark_and_train_refuse_an_output_folder_holding_an_input(files, tmp_path):
    before = snapshot(files["root"])
    _refused(run_main("benchmark", "--checkpoint", files["checkpoint"], "--onnx", files["onnx"], "--out",
                      files["root"], "--force"), "holds the input")
    images = tmp_path / "images" / "cat"
    images.mkdir(parents=True)
    _refused(run_main("train", "--dataset", f"imagefolder:{tmp_path / 'images'}", "--out", tmp_path, "--force"),
             "holds the input --dataset")
    assert snapshot(files["root"]) == before


# ============================================================== 2. the same weights, by content


def test_weight_differences_by_content(files):
    import onnx

    from toolchain.export import export_model
    from toolchain.weights import model_state, weight_differences

    state = model_state(files["ckpt"].model)
    assert weight_differences(state, onnx.load(str(files["onnx"]))) == []
    edited = weight_differences(state, onnx.load(str(files["edited"])))
    assert edited == ["classifier.7.bias differs by up to 0.5"]
    assert len(weight_differences(state, onnx.load(str(files["random"])))) >= 10
    fp16 = export_model(files["ckpt"].model, files["ckpt"].meta, dtype="fp16").model
    assert weight_differences(state, fp16) == []  # within FP16 rounding
    state["classifier.7.bias"] = state["classifier.7.bias"] + 0.01
    assert weight_differences(state, fp16) == ["classifier.7.bias differs by up to 0.01"]


def test_a_zero_bias_the_exporter_dropped_counts_as_present():
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    weight = np.ones((2, 3), dtype=np.float32)
    graph = helper.make_graph([helper.make_node("Gemm", ["x", "fc.weight"], ["y"], transB=1)], "g",
                              [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 2])],
                              [numpy_helper.from_array(weight, "fc.weight")])
    from toolchain.weights import weight_differences

    model = helper.make_model(graph)
    assert weight_differences({"fc.weight": weight, "fc.bias": np.zeros(2, np.float32)}, model) == []
    assert weight_differences({"fc.weight": weight, "fc.bias": np.ones(2, np.float32)}, model) == \
        ["fc.bias is not in the ONNX file"]


@pytest.mark.parametrize("target", ["tensorrt", "onnxruntime"])
def test_qdq_weights_match_within_half_a_quantization_step(files, tmp_path, target):
    import onnx

    from toolchain.quantize import quantize_checkpoint
    from toolchain.weights import model_state, onnx_tensors, weight_differences

    out = tmp_path / f"int8-{target}.onnx"
    quantize_checkpoint(files["checkpoint"], out, onnx_path=files["onnx"], samples=16, target=target)
    model = onnx.load(str(out))
    state = model_state(files["ckpt"].model)
    assert onnx_tensors(model)["features.0.weight"].kind == "quantized"
    assert weight_differences(state, model) == []
    state["features.4.weight"] = state["features.4.weight"] * 1.5
    assert weight_differences(state, model)[0].startswith("features.4.weight differs")


@pytest.mark.parametrize("which", ["random", "edited"])
def test_quantize_refuses_an_onnx_holding_other_weights(files, tmp_path, which):
    out = tmp_path / "int8.onnx"
    _refused(run_main("quantize", "--checkpoint", files["checkpoint"], "--onnx", files[which], "-o", out,
                      "--samples", "16"), "does not hold the weights of checkpoint")
    assert not out.exists()


def test_parity_and_benchmark_refuse_other_weights_before_any_work(files, tmp_path, monkeypatch):
    import toolchain.bench.harness as harness
    import toolchain.parity as parity

    def no_work(*args, **kwargs):
        raise AssertionError("work started before the weights were checked")

    monkeypatch.setattr(parity, "run_parity", no_work)
    monkeypatch.setattr(harness, "run_benchmark", no_work)
    _refused(run_main("parity", "--onnx", files["edited"], "--checkpoint", files["checkpoint"], "--random", "2",
                      "--batch-sizes", "1"), "classifier.7.bias differs")
    _refused(run_main("benchmark", "--checkpoint", files["checkpoint"], "--onnx", files["edited"], "--backends",
                      "onnxruntime-cpu", "--out", tmp_path / "b"), "does not hold the weights", "--allow-mismatch")
    assert not (tmp_path / "b").exists()


def test_pipeline_parity_step_checks_the_weights(files, tmp_path):
    from toolchain.pipeline import STEPS, Pipeline, PipelineConfig, StepResult

    pipeline = Pipeline(PipelineConfig(out_dir=str(tmp_path / "run"), dataset="synthetic", progress=False))
    pipeline.paths["checkpoint"] = files["checkpoint"]
    pipeline.paths["onnx_fp32"] = files["edited"]
    step = next(s for s in STEPS if s.name == "parity-onnxruntime")
    with pytest.raises(ToolchainError, match="does not hold the weights"):
        step.run(pipeline, StepResult(step.name, "", ""), step.args(pipeline))


# ============================================================== 3. OS errors in one line


@pytest.fixture
def read_only(monkeypatch):
    """Make folders under the returned root refuse new files as a read-only file system does."""
    roots: list[Path] = []
    real = tio._open_temp

    def open_temp(folder, name):
        if any(Path(folder).resolve() == r or r in Path(folder).resolve().parents for r in roots):
            raise OSError(errno.EROFS, "Read-only file system", str(folder))
        return real(folder, name)

    monkeypatch.setattr(tio, "_open_temp", open_temp)
    return lambda root: roots.append(Path(root).resolve()) or Path(root)


@pytest.mark.parametrize("command", ["export", "quantize", "parity", "summary", "evaluate", "benchmark", "package",
                                     "train"])
def test_a_read_only_output_is_one_line_before_any_work(files, tmp_path, read_only, monkeypatch, command):
    import toolchain.bench.harness as harness
    import toolchain.parity as parity

    def no_work(*args, **kwargs):
        raise AssertionError("work started before the output was checked")

    monkeypatch.setattr(parity, "run_parity", no_work)
    monkeypatch.setattr(harness, "run_benchmark", no_work)
    ro = read_only(tmp_path / "ro")
    ro.mkdir()
    c, m = files["checkpoint"], files["onnx"]
    if command == "package":
        from tests.helpers import fake_build_outputs

        engine, _ = fake_build_outputs(tmp_path / "e")
    args = {
        "export": ("export", "--checkpoint", c, "-o", ro / "m.onnx"),
        "quantize": ("quantize", "--checkpoint", c, "--onnx", m, "-o", ro / "q.onnx"),
        "parity": ("parity", "--onnx", m, "--checkpoint", c, "--random", "2", "--batch-sizes", "1",
                   "--report", ro / "r.json"),
        "summary": ("summary", "paper", "-o", ro / "s.json"),
        "evaluate": ("evaluate", c, "-o", ro / "e.json"),
        "benchmark": ("benchmark", "--checkpoint", c, "--out", ro / "bench"),
        "package": ("package", "--triton", ro / "repo", "--engine", engine if command == "package" else None),
        "train": ("train", "--dataset", "synthetic", "--epochs", "1", "--out", ro / "run"),
    }[command]
    _refused(run_main(*args), "cannot write", "Read-only file system")
    assert list(ro.iterdir()) == []


@pytest.fixture
def disk_full(monkeypatch):
    """Make finishing any file the toolchain writes fail as a full disk does."""
    def finish(tmp, path):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tio, "_finish_temp", finish)


@pytest.mark.parametrize("command", ["export", "quantize"])
def test_a_full_disk_is_one_line_and_leaves_nothing(files, tmp_path, disk_full, command):
    c, m = files["checkpoint"], files["onnx"]
    out = tmp_path / "out"
    args = {"export": ("export", "--checkpoint", c, "-o", out / "m.onnx"),
            "quantize": ("quantize", "--checkpoint", c, "--onnx", m, "-o", out / "q.onnx", "--samples", "16")}[command]
    _refused(run_main(*args), "cannot write", "No space left on device", "free some space")
    assert not out.exists() or list(out.iterdir()) == []


def test_a_full_disk_while_packaging_is_one_line(tmp_path, monkeypatch):
    from tests.helpers import fake_build_outputs

    engine, _ = fake_build_outputs(tmp_path / "e")

    def copy(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shutil, "copyfile", copy)
    _refused(run_main("package", "--triton", tmp_path / "repo", "--engine", engine), "cannot write",
             "No space left on device")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e"]  # no repository, no staging folder


@pytest.mark.slow
def test_a_full_disk_while_training_is_one_line_and_leaves_no_empty_folder(tmp_path, disk_full):
    _refused(run_main("train", "--dataset", "synthetic", "--epochs", "1", "--device", "cpu", "--quiet",
                      "--out", tmp_path / "runs" / "run"), "cannot write", "No space left on device")
    assert list(tmp_path.iterdir()) == []  # neither run/ nor the runs/ it needed


def test_writers_errors_behind_library_exceptions_become_one_line(tmp_path):
    with pytest.raises(ToolchainError, match="cannot write .*No space left on device"):
        with tio.atomic_output(tmp_path / "x.bin"):
            try:
                raise OSError(errno.ENOSPC, "No space left on device")
            except OSError as exc:
                raise RuntimeError("PytorchStreamWriter failed writing file") from exc
    with pytest.raises(ValueError):  # not an OS error: a bug keeps its type
        with tio.atomic_output(tmp_path / "y.bin"):
            raise ValueError("bug")
    assert list(tmp_path.iterdir()) == []


# ============================================================== result sets: whole or nothing


def _tiny_result():
    from tests.helpers import TINY, FakeRunner, candidate
    from toolchain.bench import harness

    return harness.run_benchmark([candidate(FakeRunner("eager-fp32"))], [1], TINY, environment={"cuda_available": False})


def test_benchmark_files_appear_whole_or_not_at_all(tmp_path, monkeypatch):
    import toolchain.bench.report as report

    result = _tiny_result()
    real = report._save_plot

    def interrupted(data, name, path):
        if name == "throughput":
            raise KeyboardInterrupt
        real(data, name, path)

    monkeypatch.setattr(report, "_save_plot", interrupted)
    with pytest.raises(KeyboardInterrupt):
        report.write_benchmark_report(result, tmp_path / "r")
    assert not (tmp_path / "r").exists() or list((tmp_path / "r").iterdir()) == []
    monkeypatch.setattr(report, "_save_plot", real)
    paths = report.write_benchmark_report(result, tmp_path / "r")  # the rerun needs no --force
    before = snapshot(tmp_path / "r")
    assert sorted(before) == sorted(Path(p).name for p in paths.values())

    calls = []
    real_replace = tio._replace

    def third_rename_fails(source, target):
        calls.append(target)
        if len(calls) == 5:  # the set is half committed (old files moved aside, some new ones in place)
            raise OSError(errno.ENOSPC, "No space left on device")
        real_replace(source, target)

    monkeypatch.setattr(tio, "_replace", third_rename_fails)
    with pytest.raises(ToolchainError, match="No space left"):
        report.write_benchmark_report(result, tmp_path / "r", force=True)
    assert snapshot(tmp_path / "r") == before  # the old set, whole


def test_a_benchmark_that_timed_nothing_writes_nothing(tmp_path):
    from toolchain.environment import cuda_unavailable

    if cuda_unavailable() is None:
        pytest.skip("eager-fp16 runs on this machine's GPU; the case needs a machine without one")
    out = tmp_path / "b"
    _refused(run_main("benchmark", "--variant", "paper", "--image-size", "64", "--num-classes", "10", "--backends",
                      "eager-fp16", "--out", out, "--quiet"), "no backend could be timed", "no result files")
    assert not out.exists() or list(out.iterdir()) == []


@pytest.mark.parametrize("args,fragment", [(("--dataset", "bogus"), "unknown dataset"),
                                           (("--epochs", "0"), "--epochs"),
                                           (("--dataset", "imagefolder:/nonexistent"), "does not exist"),
                                           (("--quant-samples", "4"), "--quant-samples"),
                                           (("--parity-limit", "8"), "--parity-limit 8")])
def test_pipeline_checks_its_options_before_writing_anything(tmp_path, monkeypatch, args, fragment):
    monkeypatch.chdir(tmp_path)
    _refused(run_main("pipeline", "--out", tmp_path / "run", *args, "--quiet"), fragment)
    assert list(tmp_path.iterdir()) == []  # no run folder, no build/plugins, no report to block a rerun


def test_checkpoints_get_normal_file_modes(tmp_path):
    old = os.umask(0o022)
    try:
        path = _write_checkpoint(tmp_path / "m.safetensors", _model(0), META)
    finally:
        os.umask(old)
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in tmp_path.iterdir()} == \
        {"m.safetensors": "0o644", "m.json": "0o644"}
    from toolchain.checkpoint import load_checkpoint

    assert load_checkpoint(path).sha256 == json.loads((tmp_path / "m.json").read_text())["sha256"]


# ============================================================== 4. numbers and metadata


@pytest.mark.parametrize("args,fragment", [
    (("evaluate", "{c}", "--batch-size", "0"), "--batch-size"),
    (("evaluate", "{c}", "--batch-size", "-1"), "--batch-size"),
    (("evaluate", "{c}", "--fused-lrn", "--device", "cpu"), "--fused-lrn runs LRN through the CUDA kernel"),
    (("train", "--lr", "-1", "--out", "{t}/r"), "--lr"),
    (("train", "--lr", "nan", "--out", "{t}/r"), "--lr"),
    (("train", "--dropout", "2", "--out", "{t}/r"), "--dropout"),
    (("train", "--in-channels", "0", "--out", "{t}/r"), "--in-channels"),
    (("summary", "paper", "--num-classes", "-5"), "--num-classes"),
    (("summary", "paper", "--in-channels", "0"), "--in-channels"),
    (("summary", "paper", "--image-size", "100000"), "--image-size"),
    (("summary", "paper", "--image-size", "20"), "too small for the paper variant"),
    (("export", "--variant", "paper", "--num-classes", "0", "-o", "{t}/m.onnx"), "--num-classes"),
    (("parity", "--onnx", "{m}", "--random", "0"), "--random"),
    (("parity", "--onnx", "{m}", "--limit", "0"), "--limit"),
    (("parity", "--onnx", "{m}", "--checkpoint", "{c}", "--batch-sizes", "99999999999"), "batch size 99999999999"),
    (("parity", "--onnx", "{m}", "--checkpoint", "{c}", "--random", "4", "--batch-sizes", "1,8"),
     "batch size 8 is larger than the 4 input(s)"),
])
def test_impossible_numbers_are_one_line_and_write_nothing(files, tmp_path, args, fragment):
    fill = {"c": files["checkpoint"], "m": files["onnx"], "t": tmp_path}
    before = snapshot(files["root"])
    _refused(run_main(*(a.format(**fill) for a in args)), fragment)
    assert list(tmp_path.iterdir()) == [] and snapshot(files["root"]) == before


@pytest.mark.parametrize("change,fragment", [({"num_classes": "ten"}, "num_classes must be an integer"),
                                             ({"std": [0.0, 0.25, 0.25]}, "std must be more than 0"),
                                             ({"mean": [0.5]}, "mean must list 3 number(s)"),
                                             ({"classes": ["a", "b"]}, "lists 2 class name(s) for 10 classes"),
                                             ({"image_size": 100000}, "image_size must be")])
def test_bad_checkpoint_metadata_is_refused_by_every_command(files, tmp_path, change, fragment):
    bad = _write_checkpoint(tmp_path / "bad.safetensors", files["ckpt"].model, {**META, **change})
    _refused(run_main("export", "--checkpoint", bad, "-o", tmp_path / "m.onnx"), fragment)
    _refused(run_main("evaluate", bad), fragment)
    assert not (tmp_path / "m.onnx").exists()


def test_unreadable_onnx_metadata_is_one_line(files, tmp_path):
    import onnx

    model = onnx.load(str(files["onnx"]))
    next(p for p in model.metadata_props if p.key == "toolchain.num_classes").value = "ten"
    bad = tmp_path / "bad.onnx"
    onnx.save(model, str(bad))
    _refused(run_main("parity", "--onnx", bad, "--random", "2", "--batch-sizes", "1"),
             "metadata toolchain.num_classes is not readable")


def test_check_number_names_the_value_and_the_range():
    from toolchain.validate import check_number

    assert check_number("--x", "3", low=1, integer=True) == 3
    for value in ("ten", 2.5, None, True, float("inf")):
        with pytest.raises(ToolchainError, match="--x must be"):
            check_number("--x", value, low=1, integer=True)
    with pytest.raises(ToolchainError, match="--x must be more than 0 and less than 1, got 1"):
        check_number("--x", 1, low=0, high=1, low_open=True, high_open=True)


# ============================================================== 5. checks that passed what they should not


def test_fused_lrn_nodes_with_a_float_size_or_zero_bias_are_refused():
    from onnx import helper

    from toolchain.onnx_lrn import node_problems

    good = helper.make_node("FusedLRN", ["x"], ["y"], name="n", domain="toolchain", size=5, alpha=1e-4, beta=0.75,
                            bias=2.0)
    assert node_problems(good) == []
    float_size = helper.make_node("FusedLRN", ["x"], ["y"], name="n", domain="toolchain", size=5.0, alpha=1e-4,
                                  beta=0.75, bias=2.0)
    assert node_problems(float_size) == ["n: attribute size is stored as FLOAT, the op takes INT"]
    zero_bias = helper.make_node("FusedLRN", ["x"], ["y"], name="n", domain="toolchain", size=5, alpha=1e-4,
                                 beta=0.75, bias=0.0)
    assert "bias (k) must be positive" in node_problems(zero_bias)[0]


def test_plugin_check_refuses_a_float_size_the_plugin_itself_accepts():
    from types import SimpleNamespace

    from onnx import helper

    from toolchain.plugin_check import _check_node

    trt = SimpleNamespace(PluginField=lambda *args: args, PluginFieldCollection=list,
                          PluginFieldType=SimpleNamespace(INT32="INT32", FLOAT32="FLOAT32"),
                          TensorRTPhase=SimpleNamespace(BUILD="BUILD"))
    lenient = SimpleNamespace(create_plugin=lambda name, fields, phase: object())  # as the real creator did
    node = helper.make_node("FusedLRN", ["x"], ["y"], name="FusedLRN_features.1", domain="toolchain", size=5.0,
                            alpha=1e-4, beta=0.75, bias=2.0)
    result = _check_node(trt, lenient, node)
    assert result.accepted is False and "size is stored as FLOAT" in result.reason
    next(a for a in node.attribute if a.name == "size").CopyFrom(helper.make_attribute("size", 5))
    assert _check_node(trt, lenient, node).accepted is True


def test_quantize_refuses_a_zero_bias_fused_lrn_in_one_line(files, tmp_path):
    import onnx

    model = onnx.load(str(files["onnx"]))
    node = next(n for n in model.graph.node if n.op_type == "FusedLRN")
    next(a for a in node.attribute if a.name == "bias").f = 0.0
    bad = tmp_path / "zero-bias.onnx"
    onnx.save(model, str(bad))
    _refused(run_main("quantize", "--checkpoint", files["checkpoint"], "--onnx", bad, "-o", tmp_path / "q.onnx",
                      "--samples", "16"), "FusedLRN nodes are not valid", "bias (k) must be positive")
    assert not (tmp_path / "q.onnx").exists()


# ============================================================== 6. messages


def test_a_wrong_variant_checkpoint_says_which_tensor_does_not_fit(files, tmp_path):
    from safetensors.torch import save_file

    state = {k: v.contiguous() for k, v in files["ckpt"].model.state_dict().items()}
    path = tmp_path / "wrong.safetensors"
    save_file(state, str(path), metadata={"toolchain": json.dumps({**META, "variant": "torchvision"})})
    result = run_main("evaluate", path)
    _refused(result, "do not fit the model its metadata describes", "variant torchvision",
             "features.0.weight is [96, 3, 11, 11], the model needs [64, 3, 11, 11]")
    assert "Error(s) in loading" not in result.stderr


def test_parity_failure_hint_names_the_report_or_how_to_get_one():
    from toolchain.parity import Check, OutputComparison, ParityError, ParityReport

    report = ParityReport("ref", "cand", "fp32", {}, [OutputComparison("logits", 1, 1, {}, [Check("x", False, 1, 0)])])
    with pytest.raises(ParityError, match="rerun with --report FILE"):
        report.raise_if_failed()
    with pytest.raises(ParityError, match="every metric is in r.json"):
        report.raise_if_failed(report="r.json")


def test_a_failed_download_names_the_data_dir_and_leaves_no_empty_folder(tmp_path):
    from toolchain.data import _download
    from toolchain.errors import MissingDependencyError

    where = tmp_path / "X"

    def download():
        (where / "FashionMNIST" / "raw").mkdir(parents=True)
        raise OSError("network unreachable")

    with pytest.raises(MissingDependencyError) as info:
        _download("Fashion-MNIST", download, where)
    assert f"into {where}" in info.value.one_line() and f"under {where}" in info.value.one_line()
    assert not where.exists()


def test_usage_errors_are_one_line():
    _refused(run_main("evaluate", "--bogus"), "No such option", "see 'toolchain evaluate --help'")
    _refused(run_main("bogus"), "No such command")
    _refused(run_main("export"), "Missing option '-o'")


def test_torchrun_failure_is_one_line():
    from toolchain.torchrun import failure_line

    line = failure_line(1, 2, 2)
    assert "\n" not in line and line.startswith("error: ") and "rank 1 exited with code 2" in line
    assert "killed by SIGKILL" in failure_line(0, -9, 1)


def test_skip_reasons_say_what_the_user_needs():
    import trtenv

    reason = trtenv.header_skip_reason(10)
    assert "include folder" in reason and "NvInfer.h" in reason and "TOOLCHAIN_TRT_HEADERS" in reason
    assert "workplace" not in reason and "shared" not in reason


def test_pipeline_gives_a_long_skip_reason_in_full_once():
    from rich.console import Console

    from toolchain.pipeline.engine import StepResult, StepRunner

    runner = StepRunner(console=Console(quiet=True), total=3)
    long = "no CUDA GPU on this machine; TensorRT is not installed (no module); pip install tensorrt (a long hint)"
    first = runner.execute(StepResult("engine-build", "t", "c"), lambda r: None, requires=lambda: long)
    second = runner.execute(StepResult("engine-build-native", "t", "c"), lambda r: None, requires=lambda: long)
    third = runner.execute(StepResult("parity-tensorrt", "t", "c"), lambda r: None, needs=("engine-build",))
    assert first.reason == long
    assert second.reason == "no CUDA GPU on this machine; see step engine-build"
    assert third.reason == "needs step engine-build, which was skipped (no CUDA GPU on this machine; see step " \
                           "engine-build)"
    from toolchain.report import skip_causes

    from dataclasses import asdict

    assert skip_causes([asdict(s) for s in runner.records]) == {long: ["engine-build", "engine-build-native",
                                                                       "parity-tensorrt"]}


@pytest.mark.slow
def test_torchrun_launcher_reports_a_failed_launch_in_one_line_per_rank(tmp_path):
    import subprocess
    import sys

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "keep.txt").write_text("mine")
    proc = subprocess.run([sys.executable, "-m", "toolchain.torchrun", "--standalone", "--nproc-per-node", "2",
                           "-m", "toolchain", "train", "--dataset", "synthetic", "--out", "run"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
    assert all(line.startswith("error: ") for line in lines), proc.stderr
    assert len(lines) == 3 and "data-parallel run failed" in lines[-1]
    assert (tmp_path / "run" / "keep.txt").read_text() == "mine"


# ============================================================== 7. packaging


def test_the_wheel_holds_every_package_and_the_plugin_sources(tmp_path):
    import subprocess
    import sys
    import zipfile

    pytest.importorskip("setuptools", reason="building without isolation needs setuptools here (.ci/wheel-check "
                                            "builds and installs the wheel in CI)")
    root = Path(__file__).resolve().parents[1]
    source = tmp_path / "src"  # a copy: building writes build/ and *.egg-info beside the sources
    source.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(root / name, source / name)
    for name in ("toolchain", "plugins"):
        shutil.copytree(root / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "build"))
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                           str(tmp_path / "dist"), str(source)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    packages = {str(p.parent.relative_to(root)) for p in (root / "toolchain").rglob("__init__.py")}
    assert {"toolchain/runners", "toolchain/bench", "toolchain/trt", "toolchain/commands"} <= packages
    missing = [p for p in packages if f"{p}/__init__.py" not in names]
    assert missing == []
    assert "toolchain/plugin_src/lrn/lrnPlugin.cpp" in names and "toolchain/plugin_src/CMakeLists.txt" in names
    assert not any(name.startswith(("plugins/", "tests/")) for name in names)
