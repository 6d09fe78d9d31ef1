"""Typed training arguments: YAML presets, ``--key value`` CLI overrides, validation before anything heavy.

A config file is a flat mapping of argument names to values, optionally with a ``stages`` mapping whose
entries override the shared values for each stage of a curriculum::

    task: tokenizer
    output_dir: outputs/tiny
    learning_rate: 1.0e-3
    stages:
      stage1: {max_train_steps: 150, semantic_weight: 0.0}
      stage2: {max_train_steps: 150}

Every stage trains into ``<output_dir>/<stage name>`` and, unless it sets ``init_from`` itself, starts from
the previous stage's saved model. CLI overrides win over both levels; a dotted key reaches into a mapping,
e.g. ``--stages.stage1.max_train_steps 10`` or ``--model_overrides.grad_scale 0.5``.

Task-specific argument classes subclass :class:`MuseTrainingArguments` and are looked up by the ``task``
key through :data:`TASK_REGISTRY` (:mod:`muse_hf.training.tokenizer.arguments`, :mod:`muse_hf.training.umm.arguments`).
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import sys
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from muse_hf.compat import moved_attribute
from muse_hf.hub import HubUnavailableError
from muse_hf.hub import check_hub_access as check_hub_write_access
from muse_hf.training.checkpointing import list_checkpoints
from muse_hf.training.optim import SCHEDULER_NAMES
from muse_hf.validation import hub_offline, is_hub_id
from muse_hf.validation import unknown_key_message as _unknown_key_message

__all__ = [
    "MuseTrainingArguments",
    "TASK_REGISTRY",
    "register_task",
    "load_stage_arguments",
    "parse_cli",
    "check_hub_access",
    "is_hub_id",
]

# Files whose presence in an output dir means "a run lives here".
RUN_MARKERS = ("training_args.yaml", "training_summary.json")


def check_hub_access(timeout: float = 3.0) -> None:
    """Fail fast (before training) when ``--push_to_hub`` cannot work: offline mode, no token, no connection.

    Raises:
        ValueError: naming what is missing and what to do about it.
    """
    try:
        check_hub_write_access(timeout=timeout)
    except HubUnavailableError as err:
        raise ValueError(
            f"--push_to_hub was given but the Hub cannot be reached: {err} Drop --push_to_hub to train offline; "
            "the model is always saved in output_dir and can be pushed later with `python -m muse_hf.hub`."
        ) from err


@dataclass
class MuseTrainingArguments:
    """Task-independent arguments of the shared Accelerate training loop.

    Field defaults follow diffusers' training examples; presets in ``configs/`` set the paper's values.
    """

    # --- run ---
    task: str = "tokenizer"
    """Which training task supplies model, parameters and losses (a key of TASK_REGISTRY)."""
    stage_name: str = "train"
    """Name of this stage (set from the ``stages`` mapping of a curriculum config)."""
    output_dir: str = "outputs/run"
    """Where checkpoints (``checkpoint-<step>``), logs and the final ``save_pretrained`` folder go."""
    overwrite_output_dir: bool = False
    """Allow training into an output dir that already holds another run (its files are replaced)."""
    seed: int = 0
    init_from: str | None = None
    """A saved model (local folder or Hub id) to start from, e.g. the previous stage's output_dir."""

    # --- data ---
    train_data: str | None = None
    """Local dataset folder / parquet shards, or a Hub dataset id."""
    train_split: str = "train"
    eval_split: str = "validation"
    build_synthetic_data: bool = False
    """If train_data does not exist, build the embedded synthetic scenes set there first."""
    synthetic_num_train: int = 4000
    synthetic_num_val: int = 256
    synthetic_seed: int = 0
    synthetic_plain_fraction: float = 0.0
    """Share of GenEval-style plain scenes in a synthetic set built here (``build_shapes_dataset(plain_fraction=)``:
    white background, plain separated objects, the scorer's phrasing, never a held-out prompt). 0 for the tokenizer;
    the unified model's configs set it so that its data match what it is scored on."""
    resolution: int = 64
    shuffle_buffer_size: int = 1000
    """``datasets`` shuffle buffer (0: stream order). Resume never repeats samples; with a buffer, the samples
    that sat in it at the checkpoint are not seen in that epoch (a ``datasets`` limitation), so bit-exact
    resumption needs 0."""
    dataloader_num_workers: int = 0

    # --- optimisation ---
    train_batch_size: int = 32
    """Per-device batch size."""
    gradient_accumulation_steps: int = 1
    max_train_steps: int = 1000
    """Optimizer steps in this stage."""
    learning_rate: float = 1e-4
    lr_scheduler: str = "cosine"
    """Any transformers scheduler name (cosine, cosine_with_min_lr, linear, constant_with_warmup, ...) or
    diffusers' ``piecewise_constant`` (step decay, with lr_step_rules)."""
    lr_warmup_steps: int | None = None
    """Warmup steps; when None, lr_warmup_ratio * max_train_steps."""
    lr_warmup_ratio: float = 0.0
    min_lr_ratio: float = 0.0
    """Floor of the cosine decay as a fraction of the peak (used by cosine_with_min_lr)."""
    lr_step_rules: str | None = None
    """diffusers step rules for piecewise_constant, e.g. ``"1:10000,0.5:20000,0.25"``."""
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    weight_decay: float = 0.0
    max_grad_norm: float | None = 1.0
    mixed_precision: Literal["no", "fp16", "bf16"] | None = None
    """None lets ``accelerate config`` / ``accelerate launch --mixed_precision`` decide."""
    ddp_find_unused_parameters: bool = False

    # --- EMA ---
    use_ema: bool = False
    ema_decay: float = 0.9999
    ema_update_after_step: int = 0
    ema_use_warmup: bool = False
    ema_power: float = 2.0 / 3.0

    # --- robustness ---
    max_consecutive_nonfinite: int = 5
    """A non-finite loss (or gradient) skips the step; this many in a row stop the run."""

    # --- checkpoints / logging ---
    checkpointing_steps: int = 500
    checkpoints_total_limit: int | None = None
    resume_from_checkpoint: str | None = None
    """``latest`` or a ``checkpoint-<step>`` folder. Only complete checkpoints are ever picked."""
    logging_steps: int = 10
    report_to: str = "tensorboard"
    """Accelerate tracker(s), comma-separated (``tensorboard``, ``wandb``, ...) or ``none``."""
    tracker_project_name: str = "muse_hf"

    # --- final output ---
    push_to_hub: bool = False
    hub_model_id: str | None = None
    hub_private: bool = False

    # ------------------------------------------------------------------ validation
    def validate(self, produced_by_earlier_stage: frozenset[str] = frozenset()) -> None:
        """Check the arguments (cheap checks only; nothing is built or downloaded).

        Args:
            produced_by_earlier_stage: Paths that an earlier stage of the same curriculum will create
                (they need not exist yet).

        Raises:
            ValueError: with the offending field and what to do.
        """
        if self.task not in TASK_REGISTRY:
            raise ValueError(f"task={self.task!r} is unknown; choose one of {sorted(TASK_REGISTRY)}.")
        positive = {
            "train_batch_size": self.train_batch_size,
            "gradient_accumulation_steps": self.gradient_accumulation_steps,
            "max_train_steps": self.max_train_steps,
            "checkpointing_steps": self.checkpointing_steps,
            "logging_steps": self.logging_steps,
            "max_consecutive_nonfinite": self.max_consecutive_nonfinite,
            "resolution": self.resolution,
        }
        for name, value in positive.items():
            if value <= 0:
                raise ValueError(f"{name} must be > 0, got {value}.")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}.")
        if not 0.0 <= self.lr_warmup_ratio < 1.0:
            raise ValueError(f"lr_warmup_ratio must be in [0, 1), got {self.lr_warmup_ratio}.")
        if self.lr_warmup_steps is not None and not 0 <= self.lr_warmup_steps <= self.max_train_steps:
            raise ValueError(
                f"lr_warmup_steps={self.lr_warmup_steps} must be in [0, max_train_steps={self.max_train_steps}]."
            )
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}.")

        if self.lr_scheduler not in SCHEDULER_NAMES:
            raise ValueError(f"lr_scheduler={self.lr_scheduler!r} is unknown; choose one of {sorted(SCHEDULER_NAMES)}.")
        if self.lr_scheduler == "piecewise_constant" and not self.lr_step_rules:
            raise ValueError("lr_scheduler=piecewise_constant needs lr_step_rules, e.g. '1:10000,0.5:20000,0.25'.")
        if not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1), got {self.ema_decay}.")
        if self.max_grad_norm is not None and self.max_grad_norm <= 0:
            raise ValueError(f"max_grad_norm must be > 0 or null (no clipping), got {self.max_grad_norm}.")
        if self.checkpoints_total_limit is not None and self.checkpoints_total_limit < 1:
            raise ValueError(f"checkpoints_total_limit must be >= 1 or null, got {self.checkpoints_total_limit}.")

        # data
        if not 0.0 <= self.synthetic_plain_fraction <= 1.0:
            raise ValueError(f"synthetic_plain_fraction must be in [0, 1], got {self.synthetic_plain_fraction}.")
        if self.train_data is None:
            raise ValueError("train_data is not set: give a local dataset folder or a Hub dataset id (--train_data).")
        if not Path(self.train_data).expanduser().exists() and not self.build_synthetic_data:
            if is_hub_id(self.train_data):
                if hub_offline():
                    raise ValueError(
                        f"train_data={self.train_data!r} is not a local path and looks like a Hub id, but "
                        "HF_HUB_OFFLINE is set. Point train_data at local shards, or set build_synthetic_data: "
                        "true to build the embedded synthetic set there."
                    )
            else:
                raise ValueError(
                    f"train_data={self.train_data!r} does not exist. Build the embedded data first "
                    "(`python -m muse_hf.data ...`) or set --build_synthetic_data true to build it there."
                )

        # init_from
        if self.init_from is not None and self.init_from not in produced_by_earlier_stage:
            path = Path(self.init_from).expanduser()
            if path.exists():
                if not (path / "config.json").is_file():
                    raise ValueError(
                        f"init_from={self.init_from!r} exists but has no config.json; it must be a folder written by "
                        "save_pretrained (e.g. a previous stage's output_dir)."
                    )
            elif not is_hub_id(self.init_from) or hub_offline():
                raise ValueError(
                    f"init_from={self.init_from!r} does not exist locally (and cannot be fetched from the Hub). Train "
                    "the stage that writes it first (e.g. the previous stage of the curriculum), or point init_from "
                    "at a save_pretrained folder."
                )

        # resume / output dir
        out = Path(self.output_dir).expanduser()
        if self.resume_from_checkpoint not in (None, "latest"):
            ckpt = Path(self.resume_from_checkpoint).expanduser()
            if not ckpt.is_dir():
                raise ValueError(
                    f"resume_from_checkpoint={self.resume_from_checkpoint!r} is not a folder; use 'latest' or a "
                    f"checkpoint-<step> folder under {out}."
                )
        if (
            out.is_dir()
            and any(out.iterdir())
            and not self.overwrite_output_dir
            and self.resume_from_checkpoint is None
        ):
            holds_run = any((out / m).exists() for m in RUN_MARKERS) or bool(list_checkpoints(out, complete_only=False))
            if holds_run:
                raise ValueError(
                    f"output_dir={str(out)!r} already holds another run. Pass --resume_from_checkpoint latest to "
                    "continue it, --overwrite_output_dir true to replace it, or choose a new --output_dir."
                )

        if self.push_to_hub:
            check_hub_access()

    def to_dict(self) -> dict[str, Any]:
        """All fields as a plain dict (YAML/JSON-safe)."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class TaskSpec:
    """Where a task's argument class and task class live (imported lazily)."""

    arguments: str
    task: str


