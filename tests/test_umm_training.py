"""Unified-model training on the shared loop with tiny components (seeded, single-threaded): each stage's step
moves exactly that stage's parameters, a LoRA stage-3 adapter round-trips the peft way, the generation/editing
mixture resumes exactly, the latent-scaling command writes the tokenizer config, and the configs parse."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import make_tiny_config

REPO = Path(__file__).resolve().parents[1]
SIZE = 32  # test tokenizer: 32 px, factor 8 -> 4x4x8 latents

TINY_DIT = {
    "num_layers": 2,
    "num_attention_heads": 2,
    "attention_head_dim": 8,
    "num_cross_attention_heads": 2,
    "cross_attention_head_dim": 8,
    "cross_attention_dim": 16,
    "caption_channels": 16,
}
TINY_CONNECTOR = {"num_queries": 4, "num_layers": 1, "hidden_size": 16, "num_attention_heads": 2}


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Synthetic scenes (captions + editing pairs), a test-sized tokenizer and a tiny BERT text encoder on disk."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from muse_hf.data import build_shapes_dataset
    from muse_hf.models import MuseTokenizerModel
    from muse_hf.models.image_processing_muse import MuseImageProcessor
    from muse_hf.objectives.semantic import default_text_embedder_path

    root = tmp_path_factory.mktemp("umm")
    build_shapes_dataset(root / "shapes", num_train=24, num_val=4, image_size=SIZE, seed=0)
    torch.manual_seed(0)
    MuseTokenizerModel(make_tiny_config()).save_pretrained(root / "tokenizer")
    MuseImageProcessor(size={"height": SIZE, "width": SIZE}).save_pretrained(root / "tokenizer")
    tok = AutoTokenizer.from_pretrained(str(default_text_embedder_path()))
    bert = BertModel(BertConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                intermediate_size=32))  # fmt: skip
    bert.save_pretrained(root / "text")
    tok.save_pretrained(root / "text")
    return {"root": root, "data": root / "shapes", "tokenizer": root / "tokenizer", "text": root / "text"}


def _config(assets: dict[str, Path], out: Path, **overrides: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "task": "umm",
        "output_dir": str(out),
        "train_data": str(assets["data"]),
        "resolution": SIZE,
        "tokenizer_name_or_path": str(assets["tokenizer"]),
        "condition_encoder_name_or_path": str(assets["text"]),
        "transformer_config": dict(TINY_DIT),
        "connector_config": dict(TINY_CONNECTOR),
        "train_batch_size": 4,
        "learning_rate": 1e-3,
        "weight_decay": 0.0,  # decay would move parameters that are in the optimizer without a gradient
        "shuffle_buffer_size": 0,
        "logging_steps": 1,
        "checkpointing_steps": 1000,
        "report_to": "none",
        "max_train_steps": 1,
        "seed": 0,
    }
    cfg.update(overrides)
    return cfg


def _stage(cfg: dict[str, Any]):
    from muse_hf.training.arguments import load_stage_arguments

    return load_stage_arguments(cfg)[0]


def _named(task: Any) -> dict[str, torch.nn.Parameter]:
    named = {f"model.{n}": p for n, p in task.train_module.named_parameters()}
    named.update({f"vae.{n}": p for n, p in task.vae.named_parameters()})
    named.update({f"mllm.{n}": p for n, p in task.mllm.named_parameters()})
    return named


def _recording_task(args: Any) -> Any:
    """The real task, remembering every parameter (trained and frozen) right after ``build``."""
    from muse_hf.training.umm.task import UMMTask

    class Recording(UMMTask):
        def build(self, accelerator: Any) -> None:
            super().build(accelerator)
            self.before = {n: p.detach().clone() for n, p in _named(self).items()}
            self.trainable = {n for n, p in _named(self).items() if p.requires_grad}

    return Recording(args)


@pytest.fixture(scope="module")
def trained(assets: dict[str, Path]) -> dict[str, Any]:
    """The three stages, one step each (two for LoRA: B starts at 0, so A's first gradient is 0)."""
    from muse_hf.training.loop import train

    root = assets["root"] / "curriculum"
    stages = {
        "stage1": {"train_transformer": "none", "edit_ratio": 0.0, "gradient_checkpointing": True},
        "stage2": {"train_transformer": "full", "edit_ratio": 0.5},
        "stage3": {
            "train_transformer": "lora",
            "edit_ratio": 0.5,
            "lora_rank": 4,
            "lora_alpha": 4,
            "max_train_steps": 2,
            # the GenEval-style check of the saved pipeline, as small as it gets
            "evaluate_at_end": True,
            "eval_per_category": 1,
            "eval_num_edits": 2,
            "eval_num_inference_steps": 1,
        },
    }
    out: dict[str, Any] = {}
    previous = None
    for name, overrides in stages.items():
        cfg = _config(assets, root / name, stage_name=name, **overrides)
        if previous is not None:
            cfg["init_from"] = str(previous)
        task = _recording_task(_stage(cfg))
        result = train(task.args, task=task)
        after = {n: p.detach().clone() for n, p in _named(task).items()}
        changed = {n for n in after if not torch.equal(after[n], task.before[n])}
        out[name] = {"task": task, "result": result, "changed": changed, "dir": root / name}
        previous = root / name
    return out


# ------------------------------------------------------------------------------------------------ stages
def test_one_step_per_stage_updates_exactly_that_stages_parameters(trained: dict[str, Any]) -> None:
    for name, rec in trained.items():
        task, changed = rec["task"], rec["changed"]
        assert rec["result"].nonfinite_steps == 0 and rec["result"].global_step == task.args.max_train_steps
        assert changed == task.trainable, (name, sorted(changed ^ task.trainable)[:8])
        assert not any(n.startswith(("vae.", "mllm.")) for n in changed), name  # frozen tokenizer and encoder

    s1, s2, s3 = (trained[s]["changed"] for s in ("stage1", "stage2", "stage3"))
    # stage 1: the connector and its learnable queries only; no editing sample -> no reference tokens
    assert all(n.startswith("model.connector.") for n in s1)
    assert "model.connector.query_embeds" in s1 and not any(".reference_proj." in n for n in s1)
    connector = {n for n, _ in trained["stage1"]["task"].train_module.connector.named_parameters()}
    assert {n for n in s1} == {f"model.connector.{n}" for n in connector if not n.startswith("reference_proj.")}
    # stage 2: + the whole DiT, and the reference tokens (editing mixture)
    dit = {f"model.transformer.{n}" for n, _ in trained["stage2"]["task"].train_module.transformer.named_parameters()}
    assert dit <= s2 and any(".reference_proj." in n for n in s2)
    # stage 3 (LoRA): the DiT moves only through its adapters; its base weights stay
    dit3 = {n for n in s3 if n.startswith("model.transformer.")}
    assert dit3 and all(".lora_A." in n or ".lora_B." in n for n in dit3)
    assert any(".lora_A." in n for n in dit3) and any(".lora_B." in n for n in dit3)
    assert any(n.startswith("model.connector.") for n in s3)


def test_stages_save_pipelines_that_reload_and_generate(trained: dict[str, Any]) -> None:
    from muse_hf.pipelines import MusePipeline

    for name, rec in trained.items():
        pipe = MusePipeline.from_pretrained(rec["dir"])
        trained_connector = rec["task"].train_module.connector.state_dict()
        for key, value in pipe.connector.state_dict().items():
            assert torch.equal(value, trained_connector[key]), (name, key)
        summary = json.loads((rec["dir"] / "training_summary.json").read_text())
        assert summary["task"] == "umm" and summary["stage"] == name
        assert (rec["dir"] / "README.md").is_file()  # pipeline model card
    # stage 3 evaluated its pipeline: scores beside their floors/ceilings, in the summary and the model card
    doc = json.loads((trained["stage3"]["dir"] / "metrics.json").read_text())
    overall = doc["metrics"]["geneval_overall"]
    assert 0.0 <= overall["value"] <= 1.0 and overall["baseline"] == 0.0 and overall["ceiling"] == 1.0
    assert 0.0 <= overall["unconditional"] <= 1.0 and 0.0 <= overall["roundtrip_ceiling"] <= 1.0
    assert doc["metrics"]["edit_success"]["baseline_method"] == "unchanged source"
    summary = json.loads((trained["stage3"]["dir"] / "training_summary.json").read_text())
    assert summary["metrics"]["geneval_overall"] == overall["value"] and "edit_success" in summary["metrics"]
    assert "geneval_overall" in (trained["stage3"]["dir"] / "README.md").read_text()
    pipe.set_progress_bar_config(disable=True)
    image = pipe("a red circle", num_inference_steps=2, generator=torch.Generator().manual_seed(0),
                 output_type="np").images  # fmt: skip
    assert image.shape == (1, SIZE, SIZE, 3) and 0.0 <= image.min() and image.max() <= 1.0
    log = [
        json.loads(line) for line in (trained["stage2"]["dir"] / "logs" / "train_log.jsonl").read_text().splitlines()
    ]
    assert {"loss", "loss/generation", "loss/editing"} <= set(log[-1])


def test_lora_adapter_round_trips_the_peft_way(trained: dict[str, Any]) -> None:
    from diffusers import SanaTransformer2DModel
    from peft import PeftModel

    from muse_hf.pipelines import MusePipeline
    from muse_hf.training.umm.task import LORA_DIR, apply_lora_adapter, load_lora_transformer

    stage2, stage3 = trained["stage2"]["dir"], trained["stage3"]["dir"]
    adapter = stage3 / LORA_DIR
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in adapter.iterdir()}
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["r"] == 4 and config["base_model_name_or_path"].endswith("stage2/transformer")

    live = trained["stage3"]["task"].train_module.transformer.eval()  # the trained PeftModel
    assert isinstance(live, PeftModel)
    base = SanaTransformer2DModel.from_pretrained(stage2 / "transformer")
    loaded = load_lora_transformer(base, adapter).eval()
    assert isinstance(loaded, PeftModel)
    live_lora = {k: v for k, v in live.state_dict().items() if "lora_" in k}
    loaded_lora = {k: v for k, v in loaded.state_dict().items() if "lora_" in k}
    assert live_lora.keys() == loaded_lora.keys() and all(torch.equal(live_lora[k], loaded_lora[k]) for k in live_lora)

    torch.manual_seed(1)
    x, ctx, t = torch.randn(2, 8, 4, 4), torch.randn(2, 5, 16), torch.tensor([100.0, 700.0])
    with torch.no_grad():
        want = live(x, encoder_hidden_states=ctx, timestep=t, return_dict=False)[0]
        got = loaded(x, encoder_hidden_states=ctx, timestep=t, return_dict=False)[0]
        torch.testing.assert_close(got, want)
        # a second copy through PeftModel.load_adapter, switched to by name
        loaded.load_adapter(str(adapter), adapter_name="again")
        loaded.set_adapter("again")
        torch.testing.assert_close(loaded(x, encoder_hidden_states=ctx, timestep=t, return_dict=False)[0], want)
        # the stage-3 pipeline holds the merged DiT; merging the adapter into stage 2's gives the same
        merged = MusePipeline.from_pretrained(stage3).transformer.eval()
        torch.testing.assert_close(merged(x, encoder_hidden_states=ctx, timestep=t, return_dict=False)[0], want,
                                   atol=1e-5, rtol=1e-5)  # fmt: skip
        pipe2 = apply_lora_adapter(MusePipeline.from_pretrained(stage2), adapter)
        assert isinstance(pipe2.transformer, SanaTransformer2DModel)
        torch.testing.assert_close(pipe2.transformer(x, encoder_hidden_states=ctx, timestep=t, return_dict=False)[0],
                                   want, atol=1e-5, rtol=1e-5)  # fmt: skip
    with pytest.raises(ValueError, match="adapter_config"):
        load_lora_transformer(base, stage2)


