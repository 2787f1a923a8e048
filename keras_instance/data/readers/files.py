"""File helpers shared by the readers: each failure is a DatasetError naming the file (and
line) and what was expected there."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

from keras_instance.data.records import DatasetError, Record

PROBE = 20   # records looked at when choosing which folder holds the images

def require_dir(path: Path, expects: str) -> Path:
    if not path.is_dir():
        raise DatasetError(f"Dataset folder {path} does not exist (or is not a folder); "
                           f"expected it to contain {expects}.")
    return path


def require_file(path: Path, expects: str) -> Path:
    if not path.is_file():
        raise DatasetError(f"Expected {expects} at {path}, but that file does not exist.")
    return path


def read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, line without newline); undecodable text is a DatasetError."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        line = path.read_bytes()[:e.start].count(b"\n") + 1
        raise DatasetError(f"{path}, line {line}: not valid UTF-8 text ({e.reason}); "
                           f"re-save the file as UTF-8.") from None
    for number, line in enumerate(text.splitlines(), start=1):
        yield number, line


def load_json(path: Path, expects: str) -> Any:
    require_file(path, expects)
    try:
        with path.open(encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise DatasetError(f"{path}, line {e.lineno} column {e.colno}: invalid JSON ({e.msg}); "
                           f"expected {expects}.") from None
    except UnicodeDecodeError as e:
        raise DatasetError(f"{path}: not valid UTF-8 ({e.reason}); expected {expects}.") from None


def pick_root(candidates: list[Path], relpaths: list[str]) -> Path:
    """First candidate folder holding any of the first few images; else the first candidate.

    One root for the whole dataset keeps paths predictable; if none matches, the paths point at
    the first candidate and validation reports the images as missing, naming that folder.
    """
    sample = relpaths[:PROBE]
    for root in candidates:
        if any((root / rel).is_file() for rel in sample):
            return root
    return candidates[0]


def with_labels(rows: list[tuple[str, str, list[str], str]]) -> list[Record]:
    """(image_id, path, captions, split) rows -> Records labelled by their index."""
    return [Record(image_id=i, image_path=p, captions=tuple(c), label=n, split=s)
            for n, (i, p, c, s) in enumerate(rows)]


def clean_captions(captions: list[str]) -> list[str]:
    # Strip newlines/padding; whitespace-only captions become '' and validation flags them.
    return [c.strip() for c in captions]
