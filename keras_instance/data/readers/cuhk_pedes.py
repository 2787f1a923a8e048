"""CUHK-PEDES from reid_raw.json: one class per person."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from keras_instance.data.readers.files import clean_captions, load_json, pick_root, require_dir
from keras_instance.data.readers.registry import register
from keras_instance.data.records import DatasetError, Record

CUHK_ID_SPLITS = (("train", 1, 11003), ("val", 11004, 12003), ("test", 12004, 13003))
_CUHK_FORMAT = ('CUHK-PEDES reid_raw.json: a list of {"file_path": ..., "captions": [...], '
                '"id": person id, optional "split"}')


def read_cuhk_pedes(data_dir: str | os.PathLike) -> list[Record]:
    """CUHK-PEDES from reid_raw.json; label = person id, image_id = file_path.

    Images are read from <data_dir>/imgs/<file_path>, or <data_dir>/<file_path> when the imgs/
    folder does not hold them. Split: the entry's 'split' field ('train'/'val'/'test') when
    present; otherwise by person id: 1-11003 train, 11004-12003 val, 12004-13003 test (the
    standard 11,003/1,000/1,000-person split).
    """
    root = require_dir(Path(data_dir), "reid_raw.json and an imgs/ folder")
    path = root / "reid_raw.json"
    entries = load_json(path, _CUHK_FORMAT)
    if not isinstance(entries, list):
        raise DatasetError(f"{path}: top level is a {type(entries).__name__}; expected "
                           f"{_CUHK_FORMAT}.")
    parsed = [_cuhk_entry(path, k, e) for k, e in enumerate(entries)]
    image_root = pick_root([root / "imgs", root], [p for p, _, _, _ in parsed])
    return [Record(image_id=rel, image_path=str(image_root / rel), captions=tuple(caps),
                   label=pid, split=split) for rel, caps, pid, split in parsed]


def _cuhk_entry(path: Path, index: int, entry: Any) -> tuple[str, list[str], int, str]:
    where = f"{path}: entry [{index}]"
    if not isinstance(entry, dict) or any(k not in entry for k in ("file_path", "captions", "id")):
        raise DatasetError(f"{where} lacks 'file_path', 'captions' or 'id' "
                           f"(got {str(entry)[:80]}); expected {_CUHK_FORMAT}.")
    captions = entry["captions"]
    if not isinstance(captions, list) or not all(isinstance(c, str) for c in captions):
        raise DatasetError(f"{where} ({entry['file_path']}): 'captions' must be a list of strings.")
    try:
        pid = int(entry["id"])
    except (TypeError, ValueError):
        raise DatasetError(f"{where} ({entry['file_path']}): 'id' must be an integer person id, "
                           f"got {entry['id']!r}.") from None
    split = entry.get("split") or _cuhk_split_by_id(pid)
    if split is None:
        raise DatasetError(f"{where} ({entry['file_path']}): person id {pid} is outside 1-13003 "
                           f"and the entry has no 'split'; add a 'split' field.")
    return str(entry["file_path"]), clean_captions(captions), pid, str(split)


def _cuhk_split_by_id(pid: int) -> str | None:
    for split, low, high in CUHK_ID_SPLITS:
        if low <= pid <= high:
            return split
    return None


register("cuhk_pedes", read_cuhk_pedes, "expected a folder with reid_raw.json and imgs/")
