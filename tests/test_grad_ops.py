"""Gradient modifiers: GradientScale and SpectralGradientFilter."""

from __future__ import annotations

import pytest
import torch

from muse_hf.models.grad_ops import (
    GradientScale,
    SpectralGradientFilter,
    grad_scale,
    spectral_grad_filter,
    spectral_high_frequency_mask,
)


def _grad_through(op, x: torch.Tensor, upstream: torch.Tensor) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    y = op(x)
    assert torch.equal(y.detach(), x.detach()), "forward must be the identity"
    (y * upstream).sum().backward()
    return x.grad


def test_gradient_scale_halves_gradients_exactly() -> None:
    x, up = torch.randn(3, 5, 7), torch.randn(3, 5, 7)
    g = _grad_through(GradientScale(0.5), x, up)
    assert torch.equal(g, up * 0.5)
    g0 = _grad_through(lambda t: grad_scale(t, 0.0), x, up)
    assert torch.count_nonzero(g0) == 0


def test_gradient_scale_one_is_identity_object() -> None:
    x = torch.randn(2, 3, requires_grad=True)
    assert grad_scale(x, 1.0) is x
    with pytest.raises(ValueError, match="lambda_g"):
        grad_scale(x, float("nan"))


def test_spectral_filter_alpha_one_is_identity() -> None:
    x, up = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    assert torch.equal(_grad_through(SpectralGradientFilter(alpha=1.0), x, up), up)
    assert torch.equal(_grad_through(SpectralGradientFilter(alpha=None), x, up), up)


@pytest.mark.parametrize("hw", [(8, 8), (6, 10), (7, 5)])
def test_spectral_filter_alpha_zero_removes_high_frequencies(hw: tuple[int, int]) -> None:
    h, w = hw
    x, up = torch.randn(2, 3, h, w, dtype=torch.float64), torch.randn(2, 3, h, w, dtype=torch.float64)
    cutoff = 0.5
    g = _grad_through(lambda t: spectral_grad_filter(t, 0.0, cutoff), x, up)
    mask = spectral_high_frequency_mask(h, w, cutoff)
    assert mask.any() and (~mask).any(), "test grid must have both low and high frequencies"
    spec_g, spec_up = torch.fft.rfft2(g.float()), torch.fft.rfft2(up.float())
    assert spec_g[..., mask].abs().max() < 1e-5  # every frequency above the cutoff is gone
    torch.testing.assert_close(spec_g[..., ~mask], spec_up[..., ~mask], atol=1e-4, rtol=1e-4)  # the rest is kept
    assert not torch.allclose(g, up)


def test_spectral_filter_scales_high_frequencies_by_alpha() -> None:
    x, up = torch.randn(1, 2, 8, 8), torch.randn(1, 2, 8, 8)
    g = _grad_through(SpectralGradientFilter(alpha=0.1, cutoff=0.3), x, up)
    mask = spectral_high_frequency_mask(8, 8, 0.3)
    torch.testing.assert_close(
        torch.fft.rfft2(g)[..., mask], 0.1 * torch.fft.rfft2(up)[..., mask], atol=1e-4, rtol=1e-4
    )


def test_batch_size_one_and_bf16_autocast_on_cpu() -> None:
    conv = torch.nn.Conv2d(3, 4, 3, padding=1)
    x = torch.randn(1, 3, 8, 8, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = conv(x)
        assert y.dtype == torch.bfloat16
        y = GradientScale(0.5)(SpectralGradientFilter(alpha=0.1)(y))
        loss = y.float().square().mean()
    loss.backward()
    assert x.grad is not None and x.grad.dtype == torch.float32 and torch.isfinite(x.grad).all()
    assert conv.weight.grad.abs().sum() > 0


def test_invalid_arguments_raise() -> None:
    with pytest.raises(ValueError, match="alpha"):
        SpectralGradientFilter(alpha=-1.0)
    with pytest.raises(ValueError, match="cutoff"):
        SpectralGradientFilter(alpha=0.1, cutoff=2.0)
    with pytest.raises(ValueError, match="grid"):
        spectral_grad_filter(torch.randn(4), 0.1)
