"""Aggregation of the ablation's runs: per-variant mean ± std over seeds, floors, cosine curves, the claims check.

:func:`summarize_runs` turns the run records of :func:`muse_hf.experiments.ablation.runner.run_variant` into the
summary that :mod:`muse_hf.experiments.ablation.report` renders; :func:`check_claims` tests the paper's claims on it.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from muse_hf.experiments.ablation.variants import EVAL_METRICS, PAPER_TABLE3, PAPER_TABLE4, VARIANTS, AblationSettings

__all__ = ["NEAR_ZERO_COS", "check_claims", "metric_value", "summarize_runs"]

NEAR_ZERO_COS = 0.05  # |cos| below this counts as "near zero" in the claims check


def _stats(values: Sequence[float]) -> dict[str, Any]:
    """Mean, sample std (n-1; None for one value), n and the values."""
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not vals:
        return {"mean": None, "std": None, "n": 0, "values": []}
    std = statistics.stdev(vals) if len(vals) > 1 else None
    return {"mean": statistics.fmean(vals), "std": std, "n": len(vals), "values": vals}


def metric_value(run: Mapping[str, Any], column: str) -> float | None:
    if column == "cos":
        history = run.get("cosine_history") or []
        return history[-1].get("cosine") if history else None
    if column == "cos_init":
        history = run.get("cosine_history") or []
        return history[0].get("cosine") if history and history[0]["step"] == 0 else None
    name, scale = EVAL_METRICS[column]
    entry = (run.get("metrics") or {}).get(name) or {}
    value = entry.get("value")
    return None if value is None else float(value) * scale


def _floor_value(run: Mapping[str, Any], column: str, kind: str) -> float | None:
    if column in ("cos", "cos_init"):
        return metric_value(run, "cos_init") if kind == "untrained" else None
    name, scale = EVAL_METRICS[column]
    value = ((run.get("metrics") or {}).get(name) or {}).get(kind)
    return None if value is None else float(value) * scale


def summarize_runs(runs: Sequence[Mapping[str, Any]], settings: AblationSettings) -> dict[str, Any]:
    """Aggregate run records into per-variant mean ± std, floors, cosine curves and the claims check.

    Args:
        runs: Run records from :func:`run_variant`.
        settings: The settings they were run with.

    Returns:
        The summary written to ``ablation.json`` (``variants``, ``floors``, ``curves``, ``claims``, ...).
    """
    columns = ["cos", "cos_init", *EVAL_METRICS]
    by_variant: dict[str, list[Mapping[str, Any]]] = {}
    for run in runs:
        by_variant.setdefault(run["variant"], []).append(run)
    variants: dict[str, Any] = {}
    curves: dict[str, Any] = {}
    failed = []
    for name in settings.variants:
        ok = [r for r in by_variant.get(name, []) if "error" not in r]
        failed += [
            {"variant": name, "seed": r["seed"], "error": r["error"]} for r in by_variant.get(name, []) if "error" in r
        ]
        v = VARIANTS[name]
        entry: dict[str, Any] = {
            "label": v.label,
            "routing": v.routing,
            "semantic": v.semantic,
            "topology": v.topology,
            "tables": list(v.tables),
            "seeds": [r["seed"] for r in ok],
            "metrics": {c: _stats([metric_value(r, c) for r in ok]) for c in columns},
            "params": ok[0]["params"] if ok else None,
            "train_wall_time_s": _stats([r["train"]["wall_time_s"] for r in ok]),
            "eval_wall_time_s": _stats([r["eval_wall_time_s"] for r in ok]),
            "unavailable": {
                c: sorted(
                    {
                        str(((r.get("metrics") or {}).get(EVAL_METRICS[c][0]) or {}).get("reason"))
                        for r in ok
                        if metric_value(r, c) is None
                    }
                )
                for c in EVAL_METRICS
                if any(metric_value(r, c) is None for r in ok)
            },
        }
        untrained = [r for r in ok if r.get("untrained_evaluated")]
        if untrained:
            entry["untrained"] = {c: _floor_value(untrained[0], c, "untrained") for c in columns}
        variants[name] = entry
        histories = [r["cosine_history"] for r in ok if r.get("cosine_history")]
        if histories:
            steps = sorted({rec["step"] for h in histories for rec in h})
            per_step = [_stats([rec["cosine"] for h in histories for rec in h if rec["step"] == s]) for s in steps]
            curves[name] = {
                "steps": steps,
                "mean": [p["mean"] for p in per_step],
                "std": [p["std"] for p in per_step],
                "n": [p["n"] for p in per_step],
            }
    floors: dict[str, Any] = {}
    any_ok = next((r for r in runs if "error" not in r), None)
    if any_ok is not None:
        floors["baseline"] = {c: _floor_value(any_ok, c, "baseline") for c in EVAL_METRICS}
        floors["baseline_method"] = {
            "rfid": "bicubic down-sampling to the latent grid and back (same images, same N)",
            "psnr": "bicubic down-sampling to the latent grid and back",
            "ssim": "bicubic down-sampling to the latent grid and back",
            "zero_shot": "majority class",
            "linear_probe": "logistic regression on raw pixels (area-downsampled)",
            "miou": "k-means on per-token mean colour",
            "topology_kl": "uniform attention",
        }
        floors["eval_info"] = any_ok.get("eval_info")
        floors["rfid"] = (any_ok.get("metrics") or {}).get("rfid")
    summary: dict[str, Any] = {
        "settings": dataclasses.asdict(settings),
        "variants": variants,
        "curves": curves,
        "floors": floors,
        "failed_runs": failed,
        "paper": {"table3": PAPER_TABLE3, "table4": PAPER_TABLE4},
    }
    summary["claims"] = check_claims(summary)
    return summary


def _mean(summary: Mapping[str, Any], variant: str, column: str) -> tuple[float | None, float]:
    """(mean, std or 0) of a column of a variant, (None, 0) when not available."""
    entry = summary["variants"].get(variant)
    if entry is None:
        return None, 0.0
    stats = entry["metrics"][column]
    return stats["mean"], stats["std"] or 0.0


def check_claims(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Which of the paper's ablation claims hold in this run (``held`` None: variants missing).

    "Near-best" means within one seed standard deviation (the larger of the two compared) of the best mean;
    "near zero" means ``|cos| < 0.05``.

    Args:
        summary: Output of :func:`summarize_runs` (``variants`` is enough).

    Returns:
        ``[{"claim", "held", "evidence"}]``.
    """
    claims: list[dict[str, Any]] = []

    def add(claim: str, held: bool | None, evidence: str) -> None:
        claims.append({"claim": claim, "held": held, "evidence": evidence})

    shared, _ = _mean(summary, "shared", "cos")
    soft, _ = _mean(summary, "soft", "cos")
    full, _ = _mean(summary, "full", "cos")
    add(
        "Naive Shared shows gradient conflict: cos(semantic, reconstruction) < 0 (paper -0.15)",
        None if shared is None else shared < 0,
        "n/a" if shared is None else f"shared {shared:+.3f}",
    )
    add(
        f"MUSE (decoupled) is near zero or positive: cos > -{NEAR_ZERO_COS} (paper +0.04)",
        None if full is None else full > -NEAR_ZERO_COS,
        "n/a" if full is None else f"decoupled {full:+.3f}",
    )
    add(
        "Soft Regularization mitigates but does not remove the conflict: shared < soft < decoupled (paper "
        "-0.15 < -0.05 < +0.04)",
        None if None in (shared, soft, full) else shared < soft < full,  # type: ignore[operator]
        "n/a" if None in (shared, soft, full) else f"shared {shared:+.3f}, soft {soft:+.3f}, decoupled {full:+.3f}",
    )
    objectives = [n for n in ("baseline", "semantic", "topology", "full") if n in summary["variants"]]
    for column, label in (("psnr", "reconstruction (PSNR, in place of rFID)"), ("miou", "attention mIoU")):
        means = {n: _mean(summary, n, column) for n in objectives}
        means = {n: m for n, m in means.items() if m[0] is not None}
        if "full" not in means or len(means) < 2:
            add(f"Full is best or near-best on {label} among the Table 3 variants", None, "n/a")
            continue
        best = max(means, key=lambda n: means[n][0])  # type: ignore[arg-type, return-value]
        tol = max(means[best][1], means["full"][1])
        held = means["full"][0] >= means[best][0] - tol  # type: ignore[operator]
        evidence = ", ".join(f"{n} {m[0]:.2f}±{m[1]:.2f}" for n, m in means.items())
        add(f"Full is best or near-best on {label} among the Table 3 variants", held, evidence)
    topo, _ = _mean(summary, "topology", "zero_shot")
    sem, _ = _mean(summary, "semantic", "zero_shot")
    full_zs, _ = _mean(summary, "full", "zero_shot")
    add(
        "Topology-only is poor at zero-shot: below both variants trained with the semantic loss (paper 10.7 vs "
        "70.5 / 76.1)",
        None if None in (topo, sem, full_zs) else topo < min(sem, full_zs),  # type: ignore[type-var, operator]
        "n/a" if None in (topo, sem, full_zs) else f"topology {topo:.1f}%, semantic {sem:.1f}%, full {full_zs:.1f}%",
    )
    sem_miou, _ = _mean(summary, "semantic", "miou")
    full_miou, _ = _mean(summary, "full", "miou")
    add(
        "Semantic-only has a worse attention mIoU than Full (paper 14.1 vs 46.5)",
        None if None in (sem_miou, full_miou) else sem_miou < full_miou,  # type: ignore[operator]
        "n/a" if None in (sem_miou, full_miou) else f"semantic {sem_miou:.1f}%, full {full_miou:.1f}%",
    )
    shared_miou, _ = _mean(summary, "shared", "miou")
    soft_miou, _ = _mean(summary, "soft", "miou")
    add(
        "MUSE (decoupled) has a better attention mIoU than Naive Shared and Soft Regularization (paper 46.5 vs "
        "15.4 / 22.1)",
        None if None in (full_miou, shared_miou, soft_miou) else full_miou > max(shared_miou, soft_miou),  # type: ignore[operator, type-var]
        "n/a"
        if None in (full_miou, shared_miou, soft_miou)
        else f"decoupled {full_miou:.1f}%, shared {shared_miou:.1f}%, soft {soft_miou:.1f}%",
    )
    return claims
