"""Deprecated alias: the ablation moved to :mod:`muse_hf.experiments.ablation` (variants / runner / summary /
report); its command line is ``muse-hf ablation`` (:func:`muse_hf.cli.ablation_main`)."""

from muse_hf.compat import alias_module

alias_module("muse_hf.evaluation.ablation", "muse_hf.experiments.ablation")
