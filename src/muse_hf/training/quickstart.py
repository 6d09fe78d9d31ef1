"""``make quickstart``: the embedded end-to-end job on a CPU.

1. build the synthetic scenes set (``muse_hf.data.build_shapes_dataset``) into ``<out>/data``;
2. train the tiny tokenizer through the three-stage curriculum of ``configs/tokenizer/tiny.yaml``
   (``<out>/train/stage{1,2,3}``; re-running resumes an interrupted stage and skips finished ones);
3. copy the final model to ``<out>/model`` (safetensors + config + image processor + model card);
4. evaluate it on the held-out split with ``muse_hf.evaluation`` (``metrics.json``, ``report.md``,
   ``reconstruction_grid.png``, ``attention_maps.png``) and write ``<out>/quickstart_summary.json``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

__all__ = ["run_quickstart", "evaluate_saved_tokenizer", "find_config", "QUICKSTART_CONFIG"]

logger = logging.getLogger(__name__)

QUICKSTART_CONFIG = "configs/tokenizer/tiny.yaml"


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
    return flat


def evaluate_saved_tokenizer(
    model_dir: str | os.PathLike,
    data: str | os.PathLike,
    split: str = "validation",
    out_dir: str | os.PathLike | None = None,
    max_samples: int = 256,
) -> dict[str, float]:
    """Evaluate a ``save_pretrained`` tokenizer folder with ``muse_hf.evaluation.evaluate_tokenizer``.

    Returns:
        Flat ``{metric: value}`` of the metrics that could be computed (see ``metrics.json`` in ``out_dir``
        for floors, baselines and the reasons of unavailable ones).
    """
    from muse_hf.evaluation.evaluate import evaluate_tokenizer
    from muse_hf.models import MuseTokenizerModel
    from muse_hf.models.image_processing_muse import MuseImageProcessor
    from muse_hf.objectives import load_text_embedder

    model = MuseTokenizerModel.from_pretrained(model_dir).eval()
    processor = MuseImageProcessor.from_pretrained(model_dir)
    text_embedder = load_text_embedder(None)
    if text_embedder.dim != model.config.semantic_dim:
        text_embedder = None
    result = evaluate_tokenizer(
        model,
        processor,
        str(data),
        split=split,
        text_embedder=text_embedder,
        out_dir=out_dir,
        max_samples=max_samples,
    )
    return _flat_metrics(result)


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


def run_quickstart(
    output_dir: str | os.PathLike = "outputs/quickstart", config: str | os.PathLike | None = None
) -> dict[str, Any]:
    """Build data, train the tiny 3-stage curriculum, save, evaluate; everything lands in ``output_dir``.

    Args:
        output_dir: Output folder (``data/``, ``train/``, ``model/``, ``logs/``, ``metrics.json``, ``report.md``,
            PNGs, ``quickstart_summary.json``).
        config: Curriculum config (default ``configs/tokenizer/tiny.yaml``).

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
    metrics = evaluate_saved_tokenizer(model_dir, data_dir, stages[-1].eval_split, out)
    timings["evaluate_s"] = time.perf_counter() - t0
    _write_card(model_dir, stages[-1], final)
    timings["total_s"] = time.perf_counter() - start
    summary = {
        "config": str(config_path),
        "stages": [
            {"stage": Path(r.output_dir).name, "steps": r.global_step, "wall_time_s": r.wall_time_s}
            for r in results
        ],
        "metrics": metrics,
        "timings": timings,
        "model_dir": str(model_dir),
    }
    (out / "quickstart_summary.json").write_text(json.dumps(summary, indent=2))
    print(f"quickstart finished in {timings['total_s']:.0f} s -> {out}")
    for key in ("psnr", "ssim", "zero_shot_accuracy", "linear_probe_accuracy", "attention_miou"):
        if key in metrics:
            print(f"  {key:<24} {metrics[key]:.4f}")
    return summary
