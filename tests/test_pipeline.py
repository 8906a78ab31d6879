"""``toolchain pipeline``: step bookkeeping, skips with reasons and commands, failures, the report."""

from __future__ import annotations

import json

import pytest

from tests.helpers import assert_one_line_error, run_cli
from toolchain.environment import cuda_unavailable
from toolchain.errors import ToolchainError
from toolchain.pipeline import (STEP_NAMES, STEPS, Pipeline, PipelineConfig, PipelineError, StepResult,
                                builder_flavour, raise_if_failed)
from toolchain.pipeline.command_line import command_line

GPU_STEPS = ("engine-build", "engine-build-native", "engine-build-int8", "parity-tensorrt", "parity-tensorrt-native",
             "parity-tensorrt-int8")


def _as_json(value):
    return json.loads(json.dumps(value, default=str))  # Path -> str, tuple -> list, as pipeline.json keeps them


def parse_back(line: str) -> dict:
    """The parameters the real click command gets from ``line``, split as a shell would."""
    import shlex

    import click

    from toolchain.cli import cli

    words = shlex.split(line)
    assert words[0] == "toolchain", line
    command, used = cli, 1
    while isinstance(command, click.Group):
        command = command.get_command(click.Context(cli), words[used])
        used += 1
    return command.make_context(" ".join(words[:used]), words[used:], resilient_parsing=False).params


def assert_commands_parse_back(steps) -> None:
    """Every step's command line gives its command exactly the arguments the step's API call took: a renamed
    or removed flag, a changed parameter type or a lost value fails here."""
    assert steps
    for step in steps:
        params = parse_back(step["command"])
        assert set(step["args"]) <= set(params), step["name"]
        assert {name: _as_json(params[name]) for name in step["args"]} == _as_json(step["args"]), step["command"]


def test_command_line_walks_the_click_parameters():
    line = command_line("quantize", {"checkpoint": "a b/m.safetensors", "outputs": ["t.onnx", "o.onnx"],
                                     "targets": ("tensorrt", "onnxruntime"), "samples": 256, "method": "entropy",
                                     "force": True, "as_json": False, "data_dir": None})
    # Parameters in the command's order, the long flag, a repeated option per value, a quoted path;
    # --samples 256 is the default, --json false and --data-dir None are left out.
    assert line == ("toolchain quantize --checkpoint 'a b/m.safetensors' --output t.onnx --output o.onnx "
                    "--method entropy --target tensorrt --target onnxruntime --force")
    assert command_line("parity", {"batch_sizes": [1, 8], "device": "cpu"}) == "toolchain parity --batch-sizes 1,8"
    assert command_line("train", {"amp": False, "hflip": True}) == "toolchain train --hflip --no-amp"
    assert command_line("build", {"onnx_path": "m.onnx", "lrn": "native"}) == "toolchain build m.onnx --lrn native"
    assert command_line("plugin build", {"build_dir": "build/plugins"}) == "toolchain plugin build"


@pytest.mark.parametrize("path,args,fragment", [("export", {"output": "m.onnx", "precision": "fp16"},
                                                 "no parameter precision"),
                                                ("export", {"dtype": "fp16"}, "needs a value for output"),
                                                ("plugin teleport", {}, "no command")])
def test_command_line_refuses_what_the_command_does_not_take(path, args, fragment):
    with pytest.raises(ValueError, match=fragment):
        command_line(path, args)


