"""evaluate_tokenizer end to end on a tiny untrained model: every report field present, rFID says why it is missing."""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import torch

from muse_hf.evaluation import METRIC_SPECS, evaluate_tokenizer
from muse_hf.evaluation.evaluate import main


class HashTextEmbedder:
    """Deterministic stand-in for a text embedder (the ``TextEmbedder`` protocol): seeded by each string's CRC32."""

    def __init__(self, dim: int) -> None:
        self.dim = dim

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        rows = [
            torch.randn(self.dim, generator=torch.Generator().manual_seed(zlib.crc32(t.encode())))
            for t in texts
        ]
        return torch.nn.functional.normalize(torch.stack(rows), dim=-1)  # (B, dim)


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Tiny models on a shared 2-core machine: one intra-op thread is ~10x faster than two busy-waiting ones."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def shapes_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from muse_hf.data import build_shapes_dataset

    out = tmp_path_factory.mktemp("shapes")
    build_shapes_dataset(out, num_train=4, num_val=12, image_size=32, seed=0, min_shards=1)
    return out


def _tiny_model(tiny_config):  # noqa: ANN001, ANN202 (fixture factory)
    from muse_hf import MuseImageProcessor, MuseTokenizerModel

    torch.manual_seed(0)
    model = MuseTokenizerModel(tiny_config()).eval()
    return model, MuseImageProcessor(size={"height": 32, "width": 32})


def test_report_has_every_field_and_rfid_unavailable(tiny_config, shapes_dir: Path, tmp_path: Path) -> None:  # noqa: ANN001
    model, processor = _tiny_model(tiny_config)
    result = evaluate_tokenizer(
        model,
        processor,
        str(shapes_dir),
        split="validation",
        text_embedder=HashTextEmbedder(model.config.semantic_dim),
        out_dir=tmp_path,
        max_samples=8,
        batch_size=4,
        throughput_repeats=1,
        num_figure_images=2,
    )
    metrics = result["metrics"]
    assert set(METRIC_SPECS) <= set(metrics), f"missing: {set(METRIC_SPECS) - set(metrics)}"
    assert result["num_samples"] == 8 and result["latent_grid"] == list(model.config.latent_grid)

    # rFID: no torch-fidelity / Inception weights on this machine -> no number, and the reason says so
    rfid = metrics["rfid"]
    assert rfid["value"] is None and rfid["status"] == "unavailable" and "weights" in rfid["reason"]

    # every computed metric stands beside its floors
    for key in (
        "psnr",
        "ssim",
        "attention_miou",
        "attention_pixel_accuracy",
        "attention_token_miou",
        "linear_probe_accuracy",
        "topology_kl",
    ):
        entry = metrics[key]
        assert entry["status"] == "ok", (key, entry)
        assert (
            math.isfinite(entry["value"]) and entry["untrained"] is not None and entry["baseline"] is not None
        ), key
    # the model under test *is* an untrained model built with seed 0: the untrained floor reproduces it exactly
    assert metrics["psnr"]["value"] == pytest.approx(metrics["psnr"]["untrained"])
    assert 0.0 <= metrics["attention_miou"]["value"] <= 1.0 and 0.0 < metrics["ssim"]["baseline"] <= 1.0
    # the teacher's own attention, segmented the same way, is reported as the ceiling at this grid
    assert (
        0.0 < metrics["attention_miou"]["teacher_ceiling"] <= 1.0
        and "ceiling" in metrics["attention_miou"]["note"]
    )
    assert (
        metrics["zero_shot_accuracy"]["status"] == "ok" and metrics["zero_shot_accuracy"]["num_classes"] > 1
    )
    assert metrics["encode_throughput"]["value"] > 0 and metrics["decode_throughput"]["value"] > 0
    assert metrics["gradient_cosine"]["status"] == "ok" and -1.0 <= metrics["gradient_cosine"]["value"] <= 1.0
    assert "reconstruction|semantic" in result["gradient_conflict"]["model"]["cosine"]["shared_blocks"]
    for key in ("photo_psnr", "photo_ssim"):
        assert metrics[key]["status"] == "ok" and metrics[key]["baseline"] is not None

    # files: metrics.json round-trips, report.md lists every metric and rFID's reason, PNGs exist
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk["metrics"]["rfid"]["reason"] == rfid["reason"]
    report = (tmp_path / "report.md").read_text()
    for spec in METRIC_SPECS.values():
        assert spec.label in report
    assert f"unavailable: {rfid['reason']}" in report
    assert "Hungarian" in report  # the segmentation method is stated
    for name in ("reconstruction_grid.png", "attention_maps.png", "metrics_bars.png"):
        assert (tmp_path / name).stat().st_size > 1000, name


