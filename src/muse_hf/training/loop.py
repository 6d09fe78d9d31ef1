"""The shared Accelerate training loop (outline of diffusers' ``train_*.py`` examples).

``train(args)`` runs one stage of any registered :class:`~muse_hf.training.task.TrainingTask`;
``run_stages(stages)`` chains a curriculum, each stage starting from the previous one's saved model.

Size: one responsibility, the shared training loop (set-up, steps, checkpoints and resume, logging, the final save).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import sys
import time
import typing
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState, PartialState
from accelerate.utils import (
    DistributedDataParallelKwargs,
    DistributedType,
    ProjectConfiguration,
    send_to_device,
    set_seed,
)
from tqdm.auto import tqdm

from muse_hf.data import build_shapes_dataset
from muse_hf.data.shapes import built_settings
from muse_hf.hub import push_to_hub
from muse_hf.training.arguments import (
    TASK_REGISTRY,
    MuseTrainingArguments,
    import_string,
    load_stage_arguments,
    parse_cli,
)
from muse_hf.training.checkpointing import (
    CheckpointError,
    checkpoint_step,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from muse_hf.training.optim import (
    build_ema,
    build_lr_scheduler,
    build_optimizer,
    ema_tensors,
    group_grad_norms,
    load_ema_tensors,
)
from muse_hf.training.task import TrainingTask

__all__ = [
    "TrainResult",
    "TrainingDivergedError",
    "ResumeError",
    "train",
    "run_stages",
    "main",
    "build_task",
    "end_distributed",
]

logger = logging.getLogger(__name__)

SUMMARY_FILE = "training_summary.json"
ARGS_FILE = "training_args.yaml"


class TrainingDivergedError(RuntimeError):
    """Raised when ``max_consecutive_nonfinite`` steps in a row had a non-finite loss or gradient."""


@dataclass
class TrainResult:
    """Outcome of one stage.

    Attributes:
        output_dir: The stage's output dir (holds the final ``save_pretrained`` folder).
        global_step: Optimizer steps done (including those before a resume).
        history: Per-step local logs of the steps run in this process (``{"step", "loss", "loss/<obj>"...}``).
        nonfinite_steps: Steps skipped because of a non-finite loss or gradient.
        skipped_samples: Undecodable / invalid samples the data stream skipped (this process).
        resumed_from: The checkpoint resumed from, if any.
        metrics: Final evaluation metrics (empty when evaluation is off).
        wall_time_s: Wall time of this call.
    """

    output_dir: str
    global_step: int
    history: list[dict[str, float]] = field(default_factory=list)
    nonfinite_steps: int = 0
    skipped_samples: int = 0
    resumed_from: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    wall_time_s: float = 0.0


def build_task(args: MuseTrainingArguments) -> TrainingTask:
    """Instantiate the task registered for ``args.task``."""
    return import_string(TASK_REGISTRY[args.task].task)(args)


def _tracker_config(args: MuseTrainingArguments) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in args.to_dict().items():
        out[key] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return out


def _build_accelerator(args: MuseTrainingArguments) -> Any:
    """This stage's ``Accelerator``, built from this stage's arguments.

    accelerate keeps its settings (mixed precision, the FSDP/DeepSpeed plugin, the accumulation plugin) in
    process-wide singletons that refuse a second, different value (a curriculum whose stage 2 asks for bf16 after
    a stage 1 in fp32 failed with "AcceleratorState has already been initialized"). Each stage therefore forgets
    the previous stage's ``AcceleratorState`` / ``GradientState`` first; ``PartialState`` - the process group and
    this process's rank/device - is kept and shared by every stage of the run.
    """
    # accelerate has no public reset; its own test suite resets these between Accelerators the same way.
    AcceleratorState._reset_state(reset_partial_state=False)
    GradientState._reset_state()
    log_with = None if args.report_to in ("none", "", None) else [t.strip() for t in args.report_to.split(",")]
    project_config = ProjectConfiguration(project_dir=args.output_dir, logging_dir=str(Path(args.output_dir) / "logs"))
    return Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=log_with,
        project_config=project_config,
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=args.ddp_find_unused_parameters)],
    )


def _all_finite(accelerator: Any, losses: dict[str, torch.Tensor]) -> bool:
    """True when every loss is finite on every process (one tiny all-reduce, so all ranks agree)."""
    bad = torch.zeros((), device=accelerator.device)
    for loss in losses.values():
        bad = torch.maximum(bad, (~torch.isfinite(loss.detach())).any().to(bad.dtype))
    if accelerator.num_processes > 1:
        bad = accelerator.reduce(bad, reduction="sum")
    return bool(bad.item() == 0)


def is_sharded(accelerator: Any) -> bool:
    return accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)


def _clip_gradients(
    accelerator: Any,
    trainable: dict[str, list[torch.nn.Parameter]],
    stepped: list[str],
    main: str,
    max_norm: float | None,
    grad_groups: dict[str, list[torch.nn.Parameter]],
    want_group_norms: bool,
) -> tuple[float | None, dict[str, torch.Tensor]]:
    """Unscale (fp16), measure per-group norms, clip each stepped module; returns (main module's total
    pre-clip norm, group norms)."""
    limit = max_norm if max_norm is not None else math.inf
    group_norms: dict[str, torch.Tensor] = {}
    total: float | None = None
    if is_sharded(accelerator):
        # FSDP / DeepSpeed own unscaling and clipping (single-module tasks only; group norms are per shard).
        if want_group_norms and accelerator.scaler is None:
            group_norms = group_grad_norms(grad_groups)
        norm = accelerator.clip_grad_norm_(trainable[main], limit)
        return (float(norm) if norm is not None else None), group_norms
    accelerator.unscale_gradients()  # no-op unless fp16 AMP; once for all optimizers
    if want_group_norms:
        group_norms = group_grad_norms(grad_groups)
    for name in stepped:
        norm = torch.nn.utils.clip_grad_norm_(trainable[name], limit)
        if name == main:
            total = float(norm)
    return total, group_norms


def _prepare_output_dir(args: MuseTrainingArguments, accelerator: Any) -> None:
    out = Path(args.output_dir)
    if accelerator.is_main_process:
        if args.overwrite_output_dir and out.exists() and args.resume_from_checkpoint is None:
            shutil.rmtree(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / ARGS_FILE).write_text(yaml.safe_dump(args.to_dict(), sort_keys=False))
    accelerator.wait_for_everyone()


def _maybe_build_data(args: MuseTrainingArguments, accelerator: Any) -> None:
    if not args.build_synthetic_data or args.train_data is None:
        return
    if Path(args.train_data).exists():
        built = (built_settings(args.train_data) or {}).get("plain_fraction", 0.0)
        if accelerator.is_main_process and built != args.synthetic_plain_fraction:
            logger.warning(
                "%s was built with plain_fraction=%s but this stage asks for synthetic_plain_fraction=%s; the existing "
                "set is used as it is. Point train_data at a new folder to build one with the requested share.",
                args.train_data, built, args.synthetic_plain_fraction,
            )  # fmt: skip
        return
    if accelerator.is_main_process:
        logger.info("Building the embedded synthetic scenes set in %s", args.train_data)
        build_shapes_dataset(
            args.train_data,
            num_train=args.synthetic_num_train,
            num_val=args.synthetic_num_val,
            image_size=args.resolution,
            seed=args.synthetic_seed,
            plain_fraction=args.synthetic_plain_fraction,
        )
    accelerator.wait_for_everyone()


def train(args: MuseTrainingArguments, task: TrainingTask | None = None) -> TrainResult:
    """Run one training stage.

    Args:
        args: Validated stage arguments.
        task: The task (default: the one registered for ``args.task``); tests pass instrumented tasks.

    Returns:
        :class:`TrainResult`.

    Raises:
        TrainingDivergedError: after ``max_consecutive_nonfinite`` non-finite steps in a row; the newest
            checkpoint on disk is the last good one.
    """
    start_time = time.perf_counter()
    accelerator = _build_accelerator(args)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    if not accelerator.is_main_process:
        logging.getLogger("muse_hf").setLevel(logging.WARNING)
    _prepare_output_dir(args, accelerator)
    _maybe_build_data(args, accelerator)
    set_seed(args.seed)

    task = task or build_task(args)
    task.build(accelerator)
    modules = task.modules()
    names = list(modules)
    betas = (args.adam_beta1, args.adam_beta2)
    optimizers = {
        name: build_optimizer(
            task.param_groups(name, mod), args.learning_rate, betas, args.adam_epsilon, args.weight_decay
        )
        for name, mod in modules.items()
    }
    warmup = (
        args.lr_warmup_steps if args.lr_warmup_steps is not None else int(args.lr_warmup_ratio * args.max_train_steps)
    )
    # A prepared scheduler steps once per process per optimizer step (diffusers examples scale the same way).
    schedulers = {
        name: build_lr_scheduler(
            args.lr_scheduler,
            opt,
            num_warmup_steps=warmup * accelerator.num_processes,
            num_training_steps=args.max_train_steps * accelerator.num_processes,
            min_lr_ratio=args.min_lr_ratio,
            step_rules=args.lr_step_rules,
        )
        for name, opt in optimizers.items()
    }
    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        # No dataloader is prepared (the stream is per process), so DeepSpeed cannot infer the micro-batch.
        accelerator.state.deepspeed_plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = args.train_batch_size
    prepared = accelerator.prepare(*modules.values(), *optimizers.values(), *schedulers.values())
    n = len(names)
    p_modules = dict(zip(names, prepared[:n], strict=True))
    p_optimizers = dict(zip(names, prepared[n : 2 * n], strict=True))
    p_schedulers = dict(zip(names, prepared[2 * n :], strict=True))

    ema_target = task.ema_module() if args.use_ema else None
    ema = None
    if ema_target is not None:
        ema = build_ema(ema_target, args.ema_decay, args.ema_update_after_step, args.ema_use_warmup, args.ema_power)
        ema.to(accelerator.device)

    if is_sharded(accelerator) and len(names) > 1:
        raise ValueError(
            f"This stage trains {len(names)} modules ({names}, e.g. a GAN discriminator); FSDP/DeepSpeed runs "
            "support one. Use DDP (configs/accelerate/ddp_8gpu.yaml) or set gan_weight 0."
        )
    stream = task.train_stream(accelerator)
    grad_groups = task.grad_norm_groups()
    trainable = {name: [p for p in mod.parameters() if p.requires_grad] for name, mod in modules.items()}

    # ------------------------------------------------------------------ resume
    global_step = 0
    nonfinite_total = 0
    resumed_from: str | None = None
    if args.resume_from_checkpoint is not None:
        path = (
            latest_checkpoint(args.output_dir)
            if args.resume_from_checkpoint == "latest"
            else Path(args.resume_from_checkpoint)
        )
        if path is None:
            accelerator.print(f"No complete checkpoint in {args.output_dir}; starting a new run.")
        else:
            loaded = load_checkpoint(accelerator, path)
            state = loaded["training_state"]
            global_step = int(state["step"])
            nonfinite_total = int(state.get("nonfinite_steps", 0))
            if loaded["process_state"] is not None and "data" in loaded["process_state"]:
                stream.load_state_dict(loaded["process_state"]["data"])
            if ema is not None:
                if "ema" in loaded["tensors"]:
                    load_ema_tensors(ema, ema_target, loaded["tensors"]["ema"])
                else:
                    logger.warning("Checkpoint %s has no EMA weights; EMA restarts from the current weights.", path)
            resumed_from = str(path)
            accelerator.print(f"Resumed from {path} at step {global_step}.")
            saved_total = state.get("max_train_steps")
            if saved_total != args.max_train_steps:
                # An extended (or shortened) run: the restored schedules continue on the new total's curve.
                _follow_new_schedule(p_schedulers)
                accelerator.print(
                    f"The checkpoint's run was {saved_total if saved_total is not None else 'of unknown length'} "
                    f"steps long, this one is {args.max_train_steps}: the learning-rate schedule is the one of a "
                    f"{args.max_train_steps}-step run, continued from step {global_step} (see docs/recovery.md)."
                )
            if global_step >= args.max_train_steps:
                accelerator.print(
                    f"The checkpoint is at step {global_step} and max_train_steps is {args.max_train_steps}: "
                    "nothing left to train; writing the final model from it."
                )

    if accelerator.is_main_process:
        accelerator.init_trackers(args.tracker_project_name, config=_tracker_config(args))

    last_saved_step = global_step if resumed_from is not None else -1

    def checkpoint(step: int) -> None:
        nonlocal last_saved_step
        tensors = {"ema": ema_tensors(ema, ema_target)} if ema is not None else None
        last_saved_step = step
        save_checkpoint(
            accelerator,
            args.output_dir,
            step,
            training_state={
                "nonfinite_steps": nonfinite_total,
                "stage": args.stage_name,
                "max_train_steps": args.max_train_steps,
            },
            process_state={"data": stream.state_dict()},
            tensors=tensors,
            total_limit=args.checkpoints_total_limit,
        )

    # ------------------------------------------------------------------ loop
    total_batch = args.train_batch_size * accelerator.num_processes * args.gradient_accumulation_steps
    accelerator.print(
        f"***** stage {args.stage_name}: {args.max_train_steps} steps, total batch {total_batch} "
        f"({accelerator.num_processes} processes x {args.train_batch_size} x {args.gradient_accumulation_steps} accumulation) *****"
    )
    progress = tqdm(
        total=args.max_train_steps,
        initial=global_step,
        desc=f"{args.stage_name}",
        disable=not accelerator.is_local_main_process,
    )
    history: deque[dict[str, float]] = deque(maxlen=100_000)
    data_iter = iter(stream)
    consecutive_nonfinite = 0
    window: dict[str, list[float]] = {}
    window_samples = 0
    window_start = time.perf_counter()
    log_file = Path(args.output_dir) / "logs" / "train_log.jsonl"
    micro = 0

    while global_step < args.max_train_steps:
        step_logs: dict[str, float] = {}
        poisoned = False
        grad_norm_total: float | None = None
        group_norms: dict[str, torch.Tensor] = {}
        for _ in range(args.gradient_accumulation_steps):
            batch = send_to_device(next(data_iter), accelerator.device)
            micro += 1
            with accelerator.accumulate(*p_modules.values()):
                out = task.training_step(p_modules, batch, global_step)
                finite = _all_finite(accelerator, out.losses)
                if finite and not poisoned:
                    for loss in out.losses.values():
                        accelerator.backward(loss)
                else:
                    poisoned = True
                for key, value in out.logs.items():
                    v = float(value.detach().float().item()) if isinstance(value, torch.Tensor) else float(value)
                    step_logs[key] = step_logs.get(key, 0.0) + v / args.gradient_accumulation_steps
                window_samples += out.num_samples

                if accelerator.sync_gradients and not poisoned:
                    log_now = (global_step + 1) % args.logging_steps == 0
                    grad_norm_total, group_norms = _clip_gradients(
                        accelerator,
                        trainable,
                        list(out.losses),
                        names[0],
                        args.max_grad_norm,
                        grad_groups,
                        log_now,
                    )
                    if (
                        grad_norm_total is not None
                        and not math.isfinite(grad_norm_total)
                        and accelerator.scaler is None
                    ):
                        poisoned = True  # non-finite gradient with a finite loss: skip as well
                if accelerator.sync_gradients and not poisoned:
                    for name in out.losses:
                        p_optimizers[name].step()
                        p_schedulers[name].step()
                for opt in p_optimizers.values():
                    opt.zero_grad(set_to_none=True)

        if poisoned:
            nonfinite_total += 1
            consecutive_nonfinite += 1
            accelerator.print(
                f"step {global_step + 1}: non-finite loss/gradient, step skipped ({consecutive_nonfinite} in a row)"
            )
            accelerator.log({"train/nonfinite_steps": nonfinite_total}, step=global_step)
            if consecutive_nonfinite >= args.max_consecutive_nonfinite:
                progress.close()
                _finish_trackers(accelerator)
                last = latest_checkpoint(args.output_dir)
                raise TrainingDivergedError(
                    f"{consecutive_nonfinite} consecutive steps had a non-finite loss or gradient (stage "
                    f"{args.stage_name}, step {global_step}). Stopped; the last good checkpoint is "
                    f"{last if last else 'none (no checkpoint was written yet)'}. Lower the learning rate or "
                    "check the data, then resume with --resume_from_checkpoint latest."
                )
            continue
        consecutive_nonfinite = 0
        if ema is not None:
            ema.step(ema_target.parameters())
        global_step += 1
        progress.update(1)
        record = {"step": float(global_step), **step_logs}
        history.append(record)
        for key, value in step_logs.items():
            window.setdefault(key, []).append(value)

        if global_step % args.logging_steps == 0 or global_step == args.max_train_steps:
            elapsed = max(time.perf_counter() - window_start, 1e-9)
            keys = sorted(window)
            means = torch.tensor([sum(window[k]) / len(window[k]) for k in keys], device=accelerator.device)
            counters = torch.tensor([float(window_samples), float(stream.num_skipped)], device=accelerator.device)
            if accelerator.num_processes > 1:
                means = accelerator.reduce(means, reduction="mean")
                counters = accelerator.reduce(counters, reduction="sum")
            logs: dict[str, float] = {k: float(v) for k, v in zip(keys, means.tolist(), strict=True)}
            logs["train/samples_per_s"] = float(counters[0]) / elapsed
            logs["train/skipped_samples"] = float(counters[1])
            logs["train/nonfinite_steps"] = float(nonfinite_total)
            for name, sched in p_schedulers.items():
                for group, lr in zip(p_optimizers[name].param_groups, sched.get_last_lr(), strict=False):
                    logs[f"lr/{name}.{group.get('name', '')}"] = float(lr)
            if grad_norm_total is not None:
                logs["grad_norm/total"] = grad_norm_total
            for key, value in group_norms.items():
                logs[f"grad_norm/{key}"] = float(value)
            accelerator.log(logs, step=global_step)
            if accelerator.is_main_process:
                log_file.parent.mkdir(parents=True, exist_ok=True)
                with open(log_file, "a") as fh:
                    fh.write(json.dumps({"step": global_step, "stage": args.stage_name, **logs}) + "\n")
            progress.set_postfix({k: f"{v:.4g}" for k, v in logs.items() if k == "loss" or k.startswith("loss/")})
            window, window_samples, window_start = {}, 0, time.perf_counter()

        if global_step % args.checkpointing_steps == 0:
            checkpoint(global_step)

    progress.close()
    if global_step != last_saved_step:
        # The last step always has a checkpoint, so a finished stage can be extended exactly (optimizer, EMA,
        # data position): --resume_from_checkpoint latest --max_train_steps <more>.
        checkpoint(global_step)

    # ------------------------------------------------------------------ final output
    out_dir = Path(args.output_dir)
    if ema is not None:
        ema.store(ema_target.parameters())
        ema.copy_to(ema_target.parameters())
    task.save_pretrained(accelerator, p_modules, out_dir)
    if ema is not None:
        ema.restore(ema_target.parameters())
    accelerator.wait_for_everyone()

    skipped = torch.tensor([float(stream.num_skipped)], device=accelerator.device)
    if accelerator.num_processes > 1:
        skipped = accelerator.reduce(skipped, reduction="sum")
    metrics: dict[str, float] = {}
    summary: dict[str, Any] = {
        "stage": args.stage_name,
        "task": args.task,
        "global_step": global_step,
        "nonfinite_steps": nonfinite_total,
        "skipped_samples": int(skipped.item()),
        "num_processes": accelerator.num_processes,
        "mixed_precision": str(accelerator.mixed_precision),
        "total_batch_size": total_batch,
        "resumed_from": resumed_from,
        "wall_time_s": time.perf_counter() - start_time,
        "ema": bool(args.use_ema),
    }
    if accelerator.is_main_process:
        metrics = task.evaluate(out_dir)
        summary["metrics"] = metrics
        try:
            task.write_model_card(out_dir, metrics, summary)
        except Exception as err:  # noqa: BLE001 - a card problem must not lose a finished training
            logger.warning("The model card for %s was not written: %s: %s", out_dir, type(err).__name__, err)
        (out_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
        if args.push_to_hub:
            _push_to_hub(args, out_dir, summary)
    accelerator.wait_for_everyone()
    _finish_trackers(accelerator)  # not end_training(): it destroys the process group the next stage needs
    result = TrainResult(
        output_dir=str(out_dir),
        global_step=global_step,
        history=list(history),
        nonfinite_steps=nonfinite_total,
        skipped_samples=int(stream.num_skipped),
        resumed_from=resumed_from,
        metrics=metrics,
        wall_time_s=time.perf_counter() - start_time,
    )
    accelerator.free_memory()
    return result


def _follow_new_schedule(schedulers: dict[str, Any]) -> None:
    """Set each optimizer's learning rates from its (rebuilt) schedule at the restored step.

    ``load_state`` restores a schedule's step counter and the optimizer's learning rates as the checkpoint's run
    left them; the schedule itself is rebuilt from this run's ``max_train_steps``. Without this the first step
    after extending a finished stage would still use the old schedule's final (e.g. zero) learning rate.
    """
    for prepared in schedulers.values():
        sched = getattr(prepared, "scheduler", prepared)  # accelerate's AcceleratedScheduler wraps it
        lambdas = getattr(sched, "lr_lambdas", None)
        if lambdas is None:  # not a LambdaLR: leave it as restored
            continue
        for group, base, fn in zip(sched.optimizer.param_groups, sched.base_lrs, lambdas, strict=True):
            group["lr"] = base * fn(sched.last_epoch)


def _finish_trackers(accelerator: Any) -> None:
    """End this stage's trackers (TensorBoard, W&B, ...); the process group stays up for the next stage."""
    for tracker in accelerator.trackers:
        tracker.finish()


