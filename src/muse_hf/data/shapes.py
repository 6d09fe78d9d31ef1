"""The embedded synthetic scenes dataset: deterministic shapes with colour, texture, size, position and count.

Every sample is a small scene of 1-4 objects (6 shapes x 6 colours x 3 sizes, plain or textured) on a plain or
textured background, with:

* ``image``: the scene (PNG), ``caption``: a sentence naming every object and its relation to the main one,
* ``label``: class of the *main* object (the largest; ``objects[0]``) as ``"{colour} {shape}"`` (see ``LABEL_NAMES``),
* ``mask``: instance mask (PNG, mode ``L``): 0 = background, ``i + 1`` = visible pixels of ``objects[i]``,
* ``objects``: per object ``shape, colour, texture, size, bbox [x0, y0, x1, y1] (visible pixels, inclusive),
  centre [x, y]``,
* an editing pair: ``source_image`` (the same PNG as ``image``), ``instruction``, ``target_image``, ``edit_type``
  (``recolour`` / ``move`` / ``add`` / ``remove``) and ``target_objects``. The target is rendered from the same scene
  specification with one object changed, so it differs from the source only where that object was or is.

Colour alone does not segment these scenes (DESIGN section 4): objects can be striped / checkered / dotted (two colours
inside one instance), neighbours can share a colour and touch, objects can occlude each other, and backgrounds can be
striped, checkered, graded or noisy in muted colours. So attention-segmentation mIoU measures structure.

Everything is drawn with NumPy from a per-sample ``numpy.random.Generator`` seeded with ``(seed, split, index)``, so
the same seed gives byte-identical shards regardless of sharding.

Optionally (``plain_fraction``) a share of the rows are GenEval-style *plain scenes* (:func:`sample_plain_scene`): the
distribution the unified model's GenEval-style scorer (:mod:`muse_hf.evaluation.geneval`) draws its prompts from, with
the scorer's phrasing. A fixed, hash-chosen quarter of those object sets is held out for scoring
(:func:`held_out_contents`): the scorer's prompts use only them, training scenes never, and no training caption is a
held-out prompt (:func:`held_out_prompts`).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import multiprocessing
import re
import shutil
import struct
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import datasets
import numpy as np

from muse_hf.compat import moved_attribute
from muse_hf.validation import PNG_SIGNATURE

__all__ = [
    "BACKGROUND_PALETTE",
    "BACKGROUNDS",
    "COLOURS",
    "HELD_OUT_FRACTION",
    "LABEL_NAMES",
    "PLAIN_BACKGROUND",
    "PLAIN_CATEGORIES",
    "PLAIN_OPTIONS",
    "SHAPES",
    "SIZES",
    "TEXTURES",
    "ZERO_SHOT_TEMPLATES",
    "Background",
    "Scene",
    "SceneObject",
    "build_shapes_dataset",
    "built_settings",
    "clear_relation",
    "content_key",
    "held_out_contents",
    "held_out_prompts",
    "is_held_out",
    "label_of",
    "plain_object",
    "plain_prompt",
    "plain_spots",
    "render_scene",
    "sample_plain_scene",
    "sample_scene",
    "shapes_features",
    "zero_shot_prompts",
]

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "diamond")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 40, 40),
    "green": (40, 160, 60),
    "blue": (45, 85, 215),
    "yellow": (235, 200, 35),
    "purple": (135, 60, 175),
    "orange": (240, 135, 30),
}
TEXTURES: tuple[str, ...] = ("plain", "striped", "checkered", "dotted")
SIZES: dict[str, float] = {"small": 0.10, "medium": 0.14, "large": 0.19}  # radius / image side
BACKGROUNDS: tuple[str, ...] = ("plain", "gradient", "stripes", "checker", "noise")
# muted background palette (name used in captions for plain backgrounds)
BACKGROUND_PALETTE: dict[str, tuple[int, int, int]] = {
    "white": (236, 236, 230),
    "light grey": (200, 200, 198),
    "grey": (128, 128, 130),
    "dark grey": (62, 62, 68),
    "beige": (224, 210, 184),
    "pale blue": (190, 208, 226),
    "pale green": (200, 224, 196),
}
_BG_WORD = {"gradient": "graded", "stripes": "striped", "checker": "checkered", "noise": "noisy"}

#: Class names, ``label = shape_index * len(COLOURS) + colour_index``.
LABEL_NAMES: list[str] = [f"{c} {s}" for s in SHAPES for c in COLOURS]
#: CLIP-style prompt templates for zero-shot classification (ensemble: average the text embeddings per label).
ZERO_SHOT_TEMPLATES: tuple[str, ...] = (
    "a photo of a {label}.",
    "a {label}.",
    "a picture of a {label}.",
    "an image with a {label}.",
)
SPLITS: tuple[str, ...] = ("train", "validation")
_SPLIT_CODE = {"train": 0, "validation": 1}
_PNG_LEVEL = 1  # fastest zlib level; for these flat images it is also about the smallest
_MIN_VISIBLE = 0.45  # an occluded object keeps at least this fraction of its pixels


def label_of(colour: str, shape: str) -> int:
    """Class index of ``"{colour} {shape}"`` in :data:`LABEL_NAMES`."""
    try:
        return SHAPES.index(shape) * len(COLOURS) + list(COLOURS).index(colour)
    except ValueError as err:
        raise ValueError(
            f"unknown colour/shape {colour!r}/{shape!r}; colours {list(COLOURS)}, shapes {SHAPES}"
        ) from err


def zero_shot_prompts(
    templates: Sequence[str] = ZERO_SHOT_TEMPLATES, label_names: Sequence[str] | None = None
) -> list[list[str]]:
    """Zero-shot prompts, one list per class: ``prompts[label][t] = templates[t].format(label=name)``.

    Args:
        templates: Templates with a ``{label}`` field (CLIP-style ensembling: average the text embeddings of a class).
        label_names: Class names (default :data:`LABEL_NAMES`, aligned with the dataset's ``label`` column).

    Returns:
        ``len(label_names)`` lists of ``len(templates)`` prompts.
    """
    names = list(LABEL_NAMES if label_names is None else label_names)
    if isinstance(templates, str):
        templates = [templates]
    if not templates or any("{label}" not in t for t in templates):
        raise ValueError(f"every template needs a '{{label}}' field, e.g. 'a photo of a {{label}}.'; got {templates!r}")
    return [[t.format(label=n) for t in templates] for n in names]


# ---------------------------------------------------------------------------------------------------------- scene spec
@dataclass(frozen=True)
class SceneObject:
    """One object of a scene. ``cx, cy, r`` in pixels; texture parameters are in object-local pixels."""

    shape: str
    colour: str
    texture: str
    size: str
    cx: float
    cy: float
    r: float
    period: float = 6.0
    angle: int = 0  # stripe angle in degrees (0, 45, 90, 135)

    @property
    def name(self) -> str:
        """``"{colour} {shape}"``: the class name and the unambiguous reference used in captions."""
        return f"{self.colour} {self.shape}"

    def phrase(self) -> str:
        """Noun phrase with article: ``"a large striped red circle"``."""
        words = [w for w in (self.size if self.size != "medium" else "", _TEXTURE_WORD[self.texture]) if w]
        words += [self.colour, self.shape]
        return _article(words[0]) + " " + " ".join(words)


_TEXTURE_WORD = {"plain": "", "striped": "striped", "checkered": "checkered", "dotted": "dotted"}


@dataclass(frozen=True)
class Background:
    """Background specification (rendered deterministically; ``seed`` drives the noise)."""

    kind: str
    colours: tuple[str, str]
    period: float
    angle: int
    seed: int

    def word(self) -> str:
        return self.colours[0] if self.kind == "plain" else _BG_WORD[self.kind]


@dataclass(frozen=True)
class Scene:
    """A full scene: background + objects in drawing order (later objects occlude earlier ones)."""

    size: int
    background: Background
    objects: tuple[SceneObject, ...] = field(default_factory=tuple)


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


# ------------------------------------------------------------------------------------------------------- rasterisation
def _shape_mask(obj: SceneObject, size: int) -> tuple[np.ndarray, int, int]:
    """Boolean mask of ``obj`` over its bounding box: (mask (h, w), y0, x0). Pixel centres are sampled."""
    r = obj.r
    x0, x1 = max(0, int(math.floor(obj.cx - r - 1))), min(size, int(math.ceil(obj.cx + r + 1)))
    y0, y1 = max(0, int(math.floor(obj.cy - r - 1))), min(size, int(math.ceil(obj.cy + r + 1)))
    dy = (np.arange(y0, y1, dtype=np.float32) + 0.5 - obj.cy)[:, None]  # (h, 1)
    dx = (np.arange(x0, x1, dtype=np.float32) + 0.5 - obj.cx)[None, :]  # (1, w)
    s = obj.shape
    if s == "circle":
        m = dx * dx + dy * dy <= r * r
    elif s == "square":
        m = np.maximum(np.abs(dx), np.abs(dy)) <= 0.8 * r
    elif s == "diamond":
        m = np.abs(dx) + np.abs(dy) <= 1.05 * r
    elif s == "triangle":  # equilateral, apex up, circumradius r
        m = (dy <= 0.5 * r) & (math.sqrt(3.0) * np.abs(dx) <= dy + r)
    elif s == "cross":
        a, b = np.abs(dx), np.abs(dy)
        arm = 0.34 * r
        m = ((a <= 0.95 * r) & (b <= arm)) | ((b <= 0.95 * r) & (a <= arm))
    elif s == "star":  # five points, inner radius 0.45 r
        theta = np.arctan2(dx, -dy)  # 0 at the top
        sector = 2 * math.pi / 5
        phi = np.abs(np.mod(theta + sector / 2, sector) - sector / 2)  # angle to nearest tip, [0, 36 deg]
        rho = np.sqrt(dx * dx + dy * dy)
        px, py = rho * np.cos(phi), rho * np.sin(phi)
        tx, ix, iy = r, 0.45 * r * math.cos(sector / 2), 0.45 * r * math.sin(sector / 2)
        # inside iff P is on the centre's side of the edge tip -> inner vertex (the centre gives iy * tx > 0)
        m = (ix - tx) * py - iy * (px - tx) >= 0
    else:
        raise ValueError(f"unknown shape {s!r}; expected one of {SHAPES}")
    return m, y0, x0  # every formula mixes dx (1, w) and dy (h, 1): m is (h, w)


def _texture(obj: SceneObject, y0: int, x0: int, h: int, w: int) -> np.ndarray:
    """Colour of ``obj`` over its box, (h, w, 3) uint8, pattern anchored at the object centre."""
    base = np.array(COLOURS[obj.colour], np.float32)
    out = np.empty((h, w, 3), np.float32)
    out[:] = base
    if obj.texture == "plain":
        return out.astype(np.uint8)
    dy = (np.arange(y0, y0 + h, dtype=np.float32) + 0.5 - obj.cy)[:, None]
    dx = (np.arange(x0, x0 + w, dtype=np.float32) + 0.5 - obj.cx)[None, :]
    p = obj.period
    if obj.texture == "striped":
        a = math.radians(obj.angle)
        t = dx * math.cos(a) + dy * math.sin(a)
        alt = np.floor(t / p).astype(np.int64) % 2 == 1
        other = base * 0.4
    elif obj.texture == "checkered":
        alt = (np.floor(dx / p).astype(np.int64) + np.floor(dy / p).astype(np.int64)) % 2 == 1
        other = base * 0.25 + 0.75 * 245.0
    else:  # dotted
        q = 2.0 * p
        ddx = np.mod(dx, q) - q / 2
        ddy = np.mod(dy, q) - q / 2
        alt = ddx * ddx + ddy * ddy <= (0.55 * p) ** 2
        other = base * 0.35
    if alt.shape != (h, w):  # stripes along one axis depend on dx or dy only
        alt = np.broadcast_to(alt, (h, w))
    out[alt] = other
    return out.astype(np.uint8)


def _render_background(bg: Background, size: int) -> np.ndarray:
    c1 = np.array(BACKGROUND_PALETTE[bg.colours[0]], np.float32)
    c2 = np.array(BACKGROUND_PALETTE[bg.colours[1]], np.float32)
    img = np.empty((size, size, 3), np.float32)
    img[:] = c1
    if bg.kind == "plain":
        return img.astype(np.uint8)
    yy = np.arange(size, dtype=np.float32)[:, None] + 0.5
    xx = np.arange(size, dtype=np.float32)[None, :] + 0.5
    a = math.radians(bg.angle)
    if bg.kind == "gradient":
        t = (xx * math.cos(a) + yy * math.sin(a)) / size
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
        img = c1 + (c2 - c1) * t[..., None]
    elif bg.kind == "stripes":
        alt = np.floor((xx * math.cos(a) + yy * math.sin(a)) / bg.period).astype(np.int64) % 2 == 1
        img[np.broadcast_to(alt, (size, size))] = c2
    elif bg.kind == "checker":
        alt = (np.floor(xx / bg.period).astype(np.int64) + np.floor(yy / bg.period).astype(np.int64)) % 2 == 1
        img[np.broadcast_to(alt, (size, size))] = c2
    elif bg.kind == "noise":
        noise = np.random.default_rng(bg.seed).normal(0.0, 14.0, size=(size, size, 1)).astype(np.float32)
        img = img + noise
    else:
        raise ValueError(f"unknown background kind {bg.kind!r}; expected one of {BACKGROUNDS}")
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def render_scene(scene: Scene, background: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Render a scene.

    Args:
        scene: The scene specification.
        background: The already rendered ``scene.background`` (S, S, 3) uint8, to reuse (it is copied).

    Returns:
        ``image`` (S, S, 3) uint8 and ``mask`` (S, S) uint8 with ``i + 1`` on the visible pixels of
        ``scene.objects[i]`` and 0 on the background.
    """
    s = scene.size
    image = _render_background(scene.background, s) if background is None else background.copy()  # (S, S, 3)
    mask = np.zeros((s, s), np.uint8)  # (S, S)
    for i, obj in enumerate(scene.objects):
        m, y0, x0 = _shape_mask(obj, s)
        h, w = m.shape
        tex = _texture(obj, y0, x0, h, w)
        region = image[y0 : y0 + h, x0 : x0 + w]
        region[m] = tex[m]
        mask[y0 : y0 + h, x0 : x0 + w][m] = i + 1
    return image, mask


def _object_records(scene: Scene, mask: np.ndarray) -> list[dict[str, Any]]:
    """Per-object metadata with the visible bbox ``[x0, y0, x1, y1]`` (inclusive) and the centre ``[x, y]``."""
    records = []
    s = scene.size
    for i, obj in enumerate(scene.objects):
        # the object's pixels lie inside its disc's box: search only there
        x0, y0 = max(0, int(obj.cx - obj.r - 2)), max(0, int(obj.cy - obj.r - 2))
        x1, y1 = min(s, int(obj.cx + obj.r + 3)), min(s, int(obj.cy + obj.r + 3))
        ys, xs = np.nonzero(mask[y0:y1, x0:x1] == i + 1)
        bbox = (
            [int(xs.min()) + x0, int(ys.min()) + y0, int(xs.max()) + x0, int(ys.max()) + y0]
            if xs.size
            else [0, 0, 0, 0]
        )
        records.append(
            {
                "shape": obj.shape,
                "colour": obj.colour,
                "texture": obj.texture,
                "size": obj.size,
                "bbox": bbox,
                "centre": [round(float(obj.cx), 3), round(float(obj.cy), 3)],
            }
        )
    return records


# ------------------------------------------------------------------------------------------------------------ sampling
@dataclass(frozen=True)
class SceneOptions:
    """Knobs of the scene distribution (probabilities per sample / per object)."""

    min_objects: int = 1
    max_objects: int = 4
    texture_prob: float = 0.35
    textured_background_prob: float = 0.5
    same_colour_prob: float = 0.3
    occlusion_prob: float = 0.25

    def validate(self) -> None:
        if not 1 <= self.min_objects <= self.max_objects <= 4:
            raise ValueError(
                f"need 1 <= min_objects <= max_objects <= 4; got min_objects={self.min_objects}, "
                f"max_objects={self.max_objects}"
            )
        for name in ("texture_prob", "textured_background_prob", "same_colour_prob", "occlusion_prob"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1]; got {v}")


def _pick(rng: np.random.Generator, seq: Sequence[Any]) -> Any:
    return seq[int(rng.integers(len(seq)))]


def _visible_ok(objects: Sequence[SceneObject], size: int) -> bool:
    """Every object keeps at least ``_MIN_VISIBLE`` of its pixels after occlusion by later objects."""
    full = []
    for obj in objects:
        m, y0, x0 = _shape_mask(obj, size)
        canvas = np.zeros((size, size), bool)
        canvas[y0 : y0 + m.shape[0], x0 : x0 + m.shape[1]] = m
        full.append(canvas)
    cover = np.zeros((size, size), bool)
    for canvas in reversed(full):
        total = int(canvas.sum())
        if total == 0 or int((canvas & ~cover).sum()) < _MIN_VISIBLE * total:
            return False
        cover |= canvas
    return True


def _free(cx: float, cy: float, r: float, others: Sequence[SceneObject], margin: float) -> bool:
    return all(math.hypot(cx - o.cx, cy - o.cy) >= r + o.r + margin for o in others)


def _place(
    rng: np.random.Generator,
    size: int,
    r: float,
    others: Sequence[SceneObject],
    anchor: SceneObject | None = None,
    dist_range: tuple[float, float] = (0.0, 0.0),
    tries: int = 40,
) -> tuple[float, float] | None:
    """A centre for a new object of radius ``r``: free of ``others`` (except ``anchor``, at a given distance)."""
    lo, hi = r + 1.0, size - r - 1.0
    if lo > hi:
        return None
    for _ in range(tries):
        if anchor is None:
            cx, cy = float(rng.uniform(lo, hi)), float(rng.uniform(lo, hi))
            if _free(cx, cy, r, others, margin=1.5):
                return cx, cy
        else:
            d = float(rng.uniform(*dist_range)) * (r + anchor.r)
            a = float(rng.uniform(0.0, 2 * math.pi))
            cx, cy = anchor.cx + d * math.cos(a), anchor.cy + d * math.sin(a)
            if not (lo <= cx <= hi and lo <= cy <= hi):
                continue
            if _free(cx, cy, r, [o for o in others if o is not anchor], margin=1.5):
                return cx, cy
    return None


def _new_object(
    rng: np.random.Generator,
    size: int,
    opts: SceneOptions,
    size_names: Sequence[str],
    colour: str | None = None,
) -> SceneObject:
    scale = size / 64.0
    texture = "plain" if rng.random() >= opts.texture_prob else _pick(rng, TEXTURES[1:])
    size_name = _pick(rng, size_names)
    return SceneObject(
        shape=_pick(rng, SHAPES),
        colour=colour if colour is not None else _pick(rng, list(COLOURS)),
        texture=texture,
        size=size_name,
        cx=0.0,
        cy=0.0,
        r=SIZES[size_name] * size,
        period=float(rng.integers(3, 5)) * scale,
        angle=int(_pick(rng, (0, 45, 90, 135))),
    )


def _sample_background(rng: np.random.Generator, size: int, opts: SceneOptions) -> Background:
    names = list(BACKGROUND_PALETTE)
    kind = "plain" if rng.random() >= opts.textured_background_prob else _pick(rng, BACKGROUNDS[1:])
    i = int(rng.integers(len(names)))
    j = (i + 1 + int(rng.integers(len(names) - 1))) % len(names)
    return Background(
        kind=kind,
        colours=(names[i], names[j]),
        period=float(rng.integers(6, 11)) * size / 64.0,
        angle=int(_pick(rng, (0, 45, 90, 135))),
        seed=int(rng.integers(2**31 - 1)),
    )


def sample_scene(rng: np.random.Generator, size: int = 64, options: SceneOptions | None = None) -> Scene:
    """Draw a random scene: the main (largest) object first, then 0-3 smaller ones, free, touching or occluding.

    Args:
        rng: The only source of randomness.
        size: Image side in pixels (>= 32).
        options: Distribution knobs.

    Returns:
        A :class:`Scene` whose ``objects[0]`` is strictly the largest object.
    """
    opts = options or SceneOptions()
    background = _sample_background(rng, size, opts)
    n = int(rng.integers(opts.min_objects, opts.max_objects + 1))
    main_obj = _new_object(rng, size, opts, ("medium", "large"))
    pos = _place(rng, size, main_obj.r, [])
    assert pos is not None  # the main object always fits on an empty canvas
    objects = [replace(main_obj, cx=pos[0], cy=pos[1])]
    smaller = ("small",) if main_obj.size == "medium" else ("small", "medium")
    for _ in range(n - 1):
        anchor = _pick(rng, objects)
        mode_draw = rng.random()
        if mode_draw < opts.same_colour_prob:
            mode, colour = "touch", anchor.colour
        elif mode_draw < opts.same_colour_prob + opts.occlusion_prob:
            mode, colour = "occlude", None
        else:
            mode, colour = "free", None
        obj = _new_object(rng, size, opts, smaller, colour=colour)
        placed = None
        if mode == "touch":
            pos = _place(rng, size, obj.r, objects, anchor, (1.0, 1.12))
            placed = replace(obj, cx=pos[0], cy=pos[1]) if pos else None
        elif mode == "occlude":
            for _attempt in range(6):
                pos = _place(rng, size, obj.r, objects, anchor, (0.55, 0.85), tries=10)
                if pos is None:
                    break
                cand = replace(obj, cx=pos[0], cy=pos[1])
                if _visible_ok([*objects, cand], size):
                    placed = cand
                    break
        if placed is None:
            pos = _place(rng, size, obj.r, objects)
            placed = replace(obj, cx=pos[0], cy=pos[1]) if pos else None
        if placed is not None:
            objects.append(placed)
    return Scene(size=size, background=background, objects=tuple(objects))


# ----------------------------------------------------------------------------------------------------------- captions
def _relation(a: SceneObject, b: SceneObject) -> str:
    """Where ``a`` is relative to ``b``: "left of", "right of", "above", "below" (image coordinates)."""
    dx, dy = a.cx - b.cx, a.cy - b.cy
    if abs(dx) >= abs(dy):
        return "left of" if dx < 0 else "right of"
    return "above" if dy < 0 else "below"


_NUMBER = {1: "one", 2: "two", 3: "three", 4: "four"}


def make_caption(scene: Scene, rng: np.random.Generator) -> str:
    """A caption naming every object (``"{colour} {shape}"`` appears once per object) and relations to the main one."""
    objs = scene.objects
    main_obj = objs[0]
    bg = scene.background.word()
    if len(objs) == 1:
        templates = (
            "{a0}",
            "a photo of {a0}",
            "{a0} on {abg} {bg} background",
            "there is {a0} in the picture",
        )
        t = _pick(rng, templates)
        return t.format(a0=main_obj.phrase(), abg=_article(bg), bg=bg)
    choice = int(rng.integers(4))
    rest = objs[1:]
    if choice == 0:  # "a red circle with a blue square left of it, and ..."
        parts = [f"{o.phrase()} {_relation(o, main_obj)} it" for o in rest]
        return f"{main_obj.phrase()} with " + _join(parts)
    if choice == 1:  # "a blue square left of a red circle, a green star above the red circle"
        first = f"{rest[0].phrase()} {_relation(rest[0], main_obj)} {main_obj.phrase()}"
        more = [f"{o.phrase()} {_relation(o, main_obj)} the {main_obj.shape}" for o in rest[1:]]
        return ", ".join([first, *more])
    if choice == 2:  # "three objects: a red circle, a blue square and a green star"
        return f"{_NUMBER[len(objs)]} objects on {_article(bg)} {bg} background: " + _join([o.phrase() for o in objs])
    # "a red circle right of a blue square; a green star is below the circle"
    head = f"{main_obj.phrase()} {_relation(main_obj, rest[0])} {rest[0].phrase()}"
    more = [f"{o.phrase()} is {_relation(o, main_obj)} the {main_obj.shape}" for o in rest[1:]]
    return "; ".join([head, *more])


def _join(parts: Sequence[str]) -> str:
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + " and " + parts[-1]


# --------------------------------------------------------------------------------------------------------------- edits
def make_edit(scene: Scene, rng: np.random.Generator, opts: SceneOptions) -> tuple[str, str, Scene]:
    """Pick one feasible edit (recolour / move / add / remove one object) and apply it to the scene spec.

    Objects are referred to by ``"{colour} {shape}"``, so only objects with a unique name are edited.

    Returns:
        ``(edit_type, instruction, target_scene)``.
    """
    size = scene.size
    objs = list(scene.objects)
    names = [o.name for o in objs]
    unique = [i for i, o in enumerate(objs) if names.count(o.name) == 1]
    ops = ["recolour", "move", "add", "remove"]
    start = int(rng.integers(len(ops)))
    for op in ops[start:] + ops[:start]:
        if op == "recolour" and unique:
            i = _pick(rng, unique)
            o = objs[i]
            colours = [c for c in COLOURS if c != o.colour and f"{c} {o.shape}" not in names]
            if not colours:
                continue
            new = _pick(rng, colours)
            objs[i] = replace(o, colour=new)
            verb = _pick(rng, ("make the {n} {c}", "change the colour of the {n} to {c}", "paint the {n} {c}"))
            return "recolour", verb.format(n=o.name, c=new), replace(scene, objects=tuple(objs))
        if op == "move" and unique:
            i = _pick(rng, unique)
            o = objs[i]
            others = objs[:i] + objs[i + 1 :]
            for direction in rng.permutation(4):
                d = float(rng.uniform(0.2, 0.35)) * size
                dx, dy = [(-d, 0.0), (d, 0.0), (0.0, -d), (0.0, d)][int(direction)]
                cx, cy = o.cx + dx, o.cy + dy
                lo, hi = o.r + 1.0, size - o.r - 1.0
                if lo <= cx <= hi and lo <= cy <= hi and _free(cx, cy, o.r, others, margin=1.5):
                    objs[i] = replace(o, cx=cx, cy=cy)
                    where = ("to the left", "to the right", "up", "down")[int(direction)]
                    return "move", f"move the {o.name} {where}", replace(scene, objects=tuple(objs))
            continue
        if op == "add" and len(objs) < 4:
            smaller = ("small",) if objs[0].size == "medium" else ("small", "medium")
            obj = _new_object(rng, size, opts, smaller)
            if obj.name in names:
                continue
            pos = _place(rng, size, obj.r, objs)
            if pos is None:
                continue
            obj = replace(obj, cx=pos[0], cy=pos[1])
            instr = f"add {obj.phrase()} {_relation(obj, objs[0])} the {objs[0].name}"
            return "add", instr, replace(scene, objects=(*objs, obj))
        if op == "remove" and len(objs) >= 2 and unique:
            i = _pick(rng, unique)
            o = objs.pop(i)
            verb = _pick(rng, ("remove the {n}", "delete the {n}", "take away the {n}"))
            return "remove", verb.format(n=o.name), replace(scene, objects=tuple(objs))
    # always feasible fallback: recolour the main object's colour to one not yet used by its shape
    o = objs[0]
    new = next(c for c in COLOURS if c != o.colour)
    objs[0] = replace(o, colour=new)
    return "recolour", f"make the {o.name} {new}", replace(scene, objects=tuple(objs))


# ------------------------------------------------------------------------------------- plain scenes and the held-out set
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
    return f"{_article(obj.colour)} {obj.colour} {obj.shape}"


def plain_prompt(category: str, objects: Sequence[SceneObject]) -> str:
    """The GenEval-style prompt of ``category`` for ``objects`` (the scorer's phrasing).

    ``single_object``: "a red circle"; ``colors``: "a photo of a green star"; ``two_object`` / ``color_attr`` /
    ``counting``: "two objects on a white background: a red circle and a blue square" (three for three objects);
    ``position``: "a blue square left of a red circle" (``objects[1]`` relative to ``objects[0]``).
    """
    if category in ("single_object", "colors"):
        return _plain_phrase(objects[0]) if category == "single_object" else f"a photo of {_plain_phrase(objects[0])}"
    if category == "position":
        return f"{_plain_phrase(objects[1])} {_relation(objects[1], objects[0])} {_plain_phrase(objects[0])}"
    if category not in PLAIN_CATEGORIES:
        raise ValueError(f"unknown category {category!r}; expected one of {PLAIN_CATEGORIES}")
    listing = ", ".join(_plain_phrase(o) for o in objects[:-1]) + f" and {_plain_phrase(objects[-1])}"
    return f"{_NUMBER[len(objects)]} objects on a white background: {listing}"


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
        category = _pick(rng, PLAIN_CATEGORIES)
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


# ------------------------------------------------------------------------------------------------------------ dataset
def shapes_features() -> datasets.Features:
    """The ``datasets.Features`` of the synthetic scenes."""
    obj = {
        "shape": datasets.Value("string"),
        "colour": datasets.Value("string"),
        "texture": datasets.Value("string"),
        "size": datasets.Value("string"),
        "bbox": datasets.List(datasets.Value("int32"), length=4),
        "centre": datasets.List(datasets.Value("float32"), length=2),
    }
    return datasets.Features(
        {
            "index": datasets.Value("int64"),
            "image": datasets.Image(),
            "caption": datasets.Value("string"),
            "label": datasets.ClassLabel(names=LABEL_NAMES),
            "mask": datasets.Image(),
            "objects": datasets.List(obj),
            "background": datasets.Value("string"),
            "source_image": datasets.Image(),
            "instruction": datasets.Value("string"),
            "target_image": datasets.Image(),
            "edit_type": datasets.Value("string"),
            "target_objects": datasets.List(obj),
        }
    )


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def _png(array: np.ndarray) -> bytes:
    """Encode an (H, W) or (H, W, 3) uint8 array as PNG (8-bit grey / RGB, filter 0, zlib level 1).

    A minimal writer of the PNG spec for exactly these two layouts: about 3x faster than PIL's encoder on
    64 px images (per-call overhead dominates there), deterministic, and read back bit-exactly by any PNG
    decoder (the tests decode with PIL).
    """
    if array.dtype != np.uint8 or not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3)):
        raise ValueError(f"_png encodes (H, W) or (H, W, 3) uint8 arrays; got {array.shape} {array.dtype}")
    h, w = array.shape[:2]
    channels = 1 if array.ndim == 2 else 3
    rows = np.empty((h, 1 + w * channels), np.uint8)  # each scanline: filter byte 0 + raw pixels
    rows[:, 0] = 0
    rows[:, 1:] = array.reshape(h, w * channels)
    header = struct.pack(">IIBBBBB", w, h, 8, 0 if channels == 1 else 2, 0, 0, 0)
    return (
        PNG_SIGNATURE
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(rows.tobytes(), _PNG_LEVEL))
        + _png_chunk(b"IEND", b"")
    )


