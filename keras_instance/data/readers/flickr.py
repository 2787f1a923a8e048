"""Flickr8k (official files) and Flickr30k (the authors' split or Karpathy's)."""
from __future__ import annotations

import collections
import os
from pathlib import Path

from keras_instance.data.readers.files import read_lines, require_dir, require_file, with_labels
from keras_instance.data.readers.karpathy import KARPATHY_FORMAT, read_karpathy_json
from keras_instance.data.readers.registry import register
from keras_instance.data.records import DatasetError, Record

FLICKR8K_TOKENS = "Flickr8k.token.txt"
FLICKR8K_SPLIT_FILES = (("train", "Flickr_8k.trainImages.txt"),
                        ("val", "Flickr_8k.devImages.txt"),
                        ("test", "Flickr_8k.testImages.txt"))
FLICKR8K_IMAGE_DIRS = ("Flicker8k_Dataset", "Flickr8k_Dataset")


def read_flickr8k(data_dir: str | os.PathLike) -> list[Record]:
    """Flickr8k in its original layout: token file, three split lists, one image folder.

    Images in no split list are dropped (91 in the official release); the dev list is 'val'.
    Records come in split-list order (train, dev, test); captions are ordered by their #N.
    """
    root = require_dir(Path(data_dir), f"{FLICKR8K_TOKENS}, the Flickr_8k.*Images.txt split "
                                        f"lists and a {FLICKR8K_IMAGE_DIRS[0]}/ image folder")
    image_dir = _flickr8k_image_dir(root)
    captions = _read_flickr8k_tokens(
        require_file(root / FLICKR8K_TOKENS, "the Flickr8k caption file "
                      "(lines 'IMAGE.jpg#N<TAB>caption')"))
    rows = []
    for split, name in _flickr8k_split_lists(root):
        rows.append((name, str(image_dir / name),
                     [c for _, c in sorted(captions.get(name, {}).items())], split))
    return with_labels(rows)


def _flickr8k_image_dir(root: Path) -> Path:
    for name in FLICKR8K_IMAGE_DIRS:
        if (root / name).is_dir():
            return root / name
    folders = " or ".join(n + "/" for n in FLICKR8K_IMAGE_DIRS)
    raise DatasetError(f"No Flickr8k image folder in {root}: expected {folders} holding the .jpg "
                       "files.")


def _read_flickr8k_tokens(path: Path) -> dict[str, dict[int, str]]:
    """{image file name: {N: caption}} from 'IMAGE.jpg#N<TAB>caption' lines (Flickr8k/30k)."""
    captions: dict[str, dict[int, str]] = collections.defaultdict(dict)
    for number, line in read_lines(path):
        if not line.strip():
            continue
        key, tab, caption = line.partition("\t")
        name, hash_, n = key.strip().rpartition("#")
        if not tab or not hash_ or not name or not n.isdigit():
            raise DatasetError(f"{path}, line {number}: expected 'IMAGE.jpg#N<TAB>caption' "
                               f"(N a number), got {line[:80]!r}.")
        if int(n) in captions[name]:
            raise DatasetError(f"{path}, line {number}: caption #{n} of {name} appears twice; "
                               f"remove the duplicate line.")
        captions[name][int(n)] = caption.strip()
    return captions


def _flickr8k_split_lists(root: Path) -> list[tuple[str, str]]:
    """[(split, image name)] from the three lists; an image in two lists is an error."""
    seen: dict[str, str] = {}
    out = []
    for split, file_name in FLICKR8K_SPLIT_FILES:
        path = require_file(root / file_name, f"the Flickr8k {split} split list "
                             f"(one image file name per line)")
        for number, line in read_lines(path):
            name = line.strip()
            if not name:
                continue
            if name in seen:
                raise DatasetError(f"{path}, line {number}: {name} is already listed in "
                                   f"{seen[name]}; an image must be in exactly one split list.")
            seen[name] = file_name
            out.append((split, name))
    return out




