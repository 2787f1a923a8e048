"""A JSON-Lines manifest: the simplest way to bring your own data."""
from __future__ import annotations

import json
import os
from pathlib import Path

from keras_instance.data.readers.files import clean_captions, read_lines, require_dir, require_file
from keras_instance.data.readers.registry import register
from keras_instance.data.records import DatasetError, Record

_MANIFEST_FORMAT = ('one JSON object per line: {"image": "path", "captions": ["...", ...], '
                    '"split": "train|val|test", optional "id": "...", optional "label": int}')


def read_manifest(path: str | os.PathLike) -> list[Record]:
    """A JSON-Lines manifest: the simplest way to bring your own data.

    Relative image paths are relative to the manifest's folder; blank lines are skipped.
    'id' defaults to the image path as written; 'label' defaults to a unique int per line (the
    record's index, shifted past the largest explicit label when some lines give one).
    """
    path = require_file(Path(path), f"a JSON-Lines manifest ({_MANIFEST_FORMAT})")
    rows = [(number, *_manifest_line(path, number, line))
            for number, line in read_lines(path) if line.strip()]
    explicit = [label for *_, label in rows if label is not None]
    offset = max(explicit) + 1 if explicit else 0
    return [Record(image_id=i, image_path=p, captions=tuple(c), split=s,
                   label=label if label is not None else offset + n,
                   origin=f"{path}, line {number}")
            for n, (number, i, p, c, s, label) in enumerate(rows)]


def _manifest_line(path: Path, number: int, line: str):
    def fail(why: str):
        return DatasetError(f"{path}, line {number}: {why}; expected {_MANIFEST_FORMAT}.")

    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise fail(f"invalid JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(obj, dict):
        raise fail(f"a JSON {type(obj).__name__}, not an object")
    missing = [k for k in ("image", "captions", "split") if k not in obj]
    if missing:
        raise fail(f"missing key(s) {', '.join(repr(k) for k in missing)}")
    captions = obj["captions"]
    if not isinstance(captions, list) or not all(isinstance(c, str) for c in captions):
        raise fail(f"'captions' must be a list of strings, got {captions!r:.80}")
    label = obj.get("label")
    if label is not None and (isinstance(label, bool) or not isinstance(label, int)):
        raise fail(f"'label' must be an integer, got {label!r}")
    image = str(obj["image"])
    image_path = str(path.parent / image) if not os.path.isabs(image) else image
    return str(obj.get("id", image)), image_path, clean_captions(captions), str(obj["split"]), label


def read_manifest_folder(data_dir: Path) -> list[Record]:
    """A manifest file, or a folder holding manifest.jsonl (the demo data's layout)."""
    if data_dir.is_file():
        return read_manifest(data_dir)
    require_dir(data_dir, "manifest.jsonl")
    return read_manifest(data_dir / "manifest.jsonl")


register("manifest", read_manifest_folder, "expected manifest.jsonl or a folder holding it")
register("demo", read_manifest_folder,
         "expected the demo folder with manifest.jsonl (make it with "
         "`python -m keras_instance.cli.demo_data --out data/demo`)")