def _non_geneval_caption(scene: Scene) -> str:
    """A caption of ``scene`` that is never a GenEval-style prompt (used when the drawn one is a held-out prompt)."""
    objs = scene.objects
    if len(objs) == 1:
        return f"there is {objs[0].phrase()} in the picture"
    return f"{objs[0].phrase()} with " + _join([f"{o.phrase()} {_relation(o, objs[0])} it" for o in objs[1:]])


def make_sample(
    index: int, split: str, seed: int, image_size: int, options: SceneOptions, plain_fraction: float = 0.0
) -> dict[str, Any]:
    """Generate sample ``index`` of ``split`` (pure function of its arguments).

    With probability ``plain_fraction`` (drawn from the sample's own stream, so the other samples do not change) the
    sample is a GenEval-style plain scene (:func:`sample_plain_scene`, never a held-out object set) captioned with
    its prompt, and its editing pair is drawn with :data:`PLAIN_OPTIONS`. A regular sample whose drawn caption is a
    held-out GenEval-style prompt (a medium plain single object, "a red circle") is captioned
    "there is a red circle in the picture" instead.
    """
    plain_rng = np.random.default_rng([seed, _SPLIT_CODE[split], index, 1])
    if plain_fraction > 0 and plain_rng.random() < plain_fraction:
        _, caption, scene = sample_plain_scene(plain_rng, image_size, held_out=False)
        rng, options = plain_rng, PLAIN_OPTIONS
    else:
        rng = np.random.default_rng([seed, _SPLIT_CODE[split], index])
        scene = sample_scene(rng, image_size, options)
        caption = make_caption(scene, rng)
        if caption in held_out_prompts():
            caption = _non_geneval_caption(scene)
    background = _render_background(scene.background, image_size)
    image, mask = render_scene(scene, background)
    edit_type, instruction, target_scene = make_edit(scene, rng, options)
    target, target_mask = render_scene(target_scene, background)
    image_png = _png(image)
    main_obj = scene.objects[0]
    return {
        "index": index,
        "image": {"bytes": image_png, "path": None},
        "caption": caption,
        "label": label_of(main_obj.colour, main_obj.shape),
        "mask": {"bytes": _png(mask), "path": None},
        "objects": _object_records(scene, mask),
        "background": scene.background.kind,
        "source_image": {"bytes": image_png, "path": None},
        "instruction": instruction,
        "target_image": {"bytes": _png(target), "path": None},
        "edit_type": edit_type,
        "target_objects": _object_records(target_scene, target_mask),
    }


