"""Gradient modifiers used by the MUSE tokenizer (paper appendix E.1, DESIGN section 2).

Both operators are the identity in the forward pass and only change the backward pass:

* :class:`GradientScale` / :func:`grad_scale` multiply the incoming gradient by ``lambda_g``. The tokenizer
  applies it to the synergistic stack's output on the reconstruction branch, before the latent head, so that only
  the reconstruction gradient reaching the blocks, the adapter and the backbone is damped, as the authors' released
  code does (``PanqiYang1/MUSE muse/models/muse_vit.py:84-103, 408``; 0.5 in stages 1-2, 1.0 in stage 3). The
  released code names this scalar multiplier ``spectral_filter``.
* :class:`SpectralGradientFilter` / :func:`spectral_grad_filter` take the gradient of a ``(B, C, h, w)`` tensor
  over its ``(h, w)`` token grid into the frequency domain (``torch.fft.rfft2``), multiply every frequency whose
  normalised radius exceeds ``cutoff`` by ``alpha`` and transform back. Applied to the latents, it attenuates the
  high-frequency part of the reconstruction gradient: this project's reading of the paper's appendix E.1
  ("spectral gradient filtering", coefficient 0.1), which the released code does not contain.

Both work under autocast (the FFT runs in float32 and the result is cast back to the gradient's dtype) and with
batch size 1. ``lambda_g == 1`` and ``alpha == 1`` (or ``None``) short-circuit to the exact identity.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

__all__ = [
    "GradientScale",
    "SpectralGradientFilter",
    "grad_scale",
    "spectral_grad_filter",
    "spectral_high_frequency_mask",
]


class _GradScaleFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, lambda_g: float) -> torch.Tensor:
        ctx.lambda_g = lambda_g
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad_output * ctx.lambda_g, None


def grad_scale(x: torch.Tensor, lambda_g: float) -> torch.Tensor:
    """Identity in the forward pass; multiplies the gradient by ``lambda_g`` in the backward pass.

    Args:
        x: Any tensor.
        lambda_g: Gradient multiplier. ``1.0`` returns ``x`` itself (no autograd node); ``0.0`` stops gradients.

    Returns:
        A tensor equal to ``x``.
    """
    lambda_g = float(lambda_g)
    if not math.isfinite(lambda_g):
        raise ValueError(f"grad_scale: lambda_g must be a finite number, got {lambda_g}.")
    if lambda_g == 1.0:
        return x
    return _GradScaleFn.apply(x, lambda_g)


class GradientScale(nn.Module):
    """Module form of :func:`grad_scale` (identity forward, gradient times ``lambda_g``)."""

    def __init__(self, lambda_g: float = 1.0) -> None:
        super().__init__()
        self.lambda_g = float(lambda_g)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return grad_scale(x, self.lambda_g)

    def extra_repr(self) -> str:
        return f"lambda_g={self.lambda_g}"


_MASK_CACHE: dict[tuple[int, int, float, str], torch.Tensor] = {}


def spectral_high_frequency_mask(
    height: int, width: int, cutoff: float, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Boolean mask over the ``rfft2`` spectrum of an ``(height, width)`` grid marking the high frequencies.

    The normalised radius of frequency ``(fy, fx)`` (in cycles per token) is ``sqrt(fy**2 + fx**2) / 0.5``: 0 at
    DC, 1 at the Nyquist frequency of either axis (up to ~1.41 in the corners). Frequencies with radius strictly
    above ``cutoff`` are "high".

    Args:
        height: Grid height ``h``.
        width: Grid width ``w``.
        cutoff: Normalised radius threshold in ``[0, sqrt(2)]``.
        device: Device of the returned mask.

    Returns:
        Bool tensor of shape ``(height, width // 2 + 1)``.
    """
    key = (height, width, float(cutoff), str(device))
    mask = _MASK_CACHE.get(key)
    if mask is None:
        fy = torch.fft.fftfreq(height, device=device).abs()  # (h,)
        fx = torch.fft.rfftfreq(width, device=device)  # (w//2+1,)
        radius = torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2) / 0.5  # (h, w//2+1)
        mask = radius > cutoff
        _MASK_CACHE[key] = mask
    return mask


class _SpectralFilterFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, alpha: float, cutoff: float) -> torch.Tensor:
        ctx.alpha = alpha
        ctx.cutoff = cutoff
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        h, w = grad_output.shape[-2:]
        g = grad_output.float()  # FFT needs fp32 (bf16/fp16 FFTs are unsupported or inexact)
        spec = torch.fft.rfft2(g, dim=(-2, -1))  # (..., h, w//2+1) complex
        mask = spectral_high_frequency_mask(h, w, ctx.cutoff, device=g.device)
        gain = torch.where(mask, torch.full_like(mask, ctx.alpha, dtype=g.dtype), torch.ones_like(mask, dtype=g.dtype))
        filtered = torch.fft.irfft2(spec * gain, s=(h, w), dim=(-2, -1))  # (..., h, w)
        return filtered.to(grad_output.dtype), None, None


def spectral_grad_filter(x: torch.Tensor, alpha: float | None, cutoff: float = 0.5) -> torch.Tensor:
    """Identity forward; attenuates the high spatial frequencies of the gradient over the last two dims.

    Args:
        x: Tensor of shape ``(B, C, h, w)`` (any leading dims; the filter acts on the last two).
        alpha: Gain applied to frequencies above ``cutoff`` (0 removes them, 1 or ``None`` disables the filter).
        cutoff: Normalised frequency radius (see :func:`spectral_high_frequency_mask`), in ``[0, sqrt(2)]``.

    Returns:
        A tensor equal to ``x``.
    """
    if alpha is None or float(alpha) == 1.0:
        return x
    if x.dim() < 2:
        raise ValueError(
            f"spectral_grad_filter expects a tensor with a (h, w) grid in its last two dims, got shape {tuple(x.shape)}."
        )
    alpha = float(alpha)
    if alpha < 0:
        raise ValueError(f"spectral_grad_filter: alpha must be >= 0, got {alpha}.")
    if not 0.0 <= float(cutoff) <= math.sqrt(2):
        raise ValueError(f"spectral_grad_filter: cutoff must lie in [0, sqrt(2)], got {cutoff}.")
    return _SpectralFilterFn.apply(x, alpha, float(cutoff))


class SpectralGradientFilter(nn.Module):
    """Module form of :func:`spectral_grad_filter` for ``(B, C, h, w)`` tensors."""

    def __init__(self, alpha: float | None = 0.1, cutoff: float = 0.5) -> None:
        super().__init__()
        if alpha is not None and float(alpha) < 0:
            raise ValueError(f"SpectralGradientFilter: alpha must be >= 0 or None, got {alpha}.")
        if not 0.0 <= float(cutoff) <= math.sqrt(2):
            raise ValueError(f"SpectralGradientFilter: cutoff must lie in [0, sqrt(2)], got {cutoff}.")
        self.alpha = None if alpha is None else float(alpha)
        self.cutoff = float(cutoff)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return spectral_grad_filter(x, self.alpha, self.cutoff)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, cutoff={self.cutoff}"
