"""Deprecated alias: the unified model's input cache moved to :mod:`muse_hf.training.umm.cache`."""

from muse_hf.compat import alias_module

alias_module("muse_hf.training.umm_cache", "muse_hf.training.umm.cache")
