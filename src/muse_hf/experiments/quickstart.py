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
import os
import shutil
import time
from pathlib import Path
from typing import Any

from muse_hf.configs import find_config
from muse_hf.evaluation.saved import (
    GENEVAL_REFERENCE_FIELDS,
    evaluate_one_object_scenes,
    evaluate_saved_pipeline,
    evaluate_saved_tokenizer,
    geneval_floor_values,
    load_for_evaluation,
    save_umm_samples,
)
from muse_hf.hub import write_model_card
from muse_hf.pipelines import MusePipeline
from muse_hf.training.arguments import load_stage_arguments
from muse_hf.training.loop import run_stages
from muse_hf.training.tokenizer.task import training_teacher
from muse_hf.training.umm.lora import LORA_DIR
from muse_hf.training.umm.scaling import compute_and_store_latent_scaling

__all__ = [
    "run_quickstart",
    "run_umm_quickstart",
    "find_config",
    "QUICKSTART_CONFIG",
    "QUICKSTART_UMM_CONFIG",
    "UMM_REPORT_HEADER",
    # evaluators of saved models, re-exported from muse_hf.evaluation.saved (their home) for old imports
    "evaluate_one_object_scenes",
    "evaluate_saved_pipeline",
    "evaluate_saved_tokenizer",
    "load_for_evaluation",
    "save_umm_samples",
]

logger = logging.getLogger(__name__)

#: The quickstart's curricula, shipped as package data (:mod:`muse_hf.configs`; copies of the repository's files).
QUICKSTART_CONFIG = "configs/tokenizer/tiny.yaml"
QUICKSTART_UMM_CONFIG = "configs/umm/tiny.yaml"


def _stage_records(results: Any) -> list[dict[str, Any]]:
    """``[{"stage", "steps", "wall_time_s"}]`` of a curriculum's training results."""
    return [{"stage": Path(r.output_dir).name, "steps": r.global_step, "wall_time_s": r.wall_time_s} for r in results]


def _write_card(model_dir: Path, args: Any, trained_dir: Path) -> None:
    """Re-render the final model's card now that ``metrics.json`` (next to it) exists."""
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
UMM_REPORT_HEADER = "## Unified model (tiny UMM): GenEval-style check"


def _umm_report(out: Path, metrics_file: Path, samples: dict[str, Any], command: str) -> str:
    """A markdown section with the pipeline's GenEval-style scores beside their floors and ceilings."""
    doc = json.loads(metrics_file.read_text())

    def fmt(v: Any) -> str:
        return "n/a" if v is None else f"{v:.3f}"

    lines = [
        UMM_REPORT_HEADER,
        "",
        f"Command: `{command}`. Pipeline: `{out / 'pipeline'}`. Settings: {doc.get('settings')}.",
        "Scores by the deterministic shape/colour detector of `muse_hf.evaluation.geneval` on held-out prompts, one "
        "noise seed per image. A score is only worth something between its floors and ceilings: the blank canvas "
        "(an empty output) and the same DiT given the empty prompt (unconditional: the prompt ignored) are floors; "
        "the prompt's rendered scene through the tokenizer's round trip decode(encode(x)) (no generator of these "
        "latents does better) and the rendered scene itself (the detector's own accuracy) are ceilings.",
        "",
        "| metric | value | blank canvas (floor) | unconditional DiT (floor) | tokenizer round trip (ceiling) "
        "| renderer (ceiling) |",
        "|---|---|---|---|---|---|",
    ]
    metrics = doc["metrics"]
    for key, e in metrics.items():
        if key.startswith("geneval_"):
            refs = " | ".join(fmt(e.get(f)) for f in GENEVAL_REFERENCE_FIELDS.values())
            lines.append(f"| {key} | {fmt(e.get('value'))} | {refs} |")
    edit_keys = [k for k in metrics if not k.startswith("geneval_")]
    if edit_keys:
        lines += ["", "| metric | value | unchanged source (baseline) | blank canvas | true target (ceiling) |",
                  "|---|---|---|---|---|"]  # fmt: skip
        for key in edit_keys:
            e = metrics[key]
            lines.append(
                f"| {key} | {fmt(e.get('value'))} | {fmt(e.get('baseline'))} | {fmt(e.get('baseline_blank'))} "
                f"| {fmt(e.get('ceiling'))} |"
            )
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
        ``{"config", "latent_scaling", "stages", "metrics", "geneval_floors", "timings", "pipeline_dir",
        "lora_adapter", "samples"}``; ``metrics`` holds the model's own scores, ``geneval_floors`` the references
        beside its ``geneval_*`` ones (``{"blank_canvas", "unconditional", "roundtrip_ceiling",
        "renderer_ceiling"}`` -> ``{metric: value}``).
    """
    start = time.perf_counter()
    out = Path(output_dir)
    config_path = Path(config) if config is not None else find_config(QUICKSTART_UMM_CONFIG)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    scaling = compute_and_store_latent_scaling(tokenizer_dir, data_dir, num_batches=scaling_batches, batch_size=32)
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
        "geneval_floors": geneval_floor_values(json.loads((pipeline_dir / "metrics.json").read_text())),
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
    teacher = training_teacher(stages[-1])  # the ceiling is the teacher the model learned from, not a label map
    metrics = evaluate_saved_tokenizer(model_dir, data_dir, stages[-1].eval_split, out, loaded=loaded, teacher=teacher)
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
        for ref, values in umm_summary["geneval_floors"].items():
            if values.get("geneval_overall") is not None:
                print(f"  {'geneval_overall_' + ref:<24} {values['geneval_overall']:.4f}")
    return summary
