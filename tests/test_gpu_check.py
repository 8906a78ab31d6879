"""benchmarks/gpu_check.sh: its --dry-run passes on a CPU machine and shows the exact GPU commands."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"


def _run(*args, env=None, timeout=300):
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def test_help_and_bad_arguments():
    proc = _run("--help")
    assert proc.returncode == 0 and "--dry-run" in proc.stdout and "WHEEL_DIR" in proc.stdout
    proc = _run("--bogus")
    assert proc.returncode == 2 and "unknown argument --bogus" in proc.stderr


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("cmake") is None or shutil.which("nvcc") is None, reason="needs cmake and nvcc")
def test_dry_run_passes_and_shows_every_stage(tmp_path):
    out = tmp_path / "results"
    # Configure only: compiling the kernels for sm_90 is what the GPU run (and a plain --dry-run) does.
    proc = _run("--dry-run", env={"OUT": str(out), "BUILD_DIR": str(tmp_path / "build"),
                                  "GPU_CHECK_DRY_BUILD": "configure", "WHEEL_DIR": str(tmp_path / "no-wheels")})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dry_run"] and summary["passed"]
    stages = {s["stage"]: s for s in summary["stages"]}
    for name in ("tools", "imports", "environment", "configure", "build", "test-needs-cuda", "conformance",
                 "kernel-bench", "backend-bench"):
        assert name in stages, name
    for name in ("tools", "imports", "environment", "configure", "test-needs-cuda-check", "kernel-bench-check",
                 "backend-bench-check", "backend-bench-help"):
        assert stages[name]["status"] == "ok", (name, (out / "logs" / f"{name}.log").read_text()[-2000:])
    assert "-DCMAKE_CUDA_ARCHITECTURES=90" in stages["configure"]["command"]
    assert "-m needs_cuda" in stages["test-needs-cuda"]["command"]
    assert "-k conformance" in stages["conformance"]["command"]
    bench = stages["backend-bench"]["command"]
    assert "--variant paper --image-size 224 --batch-sizes 1\\,8\\,64\\,256" in bench
    assert summary["seconds"] < 540
    assert (out / "environment.json").is_file() and "# GPU check (dry run): PASS" in (out / "summary.md").read_text()