def test_every_step_command_parses_back_with_every_argument_set(tmp_path):
    """As if every step had run and the plugin was built: the rows' optional arguments all have values."""
    pipeline = Pipeline(PipelineConfig(
        out_dir=str(tmp_path / "run dir"), data_dir=str(tmp_path / "data dir"), dataset="synthetic", epochs=2,
        batch_size=16, target_top1=None, parity_batch_sizes=(1, 8), parity_limit=64, quant_method="entropy",
        bench_batch_sizes=(1, 2), bench_max_seconds=0.2, bench_window=5, include_compile=True,
        plugin_build_dir=str(tmp_path / "plugins"), cuda_archs="80;90", tensorrt_root=str(tmp_path),
        builder="full", force=True, progress=False))
    pipeline.state["builder"] = (None, "not probed in this test")  # rows as for the full TensorRT: a timing cache
    lines = []
    for step in STEPS:
        args = step.args(pipeline)
        lines.append({"name": step.name, "command": command_line(step.command, args), "args": _as_json(args)})
        pipeline.runner.records.append(StepResult(step.name, "", "", status="ran", details={"lrn": "plugin"},
                                                  outputs={"tensorrt": str(tmp_path / "plugins" / "libplugin.so")}))
    assert_commands_parse_back(lines)
    commands = {line["name"]: line["command"] for line in lines}
    assert "--plugin-library" in commands["parity-tensorrt"] and "--plugin-library" in commands["benchmark"]
    assert "--warmup-seconds 0.2" in commands["benchmark"] and "--timing-cache" in commands["engine-build"]
    assert f"--data-dir '{tmp_path / 'data dir'}'" in commands["parity-onnxruntime"]


def test_refuses_non_empty_run_folder(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "keep.txt").write_text("mine")
    result = run_cli("pipeline", "--out", run)
    assert_one_line_error(result, "already exists", "--force")
    assert (run / "keep.txt").read_text() == "mine"


def test_unknown_step_to_skip_is_an_error(tmp_path):
    assert_one_line_error(run_cli("pipeline", "--out", tmp_path / "run", "--skip", "teleport"), "unknown step")


def test_skipped_training_skips_its_dependents_with_reasons_and_commands(tmp_path):
    run = tmp_path / "run"
    result = run_cli("pipeline", "--out", run, "--skip", "train", "--skip", "plugin-build", "--quiet")
    assert result.code == 0, result.stderr  # skips are not failures
    record = json.loads((run / "pipeline.json").read_text())
    steps = {s["name"]: s for s in record["steps"]}
    assert list(steps) == list(STEP_NAMES)
    assert all(s["status"] == "skipped" and s["reason"] for s in steps.values())
    assert steps["train"]["reason"] == "skipped by --skip"
    assert steps["export-fp32"]["reason"] == "needs step train, which was skipped (skipped by --skip)"
    # Two levels down, the reason still names the first cause, not a chain.
    assert steps["engine-build"]["reason"] == "needs step export-fp16, which was skipped (skipped by --skip)"
    assert steps["train"]["args"]["dataset"] == "digits" and steps["train"]["args"]["image_size"] == 64
    assert steps["engine-build"]["command"].startswith("toolchain build ")
    assert "--max-batch 256" in steps["engine-build"]["command"]
    assert_commands_parse_back(record["steps"])
    assert record["passed"] is True
    report = (run / "REPORT.md").read_text()
    assert "| 1 | train | skipped | 0.0 | skipped (S1) |" in report
    assert "| 2 | export-fp32 | skipped | 0.0 | skipped (S1: needs step train) |" in report
    assert "toolchain build " in report and "No parity check ran." in report
    # Each reason once, with the steps it applies to.
    assert report.count("skipped by --skip") == 1
    assert "- **S1** (train, export-fp32, " in report and "# skipped (S1): engine-build" in report


def _fast_config(tmp_path, **changes) -> PipelineConfig:
    return PipelineConfig(out_dir=str(tmp_path / "run"), skip=("plugin-build",), progress=False, **changes)


def test_a_failed_step_fails_the_pipeline_and_is_reported(tmp_path, monkeypatch):
    def failing_train(config):
        raise ToolchainError("dataset is on fire", hint="use another")

    monkeypatch.setattr("toolchain.train.run_training", failing_train)
    record = Pipeline(_fast_config(tmp_path)).run()
    steps = {s["name"]: s for s in record["steps"]}
    assert steps["train"]["status"] == "failed" and "dataset is on fire" in steps["train"]["error"]
    assert steps["export-fp32"]["reason"] == "needs step train, which failed"
    assert record["passed"] is False
    with pytest.raises(PipelineError, match="train: dataset is on fire"):
        raise_if_failed(record)
    report = (tmp_path / "run" / "REPORT.md").read_text()
    assert "**FAILED**" in report and "dataset is on fire" in report


