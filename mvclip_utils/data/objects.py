"""Procedural objects: categories built from primitives, described as plain data.

An `ObjectSpec` is pure Python (no bpy): the renderer's worker turns it into meshes.
Each category has a view-dependent part (a mug's handle, a car's headlights, a
house's door, a bottle's front label ...) so that views really differ. Colours come
from one palette shared by every category, so no category is recognisable by colour
alone; proportions and optional parts vary within a category. Captions are built from
the sampled parameters. Everything is deterministic for (seed, category, index).
`view_caption` says what one view of an object shows: its caption, the viewpoint and
where its view-dependent part appears ("..., seen from the back, its handle on the left").

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

import numpy as np

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

    def tube(self, name: str, start: Vec3, end: Vec3, radius: float, color: str, **kw) -> None:
        """A cylinder from `start` to `end` (a bicycle's frame, a snowman's arm)."""
        dx, dy, dz = (e - s for s, e in zip(start, end))
        length = math.sqrt(dx * dx + dy * dy + dz * dz)
        # Blender's XYZ Euler (Rz @ Ry @ Rx): tilt Z about X, then turn it about Z onto the direction.
        tilt, turn = math.acos(dz / length), math.atan2(dx, -dy)
        middle = tuple((s + e) / 2 for s, e in zip(start, end))
        self.add(name, "cylinder", middle, (radius, radius, length / 2), color, rotation=(tilt, 0.0, turn),
                 segments=8, **kw)


def _size_word(value: float, low: float, high: float, small: str, large: str) -> str:
    """Adjective for a sampled proportion: the lower/upper third of its range get a word."""
    t = (value - low) / (high - low)
    return small if t < 1 / 3 else large if t > 2 / 3 else ""


def _caption(*words: str) -> str:
    text = " ".join(w for w in words if w)
    return ("an " if text[0] in "aeiou" else "a ") + text


def _a(word: str) -> str:
    """`word` with its indefinite article ("an orange")."""
    return ("an " if word[0] in "aeiou" else "a ") + word


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


# ----------------------------------------------------------------------------- categories 13-30
# Each has its view-dependent part on one side of its vertical axis (front, back or +X), so that
# `view_caption` can say where it appears.


def _table(b: _Builder) -> tuple[str, dict]:
    w, d, h = b.rng.uniform(0.8, 1.4), b.rng.uniform(0.5, 0.8), b.rng.uniform(0.45, 0.8)
    wood, drawer = b.colour(), b.colour()
    fin = b.finish()
    oval = b.rng.random() < 0.5
    top_z = h - 0.03
    if oval:  # an oval top on one pedestal
        b.add("top", "cylinder", (0, 0, top_z), (w / 2, d / 2, 0.03), wood, finish=fin, segments=32)
        b.add("leg", "cylinder", (0, 0, top_z / 2), (0.05, 0.05, top_z / 2), wood, finish=fin, segments=12)
        b.add("leg", "cylinder", (0, 0, 0.02), (w * 0.2, d * 0.3, 0.02), wood, finish=fin)
    else:
        b.add("top", "box", (0, 0, top_z), (w / 2, d / 2, 0.03), wood, finish=fin)
        for sx in (-1, 1):
            for sy in (-1, 1):
                b.add("leg", "box", (sx * (w / 2 - 0.05), sy * (d / 2 - 0.05), top_z / 2), (0.03, 0.03, top_z / 2),
                      wood, finish=fin)
    # The drawer hangs under the top at the front only: it tells front from back.
    b.add("drawer", "box", (0, -d * 0.28, top_z - 0.09), (w * 0.2, d * 0.16, 0.06), drawer)
    b.add("drawer", "sphere", (0, -d * 0.44 - 0.015, top_z - 0.09), (0.025, 0.025, 0.025), "black", segments=10)
    tall = _size_word(h, 0.45, 0.8, "low", "tall")
    return _caption(tall, wood, FINISH_WORDS[fin], "oval" if oval else "", "table with", _a(drawer), "drawer"), \
        {"width": w, "height": h, "oval": oval}


def _bed(b: _Builder) -> tuple[str, dict]:
    length, width = b.rng.uniform(1.3, 1.9), b.rng.uniform(0.7, 1.2)
    frame_h, head_h = b.rng.uniform(0.15, 0.3), b.rng.uniform(0.25, 0.55)
    wood, blanket = b.colour(), b.colour()
    pillows = b.rng.choice([1, 2])
    footboard = b.rng.random() < 0.5
    top = frame_h + 0.14  # the mattress's top
    b.add("frame", "box", (0, 0, frame_h / 2), (width / 2, length / 2, frame_h / 2), wood)
    b.add("mattress", "box", (0, 0, frame_h + 0.07), (width / 2 - 0.03, length / 2 - 0.03, 0.07), "white")
    # The headboard stands at the back (+Y) only: it tells the head end from the foot end.
    b.add("headboard", "box", (0, length / 2, (top + head_h) / 2), (width / 2 + 0.03, 0.04, (top + head_h) / 2), wood)
    if footboard:
        b.add("frame", "box", (0, -length / 2, (top + 0.08) / 2), (width / 2 + 0.03, 0.04, (top + 0.08) / 2), wood)
    # The blanket wraps the foot end's 70% of the mattress; the pillows lie at the head end.
    b.add("blanket", "box", (0, -length * 0.15, top - 0.05), (width / 2 - 0.01, length * 0.35, 0.065), blanket)
    pillow_w = width / 2 - 0.08 if pillows == 1 else width / 4 - 0.04
    for i in range(pillows):
        x = 0.0 if pillows == 1 else (i - 0.5) * width / 2
        b.add("pillow", "sphere", (x, length / 2 - 0.2, top + 0.04), (pillow_w, 0.12, 0.06), "white", segments=16)
    pillow_words = "two pillows" if pillows == 2 else "a pillow"
    things = (f"{_a(blanket)} blanket, {pillow_words} and a footboard" if footboard
              else f"{_a(blanket)} blanket and {pillow_words}")
    return _caption(_size_word(width, 0.7, 1.2, "narrow", "wide"), wood, "bed with", things), \
        {"length": length, "width": width, "pillows": pillows, "footboard": footboard}


def _bicycle(b: _Builder) -> tuple[str, dict]:
    wheel_r, wheelbase = b.rng.uniform(0.2, 0.42), b.rng.uniform(0.9, 1.25)
    frame_h = wheel_r * b.rng.uniform(1.1, 1.8)
    frame, tyre = b.colour(), b.colour()
    basket = b.rng.random() < 0.5
    across_x = (0, math.pi / 2, 0)  # a cylinder's or torus's axis along X
    rear, front = (0, wheelbase / 2, wheel_r), (0, -wheelbase / 2, wheel_r)
    for hub in (rear, front):
        b.add("wheel", "torus", hub, (wheel_r, wheel_r, wheel_r), tyre, rotation=across_x, minor_ratio=0.12,
              segments=32)
        b.add("wheel", "box", hub, (0.01, wheel_r * 0.95, 0.01), "grey", finish="metallic")  # two spokes
        b.add("wheel", "box", hub, (0.01, 0.01, wheel_r * 0.95), "grey", finish="metallic")
    pedals = (0, wheelbase * 0.05, wheel_r * 0.85)
    seat = (0, wheelbase * 0.18, wheel_r + frame_h)
    head = (0, -wheelbase * 0.32, wheel_r + frame_h * 0.9)
    for start, end in ((rear, pedals), (rear, seat), (pedals, seat), (pedals, head), (seat, head), (head, front)):
        b.tube("frame", start, end, 0.022, frame)
    # The handlebar at the front tells front from back.
    bar = (0, -wheelbase * 0.36, wheel_r + frame_h + b.rng.uniform(0.06, 0.2))
    b.tube("handlebar", head, bar, 0.02, frame)
    b.add("handlebar", "cylinder", bar, (0.03, 0.03, 0.25), frame, rotation=across_x, segments=10)
    for sx in (-1, 1):  # the grips
        b.add("handlebar", "cylinder", (sx * 0.21, bar[1], bar[2]), (0.045, 0.045, 0.06), "black", rotation=across_x,
              segments=10)
    b.add("saddle", "box", (0, seat[1] + 0.03, seat[2] + 0.05), (0.06, 0.13, 0.03), "black")
    if basket:
        basket_z = max(bar[2] - 0.02, 2 * wheel_r + 0.1)  # clear of the front tyre
        b.add("basket", "box", (0, bar[1] - 0.14, basket_z), (0.12, 0.11, 0.09), b.colour())
    big = _size_word(wheel_r, 0.2, 0.42, "small", "big")
    return _caption(big, frame, "bicycle with", tyre, "wheels", "and a basket" if basket else ""), \
        {"wheel_radius": wheel_r, "wheelbase": wheelbase, "basket": basket}


def _airplane(b: _Builder) -> tuple[str, dict]:
    length, span, radius = b.rng.uniform(1.3, 1.9), b.rng.uniform(1.1, 1.8), b.rng.uniform(0.08, 0.13)
    sweep = b.rng.uniform(0.0, 0.5)
    body, tail = b.colour(), b.colour()
    fin = b.finish()
    propeller = b.rng.random() < 0.4
    z = 0.3
    to_front, to_back = (math.pi / 2, 0, 0), (-math.pi / 2, 0, 0)  # a cylinder's top end at -Y / +Y
    b.add("fuselage", "cylinder", (0, 0, z), (radius, radius, length * 0.35), body, finish=fin, rotation=to_front)
    b.add("fuselage", "cylinder", (0, -length * 0.425, z), (radius, radius, length * 0.075), body, finish=fin,
          rotation=to_front, top_ratio=0.35)
    b.add("fuselage", "cylinder", (0, length * 0.425, z), (radius, radius, length * 0.075), body, finish=fin,
          rotation=to_back, top_ratio=0.3)
    root_y, wing_z, chord = -length * 0.05, z - radius * 0.4, length * 0.12
    for sx in (-1, 1):  # each half wing turned back by the sweep angle
        b.add("wing", "box", (sx * span / 4 * math.cos(sweep), root_y + span / 4 * math.sin(sweep), wing_z),
              (span / 4, chord / 2, 0.018), body, finish=fin, rotation=(0, 0, sx * sweep))
    # The tail (fin and stabilisers) at the back tells front from back.
    fin_h = radius * 3
    b.add("tail", "box", (0, length * 0.42, z + radius * 0.3 + fin_h / 2), (0.015, 0.09, fin_h / 2), tail)
    b.add("tail", "box", (0, length * 0.44, z), (span * 0.16, 0.06, 0.012), tail)
    if propeller:
        nose = (0, -length / 2 - 0.02, z)
        b.add("engine", "sphere", nose, (0.04, 0.04, 0.04), "grey", finish="metallic", segments=10)
        turn = b.rng.uniform(0, math.pi / 2)
        for angle in (turn, turn + math.pi / 2):
            b.add("engine", "box", nose, (0.025, 0.008, radius * 2.5), "grey", finish="metallic",
                  rotation=(0, angle, 0))
    else:
        out = span * 0.17  # jet engines hang under the wings
        for sx in (-1, 1):
            b.add("engine", "cylinder", (sx * out * math.cos(sweep), root_y + out * math.sin(sweep), wing_z - 0.068),
                  (0.05, 0.05, 0.13), "grey", finish="metallic", rotation=to_front, segments=12)
    size = _size_word(length, 1.3, 1.9, "short", "long")
    return _caption(size, body, FINISH_WORDS[fin], "propeller" if propeller else "jet", "airplane with", _a(tail),
                    "tail"), {"length": length, "wingspan": span, "sweep": sweep, "propeller": propeller}


def _guitar(b: _Builder) -> tuple[str, dict]:
    lower, neck_len = b.rng.uniform(0.17, 0.4), b.rng.uniform(0.3, 1.0)
    upper = lower * b.rng.uniform(0.7, 0.85)
    depth = b.rng.uniform(0.04, 0.14)  # half the body's thickness
    body, guard = b.colour(), b.colour()
    fin = b.finish()
    pickguard = b.rng.random() < 0.5
    upper_z = lower * 1.7 + upper * 0.75
    b.add("body", "sphere", (0, 0, lower), (lower, depth, lower), body, finish=fin, segments=32)
    b.add("body", "sphere", (0, 0, upper_z), (upper, depth, upper), body, finish=fin, segments=32)
    neck_z = upper_z + upper - 0.05 + neck_len / 2
    b.add("neck", "box", (0, 0, neck_z), (0.035, 0.025, neck_len / 2), "brown")
    # The head tilts back (+Y) from the neck's end.
    b.add("head", "box", (0, 0.09 * math.sin(0.3), neck_z + neck_len / 2 + 0.09 * math.cos(0.3)), (0.06, 0.022, 0.1),
          "brown", rotation=(-0.3, 0, 0))
    # The sound hole on the front only tells front from back.
    hole_z = lower * 1.55
    b.add("soundhole", "cylinder", (0, -depth * 0.9, hole_z), (upper * 0.33, upper * 0.33, 0.012), "black",
          rotation=(math.pi / 2, 0, 0))
    if pickguard:
        b.add("pickguard", "box", (lower * 0.42, -depth * 0.9, lower * 0.85), (lower * 0.28, 0.008, lower * 0.3),
              guard)
    necked = _size_word(neck_len, 0.3, 1.0, "short-necked", "long-necked")
    return _caption(necked, body, FINISH_WORDS[fin], "guitar", f"with {_a(guard)} pickguard" if pickguard else ""), \
        {"body_size": lower, "neck_length": neck_len, "pickguard": pickguard}


_HOURS = ("twelve", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven")


def _clock(b: _Builder) -> tuple[str, dict]:
    radius, depth = b.rng.uniform(0.3, 0.45), b.rng.uniform(0.12, 0.3)
    case, face = b.colour(), b.colour("black")
    fin = b.finish()
    alarm = b.rng.random() < 0.5
    hour = b.rng.randrange(12)
    facing_front = (math.pi / 2, 0, 0)  # a disc in the XZ plane
    if alarm:  # a round case on two feet with two bells on top
        face_z = radius + 0.07
        b.add("case", "cylinder", (0, 0, face_z), (radius, radius, depth / 2), case, finish=fin, rotation=facing_front)
        for sx in (-1, 1):  # legs up into the round bottom
            leg_top = face_z - radius * 0.8
            b.add("case", "cylinder", (sx * radius * 0.5, 0, leg_top / 2), (0.035, 0.035, leg_top / 2), case,
                  finish=fin, top_ratio=0.7, segments=10)
            b.add("bell", "sphere", (sx * radius * 0.62, 0, face_z + radius * 0.85), (radius * 0.35,) * 3, "grey",
                  finish="metallic", segments=16)
    else:  # a mantel clock: an upright box on a plinth, the face in its upper part
        face_z = radius * 1.65
        b.add("case", "box", (0, 0, radius * 1.35), (radius * 1.15, depth / 2, radius * 1.35), case, finish=fin)
        b.add("case", "box", (0, 0, 0.04), (radius * 1.3, depth / 2 + 0.03, 0.04), case, finish=fin)
    # The face looks to the front only; the hands show `hour` o'clock, clockwise seen from the front.
    face_y = -depth / 2 - 0.01
    b.add("face", "cylinder", (0, face_y, face_z), (radius * 0.85, radius * 0.85, 0.012), face, rotation=facing_front)
    for angle, length, half_width in ((hour * math.pi / 6, radius * 0.45, 0.035), (0.0, radius * 0.7, 0.025)):
        b.add("hand", "box", (math.sin(angle) * length / 2, face_y - 0.02, face_z + math.cos(angle) * length / 2),
              (half_width, 0.008, length / 2), "black", rotation=(0, angle, 0))
    size = _size_word(radius, 0.3, 0.45, "small", "big")
    return _caption(size, case, FINISH_WORDS[fin], "alarm" if alarm else "mantel", "clock with", _a(face),
                    "face showing", _HOURS[hour], "o'clock"), \
        {"radius": radius, "depth": depth, "alarm": alarm, "hour": hour or 12}


def _helicopter(b: _Builder) -> tuple[str, dict]:
    size, tail_len, rotor = b.rng.uniform(0.25, 0.35), b.rng.uniform(0.5, 0.8), b.rng.uniform(0.6, 0.9)
    body, blade = b.colour(), b.colour()
    fin = b.finish()
    blades = b.rng.choice([2, 3, 4])
    skids = b.rng.random() < 0.6
    z = size + 0.15  # room for the skids
    b.add("cabin", "sphere", (0, 0, z), (size, size * 1.4, size), body, finish=fin, segments=24)
    # The windscreen bulges out of the cabin's front only.
    b.add("window", "sphere", (0, -size * 0.85, z + size * 0.25), (size * 0.7, size * 0.6, size * 0.5), "black",
          finish="glossy", segments=16)
    boom_z, boom_end = z + size * 0.3, size * 0.9 + tail_len
    b.add("tail", "cylinder", (0, size * 0.9 + tail_len / 2, boom_z), (0.05, 0.05, tail_len / 2), body, finish=fin,
          rotation=(-math.pi / 2, 0, 0), top_ratio=0.6, segments=12)
    b.add("tail", "box", (0, boom_end - 0.05, boom_z + 0.1), (0.015, 0.07, 0.13), body, finish=fin)
    tail_rotor = (0.023, boom_end - 0.05, boom_z + 0.12)  # on the +X side of the tail fin
    b.add("rotor", "box", tail_rotor, (0.008, 0.13, 0.02), blade)
    b.add("rotor", "box", tail_rotor, (0.008, 0.02, 0.13), blade)
    mast_top = z + size + 0.12
    b.add("rotor", "cylinder", (0, 0, mast_top - 0.07), (0.03, 0.03, 0.08), "grey", finish="metallic", segments=8)
    turn = b.rng.uniform(0, 2 * math.pi / blades)
    for k in range(blades):
        angle = turn + 2 * math.pi * k / blades
        b.add("rotor", "box", (math.cos(angle) * rotor / 2, math.sin(angle) * rotor / 2, mast_top),
              (rotor / 2, 0.035, 0.01), blade, rotation=(0, 0, angle))
    if skids:
        for sx in (-1, 1):
            b.add("skid", "cylinder", (sx * size * 0.75, 0, 0.03), (0.025, 0.025, size * 1.5), "grey",
                  finish="metallic", rotation=(math.pi / 2, 0, 0), segments=8)
            for sy in (-1, 1):
                b.tube("skid", (sx * size * 0.75, sy * size * 0.6, 0.03), (sx * size * 0.55, sy * size * 0.6,
                                                                             z - size * 0.6), 0.015, "grey")
    count = {2: "two", 3: "three", 4: "four"}[blades]
    size_word = _size_word(tail_len, 0.5, 0.8, "short-tailed", "long-tailed")
    return _caption(size_word, body, FINISH_WORDS[fin], "helicopter with", count, blade, "rotor blades",
                    "and skids" if skids else ""), \
        {"cabin_size": size, "tail_length": tail_len, "rotor_radius": rotor, "blades": blades, "skids": skids}


def _rocket(b: _Builder) -> tuple[str, dict]:
    radius, height = b.rng.uniform(0.12, 0.2), b.rng.uniform(0.8, 1.3)
    nose_len = radius * b.rng.uniform(1.5, 3.0)
    body, accent = b.colour(), b.colour()
    fin = b.finish()
    fins = b.rng.choice([3, 4])
    base = 0.14  # the nozzle under the body
    b.add("engine", "cylinder", (0, 0, base / 2), (radius * 0.75, radius * 0.75, base / 2), "grey",
          finish="metallic", top_ratio=0.6, segments=16)
    b.add("body", "cylinder", (0, 0, base + height / 2), (radius, radius, height / 2), body, finish=fin)
    b.add("nose", "cylinder", (0, 0, base + height + nose_len / 2), (radius, radius, nose_len / 2), accent,
          finish=fin, top_ratio=0.05)
    fin_len, fin_h = radius * 1.2, height * 0.3
    for k in range(fins):  # three fins: one at the back, two at the front corners; four: on the diagonals
        angle = (math.pi / 2 if fins == 3 else math.pi / 4) + 2 * math.pi * k / fins
        reach = radius + fin_len / 2 - 0.02
        b.add("fin", "box", (math.cos(angle) * reach, math.sin(angle) * reach, fin_h / 2),
              (fin_len / 2, 0.015, fin_h / 2), accent, rotation=(0, 0, angle))
    # One porthole, on the front only.
    window_z = base + height * 0.7
    b.add("window", "cylinder", (0, -radius - 0.005, window_z), (radius * 0.45, radius * 0.45, 0.012), "white",
          rotation=(math.pi / 2, 0, 0))
    b.add("window", "cylinder", (0, -radius - 0.012, window_z), (radius * 0.32, radius * 0.32, 0.012), "black",
          finish="glossy", rotation=(math.pi / 2, 0, 0))
    shape = _size_word(height / radius, 4.0, 10.8, "stubby", "slender")
    return _caption(shape, body, FINISH_WORDS[fin], "rocket with", "three" if fins == 3 else "four", accent, "fins"), \
        {"radius": radius, "height": height, "fins": fins}


def _tree(b: _Builder) -> tuple[str, dict]:
    trunk_h, crown = b.rng.uniform(0.3, 0.6), b.rng.uniform(0.35, 0.55)
    leaves = b.colour()
    pine = b.rng.random() < 0.4
    fruit = not pine and b.rng.random() < 0.5
    trunk_r = crown * 0.18
    b.add("trunk", "cylinder", (0, 0, trunk_h / 2 + 0.05), (trunk_r, trunk_r, trunk_h / 2 + 0.05), "brown",
          top_ratio=0.8, segments=12)
    crown_z = trunk_h + crown * 0.85
    if pine:  # three stacked cones
        for i in range(3):
            r = crown * (1 - 0.22 * i)
            b.add("foliage", "cylinder", (0, 0, trunk_h + i * crown * 0.55 + crown * 0.45), (r, r, crown * 0.45),
                  leaves, top_ratio=0.05, segments=16)
    else:
        b.add("foliage", "sphere", (0, 0, crown_z), (crown, crown, crown * 0.9), leaves, segments=20)
    # One branch grows out to the +X side, with its own tuft of leaves.
    tip = (crown + 0.12, 0, trunk_h * 0.55 + 0.18)
    b.tube("branch", (trunk_r * 0.5, 0, trunk_h * 0.55), tip, trunk_r * 0.4, "brown")
    b.add("branch", "sphere", tip, (crown * 0.28,) * 3, leaves, segments=12)
    fruit_colour = b.colour(leaves) if fruit else ""
    if fruit:  # apples on the crown's surface
        for k in range(6):
            az, el = 2 * math.pi * k / 6 + b.rng.uniform(0, 0.5), b.rng.uniform(-0.4, 0.6)
            where = (crown * math.cos(el) * math.cos(az), crown * math.cos(el) * math.sin(az),
                     crown_z + crown * 0.9 * math.sin(el))
            b.add("fruit", "sphere", where, (0.045, 0.045, 0.045), fruit_colour, finish="glossy", segments=10)
    tall = _size_word(trunk_h, 0.3, 0.6, "short", "tall")
    return _caption(tall, leaves, "pine" if pine else "", "tree", f"with {fruit_colour} fruit" if fruit else ""), \
        {"trunk_height": trunk_h, "crown": crown, "pine": pine, "fruit": fruit}


def _umbrella(b: _Builder) -> tuple[str, dict]:
    shaft_h, canopy_r = b.rng.uniform(0.8, 1.2), b.rng.uniform(0.5, 0.8)
    rise = canopy_r * b.rng.uniform(0.25, 0.45)
    canopy, handle = b.colour(), b.colour()
    is_open = b.rng.random() < 0.7
    hook = 0.12  # the handle's loop radius: the shaft starts on top of it
    top = hook + shaft_h
    b.add("shaft", "cylinder", (0, 0, hook + shaft_h / 2), (0.04, 0.04, shaft_h / 2), "grey", finish="metallic",
          segments=8)
    # The crook handle curls out to the +X side.
    b.add("handle", "torus", (hook, 0, hook), (hook, hook, hook), handle, rotation=(math.pi / 2, 0, 0),
          minor_ratio=0.35, segments=20)
    if is_open:  # an eight-ribbed cone
        b.add("canopy", "cylinder", (0, 0, top - rise / 2), (canopy_r, canopy_r, rise / 2), canopy, top_ratio=0.04,
              segments=8)
    else:  # furled around the upper shaft
        bottom = hook + shaft_h * 0.35
        b.add("canopy", "cylinder", (0, 0, (bottom + top) / 2), (0.09, 0.09, (top - bottom) / 2), canopy,
              top_ratio=0.15, segments=8)
    b.add("tip", "sphere", (0, 0, top + 0.02), (0.04, 0.04, 0.04), "grey", finish="metallic", segments=10)
    size = _size_word(canopy_r, 0.5, 0.8, "small", "large") if is_open else "closed"
    return _caption(size, canopy, "umbrella with", _a(handle), "handle"), \
        {"shaft_height": shaft_h, "canopy_radius": canopy_r, "open": is_open}


def _toaster(b: _Builder) -> tuple[str, dict]:
    w, d, h = b.rng.uniform(0.5, 0.8), b.rng.uniform(0.3, 0.45), b.rng.uniform(0.35, 0.5)
    body = b.colour()
    fin = b.finish()
    four = b.rng.random() < 0.4
    toast = b.rng.random() < 0.5
    top = h + 0.02
    b.add("body", "box", (0, 0, h / 2 + 0.02), (w / 2, d / 2, h / 2), body, finish=fin)
    b.add("body", "box", (0, 0, 0.01), (w / 2 - 0.03, d / 2 - 0.03, 0.02), "black")  # the foot
    columns = (-w * 0.23, w * 0.23) if four else (0.0,)
    slot_half = w * 0.17 if four else w * 0.36
    for x in columns:
        for y in (-d * 0.2, d * 0.2):
            b.add("slot", "box", (x, y, top), (slot_half, 0.025, 0.008), "black")
            if toast:
                b.add("toast", "box", (x, y, top + 0.03), (slot_half * 0.85, 0.018, 0.07), "brown")
    # The lever sits on the +X side only.
    b.add("lever", "box", (w / 2 + 0.03, -d * 0.1, top * 0.65), (0.03, 0.05, 0.03), "black")
    width = _size_word(w, 0.5, 0.8, "narrow", "wide")
    return _caption(width, body, FINISH_WORDS[fin], "four-slice" if four else "two-slice", "toaster",
                    "with toast" if toast else ""), {"width": w, "height": h, "four_slice": four, "toast": toast}


def _robot(b: _Builder) -> tuple[str, dict]:
    body_w, body_h, leg_h = b.rng.uniform(0.28, 0.55), b.rng.uniform(0.35, 0.55), b.rng.uniform(0.2, 0.5)
    head_size = b.rng.uniform(0.1, 0.16)
    metal, head_colour = b.colour(), b.colour()
    eye_colour = b.colour(head_colour)
    fin = b.finish()
    round_head = b.rng.random() < 0.5
    antenna = b.rng.random() < 0.5
    for sx in (-1, 1):
        b.add("leg", "box", (sx * body_w * 0.25, 0, leg_h / 2), (0.055, 0.07, leg_h / 2), metal, finish=fin)
        b.add("leg", "box", (sx * body_w * 0.25, -0.03, 0.03), (0.07, 0.1, 0.03), "grey")  # a foot
    shoulder = leg_h + body_h
    b.add("body", "box", (0, 0, leg_h + body_h / 2), (body_w / 2, 0.11, body_h / 2), metal, finish=fin)
    arm_len = body_h * 0.9
    for sx in (-1, 1):
        arm_x = sx * (body_w / 2 + 0.045)
        b.add("arm", "cylinder", (arm_x, 0, shoulder - 0.03 - arm_len / 2), (0.045, 0.045, arm_len / 2), metal,
              finish=fin, segments=12)
        b.add("arm", "sphere", (arm_x, 0, shoulder - 0.03), (0.06, 0.06, 0.06), head_colour, segments=12)
    head_z = shoulder + 0.04 + head_size
    b.add("head", "cylinder", (0, 0, shoulder + 0.03), (0.04, 0.04, 0.03), "grey", segments=8)  # the neck
    if round_head:
        b.add("head", "sphere", (0, 0, head_z), (head_size * 1.1,) * 3, head_colour, finish=fin, segments=20)
    else:
        b.add("head", "box", (0, 0, head_z), (head_size, head_size * 0.9, head_size), head_colour, finish=fin)
    # The eyes look to the front only.
    eye_y = -head_size * (1.0 if round_head else 0.9)
    for sx in (-1, 1):
        b.add("eye", "sphere", (sx * head_size * 0.4, eye_y, head_z + head_size * 0.15), (head_size * 0.3,) * 3,
              eye_colour, finish="glossy", segments=10)
    if antenna:
        head_top = head_z + head_size * (1.1 if round_head else 1.0)
        b.add("antenna", "cylinder", (0, 0, head_top + 0.06), (0.012, 0.012, 0.07), "grey", segments=6)
        b.add("antenna", "sphere", (0, 0, head_top + 0.13), (0.035, 0.035, 0.035), eye_colour, segments=10)
    tall = _size_word(leg_h + body_h, 0.55, 1.05, "short", "tall")
    return _caption(tall, metal, FINISH_WORDS[fin], "robot with a", "round" if round_head else "square", head_colour,
                    "head", "and an antenna" if antenna else ""), \
        {"height": leg_h + body_h, "width": body_w, "round_head": round_head, "antenna": antenna}


def _backpack(b: _Builder) -> tuple[str, dict]:
    w, d, h = b.rng.uniform(0.4, 0.6), b.rng.uniform(0.2, 0.32), b.rng.uniform(0.5, 0.8)
    bag, pocket = b.colour(), b.colour()
    flap = b.rng.random() < 0.5
    loop = b.rng.random() < 0.5
    b.add("bag", "box", (0, 0, h / 2), (w / 2, d / 2, h / 2), bag)
    b.add("bag", "cylinder", (0, 0, h), (d / 2, d / 2, w / 2), bag, rotation=(0, math.pi / 2, 0))  # the round top
    # The pocket on the front and the straps on the back tell front from back.
    pocket_w = w * b.rng.uniform(0.3, 0.45)
    b.add("pocket", "box", (0, -d / 2 - 0.04, h * 0.3), (pocket_w, 0.05, h * 0.2), pocket)
    for sx in (-1, 1):
        b.add("strap", "box", (sx * w * 0.25, d / 2 + 0.02, h * 0.5), (0.04, 0.025, h * 0.38), "black")
    if loop:
        b.add("strap", "torus", (0, 0, h + d / 2), (0.07, 0.07, 0.07), "black", rotation=(math.pi / 2, 0, 0),
              minor_ratio=0.25, segments=16)
    if flap:
        b.add("flap", "box", (0, -d / 2 - 0.015, h * 0.82), (w / 2 + 0.01, 0.02, h * 0.18), pocket)
    size = _size_word(h, 0.5, 0.8, "small", "big")
    return _caption(size, bag, "backpack with", _a(pocket), "front pocket", "and a flap" if flap else ""), \
        {"height": h, "width": w, "flap": flap, "loop": loop}


def _truck(b: _Builder) -> tuple[str, dict]:
    length, width, cargo_h = b.rng.uniform(1.2, 1.8), b.rng.uniform(0.4, 0.65), b.rng.uniform(0.25, 0.6)
    cab_len = length * b.rng.uniform(0.22, 0.3)
    cab, cargo = b.colour(), b.colour()
    fin = b.finish()
    closed = b.rng.random() < 0.5
    wheel_r, floor, cab_h = 0.12, 0.18, 0.38  # the chassis's top is the floor
    b.add("chassis", "box", (0, 0, floor - 0.04), (width / 2 - 0.04, length / 2, 0.04), "grey")
    # The cab at the front (-Y), with its windscreen and headlights, tells front from back.
    cab_y = -length / 2 + cab_len / 2
    b.add("cab", "box", (0, cab_y, floor + cab_h / 2), (width / 2, cab_len / 2, cab_h / 2), cab, finish=fin)
    for sx in (-1, 1):
        b.add("cab", "sphere", (sx * width * 0.35, -length / 2, floor + 0.06), (0.045, 0.02, 0.035), "yellow",
              segments=10)
        b.add("window", "box", (sx * (width / 2 + 0.005), cab_y, floor + cab_h * 0.72), (0.01, cab_len * 0.3,
                                                                                         cab_h * 0.15), "black")
    b.add("window", "box", (0, -length / 2 - 0.005, floor + cab_h * 0.72), (width / 2 - 0.05, 0.01, cab_h * 0.16),
          "black", finish="glossy")
    cargo_len = length - cab_len - 0.03
    cargo_y = length / 2 - cargo_len / 2
    if closed:
        b.add("cargo", "box", (0, cargo_y, floor + cargo_h / 2), (width / 2, cargo_len / 2, cargo_h / 2), cargo)
    else:  # an open bed: a floor and four low walls
        wall = cargo_h * 0.5
        b.add("cargo", "box", (0, cargo_y, floor + 0.03), (width / 2, cargo_len / 2, 0.03), cargo)
        for sx in (-1, 1):
            b.add("cargo", "box", (sx * (width / 2 - 0.02), cargo_y, floor + wall / 2), (0.02, cargo_len / 2, wall / 2),
                  cargo)
            b.add("cargo", "box", (0, cargo_y + sx * (cargo_len / 2 - 0.02), floor + wall / 2),
                  (width / 2, 0.02, wall / 2), cargo)
    axles = [cab_y, length / 2 - cargo_len * 0.25]
    if length > 1.5:  # a long truck has a second rear axle
        axles.append(axles[-1] - 2.2 * wheel_r)
    for y in axles:
        for sx in (-1, 1):
            b.add("wheel", "cylinder", (sx * (width / 2 - 0.02), y, wheel_r), (wheel_r, wheel_r, 0.05), "black",
                  rotation=(0, math.pi / 2, 0), segments=16)
    size = _size_word(length, 1.2, 1.8, "small", "long")
    return _caption(size, cab, FINISH_WORDS[fin], "truck with", _a(cargo), "cargo box" if closed else "open bed"), \
        {"length": length, "cargo_height": cargo_h, "closed": closed, "axles": len(axles)}


def _tent(b: _Builder) -> tuple[str, dict]:
    length, width, height = b.rng.uniform(0.8, 1.4), b.rng.uniform(0.7, 1.1), b.rng.uniform(0.5, 0.9)
    canvas, door = b.colour(), b.colour()
    door_open = b.rng.random() < 0.5
    flag = b.rng.random() < 0.5
    # A triangular prism along Y: a 3-sided cylinder (apex at local +Y) turned so its apex points up.
    apex_up = (math.pi / 2, 0, 0)
    sx, sy = width / 2 / 0.866, height / 1.5
    b.add("canvas", "cylinder", (0, 0, sy * 0.5), (sx, sy, length / 2), canvas, rotation=apex_up, segments=3)
    # The door is a smaller triangle on the front face only: dark when open.
    b.add("door", "cylinder", (0, -length / 2 - 0.008, sy * 0.3), (sx * 0.45, sy * 0.6, 0.012),
          "black" if door_open else door, rotation=apex_up, segments=3)
    pole_h = height + 0.12
    for end in (-1, 1):
        b.add("pole", "cylinder", (0, end * (length / 2 + 0.02), pole_h / 2), (0.02, 0.02, pole_h / 2), "grey",
              finish="metallic", segments=8)
    flag_colour = b.colour(canvas) if flag else ""
    if flag:
        b.add("flag", "box", (0.09, -length / 2 - 0.02, pole_h - 0.06), (0.08, 0.008, 0.05), flag_colour)
    shape = _size_word(height / width, 0.45, 1.3, "low", "tall")
    door_words = "an open door" if door_open else f"a closed {door} door"
    return _caption(shape, canvas, "tent with", door_words, f"and {_a(flag_colour)} flag" if flag else ""), \
        {"length": length, "width": width, "height": height, "door_open": door_open, "flag": flag}


def _snowman(b: _Builder) -> tuple[str, dict]:
    base_r = b.rng.uniform(0.3, 0.42)
    mid_r = base_r * b.rng.uniform(0.5, 0.9)
    head_r = mid_r * b.rng.uniform(0.6, 0.9)
    arm_len, raise_angle = b.rng.uniform(0.25, 0.6), b.rng.uniform(0.0, 0.8)
    nose_len = head_r * b.rng.uniform(0.6, 1.2)
    snow, hat_colour = b.colour(), b.colour()
    hat = b.rng.random() < 0.6
    mid_z = 2 * base_r + mid_r * 0.75
    head_z = mid_z + mid_r + head_r * 0.75
    for r, z in ((base_r, base_r), (mid_r, mid_z), (head_r, head_z)):
        b.add("body", "sphere", (0, 0, z), (r, r, r), snow, segments=20)
    # The carrot nose and the eyes look to the front only.
    b.add("nose", "cylinder", (0, -head_r - nose_len / 2 + 0.03, head_z), (head_r * 0.3, head_r * 0.3, nose_len / 2),
          "orange", rotation=(math.pi / 2, 0, 0), top_ratio=0.05, segments=10)
    for sx in (-1, 1):
        b.add("eye", "sphere", (sx * head_r * 0.35, -head_r * 0.88, head_z + head_r * 0.3), (head_r * 0.18,) * 3,
              "black", segments=8)
        # A stick from inside the middle ball, out and up by `raise_angle`.
        b.add("arm", "box", (sx * (mid_r * 0.7 + arm_len / 2 * math.cos(raise_angle)), 0,
                             mid_z + mid_r * 0.2 + arm_len / 2 * math.sin(raise_angle)),
              (arm_len / 2, 0.022, 0.022), "brown", rotation=(0, -sx * raise_angle, 0))
    if hat:
        brim_z = head_z + head_r * 0.8
        b.add("hat", "cylinder", (0, 0, brim_z), (head_r * 1.05, head_r * 1.05, 0.015), hat_colour)
        crown = head_r * 0.4
        b.add("hat", "cylinder", (0, 0, brim_z + crown), (head_r * 0.65, head_r * 0.65, crown), hat_colour)
    size = _size_word(base_r, 0.3, 0.42, "small", "big")
    return _caption(size, snow, "snowman with an orange nose", f"and {_a(hat_colour)} hat" if hat else ""), \
        {"base_radius": base_r, "nose_length": nose_len, "hat": hat}


def _windmill(b: _Builder) -> tuple[str, dict]:
    tower_h, tower_r = b.rng.uniform(0.8, 1.2), b.rng.uniform(0.22, 0.35)
    sail_len = b.rng.uniform(0.4, 0.8)
    wall, roof, sail = b.colour(), b.colour(), b.colour()
    balcony = b.rng.random() < 0.5
    turn = b.rng.uniform(0, math.pi / 2)  # where the sails stopped
    b.add("tower", "cylinder", (0, 0, tower_h / 2), (tower_r, tower_r, tower_h / 2), wall, top_ratio=0.6, segments=8)
    top_r, cap_h = tower_r * 0.6, tower_r * 0.7
    b.add("cap", "cylinder", (0, 0, tower_h + cap_h / 2 - 0.01), (top_r * 1.15, top_r * 1.15, cap_h / 2), roof,
          top_ratio=0.1, segments=8)
    # The sails turn in front of the tower (-Y), clear of its widest part.
    hub_y, hub_z = -(tower_r + 0.06), tower_h - 0.02
    b.tube("cap", (0, -top_r * 0.8, hub_z), (0, hub_y, hub_z), 0.04, roof)
    b.add("cap", "sphere", (0, hub_y, hub_z), (0.06, 0.06, 0.06), roof, segments=10)
    for k in range(4):
        angle = turn + k * math.pi / 2
        reach = sail_len / 2 + 0.04
        b.add("sail", "box", (math.sin(angle) * reach, hub_y, hub_z + math.cos(angle) * reach),
              (sail_len * 0.13, 0.012, sail_len / 2), sail, rotation=(0, angle, 0))
    b.add("door", "box", (0, -tower_r * 0.97, 0.11), (0.06, 0.05, 0.11), roof)
    if balcony:
        ring = tower_r * 0.84 + 0.03
        b.add("balcony", "torus", (0, 0, tower_h * 0.4), (ring, ring, ring), roof, minor_ratio=0.1, segments=24)
    tall = _size_word(tower_h, 0.8, 1.2, "short", "tall")
    return _caption(tall, wall, "windmill with", sail, "sails", "and a balcony" if balcony else ""), \
        {"tower_height": tower_h, "sail_length": sail_len, "balcony": balcony}


def _piano(b: _Builder) -> tuple[str, dict]:
    w, h, d = b.rng.uniform(0.9, 1.3), b.rng.uniform(0.7, 1.0), b.rng.uniform(0.28, 0.4)
    wood = b.colour()
    fin = b.finish()
    music = b.rng.random() < 0.5
    key_z, key_d = h * 0.55, 0.16  # the keys' height and how far the keyboard juts out at the front
    b.add("body", "box", (0, 0, h / 2), (w / 2, d / 2, h / 2), wood, finish=fin)
    b.add("body", "box", (0, -d / 2 - key_d / 2, key_z - 0.04), (w / 2, key_d / 2, 0.04), wood, finish=fin)
    # The keyboard juts out at the front only.
    b.add("keyboard", "box", (0, -d / 2 - key_d / 2 - 0.01, key_z + 0.01), (w / 2 - 0.06, key_d / 2 - 0.01, 0.015),
          "white")
    black_keys = int(w / 0.09)
    for i in range(black_keys):
        x = -w / 2 + 0.1 + i * (w - 0.2) / (black_keys - 1)
        b.add("keyboard", "box", (x, -d / 2 - key_d * 0.35, key_z + 0.03), (0.012, key_d * 0.25, 0.01), "black")
    for sx in (-1, 1):
        leg_h = key_z - 0.08
        b.add("leg", "cylinder", (sx * (w / 2 - 0.04), -d / 2 - key_d + 0.03, leg_h / 2), (0.03, 0.03, leg_h / 2),
              wood, finish=fin, segments=10)
    if music:  # sheet music on a stand leaning back against the front
        b.add("music", "box", (0, -d / 2 - 0.04, key_z + 0.14), (w * 0.18, 0.01, 0.1), "white", rotation=(-0.3, 0, 0))
    tall = _size_word(h, 0.7, 1.0, "low", "tall")
    return _caption(tall, wood, FINISH_WORDS[fin], "piano", "with sheet music" if music else ""), \
        {"width": w, "height": h, "sheet_music": music}


@dataclass(frozen=True)
class Category:
    name: str
    part_names: tuple[str, ...]
    build: Callable[[_Builder], tuple[str, dict]]
    view_dependent_part: str  # what makes views of this category differ
    view_words: str = ""  # how view captions name that part, if not by its part name ("headlights")


CATEGORIES: dict[str, Category] = {c.name: c for c in [
    Category("mug", ("body", "handle"), _mug, "handle"),
    Category("chair", ("seat", "leg", "back", "armrest"), _chair, "back"),
    Category("car", ("body", "cabin", "wheel", "headlight"), _car, "headlight", "headlights"),
    Category("house", ("wall", "roof", "door", "window", "chimney"), _house, "door"),
    Category("lamp", ("base", "pole", "arm", "shade"), _lamp, "arm"),
    Category("bottle", ("body", "neck", "cap", "label"), _bottle, "label"),
    Category("teapot", ("body", "spout", "handle", "lid"), _teapot, "spout"),
    Category("sofa", ("base", "back", "armrest", "cushion"), _sofa, "back"),
    Category("television", ("frame", "screen", "stand"), _television, "screen"),
    Category("bookshelf", ("frame", "shelf", "book"), _bookshelf, "book", "books"),
    Category("boat", ("hull", "mast", "sail", "cabin"), _boat, "hull", "bow"),
    Category("camera", ("body", "lens", "flash", "button"), _camera, "lens"),
    Category("table", ("top", "leg", "drawer"), _table, "drawer"),
    Category("bed", ("frame", "mattress", "headboard", "blanket", "pillow"), _bed, "headboard"),
    Category("bicycle", ("frame", "wheel", "handlebar", "saddle", "basket"), _bicycle, "handlebar"),
    Category("airplane", ("fuselage", "wing", "tail", "engine"), _airplane, "tail"),
    Category("guitar", ("body", "neck", "head", "soundhole", "pickguard"), _guitar, "soundhole", "sound hole"),
    Category("clock", ("case", "face", "hand", "bell"), _clock, "face"),
    Category("helicopter", ("cabin", "window", "tail", "rotor", "skid"), _helicopter, "window", "windscreen"),
    Category("rocket", ("engine", "body", "nose", "fin", "window"), _rocket, "window"),
    Category("tree", ("trunk", "foliage", "branch", "fruit"), _tree, "branch"),
    Category("umbrella", ("shaft", "handle", "canopy", "tip"), _umbrella, "handle"),
    Category("toaster", ("body", "slot", "toast", "lever"), _toaster, "lever"),
    Category("robot", ("leg", "body", "arm", "head", "eye", "antenna"), _robot, "eye", "eyes"),
    Category("backpack", ("bag", "pocket", "strap", "flap"), _backpack, "pocket"),
    Category("truck", ("chassis", "cab", "window", "cargo", "wheel"), _truck, "cab"),
    Category("tent", ("canvas", "door", "pole", "flag"), _tent, "door"),
    Category("snowman", ("body", "nose", "eye", "arm", "hat"), _snowman, "nose"),
    Category("windmill", ("tower", "cap", "sail", "door", "balcony"), _windmill, "sail", "sails"),
    Category("piano", ("body", "keyboard", "leg", "music"), _piano, "keyboard"),
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


# Where the camera is, by azimuth sector of 45 degrees: the sides as seen from the front
# (`core.cameras`: azimuth 0 looks at the front, from -Y; azimuth 90 is on the right, +X).
_VIEWPOINTS = ("from the front", "from the front right", "from the right side", "from the back right",
               "from the back", "from the back left", "from the left side", "from the front left")


def viewpoint_words(azimuth_deg: float, elevation_deg: float) -> str:
    """Where a camera looks at the object from, in words ("from above", "from the back left")."""
    if elevation_deg >= 60:
        return "from above"
    if elevation_deg <= -20:
        return "from below"
    return _VIEWPOINTS[math.floor(azimuth_deg / 45 + 0.5) % 8]


def part_bounds(part: Part) -> tuple[np.ndarray, np.ndarray]:
    """The axis-aligned box (low, high corners) around a part as the renderer places it (scale, then
    Blender's XYZ Euler rotation Rz @ Ry @ Rx, then location)."""
    if part.primitive == "torus":
        half = np.array([1 + part.minor_ratio, 1 + part.minor_ratio, part.minor_ratio])
    elif part.primitive == "cylinder":
        half = np.array([max(1.0, part.top_ratio), max(1.0, part.top_ratio), 1.0])
    else:
        half = np.ones(3)
    ax, ay, az = part.rotation
    rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    ry = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    rz = np.array([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
    corners = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)]) * half * part.scale
    placed = corners @ (rz @ ry @ rx).T + part.location
    return placed.min(axis=0), placed.max(axis=0)


