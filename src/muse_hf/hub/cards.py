"""Model cards for saved MUSE tokenizers and pipelines.

:func:`render_model_card` builds a ``huggingface_hub.ModelCard`` for a saved tokenizer folder (``config.json`` with
``model_type: muse_tokenizer``) or pipeline folder (``model_index.json``) from the Jinja templates in
``model_cards/``: YAML metadata through ``ModelCardData`` (``library_name``, ``pipeline_tag``, ``tags``,
``base_model``, ``datasets``, eval results from ``metrics.json`` as ``EvalResult`` entries) and a body with the
configuration, the metrics beside their floors (labels and units from :data:`muse_hf.evaluation.report.METRIC_SPECS`),
the training settings and usage code. :func:`write_model_card` writes it as ``README.md``.

Example:
    >>> card = render_model_card("tokenizer", "outputs/quickstart/model")
    >>> card.data.pipeline_tag
    'image-feature-extraction'
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData
from safetensors import safe_open

from muse_hf.evaluation.report import METRIC_SPECS
from muse_hf.validation import is_hub_id

__all__ = [
    "CARD_KINDS",
    "REPO_ROOT",
    "TEMPLATES",
    "CardKind",
    "MetricRow",
    "detect_kind",
    "eval_results_from_metrics",
    "load_metrics",
    "render_model_card",
    "template_dir",
    "write_model_card",
]

#: The muse_hf checkout this package runs from (``model_cards/``, ``app.py`` and ``spaces/`` live there).
REPO_ROOT = Path(__file__).resolve().parents[3]
#: The card templates shipped as package data (copies of the repository's ``model_cards/``).
TEMPLATES = Path(__file__).resolve().parent / "templates"

CardKind = Literal["tokenizer", "pipeline"]
CARD_KINDS: tuple[str, ...] = ("tokenizer", "pipeline")

PAPER_TITLE = "MUSE: Resolving Manifold Misalignment in Visual Tokenization via Topological Orthogonality"

_KIND_DEFAULTS: dict[str, dict[str, Any]] = {
    "tokenizer": {
        "library_name": "transformers",
        "pipeline_tag": "image-feature-extraction",
        "tags": ["muse_hf", "muse", "visual-tokenizer", "image-reconstruction", "synergistic-block"],
        "task_type": "image-feature-extraction",
    },
    "pipeline": {
        "library_name": "diffusers",
        "pipeline_tag": "text-to-image",
        "tags": ["muse_hf", "muse", "text-to-image", "image-editing", "unified-multimodal-model"],
        "task_type": "text-to-image",
    },
}

# metric key -> (Hub task type, task name, metric type). Keys are muse_hf.evaluation's metrics.json keys.
_EVAL_TASKS: dict[str, tuple[str, str, str]] = {
    "psnr": ("image-to-image", "Image reconstruction", "psnr"),
    "ssim": ("image-to-image", "Image reconstruction", "ssim"),
    "rfid": ("image-to-image", "Image reconstruction", "fid"),
    "photo_psnr": ("image-to-image", "Image reconstruction (real photos)", "psnr"),
    "photo_ssim": ("image-to-image", "Image reconstruction (real photos)", "ssim"),
    "zero_shot_accuracy": ("zero-shot-image-classification", "Zero-shot classification", "accuracy"),
    "linear_probe_accuracy": ("image-classification", "Linear probe", "accuracy"),
    "attention_miou": ("image-segmentation", "Attention segmentation", "mean_iou"),
    "attention_pixel_accuracy": ("image-segmentation", "Attention segmentation", "accuracy"),
}
# Measured but not model-quality results on a dataset: shown in the card body only.
# geneval_roundtrip: scored on the GenEval-style prompts' renders, not on the evaluation dataset
_BODY_ONLY_METRICS = {"encode_throughput", "decode_throughput", "gradient_cosine", "topology_kl", "geneval_roundtrip"}


# ------------------------------------------------------------------------------------------------ helpers
def template_dir() -> Path:
    """Folder holding the ``tokenizer.md`` / ``pipeline.md`` card templates.

    ``MUSE_HF_CARD_TEMPLATES`` overrides it; the default is the copy shipped in the package (``muse_hf/hub/templates``,
    equal to the repository's ``model_cards/``, which a test checks), so an installed wheel writes cards too.
    """
    env = os.environ.get("MUSE_HF_CARD_TEMPLATES")
    return Path(env) if env else TEMPLATES


def _is_hub_id(value: Any) -> bool:
    return is_hub_id(value) and not Path(value).exists()


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); re-save the folder with save_pretrained.") from err


def detect_kind(folder: str | os.PathLike[str]) -> CardKind:
    """``"pipeline"`` for a folder with ``model_index.json``, ``"tokenizer"`` for a MUSE tokenizer ``config.json``.

    Raises:
        ValueError: the folder is missing or holds neither.
    """
    path = Path(folder)
    if not path.is_dir():
        raise ValueError(f"{path} is not a folder; pass the output of save_pretrained (a directory).")
    if (path / "model_index.json").is_file():
        return "pipeline"
    config = path / "config.json"
    if config.is_file() and _read_json(config).get("model_type") == "muse_tokenizer":
        return "tokenizer"
    raise ValueError(
        f"{path} holds neither a MUSE pipeline (model_index.json) nor a MUSE tokenizer (config.json with "
        "model_type 'muse_tokenizer'); save one with MuseTokenizerModel/MusePipeline.save_pretrained first."
    )


def _safetensors_params(folder: Path) -> int | None:
    """Parameter count read from the safetensors headers under ``folder`` (no weights are loaded)."""
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        return None
    total = 0
    for file in files:
        with safe_open(str(file), framework="pt") as handle:
            for key in handle.keys():
                numel = 1
                for dim in handle.get_slice(key).get_shape():
                    numel *= int(dim)
                total += numel
    return total


def _human(n: int | None) -> str:
    if n is None:
        return "unknown"
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f}{unit} ({n:,})"
    return f"{n:,}"


@dataclass(frozen=True)
class MetricRow:
    """One metric of a ``metrics.json``, beside its floors (see :mod:`muse_hf.evaluation.report`)."""

    key: str
    label: str
    unit: str
    value: float | None
    untrained: float | None = None
    baseline: float | None = None
    baseline_method: str = ""
    reason: str | None = None

    def fmt(self, value: float | None) -> str:
        """Format one number of this row (``—`` when missing)."""
        if value is None:
            return "—"
        if self.unit == "dB":
            return f"{value:.2f}"
        if self.unit == "images/s":
            return f"{value:.1f}"
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:.1f}"


def load_metrics(
    metrics: Mapping[str, Any] | str | os.PathLike[str] | None, folder: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """Load an evaluation result for a card.

    Args:
        metrics: a ``metrics.json`` path, an evaluation result mapping (``{"metrics": {key: entry}, "data": ...,
            "split": ...}`` as written by :func:`muse_hf.evaluation.write_report`), a flat ``{key: number}``
            mapping, or ``None`` to look for ``metrics.json`` in ``folder`` and its parent.
        folder: the model folder (for the ``None`` case).

    Returns:
        ``{"metrics": {key: {"value", "status", "untrained", "baseline", "reason", ...}}, **context}``; empty
        ``metrics`` when nothing was found.

    Raises:
        ValueError: a given path does not exist or is not JSON, or the mapping has no usable shape.
    """
    if metrics is None:
        candidates = [Path(folder) / "metrics.json", Path(folder).parent / "metrics.json"] if folder else []
        found = next((c for c in candidates if c.is_file()), None)
        return load_metrics(found) if found is not None else {"metrics": {}}
    if isinstance(metrics, (str, os.PathLike)):
        path = Path(metrics)
        if not path.is_file():
            raise ValueError(f"metrics file {path} does not exist; pass the metrics.json written by evaluation.")
        return load_metrics(_read_json(path))
    if not isinstance(metrics, Mapping):
        raise ValueError(f"metrics must be a path, a mapping or None; got {type(metrics).__name__}.")
    result = dict(metrics)
    raw = result.get("metrics", None)
    if raw is None:  # a flat {key: number | entry}
        raw, result = result, {}
    if not isinstance(raw, Mapping):
        raise ValueError("metrics['metrics'] must be a mapping of metric name -> value or entry.")
    entries: dict[str, dict[str, Any]] = {}
    for key, entry in raw.items():
        if isinstance(entry, Mapping):
            entries[str(key)] = dict(entry)
        elif isinstance(entry, (int, float)) and not isinstance(entry, bool):
            entries[str(key)] = {"value": float(entry), "status": "ok"}
    result["metrics"] = entries
    return result


def _metric_rows(result: Mapping[str, Any]) -> list[MetricRow]:
    rows = []
    for key, entry in result.get("metrics", {}).items():
        spec = METRIC_SPECS.get(key)
        value = entry.get("value")
        ok = entry.get("status", "ok") == "ok" and isinstance(value, (int, float))
        rows.append(
            MetricRow(
                key=key,
                label=spec.label if spec else key.replace("_", " "),
                unit=spec.unit if spec else str(entry.get("unit", "")),
                value=float(value) if ok else None,
                untrained=entry.get("untrained"),
                baseline=entry.get("baseline"),
                baseline_method=spec.baseline if spec else str(entry.get("baseline_method", "")),
                reason=None if ok else str(entry.get("reason") or "not computed"),
            )
        )
    return rows


def _dataset_ids(result: Mapping[str, Any]) -> tuple[str, str]:
    """(dataset_type, dataset_name) for eval results: a Hub id when the data is one, else a local description."""
    data = result.get("data")
    if _is_hub_id(data):
        return str(data), str(data)
    name = Path(str(data)).name if data else "unknown data"
    return "muse_hf-synthetic-shapes", f"MUSE synthetic scenes (local: {name})"


def eval_results_from_metrics(result: Mapping[str, Any], kind: CardKind, model_name: str) -> list[EvalResult]:
    """``EvalResult`` entries for every available metric of ``result`` (see :func:`load_metrics`).

    Tokenizer metrics map to Hub task types by name (PSNR/SSIM/rFID -> image-to-image, zero-shot accuracy ->
    zero-shot-image-classification, linear probe -> image-classification, attention mIoU ->
    image-segmentation); throughput and gradient statistics stay in the card body. Other metrics (e.g. the
    pipeline's GenEval-style scores) use the kind's task (text-to-image for pipelines).
    """
    dataset_type, dataset_name = _dataset_ids(result)
    split = result.get("split")
    out = []
    for row in _metric_rows(result):
        if row.value is None or row.key in _BODY_ONLY_METRICS:
            continue
        default_task = _KIND_DEFAULTS[kind]["task_type"]
        task_type, task_name, metric_type = _EVAL_TASKS.get(row.key, (default_task, None, row.key))
        photo = row.key.startswith("photo_")
        out.append(
            EvalResult(
                task_type=task_type,
                task_name=task_name,
                dataset_type="scikit-image-photos" if photo else dataset_type,
                dataset_name="scikit-image sample photos" if photo else dataset_name,
                dataset_split=None if photo else (str(split) if split else None),
                metric_type=metric_type,
                metric_name=f"{row.label} ({row.unit})" if row.unit else row.label,
                metric_value=round(row.value, 6),
            )
        )
    return out


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _tokenizer_details(folder: Path) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    cfg = _read_json(folder / "config.json")
    vision = cfg.get("vision_config") or {}
    decoder = cfg.get("decoder_config") or {}
    patch = vision.get("patch_size", 14)
    patch = patch[0] if isinstance(patch, (list, tuple)) else patch
    size = cfg.get("image_size")
    size_hw = size if isinstance(size, (list, tuple)) else [size, size]
    factor = int(patch) * 2
    grid = [int(s) // factor for s in size_hw] if size is not None else None
    details = [
        ("Architecture", "MuseTokenizerModel (InternViT backbone -> Synergistic Blocks -> DC-AE decoder)"),
        ("Parameters", _human(_safetensors_params(folder))),
        ("Image size", f"{size_hw[0]}x{size_hw[1]}" if size is not None else "unknown"),
        (
            "Latent",
            f"{cfg.get('latent_channels')} channels x {grid[0]}x{grid[1]} (compression {factor}x)"
            if grid
            else str(cfg.get("latent_channels")),
        ),
        (
            "Vision backbone",
            f"InternVLVisionModel, hidden {vision.get('hidden_size')}, "
            f"{vision.get('num_hidden_layers')} layers, patch {patch}",
        ),
        (
            "Synergistic blocks",
            f"{cfg.get('num_synergistic_blocks')} x width {cfg.get('hidden_size')}, "
            f"{cfg.get('num_attention_heads')} heads",
        ),
        ("Gradient routing", f"{cfg.get('routing')} (placement: {cfg.get('placement')})"),
        ("Topology layers", str(cfg.get("topology_layers"))),
        ("Semantic layers", f"{cfg.get('semantic_layers')} -> {cfg.get('semantic_dim')}-d embedding"),
        ("Decoder", f"diffusers AutoencoderDC decoder, channels {decoder.get('decoder_block_out_channels')}"),
        ("Latent scaling", f"scaling_factor={cfg.get('scaling_factor')}, shift_factor={cfg.get('shift_factor')}"),
    ]
    facts = {"image_size": size_hw, "can_chat": False}
    return details, facts


def _pipeline_details(folder: Path) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    index = _read_json(folder / "model_index.json")
    details = [("Pipeline", f"{index.get('_class_name', 'MusePipeline')} (diffusers DiffusionPipeline)")]
    mllm_class = None
    for name, spec in index.items():
        if name.startswith("_") or not isinstance(spec, (list, tuple)) or len(spec) != 2 or spec[1] is None:
            continue
        library, cls = spec
        if name == "mllm":
            mllm_class = cls
        params = _safetensors_params(folder / name) if (folder / name).is_dir() else None
        count = f", {_human(params)} parameters" if params else ""
        details.append((f"`{name}`", f"{library}.{cls}{count}"))
    can_chat = bool(mllm_class and "internvl" in mllm_class.lower())
    size = None
    vae_cfg = folder / "vae" / "config.json"
    if vae_cfg.is_file():
        size = _read_json(vae_cfg).get("image_size")
    details.append(
        ("Understanding (chat)", "yes (InternVL mllm)" if can_chat else "no: the condition encoder is text-only")
    )
    return details, {"image_size": size, "can_chat": can_chat}


def _settings_yaml(settings: Mapping[str, Any] | None) -> str:
    if not settings:
        return ""
    return yaml.safe_dump(_jsonable(dict(settings)), sort_keys=False, allow_unicode=True).strip()


def _as_list(value: str | Sequence[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]


# ------------------------------------------------------------------------------------------------ cards
def render_model_card(
    kind: CardKind | None,
    folder: str | os.PathLike[str],
    metrics: Mapping[str, Any] | str | os.PathLike[str] | None = None,
    settings: Mapping[str, Any] | None = None,
    *,
    repo_id: str | None = None,
    model_name: str | None = None,
    base_model: str | Sequence[str] | None = None,
    datasets: str | Sequence[str] | None = None,
    license: str = "apache-2.0",
    tags: Sequence[str] | None = None,
    template_path: str | os.PathLike[str] | None = None,
) -> ModelCard:
    """Render the model card of a saved MUSE tokenizer or pipeline folder.

    Args:
        kind: ``"tokenizer"``, ``"pipeline"`` or ``None`` (detected from the folder, see :func:`detect_kind`).
        folder: the ``save_pretrained`` folder.
        metrics: evaluation results (see :func:`load_metrics`); ``None`` looks for ``metrics.json`` in the
            folder and its parent. Available metrics become ``EvalResult`` entries in the metadata.
        settings: training settings / run summary (any JSON-able mapping), shown in the card.
            ``settings["base_model"]`` and ``settings["datasets"]`` are used when the arguments are not given.
        repo_id: the Hub id the card is written for (used in the usage snippet; default: the folder name).
        model_name: the card title (default: the last part of ``repo_id``).
        base_model: Hub id(s) this model was initialised from. Local paths are not valid Hub metadata; they
            are listed in the body instead.
        datasets: Hub dataset id(s) trained on (local paths are described in the body instead).
        license: SPDX-style license id for the metadata.
        tags: extra tags.
        template_path: a Jinja template to use instead of ``model_cards/<kind>.md``.

    Returns:
        The ``huggingface_hub.ModelCard`` (``str(card)`` is the README text; ``card.data`` its metadata).

    Raises:
        ValueError: unknown ``kind``, a folder that is not a saved MUSE model, or unreadable metrics.
        FileNotFoundError: the template is missing.
    """
    path = Path(folder)
    detected = detect_kind(path)
    if kind is None:
        kind = detected
    if kind not in CARD_KINDS:
        raise ValueError(f"kind must be one of {CARD_KINDS} (or None to detect it); got {kind!r}.")
    if kind != detected:
        raise ValueError(f"{path} holds a MUSE {detected}, but kind={kind!r} was requested.")
    template = Path(template_path) if template_path is not None else template_dir() / f"{kind}.md"
    if not template.is_file():
        raise FileNotFoundError(
            f"Model card template {template} not found; pass template_path=... or set MUSE_HF_CARD_TEMPLATES to the "
            "folder holding tokenizer.md and pipeline.md (model_cards/ in the muse_hf repository)."
        )
    settings = dict(settings or {})
    result = load_metrics(metrics, path)
    details, facts = _tokenizer_details(path) if kind == "tokenizer" else _pipeline_details(path)
    repo_id = repo_id or path.resolve().name
    model_name = model_name or repo_id.split("/")[-1]

    requested_bases = _as_list(base_model if base_model is not None else settings.get("base_model"))
    bases = [b for b in requested_bases if _is_hub_id(b)]
    local_bases = [b for b in requested_bases if b not in bases]
    requested_data = _as_list(datasets if datasets is not None else settings.get("datasets"))
    if not requested_data and result.get("data"):
        requested_data = [str(result["data"])]
    hub_data = [d for d in requested_data if _is_hub_id(d)]
    local_data = [d for d in requested_data if d not in hub_data]

    defaults = _KIND_DEFAULTS[kind]
    all_tags = list(dict.fromkeys([*defaults["tags"], *(tags or [])]))
    if kind == "pipeline" and facts.get("can_chat"):
        all_tags.append("visual-question-answering")
    eval_results = eval_results_from_metrics(result, kind, model_name)
    card_data = ModelCardData(
        model_name=model_name,
        library_name=defaults["library_name"],
        pipeline_tag=defaults["pipeline_tag"],
        license=license,
        tags=all_tags,
        base_model=bases or None,
        datasets=hub_data or None,
        metrics=sorted({r.metric_type for r in eval_results}) or None,
        eval_results=eval_results or None,
    )
    rows = _metric_rows(result)
    card = ModelCard.from_template(
        card_data,
        template_path=str(template),
        model_name=model_name,
        repo_id=repo_id,
        details=details,
        metric_rows=[r for r in rows if r.value is not None],
        missing_metrics=[r for r in rows if r.value is None],
        eval_context={
            k: result.get(k)
            for k in ("data", "split", "num_samples", "image_size", "latent_grid")
            if result.get(k) is not None
        },
        settings_yaml=_settings_yaml(settings),
        local_bases=local_bases,
        local_datasets=local_data,
        can_chat=bool(facts.get("can_chat")),
        image_size=facts.get("image_size"),
        paper_title=PAPER_TITLE,
    )
    _check_round_trip(card)
    return card


def _check_round_trip(card: ModelCard) -> None:
    """Re-parse the rendered text strictly; the metadata must come back unchanged (offline validation)."""
    reparsed = ModelCard(str(card), ignore_metadata_errors=False)
    if reparsed.data.to_dict() != card.data.to_dict():
        raise ValueError("The rendered model card's YAML metadata does not round-trip; check the template header.")


def write_model_card(
    kind: CardKind | None,
    folder: str | os.PathLike[str],
    metrics: Mapping[str, Any] | str | os.PathLike[str] | None = None,
    settings: Mapping[str, Any] | None = None,
    filename: str = "README.md",
    **kwargs: Any,
) -> Path:
    """Render (see :func:`render_model_card`) and write the card into ``folder/filename``.

    Returns:
        The written path.
    """
    card = render_model_card(kind, folder, metrics=metrics, settings=settings, **kwargs)
    out = Path(folder) / filename
    card.save(str(out))
    return out
