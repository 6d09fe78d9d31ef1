"""Model cards for trained checkpoints, rendered from ``model_cards/*.md`` with ``huggingface_hub.ModelCard``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["find_template", "write_tokenizer_card"]

# metric key (flat, from the evaluation) -> (EvalResult task type, metric type)
_EVAL_TASKS: dict[str, tuple[str, str]] = {
    "psnr": ("image-to-image", "psnr"),
    "ssim": ("image-to-image", "ssim"),
    "zero_shot_accuracy": ("zero-shot-image-classification", "accuracy"),
    "linear_probe_accuracy": ("image-classification", "accuracy"),
    "attention_miou": ("image-segmentation", "mean_iou"),
}


def find_template(kind: str) -> Path | None:
    """``model_cards/<kind>.md`` of the source checkout (None when the package is installed without it)."""
    for root in (Path(__file__).resolve().parents[3], Path.cwd()):
        candidate = root / "model_cards" / f"{kind}.md"
        if candidate.is_file():
            return candidate
    return None


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def write_tokenizer_card(
    output_dir: str | os.PathLike, args: Any, metrics: dict[str, float], summary: dict[str, Any]
) -> Path:
    """Write ``README.md`` (a validated model card) for a trained tokenizer folder.

    Args:
        output_dir: The ``save_pretrained`` folder (its ``config.json`` is read).
        args: The stage's ``TokenizerTrainingArguments``.
        metrics: Flat ``{name: value}`` evaluation metrics (may be empty).
        summary: The loop's run summary (steps, batch, processes, wall time, ...).

    Returns:
        Path of the card.
    """
    import json

    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    from muse_hf.training.arguments import is_hub_id

    out = Path(output_dir)
    config = json.loads((out / "config.json").read_text())
    dataset_name = args.train_data if args.train_data and is_hub_id(args.train_data) else None
    eval_results = []
    for key, value in metrics.items():
        if key in _EVAL_TASKS and isinstance(value, (int, float)):
            task_type, metric_type = _EVAL_TASKS[key]
            eval_results.append(
                EvalResult(
                    task_type=task_type,
                    dataset_type=dataset_name or "muse-hf/synthetic-scenes",
                    dataset_name=dataset_name or "muse_hf synthetic scenes (embedded)",
                    dataset_split=args.eval_split,
                    metric_type=metric_type,
                    metric_name=key,
                    metric_value=float(value),
                )
            )
    repo_id = args.hub_model_id or out.name
    card_data = ModelCardData(
        library_name="transformers",
        pipeline_tag="image-feature-extraction",
        license="apache-2.0",
        tags=["muse", "muse_hf", "visual-tokenizer", "autoencoder", "unified-multimodal"],
        base_model=args.init_from if args.init_from and is_hub_id(args.init_from) else args.vision_model_name_or_path,
        datasets=[dataset_name] if dataset_name else None,
        model_name=repo_id,
        eval_results=eval_results or None,
    )
    settings_keys = (
        "learning_rate",
        "lr_scheduler",
        "lr_warmup_steps",
        "lr_warmup_ratio",
        "weight_decay",
        "adam_beta1",
        "adam_beta2",
        "max_grad_norm",
        "train_batch_size",
        "gradient_accumulation_steps",
        "mixed_precision",
        "topology_weight",
        "semantic_weight",
        "reconstruction_weight",
        "perceptual_weight",
        "gan_weight",
        "gan_start_step",
        "freeze_vision_backbone",
        "backbone_lr_multiplier",
        "teacher",
        "text_encoder",
        "use_ema",
        "seed",
    )
    settings = [(k, _fmt(getattr(args, k))) for k in settings_keys]
    num_params = 0
    weights = out / "model.safetensors"
    if weights.is_file():
        from safetensors import safe_open

        with safe_open(str(weights), framework="pt") as fh:
            num_params = sum(_numel(fh.get_slice(k).get_shape()) for k in fh.keys())
    fields = {
        "model_name": repo_id,
        "repo_id": repo_id,
        "model_source": args.init_from or args.vision_model_name_or_path or f"preset `{args.model_preset}` (from scratch)",
        "num_blocks": config.get("num_synergistic_blocks"),
        "hidden_size": config.get("hidden_size"),
        "routing": config.get("routing"),
        "placement": config.get("placement"),
        "latent_channels": config.get("latent_channels"),
        "semantic_dim": config.get("semantic_dim"),
        "compression": _compression(config),
        "num_parameters": f"{num_params / 1e6:.2f}M" if num_params else "n/a",
        "stage_name": args.stage_name,
        "global_step": summary.get("global_step"),
        "resolution": args.resolution,
        "total_batch_size": summary.get("total_batch_size"),
        "num_processes": summary.get("num_processes"),
        "training_settings": settings,
        "train_data": args.train_data,
        "nonfinite_steps": summary.get("nonfinite_steps", 0),
        "skipped_samples": summary.get("skipped_samples", 0),
        "wall_time": f"{summary.get('wall_time_s', 0.0):.0f} s",
        "metrics": [(k, _fmt(v)) for k, v in metrics.items()],
        "config_hint": "configs/tokenizer/<preset>/<stage>.yaml",
    }
    template = find_template("tokenizer")
    if template is not None:
        card = ModelCard.from_template(card_data, template_path=str(template), **fields)
    else:  # installed without the repository's templates: huggingface_hub's default model card
        card = ModelCard.from_template(card_data, model_id=repo_id, model_summary="A MUSE unified visual tokenizer.")
    path = out / "README.md"
    card.save(str(path))
    return path


def _numel(shape: Any) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def _compression(config: dict[str, Any]) -> str:
    vision = config.get("vision_config", {}) or {}
    patch = vision.get("patch_size", [None])
    patch = patch[0] if isinstance(patch, list) else patch
    return f"{patch * 2}x" if isinstance(patch, int) else "n/a"
