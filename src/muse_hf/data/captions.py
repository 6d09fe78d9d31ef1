"""Language of the synthetic scenes: class labels, zero-shot prompts, captions and editing instructions.

:data:`LABEL_NAMES` / :func:`label_of` name the class of a scene's main object and :func:`zero_shot_prompts` templates
them for zero-shot classification; :func:`make_caption` describes a :class:`~muse_hf.data.scenes.Scene` (every object
and its relation to the main one), and :func:`make_edit` draws one feasible edit (recolour / move / add / remove one
object), returning its instruction and the edited scene specification.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from muse_hf.data.scenes import (
    COLOURS,
    SHAPES,
    Scene,
    SceneObject,
    SceneOptions,
    article,
    is_free,
    new_object,
    pick,
    place_object,
)

__all__ = [
    "LABEL_NAMES",
    "NUMBER_WORDS",
    "ZERO_SHOT_TEMPLATES",
    "label_of",
    "make_caption",
    "make_edit",
    "non_geneval_caption",
    "relation",
    "zero_shot_prompts",
]

#: Class names, ``label = shape_index * len(COLOURS) + colour_index``.
LABEL_NAMES: list[str] = [f"{c} {s}" for s in SHAPES for c in COLOURS]
#: CLIP-style prompt templates for zero-shot classification (ensemble: average the text embeddings per label).
ZERO_SHOT_TEMPLATES: tuple[str, ...] = (
    "a photo of a {label}.",
    "a {label}.",
    "a picture of a {label}.",
    "an image with a {label}.",
)


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


# ----------------------------------------------------------------------------------------------------------- captions
def relation(a: SceneObject, b: SceneObject) -> str:
    """Where ``a`` is relative to ``b``: "left of", "right of", "above", "below" (image coordinates)."""
    dx, dy = a.cx - b.cx, a.cy - b.cy
    if abs(dx) >= abs(dy):
        return "left of" if dx < 0 else "right of"
    return "above" if dy < 0 else "below"


#: Object counts in words, as captions and GenEval-style prompts spell them.
NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four"}


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
        t = pick(rng, templates)
        return t.format(a0=main_obj.phrase(), abg=article(bg), bg=bg)
    choice = int(rng.integers(4))
    rest = objs[1:]
    if choice == 0:  # "a red circle with a blue square left of it, and ..."
        parts = [f"{o.phrase()} {relation(o, main_obj)} it" for o in rest]
        return f"{main_obj.phrase()} with " + _join(parts)
    if choice == 1:  # "a blue square left of a red circle, a green star above the red circle"
        first = f"{rest[0].phrase()} {relation(rest[0], main_obj)} {main_obj.phrase()}"
        more = [f"{o.phrase()} {relation(o, main_obj)} the {main_obj.shape}" for o in rest[1:]]
        return ", ".join([first, *more])
    if choice == 2:  # "three objects: a red circle, a blue square and a green star"
        return f"{NUMBER_WORDS[len(objs)]} objects on {article(bg)} {bg} background: " + _join(
            [o.phrase() for o in objs]
        )
    # "a red circle right of a blue square; a green star is below the circle"
    head = f"{main_obj.phrase()} {relation(main_obj, rest[0])} {rest[0].phrase()}"
    more = [f"{o.phrase()} is {relation(o, main_obj)} the {main_obj.shape}" for o in rest[1:]]
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
            i = pick(rng, unique)
            o = objs[i]
            colours = [c for c in COLOURS if c != o.colour and f"{c} {o.shape}" not in names]
            if not colours:
                continue
            new = pick(rng, colours)
            objs[i] = replace(o, colour=new)
            verb = pick(rng, ("make the {n} {c}", "change the colour of the {n} to {c}", "paint the {n} {c}"))
            return "recolour", verb.format(n=o.name, c=new), replace(scene, objects=tuple(objs))
        if op == "move" and unique:
            i = pick(rng, unique)
            o = objs[i]
            others = objs[:i] + objs[i + 1 :]
            for direction in rng.permutation(4):
                d = float(rng.uniform(0.2, 0.35)) * size
                dx, dy = [(-d, 0.0), (d, 0.0), (0.0, -d), (0.0, d)][int(direction)]
                cx, cy = o.cx + dx, o.cy + dy
                lo, hi = o.r + 1.0, size - o.r - 1.0
                if lo <= cx <= hi and lo <= cy <= hi and is_free(cx, cy, o.r, others, margin=1.5):
                    objs[i] = replace(o, cx=cx, cy=cy)
                    where = ("to the left", "to the right", "up", "down")[int(direction)]
                    return "move", f"move the {o.name} {where}", replace(scene, objects=tuple(objs))
            continue
        if op == "add" and len(objs) < 4:
            smaller = ("small",) if objs[0].size == "medium" else ("small", "medium")
            obj = new_object(rng, size, opts, smaller)
            if obj.name in names:
                continue
            pos = place_object(rng, size, obj.r, objs)
            if pos is None:
                continue
            obj = replace(obj, cx=pos[0], cy=pos[1])
            instr = f"add {obj.phrase()} {relation(obj, objs[0])} the {objs[0].name}"
            return "add", instr, replace(scene, objects=(*objs, obj))
        if op == "remove" and len(objs) >= 2 and unique:
            i = pick(rng, unique)
            o = objs.pop(i)
            verb = pick(rng, ("remove the {n}", "delete the {n}", "take away the {n}"))
            return "remove", verb.format(n=o.name), replace(scene, objects=tuple(objs))
    # always feasible fallback: recolour the main object's colour to one not yet used by its shape
    o = objs[0]
    new = next(c for c in COLOURS if c != o.colour)
    objs[0] = replace(o, colour=new)
    return "recolour", f"make the {o.name} {new}", replace(scene, objects=tuple(objs))


def non_geneval_caption(scene: Scene) -> str:
    """A caption of ``scene`` that is never a GenEval-style prompt (used when the drawn one is a held-out prompt)."""
    objs = scene.objects
    if len(objs) == 1:
        return f"there is {objs[0].phrase()} in the picture"
    return f"{objs[0].phrase()} with " + _join([f"{o.phrase()} {relation(o, objs[0])} it" for o in objs[1:]])
