"""muse_hf: MUSE unified visual tokenizer and unified model, native to the Hugging Face stack.

``import muse_hf`` registers the tokenizer with transformers' Auto classes (this is the only place that
does), so ``AutoModel.from_pretrained(folder)`` works on a saved MUSE tokenizer, and registers ``MusePipeline``
with diffusers, so ``diffusers.DiffusionPipeline.from_pretrained(folder)`` works on a saved MUSE pipeline (this
imports :mod:`muse_hf.pipelines` eagerly). Everything else (objectives, data, training, evaluation) is resolved
lazily on first attribute access.
"""

from __future__ import annotations

import importlib
from typing import Any

from transformers import AutoConfig, AutoImageProcessor, AutoModel

from .models.configuration_muse import MuseTokenizerConfig
from .models.image_processing_muse import MuseImageProcessor
from .models.modeling_muse import MuseTokenizerModel

__version__ = "0.1.0"

AutoConfig.register(MuseTokenizerConfig.model_type, MuseTokenizerConfig, exist_ok=True)
AutoModel.register(MuseTokenizerConfig, MuseTokenizerModel, exist_ok=True)
AutoImageProcessor.register(MuseTokenizerConfig, slow_image_processor_class=MuseImageProcessor, exist_ok=True)

# diffusers resolves a saved pipeline's `_class_name` on the `diffusers` module; importing the pipelines package
# registers MusePipeline there (muse_hf.pipelines.register_with_diffusers), so that
# `diffusers.DiffusionPipeline.from_pretrained(folder)` loads a saved MusePipeline after `import muse_hf`.
from . import pipelines as _pipelines  # noqa: E402,F401  (the registration is the import's side effect)

# public name -> submodule that defines it (resolved on first access, PEP 562)
_LAZY: dict[str, str] = {
    "MuseConnector": ".models.connector",
    "MusePipeline": ".pipelines",
    "MusePipelineOutput": ".pipelines",
    "MuseEditSession": ".pipelines",
    "StructuralTeacher": ".objectives",
    "MaskAffinityTeacher": ".objectives",
    "topology_alignment_loss": ".objectives",
    "semantic_nce_loss": ".objectives",
    "load_text_embedder": ".objectives",
    "gradient_conflict": ".objectives",
    "build_shapes_dataset": ".data",
    "load_image_text_stream": ".data",
    "evaluate_tokenizer": ".evaluation",
}

__all__ = ["MuseImageProcessor", "MuseTokenizerConfig", "MuseTokenizerModel", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'muse_hf' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