TASK_REGISTRY: dict[str, TaskSpec] = {
    "tokenizer": TaskSpec(
        arguments="muse_hf.training.tokenizer.arguments:TokenizerTrainingArguments",
        task="muse_hf.training.tokenizer.task:TokenizerTask",
    ),
    # The unified-model stages (connector / DiT / instruction tuning) plug into the same loop.
    "umm": TaskSpec(
        arguments="muse_hf.training.umm.arguments:UMMTrainingArguments",
        task="muse_hf.training.umm.task:UMMTask",
    ),
}


def register_task(name: str, arguments: str, task: str) -> None:
    """Register a training task: ``arguments``/``task`` are ``"module:Class"`` import strings."""
    TASK_REGISTRY[name] = TaskSpec(arguments=arguments, task=task)


def import_string(path: str) -> Any:
    """Import ``"package.module:Name"``.

    Raises:
        ValueError: when the module or the name does not exist (e.g. a registered task not installed).
    """
    module, _, name = path.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except ModuleNotFoundError as err:
        if err.name is not None and module.startswith(err.name):
            raise ValueError(
                f"{path} is registered as a training task but {module} cannot be imported ({err})."
            ) from err
        raise
    except AttributeError as err:
        raise ValueError(f"{path} is registered as a training task but {module} has no {name!r}.") from err


