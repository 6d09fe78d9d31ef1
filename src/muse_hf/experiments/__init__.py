"""Experiments built on the library: the top layer below the command line and the demo.

* :mod:`muse_hf.experiments.quickstart` - ``make quickstart`` (tiny tokenizer + tiny unified model, end to end);
* :mod:`muse_hf.experiments.ablation` - the paper's Table 3 / Table 4 ablations at small scale.

They use :mod:`muse_hf.training` and :mod:`muse_hf.evaluation`; nothing in the library imports them.
"""
