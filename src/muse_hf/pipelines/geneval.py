"""Deprecated alias: the GenEval-style scorer moved to :mod:`muse_hf.evaluation.geneval`."""

from muse_hf.compat import alias_module

alias_module("muse_hf.pipelines.geneval", "muse_hf.evaluation.geneval")
