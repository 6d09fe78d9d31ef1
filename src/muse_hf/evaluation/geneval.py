"""An offline GenEval-style check for the synthetic scenes (``muse_hf.data.shapes``).

GenEval scores text-to-image models by detecting the objects the prompt asks for and checking their colour, count
and relative position. Our synthetic world has 6 shapes and 6 colours drawn by a known renderer, so a deterministic
detector replaces the object detector:

1. **Pixels -> colour classes.** Every rendered object pixel is one of four variants of its palette colour (plain,
   stripe/dot dark ``0.4c`` / ``0.35c``, checker tint ``0.25c + 0.75*245``); every background pixel lies on a point, a
   two-colour segment (gradients) or a grey line (noise) of the muted background palette. A pixel takes the class
   of the nearest of these sets (background, or one of the 6 colours). Tints are close to pale backgrounds, so they
   only count next to an object: a colour's tint pixels join it when they lie within one texture period of its
   strong (plain/dark) pixels and the object holds at least two whole tint cells (it is checkered; the blurred
   edges of a plain object leave only scattered tint-coloured pixels).
2. **Colour class -> objects.** Connected components per colour (8-connectivity); components smaller than a
   quarter of the smallest object the renderer draws at this size are dropped.
3. **Shape.** Each component's scale-free descriptors (extent = area / box, solidity, box aspect, vertical centroid
   offset, normalised second moments) are matched to the nearest prototype, the prototypes being the renderer's own
   drawings of each shape at each size at this resolution, sharp and Gaussian-blurred (decoders soften edges), passed
   through the same segmentation.

Scoring a generated image against its prompt: the prompt is parsed into objects ``(count, colour, shape)``, an
optional total (``"three objects ..."``) and an optional relation (``"A left of B"``); the image passes ``colour``
(each named colour+shape present as often as named), ``count`` (exact totals when the prompt gives a number) and
``position`` (the relation between the largest instances) where applicable, and is ``correct`` when all applicable
checks pass (GenEval's binary score). An edit is scored for the instructed change (recolour / move / add / remove,
the grammar of :func:`muse_hf.data.shapes.make_edit`) and for background consistency: PSNR between source and edit
outside the edited object (its pixels in either image, dilated by 2 px).

Limits (stated, not hidden): touching same-colour objects merge into one component, and an occluded object can split
in two; the GenEval-style prompt set below (:func:`geneval_prompts`) therefore draws separated objects, as GenEval's
own prompts do. On such renders the detector is exact (tests check it); on the dataset's harder scenes it is not.

Held-out prompts: :func:`geneval_prompts` names only the object sets of a fixed, hash-chosen held-out quarter
(:func:`muse_hf.data.shapes.held_out_contents`); the synthetic training data never draws those sets as its
GenEval-style plain scenes and no training caption is one of their prompts (:func:`muse_hf.data.shapes.held_out_prompts`),
so the score measures generation of unseen compositions in a seen phrasing. Edit instructions
(:func:`edit_set`) are drawn from the dataset's edit grammar on random scenes and are not held out.

Scoring a pipeline (one seed per image, beside the blank-canvas / unconditional floors and the tokenizer round-trip
ceiling) is :func:`muse_hf.evaluation.geneval_pipeline.evaluate_pipeline` (``evaluate_pipeline`` here is a
deprecated alias of it).

Size: one responsibility, the GenEval-style check (detector, prompt / edit sets and their scoring).
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import PIL.Image
from scipy import ndimage

from muse_hf.compat import moved_attribute
from muse_hf.data.shapes import (
    BACKGROUND_PALETTE,
    COLOURS,
    PLAIN_CATEGORIES,
    SHAPES,
    SIZES,
    Background,
    Scene,
    SceneObject,
    SceneOptions,
    make_edit,
    render_scene,
    sample_plain_scene,
    sample_scene,
)
from muse_hf.evaluation.metrics import PSNR_CAP_DB

__all__ = [
    "DetectedObject",
    "ObjectSpec",
    "ParsedPrompt",
    "GenerationScore",
    "EditSpec",
    "EditScore",
    "GenEvalPrompt",
    "DEFAULT_PER_CATEGORY",
    "detect_objects",
    "parse_prompt",
    "score_generation",
    "parse_instruction",
    "score_edit",
    "geneval_prompts",
    "render_prompt",
    "relation",
    "evaluate_generation",
    "evaluate_edits",
    "edit_set",
]

RELATIONS = ("left of", "right of", "above", "below")
#: Prompts per GenEval category of the scored set by default (6 categories -> 96 prompts).
DEFAULT_PER_CATEGORY = 16
_NUMBERS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4}
_PLURAL = {f"{s}s" if not s.endswith("s") else f"{s}es": s for s in SHAPES} | {"crosses": "cross"}
_NOISE_SHIFT = 45.0  # grey-noise reach of a noisy background (3.2 sigma of the renderer's N(0, 14))


# ---------------------------------------------------------------------------------------------- pixel classification
def _variants(rgb: tuple[int, int, int]) -> dict[str, np.ndarray]:
    c = np.asarray(rgb, np.float64)
    return {"plain": c, "dark": c * 0.4, "dot": c * 0.35, "tint": c * 0.25 + 0.75 * 245.0}


def _segments() -> tuple[np.ndarray, np.ndarray]:
    """Background sets as segments ``a -> b``: palette pairs (gradients, stripes) and grey lines (noise)."""
    pal = np.array(list(BACKGROUND_PALETTE.values()), np.float64)
    starts, ends = [], []
    for a, b in itertools.combinations(pal, 2):
        starts.append(a)
        ends.append(b)
    for a in pal:
        starts.append(np.clip(a - _NOISE_SHIFT, 0, 255))
        ends.append(np.clip(a + _NOISE_SHIFT, 0, 255))
    return np.stack(starts), np.stack(ends)


_SEG_A, _SEG_B = _segments()
_COLOUR_NAMES = list(COLOURS)
_STRONG = np.stack([v for c in _COLOUR_NAMES for k, v in _variants(COLOURS[c]).items() if k != "tint"])  # (18, 3)
_STRONG_CLASS = np.repeat(np.arange(len(_COLOUR_NAMES)), 3)
_TINT = np.stack([_variants(COLOURS[c])["tint"] for c in _COLOUR_NAMES])  # (6, 3)


def _background_distance(pixels: np.ndarray) -> np.ndarray:
    """Distance of each ``(N, 3)`` pixel to the nearest background segment."""
    ab = _SEG_B - _SEG_A  # (S, 3)
    t = ((pixels[:, None, :] - _SEG_A[None]) * ab[None]).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-9)[None]
    t = np.clip(t, 0.0, 1.0)  # (N, S)
    nearest = _SEG_A[None] + t[..., None] * ab[None]  # (N, S, 3)
    return np.sqrt(((pixels[:, None, :] - nearest) ** 2).sum(-1)).min(1)  # (N,)


def _classify_pixels(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel: strong colour class (-1 = background) and the nearest tint's colour (-1 = background)."""
    h, w, _ = image.shape
    # classify each colour once: unique 24-bit RGB keys (r most significant, so the same order as unique rows, ~40x
    # faster than np.unique(axis=0) on the (H*W, 3) rows)
    rgb = image.reshape(-1, 3).astype(np.int32)
    keys, inverse = np.unique((rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2], return_inverse=True)
    px = np.stack([keys >> 16, (keys >> 8) & 255, keys & 255], axis=1).astype(np.float64)  # (U, 3)
    bg = _background_distance(px)  # (U,)
    d_strong = np.sqrt(((px[:, None] - _STRONG[None]) ** 2).sum(-1))  # (U, 18)
    best = d_strong.argmin(1)
    strong = np.where(d_strong[np.arange(len(px)), best] < bg, _STRONG_CLASS[best], -1)[inverse.reshape(-1)]
    d_tint = np.sqrt(((px[:, None] - _TINT[None]) ** 2).sum(-1))  # (U, 6)
    tbest = d_tint.argmin(1)
    dt = d_tint[np.arange(len(px)), tbest]
    tint = np.where((dt < bg) & (dt < 45.0), tbest, -1)[inverse.reshape(-1)]
    return strong.reshape(h, w), tint.reshape(h, w)


