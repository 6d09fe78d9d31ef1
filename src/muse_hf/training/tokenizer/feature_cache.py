"""The frozen networks of a tokenizer stage: when the teacher is the backbone (:func:`teacher_is_frozen_backbone`),
and an in-memory cache of what they compute per training image (``cache_frozen_features``).

In the embedded default the backbone is frozen in every stage and is also the structural teacher, so its one shared
forward pass (the teacher's attention map and the backbone features, ``TokenizerTask``) depends on the image alone;
so does the frozen text embedder's embedding of a caption. Over a data set seen for many epochs, recomputing them is
most of a step's cost on a CPU. :class:`FrozenFeatureCache` keeps them per image, keyed by a digest of the image's
pixel tensor (the data pipeline decodes and normalises deterministically, so an image gives the same bytes every
epoch), and per caption string. Returned tensors are the ones the networks returned, so a cached step equals an
uncached one exactly (tested).

One cache per (teacher weights, feature layers, resolution, text encoder) is shared by the stages of one process
(:meth:`FrozenFeatureCache.shared`): the quickstart's three stages compute each image once. Nothing is written to
disk, so resuming a run only recomputes.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from muse_hf.models.offline_weights import dinov2_to_internvl_state_dict

__all__ = ["FrozenFeatureCache", "frozen_cache_key", "teacher_is_frozen_backbone"]

logger = logging.getLogger(__name__)


def frozen_cache_key(
    teacher: nn.Module, feature_layers: Sequence[int], resolution: int, text_encoder: str | None
) -> str:
    """Digest of everything the cached tensors depend on besides the image: the teacher's weights and settings, the
    backbone feature layers, the training resolution and the text encoder."""
    h = hashlib.blake2b(digest_size=16)
    for name, tensor in sorted(teacher.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    settings = (
        type(teacher).__name__,
        tuple(getattr(teacher, "layers", ())),
        getattr(teacher, "average_heads", None),
        getattr(teacher, "layer_reduction", None),
        getattr(teacher, "image_size", None),
        tuple(feature_layers),
        int(resolution),
        text_encoder,
    )
    h.update(repr(settings).encode())
    return h.hexdigest()


class FrozenFeatureCache:
    """Per-image (teacher attention, backbone features) and per-caption text embeddings, in memory.

    Args:
        max_samples: images kept; once full, further images are computed every time (and counted).
    """

    _shared: ClassVar[dict[str, FrozenFeatureCache]] = {}

    def __init__(self, max_samples: int = 16384) -> None:
        if max_samples < 0:
            raise ValueError(f"max_samples must be >= 0, got {max_samples}.")
        self.max_samples = max_samples
        self.images: dict[bytes, tuple[torch.Tensor, torch.Tensor]] = {}
        self.texts: dict[str, torch.Tensor] = {}
        self.hits = 0
        self.misses = 0
        self._warned_full = False

    @classmethod
    def shared(cls, key: str, max_samples: int) -> FrozenFeatureCache:
        """The process-wide cache for ``key`` (created on first use)."""
        cache = cls._shared.get(key)
        if cache is None:
            cache = cls._shared[key] = cls(max_samples)
        cache.max_samples = max(cache.max_samples, max_samples)
        return cache

    @classmethod
    def clear_shared(cls) -> None:
        """Forget every process-wide cache (frees their memory)."""
        cls._shared.clear()

    @staticmethod
    def image_key(pixels: torch.Tensor) -> bytes:
        """Digest of one image's pixel tensor ``(3, H, W)`` (its dtype and shape included)."""
        x = pixels.detach().cpu().contiguous()
        h = hashlib.blake2b(digest_size=16)
        h.update(repr((x.dtype, tuple(x.shape))).encode())
        h.update(x.view(torch.uint8).numpy().tobytes())
        return h.digest()

    def lookup(
        self,
        pixel_values: torch.Tensor,
        compute: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``compute(pixel_values)`` -- ``(target (B, ...), features (B, ...))`` -- with the cached rows reused.

        Only the images not seen before go through ``compute`` (as one sub-batch); the result is on
        ``pixel_values``' device.
        """
        keys = [self.image_key(x) for x in pixel_values]
        missing = [i for i, k in enumerate(keys) if k not in self.images]
        fresh: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        if missing:
            index = torch.tensor(missing, device=pixel_values.device)
            target, feats = compute(pixel_values.index_select(0, index))
            for j, i in enumerate(missing):
                fresh[i] = (target[j], feats[j])
                if len(self.images) < self.max_samples:
                    self.images[keys[i]] = (target[j].detach().cpu(), feats[j].detach().cpu())
                elif not self._warned_full:
                    self._warned_full = True
                    logger.warning(
                        "The frozen-feature cache is full (%d images): further images are recomputed every time; "
                        "raise frozen_feature_cache_max_samples to keep them.",
                        self.max_samples,
                    )
        self.misses += len(missing)
        self.hits += len(keys) - len(missing)
        rows = [fresh[i] if i in fresh else self.images[k] for i, k in enumerate(keys)]
        device = pixel_values.device
        target = torch.stack([r[0].to(device) for r in rows])
        feats = torch.stack([r[1].to(device) for r in rows])
        return target, feats

    def embed_texts(self, texts: Sequence[str], embed: Callable[[list[str]], torch.Tensor]) -> torch.Tensor:
        """``embed(texts)`` ``(B, d)`` with each distinct caption embedded once."""
        todo = list(dict.fromkeys(t for t in texts if t not in self.texts))
        if todo:
            for text, row in zip(todo, embed(todo)):
                self.texts[text] = row.detach().cpu()
        return torch.stack([self.texts[t] for t in texts])


def teacher_is_frozen_backbone(teacher: nn.Module, tokenizer: nn.Module, image_processor: Any) -> bool:
    """Whether ``teacher`` (a :class:`~muse_hf.objectives.StructuralTeacher`) computes exactly the tokenizer's
    frozen backbone: a DINOv2 teacher (any of its layers) at the input resolution, with the image processor's
    statistics, whose weights equal ``tokenizer.vision_model``'s (in the InternVL layout). Then one forward pass
    gives both the teacher attention and the backbone features (the embedded default: DINOv2-S is both)."""

    model = getattr(teacher, "model", None)
    vision = getattr(tokenizer, "vision_model", None)
    if model is None or vision is None or getattr(model.config, "model_type", None) != "dinov2":
        return False
    if teacher.image_size is not None:
        return False
    if any(p.requires_grad for p in vision.parameters()) or tokenizer.config.placement != "append":
        return False
    if not getattr(image_processor, "do_normalize", True):
        return False
    for ours, name in ((teacher.image_mean, "image_mean"), (teacher.image_std, "image_std")):
        if not torch.allclose(ours.flatten().cpu(), torch.tensor(list(getattr(image_processor, name))).float()):
            return False
    theirs = dinov2_to_internvl_state_dict(model.state_dict())
    ours = vision.state_dict()
    if set(theirs) != set(ours):
        return False
    return all(torch.equal(theirs[k].to(ours[k].device, ours[k].dtype), ours[k]) for k in ours)
