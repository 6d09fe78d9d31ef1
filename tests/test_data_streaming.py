"""Streaming loaders: guarded decoding with exact skip counts, column mapping, node split, workers, resume."""

from __future__ import annotations

import io
import json
import multiprocessing as mp
import struct
import tarfile
import zlib
from collections import Counter
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import PIL.Image
import pytest
import torch

from muse_hf.data import build_shapes_dataset
from muse_hf.data.streaming import (
    SKIP_REASONS,
    SkipSample,
    StreamOptions,
    decode_image,
    load_edit_stream,
    load_image_text_stream,
    load_tensor_stream,
    make_dataloader,
    write_tensor_shard,
)
from muse_hf.models.image_processing_muse import MuseImageProcessor

SIZE = 32
N_SHAPES = 48
datasets.disable_progress_bars()


@pytest.fixture(scope="module")
def proc() -> MuseImageProcessor:
    return MuseImageProcessor(size={"height": SIZE, "width": SIZE})


@pytest.fixture(scope="module")
def shapes_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("shapes")
    build_shapes_dataset(out, num_train=N_SHAPES, num_val=8, image_size=SIZE, seed=1, min_shards=4)
    return out


def _png_bytes(seed: int, size: int = SIZE) -> bytes:
    array = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    PIL.Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG signature + IHDR claiming ``width x height`` and nothing else (a decompression-bomb header)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + crc


# rows of the corrupt shard: index -> (kind, expected skip reason)
_BAD = {
    7: ("garbage", "undecodable"),
    19: ("garbage", "undecodable"),
    33: ("garbage", "undecodable"),
    46: ("truncated", "truncated"),
    71: ("truncated", "truncated"),
    12: ("empty_caption", "missing_caption"),
    55: ("blank_caption", "missing_caption"),
    88: ("none_caption", "missing_caption"),
    60: ("bomb", "too_large"),
}
N_CORRUPT = 100


