"""GenEval-style scores of a :class:`~muse_hf.pipelines.MusePipeline`, beside the floors and ceilings that make them
worth trusting.

:func:`evaluate_pipeline` scores a pipeline at its native size with the deterministic detector of
:mod:`muse_hf.evaluation.geneval`:

* **Prompts.** ``per_category`` (default 16) prompts per GenEval category from
  :func:`~muse_hf.evaluation.geneval.geneval_prompts`: every one names a held-out object set
  (:func:`muse_hf.data.shapes.held_out_contents`) that the synthetic training data never draws as a plain scene and
  never uses as a caption.
* **One seed per image.** Image ``i`` (the ``i``-th prompt, or edit) starts from the noise of its own generator
  ``torch.Generator().manual_seed(seed + i)`` (:func:`per_image_generators`, passed to the pipeline as a list, one per
  image, the diffusers way), so it is the same image whatever ``batch_size`` is and no two images share a noise draw.
* **Floors and ceilings** (:func:`generation_floors`), every one scored against the same prompts with the same
  summary keys as the model's score (``overall``, ``categories``, ``colour``, ``count``, ``position``,
  ``num_images``, ``scores``):

  - ``blank_canvas``: a white image of the native size for every prompt (what an empty output scores: 0);
  - ``unconditional``: the same pipeline, the same per-image seeds, given the empty prompt ``""`` - the condition
    that training's classifier-free-guidance dropout substitutes (``UMMTrainModule.unconditional`` encodes ``""``,
    ``muse_hf.pipelines.flow_matching_loss`` swaps it in) - at ``guidance_scale=1.0``: what a DiT that ignores the
    prompt scores;
  - ``roundtrip_ceiling``: the reference scenes through the pipeline's own tokenizer, ``vae.decode(vae.encode(x))``
    (:func:`muse_hf.evaluation.roundtrip.roundtrip_geneval`): no generator of these latents can do better;
  - ``renderer_ceiling``: the reference scenes themselves (the detector's own accuracy).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import PIL.Image
import torch

from muse_hf.evaluation.geneval import (
    DEFAULT_PER_CATEGORY,
    GenEvalPrompt,
    edit_set,
    evaluate_edits,
    evaluate_generation,
    geneval_prompts,
)
from muse_hf.evaluation.roundtrip import roundtrip_geneval

__all__ = [
    "DEFAULT_PER_CATEGORY",
    "FLOOR_KEYS",
    "blank_canvas",
    "evaluate_pipeline",
    "generate_images",
    "generation_floors",
    "per_image_generators",
    "score_images",
]

#: The references :func:`generation_floors` returns, floors first, ceilings last.
FLOOR_KEYS: tuple[str, ...] = ("blank_canvas", "unconditional", "roundtrip_ceiling", "renderer_ceiling")


def per_image_generators(seed: int, start: int, count: int) -> list[torch.Generator]:
    """``count`` CPU generators seeded ``seed + start``, ..., ``seed + start + count - 1``: one per image."""
    return [torch.Generator().manual_seed(seed + start + k) for k in range(count)]


def generate_images(
    pipe: Any,
    prompts: Sequence[str],
    *,
    seed: int = 0,
    batch_size: int = 8,
    images: Sequence[PIL.Image.Image] | None = None,
    **call_kwargs: Any,
) -> list[Any]:
    """Run ``pipe`` over ``prompts`` in batches; image ``i`` starts from ``torch.Generator().manual_seed(seed + i)``.

    Args:
        pipe: a :class:`~muse_hf.pipelines.MusePipeline` (anything taking ``prompts, generator=[...]`` and returning
            ``.images``).
        prompts: prompts (or edit instructions).
        seed: the first image's seed.
        batch_size: prompts per pipeline call; the images do not depend on it.
        images: one reference image per prompt (editing), or ``None``.
        **call_kwargs: forwarded to the pipeline (``num_inference_steps``, ``guidance_scale``, ``height``, ...).

    Returns:
        One image per prompt, in order.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if images is not None and len(images) != len(prompts):
        raise ValueError(f"{len(images)} reference images for {len(prompts)} prompts; pass one per prompt.")
    out: list[Any] = []
    for i in range(0, len(prompts), batch_size):
        chunk = list(prompts[i : i + batch_size])
        extra = {} if images is None else {"image": list(images[i : i + batch_size])}
        out.extend(pipe(chunk, generator=per_image_generators(seed, i, len(chunk)), **extra, **call_kwargs).images)
    return out


def score_images(images: Sequence[Any], items: Sequence[GenEvalPrompt], batch_size: int = 8) -> dict[str, Any]:
    """:func:`~muse_hf.evaluation.geneval.evaluate_generation` of ready images, image ``i`` for prompt ``i``."""
    if len(images) != len(items):
        raise ValueError(f"{len(images)} images for {len(items)} prompts.")
    it = iter(images)  # prompts may repeat: hand the images out in prompt order
    return evaluate_generation(lambda prompts: [next(it) for _ in prompts], items, batch_size)


