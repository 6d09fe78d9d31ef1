"""GenEval-style plain scenes and the held-out object sets reserved for scoring.

A plain scene (:func:`sample_plain_scene`) has 1-3 plain medium objects with distinct shapes and colours, separated,
on a white background, captioned with the GenEval-style scorer's own phrasing (:func:`plain_prompt`): the distribution
the unified model's scorer (:mod:`muse_hf.evaluation.geneval`) draws its prompts from. A fixed, hash-chosen quarter of
those object sets is held out for scoring (:func:`held_out_contents`): the scorer's prompts use only them, training
scenes never, and no training caption is a held-out prompt (:func:`held_out_prompts`).
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from muse_hf.data.captions import NUMBER_WORDS, relation
from muse_hf.data.scenes import COLOURS, SHAPES, SIZES, Background, Scene, SceneObject, SceneOptions, article, pick

__all__ = [
    "HELD_OUT_FRACTION",
    "PLAIN_BACKGROUND",
    "PLAIN_CATEGORIES",
    "PLAIN_OPTIONS",
    "clear_relation",
    "content_key",
    "held_out_contents",
    "held_out_prompts",
    "is_held_out",
    "plain_object",
    "plain_prompt",
    "plain_spots",
    "sample_plain_scene",
]

#: The share of GenEval-style object sets held out for scoring (see :func:`held_out_contents`).
HELD_OUT_FRACTION = 0.25
#: GenEval's categories, as :func:`muse_hf.evaluation.geneval.geneval_prompts` draws them.
PLAIN_CATEGORIES: tuple[str, ...] = ("single_object", "colors", "two_object", "color_attr", "counting", "position")
#: The background of plain scenes and of the GenEval-style prompts' reference renders.
PLAIN_BACKGROUND = Background("plain", ("white", "light grey"), 8.0, 0, 0)
#: Scene options of plain scenes' edits (no texture, no occlusion, no same-colour neighbours).
PLAIN_OPTIONS = SceneOptions(
    max_objects=3, texture_prob=0.0, textured_background_prob=0.0, same_colour_prob=0.0, occlusion_prob=0.0
)
_PLAIN_SALT = b"muse_hf geneval held-out v1"


def content_key(names: Sequence[str]) -> str:
    """What a GenEval-style prompt asks for, independent of phrasing and order: its sorted ``"colour shape"`` names."""
    return "|".join(sorted(names))


def _content_rank(key: str) -> bytes:
    return hashlib.blake2b(key.encode(), digest_size=8, key=_PLAIN_SALT).digest()


@lru_cache(maxsize=1)
def held_out_contents() -> frozenset[str]:
    """The object sets (:func:`content_key`) reserved for scoring: never drawn as plain training scenes.

    GenEval-style prompts name 1-3 objects with distinct shapes and distinct colours. For each object count, all such
    sets are ranked by a keyed BLAKE2b hash of their key and the first ``ceil(HELD_OUT_FRACTION * n)`` are held out
    (9 of 36 single objects, 113 of 450 pairs, 600 of 2400 triples): deterministic, independent of any seed, and
    every phrasing and order of a held-out set is held out with it.
    """
    held: set[str] = set()
    for n in (1, 2, 3):
        keys = {
            content_key([f"{c} {s}" for c, s in zip(colours, shapes)])
            for shapes in itertools.combinations(SHAPES, n)
            for colours in itertools.permutations(COLOURS, n)
        }
        ranked = sorted(keys, key=_content_rank)
        held.update(ranked[: math.ceil(HELD_OUT_FRACTION * len(ranked))])
    return frozenset(held)


def is_held_out(names: Sequence[str]) -> bool:
    """Whether the object set ``names`` (``"colour shape"`` strings) is reserved for scoring."""
    return content_key(names) in held_out_contents()


def _plain_phrase(obj: SceneObject) -> str:
    return f"{article(obj.colour)} {obj.colour} {obj.shape}"


def plain_prompt(category: str, objects: Sequence[SceneObject]) -> str:
    """The GenEval-style prompt of ``category`` for ``objects`` (the scorer's phrasing).

    ``single_object``: "a red circle"; ``colors``: "a photo of a green star"; ``two_object`` / ``color_attr`` /
    ``counting``: "two objects on a white background: a red circle and a blue square" (three for three objects);
    ``position``: "a blue square left of a red circle" (``objects[1]`` relative to ``objects[0]``).
    """
    if category in ("single_object", "colors"):
        return _plain_phrase(objects[0]) if category == "single_object" else f"a photo of {_plain_phrase(objects[0])}"
    if category == "position":
        return f"{_plain_phrase(objects[1])} {relation(objects[1], objects[0])} {_plain_phrase(objects[0])}"
    if category not in PLAIN_CATEGORIES:
        raise ValueError(f"unknown category {category!r}; expected one of {PLAIN_CATEGORIES}")
    listing = ", ".join(_plain_phrase(o) for o in objects[:-1]) + f" and {_plain_phrase(objects[-1])}"
    return f"{NUMBER_WORDS[len(objects)]} objects on a white background: {listing}"


@lru_cache(maxsize=1)
def held_out_prompts() -> frozenset[str]:
    """Every GenEval-style prompt (:func:`plain_prompt`, any order and relation) of a held-out object set.

    No training caption of :func:`build_shapes_dataset` is one of these strings.
    """
    texts: set[str] = set()
    for key in held_out_contents():
        names = key.split("|")
        objs = [SceneObject(n.split()[1], n.split()[0], "plain", "medium", 0.0, 0.0, 1.0) for n in names]
        for order in itertools.permutations(objs):
            if len(order) == 1:
                texts.update(plain_prompt(c, order) for c in ("single_object", "colors"))
                continue
            texts.add(plain_prompt("two_object", order))
            if len(order) == 2:
                a, b = order
                texts.update(
                    f"{_plain_phrase(b)} {rel} {_plain_phrase(a)}" for rel in ("left of", "right of", "above", "below")
                )
    return frozenset(texts)


def plain_spots(rng: np.random.Generator, n: int, size: int) -> list[tuple[float, float]]:
    """``n`` well-separated centres for medium objects (GenEval-style scenes: no touching, no occlusion)."""
    r = SIZES["medium"] * size
    for _ in range(200):
        pts = [(float(rng.uniform(r + 2, size - r - 2)), float(rng.uniform(r + 2, size - r - 2))) for _ in range(n)]
        if all(math.hypot(a[0] - b[0], a[1] - b[1]) > 2 * r + 0.12 * size for a, b in itertools.combinations(pts, 2)):
            return pts
    raise RuntimeError("could not place objects")  # pragma: no cover - 200 tries always suffice for n <= 3


def clear_relation(spots: Sequence[tuple[float, float]]) -> bool:
    """Whether the first two centres have an unambiguous relation (one axis at least twice the other)."""
    dx, dy = abs(spots[0][0] - spots[1][0]), abs(spots[0][1] - spots[1][1])
    return max(dx, dy) >= 2.0 * min(dx, dy)


def plain_object(shape: str, colour: str, cx: float, cy: float, size: int, size_name: str = "medium") -> SceneObject:
    """A plain (untextured) object as the GenEval-style scenes draw it."""
    return SceneObject(shape, colour, "plain", size_name, cx, cy, SIZES[size_name] * size)


def sample_plain_scene(
    rng: np.random.Generator,
    size: int = 64,
    category: str | None = None,
    held_out: bool = False,
    num_objects: int | None = None,
) -> tuple[str, str, Scene]:
    """Draw a GenEval-style scene and its prompt: 1-3 medium plain objects with distinct shapes and colours,
    separated, on a white background.

    Args:
        rng: The only source of randomness.
        size: Image side.
        category: One of :data:`PLAIN_CATEGORIES`; ``None`` draws one uniformly.
        held_out: Draw only held-out object sets (scoring) instead of only non-held-out ones (training).
        num_objects: ``counting`` only: 2 or 3 objects (``None``: drawn).

    Returns:
        ``(category, prompt, scene)``.
    """
    if category is None:
        category = pick(rng, PLAIN_CATEGORIES)
    if category not in PLAIN_CATEGORIES:
        raise ValueError(f"unknown category {category!r}; expected one of {PLAIN_CATEGORIES}")
    if category == "counting":
        n = num_objects if num_objects is not None else 2 + int(rng.integers(2))
        if n not in (2, 3):
            raise ValueError(f"counting scenes have 2 or 3 objects; got num_objects={n}")
    else:
        n = 1 if category in ("single_object", "colors") else 2
    for _ in range(1000):
        shapes = rng.choice(SHAPES, size=n, replace=False)
        colours = rng.choice(list(COLOURS), size=n, replace=False)
        if is_held_out([f"{c} {s}" for s, c in zip(shapes, colours)]) == held_out:
            break
    else:  # pragma: no cover - a quarter of the sets are held out: 1000 draws never all miss
        raise RuntimeError("could not draw an object set on the requested side of the held-out split")
    spots = plain_spots(rng, n, size)
    while category == "position" and not clear_relation(spots):  # the relation must be unambiguous
        spots = plain_spots(rng, n, size)
    objs = tuple(plain_object(str(s), str(c), x, y, size) for s, c, (x, y) in zip(shapes, colours, spots))
    return category, plain_prompt(category, objs), Scene(size, PLAIN_BACKGROUND, objs)
