"""muse_hf.models: the MUSE tokenizer (config, Synergistic Block, model), gradient ops and image processor."""

from __future__ import annotations

from .configuration_muse import PRESETS, MuseTokenizerConfig
from .grad_ops import GradientScale, SpectralGradientFilter, grad_scale, spectral_grad_filter
from .modeling_muse import (
    MuseDecoderOutput,
    MuseEncoderOutput,
    MusePreTrainedModel,
    MuseTokenizerModel,
    MuseTokenizerOutput,
)
from .synergistic import RotaryEmbedding2D, SwiGLUMLP, SynergisticBlock

__all__ = [
    "PRESETS",
    "GradientScale",
    "MuseDecoderOutput",
    "MuseEncoderOutput",
    "MusePreTrainedModel",
    "MuseTokenizerConfig",
    "MuseTokenizerModel",
    "MuseTokenizerOutput",
    "RotaryEmbedding2D",
    "SpectralGradientFilter",
    "SwiGLUMLP",
    "SynergisticBlock",
    "grad_scale",
    "register_auto_classes",
    "spectral_grad_filter",
]


def register_auto_classes() -> None:
    """Register the MUSE classes with transformers' ``AutoConfig`` / ``AutoModel`` (and ``AutoImageProcessor``
    once the image processor exists). Idempotent."""
    from transformers import AutoConfig, AutoModel

    try:
        AutoConfig.register(MuseTokenizerConfig.model_type, MuseTokenizerConfig)
    except ValueError:  # already registered
        pass
    try:
        AutoModel.register(MuseTokenizerConfig, MuseTokenizerModel)
    except ValueError:
        pass
