"""Training loop tests: argument validation, crash-safe checkpoints, per-stage parameter sets, exact resume,
non-finite skipping and a SIGKILL during ``save_state`` - all with a test-sized tokenizer on CPU."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from conftest import TINY_TEST_OVERRIDES
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def shapes_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from muse_hf.data import build_shapes_dataset

    out = tmp_path_factory.mktemp("shapes") / "shapes-32"
    build_shapes_dataset(out, num_train=48, num_val=8, image_size=32, seed=0)
    return out


def _config(out: Path, data: Path, **overrides: Any) -> dict[str, Any]:
    """A test-sized single-stage tokenizer config (32 px, hidden 32, MiniLM-sized semantic head)."""
    model = {k: (dict(v) if isinstance(v, dict) else v) for k, v in TINY_TEST_OVERRIDES.items()}
    model["semantic_dim"] = 384  # the packaged all-MiniLM-L6-v2
    cfg: dict[str, Any] = {
        "task": "tokenizer",
        "output_dir": str(out),
        "train_data": str(data),
        "resolution": 32,
        "model_overrides": model,
        "train_batch_size": 4,
        "learning_rate": 1e-3,
        "weight_decay": 0.05,  # decay would move parameters that are in the optimizer without a gradient
        "lr_warmup_ratio": 0.0,
        "shuffle_buffer_size": 0,
        "topology_weight": 0.5,
        "semantic_weight": 0.0,
        "reconstruction_weight": 1.0,
        "logging_steps": 1,
        "checkpointing_steps": 1000,
        "report_to": "none",
        "max_train_steps": 1,
        "seed": 0,
    }
    cfg.update(overrides)
    return cfg


def _stage(cfg: dict[str, Any], **overrides: Any):
    from muse_hf.training.arguments import load_stage_arguments

    return load_stage_arguments(cfg, overrides or None)[0]


# ------------------------------------------------------------------------------------------------ arguments
def test_arguments_yaml_cli_and_stage_chaining(tmp_path: Path, shapes_dir: Path) -> None:
    from muse_hf.training.arguments import load_stage_arguments, parse_cli

    cfg = _config(tmp_path / "run", shapes_dir)
    cfg["stages"] = {"stage1": {"max_train_steps": 3}, "stage2": {"semantic_weight": 0.5}}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    config, overrides, stage = parse_cli(
        ["--config", str(path), "--learning_rate", "2e-4", "--stages.stage2.max_train_steps=7", "--use_ema"]
    )
    stages = load_stage_arguments(config, overrides, stage=stage)
    assert [s.stage_name for s in stages] == ["stage1", "stage2"]
    assert stages[0].output_dir == str(tmp_path / "run" / "stage1")
    assert stages[1].init_from == stages[0].output_dir  # stage 2 starts from stage 1's saved model
    assert stages[0].init_from is None
    assert stages[0].learning_rate == pytest.approx(2e-4) and isinstance(stages[0].learning_rate, float)
    assert (stages[0].max_train_steps, stages[1].max_train_steps) == (3, 7)
    assert stages[1].semantic_weight == 0.5 and stages[0].semantic_weight == 0.0
    assert stages[0].use_ema is True
    only = load_stage_arguments(config, overrides, stage="stage2", validate=False)
    assert len(only) == 1 and only[0].init_from == stages[0].output_dir
    with pytest.raises(ValueError, match="Train the stage that writes it first"):  # stage 1 has not run yet
        load_stage_arguments(config, overrides, stage="stage2")
    # A plain --key on the command line wins over a stage's own value; --init_from only for the picked stage.
    short = load_stage_arguments(config, {"max_train_steps": "2"}, validate=False)
    assert [s.max_train_steps for s in short] == [2, 2]
    assert short[1].output_dir == stages[1].output_dir
    picked = load_stage_arguments(config, {"init_from": str(tmp_path)}, stage="stage2", validate=False)
    assert picked[0].init_from == str(tmp_path)
    with pytest.raises(ValueError, match="the config has no stage 'stage9'"):
        load_stage_arguments(config, {"stages.stage9.max_train_steps": "3"})
    with pytest.raises(ValueError, match="Unknown argument --learnig_rate on the command line"):
        load_stage_arguments(config, {"learnig_rate": "3"})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"learnig_rate": 1e-3}, "did you mean 'learning_rate'"),
        ({"max_train_steps": "ten"}, "max_train_steps: expected an integer"),
        ({"mixed_precision": "fp8"}, r"mixed_precision: 'fp8' is not one of \['no', 'fp16', 'bf16'\]"),
        ({"model_overrides": {"routnig": "shared"}}, r"'routnig' \(did you mean 'routing'\?\) for model_overrides"),
        ({"train_data": "/nonexistent/shapes"}, "does not exist"),
        ({"lr_scheduler": "cosine_forever"}, "lr_scheduler='cosine_forever' is unknown"),
        ({"model_preset": "muse-9b"}, "model_preset='muse-9b' is unknown"),
        ({"gan_weight": 0.1, "reconstruction_weight": 0.0}, "gan_weight > 0 needs reconstruction_weight"),
    ],
)
def test_arguments_reject_bad_values(tmp_path: Path, shapes_dir: Path, overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _stage(_config(tmp_path / "run", shapes_dir, **overrides))


def test_arguments_refuse_output_dir_of_another_run(tmp_path: Path, shapes_dir: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "training_args.yaml").write_text("task: tokenizer\n")
    with pytest.raises(ValueError, match="already holds another run"):
        _stage(_config(out, shapes_dir))
    assert _stage(_config(out, shapes_dir, resume_from_checkpoint="latest")).resume_from_checkpoint == "latest"
    assert _stage(_config(out, shapes_dir, overwrite_output_dir=True)).overwrite_output_dir


def test_push_to_hub_fails_fast_offline(tmp_path: Path, shapes_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(ValueError, match="--push_to_hub was given but the Hub cannot be reached"):
        _stage(_config(tmp_path / "run", shapes_dir, push_to_hub=True))
    assert time.perf_counter() - start < 5.0
    assert not (tmp_path / "run").exists()  # nothing was created before failing


# ------------------------------------------------------------------------------------------------ checkpoints
def test_checkpoints_atomic_rotation_and_latest(tmp_path: Path) -> None:
    from accelerate import Accelerator

    from muse_hf.training.checkpointing import (
        COMPLETE_MARKER,
        latest_checkpoint,
        list_checkpoints,
        load_checkpoint,
        save_checkpoint,
    )

    accelerator = Accelerator(cpu=True)
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    model, opt = accelerator.prepare(model, opt)
    for step in (1, 2, 3):
        with torch.no_grad():
            model.weight.fill_(float(step))
        save_checkpoint(
            accelerator,
            tmp_path,
            step,
            {"note": step},
            {"data": {"pos": step}},
            {"ema": {"w": torch.ones(2) * step}},
            total_limit=2,
        )
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-2", "checkpoint-3"]
    # a half-written checkpoint (no marker) and a leftover temp dir are never picked
    (tmp_path / "checkpoint-9").mkdir()
    (tmp_path / ".tmp-checkpoint-10").mkdir()
    assert latest_checkpoint(tmp_path).name == "checkpoint-3"
    with pytest.raises(ValueError, match="not a complete checkpoint"):
        load_checkpoint(accelerator, tmp_path / "checkpoint-9")
    with torch.no_grad():
        model.weight.zero_()
    loaded = load_checkpoint(accelerator, latest_checkpoint(tmp_path))
    assert torch.all(model.weight == 3.0)
    assert loaded["training_state"]["note"] == 3 and loaded["process_state"] == {"data": {"pos": 3}}
    assert torch.equal(loaded["tensors"]["ema"]["w"], torch.full((2,), 3.0))
    save_checkpoint(accelerator, tmp_path, 4, {}, None, None, total_limit=2)
    assert not (tmp_path / ".tmp-checkpoint-10").exists()  # stale temp dirs are cleaned by the next save
    assert (tmp_path / "checkpoint-4" / COMPLETE_MARKER).is_file()


# ------------------------------------------------------------------------------------------------ stages
def _params(model_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(model_dir / "model.safetensors"))


def _changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> set[str]:
    assert before.keys() == after.keys()
    return {k for k in before if not torch.equal(before[k], after[k])}


def test_one_step_per_stage_changes_exactly_the_stage_parameters(tmp_path: Path, shapes_dir: Path) -> None:
    """Authors' structure: backbone frozen in stages 1-2, NCE from stage 2, GAN + unfrozen backbone in stage 3."""
    from muse_hf.models import MuseTokenizerConfig, MuseTokenizerModel
    from muse_hf.training.loop import train
    from muse_hf.training.tokenizer.task import LOGIT_SCALE_FILE

    torch.manual_seed(0)
    model = {k: (dict(v) if isinstance(v, dict) else v) for k, v in TINY_TEST_OVERRIDES.items()}
    model["semantic_dim"] = 384
    init = tmp_path / "init"
    MuseTokenizerModel(MuseTokenizerConfig.from_preset("tiny", **model)).save_pretrained(init)
    stages = {
        "stage1": {"freeze_vision_backbone": True, "semantic_weight": 0.0},
        "stage2": {"freeze_vision_backbone": True, "semantic_weight": 0.5},
        "stage3": {
            "freeze_vision_backbone": False,
            "backbone_lr_multiplier": 0.5,
            "semantic_weight": 0.5,
            "gan_weight": 0.1,
            "gan_start_step": 0,
            "discriminator_channels": 8,
            "discriminator_layers": 2,
        },
    }
    previous = init
    changed_by_stage: dict[str, set[str]] = {}
    for name, stage_overrides in stages.items():
        out = tmp_path / name
        args = _stage(_config(out, shapes_dir, init_from=str(previous), **stage_overrides))
        result = train(args)
        assert result.global_step == 1 and result.nonfinite_steps == 0
        before, after = _params(previous), _params(out)
        loaded = MuseTokenizerModel.from_pretrained(previous)
        from muse_hf.training.tokenizer.task import TokenizerTask

        task = TokenizerTask(args)
        task._apply_freezing(loaded)  # the rule under test decides the trainable set...
        trainable = {n for n, p in loaded.named_parameters() if p.requires_grad}
        changed = _changed(before, after)
        assert changed == trainable, (name, sorted(changed ^ trainable)[:10])  # ...and exactly it moved
        changed_by_stage[name] = changed
        previous = out

    # ...and the rule is the curriculum's: spell out what each stage may touch.
    def touches(names: set[str], prefix: str) -> bool:
        return any(n.startswith(prefix) for n in names)

    s1, s2, s3 = changed_by_stage["stage1"], changed_by_stage["stage2"], changed_by_stage["stage3"]
    for stage_set in (s1, s2):
        assert not touches(stage_set, "vision_model.")
    assert touches(s3, "vision_model.")
    assert not touches(s1, "semantic_projector.") and not any(".v_itc." in n for n in s1)
    assert touches(s2, "semantic_projector.") and any(".v_itc." in n for n in s2)
    for stage_set in (s1, s2, s3):
        assert any(".q_topo." in n for n in stage_set) and touches(stage_set, "decoder.")
    # the NCE temperature starts in stage 2 and is carried into stage 3
    scale2 = load_file(str(tmp_path / "stage2" / LOGIT_SCALE_FILE))["log_scale"]
    scale3 = load_file(str(tmp_path / "stage3" / LOGIT_SCALE_FILE))["log_scale"]
    assert not torch.equal(scale2, torch.tensor(math.log(1 / 0.07))) and not torch.equal(scale2, scale3)
    summary = json.loads((tmp_path / "stage3" / "training_summary.json").read_text())
    assert summary["global_step"] == 1
    assert (tmp_path / "stage3" / "preprocessor_config.json").is_file()
    assert MuseTokenizerModel.from_pretrained(tmp_path / "stage3").config.freeze_vision_backbone is False