@pytest.fixture(scope="module")
def corrupt_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """100 rows in 2 parquet shards: 5% corrupt/truncated images, 3 empty captions, one 20000x20000 PNG header."""
    out = tmp_path_factory.mktemp("corrupt")
    images, captions = [], []
    for i in range(N_CORRUPT):
        kind = _BAD.get(i, ("ok", None))[0]
        data = _png_bytes(i)
        caption: str | None = f"sample {i}"
        if kind == "garbage":
            data = bytes(np.random.default_rng(i).integers(0, 256, 200, dtype=np.uint8))
        elif kind == "truncated":
            data = data[: len(data) // 2]
        elif kind == "bomb":
            data = _png_header_only(20_000, 20_000)
        elif kind == "empty_caption":
            caption = ""
        elif kind == "blank_caption":
            caption = "   \n"
        elif kind == "none_caption":
            caption = None
        images.append({"bytes": data, "path": None})
        captions.append(caption)
    features = datasets.Features(
        {"index": datasets.Value("int64"), "image": datasets.Image(), "caption": datasets.Value("string")}
    )
    table = datasets.Dataset.from_dict(
        {"index": list(range(N_CORRUPT)), "image": images, "caption": captions}, features=features
    )
    (out / "data").mkdir()
    for k in range(2):
        table.select(range(k * 50, (k + 1) * 50)).to_parquet(str(out / "data" / f"train-0000{k}-of-00002.parquet"))
    return out


EXPECTED_SKIPS = Counter(reason for _, reason in _BAD.values())
EXPECTED_KEPT = sorted(set(range(N_CORRUPT)) - set(_BAD))


# ---------------------------------------------------------------------------------------------------- decoding
def test_decode_image_reasons() -> None:
    good = _png_bytes(0)
    assert decode_image({"bytes": good, "path": None}).size == (SIZE, SIZE)
    assert decode_image(good).size == (SIZE, SIZE)
    cases = {
        "missing_image": [None, {"bytes": None, "path": None}],
        "empty_file": [b""],
        "undecodable": [b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"x" * 40, 12345],
        "truncated": [good[: len(good) // 2]],
        "zero_size": [_png_header_only(0, 10)],
        "too_large": [_png_header_only(20_000, 20_000), _png_header_only(9_000, 9_000)],
    }
    for reason, values in cases.items():
        assert reason in SKIP_REASONS
        for value in values:
            with pytest.raises(SkipSample) as info:
                decode_image(value)
            assert info.value.reason == reason, (
                reason,
                value if not isinstance(value, bytes) else value[:20],
            )
    with pytest.raises(SkipSample, match="too_large"):
        decode_image(good, max_pixels=SIZE * SIZE - 1)


# ---------------------------------------------------------------------------------------------------- corrupt shard
def test_corrupt_shard_skips_exactly_the_bad_samples(corrupt_dir: Path, proc: MuseImageProcessor) -> None:
    ds = load_image_text_stream(corrupt_dir, "train", proc, extra_columns=["index"])
    kept = [s["index"] for s in ds]
    assert kept == EXPECTED_KEPT
    assert ds.skipped == EXPECTED_SKIPS
    assert sum(ds.skipped.values()) == len(_BAD)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_corrupt_shard_through_dataloader_workers(
    corrupt_dir: Path, proc: MuseImageProcessor, num_workers: int
) -> None:
    ds = load_image_text_stream(corrupt_dir, "train", proc, extra_columns=["index"])
    loader = make_dataloader(ds, batch_size=16, num_workers=num_workers)
    kept = []
    for batch in loader:
        assert batch["pixel_values"].shape[1:] == (3, SIZE, SIZE)
        assert batch["index"].dtype == torch.long
        assert len(batch["caption"]) == batch["pixel_values"].shape[0] == len(batch["index"])
        assert all(c.strip() for c in batch["caption"])
        kept += batch["index"].tolist()
    assert sorted(kept) == EXPECTED_KEPT and len(kept) == len(EXPECTED_KEPT)
    assert loader.skipped == EXPECTED_SKIPS  # trailing skips of each worker included
    assert ds.skipped == EXPECTED_SKIPS
    assert loader.epoch == 1
    for _ in loader:  # a second epoch adds the same counts again
        pass
    assert loader.skipped == Counter({k: 2 * v for k, v in EXPECTED_SKIPS.items()})


# ---------------------------------------------------------------------------------------------------- content
def test_image_text_stream_yields_aligned_samples(shapes_dir: Path, proc: MuseImageProcessor) -> None:
    ds = load_image_text_stream(shapes_dir, "train", proc, extra_columns=["index"])
    assert ds.num_shards == 4
    raw = datasets.load_dataset(str(shapes_dir), split="train")
    for sample in list(ds)[:6]:
        row = raw[sample["index"]]
        assert sample["pixel_values"].shape == (3, SIZE, SIZE) and sample["pixel_values"].dtype == torch.float32
        expected = proc(row["image"], return_tensors="pt")["pixel_values"][0]
        torch.testing.assert_close(sample["pixel_values"], expected)
        assert sample["caption"] == row["caption"] and sample["label"] == row["label"]
        mask = sample["mask"]
        assert mask.shape == (SIZE, SIZE) and mask.dtype == torch.long
        assert torch.equal(mask, torch.from_numpy(np.asarray(row["mask"]).astype(np.int64)))
        assert set(mask.unique().tolist()) - {0} == set(range(1, len(row["objects"]) + 1))
    batch = next(iter(make_dataloader(ds, batch_size=5)))
    assert batch["pixel_values"].shape == (5, 3, SIZE, SIZE)
    assert batch["label"].dtype == torch.long and batch["mask"].shape == (5, SIZE, SIZE)
    plain = load_image_text_stream(shapes_dir, "validation", proc, with_label=False, with_mask=False)
    assert set(next(iter(plain))) == {"pixel_values", "caption"}


def test_mask_follows_the_processor_geometry(shapes_dir: Path) -> None:
    big = MuseImageProcessor(size={"height": 48, "width": 64}, do_center_crop=False)
    sample = next(iter(load_image_text_stream(shapes_dir, "validation", big)))
    assert sample["pixel_values"].shape == (3, 48, 64) and sample["mask"].shape == (48, 64)


def test_edit_stream(shapes_dir: Path, proc: MuseImageProcessor) -> None:
    edits = load_edit_stream(shapes_dir, "validation", proc, extra_columns=["index"])
    images = {s["index"]: s for s in load_image_text_stream(shapes_dir, "validation", proc, extra_columns=["index"])}
    batch = next(iter(make_dataloader(edits, batch_size=4)))
    assert set(batch) == {"source_pixel_values", "target_pixel_values", "instruction", "index"}
    assert batch["source_pixel_values"].shape == batch["target_pixel_values"].shape == (4, 3, SIZE, SIZE)
    for i, idx in enumerate(batch["index"].tolist()):
        torch.testing.assert_close(batch["source_pixel_values"][i], images[idx]["pixel_values"])
        assert not torch.equal(batch["source_pixel_values"][i], batch["target_pixel_values"][i])
        assert batch["instruction"][i]


def test_webdataset_tar_and_column_mapping(tmp_path: Path, proc: MuseImageProcessor) -> None:
    """Paper-corpus layouts: webdataset shards with png+json (caption inside) and jpg+txt keys."""
    for layout in ("png_json", "jpg_txt"):
        folder = tmp_path / layout
        folder.mkdir()
        with tarfile.open(folder / "shard-000000.tar", "w") as tar:
            for i in range(6):
                if layout == "png_json":
                    files = {
                        "png": _png_bytes(i),
                        "json": json.dumps({"caption": f"cap {i}", "w": 32}).encode(),
                    }
                else:
                    buf = io.BytesIO()
                    PIL.Image.fromarray(np.full((40, 24, 3), 9 * i, np.uint8)).save(buf, format="JPEG")
                    files = {"jpg": buf.getvalue(), "txt": (f"cap {i}" if i != 3 else "").encode()}
                for ext, data in files.items():
                    info = tarfile.TarInfo(f"{i:06d}.{ext}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        ds = load_image_text_stream(folder, "train", proc)
        samples = list(ds)
        expected = [f"cap {i}" for i in range(6) if layout == "png_json" or i != 3]
        assert [s["caption"] for s in samples] == expected
        assert all(s["pixel_values"].shape == (3, SIZE, SIZE) for s in samples)
        assert ds.skipped == (Counter() if layout == "png_json" else Counter(missing_caption=1))
    # explicit mapping on an in-memory dataset with unusual names
    table = datasets.Dataset.from_dict(
        {"picture": [PIL.Image.new("RGB", (20, 20))] * 3, "alt": ["a", "b", "c"]},
        features=datasets.Features({"picture": datasets.Image(), "alt": datasets.Value("string")}),
    )
    with pytest.raises(ValueError, match="caption column"):
        load_image_text_stream(table, "train", proc)
    mapped = load_image_text_stream(table, "train", proc, columns={"caption": "alt"})
    assert [s["caption"] for s in mapped] == ["a", "b", "c"]  # the only Image column is found as the image


def test_bad_arguments_fail_clearly(shapes_dir: Path, tmp_path: Path, proc: MuseImageProcessor) -> None:
    with pytest.raises(ValueError, match="caption column 'nope'"):
        load_image_text_stream(shapes_dir, "train", proc, caption_column="nope")
    with pytest.raises(ValueError, match="unknown column role"):
        load_image_text_stream(shapes_dir, "train", proc, columns={"pixels": "image"})
    with pytest.raises(ValueError, match="cannot open dataset"):
        load_image_text_stream(tmp_path / "missing" / "dir.parquet", "train", proc)
    with pytest.raises(ValueError, match="shuffle_buffer"):
        load_image_text_stream(shapes_dir, "train", proc, shuffle_buffer=-1)
    with pytest.raises(ValueError, match="process_index"):
        load_image_text_stream(shapes_dir, "train", proc, process_index=2, num_processes=2)
    with pytest.raises(ValueError, match="ImageTextStream"):
        make_dataloader([1, 2, 3], batch_size=2)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------- stream options
def _stream_config(stream: Any) -> dict[str, Any]:
    """What a loader's stream options decide about the stream it returns."""
    return {
        "shuffle_buffer": stream.shuffle_buffer,
        "seed": stream.seed,
        "max_pixels": stream.max_pixels,
        "extra_columns": stream.extra_columns,
        "size": dict(stream.image_processor.size),
        "num_shards": stream.num_shards,
        "columns": sorted(stream.hf_dataset.column_names or []),
    }


def test_stream_options_and_keywords_give_the_same_stream(shapes_dir: Path) -> None:
    keywords = {"image_size": SIZE, "extra_columns": ["index"], "shuffle_buffer": 6, "seed": 4, "max_pixels": 10**6,
                "process_index": 1, "num_processes": 2}  # fmt: skip
    options = StreamOptions(image_size=SIZE, extra_columns=("index",), shuffle_buffer=6, seed=4, max_pixels=10**6,
                            process_index=1, num_processes=2)  # fmt: skip
    assert StreamOptions.resolve(None, keywords) == options
    assert StreamOptions.resolve(options, {"revision": "main"}).load_kwargs == {"revision": "main"}  # -> load_dataset
    for load in (load_image_text_stream, load_edit_stream):
        by_keywords, by_options = load(shapes_dir, "train", **keywords), load(shapes_dir, "train", options=options)
        config = _stream_config(by_options)
        assert config == _stream_config(by_keywords)
        assert (config["shuffle_buffer"], config["seed"], config["max_pixels"]) == (6, 4, 10**6)
        assert config["extra_columns"] == ("index",) and config["num_shards"] == 2  # 4 shards, this process's half
        rows = [s["index"] for s in by_options]
        assert rows == [s["index"] for s in by_keywords] and len(rows) == N_SHAPES // 2
    # a keyword overrides the option of its name; the other options stay
    reseeded = load_image_text_stream(shapes_dir, "train", options=options, seed=5)
    assert _stream_config(reseeded) == {**_stream_config(load_image_text_stream(shapes_dir, "train", options=options)),
                                        "seed": 5}  # fmt: skip
    assert [s["index"] for s in reseeded] != rows  # the seed also picks this process's shards (one seed per run)
    with pytest.raises(ValueError, match="shuffle_buffer"):
        StreamOptions(shuffle_buffer=-1)
    with pytest.raises(TypeError, match="StreamOptions"):
        load_image_text_stream(shapes_dir, "train", options={"seed": 1})  # type: ignore[arg-type]


def test_tensor_stream_takes_the_same_options(tmp_path: Path) -> None:
    files = []
    for k in range(2):
        rows = [{"latents": torch.full((2, 3), float(6 * k + i)), "caption": f"row {6 * k + i}"} for i in range(6)]
        files.append(tmp_path / f"train-{k}.parquet")
        write_tensor_shard(files[-1], rows, ["latents"], ["caption"])
    options = StreamOptions(shuffle_buffer=4, seed=2, process_index=1, num_processes=2)
    by_options = load_tensor_stream(files, ["latents"], ["caption"], options=options)
    by_keywords = load_tensor_stream(files, ["latents"], ["caption"], shuffle_buffer=4, seed=2, process_index=1,
                                     num_processes=2)  # fmt: skip
    assert [(s.shuffle_buffer, s.seed, s.num_shards) for s in (by_options, by_keywords)] == [(4, 2, 1)] * 2
    rows = [(r["caption"], r["latents"][0, 0].item()) for r in by_options]
    assert rows == [(r["caption"], r["latents"][0, 0].item()) for r in by_keywords]
    shards = [{(f"row {i}", float(i)) for i in range(6 * k, 6 * k + 6)} for k in range(2)]
    assert len(rows) == 6 and set(rows) in shards  # process 1 of 2: one whole shard
    with pytest.raises(ValueError, match="max_pixels"):  # an image option has no meaning for stored tensors
        load_tensor_stream(files, ["latents"], options=StreamOptions(max_pixels=10))
    with pytest.raises(TypeError, match="image_size"):
        load_tensor_stream(files, ["latents"], image_size=32)


# ---------------------------------------------------------------------------------------------------- distribution
@pytest.mark.parametrize("world_size", [2, 3])
def test_split_by_node_is_disjoint_and_complete(shapes_dir: Path, proc: MuseImageProcessor, world_size: int) -> None:
    parts = []
    for rank in range(world_size):
        ds = load_image_text_stream(
            shapes_dir, "train", proc, extra_columns=["index"], process_index=rank, num_processes=world_size,
            shuffle_buffer=8, seed=3,
        )  # fmt: skip
        parts.append([s["index"] for s in ds])
    flat = [i for p in parts for i in p]
    assert sorted(flat) == list(range(N_SHAPES))  # complete and disjoint
    assert all(parts)
    assert flat != list(range(N_SHAPES))  # shuffled


def _node_child(rank: int, path: str, init: str, queue: Any) -> None:
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    try:
        ds = load_image_text_stream(path, "train", MuseImageProcessor(size=SIZE), extra_columns=["index"])
        queue.put((rank, [s["index"] for s in ds]))
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.distributed
def test_two_real_processes_get_disjoint_complete_shards(shapes_dir: Path, tmp_path: Path) -> None:
    """Two forked processes in a gloo group: rank and world size come from torch.distributed."""
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    init = f"file://{tmp_path / 'pg'}"
    procs = [ctx.Process(target=_node_child, args=(rank, str(shapes_dir), init, queue)) for rank in range(2)]
    for p in procs:
        p.start()
    results = dict(queue.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0, 0]
    assert results[0] and results[1] and not set(results[0]) & set(results[1])
    assert sorted(results[0] + results[1]) == list(range(N_SHAPES))


# ---------------------------------------------------------------------------------------------------- resume
@pytest.mark.parametrize("num_workers", [0, 2])
def test_resume_continues_exactly_where_it_stopped(
    shapes_dir: Path, proc: MuseImageProcessor, num_workers: int
) -> None:
    """Shuffled stream: the resumed run yields exactly the uninterrupted run's remaining samples, in order."""

    def loader() -> Any:
        ds = load_image_text_stream(shapes_dir, "train", proc, extra_columns=["index"], shuffle_buffer=6, seed=5)
        return make_dataloader(ds, batch_size=5, num_workers=num_workers)

    full = [i for batch in loader() for i in batch["index"].tolist()]
    assert sorted(full) == list(range(N_SHAPES)) and full != sorted(full)
    interrupted = loader()
    it = iter(interrupted)
    seen = [i for _ in range(3) for i in next(it)["index"].tolist()]
    state = json.loads(json.dumps(interrupted.state_dict()))  # checkpoints are JSON-serialisable
    del it
    resumed = loader()
    resumed.load_state_dict(state)
    rest = [i for batch in resumed for i in batch["index"].tolist()]
    assert seen + rest == full
    assert resumed.epoch == 1
    again = loader()  # stopping early and iterating again continues the pass
    head = [i for _, batch in zip(range(2), again) for i in batch["index"].tolist()]
    tail = [i for batch in again for i in batch["index"].tolist()]
    assert head + tail == full and again.epoch == 1
    second = [i for batch in resumed for i in batch["index"].tolist()]  # next epoch: complete, reshuffled
    assert sorted(second) == list(range(N_SHAPES)) and second != full
    if num_workers == 2:
        with pytest.raises(ValueError, match="num_workers"):
            make_dataloader(load_image_text_stream(shapes_dir, "train", proc), 5).load_state_dict(state)


def test_resume_keeps_skip_counts(corrupt_dir: Path, proc: MuseImageProcessor) -> None:
    ds = load_image_text_stream(corrupt_dir, "train", proc, extra_columns=["index"])
    loader = make_dataloader(ds, batch_size=10)
    it = iter(loader)
    seen = [i for _ in range(4) for i in next(it)["index"].tolist()]
    state = json.loads(json.dumps(loader.state_dict()))
    del it
    fresh = make_dataloader(load_image_text_stream(corrupt_dir, "train", proc, extra_columns=["index"]), 10)
    fresh.load_state_dict(state)
    rest = [i for batch in fresh for i in batch["index"].tolist()]
    assert sorted(seen + rest) == EXPECTED_KEPT
    assert fresh.skipped == EXPECTED_SKIPS  # counted once, across the checkpoint
    # direct (loader-less) iteration resumes too
    direct = load_image_text_stream(corrupt_dir, "train", proc, extra_columns=["index"])
    gen = iter(direct)
    head = [next(gen)["index"] for _ in range(30)]
    direct_state = direct.state_dict()
    del gen
    again = load_image_text_stream(corrupt_dir, "train", proc, extra_columns=["index"])
    again.load_state_dict(direct_state)
    assert sorted(head + [s["index"] for s in again]) == EXPECTED_KEPT
    assert again.skipped == EXPECTED_SKIPS
