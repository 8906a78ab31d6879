import pytest
import torch

from toolchain.data import PCAColorNoise, load_dataset
from toolchain.errors import MissingDependencyError, ToolchainError


def test_digits_is_offline_split_and_normalized():
    bundle = load_dataset("digits", seed=0)
    assert bundle.in_channels == 1 and bundle.image_size == 64 and len(bundle.classes) == 10
    assert len(bundle.train) + len(bundle.val) == 1797
    image, label = bundle.val[0]
    assert image.shape == (1, 64, 64) and image.dtype == torch.float32 and 0 <= label < 10
    again = load_dataset("digits", seed=0)
    assert again.val.indices == bundle.val.indices  # the split is reproducible
    assert load_dataset("digits", seed=1).val.indices != bundle.val.indices
    assert bundle.hflip is False  # digits are not mirror-symmetric


def test_channel_conversion_and_eval_is_deterministic():
    bundle = load_dataset("digits", in_channels=3, image_size=72)
    a, _ = bundle.val[5]
    b, _ = bundle.val[5]
    assert a.shape == (3, 72, 72) and torch.equal(a, b)


def test_pca_colour_noise_shifts_rgb_only():
    noise = PCAColorNoise(std=0.1)
    rgb = torch.zeros(3, 4, 4)
    torch.manual_seed(0)
    out = noise(rgb)
    assert not torch.equal(out, rgb) and torch.allclose(out[:, 0, 0], out[:, 3, 3])
    grey = torch.zeros(1, 4, 4)
    assert torch.equal(noise(grey), grey)


def test_imagefolder_missing_path(tmp_path):
    with pytest.raises(ToolchainError, match="does not exist"):
        load_dataset(f"imagefolder:{tmp_path / 'nope'}")


def test_imagefolder_reads_real_images(tmp_path):
    from PIL import Image

    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(5):
            Image.new("RGB", (40, 30), color=(i * 40, 100 if cls == "cat" else 10, 50)).save(tmp_path / cls / f"{i}.png")
    bundle = load_dataset(f"imagefolder:{tmp_path}", image_size=64, val_fraction=0.4)
    assert bundle.classes == ["cat", "dog"] and len(bundle.val) == 4
    assert bundle.train[0][0].shape == (3, 64, 64)


def test_unknown_dataset():
    with pytest.raises(ToolchainError, match="unknown dataset"):
        load_dataset("mnist2")


def test_download_offline_is_a_clear_error(tmp_path, monkeypatch):
    # A proxy on a closed loopback port makes the download fail at once, as offline.
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    with pytest.raises(MissingDependencyError, match="could not download Fashion-MNIST"):
        load_dataset("fashion-mnist", data_dir=tmp_path)
