"""Output dataclass of :class:`~muse_hf.pipelines.pipeline_muse.MusePipeline`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import PIL.Image
import torch
from diffusers.utils import BaseOutput

__all__ = ["MusePipelineOutput"]


@dataclass
class MusePipelineOutput(BaseOutput):
    """Images produced by :class:`MusePipeline`.

    Args:
        images: ``output_type="pil"``: a list of B ``PIL.Image``; ``"np"``: ``(B, H, W, 3)`` float32 in [0, 1];
            ``"pt"``: ``(B, 3, H, W)`` float32 in [0, 1]; ``"latent"``: the final DiT-space latents
            ``(B, c, h, w)`` (normalised: ``vae.decode(latents / scaling_factor + shift_factor)`` decodes them).
    """

    images: list[PIL.Image.Image] | np.ndarray | torch.Tensor
