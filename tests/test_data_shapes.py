"""Synthetic scenes: determinism, field consistency, edit pairs, structure-not-colour content, card, CLI; photos."""

from __future__ import annotations

import hashlib
import io
from collections import Counter
from pathlib import Path

import datasets
import numpy as np
import PIL.Image
import pytest
from huggingface_hub import DatasetCard

from muse_hf.cli import build_data_main as main
from muse_hf.data import (
    COLOURS,
    LABEL_NAMES,
    SHAPES,
    SceneOptions,
    build_shapes_dataset,
    label_of,
    photo_check_set,
    render_scene,
    sample_scene,
    zero_shot_prompts,
)
from muse_hf.data.photos import PHOTO_CAPTIONS, photo_check_dataset
from muse_hf.data.shapes import SIZES, Scene

SIZE = 32
SIZE_RANK = {"small": 0, "medium": 1, "large": 2}


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("shapes")
    build_shapes_dataset(out, num_train=80, num_val=16, image_size=SIZE, seed=7, max_shard_rows=40)
    return out


@pytest.fixture(scope="module")
def rows(built: Path) -> list[dict]:
    datasets.disable_progress_bars()
    ds = datasets.load_dataset(str(built), split="train")
    ds = ds.cast_column("image", datasets.Image(decode=False))
    for col in ("mask", "source_image", "target_image"):
        ds = ds.cast_column(col, datasets.Image(decode=False))
    return list(ds)


def _png(value: dict) -> np.ndarray:
    return np.asarray(PIL.Image.open(io.BytesIO(value["bytes"])))


