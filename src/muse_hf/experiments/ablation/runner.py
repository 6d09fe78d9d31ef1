"""Running the ablation: the probe task, one (variant, seed) run, and the driver over all of them.

* :class:`CosineProbeTask` - the tokenizer task plus the gradient-cosine probe (handed to
  :func:`muse_hf.training.loop.train` through ``task=``, so the loop itself is unchanged);
* :func:`run_variant` - train and evaluate one variant for one seed (a finished run with the same settings is reused);
* :func:`run_ablation` - every run (in parallel processes with ``jobs > 1``), then the summary
  (:mod:`muse_hf.experiments.ablation.summary`) and the report (:mod:`muse_hf.experiments.ablation.report`).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import itertools
import json
import logging
import multiprocessing
import os
import shutil
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from accelerate.utils import send_to_device
from torch import nn

from muse_hf.data import build_shapes_dataset, collate_samples, load_image_text_stream
from muse_hf.evaluation.evaluate import evaluate_tokenizer
from muse_hf.evaluation.probes import gradient_probe
from muse_hf.experiments.ablation.report import plot_gradient_cosine, render_markdown
from muse_hf.experiments.ablation.summary import metric_value, summarize_runs
from muse_hf.experiments.ablation.variants import (
    EVAL_SEED,
    RUN_FILE,
    VARIANTS,
    AblationSettings,
    AblationVariant,
    load_base_config,
    settings_key,
    training_config,
)
from muse_hf.objectives import load_text_embedder
from muse_hf.training.arguments import load_stage_arguments
from muse_hf.training.loop import train
from muse_hf.training.tokenizer.arguments import TokenizerTrainingArguments
from muse_hf.training.tokenizer.task import TokenizerTask

if TYPE_CHECKING:
    from accelerate import Accelerator

__all__ = ["CosineProbeTask", "run_ablation", "run_variant", "shared_text_embedder"]

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------ probe task
@contextlib.contextmanager
def _all_parameters_trainable(model: nn.Module) -> Iterator[None]:
    """Temporarily mark every parameter trainable (the probe measures frozen parts too), then restore."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.requires_grad_(True)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


