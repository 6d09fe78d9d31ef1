"""The paper's ablations at small scale: Table 3 (objectives), Table 4 (gradient routing) and Figure 2a/2d.

Seven variants of the tokenizer are each trained for one single-stage run with the same budget, data and seeds,
then evaluated with :func:`muse_hf.evaluation.evaluate.evaluate_tokenizer`:

============  ===========  =====================  =================================================
variant       routing      objectives             paper row
============  ===========  =====================  =================================================
baseline      decoupled    reconstruction         Table 3 "Baseline"
semantic      decoupled    + semantic NCE         Table 3 "Semantic"
topology      decoupled    + topology KL          Table 3 "Topology"
full          decoupled    all three              Table 3 "MUSE (Full)" = Table 4 "MUSE (Ours)"
shared        shared       all three              Table 4 "Naive Shared"
soft          soft         all three (+ penalty)  Table 4 "Soft Regularization"
two_stream    two_stream   all three              Table 4 "Two-Stream (Upper Bound)"
============  ===========  =====================  =================================================

The ``full`` run is shared by both tables (trained once per seed).

**Gradient cosine.** Every ``probe_every`` optimizer steps (and once after the last step), a
:class:`CosineProbeTask` - the training loop's tokenizer task plus a probe, passed to
:func:`muse_hf.training.loop.train` through its ``task=`` argument, so the loop itself is unchanged - measures
``cos(grad semantic NCE, grad reconstruction)`` on *all* synergistic-block parameters
(:func:`muse_hf.objectives.shared_block_parameters`; for ``two_stream`` both stacks) with
:func:`muse_hf.objectives.gradient_conflict`, on one fixed held-out batch, in eval mode, with a fixed NCE temperature
(the probe of ``evaluate_tokenizer``). Frozen parts (e.g. ``v_itc`` when the semantic loss is off) are included for
the probe, so the measurement is the same for every variant; the probe writes no ``.grad`` and draws no random
numbers, so it does not change the training run. The last point is the table's "Grad cos"; the curves are the
figure (paper Figure 2a/2d).

Outputs in ``out_dir``: ``ablation.md`` (the tables, mean ± std over seeds, the paper's numbers beside ours, floors,
a check of the paper's claims), ``ablation.json`` (everything, per run and aggregated), ``gradient_cosine.png``,
and ``runs/<variant>/seed<k>/`` (``ablation_run.json``, ``run.log``, ``train_log.jsonl``). A finished run whose
settings match is reused, so an interrupted ablation resumes where it stopped.

CLI: ``muse-hf ablation --quick`` or ``python examples/ablation.py --quick`` (<= 15 min on a 2-core CPU), or without
``--quick`` (the full run).

Modules: :mod:`~muse_hf.experiments.ablation.variants` (what is run), :mod:`~muse_hf.experiments.ablation.runner`
(running it), :mod:`~muse_hf.experiments.ablation.summary` (aggregation, claims) and
:mod:`~muse_hf.experiments.ablation.report` (``ablation.md``, the figure).
"""

from __future__ import annotations

from typing import Any

from muse_hf.compat import moved_attribute
from muse_hf.experiments.ablation.report import plot_gradient_cosine, render_markdown
from muse_hf.experiments.ablation.runner import CosineProbeTask, run_ablation, run_variant
from muse_hf.experiments.ablation.summary import check_claims, summarize_runs
from muse_hf.experiments.ablation.variants import (
    PAPER_TABLE3,
    PAPER_TABLE4,
    VARIANTS,
    AblationSettings,
    AblationVariant,
    full_settings,
    quick_settings,
    training_config,
)

__all__ = [
    "AblationSettings",
    "AblationVariant",
    "CosineProbeTask",
    "PAPER_TABLE3",
    "PAPER_TABLE4",
    "VARIANTS",
    "check_claims",
    "full_settings",
    "plot_gradient_cosine",
    "quick_settings",
    "render_markdown",
    "run_ablation",
    "run_variant",
    "summarize_runs",
    "training_config",
]


def __getattr__(name: str) -> Any:
    # The ablation's argparse ``main`` is ``muse_hf.cli.ablation_main`` (``muse-hf ablation``).
    return moved_attribute(__name__, name, {"main": "muse_hf.cli:ablation_main"})