def test_same_seed_same_bytes_other_seed_differs(built: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    other = tmp_path / "other"
    build_shapes_dataset(again, num_train=80, num_val=16, image_size=SIZE, seed=7, max_shard_rows=40)
    build_shapes_dataset(other, num_train=80, num_val=16, image_size=SIZE, seed=8, max_shard_rows=40)
    first, second = _hashes(built), _hashes(again)
    assert len(first) == 4 + 4 + 1  # min_shards=4 shards per split, README
    assert first == second
    parquet = [k for k in first if k.endswith(".parquet")]
    assert all(first[k] != _hashes(other)[k] for k in parquet)


def test_layout_card_and_streaming_load(built: Path) -> None:
    files = sorted(p.name for p in (built / "data").iterdir())
    assert files == [f"{split}-0000{i}-of-00004.parquet" for split in ("train", "validation") for i in range(4)]
    card = DatasetCard.load(built / "README.md")
    meta = card.data.to_dict()
    assert meta["license"] == "cc0-1.0"
    assert {d["split"] for d in meta["configs"][0]["data_files"]} == {"train", "validation"}
    assert {s["name"]: s["num_examples"] for s in meta["dataset_info"]["splits"]} == {
        "train": 80,
        "validation": 16,
    }
    stream = datasets.load_dataset(str(built), streaming=True)
    assert set(stream) == {"train", "validation"}
    assert stream["train"].features["label"].names == LABEL_NAMES
    assert stream["train"].num_shards == 4
    first = next(iter(stream["validation"]))
    assert isinstance(first["image"], PIL.Image.Image) and first["image"].size == (SIZE, SIZE)
    assert sum(1 for _ in stream["validation"]) == 16


def test_fields_are_consistent(rows: list[dict]) -> None:
    assert [r["index"] for r in rows] == list(range(80))
    for r in rows:
        image, mask, objects = _png(r["image"]), _png(r["mask"]), r["objects"]
        assert image.shape == (SIZE, SIZE, 3) and mask.shape == (SIZE, SIZE) and mask.dtype == np.uint8
        assert 1 <= len(objects) <= 4
        assert set(np.unique(mask)) - {0} == set(range(1, len(objects) + 1))  # every object visible, ids match
        for i, obj in enumerate(objects, start=1):
            x0, y0, x1, y1 = obj["bbox"]
            assert 0 <= x0 <= x1 < SIZE and 0 <= y0 <= y1 < SIZE
            ys, xs = np.nonzero(mask == i)
            assert [xs.min(), ys.min(), xs.max(), ys.max()] == obj["bbox"]  # bbox = visible pixels
            assert 0 <= obj["centre"][0] < SIZE and 0 <= obj["centre"][1] < SIZE
        # the caption names every object ("colour shape" once per object)
        names = Counter(f"{o['colour']} {o['shape']}" for o in objects)
        for name, count in names.items():
            assert r["caption"].count(name) >= count, (r["caption"], name)
        # label = the main (strictly largest) object
        main = objects[0]
        assert r["label"] == label_of(main["colour"], main["shape"])
        assert LABEL_NAMES[r["label"]] == f"{main['colour']} {main['shape']}"
        assert all(SIZE_RANK[o["size"]] < SIZE_RANK[main["size"]] for o in objects[1:])


def _edited_region(r: dict) -> np.ndarray:
    """Pixels where the edited object is in the source or the target."""
    src_mask = _png(r["mask"])
    objects, targets = r["objects"], r["target_objects"]
    edit = r["edit_type"]
    names = [f"{o['colour']} {o['shape']}" for o in objects]
    region = np.zeros((SIZE, SIZE), bool)
    if edit == "add":
        new = targets[-1]
        x0, y0, x1, y1 = new["bbox"]
        region[y0 : y1 + 1, x0 : x1 + 1] = True
        return region
    idx = next(i for i, n in enumerate(names) if n in r["instruction"])
    region |= src_mask == idx + 1
    if edit in ("recolour", "move"):
        x0, y0, x1, y1 = targets[idx]["bbox"]
        region[y0 : y1 + 1, x0 : x1 + 1] = True
    return region


def test_edit_pairs_change_only_the_edited_object(rows: list[dict]) -> None:
    kinds = Counter()
    for r in rows:
        assert r["source_image"]["bytes"] == r["image"]["bytes"]
        src, tgt = _png(r["source_image"]).astype(int), _png(r["target_image"]).astype(int)
        changed = np.any(src != tgt, axis=-1)
        assert changed.any(), r["instruction"]
        region = _edited_region(r)
        assert not (changed & ~region).any(), (r["edit_type"], r["instruction"])
        objects, targets = r["objects"], r["target_objects"]
        kind = r["edit_type"]
        kinds[kind] += 1
        if kind == "add":
            assert len(targets) == len(objects) + 1
            assert f"{targets[-1]['colour']} {targets[-1]['shape']}" in r["instruction"]
        elif kind == "remove":
            assert len(targets) == len(objects) - 1
        elif kind == "recolour":
            assert len(targets) == len(objects)
            assert sum(a["colour"] != b["colour"] for a, b in zip(objects, targets)) == 1
            new = next(b["colour"] for a, b in zip(objects, targets) if a["colour"] != b["colour"])
            assert r["instruction"].rstrip().endswith(new)
        else:
            assert kind == "move"
            assert sum(a["centre"] != b["centre"] for a, b in zip(objects, targets)) == 1
    assert set(kinds) == {"add", "remove", "recolour", "move"}


def test_colour_alone_cannot_segment_scenes() -> None:
    """Textured objects, same-colour neighbours and occlusion are all common."""
    rng = np.random.default_rng(0)
    textured = same_colour = occluded = total_objects = multi = 0
    for _ in range(100):
        scene = sample_scene(rng, 64)
        _, mask = render_scene(scene)
        total_objects += len(scene.objects)
        textured += sum(o.texture != "plain" for o in scene.objects)
        colours = [o.colour for o in scene.objects]
        if len(colours) > 1:
            multi += 1
            same_colour += len(set(colours)) < len(colours)
        for i, obj in enumerate(scene.objects):
            _, alone = render_scene(Scene(size=64, background=scene.background, objects=(obj,)))
            full, visible = int((alone == 1).sum()), int((mask == i + 1).sum())
            assert visible >= 0.45 * full  # occluded objects stay mostly visible
            occluded += visible < full
            assert obj.r == pytest.approx(SIZES[obj.size] * 64)
    assert textured / total_objects > 0.2
    assert same_colour / multi > 0.2
    assert occluded / total_objects > 0.05


def test_options_and_arguments_are_validated(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="min_objects"):
        build_shapes_dataset(tmp_path / "a", 4, 0, options=SceneOptions(min_objects=3, max_objects=2))
    with pytest.raises(ValueError, match="texture_prob"):
        build_shapes_dataset(tmp_path / "a", 4, 0, options=SceneOptions(texture_prob=1.5))
    with pytest.raises(ValueError, match="image_size"):
        build_shapes_dataset(tmp_path / "a", 4, 0, image_size=16)
    with pytest.raises(ValueError, match="num_train"):
        build_shapes_dataset(tmp_path / "a", 0, 0)
    rng = np.random.default_rng(1)
    one = [sample_scene(rng, 48, SceneOptions(min_objects=1, max_objects=1)) for _ in range(20)]
    assert all(len(s.objects) == 1 for s in one)


def test_cli_builds_and_refuses_to_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    argv = [
        "--output_dir",
        str(out),
        "--num_train",
        "8",
        "--num_val",
        "4",
        "--image_size",
        "32",
        "--min_shards",
        "2",
    ]
    assert main(argv) == 0
    assert "train: 8 samples in 2 shards" in capsys.readouterr().out
    before = _hashes(out)
    with pytest.raises(ValueError, match="overwrite"):
        main(argv)
    assert main([*argv, "--overwrite"]) == 0
    assert _hashes(out) == before


def test_labels_and_zero_shot_prompts() -> None:
    assert len(LABEL_NAMES) == len(SHAPES) * len(COLOURS) == len(set(LABEL_NAMES))
    for colour in COLOURS:
        for shape in SHAPES:
            assert LABEL_NAMES[label_of(colour, shape)] == f"{colour} {shape}"
    prompts = zero_shot_prompts()
    assert len(prompts) == len(LABEL_NAMES) and all(len(p) == len(prompts[0]) for p in prompts)
    assert prompts[label_of("red", "circle")][0] == "a photo of a red circle."
    assert zero_shot_prompts("a {label}", ["x"]) == [["a x"]]
    with pytest.raises(ValueError, match="label"):
        zero_shot_prompts(["no placeholder"])
    with pytest.raises(ValueError, match="unknown colour"):
        label_of("teal", "circle")


def test_photo_check_set() -> None:
    photos = photo_check_set(32, names=["astronaut", "camera", "coffee"], crops_per_photo=2)
    assert len(photos) == 6
    assert all(p.mode == "RGB" and p.size == (32, 32) for p in photos)
    arrays = [np.asarray(p) for p in photos]
    assert not np.array_equal(arrays[0], arrays[1])  # whole photo vs 2x zoom
    assert np.array_equal(arrays[2][..., 0], arrays[2][..., 1])  # grey photo -> equal channels
    assert np.array_equal(arrays[0], np.asarray(photo_check_set(32, names=["astronaut"], crops_per_photo=1)[0]))
    wide = photo_check_set((24, 40), names=["rocket"], crops_per_photo=1)[0]
    assert wide.size == (40, 24)
    assert len(photo_check_set(16)) == 2 * len(PHOTO_CAPTIONS)
    ds = photo_check_dataset(16, names=["chelsea"], crops_per_photo=3)
    assert ds.num_rows == 3 and ds[0]["caption"] == PHOTO_CAPTIONS["chelsea"]
    with pytest.raises(ValueError, match="unknown photo"):
        photo_check_set(16, names=["not-a-photo"])
    with pytest.raises(ValueError, match="crops_per_photo"):
        photo_check_set(16, crops_per_photo=0)


# ------------------------------------------------------------------------------------- plain scenes, held-out prompts
def _geneval_prompt_set() -> set[str]:
    from muse_hf.evaluation.geneval import geneval_prompts

    return {p.prompt for seed in range(3) for size in (SIZE, 64) for p in geneval_prompts(size, 8, seed)}


def test_plain_share_matches_the_scorer_and_never_uses_held_out_prompts(built: Path, tmp_path: Path) -> None:
    from muse_hf.data.shapes import PLAIN_BACKGROUND, held_out_prompts, is_held_out

    out = tmp_path / "plain"
    build_shapes_dataset(out, num_train=80, num_val=16, image_size=SIZE, seed=7, max_shard_rows=40, plain_fraction=0.5)
    from muse_hf.data.shapes import built_settings

    assert built_settings(out)["plain_fraction"] == 0.5 and built_settings(built)["plain_fraction"] == 0.0
    assert built_settings(tmp_path) is None
    plain_rows = datasets.load_dataset(str(out), split="train")
    for col in ("image", "mask", "source_image", "target_image"):
        plain_rows = plain_rows.cast_column(col, datasets.Image(decode=False))
    base = {
        r["index"]: r
        for r in datasets.load_dataset(str(built), split="train").cast_column("image", datasets.Image(decode=False))
    }
    scored = _geneval_prompt_set()
    held = held_out_prompts()
    n_plain = 0
    for r in plain_rows:
        assert r["caption"] not in held and r["caption"] not in scored, r["caption"]
        names = [f"{o['colour']} {o['shape']}" for o in r["objects"]]
        is_plain = r["image"]["bytes"] != base[r["index"]]["image"]["bytes"]
        if not is_plain:  # every other row is byte-identical to the build without plain scenes
            assert r["caption"] == base[r["index"]]["caption"]
            continue
        n_plain += 1
        assert r["background"] == "plain" and 1 <= len(names) <= 3 and not is_held_out(names)
        assert all(o["texture"] == "plain" and o["size"] == "medium" for o in r["objects"])
        assert len({o["shape"] for o in r["objects"]}) == len({o["colour"] for o in r["objects"]}) == len(names)
        image, mask = _png(r["image"]), _png(r["mask"])
        assert PLAIN_BACKGROUND.colours[0] == "white" and (image[mask == 0] == (236, 236, 230)).all()
        assert r["instruction"] and r["target_image"] != r["source_image"]
    assert 25 <= n_plain <= 55  # about half of 80
    with pytest.raises(ValueError, match="plain_fraction"):
        build_shapes_dataset(tmp_path / "bad", 4, 0, plain_fraction=1.5)


def test_held_out_split_is_explicit_and_disjoint() -> None:
    from muse_hf.data.captions import non_geneval_caption
    from muse_hf.data.shapes import (
        HELD_OUT_FRACTION,
        held_out_contents,
        held_out_prompts,
        is_held_out,
        make_caption,
        make_sample,
        sample_plain_scene,
    )
    from muse_hf.evaluation.geneval import geneval_prompts, parse_prompt

    held = held_out_contents()
    by_size = Counter(k.count("|") + 1 for k in held)
    assert by_size == {1: 9, 2: 113, 3: 600}  # ceil(0.25 * 36 / 450 / 2400)
    assert HELD_OUT_FRACTION == 0.25 and held == held_out_contents()  # deterministic, seed-independent
    # Every scored prompt names a held-out set and is one of the held-out prompt strings.
    for seed in range(3):
        items = geneval_prompts(64, 8, seed)
        assert {p.category for p in items} == {
            "single_object",
            "colors",
            "two_object",
            "color_attr",
            "counting",
            "position",
        }
        for p in items:
            assert is_held_out([o.name for o in p.scene.objects]), p.prompt
            assert p.prompt in held_out_prompts(), p.prompt
            parsed = parse_prompt(p.prompt)  # the held-out strings are in the scorer's grammar
            assert sorted(f"{s.colour} {s.shape}" for s in parsed.objects) == sorted(o.name for o in p.scene.objects)
    # The training side never draws a held-out set.
    rng = np.random.default_rng(0)
    for _ in range(300):
        _, text, scene = sample_plain_scene(rng, 64)
        assert not is_held_out([o.name for o in scene.objects]) and text not in held_out_prompts()
    # A regular sample whose drawn caption is a held-out prompt is recaptioned (and such samples do occur).
    rephrased = 0
    for i in range(400):
        r = make_sample(i, "train", 7, SIZE, SceneOptions())
        assert r["caption"] not in held_out_prompts()
        sample_rng = np.random.default_rng([7, 0, i])
        raw = make_caption(sample_scene(sample_rng, SIZE, SceneOptions()), sample_rng)
        if raw in held_out_prompts():
            rephrased += 1
            assert r["caption"] != raw and r["caption"].startswith("there is ")
    assert rephrased >= 1
    assert non_geneval_caption(sample_scene(np.random.default_rng(3), SIZE, SceneOptions(min_objects=2)))
