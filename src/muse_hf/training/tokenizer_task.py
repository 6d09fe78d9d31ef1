"""Deprecated alias: the tokenizer task moved to :mod:`muse_hf.training.tokenizer.task`."""

from muse_hf.compat import alias_module

alias_module("muse_hf.training.tokenizer_task", "muse_hf.training.tokenizer.task")
