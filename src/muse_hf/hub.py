"""Model cards and Hugging Face Hub publishing for MUSE tokenizers and pipelines.

Two public entry points, used by training (``save_pretrained`` folders get a ``README.md``), by users, and by
``python -m muse_hf.hub``:

* :func:`render_model_card` builds a ``huggingface_hub.ModelCard`` for a saved tokenizer folder
  (``config.json`` with ``model_type: muse_tokenizer``) or pipeline folder (``model_index.json``) from the
  Jinja templates in ``model_cards/``: YAML metadata through ``ModelCardData`` (``library_name``,
  ``pipeline_tag``, ``tags``, ``base_model``, ``datasets``, eval results from ``metrics.json`` as
  ``EvalResult`` entries) and a body with the configuration, the metrics beside their floors, the training
  settings and usage code. :func:`write_model_card` writes it as ``README.md``.
* :func:`push_to_hub` uploads a folder (or a model / pipeline object, saved to a temporary folder first) with
  its card in one commit. It checks that the Hub is reachable *before* touching anything, so offline it fails
  at once with :class:`HubUnavailableError` and the local folder is left exactly as it was.
  :func:`push_space` publishes the Gradio demo (``app.py``) as a Space pointed at pushed models.

Example:
    >>> card = render_model_card("tokenizer", "outputs/quickstart/model")
    >>> card.data.pipeline_tag
    'image-feature-extraction'
    >>> push_to_hub("outputs/quickstart/model", "me/muse-tiny-tokenizer")  # needs network + token
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import socket
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData

__all__ = [
    "CARD_KINDS",
    "DEFAULT_IGNORE_PATTERNS",
    "HubUnavailableError",
    "MetricRow",
    "check_hub_access",
    "detect_kind",
    "eval_results_from_metrics",
    "load_metrics",
    "push_space",
    "push_to_hub",
    "render_model_card",
    "template_dir",
    "write_model_card",
]

CardKind = Literal["tokenizer", "pipeline"]
CARD_KINDS: tuple[str, ...] = ("tokenizer", "pipeline")

#: Files never uploaded by :func:`push_to_hub` (training state, logs, temp files of atomic writes).
DEFAULT_IGNORE_PATTERNS: tuple[str, ...] = (
    "checkpoint-*", "checkpoint-*/*", "*/checkpoint-*/*", "logs/*", ".tmp-*", ".old-*", "*.lock", ".git/*",
    "__pycache__/*", "*.pyc",
)

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

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class HubUnavailableError(RuntimeError):
    """The Hugging Face Hub cannot be written to (offline mode, no token, no network, rejected token)."""


# ------------------------------------------------------------------------------------------------ helpers
def template_dir() -> Path:
    """Folder holding the ``tokenizer.md`` / ``pipeline.md`` card templates.

    ``MUSE_HF_CARD_TEMPLATES`` overrides it; the default is ``model_cards/`` at the repository root (a source
    checkout or editable install).
    """
    env = os.environ.get("MUSE_HF_CARD_TEMPLATES")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "model_cards"


def _is_hub_id(value: Any) -> bool:
    return isinstance(value, str) and bool(_HUB_ID.match(value)) and not Path(value).exists()


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
    from safetensors import safe_open

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


def load_metrics(metrics: Mapping[str, Any] | str | os.PathLike[str] | None, folder: str | os.PathLike[str] | None = None) -> dict[str, Any]:
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
    try:  # labels and units come from the evaluation's own table when it is importable
        from muse_hf.evaluation.report import METRIC_SPECS
    except ImportError:  # pragma: no cover - evaluation extras missing
        METRIC_SPECS = {}
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
        ("Latent", f"{cfg.get('latent_channels')} channels x {grid[0]}x{grid[1]} (compression {factor}x)"
         if grid else str(cfg.get("latent_channels"))),
        ("Vision backbone", f"InternVLVisionModel, hidden {vision.get('hidden_size')}, "
                            f"{vision.get('num_hidden_layers')} layers, patch {patch}"),
        ("Synergistic blocks", f"{cfg.get('num_synergistic_blocks')} x width {cfg.get('hidden_size')}, "
                               f"{cfg.get('num_attention_heads')} heads"),
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
    details.append(("Understanding (chat)", "yes (InternVL mllm)" if can_chat else
                     "no: the condition encoder is text-only"))
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
        eval_context={k: result.get(k) for k in ("data", "split", "num_samples", "image_size", "latent_grid")
                      if result.get(k) is not None},
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


# ------------------------------------------------------------------------------------------------ hub access
def _offline() -> bool:
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}
    return env or bool(constants.HF_HUB_OFFLINE)


def check_hub_access(token: str | None = None, timeout: float = 5.0) -> str:
    """Fail fast unless the Hub can be written to: offline mode, token, a TCP connection, ``whoami``.

    Args:
        token: a token to use (default: the stored one / ``HF_TOKEN``).
        timeout: seconds for the connection test.

    Returns:
        The user name the token belongs to.

    Raises:
        HubUnavailableError: naming what is missing and what to do.
    """
    from huggingface_hub import constants, get_token, whoami

    if _offline():
        raise HubUnavailableError(
            "HF_HUB_OFFLINE is set, so nothing can be uploaded; unset it on a machine with network access."
        )
    token = token or get_token()
    if not token:
        raise HubUnavailableError("No Hugging Face token found; run `hf auth login` or set HF_TOKEN.")
    url = urlparse(constants.ENDPOINT)
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as err:
        raise HubUnavailableError(f"The Hub endpoint {host}:{port} cannot be reached ({err}); check the network.") from err
    try:
        info = whoami(token=token)
    except Exception as err:  # noqa: BLE001 - any failure here means we cannot push
        raise HubUnavailableError(f"The Hub did not accept the token ({type(err).__name__}: {err}).") from err
    return str(info.get("name", ""))


def _kind_of_object(obj: Any) -> CardKind:
    from diffusers import DiffusionPipeline
    from transformers import PreTrainedModel

    if isinstance(obj, DiffusionPipeline):
        return "pipeline"
    if isinstance(obj, PreTrainedModel) and getattr(obj.config, "model_type", None) == "muse_tokenizer":
        return "tokenizer"
    raise ValueError(
        f"push_to_hub takes a saved folder, a MuseTokenizerModel or a MusePipeline; got {type(obj).__name__}."
    )


def _files_to_upload(folder: Path, ignore_patterns: Sequence[str]) -> list[tuple[str, Path]]:
    files = []
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        rel = path.relative_to(folder).as_posix()
        if any(fnmatch.fnmatch(rel, pat) for pat in ignore_patterns):
            continue
        files.append((rel, path))
    return files


def push_to_hub(
    folder_or_model: str | os.PathLike[str] | Any,
    repo_id: str,
    *,
    kind: CardKind | None = None,
    private: bool | None = None,
    token: str | None = None,
    revision: str | None = None,
    commit_message: str | None = None,
    create_pr: bool = False,
    metrics: Mapping[str, Any] | str | os.PathLike[str] | None = None,
    settings: Mapping[str, Any] | None = None,
    card_kwargs: Mapping[str, Any] | None = None,
    ignore_patterns: Sequence[str] = DEFAULT_IGNORE_PATTERNS,
    timeout: float = 5.0,
) -> str:
    """Upload a MUSE tokenizer or pipeline, with its model card, to the Hub in one commit.

    The Hub is checked (:func:`check_hub_access`) before anything is written, and the local folder is only
    read: the card is uploaded from memory (a ``README.md`` already in the folder is uploaded as it is).

    Args:
        folder_or_model: a ``save_pretrained`` folder, or a ``MuseTokenizerModel`` / ``MusePipeline`` (saved to a
            temporary folder first).
        repo_id: ``"user/name"`` of the model repository (created if missing).
        kind: ``"tokenizer"`` / ``"pipeline"``; detected when ``None``.
        private: visibility of a newly created repository.
        token: Hub token (default: the stored one).
        revision: branch to push to.
        commit_message: default ``"Upload MUSE <kind>"``.
        create_pr: open a pull request instead of committing to the branch.
        metrics: evaluation results for the card (see :func:`load_metrics`).
        settings: training settings for the card.
        card_kwargs: extra arguments for :func:`render_model_card` (``base_model``, ``datasets``, ...).
        ignore_patterns: glob patterns (relative paths) not uploaded.
        timeout: seconds for the connectivity check.

    Returns:
        The URL of the commit (or pull request).

    Raises:
        ValueError: not a MUSE folder/model, or a malformed ``repo_id``.
        HubUnavailableError: offline, no token, unreachable Hub or rejected token; nothing was written.
    """
    from huggingface_hub import CommitOperationAdd, HfApi
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise ValueError(f"repo_id {repo_id!r} is not a valid Hub id ('user/name'): {err}") from err
    if isinstance(folder_or_model, (str, os.PathLike)):
        folder: Path | None = Path(folder_or_model)
        detected = detect_kind(folder)
        if kind is not None and kind != detected:
            raise ValueError(f"{folder} holds a MUSE {detected}, but kind={kind!r} was requested.")
        kind = detected
        where = f"the local folder {folder} is unchanged"
    else:
        folder = None
        kind = _kind_of_object(folder_or_model)
        where = "nothing was saved or uploaded"
    try:
        check_hub_access(token=token, timeout=timeout)
    except HubUnavailableError as err:
        raise HubUnavailableError(
            f"Cannot push to {repo_id}: {err} Nothing was uploaded and {where}; push later with "
            "`python -m muse_hf.hub push FOLDER REPO_ID` (or `hf upload REPO_ID FOLDER`)."
        ) from err

    with tempfile.TemporaryDirectory(prefix="muse-push-") as tmp:
        if folder is None:
            folder = Path(tmp) / "model"
            folder_or_model.save_pretrained(str(folder))
        files = _files_to_upload(folder, ignore_patterns)
        operations = [CommitOperationAdd(path_in_repo=rel, path_or_fileobj=str(p)) for rel, p in files]
        if not any(rel == "README.md" for rel, _ in files):
            card = render_model_card(kind, folder, metrics=metrics, settings=settings, repo_id=repo_id,
                                     **dict(card_kwargs or {}))
            operations.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=str(card).encode()))
        api = HfApi(token=token)
        api.create_repo(repo_id, private=private, exist_ok=True)
        info = api.create_commit(
            repo_id, operations, commit_message=commit_message or f"Upload MUSE {kind}", revision=revision,
            create_pr=create_pr,
        )
    return str(info.pr_url or info.commit_url)


def push_space(
    repo_id: str,
    *,
    model: str | None = None,
    pipeline: str | None = None,
    teacher: str | None = None,
    hardware: str | None = None,
    private: bool | None = None,
    token: str | None = None,
    repo_root: str | os.PathLike[str] | None = None,
    timeout: float = 5.0,
) -> str:
    """Publish the Gradio demo as a Space: ``app.py``, ``src/`` and ``spaces/{README.md,requirements.txt}``
    (placed at the Space root), with Space variables pointing the app at Hub models.

    Args:
        repo_id: ``"user/space-name"``.
        model: Hub id of the tokenizer (Space variable ``MUSE_DEMO_MODEL``).
        pipeline: Hub id of the pipeline (``MUSE_DEMO_PIPELINE``).
        teacher: Hub id of a structural teacher (``MUSE_DEMO_TEACHER``), optional.
        hardware: Space hardware, e.g. ``"cpu-basic"`` or ``"t4-small"`` (default: the Hub's default).
        private: visibility of a newly created Space.
        token: Hub token.
        repo_root: the muse_hf checkout holding ``app.py`` (default: this package's repository root).
        timeout: seconds for the connectivity check.

    Returns:
        The URL of the commit.

    Raises:
        ValueError: missing ``app.py``/``spaces/`` files or ids that are not Hub ids.
        HubUnavailableError: the Hub cannot be written to; nothing was uploaded.
    """
    from huggingface_hub import CommitOperationAdd, HfApi

    root = Path(repo_root) if repo_root is not None else Path(__file__).resolve().parents[2]
    needed = [root / "app.py", root / "spaces" / "README.md", root / "spaces" / "requirements.txt", root / "src"]
    missing = [str(p) for p in needed if not p.exists()]
    if missing:
        raise ValueError(f"Cannot assemble the Space: missing {missing}; run from a muse_hf checkout.")
    variables = {k: v for k, v in (("MUSE_DEMO_MODEL", model), ("MUSE_DEMO_PIPELINE", pipeline),
                                   ("MUSE_DEMO_TEACHER", teacher)) if v}
    bad = [v for v in variables.values() if not _is_hub_id(v)]
    if bad:
        raise ValueError(f"Space variables must be Hub ids ('user/name'); got {bad}. Push the folders first.")
    try:
        check_hub_access(token=token, timeout=timeout)
    except HubUnavailableError as err:
        raise HubUnavailableError(f"Cannot create the Space {repo_id}: {err} Nothing was uploaded.") from err
    operations = [
        CommitOperationAdd(path_in_repo="app.py", path_or_fileobj=str(root / "app.py")),
        CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=str(root / "spaces" / "README.md")),
        CommitOperationAdd(path_in_repo="requirements.txt", path_or_fileobj=str(root / "spaces" / "requirements.txt")),
    ]
    for rel, path in _files_to_upload(root / "src", DEFAULT_IGNORE_PATTERNS):
        operations.append(CommitOperationAdd(path_in_repo=f"src/{rel}", path_or_fileobj=str(path)))
    for rel, path in _files_to_upload(root / "model_cards", DEFAULT_IGNORE_PATTERNS):
        operations.append(CommitOperationAdd(path_in_repo=f"model_cards/{rel}", path_or_fileobj=str(path)))
    api = HfApi(token=token)
    api.create_repo(
        repo_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True, space_hardware=hardware,
        space_variables=[{"key": k, "value": v} for k, v in variables.items()] or None,
    )
    info = api.create_commit(repo_id, operations, repo_type="space", commit_message="Upload the MUSE demo")
    return str(info.commit_url)


# ------------------------------------------------------------------------------------------------ CLI
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m muse_hf.hub {card,push,space} ...``; returns a process exit code."""
    parser = argparse.ArgumentParser(prog="python -m muse_hf.hub", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    card_p = sub.add_parser("card", help="render README.md into a saved tokenizer/pipeline folder")
    card_p.add_argument("folder")
    card_p.add_argument("--kind", choices=CARD_KINDS)
    card_p.add_argument("--metrics", help="metrics.json (default: the folder's or its parent's)")
    card_p.add_argument("--settings", help="YAML/JSON file of training settings to show")
    card_p.add_argument("--repo_id")
    card_p.add_argument("--out", help="write here instead of FOLDER/README.md ('-' prints it)")
    push_p = sub.add_parser("push", help="upload a saved tokenizer/pipeline folder with its model card")
    push_p.add_argument("folder")
    push_p.add_argument("repo_id")
    push_p.add_argument("--kind", choices=CARD_KINDS)
    push_p.add_argument("--private", action="store_true")
    push_p.add_argument("--metrics")
    space_p = sub.add_parser("space", help="publish app.py as a Gradio Space using pushed models")
    space_p.add_argument("repo_id")
    space_p.add_argument("--model")
    space_p.add_argument("--pipeline")
    space_p.add_argument("--teacher")
    space_p.add_argument("--hardware")
    space_p.add_argument("--private", action="store_true")
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        if args.command == "card":
            settings = yaml.safe_load(Path(args.settings).read_text()) if args.settings else None
            card = render_model_card(args.kind, args.folder, metrics=args.metrics, settings=settings,
                                     repo_id=args.repo_id)
            if args.out == "-":
                print(card)
            else:
                out = Path(args.out) if args.out else Path(args.folder) / "README.md"
                card.save(str(out))
                print(f"wrote {out}")
        elif args.command == "push":
            print(push_to_hub(args.folder, args.repo_id, kind=args.kind, private=args.private or None,
                              metrics=args.metrics))
        else:
            print(push_space(args.repo_id, model=args.model, pipeline=args.pipeline, teacher=args.teacher,
                             hardware=args.hardware, private=args.private or None))
    except (ValueError, FileNotFoundError, HubUnavailableError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