# ------------------------------------------------------------------------------------------------ resume
def test_mixture_resume_reproduces_the_uninterrupted_losses(assets: dict[str, Path], tmp_path: Path) -> None:
    from muse_hf.training.loop import train

    cfg = _config(assets, tmp_path / "full", init_from=None, train_transformer="full", edit_ratio=0.5,
                  max_train_steps=4, checkpointing_steps=2)  # fmt: skip
    full = train(_stage(cfg))
    resumed_dir = tmp_path / "resumed"
    resumed_dir.mkdir()
    shutil.copytree(tmp_path / "full" / "checkpoint-2", resumed_dir / "checkpoint-2")
    resumed = train(_stage({**cfg, "output_dir": str(resumed_dir), "resume_from_checkpoint": "latest"}))
    assert resumed.resumed_from.endswith("checkpoint-2")
    assert [int(r["step"]) for r in resumed.history] == [3, 4]
    expected = {int(r["step"]): r for r in full.history}
    for record in resumed.history:  # same batches (both streams), noise, timesteps and dropout: bit for bit
        assert record == expected[int(record["step"])]
    assert len({r["loss/editing"] for r in full.history}) == 4  # the streams move on every step


# ------------------------------------------------------------------------------------------------ scaling
def test_compute_scaling_command_writes_the_tokenizer_config(assets: dict[str, Path], tmp_path: Path) -> None:
    from muse_hf.cli import umm_task_main as main
    from muse_hf.data import load_image_text_stream, make_dataloader
    from muse_hf.models import MuseTokenizerConfig, MuseTokenizerModel
    from muse_hf.models.image_processing_muse import MuseImageProcessor
    from muse_hf.pipelines import compute_latent_scaling

    model = tmp_path / "tok"
    shutil.copytree(assets["tokenizer"], model)
    weights = (model / "model.safetensors").read_bytes()
    code = main(["compute-scaling", "--model", str(model), "--data", str(assets["data"]), "--num_batches", "2",
                 "--batch_size", "4"])  # fmt: skip
    assert code == 0
    config = MuseTokenizerConfig.from_pretrained(model)
    vae = MuseTokenizerModel.from_pretrained(assets["tokenizer"])
    processor = MuseImageProcessor.from_pretrained(assets["tokenizer"])
    stream = load_image_text_stream(str(assets["data"]), image_processor=processor, with_label=False, with_mask=False)
    want = compute_latent_scaling(vae, make_dataloader(stream, 4), max_batches=2)
    assert config.scaling_factor == pytest.approx(want.scaling_factor, rel=1e-6)
    assert config.shift_factor == pytest.approx(want.shift_factor, rel=1e-6, abs=1e-9)
    assert config.scaling_factor != 1.0 and (model / "model.safetensors").read_bytes() == weights
    assert main(["compute-scaling", "--model", str(tmp_path / "missing"), "--data", str(assets["data"])]) == 2


