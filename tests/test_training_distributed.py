"""A real two-process (gloo, CPU) ``accelerate launch`` of ``examples/train.py``: DDP over the tokenizer and the
discriminator, NCE negatives gathered across processes, the data split by node, a checkpoint, the final save."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import TINY_TEST_OVERRIDES

REPO = Path(__file__).resolve().parents[1]


def _data_and_model(tmp_path: Path, num_train: int, num_val: int) -> tuple[Path, dict]:
    """A 32 px synthetic set and the tiny test model's overrides (384-d semantics for the packaged MiniLM)."""
    from muse_hf.data import build_shapes_dataset

    data = tmp_path / "shapes-32"
    build_shapes_dataset(data, num_train=num_train, num_val=num_val, image_size=32, seed=0)
    model = {k: (dict(v) if isinstance(v, dict) else v) for k, v in TINY_TEST_OVERRIDES.items()}
    model["semantic_dim"] = 384
    return data, model


def _launch(tmp_path: Path, cfg: dict, port: int, timeout: int, extra: list[str]) -> subprocess.CompletedProcess:
    """`accelerate launch` examples/train.py on two CPU processes over gloo with ``cfg`` written as YAML.

    `accelerate launch --cpu` starts several CPU processes only through mpirun; `--multi_gpu` (torchrun) with
    ACCELERATE_USE_CPU=1 gives plain multi-process CPU DDP over gloo.
    """
    config_path = tmp_path / "cfg.yaml"
    config_path.write_text(yaml.safe_dump(cfg))
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or "accelerate"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "ACCELERATE_USE_CPU": "1"}
    command = [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", *extra]
    command += ["--dynamo_backend", "no", "--main_process_port", str(port)]
    command += [str(REPO / "examples" / "train.py"), "--config", str(config_path)]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.distributed
def test_two_process_gloo_run_completes_and_loads(tmp_path: Path) -> None:
    from muse_hf.models import MuseTokenizerModel
    from muse_hf.training.checkpointing import latest_checkpoint

    data, model = _data_and_model(tmp_path, num_train=32, num_val=8)
    out = tmp_path / "run"
    cfg = {
        "task": "tokenizer",
        "output_dir": str(out),
        "train_data": str(data),
        "resolution": 32,
        "model_overrides": model,
        "train_batch_size": 2,
        "max_train_steps": 2,
        "checkpointing_steps": 1,
        "checkpoints_total_limit": 1,
        "learning_rate": 1e-3,
        "shuffle_buffer_size": 0,
        "freeze_vision_backbone": False,  # every objective, every trainable part: a stage-3-like step under DDP
        "topology_weight": 0.5,
        "semantic_weight": 0.5,
        "reconstruction_weight": 1.0,
        "gan_weight": 0.1,
        "gan_start_step": 0,
        "discriminator_channels": 8,
        "discriminator_layers": 2,
        "use_ema": True,
        "logging_steps": 1,
        "report_to": "tensorboard",
    }
    proc = _launch(tmp_path, cfg, port=29517, timeout=420, extra=["--mixed_precision", "no"])
    assert proc.returncode == 0, proc.stderr[-4000:]
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["num_processes"] == 2 and summary["global_step"] == 2 and summary["nonfinite_steps"] == 0
    assert summary["total_batch_size"] == 4
    assert latest_checkpoint(out).name == "checkpoint-2"
    assert (out / "checkpoint-2" / "process_state_1.pt").is_file()  # each process saved its data position
    log = [json.loads(line) for line in (out / "logs" / "train_log.jsonl").read_text().splitlines()]
    assert {"loss/topology", "loss/semantic", "loss/reconstruction", "loss/discriminator"} <= log[-1].keys()
    assert log[-1]["train/samples_per_s"] > 0
    tokenizer = MuseTokenizerModel.from_pretrained(out)
    with torch.no_grad():
        sample = tokenizer(torch.zeros(1, 3, 32, 32)).sample
    assert sample.shape == (1, 3, 32, 32) and torch.isfinite(sample).all()


@pytest.mark.distributed
def test_two_process_gloo_curriculum_runs_every_stage(tmp_path: Path) -> None:
    """Two stages in one `accelerate launch`: stage 2 must get a working process group after stage 1 (stage 1 used
    to destroy it) and an Accelerator of its own settings (stage 2 asks for another mixed precision, which the
    process-wide accelerate state refused), then both stages' models and checkpoints are complete."""
    from muse_hf.models import MuseTokenizerModel
    from muse_hf.training.checkpointing import latest_checkpoint

    data, model = _data_and_model(tmp_path, num_train=16, num_val=4)
    out = tmp_path / "run"
    cfg = {
        "task": "tokenizer",
        "output_dir": str(out),
        "train_data": str(data),
        "resolution": 32,
        "model_overrides": model,
        "train_batch_size": 2,
        "learning_rate": 1e-3,
        "shuffle_buffer_size": 0,
        "checkpointing_steps": 2,
        "logging_steps": 1,
        "report_to": "tensorboard",
        "mixed_precision": "no",
        "stages": {
            "stage1": {"max_train_steps": 2, "semantic_weight": 0.0},
            "stage2": {"max_train_steps": 2, "semantic_weight": 0.5, "mixed_precision": "bf16"},
        },
    }
    proc = _launch(tmp_path, cfg, port=29518, timeout=300, extra=[])
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "destroy_process_group() was not called" not in proc.stderr  # torch's warning for a leaked group
    for name in ("stage1", "stage2"):
        summary = json.loads((out / name / "training_summary.json").read_text())
        assert (summary["stage"], summary["num_processes"], summary["global_step"]) == (name, 2, 2)
        assert summary["mixed_precision"] == {"stage1": "no", "stage2": "bf16"}[name]
        assert latest_checkpoint(out / name).name == "checkpoint-2"
        tokenizer = MuseTokenizerModel.from_pretrained(out / name)
        with torch.no_grad():
            assert torch.isfinite(tokenizer(torch.zeros(1, 3, 32, 32)).sample).all()
    log = [json.loads(line) for line in (out / "stage2" / "logs" / "train_log.jsonl").read_text().splitlines()]
    assert "loss/semantic" in log[-1]  # stage 2 ran its own objective set
