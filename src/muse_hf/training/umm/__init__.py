"""The MUSE unified model (UMM) curriculum on the shared loop (``task: umm``).

* :mod:`muse_hf.training.umm.arguments` - :class:`~muse_hf.training.umm.arguments.UMMTrainingArguments`;
* :mod:`muse_hf.training.umm.task` - :class:`~muse_hf.training.umm.task.UMMTask` (re-exports the names below);
* :mod:`muse_hf.training.umm.modules` - the generation/editing batch mixture and the trained connector + DiT;
* :mod:`muse_hf.training.umm.lora` - DiT LoRA adapters; :mod:`muse_hf.training.umm.scaling` - latent scaling;
* :mod:`muse_hf.training.umm.cache` - cached latents / text states (``cache_latents: true``).

Both classes are found through :data:`muse_hf.training.arguments.TASK_REGISTRY`, so importing this package imports
nothing heavy.
"""
