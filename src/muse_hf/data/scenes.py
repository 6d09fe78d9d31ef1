"""Synthetic scenes: the scene specification, its sampling and its rendering (NumPy only).

A :class:`Scene` is a background plus 1-4 :class:`SceneObject` s (6 shapes x 6 colours x 3 sizes, plain or textured)
drawn in order, later objects occluding earlier ones. :func:`sample_scene` draws one from a ``numpy.random.Generator``
(the main, largest object first, then smaller ones free, touching or occluding, as :class:`SceneOptions` asks);
:func:`render_scene` rasterises it to an RGB image and an instance mask. Captions and edits of a scene are
:mod:`muse_hf.data.captions`, GenEval-style plain scenes :mod:`muse_hf.data.plain_scenes`, and the parquet dataset
writer :mod:`muse_hf.data.shapes`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

__all__ = [
    "BACKGROUND_PALETTE",
    "BACKGROUNDS",
    "COLOURS",
    "SHAPES",
    "SIZES",
    "TEXTURES",
    "Background",
    "Scene",
    "SceneObject",
    "SceneOptions",
    "article",
    "is_free",
    "new_object",
    "object_records",
    "pick",
    "place_object",
    "render_background",
    "render_scene",
    "sample_scene",
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
_MIN_VISIBLE = 0.45  # an occluded object keeps at least this fraction of its pixels


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
        return article(words[0]) + " " + " ".join(words)


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


def article(word: str) -> str:
    """The indefinite article of ``word``: ``"an"`` before a vowel, else ``"a"``."""
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


def render_background(bg: Background, size: int) -> np.ndarray:
    """The background alone, ``(size, size, 3)`` uint8 (deterministic: ``bg.seed`` drives the noise)."""
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
    image = render_background(scene.background, s) if background is None else background.copy()  # (S, S, 3)
    mask = np.zeros((s, s), np.uint8)  # (S, S)
    for i, obj in enumerate(scene.objects):
        m, y0, x0 = _shape_mask(obj, s)
        h, w = m.shape
        tex = _texture(obj, y0, x0, h, w)
        region = image[y0 : y0 + h, x0 : x0 + w]
        region[m] = tex[m]
        mask[y0 : y0 + h, x0 : x0 + w][m] = i + 1
    return image, mask


def object_records(scene: Scene, mask: np.ndarray) -> list[dict[str, Any]]:
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


def pick(rng: np.random.Generator, seq: Sequence[Any]) -> Any:
    """One element of ``seq``, drawn uniformly with ``rng``."""
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


def is_free(cx: float, cy: float, r: float, others: Sequence[SceneObject], margin: float) -> bool:
    """Whether a disc of radius ``r`` at ``(cx, cy)`` keeps ``margin`` pixels from every object of ``others``."""
    return all(math.hypot(cx - o.cx, cy - o.cy) >= r + o.r + margin for o in others)


def place_object(
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
            if is_free(cx, cy, r, others, margin=1.5):
                return cx, cy
        else:
            d = float(rng.uniform(*dist_range)) * (r + anchor.r)
            a = float(rng.uniform(0.0, 2 * math.pi))
            cx, cy = anchor.cx + d * math.cos(a), anchor.cy + d * math.sin(a)
            if not (lo <= cx <= hi and lo <= cy <= hi):
                continue
            if is_free(cx, cy, r, [o for o in others if o is not anchor], margin=1.5):
                return cx, cy
    return None


def new_object(
    rng: np.random.Generator,
    size: int,
    opts: SceneOptions,
    size_names: Sequence[str],
    colour: str | None = None,
) -> SceneObject:
    """A random object of one of ``size_names`` (and ``colour`` when given), not yet placed (centre ``(0, 0)``)."""
    scale = size / 64.0
    texture = "plain" if rng.random() >= opts.texture_prob else pick(rng, TEXTURES[1:])
    size_name = pick(rng, size_names)
    return SceneObject(
        shape=pick(rng, SHAPES),
        colour=colour if colour is not None else pick(rng, list(COLOURS)),
        texture=texture,
        size=size_name,
        cx=0.0,
        cy=0.0,
        r=SIZES[size_name] * size,
        period=float(rng.integers(3, 5)) * scale,
        angle=int(pick(rng, (0, 45, 90, 135))),
    )


def _sample_background(rng: np.random.Generator, size: int, opts: SceneOptions) -> Background:
    names = list(BACKGROUND_PALETTE)
    kind = "plain" if rng.random() >= opts.textured_background_prob else pick(rng, BACKGROUNDS[1:])
    i = int(rng.integers(len(names)))
    j = (i + 1 + int(rng.integers(len(names) - 1))) % len(names)
    return Background(
        kind=kind,
        colours=(names[i], names[j]),
        period=float(rng.integers(6, 11)) * size / 64.0,
        angle=int(pick(rng, (0, 45, 90, 135))),
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
    main_obj = new_object(rng, size, opts, ("medium", "large"))
    pos = place_object(rng, size, main_obj.r, [])
    assert pos is not None  # the main object always fits on an empty canvas
    objects = [replace(main_obj, cx=pos[0], cy=pos[1])]
    smaller = ("small",) if main_obj.size == "medium" else ("small", "medium")
    for _ in range(n - 1):
        anchor = pick(rng, objects)
        mode_draw = rng.random()
        if mode_draw < opts.same_colour_prob:
            mode, colour = "touch", anchor.colour
        elif mode_draw < opts.same_colour_prob + opts.occlusion_prob:
            mode, colour = "occlude", None
        else:
            mode, colour = "free", None
        obj = new_object(rng, size, opts, smaller, colour=colour)
        placed = None
        if mode == "touch":
            pos = place_object(rng, size, obj.r, objects, anchor, (1.0, 1.12))
            placed = replace(obj, cx=pos[0], cy=pos[1]) if pos else None
        elif mode == "occlude":
            for _attempt in range(6):
                pos = place_object(rng, size, obj.r, objects, anchor, (0.55, 0.85), tries=10)
                if pos is None:
                    break
                cand = replace(obj, cx=pos[0], cy=pos[1])
                if _visible_ok([*objects, cand], size):
                    placed = cand
                    break
        if placed is None:
            pos = place_object(rng, size, obj.r, objects)
            placed = replace(obj, cx=pos[0], cy=pos[1]) if pos else None
        if placed is not None:
            objects.append(placed)
    return Scene(size=size, background=background, objects=tuple(objects))
