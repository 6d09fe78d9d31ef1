"""The MUSE tokenizer curriculum on the shared loop: :mod:`muse_hf.training.tokenizer.task` (``task: tokenizer``).

Its arguments are :class:`muse_hf.training.tokenizer.arguments.TokenizerTrainingArguments`; both are found through
:data:`muse_hf.training.arguments.TASK_REGISTRY`, so importing this package imports nothing heavy.
"""
