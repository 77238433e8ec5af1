"""Procedural objects: categories built from primitives, described as plain data.

An `ObjectSpec` is pure Python (no bpy): the renderer's worker turns it into meshes.
Each category has a view-dependent part (a mug's handle, a car's headlights, a
house's door, a bottle's front label ...) so that views really differ. Colours come
from one palette shared by every category, so no category is recognisable by colour
alone; proportions and optional parts vary within a category. Captions are built from
the sampled parameters. Everything is deterministic for (seed, category, index).

Conventions: +Z is up, the object's front faces -Y (azimuth 0 looks at the front).
Primitives are unit shapes scaled by `scale`: box = cube of half-size 1; cylinder =
radius 1, half-height 1 along Z (`top_ratio` < 1 makes a cone/frustum, `segments` 3/4
makes prisms/pyramids); sphere = radius 1; torus = major radius 1 in the XY plane with
tube radius `minor_ratio`.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import asdict, dataclass, field
from typing import Callable

from ..core.schema import PROCEDURAL_CATEGORIES

Vec3 = tuple[float, float, float]

# One palette for every category (linear RGB). Names are what captions say.
PALETTE: dict[str, Vec3] = {
    "red": (0.70, 0.06, 0.05),
    "orange": (0.85, 0.30, 0.03),
    "yellow": (0.85, 0.70, 0.05),
    "green": (0.08, 0.45, 0.10),
    "teal": (0.03, 0.40, 0.40),
    "blue": (0.05, 0.15, 0.70),
    "purple": (0.35, 0.08, 0.55),
    "pink": (0.90, 0.35, 0.50),
    "brown": (0.30, 0.13, 0.05),
    "white": (0.85, 0.85, 0.85),
    "grey": (0.30, 0.30, 0.30),
    "black": (0.03, 0.03, 0.03),
}
FINISHES: dict[str, tuple[float, float]] = {  # name -> (roughness, metallic)
    "matte": (0.9, 0.0),
    "glossy": (0.2, 0.0),
    "metallic": (0.3, 1.0),
}
FINISH_WORDS = {"matte": "", "glossy": "shiny", "metallic": "metal"}


@dataclass(frozen=True)
class Part:
    primitive: str  # box | cylinder | sphere | torus
    label: int  # 1-based index into ObjectSpec.part_names; 0 is background
    location: Vec3
    scale: Vec3
    rotation: Vec3 = (0.0, 0.0, 0.0)  # XYZ Euler, radians
    color: str = "grey"
    finish: str = "matte"
    segments: int = 24
    top_ratio: float = 1.0
    minor_ratio: float = 0.25


@dataclass(frozen=True)
class ObjectSpec:
    object_id: str
    category: str
    caption: str
    part_names: tuple[str, ...]
    parts: tuple[Part, ...]
    attributes: dict = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ObjectSpec":
        data = json.loads(text)
        parts = tuple(
            Part(**{k: tuple(v) if isinstance(v, list) else v for k, v in p.items()}) for p in data["parts"]
        )
        return cls(
            object_id=data["object_id"], category=data["category"], caption=data["caption"],
            part_names=tuple(data["part_names"]), parts=parts, attributes=data["attributes"],
        )


class _Builder:
    """Collects parts with labels from a category's part-name list."""

    def __init__(self, part_names: tuple[str, ...], rng: random.Random):
        self.part_names = part_names
        self.rng = rng
        self.parts: list[Part] = []

    def add(self, name: str, primitive: str, location: Vec3, scale: Vec3, color: str, **kw) -> None:
        label = self.part_names.index(name) + 1
        self.parts.append(Part(primitive, label, tuple(map(float, location)), tuple(map(float, scale)),
                               color=color, **kw))

    def colour(self, *exclude: str) -> str:
        return self.rng.choice([c for c in PALETTE if c not in exclude])

    def finish(self) -> str:
        return self.rng.choices(list(FINISHES), weights=[0.6, 0.3, 0.1])[0]


def _size_word(value: float, low: float, high: float, small: str, large: str) -> str:
    """Adjective for a sampled proportion: the lower/upper third of its range get a word."""
    t = (value - low) / (high - low)
    return small if t < 1 / 3 else large if t > 2 / 3 else ""


def _caption(*words: str) -> str:
    text = " ".join(w for w in words if w)
    return ("an " if text[0] in "aeiou" else "a ") + text


