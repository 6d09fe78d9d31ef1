"""The representation and gradient probes of :func:`~muse_hf.evaluation.evaluate.evaluate_tokenizer`.

* zero-shot classification (:func:`zero_shot_entry`): the model's ``semantic_embeds`` against templated class
  prompts, beside the majority-class floor and the captions' own ceiling;
* the linear probe (:func:`linear_probe_entry`): fitted on the probe split's features (:func:`probe_split_features`,
  the paper's protocol) or, as a fallback, on a 50/50 split of the evaluated images, beside the raw-pixel and frozen
  backbone floors;
* the gradient-conflict probe (:func:`gradient_probe`): cosines between the objectives' gradients on the
  synergistic blocks, as the released training hook measures them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import datasets
import torch
import torch.nn.functional as F
from torch import nn

from muse_hf.data import zero_shot_prompts
from muse_hf.evaluation.inputs import (
    RAW_PIXEL_PROBE_SIZE,
    backbone_features,
    device_dtype,
    iter_batches,
    open_stream,
    raw_pixel_features,
    teacher_attention,
    vision_hidden,
)
from muse_hf.evaluation.metrics import linear_probe_accuracy, majority_class_accuracy, zero_shot_accuracy
from muse_hf.evaluation.report import metric_entry, unavailable_entry
from muse_hf.objectives import (
    LogitScale,
    ReconstructionLoss,
    default_param_groups,
    gradient_conflict,
    objective_pair_cosines,
    semantic_nce_loss,
    shared_block_parameters,
    topology_alignment_loss,
)

__all__ = [
    "gradient_probe",
    "linear_probe_entry",
    "probe_split_features",
    "representation_entries",
    "stream_class_names",
    "zero_shot_entry",
]

logger = logging.getLogger(__name__)


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


def stream_class_names(stream: Any) -> list[str] | None:
    """Class names of the stream's ``ClassLabel`` label column, when it has one."""
    features = getattr(getattr(stream, "hf_dataset", None), "features", None)
    column = getattr(stream, "label_column", None)
    if features is not None and column in features and isinstance(features[column], datasets.ClassLabel):
        return list(features[column].names)
    return None


def zero_shot_entry(
    features: dict[str, torch.Tensor],
    labels: torch.Tensor | None,
    text_embedder: Any,
    class_names: Sequence[str] | None,
    captions: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The zero-shot entry: accuracy of each variant's ``features`` against the class prompts' text embeddings,
    beside the majority class (``baseline``) and, given the ``captions``, the captions' own embeddings (the
    ceiling); unavailable without labels, a text embedder or matching widths."""
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


def _stream_features(
    model: nn.Module,
    stream: Any,
    image_processor: Any,
    max_samples: int,
    batch_size: int,
    labels_required_in: str | None = None,
) -> tuple[dict[str, torch.Tensor], torch.Tensor | None, list[str]]:
    """Probe features of the first ``max_samples`` samples of ``stream``: ``({"model", "backbone"?, "raw"}, labels,
    captions)``; ``{}`` when the stream is empty, labels ``None`` when a batch has none (a ``ValueError`` naming the
    split ``labels_required_in`` at the first one, when given), unlabelled samples (label -1) kept. The images are
    encoded, not reconstructed.

    One backbone pass per batch: ``model.vision_model`` runs once and ``encode(vision_features=...)`` reuses it.
    """
    device, dtype = device_dtype(model)
    feats: dict[str, list[torch.Tensor]] = {"model": [], "backbone": [], "raw": []}
    labels: list[torch.Tensor] = []
    captions: list[str] = []
    labelled = True
    for batch in iter_batches(stream, batch_size, max_samples):
        if labels_required_in is not None and "label" not in batch:
            raise ValueError(f"the {labels_required_in!r} split has no 'label' column")
        pv = batch["pixel_values"].to(device=device, dtype=dtype)  # (B, 3, H, W)
        with torch.no_grad():
            if hasattr(model, "vision_model"):
                vision, tokens = vision_hidden(model, pv)  # (B, 1 + h*w, C)
                feats["backbone"].append(backbone_features(vision).float().cpu())
                enc = model.encode(pv, output_semantic=True, vision_features=tokens)
            else:
                enc = model.encode(pv, output_semantic=True)
        feats["model"].append(enc.semantic_embeds.float().cpu())
        feats["raw"].append(raw_pixel_features(image_processor.to_unit_range(batch["pixel_values"].float())))
        labelled = labelled and "label" in batch
        labels += [batch["label"]] if labelled else []
        captions += list(batch.get("caption", []))
    all_labels = torch.cat(labels) if labelled and labels else None
    return {name: torch.cat(f) for name, f in feats.items() if f}, all_labels, captions


def probe_split_features(
    model: nn.Module, data: Any, split: str, image_processor: Any, max_samples: int, batch_size: int
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Probe features of up to ``max_samples`` labelled images of ``split``: ``({"model", "backbone"?, "raw"}, labels)``.

    One backbone pass per batch: ``model.vision_model`` runs once and ``encode(vision_features=...)`` reuses it.
    """
    stream = open_stream(data, split, image_processor)
    feats, labels, _ = _stream_features(model, stream, image_processor, max_samples, batch_size, split)
    if not feats or labels is None:
        raise ValueError(f"no samples were read from the {split!r} split")
    keep = labels >= 0  # the stream gives -1 to an unlabelled sample
    return {name: f[keep] for name, f in feats.items()}, labels[keep]


