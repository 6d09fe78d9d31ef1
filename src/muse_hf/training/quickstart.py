"""``make quickstart``: the embedded end-to-end job on a CPU.

1. build the synthetic scenes set (``muse_hf.data.build_shapes_dataset``) into ``<out>/data``;
2. train the tiny tokenizer through the three-stage curriculum of ``configs/tokenizer/tiny.yaml``
   (``<out>/train/stage{1,2,3}``; re-running resumes an interrupted stage and skips finished ones);
3. copy the final model to ``<out>/model`` (safetensors + config + image processor + model card);
4. evaluate it on the held-out split with ``muse_hf.evaluation`` (``metrics.json``, ``report.md``,
   ``reconstruction_grid.png``, ``attention_maps.png``);
5. the unified model (:func:`run_umm_quickstart`): measure the tokenizer's latent ``scaling_factor`` /
   ``shift_factor`` on the data and store them in ``<out>/model/config.json``; train the tiny UMM (that
   tokenizer + the packaged MiniLM text encoder + a tiny SANA DiT) through ``configs/umm/tiny.yaml``
   (``<out>/train_umm/stage{1,2,3}``) on its own scenes set with a GenEval-style plain share (``<out>/data_umm``)
   and its cached latents / text states (``<out>/data_umm/.muse_cache``); ``save_pretrained`` it to ``<out>/pipeline``; generate and edit a few
   images (``umm_generations.png``, ``umm_edits.png``) and score it with the GenEval-style check
   (``pipeline/metrics.json``, a section of ``report.md``);
6. write ``<out>/quickstart_summary.json``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

__all__ = [
    "run_quickstart",
    "run_umm_quickstart",
    "evaluate_saved_tokenizer",
    "evaluate_saved_pipeline",
    "save_umm_samples",
    "find_config",
    "QUICKSTART_CONFIG",
    "QUICKSTART_UMM_CONFIG",
]

logger = logging.getLogger(__name__)

QUICKSTART_CONFIG = "configs/tokenizer/tiny.yaml"
QUICKSTART_UMM_CONFIG = "configs/umm/tiny.yaml"


def find_config(relative: str) -> Path:
    """A file under the repository's ``configs/`` (source checkout or current directory).

    Raises:
        ValueError: when it cannot be found.
    """
    for root in (Path(__file__).resolve().parents[3], Path.cwd()):
        candidate = root / relative
        if candidate.is_file():
            return candidate
    raise ValueError(
        f"{relative} not found next to the package or in {Path.cwd()}; run from the repository root."
    )


def _flat_metrics(result: dict[str, Any]) -> dict[str, float]:
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
    from muse_hf.models import MuseTokenizerModel
    from muse_hf.models.image_processing_muse import MuseImageProcessor
    from muse_hf.objectives import load_text_embedder

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
    roundtrip_per_category: int = 8,
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

    Returns:
        Flat ``{metric: value}`` of the metrics that could be computed, with ``<metric>_backbone`` /
        ``<metric>_ceiling`` / ``rfid_bicubic`` references (see ``metrics.json`` in ``out_dir`` for every floor and
        the reasons of unavailable ones).
    """
    from muse_hf.evaluation.evaluate import evaluate_tokenizer
    from muse_hf.evaluation.report import save_metric_bars, write_report
    from muse_hf.evaluation.roundtrip import roundtrip_entry, roundtrip_geneval

    model, processor, text_embedder = loaded or load_for_evaluation(model_dir)
    result = evaluate_tokenizer(
        model,
        processor,
        str(data),
        split=split,
        text_embedder=text_embedder,
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
    return _flat_metrics(result)


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
    from muse_hf.data import build_shapes_dataset
    from muse_hf.data.shapes import SceneOptions
    from muse_hf.evaluation.evaluate import evaluate_tokenizer

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
    result = evaluate_tokenizer(
        model,
        processor,
        str(data),
        text_embedder=text_embedder,
        max_samples=num_samples,
        probe_split=None,  # data-one-object has no real training split (num_train=1): 50/50 of these scenes
        rfid_samples=0,
        include_photos=False,
        compare_untrained=False,
        probe_gradients=False,
        throughput_repeats=0,
    )["metrics"]
    flat: dict[str, float] = {}
    for key in ("zero_shot_accuracy", "linear_probe_accuracy"):
        if isinstance(result[key].get("value"), (int, float)):
            flat[f"{key}_one_object"] = float(result[key]["value"])
    for key, name in (("baseline", "majority_class"), ("caption_ceiling", "caption_ceiling")):
        if isinstance(result["zero_shot_accuracy"].get(key), (int, float)):
            flat[f"zero_shot_{name}_one_object"] = float(result["zero_shot_accuracy"][key])
    return flat


def _stage_records(results: Any) -> list[dict[str, Any]]:
    """``[{"stage", "steps", "wall_time_s"}]`` of a curriculum's training results."""
    return [{"stage": Path(r.output_dir).name, "steps": r.global_step, "wall_time_s": r.wall_time_s} for r in results]


def _write_card(model_dir: Path, args: Any, trained_dir: Path) -> None:
    """Re-render the final model's card now that ``metrics.json`` (next to it) exists."""
    from muse_hf.hub import write_model_card

    summary_file = trained_dir / "training_summary.json"
    summary = json.loads(summary_file.read_text()) if summary_file.is_file() else {}
    settings = {
        **{k: v for k, v in args.to_dict().items() if v is not None},
        **summary,
        "datasets": args.train_data,
    }
    try:
        write_model_card("tokenizer", model_dir, settings=settings)
    except Exception as err:  # noqa: BLE001 - the card is a convenience; the metrics are already written
        logger.warning("Model card not written for %s: %s: %s", model_dir, type(err).__name__, err)


# ---------------------------------------------------------------------------------------------- unified model
_EDIT_KINDS = ("recolour", "move", "add", "remove")
UMM_REPORT_HEADER = "## Unified model (tiny UMM): GenEval-style check"


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
    per_category: int = 8,
    num_edits: int = 24,
    seed: int = 0,
    batch_size: int = 8,
) -> dict[str, float]:
    """Score a saved ``MusePipeline`` with the GenEval-style check (``muse_hf.pipelines.geneval.evaluate_pipeline``).

    Every score is written beside its floor and ceiling, computed without a model on the same prompts/edits:
    a blank canvas for generation and the unchanged source for edits (trivial baselines; edits also get a blank
    canvas, ``baseline_blank``, which "removes" every object), the renderer's own scene / the true target image
    (what a perfect model would produce; shows the detector's own accuracy).

    Args:
        pipeline_dir: the ``save_pretrained`` folder; ``metrics.json`` is written into it (the pipeline's model
            card reads it).
        out_dir: if given, the full result with per-image scores goes to ``<out_dir>/umm_geneval.json``.
        num_inference_steps: denoising steps.
        guidance_scale: classifier-free guidance weight.
        per_category: prompts per GenEval category (6 categories).
        num_edits: editing instructions scored.
        seed: prompt/scene and noise seed.
        batch_size: images per pipeline call.

    Returns:
        Flat ``{metric: value}`` (``geneval_overall``, ``geneval_<category>``, ``geneval_{colour,count,position}``,
        ``edit_success``, ``edit_success_<kind>``, ``edit_background_psnr``).
    """
    import PIL.Image

    from muse_hf.pipelines import MusePipeline
    from muse_hf.pipelines.geneval import (
        edit_set,
        evaluate_edits,
        evaluate_generation,
        evaluate_pipeline,
        geneval_prompts,
        render_prompt,
    )

    pipe = MusePipeline.from_pretrained(str(pipeline_dir))
    pipe.set_progress_bar_config(disable=True)
    result = evaluate_pipeline(
        pipe, num_inference_steps=num_inference_steps, guidance_scale=guidance_scale, seed=seed,
        per_category=per_category, num_edits=num_edits, batch_size=batch_size,
    )  # fmt: skip
    size = int(result["settings"]["height"])
    prompts = geneval_prompts(size, per_category, seed)
    blank = evaluate_generation(
        lambda ps: [PIL.Image.new("RGB", (size, size), "white") for _ in ps], prompts, batch_size
    )
    scenes = iter(prompts)
    ceiling = evaluate_generation(lambda ps: [render_prompt(next(scenes)) for _ in ps], prompts, batch_size)
    gen = result["generation"]
    entries: dict[str, dict[str, Any]] = {}
    base = {"baseline_method": "blank canvas"}
    entries["geneval_overall"] = _entry(
        gen["overall"], baseline=blank["overall"], ceiling=ceiling["overall"], **base
    )
    for cat, acc in gen["categories"].items():
        entries[f"geneval_{cat}"] = _entry(acc, baseline=blank["categories"][cat], ceiling=ceiling["categories"][cat],
                                           **base)  # fmt: skip
    for key in ("colour", "count", "position"):
        entries[f"geneval_{key}"] = _entry(gen[key], baseline=blank[key], ceiling=ceiling[key], **base)
    edits = result["edits"]
    identity = erased = oracle = None
    if edits is not None:
        identity = evaluate_edits(lambda ims, ins: list(ims), num_edits, size, seed, batch_size)
        erased = evaluate_edits(lambda ims, ins: [PIL.Image.new("RGB", (size, size), "white") for _ in ims], num_edits,
                                size, seed, batch_size)  # fmt: skip
        targets = iter(edit_set(num_edits, size, seed, with_targets=True)[2])
        oracle = evaluate_edits(
            lambda ims, ins: [next(targets) for _ in ims], num_edits, size, seed, batch_size
        )
        base = {"baseline_method": "unchanged source"}
        entries["edit_success"] = _entry(edits["success"], baseline=identity["success"], ceiling=oracle["success"],
                                         baseline_blank=erased["success"], **base)  # fmt: skip
        for kind in _EDIT_KINDS:
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
        "data": "muse_hf.pipelines.geneval",
        "description": "GenEval-style prompts and edits on the synthetic scenes, scored by the deterministic "
        "shape/colour detector (baseline: blank canvas / unchanged source; ceiling: the renderer's own images).",
        "settings": settings,
    }
    (Path(pipeline_dir) / "metrics.json").write_text(json.dumps(metrics_doc, indent=2))
    if out_dir is not None:
        full = {**result, "baselines": {"generation_blank": blank, "generation_renderer": ceiling,
                                        "edits_unchanged": identity, "edits_blank": erased, "edits_target": oracle}}  # fmt: skip
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        (Path(out_dir) / "umm_geneval.json").write_text(json.dumps(full, indent=2, default=str))
    return {k: e["value"] for k, e in entries.items() if e["value"] is not None}


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
    ``umm_samples.json``.

    Returns:
        ``{"generations": [prompt...], "edits": [instruction...], "files": [...]}``.
    """
    import torch
    from diffusers.utils import make_image_grid

    from muse_hf.pipelines.geneval import edit_set, geneval_prompts, render_prompt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    size = pipe._native_size()[0]
    kwargs = {"num_inference_steps": num_inference_steps, "guidance_scale": guidance_scale}
    items = geneval_prompts(size, -(-num_prompts // 6), seed)[:num_prompts]
    generated = pipe(
        [it.prompt for it in items], generator=torch.Generator().manual_seed(seed), **kwargs
    ).images
    grid = make_image_grid(
        [*generated, *(render_prompt(it) for it in items)], rows=2, cols=len(items), resize=128
    )
    grid.save(out / "umm_generations.png")
    files = [str(out / "umm_generations.png")]
    record: dict[str, Any] = {
        "generations": [{"prompt": it.prompt, "category": it.category} for it in items],
        "edits": [],
    }
    can_edit = pipe.connector.config.reference_channels is not None or pipe.condition_encoder.supports_images
    if can_edit and num_edits > 0:
        sources, instructions, targets = edit_set(num_edits, size, seed, with_targets=True)
        edited = pipe(
            instructions, image=sources, generator=torch.Generator().manual_seed(seed), **kwargs
        ).images
        grid = make_image_grid([*sources, *edited, *targets], rows=3, cols=num_edits, resize=128)
        grid.save(out / "umm_edits.png")
        files.append(str(out / "umm_edits.png"))
        record["edits"] = list(instructions)
    record["files"] = files
    (out / "umm_samples.json").write_text(json.dumps(record, indent=2))
    return record


def _umm_report(out: Path, metrics_file: Path, samples: dict[str, Any], command: str) -> str:
    """A markdown section with the pipeline's GenEval-style scores beside their floors and ceilings."""
    doc = json.loads(metrics_file.read_text())
    lines = [
        UMM_REPORT_HEADER,
        "",
        f"Command: `{command}`. Pipeline: `{out / 'pipeline'}`. Settings: {doc.get('settings')}.",
        "Scores by the deterministic shape/colour detector of `muse_hf.pipelines.geneval`; the baseline needs no "
        "model (blank canvas / unchanged source), the ceiling is the renderer's own image (the detector's accuracy).",
        "",
        "| metric | value | baseline | ceiling |",
        "|---|---|---|---|",
    ]

    def fmt(v: Any) -> str:
        return "n/a" if v is None else f"{v:.3f}"

    for key, e in doc["metrics"].items():
        baseline = f"{fmt(e.get('baseline'))} ({e.get('baseline_method', '')})"
        if "baseline_blank" in e:
            baseline += f"; {fmt(e['baseline_blank'])} (blank canvas)"
        lines.append(f"| {key} | {fmt(e.get('value'))} | {baseline} | {fmt(e.get('ceiling'))} |")
    lines += ["", "Samples: `umm_generations.png` (top: generated, bottom: the prompt's rendered scene): "
              + "; ".join(g["prompt"] for g in samples["generations"]) + "."]  # fmt: skip
    if samples["edits"]:
        lines.append("`umm_edits.png` (rows: source, edited, target): " + "; ".join(samples["edits"]) + ".")
    return "\n".join(lines) + "\n"