def test_cli_reports_missing_pieces_with_reasons(tiny_config, shapes_dir: Path, tmp_path: Path) -> None:  # noqa: ANN001
    model, processor = _tiny_model(tiny_config)
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    out = tmp_path / "eval"
    args = [
        "--model",
        str(tmp_path / "model"),
        "--data",
        str(shapes_dir),
        "--out",
        str(out),
        "--max_samples",
        "4",
    ]
    args += [
        "--batch_size",
        "4",
        "--no_untrained",
        "--no_photos",
        "--no_gradient_probe",
        "--throughput_repeats",
        "1",
    ]
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())["metrics"]
    # the packaged MiniLM embedder is 384-d, the test model's semantic_dim is 16: zero-shot says so, no number
    assert metrics["zero_shot_accuracy"]["value"] is None and "-d" in metrics["zero_shot_accuracy"]["reason"]
    assert metrics["photo_psnr"]["status"] == "unavailable" and "disabled" in metrics["photo_psnr"]["reason"]
    assert metrics["psnr"]["untrained"] is None and metrics["psnr"]["baseline"] is not None
    report = (out / "report.md").read_text()
    assert report.count("unavailable:") >= 4
    with pytest.raises(SystemExit):
        main(["--data", str(shapes_dir)])  # --model is required


def test_cli_missing_or_unloadable_model_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A wrong --model used to end in a transformers traceback ("Repo id must be in the form ...")."""
    assert main(["--model", str(tmp_path / "nope"), "--data", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = [x for x in err.splitlines() if x.startswith("error:")]
    assert "--model" in line and "does not exist" in line and "save_pretrained folder" in line
    (tmp_path / "empty").mkdir()
    assert main(["--model", str(tmp_path / "empty"), "--data", str(tmp_path)]) == 2
    (line,) = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error:")]
    assert "could not be loaded" in line and "empty" in line


class _NameEmbedder:
    """One-hot on which class name a text contains (``dim`` = number of names)."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = list(names)
        self.dim = len(names)

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        out = torch.zeros(len(texts), self.dim)
        for i, text in enumerate(texts):
            for k, name in enumerate(self.names):
                if name in text:
                    out[i, k] = 1.0
        return out


def test_zero_shot_reports_the_caption_ceiling() -> None:
    from muse_hf.evaluation.evaluate import _zero_shot

    names = ["red circle", "blue square"]
    embedder = _NameEmbedder(names)
    labels = torch.tensor([0, 1, 0, 1])
    features = {"model": torch.tensor([[1.0, 0.0], [1.0, 0.1], [1.0, 0.0], [0.0, 1.0]])}  # 3 of 4 right
    # captions of the 3rd and 4th images name the other class first / only: the caption ceiling is 2 / 4
    captions = ["a red circle", "a blue square", "a blue square", "a red circle"]
    entry = _zero_shot(features, labels, embedder, names, captions)
    assert entry["value"] == pytest.approx(0.75)
    assert entry["caption_ceiling"] == pytest.approx(0.5) and "ceiling" in entry["note"]
    assert "caption_ceiling" not in _zero_shot(features, labels, embedder, names)


def test_quickstart_one_object_check(tiny_config, tmp_path: Path) -> None:  # noqa: ANN001
    """One-object scenes: zero-shot beside its floor and its caption ceiling, which is exact on these scenes."""
    from muse_hf.models import MuseImageProcessor, MuseTokenizerModel
    from muse_hf.training.quickstart import evaluate_one_object_scenes

    model = MuseTokenizerModel(tiny_config(semantic_dim=384)).eval()  # 384: the packaged MiniLM's width
    model.save_pretrained(tmp_path / "model")
    MuseImageProcessor(size=32).save_pretrained(tmp_path / "model")
    flat = evaluate_one_object_scenes(tmp_path / "model", tmp_path, num_samples=24)
    assert set(flat) == {
        "zero_shot_accuracy_one_object",
        "linear_probe_accuracy_one_object",
        "zero_shot_majority_class_one_object",
        "zero_shot_caption_ceiling_one_object",
    }
    # every one-object caption names its only object, and MiniLM ranks that class first
    assert flat["zero_shot_caption_ceiling_one_object"] == pytest.approx(1.0)
    assert 0.0 <= flat["zero_shot_accuracy_one_object"] <= 1.0
    assert (tmp_path / "data-one-object" / "README.md").is_file()
