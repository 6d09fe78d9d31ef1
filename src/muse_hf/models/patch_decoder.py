"""The patch decoder of the embedded CPU preset (``MuseTokenizerConfig.decoder_type="patch"``).

The paper decodes MUSE latents with the pretrained decoder of DC-AE f32c32 (diffusers ``AutoencoderDC``); that is
what every paper-size preset builds and what ``from_pretrained_components(decoder=...)`` loads. No pretrained DC-AE
can be reached offline, and a DC-AE decoder trained from scratch learns too slowly for the embedded default's CPU
budget (measured: 15.3 dB after 200 steps of reconstruction alone, against 17.6 dB for this decoder at a fifth of the
cost per step; docs/results/quickstart). This decoder is the ViT-MAE pixel head (transformers' ``ViTMAEDecoder``
predicts ``patch^2 * 3`` values per token with one linear layer) on a few convolutions over the latent grid, followed
by a full-resolution residual refinement that smooths the seams between patches::

    latents (B, c, h, w)
    -> conv_in 3x3 -> [GELU -> conv 3x3] x (num_layers - 1)      (B, hidden, h, w)
    -> GELU -> pixel head 1x1 -> pixel shuffle (r)                (B, 3, h*r, w*r)    r = patch * unshuffle
    -> x + refine(x)   (conv 3x3 -> GELU -> conv_out 3x3)          (B, 3, H, W)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MusePatchDecoder"]


class MusePatchDecoder(nn.Module):
    """Latents ``(B, c, h, w)`` -> pixels ``(B, 3, h*r, w*r)`` in the image processor's normalised space.

    Args:
        latent_channels: ``c``.
        upsampling_factor: ``r``, pixels per latent cell along each axis (``config.spatial_compression_ratio``).
        hidden_size: Channels of the convolutions on the latent grid.
        num_layers: 3x3 convolutions on the latent grid (>= 1).
        refine_channels: Channels of the full-resolution refinement (0 = none).
    """

    def __init__(
        self,
        latent_channels: int,
        upsampling_factor: int,
        hidden_size: int = 256,
        num_layers: int = 2,
        refine_channels: int = 32,
    ) -> None:
        super().__init__()
        if num_layers < 1 or hidden_size < 1 or upsampling_factor < 1 or refine_channels < 0:
            raise ValueError(
                f"MusePatchDecoder needs num_layers >= 1, hidden_size >= 1, upsampling_factor >= 1 and "
                f"refine_channels >= 0; got {num_layers}, {hidden_size}, {upsampling_factor}, {refine_channels}."
            )
        self.upsampling_factor = upsampling_factor
        self.conv_in = nn.Conv2d(latent_channels, hidden_size, 3, padding=1)
        self.layers = nn.ModuleList(nn.Conv2d(hidden_size, hidden_size, 3, padding=1) for _ in range(num_layers - 1))
        self.pixel_head = nn.Conv2d(hidden_size, 3 * upsampling_factor**2, 1)
        self.refine = nn.Conv2d(3, refine_channels, 3, padding=1) if refine_channels else None
        self.conv_out = nn.Conv2d(refine_channels, 3, 3, padding=1) if refine_channels else None

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(latents)  # (B, hidden, h, w)
        for layer in self.layers:
            x = layer(F.gelu(x))
        x = F.pixel_shuffle(self.pixel_head(F.gelu(x)), self.upsampling_factor)  # (B, 3, h*r, w*r)
        if self.refine is not None:
            x = x + self.conv_out(F.gelu(self.refine(x)))
        return x
