"""Evaluators of saved models: a ``save_pretrained`` tokenizer folder or ``MusePipeline`` folder -> scores on disk.

* :func:`evaluate_saved_tokenizer` - :func:`muse_hf.evaluation.evaluate_tokenizer` plus the GenEval-style round trip
  (``metrics.json``, ``report.md``, figures); :func:`evaluate_one_object_scenes` - zero-shot / linear probe on
  one-object scenes; :func:`load_for_evaluation` loads a folder once for both.
* :func:`evaluate_saved_pipeline` - the GenEval-style generation / editing check of a saved pipeline beside its
  floors (blank canvas, unconditional DiT) and ceilings (tokenizer round trip, renderer); :func:`save_umm_samples` - a few generated / edited PNG grids.

The training tasks call these at the end of a run and the quickstart (:mod:`muse_hf.experiments.quickstart`) after
its curricula; they sit in the evaluation layer so that neither has to import the other.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from diffusers.utils import make_image_grid

from muse_hf.data.shapes import SceneOptions, build_shapes_dataset
from muse_hf.evaluation.evaluate import evaluate_tokenizer
from muse_hf.evaluation.geneval import DEFAULT_PER_CATEGORY, edit_set, evaluate_edits, geneval_prompts, render_prompt
from muse_hf.evaluation.geneval_pipeline import (
    FLOOR_KEYS,
    blank_canvas,
    evaluate_pipeline,
    per_image_generators,
)
from muse_hf.evaluation.probes import representation_entries
from muse_hf.evaluation.report import save_metric_bars, write_report
from muse_hf.evaluation.roundtrip import roundtrip_entry, roundtrip_geneval
from muse_hf.models.image_processing_muse import MuseImageProcessor
from muse_hf.models.modeling_muse import MuseTokenizerModel
from muse_hf.objectives.semantic import load_text_embedder
from muse_hf.pipelines import MusePipeline

__all__ = [
    "EDIT_KINDS",
    "GENEVAL_REFERENCE_FIELDS",
    "evaluate_one_object_scenes",
    "evaluate_saved_pipeline",
    "evaluate_saved_tokenizer",
    "flat_metrics",
    "geneval_floor_values",
    "load_for_evaluation",
    "save_umm_samples",
]


def flat_metrics(result: dict[str, Any]) -> dict[str, float]:
    flat: dict[str, float] = {}
    for name, entry in result.get("metrics", {}).items():
        value = entry.get("value") if isinstance(entry, dict) else entry
        if isinstance(value, (int, float)):
            flat[name] = float(value)
        if not isinstance(entry, dict):
            continue
        # the references beside the floors: captions / raw renders (ceilings), the frozen backbone's own features
        for key in ("caption_ceiling", "ceiling", "backbone"):
            if isinstance(entry.get(key), (int, float)):
                flat[f"{name}_{key}"] = float(entry[key])
        if name == "rfid" and isinstance(entry.get("baseline"), (int, float)):
            flat["rfid_bicubic"] = float(entry["baseline"])  # rFID is only comparable with its floor at the same N
    return flat


def load_for_evaluation(model_dir: str | os.PathLike) -> tuple[Any, Any, Any]:
    """A saved tokenizer folder -> ``(model in eval mode, image processor, text embedder or None)``.

    The text embedder is the packaged MiniLM, or ``None`` when its width is not the model's ``semantic_dim``.
    """
    model = MuseTokenizerModel.from_pretrained(model_dir).eval()
    processor = MuseImageProcessor.from_pretrained(model_dir)
    text_embedder = load_text_embedder(None)
    return model, processor, text_embedder if text_embedder.dim == model.config.semantic_dim else None


def evaluate_saved_tokenizer(
    model_dir: str | os.PathLike,
    data: str | os.PathLike,
    split: str = "validation",
    out_dir: str | os.PathLike | None = None,
    max_samples: int = 256,
    loaded: tuple[Any, Any, Any] | None = None,
    *,
    probe_split: str | None = "train",
    probe_samples: int = 2048,
    rfid_samples: int = 128,
    roundtrip_per_category: int = DEFAULT_PER_CATEGORY,
    teacher: Any = None,
) -> dict[str, float]:
    """Evaluate a ``save_pretrained`` tokenizer folder with ``muse_hf.evaluation.evaluate_tokenizer``, plus the
    GenEval-style round trip (``muse_hf.evaluation.roundtrip_geneval``: what the latents keep of what a generator
    needs), which lands in the same ``metrics.json`` / ``report.md`` as ``geneval_roundtrip``.

    Args:
        loaded: :func:`load_for_evaluation`'s result for ``model_dir``, when the caller already has it.
        probe_split: Split the linear probe is fitted on (scored on ``split``); see ``evaluate_tokenizer``.
        probe_samples: Images of ``probe_split`` for the probe.
        rfid_samples: Evaluated images that enter rFID (0 = none; ~0.3 s per image and variant on one CPU thread).
        roundtrip_per_category: GenEval-style prompts per category for the round trip (0 = skip it).
        teacher: The structural teacher the model was trained against (a module, e.g. the training task's
            ``StructuralTeacher``): the topology KL and the attention-mIoU ceiling are measured against it. ``None``:
            the label-derived mask-affinity teacher (``evaluate_tokenizer``'s default).

    Returns:
        Flat ``{metric: value}`` of the metrics that could be computed, with ``<metric>_backbone`` /
        ``<metric>_ceiling`` / ``rfid_bicubic`` references (see ``metrics.json`` in ``out_dir`` for every floor and
        the reasons of unavailable ones).
    """
    model, processor, text_embedder = loaded or load_for_evaluation(model_dir)
    result = evaluate_tokenizer(
        model,
        processor,
        str(data),
        split=split,
        text_embedder=text_embedder,
        teacher=teacher,
        out_dir=out_dir,
        max_samples=max_samples,
        probe_split=probe_split,
        probe_samples=probe_samples,
        rfid_samples=rfid_samples,
    )
    if roundtrip_per_category > 0:
        roundtrip = roundtrip_geneval(
            model, processor, per_category=roundtrip_per_category, seed=0, compare_untrained=True
        )
        result["metrics"]["geneval_roundtrip"] = roundtrip_entry(roundtrip)
    else:
        result["metrics"]["geneval_roundtrip"] = roundtrip_entry(None, "skipped (roundtrip_per_category=0)")
    if out_dir is not None:  # evaluate_tokenizer wrote them without the round trip
        write_report(result, out_dir)
        save_metric_bars(result, Path(out_dir) / "metrics_bars.png")
    return flat_metrics(result)


def evaluate_one_object_scenes(
    model_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    num_samples: int = 300,
    seed: int = 1234,
    loaded: tuple[Any, Any, Any] | None = None,
) -> dict[str, float]:
    """Zero-shot and linear-probe accuracy on held-out scenes with exactly one object.

    On the 1-4-object split the ``label`` names only the largest object while the captions describe all of
    them; one-object scenes make the class unambiguous (the DESIGN prototype's zero-shot setting).

    Args:
        loaded: :func:`load_for_evaluation`'s result for ``model_dir``, when the caller already has it.

    Returns:
        ``{"zero_shot_accuracy_one_object", "linear_probe_accuracy_one_object",
        "zero_shot_majority_class_one_object", "zero_shot_caption_ceiling_one_object"}`` (those computed).
    """
    model, processor, text_embedder = loaded or load_for_evaluation(model_dir)
    data = Path(out_dir) / "data-one-object"
    if not (data / "README.md").is_file():
        build_shapes_dataset(
            data,
            num_train=1,
            num_val=num_samples,
            image_size=model.config.image_size,
            seed=seed,
            options=SceneOptions(min_objects=1, max_objects=1),
            overwrite=True,
        )
    # only the representation metrics: the images are encoded, not reconstructed or segmented; the probe on a 50/50
    # split of these scenes (data-one-object has no real training split: num_train=1)
    result = representation_entries(model, processor, str(data), "validation", text_embedder, num_samples)
    flat: dict[str, float] = {}
    for key in ("zero_shot_accuracy", "linear_probe_accuracy"):
        if isinstance(result[key].get("value"), (int, float)):
            flat[f"{key}_one_object"] = float(result[key]["value"])
    for key, name in (("baseline", "majority_class"), ("caption_ceiling", "caption_ceiling")):
        if isinstance(result["zero_shot_accuracy"].get(key), (int, float)):
            flat[f"zero_shot_{name}_one_object"] = float(result["zero_shot_accuracy"][key])
    return flat


EDIT_KINDS = ("recolour", "move", "add", "remove")


def _entry(value: float | None, unit: str = "", **extra: Any) -> dict[str, Any]:
    """A ``metrics.json`` entry (see :func:`muse_hf.hub.load_metrics`); ``None`` values are marked n/a."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return {"value": None, "status": "n/a", "reason": "no image of this kind was scored", **extra}
    return {"value": float(value), "status": "ok", "unit": unit, **extra}


def evaluate_saved_pipeline(
    pipeline_dir: str | os.PathLike,
    out_dir: str | os.PathLike | None = None,
    *,
    num_inference_steps: int = 20,
    guidance_scale: float = 4.5,
    per_category: int = DEFAULT_PER_CATEGORY,
    num_edits: int = 24,
    seed: int = 0,
    batch_size: int = 8,
) -> dict[str, float]:
    """Score a saved ``MusePipeline`` with the GenEval-style check (:func:`evaluate_pipeline`).

    Every generation score is written beside its floors and ceilings (:func:`generation_floors`, on the same held-out
    prompts): ``baseline`` = a blank canvas, ``unconditional`` = the same DiT and seeds given the empty prompt,
    ``roundtrip_ceiling`` = the renders through the pipeline's tokenizer, ``ceiling`` = the renderer's own scene (the
    detector's accuracy). Edits: ``baseline`` = the unchanged source, ``baseline_blank`` = a blank canvas (which
    "removes" every object), ``ceiling`` = the true target image.

    Args:
        pipeline_dir: the ``save_pretrained`` folder; ``metrics.json`` is written into it (the pipeline's model
            card reads it).
        out_dir: if given, the full result with per-image scores goes to ``<out_dir>/umm_geneval.json``.
        num_inference_steps: denoising steps.
        guidance_scale: classifier-free guidance weight.
        per_category: held-out prompts per GenEval category (6 categories).
        num_edits: editing instructions scored.
        seed: prompt/scene seed; image ``i`` uses the noise seed ``seed + i``.
        batch_size: images per pipeline call.

    Returns:
        Flat ``{metric: value}`` of the model's own scores (``geneval_overall``, ``geneval_<category>``,
        ``geneval_{colour,count,position}``, ``edit_success``, ``edit_success_<kind>``, ``edit_background_psnr``);
        the floors are in ``metrics.json`` (:func:`geneval_floor_values` reads them).
    """
    pipe = MusePipeline.from_pretrained(str(pipeline_dir))
    pipe.set_progress_bar_config(disable=True)
    result = evaluate_pipeline(
        pipe, num_inference_steps=num_inference_steps, guidance_scale=guidance_scale, seed=seed,
        per_category=per_category, num_edits=num_edits, batch_size=batch_size, floors=True,
    )  # fmt: skip
    size = int(result["settings"]["height"])
    gen, refs = result["generation"], result["floors"]
    blank, uncond, roundtrip, ceiling = (refs[k] for k in FLOOR_KEYS)
    entries: dict[str, dict[str, Any]] = {}
    base = {"baseline_method": "blank canvas"}

    def refs_of(pick: Any) -> dict[str, Any]:
        return {"baseline": pick(blank), "unconditional": pick(uncond), "roundtrip_ceiling": pick(roundtrip),
                "ceiling": pick(ceiling), **base}  # fmt: skip

    entries["geneval_overall"] = _entry(gen["overall"], **refs_of(lambda s: s["overall"]))
    for cat, acc in gen["categories"].items():
        entries[f"geneval_{cat}"] = _entry(acc, **refs_of(lambda s, c=cat: s["categories"][c]))
    for key in ("colour", "count", "position"):
        entries[f"geneval_{key}"] = _entry(gen[key], **refs_of(lambda s, k=key: s[k]))
    edits = result["edits"]
    identity = erased = oracle = None
    if edits is not None:
        identity = evaluate_edits(lambda ims, ins: list(ims), num_edits, size, seed, batch_size)
        erased = evaluate_edits(lambda ims, ins: [blank_canvas(size) for _ in ims], num_edits, size, seed, batch_size)
        targets = iter(edit_set(num_edits, size, seed, with_targets=True)[2])
        oracle = evaluate_edits(lambda ims, ins: [next(targets) for _ in ims], num_edits, size, seed, batch_size)
        base = {"baseline_method": "unchanged source"}
        entries["edit_success"] = _entry(edits["success"], baseline=identity["success"], ceiling=oracle["success"],
                                         baseline_blank=erased["success"], **base)  # fmt: skip
        for kind in EDIT_KINDS:
            if kind in edits["per_kind"]:
                entries[f"edit_success_{kind}"] = _entry(
                    edits["per_kind"][kind], baseline=identity["per_kind"][kind], ceiling=oracle["per_kind"][kind],
                    baseline_blank=erased["per_kind"][kind], **base,
                )  # fmt: skip
        entries["edit_background_psnr"] = _entry(
            edits["background_psnr"], "dB", baseline=identity["background_psnr"], ceiling=oracle["background_psnr"],
            baseline_blank=erased["background_psnr"], **base,
        )  # fmt: skip
    settings = result["settings"]
    metrics_doc = {
        "metrics": entries,
        "data": "muse_hf.evaluation.geneval",
        "description": "GenEval-style held-out prompts and edits on the synthetic scenes, scored by the deterministic "
        "shape/colour detector, one noise seed per image. Generation: floors = blank canvas (baseline) and the same "
        "DiT given the empty prompt (unconditional); ceilings = the renders through the pipeline's tokenizer "
        "(roundtrip_ceiling) and the renders themselves (ceiling). Edits: baseline = unchanged source, ceiling = the "
        "true target.",
        "settings": settings,
    }
    (Path(pipeline_dir) / "metrics.json").write_text(json.dumps(metrics_doc, indent=2))
    if out_dir is not None:
        full = {**result, "baselines": {"generation_blank": blank, "generation_renderer": ceiling,
                                        "edits_unchanged": identity, "edits_blank": erased, "edits_target": oracle}}  # fmt: skip
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        (Path(out_dir) / "umm_geneval.json").write_text(json.dumps(full, indent=2, default=str))
    return {k: e["value"] for k, e in entries.items() if e["value"] is not None}


#: metrics.json fields of a GenEval-style entry -> the reference they hold (:func:`evaluate_saved_pipeline`).
GENEVAL_REFERENCE_FIELDS: dict[str, str] = {
    "blank_canvas": "baseline",
    "unconditional": "unconditional",
    "roundtrip_ceiling": "roundtrip_ceiling",
    "renderer_ceiling": "ceiling",
}


def geneval_floor_values(metrics_doc: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """``{reference: {geneval metric: value}}`` (references: :data:`GENEVAL_REFERENCE_FIELDS`) of the ``metrics.json``
    that :func:`evaluate_saved_pipeline` writes: the floors and ceilings beside the model's ``geneval_*`` scores."""
    entries = {k: e for k, e in metrics_doc.get("metrics", {}).items() if k.startswith("geneval_")}
    return {ref: {k: e.get(field) for k, e in entries.items()} for ref, field in GENEVAL_REFERENCE_FIELDS.items()}


def save_umm_samples(
    pipe: Any,
    out_dir: str | os.PathLike,
    *,
    num_prompts: int = 6,
    num_edits: int = 6,
    num_inference_steps: int = 20,
    guidance_scale: float = 4.5,
    seed: int = 0,
) -> dict[str, Any]:
    """Generate and edit a few images with ``pipe`` and save them as PNG grids in ``out_dir``.

    ``umm_generations.png``: top row generated, bottom row the renderer's scene for the same prompt;
    ``umm_edits.png``: rows source / edited / true target. The prompts and instructions (grid order) are in
    ``umm_samples.json``. They are the first prompts / edits of :func:`evaluate_pipeline`'s set with the same
    per-image seeds (``seed + i``), so the grids show images that were scored.

    Returns:
        ``{"generations": [prompt...], "edits": [instruction...], "files": [...]}``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    size = pipe.native_size()[0]
    kwargs = {"num_inference_steps": num_inference_steps, "guidance_scale": guidance_scale}
    items = geneval_prompts(size, -(-num_prompts // 6), seed)[:num_prompts]
    generated = pipe([it.prompt for it in items], generator=per_image_generators(seed, 0, len(items)), **kwargs).images
    grid = make_image_grid([*generated, *(render_prompt(it) for it in items)], rows=2, cols=len(items), resize=128)
    grid.save(out / "umm_generations.png")
    files = [str(out / "umm_generations.png")]
    record: dict[str, Any] = {
        "generations": [{"prompt": it.prompt, "category": it.category} for it in items],
        "edits": [],
    }
    can_edit = pipe.connector.config.reference_channels is not None or pipe.condition_encoder.supports_images
    if can_edit and num_edits > 0:
        sources, instructions, targets = edit_set(num_edits, size, seed, with_targets=True)
        edited = pipe(instructions, image=sources, generator=per_image_generators(seed, 0, num_edits), **kwargs).images
        grid = make_image_grid([*sources, *edited, *targets], rows=3, cols=num_edits, resize=128)
        grid.save(out / "umm_edits.png")
        files.append(str(out / "umm_edits.png"))
        record["edits"] = list(instructions)
    record["files"] = files
    (out / "umm_samples.json").write_text(json.dumps(record, indent=2))
    return record