def representation_entries(
    model: nn.Module,
    image_processor: Any,
    data: Any,
    split: str,
    text_embedder: Any,
    max_samples: int,
    batch_size: int = 32,
    seed: int = 0,
    class_names: Sequence[str] | None = None,
) -> dict[str, dict[str, Any]]:
    """``{"zero_shot_accuracy", "linear_probe_accuracy"}`` entries of the first ``max_samples`` images of ``split``,
    as :func:`~muse_hf.evaluation.evaluate.evaluate_tokenizer` computes them without an untrained model or a probe
    split (the probe on a seeded 50/50 split of these images), but without decoding or segmenting the images.

    Args:
        model: A ``MuseTokenizerModel``, evaluated as is.
        image_processor: Its ``MuseImageProcessor``.
        data: Dataset directory / Hub id, ``datasets`` split or iterable of processed samples (see ``open_stream``).
        split: Split to read.
        text_embedder: For zero-shot (``None``: zero-shot unavailable, with the majority-class floor).
        max_samples: Images read.
        batch_size: Images per forward pass.
        seed: Seed of the probe's split and solver.
        class_names: Zero-shot class names (default: the label column's ``ClassLabel`` names, else the synthetic
            scenes' ``LABEL_NAMES``).
    """
    model.eval()
    stream = open_stream(data, split, image_processor)
    feats, labels, captions = _stream_features(model, stream, image_processor, max_samples, batch_size)
    if not feats:
        raise ValueError(f"no samples were read from {data!r} (split {split!r}); check the path, split and columns")
    labelled = labels >= 0 if labels is not None else None  # the stream gives -1 to an unlabelled sample
    if labels is None or not bool(labelled.any()):
        reason = "the evaluation data has no 'label' column"
        return {"zero_shot_accuracy": unavailable_entry(reason), "linear_probe_accuracy": unavailable_entry(reason)}
    feats = {name: f[labelled] for name, f in feats.items()}
    kept = [c for c, keep in zip(captions, labelled.tolist()) if keep] if len(captions) == len(labels) else None
    names = list(class_names) if class_names is not None else stream_class_names(stream)
    return {
        "zero_shot_accuracy": zero_shot_entry({"model": feats["model"]}, labels[labelled], text_embedder, names, kept),
        "linear_probe_accuracy": linear_probe_entry(
            feats, labels[labelled], None, "probe_split=None", None, split, seed
        ),
    }


def linear_probe_entry(
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
        f"area-downsampled to <= {RAW_PIXEL_PROBE_SIZE}x{RAW_PIXEL_PROBE_SIZE}"
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

    device, dtype = device_dtype(model)
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
                t_attn = teacher_attention(teacher, batch, images01, _grid_of(out))
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