def _mug(b: _Builder) -> tuple[str, dict]:
    r, h = b.rng.uniform(0.25, 0.45), b.rng.uniform(0.35, 0.9)
    body, handle = b.colour(), b.colour()
    fin = b.finish()
    b.add("body", "cylinder", (0, 0, h / 2), (r, r, h / 2), body, finish=fin)
    b.add("body", "cylinder", (0, 0, h - 0.01), (r * 0.85, r * 0.85, 0.012), "black")  # the dark opening
    big = b.rng.random() < 0.5
    hr = h * (0.32 if big else 0.2)
    b.add("handle", "torus", (r + hr * 0.6, 0, h / 2), (hr, hr, hr), handle, rotation=(math.pi / 2, 0, 0),
          minor_ratio=0.22)
    shape = _size_word(h / r, 0.8, 3.6, "wide", "tall")
    return _caption(shape, body, FINISH_WORDS[fin], "mug with a", "big" if big else "small", handle, "handle"), \
        {"height": h, "radius": r, "big_handle": big}


def _chair(b: _Builder) -> tuple[str, dict]:
    w, d, seat_h = b.rng.uniform(0.4, 0.6), b.rng.uniform(0.4, 0.6), b.rng.uniform(0.35, 0.55)
    back_h = b.rng.uniform(0.3, 0.8)
    c, leg = b.colour(), b.colour()
    arms = b.rng.random() < 0.5
    b.add("seat", "box", (0, 0, seat_h), (w / 2, d / 2, 0.03), c)
    for sx in (-1, 1):
        for sy in (-1, 1):
            b.add("leg", "cylinder", (sx * (w / 2 - 0.04), sy * (d / 2 - 0.04), seat_h / 2), (0.025, 0.025, seat_h / 2),
                  leg, segments=8)
    b.add("back", "box", (0, d / 2 - 0.02, seat_h + back_h / 2), (w / 2, 0.025, back_h / 2), c)
    if arms:
        for sx in (-1, 1):
            b.add("armrest", "box", (sx * w / 2, 0, seat_h + 0.18), (0.025, d / 2, 0.02), leg)
            b.add("armrest", "box", (sx * w / 2, -d / 2 + 0.03, seat_h + 0.09), (0.02, 0.02, 0.09), leg)
    tall = _size_word(back_h, 0.3, 0.8, "low", "tall")
    return _caption(tall, c, "chair with", leg, "legs", "and armrests" if arms else ""), \
        {"back_height": back_h, "armrests": arms}


def _car(b: _Builder) -> tuple[str, dict]:
    length, width, height = b.rng.uniform(0.9, 1.4), b.rng.uniform(0.45, 0.6), b.rng.uniform(0.18, 0.3)
    body, roof = b.colour(), b.colour()
    fin = b.finish()
    wheel_r = b.rng.uniform(0.09, 0.14)
    z0 = wheel_r
    b.add("body", "box", (0, 0, z0 + height / 2), (width / 2, length / 2, height / 2), body, finish=fin)
    cabin_len = length * b.rng.uniform(0.35, 0.55)
    b.add("cabin", "box", (0, length / 2 - cabin_len / 2 - 0.08, z0 + height + 0.09),
          (width / 2 - 0.03, cabin_len / 2, 0.09), roof)
    for sx in (-1, 1):
        for sy in (-1, 1):
            b.add("wheel", "cylinder", (sx * width / 2, sy * length * 0.32, wheel_r), (wheel_r, wheel_r, 0.04), "black",
                  rotation=(0, math.pi / 2, 0), segments=16)
        b.add("headlight", "sphere", (sx * width * 0.32, -length / 2, z0 + height * 0.6), (0.05, 0.03, 0.035), "yellow",
              segments=12)
    size = _size_word(length, 0.9, 1.4, "compact", "long")
    return _caption(size, body, FINISH_WORDS[fin], "car with a", roof, "roof"), {"length": length}


def _house(b: _Builder) -> tuple[str, dict]:
    w, d, h = b.rng.uniform(0.6, 1.0), b.rng.uniform(0.5, 0.8), b.rng.uniform(0.4, 0.8)
    wall, roof, door = b.colour(), b.colour(), b.colour()
    b.add("wall", "box", (0, 0, h / 2), (w / 2, d / 2, h / 2), wall)
    roof_h = b.rng.uniform(0.2, 0.4)
    # A triangular prism along X: a 3-sided cylinder (apex at local +Y) turned so its
    # axis runs along X and its apex points up.
    apex = roof_h / 1.5
    b.add("roof", "cylinder", (0, 0, h + apex / 2), ((d / 2 + 0.05) / 0.866, apex, w / 2 + 0.04), roof,
          rotation=(math.pi / 2, 0, math.pi / 2), segments=3)
    b.add("door", "box", (b.rng.uniform(-w / 4, w / 4), -d / 2 - 0.01, 0.14), (0.07, 0.015, 0.14), door)
    for sx in (-1, 1):
        b.add("window", "box", (sx * w * 0.3, -d / 2 - 0.01, h * 0.65), (0.06, 0.012, 0.06), "white")
    chimney = b.rng.random() < 0.5
    if chimney:
        b.add("chimney", "box", (w * 0.3, d * 0.15, h + roof_h * 0.6), (0.05, 0.05, roof_h * 0.4), "brown")
    doors = f"roof, a {door} door and a chimney" if chimney else f"roof and a {door} door"
    return _caption(wall, "house with a", roof, doors), \
        {"chimney": chimney}