def end_distributed() -> None:
    """Tear the process group down once, after the last stage (a no-op outside distributed runs)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        PartialState().destroy_process_group()


def _push_to_hub(args: MuseTrainingArguments, out_dir: Path, summary: dict[str, Any]) -> None:
    repo_id = args.hub_model_id or f"{Path(args.output_dir).resolve().parent.name}-{out_dir.name}"
    url = push_to_hub(
        out_dir,
        repo_id,
        private=args.hub_private,
        commit_message=f"muse_hf: {args.task} {args.stage_name}, {summary['global_step']} steps",
        settings={k: v for k, v in summary.items() if k != "metrics"},
    )
    logger.info("Pushed %s to %s", out_dir, url)


def is_stage_complete(output_dir: str | os.PathLike) -> bool:
    """Whether a stage's output dir holds a finished run (its summary is written last)."""
    return (Path(output_dir) / SUMMARY_FILE).is_file()


class ResumeError(ValueError):
    """A finished stage cannot be continued as asked (the message says why and what to run instead)."""


def _say(message: str) -> None:
    """Print once per launch (rank 0 of ``accelerate launch`` / ``torchrun``, or the only process)."""
    if os.environ.get("RANK", "0") == "0":
        print(message, flush=True)


def run_stages(stages: Sequence[MuseTrainingArguments]) -> list[TrainResult]:
    """Run a curriculum in order.

    With ``resume_from_checkpoint`` set, an interrupted stage resumes from its newest complete checkpoint; a
    finished stage is skipped (saying so), unless its ``max_train_steps`` is now larger than the steps it ran:
    then it continues from its last checkpoint to the new total (the learning-rate schedule becomes the new
    total's, see ``docs/recovery.md``). Later stages that already finished are not re-run.

    Raises:
        ResumeError: a finished stage should be extended but holds no checkpoint to continue from.
    """
    results = []
    for args in stages:
        if args.resume_from_checkpoint is not None and is_stage_complete(args.output_dir):
            summary = json.loads((Path(args.output_dir) / SUMMARY_FILE).read_text())
            done = int(summary["global_step"])
            if done >= args.max_train_steps:
                steps_flag = "--max_train_steps" if len(stages) == 1 else f"--stages.{args.stage_name}.max_train_steps"
                _say(
                    f"Stage {args.stage_name} already finished in {args.output_dir} ({done} steps); skipping it. "
                    f"To train it further, rerun with --resume_from_checkpoint latest {steps_flag} N (N > {done})."
                )
                results.append(
                    TrainResult(
                        output_dir=args.output_dir,
                        global_step=done,
                        metrics=summary.get("metrics", {}),
                    )
                )
                continue
            last = latest_checkpoint(args.output_dir)
            if last is None:
                raise ResumeError(
                    f"Stage {args.stage_name} finished in {args.output_dir} after {done} steps and "
                    f"max_train_steps is now {args.max_train_steps}, but that folder holds no complete checkpoint "
                    "to continue from (deleted, or written before final checkpoints existed). Start a new stage "
                    f"from its model instead: --init_from {args.output_dir} --output_dir <new folder> "
                    f"--max_train_steps {args.max_train_steps - done}."
                )
            redo = (
                f" (steps {checkpoint_step(last) + 1}..{done} are trained again)"
                if checkpoint_step(last) < done
                else ""
            )
            _say(
                f"Stage {args.stage_name} finished at {done} steps; continuing it to {args.max_train_steps} from "
                f"{last}{redo}."
            )
        results.append(train(args))
    return results


