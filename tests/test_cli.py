import json
import subprocess
import sys

import pytest

from tests.helpers import assert_one_line_error, run_cli


def test_help_works_without_importing_torch():
    code = ("import sys; from toolchain.cli import main; sys.argv=['toolchain','--help'];\n"
            "try:\n main()\nexcept SystemExit: pass\nassert 'torch' not in sys.modules, 'torch imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "summary" in proc.stdout and "train" in proc.stdout


@pytest.mark.parametrize("variant,params,gflop", [("paper", "60,965,224", "1.449"),
                                                  ("torchvision", "61,100,840", "1.428"),
                                                  ("d2l", "46,764,746", "1.876")])
def test_summary_prints_totals(variant, params, gflop):
    result = run_cli("summary", variant)
    assert result.code == 0, result.stderr
    assert params in result.stdout and f"{gflop} GFLOP" in result.stdout


def test_summary_json_and_output_file(tmp_path):
    result = run_cli("summary", "paper", "--json", "-o", tmp_path / "s.json")
    assert json.loads(result.stdout)["total_params"] == 60_965_224
    assert json.loads((tmp_path / "s.json").read_text())["total_params"] == 60_965_224
    again = run_cli("summary", "paper", "-o", tmp_path / "s.json")
    assert_one_line_error(again, "already exists", "--force")


def test_bad_inputs_give_one_line_errors(tmp_path):
    assert_one_line_error(run_cli("summary", "resnet"), "unknown variant")
    assert_one_line_error(run_cli("evaluate", tmp_path / "missing.safetensors"), "does not exist")
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x00" * 64)
    assert_one_line_error(run_cli("evaluate", corrupt), "corrupt")
    assert_one_line_error(run_cli("train", "--dataset", "nope", "--out", tmp_path / "r"), "unknown dataset")
    assert_one_line_error(run_cli("train", "--dataset", f"imagefolder:{tmp_path}/absent", "--out", tmp_path / "r2"),
                          "does not exist")
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())