def _lamp(b: _Builder) -> tuple[str, dict]:
    pole_h, arm = b.rng.uniform(0.5, 1.0), b.rng.uniform(0.25, 0.5)
    metal, shade = b.colour(), b.colour()
    b.add("base", "cylinder", (0, 0, 0.03), (0.18, 0.18, 0.03), metal, finish="metallic")
    b.add("pole", "cylinder", (0, 0, pole_h / 2), (0.02, 0.02, pole_h / 2), metal, finish="metallic", segments=8)
    b.add("arm", "box", (arm / 2, 0, pole_h), (arm / 2, 0.018, 0.018), metal, finish="metallic")
    sr = b.rng.uniform(0.1, 0.2)
    b.add("shade", "cylinder", (arm, 0, pole_h - sr * 0.5), (sr, sr, sr * 0.6), shade, top_ratio=0.35)
    tall = _size_word(pole_h, 0.5, 1.0, "short", "tall")
    return _caption(tall, metal, "desk lamp with a", shade, "shade"), {"pole_height": pole_h}


def _bottle(b: _Builder) -> tuple[str, dict]:
    r, h = b.rng.uniform(0.15, 0.3), b.rng.uniform(0.5, 1.0)
    glass, label, cap = b.colour(), b.colour(), b.colour()
    fin = b.rng.choice(["glossy", "matte"])
    b.add("body", "cylinder", (0, 0, h / 2), (r, r, h / 2), glass, finish=fin)
    b.add("body", "cylinder", (0, 0, h + 0.08), (r, r, 0.08), glass, finish=fin, top_ratio=0.35)
    nr = r * 0.35
    b.add("neck", "cylinder", (0, 0, h + 0.22), (nr, nr, 0.07), glass, finish=fin, segments=12)
    b.add("cap", "cylinder", (0, 0, h + 0.31), (nr * 1.15, nr * 1.15, 0.025), cap, segments=12)
    # The label is a patch on the front only: it is what makes front and back views differ.
    b.add("label", "box", (0, -r, h * 0.45), (r * 0.6, 0.02, h * 0.2), label)
    shape = _size_word(h / r, 1.7, 6.7, "squat", "slender")
    return _caption(shape, glass, FINISH_WORDS[fin], "bottle with a", label, "label"), {"height": h}


def _teapot(b: _Builder) -> tuple[str, dict]:
    r, squash = b.rng.uniform(0.3, 0.45), b.rng.uniform(0.6, 0.95)
    body, lid = b.colour(), b.colour()
    fin = b.finish()
    b.add("body", "sphere", (0, 0, r * squash), (r, r, r * squash), body, finish=fin)
    b.add("spout", "cylinder", (-r * 1.05, 0, r * squash * 1.05), (0.05, 0.05, r * 0.45), body, finish=fin,
          rotation=(0, -0.8, 0), top_ratio=0.5, segments=12)
    b.add("handle", "torus", (r * 1.0, 0, r * squash), (r * 0.4, r * 0.4, r * 0.4), body, finish=fin,
          rotation=(math.pi / 2, 0, 0), minor_ratio=0.18)
    b.add("lid", "cylinder", (0, 0, 2 * r * squash - 0.01), (r * 0.45, r * 0.45, 0.03), lid)
    b.add("lid", "sphere", (0, 0, 2 * r * squash + 0.04), (0.04, 0.04, 0.04), lid, segments=10)
    shape = _size_word(squash, 0.6, 0.95, "flat", "round")
    return _caption(shape, body, FINISH_WORDS[fin], "teapot with a", lid, "lid"), {"squash": squash}