# ------------------------------------------------------------------------------------------------------- shape model
_RADIAL_BINS = 16
_RAY_ANGLES = np.arange(_RADIAL_BINS) * (2 * np.pi / _RADIAL_BINS)


def _features(mask: np.ndarray) -> np.ndarray:
    """Scale-free descriptors of a binary object mask: extent, solidity, box aspect, vertical centroid offset,
    normalised second moment, and the radial signature (boundary distance along 16 fixed rays from the centroid,
    divided by the largest; the renderer never rotates shapes, so where tips and notches point tells the shape)."""
    ys, xs = np.nonzero(mask)
    area = float(len(xs))
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    bh, bw = float(y1 - y0), float(x1 - x0)
    extent = area / (bh * bw)
    cy, cx = ys.mean() + 0.5, xs.mean() + 0.5
    voff = (cy - y0) / bh - 0.5  # triangle's centroid sits low in its box
    dx, dy = xs + 0.5 - cx, ys + 0.5 - cy
    moment = (dx * dx + dy * dy).mean() / area
    solidity = area / max(_convex_area(xs, ys), area)
    # boundary distance along 16 fixed rays from the centroid (first exit, quarter-pixel steps)
    h, w = mask.shape
    steps = np.arange(0.0, math.hypot(bh, bw) + 1.0, 0.25)  # (T,)
    px = np.floor(cx + np.cos(_RAY_ANGLES)[:, None] * steps[None]).astype(int)  # (A, T)
    py = np.floor(cy + np.sin(_RAY_ANGLES)[:, None] * steps[None]).astype(int)
    inside = (px >= 0) & (px < w) & (py >= 0) & (py < h)
    inside[inside] = mask[py[inside], px[inside]]
    outside = ~inside
    outside[:, -1] = True
    radial = steps[outside.argmax(1)]  # (A,) first step outside the mask
    radial = radial / max(radial.max(), 1e-6)
    return np.concatenate([[extent, solidity, bw / bh, voff, moment], radial])


