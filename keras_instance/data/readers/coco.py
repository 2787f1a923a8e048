"""MSCOCO 2014: Karpathy's dataset_coco.json, or the official caption files (a 5k/5k split)."""
from __future__ import annotations

import os
from pathlib import Path

from keras_instance.data.readers.files import clean_captions, load_json, require_dir, with_labels
from keras_instance.data.readers.karpathy import read_karpathy_json
from keras_instance.data.readers.registry import register
from keras_instance.data.records import DatasetError, Record

COCO_VAL_SIZE = 5000
COCO_TEST_SIZE = 5000
_COCO_FORMAT = ('COCO captions JSON: {"images": [{"id", "file_name"}], '
                '"annotations": [{"id", "image_id", "caption"}]}')


def read_coco_captions(data_dir: str | os.PathLike) -> list[Record]:
    """MSCOCO 2014 from the official caption files, with a reproducible 5k/5k split.

    Expects annotations/captions_{train,val}2014.json and images in train2014/ and val2014/.
    Split: every train2014 image is 'train'; val2014 images sorted by image id: the first 5000
    are 'val', the next 5000 'test', the rest 'train' (113,287 training images when val2014 has
    its 40,504). This is NOT Karpathy's exact published split: for numbers comparable with
    papers, use his dataset_coco.json (``read_karpathy_json``), which ``read_dataset('coco')``
    prefers when it is present. Captions are in annotation-id order; image_id = 'val2014/<file>'.
    """
    root = require_dir(Path(data_dir),
                        "annotations/captions_train2014.json, annotations/captions_val2014.json, "
                        "train2014/ and val2014/")
    rows = []
    for part in ("train2014", "val2014"):
        images = _read_coco_file(root / "annotations" / f"captions_{part}.json")
        for rank, (image_id, file_name, captions) in enumerate(images):
            if part == "train2014" or rank >= COCO_VAL_SIZE + COCO_TEST_SIZE:
                split = "train"
            else:
                split = "val" if rank < COCO_VAL_SIZE else "test"
            rel = f"{part}/{file_name}"
            rows.append((rel, str(root / rel), captions, split))
    return with_labels(rows)


def _read_coco_file(path: Path) -> list[tuple[int, str, list[str]]]:
    """[(image id, file name, captions)] sorted by image id."""
    data = load_json(path, _COCO_FORMAT)
    try:
        names = {int(im["id"]): str(im["file_name"]) for im in data["images"]}
        captions: dict[int, list[tuple[int, str]]] = {i: [] for i in names}
        orphans = []
        for ann in data["annotations"]:
            image_id = int(ann["image_id"])
            if image_id not in captions:
                orphans.append(ann.get("id"))
                continue
            captions[image_id].append((int(ann["id"]), str(ann["caption"])))
    except (KeyError, TypeError, ValueError) as e:
        raise DatasetError(f"{path}: missing or malformed field ({type(e).__name__}: {e}); "
                           f"expected {_COCO_FORMAT}.") from None
    if orphans:
        raise DatasetError(f"{path}: {len(orphans)} annotation(s) refer to image ids not in "
                           f"'images' (annotation ids {orphans[:5]}); fix or remove them.")
    return [(i, names[i], clean_captions([c for _, c in sorted(captions[i])]))
            for i in sorted(names)]


def _read_coco(data_dir: Path) -> list[Record]:
    karpathy = data_dir / "dataset_coco.json"
    return read_karpathy_json(karpathy) if karpathy.is_file() else read_coco_captions(data_dir)


register("coco", _read_coco,
         "expected a folder with dataset_coco.json, or annotations/captions_*2014.json with "
         "train2014/ and val2014/")
