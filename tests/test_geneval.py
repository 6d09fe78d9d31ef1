"""GenEval-style detector and scores on the data module's own renders."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import numpy as np
import PIL.Image
import pytest
import torch
from scipy import ndimage

from muse_hf.data.shapes import SceneOptions, make_caption, render_scene, sample_scene
from muse_hf.evaluation.metrics import PSNR_CAP_DB
from muse_hf.pipelines import geneval as G

SIZE = 64


@pytest.fixture(scope="module")
def prompts() -> list[G.GenEvalPrompt]:
    return G.geneval_prompts(SIZE, per_category=4, seed=0)


def _scenes(options: SceneOptions, n: int, seed: int):
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        scene = sample_scene(rng, SIZE, options)
        yield scene, rng


def test_renders_of_the_prompt_set_score_perfectly(prompts) -> None:
    assert {p.category for p in prompts} == {
        "single_object",
        "colors",
        "two_object",
        "color_attr",
        "counting",
        "position",
    }
    images = {p.prompt: G.render_prompt(p) for p in prompts}
    result = G.evaluate_generation(lambda batch: [images[t] for t in batch], prompts, batch_size=5)
    assert result["overall"] == 1.0 and set(result["categories"].values()) == {1.0}
    assert result["colour"] == result["count"] == result["position"] == 1.0
    assert result["num_images"] == len(prompts) == len(result["scores"])


def test_wrong_images_fail_the_right_check(prompts) -> None:
    pos = next(p for p in prompts if p.category == "position")
    mirrored = pos.scene
    objs = tuple(replace(o, cx=SIZE - o.cx, cy=SIZE - o.cy) for o in mirrored.objects)  # flips any relation
    s = G.score_generation(PIL.Image.fromarray(render_scene(replace(mirrored, objects=objs))[0]), pos.prompt)
    assert s.colour and s.position is False and not s.correct

    single = next(p for p in prompts if p.category == "colors")
    obj = single.scene.objects[0]
    other = next(c for c in G.COLOURS if c != obj.colour)
    recoloured = replace(single.scene, objects=(replace(obj, colour=other),))
    s = G.score_generation(render_scene(recoloured)[0], single.prompt)
    assert not s.colour and not s.correct and s.detected == [f"{other} {obj.shape}"]

    counting = next(p for p in prompts if p.category == "counting")
    fewer = replace(counting.scene, objects=counting.scene.objects[:-1])
    s = G.score_generation(render_scene(fewer)[0], counting.prompt)
    assert s.count is False and not s.correct

    blank = np.full((SIZE, SIZE, 3), 236, np.uint8)
    assert G.detect_objects(blank) == []
    assert not G.score_generation(blank, single.prompt).correct


@pytest.mark.parametrize("texture_prob", [0.0, 1.0])
def test_detector_is_exact_on_dataset_scenes(texture_prob: float) -> None:
    """Separated objects, plain or textured (striped / checkered / dotted), every background kind."""
    options = SceneOptions(texture_prob=texture_prob, same_colour_prob=0.0, occlusion_prob=0.0)
    backgrounds = set()
    for scene, _ in _scenes(options, 40, seed=1 + int(texture_prob)):
        image, mask = render_scene(scene)
        backgrounds.add(scene.background.kind)
        found = G.detect_objects(image)
        assert sorted(o.name for o in found) == sorted(o.name for o in scene.objects)
        for i, obj in enumerate(scene.objects):
            truth = mask == i + 1
            det = max((d for d in found if d.name == obj.name), key=lambda d: (d.mask & truth).sum())
            assert (det.mask == truth).all(), obj  # pixel-exact segmentation
    assert len(backgrounds) >= 4


def test_input_formats_agree() -> None:
    scene, _ = next(_scenes(SceneOptions(occlusion_prob=0.0, same_colour_prob=0.0), 1, seed=3))
    image, _ = render_scene(scene)
    ref = [(o.name, o.bbox) for o in G.detect_objects(image)]
    assert [(o.name, o.bbox) for o in G.detect_objects(PIL.Image.fromarray(image))] == ref
    chw = torch.from_numpy(image).permute(2, 0, 1).float() / 255
    assert [(o.name, o.bbox) for o in G.detect_objects(chw)] == ref
    with pytest.raises(ValueError, match="RGB image"):
        G.detect_objects(np.zeros((SIZE, SIZE)))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        G.detect_objects(np.full((SIZE, SIZE, 3), 2.0))


def test_robust_to_decoder_blur(prompts) -> None:
    ok = 0
    for p in prompts:
        blurred = ndimage.gaussian_filter(np.asarray(G.render_prompt(p), np.float64), (0.5, 0.5, 0))
        ok += G.score_generation(np.clip(np.rint(blurred), 0, 255).astype(np.uint8), p.prompt).correct
    assert ok / len(prompts) >= 0.9


def test_parser_reads_dataset_captions() -> None:
    options = SceneOptions(texture_prob=0.3, same_colour_prob=0.0, occlusion_prob=0.0)
    relations = 0
    for scene, rng in _scenes(options, 40, seed=5):
        caption = make_caption(scene, rng)
        parsed = G.parse_prompt(caption)
        named = Counter()
        for spec in parsed.objects:
            named[(spec.colour, spec.shape)] += spec.count
        assert named == Counter((o.colour, o.shape) for o in scene.objects), caption
        if parsed.relation is not None:
            relations += 1
            a, rel, b = parsed.relation
            obj = {}  # the largest object of each name, as the scorer picks it
            for o in sorted(scene.objects, key=lambda o: o.r):
                obj[(o.colour, o.shape)] = o
            sa, sb = parsed.objects[a], parsed.objects[b]
            assert G.relation(obj[(sa.colour, sa.shape)], obj[(sb.colour, sb.shape)]) == rel, caption
        assert G.score_generation(render_scene(scene)[0], caption).correct, caption
    assert relations >= 10


def test_parse_prompt_forms() -> None:
    p = G.parse_prompt("two red circles")
    assert p.objects == [G.ObjectSpec("red", "circle", 2, True)] and p.relation is None
    p = G.parse_prompt("three objects on a grey background: a red circle, a red circle and a blue star")
    assert p.total == 3 and p.objects[0] == G.ObjectSpec("red", "circle", 2, True)
    p = G.parse_prompt("a red circle with a blue square left of it")
    assert p.relation == (1, "left of", 0)
    p = G.parse_prompt("a large striped green star above an orange diamond")
    assert p.objects[0] == G.ObjectSpec("green", "star", 1, False) and p.relation == (0, "above", 1)
    with pytest.raises(ValueError, match="No object"):
        G.parse_prompt("a beautiful sunset")


def test_edit_scores() -> None:
    sources, instructions, targets = G.edit_set(16, SIZE, seed=0, with_targets=True)
    kinds = Counter(G.parse_instruction(t).kind for t in instructions)
    assert set(kinds) == {"recolour", "move", "add", "remove"}
    for src, ins, tgt in zip(sources, instructions, targets):
        done = G.score_edit(src, tgt, ins)
        assert done.change_done and done.background_psnr == PSNR_CAP_DB, done
        assert not G.score_edit(src, src, ins).change_done, ins  # nothing changed -> not done
    # Right change, damaged background: still done, PSNR outside the object drops.
    noisy = np.asarray(targets[0]).astype(np.float64) + np.random.default_rng(0).normal(0, 8, (SIZE, SIZE, 3))
    noisy = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
    s = G.score_edit(sources[0], noisy, instructions[0])
    assert s.change_done and 25 < s.background_psnr < 40
    result = G.evaluate_edits(lambda ims, ins: [targets[sources.index(i)] for i in ims], num_edits=16, batch_size=6)
    assert result["success"] == 1.0 and result["background_psnr"] == PSNR_CAP_DB and result["num_edits"] == 16
    identity = G.evaluate_edits(lambda ims, ins: ims, num_edits=16)
    assert identity["success"] == 0.0


def test_instruction_grammar() -> None:
    assert G.parse_instruction("make the red circle green") == G.EditSpec(
        "recolour", "red", "circle", new_colour="green"
    )
    assert G.parse_instruction("Change the colour of the blue star to yellow.").new_colour == "yellow"
    assert G.parse_instruction("move the green cross to the left").direction == "left"
    add = G.parse_instruction("add a small striped purple diamond below the red square")
    assert (add.colour, add.shape, add.relation, add.reference) == ("purple", "diamond", "below", ("red", "square"))
    assert G.parse_instruction("take away the orange triangle").kind == "remove"
    with pytest.raises(ValueError, match="not in the edit grammar"):
        G.parse_instruction("make it nicer")
    with pytest.raises(ValueError, match="Unknown shape"):
        G.parse_instruction("remove the red car")
    with pytest.raises(ValueError, match="same size"):
        G.score_edit(np.zeros((SIZE, SIZE, 3), np.uint8), np.zeros((32, 32, 3), np.uint8), "remove the red circle")


def test_evaluate_generation_checks_batch() -> None:
    with pytest.raises(ValueError, match="returned 1 images for 2 prompts"):
        G.evaluate_generation(lambda batch: [np.zeros((SIZE, SIZE, 3), np.uint8)], G.geneval_prompts(SIZE, 1)[:2])


def test_relation_convention() -> None:
    def at(x: float, y: float) -> G.DetectedObject:
        return G.DetectedObject("red", "circle", x, y, 1, [0, 0, 0, 0], np.zeros((1, 1), bool))

    assert G.relation(at(1, 1), at(5, 2)) == "left of" and G.relation(at(9, 1), at(5, 2)) == "right of"
    assert G.relation(at(5, 1), at(5, 6)) == "above" and G.relation(at(5, 9), at(4, 6)) == "below"