class CosineProbeTask(TokenizerTask):
    """The tokenizer task plus a gradient-conflict probe every ``probe_every`` optimizer steps.

    The probe runs at the start of a step (before its forward), on a fixed batch of the evaluation split, with
    ``muse_hf.evaluation.probes.gradient_probe`` (eval mode, a fresh ``LogitScale``, reconstruction = pixel L2 in
    [0, 1] space as the released hook, semantic NCE, topology KL against the structural teacher with the stage's
    ``topology_head_reduction``) over every tokenizer parameter made trainable for the
    measurement. It uses ``torch.autograd.grad`` only (no ``.grad`` is written) under a forked RNG, so the training
    run is the same with or without it.

    Args:
        args: Stage arguments.
        probe_every: Probe period in optimizer steps (step 0 = the initialisation is always probed).
        probe_samples: Images in the probe batch.
        text_embedder: A shared text embedder (reused across runs so its cache stays warm); default: loaded from
            ``args.text_encoder``.

    Attributes:
        cosine_history: One record per probe: ``{"step", "cosine", "pairs": {"a|b": cos} (the three probe pairs on
            the blocks), "groups": {group: {"a|b": cos}}, "group_share": ...}`` (``"reason"`` instead when the probe
            could not run).
    """

    def __init__(
        self,
        args: TokenizerTrainingArguments,
        probe_every: int,
        probe_samples: int = 16,
        text_embedder: Any | None = None,
    ) -> None:
        super().__init__(args)
        if probe_every < 1 or probe_samples < 2:
            raise ValueError(f"probe_every must be >= 1 and probe_samples >= 2, got {probe_every} and {probe_samples}.")
        self.probe_every = int(probe_every)
        self.probe_samples = int(probe_samples)
        self.probe_text_embedder = text_embedder
        self.cosine_history: list[dict[str, Any]] = []
        self._probe_batch: dict[str, Any] | None = None
        self._probe_teacher: nn.Module | None = None
        self._last_probe_step = -1

    def build(self, accelerator: Accelerator) -> None:  # noqa: D102
        super().build(accelerator)
        if self.probe_text_embedder is None:
            self.probe_text_embedder = self.text_embedder or load_text_embedder(
                self.args.text_encoder, device=self.device
            )
        if self.text_embedder is not None:
            self.text_embedder = self.probe_text_embedder  # one embedder (and cache) for training and probing
        dim = self.tokenizer.config.semantic_dim
        if self.probe_text_embedder.dim != dim:
            raise ValueError(
                f"The text embedder gives {self.probe_text_embedder.dim}-d embeddings but semantic_dim is {dim}: the "
                "semantic-vs-reconstruction probe and zero-shot need them equal; set model_overrides.semantic_dim."
            )
        self._probe_teacher = self.teacher if self.teacher is not None else self._build_teacher().to(self.device).eval()
        self._probe_batch = self._load_probe_batch()

    def _load_probe_batch(self) -> dict[str, Any]:
        """The first ``probe_samples`` images of the evaluation split, in stream order (same for every run)."""
        a = self.args
        stream = load_image_text_stream(
            a.train_data,
            split=a.eval_split,
            image_processor=self.image_processor,
            image_column=a.image_column,
            caption_column=a.caption_column,
        )
        samples = list(itertools.islice(iter(stream), self.probe_samples))
        if len(samples) < 2:
            raise ValueError(
                f"The probe needs >= 2 images from split {a.eval_split!r} of {a.train_data}, got {len(samples)}."
            )
        return send_to_device(collate_samples(samples), self.device)

    def probe(self, step: int) -> dict[str, Any]:
        """Measure the gradient cosine now and append it to :attr:`cosine_history`.

        Args:
            step: The optimizer step the measurement belongs to (weights after ``step`` updates).

        Returns:
            The record appended.
        """
        if self.tokenizer is None or self._probe_batch is None:
            raise RuntimeError("CosineProbeTask.probe() needs build() first.")
        with torch.random.fork_rng(devices=[]), _all_parameters_trainable(self.tokenizer):
            full, headline, why = gradient_probe(
                self.tokenizer,
                self._probe_batch,
                self.probe_text_embedder,
                self._probe_teacher,
                self.image_processor,
                topology_head_reduction=self.args.topology_head_reduction,
            )
        record: dict[str, Any] = {"step": int(step), "cosine": headline}
        if full is not None:
            record["group"] = full.get("headline_group")
            record["pairs"] = full["pairs"]  # semantic|reconstruction, reconstruction|topology, semantic|topology
            record["groups"] = full["cosine"]
            record["group_share"] = full["group_share"]
            record["norms"] = full["norms"]
        if why is not None and headline is None:
            record["reason"] = why
        self.cosine_history.append(record)
        return record

    def training_step(self, modules: dict[str, nn.Module], batch: dict[str, Any], step: int) -> Any:  # noqa: D102
        if step % self.probe_every == 0 and step != self._last_probe_step:
            self._last_probe_step = step  # once per optimizer step (the first micro-batch), also after a skip
            self.probe(step)
        return super().training_step(modules, batch, step)


# ------------------------------------------------------------------------------------------ one run
_TEXT_EMBEDDERS: dict[str | None, Any] = {}


def shared_text_embedder(name: str | None) -> Any:
    """One text embedder per process and name (its string cache then serves every run)."""
    if name not in _TEXT_EMBEDDERS:
        _TEXT_EMBEDDERS[name] = load_text_embedder(name)
    return _TEXT_EMBEDDERS[name]


