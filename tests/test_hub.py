"""Model cards (rendered from model_cards/, metadata validated by huggingface_hub) and fail-fast Hub pushes."""

from __future__ import annotations

import hashlib
import json
import socket
import time
from pathlib import Path

import pytest
import torch
from conftest import make_tiny_config
from huggingface_hub import EvalResult, ModelCard
from huggingface_hub.repocard_data import model_index_to_eval_results

from muse_hf.cli import main
from muse_hf.hub import (
    HubUnavailableError,
    detect_kind,
    load_metrics,
    push_space,
    push_to_hub,
    render_model_card,
    write_model_card,
)
from muse_hf.models import MuseTokenizerModel
from muse_hf.models.image_processing_muse import MuseImageProcessor

METRICS = {
    "model": "tiny",
    "data": "outputs/quickstart/data",
    "split": "validation",
    "num_samples": 64,
    "metrics": {
        "psnr": {"value": 27.25, "status": "ok", "untrained": 11.5, "baseline": 21.75, "reason": None},
        "ssim": {"value": 0.8125, "status": "ok", "untrained": 0.05, "baseline": 0.7, "reason": None},
        "rfid": {
            "value": 123.25,
            "status": "ok",
            "untrained": 410.5,
            "baseline": 260.75,
            "reason": None,
            "num_samples": 64,
        },
        "linear_probe_accuracy": {"value": None, "status": "unavailable", "reason": "the data has no labels"},
        "geneval_roundtrip": {"value": 0.5, "status": "ok", "untrained": 0.0, "baseline": 0.25, "ceiling": 1.0},
        "zero_shot_accuracy": {"value": 0.84375, "status": "ok", "untrained": 0.1, "baseline": 0.12},
        "attention_miou": {"value": 0.9, "status": "ok"},
        "encode_throughput": {"value": 250.0, "status": "ok"},
    },
}


