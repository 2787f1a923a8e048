"""Embedded demo data: generated pictures of simple scenes, each with its own instance captions.

Every picture holds two or three shapes on a 3×3 grid; its captions name each shape's colour,
kind, size and place, and how many shapes there are — exactly what class-level labels lose and
instance-level retrieval needs (docs/method.md, "The idea"). Five captions per picture, each worded
differently. The data is written as a JSON-Lines manifest plus PNG files, so it flows through the
same reader (`read_manifest`) as users' own data. Nothing is downloaded.

Captions talk about left and right: horizontal flipping would make them wrong, so the demo
config turns flip augmentation off.
"""
from __future__ import annotations

import dataclasses
import json
import os
import random

from PIL import Image, ImageDraw

COLOURS = {
    "red": (220, 30, 30), "green": (30, 170, 40), "blue": (30, 60, 220),
    "yellow": (240, 220, 30), "purple": (140, 40, 170), "orange": (250, 140, 20),
    "white": (250, 250, 250), "black": (15, 15, 15),
}
SHAPES = ("circle", "square", "triangle", "cross")
SIZES = ("small", "large")
ROWS = ("top", "middle", "bottom")
COLUMNS = ("left", "centre", "right")
NUMBERS = {2: "two", 3: "three"}
BACKGROUND = (150, 150, 150)


@dataclasses.dataclass(frozen=True)
class Shape:
    colour: str
    kind: str
    size: str
    row: int
    col: int

    def place(self, style: int) -> str:
        row, col = ROWS[self.row], COLUMNS[self.col]
        if self.row == 1 and self.col == 1:
            return ("in the centre", "in the middle", "at the centre")[style % 3]
        if self.row == 1:
            return (f"on the {col}", f"at the {col}", f"on the {col} side")[style % 3]
        if self.col == 1:
            return (f"at the {row}", f"at the {row}", f"near the {row}")[style % 3]
        return (f"in the {row} {col}", f"at the {row} {col}",
                f"in the {row} {col} corner")[style % 3]

    def noun(self, style: int) -> str:
        size = self.size if style % 2 == 0 else {"small": "little", "large": "big"}[self.size]
        return f"{size} {self.colour} {self.kind}"


def _draw(draw: ImageDraw.ImageDraw, shape: Shape, image_size: int, rng: random.Random) -> None:
    cell = image_size / 3
    half = cell * (0.22 if shape.size == "small" else 0.42)
    cx = cell * (shape.col + 0.5) + rng.uniform(-0.06, 0.06) * cell
    cy = cell * (shape.row + 0.5) + rng.uniform(-0.06, 0.06) * cell
    fill = COLOURS[shape.colour]
    box = (cx - half, cy - half, cx + half, cy + half)
    if shape.kind == "circle":
        draw.ellipse(box, fill=fill)
    elif shape.kind == "square":
        draw.rectangle(box, fill=fill)
    elif shape.kind == "triangle":
        draw.polygon([(cx, cy - half), (cx - half, cy + half), (cx + half, cy + half)], fill=fill)
    else:
        bar = half / 3
        draw.rectangle((cx - half, cy - bar, cx + half, cy + bar), fill=fill)
        draw.rectangle((cx - bar, cy - half, cx + bar, cy + half), fill=fill)


def random_scene(rng: random.Random) -> list[Shape]:
    cells = rng.sample(range(9), rng.choice((2, 3)))
    return [Shape(rng.choice(list(COLOURS)), rng.choice(SHAPES), rng.choice(SIZES), c // 3, c % 3)
            for c in sorted(cells)]


def _a(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def captions_for(scene: list[Shape], rng: random.Random) -> list[str]:
    """Five differently worded captions that together pin down the whole scene."""
    n = NUMBERS[len(scene)]
    shuffled = rng.sample(scene, len(scene))
    return [
        _join([f"{_a(s.noun(0))} {s.place(0)}" for s in scene]),
        f"{n} shapes on grey : " + _join([f"{_a(s.noun(1))} {s.place(1)}" for s in shuffled]),
        "there is " + _join([f"{_a(s.noun(0))} {s.place(2)}" for s in reversed(scene)]),
        _join([f"{s.place(0)} {_a(s.colour)} {s.kind} , {s.size}" for s in shuffled]).capitalize(),
        f"{n} objects . " + " ; ".join(
            f"{s.kind} : {s.colour} , {s.size} , {ROWS[s.row]} {COLUMNS[s.col]}" for s in scene),
    ]


def generate_demo(out_dir: str, num_train: int = 4000, num_val: int = 200, num_test: int = 1000,
                  image_size: int = 64, seed: int = 0) -> str:
    """Write `out_dir/images/*.png` and `out_dir/manifest.jsonl`; returns the manifest path.

    Idempotent: an existing complete manifest with the same settings is kept.
    """
    settings = dict(num_train=num_train, num_val=num_val, num_test=num_test,
                    image_size=image_size, seed=seed, version=1)
    manifest = os.path.join(out_dir, "manifest.jsonl")
    stamp = os.path.join(out_dir, "settings.json")
    if os.path.exists(manifest) and os.path.exists(stamp):
        with open(stamp) as f:
            if json.load(f) == settings:
                return manifest
    os.makedirs(os.path.join(out_dir, "images"), exist_ok=True)
    rng = random.Random(seed)
    splits = ["train"] * num_train + ["val"] * num_val + ["test"] * num_test
    seen: set[tuple] = set()
    lines = []
    for i, split in enumerate(splits):
        scene = random_scene(rng)
        while tuple(scene) in seen:  # every picture is its own instance
            scene = random_scene(rng)
        seen.add(tuple(scene))
        image = Image.new("RGB", (image_size, image_size), BACKGROUND)
        draw = ImageDraw.Draw(image)
        for shape in scene:
            _draw(draw, shape, image_size, rng)
        name = f"images/{split}_{i:05d}.png"
        image.save(os.path.join(out_dir, name))
        lines.append(json.dumps({"id": f"{split}_{i:05d}", "image": name, "split": split,
                                 "captions": captions_for(scene, rng)}))
    tmp = manifest + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(tmp, manifest)
    with open(stamp, "w") as f:
        json.dump(settings, f)
    return manifest