FLICKR30K_JSON = "dataset_flickr30k.json"
FLICKR30K_TOKENS = "results_20130124.token"
FLICKR30K_IMAGE_DIR = "flickr30k-images"
FLICKR30K_SPLITS = ("authors", "karpathy")
FLICKR30K_LIST_FILES = (("val", "Flickr_8k.devImages.txt"), ("test", "Flickr_8k.testImages.txt"))
FLICKR30K_LIST_DIRS = (".", "Flickr8k_text")   # where, under data_dir, the Flickr8k lists may be
_FLICKR8K_NAME_TAIL = len("_693b08cb0e.jpg")     # Flickr8k name = photo id + this tail


def read_flickr30k(data_dir: str | os.PathLike, split: str = "authors") -> list[Record]:
    """Flickr30k with the paper authors' split (default) or Karpathy's.

    ``split='authors'`` (their split_Flickr30k.m): an image is 'val' or 'test' when its Flickr
    photo id (file name without '.jpg') is the id of an image in Flickr8k's
    Flickr_8k.devImages.txt or Flickr_8k.testImages.txt (a Flickr8k name is the id plus
    '_<10 characters>.jpg'); an id in both lists is 'test'; list ids that are not Flickr30k
    images are ignored; every other image is 'train'. On the full Flickr30k (31,783 images):
    29,783 / 1,000 / 1,000. The lists are looked for in data_dir, then data_dir/Flickr8k_text/.
    Images and captions come from the Flickr30k release's results_20130124.token with
    flickr30k-images/ when that file is in data_dir (records in token-file order), else from
    dataset_flickr30k.json, which must then list every .jpg of its image folder.

    ``split='karpathy'``: dataset_flickr30k.json with the splits it gives (29,000 / 1,014 /
    1,000), read by ``read_karpathy_json``.
    """
    if split not in FLICKR30K_SPLITS:
        raise ValueError(f"unknown Flickr30k split {split!r}; expected one of "
                         f"{', '.join(FLICKR30K_SPLITS)}")
    root = require_dir(Path(data_dir), f"{FLICKR30K_TOKENS} or {FLICKR30K_JSON}, and the "
                                        f"{FLICKR30K_IMAGE_DIR}/ images")
    if split == "karpathy":
        return read_karpathy_json(require_file(
            root / FLICKR30K_JSON, f"Karpathy's Flickr30k split file ({KARPATHY_FORMAT})"))
    lists = _flickr30k_list_ids(root)
    rows = _flickr30k_images(root)
    photo_ids = {_flickr30k_photo_id(image_id) for image_id, _, _ in rows}
    for path, ids in lists.values():
        if not ids & photo_ids:
            raise DatasetError(f"{path}: none of its {len(ids)} photo ids is a Flickr30k image "
                               f"in {root}; expected the Flickr8k list of that name (names "
                               f"like 1000268201_693b08cb0e.jpg), whose photos are in Flickr30k.")
    val_ids, test_ids = lists["val"][1], lists["test"][1]

    def split_of(image_id: str) -> str:
        photo = _flickr30k_photo_id(image_id)
        return "test" if photo in test_ids else "val" if photo in val_ids else "train"

    return with_labels([(i, p, c, split_of(i)) for i, p, c in rows])


def _flickr30k_photo_id(image_id: str) -> str:
    name = image_id.rpartition("/")[2]
    return name[:-4] if name.lower().endswith(".jpg") else name