def _snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file's (sha1, mtime_ns) under ``folder``."""
    return {
        p.relative_to(folder).as_posix(): (hashlib.sha1(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("hub") / "muse-tiny-tokenizer"
    model = MuseTokenizerModel(make_tiny_config())
    model.save_pretrained(folder)
    MuseImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    (folder / "metrics.json").write_text(json.dumps(METRICS))
    return folder


@pytest.fixture(scope="module")
def pipeline_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from test_pipeline_muse import make_text_pipeline

    folder = tmp_path_factory.mktemp("hub") / "muse-tiny-pipeline"
    make_text_pipeline().save_pretrained(folder)
    return folder


def _strict_round_trip(card: ModelCard) -> ModelCard:
    """Re-parse the card text with metadata errors raised; the metadata must come back unchanged."""
    reparsed = ModelCard(str(card), ignore_metadata_errors=False)
    assert reparsed.data.to_dict() == card.data.to_dict()
    return reparsed


def test_tokenizer_card_metadata_and_eval_results(tokenizer_dir: Path) -> None:
    card = render_model_card(
        "tokenizer",
        tokenizer_dir,
        settings={"learning_rate": 1e-3, "max_train_steps": 560},
        repo_id="me/muse-tiny-tokenizer",
    )
    data = _strict_round_trip(card).data
    assert data.library_name == "transformers"
    assert data.pipeline_tag == "image-feature-extraction"
    assert {"muse_hf", "visual-tokenizer"} <= set(data.tags)
    assert data.license == "apache-2.0"
    # eval results: every available dataset metric, none of the unavailable or non-dataset ones
    by_metric = {(r.task_type, r.metric_type): r for r in data.eval_results}
    assert by_metric[("image-to-image", "psnr")].metric_value == pytest.approx(27.25)
    assert by_metric[("image-to-image", "ssim")].metric_value == pytest.approx(0.8125)
    assert by_metric[("zero-shot-image-classification", "accuracy")].metric_value == pytest.approx(0.84375)
    assert by_metric[("image-segmentation", "mean_iou")].metric_value == pytest.approx(0.9)
    assert by_metric[("image-to-image", "fid")].metric_value == pytest.approx(123.25)
    # throughput and the round trip on the GenEval-style renders (not the evaluation data) stay in the body
    assert not any(r.metric_type in ("encode_throughput", "geneval_roundtrip") for r in data.eval_results)
    assert all(r.dataset_split == "validation" for r in data.eval_results)
    # the model-index YAML converts back to the same EvalResults (huggingface_hub's own parser)
    name, parsed = model_index_to_eval_results(data.to_dict()["model-index"])
    assert name == "muse-tiny-tokenizer"
    assert [(r.metric_type, r.metric_value) for r in parsed] == [
        (r.metric_type, r.metric_value) for r in data.eval_results
    ]
    assert all(isinstance(r, EvalResult) for r in parsed)
    # body: config summary, floors, the unavailable metric's reason, settings, usage with the repo id
    text = card.text
    assert "| Latent | 8 channels x 4x4 (compression 8x) |" in text
    assert "| PSNR (dB) | 27.25 | 11.50 | 21.75 |" in text
    assert "| rFID | 123.2500 | 410.5000 | 260.7500 | bicubic down-sampling to the latent grid and back |" in text
    assert "| GenEval-style round trip | 0.5000 | 0.0000 | 0.2500 |" in text
    assert "Linear-probe accuracy: the data has no labels" in text
    assert "learning_rate: 0.001" in text
    assert 'MuseTokenizerModel.from_pretrained("me/muse-tiny-tokenizer")' in text
    # local data is described in the body, never put in Hub metadata
    assert data.datasets is None and "outputs/quickstart/data" in text


def test_pipeline_card(pipeline_dir: Path) -> None:
    card = render_model_card(
        None,
        pipeline_dir,
        metrics={"geneval_colour": 0.5},
        settings={"stage": "stage2"},
        base_model="me/muse-tiny-tokenizer",
    )
    data = _strict_round_trip(card).data
    assert detect_kind(pipeline_dir) == "pipeline"
    assert (data.library_name, data.pipeline_tag) == ("diffusers", "text-to-image")
    assert data.base_model == ["me/muse-tiny-tokenizer"]
    assert "visual-question-answering" not in data.tags  # text-only mllm cannot chat
    (result,) = data.eval_results
    assert (result.task_type, result.metric_type, result.metric_value) == ("text-to-image", "geneval_colour", 0.5)
    for component in ("mllm", "connector", "transformer", "scheduler", "vae"):
        assert f"| `{component}` |" in card.text
    assert "cannot answer questions about images" in card.text
    assert "import muse_hf" in card.text and "DiffusionPipeline.from_pretrained(" in card.text  # both loaders shown


def test_write_model_card_and_load(tokenizer_dir: Path, tmp_path: Path) -> None:
    out = write_model_card(None, tokenizer_dir, filename="CARD.md", settings={"seed": 0})
    loaded = ModelCard.load(out, ignore_metadata_errors=False)
    assert loaded.data.pipeline_tag == "image-feature-extraction"
    assert len(loaded.data.eval_results) == 5  # psnr, ssim, rfid, zero-shot, attention mIoU
    out.unlink()


def test_card_inputs_are_checked(tokenizer_dir: Path, pipeline_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="holds a MUSE tokenizer"):
        render_model_card("pipeline", tokenizer_dir)
    with pytest.raises(ValueError, match="kind must be one of"):
        render_model_card("vae", tokenizer_dir)  # type: ignore[arg-type]
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError, match="neither a MUSE pipeline"):
        render_model_card(None, tmp_path)
    with pytest.raises(ValueError, match="is not a folder"):
        render_model_card(None, tmp_path / "missing")
    with pytest.raises(ValueError, match="does not exist"):
        render_model_card(None, tokenizer_dir, metrics=tmp_path / "nope.json")
    with pytest.raises(FileNotFoundError, match="template"):
        render_model_card(None, tokenizer_dir, template_path=tmp_path / "none.md")
    # a flat {name: number} mapping is accepted; a Hub-invalid local base model stays out of the metadata
    card = render_model_card(None, tokenizer_dir, metrics={"psnr": 30.0}, base_model="./local/ckpt")
    assert [r.metric_value for r in card.data.eval_results] == [30.0]
    assert card.data.base_model is None and "./local/ckpt" in card.text
    assert load_metrics(None, tmp_path) == {"metrics": {}}


def test_push_fails_at_once_offline_and_leaves_folder_intact(tokenizer_dir: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    before = _snapshot(tokenizer_dir)
    start = time.perf_counter()
    with pytest.raises(HubUnavailableError, match="HF_HUB_OFFLINE") as info:
        push_to_hub(tokenizer_dir, "me/muse-tiny-tokenizer")
    assert time.perf_counter() - start < 2.0
    assert "Nothing was uploaded" in str(info.value) and str(tokenizer_dir) in str(info.value)
    assert _snapshot(tokenizer_dir) == before and not (tokenizer_dir / "README.md").exists()
    # a model object: nothing is saved either
    with pytest.raises(HubUnavailableError, match="nothing was saved"):
        push_to_hub(MuseTokenizerModel(make_tiny_config()), "me/muse-tiny-tokenizer")
    with pytest.raises(HubUnavailableError, match="Nothing was uploaded"):
        push_space("me/muse-demo", model="me/muse-tiny-tokenizer")
    assert main(["push", str(tokenizer_dir), "me/muse-tiny-tokenizer"]) == 2
    assert _snapshot(tokenizer_dir) == before


def test_push_fails_fast_when_the_hub_is_unreachable(tokenizer_dir: Path, monkeypatch) -> None:
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    before = _snapshot(tokenizer_dir)
    start = time.perf_counter()
    with pytest.raises(HubUnavailableError, match="cannot be reached"):
        push_to_hub(tokenizer_dir, "me/muse-tiny-tokenizer", token="hf_dummy", timeout=1.0)
    assert time.perf_counter() - start < 5.0
    assert _snapshot(tokenizer_dir) == before


def test_push_rejects_bad_arguments_before_the_network(tokenizer_dir: Path, pipeline_dir: Path, tmp_path) -> None:
    with pytest.raises(ValueError, match="not a valid Hub id"):
        push_to_hub(tokenizer_dir, "not a repo id")
    with pytest.raises(ValueError, match="holds a MUSE pipeline"):
        push_to_hub(pipeline_dir, "me/x", kind="tokenizer")
    with pytest.raises(ValueError, match="takes a saved folder"):
        push_to_hub(torch.nn.Linear(2, 2), "me/x")
    with pytest.raises(ValueError, match="must be Hub ids"):
        push_space("me/demo", model=str(tokenizer_dir))


def test_cli_card(tokenizer_dir: Path, capsys) -> None:
    assert main(["card", str(tokenizer_dir), "--out", "-"]) == 0
    printed = capsys.readouterr().out
    assert ModelCard(printed, ignore_metadata_errors=False).data.pipeline_tag == "image-feature-extraction"


# ------------------------------------------------------------------------------------------------ damaged folders
def test_corrupt_weights_and_missing_components_are_named(
    tokenizer_dir: Path, pipeline_dir: Path, tmp_path: Path
) -> None:
    """Used to be safetensors' bare "incomplete metadata" / "no file named config.json found in <pipeline root>"."""
    import shutil

    from transformers import AutoModel

    from muse_hf.pipelines import MusePipeline
    from muse_hf.validation import CorruptWeightsError

    weights = (tokenizer_dir / "model.safetensors").read_bytes()
    for kind, data in (("truncated", weights[: len(weights) // 2]), ("zeroed", bytes(len(weights)))):
        folder = shutil.copytree(tokenizer_dir, tmp_path / kind)
        (folder / "model.safetensors").write_bytes(data)
        for loader in (MuseTokenizerModel.from_pretrained, AutoModel.from_pretrained):
            with pytest.raises(
                CorruptWeightsError, match=rf"{kind}/model\.safetensors is not a complete safetensors file"
            ):
                loader(folder)

    broken = shutil.copytree(pipeline_dir, tmp_path / "pipe-broken-vae")
    vae_weights = broken / "vae" / "model.safetensors"
    vae_weights.write_bytes(vae_weights.read_bytes()[:100])
    with pytest.raises(CorruptWeightsError, match=r"pipe-broken-vae/vae/model\.safetensors is not a complete"):
        MusePipeline.from_pretrained(broken)

    partial = shutil.copytree(pipeline_dir, tmp_path / "pipe-no-connector")
    shutil.rmtree(partial / "connector")
    with pytest.raises(OSError, match=r"pipe-no-connector has no connector/ folder"):
        MusePipeline.from_pretrained(partial)
    with pytest.raises(OSError, match=r"its MuseTokenizerModel is in vae/.*subfolder='vae'"):
        MuseTokenizerModel.from_pretrained(pipeline_dir)  # the pipeline root instead of its vae/
    assert MuseTokenizerModel.from_pretrained(pipeline_dir, subfolder="vae").config.latent_channels > 0


def test_saved_config_and_cards_say_to_import_muse_hf(tokenizer_dir: Path, pipeline_dir: Path) -> None:
    """Without `import muse_hf` transformers calls the model type unknown and suggests upgrading transformers."""
    import re
    import subprocess
    import sys

    config = json.loads((tokenizer_dir / "config.json").read_text())
    assert config["library_name"] == "muse_hf" and "`import muse_hf`" in config["loading_note"]
    vae_config = json.loads((pipeline_dir / "vae" / "config.json").read_text())
    assert vae_config["library_name"] == "muse_hf"
    for kind, folder in (("tokenizer", tokenizer_dir), ("pipeline", pipeline_dir)):
        first_snippet = re.search(r"```python\n(.*?)```", render_model_card(kind, folder).text, re.S).group(1)
        assert first_snippet.splitlines()[0].startswith("import muse_hf"), kind
    # what a reader without muse_hf sees: transformers' message, and the config that names the fix
    code = (
        "import json, sys\nfrom transformers import AutoConfig\n"
        "try:\n    AutoConfig.from_pretrained(sys.argv[1])\nexcept ValueError as err:\n    print(err)\n"
        "print(json.load(open(sys.argv[1] + '/config.json'))['loading_note'])\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tokenizer_dir)], capture_output=True, text=True, timeout=120)
    assert "does not recognize this architecture" in out.stdout and "import muse_hf" in out.stdout, out.stderr[-2000:]