def _convex_area(xs: np.ndarray, ys: np.ndarray) -> float:
    """Area of the convex hull of the pixel squares (corner points)."""
    from scipy.spatial import ConvexHull

    pts = np.concatenate([np.stack([xs + dx, ys + dy], 1) for dx in (0, 1) for dy in (0, 1)]).astype(np.float64)
    try:
        return float(ConvexHull(pts).volume)
    except Exception:  # degenerate (a line of pixels)
        return float(len(xs))


_FEATURE_SCALE = np.array([0.06, 0.05, 0.06, 0.03, 0.01] + [0.12] * _RADIAL_BINS)
_PROTOTYPE_BLURS = (0.6, 1.0)  # Gaussian sigma (pixels at 64 px) of the blurred prototypes: decoders soften edges
_PROTOTYPE_COLOURS = ("red", "yellow")


@lru_cache(maxsize=8)
def _prototypes(size: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Shape prototypes at this resolution: the renderer's drawing of every shape at every size, sharp (four
    sub-pixel offsets) and blurred (two offsets, two colours, two blur widths) through the detector's own
    segmentation.

    Returns:
        features ``(P, F)``, shape index ``(P,)``, the smallest sharp object area (pixels).
    """
    feats, labels, areas = [], [], []
    bg = Background("plain", ("white", "grey"), 8.0, 0, 0)
    scale = size / 64.0
    for si, shape in enumerate(SHAPES):
        for size_name, frac in SIZES.items():
            for off in (0.0, 0.25, 0.5, 0.75):
                for colour in _PROTOTYPE_COLOURS:
                    obj = SceneObject(
                        shape, colour, "plain", size_name, size / 2 + off, size / 2 + off * 0.6, frac * size
                    )
                    image, mask = render_scene(Scene(size, bg, (obj,)))
                    if colour == _PROTOTYPE_COLOURS[0]:  # sharp: the segmentation is exact, colour does not matter
                        areas.append(int((mask == 1).sum()))
                        feats.append(_features(mask == 1))
                        labels.append(si)
                    if off not in (0.0, 0.5):
                        continue
                    for sigma in _PROTOTYPE_BLURS:
                        img = ndimage.gaussian_filter(image.astype(np.float64), (sigma * scale, sigma * scale, 0))
                        masks = [
                            m for _, m in _object_masks(np.clip(np.rint(img), 0, 255).astype(np.uint8), 0, only=colour)
                        ]
                        if masks:
                            feats.append(_features(max(masks, key=lambda m: m.sum())))
                            labels.append(si)
    return np.stack(feats), np.array(labels), float(min(areas))


# ---------------------------------------------------------------------------------------------------------- detection
@dataclass
class DetectedObject:
    """One detected object.

    Args:
        colour: palette colour name.
        shape: shape name.
        cx: centroid x in pixels.
        cy: centroid y in pixels.
        area: pixels.
        bbox: ``[x0, y0, x1, y1]`` inclusive.
        mask: boolean ``(H, W)`` mask.
    """

    colour: str
    shape: str
    cx: float
    cy: float
    area: int
    bbox: list[int]
    mask: np.ndarray = field(repr=False)

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"


def _to_array(image: Any) -> np.ndarray:
    """PIL / uint8 ``(H, W, 3)`` / float ``(H, W, 3)`` or ``(3, H, W)`` in [0, 1] -> uint8 ``(H, W, 3)``."""
    if isinstance(image, PIL.Image.Image):
        return np.asarray(image.convert("RGB"))
    arr = np.asarray(image.detach().cpu() if hasattr(image, "detach") else image)
    if arr.ndim == 3 and arr.shape[0] == 3 and arr.shape[-1] != 3:
        arr = arr.transpose(1, 2, 0)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise ValueError(f"Expected an RGB image (H, W, 3) or (3, H, W); got shape {arr.shape}.")
    if arr.dtype != np.uint8:
        if arr.min() < 0 or arr.max() > 1:
            raise ValueError("Float images must be in [0, 1].")
        arr = np.rint(arr * 255).astype(np.uint8)
    return arr


def _object_masks(arr: np.ndarray, min_area: float, only: str | None = None) -> list[tuple[str, np.ndarray]]:
    """Segment ``(H, W, 3)`` uint8 into per-colour object masks (steps 1-2 of the module docstring)."""
    size = min(arr.shape[:2])
    strong, tint = _classify_pixels(arr)
    radius = max(1, round(4 * size / 64))  # the renderer's largest texture period
    disk = _disk(radius)
    out: list[tuple[str, np.ndarray]] = []
    for ci, colour in enumerate(_COLOUR_NAMES):
        mask_c = strong == ci
        if not mask_c.any() or only not in (None, colour):
            continue
        # Checker tints join an object when it is checkered: at least two whole tint cells (blobs surviving a 2x2
        # opening) inside it. Blurred edges of plain objects leave only scattered tint-coloured pixels: not joined.
        tint_near = (tint == ci) & ndimage.binary_dilation(mask_c, structure=disk)
        cells, _ = ndimage.label(ndimage.binary_opening(tint_near, structure=np.ones((2, 2), bool)))
        comps, n_comps = ndimage.label(mask_c | tint_near, structure=np.ones((3, 3), bool))
        checkered = [k for k in range(1, n_comps + 1) if len(np.unique(cells[(comps == k) & (cells > 0)])) >= 2]
        region = ndimage.binary_fill_holes(mask_c | (tint_near & np.isin(comps, checkered)))
        labels, n = ndimage.label(region, structure=np.ones((3, 3), bool))
        for k in range(1, n + 1):
            m = labels == k
            if m.sum() >= max(min_area, 3):
                out.append((colour, m))
    return out


def detect_objects(image: Any) -> list[DetectedObject]:
    """Detect the renderer's objects in an image.

    Args:
        image: PIL image, uint8 ``(H, W, 3)`` array, or float array/tensor in [0, 1] (``(H, W, 3)`` or ``(3, H, W)``).

    Returns:
        Detected objects, largest first.
    """
    arr = _to_array(image)
    proto_feats, proto_labels, min_area = _prototypes(min(arr.shape[:2]))
    found: list[DetectedObject] = []
    for colour, m in _object_masks(arr, 0.25 * min_area):
        f = _features(m)
        dist = (((proto_feats - f) / _FEATURE_SCALE) ** 2).sum(1)
        shape = SHAPES[int(proto_labels[dist.argmin()])]
        ys, xs = np.nonzero(m)
        found.append(
            DetectedObject(
                colour,
                shape,
                float(xs.mean() + 0.5),
                float(ys.mean() + 0.5),
                int(m.sum()),
                [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())],
                m,
            )
        )
    return sorted(found, key=lambda o: -o.area)


def _disk(radius: int) -> np.ndarray:
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return xx * xx + yy * yy <= radius * radius


def relation(a: Any, b: Any) -> str:
    """Where ``a`` is relative to ``b`` (objects with ``cx``, ``cy``): the dominant axis decides, image coordinates.

    The same convention as the dataset's captions (``left of`` / ``right of`` / ``above`` / ``below``).
    """
    dx, dy = a.cx - b.cx, a.cy - b.cy
    if abs(dx) >= abs(dy):
        return "left of" if dx < 0 else "right of"
    return "above" if dy < 0 else "below"


# ------------------------------------------------------------------------------------------------------------ prompts
@dataclass(frozen=True)
class ObjectSpec:
    """An object the prompt asks for: ``count`` x ``colour`` ``shape`` (``counted``: the count was a number word
    or a repetition, so it must match exactly)."""

    colour: str | None
    shape: str
    count: int = 1
    counted: bool = False


@dataclass
class ParsedPrompt:
    """Objects, an optional total count and an optional relation ``(index_a, relation, index_b)`` into ``objects``."""

    objects: list[ObjectSpec]
    total: int | None = None
    relation: tuple[int, str, int] | None = None


_COLOUR_RE = "|".join(_COLOUR_NAMES)
_SHAPE_RE = "|".join(sorted([*SHAPES, *_PLURAL], key=len, reverse=True))
_OBJ_RE = re.compile(
    rf"\b(?P<num>a|an|one|two|three|four)\s+(?:(?:small|medium|large|striped|checkered|dotted)\s+)*"
    rf"(?:(?P<colour>{_COLOUR_RE})\s+)?(?P<shape>{_SHAPE_RE})\b"
)
_TOTAL_RE = re.compile(r"\b(?P<num>one|two|three|four)\s+objects\b")
_REL_RE = "|".join(RELATIONS)


def parse_prompt(prompt: str) -> ParsedPrompt:
    """Parse a scene prompt (the dataset's caption grammar, or GenEval-style phrasing).

    Handles ``"a red circle"``, ``"two blue squares"``, ``"three objects on a white background: a red circle, a blue
    square and a green star"``, ``"a blue square left of a red circle"`` and ``"a red circle with a blue square left
    of it"``.

    Raises:
        ValueError: no object could be found in the prompt.
    """
    text = prompt.lower()
    total_m = _TOTAL_RE.search(text)
    mentions = []
    for m in _OBJ_RE.finditer(text):
        shape = _PLURAL.get(m["shape"], m["shape"])
        mentions.append((m.start(), m.end(), _NUMBERS[m["num"]], m["colour"], shape, m["num"] not in ("a", "an")))
    if not mentions:
        raise ValueError(f"No object ('<a|two|...> [colour] <shape>') found in prompt {prompt!r}.")
    rel = None
    if len(mentions) >= 2:
        between = text[mentions[0][1] : mentions[1][0]]
        after = text[mentions[1][1] :]
        r = re.search(rf"\b({_REL_RE})\b", between)
        if r:  # "A <rel> B"
            rel = (0, r.group(1), 1)
        else:
            r = re.match(rf"\s+({_REL_RE})\s+it\b", after)
            if r:  # "A with B <rel> it"
                rel = (1, r.group(1), 0)
    # merge repeated mentions of one colour+shape into a counted spec
    order: list[tuple[str | None, str]] = []
    counts: Counter = Counter()
    counted: dict[tuple[str | None, str], bool] = {}
    for _, _, n, colour, shape, is_number in mentions:
        key = (colour, shape)
        if key not in counts:
            order.append(key)
        counted[key] = counted.get(key, False) or is_number or key in counts
        counts[key] += n
    objects = [ObjectSpec(c, s, counts[(c, s)], counted[(c, s)]) for c, s in order]
    if rel is not None:
        a_key = (mentions[rel[0]][3], mentions[rel[0]][4])
        b_key = (mentions[rel[2]][3], mentions[rel[2]][4])
        rel = (order.index(a_key), rel[1], order.index(b_key)) if a_key != b_key else None
    return ParsedPrompt(objects, _NUMBERS[total_m["num"]] if total_m else None, rel)


@dataclass
class GenerationScore:
    """GenEval-style score of one image. ``None`` = the check does not apply to this prompt."""

    prompt: str
    correct: bool
    colour: bool
    count: bool | None
    position: bool | None
    detected: list[str]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def score_generation(image: Any, prompt: str, detections: list[DetectedObject] | None = None) -> GenerationScore:
    """Score ``image`` against ``prompt`` (see the module docstring for the rules)."""
    parsed = parse_prompt(prompt)
    objs = detect_objects(image) if detections is None else detections
    names = Counter((o.colour, o.shape) for o in objs)
    shapes = Counter(o.shape for o in objs)

    def have(spec: ObjectSpec) -> int:
        return names[(spec.colour, spec.shape)] if spec.colour else shapes[spec.shape]

    colour_ok = all(have(s) >= s.count for s in parsed.objects)
    count_checks = [have(s) == s.count for s in parsed.objects if s.counted]
    if parsed.total is not None:
        count_checks.append(len(objs) == parsed.total)
    count_ok = all(count_checks) if count_checks else None
    position_ok = None
    if parsed.relation is not None:
        ia, rel, ib = parsed.relation

        def largest(spec: ObjectSpec) -> DetectedObject | None:
            cands = [o for o in objs if o.shape == spec.shape and (spec.colour is None or o.colour == spec.colour)]
            return max(cands, key=lambda o: o.area) if cands else None

        a, b = largest(parsed.objects[ia]), largest(parsed.objects[ib])
        position_ok = a is not None and b is not None and relation(a, b) == rel
    checks = [colour_ok] + [c for c in (count_ok, position_ok) if c is not None]
    return GenerationScore(prompt, all(checks), colour_ok, count_ok, position_ok, [o.name for o in objs])


# -------------------------------------------------------------------------------------------------------------- edits
@dataclass(frozen=True)
class EditSpec:
    """A parsed edit instruction (the dataset's edit grammar)."""

    kind: str  # recolour | move | add | remove
    colour: str
    shape: str
    new_colour: str | None = None  # recolour
    direction: str | None = None  # move: left | right | up | down
    relation: str | None = None  # add: relation to the reference object
    reference: tuple[str, str] | None = None  # add: (colour, shape) of the reference object


_EDIT_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("recolour", re.compile(rf"^(?:make|paint) the (?P<c>{_COLOUR_RE}) (?P<s>\w+) (?P<n>{_COLOUR_RE})$")),
    ("recolour", re.compile(rf"^change the colou?r of the (?P<c>{_COLOUR_RE}) (?P<s>\w+) to (?P<n>{_COLOUR_RE})$")),
    ("move", re.compile(rf"^move the (?P<c>{_COLOUR_RE}) (?P<s>\w+) (?P<d>to the left|to the right|up|down)$")),
    ("remove", re.compile(rf"^(?:remove|delete|take away) the (?P<c>{_COLOUR_RE}) (?P<s>\w+)$")),
    (
        "add",
        re.compile(
            rf"^add an? (?:(?:small|medium|large|striped|checkered|dotted) )*(?P<c>{_COLOUR_RE}) (?P<s>\w+)"
            rf" (?P<r>{_REL_RE}) the (?P<rc>{_COLOUR_RE}) (?P<rs>\w+)$"
        ),
    ),
]


def parse_instruction(instruction: str) -> EditSpec:
    """Parse an edit instruction (``make the red circle green``, ``move the blue star up``, ``add a small green
    square left of the red circle``, ``remove the yellow cross``, and the dataset's synonyms).

    Raises:
        ValueError: the instruction is not in the edit grammar, or names an unknown shape.
    """
    text = " ".join(instruction.lower().strip().rstrip(".").split())
    for kind, pattern in _EDIT_PATTERNS:
        m = pattern.match(text)
        if not m:
            continue
        shapes = [m[g] for g in ("s", "rs") if g in m.groupdict() and m[g]]
        bad = [s for s in shapes if s not in SHAPES]
        if bad:
            raise ValueError(f"Unknown shape(s) {bad} in instruction {instruction!r}; shapes are {SHAPES}.")
        if kind == "recolour":
            return EditSpec(kind, m["c"], m["s"], new_colour=m["n"])
        if kind == "move":
            return EditSpec(kind, m["c"], m["s"], direction=m["d"].replace("to the ", ""))
        if kind == "add":
            return EditSpec(kind, m["c"], m["s"], relation=m["r"], reference=(m["rc"], m["rs"]))
        return EditSpec(kind, m["c"], m["s"])
    raise ValueError(
        f"Instruction {instruction!r} is not in the edit grammar (recolour: 'make the <colour> <shape> <colour>', move: "
        "'move the <colour> <shape> to the left|to the right|up|down', add: 'add a <colour> <shape> <relation> the "
        "<colour> <shape>', remove: 'remove the <colour> <shape>')."
    )


@dataclass
class EditScore:
    """Score of one edit: the instructed change, and PSNR (dB, capped) outside the edited object."""

    instruction: str
    kind: str
    change_done: bool
    background_psnr: float
    detected_source: list[str]
    detected_edit: list[str]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _masked_psnr(a: np.ndarray, b: np.ndarray, keep: np.ndarray) -> float:
    if not keep.any():
        return float("nan")
    diff = (a.astype(np.float64) - b.astype(np.float64)) / 255.0
    mse = float((diff[keep] ** 2).mean())
    return PSNR_CAP_DB if mse <= 10 ** (-PSNR_CAP_DB / 10) else min(PSNR_CAP_DB, 10 * math.log10(1.0 / mse))


def score_edit(source: Any, edited: Any, instruction: str) -> EditScore:
    """Score an edit of ``source`` into ``edited`` following ``instruction`` (see the module docstring).

    Raises:
        ValueError: the images differ in size, or the instruction is outside the grammar.
    """
    spec = parse_instruction(instruction)
    src, out = _to_array(source), _to_array(edited)
    if src.shape != out.shape:
        raise ValueError(f"source {src.shape} and edited {out.shape} must have the same size.")
    before, after = detect_objects(src), detect_objects(out)
    nb = Counter((o.colour, o.shape) for o in before)
    na = Counter((o.colour, o.shape) for o in after)
    key = (spec.colour, spec.shape)

    def find(objs: list[DetectedObject], colour: str) -> DetectedObject | None:
        cands = [o for o in objs if o.colour == colour and o.shape == spec.shape]
        return max(cands, key=lambda o: o.area) if cands else None

    size = min(src.shape[:2])
    old = find(before, spec.colour)
    touched: list[DetectedObject] = [o for o in (old,) if o is not None]
    if spec.kind == "recolour":
        new = find(after, spec.new_colour)
        done = na[key] == nb[key] - 1 and na[(spec.new_colour, spec.shape)] == nb[(spec.new_colour, spec.shape)] + 1
        done = (
            done and old is not None and new is not None and math.hypot(old.cx - new.cx, old.cy - new.cy) < 0.1 * size
        )
        touched += [o for o in (new,) if o is not None]
    elif spec.kind == "move":
        moved = find(after, spec.colour)
        done = False
        if old is not None and moved is not None and na[key] == nb[key]:
            dx, dy = moved.cx - old.cx, moved.cy - old.cy
            along = {"left": -dx, "right": dx, "up": -dy, "down": dy}[spec.direction]
            across = abs(dy) if spec.direction in ("left", "right") else abs(dx)
            done = along >= 0.1 * size and across < along
        touched += [o for o in (moved,) if o is not None]
    elif spec.kind == "add":
        added = [o for o in after if (o.colour, o.shape) == key]
        done = na[key] == nb[key] + 1
        ref = [o for o in after if (o.colour, o.shape) == spec.reference]
        if done and ref:
            new_obj = max(added, key=lambda o: o.area)
            done = relation(new_obj, max(ref, key=lambda o: o.area)) == spec.relation
        touched = added
    else:  # remove
        done = nb[key] >= 1 and na[key] == nb[key] - 1
    region = np.zeros(src.shape[:2], bool)
    for o in touched:
        region |= o.mask
    region = ndimage.binary_dilation(region, iterations=2)
    return EditScore(
        instruction,
        spec.kind,
        bool(done),
        _masked_psnr(src, out, ~region),
        [o.name for o in before],
        [o.name for o in after],
    )


# ---------------------------------------------------------------------------------------------- the prompt set
@dataclass(frozen=True)
class GenEvalPrompt:
    """One prompt of the GenEval-style set, with the scene the renderer draws for it (a perfect answer)."""

    category: str  # single_object | two_object | counting | colors | position | color_attr
    prompt: str
    scene: Scene


def geneval_prompts(size: int = 64, per_category: int = DEFAULT_PER_CATEGORY, seed: int = 0) -> list[GenEvalPrompt]:
    """A deterministic GenEval-style prompt set in the dataset's caption grammar, with reference scenes.

    Categories (GenEval's): ``single_object`` ("a red circle"), ``colors`` ("a photo of a green star"),
    ``two_object`` / ``color_attr`` ("two objects on a white background: a red circle and a blue square"),
    ``counting`` ("three objects on a white background: ..."), ``position`` ("a blue square left of a red circle").

    Every prompt names a *held-out* object set (:func:`muse_hf.data.shapes.held_out_contents`): the training data
    never draws these sets as plain scenes and never uses these prompts as captions, whatever ``seed`` is. The scenes
    come from :func:`muse_hf.data.shapes.sample_plain_scene`, the generator of the training set's plain share, on
    the held-out side of the split.
    """
    rng = np.random.default_rng([seed, size])
    out: list[GenEvalPrompt] = []
    for i in range(per_category):
        for category in PLAIN_CATEGORIES:
            n = 2 + i % 2 if category == "counting" else None
            _, text, scene = sample_plain_scene(rng, size, category, held_out=True, num_objects=n)
            out.append(GenEvalPrompt(category, text, scene))
    return out


def render_prompt(item: GenEvalPrompt) -> PIL.Image.Image:
    """The renderer's drawing of a prompt's reference scene (what a perfect model would produce)."""
    image, _ = render_scene(item.scene)
    return PIL.Image.fromarray(image)


# ---------------------------------------------------------------------------------------------- pipeline evaluation
def _summary(scores: Sequence[GenerationScore], categories: Sequence[str]) -> dict[str, Any]:
    per_cat: dict[str, list[bool]] = {}
    for s, c in zip(scores, categories):
        per_cat.setdefault(c, []).append(s.correct)
    cat_acc = {c: float(np.mean(v)) for c, v in per_cat.items()}

    def rate(key: str) -> float | None:
        vals = [getattr(s, key) for s in scores if getattr(s, key) is not None]
        return float(np.mean(vals)) if vals else None

    return {
        "overall": float(np.mean(list(cat_acc.values()))),
        "categories": cat_acc,
        "colour": rate("colour"),
        "count": rate("count"),
        "position": rate("position"),
        "num_images": len(scores),
    }


def evaluate_generation(
    generate: Callable[[list[str]], Sequence[Any]],
    prompts: Sequence[GenEvalPrompt] | None = None,
    batch_size: int = 8,
) -> dict[str, Any]:
    """GenEval-style accuracy of a generator.

    Args:
        generate: maps a list of prompts to as many images (called on consecutive chunks, in order); for a
            pipeline, :func:`muse_hf.evaluation.geneval_pipeline.evaluate_pipeline` gives every image its own seed.
        prompts: the prompt set (default :func:`geneval_prompts` at 64 px, 16 per category).
        batch_size: prompts per ``generate`` call.

    Returns:
        ``{"overall", "categories": {...}, "colour", "count", "position", "num_images", "scores": [...]}`` where
        ``overall`` is the mean of the per-category accuracies (GenEval's aggregate).
    """
    items = list(prompts) if prompts is not None else geneval_prompts()
    scores: list[GenerationScore] = []
    for i in range(0, len(items), batch_size):
        chunk = items[i : i + batch_size]
        images = generate([it.prompt for it in chunk])
        if len(images) != len(chunk):
            raise ValueError(f"generate returned {len(images)} images for {len(chunk)} prompts.")
        scores += [score_generation(img, it.prompt) for img, it in zip(images, chunk)]
    result = _summary(scores, [it.category for it in items])
    result["scores"] = [s.as_dict() for s in scores]
    return result


def evaluate_edits(
    edit: Callable[[list[PIL.Image.Image], list[str]], Sequence[Any]],
    num_edits: int = 24,
    size: int = 64,
    seed: int = 0,
    batch_size: int = 8,
) -> dict[str, Any]:
    """Edit success and background PSNR on detector-friendly scenes of the dataset's distribution.

    Sources are drawn by :func:`muse_hf.data.shapes.sample_scene` without textures, occlusion or same-colour
    neighbours (so the detector is exact on them), instructions by :func:`muse_hf.data.shapes.make_edit`.

    Args:
        edit: maps (source images, instructions) to edited images, e.g.
            ``lambda ims, ins: pipe(ins, image=ims, generator=...).images`` (called on consecutive chunks, in order).
        num_edits: number of edits.
        size: image side.
        seed: scene seed.
        batch_size: edits per ``edit`` call.

    Returns:
        ``{"success", "per_kind": {...}, "background_psnr", "num_edits", "scores": [...]}``.
    """
    sources, instructions = edit_set(num_edits, size, seed)
    scores: list[EditScore] = []
    for i in range(0, num_edits, batch_size):
        outs = edit(sources[i : i + batch_size], instructions[i : i + batch_size])
        scores += [
            score_edit(s, o, t) for s, o, t in zip(sources[i : i + batch_size], outs, instructions[i : i + batch_size])
        ]
    per_kind: dict[str, list[bool]] = {}
    for s in scores:
        per_kind.setdefault(s.kind, []).append(s.change_done)
    psnrs = [s.background_psnr for s in scores if not math.isnan(s.background_psnr)]
    return {
        "success": float(np.mean([s.change_done for s in scores])),
        "per_kind": {k: float(np.mean(v)) for k, v in per_kind.items()},
        "background_psnr": float(np.mean(psnrs)) if psnrs else float("nan"),
        "num_edits": len(scores),
        "scores": [s.as_dict() for s in scores],
    }


def edit_set(
    num_edits: int = 24, size: int = 64, seed: int = 0, with_targets: bool = False
) -> tuple[list[PIL.Image.Image], list[str]] | tuple[list[PIL.Image.Image], list[str], list[PIL.Image.Image]]:
    """Deterministic (source image, instruction[, target image]) edits on detector-friendly scenes."""
    opts = SceneOptions(max_objects=3, texture_prob=0.0, same_colour_prob=0.0, occlusion_prob=0.0)
    sources, instructions, targets = [], [], []
    for i in range(num_edits):
        rng = np.random.default_rng([seed, 7, i])
        scene = sample_scene(rng, size, opts)
        _, instruction, target = make_edit(scene, rng, opts)
        sources.append(PIL.Image.fromarray(render_scene(scene)[0]))
        targets.append(PIL.Image.fromarray(render_scene(target)[0]))
        instructions.append(instruction)
    return (sources, instructions, targets) if with_targets else (sources, instructions)


def __getattr__(name: str) -> Any:
    return moved_attribute(
        __name__, name, {"evaluate_pipeline": "muse_hf.evaluation.geneval_pipeline:evaluate_pipeline"}
    )