def _write_shard(job: tuple[str, int, int, int, int, SceneOptions, str, float]) -> int:
    """Generate rows ``[lo, hi)`` of a split and write them as one parquet shard; returns the Arrow bytes."""
    split, lo, hi, seed, image_size, opts, path, plain_fraction = job
    features = shapes_features()
    rows = [make_sample(i, split, seed, image_size, opts, plain_fraction) for i in range(lo, hi)]
    table = datasets.Dataset.from_dict({name: [r[name] for r in rows] for name in features}, features=features)
    table.to_parquet(path)
    return int(table.data.nbytes)


def _shard_bounds(n: int, num_shards: int) -> list[tuple[int, int]]:
    edges = [round(i * n / num_shards) for i in range(num_shards + 1)]
    return [(edges[i], edges[i + 1]) for i in range(num_shards)]


def _num_shards(n: int, max_shard_rows: int, min_shards: int) -> int:
    return max(1, min(n, max(min_shards, math.ceil(n / max_shard_rows))))


def build_shapes_dataset(
    out_dir: str | Path,
    num_train: int = 10_000,
    num_val: int = 1_000,
    image_size: int = 64,
    seed: int = 0,
    *,
    max_shard_rows: int = 2_500,
    min_shards: int = 4,
    options: SceneOptions | None = None,
    overwrite: bool = False,
    num_proc: int = 1,
    plain_fraction: float = 0.0,
) -> dict[str, Any]:
    """Write the synthetic scenes as parquet shards plus a ``README.md`` dataset card.

    Layout: ``out_dir/data/{split}-{i:05d}-of-{n:05d}.parquet`` and ``out_dir/README.md`` (YAML front matter with
    ``configs`` / ``data_files``, ``dataset_info`` features and splits, license). ``datasets.load_dataset(out_dir,
    streaming=True)`` reads it, and ``DatasetDict.push_to_hub`` / ``huggingface_hub.upload_folder`` can publish it.

    Args:
        out_dir: Output folder (created).
        num_train: Samples in the ``train`` split.
        num_val: Samples in the ``validation`` split (0 to omit it).
        image_size: Image side in pixels (>= 32; objects and textures scale with it).
        seed: Master seed. Same seed and arguments -> byte-identical files.
        max_shard_rows: Rows per shard at most.
        min_shards: At least this many shards per split (for DataLoader workers / ``split_dataset_by_node``).
        options: Scene distribution knobs (:class:`SceneOptions`).
        overwrite: Replace an existing dataset in ``out_dir`` (otherwise an existing one is an error).
        num_proc: Worker processes (one shard per task); the output is identical for any value.
        plain_fraction: Expected share of GenEval-style plain scenes (:func:`sample_plain_scene`: 1-3 plain medium
            objects, separated, white background, captioned with the GenEval-style prompt, with their own editing
            pairs), the distribution the unified model is scored on. Their object sets are never the held-out ones
            (:func:`held_out_contents`), and no caption of any sample is a held-out prompt (:func:`held_out_prompts`).
            0 keeps every other sample byte-identical to a build without plain scenes.

    Returns:
        Summary: ``{"out_dir", "splits": {split: {"num_examples", "files"}}, "seconds", "samples_per_second"}``.
    """
    opts = options or SceneOptions()
    opts.validate()
    if image_size < 32:
        raise ValueError(f"image_size must be >= 32 so the smallest objects stay recognisable; got {image_size}")
    if num_train < 1 or num_val < 0:
        raise ValueError(f"need num_train >= 1 and num_val >= 0; got num_train={num_train}, num_val={num_val}")
    if max_shard_rows < 1 or min_shards < 1:
        raise ValueError(f"max_shard_rows and min_shards must be >= 1; got {max_shard_rows}, {min_shards}")
    if not 0.0 <= plain_fraction <= 1.0:
        raise ValueError(f"plain_fraction must be in [0, 1]; got {plain_fraction}")
    out = Path(out_dir)
    data_dir = out / "data"
    if data_dir.exists() and any(data_dir.iterdir()):
        if not overwrite:
            raise ValueError(f"{data_dir} already holds files; pass overwrite=True (CLI: --overwrite) to replace them.")
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    features = shapes_features()
    t0 = time.perf_counter()
    summary: dict[str, Any] = {"out_dir": str(out), "splits": {}}
    jobs = []
    for split, n in (("train", num_train), ("validation", num_val)):
        if n == 0:
            continue
        shards = _num_shards(n, max_shard_rows, min_shards)
        summary["splits"][split] = {"num_examples": n, "num_bytes": 0, "files": []}
        for k, (lo, hi) in enumerate(_shard_bounds(n, shards)):
            path = data_dir / f"{split}-{k:05d}-of-{shards:05d}.parquet"
            jobs.append((split, lo, hi, seed, image_size, opts, str(path), float(plain_fraction)))
            summary["splits"][split]["files"].append(str(path.relative_to(out)))
    bars_were_disabled = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()  # one "Creating parquet" bar per shard is noise
    try:
        if num_proc > 1:
            ctx = multiprocessing.get_context("spawn")
            with ctx.Pool(min(num_proc, len(jobs)), initializer=datasets.disable_progress_bars) as pool:
                sizes = pool.map(_write_shard, jobs, chunksize=1)
        else:
            sizes = [_write_shard(job) for job in jobs]
    finally:
        if not bars_were_disabled:
            datasets.enable_progress_bars()
    for job, nbytes in zip(jobs, sizes):
        summary["splits"][job[0]]["num_bytes"] += nbytes
    _write_card(out, summary, features, image_size, seed, opts, plain_fraction)
    seconds = time.perf_counter() - t0
    total = num_train + num_val
    summary.update(seconds=seconds, samples_per_second=total / max(seconds, 1e-9))
    return summary


