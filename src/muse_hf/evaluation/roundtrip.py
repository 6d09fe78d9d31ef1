"""GenEval-style round trip: the ceiling the tokenizer's latents put on a generator.

A unified model generates the tokenizer's *latents* and the tokenizer decodes them, so if ``decode(encode(x))`` of a
perfect image already loses an object's colour, shape, count or position, no generator on these latents can get that
prompt right. :func:`roundtrip_geneval` renders the GenEval-style prompts of :mod:`muse_hf.evaluation.geneval` (the
renderer's own scene per prompt: what a perfect generator would draw), passes them through ``decode(encode(x))`` and
scores the raw renders and the round trips with the same deterministic detector (``score_generation``), beside a
bicubic round trip through the latent grid (trivial floor) and, optionally, an untrained tokenizer of the same config.
:func:`roundtrip_entry` turns the result into a ``metrics.json`` entry (:func:`muse_hf.evaluation.report.metric_entry`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import PIL.Image
import torch
from torch import nn

from muse_hf.evaluation.geneval import DEFAULT_PER_CATEGORY, evaluate_generation, geneval_prompts, render_prompt
from muse_hf.evaluation.metrics import bicubic_roundtrip
from muse_hf.evaluation.report import metric_entry, unavailable_entry

__all__ = ["SUMMARY_KEYS", "roundtrip_entry", "roundtrip_geneval"]

#: Keys of every summary :func:`roundtrip_geneval` returns (those of ``muse_hf.evaluation.geneval.evaluate_generation``).
SUMMARY_KEYS: tuple[str, ...] = (
    "overall",
    "categories",
    "colour",
    "count",
    "position",
    "num_images",
    "scores",
)


def _model_size(model: nn.Module, image_processor: Any) -> int:
    size = getattr(image_processor, "size", None) or {}
    height = size.get("height") if isinstance(size, dict) else getattr(size, "height", None)
    if height is None:
        height = getattr(getattr(model, "config", None), "image_size", None)
        height = height[0] if isinstance(height, (list, tuple)) else height
    if height is None:
        raise ValueError("pass size=: neither image_processor.size['height'] nor model.config.image_size is set")
    return int(height)


def _untrained(model: nn.Module, seed: int) -> nn.Module:
    """A freshly initialised model of the same class and config, on the model's device and dtype."""
    param = next(model.parameters())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh = type(model)(model.config)
    return fresh.to(device=param.device, dtype=param.dtype).eval()


def _roundtrip_fn(
    model: nn.Module | None, image_processor: Any, size: int, grid: tuple[int, int] | None = None
) -> Callable[[list[PIL.Image.Image]], list[PIL.Image.Image]]:
    """Images -> ``decode(encode(x))`` of ``model`` (or the bicubic round trip through ``grid`` when no model)."""

    def run(images: list[PIL.Image.Image]) -> list[PIL.Image.Image]:
        pv = image_processor(images, return_tensors="pt")["pixel_values"]  # (B, 3, H, W) processor space
        if model is None:
            out = bicubic_roundtrip(image_processor.to_unit_range(pv.float()), grid)  # type: ignore[arg-type]
            out = image_processor.postprocess(image_processor.from_unit_range(out), output_type="pil")
        else:
            param = next(model.parameters())
            pv = pv.to(device=param.device, dtype=param.dtype)
            with torch.no_grad():
                recon = model.decode(model.encode(pv).latents, output_size=tuple(pv.shape[-2:])).sample
            out = image_processor.postprocess(recon, output_type="pil")
        return [im if im.size == (size, size) else im.resize((size, size), PIL.Image.BICUBIC) for im in out]

    return run