@contextlib.contextmanager
def _run_output(log_path: Path) -> Iterator[None]:
    """Send a run's stdout, stderr (progress bars) and ``muse_hf`` log records to ``log_path``."""
    root = logging.getLogger()
    if not root.handlers:
        # train() calls logging.basicConfig; with a handler already there it does not bind one to the redirected
        # stream (which is closed after the run).
        logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    pkg = logging.getLogger("muse_hf")
    old_level, old_propagate = pkg.level, pkg.propagate
    with open(log_path, "a", encoding="utf-8") as fh:
        handler = logging.StreamHandler(fh)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        pkg.addHandler(handler)
        pkg.setLevel(logging.INFO)
        pkg.propagate = False
        try:
            with contextlib.redirect_stdout(fh), contextlib.redirect_stderr(fh):
                yield
        finally:
            pkg.removeHandler(handler)
            pkg.setLevel(old_level)
            pkg.propagate = old_propagate


def _parameter_counts(model: nn.Module) -> dict[str, int]:
    blocks = [getattr(model, a, None) for a in ("blocks", "recon_blocks")]
    return {
        "total": sum(p.numel() for p in model.parameters()),
        "blocks": sum(p.numel() for stack in blocks if stack is not None for p in stack.parameters()),
        "trained": sum(p.numel() for p in model.parameters() if p.requires_grad),
    }


def _train_and_evaluate(
    settings: AblationSettings,
    variant: AblationVariant,
    seed: int,
    run_dir: Path,
    data_dir: Path,
    base: Mapping[str, Any],
    evaluate_untrained: bool,
) -> dict[str, Any]:
    model_dir = run_dir / "model"
    cfg = training_config(settings, variant, seed, model_dir, data_dir, base)
    args = load_stage_arguments(cfg)[0]
    embedder = shared_text_embedder(args.text_encoder)
    task = CosineProbeTask(args, settings.probe_every, settings.probe_samples, text_embedder=embedder)
    t0 = time.perf_counter()
    result = train(args, task=task)
    train_s = time.perf_counter() - t0
    if not task.cosine_history or task.cosine_history[-1]["step"] != result.global_step:
        task.probe(result.global_step)  # the trained model
    model = task.tokenizer
    params = _parameter_counts(model)
    t0 = time.perf_counter()
    evaluation = evaluate_tokenizer(
        model,
        task.image_processor,
        str(data_dir),
        split=args.eval_split,
        text_embedder=embedder,
        max_samples=settings.eval_samples,
        include_photos=False,
        compare_untrained=evaluate_untrained,
        rfid_weights=settings.rfid_weights,
        rfid_samples=settings.rfid_samples,
        probe_gradients=False,  # measured by the probe above, over training
        throughput_repeats=1,
        seed=EVAL_SEED,
    )
    eval_s = time.perf_counter() - t0
    log = model_dir / "logs" / "train_log.jsonl"
    if log.is_file():
        shutil.copy(log, run_dir / "train_log.jsonl")
    if not settings.keep_models:
        shutil.rmtree(model_dir, ignore_errors=True)
    last = result.history[-1] if result.history else {}
    return {
        "train": {
            "steps": result.global_step,
            "wall_time_s": train_s,
            "nonfinite_steps": result.nonfinite_steps,
            "final_losses": {k: v for k, v in last.items() if k == "loss" or k.startswith("loss/")},
            "batch_size": args.train_batch_size,
            "learning_rate": args.learning_rate,
            "topology_weight": args.topology_weight,
            "semantic_weight": args.semantic_weight,
            "reconstruction_weight": args.reconstruction_weight,
        },
        "eval_wall_time_s": eval_s,
        "params": params,
        "metrics": evaluation["metrics"],
        "eval_info": {k: evaluation[k] for k in ("num_samples", "image_size", "latent_grid", "segmentation_method")},
        "untrained_evaluated": evaluate_untrained,
        "cosine_history": task.cosine_history,
        "model_dir": str(model_dir) if settings.keep_models else None,
    }