def _sofa(b: _Builder) -> tuple[str, dict]:
    length, depth = b.rng.uniform(0.8, 1.4), b.rng.uniform(0.4, 0.6)
    seat, back = b.rng.uniform(0.2, 0.35), b.rng.uniform(0.2, 0.45)
    c, cushion = b.colour(), b.colour()
    n = b.rng.choice([2, 3])
    b.add("base", "box", (0, 0, seat / 2), (length / 2, depth / 2, seat / 2), c)
    b.add("back", "box", (0, depth / 2 - 0.06, seat + back / 2), (length / 2, 0.06, back / 2), c)
    for sx in (-1, 1):
        b.add("armrest", "box", (sx * (length / 2 - 0.05), 0, seat + 0.06), (0.06, depth / 2, 0.06 + seat / 4), c)
    cw = (length - 0.2) / n
    for i in range(n):
        b.add("cushion", "box", (-length / 2 + 0.1 + cw * (i + 0.5), -0.03, seat + 0.035),
              (cw / 2 - 0.01, depth / 2 - 0.1, 0.04), cushion)
    size = _size_word(length, 0.8, 1.4, "small", "long")
    return _caption(size, c, "sofa with", "two" if n == 2 else "three", cushion, "cushions"), {"cushions": n}


def _television(b: _Builder) -> tuple[str, dict]:
    w, h = b.rng.uniform(0.8, 1.2), b.rng.uniform(0.45, 0.7)
    frame = b.colour()
    on = b.rng.random() < 0.5
    screen = b.colour("black") if on else "black"
    legs = b.rng.random() < 0.5
    z = 0.25
    b.add("frame", "box", (0, 0, z + h / 2), (w / 2, 0.04, h / 2), frame)
    # The screen faces the front only; the back shows a box-shaped housing instead.
    b.add("screen", "box", (0, -0.045, z + h / 2), (w / 2 - 0.04, 0.01, h / 2 - 0.04), screen, finish="glossy")
    b.add("frame", "box", (0, 0.08, z + h / 2), (w / 3, 0.05, h / 3), frame)
    if legs:
        for sx in (-1, 1):
            b.add("stand", "box", (sx * w * 0.35, 0, z / 2), (0.02, 0.08, z / 2), "grey", finish="metallic")
    else:
        b.add("stand", "cylinder", (0, 0, z / 2), (0.03, 0.03, z / 2), "grey", finish="metallic", segments=8)
        b.add("stand", "box", (0, 0, 0.01), (0.18, 0.12, 0.01), "grey", finish="metallic")
    size = _size_word(w, 0.8, 1.2, "small", "wide")
    return _caption(size, frame, "television", f"showing a {screen} screen" if on else "switched off",
                    "on two legs" if legs else "on a stand"), {"on": on, "legs": legs}


def _bookshelf(b: _Builder) -> tuple[str, dict]:
    w, h, d = b.rng.uniform(0.5, 0.9), b.rng.uniform(0.6, 1.2), b.rng.uniform(0.25, 0.35)
    wood = b.colour()
    n = b.rng.choice([2, 3, 4])
    b.add("frame", "box", (0, d / 2, h / 2), (w / 2, 0.015, h / 2), wood)  # the back panel
    for sx in (-1, 1):
        b.add("frame", "box", (sx * w / 2, 0, h / 2), (0.02, d / 2, h / 2), wood)
    gap = h / n
    for i in range(n + 1):
        b.add("shelf", "box", (0, 0, min(i * gap, h - 0.015) + 0.015), (w / 2, d / 2, 0.015), wood)
    for i in range(n):  # books stand on each shelf, seen from the front only
        x = -w / 2 + 0.05
        while x < w / 2 - 0.08:
            bw, bh = b.rng.uniform(0.04, 0.09), gap * b.rng.uniform(0.5, 0.85)
            b.add("book", "box", (x + bw / 2, -0.02, i * gap + 0.03 + bh / 2), (bw / 2, d / 2 - 0.05, bh / 2),
                  b.colour())
            x += bw + 0.005
    tall = _size_word(h, 0.6, 1.2, "low", "tall")
    return (_caption(tall, wood, "bookshelf with", {2: "two", 3: "three", 4: "four"}[n], "shelves of books"),
            {"shelves": n})


def _boat(b: _Builder) -> tuple[str, dict]:
    length, width = b.rng.uniform(0.9, 1.4), b.rng.uniform(0.3, 0.45)
    hull, sail = b.colour(), b.colour()
    b.add("hull", "box", (0, length * 0.1, 0.1), (width / 2, length * 0.4, 0.1), hull)
    # The bow: a triangular prism (apex at local +Y) turned to point to the front (-Y).
    bow = length * 0.25
    b.add("hull", "cylinder", (0, -length * 0.3 - bow / 2, 0.1), (width / 2 / 0.866, bow, 0.1), hull,
          rotation=(0, 0, math.pi), segments=3)
    sailing = b.rng.random() < 0.5
    if sailing:
        mast_h = b.rng.uniform(0.6, 1.0)
        b.add("mast", "cylinder", (0, 0, 0.2 + mast_h / 2), (0.015, 0.015, mast_h / 2), "brown", segments=8)
        b.add("sail", "box", (0, length * 0.12, 0.25 + mast_h * 0.45), (0.008, length * 0.11, mast_h * 0.4), sail)
    else:
        b.add("cabin", "box", (0, length * 0.25, 0.3), (width / 2 - 0.04, length * 0.15, 0.1), sail)
    return _caption(hull, "boat with a", sail, "sail" if sailing else "cabin"), {"sailing": sailing}