# ---------------------------------------------------------------------------------------------- coercion
def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert ``value`` (from YAML or a CLI string) to the annotated type ``tp`` or raise ValueError."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in {"none", "null", "~"}):
            if type(None) in args:
                return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ValueError as err:
                errors.append(str(err))
        # Name what is allowed ("is not a valid Optional" named nothing): the one alternative's own message, or
        # every alternative.
        nullable = f" ({key} may also be null)" if type(None) in args else ""
        if len(errors) == 1:
            raise ValueError(errors[0] + nullable)
        options = " or ".join(_type_name(a) for a in args if a is not type(None))
        raise ValueError(f"{key}: {value!r} is not a valid {options}{nullable}")
    if origin is Literal:
        if value is None and None in args:
            return None
        if value in args:
            return value
        raise ValueError(f"{key}: {value!r} is not one of {list(args)}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"true", "1", "yes", "on"}:
            return True
        if isinstance(value, str) and value.lower() in {"false", "0", "no", "off"}:
            return False
        raise ValueError(f"{key}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ValueError(f"{key}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ValueError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, bool):
            raise ValueError(f"{key}: expected a number, got {value!r}")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ValueError(f"{key}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ValueError(f"{key}: expected a string, got {value!r}")
    if origin in (list, tuple):
        if isinstance(value, str):
            parsed = yaml.safe_load(value)
            value = parsed if isinstance(parsed, list) else [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            value = [value]
        item_type = args[0] if args else Any
        out = [_coerce(v, item_type, f"{key}[{i}]") for i, v in enumerate(value)]
        return out if origin is list else tuple(out)
    if origin is dict:
        if isinstance(value, str):
            value = yaml.safe_load(value)
        if not isinstance(value, dict):
            raise ValueError(f"{key}: expected a mapping, got {value!r}")
        value_type = args[1] if len(args) == 2 else Any
        return {str(k): _coerce(v, value_type, f"{key}.{k}") for k, v in value.items()}
    return value


def _set_dotted(raw: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = raw
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ValueError(f"--{dotted}: {part!r} is not a mapping")
        node = child
    node[parts[-1]] = value


def parse_cli(argv: list[str]) -> tuple[str | None, dict[str, str], str | None]:
    """Split ``--config PATH --stage NAME --key value ...`` into (config path, overrides, stage).

    ``--key=value`` works too; a bare ``--flag`` means ``true``.

    Raises:
        ValueError: for a stray positional value.
    """
    config: str | None = None
    stage: str | None = None
    overrides: dict[str, str] = {}
    i = 0
    while i < len(argv):
        token = argv[i]
        if not token.startswith("--"):
            raise ValueError(f"Unexpected argument {token!r}: use --key value (see --help).")
        key, eq, val = token[2:].partition("=")
        key = key.replace("-", "_") if key in {"overwrite-output-dir", "push-to-hub"} else key
        if not eq:
            if i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                val = argv[i + 1]
                i += 1
            else:
                val = "true"
        i += 1
        if key == "config":
            config = val
        elif key == "stage":
            stage = val
        else:
            overrides[key] = val
    return config, overrides, stage


def _check_override_keys(cls: type, overrides: dict[str, Any], stages: Any) -> None:
    """Reject an unknown ``--key`` (or ``--stages.<name>.<key>``) from the command line, naming it as such."""
    names = {f.name for f in dataclasses.fields(cls)}
    for key in overrides:
        parts = key.split(".")
        if parts[0] == "stages":
            if len(parts) < 3:
                raise ValueError(f"--{key}: use --stages.<stage name>.<argument> value.")
            if not isinstance(stages, dict) or parts[1] not in stages:
                known = sorted(stages) if isinstance(stages, dict) else []
                raise ValueError(f"--{key}: the config has no stage {parts[1]!r} (stages: {known}).")
            field_name = parts[2]
        else:
            field_name = parts[0]
        if field_name not in names:
            raise ValueError(
                f"Unknown argument --{key} on the command line: {_unknown_key_message(field_name, names)} is not an "
                f"argument of {cls.__name__}; see --help."
            )


def _build(cls: type[MuseTrainingArguments], raw: dict[str, Any], where: str) -> MuseTrainingArguments:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = [k for k in raw if k not in names]
    if unknown:
        hints_msg = [_unknown_key_message(k, names) for k in unknown]
        raise ValueError(
            f"Unknown key(s) {', '.join(hints_msg)} in {where} for {cls.__name__}. "
            f"Valid keys: {', '.join(sorted(names))}."
        )
    kwargs = {k: _coerce(v, hints[k], k) for k, v in raw.items()}
    return cls(**kwargs)


def load_stage_arguments(
    config: str | os.PathLike | dict[str, Any] | None,
    overrides: dict[str, Any] | None = None,
    stage: str | None = None,
    validate: bool = True,
) -> list[MuseTrainingArguments]:
    """Load a config (file or dict) plus overrides into one typed arguments object per stage.

    Args:
        config: YAML path or an already-parsed mapping (None: defaults + overrides only).
        overrides: ``{"key": value}`` or ``{"stages.stage1.key": value}``; CLI strings are coerced to the
            field's type.
        stage: Run only this stage of a curriculum (its ``init_from`` still points at the previous stage's
            output unless set).
        validate: Run :meth:`MuseTrainingArguments.validate` on every stage.

    Returns:
        The stages, in order (a config without ``stages`` gives one).

    Raises:
        ValueError: unknown keys, bad types or values, unknown stage, missing files.
    """
    if config is None:
        raw: dict[str, Any] = {}
        where = "the overrides"
    elif isinstance(config, dict):
        raw = dict(config)
        where = "the given config"
    else:
        path = Path(config)
        if not path.is_file():
            raise ValueError(f"Config file {str(path)!r} does not exist.")
        loaded = yaml.safe_load(path.read_text())
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ValueError(f"Config file {str(path)!r} must hold a mapping of argument names to values.")
        raw = loaded
        where = str(path)
    raw = {k: (dict(v) if isinstance(v, dict) else v) for k, v in raw.items()}
    if isinstance(raw.get("stages"), dict):
        raw["stages"] = {k: dict(v or {}) for k, v in raw["stages"].items()}
    task = str((overrides or {}).get("task", raw.get("task", "tokenizer")))
    if task not in TASK_REGISTRY:
        raise ValueError(f"task={task!r} in {where} is unknown; choose one of {sorted(TASK_REGISTRY)}.")
    cls = import_string(TASK_REGISTRY[task].arguments)
    _check_override_keys(cls, overrides or {}, raw.get("stages"))
    for key, value in (overrides or {}).items():
        _set_dotted(raw, key, value)
    # A plain ``--key value`` from the command line also wins over a stage's own value.
    # (output_dir / init_from are per stage: the former is the curriculum's root, the latter chains stages
    # and is taken from the command line only for the stage picked with --stage.)
    top_level = {
        k: raw[k] for k in (overrides or {}) if "." not in k and k not in ("stages", "output_dir", "init_from")
    }

    stages_raw = raw.pop("stages", None)
    if stages_raw is None:
        if stage is not None:
            raise ValueError(f"--stage {stage} was given but {where} defines no stages.")
        args_list = [_build(cls, raw, where)]
    else:
        if not isinstance(stages_raw, dict) or not stages_raw:
            raise ValueError(f"'stages' in {where} must be a non-empty mapping of stage name -> overrides.")
        base_out = str(raw.get("output_dir", MuseTrainingArguments.output_dir))
        args_list = []
        previous_out: str | None = None
        for name, stage_raw in stages_raw.items():
            merged = {**raw, **stage_raw, **top_level, "stage_name": name}
            merged.setdefault("output_dir", base_out)
            if "output_dir" not in stage_raw:
                merged["output_dir"] = str(Path(base_out) / name)
            if "init_from" in (overrides or {}) and stage == name:
                merged["init_from"] = raw["init_from"]
            elif "init_from" not in stage_raw and previous_out is not None:
                merged["init_from"] = previous_out
            args = _build(cls, merged, f"{where} (stage {name!r})")
            args_list.append(args)
            previous_out = args.output_dir
        if stage is not None:
            names = [a.stage_name for a in args_list]
            if stage not in names:
                raise ValueError(f"--stage {stage!r} is not in {where}; stages are {names}.")
            args_list = [a for a in args_list if a.stage_name == stage]

    if validate:
        produced: set[str] = set()
        for args in args_list:
            args.validate(frozenset(produced))
            produced.add(args.output_dir)
            if args.build_synthetic_data and args.train_data:
                produced.add(args.train_data)
    return args_list


def parse_args(argv: list[str] | None = None) -> list[MuseTrainingArguments]:
    """Parse ``examples/train.py`` command-line arguments into validated stage arguments."""
    argv = sys.argv[1:] if argv is None else argv
    config, overrides, stage = parse_cli(argv)
    return load_stage_arguments(config, overrides, stage=stage)


def __getattr__(name: str) -> Any:
    # TokenizerTrainingArguments lives with its task in muse_hf.training.tokenizer.arguments.
    moved = {"TokenizerTrainingArguments": "muse_hf.training.tokenizer.arguments:TokenizerTrainingArguments"}
    return moved_attribute(__name__, name, moved)
