"""What to embed: the items of a gallery, in one fixed order, loaded a chunk at a time.

    folder:PATH     every image file below PATH (ids: relative paths with "/"), sorted
    manifest:PATH   a JSON-Lines manifest (README, "Train on your own images"), in line order;
                    an optional "tags": ["...", ...] per line
    shards:PATH     `prepare`'s TFRecord shards (every split in shards.json, row by row)
    split:NAME      a split of the run's dataset (needs the run's records)

An image item is its image (path or URL, bytes read at load time); a caption item (kind
"caption", from a manifest or a split) is one caption, id "<image id>#<n>" as the caption
gallery of `index` names it. The order never depends on anything but the source, so chunk i is
the same items for every run and every worker (`retrieval.embedding_shards`). Nothing is read
before a chunk is loaded, except the shards' record headers (to find each record's offset), so
a bad image costs only its own item (`Loaded.error`).
"""
from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import os
import struct
from typing import Sequence

import tensorflow as tf

from keras_instance.data import readers, shards
from keras_instance.data.records import split_records
from keras_instance.export.galleries import folder_images

KINDS = ("folder", "manifest", "shards", "split")
_SHOW = 5


@dataclasses.dataclass(frozen=True)
class Item:
    id: str
    path: str = ""            # image path or URL ("" for a caption item)
    caption: str = ""
    tags: tuple[str, ...] = ()


@dataclasses.dataclass
class Loaded:
    """An item with its input for the encoder (image bytes or UTF-8 caption), or why not."""
    item: Item
    data: bytes = b""
    error: str = ""


def parse_spec(spec: str) -> tuple[str, str]:
    kind, sep, value = (spec or "").partition(":")
    if not sep or kind not in KINDS or not value:
        raise ValueError(f"--images {spec!r}: expected folder:PATH, manifest:PATH (JSON Lines), "
                         "shards:PATH (keras_instance.cli.prepare's output) or split:NAME")
    return kind, value


class ItemSource:
    """Items of one source in their fixed order; `load(start, stop)` reads a range of them."""

    def __init__(self, spec: str, kind: str, items: Sequence[Item], fingerprint_text: str = ""):
        self.spec, self.kind, self.items = spec, kind, list(items)
        ids = collections.Counter(i.id for i in self.items)
        twice = [i for i, n in ids.items() if n > 1]
        if twice:
            raise ValueError(f"{spec}: {len(twice)} id(s) given to more than one item, e.g. "
                             f"{', '.join(map(repr, twice[:_SHOW]))}; ids must be unique")
        if not self.items:
            raise ValueError(f"{spec}: no {kind} items to embed")
        digest = hashlib.sha256(fingerprint_text.encode())
        for item in self.items:
            digest.update(json.dumps(dataclasses.astuple(item)).encode())
        self.description = {"spec": spec, "items": len(self.items),
                            "fingerprint": digest.hexdigest()[:16]}

    def __len__(self) -> int:
        return len(self.items)

    def load(self, start: int, stop: int) -> list[Loaded]:
        return [self._load(item) for item in self.items[start:stop]]

    def _load(self, item: Item) -> Loaded:
        if self.kind == "caption":
            return Loaded(item, item.caption.encode("utf-8"))
        try:
            with tf.io.gfile.GFile(item.path, "rb") as f:
                return Loaded(item, f.read())
        except (OSError, tf.errors.OpError) as err:
            return Loaded(item, error=f"cannot read: {getattr(err, 'message', err)}")


class ShardSource(ItemSource):
    """`prepare`'s shards: record i of a split is record i // S of file i % S (round-robin);
    its bytes are read at its offset, found from the record headers alone."""

    def __init__(self, spec: str, folder: str, tags: tuple[str, ...]):
        with tf.io.gfile.GFile(os.path.join(folder, shards.INDEX_FILE)) as f:
            index_text = f.read()
        self.locations = []  # (file, offset) per item
        for split in json.loads(index_text):
            entry = shards.read_index(folder, split)
            offsets = [_record_offsets(p) for p in entry["paths"]]
            n = len(entry["paths"])
            self.locations += [(entry["paths"][i % n], offsets[i % n][i // n])
                               for i in range(entry["num_examples"])]
        self.tags = tags
        # ids are inside the records: items here are placeholders, the real ones come at load
        super().__init__(spec, "image", [Item(f"{p}@{o}") for p, o in self.locations],
                         index_text)

    def _load(self, item: Item) -> Loaded:
        path, offset = item.id.rsplit("@", 1)
        with tf.io.gfile.GFile(path, "rb") as f:
            f.seek(int(offset))
            length = struct.unpack("<Q", f.read(8))[0]
            f.read(4)
            example = tf.train.Example.FromString(f.read(length))
        feature = example.features.feature
        captions = feature["captions"].bytes_list.value
        real = Item(feature["image_id"].bytes_list.value[0].decode(),
                    feature["image_path"].bytes_list.value[0].decode(),
                    captions[0].decode() if captions else "", self.tags)
        return Loaded(real, feature["image"].bytes_list.value[0])


def _record_offsets(path: str) -> list[int]:
    """Byte offset of every record of a TFRecord file (length header, CRC, data, CRC)."""
    offsets, pos = [], 0
    with tf.io.gfile.GFile(path, "rb") as f:
        size = f.size()
        while pos < size:
            offsets.append(pos)
            f.seek(pos)
            pos += 16 + struct.unpack("<Q", f.read(8))[0]
    return offsets


def _manifest_tags(path: str) -> list[tuple[str, ...]]:
    """The optional "tags" of each non-blank manifest line (read_manifest's rows, in order)."""
    out = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                tags = json.loads(line).get("tags", [])
                if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
                    raise ValueError(f"{path}, line {number}: 'tags' must be a list of strings")
                out.append(tuple(tags))
    return out


def open_source(spec: str, kind: str = "image", tags: Sequence[str] = (),
                records=None) -> ItemSource:
    """The items `spec` names (see the module doc); `tags` are added to every item; `records`
    (the run's dataset) serve `split:`."""
    source, value = parse_spec(spec)
    if kind not in ("image", "caption"):
        raise ValueError(f"kind must be image or caption, got {kind!r}")
    tags = tuple(tags)
    if kind == "caption" and source in ("folder", "shards"):
        raise ValueError(f"--images={spec}: captions come from a manifest or a split "
                         "(manifest:PATH or split:NAME)")
    if source == "folder":
        if not os.path.isdir(value):
            raise FileNotFoundError(f"--images={spec}: {value!r} is not a folder")
        ids, paths = folder_images(value)
        return ItemSource(spec, kind, [Item(i, p, "", tags) for i, p in zip(ids, paths)])
    if source == "shards":
        return ShardSource(spec, value, tags)
    if source == "manifest":
        records = readers.read_manifest(value)
        extra = _manifest_tags(value)
    else:
        if records is None:
            raise ValueError(f"--images={spec}: a split needs the run's dataset (--workdir)")
        records = split_records(records, value)
        extra = [()] * len(records)
    if kind == "caption":
        items = [Item(f"{r.image_id}#{n}", "", c, tags + more)
                 for r, more in zip(records, extra) for n, c in enumerate(r.captions)]
    else:
        items = [Item(r.image_id, r.image_path, r.captions[0] if r.captions else "", tags + more)
                 for r, more in zip(records, extra)]
    return ItemSource(spec, kind, items)
