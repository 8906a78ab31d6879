import json

import pytest
import torch

from toolchain.checkpoint import load_checkpoint, model_from_source, save_checkpoint
from toolchain.errors import ToolchainError
from toolchain.models import build_model

META = {"variant": "paper", "num_classes": 10, "in_channels": 1, "image_size": 64,
        "mean": [0.3], "std": [0.4], "classes": [str(i) for i in range(10)], "dataset": "digits"}


def small_model():
    torch.manual_seed(0)
    return build_model("paper", num_classes=10, in_channels=1, image_size=64).eval()


def test_roundtrip_keeps_weights_and_metadata(tmp_path):
    model = small_model()
    path = save_checkpoint(tmp_path / "m.safetensors", model, META)
    sidecar = json.loads((tmp_path / "m.json").read_text())
    assert sidecar["variant"] == "paper" and len(sidecar["sha256"]) == 64 and "torch" in sidecar["versions"]
    loaded = load_checkpoint(path)
    assert loaded.sha256 == sidecar["sha256"] and loaded.meta["classes"] == META["classes"]
    x = torch.randn(2, 1, 64, 64)
    torch.testing.assert_close(loaded.model(x), model(x))


def test_existing_checkpoint_needs_force(tmp_path):
    save_checkpoint(tmp_path / "m.safetensors", small_model(), META)
    before = (tmp_path / "m.safetensors").read_bytes()
    with pytest.raises(ToolchainError, match="--force"):
        save_checkpoint(tmp_path / "m.safetensors", small_model(), META)
    assert (tmp_path / "m.safetensors").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.safetensors"]  # no temp files left


def test_corrupt_and_tampered_checkpoints_are_refused(tmp_path):
    path = save_checkpoint(tmp_path / "m.safetensors", small_model(), META)
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ToolchainError, match="sha256"):
        load_checkpoint(path)
    garbage = tmp_path / "bad.safetensors"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ToolchainError, match="corrupt"):
        load_checkpoint(garbage)
    with pytest.raises(ToolchainError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.safetensors")


def test_pickles_load_weights_only(tmp_path):
    model = small_model()
    good = tmp_path / "good.pt"
    torch.save({"state_dict": model.state_dict(), "meta": META}, good)
    loaded = load_checkpoint(good)
    x = torch.randn(1, 1, 64, 64)
    torch.testing.assert_close(loaded.model(x), model(x))

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    evil = tmp_path / "evil.pt"
    torch.save({"state_dict": model.state_dict(), "meta": META, "x": Evil()}, evil)
    with pytest.raises(ToolchainError, match="safely"):
        load_checkpoint(evil)


def test_model_from_variant_is_seeded():
    a = model_from_source(variant="paper", image_size=64, num_classes=10, in_channels=1, seed=3)
    b = model_from_source(variant="paper", image_size=64, num_classes=10, in_channels=1, seed=3)
    assert a.sha256 is None and a.meta["image_size"] == 64
    x = torch.randn(1, 1, 64, 64)
    torch.testing.assert_close(a.model(x), b.model(x))
    with pytest.raises(ToolchainError, match="no model"):
        model_from_source()