# ------------------------------------------------------------------------------------------------ arguments
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"edit_ratio": 1.5}, "edit_ratio"),
        ({"edit_ratio": 0.1}, "leaves one of the two streams"),
        ({"condition_dropout": 1.0}, "condition_dropout"),
        ({"train_connector": False, "train_transformer": "none"}, "nothing to train"),
        ({"train_transformer": "lora", "lora_rank": 0}, "lora_rank"),
        ({"tokenizer_name_or_path": None}, "tokenizer_name_or_path"),
        ({"train_transformer": "half"}, "train_transformer"),
        ({"synthetic_plain_fraction": 1.5}, "synthetic_plain_fraction"),
        ({"connector_config": {**TINY_CONNECTOR, "num_querys": 4}}, r"'num_querys' \(did you mean 'num_queries'\?\)"),
        ({"transformer_config": {**TINY_DIT, "num_layer": 2}}, r"'num_layer' \(did you mean 'num_layers'\?\)"),
    ],
)
def test_arguments_reject_bad_values(assets: dict[str, Path], tmp_path: Path, overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _stage(_config(assets, tmp_path / "run", **overrides))


def test_init_from_must_be_a_pipeline_folder(assets: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="model_index.json"):
        _stage(_config(assets, tmp_path / "run", init_from=str(assets["tokenizer"])))


def test_configs_parse_with_the_paper_stage_structure() -> None:
    from muse_hf.training.arguments import load_stage_arguments
    from muse_hf.training.umm.arguments import UMMTrainingArguments

    tiny = load_stage_arguments(REPO / "configs/umm/tiny.yaml", validate=False)
    assert [a.stage_name for a in tiny] == ["stage1", "stage2", "stage3"]
    assert all(isinstance(a, UMMTrainingArguments) for a in tiny)
    assert [a.train_transformer for a in tiny] == ["none", "full", "lora"]
    assert tiny[0].edit_ratio == 0.0 and tiny[1].edit_ratio > 0 and tiny[2].init_from == tiny[1].output_dir
    assert sum(a.max_train_steps for a in tiny) <= 300  # the quickstart's CPU budget
    assert all(a.cache_latents and 0 < a.synthetic_plain_fraction < 1 for a in tiny)  # cached, GenEval-style share
    for size, dit in (("1b", "Sana_600M"), ("3b", "Sana_1600M")):
        stages = [load_stage_arguments(REPO / f"configs/umm/muse-{size}/stage{i}.yaml", validate=False)[0]
                  for i in (1, 2, 3)]  # fmt: skip
        assert [a.max_train_steps for a in stages] == [50_000, 200_000, 30_000]  # paper §5.1
        assert [a.train_transformer for a in stages] == ["none", "full", "full"]
        assert stages[0].edit_ratio == 0.0 and all(a.edit_ratio > 0 for a in stages[1:])
        assert dit in stages[0].transformer_name_or_path and stages[0].connector_config["num_queries"] == 256
        assert all(a.condition_dropout == 0.1 and a.weight_decay == 0.0 for a in stages)
        assert stages[1].init_from.endswith("stage1") and stages[2].init_from.endswith("stage2")