def _camera(b: _Builder) -> tuple[str, dict]:
    w, h, d = b.rng.uniform(0.5, 0.8), b.rng.uniform(0.3, 0.45), b.rng.uniform(0.15, 0.25)
    body, lens = b.colour(), b.colour()
    fin = b.finish()
    b.add("body", "box", (0, 0, h / 2), (w / 2, d / 2, h / 2), body, finish=fin)
    lr, ll = b.rng.uniform(0.1, 0.16), b.rng.uniform(0.08, 0.25)
    b.add("lens", "cylinder", (0, -d / 2 - ll / 2, h / 2), (lr, lr, ll / 2), lens, rotation=(math.pi / 2, 0, 0))
    b.add("lens", "cylinder", (0, -d / 2 - ll - 0.005, h / 2), (lr * 0.75, lr * 0.75, 0.006), "black",
          rotation=(math.pi / 2, 0, 0), finish="glossy")
    b.add("flash", "box", (-w * 0.3, -d / 2 - 0.005, h * 0.8), (0.05, 0.01, 0.03), "white")
    b.add("button", "cylinder", (w * 0.3, 0, h + 0.02), (0.03, 0.03, 0.02), "red", segments=10)
    long = _size_word(ll, 0.08, 0.25, "compact", "zoom")
    return _caption(body, FINISH_WORDS[fin], "camera with a", long, lens, "lens"), {"lens_length": ll}


@dataclass(frozen=True)
class Category:
    name: str
    part_names: tuple[str, ...]
    build: Callable[[_Builder], tuple[str, dict]]
    view_dependent_part: str  # what makes views of this category differ


CATEGORIES: dict[str, Category] = {c.name: c for c in [
    Category("mug", ("body", "handle"), _mug, "handle"),
    Category("chair", ("seat", "leg", "back", "armrest"), _chair, "back"),
    Category("car", ("body", "cabin", "wheel", "headlight"), _car, "headlight"),
    Category("house", ("wall", "roof", "door", "window", "chimney"), _house, "door"),
    Category("lamp", ("base", "pole", "arm", "shade"), _lamp, "arm"),
    Category("bottle", ("body", "neck", "cap", "label"), _bottle, "label"),
    Category("teapot", ("body", "spout", "handle", "lid"), _teapot, "spout"),
    Category("sofa", ("base", "back", "armrest", "cushion"), _sofa, "back"),
    Category("television", ("frame", "screen", "stand"), _television, "screen"),
    Category("bookshelf", ("frame", "shelf", "book"), _bookshelf, "book"),
    Category("boat", ("hull", "mast", "sail", "cabin"), _boat, "hull"),
    Category("camera", ("body", "lens", "flash", "button"), _camera, "lens"),
]}
if tuple(CATEGORIES) != PROCEDURAL_CATEGORIES:  # a category added here must be added to the schema's list
    raise ImportError(f"objects.CATEGORIES {tuple(CATEGORIES)} differ from schema.PROCEDURAL_CATEGORIES "
                      f"{PROCEDURAL_CATEGORIES}: add the new category to both")


def make_object(category: str, index: int, seed: int) -> ObjectSpec:
    """The `index`-th object of `category` for `seed` (same inputs, same object)."""
    if category not in CATEGORIES:
        raise KeyError(f"unknown category {category!r}; expected one of {', '.join(CATEGORIES)}")
    cat = CATEGORIES[category]
    builder = _Builder(cat.part_names, random.Random(f"mvclip/{seed}/{category}/{index}"))
    caption, attributes = cat.build(builder)
    return ObjectSpec(f"{category}_{index:04d}", category, " ".join(caption.split()), cat.part_names,
                      tuple(builder.parts), attributes)


def make_objects(categories: list[str] | None, per_category: int, seed: int) -> list[ObjectSpec]:
    """`per_category` objects of each category (all registered ones if `categories` is empty)."""
    names = categories or list(CATEGORIES)
    return [make_object(name, i, seed) for name in names for i in range(per_category)]