def _flickr30k_list_ids(root: Path) -> dict[str, tuple[Path, set[str]]]:
    """{'val'|'test': (list file, Flickr photo ids in it)} from Flickr8k's dev and test lists."""
    found = {}
    for split, file_name in FLICKR30K_LIST_FILES:
        found[split] = next((root / d / file_name for d in FLICKR30K_LIST_DIRS
                             if (root / d / file_name).is_file()), None)
    missing = [name for split, name in FLICKR30K_LIST_FILES if found[split] is None]
    if missing:
        where = " or ".join(str(root / d) for d in FLICKR30K_LIST_DIRS)
        raise DatasetError(
            f"The authors' Flickr30k split (dataset 'flickr30k') takes val and test from "
            f"Flickr8k's {FLICKR30K_LIST_FILES[0][1]} and {FLICKR30K_LIST_FILES[1][1]}; "
            f"{' and '.join(missing)} not found in {where}. Both files ship with Flickr8k "
            f"(Flickr8k_text.zip, next to Flickr8k.token.txt): copy or link them into {root}, "
            f"or use dataset 'flickr30k_karpathy' for Karpathy's split from {FLICKR30K_JSON}.")
    out = {}
    for split, path in found.items():
        ids = set()
        for number, line in read_lines(path):
            name = line.strip()
            if not name:
                continue
            if (len(name) <= _FLICKR8K_NAME_TAIL or not name.endswith(".jpg")
                    or name[-_FLICKR8K_NAME_TAIL] != "_"):
                raise DatasetError(f"{path}, line {number}: expected a Flickr8k image name "
                                   f"'<photo id>_<10 characters>.jpg' such as "
                                   f"1000268201_693b08cb0e.jpg, got {name[:80]!r}.")
            ids.add(name[:-_FLICKR8K_NAME_TAIL])
        out[split] = (path, ids)
    return out


def _flickr30k_images(root: Path) -> list[tuple[str, str, list[str]]]:
    """[(image_id, image path, captions)] from the token file, else from Karpathy's JSON."""
    tokens = root / FLICKR30K_TOKENS
    if tokens.is_file():
        image_dir = root / FLICKR30K_IMAGE_DIR
        return [(name, str(image_dir / name), [c for _, c in sorted(caps.items())])
                for name, caps in _read_flickr8k_tokens(tokens).items()]
    path = root / FLICKR30K_JSON
    if not path.is_file():
        raise DatasetError(f"No Flickr30k captions in {root}: expected {FLICKR30K_TOKENS} (the "
                           f"Flickr30k release's 'IMAGE.jpg#N<TAB>caption' file, with the images "
                           f"in {FLICKR30K_IMAGE_DIR}/) or Karpathy's {FLICKR30K_JSON}.")
    records = read_karpathy_json(path)
    _require_every_image_listed(path, records)
    return [(r.image_id, r.image_path, list(r.captions)) for r in records]


def _require_every_image_listed(path: Path, records: list[Record]) -> None:
    """The authors' split trains on every Flickr30k image: refuse a JSON that lacks some."""
    listed = {r.image_path for r in records}
    unlisted = []
    for folder in sorted({Path(r.image_path).parent for r in records}):
        if folder.is_dir():
            unlisted += sorted(str(folder / e.name) for e in os.scandir(folder)
                               if e.name.lower().endswith(".jpg")
                               and str(folder / e.name) not in listed)
    if unlisted:
        shown = ", ".join(Path(p).name for p in unlisted[:5])
        raise DatasetError(
            f"{path} lists {len(records)} images, but their folder holds {len(unlisted)} more "
            f".jpg files ({shown}{', ...' if len(unlisted) > 5 else ''}) that it has no "
            f"captions for; the authors' split trains on every Flickr30k image (29,783 of "
            f"31,783). Put the Flickr30k release's {FLICKR30K_TOKENS} (captions of all images) "
            f"in {path.parent}, or use dataset 'flickr30k_karpathy' for Karpathy's split.")


def _read_flickr30k_authors(data_dir: Path) -> list[Record]:
    return read_flickr30k(data_dir, split="authors")


def _read_flickr30k_karpathy(data_dir: Path) -> list[Record]:
    return read_flickr30k(data_dir, split="karpathy")


register("flickr8k", read_flickr8k,
         f"expected a folder with {FLICKR8K_TOKENS}, the Flickr_8k.*Images.txt lists "
         f"and {FLICKR8K_IMAGE_DIRS[0]}/")
register("flickr30k", _read_flickr30k_authors,
         f"expected a folder with {FLICKR30K_TOKENS} and {FLICKR30K_IMAGE_DIR}/ (or "
         f"{FLICKR30K_JSON} and its images) plus Flickr8k's Flickr_8k.devImages.txt and "
         f"Flickr_8k.testImages.txt (the authors' split)")
register("flickr30k_karpathy", _read_flickr30k_karpathy,
         f"expected a folder with {FLICKR30K_JSON} and its images (Karpathy's split)")