def run_umm_quickstart(
    output_dir: str | os.PathLike,
    tokenizer_dir: str | os.PathLike,
    data_dir: str | os.PathLike,
    config: str | os.PathLike | None = None,
    overrides: dict[str, Any] | None = None,
    *,
    scaling_batches: int = 8,
    eval_kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The quickstart's unified-model part: latent scaling, 3-stage tiny UMM, save, samples, GenEval-style scores.

    Args:
        output_dir: the quickstart folder (``train_umm/``, ``pipeline/``, ``umm_*.png``, ``umm_geneval.json``, and a
            section appended to ``report.md``).
        tokenizer_dir: the trained tokenizer folder; its ``config.json`` receives ``scaling_factor``/``shift_factor``.
        data_dir: the synthetic scenes (captions + editing pairs); the latent scaling is measured on them, and the UMM
            trains on them unless its config asks for a GenEval-style plain share (``synthetic_plain_fraction``), in
            which case it builds its own set in ``<output_dir>/data_umm``.
        config: UMM curriculum (default ``configs/umm/tiny.yaml``).
        overrides: extra argument overrides (e.g. ``{"stages.stage2.max_train_steps": 5}`` for a smoke run).
        scaling_batches: batches of 32 images measured for the latent scaling.
        eval_kwargs: keyword arguments of :func:`evaluate_saved_pipeline` (and the sample generation).

    Returns:
        ``{"latent_scaling", "stages", "metrics", "timings", "pipeline_dir", "lora_adapter", "samples"}``.
    """
    from muse_hf.hub import write_model_card
    from muse_hf.pipelines import MusePipeline
    from muse_hf.training.arguments import load_stage_arguments
    from muse_hf.training.loop import run_stages
    from muse_hf.training.umm_task import LORA_DIR, compute_and_store_latent_scaling

    start = time.perf_counter()
    out = Path(output_dir)
    config_path = Path(config) if config is not None else find_config(QUICKSTART_UMM_CONFIG)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    scaling = compute_and_store_latent_scaling(
        tokenizer_dir, data_dir, num_batches=scaling_batches, batch_size=32
    )
    timings["latent_scaling_s"] = time.perf_counter() - t0

    values = {
        "output_dir": str(out / "train_umm"),
        "train_data": str(data_dir),
        "tokenizer_name_or_path": str(tokenizer_dir),
        "build_synthetic_data": "true",
        "resume_from_checkpoint": "latest",
    }
    stages = load_stage_arguments(config_path, {**values, **(overrides or {})})
    if stages[0].synthetic_plain_fraction > 0 and "train_data" not in (overrides or {}):
        # The tokenizer's scenes have no GenEval-style plain share: the UMM builds its own set with the config's.
        values["train_data"] = str(out / "data_umm")
        stages = load_stage_arguments(config_path, {**values, **(overrides or {})})
    t0 = time.perf_counter()
    results = run_stages(stages)
    timings["train_s"] = time.perf_counter() - t0
    logs_dir = out / "logs"
    logs_dir.mkdir(parents=True, exist_ok=True)
    for r in results:
        log = Path(r.output_dir) / "logs" / "train_log.jsonl"
        if log.is_file():
            shutil.copy(log, logs_dir / f"umm_{Path(r.output_dir).name}_train_log.jsonl")

    t0 = time.perf_counter()
    final = Path(results[-1].output_dir)
    pipe = MusePipeline.from_pretrained(str(final))
    pipe.set_progress_bar_config(disable=True)
    pipeline_dir = out / "pipeline"
    if pipeline_dir.exists():
        shutil.rmtree(pipeline_dir)
    pipe.save_pretrained(str(pipeline_dir))
    timings["save_s"] = time.perf_counter() - t0

    ek = {"num_inference_steps": 20, "guidance_scale": 4.5, "seed": 0, **(eval_kwargs or {})}
    t0 = time.perf_counter()
    metrics = evaluate_saved_pipeline(pipeline_dir, out, **ek)
    timings["evaluate_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    sample_kw = {k: ek[k] for k in ("num_inference_steps", "guidance_scale", "seed")}
    samples = save_umm_samples(pipe, out, **sample_kw)
    timings["samples_s"] = time.perf_counter() - t0

    summary_file = final / "training_summary.json"
    stage_summary = json.loads(summary_file.read_text()) if summary_file.is_file() else {}
    settings = {
        **{k: v for k, v in stages[-1].to_dict().items() if v is not None},
        **stage_summary,
        "datasets": str(data_dir),
        "base_model": str(tokenizer_dir),
    }
    try:
        write_model_card("pipeline", pipeline_dir, settings=settings)
    except Exception as err:  # noqa: BLE001 - the card is a convenience; the metrics are already written
        logger.warning("Model card not written for %s: %s: %s", pipeline_dir, type(err).__name__, err)
    report = out / "report.md"
    section = _umm_report(out, pipeline_dir / "metrics.json", samples, "make quickstart")
    text = report.read_text() if report.is_file() else ""
    if UMM_REPORT_HEADER in text:  # a re-run replaces its own section (always the last one)
        text = text[: text.index(UMM_REPORT_HEADER)]
    report.write_text((text.rstrip() + "\n\n" if text.strip() else "") + section)
    timings["total_s"] = time.perf_counter() - start
    lora = final / LORA_DIR
    return {
        "config": str(config_path),
        "latent_scaling": dataclasses.asdict(scaling),
        "stages": _stage_records(results),
        "metrics": metrics,
        "timings": timings,
        "pipeline_dir": str(pipeline_dir),
        "lora_adapter": str(lora) if lora.is_dir() else None,
        "samples": samples,
    }


def run_quickstart(
    output_dir: str | os.PathLike = "outputs/quickstart",
    config: str | os.PathLike | None = None,
    umm_config: str | os.PathLike | None = None,
    umm: bool = True,
) -> dict[str, Any]:
    """Build data, train the tiny 3-stage curriculum, save, evaluate, then the tiny unified model; everything lands
    in ``output_dir``.

    Args:
        output_dir: Output folder (``data/``, ``train/``, ``model/``, ``logs/``, ``metrics.json``, ``report.md``,
            PNGs, ``train_umm/``, ``pipeline/``, ``quickstart_summary.json``).
        config: Curriculum config (default ``configs/tokenizer/tiny.yaml``).
        umm_config: Unified-model curriculum config (default ``configs/umm/tiny.yaml``).
        umm: Also run the unified-model part (:func:`run_umm_quickstart`).

    Returns:
        The summary written to ``quickstart_summary.json``.
    """
    from muse_hf.training.arguments import load_stage_arguments
    from muse_hf.training.loop import run_stages

    start = time.perf_counter()
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    config_path = Path(config) if config is not None else find_config(QUICKSTART_CONFIG)
    data_dir = out / "data"
    stages = load_stage_arguments(
        config_path,
        {
            "output_dir": str(out / "train"),
            "train_data": str(data_dir),
            "build_synthetic_data": "true",
            "resume_from_checkpoint": "latest",
        },
    )
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    results = run_stages(stages)
    timings["train_s"] = time.perf_counter() - t0

    final = Path(results[-1].output_dir)
    model_dir = out / "model"
    if model_dir.exists():
        shutil.rmtree(model_dir)
    shutil.copytree(
        final,
        model_dir,
        ignore=shutil.ignore_patterns("checkpoint-*", ".tmp-*", "logs", "training_args.yaml"),
    )
    logs_dir = out / "logs"
    logs_dir.mkdir(exist_ok=True)
    for r in results:
        log = Path(r.output_dir) / "logs" / "train_log.jsonl"
        if log.is_file():
            shutil.copy(log, logs_dir / f"{Path(r.output_dir).name}_train_log.jsonl")

    t0 = time.perf_counter()
    loaded = load_for_evaluation(model_dir)  # model and MiniLM once, for both evaluations
    metrics = evaluate_saved_tokenizer(model_dir, data_dir, stages[-1].eval_split, out, loaded=loaded)
    one_object = evaluate_one_object_scenes(model_dir, out, loaded=loaded)
    metrics.update(one_object)
    report = out / "report.md"
    if one_object and report.is_file():
        lines = [
            "",
            "## One-object scenes (unambiguous labels)",
            "",
            "Held-out scenes with exactly one object (`data-one-object/`, built by the quickstart): the label names "
            "the only object, as in the DESIGN prototype's zero-shot setting.",
            "",
            "| metric | value |",
            "|---|---|",
        ]
        lines += [f"| {k} | {v:.4f} |" for k, v in one_object.items()]
        report.write_text(report.read_text().rstrip() + "\n" + "\n".join(lines) + "\n")
    timings["evaluate_s"] = time.perf_counter() - t0
    _write_card(model_dir, stages[-1], final)
    umm_summary = None
    if umm:
        t0 = time.perf_counter()
        umm_summary = run_umm_quickstart(out, model_dir, data_dir, umm_config)
        timings["umm_s"] = time.perf_counter() - t0
    timings["total_s"] = time.perf_counter() - start
    summary = {
        "config": str(config_path),
        "stages": _stage_records(results),
        "metrics": metrics,
        "timings": timings,
        "model_dir": str(model_dir),
        "umm": umm_summary,
    }
    (out / "quickstart_summary.json").write_text(json.dumps(summary, indent=2))
    print(f"quickstart finished in {timings['total_s']:.0f} s -> {out}")
    for key in (
        "psnr",
        "ssim",
        "rfid",
        "rfid_bicubic",
        "zero_shot_accuracy",
        "linear_probe_accuracy",
        "linear_probe_accuracy_backbone",
        "geneval_roundtrip",
        "geneval_roundtrip_ceiling",
        "attention_miou",
        "attention_token_miou",
        "zero_shot_accuracy_one_object",
        "linear_probe_accuracy_one_object",
    ):
        if key in metrics:
            print(f"  {key:<24} {metrics[key]:.4f}")
    if umm_summary is not None:
        print(f"  unified model -> {umm_summary['pipeline_dir']} (GenEval-style, see report.md):")
        for key in ("geneval_overall", "edit_success", "edit_background_psnr"):
            if key in umm_summary["metrics"]:
                print(f"  {key:<24} {umm_summary['metrics'][key]:.4f}")
    return summary
