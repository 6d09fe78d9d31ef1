"""Cached UMM training inputs (``cache_latents``): same losses as encoding on the fly, a key that follows the frozen
models' weights, damaged shards rebuilt, bad rows skipped and counted, resume and per-process split as for images."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import datasets
import pytest
import torch
from test_umm_training import _config, _stage, assets  # noqa: F401  (module fixture shared with the UMM tests)

LOSS_KEYS = ("loss", "loss/generation", "loss/editing")


def _losses(history: list[dict[str, Any]]) -> list[dict[str, float]]:
    return [{k: float(r[k]) for k in LOSS_KEYS} for r in history]


def _components(paths: dict[str, Path]) -> tuple[Any, Any, Any]:
    from transformers import AutoModel, AutoTokenizer

    from muse_hf.models import MuseTokenizerModel
    from muse_hf.models.image_processing_muse import MuseImageProcessor
    from muse_hf.pipelines import TextConditionEncoder

    vae = MuseTokenizerModel.from_pretrained(paths["tokenizer"]).eval()
    encoder = TextConditionEncoder(AutoModel.from_pretrained(paths["text"]).eval(),
                                   AutoTokenizer.from_pretrained(paths["text"]))  # fmt: skip
    return vae, encoder, MuseImageProcessor.from_pretrained(paths["tokenizer"])


def _prepare(paths: dict[str, Path], root: Path, vae: Any, encoder: Any, processor: Any, name: str = "gen") -> Any:
    from muse_hf.training.umm.cache import prepare_cached_part

    def encode_latents(pixels: list[torch.Tensor]) -> list[torch.Tensor]:
        return [vae.normalize_latents(vae.encode(p).latents.float()) for p in pixels]

    return prepare_cached_part(name, root=root, source=paths["data"], split="train", columns={},
                               image_processor=processor, encode_latents=encode_latents, encode_text=encoder.encode,
                               batch_size=5)  # fmt: skip


@pytest.fixture(scope="module")
def runs(assets: dict[str, Path]) -> dict[str, Any]:  # noqa: F811
    """The same stage (DiT + connector, generation/editing mixture, shuffled) trained uncached and cached."""
    from muse_hf.training.loop import train

    out = {}
    for cached in (False, True):
        cfg = _config(assets, assets["root"] / f"cache-{cached}", train_transformer="full", edit_ratio=0.5,
                      max_train_steps=3, shuffle_buffer_size=8, cache_latents=cached)  # fmt: skip
        out[cached] = train(_stage(cfg))
    return out


def test_cached_and_uncached_training_give_the_same_losses(runs: dict[str, Any], assets: dict[str, Path]) -> None:  # noqa: F811
    uncached, cached = _losses(runs[False].history), _losses(runs[True].history)
    assert len(cached) == len(uncached) == 3
    for a, b in zip(uncached, cached):  # same batches, noise, timesteps and dropout -> the same losses
        for key in LOSS_KEYS:
            assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-6), (key, a, b)
    assert len({r["loss"] for r in uncached}) == 3  # the steps differ (not a constant)
    # The cache sits beside the data, in a folder datasets' default patterns ignore: the data set is unchanged.
    (key_dir,) = (assets["data"] / ".muse_cache").iterdir()
    assert sorted(p.name for p in key_dir.iterdir()) == ["edit", "gen"]
    assert len(list((key_dir / "gen").glob("train-*.parquet"))) == 4
    assert datasets.load_dataset(str(assets["data"]), split="train").num_rows == 24


def test_cache_key_follows_the_frozen_models(assets: dict[str, Path], tmp_path: Path) -> None:  # noqa: F811
    from muse_hf.training.umm.cache import cache_key

    vae, encoder, processor = _components(assets)
    key = cache_key(vae, encoder, processor)
    vae.save_pretrained(tmp_path / "moved")  # the same weights saved elsewhere: the same key
    _, encoder2, _ = _components(assets)
    from muse_hf.models import MuseTokenizerModel

    assert cache_key(MuseTokenizerModel.from_pretrained(tmp_path / "moved"), encoder2, processor) == key
    with torch.no_grad():
        next(vae.parameters()).view(-1)[0] += 1e-3  # one tokenizer weight changes
    changed = cache_key(vae, encoder, processor)
    assert changed != key
    with torch.no_grad():
        next(vae.parameters()).view(-1)[0] -= 1e-3
    assert cache_key(vae, encoder, processor) == key
    vae.config.scaling_factor = 2.0  # the latent normalisation is part of the cached values
    assert cache_key(vae, encoder, processor) != key
    vae.config.scaling_factor = 1.0
    with torch.no_grad():
        next(encoder.model.parameters()).view(-1)[0] += 1e-3  # the text encoder changes
    assert cache_key(vae, encoder, processor) not in (key, changed)


def test_damaged_shard_is_rebuilt_and_bad_rows_are_skipped(
    assets: dict[str, Path],  # noqa: F811
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from muse_hf.data import load_tensor_stream, make_dataloader, write_tensor_shard

    data = tmp_path / "data"
    shutil.copytree(assets["data"], data)
    local = {**assets, "data": data}
    vae, encoder, processor = _components(assets)
    root = tmp_path / "cache" / "key"
    first = _prepare(local, root, vae, encoder, processor)
    assert first.num_rows == 24 and len(first.rebuilt) == 4
    rows = [r["caption"] for r in load_tensor_stream(first.files, first.tensor_columns, first.text_columns)]
    assert _prepare(local, root, vae, encoder, processor).rebuilt == []  # complete: reused as it is

    shard = first.files[1]
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])  # truncated (an interrupted copy)
    with caplog.at_level(logging.WARNING, logger="muse_hf.training.umm.cache"):
        again = _prepare(local, root, vae, encoder, processor)
    assert again.rebuilt == [shard.name]
    assert f"Cache shard {shard}" in caplog.text and "truncated" in caplog.text and "Rebuilding it from" in caplog.text
    stream = load_tensor_stream(again.files, again.tensor_columns, again.text_columns)
    restored = list(stream)
    assert [r["caption"] for r in restored] == rows and not stream.skipped
    assert restored[0]["latents"].shape == (8, 4, 4) and restored[0]["condition"].shape[1] == 16

    caplog.clear()
    source = next((data / "data").glob("train-*.parquet"))
    source.write_bytes(source.read_bytes())  # the data changed (new mtime): the whole part is rebuilt
    with caplog.at_level(logging.WARNING, logger="muse_hf.training.umm.cache"):
        assert len(_prepare(local, root, vae, encoder, processor).rebuilt) == 4
    assert "built from other data" in caplog.text

    # A row whose bytes do not match its shape is skipped and counted, like an undecodable image.
    good = restored[0]
    bad = {**good, "latents": good["latents"].flatten()[:-1]}
    bad_file = tmp_path / "bad.parquet"
    write_tensor_shard(bad_file, [good, bad, good], ["latents", "condition"], ["caption"])
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(bad_file)
    shapes = table.column("latents_shape").to_pylist()
    shapes[1] = list(good["latents"].shape)  # the stored shape no longer matches the stored bytes
    pq.write_table(table.set_column(table.schema.get_field_index("latents_shape"), "latents_shape",
                                    pa.array(shapes, pa.list_(pa.int32()))), bad_file)  # fmt: skip
    loader = make_dataloader(load_tensor_stream([bad_file], ["latents", "condition"], ["caption"]), 2)
    batches = list(loader)
    assert sum(len(b["caption"]) for b in batches) == 2 and loader.skipped == {"bad_tensor_row": 1}


def test_cached_run_resumes_exactly(runs: dict[str, Any], assets: dict[str, Path], tmp_path: Path) -> None:  # noqa: F811
    from muse_hf.training.loop import train

    cfg = _config(assets, tmp_path / "full", train_transformer="full", edit_ratio=0.5, max_train_steps=4,
                  checkpointing_steps=2, shuffle_buffer_size=8, cache_latents=True)  # fmt: skip
    (key_dir,) = (assets["data"] / ".muse_cache").iterdir()
    stamps = {p: p.stat().st_mtime_ns for p in key_dir.rglob("*.parquet")}
    full = train(_stage(cfg))
    assert {p: p.stat().st_mtime_ns for p in key_dir.rglob("*.parquet")} == stamps  # reused, not rebuilt
    assert _losses(full.history)[:2] == _losses(runs[True].history)[:2]  # the same cache (later: other lr schedule)
    resumed_dir = tmp_path / "resumed"
    resumed_dir.mkdir()
    shutil.copytree(tmp_path / "full" / "checkpoint-2", resumed_dir / "checkpoint-2")
    resumed = train(_stage({**cfg, "output_dir": str(resumed_dir), "resume_from_checkpoint": "latest"}))
    assert [int(r["step"]) for r in resumed.history] == [3, 4]
    assert _losses(resumed.history) == _losses(full.history)[2:]


def test_cached_stream_splits_by_process(runs: dict[str, Any], assets: dict[str, Path]) -> None:  # noqa: F811
    from muse_hf.data import load_tensor_stream

    (key_dir,) = (assets["data"] / ".muse_cache").iterdir()
    files = sorted((key_dir / "edit").glob("train-*.parquet"))
    per_rank = [[r["instruction"] + str(r["target_latents"].sum().item())
                 for r in load_tensor_stream(files, ["target_latents"], ["instruction"], process_index=rank,
                                             num_processes=2)]
                for rank in (0, 1)]  # fmt: skip
    assert len(per_rank[0]) == len(per_rank[1]) == 12 and not set(per_rank[0]) & set(per_rank[1])


def test_cache_arguments(assets: dict[str, Path], tmp_path: Path) -> None:  # noqa: F811
    with pytest.raises(ValueError, match="cache_batch_size"):
        _stage(_config(assets, tmp_path / "a", cache_latents=True, cache_batch_size=0))
    from muse_hf.training.umm.cache import default_cache_root, source_shards

    with pytest.raises(ValueError, match="not a local path"):
        default_cache_root("someone/some-dataset")
    with pytest.raises(ValueError, match="no files for split 'test'"):
        source_shards(assets["data"], "test")
