import json

import pytest

from tests.helpers import assert_one_line_error, run_cli
from toolchain.evaluate import evaluate_checkpoint
from toolchain.train import TrainConfig, run_training


def test_train_writes_checkpoint_and_evaluate_reproduces_it(tmp_path):
    out = tmp_path / "run"
    result = run_training(TrainConfig(variant="paper", dataset="synthetic", epochs=2, out_dir=str(out),
                                      progress=False))
    assert result.checkpoint.exists() and (out / "model.json").exists() and (out / "train_state.pt").exists()
    history = json.loads((out / "history.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2]
    meta = json.loads((out / "model.json").read_text())
    assert meta["hyperparameters"]["momentum"] == 0.9 and meta["hyperparameters"]["weight_decay"] == 5e-4
    evaluated = evaluate_checkpoint(result.checkpoint, device="cpu")
    assert evaluated["top1"] == pytest.approx(result.metrics["val_top1"])

    resumed = run_training(TrainConfig(variant="paper", dataset="synthetic", epochs=3, out_dir=str(out),
                                       resume=True, progress=False))
    assert [row["epoch"] for row in resumed.history] == [1, 2, 3]


def test_existing_run_folder_needs_force(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "keep.txt").write_text("mine")
    result = run_cli("train", "--dataset", "synthetic", "--epochs", "1", "--out", tmp_path / "run")
    assert_one_line_error(result, "already exists", "--force")
    assert (tmp_path / "run" / "keep.txt").read_text() == "mine"


@pytest.mark.slow
def test_paper_variant_learns_digits(tmp_path):
    """The acceptance run: paper AlexNet at 64 px on digits reaches >= 90% validation top-1."""
    result = run_cli("train", "--variant", "paper", "--dataset", "digits", "--image-size", "64",
                     "--target-top1", "0.95", "--out", tmp_path / "run", "--quiet")
    assert result.code == 0, result.stderr
    metrics = json.loads(result.stdout)
    assert metrics["val_top1"] >= 0.90
    evaluated = run_cli("evaluate", tmp_path / "run" / "model.safetensors", "--json")
    assert evaluated.code == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["top1"] == pytest.approx(metrics["val_top1"])
