"""`muse-hf` command line: thin dispatch to the package's entry points.

Sub-commands:
    quickstart   build the embedded data, train the tiny tokenizer (3 stages), evaluate it, then train the tiny
                 unified model (3 stages), generate/edit samples and score them; everything in outputs/quickstart
    build-data   write the synthetic scenes dataset (parquet shards + dataset card)
    train        same as ``examples/train.py`` (use ``accelerate launch -m muse_hf.cli train ...`` for several processes)
    evaluate     same as ``examples/evaluate.py``
    compute-scaling  measure a tokenizer's latent scaling_factor / shift_factor on data and store them in its config
    card         (re)write a saved folder's model card (README.md)
    push         push a saved tokenizer or pipeline folder, with its card, to the Hub
    space        publish the Gradio demo as a Space
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence


def _quickstart(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="muse-hf quickstart", description=_quickstart.__doc__)
    parser.add_argument("--output_dir", default="outputs/quickstart")
    parser.add_argument(
        "--config", default=None, help="tokenizer curriculum YAML (default: configs/tokenizer/tiny.yaml)"
    )
    parser.add_argument("--umm_config", default=None, help="unified-model YAML (default: configs/umm/tiny.yaml)")
    parser.add_argument("--no_umm", action="store_true", help="stop after the tokenizer's evaluation")
    args = parser.parse_args(argv)
    from muse_hf.training.quickstart import run_quickstart

    run_quickstart(args.output_dir, config=args.config, umm_config=args.umm_config, umm=not args.no_umm)
    return 0


def _build_data(argv: Sequence[str]) -> int:
    from muse_hf.data.shapes import main as build_main

    return int(build_main(list(argv)) or 0)


def _train(argv: Sequence[str]) -> int:
    from muse_hf.training import main as train_main

    return int(train_main(list(argv)) or 0)


def _evaluate(argv: Sequence[str]) -> int:
    from muse_hf.evaluation.evaluate import main as eval_main

    return int(eval_main(list(argv)) or 0)


def _compute_scaling(argv: Sequence[str]) -> int:
    from muse_hf.training.umm_task import main as umm_main

    return int(umm_main(["compute-scaling", *argv]) or 0)


def _hub(command: str) -> Callable[[Sequence[str]], int]:
    def run(argv: Sequence[str]) -> int:
        from muse_hf.hub import main as hub_main

        return int(hub_main([command, *argv]) or 0)

    return run


_COMMANDS = {
    "quickstart": _quickstart,
    "build-data": _build_data,
    "train": _train,
    "evaluate": _evaluate,
    "compute-scaling": _compute_scaling,
    "card": _hub("card"),
    "push": _hub("push"),
    "space": _hub("space"),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``muse-hf`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"}:
        print(__doc__)
        return 0
    command, rest = argv[0], argv[1:]
    if command not in _COMMANDS:
        print(f"muse-hf: unknown command {command!r}; choose one of {sorted(_COMMANDS)}", file=sys.stderr)
        return 2
    return _COMMANDS[command](rest)


if __name__ == "__main__":
    sys.exit(main())
