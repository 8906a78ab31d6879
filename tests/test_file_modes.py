"""Files written through temporary files get the mode the umask gives (0644 under umask 022),
not mkstemp's 0600: a Triton server or another user must be able to read them."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from toolchain.io import default_file_mode, write_bytes_atomic, write_json_atomic, write_text_atomic


@pytest.fixture
def umask022():
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _modes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): _mode(p) for p in sorted(folder.rglob("*"))}


def test_atomic_helpers_follow_the_umask(tmp_path, umask022):
    assert default_file_mode() == 0o644
    for name, write in (("a.bin", lambda p: write_bytes_atomic(p, b"x")), ("a.txt", lambda p: write_text_atomic(p, "x")),
                        ("a.json", lambda p: write_json_atomic(p, {"x": 1}))):
        write(tmp_path / name)
        assert _mode(tmp_path / name) == 0o644, name
    write_bytes_atomic(tmp_path / "a.bin", b"y", force=True)
    assert _mode(tmp_path / "a.bin") == 0o644
    os.umask(0o027)
    write_bytes_atomic(tmp_path / "b.bin", b"x")
    assert _mode(tmp_path / "b.bin") == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "a.json", "a.txt", "b.bin"]  # no temp files


def test_export_and_engine_manifest_are_0644(tmp_path, umask022):
    import torch

    from tests.helpers import TINY_META, TinyLRNModel
    from tests.helpers import fake_build_outputs
    from toolchain.export import export_model

    torch.manual_seed(0)
    export_model(TinyLRNModel(), TINY_META, output=tmp_path / "tiny.onnx")
    assert _mode(tmp_path / "tiny.onnx") == 0o644
    engine, _ = fake_build_outputs(tmp_path / "e")  # `toolchain build`'s manifest goes through write_manifest
    assert _mode(Path(str(engine) + ".manifest.json")) == 0o644


def test_triton_package_is_readable_by_others(tmp_path, umask022):
    from tests.helpers import fake_build_outputs
    from toolchain.trt.triton import package_triton

    engine, _ = fake_build_outputs(tmp_path / "e")
    repo = tmp_path / "repo"
    package_triton(repo, engine, max_batch=8)
    modes = _modes(repo)
    assert modes and all(mode == (0o755 if (repo / name).is_dir() else 0o644) for name, mode in modes.items()), modes
    assert _mode(repo) == 0o755


def test_benchmark_report_files_are_0644(tmp_path, umask022):
    from tests.helpers import TINY, FakeRunner, candidate
    from toolchain.bench import harness
    from toolchain.bench.report import write_benchmark_report

    result = harness.run_benchmark([candidate(FakeRunner("eager-fp32"))], [1], TINY, environment={"cuda_available": False})
    paths = write_benchmark_report(result, tmp_path / "r")
    assert paths and all(_mode(Path(p)) == 0o644 for p in paths.values()), {k: oct(_mode(Path(p))) for k, p in paths.items()}