def roundtrip_geneval(
    model: nn.Module,
    image_processor: Any,
    size: int | None = None,
    per_category: int = DEFAULT_PER_CATEGORY,
    seed: int = 0,
    batch_size: int = 16,
    compare_untrained: bool = False,
) -> dict[str, Any]:
    """Score the GenEval-style prompts' rendered scenes as they are and after ``decode(encode(x))``.

    Args:
        model: A ``MuseTokenizerModel`` (anything with ``encode(pv).latents`` and ``decode(latents, output_size)``),
            evaluated as is, on its device and dtype.
        image_processor: Its ``MuseImageProcessor`` (renders are resized to its size, outputs back to ``size``).
        size: Side of the rendered scenes (default: the processor's height, the model's native size).
        per_category: Prompts per GenEval category (6 categories), from ``geneval_prompts(size, per_category, seed)``.
        seed: Prompt / scene seed (and the untrained model's init seed).
        batch_size: Images per forward pass.
        compare_untrained: Also round-trip through an untrained model of the same config (a floor).

    Returns:
        ``{"raw", "roundtrip", "bicubic", "untrained"?, "size", "per_category", "seed", "latent_grid", "num_images"}``;
        ``raw`` / ``roundtrip`` / ``bicubic`` / ``untrained`` are ``evaluate_generation`` summaries (:data:`SUMMARY_KEYS`:
        ``overall`` = mean of the per-category accuracies, ``categories``, ``colour``/``count``/``position`` rates,
        ``num_images``, per-image ``scores``).
    """
    if per_category < 1 or batch_size < 1:
        raise ValueError(f"per_category and batch_size must be >= 1, got {per_category} and {batch_size}")
    size = int(size) if size is not None else _model_size(model, image_processor)
    items = geneval_prompts(size=size, per_category=per_category, seed=seed)
    renders = [render_prompt(it) for it in items]
    was_training = model.training
    model.eval()
    try:
        grid_cfg = getattr(getattr(model, "config", None), "latent_grid", None)
        if grid_cfg is None:
            with torch.no_grad():
                param = next(model.parameters())
                pv = image_processor(renders[:1], return_tensors="pt")["pixel_values"].to(param.device, param.dtype)
                grid_cfg = model.encode(pv).latents.shape[-2:]
        grid = (int(grid_cfg[0]), int(grid_cfg[1]))

        def score(
            transform: Callable[[list[PIL.Image.Image]], list[PIL.Image.Image]] | None,
        ) -> dict[str, Any]:
            outputs: list[PIL.Image.Image] = []
            for i in range(0, len(renders), batch_size):
                chunk = renders[i : i + batch_size]
                outputs += transform(chunk) if transform is not None else chunk
            images = iter(outputs)  # prompts may repeat: hand out the images in prompt order
            return evaluate_generation(lambda prompts: [next(images) for _ in prompts], items, batch_size)

        result: dict[str, Any] = {
            "raw": score(None),
            "roundtrip": score(_roundtrip_fn(model, image_processor, size)),
            "bicubic": score(_roundtrip_fn(None, image_processor, size, grid)),
        }
        if compare_untrained:
            result["untrained"] = score(_roundtrip_fn(_untrained(model, seed), image_processor, size))
    finally:
        model.train(was_training)
    result.update(size=size, per_category=per_category, seed=seed, latent_grid=list(grid), num_images=len(items))
    return result


def _categories(summary: dict[str, Any] | None) -> dict[str, float] | None:
    return dict(summary["categories"]) if summary is not None else None


def roundtrip_entry(result: dict[str, Any] | None, reason: str | None = None) -> dict[str, Any]:
    """The ``metrics.json`` entry (``geneval_roundtrip``) of a :func:`roundtrip_geneval` result.

    ``value`` = the round trip's overall accuracy; ``untrained`` / ``baseline`` = the untrained model's and the bicubic
    round trip's; ``ceiling`` = the raw renders' (the detector's own accuracy); per-category values beside them.

    Args:
        result: :func:`roundtrip_geneval`'s output, or ``None`` with ``reason``.
        reason: Why there is no result.
    """
    if result is None:
        return unavailable_entry(reason or "the GenEval-style round trip was not run")
    rt, raw, bic = result["roundtrip"], result["raw"], result["bicubic"]
    untrained = result.get("untrained")
    return metric_entry(
        rt["overall"],
        untrained["overall"] if untrained is not None else None,
        bic["overall"],
        ceiling=raw["overall"],
        ceiling_method="the raw renders (the detector's own accuracy)",
        categories=_categories(rt),
        categories_raw=_categories(raw),
        categories_bicubic=_categories(bic),
        categories_untrained=_categories(untrained),
        rates={key: rt[key] for key in ("colour", "count", "position")},
        num_images=result["num_images"],
        size=result["size"],
        per_category=result["per_category"],
        note=f"round trip keeps what a generator needs: {rt['overall']:.3f} (raw renders: {raw['overall']:.3f}); "
        f"{result['num_images']} GenEval-style prompts at {result['size']} px through decode(encode(render)), scored "
        "by muse_hf.evaluation.geneval's detector (mean of the per-category accuracies)",
    )
