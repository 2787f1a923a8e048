"""The one in-memory form of every dataset, and the checks that keep broken data out of training.

Instance loss treats each training image (or person, for CUHK-PEDES) as its own class, so a
missing image or an empty caption is not noise: it is a class with a wrong sample. The checks
here therefore collect every problem and fail once, with enough detail to fix the files.
"""
from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import os
from typing import Iterable, Sequence

from PIL import Image, UnidentifiedImageError

SPLITS = ("train", "val", "test")
_SHOW = 5          # offenders listed per problem kind
_IO_THREADS = 16   # image header checks are I/O bound; threads hide file-system latency


@dataclasses.dataclass(frozen=True)
class Record:
    """One image with its captions.

    ``label`` groups records of one class: one per image, or the person id for CUHK-PEDES.
    """
    image_id: str
    image_path: str
    captions: tuple[str, ...]
    label: int
    split: str
    origin: str = dataclasses.field(default="", compare=False)  # "file, line N" where known

    def __post_init__(self):
        # Readers build captions from lists; a frozen record must hold an immutable tuple.
        if not isinstance(self.captions, tuple):
            object.__setattr__(self, "captions", tuple(self.captions))


class DatasetError(ValueError):
    """The dataset on disk cannot be used as it is; the message says where and what to fix."""


def split_records(records: Iterable[Record], split: str) -> list[Record]:
    """Records of one split ('train', 'val' or 'test'), in their original order."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    return [r for r in records if r.split == split]


def validate_records(records: Sequence[Record], source: str, check_images: bool = True) -> None:
    """Raise one DatasetError listing every problem in ``records`` read from ``source``.

    Checks: empty dataset, no 'train' split, unknown split names, duplicate image ids, records
    without captions, empty captions, and (with ``check_images``) missing, zero-byte or
    unidentifiable image files. Images are only opened far enough to read their header.
    """
    records = list(records)
    if not records:
        raise DatasetError(
            f"Dataset {source} has no records. Check that the path points at the dataset and "
            f"that its split lists / annotations are not empty.")
    problems = _caption_and_split_problems(records)
    problems.update(_duplicate_id_problems(records))
    if check_images:
        problems.update(_image_problems(records))
    problems = {kind: found for kind, found in problems.items() if found}
    no_train = not any(r.split == "train" for r in records)
    if problems or no_train:
        raise DatasetError(_format_report(source, len(records), problems, no_train))


def _caption_and_split_problems(records: list[Record]) -> dict[str, list[str]]:
    no_captions, empty, bad_split = [], [], []
    for r in records:
        if not r.captions:
            no_captions.append(_who(r))
        for i, caption in enumerate(r.captions):
            if not isinstance(caption, str) or not caption.strip():
                empty.append(f"{_who(r)} caption #{i} = {caption!r}")
        if r.split not in SPLITS:
            bad_split.append(f"{_who(r)} split={r.split!r}")
    return {
        "record without captions": no_captions,
        "empty or whitespace-only caption": empty,
        f"unknown split name (expected {'/'.join(SPLITS)})": bad_split,
    }


def _duplicate_id_problems(records: list[Record]) -> dict[str, list[str]]:
    by_id = collections.defaultdict(list)
    for r in records:
        by_id[r.image_id].append(r.image_path)
    dups = [f"id={image_id!r} used {len(paths)} times, paths: {', '.join(paths[:3])}"
            for image_id, paths in by_id.items() if len(paths) > 1]
    return {"duplicate image_id": dups}


def _image_problems(records: list[Record]) -> dict[str, list[str]]:
    paths = list(dict.fromkeys(r.image_path for r in records))
    with concurrent.futures.ThreadPoolExecutor(_IO_THREADS) as pool:
        status = dict(zip(paths, pool.map(_image_status, paths)))
    found = collections.defaultdict(list)
    for r in records:
        problem = status[r.image_path]
        if problem:
            kind, detail = problem
            found[kind].append(f"{_who(r)}{detail}")
    return {kind: found[kind] for kind in
            ("missing image file", "zero-byte image file", "unreadable image file")}


def _image_status(path: str) -> tuple[str, str] | None:
    """None when the file exists and PIL recognises its header; else (kind, detail)."""
    try:
        size = os.path.getsize(path)
    except OSError:
        return ("missing image file", "")
    if not os.path.isfile(path):
        return ("missing image file", " (not a regular file)")
    if size == 0:
        return ("zero-byte image file", "")
    try:
        with Image.open(path):   # lazy: reads the header only, no pixel decoding
            return None
    except (UnidentifiedImageError, OSError, ValueError) as e:
        return ("unreadable image file", f" ({type(e).__name__}: {e})")


def _who(r: Record) -> str:
    where = f" ({r.origin})" if r.origin else ""
    return f"id={r.image_id!r} path={r.image_path}{where}"


def _format_report(source: str, total: int, problems: dict[str, list[str]],
                   no_train: bool) -> str:
    n_kinds = len(problems) + int(no_train)
    lines = [f"Dataset {source} ({total} records) has {n_kinds} kind(s) of problem:"]
    for kind, offenders in problems.items():
        lines.append(f"  - {kind}: {len(offenders)}")
        for who in offenders[:_SHOW]:
            lines.append(f"      {who}")
        if len(offenders) > _SHOW:
            lines.append(f"      ... and {len(offenders) - _SHOW} more")
    if no_train:
        lines.append("  - no record has split 'train': there is nothing to train on "
                     "(check the split lists / 'split' fields)")
    lines.append(f"Fix or remove these entries in {source} (or restore the missing image "
                 f"files) and run again; training on a broken dataset is refused.")
    return "\n".join(lines)
