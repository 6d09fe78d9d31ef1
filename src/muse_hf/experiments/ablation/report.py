"""Rendering of the ablation summary: ``ablation.md`` (paper Tables 3 and 4 beside ours, floors, the claims check)
and ``gradient_cosine.png`` (paper Figure 2a/2d).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from muse_hf.experiments.ablation.variants import (
    EVAL_SEED,
    PAPER_TABLE3,
    PAPER_TABLE4,
    TABLE3_ORDER,
    TABLE4_ORDER,
    VARIANTS,
)

__all__ = ["format_cell", "plot_gradient_cosine", "render_markdown"]

DIGITS = {
    "rfid": 2,
    "psnr": 2,
    "ssim": 3,
    "zero_shot": 1,
    "linear_probe": 1,
    "miou": 1,
    "topology_kl": 3,
    "cos": 3,
    "cos_init": 3,
}


def format_cell(stats: Mapping[str, Any] | None, digits: int, signed: bool = False) -> str:
    """``mean ± std`` (``mean (1 seed)`` for one value, ``n/a`` for none)."""
    if not stats or stats.get("mean") is None:
        return "n/a"
    fmt = f"{{:{'+' if signed else ''}.{digits}f}}"
    mean = fmt.format(stats["mean"])
    if stats.get("std") is None:
        return f"{mean} (1 seed)"
    return f"{mean} ± {stats['std']:.{digits}f}"


def _num(value: float | None, digits: int, signed: bool = False) -> str:
    if value is None:
        return "—"
    return f"{value:{'+' if signed else ''}.{digits}f}"


def _params(count: int | None) -> str:
    if count is None:
        return "n/a"
    return f"{count / 1e6:.2f}M" if count >= 1e5 else f"{count / 1e3:.1f}K"


# A column: (header, our metric column or None, how a variant's cell is made, how a floor row's cell is made).
_Column = tuple[str, str | None, Any, Any]


def _ours(column: str, signed: bool = False) -> Any:
    return lambda e, n, ref: format_cell(e["metrics"][column], DIGITS[column], signed)


def _floor(column: str, signed: bool = False) -> Any:
    return lambda values: _num(values.get(column), DIGITS[column], signed)


def _paper(table: Mapping[str, Mapping[str, float | None]], key: str, digits: int, signed: bool = False) -> Any:
    def cell(e: Mapping[str, Any], n: str, ref: Mapping[str, Any]) -> str:
        value = table[n].get(key)
        return "N/A" if value is None else _num(value, digits, signed)

    return cell


def _blank(values: Mapping[str, Any]) -> str:
    return ""


def _has_rfid(summary: Mapping[str, Any], names: Sequence[str]) -> bool:
    return any(summary["variants"][n]["metrics"]["rfid"]["mean"] is not None for n in names)


def _params_cell(e: Mapping[str, Any], n: str, ref: Mapping[str, Any]) -> str:
    params = e["params"] or {}
    rel = ""
    if ref.get("total") and params.get("total") and n != "full":
        rel = f", {100.0 * (params['total'] / ref['total'] - 1):+.1f}% vs MUSE"
    return f"{_params(params.get('total'))} ({_params(params.get('blocks'))}){rel}"


def _table3_columns(summary: Mapping[str, Any], names: Sequence[str]) -> list[_Column]:
    rfid = [("rFID ↓", "rfid", _ours("rfid"), _floor("rfid"))] if _has_rfid(summary, names) else []
    return [
        ("Configuration", None, lambda e, n, ref: e["label"], None),
        ("L_sem", None, lambda e, n, ref: "✓" if e["semantic"] else "✗", _blank),
        ("L_topo", None, lambda e, n, ref: "✓" if e["topology"] else "✗", _blank),
        ("PSNR dB ↑", "psnr", _ours("psnr"), _floor("psnr")),
        *rfid,
        ("paper rFID ↓", None, _paper(PAPER_TABLE3, "rfid", 2), _blank),
        ("SSIM ↑", "ssim", _ours("ssim"), _floor("ssim")),
        ("Zero-shot % ↑", "zero_shot", _ours("zero_shot"), _floor("zero_shot")),
        ("paper", None, _paper(PAPER_TABLE3, "zero_shot", 1), _blank),
        ("Linear probe % ↑", "linear_probe", _ours("linear_probe"), _floor("linear_probe")),
        ("mIoU % ↑", "miou", _ours("miou"), _floor("miou")),
        ("paper", None, _paper(PAPER_TABLE3, "miou", 1), _blank),
        ("Grad cos (sem, rec)", "cos", _ours("cos", True), _floor("cos", True)),
        ("at init", "cos_init", _ours("cos_init", True), _blank),
        ("Params", None, lambda e, n, ref: _params((e["params"] or {}).get("total")), _blank),
        (
            "paper MMB / Spatial",
            None,
            lambda e, n, ref: f"{PAPER_TABLE3[n]['mmb']:.1f} / {PAPER_TABLE3[n]['spatial']:.2f}",
            _blank,
        ),
    ]


def _table4_columns(summary: Mapping[str, Any], names: Sequence[str]) -> list[_Column]:
    rfid = [("rFID ↓", "rfid", _ours("rfid"), _floor("rfid"))] if _has_rfid(summary, names) else []
    return [
        ("Architecture", None, lambda e, n, ref: "MUSE (decoupled)" if n == "full" else e["label"], None),
        ("Params (blocks)", None, _params_cell, _blank),
        ("Grad cos (sem, rec)", "cos", _ours("cos", True), _floor("cos", True)),
        ("paper", None, _paper(PAPER_TABLE4, "cos", 2, signed=True), _blank),
        ("at init", "cos_init", _ours("cos_init", True), _blank),
        ("mIoU % ↑", "miou", _ours("miou"), _floor("miou")),
        ("paper", None, _paper(PAPER_TABLE4, "miou", 1), _blank),
        ("PSNR dB ↑", "psnr", _ours("psnr"), _floor("psnr")),
        *rfid,
        ("SSIM ↑", "ssim", _ours("ssim"), _floor("ssim")),
        ("Zero-shot % ↑", "zero_shot", _ours("zero_shot"), _floor("zero_shot")),
        ("Linear probe % ↑", "linear_probe", _ours("linear_probe"), _floor("linear_probe")),
        (
            "paper MMB / GenAvg",
            None,
            lambda e, n, ref: f"{PAPER_TABLE4[n]['mmb']:.1f} / {PAPER_TABLE4[n]['genavg']:.2f}",
            _blank,
        ),
    ]


def _render_table(summary: Mapping[str, Any], names: Sequence[str], columns: Sequence[_Column]) -> list[str]:
    """Markdown rows: one per variant, then the floor rows (trivial baseline, untrained per routing)."""
    ref = (summary["variants"].get("full") or {}).get("params") or {}
    lines = ["| " + " | ".join(c[0] for c in columns) + " |", "|" + "---|" * len(columns)]
    for n in names:
        e = summary["variants"][n]
        lines.append("| " + " | ".join(c[2](e, n, ref) for c in columns) + " |")
    floors: list[tuple[str, Mapping[str, Any]]] = []
    base = summary["floors"].get("baseline")
    if base:
        floors.append(("*floor: trivial baseline*", base))
    seen: set[str] = set()
    for n in names:
        e = summary["variants"][n]
        if "untrained" in e and e["routing"] not in seen:
            seen.add(e["routing"])
            # the untrained model's gradient cosine is the run's first probe (step 0)
            floors.append(
                (
                    f"*floor: untrained ({e['routing']})*",
                    {**e["untrained"], "cos": e["untrained"]["cos_init"]},
                )
            )
    for label, values in floors:
        lines.append("| " + " | ".join([label] + [c[3](values) for c in columns[1:]]) + " |")
    return lines


def render_markdown(summary: Mapping[str, Any], command: str | None = None) -> str:
    """``ablation.md``: setup, Table 3, Table 4 (ours beside the paper's), the figure, claims, notes.

    Args:
        summary: Output of :func:`summarize_runs`.
        command: The command that produced it (shown verbatim).

    Returns:
        Markdown text.
    """
    s = summary["settings"]
    seeds = ", ".join(str(x) for x in s["seeds"])
    info = summary["floors"].get("eval_info") or {}
    rfid = summary["floors"].get("rfid") or {}
    lines = ["# MUSE ablations at small scale (paper Tables 3 and 4, Figure 2a/2d)", ""]
    if command:
        lines += [f"Command: `{command}`", ""]
    wall = summary.get("runs_wall_time_s")
    reused = summary.get("reused_runs") or 0
    if reused:
        wall_note = (
            f" Wall time {wall / 60:.1f} min when the runs were trained ({s['jobs']} parallel runs, {s['threads']} "
            f"thread(s) each); this report was re-rendered from them."
            if wall
            else f" {reused} finished run(s) were reused from an earlier invocation, so no total wall time is given."
        )
    else:
        wall_note = (
            f" Wall time {wall / 60:.1f} min ({s['jobs']} parallel runs, {s['threads']} thread(s) each)."
            if wall
            else ""
        )
    lines += [
        f"Setup: base config `{s['base_config']}` (one stage per run, no GAN, no EMA); {s['resolution']} px; "
        f"{s['max_train_steps']} steps per run; seeds {seeds}; synthetic scenes with {s['num_train']} training "
        f"images (data seed {s['data_seed']}); evaluation on {info.get('num_samples', s['eval_samples'])} held-out "
        f"images, latent grid {info.get('latent_grid', '?')}." + wall_note,
        "",
        "Cells are mean ± sample std over seeds. `paper` columns copy the paper's Tables 3 and 4 (MUSE-1B, "
        "ImageNet/ADE20K scale); compare directions, not magnitudes. PSNR stands in for rFID: "
        + (
            f"rFID is unavailable here ({rfid.get('reason')})."
            if rfid.get("status") != "ok"
            else f"rFID ({rfid.get('feature', 'Inception-v3')}) is shown beside PSNR, on the first "
            f"{rfid.get('num_samples')} evaluated images; FID is biased upward at so few images, so compare it only "
            "with its floor rows (bicubic, untrained) at the same N, not with the paper's rFID."
        ),
        "",
    ]
    cost = [
        f"{n} {e['train_wall_time_s']['mean']:.0f}+{e['eval_wall_time_s']['mean']:.0f}"
        for n, e in summary["variants"].items()
        if e["train_wall_time_s"]["mean"] is not None
    ]
    if cost:
        lines += ["Mean wall time per run, train+eval seconds: " + ", ".join(cost) + ".", ""]
    if summary.get("failed_runs"):
        lines += ["**Failed runs** (excluded from the means):", ""]
        lines += [f"- {f['variant']} seed {f['seed']}: {f['error']}" for f in summary["failed_runs"]]
        lines.append("")
    for title, order, columns in (
        ("Table 3 - objectives (routing `decoupled`)", TABLE3_ORDER, _table3_columns),
        ("Table 4 - gradient routing (all objectives)", TABLE4_ORDER, _table4_columns),
    ):
        names = [n for n in order if n in summary["variants"]]
        if names:
            lines += [f"## {title}", ""] + _render_table(summary, names, columns(summary, names)) + [""]
    lines += [
        "## Figure - gradient cosine over training",
        "",
        "![gradient cosine](gradient_cosine.png)",
        "",
        "cos(grad semantic NCE, grad reconstruction) on the synergistic-block parameters, mean ± std over seeds "
        "(paper Figure 2a: shared; 2d: MUSE).",
        "",
    ]
    if summary.get("claims"):
        lines += ["## The paper's claims at this scale", "", "| claim | held | evidence |", "|---|---|---|"]
        for c in summary["claims"]:
            held = "n/a" if c["held"] is None else ("yes" if c["held"] else "**no**")
            lines.append(f"| {c['claim']} | {held} | {c['evidence']} |")
        lines.append("")
    lines += ["## How each number is measured", ""]
    lines += [
        "- **PSNR / SSIM**: torchmetrics, decode(encode(x)) vs x on the held-out split.",
        "- **Zero-shot**: cosine of `get_image_features` with the packaged all-MiniLM-L6-v2 embeddings of the class "
        "prompts (36 colour x shape classes; chance 2.8%).",
        "- **Linear probe**: scikit-learn logistic regression on frozen pooled features, fixed split.",
        f"- **mIoU**: {info.get('segmentation_method', 'attention rows of the last block clustered and matched to the instance masks')}",
        "- **Grad cos**: `muse_hf.objectives.gradient_conflict` between the semantic-NCE and reconstruction "
        f"gradients on all synergistic-block parameters, on a fixed batch of {s['probe_samples']} held-out images, "
        f"every {s['probe_every']} steps and after the last; the table shows the last value and the value at "
        "initialisation (`at init`, the untrained floor). Variants that do not train the semantic loss still have "
        "the semantic stream; its gradient is measured all the same.",
        "- **Params**: all tokenizer parameters (in Table 4 also the synergistic blocks alone). The paper's "
        'Table 4 "Params" values did not survive its text extraction; appendix D gives Two-Stream 650M vs '
        "MUSE 496M (-23%).",
        "- In `decoupled` routing only the topology loss trains `q_topo`/`k_topo`: Baseline and Semantic keep "
        "their initial attention maps, which is what their mIoU measures.",
        "- Floors: the trivial baseline is "
        + "; ".join(f"{k}: {v}" for k, v in (summary["floors"].get("baseline_method") or {}).items())
        + ". The untrained floor is a freshly initialised model of the same routing (evaluation seed "
        f"{EVAL_SEED}); its gradient cosine is the first seed's probe at step 0.",
        "",
    ]
    return "\n".join(lines)


def plot_gradient_cosine(summary: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Gradient cosine over training per variant (paper Figure 2a/2d): (a) Table 3 variants, (b) Table 4 variants.

    Args:
        summary: Output of :func:`summarize_runs` (its ``curves``).
        path: PNG path.

    Returns:
        The path written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("objectives", "(a) objectives, decoupled routing (Table 3)", TABLE3_ORDER),
        ("routing", "(b) routing, all objectives (Table 4)", TABLE4_ORDER),
    ]
    colours = {
        "baseline": "tab:gray",
        "semantic": "tab:purple",
        "topology": "tab:olive",
        "full": "tab:green",
        "shared": "tab:red",
        "soft": "tab:orange",
        "two_stream": "tab:blue",
    }
    curves = summary.get("curves", {})
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), sharey=True)
    for ax, (table, title, names) in zip(axes, panels, strict=True):
        drawn = False
        for n in names:
            c = curves.get(n)
            if not c:
                continue
            steps = c["steps"]
            mean = [float("nan") if m is None else m for m in c["mean"]]
            std = [0.0 if sd is None else sd for sd in c["std"]]
            label = "MUSE (decoupled)" if n == "full" and table == "routing" else VARIANTS[n].label
            ax.plot(steps, mean, color=colours[n], label=label, marker="o", markersize=3)
            ax.fill_between(
                steps,
                [m - sd for m, sd in zip(mean, std, strict=True)],
                [m + sd for m, sd in zip(mean, std, strict=True)],
                color=colours[n],
                alpha=0.15,
                linewidth=0,
            )
            paper = PAPER_TABLE4.get(n, {}).get("cos") if table == "routing" else None
            if paper is not None:
                ax.scatter([steps[-1]], [paper], color=colours[n], marker="*", s=90, zorder=5)
            drawn = True
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
        if drawn:
            ax.legend(fontsize=8, loc="best")
        else:
            ax.text(
                0.5,
                0.5,
                "no variants of this table were run",
                ha="center",
                va="center",
                transform=ax.transAxes,
            )
    axes[0].set_ylabel("cos(grad semantic, grad reconstruction)\nsynergistic-block parameters")
    fig.suptitle("Gradient cosine over training, mean ± std over seeds (★: paper's Table 4 value)", fontsize=11)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
