"""Small helpers shared by tests: run the CLI as a user would."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch.nn as nn

from toolchain import backends as registry, lrn_op
from toolchain.bench import timing
from toolchain.errors import MissingDependencyError, ToolchainError
from toolchain.io import sha256_file
from toolchain.lrn_op import LRNParams
from toolchain.runners.base import Runner
from toolchain.trt import manifest as mf
from toolchain.trt.onnx_graph import OnnxInfo


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str


def run_cli(*args: str, cwd=None, env: dict | None = None, timeout: int = 600) -> CliResult:
    """Run ``python -m toolchain ARGS`` in a subprocess (real exit code and streams)."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "toolchain", *map(str, args)], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def assert_one_line_error(result: CliResult, *fragments: str) -> None:
    assert result.code != 0, result
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected a one-line error, got:\n{result.stderr}"
    assert lines[0].startswith("error: "), lines
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def run_main(*args: str) -> CliResult:
    """Run ``toolchain ARGS`` in this process (so a test can monkeypatch the OS underneath it)."""
    import contextlib
    import io

    from toolchain.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main([str(arg) for arg in args])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return CliResult(code, out.getvalue(), err.getvalue())


def snapshot(folder) -> dict:
    """Every file under ``folder`` with its bytes: compare before and after to prove nothing changed."""
    from pathlib import Path

    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(Path(folder).rglob("*")) if p.is_file()}


# ---------------------------------------------------------------------- fixtures shared by test files


def fake_build_outputs(folder, *, min_batch=1, opt_batch=8, max_batch=16, plugin=True, classes=("cat", "dog", "eel"),
                       tensorrt="10.16.0.32", cc="9.0", force=False, precision="fp16", quant_target=None):
    """A placeholder engine file (NOT a TensorRT engine: just bytes to hash and copy), a
    placeholder plugin library and a manifest for them, as `toolchain build` would write."""
    folder.mkdir(parents=True, exist_ok=True)
    engine = folder / "model.engine"
    engine.write_bytes(b"placeholder engine bytes, not a TensorRT plan\n" * 10)
    plugin_path = None
    if plugin:
        plugin_path = folder / "libtoolchain_lrn_plugin.so"
        plugin_path.write_bytes(b"placeholder plugin library, not an ELF file\n")
    profile = {"min": [min_batch, 3, 64, 64], "opt": [opt_batch, 3, 64, 64], "max": [max_batch, 3, 64, 64]}
    batch_dim = -1 if min_batch != max_batch else min_batch
    body = {
        "created": mf.utc_now(),
        "toolchain_version": "0.1.0",
        "engine": {"file": engine.name, "sha256": sha256_file(engine), "bytes": engine.stat().st_size},
        "onnx": {"file": str(folder / "model.onnx"), "sha256": "0" * 64, "fused_lrn_nodes": 2},
        "plugin": ({"file": str(plugin_path), "name": plugin_path.name, "sha256": sha256_file(plugin_path),
                    "creator": {"name": "FusedLRN", "version": "1", "namespace": "toolchain"}} if plugin else None),
        "model": {"variant": "paper", "classes": list(classes), "num_classes": len(classes), "image_size": 64,
                  "in_channels": 3, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                  **({"precision": "int8", "quant_target": quant_target} if quant_target else {})},
        "environment": {"tensorrt": tensorrt, "cuda_runtime": "12.9", "gpu": {"name": "NVIDIA H100", "compute_capability": cc}},
        "build": {"precision": precision, "lrn": "plugin" if plugin else "native", "profile": {"input": profile}},
        "io": {"inputs": [{"name": "input", "dtype": "float32", "shape": [batch_dim, 3, 64, 64], "profile": profile}],
               "outputs": [{"name": "logits", "dtype": "float32", "shape": [batch_dim, len(classes)]}]},
        "layers": {"file": engine.name + ".layers.json"},
    }
    mf.write_manifest(engine, body, force=force)
    return engine, plugin_path


def fake_logits(x):
    x = np.asarray(x, dtype=np.float32).reshape(len(x), -1)
    return np.concatenate([x, -x], axis=1) * 3


class FakeRunner(Runner):
    """A CPU runner whose logits are a fixed function of the input (``shift`` makes it wrong)."""

    device = "cpu"

    def __init__(self, name, *, shift=0.0, fail_activate=False, max_batch=None, static=None, crash_at=None):
        super().__init__()
        self.name = name
        self.shift, self.fail, self._max, self._static, self.crash_at = shift, fail_activate, max_batch, static, crash_at
        self.input_shape = (1, 2, 2)
        self.runs, self.closed, self.prepared = 0, False, []

    def _activate(self):
        if self.fail == "missing":
            raise MissingDependencyError("onnxruntime-gpu is not installed")
        if self.fail:
            raise ToolchainError("engine cannot load here")

    def _deactivate(self):
        self.closed = True

    @property
    def max_batch(self):
        return self._max

    @property
    def static_batch(self):
        return self._static

    def _infer(self, feed):
        return {"logits": fake_logits(feed["input"]) + self.shift}

    def _prepare(self, batch_size):
        self.prepared.append(batch_size)

    def run(self):
        if self.crash_at == self.io.shape[0]:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore text")
        self.runs += 1
        self.output = self.io.device_input