def test_a_bug_in_a_step_keeps_its_traceback(tmp_path, monkeypatch):
    def buggy_train(config):
        return {}["missing"]

    monkeypatch.setattr("toolchain.train.run_training", buggy_train)
    record = Pipeline(_fast_config(tmp_path)).run()
    train = record["steps"][0]
    assert train["status"] == "failed" and train["error"].startswith("KeyError")
    assert "Traceback" in train["details"]["traceback"]


def test_failed_pipeline_exits_non_zero_from_the_cli(tmp_path):
    # A dataset folder without images makes training fail: a real failure, one line, non-zero exit.
    # (A folder that does not exist is refused before the run starts: test_safety.py.)
    (tmp_path / "empty").mkdir()
    result = run_cli("pipeline", "--out", tmp_path / "run", "--dataset", "imagefolder:" + str(tmp_path / "empty"),
                     "--skip", "plugin-build", "--quiet")
    assert result.code != 0
    assert result.stderr.strip().splitlines()[-1].startswith("error: 1 pipeline step(s) failed: train:")
    record = json.loads((tmp_path / "run" / "pipeline.json").read_text())
    assert record["steps"][0]["status"] == "failed"


@pytest.mark.slow
def test_tiny_pipeline_runs_end_to_end_on_this_machine(tmp_path):
    """Synthetic data, 1 epoch, 64 px: everything available here runs; GPU/TensorRT steps skip with reasons."""
    run = tmp_path / "run"
    result = run_cli("pipeline", "--out", run, "--dataset", "synthetic", "--epochs", "1", "--parity-limit", "16",
                     "--parity-batch-sizes", "1,8", "--bench-batch-sizes", "1,2", "--bench-max-seconds", "0.3",
                     "--bench-warmup", "1", "--bench-window", "5", "--skip", "plugin-build", "--quiet")
    assert result.code == 0, result.stderr
    record = json.loads((run / "pipeline.json").read_text())
    steps = {s["name"]: s for s in record["steps"]}
    for name in ("train", "export-fp32", "export-fp16", "export-fp16-native", "parity-onnxruntime",
                 "parity-onnxruntime-fp16", "quantize-int8", "parity-onnxruntime-int8", "benchmark"):
        assert steps[name]["status"] == "ran", (name, steps[name])
    int8 = steps["parity-onnxruntime-int8"]["details"]["report"]
    assert int8["passed"] and int8["precision"] == "int8"
    quantize = steps["quantize-int8"]
    assert quantize["details"]["tensorrt"]["qdq"]["problems"] == quantize["details"]["onnxruntime"]["qdq"]["problems"] \
        == []
    assert quantize["command"].startswith("toolchain quantize --checkpoint ")
    # One calibration, two files; each runtime's steps get the file made for it.
    trt_file, ort_file = run / "onnx" / "model-int8-tensorrt.onnx", run / "onnx" / "model-int8-onnxruntime.onnx"
    assert quantize["outputs"] == {"tensorrt": str(trt_file), "onnxruntime": str(ort_file)}
    assert quantize["args"]["outputs"] == [str(trt_file), str(ort_file)]
    assert quantize["args"]["targets"] == ["tensorrt", "onnxruntime"]  # paired in order with the outputs
    assert_commands_parse_back(record["steps"])
    metadata = {t: quantize["details"][t]["metadata"] for t in ("tensorrt", "onnxruntime")}
    assert metadata["tensorrt"]["toolchain.quant_ranges_sha256"] == metadata["onnxruntime"][
        "toolchain.quant_ranges_sha256"]
    feeds = {f["target"]: f for f in quantize["details"]["feeds"]}
    assert feeds["tensorrt"]["file"] == str(trt_file) and "engine-build-int8" in feeds["tensorrt"]["steps"]
    assert feeds["onnxruntime"]["file"] == str(ort_file) and "parity-onnxruntime-int8" in feeds["onnxruntime"]["steps"]
    assert steps["parity-onnxruntime-int8"]["details"]["onnx"] == str(ort_file)
    assert f"--onnx {ort_file}" in steps["parity-onnxruntime-int8"]["command"]
    assert f"toolchain build {trt_file}" in steps["engine-build-int8"]["command"]
    assert f"--onnx-int8 {ort_file}" in steps["benchmark"]["command"]
    assert steps["plugin-build"]["reason"] == "skipped by --skip"
    parity = steps["parity-onnxruntime"]["details"]["report"]
    assert parity["passed"] and parity["precision"] == "fp32"
    assert {c["batch_size"] for c in parity["comparisons"]} == {1, 8}
    assert all(c["samples"] == 16 for c in parity["comparisons"])
    flavour, no_builder = builder_flavour("auto")
    if flavour is not None and flavour.rtx:
        # TensorRT-RTX builds on the CPU: real engines, through the FusedLRN function since the plugin
        # build was skipped (said in each step), the native one through TensorRT's LRN layer.
        for name, engine in (("engine-build", "model-fp16.engine"), ("engine-build-native", "model-fp16-native.engine"),
                             ("engine-build-int8", "model-int8.engine")):
            assert steps[name]["status"] == "ran", (name, steps[name])
            assert (run / "engines" / engine).stat().st_size > 1_000_000
            manifest = steps[name]["details"]["manifest"]
            assert manifest["environment"]["flavour"] == "tensorrt-rtx" and manifest["loaded"]["loaded"] is False
        assert steps["engine-build"]["details"]["lrn"] == "function"
        assert "plugin library was not built" in steps["engine-build"]["details"]["lrn_fallback"]
        assert "--lrn function" in steps["engine-build"]["command"] and "--timing-cache" not in steps["engine-build"]["command"]
        assert "--lrn native" in steps["engine-build-native"]["command"]
        report = (run / "REPORT.md").read_text()
        assert "## Engines" in report and "| `model-int8.engine` |" in report and "not loaded here" in report
    elif no_builder:
        for name in GPU_STEPS[:3]:
            assert steps[name]["status"] == "skipped" and steps[name]["reason"] == no_builder, name
    if cuda_unavailable():
        for name in GPU_STEPS[3:]:
            assert steps[name]["status"] == "skipped", name
            assert steps[name]["command"].startswith("toolchain parity --backend tensorrt")
            assert "CUDA" in steps[name]["reason"]
    for name in ("model-fp32.onnx", "model-fp16.onnx", "model-fp16-native.onnx", "model-int8-tensorrt.onnx",
                 "model-int8-onnxruntime.onnx"):
        assert (run / "onnx" / name).stat().st_size > 0
    bench = json.loads((run / "benchmark" / "benchmark.json").read_text())
    assert {m["backend"] for m in bench["measurements"]} >= {"eager-fp32", "onnxruntime-cpu", "onnxruntime-cpu-int8"}
    assert {(g["backend"], g["baseline"], g["batch_size"]) for g in bench["speedups"]} >= \
        {("onnxruntime-cpu-int8", "onnxruntime-cpu", 1), ("onnxruntime-cpu-int8", "onnxruntime-cpu", 2)}
    # Every timed row carries its verdict, on the validation split the model was trained on.
    assert all(m["parity"]["passed"] and m["parity"]["real_data"] for m in bench["measurements"])
    assert bench["parity"]["inputs"].startswith("synthetic validation split")
    assert (run / "benchmark" / "latency.png").read_bytes()[:4] == b"\x89PNG"
    report = (run / "REPORT.md").read_text()
    for fragment in ("## Steps", "## Training", "## Parity", "## Benchmark", "![latency](benchmark/latency.png)",
                     "| parity-onnxruntime | fp32 | 8 | 16 |", "toolchain export --checkpoint", "## INT8 files",
                     f"| `{ort_file}` | onnxruntime | parity-onnxruntime-int8, benchmark (onnxruntime-cpu-int8) |",
                     "## Reduced precision vs FP32", "onnxruntime-cpu-int8 (INT8) vs onnxruntime-cpu (FP32)"):
        assert fragment in report, fragment
