"""Readers from the datasets' own file layouts into ``list[Record]``.

Each reader fails with a DatasetError naming the file (and line, where there are lines) and the
format it expected, instead of guessing. ``read_dataset`` picks the reader by name and, by
default, validates the result so broken data never reaches training.

Labels: one unique int per image (its index in the returned list), except CUHK-PEDES, where the
label is the person id so that all images of one person form one class.
"""
from __future__ import annotations

import collections
import json
import os
from pathlib import Path
from typing import Any, Callable, Iterator

from keras_instance.data.records import DatasetError, Record, validate_records

_PROBE = 20   # records looked at when choosing which folder holds the images


# ----------------------------------------------------------------------------- file helpers

def _require_dir(path: Path, expects: str) -> Path:
    if not path.is_dir():
        raise DatasetError(f"Dataset folder {path} does not exist (or is not a folder); "
                           f"expected it to contain {expects}.")
    return path


def _require_file(path: Path, expects: str) -> Path:
    if not path.is_file():
        raise DatasetError(f"Expected {expects} at {path}, but that file does not exist.")
    return path


def _read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, line without newline); undecodable text is a DatasetError."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        line = path.read_bytes()[:e.start].count(b"\n") + 1
        raise DatasetError(f"{path}, line {line}: not valid UTF-8 text ({e.reason}); "
                           f"re-save the file as UTF-8.") from None
    for number, line in enumerate(text.splitlines(), start=1):
        yield number, line