def blank_canvas(size: int) -> PIL.Image.Image:
    """A white (255) ``size`` x ``size`` RGB image: an output with nothing drawn."""
    return PIL.Image.new("RGB", (size, size), (255, 255, 255))


def generation_floors(
    pipe: Any,
    items: Sequence[GenEvalPrompt],
    *,
    seed: int = 0,
    per_category: int = DEFAULT_PER_CATEGORY,
    batch_size: int = 8,
    **call_kwargs: Any,
) -> dict[str, dict[str, Any]]:
    """The references of a GenEval-style score (see the module docstring), keyed by :data:`FLOOR_KEYS`.

    Args:
        pipe: the pipeline scored (its ``vae`` is the tokenizer of the round trip).
        items: ``geneval_prompts(size, per_category, seed)`` at the pipeline's native ``size``.
        seed: the per-image seeds of the unconditional run (those of the model's images) and the prompt seed.
        per_category: ``items``' prompts per category (the round trip redraws the same set).
        batch_size: images per pipeline / tokenizer call.
        **call_kwargs: pipeline arguments of the model's run (``num_inference_steps``, ``height``, ``width``);
            ``guidance_scale`` is replaced by 1.0 for the unconditional run.

    Returns:
        ``{"blank_canvas", "unconditional", "roundtrip_ceiling", "renderer_ceiling"}``, each an
        ``evaluate_generation`` summary on ``items``.
    """
    size = int(items[0].scene.size) if items else int(pipe.native_size()[0])
    empty = generate_images(
        pipe, [""] * len(items), seed=seed, batch_size=batch_size, **{**call_kwargs, "guidance_scale": 1.0}
    )
    roundtrip = roundtrip_geneval(
        pipe.vae, pipe.muse_image_processor, size=size, per_category=per_category, seed=seed, batch_size=batch_size
    )
    if roundtrip["num_images"] != len(items):
        raise ValueError(f"items hold {len(items)} prompts, not geneval_prompts({size}, {per_category}, {seed}).")
    return {
        "blank_canvas": score_images([blank_canvas(size)] * len(items), items, batch_size),
        "unconditional": score_images(empty, items, batch_size),
        "roundtrip_ceiling": roundtrip["roundtrip"],
        "renderer_ceiling": roundtrip["raw"],
    }


def evaluate_pipeline(
    pipe: Any,
    *,
    num_inference_steps: int = 20,
    guidance_scale: float = 4.5,
    seed: int = 0,
    per_category: int = DEFAULT_PER_CATEGORY,
    num_edits: int = 24,
    batch_size: int = 8,
    floors: bool = True,
) -> dict[str, Any]:
    """GenEval-style generation and edit scores of a :class:`~muse_hf.pipelines.MusePipeline` at its native size.

    Image ``i`` uses the generator ``seed + i`` (the same image at any ``batch_size``); edit ``i`` likewise. Edits
    are skipped (``"edits": None``) when the pipeline cannot edit (text-only ``mllm`` and a connector without
    ``reference_channels``).

    Args:
        pipe: the pipeline.
        num_inference_steps: denoising steps.
        guidance_scale: classifier-free guidance weight of the model's run.
        seed: prompt / scene seed and first per-image noise seed.
        per_category: held-out prompts per GenEval category (6 categories).
        num_edits: editing instructions scored.
        batch_size: images per pipeline call.
        floors: also compute :func:`generation_floors` (``"floors": None`` when False).

    Returns:
        ``{"generation": evaluate_generation(...), "floors": {"blank_canvas", "unconditional", "roundtrip_ceiling",
        "renderer_ceiling"} | None, "edits": evaluate_edits(...) | None, "settings": {...}}``; every summary of
        ``floors`` has the keys of ``generation``.
    """
    h, w = pipe.native_size()
    if h != w:
        raise ValueError(f"The synthetic scenes are square; the pipeline's native size is {h}x{w}.")
    kwargs = dict(num_inference_steps=num_inference_steps, guidance_scale=guidance_scale, height=h, width=w)
    items = geneval_prompts(h, per_category, seed)
    generated = generate_images(pipe, [it.prompt for it in items], seed=seed, batch_size=batch_size, **kwargs)
    result: dict[str, Any] = {"generation": score_images(generated, items, batch_size)}
    result["floors"] = (
        generation_floors(pipe, items, seed=seed, per_category=per_category, batch_size=batch_size, **kwargs)
        if floors
        else None
    )

    can_edit = pipe.connector.config.reference_channels is not None or pipe.condition_encoder.supports_images
    edits = None
    if can_edit:
        sources, instructions = edit_set(num_edits, h, seed)
        edited = iter(generate_images(pipe, instructions, seed=seed, batch_size=batch_size, images=sources, **kwargs))
        edits = evaluate_edits(lambda ims, ins: [next(edited) for _ in ins], num_edits, h, seed, batch_size)
    result["edits"] = edits
    result["settings"] = {
        **kwargs,
        "seed": seed,
        "seeds": "seed + i for image i",
        "per_category": per_category,
        "num_edits": num_edits,
    }
    return result
