"""LoRA adapters of the unified model's DiT, the peft way (``<stage>/transformer_lora``).

A LoRA stage saves its adapter (``adapter_config.json`` + ``adapter_model.safetensors``, base = the ``init_from``
pipeline's transformer) beside the pipeline with the adapter merged; :func:`load_lora_transformer` /
:func:`apply_lora_adapter` load one back.
"""

from __future__ import annotations

import os
from pathlib import Path

from diffusers import SanaTransformer2DModel
from peft import PeftModel
from torch import nn

from muse_hf.pipelines import MusePipeline

__all__ = ["LORA_DIR", "apply_lora_adapter", "is_peft", "load_lora_transformer"]

#: Sub-folder of a LoRA stage's output that holds the peft adapter of the DiT.
LORA_DIR = "transformer_lora"


def is_peft(module: nn.Module) -> bool:
    """Whether ``module`` is a peft model (adapters around a base model)."""
    return isinstance(module, PeftModel)


def load_lora_transformer(
    transformer: nn.Module | str | os.PathLike, adapter_dir: str | os.PathLike, merge: bool = False
) -> nn.Module:
    """Load a saved DiT LoRA adapter (``<stage>/transformer_lora``) onto its base transformer, the peft way.

    Args:
        transformer: the base ``SanaTransformer2DModel`` (the stage's ``init_from`` pipeline's transformer), or a
            path to it (a transformer folder, or a pipeline folder with a ``transformer`` subfolder).
        adapter_dir: the adapter folder (``adapter_config.json`` + ``adapter_model.safetensors``).
        merge: return the plain DiT with the adapter merged into its weights (``merge_and_unload``) instead of
            the ``peft.PeftModel``.

    Returns:
        ``PeftModel`` around the transformer, or the merged ``SanaTransformer2DModel``.

    Raises:
        ValueError: when ``adapter_dir`` holds no adapter.
    """
    if not (Path(adapter_dir) / "adapter_config.json").is_file():
        raise ValueError(
            f"{adapter_dir} holds no peft adapter (adapter_config.json); pass a <stage>/{LORA_DIR} folder."
        )
    if isinstance(transformer, (str, os.PathLike)):
        path = Path(transformer)
        transformer = SanaTransformer2DModel.from_pretrained(
            str(path), subfolder="transformer" if (path / "transformer").is_dir() else None
        )
    model = PeftModel.from_pretrained(transformer, str(adapter_dir))
    return model.merge_and_unload() if merge else model


def apply_lora_adapter(pipe: MusePipeline, adapter_dir: str | os.PathLike) -> MusePipeline:
    """Merge a DiT LoRA adapter into ``pipe.transformer`` (in place) and register the result; returns ``pipe``."""
    pipe.register_modules(transformer=load_lora_transformer(pipe.transformer, adapter_dir, merge=True))
    return pipe