def built_settings(out_dir: str | Path) -> dict[str, Any] | None:
    """The generation settings recorded in a built set's ``README.md`` (``None`` when it has none, e.g. another
    dataset). Sets built before ``plain_fraction`` existed report ``plain_fraction`` 0."""
    readme = Path(out_dir) / "README.md"
    if not readme.is_file():
        return None
    found = re.search(r"^Generation settings: `(\{.*\})`\.$", readme.read_text(encoding="utf-8"), re.MULTILINE)
    if found is None:
        return None
    return {"plain_fraction": 0.0, **json.loads(found.group(1))}


def _write_card(
    out: Path,
    summary: dict[str, Any],
    features: datasets.Features,
    image_size: int,
    seed: int,
    opts: SceneOptions,
    plain_fraction: float = 0.0,
) -> None:
    """README.md with YAML front matter that ``datasets`` and the Hub understand."""
    import yaml
    from huggingface_hub import DatasetCard

    split_dict = datasets.SplitDict()
    for split, info in summary["splits"].items():
        split_dict.add(datasets.SplitInfo(name=split, num_bytes=info["num_bytes"], num_examples=info["num_examples"]))
    # DatasetInfo._to_yaml_dict is the serialisation datasets itself uses for dataset cards (push_to_hub).
    info_yaml = datasets.DatasetInfo(features=features, splits=split_dict)._to_yaml_dict()
    n_total = sum(v["num_examples"] for v in summary["splits"].values())
    size_cat = "n<1K" if n_total < 1_000 else "1K<n<10K" if n_total < 10_000 else "10K<n<100K"
    meta = {
        "license": "cc0-1.0",
        "pretty_name": "MUSE synthetic scenes",
        "task_categories": ["text-to-image", "image-to-text", "image-classification", "image-segmentation"],
        "tags": ["synthetic", "muse_hf", "image-editing"],
        "size_categories": [size_cat],
        "configs": [
            {
                "config_name": "default",
                "data_files": [{"split": split, "path": f"data/{split}-*.parquet"} for split in summary["splits"]],
            }
        ],
        "dataset_info": info_yaml,
    }
    front = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, width=1000)
    settings = json.dumps(
        {"image_size": image_size, "seed": seed, **opts.__dict__, "plain_fraction": plain_fraction}, sort_keys=True
    )
    plain = (
        f"""
A share of about {plain_fraction:.0%} of the rows are GenEval-style plain scenes (the distribution the unified model is
scored on): 1-3 plain medium objects with distinct shapes and colours, separated, on a white background, captioned
with the scorer's own phrasing ("a red circle", "a photo of a green star", "two objects on a white background: a red
circle and a blue square", "a blue square left of a red circle"), with editing pairs of the same kind. In these rows
every object is medium, so `label` is the first-named object rather than the strictly largest.
"""
        if plain_fraction > 0
        else ""
    )
    held = (
        f"Held out for scoring: {HELD_OUT_FRACTION:.0%} of the GenEval-style object sets, chosen by a keyed hash "
        "(`muse_hf.data.shapes.held_out_contents`), are never drawn as plain scenes, and no caption is one of their "
        "prompts (`held_out_prompts`)."
    )
    body = f"""
# MUSE synthetic scenes

Deterministic synthetic scenes generated by `muse_hf.data.build_shapes_dataset` (command:
`muse-hf build-data --output_dir DIR --num_train N --num_val M --image_size S --seed K [--plain_fraction F]`). They let the MUSE tokenizer
and unified model train and be measured on a CPU with no network.

Generation settings: `{settings}`.

## Content

Each row is a {image_size}x{image_size} scene of 1-4 objects: {len(SHAPES)} shapes ({", ".join(SHAPES)}) x
{len(COLOURS)} colours ({", ".join(COLOURS)}) x 3 sizes, plain or {", ".join(TEXTURES[1:])}, on plain, graded,
striped, checkered or noisy backgrounds.
{plain}
{held}

| column | content |
|---|---|
| `image` | the scene (PNG) |
| `caption` | names every object as "[size] [texture] colour shape" with its relation to the main object |
| `label` | class of the main (largest) object, "colour shape" ({len(LABEL_NAMES)} classes) |
| `mask` | instance mask PNG: 0 background, i+1 = visible pixels of `objects[i]` |
| `objects` | shape, colour, texture, size, visible bbox [x0, y0, x1, y1] (inclusive), centre [x, y] |
| `background` | background kind |
| `source_image`, `instruction`, `target_image`, `edit_type`, `target_objects` | an editing pair: recolour / move / add / remove one object; the target differs from the source only where the edited object was or is |

Colour alone does not segment these scenes: objects can be textured (two colours inside one instance), neighbours
can share a colour and touch, objects occlude each other, and backgrounds are often textured. Attention-segmentation
mIoU against `mask` therefore measures structure.

## Use

```python
from datasets import load_dataset
ds = load_dataset("PATH_OR_REPO", streaming=True, split="train")
```

License: CC0-1.0 (generated data, no third-party content).
"""
    DatasetCard(f"---\n{front}---\n{body}").save(out / "README.md")


# ------------------------------------------------------------------------------------------------------------ CLI


def __getattr__(name: str) -> Any:
    # ``main`` (the ``build-data`` parser) is ``muse_hf.cli.build_data_main`` (``muse-hf build-data``).
    return moved_attribute(__name__, name, {"main": "muse_hf.cli:build_data_main"})
