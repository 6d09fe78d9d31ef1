"""Deprecated alias: the quickstart moved to :mod:`muse_hf.experiments.quickstart` (its evaluators of saved models
to :mod:`muse_hf.evaluation.saved`)."""

from muse_hf.compat import alias_module

alias_module("muse_hf.training.quickstart", "muse_hf.experiments.quickstart")