def candidate(runner, unavailable=None, mismatch=None):
    return registry.Candidate(runner.name, registry.REGISTRY["eager-fp32"], "cpu", "fp32", lambda: runner,
                              unavailable=unavailable, mismatch=mismatch)


TINY = timing.TimingConfig(warmup_iters=1, warmup_seconds=0, window_iters=3, min_window_iters=3, min_windows=3,
                       stable_windows=3, max_seconds=0.2)


TINY_ARGS = ("--warmup", "1", "--warmup-seconds", "0", "--window", "3", "--min-window-iters", "3", "--min-windows",
             "3", "--stable-windows", "3", "--max-seconds", "0.2", "--parity-samples", "4")


class TinyLRNModel(nn.Module):
    """Plain torch.nn.LocalResponseNorm (even size), used twice: unique names, exact body."""

    def __init__(self, size=4):
        super().__init__()
        self.conv = nn.Conv2d(2, 6, 3)
        self.lrn = nn.LocalResponseNorm(size, alpha=0.3, beta=0.8, k=1.5)
        self.head = nn.Linear(6, 3)

    def forward(self, x):
        x = self.lrn(self.lrn(self.conv(x)))
        return self.head(x.mean((2, 3)))


TINY_META = {"variant": "tiny", "num_classes": 3, "in_channels": 2, "image_size": 8, "mean": [0.5, 0.5],
             "std": [0.5, 0.5]}


REPO = Path(__file__).resolve().parents[1]


def repo_files() -> list[Path]:
    """The checkout's files (tracked and new, not ignored): git's list, else a walk without build trees."""
    if (REPO / ".git").exists() and shutil.which("git"):
        out = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             capture_output=True, text=True)
        if out.returncode == 0:
            return [REPO / name for name in out.stdout.split("\0") if name and (REPO / name).is_file()]
    skip = {".git", ".venv", ".trt", "build", "dist", "runs", "__pycache__", ".pytest_cache", "shared"}
    return [p for p in REPO.rglob("*") if p.is_file() and not skip & set(p.relative_to(REPO).parts)]


def make_lrn_onnx(path, *, dtype="fp16", params=LRNParams(5, 1e-4, 0.75, 1.0), channels=16, hw=7, batch="batch",
                  namespace=True, with_function=False, metadata=True, lrn_meta="plugin", input_name="input"):
    """A one-node model: input -> FusedLRN -> logits, built with onnx.helper and the names in toolchain.lrn_op."""
    import onnx
    from onnx import TensorProto, helper

    elem = TensorProto.FLOAT16 if dtype == "fp16" else TensorProto.FLOAT
    attrs = {**params.attributes(), "plugin_version": lrn_op.PLUGIN_VERSION}
    if namespace:
        attrs["plugin_namespace"] = lrn_op.PLUGIN_NAMESPACE
    node = helper.make_node(lrn_op.OP_TYPE, [input_name], ["logits"], name="lrn1", domain=lrn_op.DOMAIN, **attrs)
    graph = helper.make_graph([node], "lrn", [helper.make_tensor_value_info(input_name, elem, [batch, channels, hw, hw])],
                              [helper.make_tensor_value_info("logits", elem, [batch, channels, hw, hw])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18),
                                                    helper.make_opsetid(lrn_op.DOMAIN, lrn_op.DOMAIN_VERSION)])
    if with_function:
        from toolchain.onnx_lrn import make_lrn_function

        model.functions.append(make_lrn_function())
    if metadata:
        helper.set_model_props(model, {"toolchain.dtype": dtype, "toolchain.lrn": lrn_meta,
                                       "toolchain.classes": json.dumps(["a", "b"]), "toolchain.image_size": str(hw),
                                       "toolchain.in_channels": str(channels)})
    onnx.save(model, str(path))
    return path


def onnx_info(**overrides) -> OnnxInfo:
    base = dict(path="m.onnx", sha256="0" * 64, metadata={"image_size": 64, "in_channels": 3},
                dtype="fp16", dtype_source="metadata", lrn="plugin", input_names=["input"],
                input_dims=["batch", 3, 64, 64], output_names=["logits"], fused_lrn_nodes=["lrn1", "lrn2"],
                nodes_without_namespace=[], native_lrn_nodes=0, local_functions=["toolchain:FusedLRN"])
    base.update(overrides)
    return OnnxInfo(**base)


def hide_modules(tmp_path, *modules):
    """PYTHONPATH that makes ``import MODULE`` fail, as on a machine without it."""
    folder = tmp_path / "hidden"
    for module in modules:
        (folder / module).mkdir(parents=True, exist_ok=True)
        (folder / module / "__init__.py").write_text(f"raise ImportError('{module} is hidden in this test')\n")
    return {"PYTHONPATH": str(folder)}