def run_variant(
    variant: str,
    seed: int,
    settings: AblationSettings,
    evaluate_untrained: bool = False,
    data_dir: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Train and evaluate one variant with one seed (or reuse its finished result).

    Args:
        variant: A :data:`VARIANTS` key.
        seed: Training seed.
        settings: The ablation settings.
        evaluate_untrained: Also evaluate an untrained model of the same config (the floor).
        data_dir: The data folder (default: ``settings.resolved_data_dir()``; must exist).

    Returns:
        The run record (also written to ``runs/<variant>/seed<seed>/ablation_run.json``); ``"error"`` holds the
        exception text when the run failed.
    """
    v = VARIANTS[variant]
    data = Path(data_dir) if data_dir is not None else settings.resolved_data_dir()
    base = load_base_config(settings.base_config)
    key = settings_key(settings, variant, seed, base)
    run_dir = Path(settings.out_dir) / "runs" / variant / f"seed{seed}"
    record_file = run_dir / RUN_FILE
    if record_file.is_file() and not settings.overwrite:
        cached = json.loads(record_file.read_text())
        if (
            cached.get("settings_key") == key
            and "error" not in cached
            and (cached.get("untrained_evaluated") or not evaluate_untrained)
        ):
            cached["reused"] = True
            return cached
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "run.log").write_text("")
    record: dict[str, Any] = {
        "variant": variant,
        "label": v.label,
        "seed": int(seed),
        "routing": v.routing,
        "semantic": v.semantic,
        "topology": v.topology,
        "settings_key": key,
    }
    start = time.perf_counter()
    threads = torch.get_num_threads()
    if settings.threads is not None:
        torch.set_num_threads(settings.threads)
    try:
        with _run_output(run_dir / "run.log"):
            record.update(_train_and_evaluate(settings, v, seed, run_dir, data, base, evaluate_untrained))
    except Exception as err:  # noqa: BLE001 - one failed run is reported, the others still run
        record["error"] = f"{type(err).__name__}: {err}"
        logger.error("run %s seed %d failed: %s (log: %s)", variant, seed, record["error"], run_dir / "run.log")
    finally:
        torch.set_num_threads(threads)
    record["wall_time_s"] = time.perf_counter() - start
    record["reused"] = False
    record_file.write_text(json.dumps(record, indent=1))
    return record


def _run_payload(payload: dict[str, Any]) -> dict[str, Any]:
    """Process-pool entry point (spawned workers): one :func:`run_variant`."""
    settings = AblationSettings(**payload["settings"])
    return run_variant(
        payload["variant"], payload["seed"], settings, payload["evaluate_untrained"], payload["data_dir"]
    )


# ------------------------------------------------------------------------------------------ driver
def _ensure_data(settings: AblationSettings) -> Path:
    """Build the synthetic scenes once (reused by every run and by later ablations with the same settings)."""
    data = settings.resolved_data_dir()
    if settings.data_dir is not None and data.exists():
        return data  # the user's folder, used as it is
    if (data / "README.md").is_file():  # the dataset card is written last: the build finished
        return data
    logger.info("Building the synthetic scenes in %s", data)
    build_shapes_dataset(
        data,
        num_train=settings.num_train,
        num_val=settings.num_val,
        image_size=settings.resolution,
        seed=settings.data_seed,
        overwrite=settings.data_dir is None,  # our own folder, left half-written by an interrupted build
    )
    return data


def _schedule(settings: AblationSettings) -> list[tuple[str, int, bool]]:
    """(variant, seed, evaluate_untrained) for every run, slowest first (``soft`` needs a double backward)."""
    runs = []
    floor_routings: set[str] = set()
    for name in settings.variants:
        for seed in settings.seeds:
            routing = VARIANTS[name].routing
            untrained = settings.untrained_floor and seed == settings.seeds[0] and routing not in floor_routings
            if untrained:
                floor_routings.add(routing)
            runs.append((name, seed, untrained))
    cost = {"soft": 0, "two_stream": 1, "full": 1, "shared": 1}
    return sorted(runs, key=lambda r: cost.get(r[0], 2))


def _progress_line(i: int, total: int, run: Mapping[str, Any]) -> str:
    head = f"[{i}/{total}] {run['variant']} seed {run['seed']}"
    if "error" in run:
        return f"{head}: FAILED {run['error']}"
    if run.get("reused"):
        return f"{head}: reused finished run"
    parts = [
        f"{run['train']['steps']} steps {run['train']['wall_time_s']:.0f}s + eval {run['eval_wall_time_s']:.0f}s",
    ]
    for column, fmt in (
        ("psnr", "PSNR {:.2f}"),
        ("zero_shot", "ZS {:.1f}%"),
        ("miou", "mIoU {:.1f}%"),
        ("cos", "cos {:+.3f}"),
    ):
        value = metric_value(run, column)
        if value is not None:
            parts.append(fmt.format(value))
    return f"{head}: " + ", ".join(parts)


def run_ablation(settings: AblationSettings, command: str | None = None) -> dict[str, Any]:
    """Train and evaluate every (variant, seed), then write ``ablation.md``, ``ablation.json``, ``gradient_cosine.png``.

    Args:
        settings: What to run (see :class:`AblationSettings`, :func:`quick_settings`, :func:`full_settings`).
        command: Shown in the report.

    Returns:
        The summary (as in ``ablation.json``) plus ``runs`` (every run record) and ``outputs`` (file paths).
    """
    settings.validate()
    load_base_config(settings.base_config)  # fail before building data on a bad config
    start = time.perf_counter()
    out = Path(settings.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = _ensure_data(settings)
    schedule = _schedule(settings)
    runs: list[dict[str, Any]] = []
    total = len(schedule)
    if settings.jobs == 1:
        for i, (name, seed, untrained) in enumerate(schedule, 1):
            runs.append(run_variant(name, seed, settings, untrained, data))
            print(_progress_line(i, total, runs[-1]), flush=True)
    else:
        payload = dataclasses.asdict(settings)
        payload["variants"], payload["seeds"] = tuple(settings.variants), tuple(settings.seeds)
        ctx = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(max_workers=settings.jobs, mp_context=ctx) as pool:
            futures = [
                pool.submit(
                    _run_payload,
                    {
                        "settings": payload,
                        "variant": n,
                        "seed": s,
                        "evaluate_untrained": u,
                        "data_dir": str(data),
                    },
                )
                for n, s, u in schedule
            ]
            for i, fut in enumerate(concurrent.futures.as_completed(futures), 1):
                runs.append(fut.result())
                print(_progress_line(i, total, runs[-1]), flush=True)
    order = {
        (n, s): k for k, (n, s, _) in enumerate(sorted(schedule, key=lambda r: (settings.variants.index(r[0]), r[1])))
    }
    runs.sort(key=lambda r: order[(r["variant"], r["seed"])])
    summary = summarize_runs(runs, settings)
    summary["wall_time_s"] = time.perf_counter() - start
    summary["reused_runs"] = sum(1 for r in runs if r.get("reused"))
    previous = out / "ablation.json"
    if summary["reused_runs"] == len(runs) and previous.is_file():
        # every run was reused: the report is re-rendered, the time to produce the runs is the earlier one
        try:
            earlier = json.loads(previous.read_text())
            summary["runs_wall_time_s"] = earlier.get("runs_wall_time_s", earlier.get("wall_time_s"))
        except (OSError, ValueError):
            summary["runs_wall_time_s"] = None
    elif summary["reused_runs"] == 0:
        summary["runs_wall_time_s"] = summary["wall_time_s"]
    summary["command"] = command
    summary["data_dir"] = str(data)
    summary["runs"] = runs
    png = plot_gradient_cosine(summary, out / "gradient_cosine.png")
    (out / "ablation.md").write_text(render_markdown(summary, command))
    (out / "ablation.json").write_text(json.dumps(summary, indent=1, default=str))
    summary["outputs"] = {
        "markdown": str(out / "ablation.md"),
        "json": str(out / "ablation.json"),
        "figure": str(png),
    }
    return summary
