"""Karpathy's split JSON (dataset_flickr8k/30k/coco.json): the published retrieval splits."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from keras_instance.data.readers.files import (
    clean_captions,
    load_json,
    pick_root,
    require_dir,
    with_labels,
)
from keras_instance.data.readers.registry import register
from keras_instance.data.records import DatasetError, Record

KARPATHY_IMAGE_DIRS = ("images", "Flicker8k_Dataset", "Flickr8k_Dataset", "flickr30k-images")
KARPATHY_FORMAT = ('Karpathy JSON: {"images": [{"filename": ..., "split": ..., '
                    '"sentences": [{"raw": ..., "tokens": [...]}, ...]}, ...]}')


def read_karpathy_json(path: str | os.PathLike, image_root: str | os.PathLike | None = None,
                       restval_to_train: bool = True) -> list[Record]:
    """Karpathy's split JSON (dataset_flickr8k/30k/coco.json), the published retrieval splits.

    Image path = ``<root>/<filepath>/<filename>`` (``filepath`` is optional; COCO has
    'train2014'/'val2014'). Without ``image_root``, the root is the first of: the JSON's folder,
    then its subfolders images/, Flicker8k_Dataset/, Flickr8k_Dataset/, flickr30k-images/, that
    holds any of the first images. image_id = ``<filepath>/<filename>`` (or just the filename).
    'restval' becomes 'train' when ``restval_to_train``, else those images are dropped.
    """
    path = Path(path)
    data = load_json(path, KARPATHY_FORMAT)
    images = data.get("images") if isinstance(data, dict) else None
    if not isinstance(images, list):
        raise DatasetError(f"{path}: no 'images' list at the top level; expected "
                           f"{KARPATHY_FORMAT}.")
    rows = []
    for index, entry in enumerate(images):
        rel, split, captions = _karpathy_entry(path, index, entry)
        if split == "restval":
            if not restval_to_train:
                continue
            split = "train"
        rows.append((rel, rel, captions, split))
    root = Path(image_root) if image_root is not None else pick_root(
        [path.parent] + [path.parent / d for d in KARPATHY_IMAGE_DIRS], [r[1] for r in rows])
    return with_labels([(i, str(root / rel), c, s) for i, rel, c, s in rows])


def _karpathy_entry(path: Path, index: int, entry: Any) -> tuple[str, str, list[str]]:
    """(relative image path, split, captions) of images[index], or a DatasetError saying why."""
    where = f"{path}: images[{index}]"
    if not isinstance(entry, dict):
        raise DatasetError(f"{where} is a {type(entry).__name__}, expected an object; "
                           f"expected {KARPATHY_FORMAT}.")
    missing = [k for k in ("filename", "split", "sentences") if k not in entry]
    if missing:
        raise DatasetError(f"{where} (filename={entry.get('filename')!r}) lacks "
                           f"{', '.join(repr(k) for k in missing)}; expected {KARPATHY_FORMAT}.")
    if not isinstance(entry["sentences"], list):
        raise DatasetError(f"{where} ({entry['filename']}): 'sentences' must be a list of "
                           f"{{'raw': ..., 'tokens': [...]}} objects.")
    captions = []
    for k, sentence in enumerate(entry["sentences"]):
        if isinstance(sentence, dict) and isinstance(sentence.get("raw"), str):
            captions.append(sentence["raw"])
        elif isinstance(sentence, dict) and isinstance(sentence.get("tokens"), list):
            captions.append(" ".join(map(str, sentence["tokens"])))
        else:
            raise DatasetError(f"{where} ({entry['filename']}): sentences[{k}] has neither a "
                               f"'raw' string nor a 'tokens' list.")
    rel = "/".join(p for p in (entry.get("filepath") or "", entry["filename"]) if p)
    return rel, str(entry["split"]), clean_captions(captions)


def read_karpathy_folder(data_dir: Path) -> list[Record]:
    """A folder holding exactly one dataset_*.json (the "karpathy" dataset name)."""
    require_dir(data_dir, "one dataset_*.json file in Karpathy's layout")
    found = sorted(data_dir.glob("dataset_*.json"))
    if len(found) != 1:
        names = ", ".join(p.name for p in found) or "none"
        raise DatasetError(f"{data_dir}: expected exactly one dataset_*.json (Karpathy split), "
                           f"found {names}; pass the file to read_karpathy_json directly.")
    return read_karpathy_json(found[0])


register("karpathy", read_karpathy_folder, "expected a folder with one dataset_*.json")