# ------------------------------------------------------------------------------------------------ resume
def test_resume_reproduces_the_uninterrupted_losses(tmp_path: Path, shapes_dir: Path) -> None:
    from muse_hf.training.loop import train

    cfg = _config(
        tmp_path / "full",
        shapes_dir,
        max_train_steps=8,
        checkpointing_steps=3,
        semantic_weight=0.5,
        use_ema=True,
        ema_decay=0.9,
    )
    full = train(_stage(cfg))
    assert [int(r["step"]) for r in full.history] == list(range(1, 9))

    resumed_dir = tmp_path / "resumed"
    resumed_dir.mkdir()
    shutil.copytree(tmp_path / "full" / "checkpoint-3", resumed_dir / "checkpoint-3")
    resumed = train(_stage({**cfg, "output_dir": str(resumed_dir), "resume_from_checkpoint": "latest"}))
    assert resumed.resumed_from.endswith("checkpoint-3")
    assert [int(r["step"]) for r in resumed.history] == [4, 5, 6, 7, 8]
    expected = {int(r["step"]): r for r in full.history}
    for record in resumed.history:  # steps k+1..k+5, bit for bit
        assert record == expected[int(record["step"])]
    a, b = _params(tmp_path / "full"), _params(resumed_dir)  # final (EMA) weights identical too
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_extending_a_finished_stage_trains_on_to_the_new_total(
    tmp_path: Path, shapes_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--resume_from_checkpoint latest --max_train_steps N` on a finished stage used to exit 0 doing nothing."""
    from muse_hf.training.checkpointing import latest_checkpoint
    from muse_hf.training.loop import main

    out = tmp_path / "run"
    cfg = _config(out, shapes_dir, max_train_steps=3, checkpointing_steps=1000, lr_scheduler="cosine")
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["--config", str(path)]) == 0
    assert latest_checkpoint(out).name == "checkpoint-3"  # the last step always has a checkpoint
    at_3 = _params(out)

    capsys.readouterr()
    extend = ["--config", str(path), "--resume_from_checkpoint", "latest", "--max_train_steps", "5"]
    assert main([*extend, "--checkpointing_steps", "4"]) == 0
    assert "finished at 3 steps; continuing it to 5" in capsys.readouterr().out
    assert json.loads((out / "training_summary.json").read_text())["global_step"] == 5
    log = [json.loads(line) for line in (out / "logs" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5]

    # The schedule is the 5-step run's, continued: the lr logged after step 4 is cosine(4/5), not the 3-step
    # run's exhausted zero (and step 4 itself ran at cosine(3/5) > 0, so the weights moved).
    def cosine(step: int, total: int) -> float:
        return 0.5 * (1 + math.cos(math.pi * step / total))

    lr_keys = [k for k in log[3] if k.startswith("lr/model.")]
    assert lr_keys
    assert all(log[3][k] == pytest.approx(log[0][k] / cosine(1, 3) * cosine(4, 5)) for k in lr_keys)
    assert all(log[2][k] == pytest.approx(0.0, abs=1e-12) for k in lr_keys)  # the 3-step run ended at zero
    at_4 = load_file(str(out / "checkpoint-4" / "model.safetensors"))
    assert _changed(at_3, {k: at_4[f"tokenizer.{k}"] for k in at_3})  # (the trained module wraps the tokenizer)
    assert latest_checkpoint(out).name == "checkpoint-5"

    capsys.readouterr()
    assert main(extend) == 0
    said = capsys.readouterr().out
    assert "already finished" in said and "--max_train_steps N (N > 5)" in said
    assert len((out / "logs" / "train_log.jsonl").read_text().splitlines()) == 5  # nothing trained

    # A complete checkpoint damaged afterwards (zero-filled weights): the error names the file and the fix...
    (out / "checkpoint-5" / "model.safetensors").write_bytes(bytes(1000))
    assert main(["--config", str(path), "--resume_from_checkpoint", "latest", "--max_train_steps", "6"]) == 2
    (line,) = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error:")]
    assert "checkpoint-5 is marked complete but cannot be restored: model.safetensors is not a complete" in line
    assert f"mv {out / 'checkpoint-5'} {out / 'damaged-checkpoint-5'}" in line and "'checkpoint-4'" in line
    # ...and following it resumes from the checkpoint before
    (out / "checkpoint-5").rename(out / "damaged-checkpoint-5")
    assert main(["--config", str(path), "--resume_from_checkpoint", "latest", "--max_train_steps", "6"]) == 0
    assert "continuing it to 6 from" in capsys.readouterr().out
    assert json.loads((out / "training_summary.json").read_text())["resumed_from"].endswith("checkpoint-4")

    # A damaged final model of a finished stage (docs/recovery.md): drop the summary, resume, and the model is
    # rewritten from the stage's last checkpoint without training a step.
    from muse_hf.models import MuseTokenizerModel
    from muse_hf.validation import CorruptWeightsError

    final = (out / "model.safetensors").read_bytes()
    logged = (out / "logs" / "train_log.jsonl").read_text()
    (out / "model.safetensors").write_bytes(final[: len(final) // 3])
    with pytest.raises(CorruptWeightsError, match="run/model.safetensors is not a complete safetensors file"):
        MuseTokenizerModel.from_pretrained(out)
    (out / "training_summary.json").unlink()
    assert main(["--config", str(path), "--resume_from_checkpoint", "latest", "--max_train_steps", "6"]) == 0
    assert "nothing left to train" in capsys.readouterr().out
    assert (out / "logs" / "train_log.jsonl").read_text() == logged  # no step trained
    assert (out / "model.safetensors").read_bytes() == final

    for ckpt in out.glob("*checkpoint-*"):
        shutil.rmtree(ckpt)
    assert main(["--config", str(path), "--resume_from_checkpoint", "latest", "--max_train_steps", "7"]) == 2
    err = capsys.readouterr().err
    assert "holds no complete checkpoint" in err and f"--init_from {out}" in err


# ------------------------------------------------------------------------------------------------ non-finite
def _nan_task(args: Any, nan_at: set[int]):
    from muse_hf.training.tokenizer.task import TokenizerTask

    class NaNTask(TokenizerTask):
        calls = 0

        def training_step(self, modules, batch, step):  # noqa: ANN001, D102
            out = super().training_step(modules, batch, step)
            NaNTask.calls += 1
            if NaNTask.calls in nan_at:
                out.losses["model"] = out.losses["model"] * float("nan")
            return out

    return NaNTask(args)


def test_nonfinite_loss_is_skipped_and_repeated_ones_stop_with_checkpoint_intact(
    tmp_path: Path, shapes_dir: Path
) -> None:
    from muse_hf.training.checkpointing import latest_checkpoint
    from muse_hf.training.loop import TrainingDivergedError, train

    args = _stage(_config(tmp_path / "once", shapes_dir, max_train_steps=3))
    result = train(args, task=_nan_task(args, nan_at={2}))
    assert result.nonfinite_steps == 1 and result.global_step == 3  # the bad micro-batch did not count
    weights = _params(tmp_path / "once")
    assert all(torch.isfinite(w).all() for w in weights.values())
    log = [json.loads(line) for line in (tmp_path / "once" / "logs" / "train_log.jsonl").read_text().splitlines()]
    assert log[-1]["train/nonfinite_steps"] == 1.0

    args = _stage(
        _config(
            tmp_path / "diverge",
            shapes_dir,
            max_train_steps=10,
            checkpointing_steps=2,
            max_consecutive_nonfinite=3,
        )
    )
    with pytest.raises(TrainingDivergedError, match="checkpoint-2"):
        train(args, task=_nan_task(args, nan_at=set(range(3, 100))))
    last = latest_checkpoint(tmp_path / "diverge")
    assert last.name == "checkpoint-2"
    assert all(torch.isfinite(w).all() for w in load_file(str(last / "model.safetensors")).values())
    assert not (tmp_path / "diverge" / "model.safetensors").exists()  # no final model from a diverged run


# ------------------------------------------------------------------------------------------------ SIGKILL
def test_sigkill_during_save_resumes_from_previous_complete_checkpoint(tmp_path: Path, shapes_dir: Path) -> None:
    from muse_hf.training.checkpointing import COMPLETE_MARKER, DEBUG_PAUSE_ENV, latest_checkpoint
    from muse_hf.training.loop import train

    out = tmp_path / "run"
    cfg = _config(out, shapes_dir, max_train_steps=5, checkpointing_steps=2)
    config_path = tmp_path / "cfg.yaml"
    config_path.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, DEBUG_PAUSE_ENV: "4:120", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "examples" / "train.py"), "--config", str(config_path)],
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    try:
        deadline = time.monotonic() + 240
        for line in proc.stderr:  # wait until it sits inside save_checkpoint(step=4)
            if "debug pause inside save_checkpoint at step 4" in line or time.monotonic() > deadline:
                break
        assert proc.poll() is None, "training exited before reaching the save of step 4"
        assert (out / ".tmp-checkpoint-4" / "model.safetensors").is_file()  # accelerate's files half-way there
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "checkpoint-4").exists()
    assert latest_checkpoint(out).name == "checkpoint-2" and (out / "checkpoint-2" / COMPLETE_MARKER).is_file()

    result = train(_stage({**cfg, "resume_from_checkpoint": "latest"}))
    assert result.resumed_from.endswith("checkpoint-2")
    assert [int(r["step"]) for r in result.history] == [3, 4, 5]
    assert not (out / ".tmp-checkpoint-4").exists()
    assert (out / "checkpoint-4" / COMPLETE_MARKER).is_file() and (out / "model.safetensors").is_file()


def test_quickstart_cli_takes_a_curriculum_and_checks_it_first(tmp_path: Path) -> None:
    from muse_hf.cli import main

    with pytest.raises(ValueError, match="does not exist"):
        main(["quickstart", "--config", str(tmp_path / "nope.yaml"), "--output_dir", str(tmp_path / "out")])
    assert not (tmp_path / "out" / "train").exists()  # nothing trained before the config was checked


# ------------------------------------------------------------------------------------------------ fidelity
def test_paper_presets_load_with_the_released_values() -> None:
    """configs/tokenizer/muse-{1b,3b}: the released configs (PanqiYang1/MUSE configs/muse_*), parsed and validated."""
    from muse_hf.models import MuseTokenizerConfig
    from muse_hf.training.arguments import load_stage_arguments

    warmups = {"1b": (2000, 5000, 1000), "3b": (5000, 5000, 1000)}
    for size in ("1b", "3b"):
        stages = [
            load_stage_arguments(REPO / f"configs/tokenizer/muse-{size}/stage{i}.yaml", validate=(i == 1))[0]
            for i in (1, 2, 3)
        ]
        for i, a in enumerate(stages):
            assert (a.weight_decay, a.ema_decay, a.train_batch_size) == (1e-4, 0.999, 32)
            assert a.lr_warmup_steps == warmups[size][i]
            assert a.topology_head_reduction == "mean" and a.text_encoder == "laion/CLIP-ViT-L-14-laion2B-s32B-b82K"
            assert (a.recon_l1_weight, a.recon_l2_weight, a.perceptual_lpips) == (0.0, 1.0, "vgg")
            assert a.perceptual_weight == (1.1, 1.1, 2.0)[i] and a.gradient_probe_steps == 50
            assert a.model_overrides["spectral_filter_alpha"] is None
            assert a.model_overrides["detach_topology_input"] is False
            assert a.learning_rate * a.min_lr_ratio == pytest.approx((1e-5, 1e-5, 1e-6)[i])
            assert (a.gan_weight > 0) == (i == 2)
        s3 = stages[2]
        assert (s3.gan_start_step, s3.gan_weight, s3.discriminator_lr, s3.lecam_decay) == (0, 0.5, 1e-4, 0.999)
        cfg = MuseTokenizerConfig.from_preset(stages[0].model_preset, **stages[0].model_overrides)
        assert cfg.grad_scale == 0.5 and cfg.detach_topology_input is False
    tiny = load_stage_arguments(REPO / "configs/tokenizer/tiny.yaml", validate=False)
    assert {a.topology_head_reduction for a in tiny} == {"mean"} and {a.gradient_probe_steps for a in tiny} == {0}
    assert {a.teacher for a in tiny} == {"dinov2-s-offline"} and {a.model_preset for a in tiny} == {"tiny-dinov2"}
    scratch = load_stage_arguments(REPO / "configs/tokenizer/tiny-scratch.yaml", validate=False)
    assert {a.topology_head_reduction for a in scratch} == {"per_head"} and {a.teacher for a in scratch} == {
        "mask_affinity"
    }


def test_gradient_probe_logs_the_three_pairs_and_a_missing_perceptual_term_is_announced(
    tmp_path: Path, shapes_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from muse_hf.training.loop import train

    cfg = _config(
        tmp_path / "probe",
        shapes_dir,
        max_train_steps=2,
        semantic_weight=0.5,
        gradient_probe_steps=1,
        perceptual_weight=1.0,
        perceptual_model=str(tmp_path / "no-convnext-here"),
    )
    with caplog.at_level(logging.WARNING, logger="muse_hf"):
        result = train(_stage(cfg))
    notices = [r for r in caplog.records if "Perceptual term OFF" in r.getMessage()]
    assert len(notices) == 1 and "no-convnext-here" in notices[0].getMessage()
    for record in result.history:
        assert "loss/perceptual" not in record  # the term is off, and says so; never a silent 0
        for pair in ("semantic|reconstruction", "reconstruction|topology", "semantic|topology"):
            assert math.isfinite(record[f"grad_cos/{pair}"]) and -1.0 <= record[f"grad_cos/{pair}"] <= 1.0