def main(argv: list[str] | None = None) -> int:
    """``examples/train.py`` / ``muse-hf train``: parse, validate, run every stage.

    Returns:
        Process exit code (0 success, 1 diverged, 2 bad arguments).
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    if any(a in ("-h", "--help") for a in argv):
        _print_help(argv)
        return 0
    try:
        config, overrides, stage = parse_cli(argv)
        stages = load_stage_arguments(config, overrides, stage=stage)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        run_stages(stages)
    except TrainingDivergedError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except (ResumeError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        end_distributed()
    return 0


def _print_help(argv: list[str]) -> None:
    task = "tokenizer"
    config, overrides, _ = parse_cli([a for a in argv if a not in ("-h", "--help")])
    if config and Path(config).is_file():
        task = str((yaml.safe_load(Path(config).read_text()) or {}).get("task", task))
    task = overrides.get("task", task)
    cls = import_string(TASK_REGISTRY[task].arguments)
    hints = typing.get_type_hints(cls)
    print(
        "usage: accelerate launch examples/train.py --config CONFIG.yaml [--stage NAME] [--key value ...]\n\n"
        f"Arguments of task {task!r} ({cls.__name__}); dotted keys reach into mappings "
        "(--stages.stage1.max_train_steps 10, --model_overrides.grad_scale 0.5):\n"
    )
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        hint = hints[f.name]
        type_name = hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")
        print(f"  --{f.name:<28} {type_name:<34} default: {default!r}")