def _load_json(path: Path, expects: str) -> Any:
    _require_file(path, expects)
    try:
        with path.open(encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise DatasetError(f"{path}, line {e.lineno} column {e.colno}: invalid JSON ({e.msg}); "
                           f"expected {expects}.") from None
    except UnicodeDecodeError as e:
        raise DatasetError(f"{path}: not valid UTF-8 ({e.reason}); expected {expects}.") from None


def _pick_root(candidates: list[Path], relpaths: list[str]) -> Path:
    """First candidate folder holding any of the first few images; else the first candidate.

    One root for the whole dataset keeps paths predictable; if none matches, the paths point at
    the first candidate and validation reports the images as missing, naming that folder.
    """
    sample = relpaths[:_PROBE]
    for root in candidates:
        if any((root / rel).is_file() for rel in sample):
            return root
    return candidates[0]


def _with_labels(rows: list[tuple[str, str, list[str], str]]) -> list[Record]:
    """(image_id, path, captions, split) rows -> Records labelled by their index."""
    return [Record(image_id=i, image_path=p, captions=tuple(c), label=n, split=s)
            for n, (i, p, c, s) in enumerate(rows)]


def _clean(captions: list[str]) -> list[str]:
    # Strip newlines/padding; whitespace-only captions become '' and validation flags them.
    return [c.strip() for c in captions]


# ----------------------------------------------------------------------------- Flickr8k

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
    root = _require_dir(Path(data_dir), f"{FLICKR8K_TOKENS}, the Flickr_8k.*Images.txt split "
                                        f"lists and a {FLICKR8K_IMAGE_DIRS[0]}/ image folder")
    image_dir = _flickr8k_image_dir(root)
    captions = _read_flickr8k_tokens(
        _require_file(root / FLICKR8K_TOKENS, "the Flickr8k caption file "
                      "(lines 'IMAGE.jpg#N<TAB>caption')"))
    rows = []
    for split, name in _flickr8k_split_lists(root):
        rows.append((name, str(image_dir / name),
                     [c for _, c in sorted(captions.get(name, {}).items())], split))
    return _with_labels(rows)


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
    for number, line in _read_lines(path):
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
        path = _require_file(root / file_name, f"the Flickr8k {split} split list "
                             f"(one image file name per line)")
        for number, line in _read_lines(path):
            name = line.strip()
            if not name:
                continue
            if name in seen:
                raise DatasetError(f"{path}, line {number}: {name} is already listed in "
                                   f"{seen[name]}; an image must be in exactly one split list.")
            seen[name] = file_name
            out.append((split, name))
    return out


# ----------------------------------------------------------------------------- Karpathy JSON

KARPATHY_IMAGE_DIRS = ("images", "Flicker8k_Dataset", "Flickr8k_Dataset", "flickr30k-images")
_KARPATHY_FORMAT = ('Karpathy JSON: {"images": [{"filename": ..., "split": ..., '
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
    data = _load_json(path, _KARPATHY_FORMAT)
    images = data.get("images") if isinstance(data, dict) else None
    if not isinstance(images, list):
        raise DatasetError(f"{path}: no 'images' list at the top level; expected "
                           f"{_KARPATHY_FORMAT}.")
    rows = []
    for index, entry in enumerate(images):
        rel, split, captions = _karpathy_entry(path, index, entry)
        if split == "restval":
            if not restval_to_train:
                continue
            split = "train"
        rows.append((rel, rel, captions, split))
    root = Path(image_root) if image_root is not None else _pick_root(
        [path.parent] + [path.parent / d for d in KARPATHY_IMAGE_DIRS], [r[1] for r in rows])
    return _with_labels([(i, str(root / rel), c, s) for i, rel, c, s in rows])


def _karpathy_entry(path: Path, index: int, entry: Any) -> tuple[str, str, list[str]]:
    """(relative image path, split, captions) of images[index], or a DatasetError saying why."""
    where = f"{path}: images[{index}]"
    if not isinstance(entry, dict):
        raise DatasetError(f"{where} is a {type(entry).__name__}, expected an object; "
                           f"expected {_KARPATHY_FORMAT}.")
    missing = [k for k in ("filename", "split", "sentences") if k not in entry]
    if missing:
        raise DatasetError(f"{where} (filename={entry.get('filename')!r}) lacks "
                           f"{', '.join(repr(k) for k in missing)}; expected {_KARPATHY_FORMAT}.")
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
    return rel, str(entry["split"]), _clean(captions)


# ----------------------------------------------------------------------------- Flickr30k

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
    root = _require_dir(Path(data_dir), f"{FLICKR30K_TOKENS} or {FLICKR30K_JSON}, and the "
                                        f"{FLICKR30K_IMAGE_DIR}/ images")
    if split == "karpathy":
        return read_karpathy_json(_require_file(
            root / FLICKR30K_JSON, f"Karpathy's Flickr30k split file ({_KARPATHY_FORMAT})"))
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

    return _with_labels([(i, p, c, split_of(i)) for i, p, c in rows])


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
        for number, line in _read_lines(path):
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


# ----------------------------------------------------------------------------- MSCOCO

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
    root = _require_dir(Path(data_dir),
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
    return _with_labels(rows)


def _read_coco_file(path: Path) -> list[tuple[int, str, list[str]]]:
    """[(image id, file name, captions)] sorted by image id."""
    data = _load_json(path, _COCO_FORMAT)
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
    return [(i, names[i], _clean([c for _, c in sorted(captions[i])])) for i in sorted(names)]


# ----------------------------------------------------------------------------- CUHK-PEDES

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
    root = _require_dir(Path(data_dir), "reid_raw.json and an imgs/ folder")
    path = root / "reid_raw.json"
    entries = _load_json(path, _CUHK_FORMAT)
    if not isinstance(entries, list):
        raise DatasetError(f"{path}: top level is a {type(entries).__name__}; expected "
                           f"{_CUHK_FORMAT}.")
    parsed = [_cuhk_entry(path, k, e) for k, e in enumerate(entries)]
    image_root = _pick_root([root / "imgs", root], [p for p, _, _, _ in parsed])
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
    return str(entry["file_path"]), _clean(captions), pid, str(split)


def _cuhk_split_by_id(pid: int) -> str | None:
    for split, low, high in CUHK_ID_SPLITS:
        if low <= pid <= high:
            return split
    return None


# ----------------------------------------------------------------------------- manifest

_MANIFEST_FORMAT = ('one JSON object per line: {"image": "path", "captions": ["...", ...], '
                    '"split": "train|val|test", optional "id": "...", optional "label": int}')


def read_manifest(path: str | os.PathLike) -> list[Record]:
    """A JSON-Lines manifest: the simplest way to bring your own data.

    Relative image paths are relative to the manifest's folder; blank lines are skipped.
    'id' defaults to the image path as written; 'label' defaults to a unique int per line (the
    record's index, shifted past the largest explicit label when some lines give one).
    """
    path = _require_file(Path(path), f"a JSON-Lines manifest ({_MANIFEST_FORMAT})")
    rows = [(number, *_manifest_line(path, number, line))
            for number, line in _read_lines(path) if line.strip()]
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
    return str(obj.get("id", image)), image_path, _clean(captions), str(obj["split"]), label


# ----------------------------------------------------------------------------- dispatch

def _read_flickr30k(data_dir: Path) -> list[Record]:
    return read_flickr30k(data_dir, split="authors")


def _read_flickr30k_karpathy(data_dir: Path) -> list[Record]:
    return read_flickr30k(data_dir, split="karpathy")


def _read_coco(data_dir: Path) -> list[Record]:
    karpathy = data_dir / "dataset_coco.json"
    return read_karpathy_json(karpathy) if karpathy.is_file() else read_coco_captions(data_dir)


def _read_manifest_dir(data_dir: Path) -> list[Record]:
    if data_dir.is_file():
        return read_manifest(data_dir)
    _require_dir(data_dir, "manifest.jsonl")
    return read_manifest(data_dir / "manifest.jsonl")


def _read_single_karpathy(data_dir: Path) -> list[Record]:
    _require_dir(data_dir, "one dataset_*.json file in Karpathy's layout")
    found = sorted(data_dir.glob("dataset_*.json"))
    if len(found) != 1:
        names = ", ".join(p.name for p in found) or "none"
        raise DatasetError(f"{data_dir}: expected exactly one dataset_*.json (Karpathy split), "
                           f"found {names}; pass the file to read_karpathy_json directly.")
    return read_karpathy_json(found[0])


DATASET_READERS: dict[str, Callable[[Path], list[Record]]] = {
    "flickr8k": read_flickr8k,
    "flickr30k": _read_flickr30k,
    "flickr30k_karpathy": _read_flickr30k_karpathy,
    "coco": _read_coco,
    "cuhk_pedes": read_cuhk_pedes,
    "manifest": _read_manifest_dir,
    "demo": _read_manifest_dir,
    "karpathy": _read_single_karpathy,
}


def reader(name: str) -> Callable[[Path], list[Record]]:
    """The registered reader of dataset `name` (the --dataset choices)."""
    if name not in DATASET_READERS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(DATASET_READERS)}")
    return DATASET_READERS[name]


def load(data) -> list[Record]:
    """The records a run's data settings (`config.data`: dataset, data_dir) name, validated."""
    return read_dataset(data.dataset, data.data_dir)


def read_dataset(name: str, data_dir: str | os.PathLike, validate: bool = True,
                 check_images: bool = True) -> list[Record]:
    """Read dataset ``name`` from ``data_dir``; with ``validate``, refuse it if it is broken."""
    read = reader(name)
    data_dir = Path(data_dir)
    if not data_dir.exists():
        raise DatasetError(f"Data path {data_dir} for dataset {name!r} does not exist; "
                           f"{_EXPECTS[name]}.")
    records = read(data_dir)
    if validate:
        validate_records(records, source=f"{data_dir} ({name})", check_images=check_images)
    return records


_EXPECTS = {
    "flickr8k": f"expected a folder with {FLICKR8K_TOKENS}, the Flickr_8k.*Images.txt lists "
                f"and {FLICKR8K_IMAGE_DIRS[0]}/",
    "flickr30k": f"expected a folder with {FLICKR30K_TOKENS} and {FLICKR30K_IMAGE_DIR}/ (or "
                 f"{FLICKR30K_JSON} and its images) plus Flickr8k's Flickr_8k.devImages.txt and "
                 f"Flickr_8k.testImages.txt (the authors' split)",
    "flickr30k_karpathy": f"expected a folder with {FLICKR30K_JSON} and its images "
                          f"(Karpathy's split)",
    "coco": "expected a folder with dataset_coco.json, or annotations/captions_*2014.json with "
            "train2014/ and val2014/",
    "cuhk_pedes": "expected a folder with reid_raw.json and imgs/",
    "manifest": "expected manifest.jsonl or a folder holding it",
    "demo": "expected the demo folder with manifest.jsonl (make it with "
            "`python -m keras_instance.cli.demo_data --out data/demo`)",
    "karpathy": "expected a folder with one dataset_*.json",
}
