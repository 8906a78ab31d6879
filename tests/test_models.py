import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from toolchain.errors import ToolchainError
from toolchain.lrn_op import PAPER_LRN, alpha_from_paper
from toolchain.models import VARIANTS, build_model, get_variant
from toolchain.models.layers import LocalResponseNorm
from toolchain.models.summary import summarize

GOLDEN = Path(__file__).resolve().parents[1] / "models" / "golden"


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_totals_match_published_numbers(variant):
    spec = get_variant(variant)
    model = build_model(variant)
    result = summarize(model, (spec.in_channels, spec.image_size, spec.image_size), variant)
    assert result.total_params == spec.expected_params
    assert result.total_params == sum(p.numel() for p in model.parameters())
    assert round(result.total_flops / 1e9, 3) == spec.expected_gflop


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_layer_summary_matches_golden(variant, regen_golden):
    spec = get_variant(variant)
    result = summarize(build_model(variant), (spec.in_channels, spec.image_size, spec.image_size), variant).to_dict()
    golden = GOLDEN / f"summary-{variant}.json"
    if regen_golden:
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(json.dumps(result, indent=1) + "\n")
    assert result == json.loads(golden.read_text()), f"regenerate with pytest --regen-golden if intended: {golden}"


def test_paper_architecture_details():
    model = build_model("paper")
    convs = [m for m in model.features if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [96, 256, 384, 384, 256]
    assert [c.groups for c in convs] == [1, 2, 1, 2, 2]
    lrns = [m for m in model.features if isinstance(m, LocalResponseNorm)]
    assert len(lrns) == 2 and all(m.params == PAPER_LRN for m in lrns)
    pools = [m for m in model.features if isinstance(m, torch.nn.MaxPool2d)]
    assert all(p.kernel_size == 3 and p.stride == 2 for p in pools)  # overlapping pooling
    shapes = {row.name: row.output_shape for row in summarize(model, (3, 224, 224)).layers}
    assert shapes["features.0"] == [96, 55, 55]


def test_paper_lrn_computes_the_papers_formula():
    # b = a / (k + alpha_paper * sum a^2)^beta with the plain sum over n=5 channels
    x = torch.randn(2, 8, 3, 3) * 20
    y = LocalResponseNorm.from_params(PAPER_LRN)(x)
    padded = F.pad(x.pow(2), (0, 0, 0, 0, 2, 2))
    window_sum = torch.stack([padded[:, c:c + 5].sum(1) for c in range(8)], dim=1)
    expected = x / (2.0 + 1e-4 * window_sum).pow(0.75)
    torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-6)
    assert alpha_from_paper(1e-4, 5) == pytest.approx(5e-4)


@pytest.mark.parametrize("variant,side", [("paper", 64), ("torchvision", 64), ("torchvision-lrn", 64), ("d2l", 65)])
def test_small_inputs_and_custom_heads(variant, side):
    model = build_model(variant, num_classes=7, in_channels=2, image_size=side).eval()
    assert model(torch.randn(3, 2, side, side)).shape == (3, 7)


def test_too_small_input_is_a_user_error():
    with pytest.raises(ToolchainError, match="too small"):
        build_model("paper", image_size=32)


def test_torchvision_weights_load_into_lrn_variant_by_layer_order():
    from toolchain.models.alexnet import copy_in_layer_order

    source = build_model("torchvision")
    target = build_model("torchvision-lrn")
    copy_in_layer_order(target, source.state_dict())
    x = torch.randn(1, 3, 224, 224)
    src_convs = [m for m in source.modules() if isinstance(m, torch.nn.Conv2d)]
    dst_convs = [m for m in target.modules() if isinstance(m, torch.nn.Conv2d)]
    for a, b in zip(src_convs, dst_convs):
        assert torch.equal(a.weight, b.weight)
    assert target.eval()(x).shape == (1, 1000)
    with pytest.raises(ToolchainError):
        copy_in_layer_order(build_model("torchvision", num_classes=10), source.state_dict())


def test_unknown_variant():
    with pytest.raises(ToolchainError, match="unknown variant"):
        build_model("vgg")
