"""What every evaluator of :func:`~muse_hf.evaluation.evaluate.evaluate_tokenizer` reads.

The evaluation data as batches (:func:`open_stream`, :func:`iter_batches`), a model's device and dtype, its latent
grid and an untrained copy of it (the "untrained" floor), the frozen backbone's own features and the raw-pixel
features (the probe floors), and the structural teacher's attention (:func:`teacher_attention`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import datasets
import torch
import torch.nn.functional as F
from torch import nn

from muse_hf.data import collate_samples, load_image_text_stream
from muse_hf.models import select_feature_layers
from muse_hf.objectives import MaskAffinityTeacher

__all__ = [
    "RAW_PIXEL_PROBE_SIZE",
    "backbone_features",
    "device_dtype",
    "iter_batches",
    "latent_grid",
    "open_stream",
    "raw_pixel_features",
    "teacher_attention",
    "untrained_copy",
    "vision_hidden",
]

RAW_PIXEL_PROBE_SIZE = 32  # raw-pixel probe floor: images area-downsampled to at most 32x32


# ------------------------------------------------------------------------------------------------- data


def open_stream(data: Any, split: str, image_processor: Any) -> Iterable[Mapping[str, Any]]:
    """A path / Hub id / ``datasets`` split -> the package's streaming loader; an iterable of samples as is."""
    if isinstance(data, (str, os.PathLike, datasets.Dataset, datasets.IterableDataset)):
        return load_image_text_stream(data, split=split, image_processor=image_processor)
    if isinstance(data, Iterable):
        return data
    raise ValueError(
        f"data must be a dataset path or Hub id, a datasets split, or an iterable of samples; got {type(data).__name__}"
    )


def iter_batches(stream: Iterable[Mapping[str, Any]], batch_size: int, max_samples: int) -> Iterator[dict[str, Any]]:
    """Batches of at most ``batch_size`` samples (``muse_hf.data.collate_samples``), ``max_samples`` in all."""

    buffer: list[Mapping[str, Any]] = []
    seen = 0
    for sample in stream:
        if "pixel_values" not in sample:
            raise ValueError(f"samples must carry 'pixel_values' (got keys {sorted(sample)})")
        buffer.append(sample)
        seen += 1
        if len(buffer) == batch_size or seen == max_samples:
            yield collate_samples(buffer)
            buffer = []
        if seen >= max_samples:
            return
    if buffer:
        yield collate_samples(buffer)


# ------------------------------------------------------------------------------------------------ model


def device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    """The device and dtype of the model's (first) parameters."""
    param = next(model.parameters())
    return param.device, param.dtype


def untrained_copy(model: nn.Module, seed: int) -> tuple[nn.Module | None, str | None]:
    """A freshly initialised model of the same class and config (the "untrained" floor)."""
    config = getattr(model, "config", None)
    if config is None:
        return None, f"{type(model).__name__} has no config to rebuild an untrained copy from"
    device, dtype = device_dtype(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            fresh = type(model)(config)
        except (TypeError, ValueError, RuntimeError, OSError) as err:
            return None, f"could not build an untrained {type(model).__name__}: {err}"
    return fresh.to(device=device, dtype=dtype).eval(), None


def latent_grid(model: nn.Module, pixel_values: torch.Tensor) -> tuple[int, int]:
    """The model's latent grid ``(h, w)``: from its config, else from encoding one image."""
    grid = getattr(getattr(model, "config", None), "latent_grid", None)
    if grid is not None:
        return int(grid[0]), int(grid[1])
    with torch.no_grad():
        latents = model.encode(pixel_values[:1]).latents  # (1, c, h, w)
    return int(latents.shape[-2]), int(latents.shape[-1])


def vision_hidden(model: nn.Module, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One pass of ``model.vision_model``: its last hidden state ``(B, 1 + h*w, C)`` (CLS first; the backbone's own
    features) and the tokens ``encode`` reads (``vision_feature_layer``), ``(B, h*w, C * n)``, for
    ``encode(vision_features=...)``."""
    vision = model.vision_model
    dtype = next(vision.parameters()).dtype
    layers = model.config.feature_layers
    out = vision(pixel_values=pixel_values.to(dtype), output_hidden_states=layers != [-1])
    return out.last_hidden_state, select_feature_layers(out, layers, vision.layernorm)[:, 1:]


def backbone_features(hidden: torch.Tensor) -> torch.Tensor:
    """The backbone's own image feature for the probe floor: CLS token ‖ mean patch token, ``(B, 2C)``."""
    return torch.cat([hidden[:, 0], hidden[:, 1:].mean(dim=1)], dim=-1)


def raw_pixel_features(images01: torch.Tensor) -> torch.Tensor:
    """Raw-pixel probe floor: images area-downsampled to at most 32x32, flattened ``(B, 3*h'*w')``."""
    size = (min(RAW_PIXEL_PROBE_SIZE, images01.shape[-2]), min(RAW_PIXEL_PROBE_SIZE, images01.shape[-1]))
    return F.adaptive_avg_pool2d(images01, size).flatten(1)


def teacher_attention(
    teacher: nn.Module, batch: Mapping[str, Any], images01: torch.Tensor, grid: tuple[int, int]
) -> torch.Tensor | None:
    """The teacher's attention ``(B, heads | 1, N, N)`` over the ``grid`` tokens: a :class:`MaskAffinityTeacher` reads
    the batch's instance masks (``None`` without them), any other teacher the ``[0, 1]`` images on its own device."""
    if isinstance(teacher, MaskAffinityTeacher):
        return teacher(batch["mask"], grid) if "mask" in batch else None
    param = next(teacher.parameters(), None)
    images01 = images01.to(param.device) if param is not None else images01
    with torch.no_grad():
        return teacher(images01, grid_size=grid)
