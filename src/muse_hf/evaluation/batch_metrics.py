"""Per-batch image evaluators of :func:`~muse_hf.evaluation.evaluate.evaluate_tokenizer`.

:func:`run_variant` encodes and decodes one batch with one model variant (the model or its untrained copy) and adds
its per-image reconstruction (PSNR, SSIM, rFID), attention segmentation (mIoU, pixel accuracy, token mIoU) and
topology KL to a :class:`VariantAccumulator`; :func:`rfid_accumulator` sets up rFID, :func:`measure_throughput` times
encoding and decoding, and :func:`photo_metrics` reconstructs the scikit-image photo check set with the same floors.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from muse_hf.evaluation.inputs import backbone_features, device_dtype, vision_hidden
from muse_hf.evaluation.metrics import FIDInceptionV3, RFIDAccumulator, bicubic_roundtrip, psnr, ssim
from muse_hf.evaluation.report import metric_entry, unavailable_entry
from muse_hf.evaluation.segmentation import attention_segmentation
from muse_hf.objectives import topology_alignment_loss

__all__ = ["VariantAccumulator", "measure_throughput", "photo_metrics", "rfid_accumulator", "run_variant"]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_throughput(
    model: nn.Module, pixel_values: torch.Tensor, repeats: int = 3, warmup: bool = True
) -> dict[str, float]:
    """Encode and decode throughput (images/s) on one batch, inference path, after one warm-up run.

    Args:
        model: A ``MuseTokenizerModel`` (or anything with ``encode``/``decode``).
        pixel_values: ``(B, 3, H, W)`` processor-space batch on the model's device.
        repeats: Timed runs (the median is reported).
        warmup: Run encode/decode once untimed first (``False`` when the model has just run on such batches).

    Returns:
        ``{"encode": images/s, "decode": images/s}``.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1 (timed runs whose median is reported); got {repeats}")
    device = pixel_values.device
    enc_t, dec_t = [], []
    with torch.no_grad():
        if warmup:
            model.decode(model.encode(pixel_values).latents)
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
class VariantAccumulator:
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
        """The mean of ``values`` (``None`` when there are none)."""
        return float(np.mean(values)) if values else None


def run_variant(
    model: nn.Module,
    batch: Mapping[str, Any],
    image_processor: Any,
    acc: VariantAccumulator,
    grid: tuple[int, int],
    teacher_attn: torch.Tensor | None,
    method: str,
    seed: int,
    rfid_take: int = 0,
    with_backbone: bool = False,
) -> dict[str, torch.Tensor | None]:
    """Encode/decode one batch with one model and add its per-image numbers to ``acc``.

    ``rfid_take``: how many of the batch's images go into ``acc.rfid``. ``with_backbone``: also keep the frozen
    backbone's own features (:func:`backbone_features`), from the same backbone pass the encoder reuses.
    """

    device, dtype = device_dtype(model)
    pv = batch["pixel_values"].to(device=device, dtype=dtype)  # (B, 3, H, W)
    with torch.no_grad():
        vision = None
        if with_backbone and hasattr(model, "vision_model"):
            vision, tokens = vision_hidden(model, pv)  # (B, 1 + h*w, C), one backbone pass for both uses
            acc.backbone.append(backbone_features(vision).float().cpu())
        # one encoder pass: semantic_embeds is exactly get_image_features(pv) (un-normalised pooled embedding)
        enc = model.encode(
            pv,
            output_attentions=True,
            output_semantic=True,
            **({"vision_features": tokens} if vision is not None else {}),
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


def rfid_accumulator(
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


def photo_metrics(variants: Mapping[str, nn.Module], image_processor: Any, grid: tuple[int, int]) -> dict[str, Any]:
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
        device, dtype = device_dtype(m)
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