def part_position_words(spec: ObjectSpec, azimuth_deg: float, elevation_deg: float) -> str:
    """Where the category's view-dependent part appears in this view ("on the left", "facing the camera").

    The part's mean location is taken from the object's vertical axis (x = y = 0, which every builder
    stands its object on: the bounding-box centre would put a lamp's arm in its middle), relative to
    the object's footprint (so books filling a bookshelf are at its front, not its left), and split
    into across the image (the camera's right axis) and towards the camera (horizontally). Within 40
    degrees of the camera's side the part faces the camera, within 40 degrees of the far side it is
    behind the object; seen from above or below those are the near and far side instead. (40, not 45
    or 30: a part on an axis seen from a grid azimuth, a multiple of 30 or 45 degrees, is never on
    a boundary.)
    """
    part = CATEGORIES[spec.category].view_dependent_part
    label = spec.part_names.index(part) + 1
    points = [p.location for p in spec.parts if p.label == label]
    if not points:
        return ""
    bounds = [part_bounds(p) for p in spec.parts]
    half_size = (np.max([hi for _, hi in bounds], axis=0) - np.min([lo for lo, _ in bounds], axis=0)) / 2
    x, y = np.mean(points, axis=0)[:2] / np.maximum(half_size[:2], 1e-9)
    from ..core.cameras import camera_to_world  # late: cameras loads pandas, which render workers must not

    right = camera_to_world(azimuth_deg, elevation_deg, 1.0)[:3, 0]  # horizontal; mirrored from straight below
    az = math.radians(azimuth_deg)
    across = x * right[0] + y * right[1]
    towards = x * math.sin(az) - y * math.cos(az)  # along the horizontal direction to the camera
    if math.hypot(across, towards) < 1e-6:
        return "in the middle"
    angle = math.degrees(math.atan2(across, towards))
    steep = elevation_deg >= 60 or elevation_deg <= -20
    if abs(angle) < 40:
        return "on the near side" if steep else "facing the camera"
    if abs(angle) > 140:
        return "on the far side" if steep else "behind it"
    return "on the right" if angle > 0 else "on the left"


def view_caption(spec: ObjectSpec, azimuth_deg: float, elevation_deg: float) -> str:
    """What this view of the object shows, category-guided like the MVCap captions of Omniview-Tuning:
    the object's caption, the viewpoint and where its view-dependent part appears, e.g.
    "a red mug with a big blue handle, seen from the back, its handle on the left"."""
    text = f"{spec.caption}, seen {viewpoint_words(azimuth_deg, elevation_deg)}"
    where = part_position_words(spec, azimuth_deg, elevation_deg)
    if not where:
        return text
    category = CATEGORIES[spec.category]
    return f"{text}, its {category.view_words or category.view_dependent_part} {where}"
